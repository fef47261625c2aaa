//! LZF decompression, for RDB strings saved with `rdbcompression yes`.

/// Largest expansion LZF can produce per input byte (a 3-byte back-reference yields up to 264 bytes).
pub(crate) const MAX_RATIO: u64 = 90;

/// Decompresses `input` into exactly `out_len` bytes; errors describe what is wrong.
pub(crate) fn decompress(input: &[u8], out_len: usize) -> Result<Vec<u8>, String> {
    let mut out: Vec<u8> = Vec::with_capacity(out_len);
    decompress_into(input, out_len, &mut out)?;
    Ok(out)
}

/// Bytes past the declared length that copies may write: short copies are done as whole
/// 16- or 32-byte pieces (no call to `memcpy` each), the bytes past a piece's end written
/// again by what follows (or left past the end).
const SLACK: usize = 32;

/// [`decompress`] into `out` (cleared first), so a buffer can be reused from string to string.
/// Every token is checked against the input, the output and the bytes produced before any
/// byte of it is copied; the copies themselves then go through raw pointers.
pub(crate) fn decompress_into(input: &[u8], out_len: usize, out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    out.reserve(out_len.saturating_add(SLACK));
    let dst = out.as_mut_ptr();
    let src = input.as_ptr();
    let (mut i, mut op) = (0usize, 0usize);
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < 32 {
            // Literal run of ctrl + 1 bytes.
            let n = ctrl + 1;
            if i + n > input.len() {
                return Err(format!("LZF literal run at input byte {} overruns the input", i - 1));
            }
            if op + n > out_len {
                return Err("LZF output exceeds the declared length".into());
            }
            // SAFETY: i + n <= input.len() and op + n <= out_len (checked above); the whole
            // 32-byte piece is read only when the input has it, and written within the slack.
            unsafe {
                if i + 32 <= input.len() {
                    dst.add(op).cast::<[u8; 32]>().write_unaligned(src.add(i).cast::<[u8; 32]>().read_unaligned());
                } else {
                    copy_tail(src.add(i), dst.add(op), n);
                }
            }
            op += n;
            i += n;
        } else {
            // Back-reference: length in the top 3 bits (7 = extended), distance in 13 bits.
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *input.get(i).ok_or("LZF back-reference length byte missing")? as usize;
                i += 1;
            }
            let low = *input.get(i).ok_or("LZF back-reference distance byte missing")? as usize;
            i += 1;
            let dist = ((ctrl & 0x1f) << 8) + low + 1;
            if dist > op {
                return Err(format!("LZF back-reference points {dist} bytes back but only {op} were produced"));
            }
            let n = len + 2;
            if op + n > out_len {
                return Err("LZF output exceeds the declared length".into());
            }
            // SAFETY: dist <= op and op + n <= out_len (checked above). Each piece reads bytes
            // already produced (at least `piece` bytes before the ones it writes) and writes
            // at most a piece past op + n, within the slack.
            unsafe {
                let (from, to) = (dst.add(op - dist), dst.add(op));
                if dist >= 16 && n <= 16 {
                    // Most references: two 8-byte words, each more often found whole in
                    // one earlier store than a 16-byte piece (which then waits for them).
                    let (a, b) = (from.cast::<u64>().read_unaligned(), from.add(8).cast::<u64>().read_unaligned());
                    to.cast::<u64>().write_unaligned(a);
                    to.add(8).cast::<u64>().write_unaligned(b);
                } else if dist >= 16 {
                    for k in (0..n).step_by(16) {
                        std::ptr::copy_nonoverlapping(from.add(k), to.add(k), 16);
                    }
                } else if dist >= 8 {
                    for k in (0..n).step_by(8) {
                        std::ptr::copy_nonoverlapping(from.add(k), to.add(k), 8);
                    }
                } else {
                    // Overlapping: each byte copied may be one this reference just wrote.
                    for k in 0..n {
                        *to.add(k) = *from.add(k);
                    }
                }
            }
            op += n;
        }
    }
    if op != out_len {
        return Err(format!("LZF data decompressed to {op} bytes, expected {out_len}"));
    }
    // SAFETY: every byte of 0..out_len was written: the tokens covered it without a gap.
    unsafe { out.set_len(out_len) };
    Ok(())
}

/// The literal run at the end of the input, copied on its own: merged with the 32-byte copy
/// above, the compiler made every literal run a call to `memcpy` of a chosen length.
///
/// # Safety
/// `n` bytes must be readable at `src` and writable at `dst`, the two not overlapping.
#[cold]
#[inline(never)]
unsafe fn copy_tail(src: *const u8, dst: *mut u8, n: usize) {
    // SAFETY: as the caller promises.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, n) }
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

    /// Literal runs and back-references of every length and distance (the piecewise copies
    /// near the end of the output and of the input too) give what a byte-by-byte copy gives.
    #[test]
    fn long_outputs_match_a_bytewise_copy() {
        let mut input = Vec::new();
        let mut want: Vec<u8> = Vec::new();
        let mut x = 7u32;
        for round in 0..2000usize {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let n = (x >> 16) as usize % 32 + 1;
            input.push((n - 1) as u8);
            for k in 0..n {
                let b = (x >> (k % 24)) as u8;
                input.push(b);
                want.push(b);
            }
            let len = (round * 7) % 262 + 3;
            let dist = ((round * 13) % want.len().min(8192)).max(1);
            let l = len - 2;
            let ctrl = (if l >= 7 { 7 << 5 } else { l << 5 }) | ((dist - 1) >> 8);
            input.push(ctrl as u8);
            if l >= 7 {
                input.push((l - 7) as u8);
            }
            input.push(((dist - 1) & 0xff) as u8);
            for _ in 0..len {
                want.push(want[want.len() - dist]);
            }
        }
        assert_eq!(decompress(&input, want.len()).unwrap(), want);
        assert!(decompress(&input, want.len() + 1).is_err());
        assert!(decompress(&input, want.len() - 1).is_err());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(decompress(&[5, b'a'], 6).is_err()); // literal overruns input
        assert!(decompress(&[0, b'a', 0b0010_0000, 9], 4).is_err()); // distance too far
        assert!(decompress(&[0, b'a'], 2).is_err()); // wrong length
        assert!(decompress(&[2, b'a', b'b', b'c'], 2).is_err()); // longer than declared
    }
}
