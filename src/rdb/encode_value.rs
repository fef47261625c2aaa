//! Re-encodes a decoded [`Value`] for a target RDB version, when its bytes as read cannot be
//! copied (an older target, or a value that was built rather than read).
//!
//! Collections use the plain encodings (list 1, set 2, zset 5 or 3, hash 4): every server from
//! Redis 2.6 to Valkey 9 loads them and converts small ones to its own compact encoding per its
//! own `*-max-listpack-*` settings, so one form is right for every target. Streams have no plain
//! form: their entries are rebuilt into listpack nodes of at most 100 entries (Redis' default).

use super::encode::{ascii_double, len, string, ListpackBuilder};
use super::value::{Stream, StreamId, Value};

/// Entries per rebuilt stream node (Redis' `stream-node-max-entries` default).
const STREAM_NODE_ENTRIES: usize = 100;
/// Stream entry flag: the entry has the master entry's fields; only values are stored.
const FLAG_SAMEFIELDS: i64 = 2;

/// First RDB version of Valkey's numbering (Valkey 9.0, `VALKEY` magic).
pub const VALKEY_MIN_VERSION: u16 = 80;

/// Lowest RDB version of a server that loads value type `ty` written by an RDB of `source`
/// version (types 22..=25 mean different things in Redis 7.4 and Valkey 9 files).
pub fn fits(ty: u8, source: u16, target: u16) -> bool {
    let valkey_target = target >= VALKEY_MIN_VERSION;
    match ty {
        22 if source >= VALKEY_MIN_VERSION => valkey_target,
        22..=25 => source < VALKEY_MIN_VERSION && !valkey_target && target >= 12,
        _ => min_version(ty).is_some_and(|v| v <= target),
    }
}

/// The RDB version that introduced a value type (None: not writable).
fn min_version(ty: u8) -> Option<u16> {
    Some(match ty {
        0..=4 | 9..=13 => 6,
        14 => 7,
        5 | 7 => 8,
        15 => 9,
        16..=19 => 10,
        20 | 21 => 11,
        _ => return None,
    })
}

/// Encodes `v` as (type byte, value bytes) valid for `target`, or says why it cannot be.
pub fn encode(v: &Value, target: u16) -> Result<(u8, Vec<u8>), String> {
    let mut out = Vec::new();
    let ty = match v {
        Value::String(s) => {
            string(&mut out, s);
            0
        }
        Value::List(items) | Value::Set(items) => {
            len(&mut out, items.len() as u64);
            for i in items {
                string(&mut out, i);
            }
            if matches!(v, Value::List(_)) { 1 } else { 2 }
        }
        Value::SortedSet(items) => {
            len(&mut out, items.len() as u64);
            let binary = target >= 8;
            for (m, score) in items {
                string(&mut out, m);
                if binary {
                    out.extend_from_slice(&score.to_le_bytes());
                } else {
                    ascii_double(&mut out, *score);
                }
            }
            if binary { 5 } else { 3 }
        }
        Value::Hash(fields) if fields.iter().all(|f| f.2.is_none()) => {
            len(&mut out, fields.len() as u64);
            for (f, val, _) in fields {
                string(&mut out, f);
                string(&mut out, val);
            }
            4
        }
        Value::Hash(fields) if target >= VALKEY_MIN_VERSION => {
            // Valkey HASH_2: field, value, then the expiry as 8 bytes LE (-1: none).
            len(&mut out, fields.len() as u64);
            for (f, val, t) in fields {
                let t = t.map_or(Ok(-1), i64::try_from).map_err(|_| "a field TTL beyond year 292 million")?;
                string(&mut out, f);
                string(&mut out, val);
                out.extend_from_slice(&t.to_le_bytes());
            }
            22
        }
        Value::Hash(fields) if target >= 12 => {
            // Redis 7.4 HASH_METADATA: the smallest expiry, then per field its expiry relative
            // to it plus one (0: none), field, value.
            let min = fields.iter().filter_map(|f| f.2).min().unwrap_or(0);
            out.extend_from_slice(&min.to_le_bytes());
            len(&mut out, fields.len() as u64);
            for (f, val, t) in fields {
                let rel = t.map_or(Some(0), |t| (t - min).checked_add(1)).ok_or("a field TTL beyond the format's range")?;
                len(&mut out, rel);
                string(&mut out, f);
                string(&mut out, val);
            }
            24
        }
        Value::Hash(_) => {
            return Err("hash fields with their own TTL need RDB 12 (Redis 7.4) or 80 (Valkey 9.0)".into())
        }
        Value::Stream(s) => {
            let ty = match target {
                t if t >= 11 => 21,
                10 => 19,
                9 => 15,
                _ => return Err("streams need RDB 9 (Redis 5.0) or later".into()),
            };
            stream(&mut out, s, ty);
            ty
        }
        Value::Module(m) => {
            return Err(format!("module value of type {} can only be copied as read, and needs RDB 8 (Redis 4.0) or later", m.name))
        }
        Value::NotDecoded => return Err("value was not decoded".into()),
    };
    Ok((ty, out))
}

/// A stream id as the 16 big-endian bytes Redis uses for node keys and PEL entries.
fn raw_id(id: &StreamId) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&id.ms.to_be_bytes());
    b[8..].copy_from_slice(&id.seq.to_be_bytes());
    b
}

fn id_lens(out: &mut Vec<u8>, id: &StreamId) {
    len(out, id.ms);
    len(out, id.seq);
}

/// Writes a stream of RDB type `ty` (15, 19 or 21); fields newer than `ty` are dropped and
/// fields older sources lack get the values Redis itself assumes when loading them.
fn stream(out: &mut Vec<u8>, s: &Stream, ty: u8) {
    let nodes: Vec<_> = s.entries.chunks(STREAM_NODE_ENTRIES).collect();
    len(out, nodes.len() as u64);
    for node in nodes {
        let master = node[0].id;
        let master_fields: Vec<&[u8]> = node[0].fields.iter().map(|(f, _)| f.as_slice()).collect();
        let mut lp = ListpackBuilder::new();
        lp.int(node.len() as i64);
        lp.int(0);
        lp.int(master_fields.len() as i64);
        for f in &master_fields {
            lp.push(f);
        }
        lp.int(0);
        for e in node {
            let same = e.fields.len() == master_fields.len()
                && e.fields.iter().zip(&master_fields).all(|((f, _), m)| f.as_slice() == *m);
            lp.int(if same { FLAG_SAMEFIELDS } else { 0 });
            lp.int(e.id.ms.wrapping_sub(master.ms) as i64);
            lp.int(e.id.seq.wrapping_sub(master.seq) as i64);
            let n = e.fields.len() as i64;
            if same {
                for (_, v) in &e.fields {
                    lp.push(v);
                }
                lp.int(n + 3);
            } else {
                lp.int(n);
                for (f, v) in &e.fields {
                    lp.push(f);
                    lp.push(v);
                }
                lp.int(2 * n + 4);
            }
        }
        string(out, &raw_id(&master));
        string(out, &lp.finish());
    }
    len(out, s.length);
    id_lens(out, &s.last_id);
    if ty >= 19 {
        let first = s.first_id.or_else(|| s.entries.first().map(|e| e.id)).unwrap_or_default();
        id_lens(out, &first);
        id_lens(out, &s.max_deleted_id.unwrap_or_default());
        len(out, s.entries_added.unwrap_or(s.length));
    }
    len(out, s.groups.len() as u64);
    for g in &s.groups {
        string(out, &g.name);
        id_lens(out, &g.last_id);
        if ty >= 19 {
            // Unknown read counter: Redis' SCG_INVALID_ENTRIES_READ (-1).
            len(out, g.entries_read.unwrap_or(u64::MAX));
        }
        len(out, g.pending.len() as u64);
        for p in &g.pending {
            out.extend_from_slice(&raw_id(&p.id));
            out.extend_from_slice(&p.delivery_time_ms.to_le_bytes());
            len(out, p.delivery_count);
        }
        len(out, g.consumers.len() as u64);
        for c in &g.consumers {
            string(out, &c.name);
            out.extend_from_slice(&c.seen_time_ms.to_le_bytes());
            if ty >= 21 {
                out.extend_from_slice(&c.active_time_ms.unwrap_or(c.seen_time_ms).to_le_bytes());
            }
            len(out, c.pending.len() as u64);
            for id in &c.pending {
                out.extend_from_slice(&raw_id(id));
            }
        }
    }
}
