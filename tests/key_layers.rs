//! Layered key indexes: a backup of a file that changed a little lists only its changed
//! records (the delta) and names an earlier full index (the base) and the runs that move
//! its entries; every selection answers as through a full index of the same file, check
//! rebuilds and compares it, prune keeps its base after the base's snapshot is forgotten,
//! and a damaged runs blob is found.

use crate::common;

use common::handmade::Rdb;
use common::vault::Vault;

/// Keys per db of the first version.
const KEYS: u64 = 5_000;

/// Whether key `n` is one of the ~1% whose value changes length in the second version.
fn changed(n: u64) -> bool {
    n % 97 == 5
}

/// Whether key `n` is gone from the second version.
fn deleted(n: u64) -> bool {
    n % 499 == 7
}

/// Whether the second version adds a key after key `n`.
fn adds_after(n: u64) -> bool {
    n % 503 == 3
}

/// Keys in three dbs written in a scrambled order (as Redis does), with values of varied
/// sizes; `second`: ~1% of the values changed in length, ~0.2% of the keys deleted and ~0.2% added.
fn dataset(second: bool) -> Vec<u8> {
    let mut rdb = Rdb::new("7.0.15");
    for db in [0u64, 2, 5] {
        for i in 0..KEYS {
            let n = i * 7919 % KEYS;
            if second && deleted(n) {
                continue;
            }
            let extra = if second && changed(n) { 17 } else { 0 };
            let mut value = vec![b'a' + (n % 26) as u8; 150 + (n * 31 % 400) as usize + extra];
            // Some values hold whole RDBs (records, SELECTDBs): bytes that parse as records
            // must not line up with the other file's records.
            if n % 50 == 0 {
                let inner = Rdb::new("7.0.15").string(db, format!("user:{}", n + 3).as_bytes(), &value[..40], None).string(5, b"tag:9", b"x", None);
                value = [inner.bytes(), value].concat();
            }
            let expire = (n % 5 == 0).then_some(4_102_444_800_000 + n);
            rdb = match n % 3 {
                0 => rdb.string(db, format!("user:{n}").as_bytes(), &value, expire),
                1 => rdb.hash(db, format!("order:{n}").as_bytes(), &[(b"total", &value[..5]), (b"note", &value)]),
                _ => rdb.set(db, format!("tag:{n}").as_bytes(), &[&value[..3], &value[..7]]),
            };
            if second && adds_after(n) {
                rdb = rdb.string(db, format!("new:{n}").as_bytes(), &value[..9], None);
            }
        }
    }
    rdb.bytes()
}

/// Keys of the second version.
fn second_keys() -> u64 {
    // A deleted key's addition goes with it.
    3 * (0..KEYS).filter(|n| !deleted(*n)).map(|n| 1 + u64::from(adds_after(n))).sum::<u64>()
}

/// The key name of key `n` (its kind follows from `n`).
fn name(n: u64) -> String {
    match n % 3 {
        0 => format!("user:{n}"),
        1 => format!("order:{n}"),
        _ => format!("tag:{n}"),
    }
}

/// A repository with v1 backed up (full index), v2 backed up (layered on v1's) and v2
/// backed up again with a full index.
struct Backed {
    vault: Vault,
    v1: String,
    layered: String,
    full: String,
}

fn backed() -> Backed {
    let vault = Vault::init();
    let file = vault.dir.path().join("dump.rdb");
    std::fs::write(&file, dataset(false)).expect("write v1");
    let (v1, _) = vault.backup(&file, &[]);
    std::fs::write(&file, dataset(true)).expect("write v2");
    let (layered, _) = vault.backup(&file, &[]);
    let (full, _) = vault.backup(&file, &["--full-key-index"]);
    Backed { vault, v1, layered, full }
}

fn snapshot_json(v: &Vault, snap: &str) -> serde_json::Value {
    v.json(&["cat", "snapshot", snap])
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

/// Every key of `snap` through its index, a page at a time, each with its record's details
/// (so every record is read through the index and checked against its key).
fn listing(v: &Vault, snap: &str) -> Vec<rdbvault::redis::keyindex::KeyInfo> {
    use rdbvault::engine::restore::{load_index, Blobs};
    use rdbvault::format::snapshot::Snapshot;
    use rdbvault::redis::keyindex::{page, Query};
    use rdbvault::store::{LocalBackend, Repository};

    let repo = Repository::open(std::sync::Arc::new(LocalBackend::new(&v.repo)), common::vault::PASSWORD.as_bytes()).expect("open");
    let (index, _) = load_index(&repo).expect("index");
    let blobs = Blobs::new(&repo, &index).expect("blobs");
    let snap = Snapshot::find(&repo, snap).expect("snapshot").0 .1;
    let (mut keys, mut q) = (Vec::new(), Query { limit: 4_000, details: true, ..Query::default() });
    loop {
        let p = page(&blobs, &snap, &q).expect("page");
        assert!(p.indexed, "listed through the index");
        keys.extend(p.entries);
        match p.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return keys,
        }
    }
}

/// One key's value through the index, with the record's offset in the file.
fn value(v: &Vault, snap: &str, db: u64, key: &str) -> Option<rdbvault::rdb::Record> {
    use rdbvault::engine::restore::{load_index, Blobs};
    use rdbvault::format::snapshot::Snapshot;
    use rdbvault::store::{LocalBackend, Repository};

    let repo = Repository::open(std::sync::Arc::new(LocalBackend::new(&v.repo)), common::vault::PASSWORD.as_bytes()).expect("open");
    let (index, _) = load_index(&repo).expect("index");
    let blobs = Blobs::new(&repo, &index).expect("blobs");
    let snap = Snapshot::find(&repo, snap).expect("snapshot").0 .1;
    rdbvault::redis::keyindex::value(&blobs, &snap, db, key.as_bytes()).expect("value")
}

/// The selections of changed, unchanged, added and deleted keys answer alike through the
/// layered and the full index of the same file.
fn assert_selections_agree(v: &Vault, layered: &str, full: &str, round: u32) {
    let (changed_n, unchanged_n, added_n, deleted_n) = (5u64, 6u64, 3u64, 7u64);
    assert!(changed(changed_n) && !changed(unchanged_n) && !deleted(unchanged_n) && adds_after(added_n) && deleted(deleted_n));
    let (c, u, a, d) = (name(changed_n), name(unchanged_n), format!("new:{added_n}"), name(deleted_n));
    let cases: Vec<Vec<&str>> = vec![
        vec!["--keys", &c],
        vec!["--keys", &u, "--db", "2"],
        vec!["--keys", &a],
        vec!["--keys", &d],
        vec!["--keys", "user:1*", "--db", "5"],
        vec!["--keys", "new:*"],
        vec!["--keys", "order:99?"],
        vec!["--keys", "tag:5*", "--type", "set"],
    ];
    for args in &cases {
        let lines = |snap: &str| {
            let mut a = vec!["--json", "inspect", snap];
            a.extend_from_slice(args);
            key_lines(&v.ok(&a))
        };
        assert_eq!(lines(layered), lines(full), "inspect {args:?}");
    }
    let count = |args: &[&str]| {
        let mut a = vec!["--json", "inspect", layered];
        a.extend_from_slice(args);
        v.ok(&a).lines().count()
    };
    assert_eq!(count(&["--keys", &c]), 3);
    assert_eq!(count(&["--keys", &a]), 3);
    assert_eq!(count(&["--keys", &d]), 0, "a deleted key is not listed");
    for (db, key) in [(0, &c), (2, &u), (5, &a), (0, &d)] {
        let (l, f) = (value(v, layered, db, key), value(v, full, db, key));
        assert_eq!(l.is_some(), key != &d, "{db}:{key}");
        assert_eq!(l, f, "{db}:{key}: the same record at the same offset");
    }
    for (i, keys) in [c.as_str(), u.as_str(), a.as_str(), "user:33*"].into_iter().enumerate() {
        let target = |snap: &str| {
            let path = v.dir.path().join(format!("sel-{round}-{i}-{snap}.rdb"));
            v.ok(&["restore", snap, "--keys", keys, "--target", path.to_str().expect("utf-8")]);
            let bytes = std::fs::read(&path).expect("restored file");
            common::rdb::assert_valid_rdb(&bytes);
            // From the first SELECTDB to the checksum (the aux fields name the time of writing).
            let at = bytes.iter().position(|b| *b == 0xFE).expect("a SELECTDB");
            bytes[at..bytes.len() - 8].to_vec()
        };
        assert_eq!(target(layered), target(full), "restore --keys {keys}");
    }
}

/// v1 gets a full index with chunk facts, v2 a layered one much smaller than its keys; the
/// layered listing is the full one's, key for key and record for record; selections agree;
/// check --read-data passes; forgetting v1 and pruning keeps the layered index working;
/// a damaged runs blob is found by check and by lookups, and the whole file still restores.
#[test]
fn a_layered_index_answers_as_a_full_one() {
    let b = backed();
    let v = &b.vault;
    let one = snapshot_json(v, &b.v1);
    assert!(one["key_layers"].is_null(), "{one:#}");
    assert!(one["key_index"]["facts"].as_array().is_some_and(|f| !f.is_empty()), "a full index names its chunk facts: {one:#}");

    let two = snapshot_json(v, &b.layered);
    let layers = &two["key_layers"];
    assert!(two["key_index"].is_null() && layers.is_object(), "{two:#}");
    let (keys, delta_keys) = (layers["keys"].as_u64().expect("keys"), layers["delta_keys"].as_u64().expect("delta_keys"));
    assert_eq!(keys, second_keys());
    assert!(delta_keys > 0 && delta_keys * 4 < keys, "{delta_keys} of {keys} keys in the delta");
    assert_eq!(layers["base"]["top"], one["key_index"]["top"], "layered on v1's index");

    let full = snapshot_json(v, &b.full);
    assert!(full["key_layers"].is_null(), "--full-key-index: {full:#}");
    assert_eq!(full["key_index"]["keys"], keys);

    let (from_layers, from_full) = (listing(v, &b.layered), listing(v, &b.full));
    assert_eq!(from_layers.len() as u64, keys);
    assert!(from_layers.iter().all(|k| k.detail.is_some()), "every record read through the index");
    assert_eq!(from_layers, from_full);
    assert_selections_agree(v, &b.layered, &b.full, 1);
    v.check_passes(&["--read-data"]);

    // The base's snapshot goes; its index stays for the layered one.
    v.ok(&["forget", &b.v1]);
    v.ok(&["prune"]);
    v.check_passes(&["--read-data"]);
    assert_eq!(listing(v, &b.layered), from_full);
    assert_selections_agree(v, &b.layered, &b.full, 2);
    let stats = v.json(&["stats"]);
    assert!(stats["breakdown"]["key_index_bytes"].as_u64().is_some_and(|n| n > 0), "{stats:#}");

    let runs = layers["runs"].as_str().expect("runs id").to_string();
    v.tamper_blob(&runs);
    let err = v.fails(&["inspect", &b.layered, "--keys", &name(6)]);
    assert!(err.contains(&runs) || err.contains(&runs[..8]), "{err}");
    let (ok, report) = v.check(&[]);
    assert!(!ok, "check finds the damaged runs: {report:#}");
    let problems = report["problems"].as_array().expect("problems");
    assert!(problems.iter().any(|p| p["kind"] == "key-index" || p["blob"] == runs.as_str()), "{report:#}");
    assert_eq!(v.restore(&b.layered, &v.dir.path().join("whole.rdb")), dataset(true));
    // The full index of the same file is not affected.
    assert_eq!(v.ok(&["--json", "inspect", &b.full, "--keys", &name(6)]).lines().count(), 3);
}

/// Copies of v1 and the layered v2 get indexes of their own in the destination, which
/// pass check there and answer as the source's do.
#[test]
fn copies_of_layered_snapshots_have_their_own_indexes() {
    let b = backed();
    let dest = Vault::init();
    let pw = b.vault.dir.path().join("to-password");
    std::fs::write(&pw, format!("{}\n", dest.password)).expect("write password");
    for snap in [&b.v1, &b.layered] {
        b.vault.ok(&["copy", "--to-repo", dest.repo.to_str().expect("utf-8"), "--to-password-file", pw.to_str().expect("utf-8"), snap]);
    }
    let copy = dest.snapshots().pop().expect("the copy of v2");
    let copied = snapshot_json(&dest, &copy);
    assert!(copied["key_index"].is_object() != copied["key_layers"].is_object(), "one index of either kind: {copied:#}");
    let src = snapshot_json(&b.vault, &b.layered);
    for field in ["key_index", "key_layers"] {
        for id in ["top", "delta", "runs"] {
            let (s, d) = (&src[field][id], &copied[field][id]);
            assert!(s.is_null() || s != d, "{field}.{id}: blob ids are keyed per repository");
        }
    }
    dest.check_passes(&["--read-data"]);
    assert_eq!(listing(&dest, &copy), listing(&b.vault, &b.full));
    let q = |v: &Vault, snap: &str| key_lines(&v.ok(&["--json", "inspect", snap, "--keys", "order:4*", "--db", "5"]));
    assert_eq!(q(&dest, &copy), q(&b.vault, &b.layered));
}
