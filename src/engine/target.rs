//! Where a restore writes: every target path is looked at (never through a
//! link) before a byte is written, so a restore never replaces a link, a
//! device or a FIFO, and replaces a file only when asked to.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::snapshot::{Snapshot, SnapshotFile};

/// Mode of a restored file that did not exist before (it holds the database).
const NEW_FILE_MODE: u32 = 0o600;
/// Mode of a directory a restore creates.
const NEW_DIR_MODE: u32 = 0o700;

/// How one restored file reaches its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// Nothing there yet: a temp file, mode 0600, renamed into place once verified.
    New(PathBuf),
    /// A regular file the user allowed to replace: like `New`, keeping its mode and owner.
    Replace { path: PathBuf, mode: u32, uid: u32, gid: u32 },
    /// A FIFO or character device: opened and written in order, never replaced.
    Stream(PathBuf),
}

impl Dest {
    /// The path the restored file is written to.
    pub fn path(&self) -> &Path {
        match self {
            Dest::New(p) | Dest::Stream(p) | Dest::Replace { path: p, .. } => p,
        }
    }
}

/// Decides, before anything is written, where each file of `snapshot` goes:
/// `target` itself for a one-file snapshot (unless it is a directory or ends
/// in `/`), else `target/<name>` in a directory created 0700 when missing.
pub fn plan(snapshot: &Snapshot, target: &Path, overwrite: bool) -> Result<Vec<Dest>> {
    let names = snapshot.files.iter().map(|f| plain_name(&f.name)).collect::<Result<Vec<_>>>()?;
    let into_dir = match kind_of(target)? {
        Kind::Directory => true,
        Kind::Missing => names.len() != 1 || ends_with_slash(target),
        _ if names.len() == 1 => false,
        _ => {
            return Err(Error::Invalid(format!(
                "--target {} is not a directory; a snapshot of {} files restores into a directory",
                target.display(),
                names.len()
            )))
        }
    };
    if !into_dir {
        return Ok(vec![dest(target, overwrite)?]);
    }
    directory(target)?;
    names.iter().map(|n| dest(&target.join(n), overwrite)).collect()
}

/// Makes sure `dir` is a directory to restore into: creates it (0700, with its
/// parents) when missing; refuses a symbolic link.
pub fn directory(dir: &Path) -> Result<()> {
    match kind_of(dir)? {
        Kind::Directory => Ok(()),
        Kind::Missing => DirBuilder::new()
            .recursive(true)
            .mode(NEW_DIR_MODE)
            .create(dir)
            .map_err(|e| Error::io(format!("create directory {}", dir.display()), e)),
        _ => Err(Error::Invalid(format!("--target {} exists and is not a directory", dir.display()))),
    }
}

/// What a path is, looked at without following a final symbolic link.
enum Kind {
    Missing,
    Directory,
    Regular(fs::Metadata),
    /// A FIFO or character device.
    Stream,
}

fn kind_of(path: &Path) -> Result<Kind> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Kind::Missing),
        Err(e) => return Err(Error::io(format!("look at --target {}", path.display()), e)),
    };
    let t = meta.file_type();
    if t.is_symlink() {
        return Err(symlink_refused(path));
    }
    if t.is_dir() {
        Ok(Kind::Directory)
    } else if t.is_file() {
        Ok(Kind::Regular(meta))
    } else if t.is_fifo() || t.is_char_device() {
        Ok(Kind::Stream)
    } else {
        let what = if t.is_block_device() { "a block device" } else { "a socket" };
        Err(Error::Invalid(format!(
            "{} is {what}; a restore writes only to regular files, directories, FIFOs and character devices",
            path.display()
        )))
    }
}

/// Refuses a symbolic link, naming it, where it points, and what to give instead.
fn symlink_refused(path: &Path) -> Error {
    let to = fs::read_link(path).map(|t| format!(" (to {})", t.display())).unwrap_or_default();
    let mut hint = String::new();
    if fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        hint = format!(", or {}/ to write into the directory it points to", path.display());
    }
    if path == Path::new("/dev/stdout") {
        hint.push_str(", or - for standard output");
    }
    Error::Invalid(format!(
        "{} is a symbolic link{to}; a restore neither replaces nor follows links: give the path it points to{hint}",
        path.display()
    ))
}

/// How one file path is written, or why it must not be.
pub fn dest(path: &Path, overwrite: bool) -> Result<Dest> {
    match kind_of(path)? {
        Kind::Missing => Ok(Dest::New(path.to_path_buf())),
        Kind::Stream => Ok(Dest::Stream(path.to_path_buf())),
        Kind::Directory => Err(Error::Invalid(format!("{} is a directory, where a restored file would go", path.display()))),
        Kind::Regular(_) if !overwrite => {
            Err(Error::Invalid(format!("{} exists; pass --overwrite to replace it", path.display())))
        }
        Kind::Regular(m) => Ok(Dest::Replace {
            path: path.to_path_buf(),
            mode: m.permissions().mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
        }),
    }
}

fn ends_with_slash(path: &Path) -> bool {
    path.as_os_str().as_encoded_bytes().ends_with(b"/")
}

/// A snapshot's file name, accepted only as one plain component (never `..` or a path).
fn plain_name(name: &str) -> Result<&Path> {
    let p = Path::new(name);
    match p.components().collect::<Vec<_>>().as_slice() {
        [Component::Normal(n)] if *n == p.as_os_str() => Ok(p),
        _ => Err(Error::corrupt("snapshot", format!("file name {name:?} is not a plain name"))),
    }
}

/// Opens a FIFO or character device for writing, without following a link or
/// creating anything; fails unless it still is one.
pub fn open_stream(path: &Path) -> Result<File> {
    let ctx = |e| Error::io(format!("open {} for writing", path.display()), e);
    let f = OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(path).map_err(ctx)?;
    let t = f.metadata().map_err(ctx)?.file_type();
    if !(t.is_fifo() || t.is_char_device()) {
        return Err(Error::Invalid(format!("{} changed while the restore started; nothing was written", path.display())));
    }
    Ok(f)
}

/// Explains a failed restore to a stream: what was already written there must not be used.
pub fn unusable(where_to: &str, e: Error) -> Error {
    Error::Invalid(format!("{e}; the bytes already written to {where_to} are incomplete or wrong and must not be used"))
}

/// Writes `dest` (a `New` or `Replace`) through a temp file beside it, fsyncs,
/// and renames only on success; a `New` file never replaces one that appeared meanwhile.
pub fn write_atomically(dest: &Dest, fill: impl FnOnce(&File) -> Result<()>) -> Result<()> {
    let path = dest.path();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let fname = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "restore".into());
    let tmp = dir.join(format!(".{fname}.rdbvault-{}", hex::encode(crate::crypto::random_bytes::<6>())));
    // Readable too: the restore reads the file back for its whole-file hash.
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(NEW_FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| Error::io(format!("create a file in directory {} (to restore {})", dir.display(), path.display()), e))?;
    let ctx = |e| Error::io(format!("write {}", path.display()), e);
    let result = (|| {
        fill(&f)?;
        match dest {
            Dest::Replace { mode, uid, gid, .. } => {
                // Best effort: only root may give a file away; the mode is ours to set.
                let _ = std::os::unix::fs::fchown(&f, Some(*uid), Some(*gid));
                f.set_permissions(fs::Permissions::from_mode(*mode)).map_err(ctx)?;
            }
            // Exact, whatever the umask.
            _ => f.set_permissions(fs::Permissions::from_mode(NEW_FILE_MODE)).map_err(ctx)?,
        }
        f.sync_all().map_err(ctx)?;
        match dest {
            Dest::Replace { .. } => fs::rename(&tmp, path).map_err(ctx)?,
            _ => rename_noreplace(&tmp, path).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    Error::Invalid(format!("{} appeared during the restore; pass --overwrite to replace it", path.display()))
                }
                _ => ctx(e),
            })?,
        }
        File::open(&dir).and_then(|d| d.sync_all()).map_err(ctx)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reserves the file's size, so a full disk fails now and the file is not fragmented.
pub fn preallocate(out: &File, file: &SnapshotFile) -> Result<()> {
    if file.size == 0 {
        return Ok(());
    }
    let ctx = |e| Error::io(format!("make room for restored {} ({} bytes) on the target's disk", file.name, file.size), e);
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on an open descriptor.
        if unsafe { libc::fallocate(out.as_raw_fd(), 0, 0, file.size as libc::off_t) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(ctx(e));
        }
    }
    out.set_len(file.size).map_err(ctx)
}

/// Renames `from` to `to` unless `to` exists (atomically where the file system can).
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
        let (f, t) = (c(from)?, c(to)?);
        // SAFETY: two valid NUL-terminated paths; the call only renames.
        let rc = unsafe { libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), libc::RENAME_NOREPLACE) };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        // Other errors than "this file system cannot" are the answer.
        if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
            return Err(e);
        }
    }
    if fs::symlink_metadata(to).is_ok() {
        return Err(std::io::ErrorKind::AlreadyExists.into());
    }
    fs::rename(from, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_only() {
        assert!(plain_name("dump.rdb").is_ok());
        for bad in ["", "..", "/etc/passwd", "a/b", ".", "a/", "./a"] {
            assert!(plain_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trailing_slash_is_seen() {
        assert!(ends_with_slash(Path::new("new/")));
        assert!(!ends_with_slash(Path::new("new")));
    }
}
