//! Pack-ordered restore into a file: each needed stretch of a pack is read once.
//!
//! A planner walks the chunk lists a window of chunks at a time and works out
//! which frames of which packs land where in the output; the window's frames,
//! sorted by pack and offset, are merged into range reads (one per pack where
//! the gaps are small). Workers take those reads, open each frame once where
//! it was read (straight into their output stage when its chunks lie in the
//! output back to back, as a full backup's do), verify its chunks (by the
//! bound frame's members digest, else by their ids) and write every chunk to
//! all its places with few, large positioned writes. The caller's thread
//! hashes the file in order as its segments complete, reading them back from
//! the page cache, so the whole-file BLAKE3 checks the bytes on disk.
//! Memory: at most two windows of places and one read and one stage per worker.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::restore::{check_count, digest_vouches, drop_behind, drop_written, fills_memory, index_vouches, located_chunks, named, start_writeback, Blobs, RestoreOptions};
use crate::format::index::Index;
use crate::crypto::{Id, IdBuildHasher};
use crate::error::{Error, Result};
use crate::format::compress::Decoder;
use crate::format::pack::{blob_bytes, id_mismatch, open_frame_into, BlobEntry, BlobKeys, DIGEST_LEN};
use crate::format::snapshot::SnapshotFile;
use crate::store::{FileKind, ReadPlan};

/// Chunks planned at once (56 bytes of places each, about 14 MiB a window).
const WINDOW_CHUNKS: usize = 1 << 18;
/// Output bytes a worker gathers before one positioned write.
const STAGE: usize = 4 << 20;
/// The whole-file hash reads back, and starts the writeback of, this much at a time.
const SEGMENT: u64 = 4 << 20;
/// Reads the kernel is asked to fetch ahead of the one a worker starts.
const READ_AHEAD: usize = 4;

/// One chunk's place in its frame and in the output.
#[derive(Clone, Copy)]
struct Place {
    out: u64,
    frame: u32,
    inner: u32,
    len: u32,
    id: Id,
}

/// One range read: a stretch of a pack and the frames (by index) it holds.
struct Read {
    pack: Id,
    start: u64,
    end: u64,
    frames: Range<usize>,
}

/// What a window of chunks needs: its frames in pack order, the places of
/// each frame's chunks (by frame, then place in it), and the reads.
struct Window {
    frames: Vec<(Id, BlobEntry)>,
    /// Frame `k`'s places are `places[first[k]..first[k + 1]]`.
    first: Vec<usize>,
    places: Vec<Place>,
    reads: Vec<Read>,
}

/// A read to do: its window and which.
type Job = (Arc<Window>, usize);

impl Blobs<'_> {
    /// Restores `file` into `out` (just created, its size reserved) in pack order and checks
    /// its whole-file BLAKE3 by reading it back; defined here so that restore.rs
    /// need not import this file back.
    pub fn restore_into(&self, file: &SnapshotFile, out: &File, opts: &RestoreOptions) -> Result<()> {
        restore_into(self, file, out, opts)
    }
}

fn restore_into(blobs: &Blobs<'_>, file: &SnapshotFile, out: &File, opts: &RestoreOptions) -> Result<()> {
    let plan = blobs.repo.backend().read_plan();
    let threads = opts.threads.max(plan.in_flight).max(1);
    let stop = AtomicBool::new(false);
    let (job_tx, job_rx) = bounded::<Job>(threads);
    let (done_tx, done_rx) = bounded::<Result<(u64, u64)>>(threads * 4);
    std::thread::scope(|s| {
        let stop = &stop;
        let planner = s.spawn(move || plan_windows(blobs, file, &plan, job_tx, stop, opts.spill_dir.as_deref()));
        for _ in 0..threads {
            let (rx, tx) = (job_rx.clone(), done_tx.clone());
            s.spawn(move || work(blobs, file, out, rx, tx, stop));
        }
        drop(job_rx);
        drop(done_tx);
        let hashed = hash_in_order(file, out, done_rx, opts);
        if hashed.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let planned = planner.join().unwrap_or_else(|_| Err(Error::Invalid("restore planner panicked".into())));
        // A planner failure (unreadable chunk list) explains a short file.
        planned.and(hashed)
    })
}

/// Plans the file a window at a time and hands out each window's reads.
fn plan_windows(blobs: &Blobs<'_>, file: &SnapshotFile, plan: &ReadPlan, tx: Sender<Job>, stop: &AtomicBool, dir: Option<&std::path::Path>) -> Result<()> {
    let (mut out, mut count) = (0u64, 0u64);
    let mut places = Vec::new();
    let mut frame_of: HashMap<(Id, u32), u32, IdBuildHasher> = HashMap::default();
    let mut frames: Vec<(Id, BlobEntry)> = Vec::new();
    let mut chunks = located_chunks(blobs, file, dir);
    loop {
        let next = chunks.next().transpose()?;
        if let Some((pack, e)) = next {
            let frame = *frame_of.entry((pack, e.offset)).or_insert_with(|| {
                frames.push((pack, e));
                (frames.len() - 1) as u32
            });
            places.push(Place { out, frame, inner: e.inner, len: e.raw_len, id: e.id });
            out += e.raw_len as u64;
            count += 1;
            if out > file.size {
                return Err(Error::corrupt(format!("snapshot file {}", file.name), format!("chunk lists hold more than the snapshot's {} bytes", file.size)));
            }
        }
        if places.len() >= WINDOW_CHUNKS || (next.is_none() && !places.is_empty()) {
            let window = Arc::new(window(std::mem::take(&mut frames), std::mem::take(&mut places), plan));
            frame_of.clear();
            advise(blobs, &window, 0..READ_AHEAD);
            for i in 0..window.reads.len() {
                if stop.load(Ordering::Relaxed) || tx.send((window.clone(), i)).is_err() {
                    return Ok(());
                }
            }
        }
        if next.is_none() {
            return check_count(file, count);
        }
    }
}

/// Sorts a window's frames into pack order (packs in the order the output
/// first needs them, so the file completes roughly front to back), its places
/// by frame, and merges neighbouring frames into reads.
fn window(frames: Vec<(Id, BlobEntry)>, mut places: Vec<Place>, plan: &ReadPlan) -> Window {
    // Frames come in the order the output first uses them.
    let mut pack_rank: HashMap<Id, u32, IdBuildHasher> = HashMap::default();
    for (pack, _) in &frames {
        let next = pack_rank.len() as u32;
        pack_rank.entry(*pack).or_insert(next);
    }
    let mut order: Vec<u32> = (0..frames.len() as u32).collect();
    order.sort_unstable_by_key(|&k| (pack_rank[&frames[k as usize].0], frames[k as usize].1.offset));
    let mut rank = vec![0u32; frames.len()];
    for (r, &k) in order.iter().enumerate() {
        rank[k as usize] = r as u32;
    }
    let frames: Vec<(Id, BlobEntry)> = order.iter().map(|&k| frames[k as usize]).collect();
    for p in &mut places {
        p.frame = rank[p.frame as usize];
    }
    places.sort_unstable_by_key(|p| (p.frame, p.inner, p.out));
    let mut first = Vec::with_capacity(frames.len() + 1);
    let mut at = 0;
    for k in 0..frames.len() as u32 {
        first.push(at);
        while at < places.len() && places[at].frame == k {
            at += 1;
        }
    }
    first.push(places.len());
    let mut reads: Vec<Read> = Vec::new();
    for (k, (pack, e)) in frames.iter().enumerate() {
        let (start, end) = (e.offset as u64, e.offset as u64 + e.length as u64);
        if let Some(r) = reads.last_mut() {
            if r.pack == *pack && start >= r.end && start - r.end <= plan.gap && end - r.start <= plan.span {
                r.end = end;
                r.frames.end = k + 1;
                continue;
            }
        }
        reads.push(Read { pack: *pack, start, end, frames: k..k + 1 });
    }
    Window { frames, first, places, reads }
}

/// Asks the backend to fetch the window's reads `which` ahead.
fn advise(blobs: &Blobs<'_>, w: &Window, which: Range<usize>) {
    for r in w.reads.get(which.start.min(w.reads.len())..which.end.min(w.reads.len())).unwrap_or_default() {
        blobs.repo.backend().will_read(FileKind::Pack, &r.pack.to_hex(), r.start, r.end - r.start);
    }
}

/// Output bytes gathered for one positioned write.
struct Stage {
    buf: Vec<u8>,
    fill: usize,
    /// Where `buf` goes in the file.
    at: u64,
}

/// Where a worker's stage goes: the file, and the hasher told of each write.
struct Sink<'a> {
    file: &'a SnapshotFile,
    out: &'a File,
    tx: &'a Sender<Result<(u64, u64)>>,
}

impl Stage {
    /// Room for `len` bytes that belong at `at`; what is staged is written
    /// first unless they follow it and fit.
    fn room(&mut self, at: u64, len: usize, sink: &Sink<'_>) -> Result<&mut [u8]> {
        if self.fill > 0 && (self.at + self.fill as u64 != at || self.fill + len > self.buf.len()) {
            self.flush(sink)?;
        }
        if self.fill == 0 {
            self.at = at;
            if self.buf.len() < len {
                self.buf.resize(len, 0);
            }
        }
        Ok(&mut self.buf[self.fill..self.fill + len])
    }

    /// Writes what is staged at its place and tells the hasher.
    fn flush(&mut self, sink: &Sink<'_>) -> Result<()> {
        if self.fill == 0 {
            return Ok(());
        }
        let name = &sink.file.name;
        sink.out.write_all_at(&self.buf[..self.fill], self.at).map_err(|e| Error::io(format!("write restored {name}"), e))?;
        let run = (self.at, self.fill as u64);
        self.fill = 0;
        sink.tx.send(Ok(run)).map_err(|_| Error::Invalid(format!("restore of {name} stopped early")))
    }
}

fn work(blobs: &Blobs<'_>, file: &SnapshotFile, out: &File, rx: Receiver<Job>, tx: Sender<Result<(u64, u64)>>, stop: &AtomicBool) {
    let (keys, mut zstd) = (BlobKeys::of(blobs.repo), blobs.decoder());
    let sink = Sink { file, out, tx: &tx };
    // The chunks came from it: loaded (or failing) already.
    let index = blobs.vouching_index();
    let mut stage = Stage { buf: vec![0u8; STAGE], fill: 0, at: 0 };
    let (mut read, mut plain) = (Vec::new(), Vec::new());
    // As in the output-order restore: a file that fills the cache drops each pack range once read.
    let drop_read = fills_memory(file.size);
    for (w, i) in rx {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        advise(blobs, &w, i + READ_AHEAD..i + READ_AHEAD + 1);
        let result = do_read(blobs, index, &keys, &mut zstd, &w, &w.reads[i], (&mut read, drop_read), &mut plain, &mut stage, &sink);
        if let Err(e) = result {
            stop.store(true, Ordering::Relaxed);
            let _ = tx.send(Err(e));
            return;
        }
    }
}

/// Does one read: opens each of its frames once where it lies, verifies it
/// and stages its chunks for their places in the file.
#[allow(clippy::too_many_arguments)]
fn do_read(
    blobs: &Blobs<'_>,
    index: Option<&Index>,
    keys: &BlobKeys<'_>,
    zstd: &mut Decoder<'_>,
    w: &Window,
    r: &Read,
    (read, drop_read): (&mut Vec<u8>, bool),
    plain: &mut Vec<u8>,
    stage: &mut Stage,
    sink: &Sink<'_>,
) -> Result<()> {
    let len = (r.end - r.start) as usize;
    if read.len() < len {
        read.resize(len, 0);
    }
    let name = r.pack.to_hex();
    blobs.repo.backend().read_range_into(FileKind::Pack, &name, r.start, &mut read[..len])?;
    if drop_read {
        // The sealed bytes are in `read` now.
        blobs.repo.backend().drop_cached(FileKind::Pack, &name, r.start, len as u64);
    }
    for k in r.frames.clone() {
        let (pack, e) = w.frames[k];
        let places = &w.places[w.first[k]..w.first[k + 1]];
        let off = (e.offset as u64 - r.start) as usize;
        let sealed = &mut read[off..off + e.length as usize];
        let frame_len = e.frame_len as usize;
        if in_output_order(places, frame_len) {
            // The frame's plaintext is a stretch of the output: open it into the stage.
            let dst = stage.room(places[0].out, frame_len, sink)?;
            let digest = open_frame_into(keys, zstd, &e, sealed, dst, "").map_err(named(pack, e))?;
            verify(keys, index, pack, &e, digest, places, dst)?;
            stage.fill += frame_len;
        } else {
            if plain.len() < frame_len {
                plain.resize(frame_len, 0);
            }
            let plain = &mut plain[..frame_len];
            let digest = open_frame_into(keys, zstd, &e, sealed, plain, "").map_err(named(pack, e))?;
            verify(keys, index, pack, &e, digest, places, plain)?;
            for p in places {
                // In the frame: `verify` checked every place's bounds.
                let bytes = &plain[p.inner as usize..p.inner as usize + p.len as usize];
                stage.room(p.out, bytes.len(), sink)?.copy_from_slice(bytes);
                stage.fill += bytes.len();
            }
        }
    }
    stage.flush(sink)
}

/// Whether a frame's places (sorted by place in the frame) tile it once, in
/// order, and lie back to back in the output.
fn in_output_order(places: &[Place], frame_len: usize) -> bool {
    let Some(first) = places.first() else { return false };
    let mut next = 0u64;
    places.iter().all(|p| {
        let fits = p.inner as u64 == next && p.out.checked_sub(first.out) == Some(next);
        next += p.len as u64;
        fits
    }) && next == frame_len as u64
}

/// Checks the chunks a frame gives: a bound frame vouches for them with its
/// authenticated digest when they, or the index's full list of its blobs, tile
/// it; else each distinct chunk is hashed to its id.
fn verify(keys: &BlobKeys<'_>, index: Option<&Index>, pack: Id, e: &BlobEntry, digest: Option<[u8; DIGEST_LEN]>, places: &[Place], plain: &[u8]) -> Result<()> {
    // Places of one blob are neighbours (sorted by place in the frame).
    let distinct = || places.iter().enumerate().filter(|(i, p)| *i == 0 || (places[i - 1].inner, places[i - 1].len, places[i - 1].id) != (p.inner, p.len, p.id)).map(|(_, p)| p);
    if let Some(digest) = digest {
        let used = || distinct().map(|p| (p.inner, p.len, &p.id));
        if digest_vouches(pack, e, digest, used())? || index.is_some_and(|index| index_vouches(index, pack, e, digest, used())) {
            return Ok(());
        }
    }
    let mut slices = Vec::new();
    let mut wanted = Vec::new();
    for p in distinct() {
        let entry = BlobEntry { inner: p.inner, raw_len: p.len, id: p.id, ..*e };
        slices.push(blob_bytes(&entry, plain, "").map_err(named(pack, entry))?);
        wanted.push(entry);
    }
    for (entry, id) in wanted.iter().zip(keys.hasher.ids(&slices)) {
        if id != entry.id {
            return Err(named(pack, *entry)(id_mismatch("")));
        }
    }
    Ok(())
}

/// Hashes the file in order as its segments are written, reading each back
/// once complete; checks size and BLAKE3 against the snapshot.
fn hash_in_order(file: &SnapshotFile, out: &File, rx: Receiver<Result<(u64, u64)>>, opts: &RestoreOptions) -> Result<()> {
    let segments = file.size.div_ceil(SEGMENT) as usize;
    let seg_len = |s: usize| SEGMENT.min(file.size - s as u64 * SEGMENT);
    let mut missing: Vec<u64> = (0..segments).map(seg_len).collect();
    let mut hasher = blake3::Hasher::new();
    let mut next = 0usize;
    // Hashed segments before this have been dropped from the page cache.
    let mut dropped = 0u64;
    let mut buf = vec![0u8; SEGMENT as usize];
    let ctx = |e| Error::io(format!("read back restored {}", file.name), e);
    for run in rx {
        let (mut at, len) = run?;
        let end = at + len;
        while at < end {
            let s = (at / SEGMENT) as usize;
            let take = end.min((s as u64 + 1) * SEGMENT) - at;
            let left = missing.get_mut(s).ok_or_else(|| Error::Invalid(format!("restore of {} wrote past its end", file.name)))?;
            *left = left.checked_sub(take).ok_or_else(|| Error::Invalid(format!("restore of {} wrote a segment twice", file.name)))?;
            at += take;
        }
        while next < segments && missing[next] == 0 {
            let len = seg_len(next) as usize;
            let start = next as u64 * SEGMENT;
            out.read_exact_at(&mut buf[..len], start).map_err(ctx)?;
            hasher.update(&buf[..len]);
            // Start its writeback so the fsync before the rename has little left to wait for.
            start_writeback(out, start, len as u64);
            if let Some(pb) = &opts.progress {
                pb.inc(len as u64);
            }
            next += 1;
            // Complete segments take no more writes: once their writeback lags far enough
            // behind, wait for it and drop them (the restore then fills no more of the page
            // cache than its lag, whatever the file's size).
            drop_behind(out, &mut dropped, start + len as u64, SEGMENT);
        }
    }
    if next == segments {
        // The rest too: the fsync before the rename would wait for it all the same.
        drop_written(out, dropped, file.size - dropped);
    }
    let what = format!("snapshot file {}", file.name);
    if next < segments {
        let restored: u64 = (0..segments).map(|s| seg_len(s) - missing[s]).sum();
        return Err(Error::corrupt(what, format!("restored {restored} bytes, snapshot says {}", file.size)));
    }
    if hasher.finalize().to_hex().as_str() != file.blake3 {
        return Err(Error::corrupt(what, "restored bytes do not match the snapshot's BLAKE3"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::BlobType;

    fn entry(offset: u32, length: u32) -> BlobEntry {
        BlobEntry { id: Id([0; 32]), kind: BlobType::Data, flags: 0, offset, length, raw_len: 10, inner: 0, frame_len: 20 }
    }

    fn place(out: u64, frame: u32, inner: u32) -> Place {
        Place { out, frame, inner, len: 10, id: Id([inner as u8; 32]) }
    }

    /// Frames come out in pack order (packs as the output first needs them) with
    /// their places, neighbours in one pack share a read, and a frame used twice is read once.
    #[test]
    fn window_reads_each_pack_stretch_once() {
        let (a, b) = (Id([1; 32]), Id([2; 32]));
        let frames = vec![(b, entry(0, 50)), (a, entry(100, 50)), (a, entry(0, 100)), (a, entry(10_000_000, 50))];
        let places = vec![place(0, 0, 0), place(10, 1, 10), place(20, 2, 0), place(30, 1, 0), place(40, 0, 10), place(50, 1, 0)];
        let w = window(frames, places, &ReadPlan::NETWORK);
        let got: Vec<(Id, u64, u64, Range<usize>)> = w.reads.iter().map(|r| (r.pack, r.start, r.end, r.frames.clone())).collect();
        assert_eq!(got, vec![(b, 0, 50, 0..1), (a, 0, 150, 1..3), (a, 10_000_000, 10_000_050, 3..4)]);
        assert_eq!(w.first, vec![0, 2, 3, 6, 6]);
        let outs: Vec<u64> = w.places.iter().map(|p| p.out).collect();
        assert_eq!(outs, vec![0, 40, 20, 30, 50, 10]);
    }

    #[test]
    fn output_order_needs_one_tiling_back_to_back() {
        let p = |out, inner| Place { out, frame: 0, inner, len: 10, id: Id([0; 32]) };
        assert!(in_output_order(&[p(100, 0), p(110, 10)], 20));
        assert!(!in_output_order(&[p(100, 0), p(120, 10)], 20), "a gap in the output");
        assert!(!in_output_order(&[p(100, 0)], 20), "part of the frame");
        assert!(!in_output_order(&[p(100, 0), p(200, 0), p(110, 10)], 20), "a chunk used twice");
    }
}
