//! Content-defined chunking of a byte stream into batches of chunks: at RDB key-record starts
//! chosen by a keyed hash of the key when the input is an RDB (and the repository asks for it),
//! FastCDC v2020 (streaming) inside large values and for any other input.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;

use crate::engine::scanned::Scanned;
use crate::rdb::records::{Event, Scanner};
use crate::store::direct::Blocks;
#[cfg(test)]
use crate::store::direct::HEAD;
use crate::store::{ChunkerParams, RecordCuts};

/// Bytes read from the source at a time (the most held by the chunker; batches still being
/// processed keep older windows alive, so this is also what they hold: 2 MiB held ~5 MiB less
/// than 4 MiB in a 1 GiB backup, at the same speed).
const WINDOW: usize = 2 * 1024 * 1024;

/// Default bytes per batch: large enough that channel traffic stays low with 1 KiB chunks.
pub const BATCH_BYTES: usize = 256 * 1024;

/// Consecutive chunks lying back to back in one shared read window: no copy per chunk, and the
/// whole span can be hashed or parsed in one pass.
pub struct Chunks {
    window: Arc<Vec<u8>>,
    start: usize,
    /// End of each chunk, relative to `start`.
    ends: Vec<usize>,
    /// What the record scanner saw since the last batch (see [`Chunker::scan_log`]).
    scanned: Option<Box<Scanned>>,
}

impl Chunks {
    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are no chunks.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// All chunks' bytes, in order.
    pub fn bytes(&self) -> &[u8] {
        let end = self.ends.last().copied().unwrap_or(0);
        &self.window[self.start..self.start + end]
    }

    /// What the record scanner saw up to this batch's end, once (see [`Chunker::scan_log`]).
    pub fn take_scanned(&mut self) -> Option<Box<Scanned>> {
        self.scanned.take()
    }

    /// Each chunk's bytes, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        let bytes = self.bytes();
        let ends = &self.ends;
        (0..ends.len()).map(move |i| &bytes[if i == 0 { 0 } else { ends[i - 1] }..ends[i]])
    }
}

/// Sizes only: the window behind a batch is megabytes of data.
impl std::fmt::Debug for Chunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunks").field("chunks", &self.len()).field("bytes", &self.bytes().len()).finish()
    }
}

/// Cuts a reader into batches of chunks with large reads and no per-chunk buffers.
///
/// FastCDC runs over a 4 MiB window of the input. A cut that FastCDC finds
/// before the window's end depends only on the bytes before it, so it is the
/// cut a fully buffered run would make; the chunk that reaches the window's
/// end is carried over to the next window (unless the input has ended).
/// Batches share the window they were cut from; a window is reused once no
/// batch refers to it any more.
pub struct Chunker<R: Read> {
    reader: R,
    params: ChunkerParams,
    seed: u64,
    batch_bytes: usize,
    window: Arc<Vec<u8>>,
    /// Where the window's position 0 lies in its buffer (a block's data starts after room).
    origin: usize,
    /// The input's blocks, cut where they were read (instead of `reader`), if it has them.
    blocks: Option<Blocks>,
    /// The input's blocks copied out, where they are too small to cut in place (instead of `reader`).
    copied: Option<Box<dyn Read + Send>>,
    /// Earlier windows, reused (or given back to `blocks`) once every batch cut from them is dropped.
    retired: Vec<Arc<Vec<u8>>>,
    pos: usize,
    len: usize,
    eof: bool,
    /// Start of the first chunk cut but not yet handed out.
    next_start: usize,
    /// Ends (in the window) of chunks cut but not yet handed out.
    ready: VecDeque<usize>,
    /// Input offset of the window's first byte.
    base: u64,
    /// Record-aligned cutting, while the input still reads as an RDB.
    records: Option<Records>,
    /// What the scanner saw, for the next batch (see [`Chunker::scan_log`]).
    log: Option<Scanned>,
}

/// State of record-aligned cutting (see [`Chunker::records`]).
struct Records {
    scan: Scanner,
    params: ChunkerParams,
    key_seed: u64,
    /// Input offset up to which bytes were pushed to the scanner.
    pushed: u64,
    /// Items read but not yet decided on: start, end, and the key's hash for a record.
    items: VecDeque<(u64, u64, Option<u64>)>,
    /// Whether the last decided item was a record.
    prev: Option<bool>,
    rule: RecordCuts,
    /// Start and key hash of the records decided within the last [`Records::reach`] bytes, since
    /// the last item that was not one (what [`RecordCuts::LeastNearby`] looks back on).
    behind: VecDeque<(u64, u64)>,
    /// End of the last decided item.
    decided: u64,
    failed: bool,
}

impl Records {
    /// How far [`RecordCuts::LeastNearby`] looks on either side of a record: half the average
    /// chunk (chunks of small records then average about `avg_size`), at least `min_size`.
    fn reach(&self) -> u64 {
        u64::from(self.params.min_size.max(self.params.avg_size / 2))
    }

    /// Whether an item takes part in [`RecordCuts::LeastNearby`]'s look: a record no longer than
    /// a chunk (any other item ends the look, as it ends a chunk).
    fn nearby(&self, &(start, stop, hash): &(u64, u64, Option<u64>)) -> bool {
        hash.is_some() && stop - start <= self.params.max_size as u64
    }

    /// Whether every record that starts within [`Self::reach`] bytes after `start` has been read.
    fn seen_ahead(&self, start: u64) -> bool {
        let w = self.reach();
        self.items.iter().skip(1).any(|item| !self.nearby(item) || item.0 >= start + w)
    }

    /// Whether the record at `start` (key hash `h`, just taken from `items`) has the least hash
    /// of the records within [`Self::reach`] bytes on either side, up to the nearest item that is
    /// no record or longer than a chunk (a tie goes to the earlier record).
    fn least_nearby(&self, start: u64, h: u64) -> bool {
        let w = self.reach();
        let before = self.behind.iter().rev().take_while(|&&(s, _)| s + w > start).all(|&(_, other)| h < other);
        let after = self
            .items
            .iter()
            .take_while(|item| self.nearby(item) && item.0 < start + w)
            .all(|&(_, _, other)| other.is_some_and(|o| h <= o));
        before && after
    }
}

/// Keyed 64-bit hash of a key name: decides whether a chunk starts at its record, so the same
/// key cuts the same way in every backup while the cut points reveal nothing without the seed.
fn key_hash(seed: u64, key: &[u8]) -> u64 {
    let mut h = seed ^ (key.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for part in key.chunks(8) {
        let mut w = [0u8; 8];
        w[..part.len()].copy_from_slice(part);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 32;
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// Start, end and (for a record) key hash of a scanned item.
fn item(e: Event<'_>, seed: u64) -> (u64, u64, Option<u64>) {
    match e {
        Event::Record(r) => (r.offset, r.offset + r.len, Some(key_hash(seed, r.key))),
        Event::Boundary { offset, len, .. } => (offset, offset + len, None),
    }
}

impl<R: Read> Chunker<R> {
    /// A chunker over `reader` with the repository's parameters and secret
    /// gear seed (so cut points, and thus chunk sizes, reveal nothing).
    pub fn new(reader: R, params: ChunkerParams, seed: u64) -> Self {
        Chunker {
            reader,
            params,
            seed,
            batch_bytes: BATCH_BYTES,
            window: Arc::new(Vec::new()),
            origin: 0,
            blocks: None,
            copied: None,
            retired: Vec::new(),
            pos: 0,
            len: 0,
            eof: false,
            next_start: 0,
            ready: Default::default(),
            base: 0,
            records: None,
            log: None,
        }
    }

    /// Cuts an RDB input at key-record starts within `params` (none: FastCDC only).
    ///
    /// Which records start a chunk is [`RecordCuts`]'s (by default `LeastNearby`: the record
    /// whose keyed key hash is the least within [`Records::reach`] bytes on either side, so a
    /// key that changes, appears or disappears moves no cut further away than that). A chunk
    /// also starts where records give way to other items (aux fields, SELECTDB, EOF and its
    /// checksum) and back, and before a record that would take it past `max_size`. Items
    /// longer than `max_size` are cut by FastCDC from their start, ending at their end. Input
    /// that is not an RDB, or stops being one (damage, an AOF tail after an RDB preamble), is
    /// cut by FastCDC from the last cut on.
    pub fn records(mut self, params: Option<ChunkerParams>) -> Self {
        self.records = params.map(|params| Records {
            scan: Scanner::new(),
            params,
            key_seed: key_hash(self.seed, b"rdbvault record cuts"),
            pushed: 0,
            items: VecDeque::new(),
            prev: None,
            rule: RecordCuts::LeastNearby,
            behind: VecDeque::new(),
            decided: 0,
            failed: false,
        });
        self
    }

    /// Which record starts become cuts (the repository's config says). Call it after [`Self::records`].
    pub fn record_cuts(mut self, rule: RecordCuts) -> Self {
        if let Some(r) = self.records.as_mut() {
            r.rule = rule;
        }
        self
    }

    /// Hands what the record scanner sees (records, AUX fields, the EOF's place, how the scan
    /// ended) to each batch, so the RDB's facts need no second walk; every batch then carries
    /// one. Only with record-aligned cutting, so call it after [`Self::records`].
    pub fn scan_log(mut self) -> Self {
        self.log = self.records.is_some().then(Scanned::default);
        self
    }

    /// Takes the input from `blocks` instead of the reader: each block is a window, with no
    /// copy, where a block holds several of the largest chunks; else they are copied into
    /// windows of the usual size. Call it after [`Self::records`].
    pub fn blocks(mut self, blocks: Option<Blocks>) -> Self {
        let max = self.params.max_size.max(self.records.as_ref().map_or(0, |r| r.params.max_size)) as usize;
        match blocks {
            Some(b) if 4 * max <= crate::store::direct::BLOCK => self.blocks = Some(b),
            Some(b) => self.copied = Some(b.into_reader()),
            None => {}
        }
        self
    }

    /// Batches end at the first chunk that brings them to `bytes` (or at a window's end).
    pub fn batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes.max(1);
        self
    }

    /// A window buffer no batch refers to: a retired one if possible, else a new one.
    fn free_window(&mut self) -> Vec<u8> {
        // Record-aligned cutting carries up to about three largest chunks over to the next window.
        let max = self.params.max_size.max(self.records.as_ref().map_or(0, |r| r.params.max_size));
        let size = WINDOW.max(4 * max as usize);
        if let Some(i) = self.retired.iter().position(|w| Arc::strong_count(w) == 1) {
            if let Ok(v) = Arc::try_unwrap(self.retired.swap_remove(i)) {
                return v;
            }
        }
        vec![0; size]
    }

    /// Moves the unconsumed bytes to the front of a free window and reads until it is full or the input ends.
    fn refill(&mut self) -> std::io::Result<()> {
        if self.blocks.is_some() {
            return self.next_block();
        }
        self.origin = 0;
        let old = std::mem::take(&mut self.window);
        let tail = self.pos..self.len;
        let mut buf = match Arc::try_unwrap(old) {
            Ok(mut v) if !v.is_empty() => {
                v.copy_within(tail.clone(), 0);
                v
            }
            Ok(_) => self.free_window(),
            Err(old) => {
                let mut v = self.free_window();
                v[..tail.len()].copy_from_slice(&old[tail.clone()]);
                self.retired.push(old);
                v
            }
        };
        self.len = tail.len();
        self.base += self.pos as u64;
        self.pos = 0;
        let mut result = Ok(());
        let reader: &mut dyn Read = match self.copied.as_mut() {
            Some(r) => r,
            None => &mut self.reader,
        };
        while self.len < buf.len() && !self.eof {
            match reader.read(&mut buf[self.len..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.window = Arc::new(buf);
        result
    }

    /// Makes the next block the window, the unconsumed bytes copied into the room before its
    /// data; the end of the blocks is the end of the input.
    fn next_block(&mut self) -> std::io::Result<()> {
        let Some(blocks) = self.blocks.as_mut() else { return Ok(()) };
        let (mut buf, start, end) = match blocks.next() {
            Some(block) => block?,
            None => {
                self.eof = true;
                return Ok(());
            }
        };
        let tail = &self.window[self.origin + self.pos..self.origin + self.len];
        let (buf, origin) = if tail.len() <= start {
            buf[start - tail.len()..start].copy_from_slice(tail);
            (buf, start - tail.len())
        } else {
            // More carried over than the room holds (an undecided run of records): a buffer of its own.
            let mut joined = Vec::with_capacity(tail.len() + end - start);
            joined.extend_from_slice(tail);
            joined.extend_from_slice(&buf[start..end]);
            blocks.give_back(buf);
            (joined, 0)
        };
        self.base += self.pos as u64;
        self.len = self.len - self.pos + (end - start);
        self.pos = 0;
        self.origin = origin;
        let old = std::mem::replace(&mut self.window, Arc::new(buf));
        self.retired.push(old);
        // Windows no batch refers to any more go back to be read into.
        let mut i = 0;
        while i < self.retired.len() {
            if Arc::strong_count(&self.retired[i]) == 1 {
                if let Ok(v) = Arc::try_unwrap(self.retired.swap_remove(i)) {
                    blocks.give_back(v);
                }
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Cuts the current window; keeps the last chunk back unless the input ended.
    fn cut_window(&mut self) {
        self.next_start = self.pos;
        if let Some(mut r) = self.records.take() {
            if self.cut_records(&mut r) {
                self.records = Some(r);
                return;
            }
        }
        self.cut_cdc(self.len, self.eof);
    }

    /// Cuts FastCDC chunks from `pos` up to `to` (window positions); the chunk that reaches
    /// `to` is kept back unless `last`.
    fn cut_cdc(&mut self, to: usize, last: bool) {
        use fastcdc::v2020::{FastCDC, Normalization};
        let p = self.params;
        let from = self.pos;
        let span = &self.window[self.origin + from..self.origin + to];
        let cdc = FastCDC::with_level_and_seed(span, p.min_size, p.avg_size, p.max_size, Normalization::Level1, self.seed);
        let mut consumed = 0;
        for c in cdc {
            let end = c.offset + c.length;
            if end == span.len() && !last {
                break;
            }
            self.ready.push_back(from + end);
            consumed = end;
        }
        self.pos = from + consumed;
    }

    /// A cut at input offset `at`, which lies in the window after `pos`.
    fn cut_at(&mut self, at: u64) {
        let at = (at - self.base) as usize;
        self.ready.push_back(at);
        self.pos = at;
    }

    /// Record-aligned cuts over the window; false once FastCDC is to cut the rest of the input.
    fn cut_records(&mut self, r: &mut Records) -> bool {
        let end = self.base + self.len as u64;
        if !r.failed && r.pushed < end {
            let from = (r.pushed - self.base) as usize;
            let (items, seed) = (&mut r.items, r.key_seed);
            let (window, base, log) = (&self.window[self.origin..self.origin + self.len], self.base, &mut self.log);
            let pushed = r.scan.push(&window[from..], |e| {
                if let Some(log) = log.as_mut() {
                    let bytes = match e {
                        Event::Boundary { offset, len, .. } if offset >= base => {
                            window.get((offset - base) as usize..(offset + len - base) as usize)
                        }
                        _ => None,
                    };
                    log.note(&e, bytes);
                }
                items.push_back(item(e, seed))
            });
            if let Some(log) = self.log.as_mut() {
                log.version = r.scan.version();
            }
            if let Err(e) = pushed {
                r.failed = true;
                self.end_log(Err(e));
            }
            r.pushed = end;
        }
        // A record waits for the records within reach after it, unless what follows is already
        // known to be no record: the input's end, damage, or an item longer than a chunk.
        let big = r.scan.item_start().is_some_and(|start| end - start > r.params.max_size as u64);
        let all = r.failed || r.scan.is_done() || self.eof || big;
        while let Some(&(start, stop, hash)) = r.items.front() {
            if !all && r.rule == RecordCuts::LeastNearby && hash.is_some() && !r.seen_ahead(start) {
                break;
            }
            r.items.pop_front();
            self.decide(r, start, stop, hash);
        }
        if r.scan.is_done() {
            self.end_log(Ok(()));
            // Bytes after the RDB's end (an AOF tail) start a chunk of their own.
            if r.decided > self.base + self.pos as u64 {
                self.cut_at(r.decided);
            }
            return false;
        }
        if r.failed {
            return false;
        }
        if self.eof {
            self.end_log(r.scan.finish());
            return false;
        }
        // An item longer than a chunk is being read: FastCDC from its start over what has arrived.
        if let Some(start) = r.scan.item_start() {
            if end - start > r.params.max_size as u64 {
                if start > self.base + self.pos as u64 {
                    self.cut_at(start);
                }
                let params = std::mem::replace(&mut self.params, r.params);
                self.cut_cdc(self.len, false);
                self.params = params;
            }
        }
        true
    }

    /// Notes how the scan ended, for the next batch.
    fn end_log(&mut self, end: crate::rdb::Result<()>) {
        if let Some(log) = self.log.as_mut() {
            log.end = Some(end);
        }
    }

    /// Decides the cuts for one complete item (see [`Self::records`]).
    fn decide(&mut self, r: &mut Records, start: u64, stop: u64, hash: Option<u64>) {
        let ChunkerParams { min_size, avg_size, max_size } = r.params;
        let (min, max) = (min_size as u64, max_size as u64);
        let chunk = self.base + self.pos as u64;
        if stop - start > max {
            if start > chunk {
                self.cut_at(start);
            }
            let params = std::mem::replace(&mut self.params, r.params);
            self.cut_cdc((stop - self.base) as usize, true);
            self.params = params;
        } else if start > chunk {
            let transition = r.prev.is_some_and(|was_record| was_record != hash.is_some());
            let chosen = match (r.rule, hash) {
                (_, None) => false,
                // One record in avg/1 KiB starts a chunk, chosen by its key alone.
                (RecordCuts::Chained, Some(h)) => start - chunk >= min && h < u64::MAX / (avg_size / 1024).max(1) as u64,
                (RecordCuts::LeastNearby, Some(h)) => r.least_nearby(start, h),
            };
            if transition || chosen || stop - chunk > max {
                self.cut_at(start);
            }
        }
        match hash {
            Some(h) if r.nearby(&(start, stop, hash)) => {
                r.behind.push_back((start, h));
                let w = r.reach();
                while r.behind.front().is_some_and(|&(s, _)| s + w <= start) {
                    r.behind.pop_front();
                }
            }
            _ => r.behind.clear(),
        }
        r.prev = Some(hash.is_some());
        r.decided = stop;
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = std::io::Result<Chunks>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if !self.ready.is_empty() {
                let start = self.next_start;
                let mut ends = Vec::with_capacity(self.ready.len().min(self.batch_bytes / 256 + 1));
                while let Some(end) = self.ready.pop_front() {
                    ends.push(end - start);
                    if end - start >= self.batch_bytes {
                        break;
                    }
                }
                self.next_start = start + ends.last().copied().unwrap_or(0);
                let scanned = self.log.as_mut().map(|l| Box::new(l.take()));
                return Some(Ok(Chunks { window: self.window.clone(), start: self.origin + start, ends, scanned }));
            }
            if self.eof && self.pos == self.len {
                return None;
            }
            if let Err(e) = self.refill() {
                return Some(Err(e));
            }
            self.cut_window();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pseudo-random bytes; a larger `shift` gives fewer distinct byte values.
    fn lcg_bytes(len: usize, seed: u64, shift: u32) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x >> shift) as u8
            })
            .collect()
    }

    /// Every chunk of every batch, copied out while the chunker keeps running.
    fn all_chunks<R: Read>(chunker: Chunker<R>) -> Vec<Vec<u8>> {
        chunker.flat_map(|b| b.unwrap().iter().map(|c| c.to_vec()).collect::<Vec<_>>()).collect()
    }

    #[test]
    fn chunks_reassemble_and_respect_bounds() {
        let data = lcg_bytes(300_000, 7, 33);
        let p = ChunkerParams::default();
        let chunks: Vec<Vec<u8>> = all_chunks(Chunker::new(&data[..], p, 99));
        assert!(chunks.len() > 10);
        for c in &chunks[..chunks.len() - 1] {
            assert!(c.len() >= p.min_size as usize && c.len() <= p.max_size as usize);
        }
        assert_eq!(chunks.concat(), data);
    }

    use crate::testutil::Trickle;

    #[test]
    fn windowed_cuts_equal_whole_buffer_cuts() {
        let data = lcg_bytes(9_000_000, 3, 59);
        let p = ChunkerParams::default();
        let whole: Vec<usize> = fastcdc::v2020::FastCDC::with_level_and_seed(
            &data,
            p.min_size,
            p.avg_size,
            p.max_size,
            fastcdc::v2020::Normalization::Level1,
            42,
        )
        .map(|c| c.length)
        .collect();
        for step in [usize::MAX, 70_001, 4096] {
            let lens: Vec<usize> = all_chunks(Chunker::new(Trickle(&data, step), p, 42)).iter().map(|c| c.len()).collect();
            assert_eq!(lens, whole, "read size {step}");
        }
    }

    /// Batches held until the end must keep their bytes although the chunker read on (no
    /// window they use is reused), and batches dropped at once must let windows be reused.
    #[test]
    fn batches_keep_their_bytes_and_sizes() {
        let data = lcg_bytes(13_000_000, 5, 40);
        let p = ChunkerParams::default();
        for batch_bytes in [1, 10_000, BATCH_BYTES] {
            let held: Vec<Chunks> = Chunker::new(&data[..], p, 7).batch_bytes(batch_bytes).map(|b| b.unwrap()).collect();
            let mut joined = Vec::with_capacity(data.len());
            for (i, b) in held.iter().enumerate() {
                assert!(!b.is_empty());
                assert_eq!(b.iter().len(), b.len());
                assert_eq!(b.iter().collect::<Vec<_>>().concat(), b.bytes());
                // Only the last chunk may bring a batch to its size, except at a window's end.
                let before_last = b.bytes().len() - b.iter().last().map_or(0, |c| c.len());
                assert!(before_last < batch_bytes, "batch {i} too long");
                joined.extend_from_slice(b.bytes());
            }
            assert_eq!(joined, data, "held batches, batch_bytes {batch_bytes}");
            let mut chunker = Chunker::new(&data[..], p, 7).batch_bytes(batch_bytes);
            let mut streamed = Vec::with_capacity(data.len());
            for b in &mut chunker {
                streamed.extend_from_slice(b.unwrap().bytes());
            }
            assert_eq!(streamed, data, "dropped batches, batch_bytes {batch_bytes}");
            assert!(chunker.retired.len() <= 1, "windows were not reused");
        }
    }

    /// An RDB of string keys with values of `lens` bytes (a 32-bit length for long ones).
    fn rdb(lens: &[usize]) -> (Vec<u8>, Vec<u64>) {
        let mut f = b"REDIS0011\xFA\x03abc\x01x\xFE\x00".to_vec();
        let mut starts = Vec::new();
        for (i, &n) in lens.iter().enumerate() {
            starts.push(f.len() as u64);
            let key = format!("key:{i}");
            f.push(0);
            f.push(key.len() as u8);
            f.extend_from_slice(key.as_bytes());
            f.push(0x80);
            f.extend_from_slice(&(n as u32).to_be_bytes());
            f.extend(lcg_bytes(n, i as u64, 40));
        }
        starts.push(f.len() as u64);
        f.push(0xFF);
        f.extend_from_slice(&[7; 8]);
        (f, starts)
    }

    fn ends<R: Read>(c: Chunker<R>) -> Vec<u64> {
        let mut at = 0;
        all_chunks(c).iter().map(|c| {
            at += c.len() as u64;
            at
        }).collect()
    }

    #[test]
    fn record_cuts_fall_on_record_starts_in_any_reads() {
        let p = ChunkerParams::RECORDS;
        let mut lens: Vec<usize> = (0..3000).map(|i| 20 + (i * 7919) % 1500).collect();
        lens[1000] = 5_000_000; // larger than a read window
        lens[2000] = 40_000;
        let (data, starts) = rdb(&lens);
        let whole = ends(Chunker::new(&data[..], ChunkerParams::default(), 9).records(Some(p)));
        assert_eq!(*whole.last().unwrap(), data.len() as u64);
        let big = |at: u64| (starts[1000] < at && at < starts[1001]) || (starts[2000] < at && at < starts[2001]);
        let mut prev = 0;
        for &end in &whole {
            assert!(end - prev <= p.max_size as u64, "chunk {prev}..{end} too long");
            assert!(big(end) || starts.binary_search(&end).is_ok() || end == data.len() as u64, "cut at {end}");
            prev = end;
        }
        // The header and aux field, and the EOF mark with its checksum, are chunks of their own.
        assert_eq!(whole[0], starts[0]);
        assert_eq!(whole[whole.len() - 2], starts[lens.len()]);
        for step in [70_001, 4096, 999] {
            let c = Chunker::new(Trickle(&data, step), ChunkerParams::default(), 9).records(Some(p));
            assert_eq!(ends(c), whole, "read size {step}");
        }
    }

    /// Every chunk, and every record the scan saw (offset, length, key).
    #[allow(clippy::type_complexity)]
    fn chunks_and_records(c: Chunker<&[u8]>) -> (Vec<Vec<u8>>, Vec<(u64, u64, Vec<u8>)>) {
        let (mut chunks, mut seen) = (Vec::new(), Vec::new());
        for b in c {
            let mut b = b.unwrap();
            chunks.extend(b.iter().map(<[u8]>::to_vec));
            if let Some(s) = b.take_scanned() {
                seen.extend(s.records().map(|r| (r.offset, r.len, r.key.to_vec())));
            }
        }
        (chunks, seen)
    }

    /// Cutting the disk's blocks where they lie gives the chunks and the record scan that
    /// reading gives, whatever the block size, and with a carry-over longer than the room
    /// before a block's data.
    #[test]
    fn blocks_cut_as_the_reader_does() {
        let mut lens: Vec<usize> = (0..3000).map(|i| 20 + (i * 7919) % 1500).collect();
        lens[1000] = 3_000_000;
        let (rdb, _) = rdb(&lens);
        let plain = lcg_bytes(5_000_000, 3, 59);
        for (data, records) in [(&rdb, Some(ChunkerParams::RECORDS)), (&plain, None), (&rdb, None)] {
            let make = |from: &'static [u8]| Chunker::new(from, ChunkerParams::default(), 9).records(records).scan_log();
            let want = chunks_and_records(Chunker::new(&data[..], ChunkerParams::default(), 9).records(records).scan_log());
            assert_eq!(want.0.concat(), *data);
            assert_eq!(want.1.len(), if records.is_some() { lens.len() } else { 0 });
            for (block, room) in [(crate::store::direct::BLOCK, HEAD), (70_001, HEAD), (4096, HEAD), (65_536, 100)] {
                // No bytes from the reader: what is cut came from the blocks.
                let got = chunks_and_records(make(&[]).blocks(Some(Blocks::of_bytes(data, block, room))));
                assert!(got == want, "blocks of {block} after {room} bytes of room, records {}", records.is_some());
            }
        }
    }

    /// Blocks too small for the repository's largest chunks are copied into windows: all
    /// their bytes are still cut, as reading them is.
    #[test]
    fn blocks_smaller_than_the_largest_chunks_are_copied_whole() {
        let data = lcg_bytes(9_000_000, 3, 59);
        let p = ChunkerParams { min_size: 64 << 10, avg_size: 256 << 10, max_size: 1 << 20 };
        let want = ends(Chunker::new(&data[..], p, 9));
        let got = ends(Chunker::new(&[][..], p, 9).blocks(Some(Blocks::of_bytes(&data, 70_001, HEAD))));
        assert_eq!(*want.last().unwrap(), data.len() as u64);
        assert_eq!(got, want);
    }

    /// The blocks of a real direct read (aligned buffers, the file's tail through the cache)
    /// are cut as reading the file is: the chunks and the record scan are the same.
    #[cfg(target_os = "linux")]
    #[test]
    fn direct_read_blocks_cut_as_the_file_reads() {
        use std::os::unix::fs::OpenOptionsExt;
        let lens: Vec<usize> = (0..9000).map(|i| 100 + (i * 7919) % 2500).collect();
        let (data, _) = rdb(&lens);
        assert!(data.len() > 3 * crate::store::direct::BLOCK);
        // Beside the sources, on a real disk: /tmp may be a file system without O_DIRECT.
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = dir.path().join("dump.rdb");
        std::fs::write(&path, &data).unwrap();
        let takes_direct = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(&path).is_ok();
        let blocks = crate::store::direct::open_direct(&std::fs::File::open(&path).unwrap());
        assert_eq!(blocks.is_some(), takes_direct);
        let p = Some(ChunkerParams::RECORDS);
        let want = chunks_and_records(Chunker::new(&data[..], ChunkerParams::default(), 9).records(p).scan_log());
        assert_eq!(want.1.len(), lens.len());
        let got = chunks_and_records(Chunker::new(&[][..], ChunkerParams::default(), 9).records(p).scan_log().blocks(blocks));
        if takes_direct {
            assert_eq!(got, want);
        }
    }

    /// A changed, added or removed key changes the chunk that holds it and at most its neighbours.
    #[test]
    fn record_cuts_stay_put_around_a_change() {
        let p = ChunkerParams::RECORDS;
        let lens: Vec<usize> = (0..4000).map(|i| 50 + (i * 7919) % 900).collect();
        let (a, _) = rdb(&lens);
        let mut lens2 = lens.clone();
        lens2[2000] += 300;
        let (b, _) = rdb(&lens2);
        let chunks = |d: &[u8]| all_chunks(Chunker::new(d, ChunkerParams::default(), 9).records(Some(p)));
        let (ca, cb) = (chunks(&a), chunks(&b));
        let new: Vec<&Vec<u8>> = cb.iter().filter(|c| !ca.contains(c)).collect();
        assert!(new.len() <= 2, "{} new chunks", new.len());
        assert!(new.iter().map(|c| c.len()).sum::<usize>() <= 2 * p.max_size as usize);
    }

    /// Small records (counters, short strings): one changed value of 20 changes, one at a time,
    /// rewrites at most the chunks beside it under the least-nearby rule, where the chained rule
    /// (whose next cut depends on the last) rewrites a long stretch for some of them.
    #[test]
    fn least_nearby_cuts_keep_a_small_change_local() {
        let p = ChunkerParams::RECORDS;
        let lens: Vec<usize> = (0..20_000).map(|i| 8 + (i * 7919 + i * i) % 60).collect();
        let (a, _) = rdb(&lens);
        let new_chunks = |rule: RecordCuts, b: &[u8]| {
            let chunks = |d: &[u8]| all_chunks(Chunker::new(d, ChunkerParams::default(), 9).records(Some(p)).record_cuts(rule));
            let old: std::collections::HashSet<Vec<u8>> = chunks(&a).into_iter().collect();
            chunks(b).into_iter().filter(|c| !old.contains(c)).map(|c| c.len()).collect::<Vec<_>>()
        };
        let (mut worst_chained, mut worst) = (0, 0);
        for k in 0..20 {
            let mut changed = lens.clone();
            let at = 500 + k * 971;
            changed[at] = if k % 2 == 0 { changed[at] + 1 + k % 7 } else { changed[at] - 1 - k % 5 };
            let (b, _) = rdb(&changed);
            let new = new_chunks(RecordCuts::LeastNearby, &b);
            assert!(new.len() <= 3 && new.iter().sum::<usize>() <= 4 * 2048, "change {k}: {} new chunks, {} bytes", new.len(), new.iter().sum::<usize>());
            worst = worst.max(new.len());
            worst_chained = worst_chained.max(new_chunks(RecordCuts::Chained, &b).len());
        }
        assert!(worst_chained > 3, "the chained rule moves more cuts for some change ({worst_chained} chunks at worst, {worst} now)");
    }

    /// Chunks of small records average about the configured size under the least-nearby rule,
    /// none shorter than `min_size` between two record cuts.
    #[test]
    fn least_nearby_cuts_keep_their_sizes() {
        let p = ChunkerParams::RECORDS;
        let lens: Vec<usize> = (0..20_000).map(|i| 8 + (i * 7919 + i * i) % 60).collect();
        let (a, starts) = rdb(&lens);
        let ends = ends(Chunker::new(&a[..], ChunkerParams::default(), 9).records(Some(p)));
        let inner: Vec<u64> = ends.windows(2).filter(|w| w[0] > starts[0] && w[1] < starts[lens.len()]).map(|w| w[1] - w[0]).collect();
        let avg = inner.iter().sum::<u64>() / inner.len() as u64;
        assert!((1400..=3000).contains(&avg), "average {avg}");
        assert!(inner.iter().all(|&n| n >= p.min_size as u64 && n <= p.max_size as u64), "{:?}", inner.iter().min());
    }

    #[test]
    fn input_that_is_not_an_rdb_is_cut_by_fastcdc() {
        let data = lcg_bytes(3_000_000, 3, 59);
        let p = ChunkerParams::default();
        let plain = ends(Chunker::new(&data[..], p, 42));
        assert_eq!(ends(Chunker::new(&data[..], p, 42).records(Some(ChunkerParams::RECORDS))), plain);
    }

    #[test]
    fn empty_input_gives_no_chunks() {
        assert_eq!(Chunker::new(&[][..], ChunkerParams::default(), 1).count(), 0);
    }

    #[test]
    fn validate_rejects_disorder() {
        assert!(ChunkerParams { min_size: 8192, avg_size: 4096, max_size: 65536 }.validate().is_err());
        assert!(ChunkerParams::default().validate().is_ok());
    }
}
