//! Reading from a repository that cannot be written: a read-only mount or a full disk.
//! Reading commands fall back to no lock with a warning (or take `--no-lock` quietly);
//! commands that write refuse `--no-lock` and fail naming the cause.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::vault::{copy_dir, random_data, text, Vault};

/// A tmpfs mounted on a temp dir for one test; unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(ok.success(), "mount tmpfs on {} (tests run as root)", dir.path().display());
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Retries for a while: a child another test thread forks keeps a copy of any file this
    /// thread has open for writing until it execs, and the kernel refuses a read-only remount
    /// (busy) while one is open.
    fn remount_read_only(&self) {
        for _ in 0..100 {
            let ok = Command::new("mount").args(["-o", "remount,ro"]).arg(self.path()).status().expect("run mount");
            if ok.success() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("remount read-only of {} failed for 5 s", self.path().display());
    }

    /// Fills the file system until a write fails with "no space left".
    fn fill(&self) {
        let mut f = std::fs::File::create(self.path().join("filler")).expect("filler");
        let block = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = std::io::Write::write_all(&mut f, &block) {
                assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "filling the tmpfs");
                break;
            }
        }
        // Small files too: tmpfs may still hold a partial block.
        let _ = std::io::Write::write_all(&mut f, &[0u8; 512]);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// A repository with one backed-up snapshot, copied onto a fresh tmpfs.
fn repo_on_tmpfs(size: &str) -> (Vault, Tmpfs, PathBuf, Vec<u8>) {
    let vault = Vault::init();
    let data = random_data(7, 300_000);
    vault.backup_bytes("dump.rdb", &data);
    let fs = Tmpfs::mount(size);
    let repo = fs.path().join("repo");
    copy_dir(&vault.repo, &repo);
    (vault, fs, repo, data)
}

fn run(vault: &Vault, repo: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rdbvault"))
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("RDBVAULT_PASSWORD", &vault.password)
        .env_remove("RDBVAULT_REPOSITORY")
        .output()
        .expect("run rdbvault")
}

fn locks_in(repo: &Path) -> usize {
    std::fs::read_dir(repo.join("locks")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn restore_from_a_read_only_mount_warns_and_works() {
    let (vault, fs, repo, data) = repo_on_tmpfs("64m");
    fs.remount_read_only();
    let out_file = vault.dir.path().join("out.rdb");

    let out = run(&vault, &repo, &["restore", "latest", "--target", out_file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "restore from a read-only repository: {}", text(&out));
    assert_eq!(std::fs::read(&out_file).expect("restored"), data);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot write a lock") && err.contains("--no-lock"), "warning names the fallback: {err}");

    // --no-lock: same result, no warning.
    let again = vault.dir.path().join("again.rdb");
    let out = run(&vault, &repo, &["--no-lock", "restore", "latest", "--target", again.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"), "{}", text(&out));
    assert_eq!(std::fs::read(&again).expect("restored"), data);

    // inspect and stats read too.
    let out = run(&vault, &repo, &["--no-lock", "stats"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("snapshots:"));
}

#[test]
fn commands_that_write_refuse_no_lock_and_name_the_read_only_repository() {
    let (vault, fs, repo, _) = repo_on_tmpfs("64m");
    let input = vault.dir.path().join("new.rdb");
    std::fs::write(&input, random_data(8, 1000)).expect("input");
    fs.remount_read_only();

    let out = run(&vault, &repo, &["--no-lock", "backup", "--raw", input.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--no-lock is only for commands that read"), "{}", text(&out));
    for cmd in [&["--no-lock", "prune"][..], &["--no-lock", "forget", "--keep-last", "1"]] {
        let out = run(&vault, &repo, cmd);
        assert!(!out.status.success(), "{cmd:?}");
        assert!(text(&out).contains("--no-lock is only for commands that read"), "{cmd:?}: {}", text(&out));
    }

    let out = run(&vault, &repo, &["backup", "--raw", input.to_str().expect("utf-8")]);
    assert!(!out.status.success(), "a backup cannot go to a read-only repository");
    let msg = text(&out);
    assert!(msg.contains("Read-only file system") || msg.contains("read-only"), "names the cause: {msg}");
}

#[test]
fn restore_from_a_full_disk_warns_and_works_and_leaves_no_lock() {
    let (vault, fs, repo, data) = repo_on_tmpfs("4m");
    fs.fill();
    let out_file = vault.dir.path().join("out.rdb");
    let out = run(&vault, &repo, &["restore", "latest", "--target", out_file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "restore from a full repository disk: {}", text(&out));
    assert_eq!(std::fs::read(&out_file).expect("restored"), data);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot write a lock"), "{err}");
    assert_eq!(locks_in(&repo), 0, "no half-written lock left behind");
    // Staged lock files that could not be written are not left either.
    let leftovers: Vec<_> = std::fs::read_dir(repo.join("locks"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
