//! `rdbvault merge`: one RDB holding the keys of several snapshots.
//!
//! A first pass walks every snapshot (no values decoded) to learn which snapshot holds the
//! last copy of each key and each function library, and each snapshot's RDB version; with
//! `--on-conflict error` it stops there at the first key held twice, before writing. The
//! second pass streams the snapshots in order and writes each key from the last snapshot
//! that holds it. Memory: the key names (db, key) of all snapshots, not their values.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};

use serde::Serialize;

use crate::engine::restore::{with_reader, Blobs, RestoreOptions};
use crate::error::Error;
use crate::format::snapshot::Snapshot;
use crate::rdb::{library_name, printable, Item, RdbReader, RdbWriter, ReadOptions, WriteError};
use crate::redis::keyscan::{rdb_file, KeyFilter};

/// What to do with a key held by more than one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// The copy in the snapshot given last wins.
    Last,
    /// Refuse to merge, naming the key.
    Error,
}

/// How to merge.
#[derive(Debug, Clone)]
pub struct MergeOptions {
    pub on_conflict: OnConflict,
    pub filter: KeyFilter,
    /// RDB version of the output (default: the newest of the snapshots').
    pub version: Option<u16>,
}

/// What was written.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MergeReport {
    pub keys: u64,
    pub per_db: BTreeMap<u64, u64>,
    /// Keys held by more than one snapshot (written once, from the last).
    pub conflicts: u64,
    pub functions: u64,
    pub rdb_version: u16,
    pub bytes: u64,
}

/// Why the merge failed.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Repo(#[from] Error),
    #[error("{0}")]
    Write(#[from] WriteError),
    #[error("key {key} in db {db} is in snapshot {first} and in snapshot {second}; nothing was written (use --on-conflict last to keep the copy of the snapshot given last)")]
    Conflict { db: u64, key: String, first: String, second: String },
    #[error("function library {name} is in snapshot {first} and in snapshot {second} with different code; nothing was written (use --on-conflict last)")]
    FunctionConflict { name: String, first: String, second: String },
}

/// Where the last copy of each key and library is, learned in the first pass.
#[derive(Default)]
struct Plan {
    last: HashMap<(u64, Vec<u8>), usize>,
    functions: BTreeMap<String, (usize, Vec<u8>)>,
    version: u16,
    conflicts: u64,
}

/// Merges the RDB files of `snaps` (label, snapshot) in order into `out`.
pub fn merge<W: Write>(
    blobs: &Blobs<'_>,
    snaps: &[(String, &Snapshot)],
    opts: &MergeOptions,
    out: W,
) -> Result<(MergeReport, W), MergeError> {
    let read = |i: usize, ro: ReadOptions, each: &mut dyn FnMut(Item, u16) -> Result<(), MergeError>| {
        let file = rdb_file(snaps[i].1)?;
        with_reader(blobs, file, &RestoreOptions::default(), |r| items(r, &file.name, ro, each))
    };
    let mut plan = Plan::default();
    for (i, (label, _)) in snaps.iter().enumerate() {
        read(i, ReadOptions::walk_only(), &mut |item, version| {
            plan.version = plan.version.max(version);
            match item {
                Item::Record(rec) if opts.filter.matches(&rec) => {
                    if let Some(prev) = plan.last.insert((rec.db, rec.key.clone()), i) {
                        plan.conflicts += 1;
                        if opts.on_conflict == OnConflict::Error {
                            return Err(MergeError::Conflict { db: rec.db, key: printable(&rec.key), first: snaps[prev].0.clone(), second: label.clone() });
                        }
                    }
                }
                Item::Function(code) if whole(&opts.filter) => {
                    let name = library_name(&code);
                    if let Some((prev, old)) = plan.functions.get(&name) {
                        if opts.on_conflict == OnConflict::Error && *old != code {
                            return Err(MergeError::FunctionConflict { name, first: snaps[*prev].0.clone(), second: label.clone() });
                        }
                    }
                    plan.functions.insert(name, (i, code));
                }
                _ => {}
            }
            Ok(())
        })?;
    }
    let version = opts.version.unwrap_or(plan.version);
    let mut w = RdbWriter::new(out, version)?;
    let mut report = MergeReport { rdb_version: version, conflicts: plan.conflicts, ..Default::default() };
    for (_, code) in plan.functions.values() {
        w.function(code)?;
        report.functions += 1;
    }
    for i in 0..snaps.len() {
        read(i, ReadOptions::default(), &mut |item, source| {
            if let Item::Record(rec) = item {
                if plan.last.get(&(rec.db, rec.key.clone())) == Some(&i) && opts.filter.matches(&rec) {
                    w.record(&rec, source)?;
                    *report.per_db.entry(rec.db).or_default() += 1;
                    report.keys += 1;
                }
            }
            Ok(())
        })?;
    }
    report.bytes = w.bytes() + 9;
    Ok((report, w.finish()?))
}

fn whole(f: &KeyFilter) -> bool {
    f.whole_dbs() && f.db.is_none()
}

/// Hands every item of the RDB `r` to `each` with the RDB's version.
fn items<R: Read>(r: R, what: &str, opts: ReadOptions, each: &mut dyn FnMut(Item, u16) -> Result<(), MergeError>) -> Result<(), MergeError> {
    let mut rdb = RdbReader::with_options(r, opts).map_err(|e| Error::rdb(what, e))?;
    let version = rdb.version();
    while let Some(item) = rdb.next_item().map_err(|e| Error::rdb(what, e))? {
        each(item, version)?;
    }
    Ok(())
}
