//! Each served repository's blob locations, kept between requests so that a key page does
//! not search every index file again for the key index of a snapshot: a [`Lookup`] (the
//! chunk lists, dictionaries and the blobs requests asked for, not the whole index),
//! started again when the repository's index files change (a backup, prune or follower
//! commit writes new ones) or it grew past [`MAX_FOUND`], and dropped after [`IDLE`] unused.
//! Requests that read whole snapshots load the whole index for themselves and drop it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::crypto::Id;
use crate::engine::restore::Lookup;
use crate::error::Result;
use crate::store::{FileKind, Repository};

/// How long unused locations stay in memory.
pub const IDLE: Duration = Duration::from_secs(300);

/// Most blobs a kept [`Lookup`] holds (~45 bytes each) before it starts again.
pub const MAX_FOUND: usize = 200_000;

/// The kept lookup of one repository, if any.
#[derive(Default)]
pub struct IndexCache {
    slot: Mutex<Option<Cached>>,
}

struct Cached {
    /// The index files it searched, sorted.
    files: Vec<String>,
    lookup: Arc<Lookup>,
    used: Instant,
}

impl IndexCache {
    /// The repository's lookup: the kept one while the index files are those it searched
    /// (one listing of `index/`), else a new one that finds `first` (a key-index top table)
    /// in its first search. Requests wait for one search.
    pub fn get(&self, repo: &Repository, first: &[Id]) -> Result<Arc<Lookup>> {
        let mut names: Vec<String> = repo.backend().list(FileKind::Index)?.into_iter().map(|f| f.name).collect();
        names.sort();
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = slot.as_mut().filter(|c| c.files == names && c.lookup.len() <= MAX_FOUND) {
            c.used = Instant::now();
            return Ok(c.lookup.clone());
        }
        *slot = None;
        let lookup = Arc::new(Lookup::new(repo, first)?);
        *slot = Some(Cached { files: names, lookup: lookup.clone(), used: Instant::now() });
        Ok(lookup)
    }

    /// Drops the lookup if unused for `idle`.
    pub fn trim(&self, idle: Duration) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|c| c.used.elapsed() >= idle) {
            *slot = None;
            crate::host::release_memory();
        }
    }
}
