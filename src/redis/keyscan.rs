//! Streams the key records of a snapshot's RDB through a filter (pattern, db, type),
//! the common first step of `inspect`, `diff` and `restore --to`.

use std::io::Read;

use crate::error::{Error, Result};
use crate::redis::glob::Glob;
use crate::rdb::{escape, quoted, Item, RdbReader, ReadOptions, Record, ValueKind};
use crate::engine::restore::{with_reader, Blobs, RestoreOptions};
use crate::format::snapshot::{Snapshot, SnapshotFile};

/// Which keys a command looks at; empty fields accept everything.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    /// Glob on the key name (Redis `KEYS` syntax).
    pub pattern: Option<Glob>,
    /// Only this database.
    pub db: Option<u64>,
    /// Only this logical type.
    pub kind: Option<ValueKind>,
    /// Not keys matching this glob (redis-rdb-tools' `--not-key`).
    pub exclude: Option<Glob>,
    /// Only keys whose serialized value (type byte and value, as `RESTORE` sends it) is at
    /// least this many bytes (redis-rdb-tools' `--bytes`).
    pub min_bytes: Option<u64>,
}

impl KeyFilter {
    /// Whether a key in `db` passes the pattern and db parts (the type and size are not known yet).
    pub fn matches_key(&self, db: u64, key: &[u8]) -> bool {
        self.db.is_none_or(|d| d == db)
            && self.pattern.as_ref().is_none_or(|p| p.matches(key))
            && !self.exclude.as_ref().is_some_and(|p| p.matches(key))
    }

    /// Whether a record passes every part of the filter.
    pub fn matches(&self, rec: &Record) -> bool {
        self.kind.is_none_or(|k| k == rec.kind)
            && self.min_bytes.is_none_or(|n| rec.serialized_len >= n)
            && self.matches_key(rec.db, &rec.key)
    }

    /// Whether only the db part is set (every key of the dbs chosen passes).
    pub fn whole_dbs(&self) -> bool {
        self.pattern.is_none() && self.kind.is_none() && self.exclude.is_none() && self.min_bytes.is_none()
    }
}

/// Parses a type name as `TYPE` prints it (`string`, `list`, `set`, `zset`, `hash`, `stream`, `module`).
pub fn parse_kind(name: &str) -> Option<ValueKind> {
    [
        ValueKind::String,
        ValueKind::List,
        ValueKind::Set,
        ValueKind::SortedSet,
        ValueKind::Hash,
        ValueKind::Stream,
        ValueKind::Module,
    ]
    .into_iter()
    .find(|k| k.as_str() == name)
}

/// The file of a snapshot that holds an RDB: the only file, or the only `.rdb`-named one.
pub fn rdb_file(snap: &Snapshot) -> Result<&SnapshotFile> {
    if let [only] = snap.files.as_slice() {
        return Ok(only);
    }
    let rdbs: Vec<&SnapshotFile> = snap.files.iter().filter(|f| f.name.ends_with(".rdb")).collect();
    match rdbs.as_slice() {
        [one] => Ok(one),
        _ => Err(Error::Invalid(format!(
            "snapshot holds {} files and {} of them are named *.rdb; cannot tell which one holds the keys",
            snap.files.len(),
            rdbs.len()
        ))),
    }
}

/// The file of `snap` named `name`, or without a name the one that holds the RDB ([`rdb_file`]).
pub fn pick_file<'a>(snap: &'a Snapshot, name: Option<&str>) -> Result<&'a SnapshotFile> {
    let Some(name) = name else { return rdb_file(snap) };
    snap.files.iter().find(|f| f.name == name).ok_or_else(|| {
        let names: Vec<&str> = snap.files.iter().map(|f| f.name.as_str()).collect();
        Error::Invalid(format!("the snapshot holds no file named {name:?}; its files are: {}", names.join(", ")))
    })
}

/// The files of `snap` a reader of `file` leaves out (empty when `file` is the whole snapshot).
pub fn files_not_read<'a>(snap: &'a Snapshot, file: &SnapshotFile) -> Vec<&'a str> {
    snap.files.iter().filter(|f| f.name != file.name).map(|f| f.name.as_str()).collect()
}

/// A key and its database, named alike in every report: `{"db":N,"key":"..."}` in JSON
/// (the key [`escape`]d), `N:key` in text (the key [`quoted`] when it needs it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyRef {
    pub db: u64,
    pub key: Vec<u8>,
}

impl serde::Serialize for KeyRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("KeyRef", 2)?;
        st.serialize_field("db", &self.db)?;
        st.serialize_field("key", &escape(&self.key))?;
        st.end()
    }
}

impl std::fmt::Display for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.db, quoted(&self.key))
    }
}

/// Calls `each` with the RDB version and every record of `r` that passes `filter`;
/// returns the RDB version. `what` names the stream in errors.
pub fn scan<E: From<Error>>(
    r: impl Read,
    what: &str,
    opts: ReadOptions,
    filter: &KeyFilter,
    mut each: impl FnMut(u16, Record) -> std::result::Result<(), E>,
) -> std::result::Result<u16, E> {
    let mut rdb = RdbReader::with_options(r, opts).map_err(|e| Error::rdb(what, e))?;
    let version = rdb.version();
    while let Some(item) = rdb.next_item().map_err(|e| Error::rdb(what, e))? {
        if let Item::Record(rec) = item {
            if filter.matches(&rec) {
                each(version, rec)?;
            }
        }
    }
    Ok(version)
}

/// [`scan`] over one file of a snapshot, streamed from the repository.
pub fn scan_file<E: From<Error>>(
    blobs: &Blobs<'_>,
    file: &SnapshotFile,
    opts: ReadOptions,
    filter: &KeyFilter,
    each: impl FnMut(u16, Record) -> std::result::Result<(), E>,
) -> std::result::Result<u16, E> {
    with_reader(blobs, file, &RestoreOptions::default(), |r| scan(r, &file.name, opts, filter, each))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for name in ["string", "list", "set", "zset", "hash", "stream", "module"] {
            assert_eq!(parse_kind(name).map(|k| k.as_str()), Some(name));
        }
        assert_eq!(parse_kind("sortedset"), None);
    }

    #[test]
    fn filter_parts() {
        let f = KeyFilter { pattern: Some(Glob::new(b"user:*")), db: Some(1), exclude: Some(Glob::new(b"user:1?")), ..Default::default() };
        assert!(f.matches_key(1, b"user:7"));
        assert!(!f.matches_key(1, b"user:17"));
        assert!(!f.matches_key(0, b"user:7"));
        assert!(!f.matches_key(1, b"order:7"));
        assert!(KeyFilter::default().matches_key(9, b"x"));
    }

    #[test]
    fn key_refs_name_keys_alike() {
        let k = KeyRef { db: 3, key: b"a b\xff".to_vec() };
        assert_eq!(k.to_string(), "3:\"a b\\xff\"");
        assert_eq!(serde_json::to_value(&k).unwrap(), serde_json::json!({"db": 3, "key": "a b\\xff"}));
    }
}
