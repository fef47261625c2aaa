//! Crash safety: the process is aborted at every repository write and delete
//! of a backup and of a prune (before and after each takes effect, via
//! `RDBVAULT_FAILPOINT`); afterwards `check` passes, every remaining snapshot
//! restores byte-identical, and the next run completes.

use crate::common;

use std::os::unix::process::ExitStatusExt;
use std::time::Instant;

use common::vault::{random_data, Vault};

/// Runs `args` on a copy of `template` with a failpoint; `None` once the command completes.
fn run_killed(template: &Vault, args: &[&str], failpoint: &str) -> Option<Vault> {
    let repo = template.copy();
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    for a in args.iter_mut() {
        *a = a.replace("{dir}", template.dir.path().to_str().expect("utf-8"));
    }
    let out = repo.run_failpoint(&args.iter().map(String::as_str).collect::<Vec<_>>(), failpoint);
    if out.status.success() {
        return None;
    }
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{args:?} at {failpoint} failed without the failpoint: {}", common::vault::text(&out));
    Some(repo)
}

/// Every failpoint of a command, before and after each operation, until it completes.
/// `after_each` gets the killed repository, the failpoint, and whether to do
/// the slower follow-up checks (every third point, to keep the test fast).
fn kill_points(template: &Vault, args: &[&str], mut after_each: impl FnMut(&Vault, &str, bool)) -> usize {
    let mut points = 0;
    for stage in ["before-op", "after-op"] {
        for n in 1.. {
            let fp = format!("{stage}:{n}");
            let Some(repo) = run_killed(template, args, &fp) else { break };
            points += 1;
            after_each(&repo, &fp, points % 3 == 1);
        }
    }
    points
}

/// Snapshot ids straight from the directory listing (cheaper than a process).
fn snapshot_ids(repo: &Vault) -> Vec<String> {
    repo.files("snapshots").iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).filter(|n| !n.starts_with('.')).collect()
}

#[test]
fn backup_killed_at_every_write_loses_nothing() {
    let started = Instant::now();
    let template = Vault::init_small_packs();
    let a = random_data(1, 300_000);
    let mut b = a.clone();
    b[100_000..250_000].copy_from_slice(&random_data(2, 150_000));
    b.extend_from_slice(&random_data(3, 200_000));
    let first = template.backup_bytes("a.rdb", &a);
    std::fs::write(template.dir.path().join("b.rdb"), &b).expect("write b");

    let points = kill_points(&template, &["backup", "--raw", "{dir}/b.rdb"], |repo, fp, follow_up| {
        let warnings = repo.check_passes(&["--read-data"]);
        assert!(warnings.iter().all(|w| w["severity"] == "warning"), "{fp}: {warnings:?}");
        for id in snapshot_ids(repo) {
            let want = if id == first { &a } else { &b };
            assert_eq!(&repo.try_restore(&id).unwrap_or_else(|e| panic!("{fp}: restore {id}: {e}")), want, "{fp}");
        }
        if !follow_up {
            return;
        }
        // The next backup adopts what the killed one left and completes.
        let id = repo.backup_bytes("b.rdb", &b);
        assert_eq!(repo.try_restore(&id).expect("restore after retry"), b, "{fp}");
        repo.check_passes(&[]);
    });
    eprintln!("backup: {points} kill points in {:.1}s", started.elapsed().as_secs_f64());
    assert!(points >= 20, "only {points} kill points");
}

#[test]
fn prune_killed_at_every_write_and_delete_loses_nothing() {
    let started = Instant::now();
    let template = Vault::init_small_packs();
    let a = random_data(11, 200_000);
    let mut b = a.clone();
    b[50_000..150_000].copy_from_slice(&random_data(12, 100_000));
    let c = random_data(13, 80_000);
    template.backup_bytes("a.rdb", &a);
    let kept_b = template.backup_bytes("b.rdb", &b);
    let kept_c = template.backup_bytes("c.rdb", &c);
    // Forget a: its unique chunks become garbage, packs it shares with b get repacked.
    template.ok(&["forget", "--keep-last", "2", "--group-by", ""]);

    let points = kill_points(&template, &["prune", "--max-unused", "0%"], |repo, fp, follow_up| {
        repo.check_passes(&[]);
        assert_eq!(snapshot_ids(repo).len(), 2, "{fp}");
        assert_eq!(repo.try_restore(&kept_b).unwrap_or_else(|e| panic!("{fp}: {e}")), b, "{fp}");
        assert_eq!(repo.try_restore(&kept_c).unwrap_or_else(|e| panic!("{fp}: {e}")), c, "{fp}");
        if !follow_up {
            return;
        }
        // A second prune finishes the job and leaves nothing to warn about.
        repo.ok(&["prune", "--max-unused", "0%"]);
        let left = repo.check_passes(&["--read-data"]);
        assert!(left.is_empty(), "{fp}: after a full prune: {left:?}");
        assert_eq!(repo.try_restore(&kept_b).expect("restore b after prune"), b, "{fp}");
    });
    eprintln!("prune: {points} kill points in {:.1}s", started.elapsed().as_secs_f64());
    assert!(points >= 20, "only {points} kill points");
}

#[test]
fn a_write_that_fails_mid_pack_leaves_a_consistent_repository() {
    use std::os::unix::process::CommandExt;
    let repo = Vault::init();
    let first = random_data(7, 300_000);
    let first_id = repo.backup_bytes("a.rdb", &first);
    let big = random_data(8, 3_000_000);
    let path = repo.dir.path().join("big.rdb");
    std::fs::write(&path, &big).expect("write input");

    // No file may grow past 1 MiB, as on a disk that fills up while a pack is
    // being written (the error is EFBIG instead of ENOSPC; the path is the same).
    let mut cmd = repo.cmd(&["backup", "--raw", path.to_str().expect("utf-8")]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit { rlim_cur: 1 << 20, rlim_max: 1 << 20 };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run rdbvault");
    let msg = common::vault::text(&out);
    assert!(!out.status.success(), "the backup must fail: {msg}");
    assert!(msg.contains("data/.staged.tmp-") && msg.contains("File too large"), "names the file and the cause: {msg}");

    // Nothing half-written stays behind, no snapshot appeared, and the repository checks clean.
    let leftovers: Vec<_> = std::fs::read_dir(repo.repo.join("data"))
        .expect("data dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staged files left: {leftovers:?}");
    assert_eq!(repo.snapshots().len(), 1);
    assert!(repo.check_passes(&["--read-data"]).is_empty());
    assert_eq!(repo.try_restore(&first_id).expect("restore the earlier snapshot"), first);

    // With room again, the same backup completes and restores.
    let id = repo.backup_bytes("big.rdb", &big);
    assert_eq!(repo.try_restore(&id).expect("restore"), big);
}
