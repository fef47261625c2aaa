//! Rough per-key memory estimate, in the spirit of redis-rdb-tools' memory report.
//!
//! Model (64-bit, jemalloc-like rounding to 8 bytes): every key costs a dict entry (24) + robj
//! (16) + key sds, plus another dict entry (24) when it has a TTL. Values:
//! - string: `int` 0, `embstr` len+3 (inline), `raw` an sds;
//! - compact blobs (listpack, ziplist, intset, zipmap): sum of element lengths + 2 per element
//!   + 11 header bytes (intset: 8 + width * n); quicklists add 32 per 128 elements;
//! - hashtable sets/hashes: bucket array (8 * next power of two) + dict entry + sds per element;
//! - skiplist zsets: hashtable part + ~48 bytes of skiplist node + score per member;
//! - linked lists: 40 bytes of node + robj per element plus the sds;
//! - streams and modules, or values not decoded: the serialized size.
//!
//! It is an estimate for ranking keys, not an exact accounting.

use super::value::Value;
use super::Record;

fn round8(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

/// Allocation size of an sds string of `len` bytes (header + bytes + NUL).
fn sds(len: u64) -> u64 {
    let header = match len {
        0..=31 => 1,
        32..=255 => 3,
        256..=65_535 => 5,
        _ => 9,
    };
    round8(len + header + 1)
}

fn hashtable(n: u64) -> u64 {
    8 * n.max(4).next_power_of_two() + 24 * n
}

fn compact<'a>(elems: impl Iterator<Item = &'a [u8]>) -> u64 {
    11 + elems.map(|e| e.len() as u64 + 2).sum::<u64>()
}

/// Estimated bytes this key occupies in a Redis server's memory (see module docs for the model).
pub fn approx_memory(rec: &Record) -> u64 {
    let mut total = 24 + 16 + sds(rec.key.len() as u64);
    if rec.expire_ms.is_some() {
        total += 24;
    }
    let enc = rec.encoding;
    let value = match &rec.value {
        Value::String(s) => match enc {
            "int" => 0,
            "embstr" => round8(s.len() as u64 + 3),
            _ => sds(s.len() as u64),
        },
        Value::List(items) => match enc {
            "linkedlist" => items.iter().map(|i| 40 + 16 + sds(i.len() as u64)).sum(),
            _ => {
                let nodes = (items.len() as u64).div_ceil(128).max(1);
                32 + nodes * (32 + 11) + compact(items.iter().map(|i| i.as_slice()))
            }
        },
        Value::Set(items) => match enc {
            "intset" => {
                let width = if items.iter().all(|i| i.len() <= 5) {
                    2
                } else {
                    8
                };
                8 + width * items.len() as u64
            }
            "hashtable" => {
                hashtable(items.len() as u64)
                    + items.iter().map(|i| sds(i.len() as u64)).sum::<u64>()
            }
            _ => compact(items.iter().map(|i| i.as_slice())),
        },
        Value::SortedSet(items) => match enc {
            "skiplist" => {
                hashtable(items.len() as u64)
                    + items
                        .iter()
                        .map(|(m, _)| sds(m.len() as u64) + 48 + 8)
                        .sum::<u64>()
            }
            _ => compact(items.iter().map(|(m, _)| m.as_slice())) + 10 * items.len() as u64,
        },
        Value::Hash(fields) => match enc {
            "hashtable" => {
                hashtable(fields.len() as u64)
                    + fields
                        .iter()
                        .map(|(f, v, t)| {
                            sds(f.len() as u64)
                                + sds(v.len() as u64)
                                + if t.is_some() { 8 } else { 0 }
                        })
                        .sum::<u64>()
            }
            _ => compact(
                fields
                    .iter()
                    .flat_map(|(f, v, _)| [f.as_slice(), v.as_slice()]),
            ),
        },
        Value::Stream(_) | Value::Module(_) | Value::NotDecoded => rec.serialized_len,
    };
    total + value
}
