//! RDB length and string encodings: 6/14/32/64-bit lengths, int8/16/32 strings, LZF-compressed strings, doubles.

use std::io::Read;

use super::error::Result;
use super::lzf;
use super::reader::ByteReader;

/// Special string encodings signalled by a length byte of the form `11xxxxxx`.
const ENC_INT8: u8 = 0;
const ENC_INT16: u8 = 1;
const ENC_INT32: u8 = 2;
const ENC_LZF: u8 = 3;

/// A decoded length field: either a plain length or a special string encoding tag.
pub(crate) enum Len {
    Plain(u64),
    Encoded(u8),
}

/// How a string was stored in the file; used to name the value encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrForm {
    /// Stored as an int8/16/32.
    Int,
    /// Stored as bytes (plain or LZF) with this uncompressed length.
    Bytes(u64),
}

impl<R: Read> ByteReader<R> {
    /// Reads a length field, which may instead announce a special string encoding.
    pub(crate) fn read_len_or_enc(&mut self) -> Result<Len> {
        let first = self.read_u8()?;
        Ok(match first >> 6 {
            0 => Len::Plain((first & 0x3f) as u64),
            1 => {
                let second = self.read_u8()?;
                Len::Plain((((first & 0x3f) as u64) << 8) | second as u64)
            }
            2 => match first {
                0x80 => Len::Plain(u32::from_be_bytes(self.read_array()?) as u64),
                0x81 => Len::Plain(u64::from_be_bytes(self.read_array()?)),
                _ => {
                    return Err(self.corrupt_at(
                        self.offset() - 1,
                        format!("unknown length encoding byte {first:#04x}"),
                    ))
                }
            },
            _ => Len::Encoded(first & 0x3f),
        })
    }

    /// Reads a plain length; a string-encoding tag here is corruption.
    pub(crate) fn read_len(&mut self) -> Result<u64> {
        match self.read_len_or_enc()? {
            Len::Plain(n) => Ok(n),
            Len::Encoded(e) => Err(self.corrupt_at(
                self.offset() - 1,
                format!("expected a length, found string encoding tag {e}"),
            )),
        }
    }

    /// Reads a length that must fit a `usize`-sized in-memory count.
    pub(crate) fn read_count(&mut self) -> Result<u64> {
        let at = self.offset();
        let n = self.read_len()?;
        if n > (u32::MAX as u64) * 16 {
            return Err(self.corrupt_at(at, format!("implausible element count {n}")));
        }
        Ok(n)
    }

    /// Reads an RDB string; integer-encoded strings come back as their decimal text.
    pub(crate) fn read_string(&mut self) -> Result<Vec<u8>> {
        Ok(self.read_string_form()?.0)
    }

    /// Reads an RDB string and reports how it was stored.
    pub(crate) fn read_string_form(&mut self) -> Result<(Vec<u8>, StrForm)> {
        let at = self.offset();
        match self.read_len_or_enc()? {
            Len::Plain(n) => Ok((self.read_bytes(n)?, StrForm::Bytes(n))),
            Len::Encoded(ENC_INT8) => {
                let v = self.read_u8()? as i8;
                Ok((v.to_string().into_bytes(), StrForm::Int))
            }
            Len::Encoded(ENC_INT16) => {
                let v = i16::from_le_bytes(self.read_array()?);
                Ok((v.to_string().into_bytes(), StrForm::Int))
            }
            Len::Encoded(ENC_INT32) => {
                let v = i32::from_le_bytes(self.read_array()?);
                Ok((v.to_string().into_bytes(), StrForm::Int))
            }
            Len::Encoded(ENC_LZF) => {
                let (clen, ulen) = self.read_lzf_header(at)?;
                let compressed = self.read_bytes(clen)?;
                let ulen_usize = usize::try_from(ulen)
                    .map_err(|_| self.corrupt_at(at, "LZF length does not fit in memory"))?;
                let out =
                    lzf::decompress(&compressed, ulen_usize).map_err(|m| self.corrupt_at(at, m))?;
                Ok((out, StrForm::Bytes(ulen)))
            }
            Len::Encoded(e) => Err(self.corrupt_at(at, format!("unknown string encoding {e}"))),
        }
    }

    /// Reads and sanity-checks the (compressed, uncompressed) lengths of an LZF string.
    pub(crate) fn read_lzf_header(&mut self, at: u64) -> Result<(u64, u64)> {
        let clen = self.read_len()?;
        let ulen = self.read_len()?;
        if ulen > clen.saturating_mul(lzf::MAX_RATIO).saturating_add(64) {
            return Err(self.corrupt_at(
                at,
                format!("LZF string claims {ulen} bytes from {clen} compressed bytes"),
            ));
        }
        Ok((clen, ulen))
    }

    /// Skips an RDB string without decompressing it; reports how it was stored.
    #[inline]
    pub(crate) fn skip_string(&mut self) -> Result<StrForm> {
        // Fast path for the common case, a plain string with a 6- or 14-bit length that is
        // already buffered: one look at the buffer instead of a read per field.
        if let Some((header, len)) = buffered_plain(self.lookahead()) {
            self.advance(header + len);
            return Ok(StrForm::Bytes(len as u64));
        }
        self.skip_string_slow()
    }

    /// Reads an RDB string as a slice: of the read buffer when it is there whole (no copy), else
    /// of `s` (plain bytes, an integer's decimal text, LZF decompressed), reused string to string.
    #[inline]
    pub(crate) fn read_string_ref<'a>(&'a mut self, s: &'a mut Scratch) -> Result<(&'a [u8], StrForm)> {
        if let Some((header, len)) = buffered_plain(self.lookahead()) {
            return Ok((&self.take_ahead(header + len)[header..], StrForm::Bytes(len as u64)));
        }
        let at = self.offset();
        let form = match self.read_len_or_enc()? {
            Len::Plain(n) => {
                self.read_bytes_into(n, &mut s.bytes)?;
                StrForm::Bytes(n)
            }
            Len::Encoded(e @ (ENC_INT8 | ENC_INT16 | ENC_INT32)) => {
                let v = match e {
                    ENC_INT8 => i64::from(self.read_u8()? as i8),
                    ENC_INT16 => i64::from(i16::from_le_bytes(self.read_array()?)),
                    _ => i64::from(i32::from_le_bytes(self.read_array()?)),
                };
                s.bytes.clear();
                push_decimal(&mut s.bytes, v);
                StrForm::Int
            }
            Len::Encoded(ENC_LZF) => {
                let (clen, ulen) = self.read_lzf_header(at)?;
                let ulen_usize = usize::try_from(ulen)
                    .map_err(|_| self.corrupt_at(at, "LZF length does not fit in memory"))?;
                let ahead = self.lookahead();
                let done = match usize::try_from(clen) {
                    // Decompressed from the read buffer when it holds the whole input.
                    Ok(n) if n <= ahead.len() => {
                        let done = lzf::decompress_into(&ahead[..n], ulen_usize, &mut s.bytes);
                        self.advance(n);
                        done
                    }
                    _ => {
                        self.read_bytes_into(clen, &mut s.compressed)?;
                        lzf::decompress_into(&s.compressed, ulen_usize, &mut s.bytes)
                    }
                };
                done.map_err(|m| self.corrupt_at(at, m))?;
                StrForm::Bytes(ulen)
            }
            Len::Encoded(e) => return Err(self.corrupt_at(at, format!("unknown string encoding {e}"))),
        };
        Ok((&s.bytes, form))
    }

    /// [`Self::skip_string`] for every encoding and for strings that cross the buffer's end.
    fn skip_string_slow(&mut self) -> Result<StrForm> {
        let at = self.offset();
        match self.read_len_or_enc()? {
            Len::Plain(n) => {
                self.skip(n)?;
                Ok(StrForm::Bytes(n))
            }
            Len::Encoded(ENC_INT8) => self.skip(1).map(|_| StrForm::Int),
            Len::Encoded(ENC_INT16) => self.skip(2).map(|_| StrForm::Int),
            Len::Encoded(ENC_INT32) => self.skip(4).map(|_| StrForm::Int),
            Len::Encoded(ENC_LZF) => {
                let (clen, ulen) = self.read_lzf_header(at)?;
                self.skip(clen)?;
                Ok(StrForm::Bytes(ulen))
            }
            Len::Encoded(e) => Err(self.corrupt_at(at, format!("unknown string encoding {e}"))),
        }
    }

    /// Reads a string (decode) or skips it (no decode), returning the bytes only when decoding.
    pub(crate) fn string_or_skip(&mut self, decode: bool) -> Result<Option<Vec<u8>>> {
        if decode {
            self.read_string().map(Some)
        } else {
            self.skip_string().map(|_| None)
        }
    }

    /// Reads an old-style (RDB type 3) ASCII double: a length byte (253 NaN, 254 +inf, 255 -inf) then text.
    pub(crate) fn read_ascii_double(&mut self) -> Result<f64> {
        let at = self.offset();
        let n = self.read_u8()?;
        match n {
            253 => Ok(f64::NAN),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            _ => {
                let text = self.read_bytes(n as u64)?;
                parse_f64(&text).ok_or_else(|| self.corrupt_at(at, "invalid ASCII double"))
            }
        }
    }

    /// Reads an 8-byte little-endian IEEE double (zset2 scores).
    pub(crate) fn read_binary_double(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.read_array()?))
    }
}

/// Buffers [`ByteReader::read_string_ref`] reuses from string to string.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    bytes: Vec<u8>,
    compressed: Vec<u8>,
}

impl Scratch {
    /// Lets go of what a large string needed, so one big value is not held for the rest of the file.
    pub(crate) fn trim(&mut self) {
        const KEEP: usize = 1 << 20;
        for b in [&mut self.bytes, &mut self.compressed] {
            if b.capacity() > KEEP {
                b.clear();
                b.shrink_to(KEEP);
            }
        }
    }
}

/// The (header, length) of a plain string with a 6-, 14- or 32-bit length that `ahead` holds whole.
#[inline]
fn buffered_plain(ahead: &[u8]) -> Option<(usize, usize)> {
    let first = *ahead.first()?;
    let (header, len) = match first >> 6 {
        0 => (1, (first & 0x3f) as usize),
        1 => (2, (((first & 0x3f) as usize) << 8) | *ahead.get(1)? as usize),
        // A 32-bit length (a string of 16 KiB or more: in a walker's kept bytes).
        2 if first == 0x80 => (5, u32::from_be_bytes(*ahead.get(1..5)?.first_chunk()?) as usize),
        _ => return None,
    };
    (header + len <= ahead.len()).then_some((header, len))
}

/// Appends the decimal text of `v` (what `v.to_string()` gives, without allocating).
pub(crate) fn push_decimal(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_unsigned(out, v.unsigned_abs());
}

/// Appends the decimal text of `n`, its digits written in place (no `memcpy` call of a
/// length known only at run time, as copying them from a stack buffer made).
pub(crate) fn push_unsigned(out: &mut Vec<u8>, mut n: u64) {
    let digits = n.checked_ilog10().map_or(1, |d| d as usize + 1);
    out.reserve(digits);
    let start = out.len();
    // SAFETY: `digits` bytes were reserved past `start`; each is written before the length
    // grows over them (the last division leaves 0 exactly when all digits are written).
    unsafe {
        let p = out.as_mut_ptr().add(start);
        let mut i = digits;
        // Two digits per division while more than two are left.
        while i > 2 {
            i -= 2;
            let pair = (n % 100) as usize * 2;
            p.add(i).copy_from_nonoverlapping(DIGIT_PAIRS.as_ptr().add(pair), 2);
            n /= 100;
        }
        while i > 0 {
            i -= 1;
            *p.add(i) = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.set_len(start + digits);
    }
}

/// "00" to "99", for [`push_unsigned`].
static DIGIT_PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut k = 0;
    while k < 100 {
        t[2 * k] = b'0' + (k / 10) as u8;
        t[2 * k + 1] = b'0' + (k % 10) as u8;
        k += 1;
    }
    t
};

/// Parses decimal text (as Redis writes scores) to f64, accepting inf/-inf.
pub(crate) fn parse_f64(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text).ok()?.trim().parse::<f64>().ok()
}

/// Parses decimal text to i64 (used for integers stored as text inside compact encodings).
pub(crate) fn parse_i64(text: &[u8]) -> Option<i64> {
    std::str::from_utf8(text).ok()?.parse::<i64>().ok()
}

/// True when Redis' `string2ll` would accept `s` (so the string loads with the "int" encoding).
pub(crate) fn is_redis_int(s: &[u8]) -> bool {
    if s.is_empty() || s.len() > 20 {
        return false;
    }
    let digits = if s[0] == b'-' { &s[1..] } else { s };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    if digits[0] == b'0' && (digits.len() > 1 || s[0] == b'-') {
        return false;
    }
    parse_i64(s).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Read;

    fn reader(b: &[u8]) -> ByteReader<&[u8]> {
        ByteReader::new(b)
    }

    #[test]
    fn lengths() {
        assert!(matches!(reader(&[0x0a]).read_len().unwrap(), 10));
        assert_eq!(reader(&[0x41, 0x02]).read_len().unwrap(), 0x102);
        assert_eq!(reader(&[0x80, 0, 1, 0, 0]).read_len().unwrap(), 65536);
        assert_eq!(
            reader(&[0x81, 0, 0, 0, 1, 0, 0, 0, 0]).read_len().unwrap(),
            1 << 32
        );
        assert!(reader(&[0x82]).read_len().is_err());
        assert!(reader(&[0xc0, 5]).read_len().is_err());
    }

    #[test]
    fn strings() {
        assert_eq!(
            reader(&[3, b'a', b'b', b'c']).read_string().unwrap(),
            b"abc"
        );
        assert_eq!(reader(&[0xc0, 0xfe]).read_string().unwrap(), b"-2");
        assert_eq!(reader(&[0xc1, 0x39, 0x30]).read_string().unwrap(), b"12345");
        assert_eq!(
            reader(&[0xc2, 0xff, 0xff, 0xff, 0x7f])
                .read_string()
                .unwrap(),
            b"2147483647"
        );
        // LZF: clen 6, ulen 6, "xyz" literal + 3-byte back-reference.
        let lzf = [0xc3, 6, 6, 2, b'x', b'y', b'z', 0b0010_0000, 2];
        assert_eq!(reader(&lzf).read_string().unwrap(), b"xyzxyz");
        let mut r = reader(&lzf);
        assert_eq!(r.skip_string().unwrap(), StrForm::Bytes(6));
        assert_eq!(r.offset(), lzf.len() as u64);
        // LZF claiming an absurd output size is rejected before allocating.
        assert!(reader(&[0xc3, 1, 0x81, 0, 0, 1, 0, 0, 0, 0, 0])
            .read_string()
            .is_err());
    }

    /// Hands out one byte per read, so no string is ever fully buffered.
    struct OneByte<'a>(&'a [u8]);

    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&b, rest)), Some(out)) => {
                    *out = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    /// The buffered fast path of `skip_string` agrees with the general one on every encoding.
    #[test]
    fn skipping_strings_fast_and_slow_agree() {
        let mut data = Vec::new();
        let mut lens = vec![0usize, 1, 20, 63, 64, 300, 16_383];
        lens.extend((0..200).map(|i| (i * 37) % 500));
        for &n in &lens {
            if n < 64 {
                data.push(n as u8);
            } else {
                data.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
            }
            data.extend((0..n).map(|i| (i * 7) as u8));
        }
        data.extend_from_slice(&[0x80, 0, 0, 0x40, 0]); // 32-bit length 16384
        data.extend(std::iter::repeat_n(9u8, 16_384));
        data.extend_from_slice(&[0xc0, 5, 0xc1, 1, 2, 0xc2, 1, 2, 3, 4]); // int8/16/32
        data.extend_from_slice(&[0xc3, 6, 6, 2, b'x', b'y', b'z', 0b0010_0000, 2]); // LZF
        let walk = |mut r: ByteReader<&mut dyn Read>, capture: bool| {
            if capture {
                r.start_capture(&[]);
            }
            let mut seen = Vec::new();
            while r.offset() < data.len() as u64 {
                seen.push((r.skip_string().unwrap(), r.offset()));
            }
            assert_eq!(r.crc(), super::super::crc64::crc64(0, &data));
            seen
        };
        let fast = walk(ByteReader::new(&mut &data[..]), false);
        assert_eq!(fast.len(), lens.len() + 5);
        assert_eq!(walk(ByteReader::new(&mut OneByte(&data)), false), fast);
        assert_eq!(walk(ByteReader::new(&mut &data[..]), true), fast);
    }

    #[test]
    fn decimals_are_to_string() {
        let powers = (0..19).map(|k| 10i64.pow(k)).flat_map(|p| [p - 1, p, p + 1, -p - 1, -p, 1 - p]);
        for v in [0, 1, -1, 9, 10, -10, 12345, i64::MAX, i64::MIN, i64::MIN + 1].into_iter().chain(powers) {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, v);
            assert_eq!(out, format!("x{v}").into_bytes());
        }
        for n in [u64::MAX, u64::MAX - 1, 10_000_000_000_000_000_000, 9_999_999_999_999_999_999, 0] {
            let mut out = b"x".to_vec();
            push_unsigned(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    /// `read_string_ref` gives what `read_string` gives, buffered or not, for every encoding.
    #[test]
    fn string_refs_are_read_strings() {
        let mut data = Vec::new();
        for n in [0usize, 1, 63, 64, 300, 16_383] {
            if n < 64 {
                data.push(n as u8);
            } else {
                data.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
            }
            data.extend((0..n).map(|i| (i * 7) as u8));
        }
        data.extend_from_slice(&[0x80, 0, 0, 0x40, 0]);
        data.extend(std::iter::repeat_n(9u8, 16_384));
        data.extend_from_slice(&[0xc0, 0xfb, 0xc1, 1, 0x82, 0xc2, 1, 2, 3, 0x84]);
        data.extend_from_slice(&[0xc3, 6, 6, 2, b'x', b'y', b'z', 0b0010_0000, 2]);
        let mut want = reader(&data);
        let mut strings = Vec::new();
        while want.offset() < data.len() as u64 {
            strings.push(want.read_string_form().unwrap());
        }
        let mut s = Scratch::default();
        for mut r in [ByteReader::new(&mut &data[..] as &mut dyn Read), ByteReader::new(&mut OneByte(&data) as &mut dyn Read)] {
            for (bytes, form) in &strings {
                let (got, got_form) = r.read_string_ref(&mut s).unwrap();
                assert_eq!((got, got_form), (bytes.as_slice(), *form));
            }
            assert_eq!(r.crc(), super::super::crc64::crc64(0, &data));
        }
    }

    #[test]
    fn redis_ints() {
        for ok in [
            "0",
            "-1",
            "12345",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            assert!(is_redis_int(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "-",
            "01",
            "-0",
            "+1",
            " 1",
            "1.0",
            "9223372036854775808",
            "abc",
        ] {
            assert!(!is_redis_int(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn doubles() {
        let mut r = reader(&[3, b'1', b'.', b'5', 254, 255, 253]);
        assert_eq!(r.read_ascii_double().unwrap(), 1.5);
        assert_eq!(r.read_ascii_double().unwrap(), f64::INFINITY);
        assert_eq!(r.read_ascii_double().unwrap(), f64::NEG_INFINITY);
        assert!(r.read_ascii_double().unwrap().is_nan());
    }
}
