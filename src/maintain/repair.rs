//! `repair index`: rebuilds the index from the pack headers, for when index
//! files are damaged or lost. Crash-safe like prune: the new index file is
//! written first and supersedes the old ones, which are deleted last.

use serde::Serialize;

use crate::crypto::Id;
use crate::error::Result;
use crate::format::index::IndexFile;
use crate::store::lock::LockGuard;
use crate::format::pack::read_header;
use crate::store::{display_name, FileKind, Repository};

/// What a rebuild found and wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairSummary {
    /// Packs whose headers were read into the new index.
    pub packs: usize,
    /// Blobs in the new index.
    pub blobs: usize,
    /// Packs left out because their header cannot be read, with the reason.
    pub unreadable: Vec<(String, String)>,
    /// Old index files replaced.
    pub old_index_files: usize,
}

/// Writes one index file built from every readable pack header and deletes the old index files.
pub fn repair_index(repo: &Repository, lock: &LockGuard) -> Result<RepairSummary> {
    lock.require_exclusive("repair index")?;
    let mut s = RepairSummary::default();
    let mut file = IndexFile::default();
    for info in repo.backend().list(FileKind::Pack)? {
        let Some(id) = Id::from_hex(&info.name) else {
            s.unreadable.push((display_name(FileKind::Pack, &info.name), "file name is not a pack id".into()));
            continue;
        };
        match read_header(repo.backend().as_ref(), repo.cipher(), &info.name) {
            Ok(entries) => {
                s.packs += 1;
                s.blobs += entries.len();
                file.packs.push((id, entries));
            }
            Err(e) => s.unreadable.push((display_name(FileKind::Pack, &info.name), e.to_string())),
        }
    }
    let old: Vec<String> = repo.backend().list(FileKind::Index)?.into_iter().map(|f| f.name).collect();
    file.supersedes = old.iter().filter_map(|n| Id::from_hex(n)).collect();
    s.old_index_files = old.len();
    repo.write_sealed(FileKind::Index, &file.to_bytes())?;
    for name in &old {
        repo.backend().delete(FileKind::Index, name)?;
    }
    Ok(s)
}
