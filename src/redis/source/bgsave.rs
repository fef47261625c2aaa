//! `--mode bgsave`: have the server write its RDB, wait for it, then stream the file.

use std::path::Path;
use std::time::{Duration, Instant};

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

/// Run a fresh BGSAVE (waiting out one already running) and return INFO after it succeeded.
pub fn run(url: &RedisUrl, opts: &ConnectOptions, wait: &BgsaveOptions) -> Result<ServerInfo> {
    let addr = url.addr();
    let mut con = command::connect(url, opts)?;
    let deadline = Instant::now() + wait.timeout;
    let fail = |msg: String| SourceError::Bgsave { addr: addr.clone(), msg };
    let before = loop {
        let before = info::persistence(&mut con, &addr)?;
        match command::text(&mut con, &addr, &["BGSAVE"]) {
            Ok(_) => break before,
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
                let mut all = info::fetch_with(&mut con, &addr)?;
                all.merge(&command::text(&mut con, &addr, &["INFO", "persistence"])?);
                return Ok(all);
            }
        }
        if Instant::now() >= deadline {
            return Err(fail(format!("save did not finish within {:?}", wait.timeout)));
        }
    }
}

/// BGSAVE, then open `rdb_path` (the server's `dir`/`dbfilename`, as seen from here) as `dump.rdb`.
pub fn open(url: &RedisUrl, opts: &ConnectOptions, rdb_path: &Path, wait: &BgsaveOptions) -> Result<LiveSource> {
    let server = run(url, opts, wait)?;
    let file_err = |source| SourceError::File { path: rdb_path.to_path_buf(), source };
    let mut file = std::fs::File::open(rdb_path).map_err(file_err)?;
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
    Ok(LiveSource { info, streams: vec![(RDB_STREAM_NAME.to_string(), Box::new(crate::store::prefetch::Prefetch::new(file)))] })
}
