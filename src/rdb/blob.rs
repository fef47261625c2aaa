//! Shared framing checks for the length-prefixed compact blobs (ziplist, listpack).

use super::string::{parse_f64, parse_i64};

/// Validates a blob whose first 4 bytes are its total size (u32 LE) and returns the u16 element
/// count stored at `count_at`; `header_len` is the header size plus the 0xFF terminator.
pub(crate) fn sized_header(
    buf: &[u8],
    name: &str,
    header_len: usize,
    count_at: usize,
) -> Result<u16, String> {
    if buf.len() < header_len {
        return Err(format!(
            "{name} of {} bytes is shorter than its header",
            buf.len()
        ));
    }
    let total = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if total != buf.len() {
        return Err(format!(
            "{name} header says {total} bytes but blob has {}",
            buf.len()
        ));
    }
    Ok(u16::from_le_bytes([buf[count_at], buf[count_at + 1]]))
}

/// Checks that the terminator at `pos` is the last byte and the declared count (unless the
/// 65535 "unknown" marker) matches what was decoded.
pub(crate) fn check_end(
    buf: &[u8],
    name: &str,
    pos: usize,
    declared: u16,
    found: usize,
) -> Result<(), String> {
    if pos + 1 != buf.len() {
        return Err(format!(
            "{name} has {} bytes after its terminator",
            buf.len() - pos - 1
        ));
    }
    if declared != u16::MAX && declared as usize != found {
        return Err(format!(
            "{name} header says {declared} elements, found {found}"
        ));
    }
    Ok(())
}

/// `buf[p..p + n]`, or an error saying the entry starting at `start` overruns the blob.
pub(crate) fn need<'a>(
    buf: &'a [u8],
    name: &str,
    start: usize,
    p: usize,
    n: usize,
) -> Result<&'a [u8], String> {
    p.checked_add(n)
        .and_then(|end| buf.get(p..end))
        .ok_or_else(|| format!("{name} entry at {start} overruns its buffer"))
}

/// The u16 element count at `count_at` as a capacity hint (0 when the blob is too short).
pub(crate) fn declared(buf: &[u8], count_at: usize) -> usize {
    buf.get(count_at..count_at + 2).map_or(0, |b| usize::from(u16::from_le_bytes([b[0], b[1]])))
}

/// The elements a walk over a blob hands out (`each`), as owned bytes; `hint` is the declared count.
pub(crate) fn collect<'a>(
    hint: usize,
    each: impl FnOnce(&mut dyn FnMut(Elem<'a>) -> Result<(), String>) -> Result<(), String>,
) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::with_capacity(hint.min(4096));
    each(&mut |e| {
        out.push(e.to_vec());
        Ok(())
    })?;
    Ok(out)
}

/// One element of a compact encoding, as it is stored: bytes, or an integer Redis shows as decimal text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Elem<'a> {
    Bytes(&'a [u8]),
    Int(i64),
}

impl Elem<'_> {
    /// The element's bytes (an integer as its decimal text).
    pub(crate) fn to_vec(self) -> Vec<u8> {
        match self {
            Elem::Bytes(b) => b.to_vec(),
            Elem::Int(i) => i.to_string().into_bytes(),
        }
    }

    /// The element as an integer, as the parser reads it from its decimal text.
    pub(crate) fn to_i64(self) -> Option<i64> {
        match self {
            Elem::Bytes(b) => parse_i64(b),
            Elem::Int(i) => Some(i),
        }
    }

    /// The element as a score, as the parser reads it from its decimal text.
    pub(crate) fn to_f64(self) -> Option<f64> {
        match self {
            Elem::Bytes(b) => parse_f64(b),
            // Both roundings are to the nearest double, so this is the parse of the decimal text.
            Elem::Int(i) => Some(i as f64),
        }
    }
}
