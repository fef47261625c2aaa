//! Rebuilding a dataset as of a time: the base, then the log cut at that time.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use redis::ConnectionLike;

use crate::engine::restore::{self, Blobs, RestoreOptions};
use crate::format::snapshot::SnapshotFile;

use crate::redis::rewrite::{rewrite_snapshot, RewriteError, RewriteOptions};

use super::keys_at::{KeyLog, KeySelect};
use super::resp::{self, Kind};
use super::timeline::Cut;
use super::{FollowError, Result};

/// File names of a Redis 7 multi-part AOF directory (`appendfilename appendonly.aof`).
pub const AOF_BASE: &str = "appendonly.aof.1.base.rdb";
/// The incremental file: the log up to the cut.
pub const AOF_INCR: &str = "appendonly.aof.1.incr.aof";
/// The manifest Redis reads first.
pub const AOF_MANIFEST: &str = "appendonly.aof.manifest";

/// Bytes read from a segment at a time.
const READ: usize = 256 * 1024;

/// What the log replay sent or wrote.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LogReport {
    /// Data commands (transactions count their commands).
    pub commands: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Replication offset the log was cut at (a command boundary outside MULTI/EXEC).
    pub offset: u64,
    /// Commands left out because they are about keys `--keys` does not select.
    pub skipped: u64,
}

/// Calls `sink` with each data command of the chain, in order, up to the cut: only commands
/// received in full by the cut time, never part of a transaction; keepalives left out.
pub fn for_each_command(blobs: &Blobs<'_>, cut: &Cut<'_>, sink: &mut dyn FnMut(&[u8], &resp::Frame) -> Result<()>) -> Result<LogReport> {
    let mut report = LogReport { offset: cut.chain.base_offset, ..LogReport::default() };
    // A transaction is held until its EXEC arrives within the cut.
    let mut multi: Option<Vec<u8>> = None;
    let opts = RestoreOptions { threads: 2, ..RestoreOptions::default() };
    for (id, snap, seg) in &cut.chain.segments {
        if seg.start >= cut.offset {
            break;
        }
        let Some(file) = snap.files.first() else { continue };
        let mut buf: Vec<u8> = Vec::new();
        let mut at = seg.start;
        let done = restore::with_reader(blobs, file, &opts, |r| -> Result<bool> {
            let mut chunk = vec![0u8; READ];
            loop {
                let n = r.read(&mut chunk).map_err(|e| crate::Error::io(format!("read log segment {}", id.short()), e))?;
                buf.extend_from_slice(&chunk[..n]);
                let mut used = 0;
                while let Some(frame) = resp::parse(&buf[used..]).map_err(|msg| FollowError::Stream {
                    addr: snap.source.name.clone(),
                    offset: at,
                    msg: format!("log segment {}: {msg}", id.short()),
                })? {
                    if at + frame.len as u64 > cut.offset {
                        return Ok(true);
                    }
                    let bytes = &buf[used..used + frame.len];
                    at += frame.len as u64;
                    used += frame.len;
                    match (frame.kind(bytes), &mut multi) {
                        (Kind::Ping | Kind::GetAck | Kind::Replconf, _) => {}
                        (Kind::Multi, m) => *m = Some(bytes.to_vec()),
                        (Kind::Exec, m @ Some(_)) => {
                            let mut held = m.take().unwrap_or_default();
                            held.extend_from_slice(bytes);
                            let mut pos = 0;
                            while let Ok(Some(f)) = resp::parse(&held[pos..]) {
                                sink(&held[pos..pos + f.len], &f)?;
                                report.commands += 1;
                                report.bytes += f.len as u64;
                                pos += f.len;
                            }
                        }
                        (_, Some(held)) => held.extend_from_slice(bytes),
                        (_, None) => {
                            sink(bytes, &frame)?;
                            report.commands += 1;
                            report.bytes += frame.len as u64;
                        }
                    }
                    if multi.is_none() {
                        report.offset = at;
                    }
                }
                buf.drain(..used);
                if n == 0 {
                    if !buf.is_empty() {
                        return Err(FollowError::Stream { addr: snap.source.name.clone(), offset: at, msg: format!("log segment {} ends inside a command", id.short()) });
                    }
                    return Ok(false);
                }
            }
        })?;
        if done {
            break;
        }
    }
    Ok(report)
}

/// [`for_each_command`], with `keys`: only the commands about the selected keys (see [`keys_at`]).
pub fn for_each_selected(blobs: &Blobs<'_>, cut: &Cut<'_>, keys: Option<&KeySelect>, sink: &mut dyn FnMut(&[u8], &resp::Frame) -> Result<()>) -> Result<LogReport> {
    let Some(sel) = keys else { return for_each_command(blobs, cut, sink) };
    let mut filter = KeyLog::new(sel);
    let mut report = for_each_command(blobs, cut, &mut |bytes, frame| filter.take(bytes, frame, sink))?;
    (report.commands, report.bytes, report.skipped) = (filter.kept, filter.kept_bytes, filter.skipped);
    Ok(report)
}

/// Writes the base and the cut log as a multi-part AOF directory `dir` (created; must be
/// empty or missing) that redis-server 7 loads with `appendonly yes`; with `keys`, only the
/// selected keys (a base RDB of those keys, the log's commands about them).
pub fn write_aof_dir(blobs: &Blobs<'_>, cut: &Cut<'_>, keys: Option<&KeySelect>, dir: &Path) -> Result<LogReport> {
    let Some(rdb) = cut.chain.base.files.first() else {
        return Err(FollowError::NotCovered(format!("base snapshot {} has no file", cut.chain.base_id.short())));
    };
    let mut base = |out: &mut dyn Write| -> Result<()> {
        match keys {
            None => Ok(restore::write_file(blobs, rdb, out, &RestoreOptions::default())?),
            Some(sel) => {
                let opts = RewriteOptions { filter: sel.filter.clone(), ..RewriteOptions::default() };
                rewrite_snapshot(blobs, &cut.chain.base, &opts, out).map(|_| ()).map_err(|e| match e {
                    RewriteError::Repo(e) => e.into(),
                    RewriteError::Write(e) => FollowError::local(format!("write the base RDB of the keys {}", String::from_utf8_lossy(&sel.pattern)), std::io::Error::other(e.to_string())),
                })
            }
        }
    };
    let mut incr = |out: &mut dyn Write| for_each_selected(blobs, cut, keys, &mut |bytes, _| out.write_all(bytes).map_err(|e| FollowError::local("write the incremental AOF file", e)));
    write_dir(dir, &mut base, &mut incr)
}

/// Writes `base` and what `incr` writes as a multi-part AOF directory `dir`; the manifest last.
pub fn write_dir_with(blobs: &Blobs<'_>, base: &SnapshotFile, dir: &Path, incr: &mut dyn FnMut(&mut dyn Write) -> Result<LogReport>) -> Result<LogReport> {
    write_dir(dir, &mut |out| Ok(restore::write_file(blobs, base, out, &RestoreOptions::default())?), incr)
}

/// Writes what `base` and `incr` write as a multi-part AOF directory `dir`; the manifest last.
fn write_dir(dir: &Path, base: &mut dyn FnMut(&mut dyn Write) -> Result<()>, incr: &mut dyn FnMut(&mut dyn Write) -> Result<LogReport>) -> Result<LogReport> {
    std::fs::create_dir_all(dir).map_err(|e| FollowError::local(format!("create {}", dir.display()), e))?;
    let names = [AOF_BASE, AOF_INCR, AOF_MANIFEST];
    for n in names {
        if dir.join(n).exists() {
            return Err(FollowError::local(format!("{} already exists", dir.join(n).display()), std::io::ErrorKind::AlreadyExists.into()));
        }
    }
    let tmp = |n: &str| dir.join(format!(".{n}.tmp"));
    let create = |p: &PathBuf| {
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(p).map_err(|e| FollowError::local(format!("create {}", p.display()), e))
    };
    let base_tmp = tmp(AOF_BASE);
    let mut f = std::io::BufWriter::new(create(&base_tmp)?);
    base(&mut f)?;
    finish(f, &base_tmp)?;

    let incr_tmp = tmp(AOF_INCR);
    let mut f = std::io::BufWriter::new(create(&incr_tmp)?);
    let report = incr(&mut f)?;
    finish(f, &incr_tmp)?;

    let manifest = format!("file {AOF_BASE} seq 1 type b\nfile {AOF_INCR} seq 1 type i\n");
    let man_tmp = tmp(AOF_MANIFEST);
    let mut f = std::io::BufWriter::new(create(&man_tmp)?);
    f.write_all(manifest.as_bytes()).map_err(|e| FollowError::local(format!("write {}", man_tmp.display()), e))?;
    finish(f, &man_tmp)?;
    // The manifest last: a directory without one is never mistaken for a complete restore.
    for n in names {
        std::fs::rename(tmp(n), dir.join(n)).map_err(|e| FollowError::local(format!("rename into {}", dir.join(n).display()), e))?;
    }
    Ok(report)
}

fn finish(f: std::io::BufWriter<std::fs::File>, path: &Path) -> Result<()> {
    let file = f.into_inner().map_err(|e| FollowError::local(format!("write {}", path.display()), e.into_error()))?;
    file.sync_all().map_err(|e| FollowError::local(format!("sync {}", path.display()), e))
}

/// Sends the cut log to a live server (after its base keys were loaded), pipelined.
pub fn send_log(blobs: &Blobs<'_>, cut: &Cut<'_>, keys: Option<&KeySelect>, con: &mut dyn ConnectionLike, addr: &str) -> Result<LogReport> {
    const BATCH: usize = 1000;
    let mut pipe = redis::pipe();
    let mut names: Vec<String> = Vec::new();
    let flush = |pipe: &mut redis::Pipeline, names: &mut Vec<String>, con: &mut dyn ConnectionLike| -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let replies: Vec<redis::Value> = match pipe.query(con) {
            Ok(r) => r,
            Err(e) => {
                let command = names.first().cloned().unwrap_or_default();
                return Err(FollowError::Replay { addr: addr.to_string(), command, reply: e.to_string() });
            }
        };
        for (v, name) in replies.iter().zip(names.iter()) {
            if let redis::Value::ServerError(e) = v {
                return Err(FollowError::Replay { addr: addr.to_string(), command: name.clone(), reply: format!("{e:?}") });
            }
        }
        pipe.clear();
        names.clear();
        Ok(())
    };
    let report = for_each_selected(blobs, cut, keys, &mut |bytes, frame| {
        let mut c = redis::cmd(&frame.name(bytes));
        for i in 1..frame.args.len() {
            c.arg(frame.arg(bytes, i).unwrap_or_default());
        }
        pipe.add_command(c);
        names.push(frame.name(bytes));
        if names.len() >= BATCH {
            flush(&mut pipe, &mut names, con)?;
        }
        Ok(())
    })?;
    flush(&mut pipe, &mut names, con)?;
    Ok(report)
}
