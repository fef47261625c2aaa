//! Ziplist decoding (RDB types 10, 12, 13 and quicklist v1 nodes): `zlbytes zltail zllen entries 0xFF`.

use super::blob::{self, Elem};

/// Decodes every entry of a ziplist blob; integers come back as decimal text.
pub(crate) fn parse(buf: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    blob::collect(blob::declared(buf, 8), |f| each(buf, f))
}

/// Hands every entry of a ziplist blob to `f` as it stands in the blob (no copy), in order.
pub(crate) fn each<'a>(buf: &'a [u8], mut f: impl FnMut(Elem<'a>) -> Result<(), String>) -> Result<(), String> {
    let zllen = blob::sized_header(buf, "ziplist", 11, 8)?;
    let mut found = 0usize;
    let mut pos = 10usize;
    let mut prev_len = 0usize;
    loop {
        let first = *buf
            .get(pos)
            .ok_or("ziplist is missing its 0xFF terminator")?;
        if first == 0xff {
            break;
        }
        let start = pos;
        // prevlen: 1 byte, or 0xFE followed by a 4-byte little-endian length.
        let prevlen = if first < 254 {
            pos += 1;
            first as usize
        } else if first == 254 {
            let b = buf
                .get(pos + 1..pos + 5)
                .ok_or("ziplist entry overruns its buffer")?;
            pos += 5;
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
        } else {
            return Err(format!(
                "ziplist entry at {start} has invalid prevlen byte 0xff"
            ));
        };
        if prevlen != prev_len {
            return Err(format!(
                "ziplist entry at {start} has prevlen {prevlen}, previous entry was {prev_len} bytes"
            ));
        }
        let enc = *buf.get(pos).ok_or("ziplist entry overruns its buffer")?;
        let need = |p: usize, n: usize| blob::need(buf, "ziplist", start, p, n);
        let value: Elem<'a> = match enc >> 6 {
            0 => {
                let n = (enc & 0x3f) as usize;
                let v = need(pos + 1, n)?;
                pos += 1 + n;
                Elem::Bytes(v)
            }
            1 => {
                let b = need(pos + 1, 1)?[0];
                let n = (((enc & 0x3f) as usize) << 8) | b as usize;
                let v = need(pos + 2, n)?;
                pos += 2 + n;
                Elem::Bytes(v)
            }
            2 => {
                let b = need(pos + 1, 4)?;
                let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let v = need(pos + 5, n)?;
                pos += 5 + n;
                Elem::Bytes(v)
            }
            _ => {
                let (v, n): (i64, usize) = match enc {
                    0xc0 => {
                        let b = need(pos + 1, 2)?;
                        (i16::from_le_bytes([b[0], b[1]]) as i64, 2)
                    }
                    0xd0 => {
                        let b = need(pos + 1, 4)?;
                        (i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64, 4)
                    }
                    0xe0 => {
                        let b = need(pos + 1, 8)?;
                        let mut a = [0u8; 8];
                        a.copy_from_slice(b);
                        (i64::from_le_bytes(a), 8)
                    }
                    0xf0 => {
                        let b = need(pos + 1, 3)?;
                        // 24-bit signed: place in the top of an i32 and shift back down.
                        (i32::from_le_bytes([0, b[0], b[1], b[2]]) as i64 >> 8, 3)
                    }
                    0xfe => (need(pos + 1, 1)?[0] as i8 as i64, 1),
                    0xf1..=0xfd => ((enc & 0x0f) as i64 - 1, 0),
                    _ => {
                        return Err(format!(
                            "ziplist entry at {start} has invalid encoding {enc:#04x}"
                        ))
                    }
                };
                pos += 1 + n;
                Elem::Int(v)
            }
        };
        prev_len = pos - start;
        found += 1;
        f(value)?;
    }
    blob::check_end(buf, "ziplist", pos, zllen, found)
}

#[cfg(test)]
mod tests {
    use super::parse;

    /// Builds a ziplist from raw entry bytes (each entry given as prevlen-less "encoding+data").
    pub(crate) fn build(entries: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        let mut prev = 0usize;
        for e in entries {
            assert!(prev < 254);
            body.push(prev as u8);
            body.extend_from_slice(e);
            prev = e.len() + 1;
        }
        let total = 10 + body.len() + 1;
        let mut z = Vec::new();
        z.extend_from_slice(&(total as u32).to_le_bytes());
        z.extend_from_slice(&0u32.to_le_bytes()); // zltail (not checked)
        z.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        z.extend_from_slice(&body);
        z.push(0xff);
        z
    }

    #[test]
    fn all_encodings() {
        let z = build(&[
            b"\x03abc",                              // 6-bit string length
            b"\x40\x01x",                            // 14-bit string length (1)
            b"\x80\x00\x00\x00\x02hi",               // 32-bit string length
            b"\xc0\x39\x30",                         // int16 12345
            b"\xd0\xff\xff\xff\xff",                 // int32 -1
            b"\xe0\x00\x00\x00\x00\x01\x00\x00\x00", // int64 2^32
            b"\xf0\xfe\xff\xff",                     // int24 -2
            b"\xfe\x80",                             // int8 -128
            b"\xf1",                                 // immediate 0
            b"\xfd",                                 // immediate 12
        ]);
        let got = parse(&z).unwrap();
        let want: Vec<&[u8]> = vec![
            b"abc",
            b"x",
            b"hi",
            b"12345",
            b"-1",
            b"4294967296",
            b"-2",
            b"-128",
            b"0",
            b"12",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn overrun_is_an_error() {
        let mut z = build(&[b"\x05ab"]); // claims 5 bytes, has 2 (+ terminator)
        let n = z.len() as u32;
        z[0..4].copy_from_slice(&n.to_le_bytes());
        let e = parse(&z).unwrap_err();
        assert!(e.contains("overruns"), "{e}");
        assert!(parse(&[0xff; 3]).is_err());
    }
}
