//! Repository statistics: how much was backed up, how much is stored.

use serde::Serialize;

use crate::error::Result;
use crate::format::index::Index;
use crate::format::pack::BlobType;
use crate::store::{FileKind, Repository};
use crate::format::snapshot::Snapshot;

/// Sizes and ratios across all snapshots.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stats {
    /// Number of snapshots.
    pub snapshots: u64,
    /// Sum of the sizes of all snapshots (what a plain copy of each would take).
    pub total_raw_bytes: u64,
    /// Plaintext bytes of distinct data chunks.
    pub unique_raw_bytes: u64,
    /// Bytes of those chunks after compression and encryption.
    pub unique_stored_bytes: u64,
    /// Distinct data chunks.
    pub data_blobs: u64,
    /// Metadata blobs: chunk lists and compression dictionaries.
    pub list_blobs: u64,
    /// Pack files.
    pub packs: u64,
    /// Bytes of all repository files (packs, index, snapshots, keys, config).
    pub repository_bytes: u64,
    /// total_raw_bytes / unique_raw_bytes.
    pub dedup_ratio: f64,
    /// unique_raw_bytes / unique_stored_bytes.
    pub compression_ratio: f64,
    /// total_raw_bytes / repository_bytes.
    pub overall_ratio: f64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Computes the statistics of a repository.
pub fn compute(repo: &Repository, index: &Index, snapshots: &[(crate::crypto::Id, Snapshot)]) -> Result<Stats> {
    let total_raw_bytes = snapshots.iter().fold(0u64, |t, (_, s)| t.saturating_add(s.size()));
    let (mut unique_raw_bytes, mut unique_stored_bytes, mut data_blobs, mut list_blobs) = (0, 0, 0, 0);
    for (_, e) in index.iter() {
        match e.kind {
            BlobType::Data => {
                data_blobs += 1;
                unique_raw_bytes += e.raw_len as u64;
                // A frame's sealed bytes, shared by its blobs in proportion to their size.
                unique_stored_bytes += e.length as u64 * e.raw_len as u64 / e.frame_len.max(1) as u64;
            }
            BlobType::ChunkList | BlobType::Dictionary => list_blobs += 1,
        }
    }
    let mut repository_bytes = 0;
    let mut packs = 0;
    for kind in crate::store::FileKind::ALL {
        for f in repo.backend().list(kind)? {
            repository_bytes += f.size;
            if kind == FileKind::Pack {
                packs += 1;
            }
        }
    }
    Ok(Stats {
        snapshots: snapshots.len() as u64,
        total_raw_bytes,
        unique_raw_bytes,
        unique_stored_bytes,
        data_blobs,
        list_blobs,
        packs,
        repository_bytes,
        dedup_ratio: ratio(total_raw_bytes, unique_raw_bytes),
        compression_ratio: ratio(unique_raw_bytes, unique_stored_bytes),
        overall_ratio: ratio(total_raw_bytes, repository_bytes),
    })
}

/// What a restore of the chosen snapshots would write (restic's `--mode restore-size`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RestoreSize {
    /// Number of snapshots.
    pub snapshots: u64,
    /// Files a restore writes (an AOF snapshot has several).
    pub total_file_count: u64,
    /// Bytes a restore writes.
    pub total_size: u64,
}

/// Sizes of what a restore of `snapshots` would write.
pub fn restore_size(snapshots: &[(crate::crypto::Id, Snapshot)]) -> RestoreSize {
    RestoreSize {
        snapshots: snapshots.len() as u64,
        total_file_count: snapshots.iter().map(|(_, s)| s.files.len() as u64).sum(),
        total_size: snapshots.iter().fold(0u64, |t, (_, s)| t.saturating_add(s.size())),
    }
}

/// The stored blobs the chosen snapshots reference, each once (restic's `--mode raw-data`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RawData {
    /// Number of snapshots.
    pub snapshots: u64,
    /// Distinct blobs: data chunks and chunk lists.
    pub total_blob_count: u64,
    /// Their plaintext bytes.
    pub total_uncompressed_size: u64,
    /// Their bytes in packs, after compression and encryption (a frame's bytes shared by
    /// its blobs in proportion to their size).
    pub total_size: u64,
    /// total_uncompressed_size / total_size.
    pub compression_ratio: f64,
}

/// Counts the blobs `snapshots` reference (compression dictionaries, shared by all, left out).
pub fn raw_data(repo: &Repository, index: &Index, snapshots: &[(crate::crypto::Id, Snapshot)]) -> Result<RawData> {
    let used = crate::maintain::prune::used_blobs(repo, index, snapshots)?;
    let (mut count, mut raw, mut stored) = (0u64, 0u64, 0u64);
    for id in &used {
        let Some((_, e)) = index.get(id) else { continue };
        if e.kind == BlobType::Dictionary {
            continue;
        }
        count += 1;
        raw += e.raw_len as u64;
        stored += e.length as u64 * e.raw_len as u64 / e.frame_len.max(1) as u64;
    }
    Ok(RawData {
        snapshots: snapshots.len() as u64,
        total_blob_count: count,
        total_uncompressed_size: raw,
        total_size: stored,
        compression_ratio: ratio(raw, stored),
    })
}
