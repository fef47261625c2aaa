//! Reads Redis facts (versions, keys per db, checksum) from an RDB while it is
//! backed up, on a thread of its own fed with the same chunks the backup
//! stores, so a damaged dump is noticed at backup time, not at restore time.
//! Where the chunker cut at records, its scan comes with each batch and the
//! bytes are only checksummed here: the RDB is walked once per backup, not twice.

use std::io::Read;
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::crypto::Id;
use crate::engine::layering::{Layered, Layering};
use crate::engine::scanned::Scanned;
use crate::format::keyindex::{Builder, EntryRef, TopTable};
use crate::rdb::{self, RdbError};
use crate::format::snapshot::RedisFacts;

/// A batch of consecutive chunks, shared with the backup workers.
pub type Batch = Arc<crate::engine::chunker::Chunks>;

/// A batch and what the chunker's record scanner saw up to its end (see [`Chunker::scan_log`]).
///
/// [`Chunker::scan_log`]: crate::engine::chunker::Chunker::scan_log
type Fed = (Batch, Option<Box<Scanned>>);

/// Feeds batches to the parser; dropping it ends the stream.
pub struct FactsFeed {
    tx: Option<Sender<Fed>>,
}

impl FactsFeed {
    /// Hands a batch to the parser; false once the parser has stopped (a strict parser
    /// stops at the first error, so the caller can stop reading a stream it will refuse).
    /// With the scanner's findings for every batch, the parser reads those instead of the bytes.
    pub fn push(&mut self, batch: &Batch, scanned: Option<Box<Scanned>>) -> bool {
        if let Some(tx) = &self.tx {
            if tx.send((batch.clone(), scanned)).is_err() {
                self.tx = None;
            }
        }
        self.tx.is_some()
    }

    /// Marks the end of the input.
    pub fn finish(&mut self) {
        self.tx = None;
    }
}

/// What the parser found: the facts, or why the stream is not a complete RDB.
pub type Parsed = Result<RedisFacts, RdbError>;

/// Stores one key index blob and returns its id.
pub type StoreBlob<'scope> = Box<dyn FnMut(&[u8]) -> crate::error::Result<Id> + Send + 'scope>;

/// What the parser thread returns: the facts, and the key index's top table (pages
/// stored, chunk-list starts still empty) when one was asked for and the RDB is complete,
/// with what its layering found.
pub struct Outcome {
    pub parsed: Parsed,
    pub index: Option<crate::error::Result<(TopTable, Option<Layered>)>>,
}

/// Starts the parser in `scope`. A `strict` parser stops reading at the first error (the
/// backup will be refused); otherwise it reads to the end so the feeder never blocks.
/// With `index`, the keys are also collected and stored as a key index through it,
/// layered (or with chunk facts) when `layering` is given.
pub fn spawn<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    strict: bool,
    index: Option<StoreBlob<'scope>>,
    layering: Option<Layering>,
) -> (FactsFeed, std::thread::ScopedJoinHandle<'scope, Outcome>) {
    let (tx, rx) = bounded::<Fed>(8);
    let handle = scope.spawn(move || parse(rx, strict, index.map(|store| IndexFeed::with(store, layering))));
    (FactsFeed { tx: Some(tx) }, handle)
}

/// Key index entries of the records the parser walks; the first error stops it.
pub struct IndexFeed<'s> {
    builder: Option<Builder>,
    failed: Option<crate::error::Error>,
    layering: Option<Layering>,
    store: Option<StoreBlob<'s>>,
}

/// Hands an entry to the builder; the first error stops it.
fn keep_into<'a>(builder: &'a mut Option<Builder>, failed: &'a mut Option<crate::error::Error>) -> impl FnMut(EntryRef<'_>) + 'a {
    move |entry| {
        let Some(b) = builder.as_mut() else { return };
        if let Err(e) = b.push(entry) {
            *failed = Some(e);
            *builder = None;
        }
    }
}

impl IndexFeed<'static> {
    pub fn new() -> IndexFeed<'static> {
        IndexFeed { builder: Some(Builder::new()), failed: None, layering: None, store: None }
    }
}

impl<'s> IndexFeed<'s> {
    /// A feed that stores its blobs (chunk facts, then pages) through `store`.
    fn with(store: StoreBlob<'s>, layering: Option<Layering>) -> IndexFeed<'s> {
        IndexFeed { builder: Some(Builder::new()), failed: None, layering, store: Some(store) }
    }

    /// Adds the record `rec`, which ends at file offset `end`.
    pub fn push(&mut self, rec: &rdb::Record, end: u64) {
        self.push_entry(EntryRef { db: rec.db, key: &rec.key, rdb_type: rec.rdb_type, expire_ms: rec.expire_ms, offset: rec.offset, len: end - rec.offset });
    }

    /// Adds one entry.
    pub fn push_entry(&mut self, entry: EntryRef<'_>) {
        let mut keep = keep_into(&mut self.builder, &mut self.failed);
        match self.layering.as_mut() {
            Some(l) => l.push(entry, &mut keep),
            None => keep(entry),
        }
    }

    /// The file's header, for the layering to compare with its base's.
    fn header(&mut self, header: &[u8]) {
        if let Some(l) = self.layering.as_mut() {
            l.header(header);
        }
    }

    /// The scan reached the RDB's end: the chunks after it hold no record to wait for. After
    /// an error there is no index to write: the layering stops taking chunks.
    fn scan_ended(&mut self, ok: bool) {
        match self.layering.as_mut() {
            Some(l) if ok => l.scanned_all(),
            _ => self.layering = None,
        }
    }

    /// The scan reached a batch's end: the layering takes the chunks it can.
    fn batch_done(&mut self) {
        let Some(l) = self.layering.as_mut() else { return };
        let advanced = l.advance(&mut keep_into(&mut self.builder, &mut self.failed));
        if let Err(e) = advanced {
            self.failed = Some(e);
            self.builder = None;
        }
    }

    /// The builder holding every entry, or the error that stopped it.
    pub fn finish(self) -> crate::error::Result<Builder> {
        match (self.failed, self.builder) {
            (Some(e), _) => Err(e),
            (None, b) => Ok(b.unwrap_or_default()),
        }
    }

    /// Completes the layering and the index: its pages stored, its top table returned.
    fn complete(mut self) -> crate::error::Result<(TopTable, Option<Layered>)> {
        let mut store = self.store.take().ok_or_else(|| crate::error::Error::Invalid("key index: no blob store".into()))?;
        let layered = match self.layering.take() {
            Some(l) => Some(l.finish(&mut keep_into(&mut self.builder, &mut self.failed), &mut store)?),
            None => None,
        };
        let top = self.finish()?.finish(store)?;
        Ok((top, layered))
    }
}

impl Default for IndexFeed<'static> {
    fn default() -> Self {
        IndexFeed::new()
    }
}

fn parse(rx: Receiver<Fed>, strict: bool, mut feed: Option<IndexFeed<'_>>) -> Outcome {
    let result = match rx.recv() {
        // The scanner read the header: its findings stand in for a walk of the bytes.
        Ok((batch, Some(scanned))) if scanned.version != 0 => from_scans(&rx, (batch, Some(scanned)), strict, &mut feed),
        // No scan (or no RDB header in it): the parser walks the bytes and says why.
        first => {
            let mut reader = ChunkReader { rx, cur: first.ok().map(|(b, _)| b), pos: 0 };
            let mut n = 0u32;
            let result = rdb::summarize_each(&mut reader, |rec, end| {
                if let Some(f) = feed.as_mut() {
                    f.push(rec, end);
                    n = n.wrapping_add(1);
                    if n % 1024 == 0 {
                        f.batch_done();
                    }
                }
            });
            if let Some(f) = feed.as_mut() {
                f.scan_ended(result.is_ok());
            }
            if result.is_ok() || !strict {
                // Drain (bytes after the RDB, or the rest of a damaged one kept with --raw).
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
            }
            result
        }
    };
    let index = match (&result, feed) {
        (Ok(s), Some(feed)) => Some(feed.complete().map(|(mut top, layered)| {
            top.header = header(s.rdb_version);
            (top, layered)
        })),
        _ => None,
    };
    Outcome { parsed: facts_of(result), index }
}

/// What the facts take from a walk's summary (version, AUX fields, keys per database, the
/// checksum), from the scanner's findings sent with each batch: the records are counted and
/// indexed, the bytes only checksummed. A strict reader stops at the first error; otherwise
/// it reads to the end so the feeder never blocks.
fn from_scans(rx: &Receiver<Fed>, first: Fed, strict: bool, feed: &mut Option<IndexFeed<'_>>) -> Result<rdb::Summary, RdbError> {
    let mut s = rdb::Summary { rdb_version: first.1.as_ref().map_or(0, |f| f.version), ..rdb::Summary::default() };
    let with_crc = s.rdb_version >= 5;
    if let Some(f) = feed.as_mut() {
        f.header(&header(s.rdb_version));
    }
    let (mut crc, mut at) = (0u64, 0u64);
    // Where the checksummed bytes end (the scan finds the EOF item before its bytes arrive),
    // and the stored checksum that follows them.
    let mut crc_end: Option<u64> = None;
    let mut stored = [0u8; 8];
    let mut end: Option<Result<(), RdbError>> = None;
    let mut next = Some(first);
    while let Some((batch, scanned)) = next {
        if let Some(mut scanned) = scanned {
            for r in scanned.records() {
                s.count_key(r.db, r.expire_ms.is_some());
                if let Some(f) = feed.as_mut() {
                    f.push_entry(EntryRef { db: r.db, key: r.key, rdb_type: r.rdb_type, expire_ms: r.expire_ms.map(|t| t as u64), offset: r.offset, len: r.len });
                }
            }
            if let Some(f) = feed.as_mut() {
                f.batch_done();
            }
            for (k, v) in &scanned.aux {
                s.add_aux(k, v);
            }
            for db in &scanned.hinted_dbs {
                s.dbs.entry(*db).or_default();
            }
            if let Some(e) = scanned.eof_end {
                s.total_bytes = e;
                crc_end = Some(if with_crc { e.saturating_sub(8) } else { e });
            }
            if let Some(e) = scanned.end.take() {
                if let Some(f) = feed.as_mut() {
                    f.scan_ended(e.is_ok());
                }
                end.get_or_insert(e);
            }
        }
        let bytes = batch.bytes();
        let len = bytes.len() as u64;
        let upto = crc_end.map_or(len, |c| c.saturating_sub(at).min(len));
        crc = rdb::crc64(crc, &bytes[..upto as usize]);
        if let Some(c) = crc_end {
            // The stored checksum's bytes that fall in this batch.
            for i in c.max(at)..(c + 8).min(at + len) {
                stored[(i - c) as usize] = bytes[(i - at) as usize];
            }
        }
        at += len;
        if strict && matches!(end, Some(Err(_))) {
            break;
        }
        next = rx.recv().ok();
    }
    match end {
        Some(Ok(())) => {}
        Some(Err(e)) => return Err(e),
        None => return Err(RdbError::Truncated { offset: at, key: None }),
    }
    if with_crc {
        let stored = u64::from_le_bytes(stored);
        s.checksum = Some(stored);
        let at = crc_end.unwrap_or(at);
        if stored != 0 && stored != crc {
            return Err(RdbError::Checksum { offset: at, stored, computed: crc });
        }
    }
    Ok(s)
}

/// The 9 header bytes of an RDB of `version`.
pub fn header(version: u16) -> Vec<u8> {
    if version >= rdb::VALKEY_MIN_VERSION {
        format!("VALKEY{version:03}").into_bytes()
    } else {
        format!("REDIS{version:04}").into_bytes()
    }
}

fn facts_of(result: Result<rdb::Summary, RdbError>) -> Parsed {
    let s = result?;
    let mut keys_per_db = std::collections::BTreeMap::new();
    for (db, d) in &s.dbs {
        keys_per_db.insert(*db as u32, d.keys);
    }
    Ok(RedisFacts {
        rdb_version: Some(s.rdb_version as u32),
        redis_version: s.aux.get("redis-ver").cloned(),
        keys_per_db,
        keys: Some(s.keys),
        keys_with_ttl: Some(s.keys_with_ttl),
        file: None,
        rdb_error: None,
    })
}

/// The facts a snapshot stored as it is (`--raw`) records: `None` for input that is not
/// an RDB (unless it is named like one), the error for a damaged one.
pub fn recorded(name: &str, parsed: Parsed) -> Option<RedisFacts> {
    match parsed {
        Ok(f) => Some(f),
        Err(RdbError::BadHeader(e)) => name
            .ends_with(".rdb")
            .then(|| RedisFacts { rdb_error: Some(format!("not an RDB file: {e}")), ..RedisFacts::default() }),
        Err(e) => Some(RedisFacts { rdb_error: Some(e.to_string()), ..RedisFacts::default() }),
    }
}

/// A `Read` over the batches sent by the backup's reader.
struct ChunkReader {
    rx: Receiver<Fed>,
    cur: Option<Batch>,
    /// Bytes of `cur` already read.
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(batch) = &self.cur {
                let rest = &batch.bytes()[self.pos..];
                if !rest.is_empty() {
                    let n = rest.len().min(buf.len());
                    buf[..n].copy_from_slice(&rest[..n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            match self.rx.recv() {
                Ok((b, _)) => {
                    self.cur = Some(b);
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::chunker::Chunker;
    use crate::store::ChunkerParams;

    /// A version-9 RDB with `n` string keys holding 60-byte values, and its checksum.
    fn rdb(n: u32) -> Vec<u8> {
        let mut b = b"REDIS0009".to_vec();
        for i in 0..n {
            let key = format!("key:{i}");
            b.push(0);
            b.push(key.len() as u8);
            b.extend_from_slice(key.as_bytes());
            b.push(60);
            b.extend((0..60u32).map(|j| (i.wrapping_mul(31) ^ j) as u8));
        }
        b.push(0xFF);
        let crc = rdb::crc64(0, &b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// A chunker over `data` that cuts at records and logs the scan (`scan`), or cuts by FastCDC.
    fn chunker(data: &[u8], scan: bool) -> Chunker<&[u8]> {
        let c = Chunker::new(data, ChunkerParams::default(), 3).batch_bytes(100_000);
        if scan {
            c.records(Some(ChunkerParams::RECORDS)).scan_log()
        } else {
            c
        }
    }

    /// Facts as a backup with `--raw` gathers them: from the chunker's shared batches.
    fn facts_of(data: &[u8], scan: bool) -> Option<RedisFacts> {
        std::thread::scope(|s| {
            let (mut feed, handle) = spawn(s, false, None, None);
            for batch in chunker(data, scan) {
                let mut batch = batch.expect("reading a slice");
                let scanned = batch.take_scanned();
                assert_eq!(scanned.is_some(), scan);
                feed.push(&Arc::new(batch), scanned);
            }
            feed.finish();
            recorded("dump.rdb", handle.join().expect("parser thread").parsed)
        })
    }

    /// Many batches and parser buffers: keys are counted, and one flipped byte inside a value
    /// (which the structure cannot reveal) fails the CRC, whether the parser walks the bytes
    /// or reads the chunker's scan.
    #[test]
    fn batches_give_facts_and_the_checksum_is_verified() {
        let good = rdb(30_000);
        for scan in [false, true] {
            let facts = facts_of(&good, scan).expect("facts");
            assert_eq!(facts.keys, Some(30_000));
            assert_eq!(facts.rdb_version, Some(9));
            assert_eq!(facts.rdb_error, None, "scan {scan}");

            let mut bad = good.clone();
            let key = b"key:20000";
            let at = good.windows(key.len()).position(|w| w == key).expect("key present") + key.len() + 1 + 30;
            bad[at] ^= 0x40;
            let facts = facts_of(&bad, scan).expect("facts");
            let err = facts.rdb_error.expect("checksum error");
            assert!(err.contains("checksum mismatch at byte"), "scan {scan}: {err}");
        }
    }

    /// Both ways give the same facts, the same key index pages and the same errors, for a
    /// whole file, a truncated one, a damaged one, one with bytes after its end and no RDB.
    #[test]
    fn the_scan_gives_what_the_walk_gives() {
        let good = rdb(20_000);
        let mut aux = b"REDIS0009".to_vec();
        aux.extend_from_slice(&[0xFA, 9]);
        aux.extend_from_slice(b"redis-ver");
        aux.extend_from_slice(&[6]);
        aux.extend_from_slice(b"7.0.15");
        aux.extend_from_slice(&[0xFE, 2, 0xFB, 2, 1, 0xFC]);
        aux.extend_from_slice(&1_900_000_000_000u64.to_le_bytes());
        aux.extend_from_slice(&good[9..]);
        let crc_at = aux.len() - 8;
        let crc = rdb::crc64(0, &aux[..crc_at]);
        aux[crc_at..].copy_from_slice(&crc.to_le_bytes());
        let mut damaged = good.clone();
        damaged[300_000] = 0x77;
        let mut bad_type = good.clone();
        let key = b"key:10000";
        bad_type[good.windows(key.len()).position(|w| w == key).expect("key present") - 2] = 0x77;
        let mut tail = aux.clone();
        tail.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("whole", good.clone()),
            ("aux, db 2, expiry", aux),
            ("truncated", good[..500_000].to_vec()),
            ("damaged value", damaged),
            ("damaged type byte", bad_type),
            ("tail", tail),
            ("short", b"REDIS".to_vec()),
            ("text", b"hello world, this is no RDB".to_vec()),
        ];
        for (what, data) in cases {
            let run = |scan: bool| {
                let pages = std::sync::Mutex::new(Vec::new());
                let stored = &pages;
                let (facts, top) = std::thread::scope(|s| {
                    let store: StoreBlob = Box::new(move |page: &[u8]| {
                        stored.lock().expect("pages").push(page.to_vec());
                        Ok(Id([0; 32]))
                    });
                    let (mut feed, handle) = spawn(s, true, Some(store), None);
                    for batch in chunker(&data, scan) {
                        let mut batch = batch.expect("reading a slice");
                        let scanned = batch.take_scanned();
                        if !feed.push(&Arc::new(batch), scanned) {
                            break;
                        }
                    }
                    feed.finish();
                    let out = handle.join().expect("parser thread");
                    let facts = out.parsed.map_err(|e| e.to_string());
                    let top = out.index.map(|t| t.map(|(t, _)| (t.header, t.keys)).map_err(|e| e.to_string()));
                    (facts, top)
                });
                (facts, top, pages.into_inner().expect("pages"))
            };
            let (walked, scanned) = (run(false), run(true));
            assert_eq!(scanned.0, walked.0, "{what}: facts");
            assert_eq!(scanned.1, walked.1, "{what}: key index");
            assert_eq!(scanned.2, walked.2, "{what}: key index pages");
        }
    }

    /// A strict parser stops taking batches at the first error, so the backup can stop
    /// reading; the error names the offset.
    #[test]
    fn a_strict_parser_stops_at_the_first_error() {
        let mut bad = rdb(30_000);
        bad[77] = 0x77; // the second key's type byte: no such type
        let (pushed, total, parsed) = std::thread::scope(|s| {
            let (mut feed, handle) = spawn(s, true, None, None);
            let batches: Vec<_> = Chunker::new(bad.as_slice(), ChunkerParams::default(), 3).batch_bytes(10_000).collect();
            let total = batches.len();
            let mut pushed = 0;
            for batch in batches {
                pushed += 1;
                if !feed.push(&Arc::new(batch.expect("reading a slice")), None) {
                    break;
                }
            }
            (pushed, total, handle.join().expect("parser thread").parsed)
        });
        let err = parsed.expect_err("unknown opcode").to_string();
        assert!(err.contains("byte"), "{err}");
        assert!(pushed < total, "the feed kept taking batches after the error ({pushed} of {total})");
    }
}
