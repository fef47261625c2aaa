//! Keyed BLAKE3 of many small inputs at once.
//!
//! A 1 KiB chunk is a single BLAKE3 chunk, which the `blake3` crate compresses
//! one 64-byte block after another: no SIMD lanes to fill. Here the BLAKE3
//! chunks of a batch of inputs are compressed side by side, sixteen at a time
//! with AVX-512 (eight with AVX2 or in plain Rust), and then the parent nodes of
//! inputs longer than 1 KiB, a tree level at a time across all inputs. The
//! result is exactly `blake3::keyed_hash` of each input (tested against the crate).

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
/// The seven rounds of a compression: `$g` on state `$s` with message words `$m`, written
/// out so every message index is a constant (a loop over the rounds left the indices as
/// loads from the table and the message words in memory).
macro_rules! rounds {
    ($g:ident, $s:ident, $m:ident) => {
        rounds!(@each $g $s $m 0 1 2 3 4 5 6)
    };
    (@each $g:ident $s:ident $m:ident $($n:literal)*) => {
        $({
            let r = &SCHEDULE[$n];
            $g(&mut $s, 0, 4, 8, 12, $m[r[0]], $m[r[1]]);
            $g(&mut $s, 1, 5, 9, 13, $m[r[2]], $m[r[3]]);
            $g(&mut $s, 2, 6, 10, 14, $m[r[4]], $m[r[5]]);
            $g(&mut $s, 3, 7, 11, 15, $m[r[6]], $m[r[7]]);
            $g(&mut $s, 0, 5, 10, 15, $m[r[8]], $m[r[9]]);
            $g(&mut $s, 1, 6, 11, 12, $m[r[10]], $m[r[11]]);
            $g(&mut $s, 2, 7, 8, 13, $m[r[12]], $m[r[13]]);
            $g(&mut $s, 3, 4, 9, 14, $m[r[14]], $m[r[15]]);
        })*
    };
}

const CHUNK_START: u32 = 1;
const CHUNK_END: u32 = 2;
const PARENT: u32 = 4;
const ROOT: u32 = 8;
const KEYED_HASH: u32 = 16;
const CHUNK_LEN: usize = 1024;

/// One state word across `N` lanes.
type Lanes<const N: usize> = [u32; N];

#[inline(always)]
fn add<const N: usize>(a: &Lanes<N>, b: &Lanes<N>) -> Lanes<N> {
    std::array::from_fn(|i| a[i].wrapping_add(b[i]))
}

#[inline(always)]
fn xor_rot<const N: usize>(a: &Lanes<N>, b: &Lanes<N>, r: u32) -> Lanes<N> {
    std::array::from_fn(|i| (a[i] ^ b[i]).rotate_right(r))
}

#[inline(always)]
fn g<const N: usize>(s: &mut [Lanes<N>; 16], a: usize, b: usize, c: usize, d: usize, mx: Lanes<N>, my: Lanes<N>) {
    s[a] = add(&add(&s[a], &s[b]), &mx);
    s[d] = xor_rot(&s[d], &s[a], 16);
    s[c] = add(&s[c], &s[d]);
    s[b] = xor_rot(&s[b], &s[c], 12);
    s[a] = add(&add(&s[a], &s[b]), &my);
    s[d] = xor_rot(&s[d], &s[a], 8);
    s[c] = add(&s[c], &s[d]);
    s[b] = xor_rot(&s[b], &s[c], 7);
}

/// What one step of the lanes needs besides the chaining values and the blocks.
struct Block<const N: usize> {
    counter: [u64; N],
    len: Lanes<N>,
    flags: Lanes<N>,
}

/// One compression of `N` blocks in parallel, in plain Rust: the message words are
/// transposed lane-major, and the new chaining values returned.
#[inline(always)]
fn step_portable<const N: usize>(cv: &[Lanes<N>; 8], blocks: &[&[u8]; N], b: &Block<N>) -> [Lanes<N>; 8] {
    let m: [Lanes<N>; 16] = std::array::from_fn(|w| std::array::from_fn(|l| u32::from_le_bytes([blocks[l][4 * w], blocks[l][4 * w + 1], blocks[l][4 * w + 2], blocks[l][4 * w + 3]])));
    let (lo, hi) = (std::array::from_fn(|i| b.counter[i] as u32), std::array::from_fn(|i| (b.counter[i] >> 32) as u32));
    let mut s: [Lanes<N>; 16] = [cv[0], cv[1], cv[2], cv[3], cv[4], cv[5], cv[6], cv[7], [IV[0]; N], [IV[1]; N], [IV[2]; N], [IV[3]; N], lo, hi, b.len, b.flags];
    rounds!(g, s, m);
    std::array::from_fn(|w| std::array::from_fn(|i| s[w][i] ^ s[w + 8][i]))
}

/// One compression to run: a BLAKE3 chunk of an input (its bytes, its index in the input,
/// whether it is the whole input and so the root), or a parent node (a 64-byte message of
/// two chaining values).
#[derive(Clone, Copy)]
struct Piece<'a> {
    data: &'a [u8],
    counter: u64,
    root: bool,
    parent: bool,
}

impl Piece<'_> {
    /// 64-byte blocks (an empty input still compresses one, all zeros).
    fn blocks(&self) -> usize {
        self.data.len().div_ceil(64).max(1)
    }

    /// Flags of the piece's first block, beside the keyed-hash flag.
    fn first_flags(&self) -> u32 {
        if self.parent {
            PARENT
        } else {
            CHUNK_START
        }
    }

    /// Flags of the piece's last block.
    fn last_flags(&self) -> u32 {
        (if self.parent { 0 } else { CHUNK_END }) | if self.root { ROOT } else { 0 }
    }

    /// The piece's bytes of block `b` when they are a whole 64 bytes, else `None` (its last block is
    /// shorter and compressed zero-padded).
    fn full_block(&self, b: usize) -> Option<&[u8]> {
        self.data.get(64 * b..64 * b + 64)
    }

    /// Zero-pads the piece's last block into `pad` when it is shorter than 64 bytes (a whole
    /// one is read in place); returns its length.
    fn pad_last(&self, pad: &mut [u8; 64]) -> u32 {
        let rest = &self.data[64 * (self.blocks() - 1)..];
        if rest.len() < 64 {
            pad[..rest.len()].copy_from_slice(rest);
        }
        rest.len() as u32
    }
}

/// Compresses the pieces `N` lanes at a time, `group` running up to `N` of them in lockstep.
/// Pieces are grouped by their number of blocks (longest first), so a group's lanes finish
/// together: most are whole 1 KiB chunks of sixteen blocks, and the rest are few.
#[inline(always)]
fn pieces_with<const N: usize>(key: &[u32; 8], pieces: &[Piece<'_>], out: &mut [[u32; 8]], group: impl Fn(&[u32; 8], &[Piece<'_>]) -> [[u32; 8]; N]) {
    // A counting sort: pieces have 1 to 16 blocks (a parent node one).
    let class = |p: &Piece<'_>| 16 - p.blocks().min(16);
    let mut starts = [0usize; 16];
    for p in pieces {
        starts[class(p)] += 1;
    }
    let mut at = 0;
    for s in starts.iter_mut() {
        (at, *s) = (at + *s, at);
    }
    let mut order = vec![0usize; pieces.len()];
    for (i, p) in pieces.iter().enumerate() {
        let slot = &mut starts[class(p)];
        order[*slot] = i;
        *slot += 1;
    }
    let empty = Piece { data: &[], counter: 0, root: false, parent: false };
    for ids in order.chunks(N) {
        let mut lanes = [empty; N];
        for (lane, &i) in lanes.iter_mut().zip(ids) {
            *lane = pieces[i];
        }
        let cvs = group(key, &lanes[..ids.len()]);
        for (cv, &i) in cvs.iter().zip(ids) {
            out[i] = *cv;
        }
    }
}

/// Up to `N` pieces in lockstep, `step` doing one block in every lane; a lane whose piece has
/// ended keeps its chaining value.
#[inline(always)]
fn group_with<const N: usize>(key: &[u32; 8], lanes: &[Piece<'_>], step: impl Fn(&[Lanes<N>; 8], &[&[u8]; N], &Block<N>) -> [Lanes<N>; 8]) -> [[u32; 8]; N] {
    let blocks: [usize; N] = std::array::from_fn(|l| lanes.get(l).map_or(0, Piece::blocks));
    let mut pads = [[0u8; 64]; N];
    let last_len: [u32; N] = std::array::from_fn(|l| lanes.get(l).map_or(0, |p| p.pad_last(&mut pads[l])));
    let mut b = Block { counter: std::array::from_fn(|l| lanes.get(l).map_or(0, |p| p.counter)), len: [0; N], flags: [0; N] };
    let mut cv: [Lanes<N>; 8] = std::array::from_fn(|w| [key[w]; N]);
    for blk in 0..blocks.iter().copied().max().unwrap_or(0) {
        let refs: [&[u8]; N] = std::array::from_fn(|l| match lanes.get(l).and_then(|p| p.full_block(blk)) {
            Some(bytes) => {
                prefetch(bytes);
                bytes
            }
            None => &pads[l][..],
        });
        for (l, p) in lanes.iter().enumerate() {
            let last = blk + 1 == blocks[l];
            b.len[l] = if last { last_len[l] } else { 64 };
            b.flags[l] = KEYED_HASH | if blk == 0 { p.first_flags() } else { 0 } | if last { p.last_flags() } else { 0 };
        }
        let new = step(&cv, &refs, &b);
        for l in (0..lanes.len()).filter(|&l| blk < blocks[l]) {
            for w in 0..8 {
                cv[w][l] = new[w][l];
            }
        }
    }
    std::array::from_fn(|l| std::array::from_fn(|w| cv[w][l]))
}

/// Asks for the bytes four blocks after `block` (as the blake3 crate does): many lanes read
/// as many streams at once, more than the hardware prefetcher follows. A hint: an address
/// past the data is never read.
#[inline(always)]
fn prefetch(block: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86_64; a prefetch does not access memory.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(block.as_ptr().wrapping_add(256) as *const i8)
    }
}

fn pieces_portable(key: &[u32; 8], pieces: &[Piece<'_>], out: &mut [[u32; 8]]) {
    pieces_with::<8>(key, pieces, out, |k, lanes| group_with(k, lanes, step_portable))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn pieces_avx2(key: &[u32; 8], pieces: &[Piece<'_>], out: &mut [[u32; 8]]) {
    // SAFETY: this function only runs where AVX2 was detected.
    pieces_with::<8>(key, pieces, out, |k, lanes| group_with(k, lanes, |cv, blocks, b| unsafe { avx2::step(cv, blocks, b) }))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn pieces_avx512(key: &[u32; 8], pieces: &[Piece<'_>], out: &mut [[u32; 8]]) {
    // SAFETY: this function only runs where AVX-512F was detected.
    pieces_with::<16>(key, pieces, out, |k, lanes| unsafe { avx512::group(k, lanes) })
}

/// Eight lanes in 256-bit vectors (one register per state word), for CPUs with AVX2.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Block, Lanes, IV, SCHEDULE};

    #[inline(always)]
    unsafe fn rot16(x: __m256i) -> __m256i {
        _mm256_shuffle_epi8(x, _mm256_set_epi8(13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2, 13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2))
    }
    #[inline(always)]
    unsafe fn rot8(x: __m256i) -> __m256i {
        _mm256_shuffle_epi8(x, _mm256_set_epi8(12, 15, 14, 13, 8, 11, 10, 9, 4, 7, 6, 5, 0, 3, 2, 1, 12, 15, 14, 13, 8, 11, 10, 9, 4, 7, 6, 5, 0, 3, 2, 1))
    }
    // AVX2 has no vector rotate: two shifts and an or.
    #[inline(always)]
    unsafe fn rot12(x: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_srli_epi32(x, 12), _mm256_slli_epi32(x, 20))
    }
    #[inline(always)]
    unsafe fn rot7(x: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_srli_epi32(x, 7), _mm256_slli_epi32(x, 25))
    }
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
    unsafe fn load(l: &Lanes<8>) -> __m256i {
        _mm256_loadu_si256(l.as_ptr() as *const __m256i)
    }

    /// The message words of eight 64-byte blocks, word-major (an 8x8 transpose per half).
    #[inline(always)]
    unsafe fn transpose(blocks: &[&[u8]; 8]) -> [__m256i; 16] {
        let mut out = [_mm256_setzero_si256(); 16];
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
            out[8 * half] = _mm256_permute2x128_si256(u0, u4, 0x20);
            out[8 * half + 1] = _mm256_permute2x128_si256(u1, u5, 0x20);
            out[8 * half + 2] = _mm256_permute2x128_si256(u2, u6, 0x20);
            out[8 * half + 3] = _mm256_permute2x128_si256(u3, u7, 0x20);
            out[8 * half + 4] = _mm256_permute2x128_si256(u0, u4, 0x31);
            out[8 * half + 5] = _mm256_permute2x128_si256(u1, u5, 0x31);
            out[8 * half + 6] = _mm256_permute2x128_si256(u2, u6, 0x31);
            out[8 * half + 7] = _mm256_permute2x128_si256(u3, u7, 0x31);
        }
        out
    }

    /// Same as `super::step_portable` for eight lanes; the caller checks the CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn step(cv: &[Lanes<8>; 8], blocks: &[&[u8]; 8], b: &Block<8>) -> [Lanes<8>; 8] {
        let lo: Lanes<8> = std::array::from_fn(|i| b.counter[i] as u32);
        let hi: Lanes<8> = std::array::from_fn(|i| (b.counter[i] >> 32) as u32);
        let [c0, c1, c2, c3, c4, c5, c6, c7] = [load(&cv[0]), load(&cv[1]), load(&cv[2]), load(&cv[3]), load(&cv[4]), load(&cv[5]), load(&cv[6]), load(&cv[7])];
        let [i0, i1, i2, i3] = [_mm256_set1_epi32(IV[0] as i32), _mm256_set1_epi32(IV[1] as i32), _mm256_set1_epi32(IV[2] as i32), _mm256_set1_epi32(IV[3] as i32)];
        let mut s = [c0, c1, c2, c3, c4, c5, c6, c7, i0, i1, i2, i3, load(&lo), load(&hi), load(&b.len), load(&b.flags)];
        let m = transpose(blocks);
        rounds!(g, s, m);
        let mut out = [[0u32; 8]; 8];
        for (w, o) in out.iter_mut().enumerate() {
            _mm256_storeu_si256(o.as_mut_ptr() as *mut __m256i, _mm256_xor_si256(s[w], s[w + 8]));
        }
        out
    }
}

/// Sixteen lanes in 512-bit vectors, for CPUs with AVX-512F: half the instructions of eight
/// lanes per byte, and a rotate instruction for every rotation.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Lanes, Piece, IV, SCHEDULE};

    #[inline(always)]
    unsafe fn g(s: &mut [__m512i; 16], a: usize, b: usize, c: usize, d: usize, mx: __m512i, my: __m512i) {
        s[a] = _mm512_add_epi32(_mm512_add_epi32(s[a], s[b]), mx);
        s[d] = _mm512_ror_epi32(_mm512_xor_si512(s[d], s[a]), 16);
        s[c] = _mm512_add_epi32(s[c], s[d]);
        s[b] = _mm512_ror_epi32(_mm512_xor_si512(s[b], s[c]), 12);
        s[a] = _mm512_add_epi32(_mm512_add_epi32(s[a], s[b]), my);
        s[d] = _mm512_ror_epi32(_mm512_xor_si512(s[d], s[a]), 8);
        s[c] = _mm512_add_epi32(s[c], s[d]);
        s[b] = _mm512_ror_epi32(_mm512_xor_si512(s[b], s[c]), 7);
    }
    #[inline(always)]
    unsafe fn load(l: &Lanes<16>) -> __m512i {
        _mm512_loadu_si512(l.as_ptr() as *const _)
    }

    /// The message words of sixteen 64-byte blocks, word-major: a 16x16 transpose of 32-bit
    /// words (pairs of rows, then quads, then 128-bit lanes across the quads).
    #[inline(always)]
    unsafe fn transpose(blocks: &[&[u8]; 16]) -> [__m512i; 16] {
        // Row l: the 16 words of lane l's block (blocks are 64 bytes, checked by the caller).
        let r: [__m512i; 16] = std::array::from_fn(|l| _mm512_loadu_si512(blocks[l].as_ptr() as *const _));
        let t: [__m512i; 16] = std::array::from_fn(|i| if i % 2 == 0 { _mm512_unpacklo_epi32(r[i], r[i + 1]) } else { _mm512_unpackhi_epi32(r[i - 1], r[i]) });
        // u[4q + j], in its 128-bit lane k: words 4k + j of rows 4q..4q + 4.
        let u: [__m512i; 16] = std::array::from_fn(|i| {
            let (q, j) = (i / 4, i % 4);
            let (a, b) = (t[4 * q + j / 2], t[4 * q + 2 + j / 2]);
            if j % 2 == 0 {
                _mm512_unpacklo_epi64(a, b)
            } else {
                _mm512_unpackhi_epi64(a, b)
            }
        });
        let mut out = [_mm512_setzero_si512(); 16];
        for j in 0..4 {
            let v0 = _mm512_shuffle_i32x4::<0x88>(u[j], u[4 + j]);
            let v1 = _mm512_shuffle_i32x4::<0xDD>(u[j], u[4 + j]);
            let v2 = _mm512_shuffle_i32x4::<0x88>(u[8 + j], u[12 + j]);
            let v3 = _mm512_shuffle_i32x4::<0xDD>(u[8 + j], u[12 + j]);
            out[j] = _mm512_shuffle_i32x4::<0x88>(v0, v2);
            out[8 + j] = _mm512_shuffle_i32x4::<0xDD>(v0, v2);
            out[4 + j] = _mm512_shuffle_i32x4::<0x88>(v1, v3);
            out[12 + j] = _mm512_shuffle_i32x4::<0xDD>(v1, v3);
        }
        out
    }

    /// `super::group_with` for sixteen lanes with the state in registers from the first block
    /// to the last (lanes masked off once their piece has ended); the caller checks the CPU
    /// has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn group(key: &[u32; 8], lanes: &[Piece<'_>]) -> [[u32; 8]; 16] {
        let mut blocks = [0u32; 16];
        let mut last_len = [0u32; 16];
        let (mut first, mut last) = ([0u32; 16], [0u32; 16]);
        let (mut lo, mut hi) = ([0u32; 16], [0u32; 16]);
        let mut pads = [[0u8; 64]; 16];
        for (l, p) in lanes.iter().enumerate() {
            blocks[l] = p.blocks() as u32;
            last_len[l] = p.pad_last(&mut pads[l]);
            (first[l], last[l]) = (p.first_flags(), p.last_flags());
            (lo[l], hi[l]) = (p.counter as u32, (p.counter >> 32) as u32);
        }
        let (lo, hi) = (load(&lo), load(&hi));
        let (first, last) = (load(&first), load(&last));
        let last_len = load(&last_len);
        // A lane without a piece has no last block: its count minus one never matches.
        let final_block = _mm512_sub_epi32(load(&blocks), _mm512_set1_epi32(1));
        let mut cv: [__m512i; 8] = std::array::from_fn(|w| _mm512_set1_epi32(key[w] as i32));
        let iv: [__m512i; 4] = std::array::from_fn(|w| _mm512_set1_epi32(IV[w] as i32));
        let most = blocks.iter().copied().max().unwrap_or(0);
        for blk in 0..most {
            let at = _mm512_set1_epi32(blk as i32);
            let active = _mm512_cmplt_epu32_mask(at, load(&blocks));
            let ending = _mm512_cmpeq_epi32_mask(at, final_block);
            let len = _mm512_mask_blend_epi32(ending, _mm512_set1_epi32(64), last_len);
            let mut flags = _mm512_set1_epi32(super::KEYED_HASH as i32);
            if blk == 0 {
                flags = _mm512_or_si512(flags, first);
            }
            flags = _mm512_mask_or_epi32(flags, ending, flags, last);
            // A plain loop: a closure here is not inlined into this function, and the call
            // would spill every vector register holding the state.
            let mut refs: [&[u8]; 16] = [&[]; 16];
            for l in 0..16 {
                refs[l] = match lanes.get(l).and_then(|p| p.full_block(blk as usize)) {
                    Some(bytes) => {
                        super::prefetch(bytes);
                        bytes
                    }
                    None => &pads[l][..],
                };
            }
            let m = transpose(&refs);
            let mut s = [cv[0], cv[1], cv[2], cv[3], cv[4], cv[5], cv[6], cv[7], iv[0], iv[1], iv[2], iv[3], lo, hi, len, flags];
            rounds!(g, s, m);
            for w in 0..8 {
                cv[w] = _mm512_mask_mov_epi32(cv[w], active, _mm512_xor_si512(s[w], s[w + 8]));
            }
        }
        let mut words = [[0u32; 16]; 8];
        for (w, o) in words.iter_mut().enumerate() {
            _mm512_storeu_si512(o.as_mut_ptr() as *mut _, cv[w]);
        }
        std::array::from_fn(|l| std::array::from_fn(|w| words[w][l]))
    }
}

/// The compression of many pieces, with the widest vectors the CPU has.
fn pieces_best(key: &[u32; 8], pieces: &[Piece<'_>], out: &mut [[u32; 8]]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { pieces_avx512(key, pieces, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { pieces_avx2(key, pieces, out) };
        }
    }
    pieces_portable(key, pieces, out)
}

/// `blake3::keyed_hash(key, input)` for every input, in order.
pub fn keyed_hashes(key: &[u8; 32], inputs: &[&[u8]]) -> Vec<[u8; 32]> {
    hashes_with(key, inputs, pieces_best)
}

type PiecesFn = fn(&[u32; 8], &[Piece<'_>], &mut [[u32; 8]]);

fn hashes_with(key: &[u8; 32], inputs: &[&[u8]], compress_pieces: PiecesFn) -> Vec<[u8; 32]> {
    let key: [u32; 8] = std::array::from_fn(|w| u32::from_le_bytes([key[4 * w], key[4 * w + 1], key[4 * w + 2], key[4 * w + 3]]));
    let mut pieces = Vec::with_capacity(inputs.len() * 2);
    // Per input: where its nodes start in `cvs`, and how many there are at the current level.
    let mut spans = Vec::with_capacity(inputs.len());
    for input in inputs {
        let n = input.len().div_ceil(CHUNK_LEN).max(1);
        spans.push((pieces.len(), n));
        for c in 0..n {
            let data = &input[(c * CHUNK_LEN).min(input.len())..((c + 1) * CHUNK_LEN).min(input.len())];
            pieces.push(Piece { data, counter: c as u64, root: n == 1, parent: false });
        }
    }
    let mut cvs = vec![[0u32; 8]; pieces.len()];
    compress_pieces(&key, &pieces, &mut cvs);
    merge_levels(&key, &mut cvs, &mut spans, compress_pieces);
    spans
        .iter()
        .map(|&(at, _)| {
            let mut bytes = [0u8; 32];
            for (w, word) in cvs[at].iter().enumerate() {
                bytes[4 * w..4 * w + 4].copy_from_slice(&word.to_le_bytes());
            }
            bytes
        })
        .collect()
}

/// Reduces every input's chunk chaining values to its root, one tree level at a time for
/// all inputs together, so the parent nodes fill the lanes as the chunks did. Pairing
/// neighbours and carrying an odd last node up builds BLAKE3's tree (each left subtree a
/// full power of two of chunks); the pair that is the last of its input is the root.
fn merge_levels(key: &[u32; 8], cvs: &mut [[u32; 8]], spans: &mut [(usize, usize)], compress_pieces: PiecesFn) {
    let mut messages: Vec<[u8; 64]> = Vec::new();
    let mut roots: Vec<bool> = Vec::new();
    loop {
        messages.clear();
        roots.clear();
        for &(at, n) in spans.iter().filter(|s| s.1 > 1) {
            for pair in cvs[at..at + n].chunks_exact(2) {
                let mut m = [0u8; 64];
                for (w, word) in pair[0].iter().chain(&pair[1]).enumerate() {
                    m[4 * w..4 * w + 4].copy_from_slice(&word.to_le_bytes());
                }
                messages.push(m);
                roots.push(n == 2);
            }
        }
        if messages.is_empty() {
            return;
        }
        let parents: Vec<Piece<'_>> = messages.iter().zip(&roots).map(|(m, &root)| Piece { data: m, counter: 0, root, parent: true }).collect();
        let mut out = vec![[0u32; 8]; parents.len()];
        compress_pieces(key, &parents, &mut out);
        let mut next = 0;
        for (at, n) in spans.iter_mut().filter(|s| s.1 > 1) {
            for i in 0..*n / 2 {
                cvs[*at + i] = out[next];
                next += 1;
            }
            if *n % 2 == 1 {
                cvs[*at + *n / 2] = cvs[*at + *n - 1];
            }
            *n = n.div_ceil(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_blake3_keyed_hash_for_every_length_around_chunk_edges() {
        let key: [u8; 32] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let data: Vec<u8> = (0..140_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut lens: Vec<usize> = (0..=200).collect();
        lens.extend([255, 256, 511, 512, 1023, 1024, 1025, 2047, 2048, 2049, 3072, 3073, 4096, 5000, 8191, 8192, 8193, 16_384, 20_000, 33 * 1024 + 5, 131_072]);
        let inputs: Vec<&[u8]> = lens.iter().enumerate().map(|(i, &n)| &data[i % 97..i % 97 + n.min(data.len() - 97)]).collect();
        // Every path this CPU can take, and the portable one.
        let mut paths: Vec<PiecesFn> = vec![pieces_best, pieces_portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 was detected.
                paths.push(|k, p, o| unsafe { pieces_avx2(k, p, o) });
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: AVX-512F was detected.
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
