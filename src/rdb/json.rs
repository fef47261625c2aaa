//! JSON rendering of records for `rdbvault inspect --json`; binary-safe.
//!
//! Byte strings are always JSON strings, escaped as redis-cli escapes them ([`escape`]):
//! one shape per field, and printable UTF-8 without a backslash comes through unchanged.
//! Non-finite scores are rendered as the strings `"inf"`, `"-inf"` and `"nan"`.

use serde_json::{json, Map, Value as Json};

use super::escape::escape;
use super::value::{Stream, StreamId, Value};
use super::Record;

/// Renders bytes as a JSON string, escaped as redis-cli escapes them.
pub fn bytes_to_json(b: &[u8]) -> Json {
    Json::String(escape(b))
}

fn score(f: f64) -> Json {
    if f.is_finite() {
        json!(f)
    } else if f.is_nan() {
        json!("nan")
    } else if f > 0.0 {
        json!("inf")
    } else {
        json!("-inf")
    }
}

fn id(i: &StreamId) -> Json {
    Json::String(i.to_string())
}

fn stream_json(s: &Stream) -> Json {
    json!({
        "length": s.length,
        "last_id": id(&s.last_id),
        "first_id": s.first_id.as_ref().map(id),
        "max_deleted_id": s.max_deleted_id.as_ref().map(id),
        "entries_added": s.entries_added,
        "entries": s.entries.iter().map(|e| json!({
            "id": id(&e.id),
            "fields": e.fields.iter().map(|(f, v)| json!([bytes_to_json(f), bytes_to_json(v)])).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "groups": s.groups.iter().map(|g| json!({
            "name": bytes_to_json(&g.name),
            "last_id": id(&g.last_id),
            "entries_read": g.entries_read,
            "pending": g.pending.iter().map(|p| json!({
                "id": id(&p.id),
                "delivery_time_ms": p.delivery_time_ms,
                "delivery_count": p.delivery_count,
            })).collect::<Vec<_>>(),
            "consumers": g.consumers.iter().map(|c| json!({
                "name": bytes_to_json(&c.name),
                "seen_time_ms": c.seen_time_ms,
                "active_time_ms": c.active_time_ms,
                "pending": c.pending.iter().map(id).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// Renders a value (`null` when not decoded).
pub fn value_to_json(v: &Value) -> Json {
    let list = |items: &[Vec<u8>]| Json::Array(items.iter().map(|i| bytes_to_json(i)).collect());
    match v {
        Value::String(s) => bytes_to_json(s),
        Value::List(items) | Value::Set(items) => list(items),
        Value::SortedSet(items) => Json::Array(
            items
                .iter()
                .map(|(m, s)| json!({ "member": bytes_to_json(m), "score": score(*s) }))
                .collect(),
        ),
        Value::Hash(fields) => Json::Array(
            fields
                .iter()
                .map(|(f, v, t)| {
                    let mut o = Map::new();
                    o.insert("field".into(), bytes_to_json(f));
                    o.insert("value".into(), bytes_to_json(v));
                    if let Some(t) = t {
                        o.insert("expire_ms".into(), json!(t));
                    }
                    Json::Object(o)
                })
                .collect(),
        ),
        Value::Stream(s) => stream_json(s),
        Value::Module(m) => {
            json!({ "module": m.name, "encver": m.encver, "skipped_bytes": m.skipped_bytes })
        }
        Value::NotDecoded => Json::Null,
    }
}

/// Renders a record: db, key, type, encoding, rdb_type, expiry, idle/freq, sizes and value.
pub fn record_to_json(rec: &Record) -> Json {
    json!({
        "db": rec.db,
        "key": bytes_to_json(&rec.key),
        "type": rec.kind.as_str(),
        "encoding": rec.encoding,
        "rdb_type": rec.rdb_type,
        "expire_ms": rec.expire_ms,
        "idle": rec.idle,
        "freq": rec.freq,
        "serialized_len": rec.serialized_len,
        "approx_memory": super::approx_memory(rec),
        "value": value_to_json(&rec.value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_safe() {
        assert_eq!(bytes_to_json(b"caf\xc3\xa9"), json!("café"));
        assert_eq!(bytes_to_json(b"\xff\x00"), json!("\\xff\\x00"));
        assert_eq!(score(f64::NEG_INFINITY), json!("-inf"));
        let v = Value::Hash(vec![(b"f".to_vec(), b"\x80".to_vec(), Some(5))]);
        assert_eq!(
            value_to_json(&v),
            json!([{"field": "f", "value": "\\x80", "expire_ms": 5}])
        );
    }
}
