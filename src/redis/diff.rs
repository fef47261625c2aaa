//! `diff`: the keys added, removed and changed between two snapshots.
//!
//! The first snapshot is streamed into a map `(db, key) -> 16-byte digest` of the key's
//! serialized value (type byte + value bytes, as in the RDB) and its expiry; the second is
//! then streamed against that map. Memory: one entry per key of the first snapshot
//! (the key bytes plus about 64 bytes), never a value.
//!
//! Values are compared in their serialized form, so a value Redis re-encoded without
//! changing it (e.g. a hash that grew out of a listpack and shrank back) shows as changed.

use std::collections::HashMap;

use serde::Serialize;

use crate::error::Result;
use crate::redis::keyscan::{scan_snapshot, KeyFilter};
use crate::rdb::{ReadOptions, Record};
use crate::engine::restore::Blobs;
use crate::format::snapshot::Snapshot;

/// How a key differs between the two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Only in the second snapshot.
    Added,
    /// Only in the first snapshot.
    Removed,
    /// In both, with another value, type or expiry.
    Changed,
}

/// One differing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub db: u64,
    pub key: Vec<u8>,
}

/// How many keys fell in each class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiffCounts {
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    pub unchanged: u64,
}

/// 16-byte digest of a record's serialized value and expiry (needs `capture_raw`).
pub fn digest(rec: &Record) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(&(rec.raw.len() as u64).to_le_bytes());
    h.update(&rec.raw);
    match rec.expire_ms {
        Some(at) => h.update(&[1]).update(&at.to_le_bytes()),
        None => h.update(&[0]),
    };
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// Compares the keys of `old` and `new` that pass `filter`; calls `each` for every
/// difference (added and changed in the order of `new`, then removed sorted by db and key).
pub fn diff(
    blobs: &Blobs<'_>,
    old: &Snapshot,
    new: &Snapshot,
    filter: &KeyFilter,
    mut each: impl FnMut(Change) -> Result<()>,
) -> Result<DiffCounts> {
    let mut before: HashMap<(u64, Vec<u8>), [u8; 16]> = HashMap::new();
    scan_snapshot(blobs, old, ReadOptions::raw_only(), filter, |_, rec| {
        let d = digest(&rec);
        before.insert((rec.db, rec.key), d);
        Ok(())
    })?;
    let mut counts = DiffCounts::default();
    scan_snapshot(blobs, new, ReadOptions::raw_only(), filter, |_, rec| {
        let d = digest(&rec);
        let kind = match before.remove(&(rec.db, rec.key.clone())) {
            None => ChangeKind::Added,
            Some(old) if old != d => ChangeKind::Changed,
            Some(_) => {
                counts.unchanged += 1;
                return Ok(());
            }
        };
        match kind {
            ChangeKind::Added => counts.added += 1,
            _ => counts.changed += 1,
        }
        each(Change { kind, db: rec.db, key: rec.key })
    })?;
    let mut removed: Vec<(u64, Vec<u8>)> = before.into_keys().collect();
    removed.sort();
    counts.removed = removed.len() as u64;
    for (db, key) in removed {
        each(Change { kind: ChangeKind::Removed, db, key })?;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::{Value, ValueKind};

    fn rec(raw: &[u8], expire_ms: Option<u64>) -> Record {
        Record {
            db: 0,
            key: b"k".to_vec(),
            kind: ValueKind::String,
            rdb_type: 0,
            encoding: "raw",
            expire_ms,
            idle: None,
            freq: None,
            value: Value::NotDecoded,
            raw: raw.to_vec(),
            serialized_len: raw.len() as u64,
            offset: 0,
        }
    }

    #[test]
    fn digest_covers_value_and_expiry() {
        let a = digest(&rec(b"\x00\x01a", None));
        assert_eq!(a, digest(&rec(b"\x00\x01a", None)));
        assert_ne!(a, digest(&rec(b"\x00\x01b", None)));
        assert_ne!(a, digest(&rec(b"\x00\x01a", Some(5))));
        assert_ne!(digest(&rec(b"\x00\x01a", Some(5))), digest(&rec(b"\x00\x01a", Some(6))));
    }
}
