//! Which earlier key index a backup layers its own on, and the thread that reads that
//! index's chunk facts. Any base gives a correct index (only bytes both files share are
//! taken from it); a close one gives a small delta.

use std::sync::Arc;

use crossbeam_channel::{bounded, Sender};

use crate::crypto::Id;
use crate::engine::layering::BaseStream;
use crate::engine::restore::{Blobs, Lookup};
use crate::error::{Error, Result};
use crate::format::keyindex::TopTable;
use crate::format::keylayers::{decode_facts, ChunkFact};
use crate::format::snapshot::{KeyIndexRef, Snapshot};
use crate::store::Repository;

/// A layered index whose delta holds more than this share of its keys makes the next backup
/// write a full index again: lookups and listings then read one layer, not two.
const REBASE_SHARE: f64 = 0.25;

/// The base for a backup of file `file` from `host`: that of the newest snapshot of the same
/// host with an index of a file of that name (else of any name), when it has chunk facts and
/// its delta is small.
pub fn choose(snapshots: &[(Id, Snapshot)], host: &str, file: &str) -> Option<KeyIndexRef> {
    let indexed = || snapshots.iter().rev().map(|(_, s)| s).filter(|s| s.host == host && !s.is_log_segment());
    let named = |s: &&Snapshot| s.key_index.as_ref().is_some_and(|r| r.file == file) || s.key_layers.as_ref().is_some_and(|r| r.file == file);
    let newest = indexed().find(named).or_else(|| indexed().find(|s| s.key_index.is_some() || s.key_layers.is_some()))?;
    if let Some(r) = &newest.key_layers {
        let small = (r.delta_keys as f64) <= REBASE_SHARE * r.keys.max(1) as f64;
        return (small && !r.base.facts.is_empty()).then(|| r.base.clone());
    }
    newest.key_index.clone().filter(|r| !r.facts.is_empty())
}

/// Reads `base`'s top table (for its file's header) and chunk-facts pieces on a thread of
/// `scope`, into the stream a layering reads. A blob that cannot be read ends the stream
/// early: the backup then shares less with the base and writes a larger delta, still exact.
pub fn stream<'s>(scope: &'s std::thread::Scope<'s, '_>, repo: &'s Repository, base: &KeyIndexRef) -> BaseStream {
    let (header_tx, header) = bounded(1);
    let (piece_tx, pieces) = bounded(2);
    let ids: Option<Vec<Id>> = std::iter::once(&base.top).chain(&base.facts).map(|h| Id::from_hex(h)).collect();
    scope.spawn(move || {
        if let Some(ids) = ids {
            let _ = read(repo, &ids, &header_tx, &piece_tx);
        }
    });
    BaseStream { header, pieces }
}

fn read(repo: &Repository, ids: &[Id], header: &Sender<Vec<u8>>, pieces: &Sender<Vec<ChunkFact>>) -> Result<()> {
    let blobs = Blobs::few(repo, Arc::new(Lookup::just(repo, ids)?))?;
    let (top, facts) = ids.split_first().ok_or_else(|| Error::Invalid("no base top table".into()))?;
    let what = format!("key index {}", top.short());
    let top = TopTable::decode(&blobs.load(top)?, &what)?;
    header.send(top.header).map_err(|_| Error::Invalid("layering stopped".into()))?;
    for id in facts {
        let piece = decode_facts(&blobs.load(id)?, &format!("chunk facts {}", id.short()))?;
        pieces.send(piece).map_err(|_| Error::Invalid("layering stopped".into()))?;
    }
    Ok(())
}
