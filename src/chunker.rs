//! Content-defined chunking of a byte stream (FastCDC v2020, streaming).

use std::io::Read;

use serde::{Deserialize, Serialize};

/// Chunk size bounds, fixed per repository so that backups line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// No cut before this many bytes.
    pub min_size: u32,
    /// Target average chunk size.
    pub avg_size: u32,
    /// A cut is forced at this many bytes.
    pub max_size: u32,
}

impl Default for ChunkerParams {
    /// Chosen by measurement on real RDB files; see docs/format.md ("Chunking").
    fn default() -> Self {
        ChunkerParams { min_size: 256, avg_size: 1024, max_size: 8 * 1024 }
    }
}

impl ChunkerParams {
    /// Checks the bounds FastCDC accepts and that they are ordered.
    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN};
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min_size)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg_size)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max_size)
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "chunk sizes min {} / avg {} / max {} are out of range (need {MINIMUM_MIN} <= min <= avg <= max <= {MAXIMUM_MAX}, avg >= {AVERAGE_MIN}, max >= {MAXIMUM_MIN})",
                self.min_size, self.avg_size, self.max_size
            ))
        }
    }
}

/// Bytes read from the source at a time (and the most held in memory).
const WINDOW: usize = 4 * 1024 * 1024;

/// Cuts a reader into chunks with large reads and no per-chunk buffer shifts.
///
/// FastCDC runs over a 4 MiB window of the input. A cut that FastCDC finds
/// before the window's end depends only on the bytes before it, so it is the
/// cut a fully buffered run would make; the chunk that reaches the window's
/// end is carried over to the next window (unless the input has ended).
pub struct Chunker<R: Read> {
    reader: R,
    params: ChunkerParams,
    seed: u64,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    eof: bool,
    ready: std::collections::VecDeque<Vec<u8>>,
}

impl<R: Read> Chunker<R> {
    /// A chunker over `reader` with the repository's parameters and secret
    /// gear seed (so cut points, and thus chunk sizes, reveal nothing).
    pub fn new(reader: R, params: ChunkerParams, seed: u64) -> Self {
        let window = WINDOW.max(2 * params.max_size as usize);
        Chunker { reader, params, seed, buf: vec![0; window], pos: 0, len: 0, eof: false, ready: Default::default() }
    }

    /// Moves the unconsumed bytes to the front and reads until the window is full or the input ends.
    fn refill(&mut self) -> std::io::Result<()> {
        self.buf.copy_within(self.pos..self.len, 0);
        self.len -= self.pos;
        self.pos = 0;
        while self.len < self.buf.len() && !self.eof {
            match self.reader.read(&mut self.buf[self.len..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Cuts the current window; keeps the last chunk back unless the input ended.
    fn cut_window(&mut self) {
        use fastcdc::v2020::{FastCDC, Normalization};
        let p = self.params;
        let window = &self.buf[self.pos..self.len];
        let cdc = FastCDC::with_level_and_seed(window, p.min_size, p.avg_size, p.max_size, Normalization::Level1, self.seed);
        let mut consumed = 0;
        for c in cdc {
            let end = c.offset + c.length;
            if end == window.len() && !self.eof {
                break;
            }
            self.ready.push_back(window[c.offset..end].to_vec());
            consumed = end;
        }
        self.pos += consumed;
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(c) = self.ready.pop_front() {
                return Some(Ok(c));
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

    #[test]
    fn chunks_reassemble_and_respect_bounds() {
        let data = lcg_bytes(300_000, 7, 33);
        let p = ChunkerParams::default();
        let chunks: Vec<Vec<u8>> = Chunker::new(&data[..], p, 99).map(|c| c.unwrap()).collect();
        assert!(chunks.len() > 10);
        for c in &chunks[..chunks.len() - 1] {
            assert!(c.len() >= p.min_size as usize && c.len() <= p.max_size as usize);
        }
        assert_eq!(chunks.concat(), data);
    }

    /// Reads at most `n` bytes per call, like a pipe.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

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
            let lens: Vec<usize> = Chunker::new(Trickle(&data, step), p, 42).map(|c| c.unwrap().len()).collect();
            assert_eq!(lens, whole, "read size {step}");
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
