//! `inspect`: what a snapshot's RDB holds, without restoring it: a summary, one JSON
//! object per key, or a memory report (largest keys, memory by key prefix and type).

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{json, Value as Json};

use crate::error::{Error, Result};
use crate::redis::keyindex;
use crate::redis::keyscan::{scan_file, KeyFilter};
use crate::rdb::{approx_memory, bytes_to_json, record_to_json, summarize, ReadOptions, Record, Summary};
use crate::engine::restore::{with_reader, Blobs, RestoreOptions};
use crate::format::snapshot::{Snapshot, SnapshotFile};

/// Milliseconds since the Unix epoch, the clock RDB expiry times use.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// When the snapshot was taken, in Unix milliseconds (now if its time does not parse):
/// TTLs are reported relative to it, as they were when the data was backed up.
pub fn snapshot_time_ms(snap: &Snapshot) -> u64 {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(&snap.time, &Rfc3339)
        .ok()
        .and_then(|t| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
        .unwrap_or_else(now_ms)
}

/// Version, aux fields, key counts per db, type and encoding, sizes, functions and modules.
pub fn summary(blobs: &Blobs<'_>, file: &SnapshotFile) -> Result<Summary> {
    with_reader(blobs, file, &RestoreOptions::default(), |r| summarize(r).map_err(|e| Error::rdb(&file.name, e)))
}

/// The summary as JSON, with the 64-bit checksum as a hex string (JSON numbers lose
/// precision above 2^53 in most readers).
pub fn summary_json(s: &Summary) -> Json {
    let mut v = serde_json::to_value(s).unwrap_or(Json::Null);
    if let Json::Object(o) = &mut v {
        o.insert("checksum".into(), json!(s.checksum.map(|c| format!("{c:016x}"))));
    }
    v
}

/// One key as a JSON object: [`record_to_json`] with its expiry once, as `expire_at_ms`
/// (absolute, `null` without a TTL) and `ttl_ms` (left at `at_ms`, the snapshot's
/// time; negative when the key had expired by then).
pub fn key_json(rec: &Record, at_ms: u64) -> Json {
    let mut v = record_to_json(rec);
    if let Json::Object(o) = &mut v {
        o.remove("expire_ms");
        o.insert("expire_at_ms".into(), json!(rec.expire_ms));
        o.insert("ttl_ms".into(), json!(ttl_ms(rec, at_ms)));
    }
    v
}

/// Milliseconds the key had left at `at_ms` (negative once expired); `None` without a TTL.
pub fn ttl_ms(rec: &Record, at_ms: u64) -> Option<i64> {
    rec.expire_ms.map(|at| at as i64 - at_ms as i64)
}

/// Writes one JSON line per key of `file` that passes `filter` (JSONL), TTLs relative to
/// `at_ms`; returns the number of keys.
pub fn write_key_lines(blobs: &Blobs<'_>, snap: &Snapshot, file: &SnapshotFile, at_ms: u64, filter: &KeyFilter, out: &mut dyn Write) -> Result<u64> {
    let mut n = 0u64;
    let opts = ReadOptions { capture_raw: false, ..ReadOptions::default() };
    keyindex::scan_file(blobs, snap, file, opts, filter, |_, rec| {
        n += 1;
        let line = key_json(&rec, at_ms);
        serde_json::to_writer(&mut *out, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| Error::io("write key list", e))
    })?;
    out.flush().map_err(|e| Error::io("write key list", e))?;
    Ok(n)
}

/// One key's estimated memory.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyMemory {
    pub db: u64,
    pub key: Vec<u8>,
    /// `TYPE` name.
    pub kind: &'static str,
    /// `OBJECT ENCODING` name of the serialized form.
    pub encoding: &'static str,
    /// Estimated bytes in server memory ([`approx_memory`]).
    pub bytes: u64,
    /// Type byte + serialized value.
    pub serialized: u64,
}

/// Keys and estimated bytes of a group of keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    pub keys: u64,
    pub bytes: u64,
}

impl Bucket {
    fn add(&mut self, bytes: u64) {
        self.keys += 1;
        self.bytes += bytes;
    }
}

/// The memory report: largest keys first, then totals by prefix and by type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryReport {
    /// Up to `top` keys, largest first.
    pub top: Vec<KeyMemory>,
    /// By key prefix (text before the first `:`; the empty prefix for keys without one).
    pub by_prefix: BTreeMap<String, Bucket>,
    /// By type name.
    pub by_type: BTreeMap<String, Bucket>,
    /// Every key that passed the filter.
    pub total: Bucket,
}

impl MemoryReport {
    /// The report as JSON (keys binary-safe as in `--json` key lines).
    pub fn to_json(&self) -> Json {
        let bucket = |m: &BTreeMap<String, Bucket>| -> Json {
            m.iter().map(|(k, b)| (k.clone(), json!({"keys": b.keys, "bytes": b.bytes}))).collect::<serde_json::Map<_, _>>().into()
        };
        json!({
            "total": {"keys": self.total.keys, "bytes": self.total.bytes},
            "top": self.top.iter().map(|k| json!({
                "db": k.db, "key": bytes_to_json(&k.key), "type": k.kind, "encoding": k.encoding,
                "approx_memory": k.bytes, "serialized_len": k.serialized,
            })).collect::<Vec<_>>(),
            "by_prefix": bucket(&self.by_prefix),
            "by_type": bucket(&self.by_type),
        })
    }
}

/// The text before the first `:` (lossy UTF-8), or `""` when there is none.
pub fn key_prefix(key: &[u8]) -> String {
    match key.iter().position(|&b| b == b':') {
        Some(i) => String::from_utf8_lossy(&key[..i]).into_owned(),
        None => String::new(),
    }
}

/// Ranks keys by estimated memory and groups it by prefix and type.
///
/// Memory: the `top` largest keys plus one bucket per distinct prefix and type.
pub fn memory_report(blobs: &Blobs<'_>, file: &SnapshotFile, filter: &KeyFilter, top: usize) -> Result<MemoryReport> {
    let mut r = MemoryReport::default();
    let opts = ReadOptions { capture_raw: false, ..ReadOptions::default() };
    let by_size = |a: &KeyMemory, b: &KeyMemory| b.bytes.cmp(&a.bytes).then_with(|| (a.db, &a.key).cmp(&(b.db, &b.key)));
    scan_file::<Error>(blobs, file, opts, filter, |_, rec| {
        let bytes = approx_memory(&rec);
        r.total.add(bytes);
        r.by_prefix.entry(key_prefix(&rec.key)).or_default().add(bytes);
        r.by_type.entry(rec.kind.as_str().to_string()).or_default().add(bytes);
        if top > 0 {
            r.top.push(KeyMemory {
                db: rec.db,
                kind: rec.kind.as_str(),
                encoding: rec.encoding,
                bytes,
                serialized: rec.serialized_len,
                key: rec.key,
            });
            if r.top.len() >= top.saturating_mul(2).max(64) {
                r.top.sort_by(by_size);
                r.top.truncate(top);
            }
        }
        Ok(())
    })?;
    r.top.sort_by(by_size);
    r.top.truncate(top);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(key_prefix(b"user:1:name"), "user");
        assert_eq!(key_prefix(b"plain"), "");
        assert_eq!(key_prefix(b":x"), "");
    }
}
