//! `repair index`: rebuilds the index from the pack headers, for when index
//! files are damaged or lost. Crash-safe like prune: the new index file is
//! written first and supersedes the old ones, which are deleted last.
//!
//! `repair snapshots`: deletes snapshot files whose bytes are damaged (they
//! fail their hash, do not decrypt or do not parse). Their data stays until
//! the next prune; files that are merely unreadable now (permissions, I/O
//! errors) or not named like snapshots are left alone.

use serde::Serialize;

use crate::crypto::Id;
use crate::error::Result;
use std::collections::{BTreeMap, HashSet};

use crate::format::index::{load_readable, read_pack_headers, Index, IndexFile, PackEntries};
use crate::format::pack::BlobEntry;
use crate::format::snapshot::{Listing, Unreadable};
use crate::store::lock::LockGuard;
use crate::store::{display_name, FileKind, Repository};

/// What a rebuild found and wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairSummary {
    /// Packs whose headers were read into the new index.
    pub packs: usize,
    /// Blobs in the new index.
    pub blobs: usize,
    /// Packs whose header cannot be read, with the reason: left out, or
    /// indexed from the old index when it names them (see `kept`).
    pub unreadable: Vec<(String, String)>,
    /// Of those, packs whose entries were kept from a readable old index file
    /// (their blobs may be intact; each is verified when read).
    pub kept: Vec<String>,
    /// Old index files replaced.
    pub old_index_files: usize,
}

/// Writes one index file built from every readable pack header and deletes the old index files.
pub fn repair_index(repo: &Repository, lock: &LockGuard) -> Result<RepairSummary> {
    lock.require_exclusive("repair index")?;
    let mut s = RepairSummary::default();
    let names: Vec<String> = repo.backend().list(FileKind::Pack)?.into_iter().map(|f| f.name).collect();
    let (packs, unreadable) = read_pack_headers(repo, &names);
    s.packs = packs.len();
    s.blobs = packs.iter().map(|(_, e)| e.len()).sum();
    s.unreadable = unreadable;
    let mut file = IndexFile { packs, ..IndexFile::default() };
    let old: Vec<String> = repo.backend().list(FileKind::Index)?.into_iter().map(|f| f.name).collect();
    for (pack, entries) in entries_of_unreadable_packs(repo, &names, &file) {
        s.kept.push(display_name(FileKind::Pack, &pack.to_hex()));
        s.blobs += entries.len();
        file.packs.push((pack, entries));
    }
    file.supersedes = old.iter().filter_map(|n| Id::from_hex(n)).collect();
    s.old_index_files = old.len();
    repo.write_sealed(FileKind::Index, &file.to_bytes())?;
    for name in &old {
        repo.backend().delete(FileKind::Index, name)?;
    }
    Ok(s)
}

/// The entries readable old index files give for packs on disk whose header
/// cannot be read: dropping them would lose blobs a damaged header does not touch.
fn entries_of_unreadable_packs(repo: &Repository, on_disk: &[String], rebuilt: &IndexFile) -> PackEntries {
    let read: HashSet<Id> = rebuilt.packs.iter().map(|(p, _)| *p).collect();
    let wanted: HashSet<Id> = on_disk.iter().filter_map(|n| Id::from_hex(n)).filter(|p| !read.contains(p)).collect();
    let mut old = Index::new();
    if wanted.is_empty() || load_readable(repo, &mut old).is_err() {
        return Vec::new();
    }
    let mut out: BTreeMap<Id, Vec<BlobEntry>> = BTreeMap::new();
    for (pack, e) in old.iter().filter(|(p, _)| wanted.contains(p)) {
        out.entry(pack).or_default().push(e);
    }
    for entries in out.values_mut() {
        entries.sort_by_key(|e| (e.offset, e.inner));
    }
    out.into_iter().collect()
}

/// The snapshot files that cannot be read: `damaged` ones `repair snapshots`
/// removes, and the others it leaves alone.
pub fn unreadable_snapshots(repo: &Repository) -> Result<(Vec<Unreadable>, Vec<Unreadable>)> {
    Ok(Listing::load(repo)?.unreadable.into_iter().partition(Unreadable::damaged))
}

/// Deletes damaged snapshot files (their data goes at the next prune).
pub fn remove_snapshot_files(repo: &Repository, damaged: &[Unreadable], lock: &LockGuard) -> Result<()> {
    lock.require_exclusive("repair snapshots")?;
    for u in damaged.iter().filter(|u| u.damaged()) {
        repo.backend().delete(FileKind::Snapshot, &u.name)?;
    }
    Ok(())
}
