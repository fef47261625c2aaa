//! The pack and index side of a follower's compaction, in slices of bounded size: the
//! small packs of a window of commits are copied into full packs, and their index files
//! are replaced by index files of at most about [`SLICE_BLOBS`] blobs each, so memory does
//! not grow with the window (one delta index file, one small pack, one pack being filled
//! and one slice's entries at a time).

use crate::crypto::Id;
use crate::format::index::IndexFile;
use crate::format::pack::{frames, pack_target, BlobEntry, PackBuilder};
use crate::store::{display_name, FileKind, Repository};

/// Blobs named by one index file a compaction writes (about half a full pack of 1 KiB log
/// chunks; ~3.5 MiB of entries in memory, ~2.3 MiB of index file).
pub const SLICE_BLOBS: usize = 64 * 1024;

/// The slice size in use: [`SLICE_BLOBS`], or `RDBVAULT_COMPACT_SLICE_BLOBS` (tests get
/// several slices from little data).
pub fn slice_blobs() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::env::var("RDBVAULT_COMPACT_SLICE_BLOBS").ok().and_then(|v| v.parse::<usize>().ok()).map_or(SLICE_BLOBS, |n| n.max(1)))
}

/// What [`merge_in_slices`] wrote.
#[derive(Debug, Default)]
pub struct Merged {
    /// The index files written, in order; together they supersede every delta.
    pub indexes: Vec<Id>,
    /// The small packs copied away (delete them once no reader may use the old index).
    pub retired: Vec<Id>,
    /// Blobs the written index files name.
    pub blobs: usize,
}

/// Copies the frames of the packs smaller than half a full pack that the index files
/// `deltas` name into full packs (each small pack checked against its id first), and writes
/// index files superseding `deltas`, each naming about `slice` blobs. An index file is
/// written when the pack being filled is empty or just written, superseding only the
/// deltas read whole by then, so a crash at any point leaves every blob indexed (some twice).
pub fn merge_in_slices(repo: &Repository, deltas: &[Id], slice: usize) -> crate::Result<Merged> {
    let mut s = Slicer { repo, slice, builder: PackBuilder::new(), supersedes: Vec::new(), packs: Vec::new(), blobs: 0, out: Merged::default() };
    let small = (pack_target() / 2) as u64;
    for d in deltas {
        let name = display_name(FileKind::Index, &d.to_hex());
        let file = IndexFile::parse(&repo.read_sealed(FileKind::Index, &d.to_hex())?, &name)?;
        for (pack, entries) in file.packs {
            if pack_size(&entries) >= small {
                s.add(pack, entries)?;
            } else {
                s.copy(pack, entries)?;
            }
        }
        s.supersedes.push(*d);
    }
    if !s.builder.is_empty() {
        let (id, entries) = s.write_pack()?;
        s.blobs += entries.len();
        s.packs.push((id, entries));
    }
    if !s.supersedes.is_empty() || !s.packs.is_empty() {
        s.cut()?;
    }
    Ok(s.out)
}

/// Bytes of a pack up to the end of its last frame.
fn pack_size(entries: &[BlobEntry]) -> u64 {
    entries.iter().map(|b| u64::from(b.offset) + u64::from(b.length)).max().unwrap_or(0)
}

/// The slice being gathered.
struct Slicer<'r> {
    repo: &'r Repository,
    slice: usize,
    builder: PackBuilder,
    /// Deltas whose blobs are all in packs written or named by now.
    supersedes: Vec<Id>,
    packs: Vec<(Id, Vec<BlobEntry>)>,
    blobs: usize,
    out: Merged,
}

impl Slicer<'_> {
    /// Names a written or kept pack; once the slice is full, writes the pack being filled
    /// (even if not full) and the slice's index file. So an index file names fewer than
    /// `slice` blobs besides its last two packs.
    fn add(&mut self, pack: Id, entries: Vec<BlobEntry>) -> crate::Result<()> {
        self.blobs += entries.len();
        self.packs.push((pack, entries));
        if self.blobs < self.slice {
            return Ok(());
        }
        if !self.builder.is_empty() {
            let (id, entries) = self.write_pack()?;
            self.blobs += entries.len();
            self.packs.push((id, entries));
        }
        self.cut()
    }

    /// Copies a small pack's frames into the pack being filled.
    fn copy(&mut self, pack: Id, mut entries: Vec<BlobEntry>) -> crate::Result<()> {
        let name = pack.to_hex();
        let bytes = self.repo.backend().read(FileKind::Pack, &name)?;
        if Id::of_bytes(&bytes) != pack {
            return Err(crate::Error::corrupt(display_name(FileKind::Pack, &name), "does not match its id (changed since this follower wrote it)"));
        }
        entries.sort_by_key(|e| (e.offset, e.inner));
        for frame in frames(&entries) {
            let f = frame[0];
            let sealed = bytes
                .get(f.offset as usize..f.offset as usize + f.length as usize)
                .ok_or_else(|| crate::Error::corrupt(display_name(FileKind::Pack, &name), "names a frame beyond its end"))?;
            let members: Vec<(Id, u32)> = frame.iter().map(|e| (e.id, e.raw_len)).collect();
            self.builder.add_frame(f.kind, f.flags, sealed, &members);
            if self.builder.is_full() {
                let (id, entries) = self.write_pack()?;
                self.add(id, entries)?;
            }
        }
        self.out.retired.push(pack);
        Ok(())
    }

    /// Writes the pack being filled; returns its id and entries.
    fn write_pack(&mut self) -> crate::Result<(Id, Vec<BlobEntry>)> {
        let (bytes, id, entries) = std::mem::take(&mut self.builder).finish(self.repo.cipher());
        self.repo.backend().write(FileKind::Pack, &id.to_hex(), &bytes)?;
        Ok((id, entries))
    }

    /// Writes the slice's index file.
    fn cut(&mut self) -> crate::Result<()> {
        let file = IndexFile { supersedes: std::mem::take(&mut self.supersedes), packs: std::mem::take(&mut self.packs) };
        self.out.indexes.push(self.repo.write_sealed(FileKind::Index, &file.to_bytes())?);
        self.out.blobs += self.blobs;
        self.blobs = 0;
        Ok(())
    }
}
