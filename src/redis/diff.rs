//! `diff`: the keys added, removed and changed between two snapshots, and what changed.
//!
//! The first snapshot is streamed into a map `(db, key) -> ` (16-byte digest of the key's
//! value, type, encoding, expiry); the second is then streamed against that map. Memory:
//! one entry per key of the first snapshot (the key bytes plus about 64 bytes) and one per
//! difference (they are reported sorted by db and key), never a whole value beyond the
//! one being read.
//!
//! Values are compared as Redis sees them (decoded; set members, hash fields and zset
//! members in any order), so a value Redis re-encoded without changing it (a hash that
//! grew out of a listpack) is told apart from a changed one: [`ChangeKind::Reencoded`].

use std::collections::HashMap;

use serde::Serialize;

use crate::error::Result;
use crate::redis::keyscan::{scan_file, KeyFilter, KeyRef};
use crate::rdb::{value_to_json, ReadOptions, Record, Value};
use crate::engine::restore::Blobs;
use crate::format::snapshot::SnapshotFile;

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
    /// In both with the same value, type and expiry, stored in another encoding.
    Reencoded,
}

/// What a key looked like in one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KeyState {
    /// `TYPE` name.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `OBJECT ENCODING` name.
    pub encoding: &'static str,
    /// Absolute expiry in Unix milliseconds.
    pub expire_at_ms: Option<u64>,
}

/// One differing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub key: KeyRef,
    /// In the first snapshot (`None` when added).
    pub old: Option<KeyState>,
    /// In the second snapshot (`None` when removed).
    pub new: Option<KeyState>,
    /// Whether the value itself differs (a type change is one too).
    pub value_changed: bool,
}

impl Change {
    /// What changed, in words scripts can match: `type`, `value`, `ttl`, `encoding`
    /// (empty for added and removed keys).
    pub fn what(&self) -> Vec<&'static str> {
        let (Some(o), Some(n)) = (&self.old, &self.new) else { return Vec::new() };
        let mut w = Vec::new();
        if o.kind != n.kind {
            w.push("type");
        }
        if self.value_changed {
            w.push("value");
        }
        if o.expire_at_ms != n.expire_at_ms {
            w.push("ttl");
        }
        if o.encoding != n.encoding {
            w.push("encoding");
        }
        w
    }
}

/// How many keys fell in each class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiffCounts {
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    /// Same data in another encoding: not a difference.
    pub reencoded: u64,
    pub unchanged: u64,
}

impl DiffCounts {
    /// Keys whose data differs (added, removed or changed).
    pub fn differences(&self) -> u64 {
        self.added + self.removed + self.changed
    }
}

/// What the map keeps of a key of the first snapshot.
struct Seen {
    digest: [u8; 16],
    state: KeyState,
}

fn state(rec: &Record) -> KeyState {
    KeyState { kind: rec.kind.as_str(), encoding: rec.encoding, expire_at_ms: rec.expire_ms }
}

/// 16-byte digest of a record's value as Redis sees it: its type and decoded contents,
/// unordered collections sorted; module values (not decodable) by their serialized bytes.
/// Needs decoded values, and `capture_raw` for module values.
pub fn digest(rec: &Record) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    let put = |h: &mut blake3::Hasher, b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    h.update(rec.kind.as_str().as_bytes());
    match &rec.value {
        Value::String(s) => put(&mut h, s),
        Value::List(items) => items.iter().for_each(|i| put(&mut h, i)),
        Value::Set(items) => {
            let mut sorted: Vec<&Vec<u8>> = items.iter().collect();
            sorted.sort();
            sorted.into_iter().for_each(|i| put(&mut h, i));
        }
        Value::SortedSet(items) => {
            let mut sorted: Vec<&(Vec<u8>, f64)> = items.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            for (m, score) in sorted {
                put(&mut h, m);
                h.update(&score.to_bits().to_le_bytes());
            }
        }
        Value::Hash(fields) => {
            let mut sorted: Vec<_> = fields.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            for (f, v, ttl) in sorted {
                put(&mut h, f);
                put(&mut h, v);
                h.update(&ttl.map_or([0xff; 8], u64::to_le_bytes));
            }
        }
        // Entries come in id order: the rendering is canonical.
        Value::Stream(_) => put(&mut h, value_to_json(&rec.value).to_string().as_bytes()),
        Value::Module(_) | Value::NotDecoded => put(&mut h, &rec.raw),
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// Compares the keys of `old` and `new` that pass `filter`; calls `each` for every
/// difference and re-encoding, sorted by db and key.
pub fn diff(
    blobs: &Blobs<'_>,
    old: &SnapshotFile,
    new: &SnapshotFile,
    filter: &KeyFilter,
    mut each: impl FnMut(Change) -> Result<()>,
) -> Result<DiffCounts> {
    let opts = ReadOptions::default();
    let mut before: HashMap<(u64, Vec<u8>), Seen> = HashMap::new();
    scan_file(blobs, old, opts, filter, |_, rec| {
        let seen = Seen { digest: digest(&rec), state: state(&rec) };
        before.insert((rec.db, rec.key), seen);
        Ok(())
    })?;
    let mut counts = DiffCounts::default();
    let mut changes = Vec::new();
    scan_file(blobs, new, opts, filter, |_, rec| {
        let (now, d) = (state(&rec), digest(&rec));
        let key = KeyRef { db: rec.db, key: rec.key };
        let Some(was) = before.remove(&(key.db, key.key.clone())) else {
            counts.added += 1;
            changes.push(Change { kind: ChangeKind::Added, key, old: None, new: Some(now), value_changed: false });
            return Ok(());
        };
        let value_changed = was.digest != d;
        let kind = if value_changed || was.state.kind != now.kind || was.state.expire_at_ms != now.expire_at_ms {
            counts.changed += 1;
            ChangeKind::Changed
        } else if was.state.encoding != now.encoding {
            counts.reencoded += 1;
            ChangeKind::Reencoded
        } else {
            counts.unchanged += 1;
            return Ok(());
        };
        changes.push(Change { kind, key, old: Some(was.state), new: Some(now), value_changed });
        Ok(())
    })?;
    counts.removed = before.len() as u64;
    changes.extend(before.into_iter().map(|((db, key), was)| Change {
        kind: ChangeKind::Removed,
        key: KeyRef { db, key },
        old: Some(was.state),
        new: None,
        value_changed: false,
    }));
    changes.sort_by(|a, b| a.key.cmp(&b.key));
    for c in changes {
        each(c)?;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::ValueKind;

    fn rec(kind: ValueKind, value: Value) -> Record {
        Record {
            db: 0,
            key: b"k".to_vec(),
            kind,
            rdb_type: 0,
            encoding: "raw",
            expire_ms: None,
            idle: None,
            freq: None,
            value,
            raw: Vec::new(),
            serialized_len: 0,
            offset: 0,
        }
    }

    #[test]
    fn digest_is_of_the_value_as_redis_sees_it() {
        let set = |m: &[&[u8]]| rec(ValueKind::Set, Value::Set(m.iter().map(|m| m.to_vec()).collect()));
        assert_eq!(digest(&set(&[b"a", b"b"])), digest(&set(&[b"b", b"a"])), "set order is not data");
        assert_ne!(digest(&set(&[b"a", b"b"])), digest(&set(&[b"a", b"c"])));
        let list = |m: &[&[u8]]| rec(ValueKind::List, Value::List(m.iter().map(|m| m.to_vec()).collect()));
        assert_ne!(digest(&list(&[b"a", b"b"])), digest(&list(&[b"b", b"a"])), "list order is");
        assert_ne!(digest(&list(&[b"ab"])), digest(&list(&[b"a", b"b"])));
        assert_ne!(digest(&list(&[b"a"])), digest(&set(&[b"a"])), "the type is part of it");
        let hash = |f: &[(&[u8], Option<u64>)]| rec(ValueKind::Hash, Value::Hash(f.iter().map(|(f, t)| (f.to_vec(), b"v".to_vec(), *t)).collect()));
        assert_eq!(digest(&hash(&[(b"a", None), (b"b", None)])), digest(&hash(&[(b"b", None), (b"a", None)])));
        assert_ne!(digest(&hash(&[(b"a", None)])), digest(&hash(&[(b"a", Some(5))])), "field TTLs count");
    }
}
