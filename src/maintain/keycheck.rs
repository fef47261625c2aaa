//! `check` of a snapshot's key index: the top table and every page decode and agree with
//! the snapshot; with `--read-data`, the index rebuilt from the RDB itself is the stored
//! one, page for page (so every entry points at the record of its key): the same blob, or
//! for a page in an older layout, the same entries.

use crate::crypto::Id;
use crate::engine::restore::{with_reader, Blobs, RestoreOptions};
use crate::error::{Error, Result};
use crate::engine::facts::IndexFeed;
use crate::format::keyindex::{decode_page, Entry, TopTable};
use crate::format::snapshot::{KeyIndexRef, Snapshot};
use crate::rdb;

/// What is wrong with the key index of `snap`, if anything (the first problem found).
pub fn check_key_index(blobs: &Blobs<'_>, snap: &Snapshot, r: &KeyIndexRef, read_data: bool) -> Result<()> {
    let what = format!("key index {}", r.top.get(..8).unwrap_or(&r.top));
    let bad = |d: String| Error::corrupt(&what, d);
    let file = snap.files.iter().find(|f| f.name == r.file).ok_or_else(|| bad(format!("names file {} the snapshot does not hold", r.file)))?;
    let id = Id::from_hex(&r.top).ok_or_else(|| bad("bad top table id".into()))?;
    let top = TopTable::decode(&blobs.load(&id)?, &what)?;
    if top.list_starts.len() != file.lists.len() {
        return Err(bad(format!("{} chunk-list starts for {} chunk lists", top.list_starts.len(), file.lists.len())));
    }
    let mut keys = 0u64;
    let mut last: Option<Entry> = None;
    for p in &top.pages {
        let entries = decode_page(&blobs.load(&p.id)?, &format!("{what} page {}", p.id.to_hex()))?;
        let first = entries.first().ok_or_else(|| bad(format!("page {} is empty", p.id.to_hex())))?;
        if first.cmp_key(p.db, &p.first_key).is_ne() || entries.len() != p.entries as usize {
            return Err(bad(format!("page {} does not hold what the top table says", p.id.to_hex())));
        }
        if last.as_ref().is_some_and(|l| l.cmp_key(first.db, &first.key).is_ge()) {
            return Err(bad(format!("page {} is out of order", p.id.to_hex())));
        }
        if let Some(e) = entries.iter().find(|e| e.offset.checked_add(e.len).is_none_or(|end| end > file.size)) {
            return Err(bad(format!("key {}:{} points past the end of {}", e.db, rdb::quoted(&e.key), file.name)));
        }
        keys += entries.len() as u64;
        last = entries.into_iter().last();
    }
    if keys != top.keys || keys != r.keys {
        return Err(bad(format!("its pages hold {keys} keys, the snapshot says {}", r.keys)));
    }
    if !read_data {
        return Ok(());
    }
    let index = blobs.index()?;
    let mut at = 0u64;
    for (n, hex) in file.lists.iter().enumerate() {
        if top.list_starts[n] != at {
            return Err(bad(format!("chunk list {n} starts at byte {at}, the index says {}", top.list_starts[n])));
        }
        let list = Id::from_hex(hex).ok_or_else(|| bad(format!("bad list id {hex}")))?;
        for c in blobs.list_chunks(&list)?.chunks {
            at += index.get(&c).map_or(0, |(_, e)| u64::from(e.raw_len));
        }
    }
    // The index the RDB gives, compared page by page as it is built.
    let mut feed = IndexFeed::new();
    with_reader(blobs, file, &RestoreOptions::default(), |reader| {
        rdb::summarize_each(reader, |rec, end| feed.push(rec, end)).map(|_| ()).map_err(|e| Error::rdb(&file.name, e))
    })?;
    let mut n = 0;
    let rebuilt = feed.finish()?.finish(|page| {
        let id = blobs.repo.hasher().id(page);
        let stored = top.pages.get(n).map(|p| p.id);
        n += 1;
        let differs = || bad(format!("page {n} differs from the index the RDB gives; the index points at wrong records (rebuild it with a new backup)"));
        match stored {
            Some(s) if s == id => Ok(id),
            // A page in an older layout holds the same entries in other bytes.
            Some(s) => {
                let (old, new) = (decode_page(&blobs.load(&s)?, &what)?, decode_page(page, &what)?);
                if old == new {
                    Ok(s)
                } else {
                    Err(differs())
                }
            }
            None => Err(differs()),
        }
    })?;
    if rebuilt.pages.len() != top.pages.len() {
        return Err(bad(format!("it has {} pages, the RDB gives {}", top.pages.len(), rebuilt.pages.len())));
    }
    Ok(())
}
