//! A key index's entries in key order from a seek position, a page at a time: a full
//! index's, or a layered index's delta merged with its base's entries moved by the runs
//! (`format::keylayers`). Read by the key lookups (`redis::keyindex`) and by `check`.

use crate::engine::restore::Blobs;
use crate::error::Result;
use crate::format::keyindex::{decode_page, Entry, TopTable};
use crate::format::keylayers::Runs;

/// A layered index's base and the runs that move its entries to the file; the index's own
/// top table is its delta.
pub struct Layers {
    pub base: TopTable,
    /// Names the base in errors.
    pub base_what: String,
    pub runs: Runs,
}

/// Entries of an index in order from a seek position, a page at a time: a layered index's
/// delta and moved base merged by (db, key).
pub struct Walk<'i, 'b, 'a> {
    blobs: &'b Blobs<'a>,
    /// A full index, or a layered index's delta.
    top: Pages<'i>,
    base: Option<BaseWalk<'i>>,
}

/// The base side of a layered walk: its entries moved by the runs (those outside them
/// dropped), and the next entry of each side, held for the merge.
struct BaseWalk<'i> {
    pages: Pages<'i>,
    runs: &'i Runs,
    next_top: Option<Entry>,
    next_base: Option<Entry>,
}

impl<'i, 'b, 'a> Walk<'i, 'b, 'a> {
    /// A walk of the full index or delta `top` (`what` names it in errors), merged with
    /// `layers`' base when it is a delta.
    pub fn new(top: &'i TopTable, what: &'i str, layers: Option<&'i Layers>, blobs: &'b Blobs<'a>) -> Self {
        let base = layers.map(|l| BaseWalk { pages: Pages::new(&l.base, &l.base_what), runs: &l.runs, next_top: None, next_base: None });
        Walk { blobs, top: Pages::new(top, what), base }
    }

    /// Positions at the first entry at or after `(db, key)`.
    pub fn seek(&mut self, db: u64, key: &[u8]) -> Result<()> {
        self.top.seek(self.blobs, db, key)?;
        if let Some(b) = self.base.as_mut() {
            b.pages.seek(self.blobs, db, key)?;
            (b.next_top, b.next_base) = (None, None);
        }
        Ok(())
    }

    pub fn next(&mut self) -> Result<Option<Entry>> {
        let Some(b) = self.base.as_mut() else { return self.top.next(self.blobs) };
        if b.next_top.is_none() {
            b.next_top = self.top.next(self.blobs)?;
        }
        while b.next_base.is_none() {
            let Some(mut e) = b.pages.next(self.blobs)? else { break };
            if let Some(offset) = b.runs.shift(e.offset, e.len) {
                e.offset = offset;
                b.next_base = Some(e);
            }
        }
        // The delta's entry first on an equal key (a backup does not write one so).
        let base_first = match (&b.next_top, &b.next_base) {
            (Some(t), Some(e)) => e.cmp_key(t.db, &t.key).is_lt(),
            (t, _) => t.is_none(),
        };
        Ok(if base_first { b.next_base.take() } else { b.next_top.take() })
    }
}

/// One top table's entries in order from a seek position, a page at a time.
struct Pages<'i> {
    top: &'i TopTable,
    /// Names the index in errors.
    what: &'i str,
    page: usize,
    entries: std::vec::IntoIter<Entry>,
}

impl<'i> Pages<'i> {
    fn new(top: &'i TopTable, what: &'i str) -> Self {
        Pages { top, what, page: 0, entries: Vec::new().into_iter() }
    }

    /// Entries of page `n`.
    fn load(&self, blobs: &Blobs<'_>, n: usize) -> Result<Vec<Entry>> {
        let p = &self.top.pages[n];
        decode_page(&blobs.load(&p.id)?, &format!("{} page {}", self.what, p.id.to_hex()))
    }

    fn seek(&mut self, blobs: &Blobs<'_>, db: u64, key: &[u8]) -> Result<()> {
        let n = self.top.page_for(db, key).unwrap_or(0);
        let mut entries = if self.top.pages.is_empty() { Vec::new() } else { self.load(blobs, n)? };
        let skip = entries.partition_point(|e| e.cmp_key(db, key).is_lt());
        entries.drain(..skip);
        self.page = n + 1;
        self.entries = entries.into_iter();
        Ok(())
    }

    fn next(&mut self, blobs: &Blobs<'_>) -> Result<Option<Entry>> {
        loop {
            if let Some(e) = self.entries.next() {
                return Ok(Some(e));
            }
            if self.page >= self.top.pages.len() {
                return Ok(None);
            }
            self.entries = self.load(blobs, self.page)?.into_iter();
            self.page += 1;
        }
    }
}
