//! A local cache of a network repository's index and snapshot files, so `snapshots`,
//! `inspect` and an incremental backup do not download every one of them each time.
//!
//! A repository file's name is the BLAKE3 hash of its sealed bytes, so a cached copy is
//! checked against its name on every read; a copy that does not match is dropped and the
//! file fetched again. The cache holds the files as the repository does (sealed), is
//! written atomically (temp file, rename), and may be deleted at any time: it is only
//! ever a copy. Copies of files gone from the repository are dropped when the kind is listed.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::backend::{Backend, FileInfo, FileKind, Foreign, ReadPlan, StagedFile, TempFile};
use super::names;
use crate::crypto::Id;
use crate::error::Result;

/// `$XDG_CACHE_HOME/rdbvault`, else `$HOME/.cache/rdbvault`; `None` without either.
pub fn default_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| Path::new(v).is_absolute()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache"),
    };
    Some(base.join("rdbvault"))
}

/// A backend that serves index and snapshot files from a local directory when it can.
pub struct CachedBackend {
    inner: Arc<dyn Backend>,
    /// `<cache dir>/<repository id>`.
    dir: PathBuf,
}

impl CachedBackend {
    /// Caches `inner`'s index and snapshot files under `dir` (created when first needed).
    pub fn new(inner: Arc<dyn Backend>, dir: PathBuf) -> CachedBackend {
        CachedBackend { inner, dir }
    }

    /// Where a cached file lives; only index and snapshot files, only by their own names.
    fn path(&self, kind: FileKind, name: &str) -> Option<PathBuf> {
        let cached = matches!(kind, FileKind::Index | FileKind::Snapshot) && names::is_id(name);
        cached.then(|| self.dir.join(kind.dir()).join(name))
    }

    /// Drops the copies of files of `kind` the repository no longer lists.
    fn drop_gone(&self, kind: FileKind, listed: &[FileInfo]) {
        drop_unlisted(&self.dir.join(kind.dir()), listed);
    }
}

/// The cached copy at `path`, if there is one and its bytes still hash to `name` (else
/// it is removed).
pub(crate) fn load(path: &Path, name: &str) -> Option<Vec<u8>> {
    let data = std::fs::read(path).ok()?;
    if Id::of_bytes(&data).to_hex() == name {
        return Some(data);
    }
    let _ = std::fs::remove_file(path);
    None
}

/// Keeps a copy of a file whose bytes hash to its name, written under a temporary name and
/// renamed; a cache that cannot be written only costs the next download, so failures are
/// ignored.
pub(crate) fn store(path: &Path, name: &str, data: &[u8]) {
    if Id::of_bytes(data).to_hex() != name {
        return;
    }
    let Some(dir) = path.parent() else { return };
    if std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).is_err() {
        return;
    }
    let tmp = dir.join(format!(".tmp-{}", hex::encode(crate::crypto::random_bytes::<8>())));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(data))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Removes the files of `dir` named like repository files that `listed` does not name.
pub(crate) fn drop_unlisted(dir: &Path, listed: &[FileInfo]) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let live: std::collections::HashSet<&str> = listed.iter().map(|f| f.name.as_str()).collect();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if names::is_id(name) && !live.contains(name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Backend for CachedBackend {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> Result<()> {
        self.inner.create()
    }
    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>> {
        let listed = self.inner.list(kind)?;
        if matches!(kind, FileKind::Index | FileKind::Snapshot) {
            self.drop_gone(kind, &listed);
        }
        Ok(listed)
    }
    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let Some(path) = self.path(kind, name) else { return self.inner.read(kind, name) };
        if let Some(data) = load(&path, name) {
            return Ok(data);
        }
        let data = self.inner.read(kind, name)?;
        store(&path, name, &data);
        Ok(data)
    }
    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.inner.read_range(kind, name, offset, len)
    }
    fn read_range_into(&self, kind: FileKind, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.inner.read_range_into(kind, name, offset, buf)
    }
    fn drop_cached(&self, kind: FileKind, name: &str, offset: u64, len: u64) {
        self.inner.drop_cached(kind, name, offset, len)
    }
    fn will_read(&self, kind: FileKind, name: &str, offset: u64, len: u64) {
        self.inner.will_read(kind, name, offset, len)
    }
    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        self.inner.size(kind, name)
    }
    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.inner.write(kind, name, data)?;
        if let Some(path) = self.path(kind, name) {
            store(&path, name, data);
        }
        Ok(())
    }
    fn create_staged(&self, kind: FileKind) -> Result<Box<dyn StagedFile + '_>> {
        self.inner.create_staged(kind)
    }
    fn prefetch(&self, kind: FileKind) {
        self.inner.prefetch(kind)
    }
    fn upload_threads(&self) -> usize {
        self.inner.upload_threads()
    }
    fn pack_bytes(&self) -> Option<usize> {
        self.inner.pack_bytes()
    }
    fn read_plan(&self) -> ReadPlan {
        self.inner.read_plan()
    }
    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        self.inner.delete(kind, name)?;
        if let Some(path) = self.path(kind, name) {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }
    fn exists(&self, kind: FileKind, name: &str) -> Result<bool> {
        self.inner.exists(kind, name)
    }
    fn list_staged(&self) -> Result<Vec<TempFile>> {
        self.inner.list_staged()
    }
    fn delete_staged(&self, file: &TempFile) -> Result<()> {
        self.inner.delete_staged(file)
    }
    fn foreign(&self) -> Result<Vec<Foreign>> {
        self.inner.foreign()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalBackend;

    #[test]
    fn copies_are_checked_against_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Backend> = Arc::new(LocalBackend::new(&dir.path().join("repo")));
        inner.create().unwrap();
        let cache = CachedBackend::new(inner.clone(), dir.path().join("cache"));
        let data = b"sealed bytes".to_vec();
        let name = Id::of_bytes(&data).to_hex();
        cache.write(FileKind::Index, &name, &data).unwrap();
        let copy = dir.path().join("cache/index").join(&name);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(copy.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::write(&copy, b"tampered").unwrap();
        assert_eq!(cache.read(FileKind::Index, &name).unwrap(), data, "a wrong copy is fetched again");
        assert_eq!(std::fs::read(&copy).unwrap(), data, "and replaced");
        inner.delete(FileKind::Index, &name).unwrap();
        assert!(cache.list(FileKind::Index).unwrap().is_empty());
        assert!(!copy.exists(), "the copy of a file gone from the repository is dropped");
    }
}
