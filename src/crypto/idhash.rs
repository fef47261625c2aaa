//! Keyed BLAKE3 of many small inputs at once.
//!
//! A 1 KiB chunk is a single BLAKE3 chunk, which the `blake3` crate compresses
//! one 64-byte block after another: no SIMD lanes to fill. Here the BLAKE3
//! chunks of a batch of inputs are compressed side by side, eight at a time, in
//! plain Rust that the compiler turns into vector instructions; the few parent
//! nodes of inputs longer than 1 KiB are then merged one by one. The result is
//! exactly `blake3::keyed_hash` of each input (tested against the crate).

const IV: [u32; 8] = [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19];
const SCHEDULE: [[usize; 16]; 7] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8],
    [3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1],
    [10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6],
    [12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4],
    [9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7],
    [11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13],
];
const CHUNK_START: u32 = 1;
const CHUNK_END: u32 = 2;
const PARENT: u32 = 4;
const ROOT: u32 = 8;
const KEYED_HASH: u32 = 16;
const CHUNK_LEN: usize = 1024;
const LANES: usize = 8;

type Lanes = [u32; LANES];

#[inline(always)]
fn add(a: &Lanes, b: &Lanes) -> Lanes {
    std::array::from_fn(|i| a[i].wrapping_add(b[i]))
}

#[inline(always)]
fn xor_rot(a: &Lanes, b: &Lanes, r: u32) -> Lanes {
    std::array::from_fn(|i| (a[i] ^ b[i]).rotate_right(r))
}

#[inline(always)]
fn g(s: &mut [Lanes; 16], a: usize, b: usize, c: usize, d: usize, mx: &Lanes, my: &Lanes) {
    s[a] = add(&add(&s[a], &s[b]), mx);
    s[d] = xor_rot(&s[d], &s[a], 16);
    s[c] = add(&s[c], &s[d]);
    s[b] = xor_rot(&s[b], &s[c], 12);
    s[a] = add(&add(&s[a], &s[b]), my);
    s[d] = xor_rot(&s[d], &s[a], 8);
    s[c] = add(&s[c], &s[d]);
    s[b] = xor_rot(&s[b], &s[c], 7);
}

/// One compression of eight blocks in parallel; returns the new chaining values.
#[inline(always)]
fn compress8(cv: &[Lanes; 8], m: &[Lanes; 16], counter: &[u64; LANES], block_len: &Lanes, flags: &Lanes) -> [Lanes; 8] {
    let mut s: [Lanes; 16] = [
        cv[0],
        cv[1],
        cv[2],
        cv[3],
        cv[4],
        cv[5],
        cv[6],
        cv[7],
        [IV[0]; LANES],
        [IV[1]; LANES],
        [IV[2]; LANES],
        [IV[3]; LANES],
        std::array::from_fn(|i| counter[i] as u32),
        std::array::from_fn(|i| (counter[i] >> 32) as u32),
        *block_len,
        *flags,
    ];
    for r in &SCHEDULE {
        g(&mut s, 0, 4, 8, 12, &m[r[0]], &m[r[1]]);
        g(&mut s, 1, 5, 9, 13, &m[r[2]], &m[r[3]]);
        g(&mut s, 2, 6, 10, 14, &m[r[4]], &m[r[5]]);
        g(&mut s, 3, 7, 11, 15, &m[r[6]], &m[r[7]]);
        g(&mut s, 0, 5, 10, 15, &m[r[8]], &m[r[9]]);
        g(&mut s, 1, 6, 11, 12, &m[r[10]], &m[r[11]]);
        g(&mut s, 2, 7, 8, 13, &m[r[12]], &m[r[13]]);
        g(&mut s, 3, 4, 9, 14, &m[r[14]], &m[r[15]]);
    }
    std::array::from_fn(|w| std::array::from_fn(|i| s[w][i] ^ s[w + 8][i]))
}

/// One BLAKE3 chunk to compress: its bytes, its index in its input, and
/// whether it is the whole input (then it is the root).
#[derive(Clone, Copy)]
struct Piece<'a> {
    data: &'a [u8],
    counter: u64,
    root: bool,
}

/// Chaining values (or root outputs) of every piece, into `out`.
#[inline(always)]
fn pieces_inline(key: &[u32; 8], pieces: &[Piece<'_>], out: &mut [[u32; 8]]) {
    pieces_with(key, pieces, out, compress8, transpose)
}

/// Message words of eight full 64-byte blocks, word-major.
#[inline(always)]
fn transpose(blocks: &[&[u8]; LANES]) -> [Lanes; 16] {
    std::array::from_fn(|w| std::array::from_fn(|l| u32::from_le_bytes([blocks[l][4 * w], blocks[l][4 * w + 1], blocks[l][4 * w + 2], blocks[l][4 * w + 3]])))
}

/// Compresses the pieces eight lanes at a time. A lane that finishes its piece
/// takes the next one at once, so pieces of different lengths keep every lane
/// busy (grouping them eight by eight left lanes idle while the longest ran on).
#[inline(always)]
fn pieces_with(
    key: &[u32; 8],
    pieces: &[Piece<'_>],
    out: &mut [[u32; 8]],
    compress: impl Fn(&[Lanes; 8], &[Lanes; 16], &[u64; LANES], &Lanes, &Lanes) -> [Lanes; 8],
    transpose: impl Fn(&[&[u8]; LANES]) -> [Lanes; 16],
) {
    const IDLE: usize = usize::MAX;
    let mut cv: [Lanes; 8] = std::array::from_fn(|w| [key[w]; LANES]);
    // Per lane: which piece, which block of it, how many blocks it has.
    let mut piece = [IDLE; LANES];
    let mut block = [0usize; LANES];
    let mut blocks = [0usize; LANES];
    let mut counter = [0u64; LANES];
    let mut next = 0;
    let mut busy = 0;
    let mut take = |l: usize, cv: &mut [Lanes; 8], piece: &mut [usize; LANES], blocks: &mut [usize; LANES], counter: &mut [u64; LANES]| {
        if next < pieces.len() {
            piece[l] = next;
            blocks[l] = pieces[next].data.len().div_ceil(64).max(1);
            counter[l] = pieces[next].counter;
            for w in 0..8 {
                cv[w][l] = key[w];
            }
            next += 1;
            true
        } else {
            piece[l] = IDLE;
            false
        }
    };
    for l in 0..LANES {
        busy += take(l, &mut cv, &mut piece, &mut blocks, &mut counter) as usize;
    }
    let zero = [0u8; 64];
    let mut pad = [[0u8; 64]; LANES];
    while busy > 0 {
        let mut block_len = [0u32; LANES];
        let mut flags = [0u32; LANES];
        // A last block shorter than 64 bytes is compressed zero-padded.
        for l in 0..LANES {
            if piece[l] == IDLE {
                continue;
            }
            let p = &pieces[piece[l]];
            let start = block[l] * 64;
            let bytes = &p.data[start..(start + 64).min(p.data.len())];
            if bytes.len() < 64 {
                pad[l] = [0u8; 64];
                pad[l][..bytes.len()].copy_from_slice(bytes);
            }
            block_len[l] = bytes.len() as u32;
            let mut f = KEYED_HASH;
            if block[l] == 0 {
                f |= CHUNK_START;
            }
            if block[l] + 1 == blocks[l] {
                f |= CHUNK_END;
                if p.root {
                    f |= ROOT;
                }
            }
            flags[l] = f;
        }
        let m = {
            let refs: [&[u8]; LANES] = std::array::from_fn(|l| {
                if piece[l] == IDLE {
                    &zero[..]
                } else if block_len[l] < 64 {
                    &pad[l][..]
                } else {
                    let start = block[l] * 64;
                    &pieces[piece[l]].data[start..start + 64]
                }
            });
            transpose(&refs)
        };
        cv = compress(&cv, &m, &counter, &block_len, &flags);
        for l in 0..LANES {
            if piece[l] == IDLE {
                continue;
            }
            block[l] += 1;
            if block[l] == blocks[l] {
                out[piece[l]] = std::array::from_fn(|w| cv[w][l]);
                block[l] = 0;
                if !take(l, &mut cv, &mut piece, &mut blocks, &mut counter) {
                    busy -= 1;
                }
            }
        }
    }
}

fn pieces_portable(key: &[u32; 8], pieces: &[Piece<'_>], out: &mut [[u32; 8]]) {
    pieces_inline(key, pieces, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn pieces_avx2(key: &[u32; 8], pieces: &[Piece<'_>], out: &mut [[u32; 8]]) {
    // SAFETY: this function only runs where AVX2 was detected.
    pieces_with(key, pieces, out, |cv, m, c, bl, f| unsafe { avx2::compress8(cv, m, c, bl, f) }, |b| unsafe { avx2::transpose(b) })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512vl")]
fn pieces_avx512(key: &[u32; 8], pieces: &[Piece<'_>], out: &mut [[u32; 8]]) {
    // SAFETY: this function only runs where AVX2 and AVX-512VL were detected.
    pieces_with(key, pieces, out, |cv, m, c, bl, f| unsafe { avx512::compress8(cv, m, c, bl, f) }, |b| unsafe { avx512::transpose(b) })
}

/// `compress8` and `transpose` with explicit 256-bit vectors (one register per
/// state word), compiled for `$features`, with the rotations by 12 and 7 given.
macro_rules! x86_lanes {
    ($module:ident, $features:literal, $rot12:item, $rot7:item) => {
        #[cfg(target_arch = "x86_64")]
        mod $module {
        use std::arch::x86_64::*;

        use super::{Lanes, IV, LANES, SCHEDULE};

        #[inline(always)]
        unsafe fn rot16(x: __m256i) -> __m256i {
            _mm256_shuffle_epi8(x, _mm256_set_epi8(13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2, 13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2))
        }
        #[inline(always)]
        unsafe fn rot8(x: __m256i) -> __m256i {
            _mm256_shuffle_epi8(x, _mm256_set_epi8(12, 15, 14, 13, 8, 11, 10, 9, 4, 7, 6, 5, 0, 3, 2, 1, 12, 15, 14, 13, 8, 11, 10, 9, 4, 7, 6, 5, 0, 3, 2, 1))
        }
        $rot12
        $rot7
        #[inline(always)]
        unsafe fn g(s: &mut [__m256i; 16], a: usize, b: usize, c: usize, d: usize, mx: __m256i, my: __m256i) {
            s[a] = _mm256_add_epi32(_mm256_add_epi32(s[a], s[b]), mx);
            s[d] = rot16(_mm256_xor_si256(s[d], s[a]));
            s[c] = _mm256_add_epi32(s[c], s[d]);
            s[b] = rot12(_mm256_xor_si256(s[b], s[c]));
            s[a] = _mm256_add_epi32(_mm256_add_epi32(s[a], s[b]), my);
            s[d] = rot8(_mm256_xor_si256(s[d], s[a]));
            s[c] = _mm256_add_epi32(s[c], s[d]);
            s[b] = rot7(_mm256_xor_si256(s[b], s[c]));
        }
        #[inline(always)]
        unsafe fn load(l: &Lanes) -> __m256i {
            _mm256_loadu_si256(l.as_ptr() as *const __m256i)
        }

        /// Same as `super::transpose`; the caller checks the CPU has the features.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn transpose(blocks: &[&[u8]; LANES]) -> [Lanes; 16] {
            let mut out = [[0u32; LANES]; 16];
            for half in 0..2 {
                // Row l: words 8*half..8*half+8 of lane l (blocks are 64 bytes, checked by the caller).
                let r: [__m256i; 8] = std::array::from_fn(|l| _mm256_loadu_si256(blocks[l][32 * half..].as_ptr() as *const __m256i));
                let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
                let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
                let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
                let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
                let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
                let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
                let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
                let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
                let u0 = _mm256_unpacklo_epi64(t0, t2);
                let u1 = _mm256_unpackhi_epi64(t0, t2);
                let u2 = _mm256_unpacklo_epi64(t1, t3);
                let u3 = _mm256_unpackhi_epi64(t1, t3);
                let u4 = _mm256_unpacklo_epi64(t4, t6);
                let u5 = _mm256_unpackhi_epi64(t4, t6);
                let u6 = _mm256_unpacklo_epi64(t5, t7);
                let u7 = _mm256_unpackhi_epi64(t5, t7);
                let words = [
                    _mm256_permute2x128_si256(u0, u4, 0x20),
                    _mm256_permute2x128_si256(u1, u5, 0x20),
                    _mm256_permute2x128_si256(u2, u6, 0x20),
                    _mm256_permute2x128_si256(u3, u7, 0x20),
                    _mm256_permute2x128_si256(u0, u4, 0x31),
                    _mm256_permute2x128_si256(u1, u5, 0x31),
                    _mm256_permute2x128_si256(u2, u6, 0x31),
                    _mm256_permute2x128_si256(u3, u7, 0x31),
                ];
                for (w, v) in words.iter().enumerate() {
                    _mm256_storeu_si256(out[8 * half + w].as_mut_ptr() as *mut __m256i, *v);
                }
            }
            out
        }

        /// Same as `super::compress8`; the caller checks the CPU has the features.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn compress8(cv: &[Lanes; 8], m: &[Lanes; 16], counter: &[u64; LANES], block_len: &Lanes, flags: &Lanes) -> [Lanes; 8] {
            let lo: Lanes = std::array::from_fn(|i| counter[i] as u32);
            let hi: Lanes = std::array::from_fn(|i| (counter[i] >> 32) as u32);
            let mut s = [
                load(&cv[0]),
                load(&cv[1]),
                load(&cv[2]),
                load(&cv[3]),
                load(&cv[4]),
                load(&cv[5]),
                load(&cv[6]),
                load(&cv[7]),
                _mm256_set1_epi32(IV[0] as i32),
                _mm256_set1_epi32(IV[1] as i32),
                _mm256_set1_epi32(IV[2] as i32),
                _mm256_set1_epi32(IV[3] as i32),
                load(&lo),
                load(&hi),
                load(block_len),
                load(flags),
            ];
            let mv: [__m256i; 16] = std::array::from_fn(|w| load(&m[w]));
            for r in &SCHEDULE {
                g(&mut s, 0, 4, 8, 12, mv[r[0]], mv[r[1]]);
                g(&mut s, 1, 5, 9, 13, mv[r[2]], mv[r[3]]);
                g(&mut s, 2, 6, 10, 14, mv[r[4]], mv[r[5]]);
                g(&mut s, 3, 7, 11, 15, mv[r[6]], mv[r[7]]);
                g(&mut s, 0, 5, 10, 15, mv[r[8]], mv[r[9]]);
                g(&mut s, 1, 6, 11, 12, mv[r[10]], mv[r[11]]);
                g(&mut s, 2, 7, 8, 13, mv[r[12]], mv[r[13]]);
                g(&mut s, 3, 4, 9, 14, mv[r[14]], mv[r[15]]);
            }
            let mut out = [[0u32; LANES]; 8];
            for (w, o) in out.iter_mut().enumerate() {
                _mm256_storeu_si256(o.as_mut_ptr() as *mut __m256i, _mm256_xor_si256(s[w], s[w + 8]));
            }
            out
        }
        }
    };
}

// AVX2 has no vector rotate: two shifts and an or.
x86_lanes!(
    avx2,
    "avx2",
    #[inline(always)]
    unsafe fn rot12(x: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_srli_epi32(x, 12), _mm256_slli_epi32(x, 20))
    },
    #[inline(always)]
    unsafe fn rot7(x: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_srli_epi32(x, 7), _mm256_slli_epi32(x, 25))
    }
);

// AVX-512VL rotates 256-bit vectors in one instruction.
x86_lanes!(
    avx512,
    "avx2,avx512f,avx512vl",
    #[inline(always)]
    unsafe fn rot12(x: __m256i) -> __m256i {
        _mm256_ror_epi32(x, 12)
    },
    #[inline(always)]
    unsafe fn rot7(x: __m256i) -> __m256i {
        _mm256_ror_epi32(x, 7)
    }
);

/// The eight-lane compression, with the best vectors the CPU has.
fn pieces_best(key: &[u32; 8], pieces: &[Piece<'_>], out: &mut [[u32; 8]]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512vl") && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 and AVX-512VL (which implies AVX-512F), checked just above.
            return unsafe { pieces_avx512(key, pieces, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { pieces_avx2(key, pieces, out) };
        }
    }
    pieces_portable(key, pieces, out)
}

/// A parent node of two chaining values.
fn parent(key: &[u32; 8], left: &[u32; 8], right: &[u32; 8], root: bool) -> [u32; 8] {
    let mut m = [[0u32; LANES]; 16];
    for w in 0..8 {
        m[w][0] = left[w];
        m[w + 8][0] = right[w];
    }
    let cv: [Lanes; 8] = std::array::from_fn(|w| [key[w]; LANES]);
    let flags = [PARENT | KEYED_HASH | if root { ROOT } else { 0 }; LANES];
    let out = compress8(&cv, &m, &[0; LANES], &[64; LANES], &flags);
    std::array::from_fn(|w| out[w][0])
}

/// Merges the chunk chaining values of one input into its root, as BLAKE3's
/// tree does: the left subtree holds the largest power of two of chunks that
/// leaves at least one for the right.
fn merge(key: &[u32; 8], cvs: &[[u32; 8]], root: bool) -> [u32; 8] {
    if cvs.len() == 1 {
        return cvs[0];
    }
    let left = 1usize << (usize::BITS - 1 - (cvs.len() - 1).leading_zeros());
    let l = merge(key, &cvs[..left], false);
    let r = merge(key, &cvs[left..], false);
    parent(key, &l, &r, root)
}

/// `blake3::keyed_hash(key, input)` for every input, in order.
pub fn keyed_hashes(key: &[u8; 32], inputs: &[&[u8]]) -> Vec<[u8; 32]> {
    hashes_with(key, inputs, pieces_best)
}

type PiecesFn = fn(&[u32; 8], &[Piece<'_>], &mut [[u32; 8]]);

fn hashes_with(key: &[u8; 32], inputs: &[&[u8]], compress_pieces: PiecesFn) -> Vec<[u8; 32]> {
    let key: [u32; 8] = std::array::from_fn(|w| u32::from_le_bytes([key[4 * w], key[4 * w + 1], key[4 * w + 2], key[4 * w + 3]]));
    let mut pieces = Vec::with_capacity(inputs.len() * 2);
    for input in inputs {
        let n = input.len().div_ceil(CHUNK_LEN).max(1);
        for c in 0..n {
            let data = &input[(c * CHUNK_LEN).min(input.len())..((c + 1) * CHUNK_LEN).min(input.len())];
            pieces.push(Piece { data, counter: c as u64, root: n == 1 });
        }
    }
    let mut cvs = vec![[0u32; 8]; pieces.len()];
    compress_pieces(&key, &pieces, &mut cvs);
    let mut out = Vec::with_capacity(inputs.len());
    let mut at = 0;
    for input in inputs {
        let n = input.len().div_ceil(CHUNK_LEN).max(1);
        let root = merge(&key, &cvs[at..at + n], true);
        at += n;
        let mut bytes = [0u8; 32];
        for (w, word) in root.iter().enumerate() {
            bytes[4 * w..4 * w + 4].copy_from_slice(&word.to_le_bytes());
        }
        out.push(bytes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_blake3_keyed_hash_for_every_length_around_chunk_edges() {
        let key: [u8; 32] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let data: Vec<u8> = (0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut lens: Vec<usize> = (0..=200).collect();
        lens.extend([255, 256, 511, 512, 1023, 1024, 1025, 2047, 2048, 2049, 3072, 3073, 4096, 5000, 8191, 8192, 8193, 16_384, 20_000]);
        let inputs: Vec<&[u8]> = lens.iter().enumerate().map(|(i, &n)| &data[i % 97..i % 97 + n.min(data.len() - 97)]).collect();
        // Every path this CPU can take, and the portable one.
        let mut paths: Vec<PiecesFn> = vec![pieces_best, pieces_portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 was detected.
                paths.push(|k, p, o| unsafe { pieces_avx2(k, p, o) });
            }
            if std::arch::is_x86_feature_detected!("avx512vl") && std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 and AVX-512VL were detected.
                paths.push(|k, p, o| unsafe { pieces_avx512(k, p, o) });
            }
        }
        for got in paths.iter().map(|&path| hashes_with(&key, &inputs, path)) {
            assert_eq!(got.len(), inputs.len());
            for (input, id) in inputs.iter().zip(&got) {
                assert_eq!(id, blake3::keyed_hash(&key, input).as_bytes(), "length {}", input.len());
            }
        }
        assert!(keyed_hashes(&key, &[]).is_empty());
    }
}
