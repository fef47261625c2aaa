//! Changing a snapshot's tags (restic's `tag`): the changed snapshot is written as a new
//! file, then the old one is removed, so a crash leaves the old or both, never neither.

use serde::Serialize;

use crate::crypto::Id;
use crate::error::Result;
use crate::format::snapshot::Snapshot;
use crate::store::lock::LockGuard;
use crate::store::{FileKind, Repository};

/// How the tags change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagChange {
    /// Replace all tags with these (applied first).
    pub set: Option<Vec<String>>,
    /// Tags to add.
    pub add: Vec<String>,
    /// Tags to remove.
    pub remove: Vec<String>,
}

impl TagChange {
    /// The tags after the change (order kept, no duplicates).
    pub fn apply(&self, tags: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let base = self.set.as_deref().unwrap_or(tags);
        for t in base.iter().chain(&self.add) {
            if !out.contains(t) && !self.remove.contains(t) {
                out.push(t.clone());
            }
        }
        out
    }
}

/// One snapshot whose tags changed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Retagged {
    /// The snapshot file that was replaced.
    pub old_id: String,
    /// The new snapshot file.
    pub new_id: String,
    /// Its tags now.
    pub tags: Vec<String>,
}

/// Applies `change` to `snap` (stored as `id`); returns `None` when its tags stay the same.
/// The new snapshot records the first snapshot of the chain as `original`.
pub fn retag(repo: &Repository, lock: &LockGuard, id: &Id, snap: &Snapshot, change: &TagChange) -> Result<Option<Retagged>> {
    lock.require_exclusive("tag")?;
    let tags = change.apply(&snap.tags);
    if tags == snap.tags {
        return Ok(None);
    }
    let mut new = snap.clone();
    new.tags = tags.clone();
    new.original = Some(snap.original.clone().unwrap_or_else(|| id.to_hex()));
    let new_id = new.save(repo)?;
    repo.backend().delete(FileKind::Snapshot, &id.to_hex())?;
    Ok(Some(Retagged { old_id: id.to_hex(), new_id: new_id.to_hex(), tags }))
}
