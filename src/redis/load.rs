//! `restore --to`: loads a snapshot's keys and function libraries into a live Redis with
//! pipelined `RESTORE`, over several connections at once.
//!
//! Each key's payload is its own serialized value from the RDB plus the snapshot's RDB
//! version and a CRC64 (the `DUMP` format), sent as `RESTORE key ttl payload [REPLACE] ABSTTL
//! [IDLETIME n | FREQ n]` so expiry times and LRU/LFU state survive. Keys are spread over the
//! connections by hash slot (a key always takes the same one; on a cluster, the connection to
//! the master serving its slot), each connection a worker that sends its batches while the
//! RDB is read on. Without `--replace` a first pass over the snapshot asks the target which
//! keys already exist (pipelined `EXISTS`, skipped when the target holds no keys at all),
//! whether it has the modules the snapshot's module keys need and whether its function
//! libraries clash, and refuses before writing anything. That pass is left out when it could
//! find nothing: an empty target without function libraries, and a key index that shows no
//! module key and no db the target lacks. Function libraries go first, with
//! one `FUNCTION RESTORE` (on every master of a cluster), then the first key alone: a target
//! too old for the payload's RDB version refuses it, and the load stops with nothing else
//! written. With `--skip-existing` no first pass is needed: `RESTORE` without `REPLACE`
//! answers `BUSYKEY` for a key that exists, which is counted and skipped. A load that stops
//! midway ([`LoadError::Stopped`]) says how many keys were written, a key up to which every
//! key in RDB order was written, and how to resume.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;

use indicatif::ProgressBar;
use redis::ConnectionLike;
use serde::Serialize;

use crate::engine::restore::Blobs;
use crate::error::Error;
use crate::format::snapshot::Snapshot;
use crate::rdb::{functions_payload, kind_of, library_name, Item, RdbReader, ReadOptions, Record, Value, ValueKind};
use crate::redis::cluster_target::{LoadTarget, Route};
use crate::redis::dbmap::DbMap;
use crate::redis::inspect::now_ms;
use crate::redis::keyindex::{self, KeyIndex};
use crate::redis::keyscan::{rdb_file, KeyFilter, KeyRef};
use crate::redis::lanes::{Batch, Ctx, Lane};
use crate::redis::modules;
use crate::redis::source::command::map_err;
use crate::redis::source::{ConnectOptions, RedisUrl};

pub use crate::redis::load_error::LoadError;

/// Conflicting keys named in the refusal message.
const SHOWN_CONFLICTS: usize = 20;

/// Batches queued per connection while its worker sends one.
const QUEUED_BATCHES: usize = 2;

/// What to do with the snapshot's function libraries (`--functions`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionPolicy {
    /// Add them; refuse if the target has a library of the same name.
    #[default]
    Append,
    /// Add them, replacing libraries of the same name.
    Replace,
    /// Leave them out.
    Skip,
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
    /// Function libraries (restored with every key of one or all dbs: no pattern or type filter).
    pub functions: FunctionPolicy,
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
            functions: FunctionPolicy::default(),
            batch_keys: 1000,
            batch_bytes: 16 << 20,
            sample: 10,
            progress: None,
            cancel: None,
        }
    }
}

impl LoadOptions {
    /// Whether function libraries come along: every key (of the dbs chosen) is, and they are not skipped.
    fn with_functions(&self) -> bool {
        self.functions != FunctionPolicy::Skip && self.filter.whole_dbs()
    }
}

/// What a load did (or, for a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    /// RDB version of the payloads.
    pub rdb_version: u16,
    pub dry_run: bool,
    /// Connections the keys were written through.
    pub connections: usize,
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
    /// Function libraries restored (would be restored).
    pub functions: Vec<String>,
    /// Those the target already has (checked with `--functions append`).
    pub function_conflicts: Vec<String>,
    /// Module data types of the keys and how many keys each.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub module_types: BTreeMap<String, u64>,
    /// Bytes of RESTORE payloads sent.
    pub payload_bytes: u64,
    pub duration_ms: u64,
}

/// Where the keys go: connections, how keys pick one, and what the messages call the target.
struct Plan<'a> {
    addr: &'a str,
    addrs: Vec<String>,
    route: &'a Route,
    redirect: Option<&'a (RedisUrl, ConnectOptions)>,
    cluster: bool,
}

type Con<'c> = &'c mut (dyn ConnectionLike + Send);

/// Loads the keys of `snap` that pass the filter into the server behind `con` (one connection).
pub fn load(
    blobs: &Blobs<'_>,
    snap: &Snapshot,
    con: Con<'_>,
    addr: &str,
    opts: &LoadOptions,
) -> Result<LoadReport, LoadError> {
    let route = Route::Hash(1);
    let plan = Plan { addr, addrs: vec![addr.to_string()], route: &route, redirect: None, cluster: false };
    run(blobs, snap, &mut [con], &plan, opts)
}

/// Loads the keys of `snap` that pass the filter through the connections of `target`.
pub fn load_to(blobs: &Blobs<'_>, snap: &Snapshot, target: &mut LoadTarget, opts: &LoadOptions) -> Result<LoadReport, LoadError> {
    let cluster = target.is_cluster();
    let plan = Plan {
        addr: &target.addr,
        addrs: target.connections.iter().map(|(a, _)| a.clone()).collect(),
        route: &target.route,
        redirect: target.redirect.as_ref(),
        cluster,
    };
    let mut cons: Vec<Con<'_>> = target.connections.iter_mut().map(|(_, c)| c as Con<'_>).collect();
    run(blobs, snap, &mut cons, &plan, opts)
}

fn run(blobs: &Blobs<'_>, snap: &Snapshot, cons: &mut [Con<'_>], plan: &Plan<'_>, opts: &LoadOptions) -> Result<LoadReport, LoadError> {
    let started = std::time::Instant::now();
    let mut report = LoadReport { dry_run: opts.dry_run, connections: cons.len(), ..LoadReport::default() };
    let loaded_modules = modules::loaded(&mut *cons[0]);
    if opts.dry_run || !(opts.replace || opts.skip_existing || nothing_to_check(blobs, snap, cons, plan, opts)?) {
        if let Some(pb) = &opts.progress {
            pb.set_message("checking for existing keys");
        }
        check(blobs, snap, cons, plan, opts, &mut report)?;
        if let Some(loaded) = &loaded_modules {
            let missing = modules::missing(&report.module_types, loaded);
            if !missing.is_empty() && !opts.dry_run {
                return Err(LoadError::MissingModules { addr: plan.addr.into(), missing });
            }
        }
        if report.conflicts > 0 && !opts.dry_run {
            let keys = report.conflict_keys.iter().map(KeyRef::to_string).collect();
            return Err(LoadError::Conflicts { addr: plan.addr.into(), count: report.conflicts, keys });
        }
        if !report.function_conflicts.is_empty() && !opts.dry_run {
            return Err(LoadError::FunctionsExist { addr: plan.addr.into(), names: report.function_conflicts.clone() });
        }
    }
    if !opts.dry_run {
        if let Some(pb) = &opts.progress {
            pb.set_message("restoring keys");
        }
        report.skipped_expired = 0;
        report.module_types.clear();
        let file = rdb_file(snap)?;
        report.restored = 0;
        report.per_db.clear();
        let lanes = keyindex::with_reader(blobs, snap, file, &opts.filter, |r| {
            let rdb = RdbReader::with_options(r, ReadOptions::raw_only()).map_err(|e| Error::rdb(&file.name, e))?;
            Ok::<_, LoadError>(Loader { rdb, what: &file.name, opts, plan, loaded: loaded_modules.as_deref(), report: &mut report }.run(cons))
        })?;
        merge(&mut report, lanes, plan.addr)?;
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Adds the lanes' counts to the report; the first failure (the one earliest in RDB order)
/// as [`LoadError::Stopped`], or alone when it is a target too old and nothing was written.
fn merge(report: &mut LoadReport, lanes: Result<Vec<Lane>, (Vec<Lane>, LoadError, Option<u64>)>, addr: &str) -> Result<(), LoadError> {
    let (lanes, failure, next) = match lanes {
        Ok(l) => (l, None, None),
        Err((l, e, next)) => (l, Some(e), next),
    };
    for l in &lanes {
        report.restored += l.written;
        report.skipped_existing += l.skipped;
        report.payload_bytes += l.payload_bytes;
        for (db, n) in &l.per_db {
            *report.per_db.entry(*db).or_default() += n;
        }
    }
    let mut lanes = lanes;
    lanes.sort_by_key(|l| l.gap.unwrap_or(u64::MAX));
    let failure = failure.or_else(|| lanes.iter_mut().find_map(|l| l.failed.take()));
    let Some(source) = failure else { return Ok(()) };
    if report.restored == 0 && matches!(source, LoadError::TargetTooOld { .. }) {
        return Err(source);
    }
    // Every key before the first gap of any lane (or before the first key not yet sent) is written.
    let gap = lanes.iter().filter_map(|l| l.gap).chain(next).min().unwrap_or(u64::MAX);
    let last = lanes.iter().filter_map(|l| l.last.as_ref()).filter(|(seq, _)| *seq < gap).max_by_key(|(seq, _)| *seq).map(|(_, k)| k.clone());
    Err(LoadError::Stopped {
        addr: addr.into(),
        written: report.restored,
        unknown: lanes.iter().map(|l| l.unknown).sum(),
        last,
        source: Box::new(source),
    })
}

/// The db a key of `db` is restored into.
fn target_db(opts: &LoadOptions, plan: &Plan<'_>, db: u64) -> Result<u64, LoadError> {
    let to = opts.db_map.target(db).ok_or(LoadError::Unmapped { db })?;
    if plan.cluster && to != 0 {
        return Err(LoadError::ClusterDb { db });
    }
    Ok(to)
}

/// Whether the key's expiry time has passed.
fn expired(rec: &Record) -> bool {
    rec.expire_ms.is_some_and(|at| at <= now_ms())
}

/// The next key of the RDB that passes the filter and has not expired (expired ones counted),
/// collecting function libraries and module data types on the way.
fn next_key<R: Read>(
    rdb: &mut RdbReader<R>,
    what: &str,
    opts: &LoadOptions,
    functions: &mut Vec<Vec<u8>>,
    report: &mut LoadReport,
) -> Result<Option<Record>, LoadError> {
    while let Some(item) = rdb.next_item().map_err(|e| Error::rdb(what, e))? {
        match item {
            Item::Function(code) if opts.with_functions() => functions.push(code),
            Item::Record(rec) if opts.filter.matches(&rec) => {
                if expired(&rec) {
                    report.skipped_expired += 1;
                    continue;
                }
                if let Value::Module(m) = &rec.value {
                    *report.module_types.entry(m.name.clone()).or_default() += 1;
                }
                return Ok(Some(rec));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// First pass: counts what would be loaded, asks the target which keys exist (unless it
/// holds none) and which of the snapshot's function libraries it has.
fn check(blobs: &Blobs<'_>, snap: &Snapshot, cons: &mut [Con<'_>], plan: &Plan<'_>, opts: &LoadOptions, report: &mut LoadReport) -> Result<(), LoadError> {
    let mut ask = !opts.replace;
    if ask {
        ask = false;
        for (con, addr) in cons.iter_mut().zip(&plan.addrs) {
            let info: String = redis::cmd("INFO").arg("keyspace").query(&mut **con).map_err(|e| map_err(addr, "INFO keyspace", e))?;
            ask |= info.contains("keys=");
        }
    }
    let mut pending: Vec<Vec<(u64, Vec<u8>)>> = vec![Vec::new(); cons.len()];
    let mut functions = Vec::new();
    let file = rdb_file(snap)?;
    report.rdb_version = keyindex::with_reader(blobs, snap, file, &opts.filter, |r| {
        let mut rdb = RdbReader::with_options(r, ReadOptions::walk_only()).map_err(|e| Error::rdb(&file.name, e))?;
        while let Some(rec) = next_key(&mut rdb, &file.name, opts, &mut functions, report)? {
            let db = target_db(opts, plan, rec.db)?;
            report.restored += 1;
            *report.per_db.entry(db).or_default() += 1;
            if report.first_keys.len() < opts.sample {
                report.first_keys.push(KeyRef { db, key: rec.key.clone() });
            }
            if ask {
                let lane = plan.route.lane(&rec.key);
                pending[lane].push((db, rec.key));
                if pending[lane].len() >= opts.batch_keys {
                    flush_existing(&mut *cons[lane], &plan.addrs[lane], &mut pending[lane], report)?;
                }
            }
        }
        Ok::<u16, LoadError>(rdb.version())
    })?;
    for (lane, keys) in pending.iter_mut().enumerate() {
        flush_existing(&mut *cons[lane], &plan.addrs[lane], keys, report)?;
    }
    report.functions = functions.iter().map(|c| library_name(c)).collect();
    if opts.functions == FunctionPolicy::Append && !functions.is_empty() {
        for i in function_targets(cons, plan) {
            let there = libraries(&mut *cons[i], &plan.addrs[i])?;
            report.function_conflicts = report.functions.iter().filter(|n| there.contains(n)).cloned().collect();
            if !report.function_conflicts.is_empty() {
                break;
            }
        }
    }
    Ok(())
}

/// Whether the first pass would find nothing to refuse, known without reading the RDB: the
/// target holds no keys and no function library, and the snapshot's key index shows that
/// every selected key goes to a db the target has and none is a module key. Then the keys
/// are read once, not twice (most of the time of a load into an empty server).
fn nothing_to_check(blobs: &Blobs<'_>, snap: &Snapshot, cons: &mut [Con<'_>], plan: &Plan<'_>, opts: &LoadOptions) -> Result<bool, LoadError> {
    for (con, addr) in cons.iter_mut().zip(&plan.addrs) {
        let info: String = redis::cmd("INFO").arg("keyspace").query(&mut **con).map_err(|e| map_err(addr, "INFO keyspace", e))?;
        if info.contains("keys=") {
            return Ok(false);
        }
    }
    if opts.with_functions() && opts.functions == FunctionPolicy::Append {
        for i in function_targets(cons, plan) {
            if !libraries(&mut *cons[i], &plan.addrs[i])?.is_empty() {
                return Ok(false);
            }
        }
    }
    let Some(index) = KeyIndex::load(blobs, snap, rdb_file(snap)?)? else { return Ok(false) };
    let mut plain = true;
    index.for_each(blobs, &opts.filter, None, |e| {
        plain = !matches!(kind_of(e.rdb_type), Some(ValueKind::Module) | None) && target_db(opts, plan, e.db).is_ok();
        Ok(plain)
    })?;
    Ok(plain)
}

/// Asks which of `keys` exist and empties it.
fn flush_existing(con: &mut dyn ConnectionLike, addr: &str, keys: &mut Vec<(u64, Vec<u8>)>, report: &mut LoadReport) -> Result<(), LoadError> {
    for (db, key) in existing(con, addr, keys)? {
        report.conflicts += 1;
        if report.conflict_keys.len() < SHOWN_CONFLICTS {
            report.conflict_keys.push(KeyRef { db, key });
        }
    }
    keys.clear();
    Ok(())
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

/// The connections function libraries go to: every master of a cluster (each node has its
/// own), else the one server.
fn function_targets(cons: &[Con<'_>], plan: &Plan<'_>) -> std::ops::Range<usize> {
    0..if plan.cluster { cons.len() } else { 1 }
}

/// Names of the function libraries the server has (`FUNCTION LIST`).
fn libraries(con: &mut dyn ConnectionLike, addr: &str) -> Result<Vec<String>, LoadError> {
    let list: redis::Value = redis::cmd("FUNCTION").arg("LIST").query(con).map_err(|e| map_err(addr, "FUNCTION LIST", e))?;
    let redis::Value::Array(libs) = list else { return Ok(Vec::new()) };
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    Ok(libs
        .iter()
        .filter_map(|lib| match lib {
            redis::Value::Array(f) => f.chunks(2).find(|p| text(&p[0]).as_deref() == Some("library_name")).and_then(|p| p.get(1)).and_then(text),
            redis::Value::Map(f) => f.iter().find(|(k, _)| text(k).as_deref() == Some("library_name")).and_then(|(_, v)| text(v)),
            _ => None,
        })
        .collect())
}

/// Sends the function libraries with one `FUNCTION RESTORE` per target node.
fn restore_functions(cons: &mut [Con<'_>], plan: &Plan<'_>, libs: &[Vec<u8>], version: u16, policy: FunctionPolicy) -> Result<(), LoadError> {
    if libs.is_empty() {
        return Ok(());
    }
    let payload = functions_payload(libs, version);
    let mode = if policy == FunctionPolicy::Replace { "REPLACE" } else { "APPEND" };
    let names: Vec<String> = libs.iter().map(|c| library_name(c)).collect();
    for i in function_targets(cons, plan) {
        let (con, addr) = (&mut *cons[i], plan.addrs[i].as_str());
        let sent = redis::cmd("FUNCTION").arg("RESTORE").arg(payload.as_slice()).arg(mode).query::<redis::Value>(&mut *con);
        let Err(e) = sent else { continue };
        let reply = format!("{} {}", e.code().unwrap_or("ERR"), e.detail().unwrap_or(&e.to_string()));
        return Err(if reply.contains("already exists") {
            LoadError::FunctionsExist { addr: addr.into(), names }
        } else if reply.contains("payload version") {
            let target_version = crate::redis::lanes::server_version(con).unwrap_or_else(|| "of unknown version".into());
            LoadError::TargetTooOld { addr: addr.into(), rdb_version: version, target_version }
        } else if e.code().is_none() {
            map_err(addr, "FUNCTION RESTORE", e).into()
        } else {
            LoadError::FunctionsRefused { addr: addr.into(), names, reply }
        });
    }
    Ok(())
}

/// The restoring pass: reads the RDB and hands each key to its connection's worker.
struct Loader<'a, R: Read> {
    rdb: RdbReader<R>,
    what: &'a str,
    opts: &'a LoadOptions,
    plan: &'a Plan<'a>,
    /// The modules the target has loaded (`None`: it did not say).
    loaded: Option<&'a [String]>,
    report: &'a mut LoadReport,
}

/// The lanes after a load, or after a failure: the lanes, the error that stopped the reading
/// (if it was not a lane's), and the sequence number of the first key not handed to a lane.
type Lanes = Result<Vec<Lane>, (Vec<Lane>, LoadError, Option<u64>)>;

/// A batch being filled for one connection, and the db that connection will be in.
#[derive(Default)]
struct Filling {
    batch: Batch,
    db: Option<u64>,
}

impl<R: Read> Loader<'_, R> {
    fn run(mut self, cons: &mut [Con<'_>]) -> Lanes {
        let version = self.rdb.version();
        self.report.rdb_version = version;
        let opts = self.opts;
        let ctx = Ctx { version, skip_existing: opts.skip_existing, progress: opts.progress.as_ref() };
        let mut lanes: Vec<Lane> = self.plan.addrs.iter().map(|a| Lane::new(a.clone(), self.plan.redirect.cloned())).collect();
        let mut fill: Vec<Filling> = (0..cons.len()).map(|_| Filling::default()).collect();
        let mut libs = Vec::new();
        // Function libraries (Redis writes them before the keys), then the first key alone.
        let first = match self.next(&mut libs) {
            Ok(f) => f,
            Err(e) => return Err((lanes, e, Some(0))),
        };
        if let Err(e) = restore_functions(cons, self.plan, &libs, version, self.opts.functions) {
            return Err((lanes, e, Some(0)));
        }
        self.report.functions = libs.iter().map(|c| library_name(c)).collect();
        libs.clear();
        let Some(first) = first else { return Ok(lanes) };
        let lane = match self.queue(&mut fill, first, 0) {
            Ok(l) => l,
            Err(e) => return Err((lanes, e, Some(0))),
        };
        let batch = std::mem::take(&mut fill[lane].batch);
        if !lanes[lane].deliver(&mut *cons[lane], &batch, &ctx) {
            let e = lanes[lane].failed.take().unwrap_or_else(|| LoadError::Repo(Error::Invalid("the first key was refused".into())));
            return Err((lanes, e, Some(1)));
        }
        // The rest: each connection's worker sends its batches while the RDB is read on.
        let stop = AtomicBool::new(false);
        let (read, lanes) = std::thread::scope(|s| {
            let mut senders = Vec::with_capacity(cons.len());
            let mut workers = Vec::with_capacity(cons.len());
            for (mut lane, con) in lanes.drain(..).zip(cons.iter_mut()) {
                let (tx, rx) = sync_channel::<Batch>(QUEUED_BATCHES);
                let (ctx, stop) = (&ctx, &stop);
                workers.push(s.spawn(move || {
                    for batch in rx {
                        if !lane.deliver(&mut **con, &batch, ctx) {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    lane
                }));
                senders.push(tx);
            }
            let read = self.pump(&mut fill, &mut libs, &senders, &stop);
            drop(senders);
            let lanes: Vec<Lane> = workers.into_iter().map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect();
            (read, lanes)
        });
        if let Err((e, next)) = read {
            return Err((lanes, e, Some(next)));
        }
        if lanes.iter().any(|l| l.failed.is_some()) {
            return Ok(lanes);
        }
        // Libraries found after the keys (not where Redis writes them).
        self.report.functions.extend(libs.iter().map(|c| library_name(c)));
        match restore_functions(cons, self.plan, &libs, version, self.opts.functions) {
            Ok(()) => Ok(lanes),
            Err(e) => Err((lanes, e, None)),
        }
    }

    /// The next key to restore, checked against the modules the target has.
    fn next(&mut self, libs: &mut Vec<Vec<u8>>) -> Result<Option<Record>, LoadError> {
        let Some(rec) = next_key(&mut self.rdb, self.what, self.opts, libs, self.report)? else { return Ok(None) };
        if let (Value::Module(_), Some(loaded)) = (&rec.value, self.loaded) {
            let missing = modules::missing(&self.report.module_types, loaded);
            if !missing.is_empty() {
                return Err(LoadError::MissingModules { addr: self.plan.addr.into(), missing });
            }
        }
        Ok(Some(rec))
    }

    /// Adds the `seq`-th key to the batch of its connection; that connection's index.
    fn queue(&mut self, fill: &mut [Filling], rec: Record, seq: u64) -> Result<usize, LoadError> {
        let db = target_db(self.opts, self.plan, rec.db)?;
        if rec.raw.is_empty() {
            return Err(Error::Invalid(format!("no serialized value captured for key {}", KeyRef { db: rec.db, key: rec.key.clone() })).into());
        }
        let lane = self.plan.route.lane(&rec.key);
        let f = &mut fill[lane];
        if f.db != Some(db) {
            f.batch.select(db);
            f.db = Some(db);
        }
        f.batch.restore(seq, db, &rec, self.rdb.version(), self.opts.replace);
        Ok(lane)
    }

    /// Reads the keys after the first and sends full batches to the workers, until the end,
    /// a worker's failure or a reading error (with the sequence number of the first key not sent).
    fn pump(&mut self, fill: &mut [Filling], libs: &mut Vec<Vec<u8>>, senders: &[std::sync::mpsc::SyncSender<Batch>], stop: &AtomicBool) -> Result<(), (LoadError, u64)> {
        let mut seq = 1;
        let unsent = |fill: &[Filling], seq: u64| fill.iter().filter_map(|f| f.batch.first_seq()).min().unwrap_or(seq);
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = Error::check_cancel(self.opts.cancel.as_deref()) {
                return Err((e.into(), unsent(fill, seq)));
            }
            let rec = match self.next(libs) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => return Err((e, unsent(fill, seq))),
            };
            let lane = self.queue(fill, rec, seq).map_err(|e| (e, unsent(fill, seq)))?;
            seq += 1;
            let b = &fill[lane].batch;
            if (b.keys >= self.opts.batch_keys || b.bytes >= self.opts.batch_bytes) && senders[lane].send(std::mem::take(&mut fill[lane].batch)).is_err() {
                break;
            }
        }
        for (f, tx) in fill.iter_mut().zip(senders) {
            if !f.batch.is_empty() {
                let _ = tx.send(std::mem::take(&mut f.batch));
            }
        }
        Ok(())
    }
}
