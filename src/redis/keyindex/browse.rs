//! The key browser's two questions (a page of keys; one key's value), answered through
//! the key index, or by streaming the RDB when the snapshot has none.

use std::collections::HashMap;

use crate::engine::restore::{with_reader, Blobs, RestoreOptions};
use crate::error::{Error, Result};
use crate::format::keyindex::Entry;
use crate::format::snapshot::{Snapshot, SnapshotFile};
use crate::rdb::{approx_memory, kind_of, Item, RdbReader, ReadOptions, Record, ValueKind};
use crate::redis::glob::Glob;

use crate::redis::keyscan::{rdb_file, KeyFilter};

use super::KeyIndex;

/// A page of keys to list.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub db: Option<u64>,
    pub pattern: Option<Glob>,
    pub kind: Option<ValueKind>,
    /// Where the previous page stopped ([`Page::next_cursor`]); `None` for the first page.
    pub cursor: Option<String>,
    /// Keys per page.
    pub limit: usize,
    /// Also read each listed key's record for its [`Detail`] (encoding, memory).
    pub details: bool,
}

/// What only the record itself tells about a key: its encoding and size in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detail {
    /// Encoding in `OBJECT ENCODING` words.
    pub encoding: &'static str,
    /// Approximate bytes the key takes in a Redis server's memory.
    pub approx_memory: u64,
    /// Bytes of the type byte and serialized value (as `RESTORE` sends it).
    pub serialized_len: u64,
}

/// Record bytes one page reads at most for its [`Detail`]s; a key past this is listed without.
pub const DETAIL_BYTES: u64 = 16 << 20;

/// One listed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub db: u64,
    pub key: Vec<u8>,
    pub kind: ValueKind,
    /// Absolute expiry in Unix milliseconds.
    pub expire_ms: Option<u64>,
    /// Bytes of the record in the RDB (expiry, key and value).
    pub record_bytes: u64,
    /// With [`Query::details`], unless the page's records exceed [`DETAIL_BYTES`].
    pub detail: Option<Detail>,
}

/// Keys of one page, and the cursor of the next (`None` after the last page).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// By (db, key) with an index, in file order without.
    pub entries: Vec<KeyInfo>,
    pub next_cursor: Option<String>,
    /// Whether the key index answered (else the RDB was streamed).
    pub indexed: bool,
}

/// A page of the keys of `snap`'s RDB file `q` selects.
pub fn page(blobs: &Blobs<'_>, snap: &Snapshot, q: &Query) -> Result<Page> {
    let file = rdb_file(snap)?;
    let sel = KeyFilter { pattern: q.pattern.clone(), db: q.db, kind: q.kind, ..KeyFilter::default() };
    let limit = q.limit.max(1);
    let Some(index) = KeyIndex::load(blobs, snap, file)? else { return streamed_page(blobs, file, &sel, q.cursor.as_deref(), limit, q.details) };
    let after = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(key_cursor(c).ok_or_else(|| bad_cursor(c))?),
    };
    let (mut listed, mut next_cursor) = (Vec::new(), None);
    index.for_each(blobs, &sel, after.as_ref().map(|(d, k)| (*d, k.as_slice())), |e| {
        if listed.len() == limit {
            next_cursor = listed.last().map(|k: &Entry| format!("k{}:{}", k.db, hex::encode(&k.key)));
            return Ok(false);
        }
        listed.push(e);
        Ok(true)
    })?;
    let mut details = if q.details { details(&index, blobs, &listed)? } else { HashMap::new() };
    let entries = listed
        .into_iter()
        .map(|e| {
            let detail = details.remove(&(e.db, e.key.clone()));
            let kind = kind_of(e.rdb_type).unwrap_or(ValueKind::Module);
            KeyInfo { db: e.db, kind, expire_ms: e.expire_ms, record_bytes: e.len, key: e.key, detail }
        })
        .collect();
    Ok(Page { entries, next_cursor, indexed: true })
}

/// The [`Detail`]s of `entries`, by (db, key): their records read through the index, as
/// many as fit in [`DETAIL_BYTES`].
fn details(index: &KeyIndex<'_>, blobs: &Blobs<'_>, entries: &[Entry]) -> Result<HashMap<(u64, Vec<u8>), Detail>> {
    let mut budget = DETAIL_BYTES;
    let mut chosen: Vec<Entry> = entries
        .iter()
        .filter(|e| {
            let fits = e.len <= budget;
            budget -= if fits { e.len } else { 0 };
            fits
        })
        .cloned()
        .collect();
    let mut out = HashMap::new();
    if chosen.is_empty() {
        return Ok(out);
    }
    let bytes = index.mini_rdb(blobs, &mut chosen)?;
    let opts = ReadOptions { capture_raw: false, ..ReadOptions::default() };
    let mut rdb = RdbReader::with_options(bytes.as_slice(), opts).map_err(|e| Error::rdb(&index.file.name, e))?;
    while let Some(item) = rdb.next_item().map_err(|e| Error::rdb(&index.file.name, e))? {
        if let Item::Record(rec) = item {
            out.insert((rec.db, rec.key.clone()), detail(&rec));
        }
    }
    Ok(out)
}

fn detail(rec: &Record) -> Detail {
    Detail { encoding: rec.encoding, approx_memory: approx_memory(rec), serialized_len: rec.serialized_len }
}

fn bad_cursor(c: &str) -> Error {
    Error::Invalid(format!(
        "cursor={c:?} is not a cursor this server gave (next_cursor of the previous page of this snapshot); start again without one"
    ))
}

/// `k<db>:<hex key>`: the last key of the previous page.
fn key_cursor(c: &str) -> Option<(u64, Vec<u8>)> {
    let (db, key) = c.strip_prefix('k')?.split_once(':')?;
    Some((db.parse().ok()?, hex::decode(key).ok()?))
}

/// Why a streamed page stopped reading.
enum Halt {
    Full,
    Failed(Error),
}

impl From<Error> for Halt {
    fn from(e: Error) -> Halt {
        Halt::Failed(e)
    }
}

/// A page without an index: the RDB streamed, `n<count>` cursors counting matched keys.
fn streamed_page(blobs: &Blobs<'_>, file: &SnapshotFile, sel: &KeyFilter, cursor: Option<&str>, limit: usize, details: bool) -> Result<Page> {
    let skip: u64 = match cursor {
        None => 0,
        Some(c) => c.strip_prefix('n').and_then(|n| n.parse().ok()).ok_or_else(|| bad_cursor(c))?,
    };
    let mut out = Page::default();
    let mut seen = 0u64;
    let opts = if details { ReadOptions { capture_raw: false, ..ReadOptions::default() } } else { ReadOptions::walk_only() };
    let read = with_reader(blobs, file, &RestoreOptions::default(), |r| {
        let mut rdb = RdbReader::with_options(r, opts).map_err(|e| Error::rdb(&file.name, e))?;
        loop {
            let start = rdb.offset();
            let Some(item) = rdb.next_item().map_err(|e| Error::rdb(&file.name, e))? else { return Ok(()) };
            let Item::Record(rec) = item else { continue };
            if !sel.matches(&rec) {
                continue;
            }
            seen += 1;
            if seen <= skip {
                continue;
            }
            if out.entries.len() == limit {
                out.next_cursor = Some(format!("n{}", seen - 1));
                return Err(Halt::Full);
            }
            let record_bytes = rdb.offset() - start;
            let detail = details.then(|| detail(&rec));
            out.entries.push(KeyInfo { db: rec.db, kind: rec.kind, expire_ms: rec.expire_ms, record_bytes, key: rec.key, detail });
        }
    });
    match read {
        Ok(()) if skip > 0 && seen < skip => Err(Error::Invalid(format!("cursor n{skip} is past the last key: only {seen} keys match"))),
        Ok(()) | Err(Halt::Full) => Ok(out),
        Err(Halt::Failed(e)) => Err(e),
    }
}

/// The record of `key` in `db` of `snap`'s RDB file, value decoded; `None` if it has no
/// such key.
pub fn value(blobs: &Blobs<'_>, snap: &Snapshot, db: u64, key: &[u8]) -> Result<Option<Record>> {
    let file = rdb_file(snap)?;
    let (bytes, offset) = match KeyIndex::load(blobs, snap, file)? {
        Some(index) => {
            let mut walk = index.walk(blobs);
            walk.seek(db, key)?;
            match walk.next()? {
                Some(e) if e.db == db && e.key == key => {
                    let offset = e.offset;
                    (index.mini_rdb(blobs, &mut [e])?, offset)
                }
                _ => return Ok(None),
            }
        }
        None => {
            // Stops at the key: the rest of the file is not read.
            let found = with_reader(blobs, file, &RestoreOptions::default(), |r| {
                let mut rdb = RdbReader::with_options(r, ReadOptions::default()).map_err(|e| Error::rdb(&file.name, e))?;
                while let Some(item) = rdb.next_item().map_err(|e| Error::rdb(&file.name, e))? {
                    if let Item::Record(rec) = item {
                        if rec.db == db && rec.key == key {
                            return Err(Found::Yes(Box::new(rec)));
                        }
                    }
                }
                Ok(())
            });
            return match found {
                Ok(()) => Ok(None),
                Err(Found::Yes(rec)) => Ok(Some(*rec)),
                Err(Found::Failed(e)) => Err(e),
            };
        }
    };
    let mut rdb = RdbReader::new(bytes.as_slice()).map_err(|e| Error::rdb(&file.name, e))?;
    while let Some(item) = rdb.next_item().map_err(|e| Error::rdb(&file.name, e))? {
        if let Item::Record(mut rec) = item {
            rec.offset = offset;
            return Ok(Some(rec));
        }
    }
    Ok(None)
}

/// Why a streamed value lookup stopped reading.
enum Found {
    Yes(Box<Record>),
    Failed(Error),
}

impl From<Error> for Found {
    fn from(e: Error) -> Found {
        Found::Failed(e)
    }
}
