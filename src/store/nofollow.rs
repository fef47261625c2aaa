//! Repository paths opened one folder at a time with `openat` and `O_NOFOLLOW`,
//! so a symbolic link planted inside the repository can never send a read, a
//! write or a delete elsewhere, not even one swapped in between two steps.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// What a folder entry is, seen without following a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A regular file: its size and age (by modification time).
    File { size: u64, age: Option<Duration> },
    /// A folder.
    Dir,
    /// A symbolic link.
    Link,
    /// A fifo, socket or device.
    Special,
}

/// How opening a folder went.
pub enum Opened {
    /// Here it is.
    Dir(OwnedFd),
    /// Nothing by that name.
    Missing,
    /// Something other than a folder (a link, a file) has its name.
    Not(Entry),
}

/// Opens the repository root; the root itself may be a link (mounts often are).
pub fn open_root(root: &Path) -> io::Result<OwnedFd> {
    rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(io::Error::from)
}

/// Opens folder `name` in `parent` without following a link; with `create`, a missing one is made (0700).
pub fn open_dir(parent: &OwnedFd, name: &str, create: bool) -> io::Result<Opened> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(parent, name, flags, Mode::empty()) {
        Ok(fd) => Ok(Opened::Dir(fd)),
        Err(Errno::NOENT) if create => {
            match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            open_dir(parent, name, false)
        }
        Err(Errno::NOENT) => Ok(Opened::Missing),
        Err(Errno::LOOP | Errno::NOTDIR) => match stat(parent, name)? {
            Some(e) => Ok(Opened::Not(e)),
            None => Ok(Opened::Missing),
        },
        Err(e) => Err(e.into()),
    }
}

/// What `name` in `dir` is, without following a link; `None` if it does not exist.
pub fn stat(dir: &OwnedFd, name: &str) -> io::Result<Option<Entry>> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(Some(match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {
            let modified = SystemTime::UNIX_EPOCH
                .checked_add(Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec as u32));
            let age = modified.and_then(|m| SystemTime::now().duration_since(m).ok());
            Entry::File { size: st.st_size.max(0) as u64, age }
        }
        FileType::Directory => Entry::Dir,
        FileType::Symlink => Entry::Link,
        _ => Entry::Special,
    }))
}

/// Opens a regular file for reading; refuses a link or anything else with an error naming `shown`.
pub fn open_file(dir: &OwnedFd, name: &str, shown: &Path) -> Result<std::fs::File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::LOOP) => return Err(refused(shown, Entry::Link, "file")),
        Err(e) => return Err(Error::io(format!("open {}", shown.display()), e.into())),
    };
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(|e| Error::io(format!("stat {}", shown.display()), e))?;
    if !meta.is_file() {
        let what = if meta.is_dir() { Entry::Dir } else { Entry::Special };
        return Err(refused(shown, what, "file"));
    }
    Ok(file)
}

/// Creates a new file, mode 0600 (a umask only takes bits away), for writing; fails if the name exists, even as a link.
pub fn create_file(dir: &OwnedFd, name: &str) -> io::Result<std::fs::File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(std::fs::File::from(rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))?))
}

/// Every name in a folder but `.` and `..` (names that are not UTF-8 come out lossily, and so never match a repository name).
pub fn names(dir: &OwnedFd) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            out.push(name);
        }
    }
    Ok(out)
}

/// Renames within or across repository folders (a link at the target is replaced, never followed).
pub fn rename(from_dir: &OwnedFd, from: &str, to_dir: &OwnedFd, to: &str) -> io::Result<()> {
    Ok(rustix::fs::renameat(from_dir, from, to_dir, to)?)
}

/// Removes a name from a folder (a link is removed itself, never its target).
pub fn remove(dir: &OwnedFd, name: &str) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
}

/// Makes a folder's entries durable.
pub fn sync(dir: &OwnedFd) -> io::Result<()> {
    Ok(rustix::fs::fsync(dir)?)
}

/// The error for a link (or other non-`want`) where the repository should have a `want` ("file" or "folder").
pub fn refused(shown: &Path, found: Entry, want: &str) -> Error {
    let what = match found {
        Entry::Link => "a symbolic link",
        Entry::Dir => "a folder",
        Entry::File { .. } => "a regular file",
        Entry::Special => "a fifo, socket or device",
    };
    let fix = if found == Entry::Link {
        "rdbvault never follows links inside a repository (the repository folder itself may be a link); replace it with the real"
    } else {
        "put back the"
    };
    Error::Invalid(format!("{} is {what} where the repository should have a {want}: {fix} {want}", shown.display()))
}
