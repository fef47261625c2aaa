//! Cheap whole-file facts (version, aux fields, key counts per db/type/encoding) for snapshot metadata.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Serialize;

use super::error::Result;
use super::{Item, RdbReader, ReadOptions, ValueKind};

/// Facts about one RDB file, gathered without decoding values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub rdb_version: u16,
    /// AUX fields (`redis-ver`, `ctime`, `used-mem`, ...), lossily converted to UTF-8.
    pub aux: BTreeMap<String, String>,
    /// Per-database facts, keyed by db number.
    pub dbs: BTreeMap<u64, DbSummary>,
    pub keys: u64,
    pub keys_with_ttl: u64,
    /// Number of function libraries.
    pub functions: u64,
    /// Module names that stored auxiliary data.
    pub module_aux: Vec<String>,
    /// Bytes in the file, including header and checksum.
    pub total_bytes: u64,
    /// Stored CRC64 (None for RDB < 5; 0 means the writer disabled checksums).
    pub checksum: Option<u64>,
}

impl Summary {
    /// Counts one key of database `db`.
    pub fn count_key(&mut self, db: u64, with_ttl: bool) -> &mut DbSummary {
        self.keys += 1;
        self.keys_with_ttl += u64::from(with_ttl);
        let d = self.dbs.entry(db).or_default();
        d.keys += 1;
        d.keys_with_ttl += u64::from(with_ttl);
        d
    }

    /// Records an AUX field (lossily as UTF-8).
    pub fn add_aux(&mut self, key: &[u8], value: &[u8]) {
        self.aux.insert(String::from_utf8_lossy(key).into_owned(), String::from_utf8_lossy(value).into_owned());
    }
}

/// Facts about one database inside the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DbSummary {
    pub keys: u64,
    pub keys_with_ttl: u64,
    /// Keys per logical type (`string`, `hash`, ...).
    pub by_type: BTreeMap<String, u64>,
    /// Keys per `type/encoding` (e.g. `hash/listpack`).
    pub by_encoding: BTreeMap<String, u64>,
    /// Sum of serialized value sizes (type byte + value bytes).
    pub value_bytes: u64,
    /// Last RESIZEDB hint (db size, expires size), if present.
    pub resize_hint: Option<(u64, u64)>,
}

/// Walks a whole RDB stream without decoding values and returns its [`Summary`].
pub fn summarize(r: impl Read) -> Result<Summary> {
    summarize_each(r, |_, _| {})
}

/// [`summarize`], calling `each` with every record (value not decoded) and the file
/// offset where it ends, for indexes built in the same pass.
pub fn summarize_each(r: impl Read, mut each: impl FnMut(&super::Record, u64)) -> Result<Summary> {
    let mut rdb = RdbReader::with_options(r, ReadOptions::walk_only())?;
    let mut s = Summary {
        rdb_version: rdb.version(),
        ..Summary::default()
    };
    let mut db = 0u64;
    // Counted under static names and turned into strings once at the end (an allocation and
    // two string-keyed map lookups per record were a sizeable part of the walk). A file has a
    // handful of (db, type, encoding) triples, so a short list is the fastest map; names are
    // compared by address, and equal names at two addresses merge below.
    let mut by_encoding: Vec<(u64, ValueKind, &'static str, u64)> = Vec::new();
    while let Some(item) = rdb.next_item()? {
        match item {
            Item::Aux { key, value } => s.add_aux(&key, &value),
            Item::SelectDb(n) => db = n,
            Item::ResizeDb {
                db_size,
                expires_size,
            } => {
                s.dbs.entry(db).or_default().resize_hint = Some((db_size, expires_size));
            }
            Item::Function(_) => s.functions += 1,
            Item::ModuleAux { module, .. } => s.module_aux.push(module),
            Item::SlotInfo { .. } => {}
            Item::Record(rec) => {
                each(&rec, rdb.offset());
                let d = s.count_key(rec.db, rec.expire_ms.is_some());
                let same = |e: &&mut (u64, ValueKind, &'static str, u64)| {
                    e.0 == rec.db && e.1 == rec.kind && std::ptr::eq(e.2, rec.encoding)
                };
                match by_encoding.iter_mut().find(same) {
                    Some(e) => e.3 += 1,
                    None => by_encoding.push((rec.db, rec.kind, rec.encoding, 1)),
                }
                d.value_bytes += rec.serialized_len;
            }
        }
    }
    for (db, kind, encoding, n) in by_encoding {
        let kind = kind.as_str();
        let d = s.dbs.entry(db).or_default();
        *d.by_type.entry(kind.to_string()).or_default() += n;
        *d.by_encoding
            .entry(format!("{kind}/{encoding}"))
            .or_default() += n;
    }
    s.total_bytes = rdb.offset();
    s.checksum = rdb.stored_checksum();
    Ok(s)
}
