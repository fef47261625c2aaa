//! Locks and concurrency: backup and prune started together end with a
//! consistent repository; a live lock makes commands fail naming its holder;
//! stale locks are ignored and removed by `unlock`.

use crate::common;

use std::process::Stdio;
use std::sync::Arc;

use rdbvault::store::lock::{Lock, LockInfo};
use rdbvault::store::{LocalBackend, Repository};

use common::vault::{random_data, text, Vault, PASSWORD};

fn open(repo: &Vault) -> Repository {
    Repository::open(Arc::new(LocalBackend::new(&repo.repo)), PASSWORD.as_bytes()).expect("open")
}

#[test]
fn backup_and_prune_started_together_leave_a_consistent_repository() {
    let repo = Vault::init_small_packs();
    let mut expected = Vec::new();
    for i in 0..3u64 {
        let data = random_data(50 + i, 150_000);
        expected.push((repo.backup_bytes(&format!("s{i}.rdb"), &data), data));
    }
    for round in 0..4u64 {
        repo.ok(&["forget", "--keep-last", "2", "--group-by", ""]);
        expected.retain(|(id, _)| repo.snapshots().contains(id));
        let data = random_data(100 + round, 150_000);
        let file = repo.dir.path().join(format!("r{round}.rdb"));
        std::fs::write(&file, &data).expect("write");
        // Rounds 0-1 wait for the lock; rounds 2-3 fail fast if they lose.
        let retry: &[&str] = if round < 2 { &["--retry-lock", "60s"] } else { &[] };
        let spawn = |args: &[&str]| {
            repo.cmd(retry).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn")
        };
        let prune = spawn(&["prune", "--max-unused", "0%"]);
        let backup = spawn(&["--json", "backup", "--raw", file.to_str().expect("utf-8")]);
        let (p, b) = (prune.wait_with_output().expect("prune"), backup.wait_with_output().expect("backup"));
        for (name, o) in [("prune", &p), ("backup", &b)] {
            if round < 2 {
                assert!(o.status.success(), "round {round}: {name} failed: {}", text(o));
            } else if !o.status.success() {
                assert!(text(o).contains("repository is locked"), "round {round}: {name}: {}", text(o));
            }
        }
        if b.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&b.stdout).expect("json");
            expected.push((v["snapshot_id"].as_str().expect("id").to_string(), data));
        }
        let problems = repo.check_passes(&["--read-data"]);
        assert!(problems.iter().all(|p| p["severity"] == "warning"), "round {round}: {problems:?}");
        for (id, want) in &expected {
            assert_eq!(&repo.try_restore(id).unwrap_or_else(|e| panic!("round {round}: {e}")), want);
        }
        assert!(repo.files("locks").is_empty(), "round {round}: locks left behind");
    }
}

#[test]
fn live_locks_block_with_a_clear_message_and_stale_ones_do_not() {
    let repo = Vault::init_small_packs();
    let data = random_data(60, 50_000);
    let r = open(&repo);

    // A fresh exclusive lock from another host blocks a backup and names its holder.
    let foreign = LockInfo { host: "otherhost".into(), pid: 4242, ..LockInfo::new(true) };
    foreign.save(&r).expect("lock");
    std::fs::write(repo.dir.path().join("d.rdb"), &data).expect("write");
    let src = repo.dir.path().join("d.rdb");
    let msg = repo.fails_text(&["backup", src.to_str().expect("utf-8")]);
    assert!(msg.contains("repository is locked") && msg.contains("otherhost") && msg.contains("pid 4242"), "{msg}");
    assert!(msg.contains("exclusive lock"), "{msg}");
    let waited = repo.fails_text(&["--retry-lock", "1s", "prune"]);
    assert!(waited.contains("waited 1s"), "{waited}");
    repo.ok(&["unlock"]);
    assert_eq!(repo.files("locks").len(), 1, "unlock keeps live locks");
    repo.ok(&["unlock", "--remove-all"]);
    assert!(repo.files("locks").is_empty());

    // Stale: not refreshed for an hour, or a dead process on this host.
    let old = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let old = old.format(&time::format_description::well_known::Rfc3339).expect("format");
    LockInfo { host: "otherhost".into(), time: old, ..LockInfo::new(true) }.save(&r).expect("lock");
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let dead = child.id();
    child.wait().expect("wait");
    LockInfo { pid: dead, ..LockInfo::new(true) }.save(&r).expect("lock");
    let id = repo.backup_bytes("d.rdb", &data);
    repo.ok(&["prune"]);
    assert_eq!(repo.try_restore(&id).expect("restore"), data);
    assert!(repo.ok(&["unlock"]).contains("removed 2 stale locks"));
    assert!(repo.files("locks").is_empty());

    // Shared locks coexist; an exclusive one waits for them.
    let shared = Lock::shared(&r).expect("shared lock");
    assert!(!shared.is_exclusive());
    repo.backup_bytes("d.rdb", &data);
    assert_eq!(repo.try_restore(&id).expect("restore under a shared lock"), data);
    let msg = repo.fails_text(&["prune"]);
    assert!(msg.contains("shared lock held by"), "{msg}");
    assert!(Lock::exclusive(&r).is_err());
    drop(shared);
    assert!(repo.files("locks").is_empty(), "the guard removes its lock");
    let exclusive = Lock::exclusive(&r).expect("exclusive lock");
    assert!(exclusive.require_exclusive("test").is_ok());
    assert!(repo.fails_text(&["restore", &id, "-t", "-"]).contains("exclusive lock held by"));
}

#[test]
fn a_backup_refused_by_a_lock_writes_nothing() {
    // The input is read and hashed while the lock is taken: a refusal must still leave the
    // repository as it was (no pack, no index, no dictionary, no staged file), for a file
    // and for standard input.
    let repo = Vault::init_small_packs();
    let r = open(&repo);
    let before: Vec<_> = ["data", "index", "snapshots"].iter().map(|f| repo.files(f)).collect();
    LockInfo { host: "otherhost".into(), pid: 4242, ..LockInfo::new(true) }.save(&r).expect("lock");
    let src = repo.dir.path().join("big.rdb");
    std::fs::write(&src, common::vault::test_bytes(12 << 20, 7)).expect("write");
    let msg = repo.fails_text(&["backup", "--raw", src.to_str().expect("utf-8")]);
    assert!(msg.contains("repository is locked") && msg.contains("otherhost"), "{msg}");
    let out = repo.cmd(&["backup", "--raw", "--stdin"]).stdin(std::fs::File::open(&src).expect("open")).output().expect("run");
    assert!(!out.status.success() && text(&out).contains("repository is locked"), "{}", text(&out));
    let after: Vec<_> = ["data", "index", "snapshots"].iter().map(|f| repo.files(f)).collect();
    assert_eq!(before, after, "a refused backup wrote to the repository");
    assert_eq!(repo.files("locks").len(), 1, "only the foreign lock is left");

    // Once the lock is gone the same backup goes through and restores.
    repo.ok(&["unlock", "--remove-all"]);
    let id = repo.backup_bytes("big.rdb", &std::fs::read(&src).expect("read"));
    assert_eq!(repo.try_restore(&id).expect("restore"), std::fs::read(&src).expect("read"));
}
