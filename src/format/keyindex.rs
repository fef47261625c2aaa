//! The bytes of a snapshot's key index (see `redis::keyindex` for the design): entries,
//! pages, the top table, and the builder that sorts a backup's keys in bounded memory.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};

use crate::crypto::Id;
use crate::error::{Error, Result};

/// Magic of a page blob's plaintext.
const PAGE_MAGIC: &[u8; 4] = b"RVK1";
/// Magic of the top table blob's plaintext.
const TOP_MAGIC: &[u8; 4] = b"RVT1";

/// A page is never cut before it holds this many bytes...
const PAGE_MIN: usize = 16 * 1024;
/// ...and always once it holds this many.
const PAGE_MAX: usize = 128 * 1024;
/// Between the two, a page ends after a key whose hash has these bits zero (one in 512
/// keys: about 32 KiB past the minimum at ~20 bytes an entry).
const PAGE_MASK: u64 = 0x1FF;

/// Entries held in memory before a sorted run is spilled to a temporary file.
const RUN_BYTES: usize = 16 << 20;

/// One key of the RDB: where its record (expiry and LRU/LFU opcodes included) lies.
#[derive(Debug, Clone, PartialEq, Eq)]
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

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads little-endian base-128 numbers and byte strings from a blob, failing on truncation.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.at)?;
            self.at += 1;
            v |= u64::from(byte & 0x7F) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn bytes(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn done(&self) -> bool {
        self.at == self.b.len()
    }
}

/// Appends `e` as the run files hold it (no prefix compression).
fn put_entry(out: &mut Vec<u8>, e: &Entry) {
    put_varint(out, e.db);
    put_varint(out, e.key.len() as u64);
    out.extend_from_slice(&e.key);
    out.push(e.rdb_type);
    put_varint(out, e.expire_ms.map_or(0, |t| t.saturating_add(1)));
    put_varint(out, e.offset);
    put_varint(out, e.len);
}

fn expire_of(v: u64) -> Option<u64> {
    v.checked_sub(1)
}

/// Encodes sorted entries as a page: each key stored as the length it shares with the
/// previous key plus the rest (sorted keys share long prefixes).
pub fn encode_page(entries: &[Entry]) -> Vec<u8> {
    let mut out = PAGE_MAGIC.to_vec();
    let mut prev: &[u8] = &[];
    for e in entries {
        let shared = prev.iter().zip(&e.key).take_while(|(a, b)| a == b).count();
        put_varint(&mut out, e.db);
        put_varint(&mut out, shared as u64);
        put_varint(&mut out, (e.key.len() - shared) as u64);
        out.extend_from_slice(&e.key[shared..]);
        out.push(e.rdb_type);
        put_varint(&mut out, e.expire_ms.map_or(0, |t| t.saturating_add(1)));
        put_varint(&mut out, e.offset);
        put_varint(&mut out, e.len);
        prev = &e.key;
    }
    out
}

/// Decodes a page; `what` names it in the error.
pub fn decode_page(plain: &[u8], what: &str) -> Result<Vec<Entry>> {
    let bad = |d: &str| Error::corrupt(what, format!("key index page: {d}"));
    if !plain.starts_with(PAGE_MAGIC) {
        return Err(bad("unknown format"));
    }
    let mut c = Cursor { b: plain, at: PAGE_MAGIC.len() };
    let mut out: Vec<Entry> = Vec::new();
    while !c.done() {
        let e = (|| {
            let db = c.varint()?;
            let shared = usize::try_from(c.varint()?).ok()?;
            let rest_len = c.varint()?;
            let prev = out.last().map_or(&[][..], |p| p.key.as_slice());
            let mut key = prev.get(..shared)?.to_vec();
            key.extend_from_slice(c.bytes(rest_len)?);
            let rdb_type = *c.bytes(1)?.first()?;
            let expire_ms = expire_of(c.varint()?);
            Some(Entry { db, key, rdb_type, expire_ms, offset: c.varint()?, len: c.varint()? })
        })()
        .ok_or_else(|| bad(&format!("entry {} is truncated", out.len())))?;
        if out.last().is_some_and(|p| p.cmp_key(e.db, &e.key).is_ge()) {
            return Err(bad(&format!("entry {} is out of order", out.len())));
        }
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

/// Cuts sorted entries into pages at key-defined points, handing each page to `store`.
struct Pager<F: FnMut(&[u8]) -> Result<Id>> {
    store: F,
    cur: Vec<Entry>,
    bytes: usize,
    pages: Vec<PageRef>,
    keys: u64,
}

impl<F: FnMut(&[u8]) -> Result<Id>> Pager<F> {
    fn push(&mut self, e: Entry) -> Result<()> {
        self.bytes += e.key.len() + 16;
        let boundary = self.bytes >= PAGE_MAX || (self.bytes >= PAGE_MIN && key_hash(e.db, &e.key) & PAGE_MASK == 0);
        self.cur.push(e);
        self.keys += 1;
        if boundary {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let Some(first) = self.cur.first() else { return Ok(()) };
        let id = (self.store)(&encode_page(&self.cur))?;
        self.pages.push(PageRef { db: first.db, first_key: first.key.clone(), id, entries: self.cur.len() as u32 });
        self.cur.clear();
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
/// file, and the runs are merged at the end.
#[derive(Default)]
pub struct Builder {
    mem: Vec<Entry>,
    mem_bytes: usize,
    runs: Vec<File>,
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Adds one key.
    pub fn push(&mut self, e: Entry) -> Result<()> {
        self.mem_bytes += e.key.len() + std::mem::size_of::<Entry>() + 16;
        self.mem.push(e);
        if self.mem_bytes >= RUN_BYTES {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        let io = |e| Error::io("write a key index run to the temporary directory", e);
        let mut file = temp_file().map_err(io)?;
        self.mem.sort_unstable_by(|a, b| a.cmp_key(b.db, &b.key));
        let mut w = BufWriter::new(&mut file);
        let mut buf = Vec::new();
        for e in self.mem.drain(..) {
            buf.clear();
            put_entry(&mut buf, &e);
            w.write_all(&buf).map_err(io)?;
        }
        w.flush().map_err(io)?;
        drop(w);
        file.rewind().map_err(io)?;
        self.runs.push(file);
        self.mem_bytes = 0;
        Ok(())
    }

    /// Sorts everything, stores the pages through `store` (which returns each blob's id)
    /// and returns the top table (without header and list starts, which the caller knows).
    pub fn finish(mut self, store: impl FnMut(&[u8]) -> Result<Id>) -> Result<TopTable> {
        let mut pager = Pager { store, cur: Vec::new(), bytes: 0, pages: Vec::new(), keys: 0 };
        if self.runs.is_empty() {
            self.mem.sort_unstable_by(|a, b| a.cmp_key(b.db, &b.key));
            for e in self.mem.drain(..) {
                pager.push(e)?;
            }
        } else {
            if !self.mem.is_empty() {
                self.spill()?;
            }
            let mut readers: Vec<BufReader<File>> = self.runs.drain(..).map(BufReader::new).collect();
            let mut heap = BinaryHeap::new();
            for (i, r) in readers.iter_mut().enumerate() {
                if let Some(e) = read_entry(r)? {
                    heap.push(Reverse((e.db, e.key.clone(), i, HeapEntry(e))));
                }
            }
            while let Some(Reverse((_, _, i, HeapEntry(e)))) = heap.pop() {
                if let Some(next) = read_entry(&mut readers[i])? {
                    heap.push(Reverse((next.db, next.key.clone(), i, HeapEntry(next))));
                }
                pager.push(e)?;
            }
        }
        pager.flush()?;
        Ok(TopTable { header: Vec::new(), keys: pager.keys, pages: pager.pages, list_starts: Vec::new() })
    }
}

/// An entry carried through the merge heap (ordered by the fields before it).
struct HeapEntry(Entry);

impl PartialEq for HeapEntry {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for HeapEntry {}
impl PartialOrd for HeapEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeapEntry {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// A new temporary file, already unlinked: it disappears with its handle, even on a crash.
fn temp_file() -> std::io::Result<File> {
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

/// The next entry of a run file, `None` at its end.
fn read_entry(r: &mut impl Read) -> Result<Option<Entry>> {
    let io = |e| Error::io("read a key index run from the temporary directory", e);
    let varint = |r: &mut dyn Read, first: bool| -> Result<Option<u64>> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let mut b = [0u8];
            if r.read(&mut b).map_err(io)? == 0 {
                return if first && shift == 0 { Ok(None) } else { Err(Error::Invalid("a key index run file is truncated".into())) };
            }
            v |= u64::from(b[0] & 0x7F) << shift;
            if b[0] < 0x80 {
                return Ok(Some(v));
            }
        }
        Err(Error::Invalid("a key index run file is damaged".into()))
    };
    let truncated = || Error::Invalid("a key index run file is truncated".into());
    let Some(db) = varint(r, true)? else { return Ok(None) };
    let klen = varint(r, false)?.ok_or_else(truncated)?;
    let mut key = vec![0u8; usize::try_from(klen).map_err(|_| truncated())?];
    r.read_exact(&mut key).map_err(io)?;
    let mut t = [0u8];
    r.read_exact(&mut t).map_err(io)?;
    let expire_ms = expire_of(varint(r, false)?.ok_or_else(truncated)?);
    let offset = varint(r, false)?.ok_or_else(truncated)?;
    let len = varint(r, false)?.ok_or_else(truncated)?;
    Ok(Some(Entry { db, key, rdb_type: t[0], expire_ms, offset, len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> Entry {
        Entry { db: i % 3, key: format!("user:{:07}", i * 7919 % 100_003).into_bytes(), rdb_type: (i % 5) as u8, expire_ms: (i % 2 == 0).then_some(i * 1000), offset: i * 50, len: 40 + i % 9 }
    }

    fn build(entries: &[Entry], spill_every: Option<usize>) -> (TopTable, Vec<Vec<u8>>) {
        let mut b = Builder::new();
        for (n, e) in entries.iter().enumerate() {
            b.push(e.clone()).unwrap();
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
        let entries: Vec<Entry> = (0..20_000).map(entry).collect();
        let mut sorted = entries.clone();
        sorted.sort_by(|a, b| a.cmp_key(b.db, &b.key));
        for spill in [None, Some(3_000)] {
            let (mut top, blobs) = build(&entries, spill);
            assert!(top.pages.len() > 3, "{} pages", top.pages.len());
            let back: Vec<Entry> = blobs.iter().flat_map(|b| decode_page(b, "page").unwrap()).collect();
            assert_eq!(back, sorted);
            assert_eq!(top.keys, 20_000);
            top.header = b"REDIS0011".to_vec();
            top.list_starts = vec![0, 5000, 123_456];
            assert_eq!(TopTable::decode(&top.encode(), "top").unwrap(), top);
            let e = &sorted[12_345];
            let p = top.page_for(e.db, &e.key).unwrap();
            assert!(decode_page(&blobs[p], "page").unwrap().contains(e));
            assert_eq!(top.page_for(0, b""), None);
        }
    }

    /// A cut or reordered page is an error, not a wrong answer.
    #[test]
    fn damaged_pages_are_refused() {
        let page = encode_page(&[entry(1), entry(4)]);
        assert!(decode_page(&page[..page.len() - 1], "p").is_err());
        let mut swapped = vec![entry(4), entry(1)];
        swapped.sort_by(|a, b| b.cmp_key(a.db, &a.key));
        assert!(decode_page(&encode_page(&swapped), "p").is_err());
        assert!(TopTable::decode(b"RVT1\x05ab", "t").is_err());
    }
}
