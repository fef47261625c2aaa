//! A repository whose disk fills up during a backup, on a local tmpfs and on an SFTP
//! server whose directory sits on one: the backup fails with one clear line naming the
//! full disk, no snapshot references anything half-written, `check` passes, and the next
//! backup completes once there is space again. A restore onto a full disk fails before it
//! decodes anything.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::net::Sshd;
use common::vault::{random_data, text, Vault, PACK_TARGET};

/// A small tmpfs mounted on `dir` for one test; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).status().expect("run mount");
        assert!(ok.success(), "mount tmpfs on {} (tests run as root)", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    /// Makes room: the same files, a larger file system.
    fn grow(&self, size: &str) {
        let ok = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).status().expect("run mount");
        assert!(ok.success(), "remount {} with size={size}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the repository's disk with a backup, then checks what is left and that the
/// next backup works after `fs` grows.
fn fill_then_recover(v: &Vault, fs: &Tmpfs, full_disk: &str) {
    let small = random_data(1, 200_000);
    let first = v.backup_bytes("small.bin", &small);
    let big = random_data(2, 6_000_000);
    let input = v.dir.path().join("big.bin");
    std::fs::write(&input, &big).expect("input");
    let out = v.run(&["backup", "--raw", input.to_str().expect("utf-8")]);
    let df = Command::new("df").arg(&fs.0).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    assert!(!out.status.success(), "a backup larger than the disk fails: {} {df}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // The error is one line (a count of retried requests may come before it).
    let err: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("retried ")).collect();
    assert_eq!(err.len(), 1, "one line: {stderr}");
    let err = err[0];
    assert!(err.contains(full_disk), "names the full disk: {err}");
    assert_eq!(v.snapshots(), [first.clone()], "no snapshot of the failed backup");
    v.check_passes(&["--read-data"]);
    assert!(v.try_restore(&first).expect("restore") == small);

    fs.grow("64m");
    let second = v.backup_bytes("big.bin", &big);
    assert!(v.try_restore(&second).expect("restore") == big, "{}", text(&v.run(&["snapshots"])));
    v.check_passes(&["--read-data"]);
}

#[test]
fn local_full_disk_mid_backup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = Tmpfs::mount(&dir.path().join("disk"), "3m");
    let repo = dir.path().join("disk/repo");
    let v = Vault::init_remote(repo.to_str().expect("utf-8"), Vec::new(), Some(PACK_TARGET));
    fill_then_recover(&v, &fs, "No space left on device");
}

#[test]
fn sftp_full_disk_mid_backup() {
    let sshd = Sshd::start();
    let fs = Tmpfs::mount(&sshd.repo_dir("disk"), "3m");
    let url = format!("sftp://root@127.0.0.1:{}{}", sshd.port, sshd.repo_dir("disk").join("repo").display());
    let v = Vault::init_remote(&url, sshd.client_env(sshd.port), Some(PACK_TARGET));
    fill_then_recover(&v, &fs, "full disk");
    let temps: Vec<_> = walk(&sshd.repo_dir("disk/repo")).into_iter().filter(|n| n.starts_with('.')).collect();
    assert!(temps.is_empty(), "temp files left on the server: {temps:?}");
}

/// Every file name under `dir`.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// A restore onto a disk too small for the file fails before it decodes anything, in one line
/// naming the file and the full disk, leaves no temp file, and succeeds once there is room;
/// in output order (a local repository's default) and in pack order alike.
#[test]
fn restore_to_a_full_disk() {
    let v = Vault::init();
    let big = random_data(3, 6_000_000);
    let id = v.backup_bytes("big.bin", &big);
    let fs = Tmpfs::mount(&v.dir.path().join("target"), "3m");
    let target = fs.0.join("big.bin");
    let target = target.to_str().expect("utf-8");
    for order in [&["--order", "output"][..], &["--order", "pack"][..]] {
        let mut args = vec!["restore", &id, "--target", target];
        args.extend_from_slice(order);
        let out = v.run(&args);
        assert!(!out.status.success(), "a restore larger than its disk fails ({order:?}): {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(stderr.lines().count(), 1, "one line ({order:?}): {stderr}");
        assert!(stderr.contains("make room for restored big.bin (6000000 bytes)") && stderr.contains("No space left on device"), "names the file and the full disk: {stderr}");
        assert!(walk(&fs.0).is_empty(), "nothing left on the target's disk: {:?}", walk(&fs.0));
    }
    fs.grow("8m");
    assert!(v.restore(&id, Path::new(target)) == big, "restored once there is room");
}
