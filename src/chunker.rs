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

/// Cuts a reader into chunks, holding at most one maximum-size buffer.
pub struct Chunker<R: Read> {
    inner: fastcdc::v2020::StreamCDC<R>,
}

impl<R: Read> Chunker<R> {
    /// A chunker over `reader` with the repository's parameters and secret
    /// gear seed (so cut points, and thus chunk sizes, reveal nothing).
    pub fn new(reader: R, params: ChunkerParams, seed: u64) -> Self {
        use fastcdc::v2020::{Normalization, StreamCDC};
        let (min, avg, max) = (params.min_size, params.avg_size, params.max_size);
        Chunker { inner: StreamCDC::with_level_and_seed(reader, min, avg, max, Normalization::Level1, seed) }
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.inner.next()? {
            Ok(chunk) => Some(Ok(chunk.data)),
            Err(fastcdc::v2020::Error::Empty) => None,
            Err(fastcdc::v2020::Error::IoError(e)) => Some(Err(e)),
            Err(fastcdc::v2020::Error::Other(msg)) => Some(Err(std::io::Error::other(msg))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_reassemble_and_respect_bounds() {
        let mut data = vec![0u8; 300_000];
        let mut x = 7u64;
        for b in data.iter_mut() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            *b = (x >> 33) as u8;
        }
        let p = ChunkerParams::default();
        let chunks: Vec<Vec<u8>> = Chunker::new(&data[..], p, 99).map(|c| c.unwrap()).collect();
        assert!(chunks.len() > 10);
        for c in &chunks[..chunks.len() - 1] {
            assert!(c.len() >= p.min_size as usize && c.len() <= p.max_size as usize);
        }
        assert_eq!(chunks.concat(), data);
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
