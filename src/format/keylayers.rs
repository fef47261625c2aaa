//! The bytes of a layered key index (see `redis::keyindex` for the design): the chunk facts a
//! full index keeps so later backups can line their chunks up with its file, and the runs a
//! layered index keeps to move its base's entries to the new file's offsets.

use crate::crypto::Id;
use crate::error::{Error, Result};
use crate::format::varint::{put_varint, Cursor};

/// Magic of a chunk-facts piece's plaintext.
const FACTS_MAGIC: &[u8; 4] = b"RVC1";
/// Magic of a runs blob's plaintext.
const RUNS_MAGIC: &[u8; 4] = b"RVR1";
/// Chunks per chunk-facts piece: ~10 MiB of a file at ~2.4 KiB a chunk, ~50 KiB of facts.
pub const FACTS_PER_PIECE: usize = 4096;

/// One chunk of a file, in file order: what a later backup needs to tell whether its own
/// chunk is this one and whether both files' records start there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkFact {
    /// The chunk id's first 8 bytes (ids are keyed hashes: no one can aim at a match).
    pub lead: u64,
    pub len: u32,
    /// A key's record (its first opcode) starts at the chunk's first byte...
    pub starts_record: bool,
    /// ...in this database.
    pub db: u64,
}

/// The lead of a chunk id, as [`ChunkFact::lead`] holds it.
pub fn lead(id: &Id) -> u64 {
    u64::from_le_bytes([id.0[0], id.0[1], id.0[2], id.0[3], id.0[4], id.0[5], id.0[6], id.0[7]])
}

/// A chunk-facts piece's plaintext: the count, then per chunk its lead (8 bytes), length
/// and `db << 1 | starts_record` (varints).
pub fn encode_facts(facts: &[ChunkFact]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + facts.len() * 12);
    out.extend_from_slice(FACTS_MAGIC);
    put_varint(&mut out, facts.len() as u64);
    for f in facts {
        out.extend_from_slice(&f.lead.to_le_bytes());
        put_varint(&mut out, u64::from(f.len));
        put_varint(&mut out, f.db << 1 | u64::from(f.starts_record));
    }
    out
}

/// Decodes a chunk-facts piece; `what` names it in the error.
pub fn decode_facts(plain: &[u8], what: &str) -> Result<Vec<ChunkFact>> {
    let bad = || Error::corrupt(what, "chunk facts are truncated or of an unknown format");
    if !plain.starts_with(FACTS_MAGIC) {
        return Err(bad());
    }
    let mut c = Cursor { b: plain, at: FACTS_MAGIC.len() };
    let facts = (|| {
        let n = usize::try_from(c.varint()?).ok()?;
        // Each takes at least 10 bytes: a count beyond that is damage, not a size to allocate.
        let mut out = Vec::with_capacity(n.min(plain.len() / 10));
        for _ in 0..n {
            let lead = c.u64_le()?;
            let len = u32::try_from(c.varint()?).ok()?;
            let code = c.varint()?;
            out.push(ChunkFact { lead, len, starts_record: code & 1 == 1, db: code >> 1 });
        }
        (c.at == plain.len()).then_some(out)
    })();
    facts.ok_or_else(bad)
}

/// A stretch of the new file whose bytes are those of a stretch of the base's file, and whose
/// records both parses start alike: the base's records wholly inside it are the new file's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Offset in the new file.
    pub new: u64,
    /// Offset in the base's file.
    pub base: u64,
    pub len: u64,
}

/// A layered index's runs, in file order of both files (the base's offsets increase too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runs(pub Vec<Run>);

impl Runs {
    /// The blob's plaintext: the count, then per run the gaps since the previous run's end
    /// in each file and its length (varints).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = RUNS_MAGIC.to_vec();
        put_varint(&mut out, self.0.len() as u64);
        let (mut new_end, mut base_end) = (0u64, 0u64);
        for r in &self.0 {
            put_varint(&mut out, r.new - new_end);
            put_varint(&mut out, r.base - base_end);
            put_varint(&mut out, r.len);
            (new_end, base_end) = (r.new + r.len, r.base + r.len);
        }
        out
    }

    /// Decodes the blob; `what` names it in the error. Runs that overlap or go back in
    /// either file are damage.
    pub fn decode(plain: &[u8], what: &str) -> Result<Runs> {
        let bad = || Error::corrupt(what, "key index runs are truncated or of an unknown format");
        if !plain.starts_with(RUNS_MAGIC) {
            return Err(bad());
        }
        let mut c = Cursor { b: plain, at: RUNS_MAGIC.len() };
        let runs = (|| {
            let n = usize::try_from(c.varint()?).ok()?;
            let mut out = Vec::with_capacity(n.min(plain.len() / 3));
            let (mut new_end, mut base_end) = (0u64, 0u64);
            for _ in 0..n {
                let new = new_end.checked_add(c.varint()?)?;
                let base = base_end.checked_add(c.varint()?)?;
                let len = c.varint()?;
                (new_end, base_end) = (new.checked_add(len)?, base.checked_add(len)?);
                out.push(Run { new, base, len });
            }
            (c.at == plain.len()).then_some(Runs(out))
        })();
        runs.ok_or_else(bad)
    }

    /// Where the base's record at `offset` of `len` bytes lies in the new file: `None` when
    /// it is not wholly inside a run (the key changed, moved or went).
    pub fn shift(&self, offset: u64, len: u64) -> Option<u64> {
        let i = self.0.partition_point(|r| r.base <= offset).checked_sub(1)?;
        let r = &self.0[i];
        (offset.checked_add(len)? <= r.base + r.len).then(|| offset - r.base + r.new)
    }

    /// Bytes of the new file the runs cover.
    pub fn bytes(&self) -> u64 {
        self.0.iter().map(|r| r.len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_round_trip_and_refuse_damage() {
        let facts = vec![
            ChunkFact { lead: 0x0102_0304_0506_0708, len: 2400, starts_record: true, db: 0 },
            ChunkFact { lead: u64::MAX, len: 1, starts_record: false, db: 15 },
            ChunkFact { lead: 0, len: u32::MAX, starts_record: true, db: 1 << 40 },
        ];
        let plain = encode_facts(&facts);
        assert_eq!(decode_facts(&plain, "t").unwrap(), facts);
        for cut in 0..plain.len() {
            assert!(decode_facts(&plain[..cut], "t").is_err(), "truncated at {cut}");
        }
        let mut long = plain.clone();
        long.push(0);
        assert!(decode_facts(&long, "t").is_err());
    }

    #[test]
    fn runs_round_trip_shift_and_refuse_damage() {
        let runs = Runs(vec![Run { new: 10, base: 10, len: 100 }, Run { new: 150, base: 120, len: 50 }, Run { new: 300, base: 400, len: 5 }]);
        let plain = runs.encode();
        assert_eq!(Runs::decode(&plain, "t").unwrap(), runs);
        for cut in 0..plain.len() {
            assert!(Runs::decode(&plain[..cut], "t").is_err(), "truncated at {cut}");
        }
        // Wholly inside: moved by the run's shift; across an end or before the first: none.
        assert_eq!(runs.shift(10, 100), Some(10));
        assert_eq!(runs.shift(125, 10), Some(155));
        assert_eq!(runs.shift(400, 5), Some(300));
        assert_eq!(runs.shift(105, 10), None);
        assert_eq!(runs.shift(0, 5), None);
        assert_eq!(runs.shift(165, 10), None);
        assert_eq!(runs.shift(404, 2), None);
        assert_eq!(runs.bytes(), 155);
    }
}
