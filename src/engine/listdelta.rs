//! An incremental's chunk list as delta pieces (see `format::chunklist::Delta`): which base
//! to draw from, the thread that reads the base's ids, and the writer that matches the new
//! file's ids against them.
//!
//! Matching is by whole chunk id, so a piece lists exactly the ids the file has; a base
//! that cannot be read (or ends early) only leaves more ids new.

use std::collections::{HashMap, VecDeque};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::crypto::{Id, IdBuildHasher};
use crate::engine::restore::Blobs;
use crate::error::{Error, Result};
use crate::format::chunklist::{Delta, DELTA_PIECE_CHUNKS};
use crate::format::keylayers::lead;
use crate::format::snapshot::{ListBase, Snapshot};
use crate::store::ReadPlan;

/// A delta holding more than this share of its file's chunks as new ids makes the next
/// backup write a full list again (which later deltas then draw from).
const REBASE_SHARE: f64 = 0.25;
/// Base chunks looked ahead: ~40 MiB of the base's file at ~2.4 KiB a chunk (~0.6 MiB held).
const WINDOW: usize = 1 << 14;
/// New ids in a row after which the window slides half its length on: a stretch of the base
/// deleted is caught up with, an inserted stretch (~2.5 MiB) costs at most half a window of
/// matches.
const SLIDE_AFTER: usize = WINDOW / 16;
/// Base lists read at once, and held ahead of the writer: on a network store a batch costs
/// a round trip or two whatever its size; on a local disk a small one keeps memory low.
pub fn lists_per_read(plan: &ReadPlan) -> usize {
    if plan.pack_order { 64 } else { 8 }
}

/// The list a backup of file `name` from `host` draws from: that of the newest snapshot of
/// the host with a file of that name (or, for a `lone` input, with one file of any name:
/// dumps are often named by date), when it is a full list; else the one that snapshot's
/// delta drew from, while that delta is small. `None`: write a full list.
pub fn choose(snapshots: &[(Id, Snapshot)], host: &str, name: &str, lone: bool) -> Option<(ListBase, Vec<Id>)> {
    let ours = || snapshots.iter().rev().filter(|(_, s)| s.host == host && !s.is_log_segment());
    let named = ours().find_map(|(id, s)| Some((id, s.files.iter().find(|f| f.name == name)?)));
    let (id, file) = named.or_else(|| ours().filter(|_| lone).find_map(|(id, s)| Some((id, s.files.first().filter(|_| s.files.len() == 1)?))))?;
    let base_file = match &file.list_base {
        None => Some((id.to_hex(), file)),
        Some(b) if (b.new_chunks as f64) <= REBASE_SHARE * file.chunks.max(1) as f64 => {
            let (_, s) = snapshots.iter().find(|(sid, _)| sid.to_hex() == b.snapshot)?;
            let f = s.files.iter().find(|f| f.name == file.name).or_else(|| s.files.first().filter(|_| s.files.len() == 1))?;
            f.list_base.is_none().then(|| (b.snapshot.clone(), f))
        }
        Some(_) => None,
    };
    let (base_id, base_file) = base_file?;
    let lists = base_file.lists.iter().map(|h| Id::from_hex(h)).collect::<Option<Vec<Id>>>()?;
    (!lists.is_empty()).then(|| (ListBase { snapshot: base_id, new_chunks: 0 }, lists))
}

/// A base's list blobs with their chunk ids, in order.
pub type BaseLists = Receiver<(Id, Vec<Id>)>;

/// A stream per input with a base (in input order), and the senders that fill them; each
/// holds a batch of `per_read` lists.
pub fn channels(bases: Vec<Option<Vec<Id>>>, per_read: usize) -> (Vec<(Vec<Id>, Sender<(Id, Vec<Id>)>)>, Vec<Option<BaseLists>>) {
    let (mut senders, mut streams) = (Vec::new(), Vec::new());
    for lists in bases {
        streams.push(lists.map(|lists| {
            let (tx, rx) = bounded(per_read);
            senders.push((lists, tx));
            rx
        }));
    }
    (senders, streams)
}

/// Sends a base's list blobs with their chunk ids, in order, until the writer stops listening.
pub fn send_base(blobs: &Blobs<'_>, lists: &[Id], tx: &Sender<(Id, Vec<Id>)>) -> Result<()> {
    for group in lists.chunks(lists_per_read(&blobs.repo.backend().read_plan())) {
        for (id, ids) in group.iter().zip(blobs.lists_chunks(group, &mut Vec::new())?) {
            tx.send((*id, ids)).map_err(|_| Error::Invalid("backup stopped".into()))?;
        }
    }
    Ok(())
}

/// Writes one file's list as delta pieces against a base, matching each new id with the
/// base's upcoming ids (a change mostly shifts the files by a few chunks).
pub struct DeltaWriter {
    lists: Option<BaseLists>,
    /// Upcoming base chunks: id, the list blob holding it (in `base_lists`), its place there;
    /// `first` is the ordinal of the front.
    window: VecDeque<(Id, u32, u32)>,
    base_lists: Vec<Id>,
    first: u64,
    /// Ordinal of the first window chunk with a lead.
    at: HashMap<u64, u64, IdBuildHasher>,
    piece: Delta,
    in_piece: usize,
    /// New ids since the last match: a stretch longer than the window slides it on.
    unmatched: usize,
    /// What the snapshot records.
    pub base: ListBase,
}

impl DeltaWriter {
    pub fn new(base: ListBase, lists: BaseLists) -> DeltaWriter {
        DeltaWriter { lists: Some(lists), window: VecDeque::new(), base_lists: Vec::new(), first: 0, at: HashMap::default(), piece: Delta::default(), in_piece: 0, unmatched: 0, base }
    }

    fn fill(&mut self) {
        while self.window.len() < WINDOW {
            let Some(rx) = &self.lists else { return };
            let Ok((list, ids)) = rx.recv() else {
                self.lists = None;
                return;
            };
            let n = self.base_lists.len() as u32;
            self.base_lists.push(list);
            let first = self.first;
            for (i, id) in ids.into_iter().enumerate() {
                let at = first + self.window.len() as u64;
                // The first of equal ids is found: a common chunk must not jump the window past
                // others. An entry of a chunk already dropped gives way.
                self.at.entry(lead(&id)).and_modify(|j| *j = if *j < first { at } else { *j }).or_insert(at);
                self.window.push_back((id, n, i as u32));
            }
            // Dropped chunks leave their entries (a lookup checks the window) until they
            // outnumber the live ones: one sweep then instead of a removal per chunk.
            if self.at.len() > 2 * WINDOW.max(self.window.len()) {
                self.at.retain(|_, j| *j >= first);
            }
        }
    }

    /// Drops the window's front up to (not including) ordinal `upto`.
    fn drop_before(&mut self, upto: u64) {
        let n = (upto.saturating_sub(self.first) as usize).min(self.window.len());
        self.window.drain(..n);
        self.first += n as u64;
    }

    /// Whether ids were pushed since the last finished piece.
    pub fn open(&self) -> bool {
        self.in_piece > 0
    }

    /// Adds the file's next chunk id; returns the id of a piece finished by it.
    pub fn push(&mut self, id: &Id, store: &mut impl FnMut(Vec<u8>) -> Result<Id>) -> Result<Option<Id>> {
        self.fill();
        let found = match self.window.front() {
            Some((f, _, _)) if f == id => Some(self.first),
            _ => self.at.get(&lead(id)).copied().filter(|&j| j >= self.first && self.window.get((j - self.first) as usize).is_some_and(|(f, _, _)| f == id)),
        };
        match found {
            Some(j) => {
                self.drop_before(j);
                if let Some(&(_, list, place)) = self.window.front() {
                    self.piece.keep(self.base_lists[list as usize], place);
                }
                self.drop_before(j + 1);
                self.unmatched = 0;
            }
            None => {
                self.piece.add(*id);
                self.base.new_chunks += 1;
                self.unmatched += 1;
                // Far past the last match (the base lost a long stretch): slide the window on.
                if self.unmatched > SLIDE_AFTER.min(self.window.len()) && !self.window.is_empty() {
                    self.drop_before(self.first + (self.window.len() / 2) as u64);
                    self.unmatched = 0;
                }
            }
        }
        self.in_piece += 1;
        if self.in_piece >= DELTA_PIECE_CHUNKS {
            return self.finish(store);
        }
        Ok(None)
    }

    /// Stores the open piece, if any; its id.
    pub fn finish(&mut self, store: &mut impl FnMut(Vec<u8>) -> Result<Id>) -> Result<Option<Id>> {
        if self.in_piece == 0 {
            return Ok(None);
        }
        self.in_piece = 0;
        store(std::mem::take(&mut self.piece).encode()).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::chunklist::{parse_any, ListBlob};
    use crate::format::snapshot::SnapshotFile;

    fn ids(from: u32, n: u32) -> Vec<Id> {
        (from..from + n).map(|i| Id(*blake3::hash(&i.to_le_bytes()).as_bytes())).collect()
    }

    /// Writes `new` against `base` (split into lists of 100); the pieces, expanded, and the new ids.
    fn write(base: &[Id], new: &[Id]) -> (Vec<Id>, u64, usize) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let lists: Vec<(Id, Vec<Id>)> = base.chunks(100).enumerate().map(|(i, c)| (Id(*blake3::hash(format!("list {i}").as_bytes()).as_bytes()), c.to_vec())).collect();
        for l in &lists {
            tx.send(l.clone()).unwrap();
        }
        drop(tx);
        let mut w = DeltaWriter::new(ListBase { snapshot: "s".into(), new_chunks: 0 }, rx);
        let mut pieces = Vec::new();
        let mut store = |b: Vec<u8>| -> Result<Id> {
            pieces.push(b);
            Ok(Id([0; 32]))
        };
        for id in new {
            w.push(id, &mut store).unwrap();
        }
        w.finish(&mut store).unwrap();
        let mut out = Vec::new();
        let mut bytes = 0;
        for p in &pieces {
            bytes += p.len();
            let ListBlob::Delta(d) = parse_any(p, "t").unwrap() else { panic!("a delta piece") };
            let bases: Vec<&[Id]> = d.bases.iter().map(|b| lists.iter().find(|(i, _)| i == b).unwrap().1.as_slice()).collect();
            out.extend(d.expand(&bases, "t").unwrap());
        }
        (out, w.base.new_chunks, bytes)
    }

    #[test]
    fn a_delta_lists_exactly_the_new_file_and_holds_only_what_changed() {
        let base = ids(0, 5000);
        // Change 10 ids, delete a stretch of 50, insert 30 new ones, move nothing else.
        let mut new = base.clone();
        for i in (100..5000).step_by(500) {
            new[i] = ids(100_000 + i as u32, 1)[0];
        }
        new.drain(2000..2050);
        for (k, id) in ids(200_000, 30).into_iter().enumerate() {
            new.insert(3000 + k, id);
        }
        let (out, fresh, bytes) = write(&base, &new);
        assert!(out == new, "{} ids listed for {}; first differs at {:?}", out.len(), new.len(), out.iter().zip(&new).position(|(a, b)| a != b));
        assert_eq!(fresh, 40);
        // 40 new ids, the 50 base lists named (a few twice: by two pieces) and a few bytes a
        // run, against 32 bytes for each of ~5000 ids.
        assert!(bytes < 40 * 32 + 60 * 32 + 400, "{bytes} bytes");
    }

    #[test]
    fn a_base_that_ends_early_or_never_matches_leaves_the_list_exact() {
        let (out, fresh, _) = write(&ids(0, 300), &ids(1000, 2500));
        assert!(out == ids(1000, 2500) && fresh == 2500);
        // The base's first 300 ids, then 2000 the base never had.
        let new: Vec<Id> = ids(0, 300).into_iter().chain(ids(9000, 2000)).collect();
        let (out, fresh, _) = write(&ids(0, 300), &new);
        assert!(out == new && fresh == 2000, "{fresh} new");
    }

    #[test]
    fn a_large_deletion_is_caught_up_with() {
        // The first 2 windows of the base are gone: the window slides until it meets the rest.
        let base = ids(0, (WINDOW * 4) as u32);
        let new = base[WINDOW * 2..].to_vec();
        let (out, fresh, _) = write(&base, &new);
        assert!(out == new);
        assert!(fresh <= 4 * SLIDE_AFTER as u64, "{fresh} of {} new", new.len());
    }

    #[test]
    fn the_base_is_the_newest_full_list_or_the_one_a_small_delta_drew_from() {
        let file = |chunks: u64, base: Option<(&Id, u64)>| SnapshotFile {
            name: "dump.rdb".into(),
            size: 1,
            blake3: String::new(),
            chunks,
            lists: vec![Id([chunks as u8; 32]).to_hex()],
            list_base: base.map(|(id, n)| ListBase { snapshot: id.to_hex(), new_chunks: n }),
        };
        let snap = |f: SnapshotFile| {
            let summary = serde_json::to_value(crate::format::snapshot::BackupSummary::default()).unwrap();
            let json = serde_json::json!({"version": 1, "time": "t", "host": "h", "username": "u", "source": {"kind": "file", "name": "n"}, "files": [], "summary": summary});
            let mut s: Snapshot = serde_json::from_value(json).unwrap();
            s.files.push(f);
            s
        };
        let (a, b) = (Id([1; 32]), Id([2; 32]));
        let full = vec![(a, snap(file(10, None)))];
        assert_eq!(choose(&full, "h", "dump.rdb", false).map(|(b, l)| (b.snapshot, l)), Some((a.to_hex(), vec![Id([10; 32])])));
        assert!(choose(&full, "other", "dump.rdb", true).is_none() && choose(&full, "h", "x.rdb", false).is_none());
        // A lone input named otherwise (a dump named by date) draws from a one-file snapshot.
        assert_eq!(choose(&full, "h", "x.rdb", true).map(|(b, _)| b.snapshot), Some(a.to_hex()));
        let small = vec![full[0].clone(), (b, snap(file(100, Some((&a, 25)))))];
        assert_eq!(choose(&small, "h", "dump.rdb", false).map(|(b, _)| b.snapshot), Some(a.to_hex()));
        let large = vec![full[0].clone(), (b, snap(file(100, Some((&a, 26)))))];
        assert!(choose(&large, "h", "dump.rdb", false).is_none());
        let gone = vec![(b, snap(file(100, Some((&a, 1)))))];
        assert!(choose(&gone, "h", "dump.rdb", false).is_none());
    }
}
