//! Decoded value types produced by the parser.

use serde::Serialize;

/// Logical Redis type of a key (what `TYPE key` reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    String,
    List,
    Set,
    #[serde(rename = "zset")]
    SortedSet,
    Hash,
    Stream,
    Module,
}

impl ValueKind {
    /// The name `TYPE` would print (`zset` for sorted sets, module values as `module`).
    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::String => "string",
            ValueKind::List => "list",
            ValueKind::Set => "set",
            ValueKind::SortedSet => "zset",
            ValueKind::Hash => "hash",
            ValueKind::Stream => "stream",
            ValueKind::Module => "module",
        }
    }
}

/// A hash field: (field, value, absolute expiry in ms for Redis 7.4 field TTLs).
pub type HashField = (Vec<u8>, Vec<u8>, Option<u64>);

/// Field/value pairs as decoded from pair encodings (zipmap, ziplist/listpack hashes).
pub(crate) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A decoded value; `NotDecoded` when the reader was asked to skip decoding.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(Vec<Vec<u8>>),
    SortedSet(Vec<(Vec<u8>, f64)>),
    Hash(Vec<HashField>),
    Stream(Box<Stream>),
    Module(ModuleValue),
    NotDecoded,
}

/// A module value that was skipped (not interpretable without the module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleValue {
    /// 9-character module type name decoded from the 64-bit module id.
    pub name: String,
    /// Module type encoding version (low 10 bits of the id).
    pub encver: u64,
    /// Serialized bytes after the module id that were walked over.
    pub skipped_bytes: u64,
}

/// A stream entry id `ms-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One live stream entry and its field/value pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub id: StreamId,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A pending (delivered, unacknowledged) entry of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingEntry {
    pub id: StreamId,
    pub delivery_time_ms: u64,
    pub delivery_count: u64,
}

/// A consumer of a group, with the ids it has pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub name: Vec<u8>,
    pub seen_time_ms: u64,
    /// Present from RDB type 21 (Redis 7.2) on.
    pub active_time_ms: Option<u64>,
    pub pending: Vec<StreamId>,
}

/// A consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroup {
    pub name: Vec<u8>,
    pub last_id: StreamId,
    /// Present from RDB type 19 (Redis 7.0) on.
    pub entries_read: Option<u64>,
    pub pending: Vec<PendingEntry>,
    pub consumers: Vec<Consumer>,
}

/// A decoded stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stream {
    /// Live (not deleted) entries in id order.
    pub entries: Vec<StreamEntry>,
    /// Number of live entries as recorded by Redis (`XLEN`).
    pub length: u64,
    pub last_id: StreamId,
    /// Present from RDB type 19 on.
    pub first_id: Option<StreamId>,
    /// Present from RDB type 19 on.
    pub max_deleted_id: Option<StreamId>,
    /// Present from RDB type 19 on.
    pub entries_added: Option<u64>,
    pub groups: Vec<ConsumerGroup>,
}
