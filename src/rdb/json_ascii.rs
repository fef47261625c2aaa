//! JSON escaping of ASCII text sixteen bytes at a time, for [`super::write_bytes_json`]: the
//! bytes `export --format jsonl` spends most of its time on.

/// The ASCII head of `b` escaped into `out`; returns where it stopped: at the first byte that
/// is not ASCII, or at the end (at once on a CPU without SSSE3: the UTF-8 path does it all).
#[cfg(target_arch = "x86_64")]
pub(super) fn escape_ascii(out: &mut Vec<u8>, b: &[u8]) -> usize {
    if std::arch::is_x86_feature_detected!("ssse3") {
        // SAFETY: the CPU has SSSE3.
        unsafe { escape_ascii_ssse3(out, b) }
    } else {
        0
    }
}

/// [`escape_ascii`] on a CPU with SSSE3.
///
/// # Safety
/// The CPU must have SSSE3.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
unsafe fn escape_ascii_ssse3(out: &mut Vec<u8>, b: &[u8]) -> usize {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128};
    let mut i = 0;
    while i + 16 <= b.len() {
        // SAFETY: the CPU has SSSE3 (the caller's promise).
        i = unsafe { quoted_blocks(out, b, i) };
        if i + 16 > b.len() {
            break;
        }
        // SAFETY: b[i..i + 16] is in bounds.
        let v = unsafe { _mm_loadu_si128(b.as_ptr().add(i).cast::<__m128i>()) };
        match escape_block(out, v, &b[i..i + 16]) {
            Block::Took(n) => i += n,
            Block::NotAscii(n) => return i + n,
        }
    }
    // The tail (and any string shorter than a block), gathered into a register from loads
    // within it, each step after an escape shifted down by a shuffle: a copy on the stack
    // read back sixteen bytes at a time stalled on the stores that had just written it.
    let tail = &b[i..];
    let v = tail_vector(tail);
    let mut j = 0;
    while j < tail.len() {
        match escape_block(out, shifted(v, j), &tail[j..]) {
            Block::Took(n) => j += n,
            Block::NotAscii(n) => return i + j + n,
        }
    }
    b.len()
}

/// The (fewer than sixteen) bytes of `t` in the low lanes of a vector, zeros above, read
/// from `t` alone.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn tail_vector(t: &[u8]) -> std::arch::x86_64::__m128i {
    let n = t.len();
    debug_assert!(n < 16);
    let u64_at = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&t[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let u32_at = |at: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&t[at..at + 4]);
        u64::from(u32::from_le_bytes(w))
    };
    // Two overlapping words, the second shifted down past the bytes the first holds.
    let (low, high) = match n {
        8 => (u64_at(0), 0),
        9.. => (u64_at(0), u64_at(n - 8) >> ((16 - n) * 8)),
        4.. => (u32_at(0) | (u32_at(n - 4) >> ((8 - n) * 8)) << 32, 0),
        _ => (t.iter().rev().fold(0u64, |w, &c| w << 8 | u64::from(c)), 0),
    };
    // SAFETY: SSE2 is part of x86_64.
    unsafe { std::arch::x86_64::_mm_set_epi64x(high as i64, low as i64) }
}

/// `v` moved down by `j` (< 16) lanes, zeros shifted in.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
#[inline]
fn shifted(v: std::arch::x86_64::__m128i, j: usize) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_shuffle_epi8};
    // SAFETY: the table row is 16 bytes.
    unsafe { _mm_shuffle_epi8(v, _mm_loadu_si128(SHIFTS[j].as_ptr().cast::<__m128i>())) }
}

/// For each shift, where each lane of the shifted vector comes from (0x80: a zero).
#[cfg(target_arch = "x86_64")]
static SHIFTS: [[u8; 16]; 16] = {
    let mut t = [[0x80u8; 16]; 16];
    let mut j = 0;
    while j < 16 {
        let mut k = 0;
        while k + j < 16 {
            t[j][k] = (k + j) as u8;
            k += 1;
        }
        j += 1;
    }
    t
};

/// Elsewhere the UTF-8 path of [`super::write_bytes_json`] does it all.
#[cfg(not(target_arch = "x86_64"))]
pub(super) fn escape_ascii(_out: &mut Vec<u8>, _b: &[u8]) -> usize {
    0
}

/// Sixteen-byte blocks whose only bytes to escape are `"` (JSON documents hold one every few
/// bytes), each written by two shuffles that put a `\\` before every quote, whatever their
/// number; returns where it stopped: at a block holding another byte to escape, or with fewer
/// than sixteen bytes left.
///
/// # Safety
/// The CPU must have SSSE3.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
unsafe fn quoted_blocks(out: &mut Vec<u8>, b: &[u8], mut i: usize) -> usize {
    use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8, _mm_srli_si128, _mm_storeu_si128};
    while i + 16 <= b.len() {
        // Each half grows to at most 16 bytes.
        out.reserve(32);
        // SAFETY: b[i..i + 16] is in bounds; both stores land within the capacity reserved
        // above; the length grows only over bytes written here.
        unsafe {
            let v = _mm_loadu_si128(b.as_ptr().add(i).cast::<__m128i>());
            if _mm_movemask_epi8(not_quote_to_look_at(v)) != 0 {
                return i;
            }
            let quotes = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8))) as usize;
            let dst = out.as_mut_ptr().add(out.len());
            if quotes == 0 {
                _mm_storeu_si128(dst.cast::<__m128i>(), v);
                out.set_len(out.len() + 16);
            } else {
                let (low, high) = (quotes & 0xff, quotes >> 8);
                let low_len = 8 + low.count_ones() as usize;
                _mm_storeu_si128(dst.cast::<__m128i>(), with_backslashes(v, low));
                _mm_storeu_si128(dst.add(low_len).cast::<__m128i>(), with_backslashes(_mm_srli_si128::<8>(v), high));
                out.set_len(out.len() + low_len + 8 + high.count_ones() as usize);
            }
        }
        i += 16;
    }
    i
}

/// The bytes of `v` other than `"` that need a look: `\\`, DEL, control characters and bytes
/// that are not ASCII (these compare below the space, signed).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn not_quote_to_look_at(v: std::arch::x86_64::__m128i) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_or_si128, _mm_set1_epi8};
    let backslash_or_del = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8)), _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f)));
    _mm_or_si128(backslash_or_del, _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)))
}

/// The low eight bytes of `v` with a `\\` before each one whose bit is set in `quotes`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
fn with_backslashes(v: std::arch::x86_64::__m128i, quotes: usize) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::{__m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_or_si128, _mm_set1_epi8, _mm_shuffle_epi8};
    // SAFETY: the table row is 16 bytes.
    let shuffle = unsafe { _mm_loadu_si128(QUOTE_SHUFFLES[quotes & 0xff].as_ptr().cast::<__m128i>()) };
    let inserted = _mm_and_si128(_mm_cmpeq_epi8(shuffle, _mm_set1_epi8(INSERT as i8)), _mm_set1_epi8(b'\\' as i8));
    _mm_or_si128(_mm_shuffle_epi8(v, shuffle), inserted)
}

/// In [`QUOTE_SHUFFLES`]: an output byte that is an inserted `\\` (a shuffle writes it as 0).
#[cfg(target_arch = "x86_64")]
const INSERT: u8 = 0x80;

/// For each set of quote positions in eight bytes, where each output byte comes from.
#[cfg(target_arch = "x86_64")]
static QUOTE_SHUFFLES: [[u8; 16]; 256] = {
    let mut t = [[INSERT; 16]; 256];
    let mut quotes = 0;
    while quotes < 256 {
        let (mut k, mut j) = (0, 0);
        while k < 8 {
            if quotes >> k & 1 == 1 {
                j += 1;
            }
            t[quotes][j] = k as u8;
            j += 1;
            k += 1;
        }
        quotes += 1;
    }
    t
};

/// What [`escape_block`] did with its bytes.
#[cfg(target_arch = "x86_64")]
enum Block {
    /// This many bytes were written (their plain head and, if not all plain, one escaped byte).
    Took(usize),
    /// The plain bytes before this position were written; the byte there is not ASCII.
    NotAscii(usize),
}

/// Writes the plain head of the bytes `v` holds in its low `bytes.len()` (at most 16) lanes,
/// then escapes the byte that ends it. The block is stored whole and `out` advanced only past
/// its plain bytes, so a run between two `"` (JSON documents hold one every few bytes) costs
/// no call to `memcpy`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn escape_block(out: &mut Vec<u8>, v: std::arch::x86_64::__m128i, bytes: &[u8]) -> Block {
    use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_storeu_si128};
    let valid = bytes.len();
    debug_assert!(valid <= 16);
    // Room for the block's plain bytes (up to 16) and an escape's 8-byte store after them.
    out.reserve(16 + 8);
    // SAFETY: SSE2 is part of x86_64; both stores land within the capacity reserved above;
    // the length grows only over bytes written here.
    unsafe {
        let to_look_at = _mm_or_si128(not_quote_to_look_at(v), _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8)));
        // A stop bit just past the valid bytes: the first bit set ends the plain head.
        let mask = _mm_movemask_epi8(to_look_at) as u32 | (1 << valid);
        let plain = mask.trailing_zeros() as usize;
        _mm_storeu_si128(out.as_mut_ptr().add(out.len()).cast::<__m128i>(), v);
        out.set_len(out.len() + plain);
        if plain == valid {
            return Block::Took(plain);
        }
        let c = bytes[plain];
        if c >= 0x80 {
            return Block::NotAscii(plain);
        }
        let (len, text) = ASCII_ESCAPES[usize::from(c)];
        out.as_mut_ptr().add(out.len()).cast::<[u8; 8]>().write_unaligned(text);
        out.set_len(out.len() + usize::from(len));
        Block::Took(plain + 1)
    }
}

/// The JSON form of each ASCII byte that needs escaping (`"`, `\\`, control characters, DEL),
/// as a length and eight bytes written whole (unused entries are never read).
static ASCII_ESCAPES: [(u8, [u8; 8]); 128] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [(0u8, [0u8; 8]); 128];
    let mut c = 0;
    while c < 128 {
        t[c] = match c as u8 {
            b'"' => (2, *b"\\\"\0\0\0\0\0\0"),
            b'\\' => (4, *b"\\\\\\\\\0\0\0\0"),
            b'\n' => (3, *b"\\\\n\0\0\0\0\0"),
            b'\r' => (3, *b"\\\\r\0\0\0\0\0"),
            b'\t' => (3, *b"\\\\t\0\0\0\0\0"),
            0x07 => (3, *b"\\\\a\0\0\0\0\0"),
            0x08 => (3, *b"\\\\b\0\0\0\0\0"),
            byte => (5, [b'\\', b'\\', b'x', HEX[(byte >> 4) as usize], HEX[(byte & 15) as usize], 0, 0, 0]),
        };
        c += 1;
    }
    t
};

/// The JSON form of an ASCII byte that needs escaping (`"`, `\\`, a control character, DEL).
pub(super) fn ascii_escape(out: &mut Vec<u8>, c: u8) {
    let (len, text) = &ASCII_ESCAPES[usize::from(c & 0x7f)];
    out.extend_from_slice(&text[..usize::from(*len)]);
}

