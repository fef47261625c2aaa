//! The local-disk (or mounted network disk) backend.
//!
//! Nothing below the root is reached through a symbolic link: each folder is
//! opened relative to its parent with `O_NOFOLLOW` (see `nofollow`), and only
//! names of the repository's own scheme (`names`, `staged`) are read, written or
//! deleted. Anything else is skipped with a warning ([`take_skipped`]) and
//! named by `check` ([`Backend::foreign`]). The root itself may be a link.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{DirBuilder, File};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::backend::{display_name, Backend, FileInfo, FileKind, Foreign, StagedFile, TempFile};
use super::nofollow::{self, Entry, Opened};
use super::{names, staged};
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

/// Foreign entries listings skipped, for the command to warn about once.
static SKIPPED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Takes the warnings about foreign entries that listings skipped so far.
pub fn take_skipped() -> Vec<String> {
    std::mem::take(&mut *SKIPPED.lock().unwrap_or_else(|p| p.into_inner())).into_iter().collect()
}

/// A repository folder, opened or not.
enum Folder {
    Open(OwnedFd),
    Missing,
    /// Something else (a link, a file) holds the folder's place: its path and what it is.
    Blocked(PathBuf, Entry),
}

impl Folder {
    /// The open folder, `None` if missing; an error naming the path if something else holds its place.
    fn usable(self) -> Result<Option<OwnedFd>> {
        match self {
            Folder::Open(fd) => Ok(Some(fd)),
            Folder::Missing => Ok(None),
            Folder::Blocked(path, found) => Err(nofollow::refused(&path, found, "folder")),
        }
    }
}

/// What a walk of a kind's folder found.
enum Found {
    File(FileInfo),
    Temp(TempFile),
    Foreign(Foreign),
}

/// Opens folder `name` in `parent` (shown as `path`) without following a link.
fn open_folder(parent: &OwnedFd, name: &str, path: PathBuf, create: bool) -> Result<Folder> {
    match nofollow::open_dir(parent, name, create) {
        Ok(Opened::Dir(fd)) => Ok(Folder::Open(fd)),
        Ok(Opened::Missing) => Ok(Folder::Missing),
        Ok(Opened::Not(found)) => Ok(Folder::Blocked(path, found)),
        Err(e) => Err(Error::io(format!("open {}", path.display()), e)),
    }
}

/// The pack subfolder a file of `kind` lives in (`name` already checked against the scheme).
fn sub_of(kind: FileKind, name: &str) -> Option<&str> {
    (kind == FileKind::Pack).then(|| name.get(..2)).flatten()
}

/// A path inside the repository, for messages: `data/ab/notes.txt`.
fn rel_path(parts: &[&str]) -> String {
    parts.iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("/")
}

impl LocalBackend {
    /// A backend rooted at `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend { root: root.into(), open_packs: Arc::default() }
    }

    /// Opens the folder of `kind` (`sub`: a pack subfolder) without following
    /// links below the root; `create` makes missing folders (0700), the root too.
    fn folder(&self, kind: FileKind, sub: Option<&str>, create: bool) -> Result<Folder> {
        if sub.is_some_and(|s| kind != FileKind::Pack || !names::is_pack_dir(s)) {
            return Err(Error::Invalid(format!("{sub:?} is not a pack folder")));
        }
        let opened = match nofollow::open_root(&self.root) {
            Err(e) if e.kind() == ErrorKind::NotFound && create => DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.root)
                .and_then(|()| nofollow::open_root(&self.root)),
            other => other,
        };
        let mut fd = match opened {
            Ok(fd) => fd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Folder::Missing),
            Err(e) => return Err(Error::io(format!("open {}", self.root.display()), e)),
        };
        let mut path = self.root.clone();
        for name in [kind.dir()].into_iter().chain(sub).filter(|n| !n.is_empty()) {
            path.push(name);
            fd = match open_folder(&fd, name, path.clone(), create)? {
                Folder::Open(fd) => fd,
                other => return Ok(other),
            };
        }
        Ok(Folder::Open(fd))
    }

    /// The folder holding file `name` of `kind`, after checking the name against the scheme.
    fn file_folder(&self, kind: FileKind, name: &str, create: bool) -> Result<Option<OwnedFd>> {
        names::check(kind, name)?;
        self.folder(kind, sub_of(kind, name), create)?.usable()
    }

    /// Opens a repository file for reading: a regular file under a scheme name, reached without links.
    fn open(&self, kind: FileKind, name: &str) -> Result<File> {
        let Some(dir) = self.file_folder(kind, name, false)? else {
            return Err(Error::io(self.ctx("read", kind, name), ErrorKind::NotFound.into()));
        };
        nofollow::open_file(&dir, name, &self.root.join(display_name(kind, name)))
    }

    /// An open handle for range reads (cached for packs).
    fn open_for_range(&self, kind: FileKind, name: &str) -> Result<Arc<File>> {
        if kind != FileKind::Pack {
            return self.open(kind, name).map(Arc::new);
        }
        let mut cache = self.open_packs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = cache.iter().position(|(n, _)| n == name) {
            let entry = cache.remove(i).ok_or_else(|| Error::Invalid("pack cache".into()))?;
            let file = entry.1.clone();
            cache.push_front(entry);
            return Ok(file);
        }
        let file = Arc::new(self.open(kind, name)?);
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

    /// Everything in the folder of `kind` whose name passes `keep` (packs: in
    /// every subfolder). With `strict`, a link or file where a repository
    /// folder belongs is an error; else it comes back as a blocking foreign entry.
    fn walk(&self, kind: FileKind, strict: bool, keep: fn(&str) -> bool) -> Result<Vec<Found>> {
        let mut out = Vec::new();
        let Some(dir) = self.walk_folder(self.folder(kind, None, false)?, strict, &mut out)? else { return Ok(out) };
        for name in self.names_in(&dir, kind.dir())? {
            if kind == FileKind::Pack && names::is_pack_dir(&name) {
                let path = self.root.join(kind.dir()).join(&name);
                let Some(sub) = self.walk_folder(open_folder(&dir, &name, path, false)?, strict, &mut out)? else { continue };
                for inner in self.names_in(&sub, &rel_path(&[kind.dir(), &name]))? {
                    if keep(&inner) {
                        out.extend(self.classify(&sub, kind, Some(&name), inner)?);
                    }
                }
            } else if kind == FileKind::Config && FileKind::ALL.iter().any(|k| *k != kind && k.dir() == name) {
                // Walked as its own kind.
            } else if keep(&name) {
                out.extend(self.classify(&dir, kind, None, name)?);
            }
        }
        Ok(out)
    }

    /// An opened folder to walk; see `walk` for `strict`.
    fn walk_folder(&self, folder: Folder, strict: bool, out: &mut Vec<Found>) -> Result<Option<OwnedFd>> {
        match folder {
            Folder::Blocked(path, found) if !strict => {
                let problem = nofollow::refused(&path, found, "folder").to_string();
                let path = path.strip_prefix(&self.root).unwrap_or(&path).display().to_string();
                out.push(Found::Foreign(Foreign { path, problem, blocking: true }));
                Ok(None)
            }
            other => other.usable(),
        }
    }

    fn names_in(&self, dir: &OwnedFd, rel: &str) -> Result<Vec<String>> {
        nofollow::names(dir).map_err(|e| Error::io(format!("list {}", self.root.join(rel).display()), e))
    }

    /// What entry `name` of a folder of `kind` is; `None` if it vanished meanwhile.
    fn classify(&self, dir: &OwnedFd, kind: FileKind, sub: Option<&str>, name: String) -> Result<Option<Found>> {
        let path = rel_path(&[kind.dir(), sub.unwrap_or(""), &name]);
        let entry = nofollow::stat(dir, &name).map_err(|e| Error::io(format!("stat {}", self.root.join(&path).display()), e))?;
        let Some(entry) = entry else { return Ok(None) };
        let ours = names::is_valid(kind, &name) && (kind != FileKind::Pack || sub.is_some_and(|s| name.starts_with(s)));
        Ok(Some(match entry {
            Entry::File { age, .. } if staged::is_staged(&name) => {
                Found::Temp(TempFile { kind, sub: sub.map(str::to_string), name, age })
            }
            Entry::File { size, .. } if ours => Found::File(FileInfo { name, size }),
            other if ours && kind == FileKind::Config => {
                let problem = nofollow::refused(&self.root.join(&path), other, "file").to_string();
                Found::Foreign(Foreign { path, problem, blocking: true })
            }
            other => {
                let problem = match other {
                    Entry::Link if ours => "a symbolic link in place of a repository file: rdbvault never follows links inside a repository, and ignores and never deletes it",
                    Entry::Link => "a symbolic link rdbvault did not make: it is never followed, ignored and never deleted",
                    Entry::Dir => "a folder rdbvault does not use: ignored and never deleted",
                    Entry::Special => "a fifo, socket or device rdbvault did not make: ignored and never deleted",
                    Entry::File { .. } => "not a repository file: rdbvault ignores it and never deletes it",
                };
                Found::Foreign(Foreign { path, problem: problem.into(), blocking: false })
            }
        }))
    }
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> Result<()> {
        if self.exists(FileKind::Config, "config")? {
            return Err(Error::AlreadyExists(self.root.clone()));
        }
        for kind in FileKind::ALL {
            self.folder(kind, None, true)?.usable()?;
        }
        for i in 0..=255u8 {
            self.folder(FileKind::Pack, Some(&format!("{i:02x}")), true)?.usable()?;
        }
        Ok(())
    }

    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>> {
        let mut out = Vec::new();
        for found in self.walk(kind, true, |_| true)? {
            match found {
                Found::File(f) => out.push(f),
                Found::Temp(_) => {}
                Found::Foreign(f) => {
                    let warning = format!("{}: {} (`rdbvault check` lists such entries)", f.path, f.problem);
                    SKIPPED.lock().unwrap_or_else(|p| p.into_inner()).insert(warning);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn prefetch(&self, kind: FileKind) {
        let Ok(files) = self.list(kind) else { return };
        for f in files {
            if let Ok(file) = self.open(kind, &f.name) {
                crate::store::prefetch::advise(&file, 0, f.size);
            }
        }
    }

    fn will_read(&self, kind: FileKind, name: &str, offset: u64, len: u64) {
        if let Ok(file) = self.open_for_range(kind, name) {
            crate::store::prefetch::advise(&file, offset, len);
        }
    }

    fn drop_cached(&self, kind: FileKind, name: &str, offset: u64, len: u64) {
        if let Ok(file) = self.open_for_range(kind, name) {
            crate::store::prefetch::forget(&file, offset, len);
        }
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.open(kind, name)?.read_to_end(&mut buf).map_err(|e| Error::io(self.ctx("read", kind, name), e))?;
        Ok(buf)
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.read_range_into(kind, name, offset, &mut buf)?;
        Ok(buf)
    }

    fn read_range_into(&self, kind: FileKind, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let f = self.open_for_range(kind, name)?;
        f.read_exact_at(buf, offset).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                Error::corrupt(display_name(kind, name), format!("file ends before byte {}", offset + buf.len() as u64))
            } else {
                Error::io(self.ctx("read", kind, name), e)
            }
        })
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        let ctx = || self.ctx("stat", kind, name);
        let dir = self.file_folder(kind, name, false)?.ok_or_else(|| Error::io(ctx(), ErrorKind::NotFound.into()))?;
        match nofollow::stat(&dir, name).map_err(|e| Error::io(ctx(), e))? {
            Some(Entry::File { size, .. }) => Ok(size),
            Some(other) => Err(nofollow::refused(&self.root.join(display_name(kind, name)), other, "file")),
            None => Err(Error::io(ctx(), ErrorKind::NotFound.into())),
        }
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        // One crash-safe path for every write: temp file, fsync, rename, fsync of the directory.
        names::check(kind, name)?;
        let mut staged = self.create_staged(kind)?;
        staged.append(data)?;
        staged.finish(name)
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        names::check(kind, name)?;
        let op = failpoint::begin();
        failpoint::hit(op, Stage::Before);
        self.forget_open(kind, name);
        if let Some(dir) = self.file_folder(kind, name, false)? {
            match nofollow::remove(&dir, name) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(self.ctx("delete", kind, name), e)),
            }
        }
        failpoint::hit(op, Stage::After);
        Ok(())
    }

    fn create_staged(&self, kind: FileKind) -> Result<Box<dyn StagedFile + '_>> {
        let tmp = staged::new_name();
        let shown = self.root.join(rel_path(&[kind.dir(), &tmp]));
        let ctx = |e| Error::io(format!("create {}", shown.display()), e);
        let dir = self.folder(kind, None, true)?.usable()?.ok_or_else(|| ctx(ErrorKind::NotFound.into()))?;
        let file = nofollow::create_file(&dir, &tmp).map_err(ctx)?;
        Ok(Box::new(LocalStaged { backend: self, kind, dir, tmp, shown, file: Some(file), placed: false }))
    }

    fn list_staged(&self) -> Result<Vec<TempFile>> {
        let mut out = Vec::new();
        for kind in FileKind::ALL {
            out.extend(self.walk(kind, false, staged::is_staged)?.into_iter().filter_map(|f| match f {
                Found::Temp(t) => Some(t),
                _ => None,
            }));
        }
        Ok(out)
    }

    fn delete_staged(&self, file: &TempFile) -> Result<()> {
        if !staged::is_staged(&file.name) {
            return Err(Error::Invalid(format!("{} is not a staged file; rdbvault deletes no other temporary file", file.path())));
        }
        let Some(dir) = self.folder(file.kind, file.sub.as_deref(), false)?.usable()? else { return Ok(()) };
        match nofollow::remove(&dir, &file.name) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                Err(Error::io(format!("delete {}", self.root.join(file.path()).display()), e))
            }
            _ => Ok(()),
        }
    }

    fn foreign(&self) -> Result<Vec<Foreign>> {
        let mut out = Vec::new();
        for kind in FileKind::ALL {
            out.extend(self.walk(kind, false, |_| true)?.into_iter().filter_map(|f| match f {
                Found::Foreign(f) => Some(f),
                _ => None,
            }));
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn exists(&self, kind: FileKind, name: &str) -> Result<bool> {
        let Some(dir) = self.file_folder(kind, name, false)? else { return Ok(false) };
        match nofollow::stat(&dir, name).map_err(|e| Error::io(self.ctx("stat", kind, name), e))? {
            Some(Entry::File { .. }) => Ok(true),
            Some(other) => Err(nofollow::refused(&self.root.join(display_name(kind, name)), other, "file")),
            None => Ok(false),
        }
    }
}

/// A staged file of the local backend: a new file (0600) in its kind's folder,
/// fsynced and renamed into place by `finish`, removed if dropped before.
struct LocalStaged<'a> {
    backend: &'a LocalBackend,
    kind: FileKind,
    /// The folder holding the temp file (and, but for packs, its final name).
    dir: OwnedFd,
    tmp: String,
    /// The temp file's path, for messages.
    shown: PathBuf,
    file: Option<File>,
    placed: bool,
}

impl StagedFile for LocalStaged<'_> {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        let ctx = |e| Error::io(format!("write {}", self.shown.display()), e);
        self.file.as_mut().ok_or_else(|| Error::Invalid("staged file already finished".into()))?.write_all(data).map_err(ctx)
    }

    fn finish(mut self: Box<Self>, name: &str) -> Result<()> {
        let (kind, backend) = (self.kind, self.backend);
        names::check(kind, name)?;
        let ctx = |e| Error::io(backend.ctx("write", kind, name), e);
        let file = self.file.take().ok_or_else(|| Error::Invalid("staged file already finished".into()))?;
        let op = failpoint::begin();
        file.sync_all().map_err(ctx)?;
        drop(file);
        let target = match sub_of(kind, name) {
            Some(_) => Some(backend.file_folder(kind, name, true)?.ok_or_else(|| ctx(ErrorKind::NotFound.into()))?),
            None => None,
        };
        let to = target.as_ref().unwrap_or(&self.dir);
        failpoint::hit(op, Stage::Before);
        nofollow::rename(&self.dir, &self.tmp, to, name).map_err(ctx)?;
        self.placed = true;
        nofollow::sync(to).map_err(ctx)?;
        failpoint::hit(op, Stage::After);
        Ok(())
    }
}

impl Drop for LocalStaged<'_> {
    fn drop(&mut self) {
        // Unfinished (an error or a panic upstream), or the rename failed.
        if !self.placed {
            let _ = nofollow::remove(&self.dir, &self.tmp);
        }
    }
}
