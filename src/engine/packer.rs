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
use crate::format::index::{IndexFile, IndexSink};
use crate::format::pack::{frame_entries, pack_target, read_header, sealed_header, BlobEntry, BlobType};
use crate::store::{FileInfo, FileKind, Repository, StagedFile};

/// Index files are written after this many packs (and at the end); prune writes its new
/// index in files of as many packs.
pub const PACKS_PER_INDEX: usize = 8;

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

/// A pack whose bytes are all staged, waiting to be made durable and indexed.
pub struct FinishedPack<'a> {
    staged: Box<dyn StagedFile + 'a>,
    id: Id,
    bytes: u64,
    entries: Vec<BlobEntry>,
}

/// The pack being filled: its bytes go straight to a staged file, so memory
/// holds only its entries, whatever the pack size.
struct OpenPack<'a> {
    staged: Box<dyn StagedFile + 'a>,
    hasher: blake3::Hasher,
    len: usize,
    entries: Vec<BlobEntry>,
}

/// Fills packs and hands each full one to the writer, so that compression
/// goes on while a pack is fsynced and indexed.
pub struct Packer<'a> {
    repo: &'a Repository,
    /// Pack size: the default, or smaller where the backend asks for it (or a test does).
    target: usize,
    cur: Option<OpenPack<'a>>,
    tx: Sender<FinishedPack<'a>>,
}

impl<'a> Packer<'a> {
    /// A packer whose packs go to `tx` (a thread running `write_packs`).
    pub fn new(repo: &'a Repository, tx: Sender<FinishedPack<'a>>) -> Self {
        let target = repo.backend().pack_bytes().map_or(pack_target(), |n| n.min(pack_target()));
        Packer { repo, target, cur: None, tx }
    }

    /// Adds a sealed frame holding `blobs` (id, length); hands the pack over when it is full.
    pub fn add_frame(&mut self, kind: BlobType, flags: u8, sealed: &[u8], blobs: &[(Id, u32)]) -> Result<()> {
        let cur = match &mut self.cur {
            Some(c) => c,
            None => self.cur.insert(OpenPack {
                staged: self.repo.backend().create_staged(FileKind::Pack)?,
                hasher: blake3::Hasher::new(),
                len: 0,
                entries: Vec::new(),
            }),
        };
        cur.entries.extend(frame_entries(kind, flags, cur.len as u32, sealed.len() as u32, blobs));
        cur.staged.append(sealed)?;
        cur.hasher.update(sealed);
        cur.len += sealed.len();
        if cur.len >= self.target {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<()> {
        let Some(mut p) = self.cur.take() else { return Ok(()) };
        let tail = sealed_header(self.repo.cipher(), &p.entries);
        p.staged.append(&tail)?;
        p.hasher.update(&tail);
        let id = Id(*p.hasher.finalize().as_bytes());
        let bytes = (p.len + tail.len()) as u64;
        self.tx
            .send(FinishedPack { staged: p.staged, id, bytes, entries: p.entries })
            .map_err(|_| Error::Invalid("the pack writer stopped".into()))
    }

    /// Hands over the last, partly filled pack.
    pub fn finish(mut self) -> Result<()> {
        self.send()
    }
}

/// Makes packs durable as they come and writes an index file after every few
/// of them (and at the end, also after a failure, so that written packs are indexed).
/// A network backend uploads several packs at once; an index still names only packs
/// whose upload finished.
pub fn write_packs(repo: &Repository, rx: Receiver<FinishedPack<'_>>) -> Result<PackerStats> {
    let threads = repo.backend().upload_threads();
    if threads > 1 {
        return write_packs_parallel(repo, rx, threads);
    }
    let mut indexer = Indexer::new(repo);
    for p in rx {
        if let Err(e) = p.staged.finish(&p.id.to_hex()) {
            let _ = indexer.flush();
            return Err(e);
        }
        indexer.add(p.id, p.bytes, p.entries)?;
    }
    indexer.flush()?;
    Ok(indexer.stats)
}

/// Collects durable packs and writes an index file every `PACKS_PER_INDEX` of them.
struct Indexer<'r> {
    repo: &'r Repository,
    stats: PackerStats,
    pending: IndexFile,
}

impl<'r> Indexer<'r> {
    fn new(repo: &'r Repository) -> Self {
        Indexer { repo, stats: PackerStats::default(), pending: IndexFile::default() }
    }

    /// Records a pack that is now durable.
    fn add(&mut self, id: Id, bytes: u64, entries: Vec<BlobEntry>) -> Result<()> {
        self.stats.packs += 1;
        self.stats.bytes += bytes;
        self.stats.blobs += entries.len() as u64;
        self.pending.packs.push((id, entries));
        if self.pending.packs.len() >= PACKS_PER_INDEX {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.packs.is_empty() {
            return Ok(());
        }
        self.repo.write_sealed(FileKind::Index, &std::mem::take(&mut self.pending).to_bytes())?;
        Ok(())
    }
}

/// `threads` uploaders take packs from `rx`; this thread indexes them as they land.
/// After the first failure the uploaders stop taking packs, so the packer stops too.
fn write_packs_parallel(repo: &Repository, rx: Receiver<FinishedPack<'_>>, threads: usize) -> Result<PackerStats> {
    let failed = std::sync::atomic::AtomicBool::new(false);
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Result<(Id, u64, Vec<BlobEntry>)>>();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (rx, done_tx, failed) = (rx.clone(), done_tx.clone(), &failed);
            s.spawn(move || {
                for p in rx {
                    if failed.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let result = p.staged.finish(&p.id.to_hex()).map(|()| (p.id, p.bytes, p.entries));
                    if result.is_err() {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    if done_tx.send(result).is_err() {
                        break;
                    }
                }
            });
        }
        drop((rx, done_tx));
        let mut indexer = Indexer::new(repo);
        let mut first_err = None;
        for result in done_rx {
            match result.and_then(|(id, bytes, entries)| indexer.add(id, bytes, entries)) {
                Ok(()) => {}
                Err(e) => {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    first_err.get_or_insert(e);
                }
            }
        }
        let flushed = indexer.flush();
        match first_err {
            Some(e) => Err(e),
            None => flushed.map(|()| indexer.stats),
        }
    })
}

/// Indexes pack files that no index names (left by an interrupted backup), so
/// their blobs are reused instead of stored again. Returns how many were adopted;
/// packs whose header cannot be read are left alone for `check` to report.
/// `listed` is the repository's pack files, listed while the index was loaded.
pub fn adopt_orphan_packs(repo: &Repository, listed: &[FileInfo], known: &HashSet<Id>, index: &mut dyn IndexSink) -> Result<usize> {
    let mut file = IndexFile::default();
    for info in listed {
        let Some(id) = Id::from_hex(&info.name) else { continue };
        if known.contains(&id) {
            continue;
        }
        if let Ok(entries) = read_header(repo.backend().as_ref(), repo.cipher(), &info.name) {
            for e in &entries {
                index.add(id, e);
            }
            file.packs.push((id, entries));
        }
    }
    let n = file.packs.len();
    if n > 0 {
        index.finish();
        repo.write_sealed(FileKind::Index, &file.to_bytes())?;
    }
    Ok(n)
}
