//! A file's ordered chunk ids, stored as chunk-list blobs.
//!
//! The list is cut into blobs at content-defined points (after an id whose
//! first two bytes, masked, are zero, or after MAX_IDS ids), so an unchanged
//! stretch of a file yields the same list blobs in the next backup and is
//! stored once. Memory stays bounded: only the current blob's ids are held.

use crate::crypto::Id;

/// Average ids per list blob is LIST_MASK + 1 (1024 ids = 32 KiB).
const LIST_MASK: u16 = 0x03FF;
/// Hard upper bound of ids per list blob (256 KiB).
pub const MAX_IDS: usize = 8192;

/// Collects chunk ids and hands out finished list blobs.
#[derive(Default)]
pub struct ListBuilder {
    cur: Vec<u8>,
}

impl ListBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        ListBuilder::default()
    }

    /// Adds the next chunk id; returns a finished list blob when a cut point is reached.
    pub fn push(&mut self, id: &Id) -> Option<Vec<u8>> {
        self.cur.extend_from_slice(&id.0);
        let boundary = u16::from_le_bytes([id.0[0], id.0[1]]) & LIST_MASK == 0;
        if boundary || self.cur.len() >= MAX_IDS * 32 {
            Some(std::mem::take(&mut self.cur))
        } else {
            None
        }
    }

    /// The last, partial list blob, if any ids remain.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if self.cur.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.cur))
        }
    }
}

/// Splits a list blob's plaintext into ids; `None` if its length is not a multiple of 32.
pub fn parse_list(plain: &[u8]) -> Option<Vec<Id>> {
    if plain.len() % 32 != 0 {
        return None;
    }
    Some(
        plain
            .chunks_exact(32)
            .map(|c| {
                let mut id = [0u8; 32];
                id.copy_from_slice(c);
                Id(id)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_and_are_bounded() {
        let mut b = ListBuilder::new();
        let mut out = Vec::new();
        let ids: Vec<Id> = (0..20_000u32).map(|i| Id(*blake3::hash(&i.to_le_bytes()).as_bytes())).collect();
        for id in &ids {
            if let Some(blob) = b.push(id) {
                assert!(blob.len() <= MAX_IDS * 32);
                out.push(blob);
            }
        }
        out.extend(b.finish());
        assert!(out.len() > 5, "content-defined cuts happen");
        let back: Vec<Id> = out.iter().flat_map(|b| parse_list(b).unwrap()).collect();
        assert_eq!(back, ids);
        assert!(parse_list(&[0u8; 31]).is_none());
    }
}
