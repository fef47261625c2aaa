//! `restore --target FILE` with `--keys`/`--db`/`--type`/`--rdb-version`: a new, valid RDB
//! holding the selected keys of a snapshot, written as they stream out of the repository.
//!
//! A whole snapshot keeps its function libraries and the per-database size hints; a
//! filtered one holds keys only (function libraries are not keys). Keys keep their
//! expiry (absolute, so a key that has expired stays expired) and LRU/LFU state.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use serde::Serialize;

use crate::engine::restore::Blobs;
use crate::error::Error;
use crate::format::snapshot::Snapshot;
use crate::rdb::{Item, RdbReader, RdbWriter, ReadOptions, WriteError};
use crate::redis::keyindex;
use crate::redis::keyscan::{rdb_file, KeyFilter};

/// What to write.
#[derive(Debug, Clone, Default)]
pub struct RewriteOptions {
    pub filter: KeyFilter,
    /// RDB version of the output (default: the snapshot's).
    pub version: Option<u16>,
    /// Re-encode every value instead of copying the bytes a target can load (tests).
    pub reencode: bool,
}

impl RewriteOptions {
    /// Whether every key is selected (then function libraries and size hints are kept).
    pub fn whole(&self) -> bool {
        self.filter.whole_dbs() && self.filter.db.is_none()
    }
}

/// What was written.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RewriteReport {
    pub keys: u64,
    pub per_db: BTreeMap<u64, u64>,
    pub functions: u64,
    pub source_version: u16,
    pub rdb_version: u16,
    pub bytes: u64,
    /// Module aux records of the source, which the copy does not carry.
    pub module_aux_dropped: Vec<String>,
}

/// Why the rewrite failed.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error(transparent)]
    Repo(#[from] Error),
    #[error("{0}")]
    Write(#[from] WriteError),
}

/// Writes the selected keys of `snap`'s RDB file to `out` as a new RDB.
pub fn rewrite_snapshot<W: Write>(
    blobs: &Blobs<'_>,
    snap: &Snapshot,
    opts: &RewriteOptions,
    out: W,
) -> Result<(RewriteReport, W), RewriteError> {
    let file = rdb_file(snap)?;
    keyindex::with_reader(blobs, snap, file, &opts.filter, |r| rewrite(r, &file.name, opts, out))
}

/// Reads the RDB `r` (named `what` in errors) and writes the selected keys to `out`.
pub fn rewrite<R: Read, W: Write>(
    r: R,
    what: &str,
    opts: &RewriteOptions,
    out: W,
) -> Result<(RewriteReport, W), RewriteError> {
    let mut rdb = RdbReader::with_options(r, ReadOptions::default()).map_err(|e| Error::rdb(what, e))?;
    let source = rdb.version();
    let version = opts.version.unwrap_or(source);
    let mut w = RdbWriter::new(out, version)?;
    w.set_reencode(opts.reencode);
    let whole = opts.whole();
    let mut report = RewriteReport { source_version: source, rdb_version: version, ..Default::default() };
    let mut db = 0;
    while let Some(item) = rdb.next_item().map_err(|e| Error::rdb(what, e))? {
        match item {
            Item::SelectDb(n) => db = n,
            Item::ResizeDb { db_size, expires_size } if whole => w.select_db(db, Some((db_size, expires_size)))?,
            Item::Function(code) if whole => {
                w.function(&code)?;
                report.functions += 1;
            }
            Item::ModuleAux { module, .. } if whole => report.module_aux_dropped.push(module),
            Item::Record(rec) if opts.filter.matches(&rec) => {
                w.record(&rec, source)?;
                *report.per_db.entry(rec.db).or_default() += 1;
                report.keys += 1;
            }
            _ => {}
        }
    }
    report.bytes = w.bytes() + 9;
    let out = w.finish()?;
    Ok((report, out))
}
