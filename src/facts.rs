//! Reads Redis facts (versions, keys per db, checksum) from an RDB while it is
//! backed up, on a thread of its own fed with the same chunks the backup
//! stores, so a damaged dump is noticed at backup time, not at restore time.

use std::io::Read;
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::rdb::{self, RdbError};
use crate::snapshot::RedisFacts;

/// A batch of consecutive chunks, shared with the backup workers.
pub type Batch = Arc<crate::chunker::Chunks>;

/// Feeds batches to the parser; dropping it ends the stream.
pub struct FactsFeed {
    tx: Option<Sender<Batch>>,
}

impl FactsFeed {
    /// Hands a batch to the parser (ignored once the parser has stopped).
    pub fn push(&mut self, batch: &Batch) {
        if let Some(tx) = &self.tx {
            if tx.send(batch.clone()).is_err() {
                self.tx = None;
            }
        }
    }

    /// Marks the end of the input.
    pub fn finish(&mut self) {
        self.tx = None;
    }
}

/// Starts the parser in `scope`; `name` is the input's file name.
pub fn spawn<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: String,
) -> (FactsFeed, std::thread::ScopedJoinHandle<'scope, Option<RedisFacts>>) {
    let (tx, rx) = bounded::<Batch>(8);
    let handle = scope.spawn(move || parse(ChunkReader { rx, cur: None, pos: 0 }, &name));
    (FactsFeed { tx: Some(tx) }, handle)
}

/// `None` for input that is not an RDB (unless it is named like one).
fn parse(mut reader: ChunkReader, name: &str) -> Option<RedisFacts> {
    let result = rdb::summarize(&mut reader);
    // Drain so the feeder never blocks on a parser that stopped early.
    let _ = std::io::copy(&mut reader, &mut std::io::sink());
    match result {
        Ok(s) => {
            let mut keys_per_db = std::collections::BTreeMap::new();
            for (db, d) in &s.dbs {
                keys_per_db.insert(*db as u32, d.keys);
            }
            Some(RedisFacts {
                rdb_version: Some(s.rdb_version as u32),
                redis_version: s.aux.get("redis-ver").cloned(),
                keys_per_db,
                keys: Some(s.keys),
                keys_with_ttl: Some(s.keys_with_ttl),
                rdb_error: None,
            })
        }
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
