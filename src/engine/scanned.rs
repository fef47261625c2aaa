//! What the chunker's record scanner saw of an RDB, handed on with each batch so the facts
//! thread counts keys and builds the key index without walking the file a second time.
//!
//! Uses only `rdb`: the chunker fills it, the facts thread reads it.

use crate::rdb::records::{aux_pair, selected_db, Area, Event, KeyRecord};
use crate::rdb::RdbError;

/// One record, its key in [`Scanned::keys`].
#[derive(Debug, Clone, Copy)]
struct Seen {
    offset: u64,
    len: u64,
    db: u64,
    key_len: usize,
    rdb_type: u8,
    expire_ms: Option<i64>,
}

/// The scan's findings since the last batch was handed out, in file order.
#[derive(Debug, Default)]
pub struct Scanned {
    records: Vec<Seen>,
    keys: Vec<u8>,
    /// AUX fields (`redis-ver`, ...).
    pub aux: Vec<(Vec<u8>, Vec<u8>)>,
    /// Databases a RESIZEDB hint named (a summary lists them even without keys).
    pub hinted_dbs: Vec<u64>,
    /// RDB version, once the header was read.
    pub version: u16,
    /// File offset just past the EOF item, once it was read.
    pub eof_end: Option<u64>,
    /// Set once the scan ended: `Ok` at the RDB's end, else why the bytes are no RDB.
    pub end: Option<Result<(), RdbError>>,
    /// Database of the last SELECTDB, for the next RESIZEDB.
    db: u64,
}

impl Scanned {
    /// Notes one event; `bytes` are the item's bytes when they are at hand. They are unless a
    /// non-record item was longer than the largest chunk: an AUX field that long (Redis writes
    /// a few dozen bytes) is left out of the facts; it stays in the backed-up bytes.
    pub fn note(&mut self, e: &Event<'_>, bytes: Option<&[u8]>) {
        match *e {
            Event::Record(r) => {
                self.keys.extend_from_slice(r.key);
                self.records.push(Seen {
                    offset: r.offset,
                    len: r.len,
                    db: r.db,
                    key_len: r.key.len(),
                    rdb_type: r.rdb_type,
                    expire_ms: r.expire_ms,
                });
            }
            Event::Boundary { offset, len, area } => match area {
                Area::Aux => self.aux.extend(bytes.and_then(aux_pair)),
                Area::SelectDb => self.db = bytes.and_then(selected_db).unwrap_or(self.db),
                Area::ResizeDb => self.hinted_dbs.push(self.db),
                Area::Eof => self.eof_end = Some(offset + len),
                _ => {}
            },
        }
    }

    /// Takes what was noted so far, keeping the scan's running state (version, database).
    pub fn take(&mut self) -> Scanned {
        let (db, version) = (self.db, self.version);
        let taken = std::mem::take(self);
        self.db = db;
        self.version = version;
        taken
    }

    /// The records noted, in file order.
    pub fn records(&self) -> impl Iterator<Item = KeyRecord<'_>> + '_ {
        let mut at = 0usize;
        self.records.iter().map(move |s| {
            let key = &self.keys[at..at + s.key_len];
            at += s.key_len;
            KeyRecord { offset: s.offset, len: s.len, db: s.db, key, rdb_type: s.rdb_type, expire_ms: s.expire_ms }
        })
    }
}
