//! Copying snapshots from one repository to another (any backends).
//!
//! Chunk ids are keyed hashes and the chunker's cut points derive from the same key,
//! so a chunk id of one repository means nothing in another. A snapshot is therefore
//! copied by streaming its files out of the source (restored, each checked against its
//! BLAKE3) into the destination's own backup pipeline: the destination cuts and hashes
//! them with its keys, so the copy deduplicates against everything it already holds and
//! only chunks it lacks are uploaded, sealed with its keys. Between two repositories
//! that share the id key (one cloned from the other) the ids come out the same.
//!
//! The copy keeps the snapshot's time, host, tags, source and facts, and records the
//! source snapshot's original id, so a snapshot already in the destination (copied
//! before, or copied from there) is skipped.

use std::collections::HashMap;

use crate::crypto::Id;
use crate::engine::backup::{self, BackupOptions, Input};
use crate::engine::restore::{with_readers, Blobs, RestoreOptions};
use crate::error::{Error, Result};
use crate::format::snapshot::{BackupSummary, Listing, Snapshot};
use crate::store::Repository;

/// What happened to one source snapshot.
#[derive(Debug, Clone)]
pub struct Copied {
    /// The snapshot in the source.
    pub source: Id,
    /// Its copy in the destination (the one already there, when skipped).
    pub copy: Id,
    /// Whether it was already in the destination.
    pub skipped: bool,
    /// What writing the copy stored (all zero when skipped).
    pub summary: BackupSummary,
}

/// The id a snapshot was first taken as: its own, or the one its copy records.
pub fn original_id(id: &Id, snap: &Snapshot) -> String {
    snap.original.clone().unwrap_or_else(|| id.to_hex())
}

/// Copies `snaps` (read through `blobs`, the source) into `dest`, oldest first, skipping
/// those already there; `each` is told of every one as it is done.
pub fn copy(
    blobs: &Blobs<'_>,
    snaps: &[(Id, Snapshot)],
    dest: &Repository,
    restore: &RestoreOptions,
    opts: &BackupOptions,
    mut each: impl FnMut(&Copied),
) -> Result<Vec<Copied>> {
    let mut present: HashMap<String, Id> = HashMap::new();
    for (id, snap) in Listing::load(dest)?.snapshots {
        present.insert(original_id(&id, &snap), id);
        present.insert(id.to_hex(), id);
    }
    let mut order: Vec<&(Id, Snapshot)> = snaps.iter().collect();
    order.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    let mut out = Vec::new();
    for (id, snap) in order {
        let original = original_id(id, snap);
        let done = match present.get(&original).or_else(|| present.get(&id.to_hex())) {
            Some(copy) => Copied { source: *id, copy: *copy, skipped: true, summary: BackupSummary::default() },
            None => {
                let (copy, summary) = copy_one(blobs, id, snap, &original, dest, restore, opts)?;
                present.insert(original, copy);
                Copied { source: *id, copy, skipped: false, summary }
            }
        };
        each(&done);
        out.push(done);
    }
    Ok(out)
}

/// Streams one snapshot's files into a backup of `dest` that carries its metadata;
/// returns the copy's id and what writing it stored (the copy keeps the source's summary).
fn copy_one(
    blobs: &Blobs<'_>,
    id: &Id,
    snap: &Snapshot,
    original: &str,
    dest: &Repository,
    restore: &RestoreOptions,
    opts: &BackupOptions,
) -> Result<(Id, BackupSummary)> {
    // Stored as they are: the facts come from the source snapshot, not a second parse.
    let opts = BackupOptions { raw: true, ..opts.clone() };
    let mut stored = BackupSummary::default();
    let (copy, _) = with_readers(blobs, &snap.files, restore, |readers| {
        let inputs = snap
            .files
            .iter()
            .zip(readers)
            .map(|(f, r)| Input::new(f.name.clone(), Box::new(r)))
            .collect::<Vec<_>>();
        backup::run_with(dest, inputs, &opts, |made| {
            for (new, old) in made.files.iter().zip(&snap.files) {
                if new.blake3 != old.blake3 || new.size != old.size {
                    return Err(Error::corrupt(
                        format!("snapshot {} file {}", id.short(), old.name),
                        "its copy does not hash to the recorded BLAKE3",
                    ));
                }
            }
            stored = made.summary.clone();
            let files = std::mem::take(&mut made.files);
            // The copy's own key index, full or layered: the source's names blobs of the source.
            let (key_index, key_layers) = (made.key_index.take(), made.key_layers.take());
            *made = snap.clone();
            made.files = files;
            (made.key_index, made.key_layers) = (key_index, key_layers);
            made.original = Some(original.to_string());
            Ok(())
        })
    })?;
    Ok((copy, stored))
}
