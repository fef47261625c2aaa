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
//!
//! An incremental backup stores its list as delta pieces instead (`"RVLD"`, see
//! [`Delta`]): each names the base file's list blobs it draws from and says, per stretch
//! of ~1024 chunks, which runs of their ids it keeps and which new ids come between. A
//! 1% change then stores its ~2% new ids and a few bytes a run, not every leaf a new id
//! falls into. A piece's length is never a multiple of 32, so an older rdbvault refuses
//! it as a damaged list rather than reading it as ids.

use crate::crypto::Id;
use crate::error::{Error, Result};
use crate::format::varint::{put_varint, Cursor};

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
    /// Runs of a base's lists and new ids between them.
    Delta(Delta),
}

/// Parses a list blob a snapshot names: a top blob, a delta piece or a flat list; `what`
/// names it in errors.
pub fn parse_any(plain: &[u8], what: &str) -> Result<ListBlob> {
    if let Some(rest) = plain.strip_prefix(TOP_MAGIC.as_slice()).filter(|r| r.len() % 32 == 0 && !r.is_empty()) {
        return Ok(ListBlob::Top(parse_list(rest).unwrap_or_default()));
    }
    if plain.starts_with(DELTA_MAGIC) && plain.len() % 32 != 0 {
        return Delta::decode(plain).map(ListBlob::Delta).ok_or_else(|| Error::corrupt(what, "chunk-list delta is truncated or malformed"));
    }
    parse_list(plain).map(ListBlob::Flat).ok_or_else(|| Error::corrupt(what, "chunk list length is not a multiple of 32"))
}

/// Parses a leaf (a list of chunk ids named by a top blob); `what` names it in errors.
pub fn parse_leaf(plain: &[u8], what: &str) -> Result<Vec<Id>> {
    parse_list(plain).ok_or_else(|| Error::corrupt(what, "chunk-list leaf length is not a multiple of 32 (a top blob where a leaf belongs?)"))
}

/// Marks a delta piece.
pub const DELTA_MAGIC: &[u8; 4] = b"RVLD";
/// Chunks a delta piece lists: about a top blob's, so a restore's windows stay the same size.
pub const DELTA_PIECE_CHUNKS: usize = 1024;

/// One stretch of a delta piece's chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `count` ids of base list `base` (an index into [`Delta::bases`]) from its id `skip` on.
    Keep { base: u32, skip: u32, count: u32 },
    /// The next `count` of [`Delta::new`].
    New { count: u32 },
}

/// A delta piece: its chunk ids are the ops' stretches in order. A base is a top blob or a
/// flat list, never another delta, so a piece resolves in one step.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// The base file's list blobs this piece draws from.
    pub bases: Vec<Id>,
    pub ops: Vec<Op>,
    /// Ids no base holds here, in order.
    pub new: Vec<Id>,
}

impl Delta {
    /// Chunks the piece lists.
    pub fn chunks(&self) -> usize {
        let count = |op: &Op| match *op {
            Op::Keep { count, .. } | Op::New { count } => count as usize,
        };
        self.ops.iter().map(count).sum()
    }

    /// Appends `count` ids of `base` from `skip` on, extending the last op when it continues there.
    pub fn keep(&mut self, base: Id, skip: u32) {
        let b = match self.bases.iter().position(|x| *x == base) {
            Some(b) => b as u32,
            None => {
                self.bases.push(base);
                self.bases.len() as u32 - 1
            }
        };
        if let Some(Op::Keep { base: lb, skip: ls, count }) = self.ops.last_mut() {
            if *lb == b && *ls + *count == skip {
                *count += 1;
                return;
            }
        }
        self.ops.push(Op::Keep { base: b, skip, count: 1 });
    }

    /// Appends a new id.
    pub fn add(&mut self, id: Id) {
        self.new.push(id);
        if let Some(Op::New { count }) = self.ops.last_mut() {
            *count += 1;
            return;
        }
        self.ops.push(Op::New { count: 1 });
    }

    /// `"RVLD"`, the bases (count, ids), the ops (count; each `count << 1 | keep`, then
    /// for a keep its base and skip), the new ids; one zero byte if the length would
    /// otherwise be a multiple of 32.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 32 * (self.bases.len() + self.new.len()) + 6 * self.ops.len());
        out.extend_from_slice(DELTA_MAGIC);
        put_varint(&mut out, self.bases.len() as u64);
        for b in &self.bases {
            out.extend_from_slice(&b.0);
        }
        put_varint(&mut out, self.ops.len() as u64);
        for op in &self.ops {
            match *op {
                Op::Keep { base, skip, count } => {
                    put_varint(&mut out, u64::from(count) << 1 | 1);
                    put_varint(&mut out, u64::from(base));
                    put_varint(&mut out, u64::from(skip));
                }
                Op::New { count } => put_varint(&mut out, u64::from(count) << 1),
            }
        }
        for id in &self.new {
            out.extend_from_slice(&id.0);
        }
        if out.len() % 32 == 0 {
            out.push(0);
        }
        out
    }

    /// Parses a piece; `None` if it is malformed (counts that disagree, bytes left over).
    pub fn decode(plain: &[u8]) -> Option<Delta> {
        let mut c = Cursor { b: plain, at: DELTA_MAGIC.len() };
        let id = |c: &mut Cursor<'_>| -> Option<Id> { Some(Id(c.bytes(32)?.try_into().ok()?)) };
        let n = usize::try_from(c.varint()?).ok()?;
        // Counts beyond what the bytes could hold are damage, not sizes to allocate.
        let mut bases = Vec::with_capacity(n.min(plain.len() / 32));
        for _ in 0..n {
            bases.push(id(&mut c)?);
        }
        let n = usize::try_from(c.varint()?).ok()?;
        let mut ops = Vec::with_capacity(n.min(plain.len()));
        let mut new_ids = 0u64;
        for _ in 0..n {
            let v = c.varint()?;
            let count = u32::try_from(v >> 1).ok().filter(|&n| n > 0)?;
            if v & 1 == 1 {
                let base = u32::try_from(c.varint()?).ok().filter(|&b| (b as usize) < bases.len())?;
                let skip = u32::try_from(c.varint()?).ok()?;
                ops.push(Op::Keep { base, skip, count });
            } else {
                new_ids += u64::from(count);
                ops.push(Op::New { count });
            }
        }
        let mut new = Vec::with_capacity((new_ids as usize).min(plain.len() / 32));
        for _ in 0..new_ids {
            new.push(id(&mut c)?);
        }
        let rest = &plain[c.at..];
        (rest.is_empty() || (rest == [0] && c.at % 32 == 0)).then_some(Delta { bases, ops, new })
    }

    /// The chunk ids, given each base's ids (`base_ids[i]` for `bases[i]`); `what` names the
    /// piece in errors.
    pub fn expand(&self, base_ids: &[&[Id]], what: &str) -> Result<Vec<Id>> {
        // The counts come from the repository: what they claim is not a size to allocate.
        let mut out = Vec::with_capacity(self.chunks().min(4 * DELTA_PIECE_CHUNKS));
        let mut new = self.new.iter();
        for op in &self.ops {
            match *op {
                Op::Keep { base, skip, count } => {
                    let ids = base_ids.get(base as usize).copied().unwrap_or_default();
                    let (start, end) = (skip as usize, skip as usize + count as usize);
                    let run = ids.get(start..end).ok_or_else(|| {
                        Error::corrupt(what, format!("keeps ids {start}..{end} of base list {}, which holds {}", self.bases[base as usize].to_hex(), ids.len()))
                    })?;
                    out.extend_from_slice(run);
                }
                Op::New { count } => out.extend(new.by_ref().take(count as usize)),
            }
        }
        Ok(out)
    }
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

    #[test]
    fn a_delta_round_trips_and_expands_against_its_bases() {
        let base = ids(40);
        let (a, b) = (Id([1; 32]), Id([2; 32]));
        let mut d = Delta::default();
        for skip in 0..10 {
            d.keep(a, skip);
        }
        d.add(base[39]);
        d.add(base[38]);
        for skip in 12..20 {
            d.keep(a, skip);
        }
        d.keep(b, 0);
        assert_eq!(d.ops, vec![Op::Keep { base: 0, skip: 0, count: 10 }, Op::New { count: 2 }, Op::Keep { base: 0, skip: 12, count: 8 }, Op::Keep { base: 1, skip: 0, count: 1 }]);
        assert_eq!(d.chunks(), 21);
        let plain = d.encode();
        assert_ne!(plain.len() % 32, 0);
        let ListBlob::Delta(back) = parse_any(&plain, "t").unwrap() else { panic!("a delta") };
        assert_eq!(back, d);
        let got = back.expand(&[&base[..20], &base[20..21]], "t").unwrap();
        let want: Vec<Id> = base[..10].iter().chain(&[base[39], base[38]]).chain(&base[12..21]).copied().collect();
        assert_eq!(got, want);
        // A base shorter than the piece says is damage, named.
        let e = back.expand(&[&base[..15], &base[20..21]], "piece x").unwrap_err().to_string();
        assert!(e.contains("piece x") && e.contains("12..20"), "{e}");
        // Truncated or padded wrongly: refused, never read as ids.
        for cut in [5, plain.len() - 1] {
            assert!(parse_any(&plain[..cut], "t").is_err() || Delta::decode(&plain[..cut]).is_none());
        }
        let mut long = plain.clone();
        long.extend_from_slice(&[0, 0]);
        assert!(Delta::decode(&long).is_none());
    }

    #[test]
    fn a_delta_whose_length_would_be_a_multiple_of_32_gets_one_pad_byte() {
        // Find a piece whose encoding lands on a multiple of 32 before the pad.
        for n in 0..40u8 {
            let mut d = Delta::default();
            for i in 0..n {
                d.add(Id([i; 32]));
            }
            d.keep(Id([9; 32]), 3);
            let plain = d.encode();
            assert_ne!(plain.len() % 32, 0);
            assert_eq!(Delta::decode(&plain).as_ref(), Some(&d));
        }
    }
}
