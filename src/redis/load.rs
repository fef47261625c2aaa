//! `restore --to`: loads a snapshot's keys into a live Redis with pipelined `RESTORE`.
//!
//! Each key's payload is its own serialized value from the RDB plus the snapshot's RDB
//! version and a CRC64 (the `DUMP` format), sent as `RESTORE key ttl payload [REPLACE] ABSTTL`
//! so expiry times survive. Without `--replace` a first pass over the snapshot asks the
//! target which keys already exist (pipelined `EXISTS`) and refuses before writing anything.
//! The first key is sent alone: a target too old for the payload's RDB version refuses it,
//! and the load stops with nothing else written. With `--skip-existing` no first pass is
//! needed: `RESTORE` without `REPLACE` answers `BUSYKEY` for a key that exists, which is
//! counted and skipped. A load that stops midway ([`LoadError::Stopped`]) says how many keys
//! were written, the last one, and how to resume.

use std::collections::BTreeMap;

use indicatif::ProgressBar;
use redis::ConnectionLike;
use serde::Serialize;

use crate::error::Error;
use crate::redis::dbmap::DbMap;
use crate::redis::inspect::now_ms;
use crate::redis::keyscan::{scan_snapshot, KeyFilter, KeyRef};
use crate::rdb::{ReadOptions, Record};
use crate::engine::restore::Blobs;
use crate::format::snapshot::Snapshot;
use crate::redis::source::command::map_err;
use crate::redis::source::SourceError;

/// Conflicting keys named in the refusal message.
const SHOWN_CONFLICTS: usize = 20;

/// Why a load into a live server failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Repo(#[from] Error),
    #[error(transparent)]
    Server(#[from] SourceError),
    #[error(
        "the target {addr} (Redis {target_version}) is older than the snapshot: it does not accept \
         RDB version {rdb_version} payloads; restore into a Redis at least as new as the one that wrote the snapshot"
    )]
    TargetTooOld { addr: String, rdb_version: u16, target_version: String },
    #[error("{count} of the keys to restore already exist on {addr}: {}{}; use --replace to overwrite them",
        keys.join(", "), if *count as usize > keys.len() { ", ..." } else { "" })]
    Conflicts { addr: String, count: u64, keys: Vec<String> },
    #[error("a key of db {db} has no target db: the database in the --to URL takes the keys of one db only (choose it with --db)")]
    Unmapped { db: u64 },
    #[error("{addr} refused RESTORE of {key} in db {db}: {reply}")]
    Refused { addr: String, db: u64, key: String, reply: String },
    /// Keys were (or may have been) written before the failure: say which and how to resume.
    #[error("{}", stopped(.addr, .written, .unknown, .last, .source))]
    Stopped {
        addr: String,
        /// Keys the target confirmed.
        written: u64,
        /// Keys sent whose fate is unknown (the connection broke before their replies).
        unknown: u64,
        /// The last key confirmed, as `db:key`.
        last: Option<String>,
        #[source]
        source: Box<LoadError>,
    },
}

/// The message of [`LoadError::Stopped`].
fn stopped(addr: &str, written: &u64, unknown: &u64, last: &Option<String>, source: &LoadError) -> String {
    let mut s = format!("the restore into {addr} stopped after writing {written} keys");
    if *unknown > 0 {
        s.push_str(&format!(" (and up to {unknown} more of the last batch, sent before the connection broke)"));
    }
    if let Some(last) = last {
        s.push_str(&format!("; the last key written was {last} (keys are restored in RDB order: restore --dry-run lists them)"));
    }
    let cause = source.to_string();
    s.push_str(&format!(": {}. To resume, remove the cause and run the same restore with --skip-existing (keeps the keys already written) or --replace (overwrites them)", cause.trim_end_matches('.')));
    s
}

/// How to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Which keys to load.
    pub filter: KeyFilter,
    /// Which db each key goes to (by default its own).
    pub db_map: DbMap,
    /// Overwrite keys that exist on the target (`RESTORE ... REPLACE`).
    pub replace: bool,
    /// Leave keys that exist on the target as they are (counted in the report).
    pub skip_existing: bool,
    /// Only report what would be loaded (and what would conflict).
    pub dry_run: bool,
    /// Keys per pipelined batch.
    pub batch_keys: usize,
    /// Payload bytes per batch (a batch closes at whichever limit comes first).
    pub batch_bytes: usize,
    /// Keys listed in the report (for `--dry-run`).
    pub sample: usize,
    /// Advanced by keys written.
    pub progress: Option<ProgressBar>,
    /// Set from another thread to stop between batches (keys already sent stay on the target).
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            filter: KeyFilter::default(),
            db_map: DbMap::default(),
            replace: false,
            skip_existing: false,
            dry_run: false,
            batch_keys: 1000,
            batch_bytes: 16 << 20,
            sample: 10,
            progress: None,
            cancel: None,
        }
    }
}

/// What a load did (or, for a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    /// RDB version of the payloads.
    pub rdb_version: u16,
    pub dry_run: bool,
    /// Keys restored (would be restored).
    pub restored: u64,
    /// Keys whose TTL had already passed, not sent.
    pub skipped_expired: u64,
    /// Keys left alone because they exist on the target (`--skip-existing`).
    pub skipped_existing: u64,
    /// Keys restored per db.
    pub per_db: BTreeMap<u64, u64>,
    /// The first keys.
    pub first_keys: Vec<KeyRef>,
    /// Keys that exist on the target (checked without `--replace`).
    pub conflicts: u64,
    /// The first of them.
    pub conflict_keys: Vec<KeyRef>,
    /// Bytes of RESTORE payloads sent.
    pub payload_bytes: u64,
    pub duration_ms: u64,
}

/// How a key is named in messages: `db:key`, escaped as redis-cli escapes keys.
fn key_name(db: u64, key: &[u8]) -> String {
    KeyRef { db, key: key.to_vec() }.to_string()
}

/// Loads the keys of `snap` that pass the filter into the server behind `con`.
pub fn load(
    blobs: &Blobs<'_>,
    snap: &Snapshot,
    con: &mut dyn ConnectionLike,
    addr: &str,
    opts: &LoadOptions,
) -> Result<LoadReport, LoadError> {
    let started = std::time::Instant::now();
    let mut report = LoadReport { dry_run: opts.dry_run, ..LoadReport::default() };
    if opts.dry_run || !(opts.replace || opts.skip_existing) {
        if let Some(pb) = &opts.progress {
            pb.set_message("checking for existing keys");
        }
        check(blobs, snap, con, addr, opts, &mut report)?;
        if report.conflicts > 0 && !opts.dry_run {
            let keys = report.conflict_keys.iter().map(KeyRef::to_string).collect();
            return Err(LoadError::Conflicts { addr: addr.into(), count: report.conflicts, keys });
        }
    }
    if !opts.dry_run {
        if let Some(pb) = &opts.progress {
            pb.set_message("restoring keys");
        }
        report.skipped_expired = 0;
        let mut batch = Batch::new(addr, opts);
        let mut first = true;
        let scanned = scan_snapshot(blobs, snap, ReadOptions::raw_only(), &opts.filter, |version, rec| {
            if expired(&rec) {
                report.skipped_expired += 1;
                return Ok(());
            }
            let db = target_db(opts, rec.db)?;
            batch.add(&rec, db, version)?;
            if first || batch.keys >= opts.batch_keys || batch.bytes >= opts.batch_bytes {
                first = false;
                Error::check_cancel(opts.cancel.as_deref())?;
                batch.send(con, version)?;
            }
            Ok::<(), LoadError>(())
        });
        let sent = scanned.and_then(|version| batch.send(con, version).map(|()| version));
        match sent {
            Ok(version) => report.rdb_version = version,
            Err(e @ LoadError::TargetTooOld { .. }) if batch.written == 0 => return Err(e),
            Err(e) => {
                return Err(LoadError::Stopped {
                    addr: addr.into(),
                    written: batch.written,
                    unknown: batch.unknown,
                    last: batch.last.clone(),
                    source: Box::new(e),
                })
            }
        }
        report.restored = batch.written;
        report.per_db = std::mem::take(&mut batch.per_db);
        report.skipped_existing = batch.skipped;
        report.payload_bytes = batch.payload_bytes;
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// The db a key of `db` is restored into.
fn target_db(opts: &LoadOptions, db: u64) -> Result<u64, LoadError> {
    opts.db_map.target(db).ok_or(LoadError::Unmapped { db })
}

/// Whether the key's expiry time has passed.
fn expired(rec: &Record) -> bool {
    rec.expire_ms.is_some_and(|at| at <= now_ms())
}

/// First pass: counts what would be loaded and asks the target which keys exist.
fn check(
    blobs: &Blobs<'_>,
    snap: &Snapshot,
    con: &mut dyn ConnectionLike,
    addr: &str,
    opts: &LoadOptions,
    report: &mut LoadReport,
) -> Result<(), LoadError> {
    let mut pending: Vec<(u64, Vec<u8>)> = Vec::new();
    let ask = !opts.replace;
    let flush = |pending: &mut Vec<(u64, Vec<u8>)>, con: &mut dyn ConnectionLike, report: &mut LoadReport| {
        if ask {
            for (db, key) in existing(con, addr, pending)? {
                report.conflicts += 1;
                if report.conflict_keys.len() < SHOWN_CONFLICTS {
                    report.conflict_keys.push(KeyRef { db, key });
                }
            }
        }
        pending.clear();
        Ok::<(), LoadError>(())
    };
    report.rdb_version = scan_snapshot(blobs, snap, ReadOptions::walk_only(), &opts.filter, |_, rec| {
        if expired(&rec) {
            report.skipped_expired += 1;
            return Ok(());
        }
        let db = target_db(opts, rec.db)?;
        report.restored += 1;
        *report.per_db.entry(db).or_default() += 1;
        if report.first_keys.len() < opts.sample {
            report.first_keys.push(KeyRef { db, key: rec.key.clone() });
        }
        pending.push((db, rec.key));
        if pending.len() >= opts.batch_keys {
            flush(&mut pending, con, report)?;
        }
        Ok::<(), LoadError>(())
    })?;
    flush(&mut pending, con, report)
}

/// The keys of `keys` that exist on the target (one pipeline, `SELECT` as needed).
fn existing(con: &mut dyn ConnectionLike, addr: &str, keys: &[(u64, Vec<u8>)]) -> Result<Vec<(u64, Vec<u8>)>, LoadError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    let mut db = None;
    for (d, key) in keys {
        if db != Some(*d) {
            pipe.cmd("SELECT").arg(*d).ignore();
            db = Some(*d);
        }
        pipe.cmd("EXISTS").arg(key.as_slice());
    }
    let found: Vec<i64> = pipe.query(con).map_err(|e| map_err(addr, "EXISTS", e))?;
    Ok(keys.iter().zip(found).filter(|(_, n)| *n > 0).map(|(k, _)| k.clone()).collect())
}

/// One pipeline of `RESTORE` commands being filled, and what the target confirmed so far.
struct Batch<'a> {
    addr: &'a str,
    replace: bool,
    skip_existing: bool,
    progress: Option<&'a ProgressBar>,
    pipe: redis::Pipeline,
    /// The key of each command in `pipe` (`None` for `SELECT`).
    sent: Vec<Option<(u64, Vec<u8>)>>,
    /// Database the connection will be in after `pipe`.
    db: Option<u64>,
    keys: usize,
    bytes: usize,
    /// Keys the target confirmed, per db, the last of them, and keys skipped as existing.
    written: u64,
    per_db: BTreeMap<u64, u64>,
    last: Option<String>,
    skipped: u64,
    /// Keys sent whose replies never came (the connection broke).
    unknown: u64,
    payload_bytes: u64,
}

impl<'a> Batch<'a> {
    fn new(addr: &'a str, opts: &'a LoadOptions) -> Self {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        Batch {
            addr,
            replace: opts.replace,
            skip_existing: opts.skip_existing,
            progress: opts.progress.as_ref(),
            pipe,
            sent: Vec::new(),
            db: None,
            keys: 0,
            bytes: 0,
            written: 0,
            per_db: BTreeMap::new(),
            last: None,
            skipped: 0,
            unknown: 0,
            payload_bytes: 0,
        }
    }

    /// Queues `RESTORE` for one record into `db` (captured raw bytes needed).
    fn add(&mut self, rec: &Record, db: u64, version: u16) -> Result<(), LoadError> {
        let payload = rec.dump_payload(version).ok_or_else(|| {
            Error::Invalid(format!("no serialized value captured for key {}", key_name(rec.db, &rec.key)))
        })?;
        if self.db != Some(db) {
            self.pipe.cmd("SELECT").arg(db);
            self.sent.push(None);
            self.db = Some(db);
        }
        let cmd = self.pipe.cmd("RESTORE").arg(rec.key.as_slice()).arg(rec.expire_ms.unwrap_or(0)).arg(payload.as_slice());
        if self.replace {
            cmd.arg("REPLACE");
        }
        if rec.expire_ms.is_some() {
            cmd.arg("ABSTTL");
        }
        self.sent.push(Some((db, rec.key.clone())));
        self.keys += 1;
        self.bytes += payload.len();
        Ok(())
    }

    /// Sends the queued commands and checks every reply: counts what was written (all of
    /// the batch's successes, even after a refusal) and returns the first refusal.
    fn send(&mut self, con: &mut dyn ConnectionLike, version: u16) -> Result<(), LoadError> {
        if self.sent.is_empty() {
            return Ok(());
        }
        self.payload_bytes += self.bytes as u64;
        let replies: Vec<redis::RedisResult<redis::Value>> = match self.pipe.query(con) {
            Ok(r) => r,
            Err(e) => {
                self.unknown = self.keys as u64;
                return Err(map_err(self.addr, "RESTORE", e).into());
            }
        };
        let mut refused = None;
        let written_before = self.written;
        for (what, reply) in self.sent.iter().zip(replies) {
            let e = match reply {
                Ok(_) => {
                    if let Some((db, key)) = what {
                        self.written += 1;
                        *self.per_db.entry(*db).or_default() += 1;
                        self.last = Some(key_name(*db, key));
                    }
                    continue;
                }
                Err(e) => e,
            };
            if self.skip_existing && e.code() == Some("BUSYKEY") {
                self.skipped += 1;
                continue;
            }
            if refused.is_some() {
                continue;
            }
            let text = format!("{} {}", e.code().unwrap_or("ERR"), e.detail().unwrap_or(""));
            refused = Some(match what {
                None => map_err(self.addr, "SELECT", e).into(),
                Some(_) if text.contains("DUMP payload version") => LoadError::TargetTooOld {
                    addr: self.addr.into(),
                    rdb_version: version,
                    target_version: server_version(con).unwrap_or_else(|| "of unknown version".into()),
                },
                Some((db, key)) => LoadError::Refused { addr: self.addr.into(), db: *db, key: String::from_utf8_lossy(key).into_owned(), reply: text },
            });
        }
        if let Some(pb) = self.progress {
            pb.inc(self.written - written_before);
        }
        self.pipe.clear();
        self.sent.clear();
        self.keys = 0;
        self.bytes = 0;
        refused.map_or(Ok(()), Err)
    }
}

/// `redis_version` from `INFO server`, if the server tells.
fn server_version(con: &mut dyn ConnectionLike) -> Option<String> {
    let info: String = redis::cmd("INFO").arg("server").query(con).ok()?;
    info.lines().find_map(|l| l.strip_prefix("redis_version:")).map(|v| v.trim().to_string())
}
