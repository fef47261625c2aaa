//! Snapshots: what was backed up, when, from where, and how to find its bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crypto::Id;
use crate::error::{Error, Result};
use crate::store::{display_name, FileKind, Repository};

/// Source kind of a log segment of a followed server (see `redis::follow`): a stretch of
/// a replication stream, restorable only through its base (`restore --at`), not by itself.
pub const LOG_SEGMENT_KIND: &str = "redis-log";

/// One backed-up stream (an RDB file, or one file of an AOF directory).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotFile {
    /// File name used on restore (e.g. `dump.rdb`).
    pub name: String,
    /// Bytes in the stream.
    pub size: u64,
    /// Plain BLAKE3 of the whole stream (compare with `b3sum`).
    pub blake3: String,
    /// Number of chunks.
    pub chunks: u64,
    /// Ids of the chunk-list blobs that, concatenated, list the chunk ids in order.
    pub lists: Vec<String>,
    /// Set when `lists` are delta pieces: which earlier file they draw from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_base: Option<ListBase>,
}

/// The file an incremental's delta pieces draw from (its lists are the pieces' bases), so
/// the next backup can draw from the same one until the delta grows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ListBase {
    /// The snapshot that holds it (it may be forgotten since: its lists stay while used).
    pub snapshot: String,
    /// Chunk ids the pieces hold themselves, found in no base.
    pub new_chunks: u64,
}

/// Where the data came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SourceDesc {
    /// "file", "stdin", "redis", "aof", ...
    pub kind: String,
    /// Path, stdin name or server address.
    pub name: String,
    /// Kind-specific facts (server info, cluster shard, ...).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// Facts read from the RDB itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RedisFacts {
    /// RDB format version from the header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdb_version: Option<u32>,
    /// `redis-ver` aux field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_version: Option<String>,
    /// Keys per database number.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys_per_db: BTreeMap<u32, u64>,
    /// Keys in all databases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<u64>,
    /// Keys with a TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_with_ttl: Option<u64>,
    /// The file these facts were read from when the snapshot holds several: an AOF
    /// directory's base RDB (keys written by its incremental files are not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Why the RDB did not parse or its checksum failed (it was stored anyway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdb_error: Option<String>,
}

/// What a backup run did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct BackupSummary {
    /// Bytes read from the source.
    pub bytes_processed: u64,
    /// Chunks the source was cut into.
    pub chunks: u64,
    /// Chunks the repository did not have yet.
    pub new_chunks: u64,
    /// Plaintext bytes of those new chunks.
    pub new_raw_bytes: u64,
    /// Bytes written to pack files (after compression and encryption).
    pub bytes_added: u64,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

/// A snapshot file's contents.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    /// Format version.
    pub version: u32,
    /// When the backup started (RFC 3339, UTC).
    pub time: String,
    /// Host that ran the backup (or `--host`).
    pub host: String,
    /// User that ran it.
    pub username: String,
    /// User tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Groups snapshots taken together (e.g. the shards of a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Source description.
    pub source: SourceDesc,
    /// Facts from the RDB, when it parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisFacts>,
    /// The streams, in order.
    pub files: Vec<SnapshotFile>,
    /// What the backup did.
    pub summary: BackupSummary,
    /// The id this snapshot was first taken as, kept through `tag` rewrites and `copy`
    /// (a copy whose original is already in the destination is skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
    /// The key index written at backup time (none for older snapshots, `--no-key-index`
    /// and input that is not a complete RDB); older readers ignore the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_index: Option<KeyIndexRef>,
    /// A layered key index instead (see `redis::keyindex`): a field of its own, so that older
    /// readers, which would take the delta for the whole index, ignore it and stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_layers: Option<KeyLayersRef>,
}

/// Where a snapshot's key index is: its top table blob, which names the page blobs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyIndexRef {
    /// The snapshot file whose keys it lists.
    pub file: String,
    /// Id of the top table blob.
    pub top: String,
    /// Keys it lists.
    pub keys: u64,
    /// The file's chunk-facts pieces in order (`format::keylayers`), written with a full index
    /// so later backups can layer theirs on it; empty for older snapshots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<String>,
}

/// Where a layered key index is: the full index of an earlier snapshot's file (the base), the
/// runs of this file whose bytes and records are the base's, and a full index of the records
/// outside them (the delta). A key is the delta's entry, else the base's moved by its run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyLayersRef {
    /// The snapshot file whose keys it lists.
    pub file: String,
    /// Keys it lists: the delta's and the base's inside runs.
    pub keys: u64,
    /// The base: a full index with its chunk facts (its `file` names the base snapshot's file).
    pub base: KeyIndexRef,
    /// Id of the delta's top table blob (its chunk-list starts are this file's).
    pub delta: String,
    /// Keys in the delta.
    pub delta_keys: u64,
    /// Id of the runs blob.
    pub runs: String,
}

impl Snapshot {
    /// Total bytes of all files (saturating: the sizes come from a file).
    pub fn size(&self) -> u64 {
        self.files.iter().fold(0u64, |n, f| n.saturating_add(f.size))
    }

    /// The blobs its key index names, full or layered (a layered one's base too): the top
    /// tables, which name their pages, and the others (chunk facts, runs), as hex ids.
    pub fn key_index_blobs(&self) -> (Vec<&str>, Vec<&str>) {
        let layers = self.key_layers.as_ref();
        let fulls = self.key_index.iter().chain(layers.map(|l| &l.base));
        let tops = fulls.clone().map(|r| r.top.as_str()).chain(layers.map(|l| l.delta.as_str())).collect();
        let others = fulls.flat_map(|r| r.facts.iter().map(String::as_str)).chain(layers.map(|l| l.runs.as_str())).collect();
        (tops, others)
    }

    /// Whether this is a log segment of a followed server rather than a snapshot of a dataset.
    pub fn is_log_segment(&self) -> bool {
        self.source.kind == LOG_SEGMENT_KIND
    }

    /// The full id of the base snapshot a log segment continues (None for other snapshots).
    pub fn log_base(&self) -> Option<&str> {
        self.is_log_segment().then(|| self.source.details.get("base").and_then(|b| b.as_str())).flatten()
    }

    /// Seals and stores the snapshot; returns its id.
    pub fn save(&self, repo: &Repository) -> Result<Id> {
        let json = serde_json::to_vec(self).map_err(|e| Error::Invalid(format!("snapshot: {e}")))?;
        repo.write_sealed(FileKind::Snapshot, &json)
    }

    /// Loads one snapshot by its full id.
    pub fn load(repo: &Repository, id: &str) -> Result<Snapshot> {
        let plain = repo.read_sealed(FileKind::Snapshot, id)?;
        serde_json::from_slice(&plain)
            .map_err(|e| Error::corrupt(format!("snapshots/{id}"), format!("not a snapshot: {e}")))
    }

    /// The snapshot file name `spec` (a full id or a unique prefix) names, without reading it.
    pub fn resolve(repo: &Repository, spec: &str) -> Result<String> {
        if spec.is_empty() || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::NoSnapshot(spec.into()));
        }
        let spec_lc = spec.to_ascii_lowercase();
        let names: Vec<String> = repo
            .backend()
            .list(FileKind::Snapshot)?
            .into_iter()
            .map(|i| i.name)
            .filter(|n| n.starts_with(&spec_lc) && Id::from_hex(n).is_some())
            .collect();
        match names.as_slice() {
            [] => Err(Error::NoSnapshot(spec.into())),
            [one] => Ok(one.clone()),
            _ => Err(Error::AmbiguousSnapshot(
                spec.into(),
                names.iter().map(|n| &n[..8]).collect::<Vec<_>>().join(", "),
            )),
        }
    }

    /// Finds `latest` (the newest readable snapshot that is not a log segment), a full id or
    /// a unique id prefix; also returns the snapshot files `latest` skipped as unreadable.
    pub fn find(repo: &Repository, spec: &str) -> Result<((Id, Snapshot), Vec<Unreadable>)> {
        if spec == "latest" {
            let mut all = Listing::load(repo)?;
            all.snapshots.retain(|(_, s)| !s.is_log_segment());
            return match all.snapshots.pop() {
                Some(newest) => Ok((newest, all.unreadable)),
                // None readable: the error is the damage, not "no snapshot".
                None => Err(all.unreadable.into_iter().next().map_or_else(|| Error::NoSnapshot(spec.into()), Unreadable::into_error)),
            };
        }
        let name = Snapshot::resolve(repo, spec)?;
        let id = Id::from_hex(&name).ok_or_else(|| Error::NoSnapshot(spec.into()))?;
        let snap = Snapshot::load(repo, &name).map_err(|error| Unreadable { name, error }.into_error())?;
        Ok(((id, snap), Vec::new()))
    }
}

/// A snapshot file that cannot be read, and why.
#[derive(Debug)]
pub struct Unreadable {
    /// Its file name in `snapshots/`.
    pub name: String,
    /// Why it cannot be read.
    pub error: Error,
}

impl Unreadable {
    /// Whether its bytes are damaged (so `repair snapshots` may delete it), not
    /// merely unreadable now (permissions, I/O errors) or a foreign file.
    pub fn damaged(&self) -> bool {
        matches!(self.error, Error::Corrupt { .. }) && Id::from_hex(&self.name).is_some()
    }

    /// The first 8 characters of its name, as listings show ids.
    pub fn short(&self) -> &str {
        self.name.get(..8).unwrap_or(&self.name)
    }

    /// What to do about it.
    pub fn advice(&self) -> &'static str {
        if self.damaged() {
            "run `rdbvault repair snapshots` to remove it"
        } else {
            "fix or remove the file by hand"
        }
    }

    /// The error, with what to do about it.
    pub fn into_error(self) -> Error {
        let advice = self.advice();
        match self.error {
            Error::Corrupt { what, detail } => Error::Corrupt { what, detail: format!("{detail}; {advice}") },
            other => other,
        }
    }
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "snapshot {}: {}; {}", self.short(), self.error, self.advice())
    }
}

/// Every readable snapshot, oldest first, and the snapshot files that are not.
#[derive(Debug, Default)]
pub struct Listing {
    /// Readable snapshots, oldest first.
    pub snapshots: Vec<(Id, Snapshot)>,
    /// Snapshot files that cannot be read: skipped, never guessed at.
    pub unreadable: Vec<Unreadable>,
}

impl Listing {
    /// Reads every snapshot file; a file that vanished meanwhile (a concurrent forget) is left out.
    pub fn load(repo: &Repository) -> Result<Listing> {
        let mut out = Listing::default();
        for info in repo.backend().list(FileKind::Snapshot)? {
            let Some(id) = Id::from_hex(&info.name) else {
                let error = Error::corrupt(display_name(FileKind::Snapshot, &info.name), "name is not a snapshot id");
                out.unreadable.push(Unreadable { name: info.name, error });
                continue;
            };
            match Snapshot::load(repo, &info.name) {
                Ok(s) => out.snapshots.push((id, s)),
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => out.unreadable.push(Unreadable { name: info.name, error }),
            }
        }
        out.snapshots.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(out)
    }
}

/// The snapshots of one group (e.g. a cluster backup), oldest first: `latest` (the newest
/// group), a full group id or a unique prefix of one.
/// Unreadable snapshot files are returned too (any might belong to the group).
pub fn find_group(repo: &Repository, spec: &str) -> Result<Listing> {
    let Listing { snapshots: all, unreadable } = Listing::load(repo)?;
    let group = if spec == "latest" {
        all.iter().rev().find_map(|(_, s)| s.group.clone())
    } else {
        let mut groups: Vec<&String> = all.iter().filter_map(|(_, s)| s.group.as_ref()).filter(|g| g.starts_with(spec)).collect();
        groups.sort();
        groups.dedup();
        match groups.as_slice() {
            [g] => Some((*g).clone()),
            [] => None,
            many => {
                let list: Vec<&str> = many.iter().map(|g| g.as_str()).collect();
                return Err(Error::AmbiguousSnapshot(format!("group {spec}"), list.join(", ")));
            }
        }
    };
    let group = group.filter(|_| !spec.is_empty()).ok_or_else(|| Error::NoSnapshot(format!("group {spec}")))?;
    let snapshots = all.into_iter().filter(|(_, s)| s.group.as_deref() == Some(group.as_str())).collect();
    Ok(Listing { snapshots, unreadable })
}

