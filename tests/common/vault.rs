//! Runs the `rdbvault` binary against a temp-dir repository.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A repository in a temp dir plus the password to open it.
pub struct Vault {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub password: String,
}

impl Vault {
    /// Initializes a new repository (cheap Argon2 settings keep tests fast).
    pub fn init() -> Vault {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        let v = Vault { dir, repo, password: "correct horse".into() };
        v.ok(&["init", "--kdf-memory-kib", "8192"]);
        v
    }

    /// A command with repository and password set.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rdbvault"));
        c.arg("-r").arg(&self.repo).args(args).env("RDBVAULT_PASSWORD", &self.password);
        c.env_remove("RDBVAULT_REPOSITORY").env_remove("REDISCLI_AUTH");
        c
    }

    /// Runs and returns the output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run rdbvault")
    }

    /// Runs with extra environment variables (e.g. `REDISCLI_AUTH`), whatever the exit status.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.cmd(args).envs(env.iter().copied()).output().expect("run rdbvault")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rdbvault {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "rdbvault {args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs with `--json` and parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).expect("JSON output")
    }

    /// Backs up a file; returns the snapshot id and the backup summary.
    pub fn backup(&self, file: &Path, extra: &[&str]) -> (String, serde_json::Value) {
        let mut a = vec!["backup", file.to_str().unwrap()];
        a.extend_from_slice(extra);
        let v = self.json(&a);
        (v["snapshot_id"].as_str().unwrap().to_string(), v["summary"].clone())
    }

    /// Feeds `data` on stdin to a command.
    pub fn run_stdin(&self, args: &[&str], data: &[u8]) -> Output {
        let mut child = self.cmd(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = data.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    /// Restores a snapshot to a path and returns its bytes.
    pub fn restore(&self, snap: &str, to: &Path) -> Vec<u8> {
        self.ok(&["restore", snap, "--target", to.to_str().unwrap()]);
        std::fs::read(to).expect("restored file")
    }
}

/// Pseudo-random bytes, partly compressible (runs of text between noise).
pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x % 3 == 0 {
            out.extend_from_slice(b"key:user:profile:{\"name\":\"someone\",\"active\":true}");
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}
