//! JSON rendering of records for `rdbvault inspect --json`; binary-safe.
//!
//! Byte strings are always JSON strings, escaped as redis-cli escapes them ([`escape`]):
//! one shape per field, and printable UTF-8 without a backslash comes through unchanged.
//! Non-finite scores are rendered as the strings `"inf"`, `"-inf"` and `"nan"`.

use std::io::Write;

use serde_json::{json, Map, Value as Json};

use super::blob::Elem;
use super::escape::escape;
use super::json_ascii::{ascii_escape, escape_ascii};
use super::string::{push_decimal, push_unsigned};
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

/// Appends `b` as a JSON string, the same bytes `serde_json` writes for [`bytes_to_json`]
/// (the [`escape`] rule and JSON's own escapes in one pass over the bytes, without building
/// a `String`: `export --format jsonl` does this for every element). Plain ASCII goes
/// sixteen bytes at a time ([`escape_ascii`]); from the first non-ASCII byte on, the rest
/// goes through [`write_utf8_json`].
pub fn write_bytes_json(out: &mut Vec<u8>, b: &[u8]) {
    out.reserve(b.len() + 2);
    out.push(b'"');
    let i = escape_ascii(out, b);
    if i < b.len() {
        write_utf8_json(out, &b[i..]);
    }
    out.push(b'"');
}

/// The body of [`write_bytes_json`] for bytes that may hold UTF-8 sequences or invalid bytes.
fn write_utf8_json(out: &mut Vec<u8>, b: &[u8]) {
    for chunk in b.utf8_chunks() {
        let v = chunk.valid().as_bytes();
        let (mut run, mut i) = (0, 0);
        while i < v.len() {
            let c = v[i];
            let width = match c {
                b'"' | b'\\' | 0x00..=0x1f | 0x7f => 1,
                // C1 control characters (U+0080..U+009F, bytes C2 80..C2 9F).
                0xc2 if v.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)) => 2,
                _ => {
                    i += 1;
                    continue;
                }
            };
            out.extend_from_slice(&v[run..i]);
            if width == 1 {
                ascii_escape(out, c);
            } else {
                hex_escape(out, v[i]);
                hex_escape(out, v[i + 1]);
            }
            i += width;
            run = i;
        }
        out.extend_from_slice(&v[run..]);
        for byte in chunk.invalid() {
            hex_escape(out, *byte);
        }
    }
}

/// `\xHH` as it stands in a JSON string (its backslash escaped).
fn hex_escape(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(&[b'\\', b'\\', b'x', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]]);
}

/// Appends [`value_to_json`] of `v` as `serde_json` would write it, without building it
/// for the common types (strings, lists, sets, sorted sets, hashes).
pub fn write_value_json(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::String(s) => write_bytes_json(out, s),
        Value::List(items) | Value::Set(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                write_item_json(out, i, Elem::Bytes(item));
            }
            out.push(b']');
        }
        Value::SortedSet(items) => {
            out.push(b'[');
            for (i, (m, s)) in items.iter().enumerate() {
                write_member_json(out, i, Elem::Bytes(m));
                write_score_json(out, *s);
            }
            out.push(b']');
        }
        Value::Hash(fields) => {
            out.push(b'[');
            for (i, (f, v, t)) in fields.iter().enumerate() {
                write_field_json(out, i, *t, Elem::Bytes(f));
                write_field_value_json(out, Elem::Bytes(v));
            }
            out.push(b']');
        }
        Value::Stream(st) => {
            out.extend_from_slice(STREAM_HEAD);
            let mut pairs = Vec::new();
            for (i, e) in st.entries.iter().enumerate() {
                pairs.clear();
                pairs.extend(e.fields.iter().map(|(f, v)| (Elem::Bytes(f), Elem::Bytes(v))));
                write_entry_json(out, i, e.id, &pairs);
            }
            write_stream_tail_json(out, st);
        }
        other => {
            let _ = serde_json::to_writer(&mut *out, &value_to_json(other));
        }
    }
}

/// What a stream's JSON starts with; its entries ([`write_entry_json`]) and
/// [`write_stream_tail_json`] follow (the keys in `serde_json`'s order, entries first).
pub(crate) const STREAM_HEAD: &[u8] = b"{\"entries\":[";

/// Stream entry `i`: `{"fields":[[F,V],...],"id":"MS-SEQ"}`.
pub(crate) fn write_entry_json(out: &mut Vec<u8>, i: usize, id: StreamId, fields: &[(Elem<'_>, Elem<'_>)]) {
    if i > 0 {
        out.push(b',');
    }
    out.extend_from_slice(b"{\"fields\":[");
    for (k, (f, v)) in fields.iter().enumerate() {
        out.extend_from_slice(if k > 0 { b",[" } else { b"[" });
        write_elem_json(out, *f);
        out.push(b',');
        write_elem_json(out, *v);
        out.push(b']');
    }
    let _ = write!(out, "],\"id\":\"{id}\"}}");
}

/// The rest of a stream's JSON after its entries: counters, ids and consumer groups.
pub(crate) fn write_stream_tail_json(out: &mut Vec<u8>, s: &Stream) {
    let _ = write!(out, "],\"entries_added\":{},\"first_id\":{},\"groups\":[", OrNull(s.entries_added), OrNull(s.first_id.map(IdJson)));
    for (i, g) in s.groups.iter().enumerate() {
        out.extend_from_slice(if i > 0 { b",{\"consumers\":[" } else { b"{\"consumers\":[" });
        for (k, c) in g.consumers.iter().enumerate() {
            let _ = write!(out, "{}{{\"active_time_ms\":{},\"name\":", if k > 0 { "," } else { "" }, OrNull(c.active_time_ms));
            write_bytes_json(out, &c.name);
            out.extend_from_slice(b",\"pending\":[");
            for (j, id) in c.pending.iter().enumerate() {
                let _ = write!(out, "{}\"{id}\"", if j > 0 { "," } else { "" });
            }
            let _ = write!(out, "],\"seen_time_ms\":{}}}", c.seen_time_ms);
        }
        let _ = write!(out, "],\"entries_read\":{},\"last_id\":\"{}\",\"name\":", OrNull(g.entries_read), g.last_id);
        write_bytes_json(out, &g.name);
        out.extend_from_slice(b",\"pending\":[");
        for (k, p) in g.pending.iter().enumerate() {
            let _ = write!(out, "{}{{\"delivery_count\":{},\"delivery_time_ms\":{},\"id\":\"{}\"}}", if k > 0 { "," } else { "" }, p.delivery_count, p.delivery_time_ms, p.id);
        }
        out.extend_from_slice(b"]}");
    }
    let _ = write!(out, "],\"last_id\":\"{}\",\"length\":{},\"max_deleted_id\":{}}}", s.last_id, s.length, OrNull(s.max_deleted_id.map(IdJson)));
}

/// A value's JSON, or `null`.
struct OrNull<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for OrNull<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("null"),
        }
    }
}

/// A stream id as a JSON string.
struct IdJson(StreamId);

impl std::fmt::Display for IdJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{}\"", self.0)
    }
}

/// Appends an element as a JSON string (an integer's decimal text needs no escaping).
fn write_elem_json(out: &mut Vec<u8>, e: Elem<'_>) {
    match e {
        Elem::Bytes(b) => write_bytes_json(out, b),
        Elem::Int(i) => {
            out.push(b'"');
            push_decimal(out, i);
            out.push(b'"');
        }
    }
}

/// Element `i` of a list or set (the array's brackets are the caller's).
pub(crate) fn write_item_json(out: &mut Vec<u8>, i: usize, e: Elem<'_>) {
    if i > 0 {
        out.push(b',');
    }
    write_elem_json(out, e);
}

/// `{"member":M` of sorted-set element `i`; [`write_score_json`] closes it.
pub(crate) fn write_member_json(out: &mut Vec<u8>, i: usize, m: Elem<'_>) {
    // A comma, then a copy of fixed length (choosing between two lengths made it a call).
    if i > 0 {
        out.push(b',');
    }
    out.extend_from_slice(b"{\"member\":");
    write_elem_json(out, m);
}

/// `,"score":S}`: a finite score as `serde_json` writes an f64, else `"inf"`, `"-inf"` or `"nan"`.
pub(crate) fn write_score_json(out: &mut Vec<u8>, s: f64) {
    out.extend_from_slice(b",\"score\":");
    // Whole scores (leaderboards, timestamps) as `serde_json` writes them, `123.0`, without
    // the float formatter; -0.0 and magnitudes from 1e15 up (where it may use exponents) go to it.
    if s.fract() == 0.0 && s.abs() < 1e15 && !(s == 0.0 && s.is_sign_negative()) {
        push_decimal(out, s as i64);
        out.extend_from_slice(b".0}");
        return;
    }
    if s.is_finite() {
        let _ = serde_json::to_writer(&mut *out, &s);
    } else {
        let _ = serde_json::to_writer(&mut *out, &score(s));
    }
    out.push(b'}');
}

/// `{"expire_ms":T,"field":F` of hash field `i` (the expiry only when set, the keys in
/// `serde_json`'s order); [`write_field_value_json`] closes it.
pub(crate) fn write_field_json(out: &mut Vec<u8>, i: usize, expire_ms: Option<u64>, f: Elem<'_>) {
    if i > 0 {
        out.push(b',');
    }
    out.push(b'{');
    if let Some(t) = expire_ms {
        out.extend_from_slice(b"\"expire_ms\":");
        push_unsigned(out, t);
        out.push(b',');
    }
    out.extend_from_slice(b"\"field\":");
    write_elem_json(out, f);
}

/// `,"value":V}` of a hash field.
pub(crate) fn write_field_value_json(out: &mut Vec<u8>, v: Elem<'_>) {
    out.extend_from_slice(b",\"value\":");
    write_elem_json(out, v);
    out.push(b'}');
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

    /// A stream with every field set: entries with and without fields, two groups (one
    /// without consumers), consumers with and without pending ids, names to escape.
    fn stream() -> crate::rdb::Stream {
        use crate::rdb::{Consumer, ConsumerGroup, PendingEntry, StreamEntry};
        let id = |ms, seq| StreamId { ms, seq };
        let entry = |i, fields: &[(&[u8], &[u8])]| StreamEntry { id: id(i, i.wrapping_mul(3)), fields: fields.iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect() };
        crate::rdb::Stream {
            entries: vec![entry(1, &[(b"f", b"v\"\n")]), entry(2, &[]), entry(u64::MAX, &[(b"\xff", b"1"), (b"", b"")])],
            length: 3,
            last_id: id(u64::MAX, 7),
            first_id: Some(id(1, 3)),
            max_deleted_id: None,
            entries_added: Some(12),
            groups: vec![
                ConsumerGroup {
                    name: b"g\"1".to_vec(),
                    last_id: id(2, 6),
                    entries_read: Some(2),
                    pending: vec![PendingEntry { id: id(1, 3), delivery_time_ms: 1_700_000_000_000, delivery_count: 2 }, PendingEntry { id: id(2, 6), delivery_time_ms: 0, delivery_count: 1 }],
                    consumers: vec![
                        Consumer { name: b"c\x01".to_vec(), seen_time_ms: 5, active_time_ms: Some(6), pending: vec![id(1, 3), id(2, 6)] },
                        Consumer { name: b"idle".to_vec(), seen_time_ms: 9, active_time_ms: None, pending: Vec::new() },
                    ],
                },
                ConsumerGroup { name: b"empty".to_vec(), last_id: id(0, 0), entries_read: None, pending: Vec::new(), consumers: Vec::new() },
            ],
        }
    }

    #[test]
    fn written_json_is_what_serde_json_writes() {
        let odd = [&b"plain"[..], b"", b"q\"uote\\", b"caf\xc3\xa9\n\xff\x00\x7f\t\r\x07\x08", b"\xe2\x80\xa8 \x1b\xc2\x85\xc2\xa0\xc2", b"\xf0\x9f\x98\x80\xed\xa0\x80\xc3"];
        let strings: Vec<Vec<u8>> = odd.iter().map(|b| b.to_vec()).collect();
        let values = [
            Value::String(b"x\"\\\xff".to_vec()),
            Value::List(strings.clone()),
            Value::Set(Vec::new()),
            Value::SortedSet(vec![(b"a".to_vec(), 1.0), (b"\x01".to_vec(), -0.125), (b"i".to_vec(), f64::INFINITY), (b"n".to_vec(), 1e300)]),
            Value::SortedSet([0.0, -0.0, 19630.0, -5.0, 1e15 - 1.0, 1e15, -1e15, 1e16, 123_456_789_012_345.0, 0.5, f64::NAN].iter().map(|&s| (b"m".to_vec(), s)).collect()),
            Value::Hash(vec![(b"f".to_vec(), b"\x80".to_vec(), Some(5)), (b"g\"".to_vec(), b"v".to_vec(), None)]),
            Value::Module(crate::rdb::ModuleValue { name: "m".into(), encver: 1, skipped_bytes: 3 }),
            Value::NotDecoded,
            Value::Stream(Box::default()),
            Value::Stream(Box::new(stream())),
        ];
        let bytes = (0..=255u8).flat_map(|b| [vec![b], vec![0xc2, b], vec![b'a', b, b'z']]).map(Value::String);
        // Every byte that matters at every position of strings of every length up to three
        // blocks (the tails gathered into a register, shifted after each escape).
        let words = (1..=41).flat_map(|n| (0..n).map(move |at| (n, at))).flat_map(|(n, at)| {
            [0u8, 0x1f, b' ', b'"', b'\\', b'~', 0x7f, 0x80, 0xc2, 0xff].map(|b| {
                let mut s = b"plain-ascii-text-of-41-bytes-in-3-blocks!"[..n].to_vec();
                s[at] = b;
                if b == 0xc2 && at + 1 < s.len() {
                    s[at + 1] = 0x85;
                }
                Value::String(s)
            })
        });
        // Bytes that need a look, in any mix, within and across eight- and sixteen-byte words.
        let alphabet: [&[u8]; 10] = [b"a-plain-run-of-19-b", b"\"", b"\\", b"\n", b"\x1f", b"\x7f", b"\x80", b"\xc3\xa9", b" ", b"\x00"];
        let mut x = 1u64;
        let mixes = (0..3000).map(move |_| {
            let mut s = Vec::new();
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            for k in 0..(x >> 58) {
                s.extend_from_slice(alphabet[((x >> (k % 50)) % 10) as usize]);
            }
            Value::String(s)
        });
        // Only quotes to escape, in every pattern of an eight-byte half, with a byte of another
        // kind now and then.
        let quoted = (0..3000u32).map(|n| {
            let mut s: Vec<u8> = (0..n % 90).map(|k| if (n.wrapping_mul(2_654_435_761) >> (k % 29)) & 3 == 0 { b'"' } else { b'a' + (k % 26) as u8 }).collect();
            if n % 7 == 0 && !s.is_empty() {
                let at = n as usize % s.len();
                s[at] = [b'\\', b'\n', 0xc3, 0x7f][n as usize % 4];
            }
            Value::String(s)
        });
        for v in values.into_iter().chain(strings.into_iter().map(Value::String)).chain(bytes).chain(words).chain(mixes).chain(quoted) {
            let mut out = Vec::new();
            write_value_json(&mut out, &v);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&value_to_json(&v)).unwrap(), "{v:?}");
        }
    }
}
