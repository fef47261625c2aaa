//! The bytes of a snapshot's key index (see `redis::keyindex` for the design): entries,
//! pages, the top table, and the builder that sorts a backup's keys in bounded memory.

use std::fs::File;
use std::io::{BufReader, Read, Seek, Write};

use crate::crypto::Id;
use crate::error::{Error, Result};
use crate::format::varint::{put_varint, Cursor};

/// Magic of a page blob's plaintext with entries one after another (written until the
/// twentieth performance round; still read).
const PAGE_MAGIC_ROWS: &[u8; 4] = b"RVK1";
/// Magic of a page blob's plaintext with each field in a column of its own.
const PAGE_MAGIC: &[u8; 4] = b"RVK2";
/// Magic of the top table blob's plaintext.
const TOP_MAGIC: &[u8; 4] = b"RVT1";

/// A page is never cut before it holds this many bytes...
const PAGE_MIN: usize = 16 * 1024;
/// ...and always once it holds this many.
const PAGE_MAX: usize = 128 * 1024;
/// Between the two, a page ends after a key whose hash has these bits zero (one in 512
/// keys: about 32 KiB past the minimum at ~20 bytes an entry).
const PAGE_MASK: u64 = 0x1FF;

/// Entries held in memory before a sorted run is spilled to a temporary file. A run is written
/// on a thread of its own while the next one fills, so two can be held: 6 MiB each keeps the
/// 12 MiB a single run had (12 rather than 16: 6-8 MiB less peak memory in a 1 GiB backup).
const RUN_BYTES: usize = 6 << 20;
/// Entries sorted as a segment while the backup still reads: the sort at the end (on the
/// backup's critical path) only merges the segments.
const SEGMENT: usize = 8192;

/// One key of the RDB: where its record (expiry and LRU/LFU opcodes included) lies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    pub db: u64,
    pub key: Vec<u8>,
    /// RDB value type byte.
    pub rdb_type: u8,
    /// Absolute expiry in Unix milliseconds.
    pub expire_ms: Option<u64>,
    /// File offset of the record's first opcode.
    pub offset: u64,
    /// Bytes from `offset` to the end of the record's value.
    pub len: u64,
}

impl Entry {
    /// The order of the index: by database, then key bytes.
    pub fn cmp_key(&self, db: u64, key: &[u8]) -> std::cmp::Ordering {
        (self.db, self.key.as_slice()).cmp(&(db, key))
    }

    /// The entry with its key borrowed.
    pub fn as_ref(&self) -> EntryRef<'_> {
        EntryRef { db: self.db, key: &self.key, rdb_type: self.rdb_type, expire_ms: self.expire_ms, offset: self.offset, len: self.len }
    }
}

/// An [`Entry`] whose key is borrowed: what the builder takes, so a key is not allocated per record.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    pub db: u64,
    pub key: &'a [u8],
    pub rdb_type: u8,
    pub expire_ms: Option<u64>,
    pub offset: u64,
    pub len: u64,
}

/// One page of the index, as the top table names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRef {
    pub db: u64,
    /// The page's first key.
    pub first_key: Vec<u8>,
    /// The page blob.
    pub id: Id,
    /// Entries in the page.
    pub entries: u32,
}

/// The top table: the header of the RDB, its pages in key order, and where each chunk
/// list of the file starts, so one record's bytes need one chunk list, not all of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopTable {
    /// The RDB file's first 9 bytes (magic and version).
    pub header: Vec<u8>,
    /// Keys in the index.
    pub keys: u64,
    pub pages: Vec<PageRef>,
    /// File offset of the first byte of each chunk list blob of the file, in order.
    pub list_starts: Vec<u64>,
}

/// Bytes a run entry takes before its key, at most: the width codes (2), the type (1) and five
/// numbers of up to 8 bytes each.
const RUN_HEAD_MAX: usize = 43;
/// The bits kept of a number read as 8 bytes, by its width code.
const WIDTH_MASK: [u64; 4] = [0xFF, 0xFFFF, 0xFFFF_FFFF, u64::MAX];

/// Which of 1, 2, 4 or 8 bytes hold `v` (as `1 << code`).
fn width_code(v: u64) -> u16 {
    match v {
        0..=0xFF => 0,
        0x100..=0xFFFF => 1,
        0x1_0000..=0xFFFF_FFFF => 2,
        _ => 3,
    }
}

/// Writes `e` as the run files hold it at `buf[n..]`, which has room for [`RUN_HEAD_MAX`]
/// bytes and the key; returns where it ends. Two bytes of width codes (two bits for each of
/// database, expiry, offset, length and key length), the type, the five numbers in their
/// widths, the key. Each number is stored as 8 bytes that the next one overwrites: no varint
/// loop and no growth check per byte (as varints, writing and reading runs cost ~2.5% of an
/// incremental's instructions).
fn put_run_entry(buf: &mut [u8], n: usize, e: EntryRef<'_>) -> usize {
    let numbers = [e.db, expire_code(e.expire_ms), e.offset, e.len, e.key.len() as u64];
    let (mut tag, mut at) = (0u16, n + 3);
    for (i, v) in numbers.into_iter().enumerate() {
        let code = width_code(v);
        tag |= code << (2 * i);
        buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
        at += 1 << code;
    }
    buf[n..n + 2].copy_from_slice(&tag.to_le_bytes());
    buf[n + 2] = e.rdb_type;
    buf[at..at + e.key.len()].copy_from_slice(e.key);
    at + e.key.len()
}

/// The numbers (database, expiry code, offset, length, key length), type and head length of
/// the run entry at the start of `b`, which holds at least [`RUN_HEAD_MAX`] bytes; `None` for
/// width codes no writer sets.
fn run_head(b: &[u8]) -> Option<([u64; 5], u8, usize)> {
    let tag = u16::from_le_bytes([b[0], b[1]]);
    if tag >> 10 != 0 {
        return None;
    }
    let (mut numbers, mut at) = ([0u64; 5], 3);
    for (i, v) in numbers.iter_mut().enumerate() {
        let code = usize::from((tag >> (2 * i)) & 3);
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[at..at + 8]);
        *v = u64::from_le_bytes(w) & WIDTH_MASK[code];
        at += 1 << code;
    }
    Some((numbers, b[2], at))
}

/// Fills `e` from a decoded run entry head and its key.
fn set_entry(e: &mut Entry, numbers: [u64; 5], rdb_type: u8, key: &[u8]) {
    e.key.clear();
    e.key.extend_from_slice(key);
    e.db = numbers[0];
    e.expire_ms = expire_of(numbers[1]);
    (e.offset, e.len, e.rdb_type) = (numbers[2], numbers[3], rdb_type);
}

/// An expiry as stored: 0 for none, else the time plus one ([`expire_of`] reads it back).
fn expire_code(expire_ms: Option<u64>) -> u64 {
    expire_ms.map_or(0, |t| t.saturating_add(1))
}

fn expire_of(v: u64) -> Option<u64> {
    v.checked_sub(1)
}

/// Writes `v` as a varint at `buf[at..]`; returns where it ends.
#[inline(always)]
fn varint_at(buf: &mut [u8], mut at: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        buf[at] = (v as u8) | 0x80;
        v >>= 7;
        at += 1;
    }
    buf[at] = v as u8;
    at + 1
}

/// How many leading bytes `a` and `b` share, compared eight at a time.
fn shared_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let (mut x, mut y) = ([0u8; 8], [0u8; 8]);
        x.copy_from_slice(&a[i..i + 8]);
        y.copy_from_slice(&b[i..i + 8]);
        let differ = u64::from_le_bytes(x) ^ u64::from_le_bytes(y);
        if differ != 0 {
            return i + (differ.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + a[i..n].iter().zip(&b[i..n]).take_while(|(x, y)| x == y).count()
}

/// One column of a page being filled: its first `used` bytes, then room, so that numbers are
/// written by index, without a length update and growth check per byte.
#[derive(Default)]
struct Column {
    buf: Vec<u8>,
    used: usize,
}

impl Column {
    /// Makes room for `n` more bytes.
    fn room(&mut self, n: usize) {
        if self.buf.len() < self.used + n {
            self.buf.resize(self.used + n + 4096, 0);
        }
    }

    /// Appends a varint; needs room for 10 bytes.
    fn varint(&mut self, v: u64) {
        self.used = varint_at(&mut self.buf, self.used, v);
    }

    /// Appends bytes; needs room for them.
    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.used..self.used + b.len()].copy_from_slice(b);
        self.used += b.len();
    }

    fn filled(&self) -> &[u8] {
        &self.buf[..self.used]
    }
}

/// The columns of one page being filled (see [`decode_page`] for the layout).
#[derive(Default)]
struct PageColumns {
    keys: Column,
    types: Vec<u8>,
    expiries: Column,
    offsets: Vec<u64>,
    lengths: Column,
}

impl PageColumns {
    /// Appends one entry: its key stored as the length it shares with the previous key plus
    /// the rest (sorted keys share long prefixes).
    fn push(&mut self, prev: &[u8], e: EntryRef<'_>) {
        let shared = shared_prefix(prev, e.key);
        let rest = &e.key[shared..];
        self.keys.room(30 + rest.len());
        self.keys.varint(e.db);
        self.keys.varint(shared as u64);
        self.keys.varint(rest.len() as u64);
        self.keys.bytes(rest);
        self.types.push(e.rdb_type);
        self.expiries.room(10);
        self.expiries.varint(expire_code(e.expire_ms));
        self.offsets.push(e.offset);
        self.lengths.room(10);
        self.lengths.varint(e.len);
    }

    /// Writes the page's plaintext into `page` and empties the columns.
    fn finish_into(&mut self, page: &mut Vec<u8>) {
        let top = self.offsets.iter().copied().max().unwrap_or(0);
        let width = (8 - top.leading_zeros() as usize / 8).max(1);
        page.clear();
        page.extend_from_slice(PAGE_MAGIC);
        put_varint(page, self.offsets.len() as u64);
        put_varint(page, self.keys.used as u64);
        put_varint(page, self.expiries.used as u64);
        page.push(width as u8);
        page.extend_from_slice(self.keys.filled());
        page.extend_from_slice(&self.types);
        page.extend_from_slice(self.expiries.filled());
        // Each offset is stored as 8 bytes that the next one overwrites.
        let at = page.len();
        page.resize(at + self.offsets.len() * width + 8, 0);
        for (i, o) in self.offsets.iter().enumerate() {
            page[at + i * width..at + i * width + 8].copy_from_slice(&o.to_le_bytes());
        }
        page.truncate(at + self.offsets.len() * width);
        page.extend_from_slice(self.lengths.filled());
        (self.keys.used, self.expiries.used, self.lengths.used) = (0, 0, 0);
        self.types.clear();
        self.offsets.clear();
    }
}

/// Decodes a page; `what` names it in the error.
///
/// A page (`RVK2`) holds its entries' fields column by column: `count`, the byte lengths of the
/// key and expiry columns (varints) and the width of an offset (one byte, 1-8), then the key
/// column (per entry: database, bytes shared with the previous key, length of the rest, the
/// rest), the types (a byte each), the expiries (varints: 0 for none, else the time plus one),
/// the offsets (`width` bytes each, little-endian) and the lengths (varints) to the end. Like
/// values sit together, so zstd compresses the page 3% smaller at twice the speed of the rows
/// of `RVK1` (each entry's fields in turn), which are still read.
pub fn decode_page(plain: &[u8], what: &str) -> Result<Vec<Entry>> {
    let bad = |d: &str| Error::corrupt(what, format!("key index page: {d}"));
    let out = if plain.starts_with(PAGE_MAGIC) {
        decode_columns(plain, &bad)?
    } else if plain.starts_with(PAGE_MAGIC_ROWS) {
        decode_rows(plain, &bad)?
    } else {
        return Err(bad("unknown format"));
    };
    if let Some(i) = out.windows(2).position(|w| w[0].cmp_key(w[1].db, &w[1].key).is_ge()) {
        return Err(bad(&format!("entry {} is out of order", i + 1)));
    }
    Ok(out)
}

/// The database and key of a page's next entry: the key as the bytes it shares with the
/// previous entry's, then the rest.
fn next_key(c: &mut Cursor<'_>, prev: Option<&Entry>) -> Option<(u64, Vec<u8>)> {
    let db = c.varint()?;
    let shared = usize::try_from(c.varint()?).ok()?;
    let rest_len = c.varint()?;
    let mut key = prev.map_or(&[][..], |p| p.key.as_slice()).get(..shared)?.to_vec();
    key.extend_from_slice(c.bytes(rest_len)?);
    Some((db, key))
}

/// The entries of an `RVK2` page.
fn decode_columns(plain: &[u8], bad: &impl Fn(&str) -> Error) -> Result<Vec<Entry>> {
    let truncated = || bad("its columns are truncated");
    let mut c = Cursor { b: plain, at: PAGE_MAGIC.len() };
    let count = c.varint().ok_or_else(truncated)?;
    let (keys_len, expiries_len) = (c.varint().ok_or_else(truncated)?, c.varint().ok_or_else(truncated)?);
    let width = usize::from(*c.bytes(1).and_then(|b| b.first()).ok_or_else(truncated)?);
    if !(1..=8).contains(&width) {
        return Err(bad(&format!("offsets of {width} bytes")));
    }
    let mut keys = Cursor { b: c.bytes(keys_len).ok_or_else(truncated)?, at: 0 };
    // Every entry has a type byte: a count the page cannot hold fails here, before any allocation.
    let types = c.bytes(count).ok_or_else(truncated)?;
    let mut expiries = Cursor { b: c.bytes(expiries_len).ok_or_else(truncated)?, at: 0 };
    let offsets = c.bytes(count.checked_mul(width as u64).ok_or_else(truncated)?).ok_or_else(truncated)?;
    let mut lengths = Cursor { b: &plain[c.at..], at: 0 };
    let mut out: Vec<Entry> = Vec::with_capacity(types.len());
    for (i, (&rdb_type, offset)) in types.iter().zip(offsets.chunks_exact(width)).enumerate() {
        let e = (|| {
            let (db, key) = next_key(&mut keys, out.last())?;
            let mut o = [0u8; 8];
            o[..width].copy_from_slice(offset);
            Some(Entry { db, key, rdb_type, expire_ms: expire_of(expiries.varint()?), offset: u64::from_le_bytes(o), len: lengths.varint()? })
        })()
        .ok_or_else(|| bad(&format!("entry {i} is truncated")))?;
        out.push(e);
    }
    if !(keys.done() && expiries.done() && lengths.done()) {
        return Err(bad("its columns hold more than its entries"));
    }
    Ok(out)
}

/// The entries of an `RVK1` page: per entry database, shared key bytes, the rest's length and
/// the rest, type, expiry, offset and length.
fn decode_rows(plain: &[u8], bad: &impl Fn(&str) -> Error) -> Result<Vec<Entry>> {
    let mut c = Cursor { b: plain, at: PAGE_MAGIC_ROWS.len() };
    let mut out: Vec<Entry> = Vec::new();
    while !c.done() {
        let e = (|| {
            let (db, key) = next_key(&mut c, out.last())?;
            let rdb_type = *c.bytes(1)?.first()?;
            let expire_ms = expire_of(c.varint()?);
            Some(Entry { db, key, rdb_type, expire_ms, offset: c.varint()?, len: c.varint()? })
        })()
        .ok_or_else(|| bad(&format!("entry {} is truncated", out.len())))?;
        out.push(e);
    }
    Ok(out)
}

impl TopTable {
    /// The blob's plaintext.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = TOP_MAGIC.to_vec();
        put_varint(&mut out, self.header.len() as u64);
        out.extend_from_slice(&self.header);
        put_varint(&mut out, self.keys);
        put_varint(&mut out, self.pages.len() as u64);
        for p in &self.pages {
            put_varint(&mut out, p.db);
            put_varint(&mut out, p.first_key.len() as u64);
            out.extend_from_slice(&p.first_key);
            out.extend_from_slice(&p.id.0);
            put_varint(&mut out, u64::from(p.entries));
        }
        put_varint(&mut out, self.list_starts.len() as u64);
        let mut prev = 0;
        for s in &self.list_starts {
            put_varint(&mut out, s.saturating_sub(prev));
            prev = *s;
        }
        out
    }

    /// Decodes the blob; `what` names it in the error.
    pub fn decode(plain: &[u8], what: &str) -> Result<TopTable> {
        let bad = || Error::corrupt(what, "key index top table is truncated or of an unknown format");
        if !plain.starts_with(TOP_MAGIC) {
            return Err(bad());
        }
        let mut c = Cursor { b: plain, at: TOP_MAGIC.len() };
        let top = (|| {
            let n = c.varint()?;
            let header = c.bytes(n)?.to_vec();
            let keys = c.varint()?;
            let n = c.varint()?;
            let mut pages = Vec::new();
            for _ in 0..n {
                let db = c.varint()?;
                let n = c.varint()?;
                let first_key = c.bytes(n)?.to_vec();
                let id = Id(c.bytes(32)?.try_into().ok()?);
                let entries = u32::try_from(c.varint()?).ok()?;
                pages.push(PageRef { db, first_key, id, entries });
            }
            let n = c.varint()?;
            let mut list_starts = Vec::new();
            let mut at = 0u64;
            for _ in 0..n {
                at = at.checked_add(c.varint()?)?;
                list_starts.push(at);
            }
            c.done().then_some(TopTable { header, keys, pages, list_starts })
        })();
        top.ok_or_else(bad)
    }

    /// The page that holds `(db, key)` if any does: the last page starting at or before it.
    pub fn page_for(&self, db: u64, key: &[u8]) -> Option<usize> {
        let n = self.pages.partition_point(|p| (p.db, p.first_key.as_slice()) <= (db, key));
        n.checked_sub(1)
    }
}

/// Cuts sorted entries into pages at key-defined points, handing each page to `store`;
/// a page is encoded as its entries arrive.
struct Pager<F: FnMut(&[u8]) -> Result<Id>> {
    store: F,
    columns: PageColumns,
    /// The last page's plaintext (its buffer reused).
    page: Vec<u8>,
    first: Option<(u64, Vec<u8>)>,
    prev: Vec<u8>,
    entries: u32,
    bytes: usize,
    pages: Vec<PageRef>,
    keys: u64,
}

impl<F: FnMut(&[u8]) -> Result<Id>> Pager<F> {
    fn new(store: F) -> Pager<F> {
        Pager { store, columns: PageColumns::default(), page: Vec::new(), first: None, prev: Vec::new(), entries: 0, bytes: 0, pages: Vec::new(), keys: 0 }
    }

    fn push(&mut self, e: EntryRef<'_>) -> Result<()> {
        self.bytes += e.key.len() + 16;
        let boundary = self.bytes >= PAGE_MAX || (self.bytes >= PAGE_MIN && key_hash(e.db, e.key) & PAGE_MASK == 0);
        if self.first.is_none() {
            self.first = Some((e.db, e.key.to_vec()));
        }
        self.columns.push(&self.prev, e);
        self.prev.clear();
        self.prev.extend_from_slice(e.key);
        self.entries += 1;
        self.keys += 1;
        if boundary {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let Some((db, first_key)) = self.first.take() else { return Ok(()) };
        self.columns.finish_into(&mut self.page);
        let id = (self.store)(&self.page)?;
        self.pages.push(PageRef { db, first_key, id, entries: self.entries });
        self.prev.clear();
        self.entries = 0;
        self.bytes = 0;
        Ok(())
    }
}

/// FNV-1a of db and key: a cheap, stable cut point (the same keys give the same pages).
fn key_hash(db: u64, key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in db.to_le_bytes().iter().chain(key) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Collects a backup's entries in RDB order and writes them sorted as pages. Memory stays
/// bounded: every [`RUN_BYTES`] of entries are sorted and spilled to an unlinked temporary
/// file, and the runs are merged at the end. Keys sit in one arena, not one allocation each.
#[derive(Default)]
pub struct Builder {
    run: Run,
    runs: Vec<File>,
    /// The run being sorted and written on its own thread: the backup's pipeline waits on the
    /// thread that feeds this builder, and a spill there (~20 ms a run) stalled every stage.
    spilling: Option<std::thread::JoinHandle<Result<(File, Run)>>>,
    /// A spilled run's buffers, emptied, for the next run.
    spare: Option<Run>,
}

/// Entries of one run in memory.
#[derive(Default)]
struct Run {
    keys: Vec<u8>,
    mem: Vec<Held>,
    /// Where the segment not yet sorted starts in `mem`.
    unsorted: usize,
    /// Whether `mem` holds keys of more than one database (most RDBs have one).
    dbs: bool,
}

/// An entry in memory, in 64 bytes (the sorts move entries); its key is
/// `keys[key_at..key_at + key_len]` of its run.
#[derive(Clone, Copy)]
struct Held {
    /// The key's first 16 bytes, big-endian, zero-padded: most comparisons end here, without
    /// a look into the key arena (a cache miss each: 8 bytes, shared by keys such as
    /// `session:N`, left the sort at ~20 ms per 100 k keys on the backup's critical path).
    prefix: u128,
    db: u64,
    /// The expiry when `expires`.
    expire_ms: u64,
    offset: u64,
    len: u64,
    key_at: u32,
    key_len: u32,
    rdb_type: u8,
    expires: bool,
}
const _: () = assert!(std::mem::size_of::<Held>() == 64);

/// The first 16 bytes of a key as a big-endian number, zero-padded: ordering these numbers
/// orders keys the same way whenever they differ.
fn key_prefix(key: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = key.len().min(16);
    b[..n].copy_from_slice(&key[..n]);
    u128::from_be_bytes(b)
}

impl Held {
    fn key<'a>(&self, keys: &'a [u8]) -> &'a [u8] {
        &keys[self.key_at as usize..self.key_at as usize + self.key_len as usize]
    }

    fn entry<'a>(&self, keys: &'a [u8]) -> EntryRef<'a> {
        let expire_ms = self.expires.then_some(self.expire_ms);
        EntryRef { db: self.db, key: self.key(keys), rdb_type: self.rdb_type, expire_ms, offset: self.offset, len: self.len }
    }
}

/// The index's order (database, then key bytes), with the prefix tried first.
fn cmp_held(a: &Held, b: &Held, keys: &[u8]) -> std::cmp::Ordering {
    (a.db, a.prefix).cmp(&(b.db, b.prefix)).then_with(|| a.key(keys).cmp(b.key(keys)))
}

/// [`cmp_held`] for entries of one database: a quarter fewer instructions in the sorts, which
/// are ~8% of an incremental's.
fn cmp_held_in_db(a: &Held, b: &Held, keys: &[u8]) -> std::cmp::Ordering {
    if a.prefix != b.prefix {
        a.prefix.cmp(&b.prefix)
    } else {
        a.key(keys).cmp(b.key(keys))
    }
}

impl Run {
    fn sort_segment(&mut self) {
        let (keys, segment) = (&self.keys, &mut self.mem[self.unsorted..]);
        if self.dbs {
            segment.sort_unstable_by(|a, b| cmp_held(a, b, keys));
        } else {
            segment.sort_unstable_by(|a, b| cmp_held_in_db(a, b, keys));
        }
        self.unsorted = self.mem.len();
    }

    /// Sorts the entries: the last segment, then a stable sort that finds the sorted segments
    /// as runs and merges them. (Segments sorted before a second database came are sorted in
    /// the order of both.)
    fn sort(&mut self) {
        self.sort_segment();
        let keys = &self.keys;
        if self.dbs {
            self.mem.sort_by(|a, b| cmp_held(a, b, keys));
        } else {
            self.mem.sort_by(|a, b| cmp_held_in_db(a, b, keys));
        }
    }

    /// Sorts the run and writes it to a new unlinked temporary file; returns the file, rewound,
    /// and the run emptied.
    fn write(mut self) -> Result<(File, Run)> {
        let io = |e| {
            let dir = std::env::temp_dir();
            Error::io(format!("write a key index run to the temporary directory {} (set TMPDIR to a writable directory, or back up with --no-key-index)", dir.display()), e)
        };
        let mut file = temp_file().map_err(io)?;
        self.sort();
        // Entries are encoded into one buffer, written whenever it passes 64 KiB: one copy
        // and one call per 64 KiB rather than per entry.
        let mut buf = vec![0u8; RUN_READ + 1024];
        let mut n = 0;
        for h in &self.mem {
            let e = h.entry(&self.keys);
            if n + RUN_HEAD_MAX + e.key.len() > buf.len() {
                file.write_all(&buf[..n]).map_err(io)?;
                n = 0;
                if RUN_HEAD_MAX + e.key.len() > buf.len() {
                    buf.resize(RUN_HEAD_MAX + e.key.len(), 0);
                }
            }
            n = put_run_entry(&mut buf, n, e);
            if n >= RUN_READ {
                file.write_all(&buf[..n]).map_err(io)?;
                n = 0;
            }
        }
        file.write_all(&buf[..n]).map_err(io)?;
        file.rewind().map_err(io)?;
        self.mem.clear();
        self.keys.clear();
        self.unsorted = 0;
        self.dbs = false;
        Ok((file, self))
    }
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Adds one key.
    pub fn push(&mut self, e: EntryRef<'_>) -> Result<()> {
        let run = &mut self.run;
        let too_long = || Error::Invalid(format!("a key of {} bytes is too long for the key index", e.key.len()));
        let key_at = u32::try_from(run.keys.len()).map_err(|_| too_long())?;
        let key_len = u32::try_from(e.key.len()).map_err(|_| too_long())?;
        run.keys.extend_from_slice(e.key);
        run.dbs |= run.mem.first().is_some_and(|f| f.db != e.db);
        run.mem.push(Held {
            prefix: key_prefix(e.key),
            db: e.db,
            expire_ms: e.expire_ms.unwrap_or(0),
            offset: e.offset,
            len: e.len,
            key_at,
            key_len,
            rdb_type: e.rdb_type,
            expires: e.expire_ms.is_some(),
        });
        if run.mem.len() - run.unsorted >= SEGMENT {
            run.sort_segment();
        }
        if run.keys.len() + run.mem.len() * std::mem::size_of::<Held>() >= RUN_BYTES || run.keys.len() >= u32::MAX as usize / 2 {
            self.spill()?;
        }
        Ok(())
    }

    /// Hands the run in memory to a thread that sorts and writes it, after the previous one
    /// is written (whose buffers this run's successor reuses).
    fn spill(&mut self) -> Result<()> {
        self.wait_spill()?;
        let next = self.spare.take().unwrap_or_default();
        let run = std::mem::replace(&mut self.run, next);
        let thread = std::thread::Builder::new().name("key index run".into()).spawn(move || run.write());
        self.spilling = Some(thread.map_err(|e| Error::io("start a thread to write a key index run", e))?);
        Ok(())
    }

    /// Waits for the run being written, if any: its file joins the runs.
    fn wait_spill(&mut self) -> Result<()> {
        if let Some(thread) = self.spilling.take() {
            let (file, emptied) = thread.join().unwrap_or_else(|_| Err(Error::Invalid("the thread writing a key index run panicked".into())))?;
            self.runs.push(file);
            self.spare = Some(emptied);
        }
        Ok(())
    }

    /// Sorts everything, stores the pages through `store` (which returns each blob's id)
    /// and returns the top table (without header and list starts, which the caller knows).
    pub fn finish(mut self, store: impl FnMut(&[u8]) -> Result<Id>) -> Result<TopTable> {
        self.wait_spill()?;
        self.spare = None;
        let mut pager = Pager::new(store);
        let run = &mut self.run;
        run.sort();
        if self.runs.is_empty() {
            for h in &run.mem {
                pager.push(h.entry(&run.keys))?;
            }
        } else {
            // The entries still in memory join the merge as they are: no last run file.
            let runs = self.runs.drain(..).map(|f| Source::File(BufReader::with_capacity(RUN_READ, f)));
            let sources: Vec<Source> = runs.chain(std::iter::once(Source::Mem(0))).collect();
            let sorted = Sorted { mem: &run.mem, keys: &run.keys };
            // After the input's end the merge and the paging are the backup's critical path:
            // the merge runs on a thread of its own and hands its entries over ([`put_handed`]), 64 KiB
            // at a time, while this thread cuts them into pages.
            std::thread::scope(|s| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
                let merger = s.spawn(move || -> Result<()> {
                    let mut merge = Merge::new(sources, sorted)?;
                    let mut buf = Vec::with_capacity(RUN_READ + 1024);
                    while let Some(e) = merge.next()? {
                        put_handed(&mut buf, e);
                        // A pager that stopped has its own error to report.
                        if buf.len() >= RUN_READ && tx.send(std::mem::replace(&mut buf, Vec::with_capacity(RUN_READ + 1024))).is_err() {
                            return Ok(());
                        }
                    }
                    let _ = tx.send(buf);
                    Ok(())
                });
                let paged = rx.iter().try_for_each(|batch| {
                    let mut c = Cursor { b: &batch, at: 0 };
                    while !c.done() {
                        pager.push(next_handed(&mut c).ok_or_else(|| Error::Invalid("the key index merge handed over a damaged entry".into()))?)?;
                    }
                    Ok(())
                });
                drop(rx);
                let merged = merger.join().unwrap_or_else(|_| Err(Error::Invalid("the key index merge thread panicked".into())));
                merged.and(paged)
            })?;
        }
        pager.flush()?;
        Ok(TopTable { header: Vec::new(), keys: pager.keys, pages: pager.pages, list_starts: Vec::new() })
    }
}

/// The builder's entries still in memory, sorted: the last source of the final merge.
struct Sorted<'m> {
    mem: &'m [Held],
    keys: &'m [u8],
}

/// Bytes read from a run file at a time.
const RUN_READ: usize = 64 * 1024;

/// Where a merged run's entries come from: a spilled file, or the builder's sorted entries
/// still in memory (from this position).
enum Source {
    File(BufReader<File>),
    Mem(usize),
}

/// The k-way merge of sorted runs: a tournament tree of run numbers (each inner node keeps
/// the loser of its match, so the next entry costs one match per level, about half a binary
/// heap's), ordered by each run's current entry, whose key buffer is reused from entry to
/// entry. Each run's (database, 16-byte key prefix) is kept beside the tree, so most matches
/// are two integer compares.
struct Merge<'m> {
    runs: Vec<Source>,
    current: Vec<Entry>,
    order: Vec<(u64, u128)>,
    /// Whether run `i` still has an entry (an ended run loses every match).
    live: Vec<bool>,
    /// `tree[0]` is the winner; `tree[n]` for inner node `n` (children `2n`, `2n + 1`; run `i`
    /// is leaf `k + i`) the loser of its match.
    tree: Vec<usize>,
    lent: Option<usize>,
    sorted: Sorted<'m>,
}

impl<'m> Merge<'m> {
    fn new(runs: Vec<Source>, sorted: Sorted<'m>) -> Result<Merge<'m>> {
        let n = runs.len();
        let mut m = Merge { runs, current: vec![Entry::default(); n], order: vec![(0, 0); n], live: vec![false; n], tree: vec![0; n], lent: None, sorted };
        for i in 0..n {
            m.live[i] = m.advance(i)?;
        }
        if n > 0 {
            m.tree[0] = m.play(1);
        }
        Ok(m)
    }

    /// Plays the matches below node `node` (of `2k`), keeping losers; returns the winner.
    fn play(&mut self, node: usize) -> usize {
        let k = self.runs.len();
        if node >= k {
            return node - k;
        }
        let (a, b) = (self.play(2 * node), self.play(2 * node + 1));
        let (win, lose) = if self.beats(b, a) { (b, a) } else { (a, b) };
        self.tree[node] = lose;
        win
    }

    /// Reads run `i`'s next entry into `current[i]`; false at its end.
    fn advance(&mut self, i: usize) -> Result<bool> {
        let e = &mut self.current[i];
        let more = match &mut self.runs[i] {
            Source::File(r) => read_entry(r, e)?,
            Source::Mem(at) => match self.sorted.mem.get(*at) {
                Some(h) => {
                    *at += 1;
                    let r = h.entry(self.sorted.keys);
                    e.key.clear();
                    e.key.extend_from_slice(r.key);
                    (e.db, e.rdb_type, e.expire_ms, e.offset, e.len) = (r.db, r.rdb_type, r.expire_ms, r.offset, r.len);
                    true
                }
                None => false,
            },
        };
        self.order[i] = if more { (e.db, key_prefix(&e.key)) } else { ENDED };
        Ok(more)
    }

    /// Whether run `a`'s entry comes before run `b`'s: by key, then by run (runs ended last).
    /// An ended run's order is [`ENDED`], so one compare decides all but ties.
    #[inline(always)]
    fn beats(&self, a: usize, b: usize) -> bool {
        let (x, y) = (self.order[a], self.order[b]);
        if x != y {
            return x < y;
        }
        self.beats_tied(a, b)
    }

    /// [`Merge::beats`] for runs whose database and key prefix are the same (or that ended).
    fn beats_tied(&self, a: usize, b: usize) -> bool {
        match (self.live[a], self.live[b]) {
            (true, true) => self.current[a].key.cmp(&self.current[b].key).then(a.cmp(&b)).is_lt(),
            (live, _) => live,
        }
    }

    /// The least entry of all runs. The run whose entry the previous call returned moves on
    /// first (its entry was lent out until now), and replays its matches up to the root.
    fn next(&mut self) -> Result<Option<EntryRef<'_>>> {
        if let Some(run) = self.lent.take() {
            self.live[run] = self.advance(run)?;
            let (mut win, mut node) = (run, (run + self.runs.len()) / 2);
            while node > 0 {
                if self.beats(self.tree[node], win) {
                    std::mem::swap(&mut self.tree[node], &mut win);
                }
                node /= 2;
            }
            self.tree[0] = win;
        }
        let Some(&top) = self.tree.first().filter(|&&w| self.live[w]) else { return Ok(None) };
        self.lent = Some(top);
        Ok(Some(self.current[top].as_ref()))
    }
}

/// The order of a run that has ended: after every entry's (a live entry with the same order
/// still wins, by [`Merge::beats_tied`]).
const ENDED: (u64, u128) = (u64::MAX, u128::MAX);

/// A new temporary file, already unlinked: it disappears with its handle, even on a crash.
pub fn temp_file() -> std::io::Result<File> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir();
    loop {
        let name = format!("rdbvault-keyindex-{}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), rand::random::<u32>());
        let path = dir.join(name);
        match std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path) {
            Ok(f) => {
                std::fs::remove_file(&path)?;
                return Ok(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Reads the next entry of a run file into `e` (reusing its key's buffer); false at its end.
/// Decoded in place from the reader's buffer when it holds the whole entry.
fn read_entry(r: &mut BufReader<impl Read>, e: &mut Entry) -> Result<bool> {
    use std::io::BufRead;
    let buf = r.fill_buf().map_err(|err| Error::io("read a key index run from the temporary directory", err))?;
    if buf.is_empty() {
        return Ok(false);
    }
    if buf.len() >= RUN_HEAD_MAX {
        if let Some((numbers, rdb_type, at)) = run_head(buf) {
            if let Some(key) = usize::try_from(numbers[4]).ok().and_then(|k| buf.get(at..at.checked_add(k)?)) {
                set_entry(e, numbers, rdb_type, key);
                let used = at + key.len();
                r.consume(used);
                return Ok(true);
            }
        }
    }
    read_entry_slowly(r, e)
}

/// Bytes before an entry's key in the merge's hand-over: database, expiry, offset and length
/// (8 bytes each), the key's length (4) and the type (1).
const HANDED: usize = 37;

/// Appends `e` for the thread that cuts pages: numbers at a fixed width, since these bytes
/// never leave memory (as varints, their writing and reading were 2% of an incremental's
/// instructions).
fn put_handed(out: &mut Vec<u8>, e: EntryRef<'_>) {
    let mut head = [0u8; HANDED];
    head[..8].copy_from_slice(&e.db.to_le_bytes());
    head[8..16].copy_from_slice(&expire_code(e.expire_ms).to_le_bytes());
    head[16..24].copy_from_slice(&e.offset.to_le_bytes());
    head[24..32].copy_from_slice(&e.len.to_le_bytes());
    // Keys are shorter than 4 GiB: the builder refuses longer ones.
    head[32..36].copy_from_slice(&(e.key.len() as u32).to_le_bytes());
    head[36] = e.rdb_type;
    out.extend_from_slice(&head);
    out.extend_from_slice(e.key);
}

/// The entry [`put_handed`] wrote at the cursor, or `None` if the bytes end first.
fn next_handed<'a>(c: &mut Cursor<'a>) -> Option<EntryRef<'a>> {
    let head = c.bytes(HANDED as u64)?;
    let number = |at: usize| {
        let mut n = [0u8; 8];
        n.copy_from_slice(&head[at..at + 8]);
        u64::from_le_bytes(n)
    };
    let mut klen = [0u8; 4];
    klen.copy_from_slice(&head[32..36]);
    let key = c.bytes(u64::from(u32::from_le_bytes(klen)))?;
    Some(EntryRef { db: number(0), key, rdb_type: head[36], expire_ms: expire_of(number(8)), offset: number(16), len: number(24) })
}

/// [`read_entry`] for an entry that spans the end of the reader's buffer.
fn read_entry_slowly(r: &mut impl Read, e: &mut Entry) -> Result<bool> {
    let io = |e| Error::io("read a key index run from the temporary directory", e);
    let damaged = || Error::Invalid("a key index run file is damaged".into());
    // Room for the widest head and the 8 bytes its last number is read as.
    let mut head = [0u8; RUN_HEAD_MAX + 8];
    let got = r.read(&mut head[..1]).map_err(io)?;
    if got == 0 {
        return Ok(false);
    }
    r.read_exact(&mut head[1..3]).map_err(io)?;
    let tag = u16::from_le_bytes([head[0], head[1]]);
    let numbers_len: usize = (0..5).map(|i| 1usize << ((tag >> (2 * i)) & 3)).sum();
    r.read_exact(&mut head[3..3 + numbers_len]).map_err(io)?;
    let (numbers, rdb_type, _) = run_head(&head).ok_or_else(damaged)?;
    let klen = u32::try_from(numbers[4]).map_err(|_| damaged())?;
    let mut key = std::mem::take(&mut e.key);
    key.resize(klen as usize, 0);
    r.read_exact(&mut key).map_err(io)?;
    set_entry(e, numbers, rdb_type, &[]);
    e.key = key;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole page of sorted entries, as the pager writes them.
    fn encode_page(entries: &[Entry]) -> Vec<u8> {
        let mut columns = PageColumns::default();
        let mut prev: &[u8] = &[];
        for e in entries {
            columns.push(prev, e.as_ref());
            prev = &e.key;
        }
        let mut page = Vec::new();
        columns.finish_into(&mut page);
        page
    }

    /// The same entries as a page of rows (`RVK1`), as pages were written before the columns.
    fn encode_rows(entries: &[Entry]) -> Vec<u8> {
        let mut out = PAGE_MAGIC_ROWS.to_vec();
        let mut prev: &[u8] = &[];
        for e in entries {
            let shared = shared_prefix(prev, &e.key);
            for v in [e.db, shared as u64, (e.key.len() - shared) as u64] {
                put_varint(&mut out, v);
            }
            out.extend_from_slice(&e.key[shared..]);
            out.push(e.rdb_type);
            for v in [expire_code(e.expire_ms), e.offset, e.len] {
                put_varint(&mut out, v);
            }
            prev = &e.key;
        }
        out
    }

    fn entry(i: u64) -> Entry {
        Entry { db: i % 3, key: format!("user:{:07}", i * 7919 % 100_003).into_bytes(), rdb_type: (i % 5) as u8, expire_ms: (i % 2 == 0).then_some(i * 1000), offset: i * 50, len: 40 + i % 9 }
    }

    fn build(entries: &[Entry], spill_every: Option<usize>) -> (TopTable, Vec<Vec<u8>>) {
        let mut b = Builder::new();
        for (n, e) in entries.iter().enumerate() {
            b.push(e.as_ref()).unwrap();
            if spill_every.is_some_and(|k| (n + 1) % k == 0) {
                b.spill().unwrap();
            }
        }
        let mut blobs = Vec::new();
        let top = b
            .finish(|p| {
                blobs.push(p.to_vec());
                Ok(Id(*blake3::hash(p).as_bytes()))
            })
            .unwrap();
        (top, blobs)
    }

    /// Pages hold every entry once, sorted, whether or not runs were spilled; the top table
    /// round-trips and finds each key's page.
    #[test]
    fn entries_come_back_sorted_from_pages_and_runs() {
        let mut entries: Vec<Entry> = (0..20_000).map(entry).collect();
        // Keys that tie on their first 8 bytes, or differ only by trailing zero bytes.
        for (n, k) in [&b"ab"[..], b"ab\0", b"a", b"", b"abcdefgh", b"abcdefgh\0", b"abcdefgh1", b"abcdefg\xff", b"abcdefghijklmnop", b"abcdefghijklmnop\0", b"abcdefghijklmnopq", b"abcdefghijklmno\xff", b"\xff\xff"].iter().enumerate() {
            entries.insert(n * 1_501, Entry { key: k.to_vec(), db: 1, ..entry(n as u64) });
        }
        // Databases beyond what the sort keys hold (they order by the entries themselves): the
        // larger database first in the input, and a key that sorts first within it; the last
        // keys the order can hold (the merge's mark of an ended run is the same order).
        let high = u64::from(u32::MAX);
        for (n, (db, k)) in [(high + 7, &b"b"[..]), (high, b"z"), (high + 1, b"a"), (u64::MAX, b""), (high + 7, b"a"), (high - 1, b"q"), (u64::MAX, &[0xFF; 16]), (u64::MAX, &[0xFF; 17])].iter().enumerate() {
            entries.insert(n * 2_501 + 17, Entry { key: k.to_vec(), db: *db, ..entry(n as u64) });
        }
        let mut sorted = entries.clone();
        sorted.sort_by(|a, b| a.cmp_key(b.db, &b.key));
        // Unspilled (segments merged at the end), runs within a segment, runs of several segments;
        // 11, 2 and 4 sources for the merge (trees that are not full; the last with an empty one).
        for spill in [None, Some(3_000), Some(17_000), Some(1_900), Some(20_005), Some(6_671)] {
            let (mut top, blobs) = build(&entries, spill);
            assert!(top.pages.len() > 3, "{} pages", top.pages.len());
            let back: Vec<Entry> = blobs.iter().flat_map(|b| decode_page(b, "page").unwrap()).collect();
            assert_eq!(back, sorted);
            assert_eq!(top.keys, entries.len() as u64);
            top.header = b"REDIS0011".to_vec();
            top.list_starts = vec![0, 5000, 123_456];
            assert_eq!(TopTable::decode(&top.encode(), "top").unwrap(), top);
            let e = &sorted[12_345];
            let p = top.page_for(e.db, &e.key).unwrap();
            assert!(decode_page(&blobs[p], "page").unwrap().contains(e));
            assert_eq!(top.page_for(0, b""), None);
        }
    }

    /// Run entries come back whole at every width of their numbers, whether the reader's
    /// buffer holds them (decoded in place) or they span its end (read piece by piece).
    #[test]
    fn run_entries_round_trip_at_every_width() {
        let edges = [0, 1, 0xFF, 0x100, 0xFFFF, 0x1_0000, 0xFFFF_FFFF, 0x1_0000_0000, u64::MAX - 1];
        let mut entries = Vec::new();
        for (i, &v) in edges.iter().enumerate() {
            let key = vec![b'k'; [0, 1, 255, 256, 3000][i % 5]];
            entries.push(Entry { db: v, key: key.clone(), rdb_type: i as u8, expire_ms: Some(v), offset: v, len: v });
            entries.push(Entry { db: 0, key, rdb_type: 255, expire_ms: None, offset: u64::MAX - v, len: v / 3 });
        }
        let mut buf = vec![0u8; 64];
        let mut bytes = Vec::new();
        for e in &entries {
            buf.resize(RUN_HEAD_MAX + e.key.len(), 0);
            let n = put_run_entry(&mut buf, 0, e.as_ref());
            bytes.extend_from_slice(&buf[..n]);
        }
        for capacity in [7, 50, 4096, 1 << 20] {
            let mut r = BufReader::with_capacity(capacity, &bytes[..]);
            let mut back = Vec::new();
            let mut e = Entry::default();
            while read_entry(&mut r, &mut e).unwrap() {
                back.push(e.clone());
            }
            assert_eq!(back, entries, "reader of {capacity} bytes");
        }
        // A cut entry is an error, not a shorter run.
        let mut r = BufReader::with_capacity(64, &bytes[..bytes.len() - 1]);
        let mut e = Entry::default();
        let ends: Result<Vec<bool>> = std::iter::from_fn(|| match read_entry(&mut r, &mut e) {
            Ok(true) => Some(Ok(true)),
            Ok(false) => None,
            Err(err) => Some(Err(err)),
        })
        .collect();
        assert!(ends.is_err());
    }

    /// Runs of one database sort by key alone; a run that gets a second database after some
    /// of its segments were sorted still comes out in the index's order.
    #[test]
    fn runs_of_one_database_and_of_several_sort_alike() {
        let ties = [&b"ab"[..], b"ab\0", b"abcdefghijklmnop", b"abcdefghijklmnop\0", b"abcdefghijklmnopq", b"abcdefghijklmno\xff"];
        let mut one: Vec<Entry> = (0..20_000).map(|i| Entry { db: 7, ..entry(i) }).collect();
        one.extend(ties.iter().enumerate().map(|(n, k)| Entry { db: 7, key: k.to_vec(), ..entry(n as u64) }));
        // The second database comes after two sorted segments of the first, and sorts first.
        let mut later = one.clone();
        later.extend((0..3_000).map(|i| Entry { db: 2, ..entry(i * 3 + 1) }));
        for entries in [one, later] {
            let mut sorted = entries.clone();
            sorted.sort_by(|a, b| a.cmp_key(b.db, &b.key));
            for spill in [None, Some(12_000), Some(5_000)] {
                let (_, blobs) = build(&entries, spill);
                let back: Vec<Entry> = blobs.iter().flat_map(|b| decode_page(b, "page").unwrap()).collect();
                assert_eq!(back, sorted, "spilled every {spill:?}");
            }
        }
    }

    /// Pages of rows, written before the columns, read as they did; both layouts give the
    /// same entries, at every width of the offsets.
    #[test]
    fn pages_of_rows_and_of_columns_read_the_same() {
        for top in [0u64, 0xFF, 0x1_0000, 1 << 39, u64::MAX] {
            let mut entries: Vec<Entry> = (0..3000).map(entry).collect();
            entries[1234].offset = top;
            entries.sort_by(|a, b| a.cmp_key(b.db, &b.key));
            entries.dedup_by(|a, b| a.cmp_key(b.db, &b.key).is_eq());
            let (rows, columns) = (encode_rows(&entries), encode_page(&entries));
            assert!(columns.starts_with(b"RVK2") && rows.starts_with(b"RVK1"));
            assert_eq!(decode_page(&rows, "rows").unwrap(), entries);
            assert_eq!(decode_page(&columns, "columns").unwrap(), entries);
        }
        assert_eq!(decode_page(&encode_page(&[]), "empty").unwrap(), Vec::<Entry>::new());
    }

    /// A cut, lengthened or reordered page is an error, not a wrong answer.
    #[test]
    fn damaged_pages_are_refused() {
        let mut swapped = vec![entry(4), entry(1)];
        swapped.sort_by(|a, b| b.cmp_key(a.db, &a.key));
        for encode in [encode_page, encode_rows] {
            let page = encode(&[entry(1), entry(4)]);
            assert!(decode_page(&page, "p").is_ok());
            assert!(decode_page(&page[..page.len() - 1], "p").is_err());
            assert!(decode_page(&[&page[..], &[0]].concat(), "p").is_err());
            assert!(decode_page(&encode(&swapped), "p").is_err());
        }
        // Offsets of no bytes, or of more than eight, in a page of columns.
        let page = encode_page(&[entry(1), entry(4)]);
        let width_at = 4 + 3;
        for width in [0, 9] {
            let mut bad = page.clone();
            bad[width_at] = width;
            assert!(decode_page(&bad, "p").is_err());
        }
        assert!(decode_page(b"RVK3", "p").is_err());
        assert!(TopTable::decode(b"RVT1\x05ab", "t").is_err());
    }
}
