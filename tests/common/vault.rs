//! Runs the `rdbvault` binary against a temp-dir repository.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rand::{RngCore, SeedableRng};

use super::data::Rng;

/// Password of every test repository.
pub const PASSWORD: &str = "correct horse";
/// Pack target of [`Vault::init_small_packs`]: little data gives many packs (and many kill points).
pub const PACK_TARGET: &str = "32768";

/// A repository in a temp dir plus the password to open it.
pub struct Vault {
    /// Temp dir holding the repository and the tests' input/output files.
    pub dir: tempfile::TempDir,
    /// The repository directory (`-r`).
    pub repo: PathBuf,
    /// Password passed as `RDBVAULT_PASSWORD`.
    pub password: String,
    /// Pack target passed as `RDBVAULT_PACK_TARGET`, when not the default.
    pack_target: Option<&'static str>,
    /// Extra environment for every command (credentials of a network repository, PATH).
    pub env: Vec<(String, String)>,
}

impl Vault {
    /// Initializes a new repository (cheap Argon2 settings keep tests fast).
    pub fn init() -> Vault {
        Self::init_in(tempfile::tempdir().expect("tempdir"), None)
    }

    /// A repository on tmpfs with small packs: for maintenance tests that do thousands of
    /// fsynced writes and need many packs from little data.
    pub fn init_small_packs() -> Vault {
        Self::init_in(tmpfs_tempdir(), Some(PACK_TARGET))
    }

    fn init_in(dir: tempfile::TempDir, pack_target: Option<&'static str>) -> Vault {
        let repo = dir.path().join("repo");
        let v = Vault { dir, repo, password: PASSWORD.into(), pack_target, env: Vec::new() };
        v.ok(&["init", "--kdf-memory-kib", "8192"]);
        v
    }

    /// Initializes a repository at a URL (`s3:...`, `sftp:...`) with `env` set for every
    /// command; small packs (`pack_target`) give many uploads from little data.
    pub fn init_remote(url: &str, env: Vec<(String, String)>, pack_target: Option<&'static str>) -> Vault {
        Self::init_remote_with(url, env, pack_target, &[])
    }

    /// [`Self::init_remote`] with more `init` options.
    pub fn init_remote_with(url: &str, env: Vec<(String, String)>, pack_target: Option<&'static str>, init: &[&str]) -> Vault {
        let v = Vault { dir: tempfile::tempdir().expect("tempdir"), repo: url.into(), password: PASSWORD.into(), pack_target, env };
        v.ok(&[&["init", "--kdf-memory-kib", "8192"], init].concat());
        v
    }

    /// A copy of the repository in `tests/fixtures/NAME` (written by an older version, with
    /// the tests' password and Argon2 settings).
    pub fn from_fixture(name: &str) -> Vault {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name), &repo);
        // git keeps neither empty folders nor modes.
        for d in ["locks", "keys", "index", "snapshots", "data"] {
            std::fs::create_dir_all(repo.join(d)).expect("mkdir");
        }
        Vault { dir, repo, password: PASSWORD.into(), pack_target: None, env: Vec::new() }
    }

    /// A copy of this repository (same settings) in a new temp dir, to damage or kill into.
    pub fn copy(&self) -> Vault {
        let dir = if self.pack_target.is_some() { tmpfs_tempdir() } else { tempfile::tempdir().expect("tempdir") };
        let repo = dir.path().join("repo");
        copy_dir(&self.repo, &repo);
        Vault { dir, repo, password: self.password.clone(), pack_target: self.pack_target, env: self.env.clone() }
    }

    /// A command with repository and password set.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rdbvault"));
        c.arg("-r").arg(&self.repo).args(args).env("RDBVAULT_PASSWORD", &self.password);
        c.env_remove("RDBVAULT_REPOSITORY").env_remove("RDBVAULT_FAILPOINT").env_remove("REDISCLI_AUTH");
        if let Some(t) = self.pack_target {
            c.env("RDBVAULT_PACK_TARGET", t);
        }
        // Network repositories keep their cache in the test's own dir, never in ~/.cache.
        c.env("XDG_CACHE_HOME", self.dir.path().join("cache"));
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Runs with `RDBVAULT_FAILPOINT` set, so the process aborts at that repository operation.
    pub fn run_failpoint(&self, args: &[&str], failpoint: &str) -> Output {
        self.cmd(args).env("RDBVAULT_FAILPOINT", failpoint).output().expect("run rdbvault")
    }

    /// Runs with another password than the repository's own.
    pub fn run_as(&self, password: &str, args: &[&str]) -> Output {
        self.cmd(args).env("RDBVAULT_PASSWORD", password).output().expect("run rdbvault")
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

    /// Backs up `data` from stdin, recorded under `name`, with extra options; returns the snapshot id.
    pub fn backup_stdin(&self, name: &str, data: &[u8], extra: &[&str]) -> String {
        let mut args = vec!["--json", "backup", "--stdin", "--stdin-name", name];
        args.extend_from_slice(extra);
        let o = self.run_stdin(&args, data);
        assert!(o.status.success(), "backup failed: {}", String::from_utf8_lossy(&o.stderr));
        let out: serde_json::Value = serde_json::from_slice(&o.stdout).expect("backup JSON");
        out["snapshot_id"].as_str().expect("snapshot_id").to_string()
    }

    /// Restores a snapshot to a path and returns its bytes.
    pub fn restore(&self, snap: &str, to: &Path) -> Vec<u8> {
        self.ok(&["restore", snap, "--target", to.to_str().unwrap()]);
        std::fs::read(to).expect("restored file")
    }

    /// Runs, asserts failure, returns stdout then stderr (for messages that may be on either).
    pub fn fails_text(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(!o.status.success(), "rdbvault {args:?} should have failed: {}", text(&o));
        text(&o)
    }

    /// Writes `data` (any bytes: `--raw`) to a file in the temp dir and backs it up; returns the snapshot id.
    pub fn backup_bytes(&self, name: &str, data: &[u8]) -> String {
        let file = self.dir.path().join(name);
        std::fs::write(&file, data).expect("write source");
        self.backup(&file, &["--raw"]).0
    }

    /// Restores a snapshot to a fresh path; the bytes, or the error text (and no file left).
    pub fn try_restore(&self, id: &str) -> Result<Vec<u8>, String> {
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
        let v = self.json(&["snapshots"]);
        v.as_array().expect("array").iter().map(|s| s["id"].as_str().expect("id").to_string()).collect()
    }

    /// `check` as JSON: (success, parsed report or null).
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
        dir_size(&self.repo)
    }

    /// Every file under one of the repository's folders (`data`, `index`, `locks`...), sorted.
    pub fn files(&self, folder: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.repo.join(folder), &mut out);
        out.sort();
        out
    }

    /// Flips a byte inside the sealed frame of blob `id` (hex) in its pack.
    pub fn tamper_blob(&self, id: &str) {
        let mut found = false;
        for pack in self.files("data") {
            let name = pack.file_name().expect("name").to_string_lossy().into_owned();
            let header = self.json(&["cat", "pack", &name]);
            for blob in header["blobs"].as_array().expect("blobs") {
                if blob["id"] == id {
                    let mut bytes = std::fs::read(&pack).expect("read pack");
                    let at = blob["offset"].as_u64().expect("offset") as usize + 20;
                    bytes[at] ^= 0x01;
                    let mut perms = std::fs::metadata(&pack).expect("meta").permissions();
                    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
                    std::fs::set_permissions(&pack, perms).expect("chmod");
                    std::fs::write(&pack, bytes).expect("write pack");
                    found = true;
                }
            }
        }
        assert!(found, "blob {id} is in a pack");
    }
}

/// A temp dir on tmpfs when there is one (fsync is what makes repository writes slow).
pub fn tmpfs_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

/// Output as one string (stdout then stderr), for message checks.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
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

/// Deterministic incompressible bytes (so dedup, not compression, decides what is stored).
pub fn random_data(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Pseudo-random bytes, partly compressible (runs of text between noise).
pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let x = rng.next();
        if x % 3 == 0 {
            out.extend_from_slice(b"key:user:profile:{\"name\":\"someone\",\"active\":true}");
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

/// Where a pack's header starts (its blobs lie before it): the pack ends with the header's length.
pub fn pack_header_start(pack: &[u8]) -> usize {
    let n = pack.len();
    let hlen = u32::from_le_bytes([pack[n - 4], pack[n - 3], pack[n - 2], pack[n - 1]]) as usize;
    n - 4 - hlen
}

/// A small RDB file from `tests/fixtures/rdb`.
pub fn rdb_fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rdb").join(name)).expect("fixture")
}
