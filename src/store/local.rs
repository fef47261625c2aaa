//! The local-disk (or mounted network disk) backend.

use std::fs::{self, File, OpenOptions};
use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::backend::{StagedFile, display_name, Backend, FileInfo, FileKind};
use crate::error::{Error, Result};
use crate::store::failpoint::{self, Stage};

/// A repository in a directory.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
    /// Recently read pack files, kept open: restores read thousands of
    /// ranges from the same few packs. Packs are never changed in place (a
    /// name is the hash of the content), so a cached handle is never stale.
    open_packs: Arc<Mutex<VecDeque<(String, Arc<File>)>>>,
}

/// Pack files kept open for range reads.
const OPEN_PACKS: usize = 16;

impl LocalBackend {
    /// A backend rooted at `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend { root: root.into(), open_packs: Arc::default() }
    }

    fn path(&self, kind: FileKind, name: &str) -> PathBuf {
        match kind {
            FileKind::Config => self.root.join("config"),
            FileKind::Pack => self.root.join("data").join(name.get(..2).unwrap_or("xx")).join(name),
            _ => self.root.join(kind.dir()).join(name),
        }
    }

    /// An open handle for range reads (cached for packs).
    fn open_for_range(&self, kind: FileKind, name: &str) -> std::io::Result<Arc<File>> {
        if kind != FileKind::Pack {
            return File::open(self.path(kind, name)).map(Arc::new);
        }
        let mut cache = self.open_packs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = cache.iter().position(|(n, _)| n == name) {
            let entry = cache.remove(i).ok_or_else(|| std::io::Error::other("pack cache"))?;
            let file = entry.1.clone();
            cache.push_front(entry);
            return Ok(file);
        }
        let file = Arc::new(File::open(self.path(kind, name))?);
        cache.push_front((name.to_string(), file.clone()));
        cache.truncate(OPEN_PACKS);
        Ok(file)
    }

    /// Forgets a cached handle (the file was deleted).
    fn forget_open(&self, kind: FileKind, name: &str) {
        if kind == FileKind::Pack {
            self.open_packs.lock().unwrap_or_else(|p| p.into_inner()).retain(|(n, _)| n != name);
        }
    }

    fn ctx(&self, verb: &str, kind: FileKind, name: &str) -> String {
        format!("{verb} {} in {}", display_name(kind, name), self.root.display())
    }
}

fn is_temp(name: &str) -> bool {
    name.starts_with('.')
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn list_dir(dir: &Path, out: &mut Vec<FileInfo>) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_temp(&name) {
            continue;
        }
        let meta = entry.metadata()?;
        if meta.is_file() {
            out.push(FileInfo { name, size: meta.len() });
        }
    }
    Ok(())
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> Result<()> {
        if self.root.join("config").exists() {
            return Err(Error::AlreadyExists(self.root.clone()));
        }
        let mk = |p: PathBuf| fs::create_dir_all(&p).map_err(|e| Error::io(format!("create {}", p.display()), e));
        for kind in FileKind::ALL {
            if kind != FileKind::Config {
                mk(self.root.join(kind.dir()))?;
            }
        }
        for i in 0..=255u8 {
            mk(self.root.join("data").join(format!("{i:02x}")))?;
        }
        Ok(())
    }

    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>> {
        let mut out = Vec::new();
        let ctx = || format!("list {} in {}", kind.dir(), self.root.display());
        match kind {
            FileKind::Config => {
                if let Ok(m) = fs::metadata(self.root.join("config")) {
                    out.push(FileInfo { name: "config".into(), size: m.len() });
                }
            }
            FileKind::Pack => {
                let data = self.root.join("data");
                let subdirs = match fs::read_dir(&data) {
                    Ok(d) => d,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(Error::io(ctx(), e)),
                };
                for sub in subdirs {
                    let sub = sub.map_err(|e| Error::io(ctx(), e))?;
                    if sub.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        list_dir(&sub.path(), &mut out).map_err(|e| Error::io(ctx(), e))?;
                    }
                }
            }
            _ => list_dir(&self.root.join(kind.dir()), &mut out).map_err(|e| Error::io(ctx(), e))?,
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn prefetch(&self, kind: FileKind) {
        let Ok(files) = self.list(kind) else { return };
        for f in files {
            if let Ok(file) = fs::File::open(self.path(kind, &f.name)) {
                crate::store::prefetch::advise(&file, 0, f.size);
            }
        }
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        fs::read(self.path(kind, name)).map_err(|e| Error::io(self.ctx("read", kind, name), e))
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let ctx = || self.ctx("read", kind, name);
        let f = self.open_for_range(kind, name).map_err(|e| Error::io(ctx(), e))?;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupt(display_name(kind, name), format!("file ends before byte {}", offset + len as u64))
            } else {
                Error::io(ctx(), e)
            }
        })?;
        Ok(buf)
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        fs::metadata(self.path(kind, name)).map(|m| m.len()).map_err(|e| Error::io(self.ctx("stat", kind, name), e))
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        // One crash-safe path for every write: temp file, fsync, rename, fsync of the directory.
        let mut staged = self.create_staged(kind)?;
        staged.append(data)?;
        staged.finish(name)
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        let op = failpoint::begin();
        failpoint::hit(op, Stage::Before);
        self.forget_open(kind, name);
        match fs::remove_file(self.path(kind, name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(self.ctx("delete", kind, name), e)),
        }
        failpoint::hit(op, Stage::After);
        Ok(())
    }

    fn create_staged(&self, kind: FileKind) -> Result<Box<dyn StagedFile + '_>> {
        let dir = match kind {
            FileKind::Config => self.root.clone(),
            _ => self.root.join(kind.dir()),
        };
        let tmp = dir.join(format!(".staged.tmp-{}", hex::encode(crate::crypto::random_bytes::<6>())));
        let file = fs::create_dir_all(&dir)
            .and_then(|()| OpenOptions::new().write(true).create_new(true).open(&tmp))
            .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
        Ok(Box::new(LocalStaged { backend: self, kind, tmp, file: Some(file) }))
    }

    fn remove_stale_temp(&self, older_than: Duration) -> Result<u64> {
        let mut removed = 0;
        let mut dirs: Vec<PathBuf> = FileKind::ALL
            .iter()
            .filter(|k| !matches!(k, FileKind::Config | FileKind::Pack))
            .map(|k| self.root.join(k.dir()))
            .collect();
        dirs.push(self.root.clone());
        dirs.push(self.root.join("data"));
        if let Ok(subdirs) = fs::read_dir(self.root.join("data")) {
            dirs.extend(subdirs.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        let now = SystemTime::now();
        for dir in dirs {
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(meta) = entry.metadata() else { continue };
                let age = meta.modified().ok().and_then(|m| now.duration_since(m).ok());
                if is_temp(&name) && meta.is_file() && age.is_some_and(|a| a >= older_than) {
                    fs::remove_file(entry.path())
                        .map_err(|e| Error::io(format!("delete temp file {}", entry.path().display()), e))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    fn exists(&self, kind: FileKind, name: &str) -> Result<bool> {
        Ok(self.path(kind, name).exists())
    }
}

/// A staged file of the local backend: a temp file in its kind's folder (never
/// listed: its name starts with a dot), fsynced and renamed into place by
/// `finish`, removed if dropped before.
struct LocalStaged<'a> {
    backend: &'a LocalBackend,
    kind: FileKind,
    tmp: PathBuf,
    file: Option<File>,
}

impl StagedFile for LocalStaged<'_> {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        let ctx = |e| Error::io(format!("write {}", self.tmp.display()), e);
        self.file.as_mut().ok_or_else(|| Error::Invalid("staged file already finished".into()))?.write_all(data).map_err(ctx)
    }

    fn finish(mut self: Box<Self>, name: &str) -> Result<()> {
        let (kind, backend) = (self.kind, self.backend);
        let path = backend.path(kind, name);
        let dir = path.parent().unwrap_or(&backend.root).to_path_buf();
        let file = self.file.take();
        let op = failpoint::begin();
        let result = (|| -> std::io::Result<()> {
            let f = file.ok_or_else(|| std::io::Error::other("staged file already finished"))?;
            f.sync_all()?;
            drop(f);
            fs::create_dir_all(&dir)?;
            failpoint::hit(op, Stage::Before);
            fs::rename(&self.tmp, &path)?;
            fsync_dir(&dir)
        })();
        result.map_err(|e| Error::io(backend.ctx("write", kind, name), e))?;
        failpoint::hit(op, Stage::After);
        Ok(())
    }
}

impl Drop for LocalStaged<'_> {
    fn drop(&mut self) {
        // Unfinished (an error or a panic upstream), or the rename failed.
        if self.tmp.exists() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}
