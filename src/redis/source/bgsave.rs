//! `--mode bgsave`: have the server write its RDB, wait for it, then stream the file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::command;
use super::error::{Result, SourceError};
use super::info::{self, ServerInfo};
use super::transport::ConnectOptions;
use super::url::RedisUrl;
use super::{LiveSource, SourceInfo, SourceKind, RDB_STREAM_NAME};

/// How long to wait for BGSAVE and how often to ask.
#[derive(Clone, Debug)]
pub struct BgsaveOptions {
    /// Give up if the save has not finished by then.
    pub timeout: Duration,
    /// Pause between `INFO persistence` polls.
    pub poll_interval: Duration,
}

impl Default for BgsaveOptions {
    fn default() -> Self {
        BgsaveOptions { timeout: Duration::from_secs(3600), poll_interval: Duration::from_millis(200) }
    }
}

/// How far the file's mtime may lie from `rdb_last_save_time`: the child's last write
/// comes a moment before the server records the save (whole seconds, once it reaped the
/// child), and a server disk seen over a network file system is stamped by another clock.
/// A file from any earlier save (the previous backup, minutes or hours ago) lies far outside.
pub const MTIME_TOLERANCE_SECS: u64 = 30;

/// The server's key count when the save finished, to check the file's own count against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyCheck {
    /// Where the server is.
    pub addr: String,
    /// The file checked.
    pub path: PathBuf,
    /// Keys in all databases (`INFO keyspace`) just after the save.
    pub server_keys: u64,
    /// How many keys may have come or gone since the fork: writes counted by
    /// `rdb_changes_since_last_save` (each creates or deletes at most that many keys)
    /// plus keys expired or evicted meanwhile (`INFO stats`, which that counter leaves out).
    pub tolerance: u64,
    /// The file is the one that was there before BGSAVE: the server did not write it.
    pub not_replaced: bool,
    /// Where the server says it writes (`; the server writes DIR/FILE`), or empty.
    pub hint: String,
}

impl KeyCheck {
    /// Fails with [`SourceError::WrongRdbFile`] if a file holding `file_keys` keys cannot be
    /// what the server saved (its key count is off, or the save did not replace it).
    pub fn verify(&self, file_keys: u64) -> Result<()> {
        let why = if file_keys.abs_diff(self.server_keys) > self.tolerance {
            format!(
                "it holds {file_keys} keys, the server {} when its save finished (at most {} changed meanwhile)",
                self.server_keys, self.tolerance
            )
        } else if self.not_replaced {
            "the BGSAVE that just finished did not replace it".to_string()
        } else {
            return Ok(());
        };
        Err(SourceError::WrongRdbFile { path: self.path.clone(), addr: self.addr.clone(), why: format!("{why}{}", self.hint) })
    }
}

/// Keys the server removed on its own so far (expired + evicted), which writes do not count.
fn removed_keys(stats: &ServerInfo) -> u64 {
    stats.get_u64("expired_keys").unwrap_or(0) + stats.get_u64("evicted_keys").unwrap_or(0)
}

/// Run a fresh BGSAVE (waiting out one already running) and return INFO after it succeeded,
/// with the key count the saved file should have.
pub fn run(url: &RedisUrl, opts: &ConnectOptions, wait: &BgsaveOptions, rdb_path: &Path) -> Result<(ServerInfo, KeyCheck)> {
    let addr = url.addr();
    let mut con = command::connect(url, opts)?;
    let deadline = Instant::now() + wait.timeout;
    let fail = |msg: String| SourceError::Bgsave { addr: addr.clone(), msg };
    let (before, removed_before) = loop {
        let before = info::persistence(&mut con, &addr)?;
        let stats = ServerInfo::parse(&command::text(&mut con, &addr, &["INFO", "stats"])?);
        match command::text(&mut con, &addr, &["BGSAVE"]) {
            Ok(_) => break (before, removed_keys(&stats)),
            Err(SourceError::Server { reply, .. }) if reply.contains("already in progress") || reply.contains("rewriting in progress") => {
                // Someone else's save started before our request: wait for it, then save again.
                if Instant::now() >= deadline {
                    return Err(fail(format!("another save was still running after {:?}", wait.timeout)));
                }
                std::thread::sleep(wait.poll_interval);
            }
            Err(e) => return Err(e),
        }
    };
    let saves_before = before.get_u64("rdb_saves");
    let time_before = before.last_save_time();
    loop {
        std::thread::sleep(wait.poll_interval);
        let now = info::persistence(&mut con, &addr)?;
        if !now.bgsave_in_progress() {
            if now.last_bgsave_status() != Some("ok") {
                return Err(fail(format!("rdb_last_bgsave_status is {:?}; see the server log", now.last_bgsave_status().unwrap_or("missing"))));
            }
            let advanced = match (saves_before, now.get_u64("rdb_saves")) {
                (Some(b), Some(n)) => n > b,
                _ => now.last_save_time() > time_before,
            };
            if advanced {
                // Keyspace first: the change counters read after it cover every change before it.
                let mut all = info::fetch_with(&mut con, &addr)?;
                all.merge(&command::text(&mut con, &addr, &["INFO", "persistence"])?);
                all.merge(&command::text(&mut con, &addr, &["INFO", "stats"])?);
                let changes = all.get_u64("rdb_changes_since_last_save").unwrap_or(0);
                let check = KeyCheck {
                    addr: addr.clone(),
                    path: rdb_path.to_path_buf(),
                    server_keys: all.keys_per_db.values().sum(),
                    tolerance: changes + removed_keys(&all).saturating_sub(removed_before),
                    not_replaced: false,
                    hint: String::new(),
                };
                return Ok((all, check));
            }
        }
        if Instant::now() >= deadline {
            return Err(fail(format!("save did not finish within {:?}", wait.timeout)));
        }
    }
}

/// Seconds since the epoch of a file time (0 if before it).
fn unix_secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Refuses a file whose mtime is far from the server's `rdb_last_save_time`.
fn check_mtime(url: &RedisUrl, opts: &ConnectOptions, rdb_path: &Path, meta: &std::fs::Metadata, last_save: Option<u64>) -> Result<()> {
    let mtime = meta.modified().map(unix_secs).ok();
    match (mtime, last_save) {
        (Some(m), Some(l)) if m.abs_diff(l) > MTIME_TOLERANCE_SECS => Err(SourceError::WrongRdbFile {
            path: rdb_path.to_path_buf(),
            addr: url.addr(),
            why: format!(
                "it was last written {} s {} the server's save finished (file mtime {m}, rdb_last_save_time {l}){}",
                m.abs_diff(l),
                if m < l { "before" } else { "after" },
                saved_hint(url, opts)
            ),
        }),
        _ => Ok(()),
    }
}

/// Whether the file is still the one that was there before BGSAVE (same inode, mtime and size):
/// the server renames its new file over the old, so the file it saved is always a new one.
fn not_replaced(before: Option<&std::fs::Metadata>, after: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    before.is_some_and(|b| b.ino() == after.ino() && b.dev() == after.dev() && b.mtime() == after.mtime() && b.size() == after.size())
}

/// `; the server writes DIR/FILE`, from `CONFIG GET` when the user may ask (else nothing).
fn saved_hint(url: &RedisUrl, opts: &ConnectOptions) -> String {
    let get = |con: &mut redis::Connection, name: &str| -> Option<String> {
        let v: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(con).ok()?;
        v.into_iter().nth(1)
    };
    let Ok(mut con) = command::connect(url, opts) else { return String::new() };
    match (get(&mut con, "dir"), get(&mut con, "dbfilename")) {
        (Some(dir), Some(file)) => format!("; the server writes {}", Path::new(&dir).join(file).display()),
        _ => String::new(),
    }
}

/// BGSAVE, then open `rdb_path` (the server's `dir`/`dbfilename`, as seen from here) as `dump.rdb`,
/// after checking it is the file the save wrote; the key count is checked as it is read ([`KeyCheck`]).
pub fn open(url: &RedisUrl, opts: &ConnectOptions, rdb_path: &Path, wait: &BgsaveOptions) -> Result<LiveSource> {
    let before = std::fs::metadata(rdb_path).ok();
    let (server, check) = run(url, opts, wait, rdb_path)?;
    let file_err = |source| SourceError::File { path: rdb_path.to_path_buf(), source };
    let mut file = std::fs::File::open(rdb_path).map_err(file_err)?;
    let meta = file.metadata().map_err(file_err)?;
    check_mtime(url, opts, rdb_path, &meta, server.last_save_time())?;
    let check = KeyCheck { not_replaced: not_replaced(before.as_ref(), &meta), hint: saved_hint(url, opts), ..check };
    // The server renames a finished temp file over dump.rdb, so this handle stays consistent.
    let mut head = [0u8; 9];
    let rdb_version = match std::io::Read::read_exact(&mut file, &mut head) {
        Ok(()) if head.starts_with(b"REDIS") => std::str::from_utf8(&head[5..]).ok().and_then(|v| v.parse().ok()),
        Ok(()) | Err(_) => {
            return Err(SourceError::Bgsave { addr: url.addr(), msg: format!("{} is not an RDB file", rdb_path.display()) })
        }
    };
    std::io::Seek::rewind(&mut file).map_err(file_err)?;
    let mut info = SourceInfo::from_server(SourceKind::Bgsave, url, &server);
    info.path = Some(rdb_path.display().to_string());
    info.rdb_version = rdb_version;
    info.snapshot_time_ms = server.last_save_time().map(|s| s * 1000);
    let stream: Box<dyn std::io::Read + Send> = crate::store::direct::sequential(file);
    Ok(LiveSource { info, streams: vec![(RDB_STREAM_NAME.to_string(), stream)], key_check: Some(check) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_count_tolerance_is_the_changes_during_the_save() {
        let c = KeyCheck { addr: "h:1".into(), path: "/x".into(), server_keys: 100, tolerance: 5, not_replaced: false, hint: String::new() };
        assert!(c.verify(95).is_ok() && c.verify(105).is_ok());
        let e = c.verify(200).unwrap_err().to_string();
        assert!(e.contains("it holds 200 keys, the server 100 when its save finished (at most 5 changed meanwhile)"), "{e}");
        let stale = KeyCheck { not_replaced: true, ..c };
        assert!(stale.verify(100).unwrap_err().to_string().contains("did not replace it"));
    }
}
