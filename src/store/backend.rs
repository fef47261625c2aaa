//! The storage trait every repository location implements.
//!
//! It speaks in (kind, name) pairs, never paths, so object stores and SFTP can
//! implement it later without the rest of the code changing.

use crate::error::{Error, Result};

/// The kinds of files a repository holds; each lives in its own namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// The single encrypted `config` file (its name is always "config").
    Config,
    /// Password-sealed copies of the master key.
    Key,
    /// Pack files holding encrypted blobs.
    Pack,
    /// Index files mapping blob ids to pack locations.
    Index,
    /// Snapshot files.
    Snapshot,
    /// Lock files.
    Lock,
}

impl FileKind {
    /// The folder name (and the word used in messages).
    pub fn dir(self) -> &'static str {
        match self {
            FileKind::Config => "",
            FileKind::Key => "keys",
            FileKind::Pack => "data",
            FileKind::Index => "index",
            FileKind::Snapshot => "snapshots",
            FileKind::Lock => "locks",
        }
    }

    /// All kinds, in the order `init` creates them.
    pub const ALL: [FileKind; 6] =
        [FileKind::Config, FileKind::Key, FileKind::Pack, FileKind::Index, FileKind::Snapshot, FileKind::Lock];
}

/// One file as listed by a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// The file's name within its kind.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// How a restore groups its pack reads (see [`Backend::read_plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPlan {
    /// Plaintext bytes of frames one worker fetches at once (a stretch of output).
    pub stretch: u64,
    /// A range read covers at most this many bytes.
    pub span: u64,
    /// Unneeded bytes a range read may span between two needed frames.
    pub gap: u64,
    /// Reads in flight at least (the restore's worker threads).
    pub in_flight: usize,
    /// Restore a regular file in pack order, each pack fetched once, rather than in output order.
    pub pack_order: bool,
}

impl ReadPlan {
    /// A local disk: small reads, as many as the restore has threads, in output order
    /// (pack order's scattered writes and read-back cost more than the reads it saves).
    pub const LOCAL: ReadPlan = ReadPlan { stretch: 1 << 20, span: 2 << 20, gap: 32 << 10, in_flight: 1, pack_order: false };
    /// A network store: a whole pack (16 MiB and its last frame) per request when the frames allow it, and
    /// stretches that long, so a small pack whose frames are spread over the output (an
    /// incremental backup's) is read by few stretches. Three reads in flight: on two cores a
    /// third worker decodes while two wait on the network (0.74 -> 0.68 s for a 64 MiB restore
    /// from moto, the same peak RSS).
    pub const NETWORK: ReadPlan = ReadPlan { stretch: 16 << 20, span: 17 << 20, gap: 4 << 20, in_flight: 3, pack_order: true };
}

/// A staged file: the temporary a writer fills before renaming it into place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempFile {
    /// The kind whose folder holds it (`Config`: the repository folder itself).
    pub kind: FileKind,
    /// The pack subfolder (`ab` for `data/ab/`), for packs staged there.
    pub sub: Option<String>,
    /// Its name (`.staged.tmp-...`).
    pub name: String,
    /// Time since it was last written, if known.
    pub age: Option<std::time::Duration>,
}

impl TempFile {
    /// Its path inside the repository, for messages: `data/.staged.tmp-...`.
    pub fn path(&self) -> String {
        let mut dirs: Vec<&str> = vec![self.kind.dir()];
        dirs.extend(self.sub.as_deref());
        dirs.retain(|d| !d.is_empty());
        dirs.push(&self.name);
        dirs.join("/")
    }
}

/// Something in the repository folder that rdbvault did not put there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    /// Its path inside the repository, like `locks/README`.
    pub path: String,
    /// What it is and what rdbvault does about it.
    pub problem: String,
    /// Whether it stops commands (a link or file where a repository folder or the config belongs).
    pub blocking: bool,
}

/// Where a repository's bytes live. Writes are atomic: a reader sees the whole
/// file or no file, never part of one.
pub trait Backend: Send + Sync {
    /// A human description of the location, for messages.
    fn location(&self) -> String;
    /// Creates the empty layout; fails if a repository is already there.
    fn create(&self) -> Result<()>;
    /// Lists the files of one kind (temporary files are never listed).
    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>>;
    /// Reads a whole file.
    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>>;
    /// Reads `len` bytes at `offset`; fails if the file is shorter.
    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>>;
    /// Reads `buf.len()` bytes at `offset` into `buf`, so a reader of many
    /// ranges (a restore) reuses one buffer instead of allocating each.
    fn read_range_into(&self, kind: FileKind, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let bytes = self.read_range(kind, name, offset, buf.len())?;
        if bytes.len() != buf.len() {
            return Err(Error::corrupt(display_name(kind, name), format!("read {} bytes at {offset}, asked for {}", bytes.len(), buf.len())));
        }
        buf.copy_from_slice(&bytes);
        Ok(())
    }
    /// A range that was read and is not needed again soon: a local disk drops it from the
    /// page cache (a restore larger than memory); elsewhere nothing happens.
    fn drop_cached(&self, _kind: FileKind, _name: &str, _offset: u64, _len: u64) {}
    /// Size of one file.
    fn size(&self, kind: FileKind, name: &str) -> Result<u64>;
    /// Stores a file atomically and durably (it is on disk when this returns).
    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()>;
    /// Starts a file of `kind` written piece by piece, so large files (packs)
    /// need not be held in memory; it appears, atomically and durably, only
    /// when finished under the name given then (packs are named by content).
    fn create_staged(&self, kind: FileKind) -> Result<Box<dyn StagedFile + '_>> {
        Ok(Box::new(BufferedStaged { backend: self, kind, buf: Vec::new() }))
    }
    /// Hints that every file of `kind` is about to be read, so a local disk
    /// fetches them while the caller derives the key (a no-op by default).
    fn prefetch(&self, kind: FileKind) {
        let _ = kind;
    }
    /// Hints that `len` bytes at `offset` will be read soon, so a local disk
    /// fetches them while the caller works on earlier ones (a no-op by default).
    fn will_read(&self, kind: FileKind, name: &str, offset: u64, len: u64) {
        let _ = (kind, name, offset, len);
    }
    /// Packs to upload at once: 1 for a local disk (fsync-bound), more for a
    /// network store, where each upload waits mostly on round trips.
    fn upload_threads(&self) -> usize {
        1
    }
    /// Bytes at which a backup closes a pack, when this store wants packs smaller than the
    /// default: on a network store uploads then start while the input is still being read,
    /// and the last one, which nothing overlaps, is short.
    fn pack_bytes(&self) -> Option<usize> {
        None
    }
    /// How a restore reads packs: a local disk today's small reads, a
    /// network store few large ones, since each request costs a round trip.
    fn read_plan(&self) -> ReadPlan {
        ReadPlan::LOCAL
    }
    /// Removes a file; removing a missing file is not an error.
    fn delete(&self, kind: FileKind, name: &str) -> Result<()>;
    /// Whether the file exists.
    fn exists(&self, kind: FileKind, name: &str) -> Result<bool>;
    /// Staged files (writers' temporary files) anywhere in the repository.
    fn list_staged(&self) -> Result<Vec<TempFile>> {
        Ok(Vec::new())
    }
    /// Removes one staged file; only names of staged files are accepted.
    fn delete_staged(&self, file: &TempFile) -> Result<()> {
        let _ = file;
        Ok(())
    }
    /// Entries that are no part of the repository's layout, for `check`.
    fn foreign(&self) -> Result<Vec<Foreign>> {
        Ok(Vec::new())
    }
}

/// A file being written by [`Backend::create_staged`]; dropped unfinished, it leaves nothing.
pub trait StagedFile: Send {
    /// Appends bytes.
    fn append(&mut self, data: &[u8]) -> Result<()>;
    /// Makes the file appear under `name`, atomically and durably.
    fn finish(self: Box<Self>, name: &str) -> Result<()>;
}

/// The fallback for backends without streaming writes: collect, then write.
struct BufferedStaged<'a, B: Backend + ?Sized> {
    backend: &'a B,
    kind: FileKind,
    buf: Vec<u8>,
}

impl<B: Backend + ?Sized> StagedFile for BufferedStaged<'_, B> {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(data);
        Ok(())
    }
    fn finish(self: Box<Self>, name: &str) -> Result<()> {
        self.backend.write(self.kind, name, &self.buf)
    }
}

/// A name for messages: `snapshots/3fa2...`.
pub fn display_name(kind: FileKind, name: &str) -> String {
    match kind {
        FileKind::Config => "config".to_string(),
        FileKind::Pack => format!("data/{}/{}", name.get(..2).unwrap_or(name), name),
        _ => format!("{}/{}", kind.dir(), name),
    }
}
