//! Checks on RDB bytes and parsed RDB items.

use rdbvault::rdb::{Item, Record};

/// Assert the bytes look like a whole RDB: `REDIS00` header, 0xFF opcode then an 8-byte checksum.
pub fn assert_valid_rdb(rdb: &[u8]) {
    assert!(rdb.len() > 18, "RDB too short: {} bytes", rdb.len());
    assert!(rdb.starts_with(b"REDIS00"), "bad header {:?}", &rdb[..9]);
    assert_eq!(rdb[rdb.len() - 9], 0xFF, "no EOF opcode before the checksum");
}

/// Count non-overlapping occurrences of `needle` in `hay`.
pub fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// The key records among parsed items (skipping aux fields, db selectors, functions...).
pub fn records(items: &[Item]) -> Vec<&Record> {
    items.iter().filter_map(|i| if let Item::Record(r) = i { Some(r) } else { None }).collect()
}
