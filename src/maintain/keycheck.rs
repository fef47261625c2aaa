//! `check` of a snapshot's key index: the top table and every page decode and agree with
//! the snapshot; with `--read-data`, the index rebuilt from the RDB itself is the stored
//! one, page for page (so every entry points at the record of its key): the same blob, or
//! for a page in an older layout, the same entries. A layered index's blobs (delta, base,
//! runs, the base's chunk facts) decode too, and its merged listing is the rebuilt one,
//! entry for entry.

use crate::crypto::Id;
use crate::engine::facts::IndexFeed;
use crate::engine::keywalk::{Layers, Walk};
use crate::engine::restore::{with_reader, Blobs, RestoreOptions};
use crate::error::{Error, Result};
use crate::format::keyindex::{decode_page, Entry, TopTable};
use crate::format::keylayers::{decode_facts, Runs};
use crate::format::snapshot::{KeyIndexRef, KeyLayersRef, Snapshot, SnapshotFile};
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
    let keys = check_pages(blobs, &top, &what, Some(file))?;
    if keys != top.keys || keys != r.keys {
        return Err(bad(format!("its pages hold {keys} keys, the snapshot says {}", r.keys)));
    }
    check_facts(blobs, r)?;
    if !read_data {
        return Ok(());
    }
    check_list_starts(blobs, file, &top, &what)?;
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

/// Checks the pages of `top` (named `what`) decode, hold what the top table says and are in
/// order; with the index's `file`, that every entry lies inside it. Returns the keys counted.
fn check_pages(blobs: &Blobs<'_>, top: &TopTable, what: &str, file: Option<&SnapshotFile>) -> Result<u64> {
    let bad = |d: String| Error::corrupt(what, d);
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
        if let Some(file) = file {
            if let Some(e) = entries.iter().find(|e| e.offset.checked_add(e.len).is_none_or(|end| end > file.size)) {
                return Err(bad(format!("key {}:{} points past the end of {}", e.db, rdb::quoted(&e.key), file.name)));
            }
        }
        keys += entries.len() as u64;
        last = entries.into_iter().last();
    }
    Ok(keys)
}

/// Checks the chunk-list starts of `top` are where the file's chunk lists start.
fn check_list_starts(blobs: &Blobs<'_>, file: &SnapshotFile, top: &TopTable, what: &str) -> Result<()> {
    let index = blobs.index()?;
    let mut at = 0u64;
    for (n, hex) in file.lists.iter().enumerate() {
        if top.list_starts[n] != at {
            return Err(Error::corrupt(what, format!("chunk list {n} starts at byte {at}, the index says {}", top.list_starts[n])));
        }
        let list = Id::from_hex(hex).ok_or_else(|| Error::corrupt(what, format!("bad list id {hex}")))?;
        for c in blobs.list_chunks(&list)? {
            at += index.get(&c).map_or(0, |(_, e)| u64::from(e.raw_len));
        }
    }
    Ok(())
}

/// Checks the chunk-facts pieces of a full index decode (only backups read them: damage
/// would show there as indexes layered on the wrong records).
fn check_facts(blobs: &Blobs<'_>, r: &KeyIndexRef) -> Result<()> {
    for hex in &r.facts {
        let what = format!("key index chunk facts {}", hex.get(..8).unwrap_or(hex));
        let id = Id::from_hex(hex).ok_or_else(|| Error::corrupt(&what, "bad chunk facts id"))?;
        decode_facts(&blobs.load(&id)?, &what)?;
    }
    Ok(())
}

/// What is wrong with the layered key index of `snap`, if anything (the first problem found).
pub fn check_key_layers(blobs: &Blobs<'_>, snap: &Snapshot, r: &KeyLayersRef, read_data: bool) -> Result<()> {
    let what = format!("key index {}", r.delta.get(..8).unwrap_or(&r.delta));
    let bad = |d: String| Error::corrupt(&what, d);
    let file = snap.files.iter().find(|f| f.name == r.file).ok_or_else(|| bad(format!("names file {} the snapshot does not hold", r.file)))?;
    let delta_id = Id::from_hex(&r.delta).ok_or_else(|| bad("bad top table id".into()))?;
    let delta = TopTable::decode(&blobs.load(&delta_id)?, &what)?;
    if delta.list_starts.len() != file.lists.len() {
        return Err(bad(format!("{} chunk-list starts for {} chunk lists", delta.list_starts.len(), file.lists.len())));
    }
    let delta_keys = check_pages(blobs, &delta, &what, Some(file))?;
    if delta_keys != delta.keys || delta_keys != r.delta_keys {
        return Err(bad(format!("its delta's pages hold {delta_keys} keys, the snapshot says {}", r.delta_keys)));
    }
    let base_what = format!("key index base {}", r.base.top.get(..8).unwrap_or(&r.base.top));
    let base_id = Id::from_hex(&r.base.top).ok_or_else(|| Error::corrupt(&base_what, "bad top table id"))?;
    let base = TopTable::decode(&blobs.load(&base_id)?, &base_what)?;
    // The base's file may be gone with its snapshot: its entries are bounded once moved.
    let base_keys = check_pages(blobs, &base, &base_what, None)?;
    if base_keys != base.keys || base_keys != r.base.keys {
        return Err(Error::corrupt(&base_what, format!("its pages hold {base_keys} keys, the snapshot says {}", r.base.keys)));
    }
    check_facts(blobs, &r.base)?;
    let runs_what = format!("key index runs {}", r.runs.get(..8).unwrap_or(&r.runs));
    let runs_id = Id::from_hex(&r.runs).ok_or_else(|| Error::corrupt(&runs_what, "bad runs blob id"))?;
    let runs = Runs::decode(&blobs.load(&runs_id)?, &runs_what)?;
    if let Some(end) = runs.0.last().map(|run| run.new + run.len).filter(|end| *end > file.size) {
        return Err(Error::corrupt(&runs_what, format!("a run ends at byte {end}, past the end of {} ({} bytes)", file.name, file.size)));
    }
    let layers = Layers { base, base_what, runs };
    let mut merged = Merged { walk: Walk::new(&delta, &what, Some(&layers), blobs), last: None, keys: 0, what: &what };
    if read_data {
        check_list_starts(blobs, file, &delta, &what)?;
        // The index the RDB gives, compared entry by entry with the merged listing.
        let mut feed = IndexFeed::new();
        with_reader(blobs, file, &RestoreOptions::default(), |reader| {
            rdb::summarize_each(reader, |rec, end| feed.push(rec, end)).map(|_| ()).map_err(|e| Error::rdb(&file.name, e))
        })?;
        feed.finish()?.finish(|page| {
            for e in decode_page(page, &what)? {
                match merged.next()? {
                    Some(m) if m == e => {}
                    Some(m) if m.cmp_key(e.db, &e.key).is_eq() => {
                        return Err(bad(format!(
                            "key {}:{} is type {} expiry {:?} at byte {} ({} bytes) in the index, type {} expiry {:?} at byte {} ({} bytes) in the RDB; the index points at wrong records (rebuild it with `backup --full-key-index`)",
                            e.db, rdb::quoted(&e.key), m.rdb_type, m.expire_ms, m.offset, m.len, e.rdb_type, e.expire_ms, e.offset, e.len
                        )))
                    }
                    Some(m) => return Err(bad(format!("it lists key {}:{} where the RDB has key {}:{}", m.db, rdb::quoted(&m.key), e.db, rdb::quoted(&e.key)))),
                    None => return Err(bad(format!("it ends before key {}:{} of the RDB", e.db, rdb::quoted(&e.key)))),
                }
            }
            Ok(blobs.repo.hasher().id(page))
        })?;
        if let Some(m) = merged.next()? {
            return Err(bad(format!("it lists key {}:{}, which the RDB does not hold", m.db, rdb::quoted(&m.key))));
        }
    }
    while merged.next()?.is_some() {}
    if merged.keys != r.keys {
        return Err(bad(format!("it lists {} keys, the snapshot says {}", merged.keys, r.keys)));
    }
    Ok(())
}

/// A layered index's merged listing, checked as it is read: keys in order and each once,
/// every record inside the file.
struct Merged<'w, 'i, 'b, 'a> {
    walk: Walk<'i, 'b, 'a>,
    last: Option<Entry>,
    keys: u64,
    what: &'w str,
}

impl Merged<'_, '_, '_, '_> {
    fn next(&mut self) -> Result<Option<Entry>> {
        let Some(e) = self.walk.next()? else { return Ok(None) };
        if self.last.as_ref().is_some_and(|l| l.cmp_key(e.db, &e.key).is_ge()) {
            return Err(Error::corrupt(self.what, format!("key {}:{} is listed out of order or twice", e.db, rdb::quoted(&e.key))));
        }
        self.keys += 1;
        self.last = Some(e.clone());
        Ok(Some(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::restore::load_index;
    use crate::format::keylayers::Run;
    use crate::redis::glob::Glob;
    use crate::redis::keyindex::tests::Store;
    use crate::redis::keyindex::KeyIndex;
    use crate::redis::keyscan::KeyFilter;

    /// An RDB of string keys `key:N` (and `new:N` added after some) in db 0 and, for every
    /// tenth, db 1, in a scrambled order; `second`: a few values longer, a few keys gone,
    /// a few added (the rest byte for byte as in the first).
    fn rdb_file(second: bool) -> Vec<u8> {
        let mut out = b"REDIS0011".to_vec();
        let string = |out: &mut Vec<u8>, s: &[u8]| {
            out.push(s.len() as u8);
            out.extend_from_slice(s);
        };
        for db in [0u8, 1] {
            out.extend_from_slice(&[0xFE, db]);
            for i in (0..3_000u64).map(|i| i * 7919 % 3_000).filter(|i| db == 0 || i % 10 == 0) {
                if second && i % 60 == 1 {
                    continue;
                }
                let len = 10 + (i % 30) as usize + if second && i % 50 == 0 { 7 } else { 0 };
                out.push(0);
                string(&mut out, format!("key:{i}").as_bytes());
                string(&mut out, &vec![b'a' + (i % 26) as u8; len]);
                if second && i % 70 == 2 {
                    out.push(0);
                    string(&mut out, format!("new:{i}").as_bytes());
                    string(&mut out, b"added");
                }
            }
        }
        out.push(0xFF);
        out.extend_from_slice(&[0; 8]);
        out
    }

    /// The file's records as index entries, in file order, with their bytes.
    fn records(bytes: &[u8]) -> Vec<(Entry, Vec<u8>)> {
        let mut out = Vec::new();
        rdb::summarize_each(bytes, |rec, end| {
            let e = Entry { db: rec.db, key: rec.key.clone(), rdb_type: rec.rdb_type, expire_ms: rec.expire_ms, offset: rec.offset, len: end - rec.offset };
            out.push((e, bytes[rec.offset as usize..end as usize].to_vec()));
        })
        .unwrap();
        out
    }

    fn snapshot(file: &SnapshotFile, key_index: serde_json::Value, key_layers: serde_json::Value) -> Snapshot {
        serde_json::from_value(serde_json::json!({
            "version": 2, "time": "2024-01-01T00:00:00Z", "host": "h", "username": "u",
            "source": {"kind": "file", "name": "dump.rdb"}, "files": [file],
            "summary": {"bytes_processed": 0, "chunks": 0, "new_chunks": 0, "new_raw_bytes": 0, "bytes_added": 0, "duration_ms": 0},
            "key_index": key_index, "key_layers": key_layers,
        }))
        .unwrap()
    }

    /// A layered index made by hand of two real files (the base's full index, runs over the
    /// records both hold byte for byte, a delta of the rest) passes check --read-data, lists
    /// and selects as the new file's full index does; wrong runs or counts are found.
    #[test]
    fn a_layered_index_of_real_files_checks_and_answers_as_a_full_one() {
        let store = Store::new();
        let (old, new) = (rdb_file(false), rdb_file(true));
        let file = store.file("dump.rdb", &new);
        let (old_recs, new_recs) = (records(&old), records(&new));
        let sorted = |recs: &[(Entry, Vec<u8>)]| {
            let mut v: Vec<Entry> = recs.iter().map(|(e, _)| e.clone()).collect();
            v.sort_by(|a, b| a.cmp_key(b.db, &b.key));
            v
        };
        let (base_top, _) = store.index(&sorted(&old_recs));
        let (full_top, _) = store.index(&sorted(&new_recs));
        // A run per record both files hold alike, joined where they follow on in both.
        let by_key: std::collections::HashMap<(u64, &[u8]), &(Entry, Vec<u8>)> = old_recs.iter().map(|r| ((r.0.db, r.0.key.as_slice()), r)).collect();
        let mut runs: Vec<Run> = Vec::new();
        let mut delta = Vec::new();
        for (e, bytes) in &new_recs {
            match by_key.get(&(e.db, e.key.as_slice())).filter(|(_, b)| b == bytes) {
                Some((o, _)) => match runs.last_mut() {
                    Some(r) if r.new + r.len == e.offset && r.base + r.len == o.offset => r.len += e.len,
                    _ => runs.push(Run { new: e.offset, base: o.offset, len: e.len }),
                },
                None => delta.push(e.clone()),
            }
        }
        delta.sort_by(|a, b| a.cmp_key(b.db, &b.key));
        let (delta_top, _) = store.index(&delta);
        assert!(runs.len() > 10 && delta.len() > 50 && delta.len() * 10 < new_recs.len(), "{} runs, {} of {} keys in the delta", runs.len(), delta.len(), new_recs.len());
        let runs = Runs(runs);
        let runs_id = store.put(&runs.encode());

        let layers = |runs_id: Id, keys: usize| {
            serde_json::json!({
                "file": "dump.rdb", "keys": keys, "delta": delta_top.to_hex(), "delta_keys": delta.len(), "runs": runs_id.to_hex(),
                "base": {"file": "old.rdb", "top": base_top.to_hex(), "keys": old_recs.len()},
            })
        };
        let layered = snapshot(&file, serde_json::Value::Null, layers(runs_id, new_recs.len()));
        let full = snapshot(&file, serde_json::json!({"file": "dump.rdb", "top": full_top.to_hex(), "keys": new_recs.len()}), serde_json::Value::Null);
        let (idx, _) = load_index(&store.repo).unwrap();
        let blobs = Blobs::new(&store.repo, &idx).unwrap();
        check_key_layers(&blobs, &layered, layered.key_layers.as_ref().unwrap(), true).unwrap();
        check_key_index(&blobs, &full, full.key_index.as_ref().unwrap(), true).unwrap();

        // Listings and selections (the records read and checked against their keys) agree.
        let (li, fi) = (KeyIndex::load(&blobs, &layered, &file).unwrap().unwrap(), KeyIndex::load(&blobs, &full, &file).unwrap().unwrap());
        let all = |index: &KeyIndex<'_>| {
            let mut out = Vec::new();
            index.for_each(&blobs, &KeyFilter::default(), None, |e| {
                out.push(e);
                Ok(true)
            })
            .unwrap();
            out
        };
        assert!(all(&li) == all(&fi), "the layered listing is the full one");
        for pattern in [&b"key:1*"[..], b"new:*", b"key:2999", b"key:61", b"key:100"] {
            let filter = KeyFilter { pattern: Some(Glob::new(pattern)), ..KeyFilter::default() };
            let (mut l, mut f) = (li.select(&blobs, &filter).unwrap().unwrap(), fi.select(&blobs, &filter).unwrap().unwrap());
            assert_eq!(l, f, "{}", String::from_utf8_lossy(pattern));
            assert_eq!(li.mini_rdb(&blobs, &mut l).unwrap(), fi.mini_rdb(&blobs, &mut f).unwrap(), "{}", String::from_utf8_lossy(pattern));
        }

        // A snapshot that counts wrong, and runs that point a byte off, are found.
        let miscounted = snapshot(&file, serde_json::Value::Null, layers(runs_id, new_recs.len() + 1));
        let err = check_key_layers(&blobs, &miscounted, miscounted.key_layers.as_ref().unwrap(), false).unwrap_err().to_string();
        assert!(err.contains("keys, the snapshot says"), "{err}");
        let mut off = runs.clone();
        off.0[3].base += 1;
        let off_id = store.put(&off.encode());
        let (idx, _) = load_index(&store.repo).unwrap();
        let blobs = Blobs::new(&store.repo, &idx).unwrap();
        let shifted = snapshot(&file, serde_json::Value::Null, layers(off_id, new_recs.len()));
        let err = check_key_layers(&blobs, &shifted, shifted.key_layers.as_ref().unwrap(), true).unwrap_err().to_string();
        assert!(err.contains("key index") && err.contains("RDB"), "{err}");
    }
}
