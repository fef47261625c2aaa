//! Writes sealed blobs into pack files and records them in index files.
//!
//! Order of writes keeps the repository consistent after a crash: a pack is
//! stored before any index file names it, and index files are written every
//! few packs, so an interrupted run leaves at most a few unindexed packs that
//! the next backup adopts (see `adopt_orphan_packs`).

use std::collections::HashSet;

use crate::crypto::Id;
use crate::error::Result;
use crate::index::{Index, IndexFile};
use crate::pack::{read_header, BlobType, PackBuilder};
use crate::repo::{FileKind, Repository};

/// Index files are written after this many packs (and at the end).
const PACKS_PER_INDEX: usize = 8;

/// What the packer wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct PackerStats {
    /// Pack files written.
    pub packs: u64,
    /// Bytes of those pack files.
    pub bytes: u64,
    /// Blobs written.
    pub blobs: u64,
}

/// Fills packs and writes them with their index entries.
pub struct Packer<'a> {
    repo: &'a Repository,
    cur: PackBuilder,
    pending: IndexFile,
    written: Vec<Id>,
    stats: PackerStats,
}

impl<'a> Packer<'a> {
    /// A packer writing into `repo`.
    pub fn new(repo: &'a Repository) -> Self {
        Packer { repo, cur: PackBuilder::new(), pending: IndexFile::default(), written: Vec::new(), stats: PackerStats::default() }
    }

    /// Adds a sealed blob; writes the pack when it is full.
    pub fn add(&mut self, id: Id, kind: BlobType, flags: u8, raw_len: u32, sealed: &[u8]) -> Result<()> {
        self.cur.add(id, kind, flags, raw_len, sealed);
        self.stats.blobs += 1;
        if self.cur.is_full() {
            self.write_pack()?;
        }
        Ok(())
    }

    fn write_pack(&mut self) -> Result<()> {
        if self.cur.is_empty() {
            return Ok(());
        }
        let builder = std::mem::take(&mut self.cur);
        let (bytes, id, entries) = builder.finish(self.repo.cipher());
        self.repo.backend().write(FileKind::Pack, &id.to_hex(), &bytes)?;
        self.stats.packs += 1;
        self.stats.bytes += bytes.len() as u64;
        self.written.push(id);
        self.pending.packs.push((id, entries));
        if self.pending.packs.len() >= PACKS_PER_INDEX {
            self.write_index()?;
        }
        Ok(())
    }

    fn write_index(&mut self) -> Result<()> {
        if self.pending.packs.is_empty() {
            return Ok(());
        }
        let file = std::mem::take(&mut self.pending);
        self.repo.write_sealed(FileKind::Index, &file.to_bytes())?;
        Ok(())
    }

    /// Writes the last pack and index file; returns what was written.
    pub fn finish(mut self) -> Result<PackerStats> {
        self.write_pack()?;
        self.write_index()?;
        Ok(self.stats)
    }

    /// Packs written so far.
    pub fn written(&self) -> &[Id] {
        &self.written
    }
}

/// Indexes pack files that no index names (left by an interrupted backup), so
/// their blobs are reused instead of stored again. Returns how many were adopted;
/// packs whose header cannot be read are left alone for `check` to report.
pub fn adopt_orphan_packs(repo: &Repository, index: &mut Index) -> Result<usize> {
    let known: HashSet<Id> = index.packs().iter().copied().collect();
    let mut file = IndexFile::default();
    for info in repo.backend().list(FileKind::Pack)? {
        let Some(id) = Id::from_hex(&info.name) else { continue };
        if known.contains(&id) {
            continue;
        }
        if let Ok(entries) = read_header(repo.backend().as_ref(), repo.cipher(), &info.name) {
            for e in &entries {
                index.insert(id, *e);
            }
            file.packs.push((id, entries));
        }
    }
    let n = file.packs.len();
    if n > 0 {
        repo.write_sealed(FileKind::Index, &file.to_bytes())?;
    }
    Ok(n)
}
