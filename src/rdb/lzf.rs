//! LZF decompression, for RDB strings saved with `rdbcompression yes`.

/// Largest expansion LZF can produce per input byte (a 3-byte back-reference yields up to 264 bytes).
pub(crate) const MAX_RATIO: u64 = 90;

/// Decompresses `input` into exactly `out_len` bytes; errors describe what is wrong.
pub(crate) fn decompress(input: &[u8], out_len: usize) -> Result<Vec<u8>, String> {
    let mut out: Vec<u8> = Vec::with_capacity(out_len);
    decompress_into(input, out_len, &mut out)?;
    Ok(out)
}

/// [`decompress`] into `out` (cleared first), so a buffer can be reused from string to string.
pub(crate) fn decompress_into(input: &[u8], out_len: usize, out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    out.reserve(out_len);
    let mut i = 0usize;
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < 32 {
            // Literal run of ctrl + 1 bytes.
            let n = ctrl + 1;
            let lit = input.get(i..i + n).ok_or_else(|| {
                format!("LZF literal run at input byte {} overruns the input", i - 1)
            })?;
            if out.len() + n > out_len {
                return Err("LZF output exceeds the declared length".into());
            }
            out.extend_from_slice(lit);
            i += n;
        } else {
            // Back-reference: length in the top 3 bits (7 = extended), distance in 13 bits.
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *input
                    .get(i)
                    .ok_or("LZF back-reference length byte missing")?
                    as usize;
                i += 1;
            }
            let low = *input
                .get(i)
                .ok_or("LZF back-reference distance byte missing")? as usize;
            i += 1;
            let dist = ((ctrl & 0x1f) << 8) + low + 1;
            if dist > out.len() {
                return Err(format!(
                    "LZF back-reference points {dist} bytes back but only {} were produced",
                    out.len()
                ));
            }
            let n = len + 2;
            if out.len() + n > out_len {
                return Err("LZF output exceeds the declared length".into());
            }
            let start = out.len() - dist;
            if dist >= n {
                out.extend_from_within(start..start + n);
            } else {
                // Overlapping: each byte copied may be one this reference just wrote.
                for k in 0..n {
                    let b = out[start + k];
                    out.push(b);
                }
            }
        }
    }
    if out.len() != out_len {
        return Err(format!(
            "LZF data decompressed to {} bytes, expected {out_len}",
            out.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::decompress;

    #[test]
    fn literal_and_backref() {
        // "abc" literal (ctrl 2 = 3 bytes), then back-reference len 7+2=9?  Use ctrl=0b111_00000
        // with extra length byte 1 => len 8, +2 = 10 bytes copied from distance 3 ("abc" repeated).
        let input = [2, b'a', b'b', b'c', 0b1110_0000, 1, 2];
        let out = decompress(&input, 13).unwrap();
        assert_eq!(out, b"abcabcabcabca");
        // Short back-reference: ctrl 0b001_00000 => len 1 + 2 = 3 bytes, distance 0*256+2+1 = 3.
        let input = [2, b'x', b'y', b'z', 0b0010_0000, 2];
        assert_eq!(decompress(&input, 6).unwrap(), b"xyzxyz");
    }

    #[test]
    fn rejects_bad_input() {
        assert!(decompress(&[5, b'a'], 6).is_err()); // literal overruns input
        assert!(decompress(&[0, b'a', 0b0010_0000, 9], 4).is_err()); // distance too far
        assert!(decompress(&[0, b'a'], 2).is_err()); // wrong length
        assert!(decompress(&[2, b'a', b'b', b'c'], 2).is_err()); // longer than declared
    }
}
