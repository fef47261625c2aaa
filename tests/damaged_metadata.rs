//! Damaged metadata, one kind of file at a time (snapshot, index, pack header,
//! key file, config, lock), each flipped, truncated and deleted: the message
//! names the file and the command to run next, and nothing that is still
//! intact is lost. tests/corruption.rs and tests/tamper.rs cover damaged data
//! and detection by `check`; this file covers living with the damage.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rdbvault::store::lock::{Lock, LockInfo};
use rdbvault::store::{LocalBackend, Repository};

use common::vault::{pack_header_start, random_data, text, Vault, PASSWORD};

#[derive(Clone, Copy, Debug)]
enum Damage {
    Flip,
    Truncate,
    Empty,
    Delete,
}

const DAMAGE: [Damage; 4] = [Damage::Flip, Damage::Truncate, Damage::Empty, Damage::Delete];

fn damage(path: &Path, how: Damage) {
    let mut b = std::fs::read(path).expect("read");
    match how {
        Damage::Flip => {
            let at = b.len() / 2;
            b[at] ^= 0x55;
        }
        Damage::Truncate => b.truncate(b.len() / 2),
        Damage::Empty => b.clear(),
        Damage::Delete => {
            std::fs::remove_file(path).expect("delete");
            return;
        }
    }
    std::fs::write(path, b).expect("write");
}

fn name_of(p: &Path) -> String {
    p.file_name().expect("name").to_string_lossy().into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every repository file, with its bytes (to show a refused command changed nothing).
fn contents(v: &Vault) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for folder in ["data", "index", "snapshots", "keys"] {
        out.extend(v.files(folder).into_iter().map(|f| {
            let b = std::fs::read(&f).expect("read");
            (f, b)
        }));
    }
    out
}

/// Three snapshots (oldest first) of data that shares a part, with their bytes.
fn three() -> (Vault, Vec<(String, Vec<u8>)>) {
    let v = Vault::init();
    let mut snaps = Vec::new();
    let shared = random_data(1, 60_000);
    for seed in 2..5u64 {
        let mut data = shared.clone();
        data.extend(random_data(seed, 40_000));
        snaps.push((v.backup_bytes(&format!("s{seed}.rdb"), &data), data));
    }
    (v, snaps)
}

fn snapshot_file(v: &Vault, id: &str) -> PathBuf {
    v.repo.join("snapshots").join(id)
}

#[test]
fn one_damaged_snapshot_is_skipped_named_and_removed_by_repair_snapshots() {
    for how in [Damage::Flip, Damage::Truncate, Damage::Empty] {
        let (v, snaps) = three();
        // The newest is damaged: `latest` must fall back to the one before, and say so.
        let bad = snaps[2].0.clone();
        damage(&snapshot_file(&v, &bad), how);
        let skip = format!("skipping snapshot {}: snapshots/{bad}", &bad[..8]);
        let hint = "run `rdbvault repair snapshots` to remove it";

        let o = v.run(&["snapshots"]);
        assert!(o.status.success(), "{how:?}: {}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("2 snapshots (1 unreadable, named on stderr)"), "{how:?}: {out}");
        assert!(!out.contains(&bad[..8]), "{how:?}: the damaged snapshot is not listed as one: {out}");
        assert!(stderr(&o).contains(&skip) && stderr(&o).contains(hint), "{how:?}: {}", stderr(&o));

        let o = v.run(&["--json", "snapshots"]);
        let list: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON stays clean");
        let ids: Vec<&str> = list.as_array().expect("array").iter().map(|s| s["id"].as_str().expect("id")).collect();
        assert_eq!(ids, [snaps[0].0.as_str(), snaps[1].0.as_str()], "{how:?}");
        assert!(stderr(&o).contains(&skip), "{how:?}: JSON runs name it on stderr: {}", stderr(&o));

        let target = v.dir.path().join("latest.rdb");
        let o = v.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
        assert!(o.status.success(), "{how:?}: {}", text(&o));
        assert_eq!(std::fs::read(&target).unwrap(), snaps[1].1, "{how:?}: latest is the newest readable");
        assert!(stderr(&o).contains(&skip), "{how:?}: {}", stderr(&o));
        let o = v.run(&["stats"]);
        assert!(o.status.success() && stderr(&o).contains(&skip), "{how:?}: {}", text(&o));

        // By its id, the damaged snapshot is an error that names it and the repair.
        let err = v.fails_text(&["restore", &bad[..10], "--target", "-"]);
        assert!(err.contains(&format!("snapshots/{bad}")) && err.contains("rdbvault repair snapshots"), "{how:?}: {err}");

        // Prune refuses, naming it, and changes nothing.
        let before = contents(&v);
        let err = v.fails_text(&["prune"]);
        assert!(err.contains("refusing to prune") && err.contains(&bad[..8]) && err.contains("rdbvault repair snapshots"), "{how:?}: {err}");
        assert_eq!(contents(&v), before, "{how:?}: a refused prune deletes nothing");

        // Without a terminal, repair needs --yes; --dry-run only lists.
        let err = v.fails_text(&["repair", "snapshots"]);
        assert!(err.contains("--yes"), "{how:?}: {err}");
        let out = v.ok(&["repair", "snapshots", "--dry-run"]);
        assert!(out.contains("would remove 1 damaged snapshot file:") && out.contains(&bad[..8]), "{how:?}: {out}");
        let report = v.json(&["repair", "snapshots", "--dry-run"]);
        assert_eq!(report["damaged"], serde_json::json!([bad]), "{how:?}: {report}");
        assert_eq!(report["removed"], 0, "{how:?}: {report}");
        assert!(snapshot_file(&v, &bad).exists(), "{how:?}: nothing removed yet");
        let (ok, report) = v.check(&[]);
        assert!(!ok && report.to_string().contains("rdbvault repair snapshots"), "{how:?}: check says what to run: {report}");

        let out = v.ok(&["repair", "snapshots", "--yes"]);
        assert!(out.contains("removed 1 damaged snapshot file;"), "{how:?}: {out}");
        assert!(!snapshot_file(&v, &bad).exists());
        v.check_passes(&["--read-data"]);
        let o = v.run(&["snapshots"]);
        assert!(o.status.success() && stderr(&o).is_empty(), "{how:?}: {}", text(&o));
        v.ok(&["prune"]);
        v.check_passes(&["--read-data"]);
        for (id, data) in &snaps[..2] {
            assert_eq!(v.try_restore(id).as_ref(), Ok(data), "{how:?}: snapshot {id} after repair and prune");
        }
    }
}

#[test]
fn a_deleted_snapshot_file_is_simply_gone() {
    let (v, snaps) = three();
    damage(&snapshot_file(&v, &snaps[1].0), Damage::Delete);
    let o = v.run(&["snapshots"]);
    assert!(o.status.success() && stderr(&o).is_empty(), "{}", text(&o));
    assert_eq!(v.snapshots(), [snaps[0].0.clone(), snaps[2].0.clone()]);
    v.check_passes(&[]);
    v.ok(&["prune"]);
    for (id, data) in [&snaps[0], &snaps[2]] {
        assert_eq!(v.try_restore(id).as_ref(), Ok(data));
    }
}

#[test]
fn forget_by_id_removes_exactly_those_snapshots_damaged_or_not() {
    let (v, snaps) = three();
    let bad = snaps[1].0.clone();
    damage(&snapshot_file(&v, &bad), Damage::Flip);

    let err = v.fails_text(&["forget", &bad[..8], "--keep-last", "1"]);
    assert!(err.contains("give snapshot ids or a --keep-* policy, not both"), "{err}");
    let err = v.fails_text(&["forget", &bad[..8], "0000000000"]);
    assert!(err.contains("no snapshot matches \"0000000000\""), "{err}");
    let err = v.fails_text(&["forget", "latest"]);
    assert!(err.contains("no snapshot matches \"latest\""), "{err}");
    assert!(snapshot_file(&v, &bad).exists(), "a failed forget removes nothing");

    let out = v.ok(&["forget", "--dry-run", &bad[..8], &snaps[0].0[..12]]);
    assert!(out.contains("would remove 2 snapshots:") && out.contains("(unreadable)"), "{out}");
    assert!(snapshot_file(&v, &bad).exists(), "a dry run removes nothing");

    let report = v.json(&["forget", &bad[..8], &bad]);
    assert_eq!(report["removed"], 1, "the same snapshot twice is removed once: {report}");
    assert_eq!(report["snapshots"][0]["id"], bad.as_str());
    assert!(report["snapshots"][0]["time"].is_null(), "{report}");
    assert!(!snapshot_file(&v, &bad).exists());
    // With the damaged one gone, the rest works, prune included.
    assert_eq!(v.snapshots(), [snaps[0].0.clone(), snaps[2].0.clone()]);
    v.ok(&["forget", &snaps[0].0[..8], "--prune"]);
    v.check_passes(&["--read-data"]);
    assert_eq!(v.try_restore("latest").as_ref(), Ok(&snaps[2].1));
}

#[test]
fn a_retention_policy_leaves_an_unreadable_snapshot_alone_and_names_it() {
    let (v, snaps) = three();
    let bad = snaps[0].0.clone();
    damage(&snapshot_file(&v, &bad), Damage::Truncate);
    let o = v.run(&["forget", "--keep-last", "1", "--group-by", "host"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(stderr(&o).contains(&format!("skipping snapshot {}", &bad[..8])), "{}", stderr(&o));
    assert!(snapshot_file(&v, &bad).exists(), "no policy decides about a snapshot it cannot read");
    let v2: Vec<String> = v.snapshots();
    assert_eq!(v2, [snaps[2].0.clone()]);
}

/// Every index file damaged the same way (two backups: two index files).
fn damage_index(v: &Vault, how: Damage) -> Vec<String> {
    let files = v.files("index");
    assert!(files.len() >= 2);
    for f in &files {
        damage(f, how);
    }
    files.iter().map(|f| name_of(f)).collect()
}

#[test]
fn with_damaged_index_files_restore_reads_pack_headers_and_repair_index_fixes_it() {
    for how in [Damage::Flip, Damage::Truncate, Damage::Empty] {
        let (v, snaps) = three();
        let names = damage_index(&v, how);
        for (id, data) in &snaps {
            let target = v.dir.path().join(format!("r-{id}"));
            let o = v.run(&["restore", id, "--target", target.to_str().unwrap()]);
            assert!(o.status.success(), "{how:?}: {}", text(&o));
            assert_eq!(&std::fs::read(&target).unwrap(), data, "{how:?}: byte-exact from the pack headers");
            let err = stderr(&o);
            for n in &names {
                assert!(err.contains(&format!("warning: index/{n}")), "{how:?}: the warning names index/{n}: {err}");
            }
            assert!(err.contains("rdbvault repair index") && err.contains("from their own headers"), "{how:?}: {err}");
        }
        let o = v.run(&["restore", "latest", "--target", "-"]);
        assert!(o.status.success() && o.stdout == snaps[2].1, "{how:?}: to stdout too: {}", stderr(&o));

        // Commands that need the whole index fail, naming a damaged file and the repair.
        let before = contents(&v);
        let input = v.dir.path().join("new.rdb");
        std::fs::write(&input, random_data(9, 30_000)).unwrap();
        for args in [vec!["backup", "--raw", input.to_str().unwrap()], vec!["prune"], vec!["stats"]] {
            let err = v.fails_text(&args);
            assert!(names.iter().any(|n| err.contains(&format!("index/{n}"))), "{how:?} {args:?}: {err}");
            assert!(err.contains("run `rdbvault repair index`"), "{how:?} {args:?}: {err}");
        }
        assert_eq!(contents(&v), before, "{how:?}: the refused backup and prune wrote and deleted nothing");
        let (ok, report) = v.check(&[]);
        assert!(!ok && report.to_string().contains("rdbvault repair index"), "{how:?}: {report}");

        let out = v.ok(&["repair", "index"]);
        assert!(out.contains(&format!("replaced {} index files", names.len())), "{how:?}: {out}");
        v.check_passes(&["--read-data"]);
        v.ok(&["backup", "--raw", input.to_str().unwrap()]);
        for (id, data) in &snaps {
            let o = v.run(&["restore", id, "--target", "-"]);
            assert!(o.status.success() && stderr(&o).is_empty() && &o.stdout == data, "{how:?}: {}", stderr(&o));
        }
    }
}

#[test]
fn a_deleted_index_file_is_named_as_the_cause_and_repair_index_brings_it_back() {
    let (v, snaps) = three();
    damage_index(&v, Damage::Delete);
    let err = v.fails_text(&["restore", "latest", "--target", "-"]);
    assert!(err.contains("is not in the index") && err.contains("rdbvault repair index"), "{err}");
    v.ok(&["repair", "index"]);
    v.check_passes(&["--read-data"]);
    for (id, data) in &snaps {
        assert_eq!(v.try_restore(id).as_ref(), Ok(data));
    }
}

#[test]
fn a_damaged_pack_header_loses_nothing_the_index_still_describes() {
    let (v, snaps) = three();
    let packs = v.files("data");
    for pack in &packs {
        let mut b = std::fs::read(pack).unwrap();
        let at = pack_header_start(&b) + 5;
        b[at] ^= 0x55;
        std::fs::write(pack, b).unwrap();
    }
    // The index still finds every blob, and every blob is verified.
    for (id, data) in &snaps {
        assert_eq!(v.try_restore(id).as_ref(), Ok(data), "index intact, headers damaged");
    }
    let (ok, report) = v.check(&[]);
    assert!(!ok, "check names damaged headers: {report}");
    // Rebuilding the index keeps what the old index says about packs whose header is unreadable.
    let o = v.run(&["repair", "index"]);
    assert!(o.status.success(), "{}", text(&o));
    let pack = name_of(&packs[0]);
    let err = stderr(&o);
    assert!(err.contains(&format!("data/{}/{pack}: header cannot be read", &pack[..2])), "{err}");
    assert!(err.contains("kept its entries from the old index"), "{err}");
    for (id, data) in &snaps {
        assert_eq!(v.try_restore(id).as_ref(), Ok(data), "after repair index");
    }
}

#[test]
fn damaged_pack_header_and_damaged_index_name_the_pack() {
    let (v, snaps) = three();
    damage_index(&v, Damage::Flip);
    let packs = v.files("data");
    let pack = &packs[0];
    let bytes = std::fs::read(pack).unwrap();
    std::fs::write(pack, &bytes[..bytes.len() - 3]).unwrap();
    let name = name_of(pack);
    let mut failed = 0;
    for (id, data) in &snaps {
        let o = v.run(&["restore", id, "--target", "-"]);
        let err = stderr(&o);
        assert!(err.contains(&format!("data/{}/{name}: header cannot be read", &name[..2])), "{err}");
        if o.status.success() {
            assert_eq!(&o.stdout, data);
        } else {
            failed += 1;
            assert!(err.contains("is not in the index") && err.contains("rdbvault check"), "{err}");
        }
    }
    assert!(failed >= 1, "the snapshot whose data is in the unreadable pack cannot be restored");
}

#[test]
fn damaged_or_missing_key_file_and_config_are_named() {
    let (template, snaps) = three();
    for how in DAMAGE {
        let v = template.copy();
        let key = v.files("keys").remove(0);
        damage(&key, how);
        let o = v.run(&["restore", "latest", "--target", "-"]);
        assert!(!o.status.success() && o.stdout.is_empty(), "{how:?}");
        let err = stderr(&o);
        let named = match how {
            Damage::Delete => err.contains("keys/ is damaged") && err.contains("the repository has no key files"),
            _ => err.contains(&format!("keys/{}", name_of(&key))),
        };
        assert!(named, "{how:?}: {err}");

        let v = template.copy();
        damage(&v.repo.join("config"), how);
        let o = v.run(&["restore", "latest", "--target", "-"]);
        assert!(!o.status.success() && o.stdout.is_empty(), "{how:?}");
        let err = stderr(&o);
        match how {
            Damage::Delete => {
                assert_eq!(o.status.code(), Some(10), "{how:?}: {err}");
                assert!(err.contains("is not an rdbvault repository (no config file)"), "{err}");
            }
            _ => assert!(err.contains("config is damaged or was tampered with"), "{how:?}: {err}"),
        }
    }
    // A second password: a damaged first key file loses nothing.
    let v = template.copy();
    let o = v.cmd(&["key", "add"]).env("RDBVAULT_NEW_PASSWORD", "second pw").output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let first = v.files("keys").into_iter().find(|k| {
        let other = v.copy();
        std::fs::remove_file(other.repo.join("keys").join(name_of(k))).unwrap();
        !other.run_as("second pw", &["snapshots"]).status.success()
    });
    let second_key = first.expect("the key file of the second password");
    for k in v.files("keys") {
        if k != second_key {
            damage(&k, Damage::Flip);
        }
    }
    let o = v.run_as("second pw", &["restore", "latest", "--target", "-"]);
    assert!(o.status.success() && o.stdout == snaps[2].1, "{}", stderr(&o));
}

fn open(v: &Vault) -> Repository {
    Repository::open(Arc::new(LocalBackend::new(&v.repo)), PASSWORD.as_bytes()).expect("open")
}

/// A lock file left by a process that is gone (stale, so harmless while it reads).
fn with_left_lock(v: &Vault) -> PathBuf {
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let dead = child.id();
    child.wait().expect("wait");
    let name = LockInfo { pid: dead, ..LockInfo::new(false) }.save(&open(v)).expect("lock");
    v.repo.join("locks").join(name)
}

#[test]
fn a_damaged_lock_file_is_named_with_the_unlock_command() {
    for how in DAMAGE {
        let (v, snaps) = three();
        let lock = with_left_lock(&v);
        damage(&lock, how);
        let o = v.run(&["restore", "latest", "--target", "-"]);
        if let Damage::Delete = how {
            assert!(o.status.success() && o.stdout == snaps[2].1, "{how:?}: {}", stderr(&o));
            continue;
        }
        assert!(!o.status.success(), "{how:?}");
        let err = stderr(&o);
        assert!(err.contains(&format!("unreadable lock locks/{}", name_of(&lock))), "{how:?}: {err}");
        assert!(err.contains("rdbvault unlock --remove-all"), "{how:?}: {err}");
        v.ok(&["unlock", "--remove-all"]);
        assert!(v.files("locks").is_empty());
        v.check_passes(&[]);
        assert_eq!(v.try_restore("latest").as_ref(), Ok(&snaps[2].1), "{how:?}");
    }
}

#[test]
fn check_takes_a_shared_lock() {
    let (v, _) = three();
    let r = open(&v);
    // Beside a shared lock (a backup or restore), check runs.
    let shared = Lock::shared(&r).expect("shared lock");
    v.check_passes(&["--read-data"]);
    drop(shared);
    // Beside an exclusive one (a prune deleting packs), it does not.
    let exclusive = Lock::exclusive(&r).expect("exclusive lock");
    let err = v.fails_text(&["check", "--read-data"]);
    assert!(err.contains("repository is locked") && err.contains("exclusive lock held by"), "{err}");
    assert!(!err.contains("damaged"), "{err}");
    drop(exclusive);
    // And while check runs, its lock keeps a prune out.
    let held = Lock::shared(&r).expect("shared lock");
    assert!(v.fails_text(&["prune"]).contains("shared lock held by"));
    drop(held);
    v.check_passes(&[]);
    assert!(v.files("locks").is_empty(), "check removes its lock");
}

/// Runs `repair snapshots` on a terminal (through `script`), typing `answer`.
fn repair_on_a_terminal(v: &Vault, answer: &str) -> String {
    let cmd = format!("{} -r {} repair snapshots", env!("CARGO_BIN_EXE_rdbvault"), v.repo.display());
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("RDBVAULT_PASSWORD", &v.password)
        .env_remove("RDBVAULT_REPOSITORY")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run script(1)");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), answer.as_bytes()).expect("type");
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

#[test]
fn repair_snapshots_asks_on_a_terminal() {
    let (v, _) = three();
    let bad = snapshot_file(&v, &v.snapshots()[0]);
    damage(&bad, Damage::Flip);
    let out = repair_on_a_terminal(&v, "n\n");
    assert!(out.contains("remove the 1 damaged snapshot file listed above? [y/N]") && out.contains("nothing removed"), "{out}");
    assert!(bad.exists(), "answered no");
    let out = repair_on_a_terminal(&v, "y\n");
    assert!(out.contains("removed 1 damaged snapshot file;"), "{out}");
    assert!(!bad.exists(), "answered yes");
    v.check_passes(&[]);
}
