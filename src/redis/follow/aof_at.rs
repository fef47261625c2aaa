//! `restore --at` from `backup --aof` snapshots of a server with `aof-timestamp-enabled yes`:
//! the incremental AOF is cut at its `#TS:<unix seconds>` annotations.

use std::io::{Read, Write};
use std::path::Path;

use crate::crypto::Id;
use crate::engine::restore::{self, Blobs, RestoreOptions};
use crate::format::snapshot::{Listing, Snapshot, SnapshotFile};

use super::resp;
use super::restore_at::{write_dir_with, LogReport};
use super::timeline::rfc3339;
use super::{FollowError, Result};

/// Source kind of a `backup --aof` snapshot.
const AOF_KIND: &str = "aof";
/// Bytes read from the AOF at a time.
const READ: usize = 256 * 1024;

/// The base file (`*.base.rdb` or `*.base.aof`) of an AOF snapshot.
fn base(snap: &Snapshot) -> Option<&SnapshotFile> {
    snap.files.iter().find(|f| f.name.contains(".base."))
}

/// The incremental files, in the order they were backed up (by sequence).
fn incr(snap: &Snapshot) -> impl Iterator<Item = &SnapshotFile> {
    snap.files.iter().filter(|f| f.name.ends_with(".incr.aof"))
}

/// Unix ms of a snapshot's time (when the AOF was read: what it covers up to).
fn taken_ms(snap: &Snapshot) -> Option<u64> {
    let t = time::OffsetDateTime::parse(&snap.time, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The AOF snapshot that holds the dataset as of `at_ms`: the oldest (of `path`, if given)
/// taken at or after it whose first `#TS:` annotation is at or before it. None when there
/// are no AOF snapshots; an error naming what they cover when none holds `at_ms`.
pub fn pick(blobs: &Blobs<'_>, listing: &Listing, path: Option<&str>, at_ms: u64) -> Result<Option<(Id, Snapshot)>> {
    let mut aofs: Vec<&(Id, Snapshot)> =
        listing.snapshots.iter().filter(|(_, s)| s.source.kind == AOF_KIND && path.is_none_or(|p| s.source.name == p)).collect();
    if aofs.is_empty() {
        return Ok(None);
    }
    aofs.sort_by_key(|(_, s)| taken_ms(s));
    let mut covered = Vec::new();
    for (id, snap) in aofs {
        let Some(first) = first_ts(blobs, snap)? else { continue };
        let to = taken_ms(snap).unwrap_or(0);
        if first * 1000 <= at_ms && at_ms <= to {
            return Ok(Some((*id, snap.clone())));
        }
        covered.push(format!("{} .. {} ({})", rfc3339(first * 1000), rfc3339(to), id.short()));
    }
    if covered.is_empty() {
        return Err(FollowError::NotCovered(
            "no followed server's log, and the AOF snapshots have no #TS: annotations (back up a server with `aof-timestamp-enabled yes`)".into(),
        ));
    }
    Err(FollowError::NotCovered(format!("{} is not covered by the AOF snapshots; covered: {}", rfc3339(at_ms), covered.join(", "))))
}

/// The first `#TS:` annotation of a snapshot's incremental files (unix seconds).
fn first_ts(blobs: &Blobs<'_>, snap: &Snapshot) -> Result<Option<u64>> {
    let mut found = None;
    for file in incr(snap) {
        cut(blobs, file, &mut |ts| {
            found = Some(ts);
            false
        }, &mut std::io::sink(), &mut LogReport::default())?;
        if found.is_some() {
            break;
        }
    }
    Ok(found)
}

/// Writes the snapshot's base and its incremental files cut at the first annotation after
/// `at_ms` (to the second: commands stamped in `at_ms`'s second are kept) as an AOF directory.
pub fn write_dir(blobs: &Blobs<'_>, snap: &Snapshot, at_ms: u64, dir: &Path) -> Result<LogReport> {
    let Some(base) = base(snap) else { return Err(FollowError::NotCovered("the AOF snapshot has no base file".into())) };
    let at_s = at_ms / 1000;
    write_dir_with(blobs, base, dir, &mut |out| {
        let mut report = LogReport::default();
        for file in incr(snap) {
            if !cut(blobs, file, &mut |ts| ts <= at_s, out, &mut report)? {
                break;
            }
        }
        Ok(report)
    })
}

/// Copies `file` to `out` command by command while `go(ts)` allows each `#TS:` annotation met;
/// returns whether it reached the end (false: stopped at an annotation).
fn cut(blobs: &Blobs<'_>, file: &SnapshotFile, go: &mut dyn FnMut(u64) -> bool, out: &mut dyn Write, report: &mut LogReport) -> Result<bool> {
    let what = |offset: u64, msg: String| FollowError::Stream { addr: file.name.clone(), offset, msg };
    let write = |out: &mut dyn Write, b: &[u8]| out.write_all(b).map_err(|e| FollowError::local("write the incremental AOF file", e));
    restore::with_reader(blobs, file, &RestoreOptions { threads: 2, ..RestoreOptions::default() }, |r| -> Result<bool> {
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; READ];
        loop {
            let n = r.read(&mut chunk).map_err(|e| crate::Error::io(format!("read {}", file.name), e))?;
            buf.extend_from_slice(&chunk[..n]);
            let mut used = 0;
            loop {
                let rest = &buf[used..];
                if rest.first() == Some(&b'#') {
                    let Some(end) = rest.iter().position(|&b| b == b'\n') else { break };
                    let line = String::from_utf8_lossy(&rest[..end]);
                    if let Some(ts) = line.trim_end().strip_prefix("#TS:").and_then(|t| t.parse::<u64>().ok()) {
                        if !go(ts) {
                            return Ok(false);
                        }
                    }
                    write(out, &rest[..=end])?;
                    used += end + 1;
                    continue;
                }
                let Some(frame) = resp::parse(rest).map_err(|m| what(report.offset + used as u64, m))? else { break };
                write(out, &rest[..frame.len])?;
                report.commands += 1;
                report.bytes += frame.len as u64;
                used += frame.len;
            }
            report.offset += used as u64;
            buf.drain(..used);
            if n == 0 {
                if !buf.is_empty() {
                    return Err(what(report.offset, "the file ends inside a command".into()));
                }
                return Ok(true);
            }
        }
    })
}
