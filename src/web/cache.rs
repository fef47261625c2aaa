//! Each served repository's index, kept between requests so a key page does not read every
//! index file again: reloaded when the repository's index files change (a backup, prune or
//! follower commit writes new ones) and dropped after [`IDLE`] unused, so an idle server
//! holds no index at all.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::restore::load_index;
use crate::error::Result;
use crate::format::index::Index;
use crate::store::{FileKind, Repository};

/// How long an unused index stays in memory.
pub const IDLE: Duration = Duration::from_secs(300);

/// The last loaded index of one repository, if any.
#[derive(Default)]
pub struct IndexCache {
    slot: Mutex<Option<Cached>>,
}

struct Cached {
    /// The index files it was loaded from, sorted.
    files: Vec<String>,
    index: Arc<Index>,
    used: Instant,
}

impl IndexCache {
    /// The repository's index: the kept one while the index files are those it was loaded
    /// from (one listing of `index/`), else loaded again. Requests wait for one load.
    pub fn get(&self, repo: &Repository) -> Result<Arc<Index>> {
        let mut names: Vec<String> = repo.backend().list(FileKind::Index)?.into_iter().map(|f| f.name).collect();
        names.sort();
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = slot.as_mut().filter(|c| c.files == names) {
            c.used = Instant::now();
            return Ok(c.index.clone());
        }
        // The old one is dropped before the new one is built: memory holds one index.
        *slot = None;
        let (index, _) = load_index(repo)?;
        let mut files = index.files.clone();
        files.sort();
        let index = Arc::new(index);
        *slot = Some(Cached { files, index: index.clone(), used: Instant::now() });
        Ok(index)
    }

    /// Drops the index if unused for `idle`.
    pub fn trim(&self, idle: Duration) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|c| c.used.elapsed() >= idle) {
            *slot = None;
        }
    }
}
