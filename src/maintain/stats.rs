//! Repository statistics: how much was backed up, how much is stored.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::crypto::{Id, SEAL_OVERHEAD};
use crate::engine::restore::Blobs;
use crate::error::Result;
use crate::format::index::Index;
use crate::format::keyindex::TopTable;
use crate::format::pack::{BlobType, DIGEST_LEN, FLAG_BOUND};
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
    /// Where the repository's bytes go.
    pub breakdown: Breakdown,
}

/// Where a repository's bytes go, part by part of the format, so that what is not the
/// data itself (per-frame and per-chunk metadata) can be seen and weighed.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Breakdown {
    /// Chunks of backed-up files (key index pages left out).
    pub data_chunks: u64,
    /// Their plaintext bytes.
    pub data_raw_bytes: u64,
    /// Sealed frames holding them.
    pub data_frames: u64,
    /// Those frames' compressed bodies: what zstd made of the chunks.
    pub data_compressed_bytes: u64,
    /// Those frames' nonce, tag and members digest (72 bytes per bound frame, 40 otherwise).
    pub data_frame_overhead_bytes: u64,
    /// data_raw_bytes / data_compressed_bytes: compression of the data alone.
    pub data_compression_ratio: f64,
    /// data_raw_bytes / data_chunks.
    pub average_chunk_bytes: u64,
    /// Chunk-list blobs (leaves and tops).
    pub chunk_list_blobs: u64,
    /// Sealed frames holding them.
    pub chunk_list_bytes: u64,
    /// Sealed frames holding compression dictionaries.
    pub dictionary_bytes: u64,
    /// Sealed frames holding key index pages, top tables, chunk facts and runs.
    pub key_index_bytes: u64,
    /// Sealed pack headers with their length fields (10 bytes per frame, 36 per blob).
    pub pack_header_bytes: u64,
    /// Index files.
    pub index_files: u64,
    /// Their bytes (about 35 per blob).
    pub index_bytes: u64,
    /// Snapshot files' bytes.
    pub snapshot_bytes: u64,
    /// Pack files no index names (left by an interrupted run).
    pub unindexed_pack_bytes: u64,
    /// Config, key files and locks.
    pub other_bytes: u64,
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
    let mut b = frame_breakdown(repo, index, snapshots);
    let frame_bytes = pack_frame_bytes(index);
    for kind in crate::store::FileKind::ALL {
        for f in repo.backend().list(kind)? {
            repository_bytes += f.size;
            match kind {
                FileKind::Pack => {
                    packs += 1;
                    match Id::from_hex(&f.name).and_then(|id| frame_bytes.get(&id)) {
                        Some(framed) => b.pack_header_bytes += f.size.saturating_sub(*framed),
                        None => b.unindexed_pack_bytes += f.size,
                    }
                }
                FileKind::Index => {
                    b.index_files += 1;
                    b.index_bytes += f.size;
                }
                FileKind::Snapshot => b.snapshot_bytes += f.size,
                FileKind::Config | FileKind::Key | FileKind::Lock => b.other_bytes += f.size,
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
        breakdown: b,
    })
}

/// Sealed bytes of the indexed frames of each pack (the rest of a pack file is its header).
fn pack_frame_bytes(index: &Index) -> HashMap<Id, u64> {
    let mut frames = HashSet::new();
    let mut bytes: HashMap<Id, u64> = HashMap::new();
    for (pack, e) in index.iter() {
        if frames.insert((pack, e.offset)) {
            *bytes.entry(pack).or_default() += u64::from(e.length);
        }
    }
    bytes
}

/// The frames' share of the breakdown: data, chunk lists, dictionaries and key index. Key
/// index blobs are data blobs named by the snapshots (top tables, chunk facts, runs) and by
/// their top tables (pages); a top table that cannot be read leaves its pages counted as
/// data (`check` reports it).
fn frame_breakdown(repo: &Repository, index: &Index, snapshots: &[(Id, Snapshot)]) -> Breakdown {
    let mut key_index: HashSet<Id> = HashSet::new();
    if let Ok(blobs) = Blobs::new(repo, index) {
        for (_, s) in snapshots {
            let (tops, others) = s.key_index_blobs();
            key_index.extend(others.into_iter().filter_map(Id::from_hex));
            for hex in tops {
                let Some(top) = Id::from_hex(hex) else { continue };
                if !key_index.insert(top) {
                    continue;
                }
                if let Ok(t) = blobs.load(&top).and_then(|p| TopTable::decode(&p, hex)) {
                    key_index.extend(t.pages.iter().map(|p| p.id));
                }
            }
        }
    }
    let mut b = Breakdown::default();
    let mut frames = HashSet::new();
    for (pack, e) in index.iter() {
        let first = frames.insert((pack, e.offset));
        let sealed = u64::from(e.length);
        match e.kind {
            BlobType::Data if key_index.contains(&e.id) => b.key_index_bytes += if first { sealed } else { 0 },
            BlobType::Data => {
                b.data_chunks += 1;
                b.data_raw_bytes += u64::from(e.raw_len);
                if first {
                    let overhead = (SEAL_OVERHEAD + if e.flags & FLAG_BOUND != 0 { DIGEST_LEN } else { 0 }) as u64;
                    b.data_frames += 1;
                    b.data_frame_overhead_bytes += overhead.min(sealed);
                    b.data_compressed_bytes += sealed.saturating_sub(overhead);
                }
            }
            BlobType::ChunkList => {
                b.chunk_list_blobs += 1;
                b.chunk_list_bytes += if first { sealed } else { 0 };
            }
            BlobType::Dictionary => b.dictionary_bytes += if first { sealed } else { 0 },
        }
    }
    b.data_compression_ratio = ratio(b.data_raw_bytes, b.data_compressed_bytes);
    b.average_chunk_bytes = b.data_raw_bytes.checked_div(b.data_chunks).unwrap_or(0);
    b
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
    for (_, e) in used.iter() {
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
