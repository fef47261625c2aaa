//! Which earlier key index a backup layers its own on, and the thread that reads that
//! index's chunk facts (and the base lists of delta chunk lists, through the same lookup).
//! Any base gives a correct index (only bytes both files share are taken from it); a close
//! one gives a small delta.

use std::sync::Arc;

use crossbeam_channel::{bounded, Sender};

use crate::crypto::Id;
use crate::engine::layering::BaseStream;
use crate::engine::listdelta::{self, BaseLists};
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

/// Blobs of a base (its top table, then its chunk-facts pieces of 4096 chunks each) read at once.
const PIECES_PER_READ: usize = 32;

/// Reads `base`'s top table (for its file's header) and chunk-facts pieces, and the base
/// lists of delta chunk lists (`lists`, by input), on threads of `scope` that share one
/// lookup: the repository's dictionary is read once for both. A blob that cannot be read
/// ends its stream early: the backup then shares less with the base and writes a larger
/// delta, still exact.
pub fn stream<'s>(scope: &'s std::thread::Scope<'s, '_>, repo: &'s Repository, base: Option<&KeyIndexRef>, lists: Vec<Option<Vec<Id>>>) -> (Option<BaseStream>, Vec<Option<BaseLists>>) {
    let (header_tx, header) = bounded(1);
    let (piece_tx, pieces) = bounded(2);
    let ids: Option<Vec<Id>> = base.and_then(|base| std::iter::once(&base.top).chain(&base.facts).map(|h| Id::from_hex(h)).collect());
    let per_read = listdelta::lists_per_read(&repo.backend().read_plan());
    let (senders, streams) = listdelta::channels(lists, per_read);
    let key_stream = base.map(|_| BaseStream { header, pieces });
    if ids.is_none() && senders.is_empty() {
        return (key_stream, streams);
    }
    scope.spawn(move || {
        let key_ids: &[Id] = ids.as_deref().unwrap_or_default();
        // Delta lists need every list blob's place; a key index alone, only its own blobs'.
        let lookup = if senders.is_empty() { Lookup::just(repo, key_ids) } else { Lookup::new(repo, key_ids) };
        let Ok(blobs) = lookup.and_then(|l| Blobs::few(repo, Arc::new(l))) else { return };
        let mut senders = senders.into_iter();
        // The first lists and the first facts usually share a pack: one batch reads both
        // (it fits the stream: the collector may not take from it before the facts flow).
        let mut first_facts = None;
        let mut first_lists = None;
        if let Some((lists, tx)) = senders.next() {
            let (group, also) = (&lists[..lists.len().min(per_read)], &key_ids[..key_ids.len().min(PIECES_PER_READ)]);
            let Ok((ids, plain)) = blobs.lists_chunks_and(group, also) else { return };
            for (id, chunks) in group.iter().zip(ids) {
                let _ = tx.send((*id, chunks));
            }
            first_facts = Some(plain).filter(|p| !p.is_empty());
            first_lists = Some((lists[group.len()..].to_vec(), tx));
        }
        std::thread::scope(|inner| {
            if let Some(ids) = &ids {
                let blobs = &blobs;
                inner.spawn(move || read(blobs, ids, first_facts, &header_tx, &piece_tx));
            }
            for (lists, tx) in first_lists.into_iter().chain(senders) {
                let _ = listdelta::send_base(&blobs, &lists, &tx);
            }
        });
    });
    (key_stream, streams)
}

/// Sends the top table's header and the facts; `first`, the plaintexts of the first group
/// of `ids` when they were read already.
fn read(blobs: &Blobs<'_>, ids: &[Id], mut first: Option<Vec<Vec<u8>>>, header: &Sender<Vec<u8>>, pieces: &Sender<Vec<ChunkFact>>) -> Result<()> {
    let plan = blobs.repo.backend().read_plan();
    let stopped = || Error::Invalid("layering stopped".into());
    // A backup stores its pieces side by side: a group of them is one range read, not a
    // request each (~120 pieces a GiB), and a group's plaintexts are all that is held.
    let mut top = true;
    for group in ids.chunks(PIECES_PER_READ) {
        let plain = match first.take() {
            Some(p) => p,
            None => blobs.load_lists(group, &plan)?,
        };
        for (plain, id) in plain.iter().zip(group) {
            if std::mem::take(&mut top) {
                let top = TopTable::decode(plain, &format!("key index {}", id.short()))?;
                header.send(top.header).map_err(|_| stopped())?;
            } else {
                pieces.send(decode_facts(plain, &format!("chunk facts {}", id.short()))?).map_err(|_| stopped())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snapshot::KeyLayersRef;

    fn full(file: &str, top: &str, facts: bool) -> KeyIndexRef {
        KeyIndexRef { file: file.into(), top: top.into(), keys: 1000, facts: if facts { vec![format!("{top}-facts")] } else { Vec::new() } }
    }

    fn snapshot(host: &str, index: Option<KeyIndexRef>, layers: Option<KeyLayersRef>) -> (Id, Snapshot) {
        let mut s: Snapshot = serde_json::from_value(serde_json::json!({
            "version": 1, "time": "2026-12-02T00:00:00Z", "host": host, "username": "u",
            "source": crate::format::snapshot::SourceDesc::default(), "files": [],
            "summary": crate::format::snapshot::BackupSummary::default()
        }))
        .expect("a minimal snapshot");
        s.key_index = index;
        s.key_layers = layers;
        (Id([0; 32]), s)
    }

    fn layered(file: &str, base: KeyIndexRef, delta_keys: u64) -> KeyLayersRef {
        KeyLayersRef { file: file.into(), keys: 1000, base, delta: "d".into(), delta_keys, runs: "r".into() }
    }

    #[test]
    fn the_newest_full_index_with_facts_of_the_host_and_file_is_the_base() {
        let snaps = vec![
            snapshot("a", Some(full("dump.rdb", "old", true)), None),
            snapshot("a", Some(full("dump.rdb", "new", true)), None),
            snapshot("b", Some(full("dump.rdb", "other-host", true)), None),
            snapshot("a", Some(full("other.rdb", "other-file", true)), None),
        ];
        assert_eq!(choose(&snaps, "a", "dump.rdb").map(|r| r.top), Some("new".into()));
        // No index of that file name: the newest of any name.
        assert_eq!(choose(&snaps, "a", "x.rdb").map(|r| r.top), Some("other-file".into()));
        assert_eq!(choose(&snaps, "c", "dump.rdb"), None, "no snapshot of that host");
    }

    #[test]
    fn an_index_without_facts_or_a_large_delta_gives_no_base() {
        let no_facts = vec![snapshot("a", Some(full("dump.rdb", "t", false)), None)];
        assert_eq!(choose(&no_facts, "a", "dump.rdb"), None);

        let base = full("dump.rdb", "base", true);
        let small = vec![snapshot("a", None, Some(layered("dump.rdb", base.clone(), 250)))];
        assert_eq!(choose(&small, "a", "dump.rdb").map(|r| r.top), Some("base".into()), "a quarter of the keys is still small");
        let large = vec![snapshot("a", None, Some(layered("dump.rdb", base, 251)))];
        assert_eq!(choose(&large, "a", "dump.rdb"), None, "past a quarter: a full index again");
    }
}
