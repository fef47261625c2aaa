//! Live backups: a Redis server, a cluster or an AOF directory turned into snapshots.
//!
//! The [`source`](crate::redis::source) module reads the data; this layer feeds it to
//! [`backup::run_with`] and records what it came from ([`describe`], [`facts`]),
//! so the command line only parses options.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::engine::backup::{self, BackupOptions, Input};
use crate::crypto::Id;
use crate::format::snapshot::{RedisFacts, Snapshot, SourceDesc};
use crate::redis::source::bgsave::{BgsaveOptions, KeyCheck};
use crate::redis::source::{self, aof, cluster, ConnectOptions, LiveSource, RedisUrl, SourceError, SourceInfo, SourceKind};

/// Cluster shards backed up at the same time: close to one instant, without forking
/// every master of a large cluster at once.
pub const CLUSTER_PARALLEL: usize = 4;

/// How a standalone server's RDB is obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Stream it over the replication protocol (works remotely).
    Replication,
    /// Run BGSAVE and read the file it writes (the server's disk must be visible here).
    Bgsave {
        /// The server's `dir`/`dbfilename` as seen from this machine.
        rdb_path: PathBuf,
    },
}

/// Time-outs and trust for every connection of a live backup.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Connect/read time-outs and TLS trust.
    pub connect: ConnectOptions,
    /// How long to wait for BGSAVE.
    pub bgsave: BgsaveOptions,
    /// Reads of an AOF directory before giving up on rewrites.
    pub aof_attempts: u32,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions { connect: ConnectOptions::default(), bgsave: BgsaveOptions::default(), aof_attempts: aof::DEFAULT_ATTEMPTS }
    }
}

/// Why a live backup failed; in every case no snapshot was saved for the failing part.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The server, cluster or AOF directory refused or broke off.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Storing the data failed (including a stream that ended early).
    #[error(transparent)]
    Backup(#[from] crate::Error),
    /// One shard of a cluster failed; the shards before it were saved.
    #[error("cluster shard {shard} at {addr} failed ({} of {total} shards saved in group {group}{})", saved.len(), saved_list(saved))]
    Shard {
        /// The shard's stable name (`slots-0-5460`).
        shard: String,
        /// host:port of its master.
        addr: String,
        /// The group id of this backup run.
        group: String,
        /// Number of shards in the cluster.
        total: usize,
        /// Short ids of the snapshots already saved.
        saved: Vec<String>,
        /// What went wrong with this shard.
        #[source]
        source: Box<LiveError>,
    },
}

fn saved_list(saved: &[String]) -> String {
    if saved.is_empty() {
        String::new()
    } else {
        format!(": {}", saved.join(", "))
    }
}

/// Result alias for live backups.
pub type Result<T, E = LiveError> = std::result::Result<T, E>;

/// The snapshot's source: kind `redis`/`bgsave`/`aof`/`cluster-shard`, `host:port` or
/// directory, and the full [`SourceInfo`] (never a password: it holds no URL) as details.
pub fn describe(info: &SourceInfo) -> SourceDesc {
    let kind = match (info.kind, &info.cluster) {
        (_, Some(_)) => "cluster-shard",
        (SourceKind::Redis, None) => "redis",
        (SourceKind::Bgsave, None) => "bgsave",
        (SourceKind::Aof, None) => "aof",
    };
    let name = info.addr.clone().or_else(|| info.path.clone()).unwrap_or_default();
    let details = match serde_json::to_value(info) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    SourceDesc { kind: kind.into(), name, details }
}

/// The RDB facts the source knows (INFO at backup start, the payload header).
pub fn facts(info: &SourceInfo) -> RedisFacts {
    RedisFacts {
        rdb_version: info.rdb_version,
        redis_version: info.redis_version.clone(),
        keys_per_db: info.keys_per_db.clone(),
        ..RedisFacts::default()
    }
}

/// Fills the snapshot's source and facts. Facts parsed from the RDB itself
/// (exact key counts at the fork) win over INFO taken before the sync; INFO
/// fills what the data lacks, and a parse error is kept.
pub fn complete(snap: &mut Snapshot, info: &SourceInfo) {
    snap.source = describe(info);
    let from_info = facts(info);
    let parsed = snap.redis.take();
    // An AOF's facts are its base RDB's (the incremental files after it are commands):
    // they name the base, so no one takes them for the whole directory's.
    let parsed = match (info.kind, &info.aof) {
        (SourceKind::Aof, Some(m)) => {
            let base = m.files.iter().find(|f| f.kind == aof::AofFileKind::Base).map(|f| f.name.clone());
            parsed.map(|p| RedisFacts { file: base, ..p })
        }
        _ => parsed,
    };
    snap.redis = Some(match parsed {
        Some(parsed) if parsed.rdb_error.is_none() && parsed.rdb_version.is_some() => {
            RedisFacts { redis_version: parsed.redis_version.clone().or(from_info.redis_version), ..parsed }
        }
        Some(parsed) => RedisFacts { rdb_error: parsed.rdb_error, ..from_info },
        None => from_info,
    });
}

/// Splits an opened source into its description and the backup core's inputs.
pub fn into_inputs(live: LiveSource) -> (SourceInfo, Vec<Input<'static>>) {
    let inputs = live.streams.into_iter().map(|(name, reader)| Input::new(name, reader)).collect();
    (live.info, inputs)
}

/// Connects to a standalone server (replication or BGSAVE) and returns what to back up,
/// and for a BGSAVE file the key count to check it against.
pub fn open_server(url: &RedisUrl, mode: &Mode, opts: &LiveOptions) -> Result<(SourceInfo, Vec<Input<'static>>, Option<KeyCheck>), SourceError> {
    let mut live = match mode {
        Mode::Replication => source::open_replication(url, &opts.connect)?,
        Mode::Bgsave { rdb_path } => source::open_bgsave(url, &opts.connect, rdb_path, &opts.bgsave)?,
    };
    let check = live.key_check.take();
    let (info, inputs) = into_inputs(live);
    Ok((info, inputs, check))
}

/// Backs up a standalone server as one snapshot (`dump.rdb`).
pub fn backup_server(
    repo: &crate::store::Repository,
    url: &RedisUrl,
    mode: &Mode,
    opts: &LiveOptions,
    bopts: &BackupOptions,
) -> Result<(Id, Snapshot)> {
    let (info, inputs, check) = open_server(url, mode, opts)?;
    if let Some(pb) = &bopts.progress {
        pb.set_message("backup");
    }
    let mut mismatch = None;
    let stored = backup::run_with(repo, inputs, bopts, |snap| {
        // The key count parsed from the file itself, checked before anything is saved.
        let parsed = snap.redis.as_ref().filter(|r| r.rdb_error.is_none());
        let keys = parsed.and_then(|r| r.keys.or_else(|| (!r.keys_per_db.is_empty()).then(|| r.keys_per_db.values().sum())));
        if let (Some(check), Some(keys)) = (&check, keys) {
            if let Err(e) = check.verify(keys) {
                let msg = e.to_string();
                mismatch = Some(e);
                return Err(crate::Error::Invalid(msg));
            }
        }
        complete(snap, &info);
        Ok(())
    });
    if let Some(e) = mismatch {
        return Err(e.into());
    }
    Ok(stored.map_err(|e| from_server(e, &url.addr()))?)
}

/// Names a server's RDB that did not parse after the server, not the stream's file name.
fn from_server(e: crate::Error, addr: &str) -> crate::Error {
    backup::name_input(e, |name| format!("the RDB sent by {addr} ({name})"))
}

/// A fresh id (8 random bytes, hex) for the snapshots of one backup run.
pub fn new_group_id() -> String {
    hex::encode(crate::crypto::random_bytes::<8>())
}

/// Backs up every master of a cluster, [`CLUSTER_PARALLEL`] at a time, as one snapshot per
/// shard (`<shard>.rdb`) sharing a new group id; `on_saved` hears of each as it is saved.
/// Returns the group id and the snapshots in slot order; a failing shard starts no more
/// (those already running finish and are kept) and the error lists what was saved.
pub fn backup_cluster(
    repo: &crate::store::Repository,
    url: &RedisUrl,
    opts: &LiveOptions,
    bopts: &BackupOptions,
    mut on_saved: impl FnMut(&Id, &Snapshot),
) -> Result<(String, Vec<(Id, Snapshot)>)> {
    let masters = cluster::discover_masters(url, &opts.connect)?;
    cluster::check_coverage(&url.addr(), &masters)?;
    let group = new_group_id();
    let bopts = BackupOptions { group: Some(group.clone()), ..bopts.clone() };
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let mut saved: Vec<(usize, (Id, Snapshot))> = Vec::with_capacity(masters.len());
    let mut errors: Vec<(usize, LiveError)> = Vec::new();
    std::thread::scope(|s| {
        let (tx, rx) = crossbeam_channel::unbounded();
        for _ in 0..CLUSTER_PARALLEL.min(masters.len()) {
            let (tx, next, failed, masters, bopts) = (tx.clone(), &next, &failed, &masters, &bopts);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= masters.len() || failed.load(Ordering::SeqCst) {
                    break;
                }
                let result = backup_shard(repo, url, &masters[i], opts, bopts);
                if result.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                if tx.send((i, result)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (i, result) in rx {
            match result {
                Ok(done) => {
                    on_saved(&done.0, &done.1);
                    saved.push((i, done));
                }
                Err(e) => errors.push((i, e)),
            }
        }
    });
    saved.sort_by_key(|(i, _)| *i);
    let saved: Vec<(Id, Snapshot)> = saved.into_iter().map(|(_, done)| done).collect();
    errors.sort_by_key(|(i, _)| *i);
    if let Some((i, e)) = errors.into_iter().next() {
        return Err(LiveError::Shard {
            shard: masters[i].shard().group_id,
            addr: masters[i].url(url).addr(),
            group,
            total: masters.len(),
            saved: saved.iter().map(|(id, _)| id.short()).collect(),
            source: Box::new(e),
        });
    }
    Ok((group, saved))
}

/// Streams one master over replication into its shard snapshot (`<shard>.rdb`).
fn backup_shard(
    repo: &crate::store::Repository,
    seed: &RedisUrl,
    master: &cluster::ClusterMaster,
    opts: &LiveOptions,
    bopts: &BackupOptions,
) -> Result<(Id, Snapshot)> {
    let shard = master.shard();
    let node = master.url(seed);
    // Connect only now: the sync time is this shard's own.
    let mut live = source::open_replication(&node, &opts.connect)?;
    live.info.cluster = Some(shard.clone());
    for (name, _) in &mut live.streams {
        *name = format!("{}.rdb", shard.group_id);
    }
    let (info, inputs) = into_inputs(live);
    let stored = backup::run_with(repo, inputs, bopts, |snap| {
        complete(snap, &info);
        Ok(())
    });
    Ok(stored.map_err(|e| from_server(e, &node.addr()))?)
}

/// Milliseconds between the earliest and the latest snapshot time of a group's shards
/// (each the moment its master accepted the full sync, about when it forked).
pub fn spread_ms(snaps: &[(Id, Snapshot)]) -> Option<u64> {
    let times: Vec<u64> = snaps.iter().filter_map(|(_, s)| s.source.details.get("snapshot_time_ms")?.as_u64()).collect();
    Some(times.iter().max()? - times.iter().min()?)
}

/// Backs up a Redis 7 multi-part AOF directory as one snapshot: the files the manifest
/// lists (base, then incremental) and the manifest last. A rewrite during the read
/// abandons that attempt (its data is never saved, its chunks are just deduplicated
/// next time) and starts over, up to `opts.aof_attempts` times.
pub fn backup_aof(repo: &crate::store::Repository, dir: &Path, opts: &LiveOptions, bopts: &BackupOptions) -> Result<(Id, Snapshot)> {
    let dir = std::fs::canonicalize(dir).map_err(|source| SourceError::File { path: dir.to_path_buf(), source })?;
    let attempts = opts.aof_attempts.max(1);
    for attempt in 1..=attempts {
        if let Some(done) = backup_aof_once(repo, &dir, attempt, bopts)? {
            return Ok(done);
        }
    }
    Err(SourceError::AofUnstable { dir, attempts }.into())
}

/// One consistent read of the AOF directory streamed into one backup; `None` if it changed.
fn backup_aof_once(repo: &crate::store::Repository, dir: &Path, attempt: u32, bopts: &BackupOptions) -> Result<Option<(Id, Snapshot)>> {
    // The backup core needs the file names up front: plan them from the manifest now and
    // give up this attempt if the read below streams anything else.
    let manifest_path = aof::find_manifest(dir, None)?;
    let manifest = match std::fs::read(&manifest_path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SourceError::File { path: manifest_path, source }.into()),
    };
    let mut names: Vec<String> = aof::streamed_files(&manifest_path, &manifest)?.into_iter().map(|f| f.name).collect();
    names.push(manifest_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());

    let mut senders = Vec::with_capacity(names.len());
    let mut inputs = Vec::with_capacity(names.len());
    for name in &names {
        let (tx, rx) = bounded::<Piece>(4);
        senders.push(tx);
        inputs.push(Input::new(name.clone(), Box::new(PipeReader { rx, buf: Vec::new(), pos: 0, done: false })));
    }
    let (info_tx, info_rx) = bounded::<SourceInfo>(1);

    std::thread::scope(|s| {
        let backup = s.spawn(move || {
            backup::run_with(repo, inputs, bopts, move |snap| {
                // Only a read that `collect_aof` confirmed consistent may become a snapshot.
                let info = info_rx.recv().map_err(|_| crate::Error::Invalid("AOF read did not complete".into()))?;
                complete(snap, &info);
                Ok(())
            })
        });
        let (mut next, mut changed, mut backup_gone) = (0usize, false, false);
        let collected = source::collect_aof(dir, 1, |meta, reader| {
            let Some(tx) = senders.get(next).filter(|_| names[next] == meta.name) else {
                changed = true;
                return Err(io::Error::other("the AOF manifest changed while it was read"));
            };
            next += 1;
            pump(reader, tx).inspect_err(|_| backup_gone = true)
        });
        let collected = collected.map(|mut info| {
            if let Some(m) = info.aof.as_mut() {
                m.attempts = attempt;
            }
            let _ = info_tx.send(info);
        });
        drop(info_tx);
        // Readers still waiting now see the end of the pipe: an error unless completed.
        drop(senders);
        let stored = backup.join().unwrap_or_else(|_| Err(crate::Error::Invalid("backup thread panicked".into())));
        let stored = stored.map_err(|e| {
            backup::name_input(e, |name| format!("{} (the base file the AOF manifest names)", dir.join(name).display()))
        });
        match (collected, stored) {
            (Ok(_), Ok(done)) => Ok(Some(done)),
            (Ok(_), Err(e)) => Err(e.into()),
            (Err(SourceError::AofUnstable { .. }), _) => Ok(None),
            (Err(_), _) if changed => Ok(None),
            (Err(_), Err(e)) if backup_gone => Err(e.into()),
            (Err(e), _) => Err(e.into()),
        }
    })
}

/// What travels from the AOF reader to the backup core.
enum Piece {
    Data(Vec<u8>),
    End,
}

/// Copies one file into its pipe; an error means the backup side stopped.
fn pump(reader: &mut dyn Read, tx: &Sender<Piece>) -> io::Result<()> {
    const PIECE: usize = 256 * 1024;
    loop {
        let mut buf = vec![0u8; PIECE];
        let n = read_full(reader, &mut buf)?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        tx.send(Piece::Data(buf)).map_err(|_| io::Error::other("the backup stopped reading"))?;
    }
    tx.send(Piece::End).map_err(|_| io::Error::other("the backup stopped reading"))
}

/// Reads until `buf` is full or the reader ends (so pieces are not needlessly small).
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The backup core's end of a pipe: EOF only after an explicit end mark.
struct PipeReader {
    rx: Receiver<Piece>,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Piece::Data(d)) => {
                    self.buf = d;
                    self.pos = 0;
                }
                Ok(Piece::End) => self.done = true,
                Err(_) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "AOF read abandoned before this file was complete")),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_reader_ends_only_on_the_end_mark() {
        let (tx, rx) = bounded(4);
        let mut r = PipeReader { rx, buf: Vec::new(), pos: 0, done: false };
        tx.send(Piece::Data(b"abc".to_vec())).unwrap();
        tx.send(Piece::End).unwrap();
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        assert_eq!(v, b"abc");

        let (tx, rx) = bounded(4);
        let mut r = PipeReader { rx, buf: Vec::new(), pos: 0, done: false };
        tx.send(Piece::Data(b"abc".to_vec())).unwrap();
        drop(tx);
        let mut v = Vec::new();
        assert_eq!(r.read_to_end(&mut v).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn description_has_no_credentials() {
        let url = RedisUrl::parse("redis://backup:hunter2@10.0.0.5:6380").unwrap();
        let mut info = SourceInfo::from_server(SourceKind::Redis, &url, &source::ServerInfo::default());
        info.rdb_version = Some(10);
        let d = describe(&info);
        assert_eq!((d.kind.as_str(), d.name.as_str()), ("redis", "10.0.0.5:6380"));
        let json = serde_json::to_string(&d).unwrap();
        assert!(!json.contains("hunter2") && !json.contains("backup@"), "{json}");
        assert_eq!(facts(&info).rdb_version, Some(10));
    }
}
