//! Restore: reassemble a snapshot's exact bytes, verified, written atomically.
//!
//! On a network store a regular file is restored in pack order (see
//! `packorder.rs`), each pack fetched once; otherwise a producer walks the chunk lists and cuts the output into stretches of a
//! few MiB (at frame boundaries), each with the set of frames its chunks live
//! in; workers read those frames (neighbours in one pack in a single range
//! read into a reused buffer), open each frame once where it was read, verify
//! every chunk and assemble the stretch; the caller's thread writes stretches
//! in order and checks the whole-stream BLAKE3 before the file gets its final
//! name. A chunk is verified by its frame's members digest when the stretch
//! uses every blob of a bound frame (the digest, authenticated with the frame,
//! names all their ids), else by hashing it to its id. A frame whose chunks lie
//! in several stretches is opened once and shared (`framecache.rs`).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::crypto::{Id, IdBuildHasher};
use crate::error::{Error, Result};
use crate::format::index::{blobs_at_most, lead, load_readable_listed, locate, read_pack_headers, uncovered_packs, FrameFilter, Index, IndexSink, Wanted};
use crate::format::compress::{Decoder, Dictionaries};
use crate::format::pack::{blob_bytes, id_mismatch, members_digest, members_mismatch, open_blob, open_frame_into, BlobEntry, BlobKeys, BlobType, DIGEST_LEN};
use crate::store::{display_name, FileInfo, FileKind, ReadPlan, Repository};
use crate::format::snapshot::{Snapshot, SnapshotFile};
use super::framecache::FrameCache;
use super::target::{self, Dest};

/// A stretch of output closes once its frames hold the backend's
/// [`ReadPlan::stretch`] plaintext bytes, or its chunks this many times that
/// (a chunk repeated many times needs one frame).
const STRETCH_OUTPUT_FACTOR: u64 = 2;

/// How to run a restore.
#[derive(Clone)]
pub struct RestoreOptions {
    /// Worker threads for reading and decrypting.
    pub threads: usize,
    /// Progress bar advanced by bytes written.
    pub progress: Option<indicatif::ProgressBar>,
    /// Replace regular files that already exist at the target (else refuse them).
    pub overwrite: bool,
    /// Restore regular files in pack order (`Some(true)`) or output order; `None`: as the
    /// backend's [`ReadPlan`] prefers (pack order on network stores).
    pub pack_order: Option<bool>,
    /// Where a [`Blobs::spilling`] restore joins chunks and index on disk: the directory
    /// of each file restored, else (a stream) this one or the temporary directory.
    pub spill_dir: Option<PathBuf>,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions { threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2), progress: None, overwrite: false, pack_order: None, spill_dir: None }
    }
}

/// Reads blobs of one repository: the index to find them, the keys and
/// dictionaries to open them.
pub struct Blobs<'a> {
    /// The repository.
    pub repo: &'a Repository,
    located: Located<'a>,
    dicts: Dictionaries,
    /// Whole files are located by a join on disk ([`super::spill`]), never the whole index.
    spill: bool,
}

/// Where a [`Blobs`] finds blobs.
enum Located<'a> {
    /// The whole index, loaded by the caller.
    All(&'a Index),
    /// A few at a time: through a shared [`Lookup`] (kept between requests) and one of its
    /// own (dropped with the `Blobs`), and the whole index once something needs it (a whole
    /// file streamed), loaded then and dropped with the `Blobs` too.
    Few(Arc<Lookup>, Lookup, OnceLock<Index>),
}

/// Blob locations found a few at a time by streaming the index files, for commands that
/// read a handful of blobs of a large repository (one key of a snapshot): the first search
/// also keeps every chunk-list and dictionary entry (a few per thousand chunks), so a key
/// costs two more searches (its key-index page, then the chunks of its chunk list).
pub struct Lookup {
    found: RwLock<Index>,
}

impl Lookup {
    /// Searches the index files for `first` (e.g. the key-index top tables of the snapshots
    /// to read), every chunk list and every dictionary.
    pub fn new(repo: &Repository, first: &[Id]) -> Result<Lookup> {
        let mut found = Index::new();
        locate(repo, &Wanted::new(first.iter().copied()), &|e: &BlobEntry| e.kind != BlobType::Data, &mut found)?;
        Ok(Lookup { found: RwLock::new(found) })
    }

    /// Searches the index files for `ids` and the dictionaries only (a backup reading a few
    /// blobs of an earlier snapshot needs no chunk lists).
    pub fn just(repo: &Repository, ids: &[Id]) -> Result<Lookup> {
        let mut found = Index::new();
        locate(repo, &Wanted::new(ids.iter().copied()), &|e: &BlobEntry| e.kind == BlobType::Dictionary, &mut found)?;
        Ok(Lookup { found: RwLock::new(found) })
    }

    /// Blobs found so far.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.found.read().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, id: &Id) -> Option<(Id, BlobEntry)> {
        self.read().get(id)
    }

    /// Searches the index files once for those of `ids` found neither here nor in `other`.
    fn find(&self, repo: &Repository, ids: &[Id], other: &Lookup) -> Result<()> {
        let missing = {
            let (found, other) = (self.read(), other.read());
            Wanted::new(ids.iter().filter(|id| !found.contains(id) && !other.contains(id)).copied())
        };
        if missing.is_empty() {
            return Ok(());
        }
        let mut found = self.found.write().unwrap_or_else(|e| e.into_inner());
        locate(repo, &missing, &|_: &BlobEntry| false, &mut found)
    }
}

impl<'a> Blobs<'a> {
    /// Loads the repository's dictionaries (they are few and small).
    pub fn new(repo: &'a Repository, index: &'a Index) -> Result<Blobs<'a>> {
        let (blobs, mut damaged) = Blobs::tolerant(repo, index);
        match damaged.pop() {
            Some((_, e)) => Err(e),
            None => Ok(blobs),
        }
    }

    /// Blobs found through `lookup`, a few at a time (see [`Lookup`]).
    pub fn few(repo: &'a Repository, lookup: Arc<Lookup>) -> Result<Blobs<'a>> {
        let dictionaries = dictionary_ids(&lookup.read());
        let own = Lookup { found: RwLock::new(Index::new()) };
        let mut b = Blobs { repo, located: Located::Few(lookup, own, OnceLock::new()), dicts: Dictionaries::new(), spill: false };
        let mut dicts = Dictionaries::new();
        for id in dictionaries {
            dicts.add(b.load(&id)?);
        }
        b.dicts = dicts;
        Ok(b)
    }

    /// Like [`Blobs::few`], for restoring whole files too large for their part of the index
    /// to be held in memory: their chunks are located by a join on disk ([`super::spill`]),
    /// and chunks of frames used only in part are hashed, not vouched for by the index.
    pub fn spilling(repo: &'a Repository, lookup: Arc<Lookup>) -> Result<Blobs<'a>> {
        Ok(Blobs { spill: true, ..Blobs::few(repo, lookup)? })
    }

    /// The index a restore checks partly used frames against: none when spilling.
    pub(crate) fn vouching_index(&self) -> Option<&Index> {
        if self.spill {
            return None;
        }
        self.index().ok()
    }

    /// Like `new`, but hands back the dictionaries that failed to load
    /// instead of failing (for `check`, which reports every problem).
    pub fn tolerant(repo: &'a Repository, index: &'a Index) -> (Blobs<'a>, Vec<(Id, Error)>) {
        let mut b = Blobs { repo, located: Located::All(index), dicts: Dictionaries::new(), spill: false };
        let mut dicts = Dictionaries::new();
        let mut damaged = Vec::new();
        for id in dictionary_ids(index) {
            match b.load(&id) {
                Ok(d) => dicts.add(d),
                Err(e) => damaged.push((id, e)),
            }
        }
        b.dicts = dicts;
        (b, damaged)
    }

    /// The whole index: the caller's, or loaded now by a `Blobs` that finds a few blobs
    /// at a time (when a whole file is to be read after all).
    pub fn index(&self) -> Result<&Index> {
        match &self.located {
            Located::All(index) => Ok(*index),
            Located::Few(_, _, all) => {
                if all.get().is_none() {
                    let (index, _) = load_index(self.repo)?;
                    let _ = all.set(index);
                }
                all.get().ok_or_else(|| Error::Invalid("the index did not load".into()))
            }
        }
    }

    /// Where a blob is stored, with its pack's name (searched for if not found yet).
    pub fn locate(&self, id: &Id) -> Result<(Id, BlobEntry)> {
        let found = match &self.located {
            Located::All(index) => index.get(id),
            Located::Few(_, _, all) if all.get().is_some() => all.get().and_then(|i| i.get(id)),
            Located::Few(shared, own, _) => match shared.get(id).or_else(|| own.get(id)) {
                Some(f) => Some(f),
                None => {
                    own.find(self.repo, std::slice::from_ref(id), shared)?;
                    own.get(id)
                }
            },
        };
        found.ok_or_else(|| Error::MissingBlob { id: id.to_hex() })
    }

    /// Finds where all of `ids` are stored in one search of the index files (nothing to do
    /// with the whole index at hand); [`Blobs::locate`] then answers at once.
    pub fn locate_all(&self, ids: &[Id]) -> Result<()> {
        match &self.located {
            Located::Few(shared, own, all) if all.get().is_none() => own.find(self.repo, ids, shared),
            _ => Ok(()),
        }
    }

    /// [`Blobs::locate_all`], keeping what it finds in the shared [`Lookup`] for later
    /// requests (the pages of a snapshot's key index, which a browsing session reads again).
    pub fn locate_and_keep(&self, ids: &[Id]) -> Result<()> {
        match &self.located {
            Located::Few(shared, own, all) if all.get().is_none() => shared.find(self.repo, ids, own),
            _ => Ok(()),
        }
    }

    /// A decoder for one thread.
    pub fn decoder(&self) -> Decoder<'_> {
        self.dicts.decoder()
    }

    /// The dictionaries, for compressors that continue with them.
    pub fn dictionaries(&self) -> &Dictionaries {
        &self.dicts
    }

    fn keys(&self) -> BlobKeys<'_> {
        BlobKeys::of(self.repo)
    }

    /// Reads one blob from its pack and verifies it.
    pub fn load(&self, id: &Id) -> Result<Vec<u8>> {
        let (pack, entry) = self.locate(id)?;
        let name = pack.to_hex();
        let sealed = self.repo.backend().read_range(FileKind::Pack, &name, entry.offset as u64, entry.length as usize)?;
        open_blob(&self.keys(), &mut self.dicts.decoder(), &entry, &sealed, &blob_name(&name, &entry))
    }
}

/// What [`load_index`] worked around.
#[derive(Debug, Default)]
pub struct IndexDamage {
    /// Index files that cannot be read, with why.
    pub index_files: Vec<(String, Error)>,
    /// Packs no readable index file names, indexed from their own headers.
    pub packs_read: usize,
    /// Of those, the packs whose header cannot be read either, with why.
    pub unreadable_packs: Vec<(String, String)>,
}

/// The index for reading snapshots. When index files are damaged, the packs
/// the readable ones do not name are indexed from their own headers instead
/// (sealed like the index, and every blob read is verified against its id),
/// so a restore needs no `repair index` first.
pub fn load_index(repo: &Repository) -> Result<(Index, IndexDamage)> {
    load_whole(repo, None)
}

/// [`load_index`] from the index files `listed` (listed now when `None`).
fn load_whole(repo: &Repository, listed: Option<Vec<FileInfo>>) -> Result<(Index, IndexDamage)> {
    load_frames(repo, &|_: &BlobEntry| true, &|_: &BlobEntry| (), usize::MAX, listed)
}

/// The index a restore of `files` needs. When the repository indexes more than twice as
/// many blobs as they hold chunks (a history of snapshots, or other sources), only their
/// frames, every chunk list and the dictionaries are held ([`load_index_for_files`]), so
/// memory follows the snapshot, not the repository; else the whole index, read in one pass.
pub fn load_index_for(repo: &Repository, files: &[SnapshotFile]) -> Result<(Index, IndexDamage)> {
    load_index_for_listed(repo, files, repo.backend().list(FileKind::Index)?)
}

/// Bytes of index in memory (44 a blob) a restore of `files` would hold: the whole index, or
/// only the frames of their chunks (see [`load_index_for`]).
pub fn index_bytes_for(listed: &[FileInfo], files: &[SnapshotFile]) -> u64 {
    let chunks = files.iter().map(|f| f.chunks).fold(0u64, u64::saturating_add);
    let indexed = blobs_at_most(listed) as u64;
    let held = if indexed / 2 < chunks { indexed } else { chunks + chunks / 4 };
    held.saturating_mul(44)
}

/// [`load_index_for`] from index files listed already (a listing taken once the lock was
/// held, while the snapshot was being found: a round trip less on object storage).
pub fn load_index_for_listed(repo: &Repository, files: &[SnapshotFile], listed: Vec<FileInfo>) -> Result<(Index, IndexDamage)> {
    let chunks = files.iter().map(|f| f.chunks as usize).fold(0usize, usize::saturating_add);
    if blobs_at_most(&listed) / 2 < chunks {
        return load_whole(repo, Some(listed));
    }
    // Anything amiss (a damaged index file, an unreadable chunk list) is met as a restore
    // with the whole index meets it.
    load_index_for_files(repo, files).or_else(|_| load_index(repo))
}

/// The frames that hold the chunks of `files`, with every chunk list and dictionary: the
/// chunk lists are found (a first pass over the index files keeps only those) and read
/// first, then a second pass keeps the frames they name (44 bytes per blob of those
/// frames, and 12 per chunk of the files while the index is read).
fn load_index_for_files(repo: &Repository, files: &[SnapshotFile]) -> Result<(Index, IndexDamage)> {
    let mut lists = Index::new();
    locate(repo, &Wanted::new([]), &|e: &BlobEntry| e.kind != BlobType::Data, &mut lists)?;
    let leads = {
        let blobs = Blobs::new(repo, &lists)?;
        let mut leads = Vec::with_capacity(files.iter().map(|f| f.chunks as usize).sum::<usize>().min(1 << 24));
        for file in files {
            for id in blobs.chunk_ids(file) {
                leads.push(lead(&id?));
            }
        }
        leads
    };
    drop(lists);
    let wanted = Wanted::leads(leads);
    // Frames hold tens of chunks, and the files use most of the frames they name.
    let expect = wanted.len() + wanted.len() / 4;
    load_frames(repo, &|e: &BlobEntry| e.kind != BlobType::Data || wanted.contains(&e.id), &|e: &BlobEntry| wanted.prefetch(&e.id), expect, None)
}

/// The frames of the blobs `keep` accepts (about `expect` blobs; `warm` prefetches for
/// `keep`), from the readable index
/// files and, for the packs no readable one names, from the packs' own headers.
fn load_frames(
    repo: &Repository,
    keep: &dyn Fn(&BlobEntry) -> bool,
    warm: &dyn Fn(&BlobEntry),
    expect: usize,
    listed: Option<Vec<FileInfo>>,
) -> Result<(Index, IndexDamage)> {
    let mut filter = FrameFilter::new(keep, warm, expect);
    let (files, index_files) = load_readable_listed(repo, listed, &mut filter)?;
    filter.index.files = files;
    if index_files.is_empty() {
        return Ok((filter.index, IndexDamage::default()));
    }
    let uncovered = uncovered_packs(repo, |id| filter.packs.contains(id))?;
    let (packs, unreadable_packs) = read_pack_headers(repo, &uncovered);
    for (pack, entries) in &packs {
        for e in entries {
            filter.add(*pack, e);
        }
    }
    filter.finish();
    Ok((filter.index, IndexDamage { index_files, packs_read: uncovered.len(), unreadable_packs }))
}

/// The repository's dictionary blobs (kept by prune whatever references them).
pub fn dictionary_ids(index: &Index) -> Vec<Id> {
    index.iter().filter(|(_, e)| e.kind == BlobType::Dictionary).map(|(_, e)| e.id).collect()
}

/// How a blob is named in messages: `blob <id> in data/xx/<pack>`.
pub fn blob_name(pack: &str, e: &BlobEntry) -> String {
    format!("blob {} in {}", e.id.to_hex(), display_name(FileKind::Pack, pack))
}

/// A stretch of output: its chunks in order, each naming one of its frames.
struct Batch {
    seq: u64,
    /// Where the stretch starts in the file.
    at: u64,
    frames: Vec<(Id, BlobEntry)>,
    chunks: Vec<(u32, BlobEntry)>,
}

/// Where restored bytes go: a stream written in order by one thread, or a
/// file that the workers write at each stretch's offset while one thread
/// hashes the stretches in order.
enum Sink<'a> {
    Stream(&'a mut dyn Write),
    File(&'a File),
}

/// Writes the file's bytes to `out` in order; fails if any blob or the whole-stream hash is wrong.
pub fn write_file(blobs: &Blobs<'_>, file: &SnapshotFile, out: &mut dyn Write, opts: &RestoreOptions) -> Result<()> {
    run(blobs, file, Sink::Stream(out), opts)
}

fn run(blobs: &Blobs<'_>, file: &SnapshotFile, sink: Sink<'_>, opts: &RestoreOptions) -> Result<()> {
    run_with(blobs, file, sink, opts, &FrameCache::default())
}

fn run_with(blobs: &Blobs<'_>, file: &SnapshotFile, mut sink: Sink<'_>, opts: &RestoreOptions, opened: &FrameCache) -> Result<()> {
    let plan = blobs.repo.backend().read_plan();
    let threads = opts.threads.max(plan.in_flight).max(1);
    let drop_read = fills_memory(file.size);
    let target = match &sink {
        Sink::File(f) => Some(*f),
        Sink::Stream(_) => None,
    };
    let (batch_tx, batch_rx) = bounded::<Batch>(threads * 2);
    let (done_tx, done_rx) = bounded::<(u64, Result<Vec<u8>>)>(threads * 2);
    // Stretch buffers go back to the workers once written: no allocation (and
    // no page faults on fresh memory) per stretch.
    let (free_tx, free_rx) = bounded::<Vec<u8>>(threads * 2 + 2);
    std::thread::scope(|s| {
        let dir = opts.spill_dir.as_deref();
        let producer = s.spawn(move || produce_batches(blobs, file, batch_tx, plan.stretch, dir));
        for _ in 0..threads {
            let (rx, tx, free) = (batch_rx.clone(), done_tx.clone(), free_rx.clone());
            s.spawn(move || fetch_batches(blobs, file, rx, tx, free, (target, drop_read), (&plan, opened)));
        }
        drop(batch_rx);
        drop(done_tx);
        let written = write_in_order(file, done_rx, free_tx, &mut sink, opts);
        let produced = producer.join().unwrap_or_else(|_| Err(Error::Invalid("restore producer panicked".into())));
        // A producer failure (unreadable chunk list) explains a short write.
        produced.and(written)
    })
}

/// How many chunk ids ahead of its lookup the index is prefetched; the bucket directory's
/// line, which that prefetch reads, is prefetched twice as far ahead.
const LOOKAHEAD: usize = 16;

/// The file's chunks in order with their packs and index entries. Ids are
/// looked up a few places behind where they are read, after a prefetch of
/// their index lines (lookups are random reads of a large table).
pub(crate) fn located_chunks<'a>(blobs: &'a Blobs<'a>, file: &'a SnapshotFile, dir: Option<&Path>) -> Box<dyn Iterator<Item = Result<(Id, BlobEntry)>> + 'a> {
    if blobs.spill {
        let dir = dir.map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
        return match blobs.spilled_chunks(file, &dir) {
            Ok(located) => Box::new(located),
            Err(e) => Box::new(std::iter::once(Err(e))),
        };
    }
    let (index, mut failed) = match blobs.index() {
        Ok(index) => (Some(index), None),
        Err(e) => (None, Some(e)),
    };
    let mut ids = blobs.chunk_ids(file);
    let mut ahead = std::collections::VecDeque::with_capacity(2 * LOOKAHEAD);
    Box::new(std::iter::from_fn(move || {
        if let Some(e) = failed.take() {
            return Some(Err(e));
        }
        let index = index?;
        while ahead.len() < 2 * LOOKAHEAD {
            match ids.next() {
                Some(Ok(id)) => {
                    index.prefetch_bucket(&id);
                    ahead.push_back(id);
                    if let Some(near) = ahead.len().checked_sub(LOOKAHEAD + 1).and_then(|i| ahead.get(i)) {
                        index.prefetch(near);
                    }
                }
                Some(Err(e)) => return Some(Err(e)),
                None => break,
            }
        }
        let id = ahead.pop_front()?;
        Some(index.get(&id).ok_or_else(|| Error::MissingBlob { id: id.to_hex() }))
    }))
}

/// The error unless the chunk lists held as many chunks as the snapshot says.
pub(crate) fn check_count(file: &SnapshotFile, count: u64) -> Result<()> {
    if count != file.chunks {
        return Err(Error::corrupt(
            format!("snapshot file {}", file.name),
            format!("chunk lists hold {count} chunks, snapshot says {}", file.chunks),
        ));
    }
    Ok(())
}

fn produce_batches(blobs: &Blobs<'_>, file: &SnapshotFile, tx: Sender<Batch>, stretch: u64, dir: Option<&Path>) -> Result<()> {
    let mut seq = 0u64;
    let mut count = 0u64;
    let new_batch = |seq: u64, at: u64| Batch { seq, at, frames: Vec::new(), chunks: Vec::new() };
    let mut cur = new_batch(seq, 0);
    let mut frame_pos: HashMap<(Id, u32), u32, IdBuildHasher> = HashMap::default();
    let (mut frame_bytes, mut out_bytes) = (0u64, 0u64);
    for located in located_chunks(blobs, file, dir) {
        let (pack, entry) = located?;
        count += 1;
        // A full stretch closes where a new frame starts, so that a frame's
        // chunks stay in one stretch and its members digest can vouch for them.
        let new_frame = cur.chunks.last().is_none_or(|(k, _)| {
            let (p, e) = &cur.frames[*k as usize];
            *p != pack || !e.same_frame(&entry)
        });
        if (frame_bytes >= stretch && new_frame) || out_bytes >= stretch * STRETCH_OUTPUT_FACTOR {
            seq += 1;
            let next = new_batch(seq, cur.at + out_bytes);
            if tx.send(std::mem::replace(&mut cur, next)).is_err() {
                return Ok(());
            }
            frame_pos.clear();
            (frame_bytes, out_bytes) = (0, 0);
        }
        let pos = *frame_pos.entry((pack, entry.offset)).or_insert_with(|| {
            cur.frames.push((pack, entry));
            frame_bytes += entry.frame_len as u64;
            (cur.frames.len() - 1) as u32
        });
        cur.chunks.push((pos, entry));
        out_bytes += entry.raw_len as u64;
    }
    if !cur.chunks.is_empty() {
        let _ = tx.send(cur);
    }
    check_count(file, count)
}

fn fetch_batches(
    blobs: &Blobs<'_>,
    file: &SnapshotFile,
    rx: Receiver<Batch>,
    tx: Sender<(u64, Result<Vec<u8>>)>,
    free: Receiver<Vec<u8>>,
    (target, drop_read): (Option<&File>, bool),
    (plan, opened): (&ReadPlan, &FrameCache),
) {
    let mut zstd = blobs.dicts.decoder();
    let mut scratch = Scratch::default();
    // The chunks came from it: loaded (or failing) already.
    let index = blobs.vouching_index();
    for b in rx {
        let mut out = free.try_recv().unwrap_or_default();
        let mut result = fetch_batch(blobs, index, &mut zstd, &b, (plan, drop_read, opened), &mut scratch, &mut out).map(|()| out);
        if let (Some(f), Ok(bytes)) = (target, &result) {
            use std::os::unix::fs::FileExt;
            if let Err(e) = f.write_all_at(bytes, b.at) {
                result = Err(Error::io(format!("write restored {}", file.name), e));
            }
        }
        let failed = result.is_err();
        if tx.send((b.seq, result)).is_err() || failed {
            return;
        }
    }
}

/// Names a damaged blob in a corruption error (formatted only on failure).
pub(crate) fn named(pack: Id, e: BlobEntry) -> impl FnOnce(Error) -> Error {
    move |err| match err {
        Error::Corrupt { detail, .. } => Error::Corrupt { what: blob_name(&pack.to_hex(), &e), detail },
        other => other,
    }
}

/// What a restore worker keeps from one stretch to the next, so that a
/// stretch allocates nothing once the buffers have grown.
#[derive(Default)]
struct Scratch {
    /// Frames of the stretch in pack order.
    order: Vec<usize>,
    /// Sealed bytes of one range read, opened where they lie.
    read: Vec<u8>,
    /// The stretch's staged frames (those not opened into the output), back to back.
    plain: Vec<u8>,
    /// Where each frame is opened.
    place: Vec<Place>,
    /// Bytes of `plain` in use.
    staged: usize,
    /// Per frame, how its chunks tile it (see [`place_frames`]).
    tiling: Vec<Tiling>,
    /// Each bound frame's members digest.
    digests: Vec<Option<[u8; DIGEST_LEN]>>,
    /// The chunks by frame and place: (frame, inner, raw_len, id).
    members: Vec<(u32, u32, u32, Id)>,
    /// Frames whose members digest vouches for every chunk taken from them.
    vouched: Vec<bool>,
    /// Per frame, where the stretch's chunks of it end in its plaintext.
    reach: Vec<u32>,
    /// Frames copied from the [`FrameCache`] rather than read.
    cached: Vec<bool>,
}

/// Makes `buf` at least `len` bytes long (zeroing only what is new).
fn grow(buf: &mut Vec<u8>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0);
    }
}

#[allow(clippy::too_many_arguments)]
fn fetch_batch(
    blobs: &Blobs<'_>,
    index: Option<&Index>,
    zstd: &mut Decoder<'_>,
    b: &Batch,
    (plan, drop_read, opened): (&ReadPlan, bool, &FrameCache),
    sc: &mut Scratch,
    out: &mut Vec<u8>,
) -> Result<()> {
    let keys = blobs.keys();
    let size = place_frames(b, sc);
    sc.digests.clear();
    sc.digests.resize(b.frames.len(), None);
    // Frames that do not tile the output are opened into `plain`, then copied.
    grow(&mut sc.plain, sc.staged);
    // A staged frame another stretch kept is copied, not read; one this stretch leaves
    // unfinished (`reach`, from `place_frames`) is kept for the next; one it finishes is given up.
    sc.cached.clear();
    sc.cached.resize(b.frames.len(), false);
    for (k, (pack, e)) in b.frames.iter().enumerate() {
        let Place::Staged(at) = sc.place[k] else { continue };
        if let Some(kept) = opened.get(*pack, e) {
            sc.plain[at..at + e.frame_len as usize].copy_from_slice(&kept.plain);
            (sc.digests[k], sc.cached[k]) = (kept.digest, true);
            if sc.reach[k] >= e.frame_len {
                opened.forget(*pack, e);
            }
        }
    }
    // Every byte of `out` is overwritten below: zero only what is new.
    if out.len() < size {
        out.resize(size, 0);
    }
    out.truncate(size);
    // Frames in pack order; neighbours share one range read.
    sc.order.clear();
    sc.order.extend((0..b.frames.len()).filter(|&k| !sc.cached[k]));
    sc.order.sort_by_key(|&i| (b.frames[i].0, b.frames[i].1.offset));
    let order = &sc.order;
    let mut i = 0;
    while i < order.len() {
        let (pack, first) = b.frames[order[i]];
        let start = first.offset as u64;
        let mut end = start + first.length as u64;
        let mut j = i + 1;
        while j < order.len() {
            let (p, e) = b.frames[order[j]];
            let (off, e_end) = (e.offset as u64, e.offset as u64 + e.length as u64);
            if p != pack || off < end || off - end > plan.gap || e_end - start > plan.span {
                break;
            }
            end = e_end;
            j += 1;
        }
        let (len, name) = ((end - start) as usize, pack.to_hex());
        grow(&mut sc.read, len);
        blobs.repo.backend().read_range_into(FileKind::Pack, &name, start, &mut sc.read[..len])?;
        for &k in &order[i..j] {
            let e = &b.frames[k].1;
            let off = (e.offset as u64 - start) as usize;
            let sealed = sc.read.get_mut(off..off + e.length as usize).ok_or_else(|| named(pack, *e)(Error::corrupt("", "lies beyond the end of its pack")))?;
            let dst = match sc.place[k] {
                Place::Output(at) => &mut out[at..at + e.frame_len as usize],
                Place::Staged(at) => &mut sc.plain[at..at + e.frame_len as usize],
            };
            sc.digests[k] = open_frame_into(&keys, zstd, e, sealed, dst, "").map_err(named(pack, *e))?;
            if let Place::Staged(at) = sc.place[k] {
                if sc.reach[k] < e.frame_len {
                    opened.keep(pack, e, &sc.plain[at..at + e.frame_len as usize], sc.digests[k]);
                }
            }
        }
        if drop_read {
            blobs.repo.backend().drop_cached(FileKind::Pack, &name, start, len as u64);
        }
        i = j;
    }
    vouch(b, sc, index)?;
    // Chunks of staged frames are copied to their places; the chunks no digest
    // vouches for are then hashed to their ids where they landed, eight at a time.
    let mut unvouched = Vec::new();
    let mut at = 0usize;
    for (n, (k, e)) in b.chunks.iter().enumerate() {
        let len = e.raw_len as usize;
        if let Place::Staged(from) = sc.place[*k as usize] {
            let frame = &sc.plain[from..from + b.frames[*k as usize].1.frame_len as usize];
            let data = blob_bytes(e, frame, "").map_err(named(b.frames[*k as usize].0, *e))?;
            out[at..at + len].copy_from_slice(data);
        }
        if !sc.vouched[*k as usize] {
            unvouched.push((n, at..at + len));
        }
        at += len;
    }
    if !unvouched.is_empty() {
        let slices: Vec<&[u8]> = unvouched.iter().map(|(_, r)| &out[r.clone()]).collect();
        for ((n, _), id) in unvouched.iter().zip(keys.hasher.ids(&slices)) {
            let (k, e) = &b.chunks[*n];
            if id != e.id {
                return Err(named(b.frames[*k as usize].0, *e)(id_mismatch("")));
            }
        }
    }
    Ok(())
}

/// Where one frame of a stretch is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// Straight into the stretch's output at this offset: its chunks follow
    /// one another there, each once, tiling the frame in order.
    Output(usize),
    /// Into the staging buffer at this offset, its chunks copied out after.
    Staged(usize),
}

/// Decides where each frame of the stretch is opened (`sc.place`, and
/// `sc.staged` bytes of staging) and how far into each the stretch's chunks
/// reach (`sc.reach`); returns the stretch's output length.
fn place_frames(b: &Batch, sc: &mut Scratch) -> usize {
    // Per frame: where its tiling started in the output and the next (inner, out)
    // it needs, or None once it cannot be opened in place.
    sc.tiling.clear();
    sc.tiling.resize(b.frames.len(), Tiling::Unseen);
    sc.reach.clear();
    sc.reach.resize(b.frames.len(), 0);
    let mut at = 0usize;
    for (k, e) in &b.chunks {
        let len = e.raw_len as usize;
        let r = &mut sc.reach[*k as usize];
        *r = (*r).max(e.inner.saturating_add(e.raw_len));
        let t = &mut sc.tiling[*k as usize];
        *t = match *t {
            Tiling::Unseen if e.inner == 0 => Tiling::Tiles { start: at, inner: len as u64 },
            Tiling::Tiles { start, inner } if inner == e.inner as u64 && start as u64 + inner == at as u64 => Tiling::Tiles { start, inner: inner + len as u64 },
            _ => Tiling::No,
        };
        at += len;
    }
    sc.place.clear();
    sc.staged = 0;
    for ((_, e), t) in b.frames.iter().zip(&sc.tiling) {
        sc.place.push(match *t {
            Tiling::Tiles { start, inner } if inner == e.frame_len as u64 => Place::Output(start),
            _ => {
                sc.staged += e.frame_len as usize;
                Place::Staged(sc.staged - e.frame_len as usize)
            }
        });
    }
    at
}

/// How far a frame's chunks, in stretch order, tile it back to back.
#[derive(Clone, Copy, Debug)]
enum Tiling {
    Unseen,
    Tiles { start: usize, inner: u64 },
    No,
}

/// Marks the bound frames of a stretch whose digest vouches for the blobs the
/// stretch takes from them: those blobs tile the frame and the digest names
/// their ids and lengths in order, or else the index's full list of the
/// frame's blobs does ([`index_vouches`]); any other frame's chunks are left to be hashed.
fn vouch(b: &Batch, sc: &mut Scratch, index: Option<&Index>) -> Result<()> {
    sc.vouched.clear();
    sc.vouched.resize(b.frames.len(), false);
    sc.members.clear();
    sc.members.extend(b.chunks.iter().filter(|(k, _)| sc.digests[*k as usize].is_some()).map(|(k, e)| (*k, e.inner, e.raw_len, e.id)));
    sc.members.sort_unstable_by_key(|m| (m.0, m.1));
    sc.members.dedup();
    for group in sc.members.chunk_by(|x, y| x.0 == y.0) {
        let k = group[0].0 as usize;
        let (pack, e) = &b.frames[k];
        if let Some(digest) = sc.digests[k] {
            let used = group.iter().map(|m| (m.1, m.2, &m.3));
            sc.vouched[k] = digest_vouches(*pack, e, digest, used.clone())? || index.is_some_and(|index| index_vouches(index, *pack, e, digest, used));
        }
    }
    Ok(())
}

/// Whether a bound frame's digest vouches for `used`, some of its blobs given as
/// (place in the frame, length, id) in frame order: the index's full list of
/// the frame's blobs must tile the frame, hash to the digest and hold each of
/// them. False (the caller hashes them) when the list falls short or disagrees,
/// or when they are less than half the frame (gathering the list, scattered
/// through the index, then costs more than hashing them).
pub(crate) fn index_vouches<'i>(index: &Index, pack: Id, e: &BlobEntry, digest: [u8; DIGEST_LEN], mut used: impl Iterator<Item = (u32, u32, &'i Id)> + Clone) -> bool {
    if used.clone().map(|(_, len, _)| len as u64).sum::<u64>() * 2 < e.frame_len as u64 {
        return false;
    }
    let Some((_, _, first)) = used.clone().next() else { return false };
    let Some((p, f, all)) = index.frame_members(first) else { return false };
    if p != pack || !f.same_frame(e) || f.kind != e.kind || !tiles(e, all.iter().map(|(_, inner, len)| (*inner, *len))) {
        return false;
    }
    digest == members_digest(e.kind, all.iter().map(|(id, _, len)| (id, *len)))
        && used.all(|(inner, len, id)| all.binary_search_by_key(&(inner, len), |m| (m.1, m.2)).is_ok_and(|i| all[i].0 == *id))
}

/// Whether blobs given as (place in the frame, length) in frame order cover
/// the frame exactly, each byte once.
fn tiles(e: &BlobEntry, members: impl Iterator<Item = (u32, u32)>) -> bool {
    let mut next = 0u64;
    members.into_iter().all(|(inner, len)| {
        let fits = inner as u64 == next;
        next = inner as u64 + len as u64;
        fits
    }) && next == e.frame_len as u64
}

/// Whether a bound frame's authenticated digest vouches for its blobs, given
/// as (place in the frame, length, id) in frame order, each once: false when
/// they do not tile the frame (the caller hashes them), an error naming the
/// pack when they do but the digest names other ids.
pub(crate) fn digest_vouches<'i>(
    pack: Id,
    e: &BlobEntry,
    digest: [u8; DIGEST_LEN],
    members: impl Iterator<Item = (u32, u32, &'i Id)> + Clone,
) -> Result<bool> {
    if !tiles(e, members.clone().map(|(inner, len, _)| (inner, len))) {
        return Ok(false);
    }
    let ids: Vec<(&Id, u32)> = members.map(|(_, len, id)| (id, len)).collect();
    if digest != members_digest(e.kind, ids.into_iter()) {
        return Err(named(pack, *e)(members_mismatch("")));
    }
    Ok(true)
}


fn write_in_order(file: &SnapshotFile, rx: Receiver<(u64, Result<Vec<u8>>)>, free: Sender<Vec<u8>>, sink: &mut Sink<'_>, opts: &RestoreOptions) -> Result<()> {
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    let mut flushed = 0u64;
    let mut dropped = 0u64;
    let ctx = |e| Error::io(format!("write restored {}", file.name), e);
    for (seq, result) in rx {
        pending.insert(seq, result?);
        while let Some(b) = pending.remove(&next) {
            next += 1;
            hasher.update(&b);
            size += b.len() as u64;
            match sink {
                Sink::Stream(out) => out.write_all(&b).map_err(ctx)?,
                // Everything before `size` is written: start its writeback so
                // the fsync before the rename has little left to wait for.
                Sink::File(f) if size - flushed >= WRITEBACK_STEP => {
                    start_writeback(f, flushed, size - flushed);
                    flushed = size;
                    drop_behind(f, &mut dropped, flushed, WRITEBACK_STEP);
                }
                Sink::File(_) => {}
            }
            if let Some(pb) = &opts.progress {
                pb.inc(b.len() as u64);
            }
            let _ = free.try_send(b);
        }
    }
    match sink {
        Sink::Stream(out) => out.flush().map_err(ctx)?,
        // The rest too: the fsync before the rename would wait for it all the same.
        Sink::File(f) => drop_written(f, dropped, size - dropped),
    }
    if !pending.is_empty() {
        return Err(Error::Invalid(format!("restore of {} stopped early", file.name)));
    }
    let what = format!("snapshot file {}", file.name);
    if size != file.size {
        return Err(Error::corrupt(what, format!("restored {size} bytes, snapshot says {}", file.size)));
    }
    if hasher.finalize().to_hex().as_str() != file.blake3 {
        return Err(Error::corrupt(what, "restored bytes do not match the snapshot's BLAKE3"));
    }
    Ok(())
}

/// Restores every file of a snapshot under `target` (a file for one-file
/// snapshots, else a directory); see [`target::plan`] for what may be
/// written where. A new or replaced file appears only once verified; a FIFO or
/// device is written as a stream and checked at its end.
pub fn restore_to_path(blobs: &Blobs<'_>, snapshot: &Snapshot, target: &Path, opts: &RestoreOptions) -> Result<Vec<PathBuf>> {
    let dests = target::plan(snapshot, target, opts.overwrite)?;
    for (file, dest) in snapshot.files.iter().zip(&dests) {
        match dest {
            Dest::Stream(path) => {
                let mut out = std::io::BufWriter::with_capacity(1 << 20, target::open_stream(path)?);
                write_file(blobs, file, &mut out, opts).map_err(|e| target::unusable(&path.display().to_string(), e))?;
            }
            // A spilling restore joins beside the file it writes: on its disk, not in a
            // temporary directory that may live in memory.
            _ if blobs.spill && opts.spill_dir.is_none() => {
                let opts = RestoreOptions { spill_dir: dest.path().parent().map(Path::to_path_buf), ..opts.clone() };
                restore_file(blobs, file, dest, &opts)?;
            }
            _ => restore_file(blobs, file, dest, opts)?,
        }
    }
    Ok(dests.iter().map(|d| d.path().to_path_buf()).collect())
}

/// Restores one regular file to `dest`, atomically: on a network store each pack is fetched
/// once, in pack order; on a local disk the output is written in order (pack order's
/// scattered writes cost more there).
fn restore_file(blobs: &Blobs<'_>, file: &SnapshotFile, dest: &Dest, opts: &RestoreOptions) -> Result<()> {
    let pack_order = opts.pack_order.unwrap_or(blobs.repo.backend().read_plan().pack_order);
    target::write_atomically(dest, |f| {
        target::preallocate(f, file)?;
        if pack_order {
            blobs.restore_into(file, f, opts)
        } else {
            run(blobs, file, Sink::File(f), opts)
        }
    })
}

/// Restored bytes between two calls that start the kernel's writeback.
const WRITEBACK_STEP: u64 = 8 * 1024 * 1024;
/// How far behind the newest restored byte the written ones are waited for and dropped from
/// the page cache (by then their writeback is usually done, so the wait is short).
const DROP_LAG: u64 = 2 * WRITEBACK_STEP;

/// Whether a restore of a `size`-byte file also drops the pack ranges it read from the page
/// cache: when the file alone would fill a quarter of the machine's memory. Packs filling the
/// cache then cost the kernel more in reclaim than re-reading the few ranges two stretches
/// share (a 10 GiB restore on a 23.5 GiB VM: 31.4-31.9 -> 27.2-27.8 s); below that, the
/// re-reads cost more (a 1 GiB one: 2.3-2.6 -> 2.7-2.9 s).
pub(crate) fn fills_memory(size: u64) -> bool {
    crate::host::physical_memory().is_some_and(|mem| size > mem / 4)
}

#[cfg(target_os = "linux")]
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on an open descriptor; it only schedules I/O.
    // Failure is harmless: the fsync before the rename still makes it durable.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Waits until a restored range is on the disk, then drops it from the page cache: a large
/// restore neither evicts what other programs cache nor makes the kernel reclaim under
/// pressure (the file is fsynced before its rename whatever this did).
#[cfg(target_os = "linux")]
pub(crate) fn drop_written(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let wait = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: a plain syscall on an open descriptor; it neither reads nor writes our memory.
    // A failure only leaves the range cached.
    if unsafe { libc::sync_file_range(file.as_raw_fd(), offset as i64, len as i64, wait) } == 0 {
        crate::store::prefetch::forget(file, offset, len);
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn drop_written(_file: &File, _offset: u64, _len: u64) {}

/// Drops the restored bytes from `dropped` up to [`DROP_LAG`] behind `done` (the end of those
/// whose writeback has started) once `step` more than the lag has gathered.
pub(crate) fn drop_behind(file: &File, dropped: &mut u64, done: u64, step: u64) {
    if done - *dropped >= DROP_LAG + step {
        drop_written(file, *dropped, done - DROP_LAG - *dropped);
        *dropped = done - DROP_LAG;
    }
}

/// Streams a one-file snapshot to stdout (verified at the end; an error then
/// means the bytes already written must not be trusted).
pub fn restore_to_writer(blobs: &Blobs<'_>, snapshot: &Snapshot, out: &mut dyn Write, opts: &RestoreOptions) -> Result<()> {
    match snapshot.files.as_slice() {
        [file] => write_file(blobs, file, out, opts),
        files => Err(Error::Invalid(format!(
            "snapshot holds {} files; restore it to a directory, not to stdout",
            files.len()
        ))),
    }
}


/// Largest block handed from the restore threads to a [`SnapshotReader`].
const READER_BLOCK: usize = 1 << 20;

/// Blocks in flight between the restore threads and the reader (bounds memory).
const READER_QUEUE: usize = 4;

/// What the restore side sends to a [`SnapshotReader`]: data, then how the restore ended.
enum Block {
    Data(Vec<u8>),
    End(Result<()>),
}

/// A `Write` that cuts the restored stream into blocks for a [`SnapshotReader`].
struct ChannelWriter {
    buf: Vec<u8>,
    tx: Sender<Block>,
}

impl ChannelWriter {
    fn send_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let block = std::mem::replace(&mut self.buf, Vec::with_capacity(READER_BLOCK));
        self.tx
            .send(Block::Data(block))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "snapshot reader went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(READER_BLOCK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= READER_BLOCK {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buf()
    }
}

/// Reads a snapshot file's bytes as they are restored; a failed restore
/// (damaged blob, wrong hash) is an `io::Error` from `read`, never an early EOF.
pub struct SnapshotReader {
    rx: Receiver<Block>,
    block: Vec<u8>,
    pos: usize,
    ended: Option<std::result::Result<(), String>>,
}

impl SnapshotReader {
    /// Reads to the end, so the whole-file hash check has run; returns its verdict.
    pub fn finish(&mut self) -> std::io::Result<()> {
        std::io::copy(self, &mut std::io::sink()).map(|_| ())
    }
}

impl std::io::Read for SnapshotReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.block.len() {
            if let Some(end) = &self.ended {
                return match end {
                    Ok(()) => Ok(0),
                    Err(msg) => Err(std::io::Error::other(msg.clone())),
                };
            }
            match self.rx.recv() {
                Ok(Block::Data(b)) => {
                    self.block = b;
                    self.pos = 0;
                }
                Ok(Block::End(r)) => self.ended = Some(r.map_err(|e| e.to_string())),
                Err(_) => self.ended = Some(Err("snapshot restore stopped without a verdict".into())),
            }
        }
        let n = out.len().min(self.block.len() - self.pos);
        out[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Runs `consume` on a reader of `file`'s bytes while the restore runs on a
/// scoped thread, with bounded memory (a few MiB of blocks in flight).
///
/// When `consume` succeeds the rest of the stream is read, so the whole-file
/// BLAKE3 is checked before this returns; when it fails, the restore is
/// abandoned and `consume`'s error returned.
pub fn with_reader<T, E: From<Error>>(
    blobs: &Blobs<'_>,
    file: &SnapshotFile,
    opts: &RestoreOptions,
    consume: impl FnOnce(&mut SnapshotReader) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    with_readers(blobs, std::slice::from_ref(file), opts, |mut readers| match readers.pop() {
        Some(reader) => consume(reader),
        None => Err(Error::Invalid(format!("no reader for snapshot file {}", file.name)).into()),
    })
}

/// Like [`with_reader`], with one reader per file, all restoring at once (each
/// waits for `consume` to read it), so a whole snapshot can feed one backup.
pub fn with_readers<T, E: From<Error>>(
    blobs: &Blobs<'_>,
    files: &[SnapshotFile],
    opts: &RestoreOptions,
    consume: impl FnOnce(Vec<&mut SnapshotReader>) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    std::thread::scope(|s| {
        let mut readers = Vec::with_capacity(files.len());
        for file in files {
            let (tx, rx) = bounded::<Block>(READER_QUEUE);
            s.spawn(move || {
                let mut w = ChannelWriter { buf: Vec::with_capacity(READER_BLOCK), tx };
                let result = write_file(blobs, file, &mut w, opts);
                let _ = w.tx.send(Block::End(result));
            });
            readers.push(SnapshotReader { rx, block: Vec::new(), pos: 0, ended: None });
        }
        // Owned by this closure: on an early error they are dropped before the
        // scope joins, so the restore threads see closed channels and stop.
        let value = consume(readers.iter_mut().collect())?;
        for (reader, file) in readers.iter_mut().zip(files) {
            reader.finish().map_err(|e| Error::io(format!("read snapshot file {}", file.name), e))?;
        }
        Ok(value)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::io::Read;

    use super::*;

    fn reader(blocks: Vec<Block>) -> SnapshotReader {
        let (tx, rx) = bounded(blocks.len().max(1));
        for b in blocks {
            tx.send(b).unwrap();
        }
        SnapshotReader { rx, block: Vec::new(), pos: 0, ended: None }
    }

    #[test]
    fn reader_yields_blocks_then_eof() {
        let mut r = reader(vec![Block::Data(b"ab".to_vec()), Block::Data(b"c".to_vec()), Block::End(Ok(()))]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");
        assert!(r.finish().is_ok());
    }

    #[test]
    fn restore_failure_is_an_error_not_eof() {
        let mut r = reader(vec![Block::Data(b"ab".to_vec()), Block::End(Err(Error::corrupt("blob x", "bad tag")))]);
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("blob x"), "{err}");
        assert_eq!(out, b"ab");
        assert!(r.finish().is_err(), "the failure sticks");
        // A producer that vanished without a verdict is an error too.
        let mut r = reader(vec![Block::Data(b"ab".to_vec())]);
        assert!(r.read_to_end(&mut Vec::new()).is_err());
    }

    /// A bound frame vouches for its chunks only when a stretch uses all of
    /// them; a full list that disagrees with its digest is an error naming the pack.
    #[test]
    fn digest_vouches_for_a_fully_used_frame_only() {
        let id = |n: u8| Id([n; 32]);
        let entry = |n: u8, inner: u32, raw_len: u32| BlobEntry {
            id: id(n),
            kind: BlobType::Data,
            flags: crate::format::pack::FLAG_BOUND,
            offset: 0,
            length: 100,
            raw_len,
            inner,
            frame_len: 30,
        };
        let (a, b, c) = (entry(1, 0, 10), entry(2, 10, 5), entry(3, 15, 15));
        let pack = Id([9; 32]);
        let digest = members_digest(BlobType::Data, [(&a.id, 10), (&b.id, 5), (&c.id, 15)].into_iter());
        let vouched = |chunks: Vec<BlobEntry>, digest: [u8; 32]| {
            let batch = Batch { seq: 0, at: 0, frames: vec![(pack, a)], chunks: chunks.into_iter().map(|e| (0, e)).collect() };
            let mut sc = Scratch { digests: vec![Some(digest)], ..Scratch::default() };
            vouch(&batch, &mut sc, None).map(|()| sc.vouched[0])
        };
        // Every chunk, out of order and one twice: vouched.
        assert!(vouched(vec![c, a, b, a], digest).unwrap());
        // One chunk missing: its neighbours are hashed instead.
        assert!(!vouched(vec![a, c], digest).unwrap());
        // All places covered, but the digest names other ids.
        let other = members_digest(BlobType::Data, [(&a.id, 10), (&c.id, 5), (&b.id, 15)].into_iter());
        let err = vouched(vec![a, b, c], other).unwrap_err().to_string();
        assert!(err.contains(&pack.to_hex()) && err.contains("bound chunk ids do not match"), "{err}");
    }

    /// A bound frame vouches for some of its chunks when the index lists all of
    /// its blobs (tiling it, matching its digest, holding each chunk used); else
    /// the chunks are hashed.
    #[test]
    fn index_vouches_for_part_of_a_frame_it_lists_whole() {
        use crate::format::pack::{frame_entries, FLAG_BOUND};
        let pack = Id([9; 32]);
        let members = vec![(Id([1; 32]), 10), (Id([2; 32]), 5), (Id([3; 32]), 15)];
        let entries: Vec<BlobEntry> = frame_entries(BlobType::Data, FLAG_BOUND, 0, 100, &members).collect();
        let digest = members_digest(BlobType::Data, members.iter().map(|(id, n)| (id, *n)));
        let index_of = |es: &[BlobEntry]| {
            let mut index = Index::new();
            for e in es {
                index.insert(pack, *e);
            }
            index.finish();
            index
        };
        let index = index_of(&entries);
        let (a, c) = (entries[0], entries[2]);
        fn used(es: &[BlobEntry]) -> Vec<(u32, u32, &Id)> {
            es.iter().map(|e| (e.inner, e.raw_len, &e.id)).collect()
        }
        // Two of three chunks: vouched through the index.
        assert!(index_vouches(&index, pack, &a, digest, used(&[a, c]).into_iter()));
        // A digest naming other ids, another pack, a chunk at a place the frame lacks: hashed.
        let other = members_digest(BlobType::Data, [(&a.id, 10), (&c.id, 5), (&entries[1].id, 15)].into_iter());
        assert!(!index_vouches(&index, pack, &a, other, used(&[a, c]).into_iter()));
        assert!(!index_vouches(&index, Id([8; 32]), &a, digest, used(&[a]).into_iter()));
        assert!(!index_vouches(&index, pack, &a, digest, used(&[BlobEntry { inner: 10, ..a }]).into_iter()));
        // An index lacking one of the frame's blobs (prune dropped it): hashed.
        assert!(!index_vouches(&index_of(&[a, c]), pack, &a, digest, used(&[a, c]).into_iter()));
    }

    /// A frame is opened straight into the output only when its chunks follow
    /// one another there, each once, in frame order; else it is staged and copied.
    #[test]
    fn frames_open_in_place_only_when_they_tile_the_output() {
        let entry = |n: u8, inner: u32, raw_len: u32, frame_len: u32| BlobEntry {
            id: Id([n; 32]),
            kind: BlobType::Data,
            flags: 0,
            offset: n as u32 * 1000,
            length: 100,
            raw_len,
            inner,
            frame_len,
        };
        let pack = Id([9; 32]);
        // Frame 0: two chunks in order. Frame 1: used twice. Frame 2: chunks swapped.
        // Frame 3: only part used. Frame 4: in order but with a foreign chunk between.
        let f0 = [entry(0, 0, 10, 15), entry(0, 10, 5, 15)];
        let f1 = [entry(1, 0, 7, 7)];
        let f2 = [entry(2, 0, 4, 9), entry(2, 4, 5, 9)];
        let f3 = [entry(3, 0, 3, 8)];
        let f4 = [entry(4, 0, 2, 4), entry(4, 2, 2, 4)];
        let chunks = vec![
            (0, f0[0]), (0, f0[1]), (1, f1[0]), (1, f1[0]), (2, f2[1]), (2, f2[0]),
            (3, f3[0]), (4, f4[0]), (0, f0[0]), (4, f4[1]),
        ];
        let frames = vec![(pack, f0[0]), (pack, f1[0]), (pack, f2[0]), (pack, f3[0]), (pack, f4[0])];
        let batch = Batch { seq: 0, at: 0, frames, chunks };
        let mut sc = Scratch::default();
        assert_eq!(place_frames(&batch, &mut sc), 10 + 5 + 7 + 7 + 5 + 4 + 3 + 2 + 10 + 2);
        // Frame 0 tiles at 0 but is used again later: staged, like every other frame.
        assert_eq!(sc.place, vec![Place::Staged(0), Place::Staged(15), Place::Staged(22), Place::Staged(31), Place::Staged(39)]);
        assert_eq!(sc.staged, 43);
        let batch = Batch { seq: 0, at: 0, frames: batch.frames, chunks: batch.chunks[..8].iter().copied().chain([(4, f4[1])]).collect() };
        place_frames(&batch, &mut sc);
        assert_eq!(sc.place, vec![Place::Output(0), Place::Staged(0), Place::Staged(7), Place::Staged(16), Place::Output(41)]);
        assert_eq!(sc.staged, 24);
    }

    /// Bytes that do not repeat (nothing dedups between two calls with other seeds).
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn packs_are_dropped_behind_only_for_files_of_a_quarter_of_memory() {
        let mem = crate::host::physical_memory().expect("the system reports its memory");
        assert!(!fills_memory(mem / 8) && !fills_memory(mem / 4));
        assert!(fills_memory(mem / 4 + 1) && fills_memory(mem));
    }

    /// A restore's index holds the frames of its snapshot's chunks, whole, with every
    /// chunk list and dictionary, and none of the data of other snapshots; what it
    /// holds reads as the whole index reads it.
    #[test]
    fn restore_index_holds_the_snapshots_frames_only() {
        use crate::crypto::KdfParams;
        use crate::store::{ChunkerParams, LocalBackend};
        let dir = tempfile::tempdir().unwrap();
        let kdf = KdfParams { m_cost: 8, t_cost: 1, p_cost: 1 };
        let repo = Repository::init(Arc::new(LocalBackend::new(dir.path())), b"pw", ChunkerParams::default(), kdf).unwrap();
        let mut session = super::super::session::Session::open(&repo, 3).unwrap();
        let (a_bytes, b_bytes) = (noise(1, 300_000), noise(2, 3_000_000));
        let a = session.store("a.rdb", &a_bytes).unwrap().file;
        let b = session.store("b.rdb", &b_bytes).unwrap().file;
        let (full, _) = load_index(&repo).unwrap();
        let (only_a, _) = load_index_for(&repo, std::slice::from_ref(&a)).unwrap();
        // b holds most of the repository's blobs: its restore reads the whole index.
        assert_eq!(load_index_for(&repo, std::slice::from_ref(&b)).unwrap().0.len(), full.len());
        let ids = |f: &SnapshotFile| -> Vec<Id> { Blobs::new(&repo, &full).unwrap().chunk_ids(f).map(|id| id.unwrap()).collect() };
        let (a_ids, b_ids) = (ids(&a), ids(&b));
        // Every kept blob is one of a's frames' (or a list or dictionary), as the whole index has it.
        let a_frames: HashSet<(Id, u32)> = a_ids.iter().map(|id| full.get(id).map(|(p, e)| (p, e.offset)).unwrap()).collect();
        for (pack, e) in only_a.iter() {
            assert_eq!(full.get(&e.id), Some((pack, e)));
            assert!(e.kind != BlobType::Data || a_frames.contains(&(pack, e.offset)), "a blob of another snapshot's frame");
        }
        let whole = full.iter().filter(|(p, e)| e.kind != BlobType::Data || a_frames.contains(&(*p, e.offset))).count();
        assert_eq!(only_a.len(), whole, "frames are kept whole");
        assert!(b_ids.iter().all(|id| !only_a.contains(id)));
        assert!(only_a.len() * 5 < full.len(), "{} of {} blobs", only_a.len(), full.len());
        for id in &a_ids {
            assert_eq!(only_a.frame_members(id), full.frame_members(id));
        }
        // And it restores the snapshot.
        let mut out = Vec::new();
        write_file(&Blobs::new(&repo, &only_a).unwrap(), &a, &mut out, &RestoreOptions::default()).unwrap();
        assert!(out == a_bytes);
    }

    /// An incremental's few new chunks share frames that span several stretches of the
    /// restore: each such frame is read and opened once, then copied from the cache.
    #[test]
    fn frames_spanning_stretches_are_opened_once() {
        use crate::crypto::KdfParams;
        use crate::engine::backup::{self, BackupOptions, Input};
        use crate::format::snapshot::SourceDesc;
        use crate::store::{ChunkerParams, LocalBackend};
        let dir = tempfile::tempdir().unwrap();
        let kdf = KdfParams { m_cost: 8, t_cost: 1, p_cost: 1 };
        let repo = Repository::init(Arc::new(LocalBackend::new(dir.path())), b"pw", ChunkerParams::default(), kdf).unwrap();
        // One worker takes every job in order, so how far a frame spans does not depend on
        // how the threads were scheduled.
        let opts = BackupOptions { raw: true, key_index: false, threads: 1, ..BackupOptions::default() };
        let source = || SourceDesc { kind: "file".into(), name: "t".into(), details: Default::default() };
        let v1 = noise(3, 12 << 20);
        backup::run(&repo, source(), vec![Input::new("t.rdb", Box::new(&v1[..]))], &opts).unwrap();
        // One changed byte every 96 KiB: 128 new chunks of ~1.5 KiB over 12 MiB, in ~3 frames
        // each spanning ~3-4 MiB.
        let mut v2 = v1.clone();
        for at in (0..v2.len()).step_by(96 << 10) {
            v2[at] ^= 0x5a;
        }
        let (_, snap) = backup::run(&repo, source(), vec![Input::new("t.rdb", Box::new(&v2[..]))], &opts).unwrap();
        let (index, _) = load_index(&repo).unwrap();
        let blobs = Blobs::new(&repo, &index).unwrap();
        let file = &snap.files[0];
        // The new frames' chunks lie further apart than a stretch.
        let mut spans: HashMap<(Id, u32), (u64, u64)> = HashMap::new();
        let mut at = 0u64;
        for id in blobs.chunk_ids(file) {
            let (pack, e) = index.get(&id.unwrap()).unwrap();
            let s = spans.entry((pack, e.offset)).or_insert((at, at));
            s.1 = at;
            at += e.raw_len as u64;
        }
        let stretch = repo.backend().read_plan().stretch;
        let wide = spans.values().filter(|(a, b)| b - a > 2 * stretch).count();
        assert!(wide >= 2, "{wide} frames span more than two stretches");
        let cache = FrameCache::default();
        let mut out = Vec::new();
        run_with(&blobs, file, Sink::Stream(&mut out), &RestoreOptions::default(), &cache).unwrap();
        assert!(out == v2, "restored bytes differ");
        assert!(cache.hits() >= wide as u64, "{} frames copied from the cache for {wide} wide frames", cache.hits());
    }

    #[test]
    fn channel_writer_cuts_blocks() {
        let (tx, rx) = bounded(8);
        let mut w = ChannelWriter { buf: Vec::new(), tx };
        w.write_all(&vec![7u8; READER_BLOCK + 10]).unwrap();
        w.flush().unwrap();
        let sizes: Vec<usize> = rx.try_iter().map(|b| if let Block::Data(d) = b { d.len() } else { 0 }).collect();
        assert_eq!(sizes, [READER_BLOCK, 10]);
    }
}
