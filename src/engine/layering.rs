//! Lines a backup's chunks up with a base index's file, so only the records outside the
//! stretches both files share are sorted into a new key index (see `redis::keyindex`).
//!
//! Runs on the parser thread, between the record scan (entries, in file order) and the
//! collector (chunk ids, in file order, a little later). A chunk is taken once the scan has
//! passed its start; an entry is decided once the chunks up to its end are taken.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, Write};

use crossbeam_channel::Receiver;

use crate::crypto::Id;
use crate::error::{Error, Result};
use crate::format::keyindex::{temp_file, EntryRef};
use crate::format::keylayers::{encode_facts, ChunkFact, Run, Runs, FACTS_PER_PIECE};

/// Base chunks looked ahead of the base's cursor: ~150 MiB of its file.
const WINDOW: usize = 1 << 16;

/// Slots of the lead table: 16 per window chunk, so few share one (4 MiB).
const SLOT_BITS: u32 = 20;
/// Base chunks past the window's front compared one by one before the slots are asked.
const NEAR: usize = 16;

/// The slot of a lead: its top bits (leads are keyed hashes: uniform).
fn slot(lead: u64) -> usize {
    (lead >> (64 - SLOT_BITS)) as usize
}

/// A chunk of the backup's file as the collector names it: its id's lead and its length.
pub type ChunkSeen = (u64, u32);

/// The header of the base's file, then its chunk facts piece by piece in file order (from a
/// loader thread: the channels close early if the base cannot be read, and less is shared).
pub struct BaseStream {
    pub header: Receiver<Vec<u8>>,
    pub pieces: Receiver<Vec<ChunkFact>>,
}

/// What the layering found, for the snapshot.
#[derive(Debug, Default)]
pub struct Layered {
    /// Chunk-facts pieces stored (a full index keeps them for later backups).
    pub facts: Vec<Id>,
    /// Runs shared with the base (a layered index).
    pub runs: Option<Runs>,
    /// Entries inside runs: the base lists them.
    pub covered: u64,
}

enum Mode {
    /// A full index: every entry is kept, and the file's chunk facts are stored.
    Facts { piece: Vec<ChunkFact>, pieces: Pieces },
    /// A layered index: entries inside runs are left to the base.
    Layers { aligner: Aligner, held: Held },
}

/// The layering of one backup.
pub struct Layering {
    chunks: Receiver<ChunkSeen>,
    /// A chunk received but not yet taken (its start not yet passed by the scan).
    next: Option<ChunkSeen>,
    /// Offset of the next chunk to take.
    at: u64,
    /// (offset, end, db) of the records not yet passed by `at`.
    starts: VecDeque<(u64, u64, u64)>,
    /// The scan has reported every record that starts before this offset.
    scanned: u64,
    mode: Mode,
    out: Layered,
}

impl Layering {
    /// A full index that also stores its file's chunk facts.
    pub fn facts(chunks: Receiver<ChunkSeen>) -> Layering {
        Layering::with(chunks, Mode::Facts { piece: Vec::new(), pieces: Pieces::default() })
    }

    /// A layered index on `base`. Nothing is shared until [`Layering::header`] confirms both
    /// files have the same header (another RDB version parses the same bytes differently).
    pub fn layers(chunks: Receiver<ChunkSeen>, base: BaseStream) -> Layering {
        let aligner = Aligner { base_header: Some(base.header), ..Aligner::new(Some(base.pieces)) };
        Layering::with(chunks, Mode::Layers { aligner, held: Held::default() })
    }

    /// The new file's header, once the scan has read it.
    pub fn header(&mut self, header: &[u8]) {
        if let Mode::Layers { aligner, .. } = &mut self.mode {
            aligner.new_header = Some(header.to_vec());
        }
    }

    fn with(chunks: Receiver<ChunkSeen>, mode: Mode) -> Layering {
        Layering { chunks, next: None, at: 0, starts: VecDeque::new(), scanned: 0, mode, out: Layered::default() }
    }

    /// Takes one scanned entry: handed to `keep` now (a full index) or once decided.
    pub fn push(&mut self, e: EntryRef<'_>, keep: &mut impl FnMut(EntryRef<'_>)) {
        let end = e.offset + e.len;
        self.starts.push_back((e.offset, end, e.db));
        self.scanned = self.scanned.max(end);
        match &mut self.mode {
            Mode::Facts { .. } => keep(e),
            Mode::Layers { held, .. } => held.push(e),
        }
    }

    /// Takes the chunks the collector has named whose start the scan has passed.
    pub fn advance(&mut self, keep: &mut impl FnMut(EntryRef<'_>)) -> Result<()> {
        loop {
            let seen = match self.next.take() {
                Some(c) => c,
                None => match self.chunks.try_recv() {
                    Ok(c) => c,
                    Err(_) => return Ok(()),
                },
            };
            if self.at >= self.scanned {
                self.next = Some(seen);
                return Ok(());
            }
            self.take(seen, keep)?;
        }
    }

    /// The scan reached the file's end: no record is left to report.
    pub fn scanned_all(&mut self) {
        self.scanned = u64::MAX;
    }

    /// After the input's end: takes every chunk the collector names until it is done, then
    /// decides what is left (entries no chunk reached go to the new index).
    pub fn finish(mut self, keep: &mut impl FnMut(EntryRef<'_>), store: &mut impl FnMut(&[u8]) -> Result<Id>) -> Result<Layered> {
        self.scanned = u64::MAX;
        if let Some(c) = self.next.take() {
            self.take(c, keep)?;
        }
        while let Ok(c) = self.chunks.recv() {
            self.take(c, keep)?;
        }
        match self.mode {
            Mode::Facts { piece, mut pieces } => {
                if !piece.is_empty() {
                    pieces.put(&encode_facts(&piece))?;
                }
                self.out.facts = pieces.store(store)?;
            }
            Mode::Layers { mut aligner, mut held } => {
                aligner.close();
                self.out.covered += held.decide(u64::MAX, &aligner, keep);
                self.out.runs = Some(Runs(aligner.runs));
            }
        }
        Ok(self.out)
    }

    fn take(&mut self, (lead, len): ChunkSeen, keep: &mut impl FnMut(EntryRef<'_>)) -> Result<()> {
        let x = self.at;
        while self.starts.front().is_some_and(|s| s.1 <= x) {
            self.starts.pop_front();
        }
        let (starts_record, db) = match self.starts.front() {
            Some(&(o, _, db)) if o == x => (true, db),
            _ => (false, 0),
        };
        self.at += u64::from(len);
        match &mut self.mode {
            Mode::Facts { piece, pieces } => {
                piece.push(ChunkFact { lead, len, starts_record, db });
                if piece.len() >= FACTS_PER_PIECE {
                    pieces.put(&encode_facts(piece))?;
                    piece.clear();
                }
            }
            Mode::Layers { aligner, held } => {
                aligner.step(ChunkFact { lead, len, starts_record, db }, x);
                self.out.covered += held.decide(self.at, aligner, keep);
            }
        }
        Ok(())
    }
}

/// Chunk-facts pieces held in an unlinked temporary file until the input ends, then stored one
/// after another: a later backup reads them side by side (one range read on a network store,
/// not a request each, which pieces stored as they filled, between data frames, cost).
#[derive(Default)]
struct Pieces {
    file: Option<File>,
    lens: Vec<usize>,
}

impl Pieces {
    fn put(&mut self, piece: &[u8]) -> Result<()> {
        let fail = |e| {
            let dir = std::env::temp_dir();
            Error::io(format!("write the key index's chunk facts to the temporary directory {} (set TMPDIR to a writable directory, or back up with --no-key-index)", dir.display()), e)
        };
        let file = match self.file.as_mut() {
            Some(f) => f,
            None => self.file.insert(temp_file().map_err(fail)?),
        };
        file.write_all(piece).map_err(fail)?;
        self.lens.push(piece.len());
        Ok(())
    }

    /// Stores every piece, in order; their ids.
    fn store(self, store: &mut impl FnMut(&[u8]) -> Result<Id>) -> Result<Vec<Id>> {
        let Some(mut file) = self.file else { return Ok(Vec::new()) };
        let fail = |e| Error::io("read chunk facts back from the temporary directory", e);
        file.rewind().map_err(fail)?;
        let mut piece = Vec::new();
        self.lens
            .iter()
            .map(|&len| {
                piece.resize(len, 0);
                file.read_exact(&mut piece).map_err(fail)?;
                store(&piece)
            })
            .collect()
    }
}

/// Matches the backup's chunks with the base's, greedily, looking a window ahead.
struct Aligner {
    base: Option<Receiver<Vec<ChunkFact>>>,
    /// The base file's header, until compared with the new file's: nothing matches before.
    base_header: Option<Receiver<Vec<u8>>>,
    new_header: Option<Vec<u8>>,
    /// Upcoming base chunks with their offsets; `first` is the ordinal of the front.
    window: VecDeque<(ChunkFact, u64)>,
    first: u64,
    /// Ordinal + 1 of the last chunk read whose lead has these bits, at the lead's top
    /// [`SLOT_BITS`]: one store a chunk. A later chunk may take an earlier one's slot; a
    /// match is checked against the window, so that costs a missed match, never a wrong one.
    slots: Vec<u32>,
    /// Offset in the base file after the last chunk read into the window.
    base_end: u64,
    /// The run being extended, and those done.
    open: Option<Run>,
    runs: Vec<Run>,
    /// New-file offset of the last match: a long stretch without one slides the window.
    last_match: u64,
}

impl Aligner {
    fn new(base: Option<Receiver<Vec<ChunkFact>>>) -> Aligner {
        Aligner { base, base_header: None, new_header: None, window: VecDeque::new(), first: 0, slots: Vec::new(), base_end: 0, open: None, runs: Vec::new(), last_match: 0 }
    }

    /// Fills the window up to [`WINDOW`] chunks from the base stream.
    fn fill(&mut self) {
        while self.window.len() < WINDOW {
            let Some(rx) = &self.base else { return };
            let Ok(piece) = rx.recv() else {
                self.base = None;
                return;
            };
            if self.slots.is_empty() {
                self.slots = vec![0; 1 << SLOT_BITS];
            }
            for f in piece {
                let ordinal = self.first + self.window.len() as u64;
                self.slots[slot(f.lead)] = ordinal as u32 + 1;
                self.window.push_back((f, self.base_end));
                self.base_end += u64::from(f.len);
            }
        }
    }

    /// The window ordinal of a base chunk with `lead`, if one is found: near the front first
    /// (a change mostly shifts the files by a few chunks), else through the slots.
    fn find(&self, lead: u64) -> Option<u64> {
        if let Some(i) = self.window.iter().take(NEAR).position(|(f, _)| f.lead == lead) {
            return Some(self.first + i as u64);
        }
        let stored = *self.slots.get(slot(lead))?;
        // The ordinal's low 32 bits: the window is far shorter than 2^32 chunks.
        let j = (self.first & !0xFFFF_FFFF) | u64::from(stored.checked_sub(1)?);
        let j = if j < self.first { j + (1 << 32) } else { j };
        let (f, _) = self.window.get((j - self.first) as usize)?;
        (f.lead == lead).then_some(j)
    }

    /// Drops the window's front up to and including ordinal `upto`.
    fn drop_through(&mut self, upto: u64) {
        let n = (upto + 1).saturating_sub(self.first).min(self.window.len() as u64);
        self.window.drain(..n as usize);
        self.first += n;
    }

    fn close(&mut self) {
        if let Some(r) = self.open.take() {
            self.runs.push(r);
        }
    }

    /// Takes the backup's next chunk, at new-file offset `x`.
    fn step(&mut self, c: ChunkFact, x: u64) {
        if let Some(rx) = &self.base_header {
            let Some(new) = &self.new_header else { return };
            if rx.recv().ok().as_ref() != Some(new) {
                self.base = None;
            }
            self.base_header = None;
        }
        self.fill();
        if self.open.is_some() {
            if let Some((f, _)) = self.window.front() {
                if f.lead == c.lead && f.len == c.len {
                    if let Some(r) = self.open.as_mut() {
                        r.len += u64::from(c.len);
                    }
                    self.window.pop_front();
                    self.first += 1;
                    self.last_match = x;
                    return;
                }
            }
            self.close();
        }
        if let Some(j) = self.find(c.lead) {
            if let Some(&(f, base_at)) = self.window.get((j - self.first) as usize) {
                // Both parses start a record here in the same database: the same bytes
                // then hold the same records up to the run's end.
                if f.lead == c.lead && f.len == c.len && f.starts_record && c.starts_record && f.db == c.db {
                    self.open = Some(Run { new: x, base: base_at, len: u64::from(c.len) });
                    self.drop_through(j);
                    self.last_match = x;
                    return;
                }
            }
        }
        // Far past the last match (the base lost a long stretch): slide the window on.
        let span = self.window.back().map_or(0, |b| b.1) - self.window.front().map_or(0, |f| f.1);
        if x - self.last_match > span.max(1 << 20) && !self.window.is_empty() {
            let half = self.first + (self.window.len() / 2) as u64;
            self.drop_through(half);
            self.last_match = x;
        }
    }

    /// Whether `[o, e)` of the new file lies wholly inside a run.
    fn covers(&self, o: u64, e: u64) -> bool {
        if let Some(r) = &self.open {
            if o >= r.new {
                return e <= r.new + r.len;
            }
        }
        let i = self.runs.partition_point(|r| r.new <= o);
        i > 0 && e <= self.runs[i - 1].new + self.runs[i - 1].len
    }
}

/// Entries waiting for their chunks, their keys in one buffer.
#[derive(Default)]
struct Held {
    entries: VecDeque<HeldEntry>,
    keys: Vec<u8>,
    /// Bytes of `keys` before the front entry's key (consumed).
    gone: usize,
}

struct HeldEntry {
    db: u64,
    key_len: usize,
    rdb_type: u8,
    expire_ms: Option<u64>,
    offset: u64,
    len: u64,
}

impl Held {
    fn push(&mut self, e: EntryRef<'_>) {
        self.keys.extend_from_slice(e.key);
        self.entries.push_back(HeldEntry { db: e.db, key_len: e.key.len(), rdb_type: e.rdb_type, expire_ms: e.expire_ms, offset: e.offset, len: e.len });
    }

    /// Decides the entries that end at or before `upto`: those inside a run are counted,
    /// the others handed to `keep`. Returns the count.
    fn decide(&mut self, upto: u64, aligner: &Aligner, keep: &mut impl FnMut(EntryRef<'_>)) -> u64 {
        let mut covered = 0;
        while let Some(h) = self.entries.front() {
            let end = h.offset + h.len;
            if end > upto {
                break;
            }
            let key = &self.keys[self.gone..self.gone + h.key_len];
            if aligner.covers(h.offset, end) {
                covered += 1;
            } else {
                keep(EntryRef { db: h.db, key, rdb_type: h.rdb_type, expire_ms: h.expire_ms, offset: h.offset, len: h.len });
            }
            self.gone += h.key_len;
            self.entries.pop_front();
        }
        // The consumed keys go once they are most of the buffer: each byte moves at most once.
        if self.gone > 1 << 16 && self.gone * 2 > self.keys.len() {
            self.keys.drain(..self.gone);
            self.gone = 0;
        }
        covered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::unbounded;

    fn fact(lead: u64, len: u32, starts_record: bool) -> ChunkFact {
        ChunkFact { lead, len, starts_record, db: 0 }
    }

    #[test]
    fn runs_start_only_where_both_files_start_a_record() {
        let (tx, rx) = unbounded();
        // Base: chunks 1..=6 of 10 bytes; chunk 4 starts mid-record.
        tx.send((1..=6).map(|i| fact(i, 10, i != 4)).collect()).unwrap();
        drop(tx);
        let mut a = Aligner::new(Some(rx));
        // New: 1, 2, a new chunk 9, then 4 (mid-record in the base), 5, 6.
        let new = [fact(1, 10, true), fact(2, 10, true), fact(9, 12, true), fact(4, 10, true), fact(5, 10, true), fact(6, 10, true)];
        let mut x = 0;
        for c in new {
            a.step(c, x);
            x += u64::from(c.len);
        }
        a.close();
        // 1-2 shared; 4 not (the base starts no record there), so the second run starts at 5.
        assert_eq!(a.runs, vec![Run { new: 0, base: 0, len: 20 }, Run { new: 42, base: 40, len: 20 }]);
        assert!(a.covers(0, 20) && a.covers(45, 62) && !a.covers(15, 25) && !a.covers(20, 32));
    }

    #[test]
    fn entries_inside_runs_are_left_to_the_base() {
        let (btx, brx) = unbounded();
        btx.send(vec![fact(1, 10, true), fact(2, 10, true), fact(3, 10, true)]).unwrap();
        drop(btx);
        let (ctx, crx) = unbounded();
        let (htx, hrx) = unbounded();
        htx.send(b"REDIS0011".to_vec()).unwrap();
        let mut l = Layering::layers(crx, BaseStream { header: hrx, pieces: brx });
        l.header(b"REDIS0011");
        let (mut kept, mut store) = (Vec::new(), |_: &[u8]| -> Result<Id> { Ok(Id([0; 32])) });
        let mut keep = |e: EntryRef<'_>| kept.push(e.key.to_vec());
        // Records: a [0,10) in chunk 1; b [10,25) across chunks 2 and a changed 7; c [25,30).
        for (key, o, len) in [(b"a", 0, 10), (b"b", 10, 15), (b"c", 25, 5)] {
            l.push(EntryRef { db: 0, key, rdb_type: 0, expire_ms: None, offset: o, len }, &mut keep);
        }
        for c in [(1, 10), (2, 10), (7, 10)] {
            ctx.send(c).unwrap();
        }
        drop(ctx);
        l.advance(&mut keep).unwrap();
        let out = l.finish(&mut keep, &mut store).unwrap();
        drop(keep);
        assert_eq!(kept, vec![b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(out.covered, 1);
        assert_eq!(out.runs.unwrap().0, vec![Run { new: 0, base: 0, len: 20 }]);
    }

    #[test]
    fn another_header_shares_nothing() {
        let (btx, brx) = unbounded();
        btx.send(vec![fact(1, 10, true)]).unwrap();
        let (ctx, crx) = unbounded();
        let (htx, hrx) = unbounded();
        htx.send(b"REDIS0009".to_vec()).unwrap();
        let mut l = Layering::layers(crx, BaseStream { header: hrx, pieces: brx });
        l.header(b"REDIS0011");
        let mut kept = 0;
        let mut keep = |_: EntryRef<'_>| kept += 1;
        l.push(EntryRef { db: 0, key: b"a", rdb_type: 0, expire_ms: None, offset: 0, len: 10 }, &mut keep);
        ctx.send((1, 10)).unwrap();
        drop(ctx);
        let out = l.finish(&mut keep, &mut |_: &[u8]| Ok(Id([0; 32]))).unwrap();
        drop(keep);
        assert_eq!((kept, out.covered), (1, 0));
        assert!(out.runs.unwrap().0.is_empty());
    }
}
