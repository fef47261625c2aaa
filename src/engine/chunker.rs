//! Content-defined chunking of a byte stream (FastCDC v2020, streaming) into batches of chunks.

use std::io::Read;
use std::sync::Arc;

use crate::store::ChunkerParams;

/// Bytes read from the source at a time (the most held by the chunker; batches still being
/// processed keep older windows alive).
const WINDOW: usize = 4 * 1024 * 1024;

/// Default bytes per batch: large enough that channel traffic stays low with 1 KiB chunks.
pub const BATCH_BYTES: usize = 256 * 1024;

/// Consecutive chunks lying back to back in one shared read window: no copy per chunk, and the
/// whole span can be hashed or parsed in one pass.
#[derive(Clone)]
pub struct Chunks {
    window: Arc<Vec<u8>>,
    start: usize,
    /// End of each chunk, relative to `start`.
    ends: Vec<usize>,
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
    /// Earlier windows, reused once every batch cut from them is dropped.
    retired: Vec<Arc<Vec<u8>>>,
    pos: usize,
    len: usize,
    eof: bool,
    /// Start of the first chunk cut but not yet handed out.
    next_start: usize,
    /// Ends (in the window) of chunks cut but not yet handed out.
    ready: std::collections::VecDeque<usize>,
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
            retired: Vec::new(),
            pos: 0,
            len: 0,
            eof: false,
            next_start: 0,
            ready: Default::default(),
        }
    }

    /// Batches end at the first chunk that brings them to `bytes` (or at a window's end).
    pub fn batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes.max(1);
        self
    }

    /// A window buffer no batch refers to: a retired one if possible, else a new one.
    fn free_window(&mut self) -> Vec<u8> {
        let size = WINDOW.max(2 * self.params.max_size as usize);
        if let Some(i) = self.retired.iter().position(|w| Arc::strong_count(w) == 1) {
            if let Ok(v) = Arc::try_unwrap(self.retired.swap_remove(i)) {
                return v;
            }
        }
        vec![0; size]
    }

    /// Moves the unconsumed bytes to the front of a free window and reads until it is full or the input ends.
    fn refill(&mut self) -> std::io::Result<()> {
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
        self.pos = 0;
        let mut result = Ok(());
        while self.len < buf.len() && !self.eof {
            match self.reader.read(&mut buf[self.len..]) {
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

    /// Cuts the current window; keeps the last chunk back unless the input ended.
    fn cut_window(&mut self) {
        use fastcdc::v2020::{FastCDC, Normalization};
        let p = self.params;
        let window = &self.window[self.pos..self.len];
        let cdc = FastCDC::with_level_and_seed(window, p.min_size, p.avg_size, p.max_size, Normalization::Level1, self.seed);
        self.next_start = self.pos;
        let mut consumed = 0;
        for c in cdc {
            let end = c.offset + c.length;
            if end == window.len() && !self.eof {
                break;
            }
            self.ready.push_back(self.pos + end);
            consumed = end;
        }
        self.pos += consumed;
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
                return Some(Ok(Chunks { window: self.window.clone(), start, ends }));
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
