//! A set of indexed blobs as one bit per entry of the index: the blobs prune keeps of a
//! repository of 8 M blobs take 1 MB, where a hash set of their ids took ~550 MB.

use crate::crypto::Id;
use crate::format::index::Index;
use crate::format::pack::BlobEntry;

/// Blobs of one [`Index`], which it borrows so that no insert moves its entries.
pub struct BlobSet<'i> {
    index: &'i Index,
    bits: Vec<u64>,
    len: usize,
}

impl<'i> BlobSet<'i> {
    /// The empty set.
    pub fn new(index: &'i Index) -> Self {
        BlobSet { index, bits: vec![0; index.len().div_ceil(64)], len: 0 }
    }

    /// Adds `id`: `Some(true)` if it was not in the set, `Some(false)` if it was, `None` if
    /// the index does not hold it (it cannot be added).
    pub fn insert(&mut self, id: &Id) -> Option<bool> {
        let pos = self.index.position(id)?;
        let (word, bit) = (pos / 64, 1u64 << (pos % 64));
        let fresh = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        self.len += fresh as usize;
        Some(fresh)
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: &Id) -> bool {
        self.index.position(id).is_some_and(|pos| self.bits[pos / 64] & (1 << (pos % 64)) != 0)
    }

    /// Number of blobs in the set.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every blob of the set with its pack, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (Id, BlobEntry)> + '_ {
        let words = self.bits.iter().enumerate().filter(|(_, w)| **w != 0);
        words.flat_map(move |(i, &w)| (0..64).filter(move |b| w & (1 << b) != 0).filter_map(move |b| self.index.at(i * 64 + b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::BlobType;

    fn entry(n: u8) -> BlobEntry {
        let mut id = [0u8; 32];
        id[0] = n.wrapping_mul(37);
        id[31] = n;
        BlobEntry { id: Id(id), kind: BlobType::Data, flags: 0, offset: n as u32 * 100, length: 90, raw_len: 80, inner: 0, frame_len: 80 }
    }

    #[test]
    fn holds_what_was_inserted_and_nothing_the_index_lacks() {
        let mut index = Index::new();
        for n in 0..150u8 {
            index.insert(Id([n; 32]), entry(n));
        }
        index.finish();
        let mut set = BlobSet::new(&index);
        assert!(set.is_empty());
        for n in (0..150u8).step_by(3) {
            assert_eq!(set.insert(&entry(n).id), Some(true));
        }
        assert_eq!(set.insert(&entry(3).id), Some(false));
        assert_eq!(set.insert(&Id([0xEE; 32])), None);
        assert_eq!(set.len(), 50);
        for n in 0..150u8 {
            assert_eq!(set.contains(&entry(n).id), n % 3 == 0, "blob {n}");
        }
        let mut got: Vec<u8> = set
            .iter()
            .map(|(pack, e)| {
                assert_eq!(pack, Id([e.id.0[31]; 32]), "each blob comes with its own pack");
                e.id.0[31]
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..150u8).step_by(3).collect::<Vec<_>>());
        let (_, e) = set.iter().find(|(_, e)| e.id.0[31] == 42).expect("blob 42");
        assert_eq!(e.offset, 4200);
    }
}
