//! Snapshots: what was backed up, when, from where, and how to find its bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crypto::Id;
use crate::error::{Error, Result};
use crate::store::{FileKind, Repository};

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
}

impl Snapshot {
    /// Total bytes of all files (saturating: the sizes come from a file).
    pub fn size(&self) -> u64 {
        self.files.iter().fold(0u64, |n, f| n.saturating_add(f.size))
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

    /// Loads every snapshot, oldest first.
    pub fn load_all(repo: &Repository) -> Result<Vec<(Id, Snapshot)>> {
        let mut out = Vec::new();
        for info in repo.backend().list(FileKind::Snapshot)? {
            let id = Id::from_hex(&info.name)
                .ok_or_else(|| Error::corrupt(format!("snapshots/{}", info.name), "name is not a snapshot id"))?;
            out.push((id, Snapshot::load(repo, &info.name)?));
        }
        out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Finds `latest`, a full id or a unique id prefix.
    pub fn find(repo: &Repository, spec: &str) -> Result<(Id, Snapshot)> {
        if spec == "latest" {
            let all = Snapshot::load_all(repo)?;
            return all.into_iter().last().ok_or_else(|| Error::NoSnapshot(spec.into()));
        }
        if spec.is_empty() || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::NoSnapshot(spec.into()));
        }
        let spec_lc = spec.to_ascii_lowercase();
        let names: Vec<String> = repo
            .backend()
            .list(FileKind::Snapshot)?
            .into_iter()
            .map(|i| i.name)
            .filter(|n| n.starts_with(&spec_lc))
            .collect();
        match names.len() {
            0 => Err(Error::NoSnapshot(spec.into())),
            1 => {
                let id = Id::from_hex(&names[0])
                    .ok_or_else(|| Error::corrupt(format!("snapshots/{}", names[0]), "name is not a snapshot id"))?;
                Ok((id, Snapshot::load(repo, &names[0])?))
            }
            _ => Err(Error::AmbiguousSnapshot(
                spec.into(),
                names.iter().map(|n| &n[..8]).collect::<Vec<_>>().join(", "),
            )),
        }
    }
}

/// The snapshots of one group (e.g. a cluster backup), oldest first: `latest` (the newest
/// group), a full group id or a unique prefix of one.
pub fn find_group(repo: &Repository, spec: &str) -> Result<Vec<(Id, Snapshot)>> {
    let all = Snapshot::load_all(repo)?;
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
    Ok(all.into_iter().filter(|(_, s)| s.group.as_deref() == Some(group.as_str())).collect())
}

