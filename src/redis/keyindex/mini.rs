//! A small RDB made of a few records cut out of a snapshot's RDB: the header, a SELECTDB
//! before each run of one database, the records' bytes as stored, and EOF with a zero
//! checksum ("not computed"; every byte was verified against its chunk id instead).

use crate::engine::range::RangeReader;
use crate::error::{Error, Result};
use crate::format::keyindex::Entry;
use crate::rdb::{self, quoted, Item, RdbReader, ReadOptions};

/// The RDB version in a 9-byte header (`REDISnnnn` or `VALKEYnnn`).
pub fn version(header: &[u8]) -> Option<u16> {
    let digits = header.strip_prefix(b"REDIS").or_else(|| header.strip_prefix(b"VALKEY"))?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The small RDB of `entries` (sorted here into file order), read through `range`; fails,
/// naming the key, if a record there is not the entry's key (`what` names the index).
pub fn build(range: &mut RangeReader<'_, '_>, header: &[u8], entries: &mut [Entry], what: &str) -> Result<Vec<u8>> {
    let v = version(header).ok_or_else(|| Error::corrupt(what, "the stored RDB header is not one"))?;
    entries.sort_by_key(|e| e.offset);
    let mut out = header.to_vec();
    let mut db = None;
    for e in entries.iter() {
        if db != Some(e.db) {
            out.push(0xFE);
            rdb::put_len(&mut out, e.db);
            db = Some(e.db);
        }
        range.read(e.offset, e.len, &mut out)?;
    }
    out.push(0xFF);
    if v >= 5 {
        out.extend_from_slice(&[0; 8]);
    }
    // The records must be the entries' keys, in order, and nothing else.
    let mismatch = |e: &Entry, found: &str| {
        Error::corrupt(what, format!("key {}:{} points at {found}; run `rdbvault check --read-data`", e.db, quoted(&e.key)))
    };
    let mut rdb = RdbReader::with_options(out.as_slice(), ReadOptions::walk_only()).map_err(|err| Error::rdb(what, err))?;
    let mut expect = entries.iter();
    loop {
        let item = rdb.next_item().map_err(|err| match expect.clone().next() {
            Some(e) => mismatch(e, &format!("bytes that are not a record ({err})")),
            None => Error::rdb(what, err),
        })?;
        match (item, expect.clone().next()) {
            (Some(Item::SelectDb(_)), _) => {}
            (Some(Item::Record(r)), Some(e)) if r.db == e.db && r.key == e.key => {
                expect.next();
            }
            (Some(Item::Record(r)), Some(e)) => return Err(mismatch(e, &format!("key {}:{}", r.db, quoted(&r.key)))),
            (None, None) => return Ok(out),
            (_, Some(e)) => return Err(mismatch(e, "something that is not a record")),
            (Some(_), None) => return Err(Error::corrupt(what, "a record range holds more than one record")),
        }
    }
}

