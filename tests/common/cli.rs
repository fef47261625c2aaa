//! Driving the built `rdbvault` binary against throw-away repositories.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::{RngCore, SeedableRng};

/// Password every test repository uses.
pub const PASSWORD: &str = "test password";
/// Small packs, so little data gives many packs (and many kill points).
pub const PACK_TARGET: &str = "32768";

/// A temporary directory, on tmpfs when there is one (fsync is what makes
/// repository writes slow, and these tests do thousands of them).
pub fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

/// A repository in a temporary directory.
pub struct TestRepo {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

/// `rdbvault` with the test password, small packs and `-r path`.
pub fn command(repo: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rdbvault"));
    c.env("RDBVAULT_PASSWORD", PASSWORD)
        .env("RDBVAULT_PACK_TARGET", PACK_TARGET)
        .env_remove("RDBVAULT_FAILPOINT")
        .env_remove("RDBVAULT_REPOSITORY")
        .arg("-r")
        .arg(repo);
    c
}

/// Output as one string (stdout then stderr), for message checks.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

impl TestRepo {
    /// A fresh repository with a cheap KDF.
    pub fn init() -> TestRepo {
        let dir = tempdir();
        let path = dir.path().join("repo");
        let r = TestRepo { dir, path };
        r.ok(&["init", "--kdf-memory-kib", "8192"]);
        r
    }

    /// A copy of this repository in a new temporary directory.
    pub fn copy(&self) -> TestRepo {
        let dir = tempdir();
        let path = dir.path().join("repo");
        copy_dir(&self.path, &path);
        TestRepo { dir, path }
    }

    /// Runs a command and returns its output whatever the status.
    pub fn run(&self, args: &[&str]) -> Output {
        command(&self.path).args(args).output().expect("run rdbvault")
    }

    /// Runs a command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "rdbvault {args:?} failed: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs a command that must fail; returns stdout and stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(!o.status.success(), "rdbvault {args:?} should have failed: {}", text(&o));
        text(&o)
    }

    /// Writes `data` to a file in the temp dir and backs it up; returns the snapshot id.
    pub fn backup(&self, name: &str, data: &[u8]) -> String {
        let file = self.dir.path().join(name);
        std::fs::write(&file, data).expect("write source");
        let out = self.ok(&["--json", "backup", file.to_str().expect("utf-8 path")]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("backup json");
        v["snapshot_id"].as_str().expect("snapshot id").to_string()
    }

    /// Restores a snapshot to a fresh path; returns the bytes, or the error text.
    pub fn restore(&self, id: &str) -> Result<Vec<u8>, String> {
        let target = self.dir.path().join(format!("restored-{}", rand::random::<u64>()));
        let o = self.run(&["restore", id, "-t", target.to_str().expect("utf-8 path")]);
        if o.status.success() {
            Ok(std::fs::read(&target).expect("read restored"))
        } else {
            assert!(!target.exists(), "a failed restore left {}", target.display());
            Err(text(&o))
        }
    }

    /// Snapshot ids, oldest first.
    pub fn snapshots(&self) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["--json", "snapshots"])).expect("snapshots json");
        v.as_array().expect("array").iter().map(|s| s["id"].as_str().expect("id").to_string()).collect()
    }

    /// `check` as JSON (status, parsed report).
    pub fn check(&self, extra: &[&str]) -> (bool, serde_json::Value) {
        let mut args = vec!["--json", "check"];
        args.extend_from_slice(extra);
        let o = self.run(&args);
        let v = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
        (o.status.success(), v)
    }

    /// Asserts `check` passes; returns the problems it still reports (warnings).
    pub fn check_passes(&self, extra: &[&str]) -> Vec<serde_json::Value> {
        let (ok, v) = self.check(extra);
        assert!(ok, "check failed: {v:#}");
        v["problems"].as_array().cloned().unwrap_or_default()
    }

    /// Bytes of all files in the repository directory.
    pub fn size(&self) -> u64 {
        dir_size(&self.path)
    }

    /// Every file (relative path) in the repository of a kind's folder.
    pub fn files(&self, folder: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.path.join(folder), &mut out);
        out.sort();
        out
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Sum of file sizes under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.iter().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum()
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

/// Deterministic incompressible bytes.
pub fn random_data(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}
