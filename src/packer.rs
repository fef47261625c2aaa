//! Writes sealed blobs into pack files and records them in index files.
//!
//! Order of writes keeps the repository consistent after a crash: a pack is
//! stored before any index file names it (one writer thread does both, in
//! that order), and index files are written every few packs, so an interrupted run leaves at most a few unindexed packs that
//! the next backup adopts (see `adopt_orphan_packs`).

use std::collections::HashSet;

use crossbeam_channel::{Receiver, Sender};

use crate::crypto::Id;
use crate::error::{Error, Result};
use crate::index::{Index, IndexFile};
use crate::pack::{read_header, BlobEntry, BlobType, PackBuilder};
use crate::repo::{FileKind, Repository};

/// Index files are written after this many packs (and at the end).
const PACKS_PER_INDEX: usize = 8;

/// What the pack writer wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct PackerStats {
    /// Pack files written.
    pub packs: u64,
    /// Bytes of those pack files.
    pub bytes: u64,
    /// Blobs written.
    pub blobs: u64,
}

/// A closed pack waiting to be written.
pub struct FinishedPack {
    bytes: Vec<u8>,
    id: Id,
    entries: Vec<BlobEntry>,
}

/// Fills packs and hands each full one to the writer, so that compression
/// goes on while a pack is written and fsynced.
pub struct Packer<'a> {
    repo: &'a Repository,
    cur: PackBuilder,
    tx: Sender<FinishedPack>,
}

impl<'a> Packer<'a> {
    /// A packer whose packs go to `tx` (a thread running `write_packs`).
    pub fn new(repo: &'a Repository, tx: Sender<FinishedPack>) -> Self {
        Packer { repo, cur: PackBuilder::new(), tx }
    }

    /// Adds a sealed frame holding `blobs` (id, length); hands the pack over when it is full.
    pub fn add_frame(&mut self, kind: BlobType, flags: u8, sealed: &[u8], blobs: &[(Id, u32)]) -> Result<()> {
        self.cur.add_frame(kind, flags, sealed, blobs);
        if self.cur.is_full() {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<()> {
        if self.cur.is_empty() {
            return Ok(());
        }
        let (bytes, id, entries) = std::mem::take(&mut self.cur).finish(self.repo.cipher());
        self.tx.send(FinishedPack { bytes, id, entries }).map_err(|_| Error::Invalid("the pack writer stopped".into()))
    }

    /// Hands over the last, partly filled pack.
    pub fn finish(mut self) -> Result<()> {
        self.send()
    }
}

/// Writes packs as they come and an index file after every few of them (and
/// at the end, also after a failure, so that written packs are indexed).
pub fn write_packs(repo: &Repository, rx: Receiver<FinishedPack>) -> Result<PackerStats> {
    let mut stats = PackerStats::default();
    let mut pending = IndexFile::default();
    let flush = |pending: &mut IndexFile| -> Result<()> {
        if pending.packs.is_empty() {
            return Ok(());
        }
        repo.write_sealed(FileKind::Index, &std::mem::take(pending).to_bytes())?;
        Ok(())
    };
    for p in rx {
        if let Err(e) = repo.backend().write(FileKind::Pack, &p.id.to_hex(), &p.bytes) {
            let _ = flush(&mut pending);
            return Err(e);
        }
        stats.packs += 1;
        stats.bytes += p.bytes.len() as u64;
        stats.blobs += p.entries.len() as u64;
        pending.packs.push((p.id, p.entries));
        if pending.packs.len() >= PACKS_PER_INDEX {
            flush(&mut pending)?;
        }
    }
    flush(&mut pending)?;
    Ok(stats)
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
