//! Byte source for the parser: buffered, tracks the file offset, the running CRC64 and an optional capture of raw bytes.

use std::io::{ErrorKind, Read};

use super::crc64::crc64;
use super::error::{RdbError, Result};

/// Largest chunk read at once, so a bogus length field never triggers a huge allocation up front.
const CHUNK: usize = 64 * 1024;

/// Read buffer size: small enough that bytes copied in are still in L1 cache when parsed.
const BUF: usize = 16 * 1024;

/// Wraps a reader; every consumed byte updates `offset`, `crc` and (if enabled) `capture`.
///
/// The CRC is computed over whole buffer spans when the buffer is refilled (or the CRC is asked
/// for), not per field: one pass over 64 KiB is many times faster than thousands of tiny ones.
pub(crate) struct ByteReader<R: Read> {
    inner: R,
    buf: Vec<u8>,
    /// Next unconsumed byte in `buf`.
    pos: usize,
    /// End of the valid bytes in `buf`.
    end: usize,
    /// Consumed bytes from here up to `pos` are not yet in `crc`.
    crc_from: usize,
    offset: u64,
    crc: u64,
    capture: Option<Vec<u8>>,
    /// Whether `crc` is kept (not for bytes another reader has checksummed: [`ByteReader::in_memory`]).
    checksummed: bool,
    /// Whether the bytes read stay in `buf` until [`Self::take_kept`] (the buffer grows).
    keep: bool,
    /// Key of the record being read, for error messages.
    pub(crate) key: Option<Vec<u8>>,
}

impl<R: Read> ByteReader<R> {
    pub(crate) fn new(r: R) -> Self {
        ByteReader {
            inner: r,
            buf: vec![0; BUF],
            pos: 0,
            end: 0,
            crc_from: 0,
            offset: 0,
            crc: 0,
            capture: None,
            checksummed: true,
            keep: false,
            key: None,
        }
    }

    /// Offset of the next byte to be read.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// CRC64 of every byte consumed so far (0 for [`ByteReader::in_memory`]).
    pub(crate) fn crc(&mut self) -> u64 {
        if self.checksummed {
            self.crc = crc64(self.crc, &self.buf[self.crc_from..self.pos]);
        }
        self.crc_from = self.pos;
        self.crc
    }

    /// Checksums the consumed bytes, then replaces the buffer with the next read (one call, so
    /// a stream that pauses is parsed as far as it has arrived).
    fn refill(&mut self) -> Result<()> {
        self.crc();
        if self.keep {
            // The next read goes after the bytes kept.
            self.buf.resize(self.buf.len().max(self.end + BUF), 0);
        } else {
            self.pos = 0;
            self.end = 0;
            self.crc_from = 0;
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(RdbError::Io {
                        offset: self.offset,
                        source: e,
                    })
                }
            }
        }
    }

    /// Keeps every byte read from here on in the buffer, for [`Self::take_kept`].
    pub(crate) fn keep(&mut self) {
        self.keep = true;
        // The bytes consumed before are not kept.
        self.take_kept(self.offset, Vec::new());
    }

    /// The bytes kept from the last take (or [`Self::keep`]) up to stream offset `upto`, at
    /// most what was consumed; the bytes read after it stay, moved to `next` (a buffer given
    /// back by a finished batch, so batches reuse a few allocations).
    pub(crate) fn take_kept(&mut self, upto: u64, mut next: Vec<u8>) -> Vec<u8> {
        self.crc();
        let base = self.offset - self.pos as u64;
        let cut = usize::try_from(upto.saturating_sub(base)).unwrap_or(usize::MAX).min(self.pos);
        // The buffer keeps its length (bytes past `end` are stale, read over): zeroed once
        // when first used, not again before every read into it.
        let left = self.end - cut;
        if next.len() < left + BUF {
            next.resize(left + BUF, 0);
        }
        next[..left].copy_from_slice(&self.buf[cut..self.end]);
        let mut taken = std::mem::replace(&mut self.buf, next);
        taken.truncate(cut);
        self.pos -= cut;
        self.end -= cut;
        self.crc_from = self.pos;
        taken
    }

    /// Starts recording consumed bytes, seeded with `prefix` (e.g. the type byte already read).
    pub(crate) fn start_capture(&mut self, prefix: &[u8]) {
        let mut v = Vec::with_capacity(256);
        v.extend_from_slice(prefix);
        self.capture = Some(v);
    }

    /// Stops recording and returns what was recorded (empty if capture was off).
    pub(crate) fn take_capture(&mut self) -> Vec<u8> {
        self.capture.take().unwrap_or_default()
    }

    /// A corruption error at the current offset.
    pub(crate) fn corrupt(&self, msg: impl Into<String>) -> RdbError {
        self.corrupt_at(self.offset, msg)
    }

    /// A corruption error at an explicit offset (e.g. the start of a blob).
    pub(crate) fn corrupt_at(&self, offset: u64, msg: impl Into<String>) -> RdbError {
        RdbError::Corrupt {
            offset,
            key: self.key.clone(),
            msg: msg.into(),
        }
    }

    /// An "unsupported" error at an explicit offset.
    pub(crate) fn unsupported_at(&self, offset: u64, what: impl Into<String>) -> RdbError {
        RdbError::Unsupported {
            offset,
            key: self.key.clone(),
            what: what.into(),
        }
    }

    fn truncated(&self) -> RdbError {
        RdbError::Truncated {
            offset: self.offset,
            key: self.key.clone(),
        }
    }

    /// Consumes up to `want` bytes, handing each buffered slice to `sink`; fails if data runs out.
    fn consume_with(&mut self, mut want: u64, mut sink: impl FnMut(&[u8])) -> Result<()> {
        while want > 0 {
            if self.pos == self.end {
                self.refill()?;
                if self.pos == self.end {
                    return Err(self.truncated());
                }
            }
            let n = (self.end - self.pos).min(usize::try_from(want).unwrap_or(usize::MAX));
            let part = &self.buf[self.pos..self.pos + n];
            if let Some(c) = self.capture.as_mut() {
                c.extend_from_slice(part);
            }
            sink(part);
            self.pos += n;
            self.offset += n as u64;
            want -= n as u64;
        }
        Ok(())
    }

    /// Fills `out` completely.
    pub(crate) fn read_into(&mut self, out: &mut [u8]) -> Result<()> {
        let mut pos = 0;
        self.consume_with(out.len() as u64, |part| {
            out[pos..pos + part.len()].copy_from_slice(part);
            pos += part.len();
        })
    }

    /// Reads exactly `n` bytes; memory grows only as data actually arrives.
    pub(crate) fn read_bytes(&mut self, n: u64) -> Result<Vec<u8>> {
        let mut v = Vec::with_capacity(usize::try_from(n.min(CHUNK as u64)).unwrap_or(CHUNK));
        self.consume_with(n, |part| v.extend_from_slice(part))?;
        Ok(v)
    }

    /// Bytes that can be taken from the buffer at once, if nothing else must see them.
    #[inline]
    fn buffered(&self, n: usize) -> bool {
        n <= self.end - self.pos && self.capture.is_none()
    }

    /// The buffered bytes not yet consumed, when nothing but the CRC must see them (no capture);
    /// for fast paths that look ahead and then [`Self::advance`].
    #[inline]
    pub(crate) fn lookahead(&self) -> &[u8] {
        if self.capture.is_none() {
            &self.buf[self.pos..self.end]
        } else {
            &[]
        }
    }

    /// Consumes `n` bytes seen through [`Self::lookahead`] (the CRC covers them at the next refill).
    #[inline]
    pub(crate) fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.lookahead().len());
        self.pos += n;
        self.offset += n as u64;
    }

    /// Consumes `n` bytes seen through [`Self::lookahead`] and returns them.
    #[inline]
    pub(crate) fn take_ahead(&mut self, n: usize) -> &[u8] {
        let start = self.pos;
        self.advance(n);
        &self.buf[start..start + n]
    }

    /// Reads exactly `n` bytes into `out` (cleared first); memory grows only as data arrives.
    pub(crate) fn read_bytes_into(&mut self, n: u64, out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        self.consume_with(n, |part| out.extend_from_slice(part))
    }

    /// Skips `n` bytes (still checksummed and captured).
    pub(crate) fn skip(&mut self, n: u64) -> Result<()> {
        match usize::try_from(n) {
            // The checksum covers skipped bytes when the buffer is refilled.
            Ok(k) if self.buffered(k) => {
                self.pos += k;
                self.offset += n;
                Ok(())
            }
            _ => self.consume_with(n, |_| {}),
        }
    }

    #[inline]
    pub(crate) fn read_u8(&mut self) -> Result<u8> {
        Ok(self.read_array::<1>()?[0])
    }

    #[inline]
    pub(crate) fn read_array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        if self.buffered(N) {
            b.copy_from_slice(&self.buf[self.pos..self.pos + N]);
            self.pos += N;
            self.offset += N as u64;
        } else {
            self.read_into(&mut b)?;
        }
        Ok(b)
    }

    pub(crate) fn read_u32_le(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.read_array()?))
    }

    pub(crate) fn read_u64_le(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.read_array()?))
    }
}

impl ByteReader<std::io::Empty> {
    /// A reader of records' bytes already in memory, cut from the stream by a reader that
    /// checksums them: read in place (no copy, no CRC), one value at a time ([`Self::within`]).
    pub(crate) fn in_memory(bytes: Vec<u8>) -> Self {
        let end = bytes.len();
        ByteReader { inner: std::io::empty(), buf: bytes, pos: 0, end, crc_from: 0, offset: 0, crc: 0, capture: None, checksummed: false, keep: false, key: None }
    }

    /// Reads `bytes[start..end]` next, as the stream's bytes from `offset` on: reading past
    /// `end` is a truncation, so a value cannot run into the next record.
    pub(crate) fn within(&mut self, start: usize, end: usize, offset: u64) {
        debug_assert!(start <= end && end <= self.buf.len());
        (self.pos, self.end, self.crc_from, self.offset) = (start, end, start, offset);
        self.key = None;
    }

    /// Gives back the bytes, for the next batch.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_offset_crc_and_capture() {
        let data = b"123456789abc".to_vec();
        let mut r = ByteReader::new(&data[..]);
        r.start_capture(&[0xAA]);
        assert_eq!(r.read_bytes(9).unwrap(), b"123456789");
        assert_eq!(r.crc(), 0xe9c6d914c4b8d9ca);
        assert_eq!(r.offset(), 9);
        r.skip(2).unwrap();
        assert_eq!(r.take_capture(), b"\xAA123456789ab");
        assert_eq!(r.read_u8().unwrap(), b'c');
        assert!(r.read_u8().is_err());
    }

    use crate::testutil::Trickle;

    /// Skipped and read bytes, within one buffer or across refills, all reach the CRC.
    #[test]
    fn crc_covers_every_consumed_byte() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        for step in [1, 7, 1000, 70_000, usize::MAX] {
            let mut r = ByteReader::new(Trickle(&data, step));
            let mut i = 0u64;
            while r.offset() + 70_000 < data.len() as u64 {
                match i % 5 {
                    0 => drop(r.read_u8().unwrap()),
                    1 => r.skip(i % 300).unwrap(),
                    2 => drop(r.read_array::<8>().unwrap()),
                    3 => r.skip(i * 37 % 66_000).unwrap(),
                    _ => drop(r.read_bytes(i % 50).unwrap()),
                }
                i += 1;
                if i.is_multiple_of(97) {
                    let at = r.offset() as usize;
                    assert_eq!(r.crc(), crc64(0, &data[..at]), "step {step} at {at}");
                }
            }
            let at = r.offset() as usize;
            assert_eq!(r.crc(), crc64(0, &data[..at]), "step {step} at {at}");
        }
    }

    #[test]
    fn huge_length_fails_cleanly() {
        let data = [1u8, 2, 3];
        let mut r = ByteReader::new(&data[..]);
        match r.read_bytes(u64::MAX) {
            Err(RdbError::Truncated { offset, .. }) => assert_eq!(offset, 3),
            other => panic!("expected truncation, got {other:?}"),
        }
    }
}
