//! The per-snapshot key index: exact keys and prefixes answered through it give the
//! same answers as reading the whole RDB (a snapshot backed up with --no-key-index),
//! for inspect, export, restore --target and restore --to; a damaged index is found.

use crate::common;

use common::handmade::Rdb;
use common::server::RedisServer;
use common::vault::Vault;

/// Keys in three dbs, written in a scrambled order (as Redis does), with values of
/// varied sizes so the file spans several chunk lists and the index several pages.
fn dataset() -> Vec<u8> {
    let mut rdb = Rdb::new("7.0.15");
    for db in [0u64, 2, 5] {
        for i in 0..12_000u64 {
            let n = i * 7919 % 12_000;
            let value = vec![b'a' + (n % 26) as u8; 20 + (n * 31 % 200) as usize];
            let expire = (n % 5 == 0).then_some(4_102_444_800_000 + n);
            rdb = match n % 3 {
                0 => rdb.string(db, format!("user:{n}").as_bytes(), &value, expire),
                1 => rdb.hash(db, format!("order:{n}").as_bytes(), &[(b"total", &value[..5]), (b"note", &value)]),
                _ => rdb.set(db, format!("tag:{n}").as_bytes(), &[&value[..3], &value[..7]]),
            };
        }
    }
    rdb.bytes()
}

/// One repository holding the dataset twice: with a key index and without.
struct Backed {
    vault: Vault,
    indexed: String,
    plain: String,
}

fn backed() -> Backed {
    let vault = Vault::init();
    let file = vault.dir.path().join("dump.rdb");
    std::fs::write(&file, dataset()).expect("write rdb");
    let (indexed, _) = vault.backup(&file, &[]);
    let (plain, _) = vault.backup(&file, &["--no-key-index"]);
    Backed { vault, indexed, plain }
}

fn key_index(v: &Vault, snap: &str) -> serde_json::Value {
    v.json(&["cat", "snapshot", snap])["key_index"].clone()
}

/// Every kind of selection answers the same through the index as by reading the RDB.
#[test]
fn selections_answer_as_a_full_read_does() {
    let b = backed();
    let v = &b.vault;
    let index = key_index(v, &b.indexed);
    assert_eq!(index["keys"], 36_000, "{index}");
    assert_eq!(index["file"], "dump.rdb");
    assert!(key_index(v, &b.plain).is_null(), "--no-key-index writes none");

    let cases: &[&[&str]] = &[
        &["--keys", "user:4785"],                 // one key in each of three dbs
        &["--keys", "user:4785", "--db", "2"],    // one key
        &["--keys", "order:11*", "--db", "5"],    // a prefix in one db
        &["--keys", "tag:999?"],                  // a prefix, then a wildcard, every db
        &["--keys", "user:1*", "--type", "hash"], // the type filter on index entries: none
        &["--keys", "nosuch:1"],                  // missing key
        &["--keys", "user:5", "--db", "3"],       // an empty db
    ];
    for args in cases {
        let lines = |snap: &str| {
            let mut a = vec!["--json", "inspect", snap];
            a.extend_from_slice(args);
            key_lines(&v.ok(&a))
        };
        assert_eq!(lines(&b.indexed), lines(&b.plain), "inspect {args:?}");
    }
    let count = |args: &[&str]| {
        let mut a = vec!["--json", "inspect", &b.indexed];
        a.extend_from_slice(args);
        v.ok(&a).lines().count()
    };
    let named = |prefix: &str, class: u64| (0..12_000u64).filter(|n| n % 3 == class && n.to_string().starts_with(prefix)).count();
    assert_eq!(count(&["--keys", "user:4785"]), 3);
    assert_eq!(count(&["--keys", "order:11*", "--db", "5"]), named("11", 1));
    assert_eq!(count(&["--keys", "tag:999?"]), 3 * named("999", 2) - 3 * usize::from(999 % 3 == 2));
    assert_eq!(count(&["--keys", "nosuch:1"]), 0);
    let one = v.ok(&["--json", "inspect", &b.indexed, "--keys", "user:4785", "--db", "2"]);
    let rec: serde_json::Value = serde_json::from_str(one.trim()).expect("one JSON line");
    assert_eq!((rec["db"].as_u64(), rec["key"].as_str(), rec["type"].as_str()), (Some(2), Some("user:4785"), Some("string")));
    assert_eq!(rec["expire_at_ms"], 4_102_444_800_000u64 + 4785);

    // The table output, export and a filtered RDB: byte for byte the same.
    for args in [
        vec!["inspect", "SNAP", "--keys", "tag:1*", "--db", "0"],
        vec!["export", "SNAP", "--format", "jsonl", "--keys", "order:7"],
        vec!["export", "SNAP", "--format", "resp", "--keys", "user:12*"],
    ] {
        let run = |snap: &str| v.ok(&args.iter().map(|a| if *a == "SNAP" { snap } else { a }).collect::<Vec<_>>());
        assert_eq!(run(&b.indexed), run(&b.plain), "{args:?}");
    }
    let target = |name: &str, snap: &str| {
        let path = v.dir.path().join(name);
        v.ok(&["restore", snap, "--keys", "user:33*", "--db", "2", "--target", path.to_str().expect("utf-8")]);
        let bytes = std::fs::read(&path).expect("restored file");
        common::rdb::assert_valid_rdb(&bytes);
        // From the first SELECTDB to the checksum (the aux fields name the time of writing).
        let at = bytes.iter().position(|b| *b == 0xFE).expect("a SELECTDB");
        bytes[at..bytes.len() - 8].to_vec()
    };
    let (a, c) = (target("a.rdb", &b.indexed), target("b.rdb", &b.plain));
    assert_eq!(a, c);
    assert_eq!(common::rdb::count(&a, b"user:33"), named("33", 0));
}

/// JSON key lines without `ttl_ms`, which is relative to each snapshot's time.
fn key_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            v.as_object_mut().expect("object").remove("ttl_ms");
            v
        })
        .collect()
}

/// restore --to with exact names loads those keys through the index.
#[test]
fn restore_to_a_server_loads_exact_keys() {
    let b = backed();
    let srv = RedisServer::start(&[]);
    // `/0`: the keys of the one db selected go to db 0.
    let out = b.vault.ok(&["restore", &b.indexed, "--to", &format!("{}/0", srv.url()), "--keys", "order:4", "--db", "5"]);
    assert!(out.contains("restored 1 key"), "{out}");
    let total: String = srv.cmd(&["HGET", "order:4", "total"]);
    assert_eq!(total.len(), 5);
    let size: i64 = srv.cmd(&["DBSIZE"]);
    assert_eq!(size, 1);
}

/// check decodes the index (and with --read-data rebuilds it from the RDB); prune keeps it;
/// a tampered top table is an error naming the index, not a wrong answer.
#[test]
fn the_index_is_checked_kept_by_prune_and_tampering_is_found() {
    let b = backed();
    let v = &b.vault;
    v.check_passes(&["--read-data"]);
    v.ok(&["forget", &b.plain]);
    v.ok(&["prune"]);
    v.check_passes(&["--read-data"]);
    assert_eq!(v.ok(&["--json", "inspect", &b.indexed, "--keys", "tag:2", "--db", "0"]).lines().count(), 1);

    // Flip a byte of the top table's sealed frame.
    let top = key_index(v, &b.indexed)["top"].as_str().expect("top id").to_string();
    v.tamper_blob(&top);
    let err = v.fails(&["inspect", &b.indexed, "--keys", "tag:2"]);
    assert!(err.contains(&top), "{err}");
    let (ok, report) = v.check(&[]);
    assert!(!ok, "check finds the damaged index: {report:#}");
    let problems = report["problems"].as_array().expect("problems");
    assert!(problems.iter().any(|p| p["kind"] == "key-index" || p["blob"] == top.as_str()), "{report:#}");
    // The whole snapshot still restores.
    assert_eq!(v.restore(&b.indexed, &v.dir.path().join("whole.rdb")), dataset());
}

/// A copied snapshot gets its own index in the destination (the source's names blobs the
/// destination does not have): check passes there and exact keys answer.
#[test]
fn a_copy_has_its_own_index() {
    let b = backed();
    let dest = Vault::init();
    let pw = b.vault.dir.path().join("to-password");
    std::fs::write(&pw, format!("{}\n", dest.password)).expect("write password");
    let args = ["copy", "--to-repo", dest.repo.to_str().expect("utf-8"), "--to-password-file", pw.to_str().expect("utf-8"), &b.indexed];
    b.vault.ok(&args);
    let copy = dest.snapshots().pop().expect("the copy");
    let (src, dst) = (key_index(&b.vault, &b.indexed), key_index(&dest, &copy));
    assert_eq!(dst["keys"], 36_000);
    assert_ne!(src["top"], dst["top"], "blob ids are keyed per repository");
    dest.check_passes(&["--read-data"]);
    let q = ["--json", "inspect", "latest", "--keys", "order:4", "--db", "5"];
    assert_eq!(key_lines(&dest.ok(&q)), key_lines(&b.vault.ok(&["--json", "inspect", &b.indexed, "--keys", "order:4", "--db", "5"])));
}

/// The key browser's library calls: pages of keys by cursor, and one key's value, the same
/// with the index (in key order) as by streaming (in file order).
#[test]
fn pages_and_values_for_the_key_browser() {
    use rdbvault::engine::restore::{load_index, Blobs};
    use rdbvault::format::snapshot::Snapshot;
    use rdbvault::redis::glob::Glob;
    use rdbvault::redis::keyindex::{page, value, Query};
    use rdbvault::store::{LocalBackend, Repository};

    let b = backed();
    let repo = Repository::open(std::sync::Arc::new(LocalBackend::new(&b.vault.repo)), common::vault::PASSWORD.as_bytes()).expect("open");
    let (index, _) = load_index(&repo).expect("index");
    let blobs = Blobs::new(&repo, &index).expect("blobs");
    let snap = |id: &str| Snapshot::find(&repo, id).expect("snapshot").0 .1;
    let (indexed, plain) = (snap(&b.indexed), snap(&b.plain));

    let all = |s: &Snapshot, q: Query| {
        let (mut keys, mut q, mut pages) = (Vec::new(), q, 0);
        loop {
            let p = page(&blobs, s, &q).expect("page");
            assert!(p.entries.len() <= q.limit);
            assert_eq!(p.indexed, s.key_index.is_some());
            pages += 1;
            keys.extend(p.entries.into_iter().map(|k| (k.db, k.key, k.kind.as_str(), k.expire_ms, k.record_bytes)));
            match p.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => return (keys, pages),
            }
        }
    };
    for q in [
        Query { pattern: Some(Glob::new(b"user:1*")), db: Some(2), limit: 50, ..Query::default() },
        Query { pattern: Some(Glob::new(b"*:99*")), limit: 100, ..Query::default() },
        Query { db: Some(0), limit: 5_000, ..Query::default() },
        Query { kind: rdbvault::redis::keyscan::parse_kind("hash"), db: Some(5), limit: 999, ..Query::default() },
    ] {
        let (from_index, pages) = all(&indexed, q.clone());
        let (streamed, _) = all(&plain, q.clone());
        assert!(from_index.windows(2).all(|w| (w[0].0, &w[0].1) < (w[1].0, &w[1].1)), "key order, no repeats: {q:?}");
        assert!(!from_index.is_empty() && pages > 1, "{q:?}: {} keys in {pages} pages", from_index.len());
        let mut sorted = streamed.clone();
        sorted.sort();
        assert_eq!(from_index, sorted, "{q:?}");
    }
    let whole_db = all(&indexed, Query { db: Some(0), limit: 5_000, ..Query::default() }).0;
    assert_eq!(whole_db.len(), 12_000);

    let v = value(&blobs, &indexed, 2, b"order:7").expect("value").expect("present");
    assert_eq!(Some(v.clone()), value(&blobs, &plain, 2, b"order:7").expect("value"));
    assert_eq!((v.db, v.key.as_slice(), v.kind.as_str()), (2, &b"order:7"[..], "hash"));
    assert_eq!(value(&blobs, &indexed, 1, b"order:7").expect("value"), None);
    assert_eq!(value(&blobs, &indexed, 2, b"order:7x").expect("value"), None);
    let bad = Query { cursor: Some("n12".into()), limit: 10, ..Query::default() };
    assert!(page(&blobs, &indexed, &bad).expect_err("a cursor of another listing").to_string().contains("cursor"));
}

/// An index larger than the runs held in memory (they are sorted and written on a thread of
/// their own): where no run can be written, the backup fails and says where, the repository
/// keeps what it had, and the next backup, with a usable temporary directory, indexes every key.
#[test]
fn key_index_runs_that_cannot_be_written_fail_the_backup_and_lose_nothing() {
    let keys = 200_000u64;
    let mut rdb = Rdb::new("7.0.15");
    for i in 0..keys {
        rdb = rdb.string(0, format!("session:{:08}", i * 7919 % keys).as_bytes(), b"v", None);
    }
    let vault = Vault::init();
    let file = vault.dir.path().join("dump.rdb");
    std::fs::write(&file, rdb.bytes()).expect("write rdb");
    let missing = vault.dir.path().join("no-such-directory");
    let out = vault.run_env(&["backup", file.to_str().unwrap()], &[("TMPDIR", missing.to_str().unwrap())]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    // The first temporary file a backup writes may hold a run or the file's chunk facts.
    assert!((said.contains("key index run") || said.contains("key index's chunk facts")) && said.contains(missing.to_str().unwrap()) && said.contains("TMPDIR"), "{said}");
    assert!(vault.snapshots().is_empty(), "no snapshot from a failed backup");
    vault.check_passes(&[]);
    let (snap, _) = vault.backup(&file, &[]);
    assert_eq!(key_index(&vault, &snap)["keys"], keys);
}

/// A copy of `tests/fixtures/repo-keyindex-rows`: written by rdbvault before key index pages
/// held their fields in columns (`init --kdf-memory-kib 8192`, `backup` of
/// `tests/fixtures/rdb/plain.rdb` as snapshot b32a8925, 11 keys, pages of rows `RVK1`).
fn repository_with_pages_of_rows() -> Vault {
    Vault::from_fixture("repo-keyindex-rows")
}

/// Pages written before the columns still answer selections and pass `check --read-data`
/// (which compares them with the columns the RDB gives by their entries, not their bytes);
/// a new backup of the same file writes pages of columns beside them.
#[test]
fn pages_of_rows_from_older_versions_answer_and_pass_check() {
    let v = repository_with_pages_of_rows();
    let old = v.snapshots().pop().expect("the fixture's snapshot");
    v.check_passes(&["--read-data"]);
    let rdb = common::vault::rdb_fixture("plain.rdb");
    let file = v.dir.path().join("plain.rdb");
    std::fs::write(&file, &rdb).expect("write rdb");
    let (new, _) = v.backup(&file, &[]);
    assert_ne!(key_index(&v, &old)["top"], key_index(&v, &new)["top"], "the same keys in pages of another layout");
    v.check_passes(&["--read-data"]);
    for args in [&["--keys", "lzf"][..], &["--keys", "s*"], &["--keys", "other", "--db", "2"]] {
        let lines = |snap: &str| {
            let mut a = vec!["--json", "inspect", snap];
            a.extend_from_slice(args);
            key_lines(&v.ok(&a))
        };
        let (from_rows, from_columns) = (lines(&old), lines(&new));
        assert!(!from_rows.is_empty(), "inspect {args:?} finds keys");
        assert_eq!(from_rows, from_columns, "inspect {args:?}");
    }
    assert_eq!(v.restore(&old, &v.dir.path().join("old.rdb")), rdb);
}
