//! Reads Redis facts (versions, keys per db, checksum) from an RDB while it is
//! backed up, on a thread of its own fed with the same chunks the backup
//! stores, so a damaged dump is noticed at backup time, not at restore time.

use std::io::Read;
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::crypto::Id;
use crate::format::keyindex::{Builder, EntryRef, TopTable};
use crate::rdb::{self, RdbError};
use crate::format::snapshot::RedisFacts;

/// A batch of consecutive chunks, shared with the backup workers.
pub type Batch = Arc<crate::engine::chunker::Chunks>;

/// Feeds batches to the parser; dropping it ends the stream.
pub struct FactsFeed {
    tx: Option<Sender<Batch>>,
}

impl FactsFeed {
    /// Hands a batch to the parser; false once the parser has stopped (a strict parser
    /// stops at the first error, so the caller can stop reading a stream it will refuse).
    pub fn push(&mut self, batch: &Batch) -> bool {
        if let Some(tx) = &self.tx {
            if tx.send(batch.clone()).is_err() {
                self.tx = None;
            }
        }
        self.tx.is_some()
    }

    /// Marks the end of the input.
    pub fn finish(&mut self) {
        self.tx = None;
    }
}

/// What the parser found: the facts, or why the stream is not a complete RDB.
pub type Parsed = Result<RedisFacts, RdbError>;

/// Stores one key index blob and returns its id.
pub type StoreBlob<'scope> = Box<dyn FnMut(&[u8]) -> crate::error::Result<Id> + Send + 'scope>;

/// What the parser thread returns: the facts, and the key index's top table (pages
/// stored, chunk-list starts still empty) when one was asked for and the RDB is complete.
pub struct Outcome {
    pub parsed: Parsed,
    pub index: Option<crate::error::Result<TopTable>>,
}

/// Starts the parser in `scope`. A `strict` parser stops reading at the first error (the
/// backup will be refused); otherwise it reads to the end so the feeder never blocks.
/// With `index`, the keys are also collected and stored as a key index through it.
pub fn spawn<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    strict: bool,
    index: Option<StoreBlob<'scope>>,
) -> (FactsFeed, std::thread::ScopedJoinHandle<'scope, Outcome>) {
    let (tx, rx) = bounded::<Batch>(8);
    let handle = scope.spawn(move || parse(ChunkReader { rx, cur: None, pos: 0 }, strict, index));
    (FactsFeed { tx: Some(tx) }, handle)
}

/// Key index entries of the records the parser walks; the first error stops it.
pub struct IndexFeed {
    builder: Option<Builder>,
    failed: Option<crate::error::Error>,
}

impl IndexFeed {
    pub fn new() -> IndexFeed {
        IndexFeed { builder: Some(Builder::new()), failed: None }
    }

    /// Adds the record `rec`, which ends at file offset `end`.
    pub fn push(&mut self, rec: &rdb::Record, end: u64) {
        let Some(b) = self.builder.as_mut() else { return };
        let entry = EntryRef { db: rec.db, key: &rec.key, rdb_type: rec.rdb_type, expire_ms: rec.expire_ms, offset: rec.offset, len: end - rec.offset };
        if let Err(e) = b.push(entry) {
            self.failed = Some(e);
            self.builder = None;
        }
    }

    /// The builder holding every entry, or the error that stopped it.
    pub fn finish(self) -> crate::error::Result<Builder> {
        match (self.failed, self.builder) {
            (Some(e), _) => Err(e),
            (None, b) => Ok(b.unwrap_or_default()),
        }
    }
}

impl Default for IndexFeed {
    fn default() -> Self {
        IndexFeed::new()
    }
}

fn parse(mut reader: ChunkReader, strict: bool, store: Option<StoreBlob<'_>>) -> Outcome {
    let mut feed = store.as_ref().map(|_| IndexFeed::new());
    let result = rdb::summarize_each(&mut reader, |rec, end| {
        if let Some(f) = feed.as_mut() {
            f.push(rec, end);
        }
    });
    if result.is_ok() || !strict {
        // Drain (bytes after the RDB, or the rest of a damaged one kept with --raw).
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    }
    let index = match (&result, feed, store) {
        (Ok(s), Some(feed), Some(store)) => Some(feed.finish().and_then(|b| b.finish(store)).map(|mut top| {
            top.header = header(s.rdb_version);
            top
        })),
        _ => None,
    };
    Outcome { parsed: facts_of(result), index }
}

/// The 9 header bytes of an RDB of `version`.
fn header(version: u16) -> Vec<u8> {
    if version >= rdb::VALKEY_MIN_VERSION {
        format!("VALKEY{version:03}").into_bytes()
    } else {
        format!("REDIS{version:04}").into_bytes()
    }
}

fn facts_of(result: Result<rdb::Summary, RdbError>) -> Parsed {
    let s = result?;
    let mut keys_per_db = std::collections::BTreeMap::new();
    for (db, d) in &s.dbs {
        keys_per_db.insert(*db as u32, d.keys);
    }
    Ok(RedisFacts {
        rdb_version: Some(s.rdb_version as u32),
        redis_version: s.aux.get("redis-ver").cloned(),
        keys_per_db,
        keys: Some(s.keys),
        keys_with_ttl: Some(s.keys_with_ttl),
        file: None,
        rdb_error: None,
    })
}

/// The facts a snapshot stored as it is (`--raw`) records: `None` for input that is not
/// an RDB (unless it is named like one), the error for a damaged one.
pub fn recorded(name: &str, parsed: Parsed) -> Option<RedisFacts> {
    match parsed {
        Ok(f) => Some(f),
        Err(RdbError::BadHeader(e)) => name
            .ends_with(".rdb")
            .then(|| RedisFacts { rdb_error: Some(format!("not an RDB file: {e}")), ..RedisFacts::default() }),
        Err(e) => Some(RedisFacts { rdb_error: Some(e.to_string()), ..RedisFacts::default() }),
    }
}

/// A `Read` over the batches sent by the backup's reader.
struct ChunkReader {
    rx: Receiver<Batch>,
    cur: Option<Batch>,
    /// Bytes of `cur` already read.
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(batch) = &self.cur {
                let rest = &batch.bytes()[self.pos..];
                if !rest.is_empty() {
                    let n = rest.len().min(buf.len());
                    buf[..n].copy_from_slice(&rest[..n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            match self.rx.recv() {
                Ok(b) => {
                    self.cur = Some(b);
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::chunker::Chunker;
    use crate::store::ChunkerParams;

    /// A version-9 RDB with `n` string keys holding 60-byte values, and its checksum.
    fn rdb(n: u32) -> Vec<u8> {
        let mut b = b"REDIS0009".to_vec();
        for i in 0..n {
            let key = format!("key:{i}");
            b.push(0);
            b.push(key.len() as u8);
            b.extend_from_slice(key.as_bytes());
            b.push(60);
            b.extend((0..60u32).map(|j| (i.wrapping_mul(31) ^ j) as u8));
        }
        b.push(0xFF);
        let crc = rdb::crc64(0, &b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Facts as a backup with `--raw` gathers them: from the chunker's shared batches.
    fn facts_of(data: &[u8]) -> Option<RedisFacts> {
        std::thread::scope(|s| {
            let (mut feed, handle) = spawn(s, false, None);
            for batch in Chunker::new(data, ChunkerParams::default(), 3).batch_bytes(100_000) {
                feed.push(&Arc::new(batch.expect("reading a slice")));
            }
            feed.finish();
            recorded("dump.rdb", handle.join().expect("parser thread").parsed)
        })
    }

    /// Many batches and parser buffers: keys are counted, and one flipped byte inside a value
    /// (which the structure cannot reveal) fails the CRC.
    #[test]
    fn batches_give_facts_and_the_checksum_is_verified() {
        let good = rdb(30_000);
        let facts = facts_of(&good).expect("facts");
        assert_eq!(facts.keys, Some(30_000));
        assert_eq!(facts.rdb_error, None);

        let mut bad = good.clone();
        let key = b"key:20000";
        let at = good.windows(key.len()).position(|w| w == key).expect("key present") + key.len() + 1 + 30;
        bad[at] ^= 0x40;
        let facts = facts_of(&bad).expect("facts");
        let err = facts.rdb_error.expect("checksum error");
        assert!(err.to_lowercase().contains("checksum") || err.to_lowercase().contains("crc"), "{err}");
    }

    /// A strict parser stops taking batches at the first error, so the backup can stop
    /// reading; the error names the offset.
    #[test]
    fn a_strict_parser_stops_at_the_first_error() {
        let mut bad = rdb(30_000);
        bad[77] = 0x77; // the second key's type byte: no such type
        let (pushed, total, parsed) = std::thread::scope(|s| {
            let (mut feed, handle) = spawn(s, true, None);
            let batches: Vec<_> = Chunker::new(bad.as_slice(), ChunkerParams::default(), 3).batch_bytes(10_000).collect();
            let total = batches.len();
            let mut pushed = 0;
            for batch in batches {
                pushed += 1;
                if !feed.push(&Arc::new(batch.expect("reading a slice"))) {
                    break;
                }
            }
            (pushed, total, handle.join().expect("parser thread").parsed)
        });
        let err = parsed.expect_err("unknown opcode").to_string();
        assert!(err.contains("byte"), "{err}");
        assert!(pushed < total, "the feed kept taking batches after the error ({pushed} of {total})");
    }
}
