//! A per-snapshot key index, so one key (or a few) of a large snapshot is found and read
//! without parsing the whole RDB.
//!
//! Design (bytes in `format::keyindex`):
//! - Written at backup time in the same pass as the facts: the parser thread that already
//!   walks every record (`engine::facts`) hands each one's (db, key, type byte, expiry,
//!   file offset, length) to a builder. Redis writes keys unsorted, so the builder sorts in
//!   bounded memory: every 16 MiB of entries are sorted and spilled to an unlinked temporary
//!   file, and the runs are merged at the end (memory stays ~16-32 MiB whatever the key count).
//!   Off with `backup --no-key-index`; not written for input that is not a complete RDB.
//! - Entries are sorted by (db, key bytes) and cut into pages of 16-128 KiB (~32 KiB on
//!   average) after a key whose FNV hash has its low 9 bits zero, so the cut points depend on
//!   the keys alone. A page stores each key as the length it shares with the previous key
//!   plus the rest, then the type byte and varints for expiry, offset and length (~20 bytes
//!   a key for typical names). Pages are ordinary blobs (keyed id, dedup, zstd, encrypted,
//!   packed), so a page whose keys and records did not move is stored once across snapshots
//!   (record offsets do move when earlier records change size: dedup of pages is a bonus,
//!   not a promise).
//! - A top table blob names every page (its first db and key, blob id, entry count), holds
//!   the RDB header (magic and version, all a single record needs to be parsed: listpack
//!   and Valkey encodings carry no other context) and the file offset where each chunk list
//!   starts. The snapshot names the top table in its optional `key_index` field (older
//!   readers ignore it; older snapshots have none and every reader falls back to streaming).
//! - Lookup: top table -> binary search -> one page -> (offset, length) -> the one chunk
//!   list covering it -> only the chunks inside the range, each verified against its id ->
//!   a small RDB of the header, a SELECTDB and the record bytes, which every existing
//!   consumer (inspect, export, restore --to, restore --target) reads as it reads the whole
//!   file. Its keys are checked against the index entries before anyone sees them.
//! - A pattern with a literal prefix (`user:42`, `user:*`) seeks to it in each db; other
//!   patterns (`*:42`) and selections of more than [`MAX_SELECT`] keys or
//!   [`MAX_SELECT_BYTES`] stream the whole RDB as before, which is then the faster way.
//! - Prune keeps the top table and pages of every snapshot; `check` decodes them and, with
//!   `--read-data`, rebuilds the index from the RDB and compares it page by page.

mod browse;
mod mini;

pub use browse::{page, value, Detail, KeyInfo, Page, Query, DETAIL_BYTES};

use std::io::Read;

use crate::crypto::Id;
use crate::engine::range::RangeReader;
use crate::engine::restore::{with_reader as stream, Blobs, RestoreOptions};
use crate::error::{Error, Result};
use crate::format::keyindex::{decode_page, Entry, TopTable};
use crate::format::snapshot::{Snapshot, SnapshotFile};
use crate::rdb::{kind_of, ReadOptions, Record};
use crate::redis::keyscan::{self, rdb_file, KeyFilter};

/// Most keys a selection reads through the index; more stream the RDB instead.
pub const MAX_SELECT: usize = 10_000;
/// Most record bytes a selection reads through the index.
pub const MAX_SELECT_BYTES: u64 = 64 << 20;

/// Whether an entry passes every part of `filter`.
fn matches(filter: &KeyFilter, e: &Entry) -> bool {
    filter.kind.is_none_or(|k| kind_of(e.rdb_type) == Some(k)) && filter.matches_key(e.db, &e.key)
}

/// A snapshot's key index, loaded: its top table and the file it lists.
pub struct KeyIndex<'s> {
    pub top: TopTable,
    pub file: &'s SnapshotFile,
    what: String,
}

impl<'s> KeyIndex<'s> {
    /// The index of `snap`'s file `file`, if the snapshot has one for it.
    pub fn load(blobs: &Blobs<'_>, snap: &'s Snapshot, file: &SnapshotFile) -> Result<Option<KeyIndex<'s>>> {
        let Some(r) = snap.key_index.as_ref().filter(|r| r.file == file.name) else { return Ok(None) };
        let Some(file) = snap.files.iter().find(|f| f.name == r.file) else { return Ok(None) };
        let what = format!("key index {}", r.top.get(..8).unwrap_or(&r.top));
        let id = Id::from_hex(&r.top).ok_or_else(|| Error::corrupt(&what, "bad top table id"))?;
        let top = TopTable::decode(&blobs.load(&id)?, &what)?;
        // Where every page is, in one search when blobs are found a few at a time (a seek
        // to the next db reads another page than the key's own), kept for later requests.
        blobs.locate_and_keep(&top.pages.iter().map(|p| p.id).collect::<Vec<_>>())?;
        Ok(Some(KeyIndex { top, file, what }))
    }

    /// Entries of page `n`.
    pub fn page(&self, blobs: &Blobs<'_>, n: usize) -> Result<Vec<Entry>> {
        let p = &self.top.pages[n];
        decode_page(&blobs.load(&p.id)?, &format!("{} page {}", self.what, p.id.to_hex()))
    }

    /// The selected entries in index order, or `None` when there are too many for the
    /// index to be the faster way (or the pattern has no literal prefix to seek to).
    pub fn select(&self, blobs: &Blobs<'_>, filter: &KeyFilter) -> Result<Option<Vec<Entry>>> {
        if filter.pattern.as_ref().is_none_or(|p| p.literal_prefix().0.is_empty()) {
            return Ok(None);
        }
        let (mut out, mut bytes, mut many) = (Vec::new(), 0u64, false);
        self.for_each(blobs, filter, None, |e| {
            bytes += e.len;
            out.push(e);
            many = out.len() > MAX_SELECT || bytes > MAX_SELECT_BYTES;
            Ok(!many)
        })?;
        Ok((!many).then_some(out))
    }

    /// Calls `each` with the entries `filter` selects, in index order, after `after` (a
    /// db and key) if given, until it returns false. Seeks to the pattern's literal prefix
    /// in each db instead of reading every page.
    pub fn for_each(&self, blobs: &Blobs<'_>, filter: &KeyFilter, after: Option<(u64, &[u8])>, mut each: impl FnMut(Entry) -> Result<bool>) -> Result<()> {
        // An exact name (no wildcard) stops at the first key past it, not past its prefix.
        let (prefix, exact) = filter.pattern.as_ref().map(|p| p.literal_prefix()).unwrap_or_default();
        let mut db = filter.db.unwrap_or(0);
        let mut walk = Walk::new(self, blobs);
        match after {
            Some((adb, akey)) if (adb, akey) >= (db, prefix.as_slice()) => {
                db = adb;
                walk.seek(adb, akey)?;
            }
            _ => walk.seek(db, &prefix)?,
        }
        while let Some(e) = walk.next()? {
            if after.is_some_and(|(adb, akey)| e.cmp_key(adb, akey).is_le()) {
                continue;
            }
            if filter.db.is_some_and(|d| e.db != d) {
                break;
            }
            if e.db == db && (if exact { e.key == prefix } else { e.key.starts_with(&prefix) }) {
                if matches(filter, &e) && !each(e)? {
                    break;
                }
                continue;
            }
            if e.db == db && e.key.as_slice() < prefix.as_slice() {
                continue;
            }
            if filter.db.is_some() {
                break;
            }
            // Past the prefix in this db: on to the prefix in the next db that has keys.
            db = if e.db > db {
                e.db
            } else {
                match db.checked_add(1) {
                    Some(d) => d,
                    None => break,
                }
            };
            walk.seek(db, &prefix)?;
        }
        Ok(())
    }

    /// The RDB version of the file.
    pub fn version(&self) -> Result<u16> {
        mini::version(&self.top.header).ok_or_else(|| Error::corrupt(&self.what, "the stored RDB header is not one"))
    }

    /// A small RDB holding the records of `entries` (in file order), checked against them.
    pub fn mini_rdb(&self, blobs: &Blobs<'_>, entries: &mut [Entry]) -> Result<Vec<u8>> {
        let mut range = RangeReader::new(blobs, self.file, &self.top.list_starts)?;
        range.prepare(entries.iter().map(|e| (e.offset, e.len)))?;
        mini::build(&mut range, &self.top.header, entries, &self.what)
    }
}

/// Entries of an index in order from a seek position, a page at a time.
pub(crate) struct Walk<'i, 'b, 'a, 's> {
    index: &'i KeyIndex<'s>,
    blobs: &'b Blobs<'a>,
    page: usize,
    entries: std::vec::IntoIter<Entry>,
}

impl<'i, 'b, 'a, 's> Walk<'i, 'b, 'a, 's> {
    pub(crate) fn new(index: &'i KeyIndex<'s>, blobs: &'b Blobs<'a>) -> Self {
        Walk { index, blobs, page: 0, entries: Vec::new().into_iter() }
    }

    /// Positions at the first entry at or after `(db, key)`.
    pub(crate) fn seek(&mut self, db: u64, key: &[u8]) -> Result<()> {
        let n = self.index.top.page_for(db, key).unwrap_or(0);
        let mut entries = if self.index.top.pages.is_empty() { Vec::new() } else { self.index.page(self.blobs, n)? };
        let skip = entries.partition_point(|e| e.cmp_key(db, key).is_lt());
        entries.drain(..skip);
        self.page = n + 1;
        self.entries = entries.into_iter();
        Ok(())
    }

    pub(crate) fn next(&mut self) -> Result<Option<Entry>> {
        loop {
            if let Some(e) = self.entries.next() {
                return Ok(Some(e));
            }
            if self.page >= self.index.top.pages.len() {
                return Ok(None);
            }
            self.entries = self.index.page(self.blobs, self.page)?.into_iter();
            self.page += 1;
        }
    }
}

/// Runs `consume` on the RDB of `file` narrowed to the keys `filter` selects: through
/// the key index when the snapshot has one and it can serve the selection, else the whole
/// file streamed from the repository. Records come in file order either way.
pub fn with_reader<T, E: From<Error>>(
    blobs: &Blobs<'_>,
    snap: &Snapshot,
    file: &SnapshotFile,
    filter: &KeyFilter,
    consume: impl FnOnce(&mut dyn Read) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    if filter.pattern.is_some() {
        if let Some(index) = KeyIndex::load(blobs, snap, file)? {
            if let Some(mut entries) = index.select(blobs, filter)? {
                let bytes = index.mini_rdb(blobs, &mut entries)?;
                return consume(&mut bytes.as_slice());
            }
        }
    }
    stream(blobs, file, &RestoreOptions::default(), |r| consume(r))
}

/// [`keyscan::scan`] over the records of `file` that `filter` selects, read through the
/// key index when it can serve them.
pub fn scan_file<E: From<Error>>(
    blobs: &Blobs<'_>,
    snap: &Snapshot,
    file: &SnapshotFile,
    opts: ReadOptions,
    filter: &KeyFilter,
    each: impl FnMut(u16, Record) -> std::result::Result<(), E>,
) -> std::result::Result<u16, E> {
    with_reader(blobs, snap, file, filter, |r| keyscan::scan(r, &file.name, opts, filter, each))
}

/// [`scan_file`] over the snapshot's RDB file.
pub fn scan_snapshot<E: From<Error>>(
    blobs: &Blobs<'_>,
    snap: &Snapshot,
    opts: ReadOptions,
    filter: &KeyFilter,
    each: impl FnMut(u16, Record) -> std::result::Result<(), E>,
) -> std::result::Result<u16, E> {
    scan_file(blobs, snap, rdb_file(snap)?, opts, filter, each)
}
