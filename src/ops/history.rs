//! The job history file: one JSON status per line, appended and fsynced as each job
//! ends, so a restarted `serve` shows past jobs; trimmed to the newest [`KEEP`] lines.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::ops::jobs::JobStatus;
use crate::ops::OpsError;

/// Finished jobs kept in the file (and in memory).
pub const KEEP: usize = 1000;

/// The history file at one path.
#[derive(Debug)]
pub struct History {
    path: PathBuf,
    /// Lines in the file now (rewritten down to [`KEEP`] once twice that).
    lines: usize,
}

impl History {
    /// Reads the finished jobs recorded in `path`, oldest first (none if it does not exist);
    /// a line that does not parse (a write cut by a crash) is skipped.
    pub fn open(path: PathBuf) -> Result<(History, Vec<JobStatus>), OpsError> {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(OpsError::Io { context: "read job history", path, source }),
        };
        let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
        let mut jobs: Vec<JobStatus> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let skip = jobs.len().saturating_sub(KEEP);
        jobs.drain(..skip);
        Ok((History { path, lines }, jobs))
    }

    /// Appends one finished job and fsyncs; rewrites the file with the newest [`KEEP`]
    /// (`recent`, oldest first) when it has grown to twice that.
    pub fn append(&mut self, status: &JobStatus, recent: &[JobStatus]) -> Result<(), OpsError> {
        let io = |context, source| OpsError::Io { context, path: self.path.clone(), source };
        if self.lines + 1 >= 2 * KEEP {
            return self.rewrite(recent);
        }
        let mut line = serde_json::to_vec(status).map_err(|e| OpsError::Invalid(format!("encode job status: {e}")))?;
        line.push(b'\n');
        let mut f = open(&self.path, false).map_err(|e| io("open job history", e))?;
        f.write_all(&line).map_err(|e| io("append to job history", e))?;
        f.sync_data().map_err(|e| io("fsync job history", e))?;
        self.lines += 1;
        Ok(())
    }

    /// Replaces the file atomically (temp file, fsync, rename) with `recent`.
    fn rewrite(&mut self, recent: &[JobStatus]) -> Result<(), OpsError> {
        let io = |context, source| OpsError::Io { context, path: self.path.clone(), source };
        let mut text = Vec::new();
        for s in recent {
            text.extend(serde_json::to_vec(s).map_err(|e| OpsError::Invalid(format!("encode job status: {e}")))?);
            text.push(b'\n');
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = open(&tmp, true).map_err(|e| io("create job history", e))?;
        f.write_all(&text).map_err(|e| io("write job history", e))?;
        f.sync_all().map_err(|e| io("fsync job history", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io("replace job history", e))?;
        self.lines = recent.len();
        Ok(())
    }
}

/// Opens for appending (or truncating), creating the file 0600 and its folder 0700.
fn open(path: &Path, truncate: bool) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let mut o = std::fs::OpenOptions::new();
    o.create(true).mode(0o600);
    if truncate {
        o.write(true).truncate(true);
    } else {
        o.append(true);
    }
    o.open(path)
}
