//! CRC-64/Jones as used by Redis for RDB files and DUMP payloads (reflected, poly 0xad93d23594c935a9, init 0, no xorout).
//!
//! Long inputs are folded with carry-less multiplication (PCLMULQDQ, or AVX-512 VPCLMULQDQ)
//! when the CPU has it, which is an order of magnitude faster than tables; short inputs, other
//! CPUs and the last few bytes use slicing-by-16 tables.

/// The polynomial in its normal (MSB-first) form as Redis documents it.
const POLY: u64 = 0xad93_d235_94c9_35a9;

/// Slicing-by-16 lookup tables for the reflected algorithm, built at compile time.
static TABLES: [[u64; 256]; 16] = build_tables();

const fn build_tables() -> [[u64; 256]; 16] {
    let rpoly = POLY.reverse_bits();
    let mut t = [[0u64; 256]; 16];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u64;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { (c >> 1) ^ rpoly } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1;
    while s < 16 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = t[0][(prev & 0xff) as usize] ^ (prev >> 8);
            i += 1;
        }
        s += 1;
    }
    t
}

/// Continues a Redis CRC64 over `data`, starting from `crc` (use 0 for a fresh checksum).
pub fn crc64(crc: u64, data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if data.len() >= clmul::MIN_LEN {
            if clmul::wide_available() {
                // SAFETY: the CPU supports what the wide folding needs (checked at run time just above).
                return unsafe { clmul::crc64_wide(crc, data) };
            }
            if clmul::available() {
                // SAFETY: the CPU supports PCLMULQDQ and SSE4.1 (checked at run time just above).
                return unsafe { clmul::crc64(crc, data) };
            }
        }
    }
    crc64_tables(crc, data)
}

/// Table-driven CRC64 (slicing-by-16): the portable path and the reference for the fast one.
fn crc64_tables(mut crc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(16);
    for chunk in &mut chunks {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        lo.copy_from_slice(&chunk[..8]);
        hi.copy_from_slice(&chunk[8..]);
        let x = crc ^ u64::from_le_bytes(lo);
        let y = u64::from_le_bytes(hi);
        crc = TABLES[15][(x & 0xff) as usize]
            ^ TABLES[14][((x >> 8) & 0xff) as usize]
            ^ TABLES[13][((x >> 16) & 0xff) as usize]
            ^ TABLES[12][((x >> 24) & 0xff) as usize]
            ^ TABLES[11][((x >> 32) & 0xff) as usize]
            ^ TABLES[10][((x >> 40) & 0xff) as usize]
            ^ TABLES[9][((x >> 48) & 0xff) as usize]
            ^ TABLES[8][(x >> 56) as usize]
            ^ TABLES[7][(y & 0xff) as usize]
            ^ TABLES[6][((y >> 8) & 0xff) as usize]
            ^ TABLES[5][((y >> 16) & 0xff) as usize]
            ^ TABLES[4][((y >> 24) & 0xff) as usize]
            ^ TABLES[3][((y >> 32) & 0xff) as usize]
            ^ TABLES[2][((y >> 40) & 0xff) as usize]
            ^ TABLES[1][((y >> 48) & 0xff) as usize]
            ^ TABLES[0][(y >> 56) as usize];
    }
    for &b in chunks.remainder() {
        crc = TABLES[0][((crc ^ b as u64) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// x^n mod P as a 64-bit bit-reflected value (bit i is the coefficient of x^(63-i)).
const fn xpow_mod(n: u32) -> u64 {
    let mut r: u64 = 1;
    let mut i = 0;
    while i < n {
        let carry = r >> 63;
        r <<= 1;
        if carry == 1 {
            r ^= POLY;
        }
        i += 1;
    }
    r.reverse_bits()
}

/// Folding constants for moving a 128-bit block forward by `bits`: its first (low) 64-bit half
/// needs x^(bits+64), its second half x^bits, each one less because a reflected carry-less
/// product comes out multiplied by x.
const fn fold_keys(bits: u32) -> (u64, u64) {
    (xpow_mod(bits + 63), xpow_mod(bits - 1))
}

#[cfg(target_arch = "x86_64")]
mod clmul {
    use std::arch::x86_64::*;

    /// Shortest input the folding takes (one 16-byte block per lane); it beats the tables from there.
    pub(super) const MIN_LEN: usize = 128;

    const LANES: usize = 8;
    const K_8: (u64, u64) = super::fold_keys(128 * LANES as u32);
    const K_1: (u64, u64) = super::fold_keys(128);
    const K_2: (u64, u64) = super::fold_keys(256);
    const K_3: (u64, u64) = super::fold_keys(384);
    const K_4: (u64, u64) = super::fold_keys(512);
    const K_5: (u64, u64) = super::fold_keys(640);
    const K_6: (u64, u64) = super::fold_keys(768);
    const K_7: (u64, u64) = super::fold_keys(896);

    /// True when the CPU can run [`crc64`] (the detection is cached by std).
    pub(super) fn available() -> bool {
        is_x86_feature_detected!("pclmulqdq") && is_x86_feature_detected!("sse4.1")
    }

    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2,sse4.1")]
    unsafe fn keys(k: (u64, u64)) -> __m128i {
        _mm_set_epi64x(k.1 as i64, k.0 as i64)
    }

    /// `block` moved forward by the distance `k` was built for.
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2,sse4.1")]
    unsafe fn fold(block: __m128i, k: __m128i) -> __m128i {
        _mm_xor_si128(_mm_clmulepi64_si128(block, k, 0x00), _mm_clmulepi64_si128(block, k, 0x11))
    }

    /// Folds 128-byte strides into 8 lanes, the lanes into one block, and hands that block and
    /// the tail to the tables: the folded block is congruent to everything before it, so its
    /// CRC (from 0) is the CRC of that prefix.
    ///
    /// # Safety
    /// The CPU must support PCLMULQDQ and SSE4.1, and `data` must hold at least 128 bytes.
    #[target_feature(enable = "pclmulqdq,sse2,sse4.1")]
    pub(super) unsafe fn crc64(crc: u64, data: &[u8]) -> u64 {
        debug_assert!(data.len() >= 128);
        let stride = 16 * LANES;
        let load = |i: usize| -> __m128i {
            // SAFETY: callers pass i + 16 <= data.len(); unaligned loads are allowed.
            unsafe { _mm_loadu_si128(data.as_ptr().add(i) as *const __m128i) }
        };
        let mut lanes = [_mm_setzero_si128(); LANES];
        for (j, lane) in lanes.iter_mut().enumerate() {
            *lane = load(16 * j);
        }
        // The running CRC enters as if xored into the first 8 bytes of the data.
        lanes[0] = _mm_xor_si128(lanes[0], _mm_set_epi64x(0, crc as i64));
        let k8 = keys(K_8);
        let mut pos = stride;
        while pos + stride <= data.len() {
            for (j, lane) in lanes.iter_mut().enumerate() {
                *lane = _mm_xor_si128(fold(*lane, k8), load(pos + 16 * j));
            }
            pos += stride;
        }
        finish(lanes, data, pos)
    }

    /// True when the CPU can fold 64 bytes per instruction (AVX-512 VPCLMULQDQ).
    pub(super) fn wide_available() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("vpclmulqdq") && available()
    }

    /// [`crc64`] with its 8 lanes held in two 512-bit registers: a quarter of the instructions.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, VPCLMULQDQ, PCLMULQDQ and SSE4.1, and `data` must hold at
    /// least 128 bytes.
    #[target_feature(enable = "avx512f,vpclmulqdq,pclmulqdq,sse2,sse4.1")]
    pub(super) unsafe fn crc64_wide(crc: u64, data: &[u8]) -> u64 {
        debug_assert!(data.len() >= 128);
        let load = |i: usize| -> __m512i {
            // SAFETY: callers pass i + 64 <= data.len(); unaligned loads are allowed.
            unsafe { _mm512_loadu_si512(data.as_ptr().add(i) as *const _) }
        };
        // The running CRC enters as if xored into the first 8 bytes of the data.
        let mut a = _mm512_xor_si512(load(0), _mm512_zextsi128_si512(_mm_set_epi64x(0, crc as i64)));
        let mut b = load(64);
        let k8 = _mm512_broadcast_i32x4(keys(K_8));
        let mut pos = 128;
        while pos + 128 <= data.len() {
            let (fa0, fa1) = (_mm512_clmulepi64_epi128::<0x00>(a, k8), _mm512_clmulepi64_epi128::<0x11>(a, k8));
            let (fb0, fb1) = (_mm512_clmulepi64_epi128::<0x00>(b, k8), _mm512_clmulepi64_epi128::<0x11>(b, k8));
            a = _mm512_ternarylogic_epi64::<0x96>(fa0, fa1, load(pos));
            b = _mm512_ternarylogic_epi64::<0x96>(fb0, fb1, load(pos + 64));
            pos += 128;
        }
        let lanes = [
            _mm512_extracti32x4_epi32::<0>(a),
            _mm512_extracti32x4_epi32::<1>(a),
            _mm512_extracti32x4_epi32::<2>(a),
            _mm512_extracti32x4_epi32::<3>(a),
            _mm512_extracti32x4_epi32::<0>(b),
            _mm512_extracti32x4_epi32::<1>(b),
            _mm512_extracti32x4_epi32::<2>(b),
            _mm512_extracti32x4_epi32::<3>(b),
        ];
        finish(lanes, data, pos)
    }

    /// Folds the 8 lanes (the last `pos` bytes' worth of strides) into one block, then the
    /// remaining 16-byte blocks, and hands that block and the tail to the tables.
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2,sse4.1")]
    unsafe fn finish(lanes: [__m128i; LANES], data: &[u8], mut pos: usize) -> u64 {
        let load = |i: usize| -> __m128i {
            // SAFETY: callers pass i + 16 <= data.len(); unaligned loads are allowed.
            unsafe { _mm_loadu_si128(data.as_ptr().add(i) as *const __m128i) }
        };
        let mut acc = lanes[LANES - 1];
        for (j, k) in [K_7, K_6, K_5, K_4, K_3, K_2, K_1].into_iter().enumerate() {
            acc = _mm_xor_si128(acc, fold(lanes[j], keys(k)));
        }
        let k1 = keys(K_1);
        while pos + 16 <= data.len() {
            acc = _mm_xor_si128(fold(acc, k1), load(pos));
            pos += 16;
        }
        let mut block = [0u8; 16];
        _mm_storeu_si128(block.as_mut_ptr() as *mut __m128i, acc);
        super::crc64_tables(super::crc64_tables(0, &block), &data[pos..])
    }
}

#[cfg(test)]
mod tests {
    use super::{crc64, crc64_tables};

    /// Straightforward bit-at-a-time reference implementation.
    fn slow(mut crc: u64, data: &[u8]) -> u64 {
        let rpoly = super::POLY.reverse_bits();
        for &b in data {
            crc ^= b as u64;
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ rpoly } else { crc >> 1 };
            }
        }
        crc
    }

    #[test]
    fn redis_test_vector() {
        assert_eq!(crc64(0, b"123456789"), 0xe9c6d914c4b8d9ca);
        assert_eq!(crc64_tables(0, b"123456789"), 0xe9c6d914c4b8d9ca);
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
        let whole = crc64(0, &data);
        for split in [0, 1, 7, 8, 9, 500, 999, 1000] {
            let (a, b) = data.split_at(split);
            assert_eq!(crc64(crc64(0, a), b), whole, "split at {split}");
        }
        assert_ne!(whole, 0);
    }

    #[test]
    fn bytewise_reference_matches() {
        let data: Vec<u8> = (0..77u8).collect();
        assert_eq!(crc64(0, &data), slow(0, &data));
    }

    /// The fast path (folding or tables, whatever this CPU picks) against the bit-at-a-time
    /// reference on random lengths, alignments and starting values.
    #[test]
    fn fast_equals_reference_on_random_input() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let buf: Vec<u8> = (0..70_000).map(|_| next() as u8).collect();
        let mut lens: Vec<usize> = (0..600).collect();
        lens.extend([1023, 1024, 1025, 4096, 65_535, 65_536]);
        lens.extend((0..200).map(|_| (next() % 69_000) as usize));
        for len in lens {
            let start = (next() % 64) as usize;
            let init = if next() % 2 == 0 { 0 } else { next() };
            let data = &buf[start..start + len];
            let want = slow(init, data);
            assert_eq!(crc64(init, data), want, "len {len} start {start}");
            assert_eq!(crc64_tables(init, data), want, "tables, len {len} start {start}");
        }
    }

    /// Both folding paths themselves (where this CPU has them), whatever the dispatcher picks.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn folding_equals_reference_from_its_minimum() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in (128..600).chain([1000, 4999]) {
            for init in [0, 1, u64::MAX] {
                let want = slow(init, &data[1..1 + len]);
                if super::clmul::available() {
                    // SAFETY: support was checked just above and len >= 128.
                    let got = unsafe { super::clmul::crc64(init, &data[1..1 + len]) };
                    assert_eq!(got, want, "len {len} init {init:#x}");
                }
                if super::clmul::wide_available() {
                    // SAFETY: support was checked just above and len >= 128.
                    let got = unsafe { super::clmul::crc64_wide(init, &data[1..1 + len]) };
                    assert_eq!(got, want, "wide, len {len} init {init:#x}");
                }
            }
        }
    }
}
