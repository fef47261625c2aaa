//! Reads a file's chunk-list blobs a window at a time in planned range reads.
//!
//! A restore needs every chunk list before the chunks they name; fetched one
//! blob per request they cost a round trip each, and on a network store those
//! round trips, not the bytes, set the pace. Backups keep a run's lists together
//! in their own packs, so the lists of a window usually lie side by side: they
//! are read in one range read per stretch of a pack, several reads in flight.
//! A snapshot names top blobs, delta pieces (an incremental's) or, before the list tree,
//! flat lists: a window's named blobs are read first, then the bases its delta pieces draw
//! from, then all leaves of the top blobs among both (mostly from the stretches the top
//! blobs were read in: a top blob lies just after its leaves), each frame opened once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::restore::{blob_name, Blobs};
use crate::crypto::Id;
use crate::error::{Error, Result};
use crate::format::chunklist::{parse_any, parse_leaf, ListBlob};
use crate::format::pack::{blob_in_frame, open_frame, BlobEntry, BlobKeys};
use crate::format::snapshot::SnapshotFile;
use crate::store::{FileKind, ReadPlan};

/// Lists in the first window on a local disk: small, so the first chunks are fetched soon.
/// A network store reads a first window as large as the others: a window costs two round
/// trips (top blobs, then leaves) whatever its size.
const FIRST_WINDOW: usize = 16;
/// Lists per later window (about 4 MiB of ids, 128 MiB of output, on average).
const WINDOW: usize = 128;
/// Unneeded bytes one read may span between two lists (lists of older
/// backups lie between data frames: never read whole packs for them).
const LIST_GAP: u64 = 256 << 10;

/// The ordered chunk ids of a file, its lists fetched a window at a time.
impl<'a> Blobs<'a> {
    /// The ordered chunk ids of a file (its lists fetched a window at a time); defined here,
    /// beside the fetching, so that restore.rs need not import this file back.
    pub fn chunk_ids(&'a self, file: &'a SnapshotFile) -> impl Iterator<Item = Result<Id>> + 'a {
        chunk_ids(self, file)
    }

    /// The chunk ids the list blob `id` a snapshot names stands for (a top blob's through
    /// its leaves, a delta piece's through its bases).
    pub fn list_chunks(&self, id: &Id) -> Result<Vec<Id>> {
        let plan = self.repo.backend().read_plan();
        Ok(expand(self, std::slice::from_ref(id), &[], &plan, &mut Vec::new())?.0.pop().unwrap_or_default())
    }

    /// The chunk ids of each of the list blobs `ids`, in order, read in planned batches;
    /// every other list blob read for them (bases, leaves) is added to `read`.
    pub fn lists_chunks(&self, ids: &[Id], read: &mut Vec<Id>) -> Result<Vec<Vec<Id>>> {
        Ok(expand(self, ids, &[], &self.repo.backend().read_plan(), read)?.0)
    }

    /// [`Blobs::lists_chunks`], and the plaintexts of the blobs `also`, read in the same
    /// batch as the lists (blobs of one pack cost one request on a network store).
    pub fn lists_chunks_and(&self, ids: &[Id], also: &[Id]) -> Result<(Vec<Vec<Id>>, Vec<Vec<u8>>)> {
        expand(self, ids, also, &self.repo.backend().read_plan(), &mut Vec::new())
    }

    /// [`Blobs::lists_chunks`] of list blobs the caller has read and parsed already (`ids`
    /// names them): only what they build on is read.
    pub fn parsed_lists_chunks(&self, ids: &[Id], parsed: &[ListBlob], read: &mut Vec<Id>) -> Result<Vec<Vec<Id>>> {
        expand_parsed(self, parsed, ids, &self.repo.backend().read_plan(), &Fetched::default(), read)
    }

    /// The plaintexts of the list blobs `ids`, in order, read in planned range reads.
    pub fn load_lists(&self, ids: &[Id], plan: &ReadPlan) -> Result<Vec<Vec<u8>>> {
        load_ids(self, ids, plan, Batch::default())
    }
}

/// Pack stretches the top blobs of a window were read in, kept for reading their leaves: a
/// backup stores a top blob after its leaves, in the same list pack, so the leaves usually lie
/// in those stretches. Without it such a stretch is fetched twice (a GET of about 1 MiB per
/// window on a network store). Dropped with the window, so it holds one batch's reads.
#[derive(Default)]
struct Fetched(Mutex<Vec<(Id, u64, Arc<Vec<u8>>)>>);

impl Fetched {
    /// A fetched stretch of `pack` that holds bytes `start..end`, and where it begins.
    fn covering(&self, pack: &Id, start: u64, end: u64) -> Option<(u64, Arc<Vec<u8>>)> {
        let ranges = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (_, at, bytes) = ranges.iter().find(|(p, at, bytes)| p == pack && *at <= start && end <= at + bytes.len() as u64)?;
        Some((*at, bytes.clone()))
    }

    fn put(&self, pack: Id, start: u64, bytes: Arc<Vec<u8>>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push((pack, start, bytes));
    }
}

fn chunk_ids<'a>(blobs: &'a Blobs<'a>, file: &'a SnapshotFile) -> impl Iterator<Item = Result<Id>> + 'a {
    let plan = blobs.repo.backend().read_plan();
    let first = file.lists.len().min(if plan.pack_order { WINDOW } else { FIRST_WINDOW });
    let windows = std::iter::once(&file.lists[..first]).chain(file.lists[first..].chunks(WINDOW));
    windows.filter(|w| !w.is_empty()).flat_map(move |window| {
        let ids: Vec<Result<Id>> = match load_window(blobs, file, window, &plan) {
            Ok(ids) => ids.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        ids
    })
}

/// The chunk ids of the lists in `window`, in order.
fn load_window(blobs: &Blobs<'_>, file: &SnapshotFile, window: &[String], plan: &ReadPlan) -> Result<Vec<Id>> {
    let mut named = Vec::with_capacity(window.len());
    for hex in window {
        named.push(Id::from_hex(hex).ok_or_else(|| Error::corrupt(format!("snapshot file {}", file.name), format!("bad list id {hex}")))?);
    }
    Ok(expand(blobs, &named, &[], plan, &mut Vec::new())?.0.concat())
}

/// The chunk ids of each list blob in `named`: the blobs first, then the bases their delta
/// pieces draw from, then every leaf of the top blobs among both, each step one planned batch.
/// The bases and leaves read are added to `read`; the plaintexts of the blobs `also`, read
/// with the named ones, are returned beside.
fn expand(blobs: &Blobs<'_>, named: &[Id], also: &[Id], plan: &ReadPlan, read: &mut Vec<Id>) -> Result<(Vec<Vec<Id>>, Vec<Vec<u8>>)> {
    // A top blob is stored after its leaves: its read starts early enough to hold them, and
    // what it fetched serves the leaves.
    let fetched = Fetched::default();
    let batch = Batch { lead: plan.gap.min(LIST_GAP), keep: Some(&fetched), ..Batch::default() };
    let first: Vec<Id> = named.iter().chain(also).copied().collect();
    let mut plain = load_ids(blobs, &first, plan, batch)?;
    let also_plain = plain.split_off(named.len());
    let parsed = parse_all(&plain, named)?;
    drop(plain);
    Ok((expand_parsed(blobs, &parsed, named, plan, &fetched, read)?, also_plain))
}

/// The chunk ids of list blobs already parsed (`named` for their errors): reads only the
/// delta pieces' bases and the top blobs' leaves (from `fetched` where it holds them).
fn expand_parsed(blobs: &Blobs<'_>, parsed: &[ListBlob], named: &[Id], plan: &ReadPlan, fetched: &Fetched, read: &mut Vec<Id>) -> Result<Vec<Vec<Id>>> {
    let batch = Batch { lead: plan.gap.min(LIST_GAP), keep: Some(fetched), ..Batch::default() };
    // The bases of the delta pieces, each read once.
    let mut bases: Vec<Id> = Vec::new();
    for p in parsed {
        if let ListBlob::Delta(d) = p {
            for b in &d.bases {
                if !bases.contains(b) {
                    bases.push(*b);
                }
            }
        }
    }
    let base_parsed = if bases.is_empty() { Vec::new() } else { parse_all(&load_ids(blobs, &bases, plan, batch)?, &bases)? };
    // Every leaf of the top blobs among both, in one batch.
    let mut leaves = Vec::new();
    for p in parsed {
        if let ListBlob::Top(l) = p {
            leaves.extend_from_slice(l);
        }
    }
    for (p, id) in base_parsed.iter().zip(&bases) {
        match p {
            ListBlob::Top(l) => leaves.extend_from_slice(l),
            ListBlob::Delta(_) => {
                return Err(Error::corrupt(format!("chunk list {}", id.to_hex()), "a delta piece is named as the base of another (a base must be a full list); run `rdbvault check`"));
            }
            ListBlob::Flat(_) => {}
        }
    }
    let leaf_plain = if leaves.is_empty() { Vec::new() } else { load_ids(blobs, &leaves, plan, Batch { from: Some(fetched), ..Batch::default() })? };
    read.extend_from_slice(&bases);
    read.extend_from_slice(&leaves);
    let mut leaf_ids = leaf_plain.iter().zip(&leaves).map(|(p, l)| parse_leaf(p, &format!("chunk-list leaf {}", l.to_hex())));
    let mut full = |p: &ListBlob| -> Result<Vec<Id>> {
        Ok(match p {
            ListBlob::Flat(ids) => ids.clone(),
            ListBlob::Top(l) => {
                let mut ids = Vec::with_capacity(l.len() * 16);
                for _ in 0..l.len() {
                    ids.extend(leaf_ids.next().unwrap_or_else(|| Ok(Vec::new()))?);
                }
                ids
            }
            ListBlob::Delta(_) => Vec::new(),
        })
    };
    // Leaves come in the order of `parsed`, then `base_parsed`: expanded in that order.
    let mut out = Vec::with_capacity(parsed.len());
    for p in parsed {
        out.push(full(p)?);
    }
    let mut base_ids = Vec::with_capacity(bases.len());
    for p in &base_parsed {
        base_ids.push(full(p)?);
    }
    for ((p, id), ids) in parsed.iter().zip(named).zip(out.iter_mut()) {
        if let ListBlob::Delta(d) = p {
            let mine: Vec<&[Id]> = d.bases.iter().map(|b| bases.iter().position(|x| x == b).map_or(&[][..], |i| base_ids[i].as_slice())).collect();
            *ids = d.expand(&mine, &format!("chunk-list delta {}", id.to_hex()))?;
        }
    }
    Ok(out)
}

/// Parses list blobs a snapshot names (`ids` for their errors).
fn parse_all(plain: &[Vec<u8>], ids: &[Id]) -> Result<Vec<ListBlob>> {
    plain.iter().zip(ids).map(|(p, id)| parse_any(p, &format!("chunk list {}", id.to_hex()))).collect()
}

/// How a batch of list reads uses fetched stretches.
#[derive(Default, Clone, Copy)]
struct Batch<'f> {
    /// Bytes each read starts early.
    lead: u64,
    /// Stretches already fetched: blobs they hold are not fetched again.
    from: Option<&'f Fetched>,
    /// Where this batch keeps what it fetches.
    keep: Option<&'f Fetched>,
}

/// The plaintexts of the list blobs `ids`, in order.
fn load_ids(blobs: &Blobs<'_>, ids: &[Id], plan: &ReadPlan, batch: Batch<'_>) -> Result<Vec<Vec<u8>>> {
    blobs.locate_all(ids)?;
    let mut wanted = Vec::with_capacity(ids.len());
    for id in ids {
        wanted.push(blobs.locate(id)?);
    }
    load_blobs(blobs, &wanted, plan, batch)
}

/// One range read: a stretch of a pack and the wanted blobs (by position) in it.
struct Read {
    pack: Id,
    start: u64,
    end: u64,
    members: Vec<usize>,
    /// The bytes, when an earlier batch fetched them (`start` is where they begin).
    fetched: Option<Arc<Vec<u8>>>,
}

/// Groups the wanted blobs into range reads, each starting `lead` bytes before its blob:
/// same pack, close together, bounded.
fn plan_reads(wanted: &[(Id, BlobEntry)], plan: &ReadPlan, lead: u64) -> Vec<Read> {
    let mut order: Vec<usize> = (0..wanted.len()).collect();
    order.sort_by_key(|&i| (wanted[i].0, wanted[i].1.offset));
    let gap = plan.gap.min(LIST_GAP);
    let mut reads: Vec<Read> = Vec::new();
    for i in order {
        let (pack, e) = &wanted[i];
        let (start, end) = ((e.offset as u64).saturating_sub(lead), e.offset as u64 + e.length as u64);
        if let Some(r) = reads.last_mut() {
            // A list named twice (the same ids twice in a file) shares its frame.
            let near = start >= r.start && start <= r.end + gap;
            if r.pack == *pack && near && end.max(r.end) - r.start <= plan.span.max(end - start) {
                r.end = r.end.max(end);
                r.members.push(i);
                continue;
            }
        }
        reads.push(Read { pack: *pack, start, end, members: vec![i], fetched: None });
    }
    reads
}

/// Reads and opens the wanted blobs, `plan.in_flight` reads at a time, as `batch` says;
/// their plaintexts in order.
fn load_blobs(blobs: &Blobs<'_>, wanted: &[(Id, BlobEntry)], plan: &ReadPlan, batch: Batch<'_>) -> Result<Vec<Vec<u8>>> {
    let lead = batch.lead;
    let mut reads = plan_reads(wanted, plan, lead);
    if let Some(from) = batch.from {
        // A planned read whose blobs an earlier batch fetched is split: those come from its bytes.
        let mut held: Vec<Read> = Vec::new();
        for r in &mut reads {
            r.members.retain(|&i| {
                let (pack, e) = &wanted[i];
                let Some((at, bytes)) = from.covering(pack, e.offset as u64, e.offset as u64 + e.length as u64) else { return true };
                // Blobs come in frame order, so those of one stretch share its read.
                match held.last_mut() {
                    Some(h) if h.pack == *pack && h.start == at => h.members.push(i),
                    _ => held.push(Read { pack: *pack, start: at, end: at + bytes.len() as u64, members: vec![i], fetched: Some(bytes) }),
                }
                false
            });
        }
        reads.retain(|r| !r.members.is_empty());
        for r in &mut reads {
            // A read starts `lead` bytes before the first of its blobs still to fetch.
            r.start = r.members.iter().map(|&i| wanted[i].1.offset as u64).min().unwrap_or(r.start).saturating_sub(lead);
            r.end = r.members.iter().map(|&i| wanted[i].1.offset as u64 + wanted[i].1.length as u64).max().unwrap_or(r.end);
        }
        reads.append(&mut held);
    }
    let next = AtomicUsize::new(0);
    let work = || -> Result<Vec<(usize, Vec<u8>)>> {
        let (keys, mut zstd) = (BlobKeys::of(blobs.repo), blobs.decoder());
        let mut done = Vec::new();
        while let Some(r) = reads.get(next.fetch_add(1, Ordering::Relaxed)) {
            let name = r.pack.to_hex();
            let bytes = match &r.fetched {
                Some(bytes) => bytes.clone(),
                None => {
                    let bytes = Arc::new(blobs.repo.backend().read_range(FileKind::Pack, &name, r.start, (r.end - r.start) as usize)?);
                    if let Some(keep) = batch.keep {
                        keep.put(r.pack, r.start, bytes.clone());
                    }
                    bytes
                }
            };
            // Members come in frame order: a frame of many leaves is opened once.
            let mut opened: Option<(u32, Vec<u8>)> = None;
            for &i in &r.members {
                let e = &wanted[i].1;
                let what = blob_name(&name, e);
                if opened.as_ref().is_none_or(|(offset, _)| *offset != e.offset) {
                    let off = (e.offset as u64 - r.start) as usize;
                    let sealed = bytes.get(off..off + e.length as usize).ok_or_else(|| Error::corrupt(&what, "lies beyond the end of its pack"))?;
                    opened = Some((e.offset, open_frame(&keys, &mut zstd, e, sealed, &what)?));
                }
                let frame = opened.as_ref().map(|(_, f)| f.as_slice()).unwrap_or_default();
                done.push((i, blob_in_frame(&keys, e, frame, &what)?.to_vec()));
            }
        }
        Ok(done)
    };
    let threads = plan.in_flight.clamp(1, reads.len().max(1));
    let results: Vec<Result<Vec<(usize, Vec<u8>)>>> = if threads == 1 {
        vec![work()]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(&work)).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(Error::Invalid("chunk list reader panicked".into())))).collect()
        })
    };
    let mut plain = vec![Vec::new(); wanted.len()];
    for result in results {
        for (i, p) in result? {
            plain[i] = p;
        }
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::BlobType;

    fn entry(offset: u32, length: u32) -> BlobEntry {
        BlobEntry { id: Id([0; 32]), kind: BlobType::ChunkList, flags: 0, offset, length, frame_len: length, inner: 0, raw_len: length }
    }

    #[test]
    fn neighbours_share_a_read_and_far_ones_do_not() {
        let (a, b) = (Id([1; 32]), Id([2; 32]));
        let wanted = [(a, entry(1000, 100)), (a, entry(0, 1000)), (b, entry(0, 10)), (a, entry(5_000_000, 10)), (a, entry(0, 1000))];
        let reads = plan_reads(&wanted, &ReadPlan::NETWORK, 0);
        let got: Vec<(Id, u64, u64, Vec<usize>)> = reads.into_iter().map(|r| (r.pack, r.start, r.end, r.members)).collect();
        assert_eq!(got, vec![(a, 0, 1100, vec![1, 4, 0]), (a, 5_000_000, 5_000_010, vec![3]), (b, 0, 10, vec![2])]);
    }

    #[test]
    fn a_lead_reaches_back_and_joins_reads() {
        let a = Id([1; 32]);
        let wanted = [(a, entry(300_000, 1000)), (a, entry(700_000, 1000))];
        // 399 KB apart, more than the gap: two reads; each starting 256 KiB early, one.
        assert_eq!(plan_reads(&wanted, &ReadPlan::NETWORK, 0).len(), 2);
        let reads = plan_reads(&wanted, &ReadPlan::NETWORK, LIST_GAP);
        assert_eq!((reads.len(), reads[0].start, reads[0].end), (1, 300_000 - LIST_GAP, 701_000));
    }

    #[test]
    fn a_fetched_stretch_serves_only_what_it_holds() {
        let (a, fetched) = (Id([1; 32]), Fetched::default());
        fetched.put(a, 100, Arc::new(vec![0; 50]));
        assert_eq!(fetched.covering(&a, 100, 150).map(|(at, b)| (at, b.len())), Some((100, 50)));
        assert!(fetched.covering(&a, 120, 130).is_some());
        assert!(fetched.covering(&a, 99, 120).is_none() && fetched.covering(&a, 100, 151).is_none());
        assert!(fetched.covering(&Id([2; 32]), 100, 120).is_none());
    }
}
