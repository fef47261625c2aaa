//! A large file's chunks located without the index in memory: a hash join on disk.
//!
//! The file's chunk ids (with their places in the file) and the index entries are each
//! cut into partitions by the ids' leading bits and appended, a block at a time, to an
//! unlinked temporary file. Each pair of partitions is then joined in memory and the
//! located chunks are written out again, cut into windows of places in the file; the
//! windows, read in order and each sorted, give the chunks in file order; two lanes join
//! every other partition each, into spills of their own. Memory: two partitions or one
//! window (about 128 Ki records each) plus a block per partition being written, whatever
//! the size of the file or the repository; disk: about 170 bytes per chunk.
//! The spill holds ids and places in packs, never data or keys, and has no name.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::restore::Blobs;
use crate::crypto::Id;
use crate::error::{Error, Result};
use crate::format::index::{blobs_at_most, lead, load_readable_listed, read_pack_headers, uncovered_packs, IndexSink};
use crate::format::pack::{BlobEntry, BlobType};
use crate::format::snapshot::SnapshotFile;
use crate::store::{FileInfo, FileKind, Repository};

/// Records per partition or window: about 5-9 MiB each in memory.
const PART: usize = 1 << 17;
/// Bytes of write buffers shared by the partitions of one spill.
const BUFFERS: usize = 4 << 20;
/// Bits of the filter of wanted ids, at most (8 MiB).
const FILTER_BITS_MAX: u32 = 26;

/// A chunk of the file: id, place.
const CHUNK_REC: usize = 32 + 8;
/// An index entry: id, pack number, offset, length, frame_len, raw_len, inner, kind, flags.
const ENTRY_REC: usize = 32 + 4 * 6 + 2;
/// A located chunk: place, then an index entry.
const OUT_REC: usize = 8 + ENTRY_REC;

/// Records of one size cut into buckets, appended to one unlinked file a block at a time.
struct Buckets {
    file: File,
    what: &'static str,
    /// The directory the file lives in, for messages.
    dir: String,
    end: u64,
    block: usize,
    bufs: Vec<Vec<u8>>,
    /// Per bucket, where its blocks lie in the file.
    blocks: Vec<Vec<(u64, u32)>>,
}

impl Buckets {
    fn new(dir: &Path, what: &'static str, buckets: usize, rec: usize) -> Result<Buckets> {
        let file = tempfile::tempfile_in(dir).map_err(|e| Error::io(format!("create a temporary file in {} for the restore's {what}", dir.display()), e))?;
        let block = (BUFFERS / buckets).clamp(4 << 10, 256 << 10) / rec * rec;
        Ok(Buckets { file, what, dir: dir.display().to_string(), end: 0, block, bufs: vec![Vec::new(); buckets], blocks: vec![Vec::new(); buckets] })
    }

    fn push(&mut self, b: usize, rec: &[u8]) -> Result<()> {
        if self.bufs[b].capacity() == 0 {
            self.bufs[b].reserve_exact(self.block);
        }
        self.bufs[b].extend_from_slice(rec);
        if self.bufs[b].len() + rec.len() > self.block {
            self.flush(b)?;
        }
        Ok(())
    }

    fn flush(&mut self, b: usize) -> Result<()> {
        let buf = &mut self.bufs[b];
        if buf.is_empty() {
            return Ok(());
        }
        self.file.write_all_at(buf, self.end).map_err(|e| {
            let what = format!("write the restore's {} to a temporary file in {} (free space there, or let the restore hold more index in memory: --index-memory)", self.what, self.dir);
            Error::io(what, e)
        })?;
        self.blocks[b].push((self.end, buf.len() as u32));
        self.end += buf.len() as u64;
        buf.clear();
        Ok(())
    }

    /// Writes out every buffer and frees them.
    fn finish(&mut self) -> Result<()> {
        for b in 0..self.bufs.len() {
            self.flush(b)?;
            self.bufs[b] = Vec::new();
        }
        Ok(())
    }

    /// Forgets everything written.
    fn clear(&mut self) -> Result<()> {
        self.file.set_len(0).map_err(|e| Error::io(format!("truncate the restore's {}", self.what), e))?;
        self.end = 0;
        self.bufs.iter_mut().for_each(Vec::clear);
        self.blocks.iter_mut().for_each(Vec::clear);
        Ok(())
    }

    /// Bucket `b`'s records, back to back, into `out`.
    fn read(&self, b: usize, out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        self.append(b, out)
    }

    /// Bucket `b`'s records, back to back, after those already in `out`.
    fn append(&self, b: usize, out: &mut Vec<u8>) -> Result<()> {
        let total: usize = self.blocks[b].iter().map(|&(_, len)| len as usize).sum();
        let mut at = out.len();
        out.resize(at + total, 0);
        for &(offset, len) in &self.blocks[b] {
            let len = len as usize;
            self.file.read_exact_at(&mut out[at..at + len], offset).map_err(|e| Error::io(format!("read back the restore's {}", self.what), e))?;
            at += len;
        }
        Ok(())
    }
}

/// The partition of an id among `2^bits`.
fn part(id: &Id, bits: u32) -> usize {
    lead(id).checked_shr(64 - bits).unwrap_or(0) as usize
}

fn put_entry(rec: &mut [u8], pack: u32, e: &BlobEntry) {
    rec[..32].copy_from_slice(&e.id.0);
    for (i, v) in [pack, e.offset, e.length, e.frame_len, e.raw_len, e.inner].into_iter().enumerate() {
        rec[32 + 4 * i..36 + 4 * i].copy_from_slice(&v.to_le_bytes());
    }
    rec[56] = e.kind.code();
    rec[57] = e.flags;
}

fn u32_at(rec: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([rec[at], rec[at + 1], rec[at + 2], rec[at + 3]])
}

fn get_id(rec: &[u8]) -> Id {
    let mut id = [0u8; 32];
    id.copy_from_slice(&rec[..32]);
    Id(id)
}

/// An entry record back: its pack number and entry.
fn get_entry(rec: &[u8]) -> Result<(u32, BlobEntry)> {
    let kind = BlobType::from_code(rec[56]).ok_or_else(|| Error::Invalid("the restore's spill holds a bad blob type".into()))?;
    let e = BlobEntry {
        id: get_id(rec),
        kind,
        flags: rec[57],
        offset: u32_at(rec, 36),
        length: u32_at(rec, 40),
        frame_len: u32_at(rec, 44),
        raw_len: u32_at(rec, 48),
        inner: u32_at(rec, 52),
    };
    Ok((u32_at(rec, 32), e))
}

/// A bitmap of the wanted ids' leading bits: index entries outside it are not spilled.
struct Filter {
    bits: Vec<u64>,
    shift: u32,
}

impl Filter {
    fn new(ids: usize) -> Filter {
        let log = (ids.max(1) * 16).next_power_of_two().trailing_zeros().clamp(16, FILTER_BITS_MAX);
        Filter { bits: vec![0; 1 << (log - 6)], shift: 64 - log }
    }
    fn add(&mut self, id: &Id) {
        let s = (lead(id) >> self.shift) as usize;
        self.bits[s >> 6] |= 1 << (s & 63);
    }
    fn may_hold(&self, id: &Id) -> bool {
        let s = (lead(id) >> self.shift) as usize;
        self.bits[s >> 6] & (1 << (s & 63)) != 0
    }
}

/// The index entries spilled by partition, packs numbered in the order met (so that of a
/// blob stored twice the copy a restore with the index in memory would take is taken).
struct EntrySpill<'f> {
    parts: Buckets,
    bits: u32,
    filter: Option<&'f Filter>,
    packs: Vec<Id>,
    numbers: HashMap<Id, u32>,
    last: Option<(Id, u32)>,
    failed: Option<Error>,
}

impl EntrySpill<'_> {
    fn number(&mut self, pack: Id) -> u32 {
        match self.last {
            Some((p, n)) if p == pack => n,
            _ => {
                let next = self.packs.len() as u32;
                let n = *self.numbers.entry(pack).or_insert(next);
                if n == next {
                    self.packs.push(pack);
                }
                self.last = Some((pack, n));
                n
            }
        }
    }
}

impl IndexSink for EntrySpill<'_> {
    fn add(&mut self, pack: Id, entry: &BlobEntry) {
        // Every pack counts as indexed, whether or not its entries are wanted.
        let n = self.number(pack);
        if self.failed.is_some() || self.filter.is_some_and(|f| !f.may_hold(&entry.id)) {
            return;
        }
        let mut rec = [0u8; ENTRY_REC];
        put_entry(&mut rec, n, entry);
        if let Err(e) = self.parts.push(part(&entry.id, self.bits), &rec) {
            self.failed = Some(e);
        }
    }
    fn clear(&mut self) {
        if let Err(e) = self.parts.clear() {
            self.failed = Some(e);
        }
        self.packs.clear();
        self.numbers.clear();
        self.last = None;
    }
    fn reserve(&mut self, _blobs: usize) {}
    fn finish(&mut self) {}
}

impl Blobs<'_> {
    /// The chunks of `file` found by a join on disk in `dir` ([`located`]); defined here so
    /// that restore.rs need not import this file back.
    pub(crate) fn spilled_chunks(&self, file: &SnapshotFile, dir: &Path) -> Result<Located> {
        located(self, file, dir)
    }
}

/// The chunks of `file` with their packs and index entries, in file order, found by a join
/// on disk in `dir` (see the module's comment): for a file too large for its part of the
/// index to be held in memory.
pub fn located(blobs: &Blobs<'_>, file: &SnapshotFile, dir: &Path) -> Result<Located> {
    let repo = blobs.repo;
    let listed = repo.backend().list(FileKind::Index)?;
    let indexed = blobs_at_most(&listed);
    let chunks = file.chunks as usize;
    let bits = (chunks.max(indexed.min(chunks.saturating_mul(4))).div_ceil(PART)).max(1).next_power_of_two().trailing_zeros();
    // When the index holds many more blobs than the file (a history of snapshots), the
    // file's ids make a filter of the entries worth spilling, so the chunks go first;
    // else both are spilled at once.
    let ((chunk_parts, count), (entry_parts, packs)) = if indexed / 2 > chunks {
        let mut filter = Filter::new(chunks);
        let spilled = spill_chunks(blobs, file, dir, bits, Some(&mut filter))?;
        (spilled, spill_entries(repo, listed, dir, bits, Some(&filter))?)
    } else {
        std::thread::scope(|s| {
            let entries = s.spawn(|| spill_entries(repo, listed, dir, bits, None));
            let spilled = spill_chunks(blobs, file, dir, bits, None);
            let entries = entries.join().unwrap_or_else(|_| Err(Error::Invalid("the restore's index spill panicked".into())));
            Ok::<_, Error>((spilled?, entries?))
        })?
    };
    let outs = join(&chunk_parts, &entry_parts, dir, count)?;
    Ok(Located { outs, packs, count, window: 0, recs: Vec::new(), next: 0, raw: Vec::new() })
}

/// The file's chunk ids with their places, by partition (adding each to `filter`); and how many.
fn spill_chunks(blobs: &Blobs<'_>, file: &SnapshotFile, dir: &Path, bits: u32, mut filter: Option<&mut Filter>) -> Result<(Buckets, u64)> {
    let mut parts = Buckets::new(dir, "chunk ids", 1 << bits, CHUNK_REC)?;
    let mut count = 0u64;
    let mut rec = [0u8; CHUNK_REC];
    for id in blobs.chunk_ids(file) {
        let id = id?;
        if let Some(f) = filter.as_deref_mut() {
            f.add(&id);
        }
        rec[..32].copy_from_slice(&id.0);
        rec[32..].copy_from_slice(&count.to_le_bytes());
        parts.push(part(&id, bits), &rec)?;
        count += 1;
    }
    parts.finish()?;
    super::restore::check_count(file, count)?;
    Ok((parts, count))
}

/// The index entries `filter` lets through, by partition, and the packs by number.
fn spill_entries(repo: &Repository, listed: Vec<FileInfo>, dir: &Path, bits: u32, filter: Option<&Filter>) -> Result<(Buckets, Vec<Id>)> {
    let mut spill = EntrySpill {
        parts: Buckets::new(dir, "index entries", 1 << bits, ENTRY_REC)?,
        bits,
        filter,
        packs: Vec::new(),
        numbers: HashMap::new(),
        last: None,
        failed: None,
    };
    let (_, damaged) = load_readable_listed(repo, Some(listed), &mut spill)?;
    if !damaged.is_empty() {
        // As a restore with the index in memory does: the packs no readable index file
        // names are indexed from their own headers.
        let uncovered = uncovered_packs(repo, |id| spill.numbers.contains_key(id))?;
        for (pack, entries) in read_pack_headers(repo, &uncovered).0 {
            for e in &entries {
                spill.add(pack, e);
            }
        }
    }
    if let Some(e) = spill.failed.take() {
        return Err(e);
    }
    spill.parts.finish()?;
    Ok((spill.parts, spill.packs))
}

/// Partitions joined at once: the join is most of a large restore's start, and the
/// restore's workers wait for all of it.
const JOIN_LANES: usize = 2;

/// Each partition's chunks, each with the first entry of its id, written by window of
/// places: every [`JOIN_LANES`]th partition by each lane, into a spill of its own.
fn join(chunk_parts: &Buckets, entry_parts: &Buckets, dir: &Path, count: u64) -> Result<Vec<Buckets>> {
    let lanes = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, JOIN_LANES).min(chunk_parts.blocks.len());
    std::thread::scope(|s| {
        let joins: Vec<_> = (0..lanes).map(|lane| s.spawn(move || join_lane(chunk_parts, entry_parts, dir, count, lane, lanes))).collect();
        joins.into_iter().map(|j| j.join().unwrap_or_else(|_| Err(Error::Invalid("the restore's join panicked".into())))).collect()
    })
}

fn join_lane(chunk_parts: &Buckets, entry_parts: &Buckets, dir: &Path, count: u64, lane: usize, lanes: usize) -> Result<Buckets> {
    let mut out = Buckets::new(dir, "located chunks", (count as usize).div_ceil(PART).max(1), OUT_REC)?;
    let (mut wanted, mut raw) = (Vec::new(), Vec::new());
    // (lead, place, record): sorted by lead, then id.
    let mut want: Vec<(u64, u64, usize)> = Vec::new();
    // (lead, pack number, offset, record).
    let mut have: Vec<(u64, u32, u32, usize)> = Vec::new();
    let mut orec = [0u8; OUT_REC];
    let id_at = |raw: &[u8], at: usize| get_id(&raw[at..]);
    for p in (lane..chunk_parts.blocks.len()).step_by(lanes) {
        chunk_parts.read(p, &mut wanted)?;
        want.clear();
        want.extend(wanted.chunks_exact(CHUNK_REC).enumerate().map(|(i, r)| (lead(&get_id(r)), u64::from_le_bytes(r[32..40].try_into().unwrap_or_default()), i * CHUNK_REC)));
        if want.is_empty() {
            continue;
        }
        // Leading 8 bytes as numbers decide nearly every comparison.
        want.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| id_at(&wanted, a.2).cmp(&id_at(&wanted, b.2))));
        entry_parts.read(p, &mut raw)?;
        have.clear();
        have.extend(raw.chunks_exact(ENTRY_REC).enumerate().map(|(i, r)| (lead(&get_id(r)), u32_at(r, 32), u32_at(r, 36), i * ENTRY_REC)));
        // Of a blob indexed twice, the copy in the pack met first, at the lowest offset.
        have.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| id_at(&raw, a.3).cmp(&id_at(&raw, b.3))).then_with(|| (a.1, a.2).cmp(&(b.1, b.2))));
        let mut h = 0;
        for &(lead, at, w) in &want {
            let id = id_at(&wanted, w);
            while h < have.len() && (have[h].0, id_at(&raw, have[h].3)) < (lead, id) {
                h += 1;
            }
            if h == have.len() || have[h].0 != lead || id_at(&raw, have[h].3) != id {
                return Err(Error::MissingBlob { id: id.to_hex() });
            }
            let from = have[h].3;
            orec[..8].copy_from_slice(&at.to_le_bytes());
            orec[8..].copy_from_slice(&raw[from..from + ENTRY_REC]);
            out.push((at as usize) / PART, &orec)?;
        }
    }
    out.finish()?;
    Ok(out)
}

/// The located chunks, read back a window at a time.
pub struct Located {
    outs: Vec<Buckets>,
    packs: Vec<Id>,
    count: u64,
    window: usize,
    /// The current window's records: (place, offset in `raw`), sorted.
    recs: Vec<(u64, usize)>,
    next: usize,
    raw: Vec<u8>,
}

impl Located {
    fn load_window(&mut self) -> Result<()> {
        self.raw.clear();
        for out in &self.outs {
            out.append(self.window, &mut self.raw)?;
        }
        self.recs.clear();
        self.recs.extend(self.raw.chunks_exact(OUT_REC).enumerate().map(|(i, r)| (u64::from_le_bytes(r[..8].try_into().unwrap_or_default()), i * OUT_REC)));
        self.recs.sort_unstable();
        self.next = 0;
        // Every place of the window once, in order.
        let first = (self.window * PART) as u64;
        let expect = (self.count - first).min(PART as u64) as usize;
        if self.recs.len() != expect || self.recs.iter().enumerate().any(|(i, (at, _))| *at != first + i as u64) {
            return Err(Error::Invalid(format!("the restore's spill lost chunks of window {}", self.window)));
        }
        self.window += 1;
        Ok(())
    }

    fn next_located(&mut self) -> Option<Result<(Id, BlobEntry)>> {
        if self.next == self.recs.len() {
            if (self.window * PART) as u64 >= self.count {
                return None;
            }
            if let Err(e) = self.load_window() {
                self.count = 0;
                return Some(Err(e));
            }
        }
        let (_, at) = self.recs[self.next];
        self.next += 1;
        Some(get_entry(&self.raw[at + 8..at + OUT_REC]).and_then(|(n, e)| {
            let pack = self.packs.get(n as usize).ok_or_else(|| Error::Invalid("the restore's spill names an unknown pack".into()))?;
            Ok((*pack, e))
        }))
    }
}

impl Iterator for Located {
    type Item = Result<(Id, BlobEntry)>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_located()
    }
}
