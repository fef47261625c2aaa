//! The index: which pack holds each blob, where, and how long it is.
//!
//! Index file plaintext, version 3: `"RVIX" || 3 || supersedes count || superseded
//! index names [32] each || pack count || packs`, each pack `pack id [32] || frame
//! count || frames`, each frame `type u8 || flags u8 || offset gap || length ||
//! frame_len || blob count || blobs`, each blob `id [32] || inner gap || raw_len`.
//! Counts and lengths are LEB128 varints; a gap is the zigzag varint of the
//! distance from where the previous frame of the pack (or blob of the frame)
//! ended, so it is one zero byte when they lie side by side: 35 bytes per 1 KiB
//! blob instead of 40. `inner` stays explicit because prune may keep only some
//! blobs of a frame. Version 2 (fixed u32 fields, 40 bytes per blob) still reads.
//! The newest index files may name older ones they replace.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

use crate::crypto::{Id, IdBuildHasher};
use crate::error::{Error, Result};
use crate::format::pack::{BlobEntry, BlobType};
use crate::store::{display_name, FileInfo, FileKind, Repository};

const MAGIC: &[u8; 4] = b"RVIX";
/// The version written.
const VERSION: u8 = 3;
/// The version before varints (fixed u32 fields), still read.
const VERSION_FIXED: u8 = 2;
/// The fewest bytes a blob takes in an index file of any version.
const BLOB_LEN: usize = 34;

/// Where one frame lives. A frame holds ~60 chunks of a full backup, so its
/// place is kept once here and not in every blob's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameLoc {
    pack: u32,
    offset: u32,
    length: u32,
    frame_len: u32,
    kind: BlobType,
    flags: u8,
}

/// Where one blob lives: its frame and its place in it, 12 bytes (the id is
/// the map key), so a repository of a million 1 KiB chunks needs about 44 MB
/// of index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Location {
    frame: u32,
    inner: u32,
    raw_len: u32,
}

/// Keys whose leading bits are uniformly random (keyed-hash ids), sorted and
/// bucketed by those bits: exactly one entry's bytes per key (a hash table
/// needs 1/7 more slots, and twice its size while it grows), and a lookup scans
/// a few neighbouring entries of one bucket.
#[derive(Clone)]
struct Table<K, V> {
    entries: Vec<(K, V)>,
    /// Entries of bucket `b` are `entries[dir[b]..dir[b + 1]]` once sorted.
    dir: Vec<u32>,
    bits: u32,
    /// Sorted entries end here; later inserts are searched one by one.
    sorted: usize,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Table { entries: Vec::new(), dir: vec![0, 0], bits: 0, sorted: 0 }
    }
}

impl<K: AsRef<[u8]> + Ord + Copy + Send + Sync, V: Copy + Send + Sync> Table<K, V> {
    /// The first 8 bytes as a number: sorts like the key.
    fn lead(key: &K) -> u64 {
        let b = key.as_ref();
        u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    fn bucket(&self, key: &K) -> usize {
        let lead = Self::lead(key);
        if self.bits == 0 {
            0
        } else {
            (lead >> (64 - self.bits)) as usize
        }
    }

    /// Sorts the entries, keeps the first of equal keys by `order`, and builds the buckets.
    fn finish(&mut self, order: impl Fn(&(K, V), &(K, V)) -> std::cmp::Ordering + Sync) {
        // Unstable sort: in place, no buffer of half the table. A large table is split at its
        // leading bit first (the keys are uniformly random), so its halves sort on two threads.
        // The leading 8 bytes decide nearly every comparison, as a number instead of a memcmp.
        let cmp = |a: &(K, V), b: &(K, V)| Self::lead(&a.0).cmp(&Self::lead(&b.0)).then_with(|| a.0.cmp(&b.0)).then_with(|| order(a, b));
        if self.entries.len() < SORT_APART {
            self.entries.sort_unstable_by(cmp);
        } else {
            let (low, high) = split_at_top_bit(&mut self.entries, |e| Self::lead(&e.0));
            std::thread::scope(|s| {
                s.spawn(|| low.sort_unstable_by(cmp));
                high.sort_unstable_by(cmp);
            });
        }
        self.entries.dedup_by(|later, first| later.0 == first.0);
        let n = self.entries.len();
        // About 4-8 entries per bucket.
        self.bits = (n / 8).max(1).next_power_of_two().trailing_zeros();
        let buckets = 1usize << self.bits;
        self.dir = vec![0u32; buckets + 1];
        let mut b = 0;
        for (i, (k, _)) in self.entries.iter().enumerate() {
            let kb = self.bucket(k);
            while b < kb {
                b += 1;
                self.dir[b] = i as u32;
            }
        }
        for d in &mut self.dir[b + 1..] {
            *d = n as u32;
        }
        self.sorted = n;
    }

    /// Starts loading the bucket directory's line for `key`, which [`Table::prefetch`] reads:
    /// a few lookups before that, so the prefetch itself does not wait for memory.
    #[inline]
    fn prefetch_bucket(&self, key: &K) {
        prefetch_line(&self.dir[self.bucket(key)]);
    }

    /// Starts loading the cache lines a `get` of `key` will read first.
    #[inline]
    fn prefetch(&self, key: &K) {
        let lo = self.dir[self.bucket(key)] as usize;
        let stop = self.entries.len().min(self.sorted);
        // A bucket holds about 4-8 entries and a lookup reads about half of them.
        for entry in self.entries[lo.min(stop)..stop].iter().take(4) {
            prefetch_line(entry);
        }
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.find(key).map(|i| &self.entries[i].1)
    }

    /// Where `key`'s entry lies in `entries`.
    fn find(&self, key: &K) -> Option<usize> {
        let b = self.bucket(key);
        let (lo, hi) = (self.dir[b] as usize, self.dir[b + 1] as usize);
        // Sorted: compare leads first and stop past the key.
        let want = Self::lead(key);
        let found = self.entries[lo..hi.min(self.sorted)]
            .iter()
            .map(|e| (Self::lead(&e.0), e))
            .take_while(|(l, _)| *l <= want)
            .position(|(l, (k, _))| l == want && k == key)
            .map(|i| lo + i);
        found.or_else(|| self.entries[self.sorted..].iter().position(|(k, _)| k == key).map(|i| self.sorted + i))
    }
}

/// Tables at least this long sort in two halves at once (~22 -> ~14 ms for half a million
/// entries with a core free).
const SORT_APART: usize = 1 << 16;

/// Reorders `items` in place so those whose `lead` has its top bit clear come first; returns
/// the two parts.
fn split_at_top_bit<T>(items: &mut [T], lead: impl Fn(&T) -> u64) -> (&mut [T], &mut [T]) {
    let high = |item: &T| lead(item) >> 63 == 1;
    let (mut i, mut j) = (0, items.len());
    loop {
        while i < j && !high(&items[i]) {
            i += 1;
        }
        while i < j && high(&items[j - 1]) {
            j -= 1;
        }
        if i >= j {
            return items.split_at_mut(i);
        }
        items.swap(i, j - 1);
    }
}

/// Asks the CPU to fetch the cache line of `value` (a hint; no effect elsewhere).
#[inline(always)]
fn prefetch_line<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch of a valid reference; SSE is part of every x86-64 CPU.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(value as *const T as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// All index entries of a repository, in memory.
#[derive(Default, Clone)]
pub struct Index {
    packs: Vec<Id>,
    pack_pos: HashMap<Id, u32, IdBuildHasher>,
    frames: Vec<FrameLoc>,
    blobs: Table<Id, Location>,
    last_pack: Option<(Id, u32)>,
    /// The frame of the last insert: entries come frame by frame.
    last_frame: Option<(u32, u32, u32)>,
    /// Names of the index files this was loaded from.
    pub files: Vec<String>,
    /// Index files that newer index files say they replace.
    pub superseded: HashSet<String>,
    /// The blobs of each frame, built on first use (see [`Index::frame_members`]).
    members: OnceLock<FrameMembers>,
}

/// Table positions of each frame's blobs: frame `f`'s are `pos[first[f]..first[f + 1]]`.
#[derive(Default, Clone)]
struct FrameMembers {
    first: Vec<u32>,
    pos: Vec<u32>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Index::default()
    }

    /// Loads every index file of the repository. Entries of files that a newer
    /// index file supersedes are ignored even if the old file still exists (a
    /// prune or repair stopped before deleting it).
    pub fn load(repo: &Repository) -> Result<Index> {
        let mut idx = Index::new();
        let (files, superseded) = load_live(repo, &mut idx)?;
        idx.files = files;
        idx.superseded = superseded;
        Ok(idx)
    }

    /// Like [`Index::load`], but passes over index files that cannot be read or parsed
    /// and returns them, named, with why (for `check`, which reports every problem).
    pub fn load_tolerant(repo: &Repository) -> Result<(Index, Damaged)> {
        let mut idx = Index::new();
        let (files, superseded, damaged) = load_live_with(repo, &mut idx, true, None)?;
        idx.files = files;
        idx.superseded = superseded;
        Ok((idx, damaged))
    }

    /// Reads and parses every index file, by name.
    pub fn read_files(repo: &Repository) -> Result<Vec<(String, IndexFile)>> {
        let mut out = Vec::new();
        for info in repo.backend().list(FileKind::Index)? {
            let plain = repo.read_sealed(FileKind::Index, &info.name).map_err(repair_hint)?;
            let file = IndexFile::parse(&plain, &display_name(FileKind::Index, &info.name)).map_err(repair_hint)?;
            out.push((info.name, file));
        }
        Ok(out)
    }

    /// Builds the index from parsed files, honouring `supersedes`.
    pub fn from_files(files: &[(String, IndexFile)]) -> Index {
        let mut idx = Index::new();
        for (_, file) in files {
            idx.superseded.extend(file.supersedes.iter().map(|i| i.to_hex()));
        }
        // Room for every entry at once: a table grown by doubling peaks at 1.5x its size.
        let live = files.iter().filter(|(n, _)| !idx.superseded.contains(n));
        idx.blobs.entries.reserve_exact(live.flat_map(|(_, f)| &f.packs).map(|(_, e)| e.len()).sum());
        for (name, file) in files {
            idx.files.push(name.clone());
            if idx.superseded.contains(name) {
                continue;
            }
            for (pack, entries) in &file.packs {
                for e in entries {
                    idx.insert(*pack, *e);
                }
            }
        }
        idx.finish();
        idx
    }

    /// Entries of the live (not superseded) index files grouped by pack, each
    /// place listed once, in frame order, with the name of the first index file
    /// naming the pack. Takes the files: their entries move, a repository of 8 M
    /// blobs is not held twice (nor a set of every place seen).
    pub fn live_entries_by_pack(&self, files: Vec<(String, IndexFile)>) -> BTreeMap<Id, (String, Vec<BlobEntry>)> {
        let mut out: BTreeMap<Id, (String, Vec<BlobEntry>)> = BTreeMap::new();
        for (name, file) in files.into_iter().filter(|(n, _)| !self.superseded.contains(n)) {
            for (pack, entries) in file.packs {
                match out.entry(pack) {
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert((name.clone(), entries));
                    }
                    std::collections::btree_map::Entry::Occupied(mut o) => o.get_mut().1.extend(entries),
                }
            }
        }
        for (_, entries) in out.values_mut() {
            // Stable: of the entries naming one place, the first listed stays.
            entries.sort_by_key(|e| (e.offset, e.length, e.id));
            entries.dedup_by(|later, first| (later.id, later.offset, later.length) == (first.id, first.offset, first.length));
            entries.sort_by_key(|e| (e.offset, e.inner));
        }
        out
    }

    /// Where a blob's entry lies in the table (see [`Index::at`]): stable until the next
    /// insert, so a set of indexed blobs can be a bitmap ([`crate::format::blobset::BlobSet`]).
    pub fn position(&self, id: &Id) -> Option<usize> {
        self.blobs.find(id)
    }

    /// The blob at a table position, with its pack.
    pub fn at(&self, pos: usize) -> Option<(Id, BlobEntry)> {
        self.blobs.entries.get(pos).map(|(id, l)| self.located(id, l))
    }

    /// Records a blob in a pack; [`Index::finish`] makes it quick to find (and
    /// keeps one entry of a blob stored twice).
    pub fn insert(&mut self, pack: Id, entry: BlobEntry) {
        if self.blobs.sorted == 0 || self.blobs.get(&entry.id).is_none() {
            self.push(pack, entry);
        }
    }

    /// Records a blob without looking for it first: [`Index::finish`] keeps one entry of
    /// a blob pushed twice (a look-up per entry scans the entries added since the last
    /// finish, quadratic for a batch added to a finished index).
    fn push(&mut self, pack: Id, entry: BlobEntry) {
        // Entries come pack by pack: look a pack up once per run of its entries.
        let pos = match self.last_pack {
            Some((p, pos)) if p == pack => pos,
            _ => {
                let pos = match self.pack_pos.get(&pack) {
                    Some(p) => *p,
                    None => {
                        let p = self.packs.len() as u32;
                        self.packs.push(pack);
                        self.pack_pos.insert(pack, p);
                        p
                    }
                };
                self.last_pack = Some((pack, pos));
                pos
            }
        };
        let frame = match self.last_frame {
            Some((p, offset, frame)) if p == pos && offset == entry.offset => frame,
            _ => {
                let frame = self.frames.len() as u32;
                self.frames.push(FrameLoc {
                    pack: pos,
                    offset: entry.offset,
                    length: entry.length,
                    frame_len: entry.frame_len,
                    kind: entry.kind,
                    flags: entry.flags,
                });
                self.last_frame = Some((pos, entry.offset, frame));
                frame
            }
        };
        let loc = Location { frame, inner: entry.inner, raw_len: entry.raw_len };
        self.blobs.entries.push((entry.id, loc));
        if self.members.get().is_some() {
            self.members = OnceLock::new();
        }
    }

    /// Sorts what was inserted for lookups; of a blob stored twice, the copy in
    /// the pack inserted first wins.
    pub fn finish(&mut self) {
        let frames = &self.frames;
        let place = |l: &Location| {
            let f = &frames[l.frame as usize];
            (f.pack, f.offset)
        };
        self.blobs.finish(|a, b| place(&a.1).cmp(&place(&b.1)));
        self.members = OnceLock::new();
    }

    /// Every blob the index holds in the frame that holds `id`, as (id, place in
    /// the frame, length) in frame order, with that frame's pack and entry; `None`
    /// when `id` is not indexed. A restore that uses only some of a bound frame's
    /// blobs checks its members digest against this list (which lacks blobs that
    /// prune dropped, or that the index keeps in another copy: then it does not
    /// tile the frame). The first call sorts the table by frame (4 bytes per blob).
    pub fn frame_members(&self, id: &Id) -> Option<(Id, BlobEntry, Vec<(Id, u32, u32)>)> {
        let l = self.blobs.get(id)?;
        let m = self.members.get_or_init(|| {
            let mut first = vec![0u32; self.frames.len() + 1];
            for (_, l) in &self.blobs.entries {
                first[l.frame as usize + 1] += 1;
            }
            for f in 0..self.frames.len() {
                first[f + 1] += first[f];
            }
            let mut fill = first.clone();
            let mut pos = vec![0u32; self.blobs.entries.len()];
            for (i, (_, l)) in self.blobs.entries.iter().enumerate() {
                let at = &mut fill[l.frame as usize];
                pos[*at as usize] = i as u32;
                *at += 1;
            }
            FrameMembers { first, pos }
        });
        let f = l.frame as usize;
        let mut members: Vec<(Id, u32, u32)> = m.pos[m.first[f] as usize..m.first[f + 1] as usize]
            .iter()
            .map(|&i| {
                let (id, l) = &self.blobs.entries[i as usize];
                (*id, l.inner, l.raw_len)
            })
            .collect();
        members.sort_unstable_by_key(|&(_, inner, len)| (inner, len));
        let (pack, entry) = self.located(id, l);
        Some((pack, entry, members))
    }

    /// Whether a blob is stored.
    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.get(id).is_some()
    }

    /// Starts fetching what `get(id)` will read (see [`Known::prefetch`]).
    pub fn prefetch(&self, id: &Id) {
        self.blobs.prefetch(id);
    }

    /// What [`Index::prefetch`] will read: call it some lookups earlier.
    pub fn prefetch_bucket(&self, id: &Id) {
        self.blobs.prefetch_bucket(id);
    }

    /// Where a blob is stored, with its pack's name.
    pub fn get(&self, id: &Id) -> Option<(Id, BlobEntry)> {
        self.blobs.get(id).map(|l| self.located(id, l))
    }

    /// Number of distinct blobs.
    pub fn len(&self) -> usize {
        self.blobs.entries.len()
    }

    /// True when no blob is indexed.
    pub fn is_empty(&self) -> bool {
        self.blobs.entries.is_empty()
    }

    /// Every pack that holds at least one indexed blob.
    pub fn packs(&self) -> &[Id] {
        &self.packs
    }

    /// Every blob with its pack.
    pub fn iter(&self) -> impl Iterator<Item = (Id, BlobEntry)> + '_ {
        self.blobs.entries.iter().map(|(id, l)| self.located(id, l))
    }

    /// A blob's pack and entry, from its location and its frame's.
    fn located(&self, id: &Id, l: &Location) -> (Id, BlobEntry) {
        let f = &self.frames[l.frame as usize];
        let entry = BlobEntry {
            id: *id,
            kind: f.kind,
            flags: f.flags,
            offset: f.offset,
            length: f.length,
            raw_len: l.raw_len,
            inner: l.inner,
            frame_len: f.frame_len,
        };
        (self.packs[f.pack as usize], entry)
    }
}

/// Something built from the live entries of the index files.
pub trait IndexSink {
    /// Records one blob of a pack.
    fn add(&mut self, pack: Id, entry: &BlobEntry);
    /// Forgets everything added (loading starts over).
    fn clear(&mut self);
    /// Makes room for about `blobs` more entries at once: a table that grows
    /// by doubling holds its old and new storage together, which would set the
    /// peak memory of a large repository at 1.5x the table.
    fn reserve(&mut self, blobs: usize);
    /// Called once everything was added.
    fn finish(&mut self);
}

impl IndexSink for Index {
    fn add(&mut self, pack: Id, entry: &BlobEntry) {
        self.insert(pack, *entry);
    }
    fn clear(&mut self) {
        *self = Index::new();
    }
    fn reserve(&mut self, blobs: usize) {
        self.blobs.entries.reserve_exact(blobs);
    }
    fn finish(&mut self) {
        Index::finish(self);
    }
}

/// An index of the frames a restore needs: every blob of each frame that holds a blob
/// `keep` accepts (a restore that uses part of a bound frame checks its members digest
/// against the index's full list of the frame's blobs, [`Index::frame_members`]).
pub struct FrameFilter<'k> {
    /// What was kept.
    pub index: Index,
    /// Every pack an index file named, kept or not.
    pub packs: HashSet<Id>,
    keep: &'k dyn Fn(&BlobEntry) -> bool,
    /// Called on each blob as it comes, before `keep` is asked about its frame's blobs.
    warm: &'k dyn Fn(&BlobEntry),
    /// The frame being read (entries come frame by frame).
    frame: Vec<(Id, BlobEntry)>,
    /// About how many blobs will be kept (the index reserves no more).
    expect: usize,
}

impl<'k> FrameFilter<'k> {
    /// Keeps the frames of the blobs `keep` accepts, about `expect` blobs in all; `warm`
    /// sees each blob first (to prefetch what `keep` will read: a frame's blobs are asked
    /// about together once it ends, so their memory reads overlap).
    pub fn new(keep: &'k dyn Fn(&BlobEntry) -> bool, warm: &'k dyn Fn(&BlobEntry), expect: usize) -> Self {
        FrameFilter { index: Index::new(), packs: HashSet::new(), keep, warm, frame: Vec::new(), expect }
    }

    fn end_frame(&mut self) {
        if self.frame.iter().any(|(_, e)| (self.keep)(e)) {
            for (pack, e) in self.frame.drain(..) {
                self.index.insert(pack, e);
            }
        }
        self.frame.clear();
    }
}

impl IndexSink for FrameFilter<'_> {
    fn add(&mut self, pack: Id, entry: &BlobEntry) {
        if self.frame.last().is_some_and(|(p, f)| *p != pack || !f.same_frame(entry)) {
            self.end_frame();
        }
        if self.frame.is_empty() {
            self.packs.insert(pack);
        }
        (self.warm)(entry);
        self.frame.push((pack, *entry));
    }
    fn clear(&mut self) {
        self.index = Index::new();
        self.packs.clear();
        self.frame.clear();
    }
    fn reserve(&mut self, blobs: usize) {
        self.index.reserve(blobs.min(self.expect));
    }
    fn finish(&mut self) {
        self.end_frame();
        self.index.finish();
    }
}

/// Feeds the entries of every live index file to `sink`, one file at a time,
/// so only the sink is ever held whole; returns the files read and the
/// superseded ones. A file that a newer one supersedes (left by an
/// interrupted prune) makes it start over without it. A damaged file fails
/// the load, naming the file and `rdbvault repair index`.
pub fn load_live(repo: &Repository, sink: &mut dyn IndexSink) -> Result<(Vec<String>, HashSet<String>)> {
    let (files, superseded, _) = load_live_with(repo, sink, false, None)?;
    Ok((files, superseded))
}

/// Index files, by name, that could not be used, with why.
pub type Damaged = Vec<(String, Error)>;

/// Like [`load_live`], but skips index files that cannot be read or parsed and
/// returns them, named, with why (for restore, which can read pack headers instead).
pub fn load_readable(repo: &Repository, sink: &mut dyn IndexSink) -> Result<(Vec<String>, Damaged)> {
    load_readable_listed(repo, None, sink)
}

/// [`load_readable`] starting from a listing of the index files the caller just made (a
/// round trip less on object storage).
pub fn load_readable_listed(repo: &Repository, listed: Option<Vec<FileInfo>>, sink: &mut dyn IndexSink) -> Result<(Vec<String>, Damaged)> {
    let (files, _, damaged) = load_live_with(repo, sink, true, listed)?;
    Ok((files, damaged))
}

/// Adds what to run to the error of a damaged index file.
pub fn repair_hint(e: Error) -> Error {
    match e {
        Error::Corrupt { what, detail } => Error::Corrupt {
            what,
            detail: format!("{detail}; run `rdbvault repair index` to rebuild the index from the pack headers"),
        },
        other => other,
    }
}

type Loaded = (Vec<String>, HashSet<String>, Damaged);

fn load_live_with(repo: &Repository, sink: &mut dyn IndexSink, tolerant: bool, listed: Option<Vec<FileInfo>>) -> Result<Loaded> {
    let mut listed = match listed {
        Some(listed) => listed,
        None => repo.backend().list(FileKind::Index)?,
    };
    let mut superseded = HashSet::new();
    let mut skip = HashSet::new();
    // A listed file that vanished was merged into a newer one (a follower's compaction):
    // list again, a bounded number of times.
    let mut relists = 0;
    loop {
        let most = blobs_at_most(&listed);
        let names: Vec<String> = listed.iter().map(|i| i.name.clone()).collect();
        sink.reserve(most);
        let mut damaged = Vec::new();
        let mut vanished = false;
        let todo: Vec<&String> = names.iter().filter(|n| !skip.contains(*n)).collect();
        // Two threads read, check and decrypt the next files (every other one each) while
        // this one parses the last: reading a file takes longer than parsing it. Each hands
        // its file over before it reads another, so three files are held at most, as with one
        // reader that keeps one file ready.
        std::thread::scope(|s| -> Result<()> {
            let lanes: Vec<_> = (0..READ_LANES)
                .map(|lane| {
                    let (tx, rx) = crossbeam_channel::bounded(0);
                    let mine = todo.iter().skip(lane).step_by(READ_LANES);
                    s.spawn(move || {
                        for name in mine {
                            let opened = repo.read_sealed(FileKind::Index, name);
                            let failed = opened.is_err() && !tolerant;
                            if tx.send((*name, opened)).is_err() || failed {
                                break;
                            }
                        }
                    });
                    rx
                })
                .collect();
            // In the listed order: lane by lane, until a lane ends (it failed, or all is read).
            let in_order = lanes.iter().cycle().map_while(|rx| rx.recv().ok());
            for (name, opened) in in_order {
                let visited = opened.and_then(|plain| {
                    IndexFile::visit(&plain, &display_name(FileKind::Index, name), |pack, e| sink.add(pack, e))
                });
                match visited {
                    Ok(supersedes) => superseded.extend(supersedes.iter().map(|i| i.to_hex())),
                    Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound && relists < 5 => vanished = true,
                    Err(e) if tolerant => damaged.push((name.clone(), repair_hint(e))),
                    Err(e) => return Err(repair_hint(e)),
                }
            }
            Ok(())
        })?;
        if vanished {
            relists += 1;
            sink.clear();
            listed = repo.backend().list(FileKind::Index)?;
            continue;
        }
        let stale: HashSet<String> = names.iter().filter(|n| superseded.contains(*n) && !skip.contains(*n)).cloned().collect();
        if stale.is_empty() {
            sink.finish();
            return Ok((names, superseded, damaged));
        }
        sink.clear();
        skip.extend(stale);
    }
}

/// Threads that read and decrypt index files while the loader parses.
const READ_LANES: usize = 2;

/// About how many blobs the listed index files hold (at most), from their sizes: each blob
/// takes at least BLOB_LEN bytes of an index file.
pub fn blobs_at_most(listed: &[FileInfo]) -> usize {
    listed.iter().map(|i| i.size as usize).sum::<usize>() / BLOB_LEN
}

/// Ids to find in the index files: sorted, with their leading 8 bytes as numbers and a
/// bitmap of their leading bits (32 bits per id), so that nearly every entry of an index
/// file is passed over after one bit test, and the rest after a search of numbers.
pub struct Wanted {
    /// The full ids, beside `leads`; empty for a set of leads only ([`Wanted::leads`]).
    ids: Vec<Id>,
    leads: Vec<u64>,
    bits: Vec<u64>,
    shift: u32,
    /// Leads of bucket `b` (by their top `dir_bits` bits) are `leads[dir[b]..dir[b + 1]]`:
    /// a lookup searches a few leads, not all of them.
    dir: Vec<u32>,
    dir_bits: u32,
}

impl Wanted {
    /// The set of `ids`.
    pub fn new(ids: impl IntoIterator<Item = Id>) -> Wanted {
        let mut ids: Vec<Id> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        let leads: Vec<u64> = ids.iter().map(lead).collect();
        Wanted::with(ids, leads)
    }

    /// The set of ids whose leading 8 bytes ([`lead`]) are one of `leads`, at 12 bytes per
    /// id instead of 44: with keyed-hash ids an unwanted id shares a wanted lead with
    /// probability ~n/2^64, so a caller that only keeps more than it needs may use it.
    pub fn leads(mut leads: Vec<u64>) -> Wanted {
        leads.sort_unstable();
        leads.dedup();
        leads.shrink_to_fit();
        Wanted::with(Vec::new(), leads)
    }

    fn with(ids: Vec<Id>, leads: Vec<u64>) -> Wanted {
        // 2^16 to 2^26 bits: at most 1/32 of them set.
        let log = (leads.len() * 32).next_power_of_two().trailing_zeros().clamp(16, 26);
        // About 4-8 leads per bucket.
        let dir_bits = (leads.len() / 8).max(1).next_power_of_two().trailing_zeros();
        let mut w = Wanted { ids, leads, bits: vec![0u64; 1 << (log - 6)], shift: 64 - log, dir: vec![0; (1 << dir_bits) + 1], dir_bits };
        for i in 0..w.leads.len() {
            let s = (w.leads[i] >> w.shift) as usize;
            w.bits[s >> 6] |= 1 << (s & 63);
            let b = w.bucket(w.leads[i]);
            w.dir[b + 1] += 1;
        }
        for b in 1..w.dir.len() {
            w.dir[b] += w.dir[b - 1];
        }
        w
    }

    fn bucket(&self, lead: u64) -> usize {
        lead.checked_shr(64 - self.dir_bits).unwrap_or(0) as usize
    }

    /// Whether `id` is one of the set (for a set of leads: whether its lead is).
    pub fn contains(&self, id: &Id) -> bool {
        let lead = lead(id);
        let s = (lead >> self.shift) as usize;
        if self.bits[s >> 6] & (1 << (s & 63)) == 0 {
            return false;
        }
        let b = self.bucket(lead);
        let (lo, hi) = (self.dir[b] as usize, self.dir[b + 1] as usize);
        let from = lo + self.leads[lo..hi].partition_point(|l| *l < lead);
        if self.ids.is_empty() {
            return self.leads.get(from) == Some(&lead);
        }
        self.leads[from..].iter().zip(&self.ids[from..]).take_while(|(l, _)| **l == lead).any(|(_, i)| i == id)
    }

    /// Starts fetching the bitmap word `contains(id)` reads first.
    pub fn prefetch(&self, id: &Id) {
        let s = (lead(id) >> self.shift) as usize;
        prefetch_line(&self.bits[s >> 6]);
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.leads.len()
    }

    /// True when no id is wanted.
    pub fn is_empty(&self) -> bool {
        self.leads.is_empty()
    }
}

/// An id's leading 8 bytes as a number (sorts like the id).
pub fn lead(id: &Id) -> u64 {
    Table::<Id, Location>::lead(id)
}

/// Index files read at once by [`locate`].
const LOCATE_THREADS: usize = 2;

/// What [`locate`] kept of one index file: the files it supersedes and its kept entries.
type Kept = (Vec<Id>, Vec<(Id, BlobEntry)>);

/// Adds to `into` the entries of the blobs in `wanted`, and of every blob `also` accepts,
/// found by streaming every live index file (read, decrypted and scanned two at a time;
/// only the kept entries are held), without building the whole table. Index files that
/// a newer one supersedes are left out as [`Index::load`] leaves them out. A damaged file
/// fails the search, naming the file and `rdbvault repair index`.
pub fn locate(repo: &Repository, wanted: &Wanted, also: &(dyn Fn(&BlobEntry) -> bool + Sync), into: &mut Index) -> Result<()> {
    let mut relists = 0;
    loop {
        let names: Vec<String> = repo.backend().list(FileKind::Index)?.into_iter().map(|i| i.name).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        let read = |name: &String| -> Result<Kept> {
            let plain = repo.read_sealed(FileKind::Index, name)?;
            let mut kept = Vec::new();
            let supersedes = IndexFile::visit(&plain, &display_name(FileKind::Index, name), |pack, e| {
                if wanted.contains(&e.id) || also(e) {
                    kept.push((pack, *e));
                }
            })?;
            Ok((supersedes, kept))
        };
        let mut results: Vec<(usize, Result<Kept>)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..LOCATE_THREADS.min(names.len()))
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        while !failed.load(std::sync::atomic::Ordering::Relaxed) {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(name) = names.get(i) else { break };
                            let r = read(name);
                            if r.is_err() {
                                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                            out.push((i, r));
                        }
                        out
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|_| vec![(0, Err(Error::Invalid("index reader thread panicked".into())))])).collect()
        });
        results.sort_by_key(|(i, _)| *i);
        let mut files = Vec::with_capacity(results.len());
        let mut vanished = false;
        for (i, r) in results {
            match r {
                Ok(kept) => files.push((i, kept)),
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound && relists < 5 => vanished = true,
                Err(e) => return Err(repair_hint(e)),
            }
        }
        if vanished {
            // Merged into a newer file (a follower's compaction): list again.
            relists += 1;
            continue;
        }
        let superseded: HashSet<String> = files.iter().flat_map(|(_, (sup, _))| sup.iter().map(|i| i.to_hex())).collect();
        for (i, (_, kept)) in &files {
            if superseded.contains(&names[*i]) {
                continue;
            }
            for (pack, e) in kept {
                into.push(*pack, *e);
            }
        }
        into.finish();
        into.files = names;
        into.superseded = superseded;
        return Ok(());
    }
}

/// Blob entries by pack.
pub type PackEntries = Vec<(Id, Vec<BlobEntry>)>;

/// The repository's packs that `covered` does not hold (those no readable index file names),
/// to be indexed from their own headers ([`read_pack_headers`]).
pub fn uncovered_packs(repo: &Repository, covered: impl Fn(&Id) -> bool) -> Result<Vec<String>> {
    let packs = repo.backend().list(FileKind::Pack)?;
    Ok(packs.into_iter().map(|f| f.name).filter(|n| Id::from_hex(n).is_some_and(|id| !covered(&id))).collect())
}

/// Reads the headers of the named packs: the entries of each pack whose header
/// is sound, and the others, named, with why.
pub fn read_pack_headers(repo: &Repository, names: &[String]) -> (PackEntries, Vec<(String, String)>) {
    let (mut packs, mut unreadable) = (Vec::new(), Vec::new());
    for name in names {
        let Some(id) = Id::from_hex(name) else {
            unreadable.push((display_name(FileKind::Pack, name), "file name is not a pack id".into()));
            continue;
        };
        match crate::format::pack::read_header(repo.backend().as_ref(), repo.cipher(), name) {
            Ok(entries) => packs.push((id, entries)),
            Err(e) => unreadable.push((display_name(FileKind::Pack, name), e.to_string())),
        }
    }
    (packs, unreadable)
}

/// Which blobs a repository holds, for a backup's dedup: 128-bit id prefixes
/// (a quarter of the index's memory; as keyed-hash prefixes they collide with
/// probability ~n^2/2^129, which no one can steer without the id key), the
/// indexed packs, and the full entries of the few dictionary blobs.
#[derive(Default)]
pub struct Known {
    ids: Table<[u8; 16], ()>,
    /// Packs some index file names.
    pub packs: HashSet<Id>,
    /// Dictionary blobs, with their packs.
    pub dictionaries: Index,
    last_pack: Option<Id>,
}

impl Known {
    /// Reads the live index files.
    pub fn load(repo: &Repository) -> Result<Known> {
        let mut k = Known::default();
        load_live(repo, &mut k)?;
        Ok(k)
    }

    /// Whether a blob is stored.
    pub fn contains(&self, id: &Id) -> bool {
        self.ids.get(&prefix(id)).is_some()
    }

    /// Starts fetching what `contains(id)` will read: a batch of ids looked up
    /// after all were prefetched waits for memory once, not once per id.
    pub fn prefetch(&self, id: &Id) {
        self.ids.prefetch(&prefix(id));
    }
}

/// The first 128 bits of an id.
pub fn prefix(id: &Id) -> [u8; 16] {
    let mut p = [0u8; 16];
    p.copy_from_slice(&id.0[..16]);
    p
}

impl IndexSink for Known {
    fn add(&mut self, pack: Id, entry: &BlobEntry) {
        self.ids.entries.push((prefix(&entry.id), ()));
        // Entries come pack by pack: hash a pack id once per run of its entries.
        if self.last_pack != Some(pack) {
            self.packs.insert(pack);
            self.last_pack = Some(pack);
        }
        if entry.kind == BlobType::Dictionary {
            self.dictionaries.insert(pack, *entry);
        }
    }
    fn clear(&mut self) {
        *self = Known::default();
    }
    fn reserve(&mut self, blobs: usize) {
        self.ids.entries.reserve_exact(blobs);
    }
    fn finish(&mut self) {
        self.ids.finish(|_, _| std::cmp::Ordering::Equal);
        self.dictionaries.finish();
    }
}

/// The contents of one index file.
#[derive(Debug, Default, Clone)]
pub struct IndexFile {
    /// Older index files this one replaces (used when index files are merged).
    pub supersedes: Vec<Id>,
    /// Blobs by pack.
    pub packs: Vec<(Id, Vec<BlobEntry>)>,
}

impl IndexFile {
    /// Serializes to plaintext (version 3).
    pub fn to_bytes(&self) -> Vec<u8> {
        let blobs: usize = self.packs.iter().map(|(_, e)| e.len()).sum();
        let mut out = Vec::with_capacity(16 + self.supersedes.len() * 32 + self.packs.len() * 40 + blobs * 36);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        varint(&mut out, self.supersedes.len() as u64);
        for s in &self.supersedes {
            out.extend_from_slice(&s.0);
        }
        varint(&mut out, self.packs.len() as u64);
        for (pack, entries) in &self.packs {
            out.extend_from_slice(&pack.0);
            let frames = crate::format::pack::frames(entries);
            varint(&mut out, frames.len() as u64);
            let mut frame_end = 0u32;
            for f in frames {
                let first = &f[0];
                out.push(first.kind.code());
                out.push(first.flags);
                gap(&mut out, first.offset, frame_end);
                varint(&mut out, first.length.into());
                varint(&mut out, first.frame_len.into());
                varint(&mut out, f.len() as u64);
                frame_end = first.offset.wrapping_add(first.length);
                let mut blob_end = 0u32;
                for e in f {
                    out.extend_from_slice(&e.id.0);
                    gap(&mut out, e.inner, blob_end);
                    varint(&mut out, e.raw_len.into());
                    blob_end = e.inner.wrapping_add(e.raw_len);
                }
            }
        }
        out
    }

    /// Parses plaintext; `what` names the file in errors.
    pub fn parse(b: &[u8], what: &str) -> Result<IndexFile> {
        let mut packs: Vec<(Id, Vec<BlobEntry>)> = Vec::new();
        let supersedes = IndexFile::visit(b, what, |pack, e| match packs.last_mut() {
            Some((p, entries)) if *p == pack => entries.push(*e),
            _ => packs.push((pack, vec![*e])),
        })?;
        Ok(IndexFile { supersedes, packs })
    }

    /// Hands every entry of an index file's plaintext to `each` as it is read
    /// (no copy of the file's entries is built); returns the files it supersedes.
    pub fn visit(b: &[u8], what: &str, mut each: impl FnMut(Id, &BlobEntry)) -> Result<Vec<Id>> {
        let mut r = Cursor { b, pos: 0, what };
        if r.take(4)? != MAGIC {
            return Err(Error::corrupt(what, "wrong magic"));
        }
        let fixed = match r.take(1)?[0] {
            VERSION => false,
            VERSION_FIXED => true,
            v => return Err(Error::corrupt(what, format!("index version {v} is not one this rdbvault reads (2 or 3); a newer rdbvault wrote it?"))),
        };
        let n_sup = r.count(fixed)?;
        let mut supersedes = Vec::with_capacity(n_sup.min(b.len() / 32));
        for _ in 0..n_sup {
            supersedes.push(r.id()?);
        }
        let n_packs = r.count(fixed)?;
        for _ in 0..n_packs {
            let pack = r.id()?;
            let n_frames = r.count(fixed)?;
            let mut frame_end = 0u32;
            for _ in 0..n_frames {
                let t = r.take(1)?[0];
                let kind = BlobType::from_code(t).ok_or_else(|| Error::corrupt(what, format!("unknown blob type {t}")))?;
                let flags = r.take(1)?[0];
                let offset = r.place(fixed, frame_end)?;
                let length = r.field(fixed)?;
                let frame_len = r.field(fixed)?;
                let n = r.count(fixed)?;
                frame_end = offset.wrapping_add(length);
                let mut blob_end = 0u32;
                for _ in 0..n {
                    let id = r.id()?;
                    let inner = r.place(fixed, blob_end)?;
                    let raw_len = r.field(fixed)?;
                    if inner as u64 + raw_len as u64 > frame_len as u64 {
                        return Err(Error::corrupt(what, format!("blob {id} lies outside its {frame_len}-byte frame")));
                    }
                    blob_end = inner + raw_len;
                    each(pack, &BlobEntry { id, kind, flags, offset, length, raw_len, inner, frame_len });
                }
            }
        }
        if r.pos != b.len() {
            return Err(Error::corrupt(what, "trailing bytes after the last entry"));
        }
        Ok(supersedes)
    }
}

/// Appends `v` as an LEB128 varint.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends where `at` lies from `from`, as a zigzag varint (0 when side by side).
fn gap(out: &mut Vec<u8>, at: u32, from: u32) {
    let d = i64::from(at) - i64::from(from);
    varint(out, ((d << 1) ^ (d >> 63)) as u64);
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    what: &'a str,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.b.len());
        let end = end.ok_or_else(|| Error::corrupt(self.what, format!("truncated at byte {}", self.pos)))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    /// An LEB128 varint of at most 64 bits. Most in an index take one or two bytes (gaps,
    /// chunk lengths): those are read without a bounds check per byte (the load of a large
    /// index is bound by this parse).
    #[inline]
    fn var(&mut self) -> Result<u64> {
        if let Some(&[b0, b1]) = self.b.get(self.pos..self.pos + 2) {
            if b0 < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b0));
            }
            if b1 < 0x80 {
                self.pos += 2;
                return Ok(u64::from(b0 & 0x7F) | u64::from(b1) << 7);
            }
        }
        self.var_long()
    }
    /// [`Cursor::var`] byte by byte.
    fn var_long(&mut self) -> Result<u64> {
        let (start, mut v) = (self.pos, 0u64);
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            v |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::corrupt(self.what, format!("number at byte {start} is too long")))
    }
    /// A u32 field: fixed width in version 2, a varint in version 3.
    #[inline]
    fn field(&mut self, fixed: bool) -> Result<u32> {
        if fixed {
            return self.u32();
        }
        let start = self.pos;
        u32::try_from(self.var()?).map_err(|_| Error::corrupt(self.what, format!("number at byte {start} is too large")))
    }
    /// A count, bounded by the bytes left (each counted item takes at least one).
    fn count(&mut self, fixed: bool) -> Result<usize> {
        let n = self.field(fixed)? as usize;
        if n > self.b.len() - self.pos {
            return Err(Error::corrupt(self.what, format!("count {n} at byte {} is more than the file holds", self.pos)));
        }
        Ok(n)
    }
    /// An offset: fixed in version 2, a zigzag gap from `from` in version 3.
    #[inline]
    fn place(&mut self, fixed: bool, from: u32) -> Result<u32> {
        if fixed {
            return self.u32();
        }
        let start = self.pos;
        let z = self.var()?;
        let d = (z >> 1) as i64 ^ -((z & 1) as i64);
        u32::try_from(i64::from(from).wrapping_add(d)).map_err(|_| Error::corrupt(self.what, format!("offset at byte {start} is out of range")))
    }
    #[inline]
    fn id(&mut self) -> Result<Id> {
        let mut id = [0u8; 32];
        id.copy_from_slice(self.take(32)?);
        Ok(Id(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: Id, offset: u32) -> BlobEntry {
        BlobEntry { id, kind: BlobType::Data, flags: 0, offset, length: 9, raw_len: 1, inner: 0, frame_len: 1 }
    }

    #[test]
    fn entries_by_pack_list_each_place_once_in_frame_order_from_live_files() {
        let hasher = crate::crypto::IdHasher::new(crate::crypto::SecretKey::random());
        let (a, b, c) = (hasher.id(b"a"), hasher.id(b"b"), hasher.id(b"c"));
        let (p, q, old) = (Id([1; 32]), Id([2; 32]), Id([3; 32]));
        let in_frame = |id, inner| BlobEntry { inner, frame_len: 2, ..entry(id, 0) };
        let first = IndexFile { supersedes: vec![], packs: vec![(p, vec![in_frame(b, 1), in_frame(a, 0)]), (q, vec![entry(c, 0)])] };
        // A later file repeats a place of pack p (as the first files of an interrupted
        // prune's new index do) and adds another.
        let second = IndexFile { supersedes: vec![], packs: vec![(p, vec![in_frame(a, 0), entry(c, 9)])] };
        let superseded = IndexFile { supersedes: vec![], packs: vec![(old, vec![entry(a, 0)])] };
        let newest = IndexFile { supersedes: vec![Id([9; 32])], packs: vec![] };
        let files = vec![("f1".to_string(), first), ("f2".to_string(), second), (Id([9; 32]).to_hex(), superseded), ("f3".to_string(), newest)];
        let index = Index::from_files(&files);
        let by_pack = index.live_entries_by_pack(files);
        assert_eq!(by_pack.keys().copied().collect::<Vec<_>>(), vec![p, q], "the superseded file's pack is left out");
        let (name, entries) = &by_pack[&p];
        assert_eq!(name, "f1", "named by the first file that lists it");
        let got: Vec<(Id, u32, u32)> = entries.iter().map(|e| (e.id, e.offset, e.inner)).collect();
        assert_eq!(got, vec![(a, 0, 0), (b, 0, 1), (c, 9, 0)], "each place once, in frame order");
        let pos = index.position(&b).expect("b is indexed");
        assert_eq!(index.at(pos).map(|(pack, e)| (pack, e.id, e.inner)), Some((p, b, 1)));
        assert_eq!(index.position(&hasher.id(b"absent")), None);
    }

    #[test]
    fn sorted_table_finds_every_id_and_only_those() {
        let hasher = crate::crypto::IdHasher::new(crate::crypto::SecretKey::random());
        let ids: Vec<Id> = (0..5000u32).map(|i| hasher.id(&i.to_le_bytes())).collect();
        let mut idx = Index::new();
        for (i, id) in ids.iter().enumerate() {
            idx.insert(Id([1; 32]), entry(*id, i as u32));
        }
        // The same blob again in a later pack: the first copy wins.
        idx.insert(Id([2; 32]), entry(ids[7], 99));
        assert_eq!(idx.len(), 5001, "duplicates are dropped by finish, not before");
        idx.finish();
        assert_eq!(idx.len(), 5000);
        for (i, id) in ids.iter().enumerate() {
            let (pack, e) = idx.get(id).expect("indexed");
            assert_eq!((pack, e.offset), (Id([1; 32]), i as u32));
        }
        assert!(!idx.contains(&hasher.id(b"absent")));
        // Inserted after finish: found too (searched apart until the next finish).
        let late = hasher.id(b"late");
        idx.insert(Id([3; 32]), entry(late, 5));
        idx.insert(Id([3; 32]), entry(ids[0], 6));
        assert_eq!(idx.get(&late).map(|(p, _)| p), Some(Id([3; 32])));
        assert_eq!(idx.get(&ids[0]).map(|(_, e)| e.offset), Some(0));
        idx.finish();
        assert_eq!(idx.len(), 5001);
        assert_eq!(idx.get(&late).map(|(_, e)| e.offset), Some(5));
    }

    /// A table large enough to sort in two halves ends in the order one sort gives, keeps
    /// the first of equal keys, and finds every key, also when all keys fall in one half.
    #[test]
    fn a_table_sorted_in_halves_orders_like_one_sort() {
        let hasher = crate::crypto::IdHasher::new(crate::crypto::SecretKey::random());
        let n = SORT_APART as u32 / 2 + 1000;
        let random: Vec<[u8; 16]> = (0..n).map(|i| prefix(&hasher.id(&i.to_le_bytes()))).collect();
        // Keys whose leading bit is all the same (one half empty), with their leading bytes shared.
        let one_half = |top: u8| -> Vec<[u8; 16]> {
            (0..n).map(|i| {
                let mut k = [top; 16];
                k[8..12].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
                k
            }).collect()
        };
        for keys in [random, one_half(0x5a), one_half(0xa5), vec![[7; 16]]] {
            // Each key twice, the copy with the larger value first: the smaller must stay.
            let mut table: Table<[u8; 16], u32> = Table::default();
            for (i, k) in keys.iter().enumerate() {
                table.entries.push((*k, n + i as u32));
                table.entries.push((*k, i as u32));
            }
            let mut want = table.entries.clone();
            want.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
            want.dedup_by(|later, first| later.0 == first.0);
            table.finish(|a, b| a.1.cmp(&b.1));
            assert_eq!(table.entries, want, "{} keys", keys.len());
            for (k, v) in &want {
                assert_eq!(table.get(k), Some(v));
            }
            assert_eq!(table.get(&[0xff; 16]), None);
        }
    }

    /// Blobs share their frame's place; every field comes back as inserted, and
    /// of a blob stored twice the first pack inserted wins.
    #[test]
    fn blobs_of_one_frame_share_its_place_and_come_back_whole() {
        let hasher = crate::crypto::IdHasher::new(crate::crypto::SecretKey::random());
        let id = |i: u32| hasher.id(&i.to_le_bytes());
        let (p1, p2) = (Id([1; 32]), Id([2; 32]));
        let frame = |id, offset, inner, raw_len, kind, flags| BlobEntry { id, kind, flags, offset, length: 500 + offset, raw_len, inner, frame_len: 4096 + offset };
        let mut want = Vec::new();
        // Two frames of p1, one of p2, then p1 again with a third frame (packs out of order).
        for (pack, offset, kind, flags) in [(p1, 0, BlobType::Data, 1), (p1, 900, BlobType::ChunkList, 0), (p2, 0, BlobType::Data, 1), (p1, 1800, BlobType::Data, 0)] {
            for k in 0..5u32 {
                want.push((pack, frame(id(offset + k + if pack == p2 { 10_000 } else { 0 }), offset, k * 100, 100 + k, kind, flags)));
            }
        }
        let mut idx = Index::new();
        for (pack, e) in &want {
            idx.insert(*pack, *e);
        }
        // The first blob again, stored later in p2: the p1 copy stays.
        idx.insert(p2, frame(id(0), 7000, 0, 100, BlobType::Data, 1));
        idx.finish();
        assert_eq!(idx.len(), want.len());
        for (pack, e) in &want {
            assert_eq!(idx.get(&e.id), Some((*pack, *e)));
        }
        let mut listed: Vec<(Id, BlobEntry)> = idx.iter().collect();
        listed.sort_by_key(|(_, e)| e.id);
        want.sort_by_key(|(_, e)| e.id);
        assert_eq!(listed, want);
        assert_eq!(idx.frames.len(), 5, "one place per frame");
    }

    /// A wanted set finds its ids and no other, however many (the bitmap grows with it).
    #[test]
    fn wanted_finds_its_ids_only() {
        let hasher = crate::crypto::IdHasher::new(crate::crypto::SecretKey::random());
        for n in [0u32, 1, 100, 50_000] {
            let ids: Vec<Id> = (0..n).map(|i| hasher.id(&i.to_le_bytes())).collect();
            let w = Wanted::new(ids.iter().copied().chain(ids.iter().copied()));
            assert_eq!(w.len(), n as usize);
            assert!(ids.iter().all(|id| w.contains(id)));
            assert!((n..n + 20_000).all(|i| !w.contains(&hasher.id(&i.to_le_bytes()))));
        }
        // Ids that share their leading 8 bytes are told apart.
        let (mut a, mut b) = (Id([7; 32]), Id([7; 32]));
        a.0[31] = 1;
        b.0[31] = 2;
        let w = Wanted::new([a]);
        assert!(w.contains(&a) && !w.contains(&b));
    }

    /// A set of leads finds its ids and not others; duplicates count once.
    #[test]
    fn wanted_leads_find_their_ids() {
        let hasher = crate::crypto::IdHasher::new(crate::crypto::SecretKey::random());
        let ids: Vec<Id> = (0..10_000u32).map(|i| hasher.id(&i.to_le_bytes())).collect();
        let w = Wanted::leads(ids.iter().chain(&ids).map(lead).collect());
        assert_eq!(w.len(), ids.len());
        assert!(ids.iter().all(|id| w.contains(id)));
        assert!((10_000..30_000u32).all(|i| !w.contains(&hasher.id(&i.to_le_bytes()))));
    }

    /// A frame filter keeps every blob of a frame one of whose blobs it accepts, and no
    /// other; it remembers every pack it was shown.
    #[test]
    fn frame_filter_keeps_whole_frames() {
        let blob = |id: u8, offset: u32, inner: u32| BlobEntry { id: Id([id; 32]), kind: BlobType::Data, flags: 0, offset, length: 50, raw_len: 10, inner, frame_len: 30 };
        let (p1, p2) = (Id([1; 32]), Id([2; 32]));
        // p1: frames at 0 (blobs 1-3) and 50 (4-6); p2: a frame at 0 (7-9), the same offset as p1's first.
        let mut shown = Vec::new();
        for (pack, offset, first) in [(p1, 0, 1u8), (p1, 50, 4), (p2, 0, 7)] {
            for k in 0..3u8 {
                shown.push((pack, blob(first + k, offset, k as u32 * 10)));
            }
        }
        let keep = |e: &BlobEntry| e.id == Id([5; 32]) || e.id == Id([9; 32]);
        let mut f = FrameFilter::new(&keep, &|_: &BlobEntry| (), 4);
        for (pack, e) in &shown {
            f.add(*pack, e);
        }
        f.finish();
        let mut kept: Vec<u8> = f.index.iter().map(|(_, e)| e.id.0[0]).collect();
        kept.sort_unstable();
        assert_eq!(kept, vec![4, 5, 6, 7, 8, 9]);
        assert_eq!(f.packs, HashSet::from([p1, p2]));
        assert_eq!(f.index.get(&Id([7; 32])).map(|(p, _)| p), Some(p2));
    }

    #[test]
    fn index_file_round_trip_and_truncation() {
        let e = BlobEntry { id: Id([7; 32]), kind: BlobType::ChunkList, flags: 1, offset: 10, length: 20, raw_len: 30, inner: 0, frame_len: 30 };
        // Two blobs of one frame (the second kept alone by a prune), then another frame.
        let a = BlobEntry { id: Id([8; 32]), kind: BlobType::Data, flags: 1, offset: 30, length: 50, raw_len: 40, inner: 60, frame_len: 100 };
        let b = BlobEntry { id: Id([9; 32]), raw_len: 60, inner: 0, ..a };
        let f = IndexFile { supersedes: vec![Id([1; 32])], packs: vec![(Id([2; 32]), vec![e, a, b])] };
        let bytes = f.to_bytes();
        let back = IndexFile::parse(&bytes, "t").unwrap();
        assert_eq!(back.packs[0].1, vec![e, a, b]);
        assert_eq!(back.supersedes, vec![Id([1; 32])]);
        for cut in [3, 10, bytes.len() - 1] {
            assert!(IndexFile::parse(&bytes[..cut], "t").is_err());
        }
    }

    /// Version 2, as rdbvault wrote it before varints (fixed u32 fields).
    fn to_bytes_v2(f: &IndexFile) -> Vec<u8> {
        let mut out = b"RVIX\x02".to_vec();
        out.extend_from_slice(&(f.supersedes.len() as u32).to_le_bytes());
        for s in &f.supersedes {
            out.extend_from_slice(&s.0);
        }
        out.extend_from_slice(&(f.packs.len() as u32).to_le_bytes());
        for (pack, entries) in &f.packs {
            out.extend_from_slice(&pack.0);
            let frames = crate::format::pack::frames(entries);
            out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
            for fr in frames {
                out.extend_from_slice(&[fr[0].kind.code(), fr[0].flags]);
                for v in [fr[0].offset, fr[0].length, fr[0].frame_len, fr.len() as u32] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                for e in fr {
                    out.extend_from_slice(&e.id.0);
                    out.extend_from_slice(&e.inner.to_le_bytes());
                    out.extend_from_slice(&e.raw_len.to_le_bytes());
                }
            }
        }
        out
    }

    /// Frames side by side and blobs in order cost one byte per gap; frames out of
    /// order and a blob kept alone by prune (a gap before it) round-trip too, and
    /// version 2 files read the same.
    #[test]
    fn compact_encoding_round_trips_and_reads_version_2() {
        let blob = |id: u8, offset: u32, length: u32, inner: u32, raw_len: u32, frame_len: u32| BlobEntry { id: Id([id; 32]), kind: BlobType::Data, flags: 3, offset, length, raw_len, inner, frame_len };
        let mut entries = Vec::new();
        for k in 0..50u32 {
            entries.push(blob(k as u8, 0, 40_000, k * 1000, 1000, 50_000));
        }
        entries.push(blob(200, 40_000, 300, 700, 100, 900));
        entries.push(blob(201, 10, 5, 0, 5, 5));
        let f = IndexFile { supersedes: vec![Id([1; 32])], packs: vec![(Id([2; 32]), entries.clone()), (Id([3; 32]), vec![blob(9, 7, 70_000, 0, 3, 70_000)])] };
        let (v3, v2) = (f.to_bytes(), to_bytes_v2(&f));
        for bytes in [&v3, &v2] {
            let back = IndexFile::parse(bytes, "t").unwrap();
            assert_eq!(back.packs, f.packs);
            assert_eq!(back.supersedes, f.supersedes);
        }
        // 32 id bytes, a one-byte gap and a two-byte length per blob.
        assert!(v3.len() <= 53 * 35 + 4 * 12 + 3 * 33 + 16, "{} bytes", v3.len());
        assert!(v3.len() < v2.len() * 9 / 10);
        for cut in [3, 10, v3.len() - 1] {
            assert!(IndexFile::parse(&v3[..cut], "t").is_err());
        }
        let mut future = v3.clone();
        future[4] = 9;
        assert!(IndexFile::parse(&future, "t").unwrap_err().to_string().contains("index version 9"));
    }
}
