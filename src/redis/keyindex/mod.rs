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
//! - Layered (`key_layers`, bytes in `format::keylayers`): a backup may list only its file's
//!   records outside runs whose bytes and record starts are those of an earlier full index's
//!   file (the base), in a top table of its own (the delta). A walk merges the delta's
//!   entries with the base's that lie wholly inside a run, moved to the new file's offsets
//!   (the others dropped), by (db, key), the delta's first on a tie; records are then read
//!   through the delta's chunk-list starts, which are the file's.
//! - Prune keeps the top table, pages and chunk facts of every snapshot (and of a layered
//!   one its base, delta and runs); `check` decodes them and, with `--read-data`, rebuilds
//!   the index from the RDB and compares it page by page (a layered one entry by entry).

mod browse;
mod mini;

pub use browse::{page, value, Detail, KeyInfo, Page, Query, DETAIL_BYTES};

use std::io::Read;

use crate::crypto::Id;
use crate::engine::range::RangeReader;
use crate::engine::restore::{with_reader as stream, Blobs, RestoreOptions};
use crate::error::{Error, Result};
use crate::format::keyindex::{Entry, TopTable};
use crate::engine::keywalk::{Layers, Walk};
use crate::format::keylayers::Runs;
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
    /// A full index's top table, or a layered index's delta: either way its header and
    /// chunk-list starts are the file's, which the moved base entries' offsets are in too.
    pub top: TopTable,
    pub file: &'s SnapshotFile,
    what: String,
    layers: Option<Layers>,
}

/// The first 8 digits of a blob id, as messages name it.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// `hex` as a blob id, or an error naming `what` and the kind of blob.
fn blob_id(hex: &str, what: &str, kind: &str) -> Result<Id> {
    Id::from_hex(hex).ok_or_else(|| Error::corrupt(what, format!("bad {kind} id")))
}

/// The blobs a lookup through `snap`'s key index reads first (top tables, a layered index's
/// runs), so that callers finding blobs a few at a time search the index files for them at once.
pub fn first_blobs(snap: &Snapshot) -> Vec<Id> {
    let full = snap.key_index.iter().map(|r| r.top.as_str());
    let layered = snap.key_layers.iter().flat_map(|r| [r.delta.as_str(), r.base.top.as_str(), r.runs.as_str()]);
    full.chain(layered).filter_map(Id::from_hex).collect()
}

/// Whether `snap` has a key index of either kind.
pub fn has_index(snap: &Snapshot) -> bool {
    snap.key_index.is_some() || snap.key_layers.is_some()
}

impl<'s> KeyIndex<'s> {
    /// The index of `snap`'s file `file`, if the snapshot has one for it.
    pub fn load(blobs: &Blobs<'_>, snap: &'s Snapshot, file: &SnapshotFile) -> Result<Option<KeyIndex<'s>>> {
        if let Some(r) = snap.key_index.as_ref().filter(|r| r.file == file.name) {
            let Some(file) = snap.files.iter().find(|f| f.name == r.file) else { return Ok(None) };
            let what = format!("key index {}", short(&r.top));
            let id = blob_id(&r.top, &what, "top table")?;
            let top = TopTable::decode(&blobs.load(&id)?, &what)?;
            // Where every page is, in one search when blobs are found a few at a time (a seek
            // to the next db reads another page than the key's own), kept for later requests.
            blobs.locate_and_keep(&top.pages.iter().map(|p| p.id).collect::<Vec<_>>())?;
            return Ok(Some(KeyIndex { top, file, what, layers: None }));
        }
        let Some(r) = snap.key_layers.as_ref().filter(|r| r.file == file.name) else { return Ok(None) };
        let Some(file) = snap.files.iter().find(|f| f.name == r.file) else { return Ok(None) };
        let what = format!("key index {}", short(&r.delta));
        let base_what = format!("key index base {}", short(&r.base.top));
        let runs_what = format!("key index runs {}", short(&r.runs));
        let ids = [blob_id(&r.delta, &what, "top table")?, blob_id(&r.base.top, &base_what, "top table")?, blob_id(&r.runs, &runs_what, "runs blob")?];
        blobs.locate_and_keep(&ids)?;
        let top = TopTable::decode(&blobs.load(&ids[0])?, &what)?;
        let base = TopTable::decode(&blobs.load(&ids[1])?, &base_what)?;
        let runs = Runs::decode(&blobs.load(&ids[2])?, &runs_what)?;
        blobs.locate_and_keep(&top.pages.iter().chain(&base.pages).map(|p| p.id).collect::<Vec<_>>())?;
        Ok(Some(KeyIndex { top, file, what, layers: Some(Layers { base, base_what, runs }) }))
    }

    /// Its entries in key order, from a seek position.
    pub fn walk<'i, 'b, 'a>(&'i self, blobs: &'b Blobs<'a>) -> Walk<'i, 'b, 'a> {
        Walk::new(&self.top, &self.what, self.layers.as_ref(), blobs)
    }

    /// Whether the index is layered on an earlier snapshot's (else it is a full one).
    pub fn is_layered(&self) -> bool {
        self.layers.is_some()
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
        let mut walk = self.walk(blobs);
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

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::crypto::KdfParams;
    use crate::engine::restore::load_index;
    use crate::engine::session::Session;
    use crate::format::keyindex::Builder;
    use crate::format::keylayers::Run;
    use crate::redis::glob::Glob;
    use crate::store::{ChunkerParams, LocalBackend, Repository};

    /// Entries of a made-up file: `n` keys in db 0 and a fifth as many in db 3, in key order,
    /// records laid out one after another from byte 9 in a scrambled key order.
    fn entries(n: u64, tag: &str) -> Vec<Entry> {
        let mut out: Vec<Entry> = (0..n)
            .map(|i| (0, i))
            .chain((0..n / 5).map(|i| (3, i)))
            .map(|(db, i)| Entry { db, key: format!("k{i:06}{tag}").into_bytes(), rdb_type: (i % 5) as u8, expire_ms: (i % 3 == 0).then_some(1_000 + i), offset: 0, len: 10 + i % 7 })
            .collect();
        let mut order: Vec<usize> = (0..out.len()).collect();
        order.sort_by_key(|i| (*i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut at = 9;
        for i in order {
            out[i].offset = at;
            at += out[i].len;
        }
        out
    }

    /// A repository whose files up to 1 MiB are one chunk, so a blob is stored as a file of
    /// its bytes and read back by its id.
    pub(crate) struct Store {
        _dir: tempfile::TempDir,
        pub(crate) repo: Repository,
    }

    impl Store {
        pub(crate) fn new() -> Store {
            let dir = tempfile::tempdir().unwrap();
            let kdf = KdfParams { m_cost: 8, t_cost: 1, p_cost: 1 };
            let chunker = ChunkerParams { min_size: 1 << 20, avg_size: 2 << 20, max_size: 4 << 20 };
            let repo = Repository::init(Arc::new(LocalBackend::new(dir.path())), b"pw", chunker, kdf).unwrap();
            Store { _dir: dir, repo }
        }

        pub(crate) fn put(&self, bytes: &[u8]) -> Id {
            let stored = Session::open(&self.repo, 1).unwrap().store("blob", bytes).unwrap();
            assert_eq!(stored.file.chunks, 1, "{} bytes are one chunk", bytes.len());
            self.repo.hasher().id(bytes)
        }

        /// Stores `bytes` as the file `name` (one chunk), as a snapshot lists it.
        pub(crate) fn file(&self, name: &str, bytes: &[u8]) -> SnapshotFile {
            let stored = Session::open(&self.repo, 1).unwrap().store(name, bytes).unwrap();
            assert_eq!((stored.file.chunks, stored.file.lists.len()), (1, 1));
            stored.file
        }

        /// A full index of `entries`: its top table's id and how many pages it has.
        pub(crate) fn index(&self, entries: &[Entry]) -> (Id, usize) {
            let mut b = Builder::new();
            for e in entries {
                b.push(e.as_ref()).unwrap();
            }
            let mut top = b.finish(|page| Ok(self.put(page))).unwrap();
            top.header = b"REDIS0011".to_vec();
            top.list_starts = vec![0];
            (self.put(&top.encode()), top.pages.len())
        }
    }

    fn snapshot(key_index: serde_json::Value, key_layers: serde_json::Value) -> Snapshot {
        serde_json::from_value(serde_json::json!({
            "version": 2, "time": "2024-01-01T00:00:00Z", "host": "h", "username": "u",
            "source": {"kind": "file", "name": "dump.rdb"},
            "files": [{"name": "dump.rdb", "size": 1u64 << 40, "blake3": "", "chunks": 1, "lists": ["00"]}],
            "summary": {"bytes_processed": 0, "chunks": 0, "new_chunks": 0, "new_raw_bytes": 0, "bytes_added": 0, "duration_ms": 0},
            "key_index": key_index, "key_layers": key_layers,
        }))
        .unwrap()
    }

    /// Fails naming the first place the listings differ (not printing tens of thousands of entries).
    fn same(got: &[Entry], want: &[Entry], what: &str) {
        let at = got.iter().zip(want).position(|(g, w)| g != w).unwrap_or(got.len().min(want.len()));
        assert!(got.len() == want.len() && at == got.len(), "{what}: {} entries, want {}; first difference at {at}: {:?} vs {:?}", got.len(), want.len(), got.get(at), want.get(at));
    }

    fn walk_all(index: &KeyIndex<'_>, blobs: &Blobs<'_>, db: u64, key: &[u8], most: usize) -> Vec<Entry> {
        let mut walk = index.walk(blobs);
        walk.seek(db, key).unwrap();
        let mut out = Vec::new();
        while out.len() < most {
            match walk.next().unwrap() {
                Some(e) => out.push(e),
                None => break,
            }
        }
        out
    }

    /// A layered index lists the delta's entries and the base's inside runs, moved to the new
    /// file's offsets, merged by key (the delta's first on a tie), from any seek position and
    /// through a pattern; a full index lists its own as they are.
    #[test]
    fn a_layered_walk_merges_the_delta_with_the_moved_base() {
        let store = Store::new();
        let base = entries(40_000, "");
        let end = base.iter().map(|e| e.offset + e.len).max().unwrap();
        // Three runs, moved by other amounts, with gaps between them in both files.
        let runs = Runs(vec![Run { new: 0, base: 0, len: end / 3 }, Run { new: end / 3 + 500, base: end / 3 + 100, len: end / 4 }, Run { new: end, base: end / 3 * 2, len: end - end / 3 * 2 }]);
        let mut delta = entries(3_000, "x");
        // A key of the base again (a tie), and a dropped base key changed.
        let dropped = base.iter().find(|e| runs.shift(e.offset, e.len).is_none()).unwrap().clone();
        let kept = base.iter().find(|e| runs.shift(e.offset, e.len).is_some()).unwrap().clone();
        delta.push(Entry { offset: 7, len: 3, ..dropped.clone() });
        delta.push(Entry { offset: 11, len: 3, rdb_type: 9, ..kept.clone() });
        delta.sort_by(|a, b| a.cmp_key(b.db, &b.key));
        let ((base_top, base_pages), (delta_top, delta_pages)) = (store.index(&base), store.index(&delta));
        assert!(base_pages > 2 && delta_pages > 1, "{base_pages} base pages, {delta_pages} delta pages");
        let runs_id = store.put(&runs.encode());

        let moved = base.iter().filter_map(|e| runs.shift(e.offset, e.len).map(|offset| Entry { offset, ..e.clone() }));
        let mut want: Vec<Entry> = delta.iter().cloned().chain(moved).collect();
        // Stable: on a tie the delta's entry stays first.
        want.sort_by(|a, b| a.cmp_key(b.db, &b.key));
        assert!(want.len() < delta.len() + base.len() && want.len() > base.len() / 2);

        let full = serde_json::json!({"file": "dump.rdb", "top": base_top.to_hex(), "keys": base.len()});
        let layers = serde_json::json!({
            "file": "dump.rdb", "keys": want.len(), "delta": delta_top.to_hex(), "delta_keys": delta.len(), "runs": runs_id.to_hex(),
            "base": {"file": "old.rdb", "top": base_top.to_hex(), "keys": base.len()},
        });
        let (layered, plain) = (snapshot(serde_json::Value::Null, layers), snapshot(full, serde_json::Value::Null));
        assert_eq!(first_blobs(&layered), vec![delta_top, base_top, runs_id]);
        let (idx, _) = load_index(&store.repo).unwrap();
        let blobs = Blobs::new(&store.repo, &idx).unwrap();

        let index = KeyIndex::load(&blobs, &plain, &plain.files[0]).unwrap().unwrap();
        assert!(!index.is_layered());
        same(&walk_all(&index, &blobs, 0, b"", usize::MAX), &base, "full index");

        let index = KeyIndex::load(&blobs, &layered, &layered.files[0]).unwrap().unwrap();
        assert!(index.is_layered());
        same(&walk_all(&index, &blobs, 0, b"", usize::MAX), &want, "layered index");
        let tie = want.iter().position(|e| e.cmp_key(kept.db, &kept.key).is_eq()).unwrap();
        assert_eq!((want[tie].rdb_type, want[tie + 1].rdb_type, want[tie + 1].offset), (9, kept.rdb_type, runs.shift(kept.offset, kept.len).unwrap()));
        assert!(!want.iter().any(|e| e.offset == dropped.offset), "the dropped record is not listed");

        // Seeks to every sort of place: keys of either side, keys of none, db ends.
        let mut seeks: Vec<(u64, Vec<u8>)> = want.iter().step_by(1_777).map(|e| (e.db, e.key.clone())).collect();
        seeks.extend([(0, b"k0123".to_vec()), (0, b"k039999~".to_vec()), (1, Vec::new()), (3, b"k".to_vec()), (3, b"k007999z".to_vec()), (4, Vec::new())]);
        for (db, key) in seeks {
            let from = want.partition_point(|e| e.cmp_key(db, &key).is_lt());
            let got = walk_all(&index, &blobs, db, &key, 2_500);
            same(&got, &want[from..(from + 2_500).min(want.len())], &format!("seek to {db}:{}", String::from_utf8_lossy(&key)));
        }

        // A pattern, after a cursor, and a selection small enough to serve.
        let filter = KeyFilter { pattern: Some(Glob::new(b"k0012*")), ..KeyFilter::default() };
        let matching: Vec<&Entry> = want.iter().filter(|e| e.key.starts_with(b"k0012")).collect();
        let mut got = Vec::new();
        index.for_each(&blobs, &filter, None, |e| {
            got.push(e);
            Ok(true)
        }).unwrap();
        assert_eq!(got.iter().collect::<Vec<_>>(), matching);
        let after = &matching[matching.len() / 2];
        let mut rest = Vec::new();
        index.for_each(&blobs, &filter, Some((after.db, &after.key)), |e| {
            rest.push(e);
            Ok(true)
        }).unwrap();
        assert_eq!(rest.iter().collect::<Vec<_>>(), &matching[matching.len() / 2 + 1..]);
        assert_eq!(index.select(&blobs, &filter).unwrap().unwrap(), got);
    }
}
