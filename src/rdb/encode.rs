//! The writer's byte encodings: RDB lengths, strings, doubles and listpacks, the inverse of
//! `string.rs` and `listpack.rs`.

use super::listpack::encode_backlen;
use super::string::is_redis_int;

/// Special string encoding tags (`11xxxxxx` length bytes) for int8/16/32 strings.
const ENC_INT8: u8 = 0xC0;
const ENC_INT16: u8 = 0xC1;
const ENC_INT32: u8 = 0xC2;

/// Appends an RDB length in its shortest form (6-bit, 14-bit, 32-bit or 64-bit big-endian).
pub(crate) fn len(out: &mut Vec<u8>, n: u64) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
    } else if n <= u32::MAX as u64 {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Appends an RDB string; short decimal integers use the int encodings, as Redis writes them.
pub(crate) fn string(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() <= 11 && is_redis_int(s) {
        if let Some(v) = std::str::from_utf8(s).ok().and_then(|t| t.parse::<i64>().ok()) {
            if let Ok(b) = i8::try_from(v) {
                out.extend_from_slice(&[ENC_INT8, b as u8]);
                return;
            }
            if let Ok(h) = i16::try_from(v) {
                out.push(ENC_INT16);
                out.extend_from_slice(&h.to_le_bytes());
                return;
            }
            if let Ok(w) = i32::try_from(v) {
                out.push(ENC_INT32);
                out.extend_from_slice(&w.to_le_bytes());
                return;
            }
        }
    }
    len(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Appends an RDB type 3 (pre-4.0) score: a length byte then text; 253/254/255 for NaN/+inf/-inf.
pub(crate) fn ascii_double(out: &mut Vec<u8>, f: f64) {
    if f.is_nan() {
        out.push(253);
    } else if f == f64::INFINITY {
        out.push(254);
    } else if f == f64::NEG_INFINITY {
        out.push(255);
    } else {
        // `{:e}` is the shortest text that parses back to the same double, and short (< 30 bytes).
        let t = format!("{f:e}");
        out.push(t.len() as u8);
        out.extend_from_slice(t.as_bytes());
    }
}

/// Builds a listpack blob element by element (`total num entries... 0xFF`).
pub(crate) struct ListpackBuilder {
    body: Vec<u8>,
    count: usize,
}

impl ListpackBuilder {
    pub(crate) fn new() -> Self {
        ListpackBuilder { body: Vec::with_capacity(256), count: 0 }
    }

    /// Appends an element, stored as an integer when Redis would (canonical decimal text).
    pub(crate) fn push(&mut self, s: &[u8]) {
        match std::str::from_utf8(s).ok().filter(|_| is_redis_int(s)).and_then(|t| t.parse::<i64>().ok()) {
            Some(v) => self.int(v),
            None => self.bytes(s),
        }
    }

    /// Appends an integer element in the smallest encoding.
    pub(crate) fn int(&mut self, v: i64) {
        let mut e = Vec::with_capacity(9);
        if (0..=127).contains(&v) {
            e.push(v as u8);
        } else if (-4096..=4095).contains(&v) {
            let u = (v as u16) & 0x1fff;
            e.extend_from_slice(&[0xc0 | (u >> 8) as u8, u as u8]);
        } else if let Ok(h) = i16::try_from(v) {
            e.push(0xf1);
            e.extend_from_slice(&h.to_le_bytes());
        } else if (-(1 << 23)..(1 << 23)).contains(&v) {
            e.push(0xf2);
            e.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
        } else if let Ok(w) = i32::try_from(v) {
            e.push(0xf3);
            e.extend_from_slice(&w.to_le_bytes());
        } else {
            e.push(0xf4);
            e.extend_from_slice(&v.to_le_bytes());
        }
        self.entry(&e);
    }

    /// Appends a string element.
    fn bytes(&mut self, s: &[u8]) {
        let mut e = Vec::with_capacity(s.len() + 5);
        let n = s.len();
        if n < 64 {
            e.push(0x80 | n as u8);
        } else if n < 4096 {
            e.extend_from_slice(&[0xe0 | (n >> 8) as u8, n as u8]);
        } else {
            e.push(0xf0);
            e.extend_from_slice(&(n as u32).to_le_bytes());
        }
        e.extend_from_slice(s);
        self.entry(&e);
    }

    fn entry(&mut self, e: &[u8]) {
        self.body.extend_from_slice(e);
        self.body.extend_from_slice(&encode_backlen(e.len()));
        self.count += 1;
    }

    /// The finished blob; the element count saturates at 65535 ("unknown"), as in Redis.
    pub(crate) fn finish(self) -> Vec<u8> {
        let total = 6 + self.body.len() + 1;
        let mut lp = Vec::with_capacity(total);
        lp.extend_from_slice(&(total as u32).to_le_bytes());
        lp.extend_from_slice(&(self.count.min(u16::MAX as usize) as u16).to_le_bytes());
        lp.extend_from_slice(&self.body);
        lp.push(0xff);
        lp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::listpack;
    use crate::rdb::reader::ByteReader;

    #[test]
    fn strings_and_lengths_read_back() {
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"0".to_vec(),
            b"-128".to_vec(),
            b"300".to_vec(),
            b"-70000".to_vec(),
            b"2147483647".to_vec(),
            b"2147483648".to_vec(),
            b"007".to_vec(),
            vec![b'x'; 70],
            vec![b'y'; 20_000],
        ];
        let mut out = Vec::new();
        for c in &cases {
            string(&mut out, c);
        }
        len(&mut out, 1 << 40);
        let mut r = ByteReader::new(&out[..]);
        for c in &cases {
            assert_eq!(&r.read_string().unwrap(), c);
        }
        assert_eq!(r.read_len().unwrap(), 1 << 40);
    }

    #[test]
    fn ascii_doubles_read_back() {
        let vals = [0.0, -0.125, 1e300, 1.0 / 3.0, f64::INFINITY, f64::NEG_INFINITY];
        let mut out = Vec::new();
        for v in vals {
            ascii_double(&mut out, v);
        }
        let mut r = ByteReader::new(&out[..]);
        for v in vals {
            assert_eq!(r.read_ascii_double().unwrap(), v);
        }
    }

    #[test]
    fn listpack_reads_back() {
        let items: Vec<Vec<u8>> = [
            "0", "127", "128", "-1", "-4096", "4095", "4096", "-32768", "40000", "-8388608", "8388608",
            "-2147483648", "9223372036854775807", "-0", "01", "abc", "",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .chain([vec![b'q'; 100], vec![b'r'; 5000]])
        .collect();
        let mut b = ListpackBuilder::new();
        for i in &items {
            b.push(i);
        }
        assert_eq!(listpack::parse(&b.finish()).unwrap(), items);
    }
}
