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

/// Blobs of a base (its top table, then its chunk-facts pieces of 4096 chunks each) read at once.
const PIECES_PER_READ: usize = 32;

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
    let plan = repo.backend().read_plan();
    let stopped = || Error::Invalid("layering stopped".into());
    // A backup stores its pieces side by side: a group of them is one range read, not a
    // request each (~120 pieces a GiB), and a group's plaintexts are all that is held.
    let mut first = true;
    for group in ids.chunks(PIECES_PER_READ) {
        for (plain, id) in blobs.load_lists(group, &plan)?.iter().zip(group) {
            if std::mem::take(&mut first) {
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
