//! Listpack decoding (hash/zset/set listpacks, quicklist v2 nodes, stream nodes): `total num entries 0xFF`.

use super::blob::{self, Elem};

/// Decodes every element of a listpack blob; integers come back as decimal text.
pub(crate) fn parse(buf: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    blob::collect(blob::declared(buf, 4), |f| each(buf, f))
}

/// Hands every element of a listpack blob to `f` as it stands in the blob (no copy), in order.
pub(crate) fn each<'a>(buf: &'a [u8], mut f: impl FnMut(Elem<'a>) -> Result<(), String>) -> Result<(), String> {
    let num = blob::sized_header(buf, "listpack", 7, 4)?;
    let (mut pos, mut found) = (6usize, 0usize);
    loop {
        let enc = *buf
            .get(pos)
            .ok_or("listpack is missing its 0xFF terminator")?;
        if enc == 0xff {
            break;
        }
        let start = pos;
        let need = |p: usize, n: usize| blob::need(buf, "listpack", start, p, n);
        let (value, size): (Elem<'a>, usize) = if enc & 0x80 == 0 {
            (Elem::Int(enc as i64), 1)
        } else if enc & 0xc0 == 0x80 {
            let n = (enc & 0x3f) as usize;
            (Elem::Bytes(need(pos + 1, n)?), 1 + n)
        } else if enc & 0xe0 == 0xc0 {
            let b = need(pos + 1, 1)?[0];
            let raw = (((enc & 0x1f) as i64) << 8) | b as i64;
            let v = if raw >= 1 << 12 { raw - (1 << 13) } else { raw };
            (Elem::Int(v), 2)
        } else if enc & 0xf0 == 0xe0 {
            let b = need(pos + 1, 1)?[0];
            let n = (((enc & 0x0f) as usize) << 8) | b as usize;
            (Elem::Bytes(need(pos + 2, n)?), 2 + n)
        } else {
            match enc {
                0xf0 => {
                    let b = need(pos + 1, 4)?;
                    let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
                    (Elem::Bytes(need(pos + 5, n)?), 5 + n)
                }
                0xf1 => {
                    let b = need(pos + 1, 2)?;
                    (Elem::Int(i16::from_le_bytes([b[0], b[1]]) as i64), 3)
                }
                0xf2 => {
                    let b = need(pos + 1, 3)?;
                    (Elem::Int((i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as i64), 4)
                }
                0xf3 => {
                    let b = need(pos + 1, 4)?;
                    (Elem::Int(i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64), 5)
                }
                0xf4 => {
                    let b = need(pos + 1, 8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    (Elem::Int(i64::from_le_bytes(a)), 9)
                }
                _ => {
                    return Err(format!(
                        "listpack entry at {start} has invalid encoding {enc:#04x}"
                    ))
                }
            }
        };
        pos += size;
        // backlen: the entry size in 7-bit groups, most significant group first, stored reversed.
        let bl = backlen_size(size);
        let back = need(pos, bl)?;
        if decode_backlen(back) != Some(size) {
            return Err(format!("listpack entry at {start} has a wrong back-length"));
        }
        pos += bl;
        found += 1;
        f(value)?;
    }
    blob::check_end(buf, "listpack", pos, num, found)
}

/// Number of bytes Redis uses to store the back-length of an entry of `size` bytes.
pub(crate) fn backlen_size(size: usize) -> usize {
    match size {
        0..=127 => 1,
        128..=16_382 => 2,
        16_383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    }
}

/// Decodes a back-length as stored left-to-right in the file.
fn decode_backlen(bytes: &[u8]) -> Option<usize> {
    // Bytes are read from the last one backwards; every byte but the first-read has bit 7 set.
    let mut v = 0usize;
    let mut shift = 0;
    for (i, &b) in bytes.iter().rev().enumerate() {
        let more = b & 0x80 != 0;
        if more != (i + 1 < bytes.len()) {
            return None;
        }
        v |= ((b & 0x7f) as usize) << shift;
        shift += 7;
    }
    Some(v)
}

/// Encodes a back-length (used by the writer, tests and fixture builders).
pub(crate) fn encode_backlen(size: usize) -> Vec<u8> {
    let n = backlen_size(size);
    let mut v: Vec<u8> = (0..n).map(|i| ((size >> (7 * i)) & 0x7f) as u8).collect();
    for b in v.iter_mut().take(n - 1) {
        *b |= 0x80;
    }
    v.reverse();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a listpack from "encoding+data" entries, appending correct back-lengths.
    pub(crate) fn build(entries: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        for e in entries {
            body.extend_from_slice(e);
            body.extend_from_slice(&encode_backlen(e.len()));
        }
        let total = 6 + body.len() + 1;
        let mut lp = Vec::new();
        lp.extend_from_slice(&(total as u32).to_le_bytes());
        lp.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        lp.extend_from_slice(&body);
        lp.push(0xff);
        lp
    }

    #[test]
    fn all_encodings() {
        let long = [b'z'; 200];
        let mut e12 = vec![0xe0, 200];
        e12.extend_from_slice(&long);
        let lp = build(&[
            b"\x05",                                 // 7-bit uint 5
            b"\x83abc",                              // 6-bit string
            b"\xdf\xff",                             // 13-bit int -1
            &e12,                                    // 12-bit string (200 bytes, 2-byte backlen)
            b"\xf1\x00\x80",                         // int16 -32768
            b"\xf2\x00\x00\x80",                     // int24 -8388608
            b"\xf3\x01\x00\x00\x00",                 // int32 1
            b"\xf4\xff\xff\xff\xff\xff\xff\xff\x7f", // int64 max
            b"\xf0\x01\x00\x00\x00q",                // 32-bit string "q"
        ]);
        let got = parse(&lp).unwrap();
        assert_eq!(got[0], b"5");
        assert_eq!(got[1], b"abc");
        assert_eq!(got[2], b"-1");
        assert_eq!(got[3], long.to_vec());
        assert_eq!(got[4], b"-32768");
        assert_eq!(got[5], b"-8388608");
        assert_eq!(got[6], b"1");
        assert_eq!(got[7], b"9223372036854775807");
        assert_eq!(got[8], b"q");
    }

    #[test]
    fn backlen_roundtrip() {
        for s in [1usize, 127, 128, 16_382, 16_383, 2_097_151, 300_000_000] {
            assert_eq!(decode_backlen(&encode_backlen(s)), Some(s), "{s}");
        }
    }

    #[test]
    fn corrupt_inputs() {
        let mut lp = build(&[b"\x83abc"]);
        lp[6] = 0x89; // string of 9 bytes: overruns
        assert!(parse(&lp).unwrap_err().contains("overruns") || parse(&lp).is_err());
        let mut lp = build(&[b"\x05"]);
        lp[7] = 9; // wrong backlen
        assert!(parse(&lp).unwrap_err().contains("back-length"));
    }
}
