//! Streaming RDB writer: header, aux fields, databases, keys and function libraries, then the
//! EOF opcode and CRC64; the inverse of [`super::RdbReader`].
//!
//! Keys are written as they arrive, so memory stays bounded by one key. A record whose type
//! the target version loads is copied byte for byte (its encoding, compression and LRU/LFU
//! state kept); any other is re-encoded from its decoded value (see `encode_value`), or
//! refused with an error naming the key and what it needs.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use super::crc64::crc64;
use super::encode::{len, string};
use super::encode_value::{encode, fits, VALKEY_MIN_VERSION};
use super::{Record, OP_AUX, OP_EOF, OP_EXPIRETIME_MS, OP_FREQ, OP_FUNCTION2, OP_IDLE, OP_RESIZEDB, OP_SELECTDB};

/// Oldest RDB version written (Redis 2.6: millisecond expiries, CRC64).
pub const MIN_WRITE_VERSION: u16 = 6;

/// Why an RDB could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write RDB version {0}: choose 6 to 12 (Redis 2.6 to 7.4/8.x) or 80 (Valkey 9.0)")]
    Version(u16),
    /// A key whose value the target version cannot hold.
    #[error("key {key} in db {db} ({kind}) cannot be written as RDB version {version}: {why}")]
    Key { db: u64, key: String, kind: &'static str, version: u16, why: String },
    /// A function library and a target older than Redis 7.0.
    #[error("function library {name} cannot be written as RDB version {version}: functions need RDB 10 (Redis 7.0) or later")]
    Function { name: String, version: u16 },
    #[error("I/O error writing the RDB: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes one RDB stream to `W`; call [`RdbWriter::finish`] to end it.
pub struct RdbWriter<W: Write> {
    w: W,
    version: u16,
    crc: u64,
    db: Option<u64>,
    reencode: bool,
    keys: u64,
    bytes: u64,
    buf: Vec<u8>,
}

/// The server version named in the `redis-ver` aux field for an RDB version.
fn server_version(version: u16) -> &'static str {
    match version {
        0..=6 => "2.8.0",
        7 => "3.2.0",
        8 => "4.0.0",
        9 => "6.2.0",
        10 => "7.0.0",
        11 => "7.2.0",
        12..=79 => "7.4.0",
        _ => "9.0.0",
    }
}

impl<W: Write> RdbWriter<W> {
    /// Writes the header (`REDIS00NN`, or `VALKEY080`) and the aux fields Redis writes.
    pub fn new(w: W, version: u16) -> Result<Self, WriteError> {
        let valid = (MIN_WRITE_VERSION..=12).contains(&version) || version == VALKEY_MIN_VERSION;
        if !valid {
            return Err(WriteError::Version(version));
        }
        let mut wr = RdbWriter { w, version, crc: 0, db: None, reencode: false, keys: 0, bytes: 0, buf: Vec::new() };
        let magic = if version >= VALKEY_MIN_VERSION { format!("VALKEY{version:03}") } else { format!("REDIS{version:04}") };
        wr.put(magic.as_bytes())?;
        if version >= 7 {
            let ctime = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0).to_string();
            let ver = if version >= VALKEY_MIN_VERSION { "valkey-ver" } else { "redis-ver" };
            wr.aux(ver.as_bytes(), server_version(version).as_bytes())?;
            wr.aux(b"redis-bits", b"64")?;
            wr.aux(b"ctime", ctime.as_bytes())?;
            wr.aux(b"used-mem", b"0")?;
            wr.aux(b"aof-base", b"0")?;
        }
        Ok(wr)
    }

    /// Re-encode every value from its decoded form instead of copying its bytes (tests, fuzzing).
    pub fn set_reencode(&mut self, yes: bool) {
        self.reencode = yes;
    }

    /// RDB version being written.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Keys written so far.
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn put(&mut self, b: &[u8]) -> Result<(), WriteError> {
        self.crc = crc64(self.crc, b);
        self.bytes += b.len() as u64;
        self.w.write_all(b)?;
        Ok(())
    }

    /// Writes the scratch buffer built by an encoder.
    fn put_buf(&mut self) -> Result<(), WriteError> {
        let buf = std::mem::take(&mut self.buf);
        let r = self.put(&buf);
        self.buf = buf;
        self.buf.clear();
        r
    }

    /// An AUX field (RDB 7+; ignored for older versions, which have none).
    pub fn aux(&mut self, key: &[u8], value: &[u8]) -> Result<(), WriteError> {
        if self.version < 7 {
            return Ok(());
        }
        self.buf.push(OP_AUX);
        string(&mut self.buf, key);
        string(&mut self.buf, value);
        self.put_buf()
    }

    /// A function library (its source code, `#!lua name=...`).
    pub fn function(&mut self, code: &[u8]) -> Result<(), WriteError> {
        if self.version < 10 {
            return Err(WriteError::Function { name: library_name(code), version: self.version });
        }
        self.buf.push(OP_FUNCTION2);
        string(&mut self.buf, code);
        self.put_buf()
    }

    /// Starts database `db`, with the hash table size hints when known (RDB 7+).
    pub fn select_db(&mut self, db: u64, sizes: Option<(u64, u64)>) -> Result<(), WriteError> {
        self.buf.push(OP_SELECTDB);
        len(&mut self.buf, db);
        if let (Some((keys, expires)), true) = (sizes, self.version >= 7) {
            self.buf.push(OP_RESIZEDB);
            len(&mut self.buf, keys);
            len(&mut self.buf, expires);
        }
        self.db = Some(db);
        self.put_buf()
    }

    /// Writes a key read from an RDB of version `source` (its db is selected when it changes).
    pub fn record(&mut self, rec: &Record, source: u16) -> Result<(), WriteError> {
        if self.db != Some(rec.db) {
            self.select_db(rec.db, None)?;
        }
        let copy = !self.reencode && !rec.raw.is_empty() && fits(rec.rdb_type, source, self.version);
        let encoded = if copy {
            None
        } else {
            let what = if rec.rdb_type == 7 && !rec.raw.is_empty() && self.version < 8 {
                Err("module values need RDB 8 (Redis 4.0) or later".to_string())
            } else if rec.rdb_type == 7 && !rec.raw.is_empty() {
                // Module values cannot be re-encoded, and every version from 8 on loads them.
                Ok((7, rec.raw[1..].to_vec()))
            } else {
                encode(&rec.value, self.version)
            };
            Some(what.map_err(|why| WriteError::Key {
                db: rec.db,
                key: printable(&rec.key),
                kind: rec.kind.as_str(),
                version: self.version,
                why,
            })?)
        };
        if let Some(ms) = rec.expire_ms {
            self.buf.push(OP_EXPIRETIME_MS);
            self.buf.extend_from_slice(&ms.to_le_bytes());
        }
        if self.version >= 8 {
            if let Some(idle) = rec.idle {
                self.buf.push(OP_IDLE);
                len(&mut self.buf, idle);
            }
            if let Some(freq) = rec.freq {
                self.buf.extend_from_slice(&[OP_FREQ, freq]);
            }
        }
        match &encoded {
            None => {
                self.buf.push(rec.raw[0]);
                string(&mut self.buf, &rec.key);
                self.put_buf()?;
                self.put(&rec.raw[1..])?;
            }
            Some((ty, bytes)) => {
                self.buf.push(*ty);
                string(&mut self.buf, &rec.key);
                self.put_buf()?;
                self.put(bytes)?;
            }
        }
        self.keys += 1;
        Ok(())
    }

    /// Writes the EOF opcode and the CRC64 of everything before it; returns the writer.
    pub fn finish(mut self) -> Result<W, WriteError> {
        self.put(&[OP_EOF])?;
        let crc = self.crc.to_le_bytes();
        self.put(&crc)?;
        self.w.flush()?;
        Ok(self.w)
    }
}

/// The `name=` of a library's `#!lua name=NAME` first line, else its first 40 bytes.
pub fn library_name(code: &[u8]) -> String {
    let first = code.split(|&b| b == b'\n').next().unwrap_or_default();
    let text = String::from_utf8_lossy(first);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("name="))
        .map(str::to_string)
        .unwrap_or_else(|| printable(&code[..code.len().min(40)]))
}

/// A key as text for messages: UTF-8 as is (quoted), other bytes escaped.
pub fn printable(key: &[u8]) -> String {
    let mut s = String::from("\"");
    for chunk in key.utf8_chunks() {
        for c in chunk.valid().chars() {
            s.extend(c.escape_debug());
        }
        for &b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::{Item, RdbReader, Value, ValueKind};

    fn rec(key: &[u8], value: Value, kind: ValueKind) -> Record {
        Record {
            db: 2,
            key: key.to_vec(),
            kind,
            rdb_type: 0,
            encoding: "raw",
            expire_ms: Some(1_900_000_000_000),
            idle: Some(7),
            freq: None,
            value,
            raw: Vec::new(),
            serialized_len: 0,
            offset: 0,
        }
    }

    #[test]
    fn written_file_reads_back() {
        let mut w = RdbWriter::new(Vec::new(), 10).unwrap();
        w.function(b"#!lua name=lib\nredis.register_function('f', function() return 1 end)").unwrap();
        w.record(&rec(b"k\xff", Value::String(b"12".to_vec()), ValueKind::String), 10).unwrap();
        let hash = Value::Hash(vec![(b"f".to_vec(), b"v".to_vec(), None)]);
        w.record(&rec(b"h", hash.clone(), ValueKind::Hash), 10).unwrap();
        let out = w.finish().unwrap();
        assert!(out.starts_with(b"REDIS0010"));
        let items: Vec<Item> = RdbReader::new(&out[..]).unwrap().map(|i| i.unwrap()).collect();
        let recs: Vec<&Record> = items.iter().filter_map(|i| if let Item::Record(r) = i { Some(r) } else { None }).collect();
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].db, recs[0].key.as_slice(), recs[0].expire_ms, recs[0].idle), (2, &b"k\xff"[..], Some(1_900_000_000_000), Some(7)));
        assert_eq!(recs[1].value, hash);
        assert!(items.iter().any(|i| matches!(i, Item::Function(_))));
    }

    #[test]
    fn refusals_name_the_key_and_the_need() {
        let mut w = RdbWriter::new(Vec::new(), 9).unwrap();
        let ttl_hash = Value::Hash(vec![(b"f".to_vec(), b"v".to_vec(), Some(5))]);
        let e = w.record(&rec(b"user:1", ttl_hash, ValueKind::Hash), 12).unwrap_err();
        assert_eq!(
            e.to_string(),
            "key \"user:1\" in db 2 (hash) cannot be written as RDB version 9: hash fields with their own TTL need RDB 12 (Redis 7.4) or 80 (Valkey 9.0)"
        );
        let e = w.function(b"#!lua name=mylib\n...").unwrap_err();
        assert!(e.to_string().starts_with("function library mylib cannot be written as RDB version 9"), "{e}");
        assert!(matches!(RdbWriter::new(Vec::new(), 13), Err(WriteError::Version(13))));
    }
}
