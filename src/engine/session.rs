//! A long-lived writer: the repository stays open and which blobs it holds stays in
//! memory, so storing a small file (a log segment every second) costs one pack, one
//! small index file and the snapshot file, not a reload of the whole index.
//!
//! Each [`Session::store`] is durable on its own: its packs are written before the index
//! file that names them, and the caller saves the snapshot after both, so a crash at any
//! point loses only what was not yet stored.

use std::collections::HashSet;

use crate::crypto::{Id, IdBuildHasher};
use crate::engine::chunker::Chunker;
use crate::engine::backup::LIST_FRAME_TARGET;
use crate::engine::packer::adopt_orphan_packs;
use crate::error::Result;
use crate::format::chunklist::TreeBuilder;
use crate::format::compress::Compressor;
use crate::format::index::{prefix, IndexFile, Known};
use crate::format::pack::{seal_frame, BlobType, PackBuilder};
use crate::format::snapshot::SnapshotFile;
use crate::store::{FileKind, Repository};

/// Plaintext bytes per sealed frame (as in a backup).
const FRAME_TARGET: usize = 64 * 1024;
/// New ids remembered per generation for dedup across stores (two generations: ~5 MiB).
const RECENT: usize = 128 * 1024;

/// What one [`Session::store`] wrote.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The file, as a snapshot lists it.
    pub file: SnapshotFile,
    /// The index file naming the new packs (None when every blob was already stored).
    pub index: Option<Id>,
    /// Chunks not stored before.
    pub new_chunks: u64,
    /// Their uncompressed bytes.
    pub new_raw_bytes: u64,
    /// Bytes of the packs written.
    pub bytes_added: u64,
}

/// An open repository with its blob ids in memory.
pub struct Session<'r> {
    repo: &'r Repository,
    known: Known,
    /// Ids this session stored, newest generation first (bounded: dedup of a repeat
    /// further back than two generations stores it again, never loses it).
    recent: [HashSet<[u8; 16], IdBuildHasher>; 2],
    zstd: Compressor,
}

impl<'r> Session<'r> {
    /// Loads which blobs `repo` holds (once) and indexes packs an interrupted run left.
    pub fn open(repo: &'r Repository, zstd_level: i32) -> Result<Session<'r>> {
        let mut known = Known::load(repo)?;
        let listed = repo.backend().list(FileKind::Pack)?;
        let indexed = std::mem::take(&mut known.packs);
        adopt_orphan_packs(repo, &listed, &indexed, &mut known)?;
        let zstd = Compressor::new(zstd_level, None)?;
        Ok(Session { repo, known, recent: [HashSet::default(), HashSet::default()], zstd })
    }

    /// The repository written to.
    pub fn repo(&self) -> &'r Repository {
        self.repo
    }

    fn stored(&self, p: &[u8; 16]) -> bool {
        self.recent.iter().any(|s| s.contains(p))
    }

    fn remember(&mut self, p: [u8; 16]) {
        if self.recent[0].len() >= RECENT {
            let full = std::mem::take(&mut self.recent[0]);
            self.recent[1] = full;
        }
        self.recent[0].insert(p);
    }

    /// Stores `bytes` as the file `name`: new chunks and chunk lists into packs, then one
    /// index file naming them. The caller makes it part of a snapshot by saving one.
    pub fn store(&mut self, name: &str, bytes: &[u8]) -> Result<Stored> {
        let repo = self.repo;
        let mut w = Writer { pack: PackBuilder::new(), index: IndexFile::default(), bytes_added: 0 };
        let mut fresh: HashSet<[u8; 16], IdBuildHasher> = HashSet::default();
        let mut frame: Vec<u8> = Vec::new();
        let mut members: Vec<(Id, u32)> = Vec::new();
        let mut tree = TreeBuilder::new();
        let mut lists = Vec::new();
        // New list blobs share frames of their own.
        let mut list_frame = ListFrame::default();
        let (mut chunks, mut new_chunks, mut new_raw_bytes) = (0u64, 0u64, 0u64);
        let mut plain = Compressor::plain();
        let chunker = Chunker::new(bytes, repo.config().chunker, repo.config().chunker_seed());
        for batch in chunker {
            let batch = batch.map_err(|source| crate::Error::Source { name: name.to_string(), source })?;
            let slices: Vec<&[u8]> = batch.iter().collect();
            for (data, id) in slices.iter().zip(repo.hasher().ids(&slices)) {
                chunks += 1;
                let p = prefix(&id);
                if !self.known.contains(&id) && !self.stored(&p) && fresh.insert(p) {
                    new_chunks += 1;
                    new_raw_bytes += data.len() as u64;
                    frame.extend_from_slice(data);
                    members.push((id, data.len() as u32));
                    if frame.len() >= FRAME_TARGET {
                        w.frame(repo, BlobType::Data, &mut frame, &mut members, &mut self.zstd)?;
                    }
                }
                if let Some(top) = tree.push(&id, &mut |b| self.list_blob(&mut w, &mut fresh, b, &mut list_frame, &mut plain))? {
                    lists.push(top.to_hex());
                }
            }
        }
        if !members.is_empty() {
            w.frame(repo, BlobType::Data, &mut frame, &mut members, &mut self.zstd)?;
        }
        if let Some(top) = tree.finish(&mut |b| self.list_blob(&mut w, &mut fresh, b, &mut list_frame, &mut plain))? {
            lists.push(top.to_hex());
        }
        if !list_frame.members.is_empty() {
            w.frame(repo, BlobType::ChunkList, &mut list_frame.plain, &mut list_frame.members, &mut plain)?;
        }
        w.flush(repo)?;
        let index = if w.index.packs.is_empty() { None } else { Some(repo.write_sealed(FileKind::Index, &w.index.to_bytes())?) };
        // Only now are the new blobs stored and indexed: later stores may rely on them.
        for p in fresh {
            self.remember(p);
        }
        let file = SnapshotFile { name: name.to_string(), size: bytes.len() as u64, blake3: blake3::hash(bytes).to_hex().to_string(), chunks, lists, list_base: None };
        Ok(Stored { file, index, new_chunks, new_raw_bytes, bytes_added: w.bytes_added })
    }

    /// Stores a chunk-list blob (a leaf or a top blob) unless it is already stored; returns its id.
    fn list_blob(&mut self, w: &mut Writer, fresh: &mut HashSet<[u8; 16], IdBuildHasher>, blob: Vec<u8>, f: &mut ListFrame, plain: &mut Compressor) -> Result<Id> {
        let id = self.repo.hasher().id(&blob);
        let p = prefix(&id);
        if !self.known.contains(&id) && !self.stored(&p) && fresh.insert(p) {
            f.plain.extend_from_slice(&blob);
            f.members.push((id, blob.len() as u32));
            if f.plain.len() >= LIST_FRAME_TARGET {
                w.frame(self.repo, BlobType::ChunkList, &mut f.plain, &mut f.members, plain)?;
            }
        }
        Ok(id)
    }
}

/// New list blobs gathered into one frame.
#[derive(Default)]
struct ListFrame {
    plain: Vec<u8>,
    members: Vec<(Id, u32)>,
}

/// The packs of one store being filled.
struct Writer {
    pack: PackBuilder,
    index: IndexFile,
    bytes_added: u64,
}

impl Writer {
    /// Seals `plain` (holding `members`) as one frame; writes the pack once it is full.
    fn frame(&mut self, repo: &Repository, kind: BlobType, plain: &mut Vec<u8>, members: &mut Vec<(Id, u32)>, zstd: &mut Compressor) -> Result<()> {
        let (flags, sealed) = seal_frame(repo.cipher(), kind, plain, members, zstd);
        self.pack.add_frame(kind, flags, &sealed, members);
        plain.clear();
        members.clear();
        if self.pack.is_full() {
            self.flush(repo)?;
        }
        Ok(())
    }

    /// Writes the pack being filled, if it holds anything.
    fn flush(&mut self, repo: &Repository) -> Result<()> {
        if self.pack.is_empty() {
            return Ok(());
        }
        let (bytes, id, entries) = std::mem::take(&mut self.pack).finish(repo.cipher());
        repo.backend().write(FileKind::Pack, &id.to_hex(), &bytes)?;
        self.bytes_added += bytes.len() as u64;
        self.index.packs.push((id, entries));
        Ok(())
    }
}
