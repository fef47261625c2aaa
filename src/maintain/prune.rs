//! Prune: delete the blobs no snapshot needs, without ever losing one that a
//! remaining snapshot needs, even if the process dies at any point.
//!
//! Order of effects (see docs/maintenance.md for the full argument):
//! 1. write new packs holding the used blobs of packs being repacked;
//! 2. write new index files covering every remaining blob, eight packs each;
//!    the one written last `supersedes` every old index file;
//! 3. delete the old index files;
//! 4. delete packs no longer needed (unused, repacked, unindexed leftovers).
//!
//! Until the last file of step 2 exists the old index still describes
//! everything (new packs are unindexed leftovers, or indexed twice: by a new
//! file and, in the packs being repacked, by an old one); from then on,
//! `Index::load` ignores the superseded files, and the new index names only
//! packs that are never deleted.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::format::chunklist::{parse_any, parse_leaf, ListBlob};
use crate::crypto::Id;
use crate::error::{Error, Result};
use crate::format::blobset::BlobSet;
use crate::format::index::{Index, IndexFile};
use crate::format::keyindex::TopTable;
use crate::store::lock::LockGuard;
use crate::format::compress::Compressor;
use crate::format::pack::{blob_in_frame, frames, open_frame, seal_frame, BlobEntry, BlobKeys, BlobType, PackBuilder};
use crate::store::{display_name, FileKind, ReadPlan, Repository};
use crate::engine::packer::PACKS_PER_INDEX;
use crate::engine::restore::{dictionary_ids, Blobs};
use crate::format::snapshot::{Listing, Snapshot, Unreadable};

/// How to prune.
#[derive(Debug, Clone, Copy)]
pub struct PruneOptions {
    /// Repack a pack when more than this share (0..1) of its bytes is unused.
    pub max_unused: f64,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions { max_unused: 0.05 }
    }
}

/// What prune will do (or did), in numbers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneSummary {
    /// Snapshots whose blobs are kept.
    pub snapshots: usize,
    /// Blobs some snapshot needs.
    pub used_blobs: usize,
    /// Indexed blobs no snapshot needs (removed unless they sit in a pack that stays).
    pub unused_blobs: usize,
    /// Extra copies of blobs stored in more than one pack.
    pub duplicate_blobs: usize,
    /// Packs holding nothing used: deleted.
    pub delete_packs: Vec<String>,
    /// Packs whose used blobs are copied into new packs, then deleted.
    pub repack_packs: Vec<String>,
    /// Packs no index names (left by interrupted runs): deleted.
    pub unindexed_packs: Vec<String>,
    /// Packs kept as they are.
    pub kept_packs: usize,
    /// Bytes of all packs before.
    pub pack_bytes_before: u64,
    /// Bytes of the packs deleted (including repacked ones).
    pub pack_bytes_deleted: u64,
    /// Used bytes (uncompressed) copied into new packs.
    pub bytes_repacked: u64,
    /// Old index files, replaced by new ones of [`PACKS_PER_INDEX`] packs each.
    pub index_files: Vec<String>,
    /// Whether the index files are to be rewritten even if no pack changes: more of them
    /// than eight packs to a file need, or superseded ones an interrupted prune left.
    pub rewrite_index: bool,
}

impl PruneSummary {
    /// Whether prune would change anything.
    pub fn has_work(&self) -> bool {
        !self.delete_packs.is_empty()
            || !self.repack_packs.is_empty()
            || !self.unindexed_packs.is_empty()
            || self.rewrite_index
    }
}

/// zstd level for frames that lose blobs and are compressed again.
const REPACK_LEVEL: i32 = 3;

/// A computed prune: the summary plus the entries each kept or repacked pack contributes.
pub struct PrunePlan {
    /// The numbers.
    pub summary: PruneSummary,
    keep: Vec<(Id, Vec<BlobEntry>)>,
    repack: Vec<(Id, Vec<BlobEntry>)>,
    old_index: Vec<Id>,
    /// The index the plan was made from; `execute` opens blobs with it.
    index: Index,
}

/// Every blob the snapshots need: chunk-list blobs, the chunks they list, the
/// compression dictionaries (which any stored blob may name) and the key indexes' blobs
/// (a layered one's base too, though the base's snapshot may be gone).
/// Fails, naming the snapshot, if one is not indexed (prune must not run then).
pub fn used_blobs<'i>(repo: &Repository, index: &'i Index, snapshots: &[(Id, Snapshot)]) -> Result<BlobSet<'i>> {
    let blobs = Blobs::new(repo, index)?;
    let mut used = BlobSet::new(index);
    // List blobs whose every chunk is in `used` (a delta's base is used, not walked).
    let mut walked = BlobSet::new(index);
    for id in dictionary_ids(index) {
        used.insert(&id);
    }
    let plan = repo.backend().read_plan();
    for (sid, snap) in snapshots {
        let what = display_name(FileKind::Snapshot, &sid.to_hex());
        let damaged = |e: Error| Error::corrupt(&what, format!("{e}; run `rdbvault check` (and `repair index`) before pruning"));
        for file in &snap.files {
            let mut fresh = Vec::new();
            for hex in &file.lists {
                let id = Id::from_hex(hex).ok_or_else(|| Error::corrupt(&what, format!("bad list id {hex}")))?;
                // One not indexed fails to load below.
                if used.insert(&id) == Some(false) && walked.contains(&id) {
                    continue;
                }
                fresh.push(id);
            }
            // Read in planned range reads a window at a time, each blob once.
            for window in fresh.chunks(PIECES_PER_READ) {
                let (mut pieces, mut parsed) = (Vec::new(), Vec::new());
                for (id, plain) in window.iter().zip(blobs.load_lists(window, &plan).map_err(damaged)?) {
                    let ids = match parse_any(&plain, &format!("chunk list {}", id.to_hex())).map_err(damaged)? {
                        delta @ ListBlob::Delta(_) => {
                            pieces.push(*id);
                            parsed.push(delta);
                            continue;
                        }
                        full => full_ids(&blobs, (&mut used, &mut walked), full, &plan).map_err(damaged)?,
                    };
                    walked.insert(id);
                    mark_chunks(&mut used, ids).map_err(damaged)?;
                }
                if pieces.is_empty() {
                    continue;
                }
                // A delta piece keeps its bases and their leaves, but only the chunks it lists:
                // a forgotten snapshot's list may stay as a base while its own chunks go.
                let mut read = Vec::new();
                let ids = blobs.parsed_lists_chunks(&pieces, &parsed, &mut read).map_err(damaged)?;
                for (piece, ids) in pieces.iter().zip(ids) {
                    walked.insert(piece);
                    mark_chunks(&mut used, ids).map_err(damaged)?;
                }
                for r in &read {
                    used.insert(r);
                }
            }
        }
        let (tops, others) = snap.key_index_blobs();
        for hex in tops {
            keep_top_table(&blobs, &mut used, hex, &what)?;
        }
        for hex in others {
            keep_blob(&mut used, hex, &what)?;
        }
    }
    Ok(used)
}

/// The chunk ids of a full list (a flat list, or a top blob through its leaves); leaves
/// already walked with another list add nothing.
fn full_ids(blobs: &Blobs<'_>, (used, walked): (&mut BlobSet<'_>, &mut BlobSet<'_>), list: ListBlob, plan: &ReadPlan) -> Result<Vec<Id>> {
    match list {
        ListBlob::Flat(ids) => Ok(ids),
        ListBlob::Top(leaves) => {
            let fresh: Vec<Id> = leaves.into_iter().filter(|l| used.insert(l) != Some(false) || !walked.contains(l)).collect();
            let mut ids = Vec::new();
            for (p, leaf) in blobs.load_lists(&fresh, plan)?.iter().zip(&fresh) {
                ids.extend(parse_leaf(p, &format!("chunk-list leaf {}", leaf.to_hex()))?);
                walked.insert(leaf);
            }
            Ok(ids)
        }
        ListBlob::Delta(_) => Ok(Vec::new()),
    }
}

/// Marks the chunks a list names; one the index lacks is damage.
fn mark_chunks(used: &mut BlobSet<'_>, ids: Vec<Id>) -> Result<()> {
    for c in ids {
        if used.insert(&c).is_none() {
            return Err(Error::MissingBlob { id: c.to_hex() });
        }
    }
    Ok(())
}

/// List blobs read and delta pieces expanded at once: their bases are read once for all of them.
const PIECES_PER_READ: usize = 128;

/// Marks a key index top table used, and the pages it names (read from it).
fn keep_top_table(blobs: &Blobs<'_>, used: &mut BlobSet<'_>, hex: &str, what: &str) -> Result<()> {
    let damaged = |e: Error| Error::corrupt(what, format!("{e}; run `rdbvault check` (and `repair index`) before pruning"));
    let id = Id::from_hex(hex).ok_or_else(|| Error::corrupt(what, format!("bad key index id {hex}")))?;
    // Shared by snapshots layered on one base: its pages are walked once.
    if used.insert(&id) == Some(false) {
        return Ok(());
    }
    let top = TopTable::decode(&blobs.load(&id).map_err(damaged)?, what)?;
    for p in top.pages {
        if used.insert(&p.id).is_none() {
            return Err(damaged(Error::MissingBlob { id: p.id.to_hex() }));
        }
    }
    Ok(())
}

/// Marks one blob a snapshot's key index names (chunk facts, runs) used; fails if it is not
/// indexed.
fn keep_blob(used: &mut BlobSet<'_>, hex: &str, what: &str) -> Result<()> {
    let id = Id::from_hex(hex).ok_or_else(|| Error::corrupt(what, format!("bad key index blob id {hex}")))?;
    match used.insert(&id) {
        Some(_) => Ok(()),
        None => Err(Error::corrupt(what, format!("{}; run `rdbvault check` (and `repair index`) before pruning", Error::MissingBlob { id: hex.to_string() }))),
    }
}

/// Every snapshot, or an error naming each that cannot be read. Prune never
/// runs then: the data only an unreadable snapshot uses would look unused and
/// be deleted, losing a snapshot that may be damaged only in its metadata (or
/// only unreadable for now). `repair snapshots` is the explicit, confirmed
/// step that gives such snapshots up; the next prune then frees their data.
fn all_snapshots(repo: &Repository) -> Result<Vec<(Id, Snapshot)>> {
    let listing = Listing::load(repo)?;
    if listing.unreadable.is_empty() {
        return Ok(listing.snapshots);
    }
    let names: Vec<String> = listing.unreadable.iter().map(|u| format!("{} ({})", u.short(), u.error)).collect();
    let advice = if listing.unreadable.iter().all(Unreadable::damaged) {
        "run `rdbvault repair snapshots` first to remove the damaged ones (or `rdbvault forget ID`)"
    } else {
        "fix or remove them first (`rdbvault repair snapshots` removes the damaged ones)"
    };
    let (n, files, their) = if names.len() == 1 { (String::new(), "snapshot file", "its") } else { (format!("{} ", names.len()), "snapshot files", "their") };
    Err(Error::Invalid(format!(
        "refusing to prune: {n}{files} cannot be read, and {their} data would look unused: {}; {advice}",
        names.join("; ")
    )))
}

/// Works out what to delete and repack; changes nothing.
pub fn plan(repo: &Repository, opts: PruneOptions) -> Result<PrunePlan> {
    let files = Index::read_files(repo)?;
    let index = Index::from_files(&files);
    let snapshots = all_snapshots(repo)?;
    let used = used_blobs(repo, &index, &snapshots)?;

    let index_names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    let by_pack = index.live_entries_by_pack(files);
    let on_disk: HashMap<String, u64> = repo.backend().list(FileKind::Pack)?.into_iter().map(|f| (f.name, f.size)).collect();

    let mut s = PruneSummary { snapshots: snapshots.len(), used_blobs: used.len(), ..PruneSummary::default() };
    s.pack_bytes_before = on_disk.values().sum();
    let (mut keep, mut repack) = (Vec::new(), Vec::new());
    // Each blob is live (the index's chosen copy) in one place only: a count is the set.
    let mut unused = 0usize;
    for (pack, (_, entries)) in by_pack {
        let name = pack.to_hex();
        let chosen = |e: &BlobEntry| index.get(&e.id).is_some_and(|(p, c)| p == pack && c == *e);
        let dups = entries.iter().filter(|e| !chosen(e)).count();
        let live: Vec<BlobEntry> = entries.iter().copied().filter(chosen).collect();
        let needed: Vec<BlobEntry> = live.iter().copied().filter(|e| used.contains(&e.id)).collect();
        unused += live.len() - needed.len();
        s.duplicate_blobs += dups;
        let Some(&size) = on_disk.get(&name) else {
            if let Some(e) = needed.first() {
                return Err(Error::corrupt(
                    display_name(FileKind::Pack, &name),
                    format!("is missing but holds blob {} that a snapshot needs; run `rdbvault check`", e.id),
                ));
            }
            continue;
        };
        // The share is of blob bytes (uncompressed, as frames hold several blobs):
        // measured against the file size, a small pack's own header would count
        // as unused and it would be repacked forever.
        let needed_bytes: u64 = needed.iter().map(|e| e.raw_len as u64).sum();
        let blob_bytes: u64 = entries.iter().map(|e| e.raw_len as u64).sum();
        let unused_share = 1.0 - needed_bytes as f64 / blob_bytes.max(1) as f64;
        if needed.is_empty() {
            s.delete_packs.push(name);
            s.pack_bytes_deleted += size;
        } else if dups > 0 || unused_share > opts.max_unused {
            s.repack_packs.push(name);
            s.pack_bytes_deleted += size;
            s.bytes_repacked += needed_bytes;
            repack.push((pack, needed));
        } else {
            s.kept_packs += 1;
            keep.push((pack, live));
        }
    }
    s.unused_blobs = unused;
    drop(used);
    let indexed: HashSet<String> = keep.iter().chain(&repack).map(|(p, _)| p.to_hex()).chain(s.delete_packs.iter().cloned()).collect();
    for (name, size) in &on_disk {
        if !indexed.contains(name) {
            s.unindexed_packs.push(name.clone());
            s.pack_bytes_deleted += size;
        }
    }
    s.unindexed_packs.sort();
    let mut old_index = Vec::new();
    for name in index_names {
        let id = Id::from_hex(&name).ok_or_else(|| Error::corrupt(display_name(FileKind::Index, &name), "name is not an id"))?;
        old_index.push(id);
        s.index_files.push(name);
    }
    let live_files = s.index_files.iter().filter(|n| !index.superseded.contains(*n)).count();
    s.rewrite_index = live_files < s.index_files.len() || live_files > s.kept_packs.div_ceil(PACKS_PER_INDEX).max(1);
    Ok(PrunePlan { summary: s, keep, repack, old_index, index })
}

/// What an executed prune wrote and removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneOutcome {
    /// New packs written by repacking.
    pub new_packs: usize,
    /// Bytes of those packs.
    pub new_pack_bytes: u64,
    /// Staged files of interrupted commands removed (see `store::staged`).
    pub temp_files_removed: u64,
}

/// Carries out a plan in the crash-safe order described at the top of this file.
pub fn execute(repo: &Repository, plan: PrunePlan, lock: &LockGuard) -> Result<PruneOutcome> {
    execute_cancellable(repo, plan, lock, None)
}

/// [`execute`] that stops with [`Error::Cancelled`] between repacked packs once `cancel`
/// is set: only before the new index is written, so nothing is deleted (new packs stay
/// unindexed until the next prune, as after a killed one).
pub fn execute_cancellable(
    repo: &Repository,
    plan: PrunePlan,
    lock: &LockGuard,
    cancel: Option<&std::sync::atomic::AtomicBool>,
) -> Result<PruneOutcome> {
    lock.require_exclusive("prune")?;
    let mut out = PruneOutcome::default();
    if !plan.summary.has_work() {
        out.temp_files_removed = crate::store::staged::remove_stale(repo)?;
        return Ok(out);
    }
    // Taken, not copied: the kept entries are most of a large repository's index.
    let mut new_index = plan.keep;
    let blobs = Blobs::new(repo, &plan.index)?;
    let mut zstd = blobs.decoder();

    // 1. New packs with the used blobs of repacked packs, verified on the way.
    //    A frame whose blobs are all used is copied as it is; one with unused
    //    blobs is opened and sealed again with only the used ones.
    let dict = blobs.dictionaries().preferred();
    let mut data_zstd = Compressor::new(REPACK_LEVEL, dict.as_deref().map(|d| d.as_slice()))?;
    let mut plain_zstd = Compressor::plain();
    let keys = BlobKeys::of(repo);
    let mut builder = PackBuilder::new();
    for (pack, entries) in &plan.repack {
        Error::check_cancel(cancel)?;
        let name = pack.to_hex();
        let bytes = repo.backend().read(FileKind::Pack, &name)?;
        let mut entries = entries.clone();
        entries.sort_by_key(|e| (e.offset, e.inner));
        for frame in frames(&entries) {
            let first = frame[0];
            let what = format!("blob {} in {}", first.id, display_name(FileKind::Pack, &name));
            let (start, end) = (first.offset as usize, first.offset as usize + first.length as usize);
            let sealed = bytes.get(start..end).ok_or_else(|| Error::corrupt(&what, "lies beyond the end of its pack"))?;
            let plain = open_frame(&keys, &mut zstd, &first, sealed, &what)?;
            let mut whole = true;
            let mut kept = Vec::with_capacity(plain.len());
            let mut members = Vec::with_capacity(frame.len());
            for e in frame {
                let what = format!("blob {} in {}", e.id, display_name(FileKind::Pack, &name));
                whole &= e.inner as usize == kept.len();
                kept.extend_from_slice(blob_in_frame(&keys, e, &plain, &what)?);
                members.push((e.id, e.raw_len));
            }
            if whole && kept.len() == plain.len() {
                builder.add_frame(first.kind, first.flags, sealed, &members);
            } else {
                let z = if first.kind == BlobType::Data { &mut data_zstd } else { &mut plain_zstd };
                let (flags, resealed) = seal_frame(repo.cipher(), first.kind, &kept, &members, z);
                builder.add_frame(first.kind, flags, &resealed, &members);
            }
            if builder.is_full() {
                write_pack(repo, std::mem::take(&mut builder), &mut new_index, &mut out)?;
            }
        }
    }
    if !builder.is_empty() {
        write_pack(repo, builder, &mut new_index, &mut out)?;
    }
    Error::check_cancel(cancel)?;
    // 2. The index of everything that remains.
    write_index(repo, new_index, &plan.old_index)?;
    // 3. Old index files.
    for id in &plan.old_index {
        repo.backend().delete(FileKind::Index, &id.to_hex())?;
    }
    // 4. Packs nothing needs any more.
    let s = &plan.summary;
    for name in s.delete_packs.iter().chain(&s.repack_packs).chain(&s.unindexed_packs) {
        repo.backend().delete(FileKind::Pack, name)?;
    }
    out.temp_files_removed = crate::store::staged::remove_stale(repo)?;
    Ok(out)
}

/// Writes the index of `packs` in files of [`PACKS_PER_INDEX`] packs, as a backup does (a
/// repository of 8 M blobs is not serialized and sealed at once: ~650 MB), the one that
/// supersedes every old index file last. Until it exists the old files still describe
/// every needed blob: the files before it repeat their entries of kept packs, or name
/// new packs whose blobs the old files name in packs not yet deleted (a duplicate that
/// `check` warns of and the next prune drops).
fn write_index(repo: &Repository, packs: Vec<(Id, Vec<BlobEntry>)>, old: &[Id]) -> Result<()> {
    let mut packs = packs.into_iter().peekable();
    loop {
        let piece: Vec<_> = packs.by_ref().take(PACKS_PER_INDEX).collect();
        let last = packs.peek().is_none();
        let supersedes = if last { old.to_vec() } else { Vec::new() };
        repo.write_sealed(FileKind::Index, &IndexFile { supersedes, packs: piece }.to_bytes())?;
        if last {
            return Ok(());
        }
    }
}

fn write_pack(repo: &Repository, builder: PackBuilder, index: &mut Vec<(Id, Vec<BlobEntry>)>, out: &mut PruneOutcome) -> Result<()> {
    let (bytes, id, entries) = builder.finish(repo.cipher());
    repo.backend().write(FileKind::Pack, &id.to_hex(), &bytes)?;
    out.new_packs += 1;
    out.new_pack_bytes += bytes.len() as u64;
    index.push((id, entries));
    Ok(())
}
