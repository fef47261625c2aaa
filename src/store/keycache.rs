//! Key files kept on this host per repository location, so that opening a repository over
//! the network derives the password's key while the key files are listed and the config is
//! fetched, instead of after a listing and a download (two round trips).
//!
//! A cached key file is used only if the repository still lists it, so a removed key stays
//! removed; its bytes are checked against its name, as a downloaded one's are. Key files
//! hold nothing usable without the password (Argon2id, as in the repository). Deleting the
//! cache costs only those round trips.

use std::path::{Path, PathBuf};

use super::backend::FileInfo;
use super::cache;
use super::names;

/// The cached key files of one repository location.
pub struct KeyCache {
    dir: PathBuf,
}

impl KeyCache {
    /// The cache for the repository at `location` (as [`super::Location::display`] gives
    /// it) under the cache directory `base`.
    pub fn new(base: &Path, location: &str) -> KeyCache {
        let tag = blake3::hash(location.as_bytes()).to_hex();
        KeyCache { dir: base.join("keys").join(&tag[..32]) }
    }

    /// The cached key files whose bytes still hash to their names, by name.
    pub fn load(&self) -> Vec<(String, Vec<u8>)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut names: Vec<String> = entries.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| names::is_id(n)).collect();
        names.sort();
        names.into_iter().filter_map(|n| cache::load(&self.dir.join(&n), &n).map(|b| (n, b))).collect()
    }

    /// Keeps a downloaded key file.
    pub fn store(&self, name: &str, bytes: &[u8]) {
        cache::store(&self.dir.join(name), name, bytes);
    }

    /// Drops the key files the repository no longer lists.
    pub fn keep_only(&self, listed: &[FileInfo]) {
        cache::drop_unlisted(&self.dir, listed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::crypto::KdfParams;
    use crate::error::Error;
    use crate::store::{Backend, ChunkerParams, FileKind, LocalBackend, Repository};

    const KDF: KdfParams = KdfParams { m_cost: 8, t_cost: 1, p_cost: 1 };

    #[test]
    fn a_cached_key_file_opens_the_repository_until_the_repository_drops_it() {
        let (repo_dir, cache_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(repo_dir.path()));
        let repo = Repository::init(backend.clone(), b"old", ChunkerParams::default(), KDF).unwrap();
        let old = repo.key_name().to_string();
        let cache = KeyCache::new(cache_dir.path(), "s3:http://127.0.0.1:1/bucket/a");
        assert!(cache.load().is_empty());
        Repository::open_cached(backend.clone(), b"old", Some(&cache)).unwrap();
        assert_eq!(cache.load().iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), [old.clone()], "the key file read was kept");
        // Another location has a cache of its own.
        assert!(KeyCache::new(cache_dir.path(), "s3:http://127.0.0.1:1/bucket/b").load().is_empty());

        // The repository's copy spoiled (same name): only the cached copy can open it now.
        let path = repo_dir.path().join("keys").join(&old);
        let good = std::fs::read(&path).unwrap();
        std::fs::write(&path, b"{}").unwrap();
        let opened = Repository::open_cached(backend.clone(), b"old", Some(&cache)).unwrap();
        assert_eq!(opened.key_name(), old);
        assert!(Repository::open_cached(backend.clone(), b"old", None).is_err());
        std::fs::write(&path, good).unwrap();

        // Removed from the repository, the cached key opens nothing, and is dropped.
        let new = repo.add_key(b"new", KDF).unwrap();
        backend.delete(FileKind::Key, &old).unwrap();
        match Repository::open_cached(backend.clone(), b"old", Some(&cache)) {
            Err(Error::WrongPassword(_)) => {}
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a removed key still opened the repository"),
        }
        assert!(cache.load().iter().all(|(n, _)| *n != old), "the removed key is dropped from the cache");
        assert_eq!(Repository::open_cached(backend, b"new", Some(&cache)).unwrap().key_name(), new);
    }

    #[test]
    fn a_cached_copy_that_does_not_match_its_name_is_not_used() {
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = KeyCache::new(cache_dir.path(), "x");
        let bytes = b"{\"not\": \"a key\"}".to_vec();
        let name = crate::crypto::Id::of_bytes(&bytes).to_hex();
        cache.store(&name, &bytes);
        assert_eq!(cache.load().len(), 1);
        std::fs::write(cache.dir.join(&name), b"changed").unwrap();
        assert!(cache.load().is_empty(), "a changed copy is not served");
        assert!(!cache.dir.join(&name).exists(), "and is removed");
        cache.store(&"0".repeat(64), &bytes);
        assert!(cache.load().is_empty(), "bytes are kept only under their own name");
    }
}
