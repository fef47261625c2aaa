//! A file's ordered chunk ids, stored as a two-level tree of chunk-list blobs.
//!
//! Leaves hold chunk ids (`id [32]*`), ~16 each, cut after an id whose first two
//! bytes, masked, are zero (or after MAX_LEAF_IDS); top blobs hold leaf ids
//! (`"RVLT" || leaf id [32]*`), ~64 each, cut the same way by the leaf ids. The
//! snapshot names the top blobs. A 1% change rewrites the few leaves that hold a
//! changed id plus the top blobs (2 bytes per chunk), instead of every 32 KiB
//! flat list around a change. Older snapshots name flat lists (`id [32]*`,
//! ~1024 ids): a top blob's length is 4 more than a multiple of 32, a flat
//! list's or leaf's a multiple, so both read through [`parse_any`].

use crate::crypto::Id;
use crate::error::{Error, Result};

/// Marks a top blob (a list of leaf ids).
pub const TOP_MAGIC: &[u8; 4] = b"RVLT";
/// Average ids per leaf is LEAF_MASK + 1 (16 ids = 512 bytes).
const LEAF_MASK: u16 = 0x000F;
/// Hard upper bound of ids per leaf.
pub const MAX_LEAF_IDS: usize = 256;
/// Average leaves per top blob is TOP_MASK + 1 (64 leaves, ~1024 chunks).
const TOP_MASK: u16 = 0x003F;
/// Hard upper bound of leaves per top blob.
pub const MAX_TOP_IDS: usize = 1024;

/// Whether `id` ends a run under `mask`.
fn cuts(id: &Id, mask: u16) -> bool {
    u16::from_le_bytes([id.0[0], id.0[1]]) & mask == 0
}

/// Collects chunk ids into leaves and leaf ids into top blobs. `store` hashes and
/// stores each finished list blob (leaf or top) and returns its id.
#[derive(Default)]
pub struct TreeBuilder {
    leaf: Vec<u8>,
    top: Vec<u8>,
}

impl TreeBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        TreeBuilder::default()
    }

    /// Adds the next chunk id; returns the id of a top blob finished by it.
    pub fn push<E>(&mut self, id: &Id, store: &mut impl FnMut(Vec<u8>) -> std::result::Result<Id, E>) -> std::result::Result<Option<Id>, E> {
        self.leaf.extend_from_slice(&id.0);
        if cuts(id, LEAF_MASK) || self.leaf.len() >= MAX_LEAF_IDS * 32 {
            return self.close_leaf(store);
        }
        Ok(None)
    }

    /// Stores what remains; returns the id of the last top blob, if any ids remain.
    pub fn finish<E>(&mut self, store: &mut impl FnMut(Vec<u8>) -> std::result::Result<Id, E>) -> std::result::Result<Option<Id>, E> {
        if !self.leaf.is_empty() {
            if let Some(top) = self.close_leaf(store)? {
                return Ok(Some(top));
            }
        }
        if self.top.is_empty() {
            return Ok(None);
        }
        store(std::mem::take(&mut self.top)).map(Some)
    }

    fn close_leaf<E>(&mut self, store: &mut impl FnMut(Vec<u8>) -> std::result::Result<Id, E>) -> std::result::Result<Option<Id>, E> {
        let leaf = store(std::mem::take(&mut self.leaf))?;
        if self.top.is_empty() {
            self.top.extend_from_slice(TOP_MAGIC);
        }
        self.top.extend_from_slice(&leaf.0);
        if cuts(&leaf, TOP_MASK) || self.top.len() >= TOP_MAGIC.len() + MAX_TOP_IDS * 32 {
            return store(std::mem::take(&mut self.top)).map(Some);
        }
        Ok(None)
    }

    /// Whether ids were pushed since the last finished top blob.
    pub fn open(&self) -> bool {
        !self.leaf.is_empty() || !self.top.is_empty()
    }
}

/// Splits a flat list or leaf's plaintext into ids; `None` if its length is not a multiple of 32.
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

/// What a list blob named by a snapshot holds.
#[derive(Debug, PartialEq)]
pub enum ListBlob {
    /// Chunk ids (a flat list of an older backup).
    Flat(Vec<Id>),
    /// Leaf ids (a top blob), each leaf a list of chunk ids.
    Top(Vec<Id>),
}

/// Parses a list blob a snapshot names: a top blob or a flat list; `what` names it in errors.
pub fn parse_any(plain: &[u8], what: &str) -> Result<ListBlob> {
    if let Some(rest) = plain.strip_prefix(TOP_MAGIC.as_slice()).filter(|r| r.len() % 32 == 0 && !r.is_empty()) {
        return Ok(ListBlob::Top(parse_list(rest).unwrap_or_default()));
    }
    parse_list(plain).map(ListBlob::Flat).ok_or_else(|| Error::corrupt(what, "chunk list length is not a multiple of 32"))
}

/// Parses a leaf (a list of chunk ids named by a top blob); `what` names it in errors.
pub fn parse_leaf(plain: &[u8], what: &str) -> Result<Vec<Id>> {
    parse_list(plain).ok_or_else(|| Error::corrupt(what, "chunk-list leaf length is not a multiple of 32 (a top blob where a leaf belongs?)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u32) -> Vec<Id> {
        (0..n).map(|i| Id(*blake3::hash(&i.to_le_bytes()).as_bytes())).collect()
    }

    #[test]
    fn tree_round_trips_and_a_change_touches_one_leaf() {
        let build = |ids: &[Id]| {
            let mut blobs: std::collections::HashMap<Id, Vec<u8>> = std::collections::HashMap::new();
            let mut tops = Vec::new();
            let mut store = |b: Vec<u8>| -> std::result::Result<Id, ()> {
                let id = Id(*blake3::hash(&b).as_bytes());
                blobs.insert(id, b);
                Ok(id)
            };
            let mut t = TreeBuilder::new();
            for id in ids {
                tops.extend(t.push(id, &mut store).unwrap());
            }
            tops.extend(t.finish(&mut store).unwrap());
            (tops, blobs)
        };
        let mut a = ids(20_000);
        let (tops, blobs) = build(&a);
        let mut back = Vec::new();
        for top in &tops {
            let ListBlob::Top(leaves) = parse_any(&blobs[top], "t").unwrap() else { panic!("a top blob") };
            for l in leaves {
                back.extend(parse_leaf(&blobs[&l], "t").unwrap());
            }
        }
        assert_eq!(back, a);
        assert!(tops.len() > 5);
        a[10_000] = Id([9; 32]);
        let (_, changed) = build(&a);
        let new: Vec<&Vec<u8>> = changed.iter().filter(|(id, _)| !blobs.contains_key(*id)).map(|(_, b)| b).collect();
        let new_leaves = new.iter().filter(|b| !b.starts_with(TOP_MAGIC)).count();
        assert!(new_leaves <= 2 && new.len() <= 4, "{} new blobs, {new_leaves} leaves", new.len());
        assert!(parse_any(&[0u8; 33], "t").is_err());
        assert!(parse_list(&[0u8; 31]).is_none());
        assert_eq!(parse_any(&[0u8; 32], "t").unwrap(), ListBlob::Flat(vec![Id([0; 32])]));
    }
}
