//! Network repositories (S3-compatible object stores, SFTP) through Apache OpenDAL.
//!
//! One `Backend` for every OpenDAL service: the repository's files are objects
//! named like the local layout (`config`, `keys/ID`, `data/xx/ID`, ...). OpenDAL
//! is async; we drive it from our threads through its blocking operator on a small
//! tokio runtime owned by the backend. Transient failures (timeouts, 5xx,
//! connection resets) are retried with jittered exponential backoff and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opendal::blocking::Operator;
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::options::{ListOptions, ReadOptions};

use super::backend::{display_name, Backend, FileInfo, FileKind, ReadPlan, StagedFile};
use crate::error::{Error, Result};

/// Requests retried after a transient failure, over the whole process.
static RETRIES: AtomicU64 = AtomicU64::new(0);

/// Counts one request retried outside OpenDAL's retry layer.
pub(crate) fn count_retry() {
    RETRIES.fetch_add(1, Ordering::Relaxed);
}

/// How many requests were retried so far (for the end-of-run report).
pub fn retries() -> u64 {
    RETRIES.load(Ordering::Relaxed)
}

/// Bytes sent to and received from network repositories, over the whole process.
static UPLOADED: AtomicU64 = AtomicU64::new(0);
static DOWNLOADED: AtomicU64 = AtomicU64::new(0);

/// Bytes (uploaded, downloaded) so far, for progress bars.
pub fn transferred() -> (u64, u64) {
    (UPLOADED.load(Ordering::Relaxed), DOWNLOADED.load(Ordering::Relaxed))
}

/// Whether temp names are needed for atomic writes (SFTP: yes; S3 PUT is atomic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Atomicity {
    /// A PUT makes the whole object appear at once.
    Put,
    /// Write a temp name (never listed: it starts with a dot), then rename.
    TempRename,
}

/// A repository on an OpenDAL service.
pub struct ObjectBackend {
    /// Replaced by a fresh one (new connections) when SFTP loses its connection.
    op: std::sync::RwLock<(Operator, u64)>,
    /// When requests started failing for a lost connection: the reconnect budget is
    /// shared, so a server that stays away ends the command once, not once per request.
    down_since: std::sync::Mutex<Option<Instant>>,
    /// Builds the operator again.
    make: Box<dyn Fn() -> Result<Operator> + Send + Sync>,
    /// What the user typed, without secrets: every message names it.
    url: String,
    /// What to check when access is refused.
    auth_hint: &'static str,
    atomicity: Atomicity,
    /// Set once the config is seen: a repository's config is never removed, and every
    /// command asks twice (before the password prompt and when opening).
    has_config: std::sync::atomic::AtomicBool,
    /// Kept alive for the operator; dropped last.
    _runtime: tokio::runtime::Runtime,
}

/// How long a lost SFTP connection is tried again before the command gives up.
const RECONNECT_BUDGET: Duration = Duration::from_secs(30);

/// Network requests in flight at once are few; two workers keep them moving.
const RUNTIME_THREADS: usize = 2;

impl ObjectBackend {
    /// `len` bytes at `offset`, or an error naming the file if it is shorter.
    fn range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<opendal::Buffer> {
        let opts = ReadOptions { range: (offset..offset + len as u64).into(), ..Default::default() };
        let buf = self.with(|op| op.read_options(&Self::path(kind, name), opts.clone())).map_err(|e| self.err("read", kind, name, e))?;
        if buf.len() != len {
            return Err(Error::corrupt(display_name(kind, name), format!("file ends before byte {}", offset + len as u64)));
        }
        DOWNLOADED.fetch_add(len as u64, Ordering::Relaxed);
        Ok(buf)
    }

    /// Wraps the OpenDAL service that `make` builds with retries and timeouts.
    pub fn new<B: opendal::Builder>(
        make: impl Fn() -> B + Send + Sync + 'static,
        url: String,
        auth_hint: &'static str,
        atomicity: Atomicity,
    ) -> Result<ObjectBackend> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .thread_name("rdbvault-net")
            .enable_all()
            .build()
            .map_err(|e| Error::io("start the network runtime", e))?;
        let handle = runtime.handle().clone();
        let where_ = url.clone();
        let make = Box::new(move || -> Result<Operator> {
            let retry = RetryLayer::new()
                .with_jitter()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(10))
                .with_max_times(5)
                .with_notify(|_: opendal::layers::RetryEvent<'_>| {
                    RETRIES.fetch_add(1, Ordering::Relaxed);
                });
            let timeout = TimeoutLayer::new().with_timeout(Duration::from_secs(60)).with_io_timeout(Duration::from_secs(30));
            let invalid = |e: opendal::Error| Error::Invalid(format!("repository {where_}: {e}"));
            let op = opendal::Operator::new(make()).map_err(invalid)?.layer(timeout).layer(retry);
            let _guard = handle.enter();
            Operator::new(op).map_err(invalid)
        });
        let op = std::sync::RwLock::new((make()?, 0));
        Ok(ObjectBackend { op, down_since: Default::default(), make, url, auth_hint, atomicity, has_config: false.into(), _runtime: runtime })
    }

    /// Runs one request; on SFTP, a lost connection is tried again on new connections
    /// (OpenDAL's pool would keep handing out the dead one), with backoff for about
    /// half a minute so a network blip or an sshd restart does not end a backup.
    fn with<T>(&self, f: impl Fn(&Operator) -> opendal::Result<T>) -> opendal::Result<T> {
        let (mut op, mut seen) = self.current();
        let mut delay = Duration::from_millis(250);
        loop {
            match f(&op) {
                Err(e) if self.atomicity == Atomicity::TempRename && is_connection(&format!("{e:?}")) => {
                    let since = *self.down_since.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(Instant::now);
                    if since.elapsed() >= RECONNECT_BUDGET {
                        return Err(e);
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(8));
                    count_retry();
                    (op, seen) = match self.reconnect(seen) {
                        Some(fresh) => fresh,
                        None => return Err(e),
                    };
                }
                r => {
                    // Only SFTP ever starts the outage clock: S3 requests take no lock here.
                    if r.is_ok() && self.atomicity == Atomicity::TempRename {
                        *self.down_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    }
                    return r;
                }
            }
        }
    }

    /// The operator in use and its generation.
    fn current(&self) -> (Operator, u64) {
        let g = self.op.read().unwrap_or_else(|p| p.into_inner());
        (g.0.clone(), g.1)
    }

    /// A new operator unless another thread already replaced generation `seen`.
    fn reconnect(&self, seen: u64) -> Option<(Operator, u64)> {
        let mut g = self.op.write().unwrap_or_else(|p| p.into_inner());
        if g.1 == seen {
            *g = ((self.make)().ok()?, seen + 1);
        }
        Some((g.0.clone(), g.1))
    }

    fn path(kind: FileKind, name: &str) -> String {
        match kind {
            FileKind::Config => "config".to_string(),
            _ => display_name(kind, name),
        }
    }

    /// One clear line for a failed request: what, where, and what to check.
    fn err(&self, verb: &str, kind: FileKind, name: &str, e: opendal::Error) -> Error {
        let what = format!("{verb} {} in {}", display_name(kind, name), self.url);
        let raw = format!("{e:?}");
        // An SFTP server reports ENOSPC and EDQUOT only as a bare "failure".
        if verb == "write" && self.atomicity == Atomicity::TempRename && raw.contains("Failure") && !is_connection(&raw) {
            let why = "the server refused the write without a reason (SFTP says only \"failure\"); the usual cause is a full disk or a quota: free space on the server, then run the command again";
            return Error::io(what, std::io::Error::new(std::io::ErrorKind::StorageFull, why));
        }
        self.classify(what, e)
    }

    fn classify(&self, what: String, e: opendal::Error) -> Error {
        use opendal::ErrorKind as K;
        use std::io::ErrorKind as Io;
        let raw = format!("{e:?}");
        let (io, msg) = if raw.contains("No space left") || raw.contains("QuotaExceeded") {
            (Io::StorageFull, "the server's disk is full (or a quota is reached): free space there, then run the command again".to_string())
        } else if raw.contains("NoSuchBucket") {
            (Io::NotFound, "the bucket does not exist: create it (or check the bucket name and endpoint)".to_string())
        } else if raw.contains("InvalidAccessKeyId") || raw.contains("SignatureDoesNotMatch") {
            (Io::PermissionDenied, format!("authentication failed: {}", self.auth_hint))
        } else if e.kind() == K::PermissionDenied || raw.contains("AccessDenied") {
            (Io::PermissionDenied, format!("permission denied: {}", self.auth_hint))
        } else if e.kind() == K::NotFound {
            (Io::NotFound, "no such file".to_string())
        } else if e.kind() == K::RangeNotSatisfied {
            return Error::corrupt(what, "file is shorter than its index says");
        } else if e.kind() == K::ConfigInvalid {
            return Error::Invalid(format!("{what}: {}", e.message()));
        } else if is_connection(&raw) {
            (Io::ConnectionAborted, LOST_CONNECTION.to_string())
        } else {
            (Io::Other, first_line(&e.to_string()))
        };
        Error::io(what, std::io::Error::new(io, msg))
    }

    /// A blob that appears only when finished: temp-and-rename on SFTP.
    fn put(&self, kind: FileKind, name: &str, data: Vec<u8>) -> Result<()> {
        let len = data.len() as u64;
        self.put_once(kind, name, data)?;
        UPLOADED.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    fn put_once(&self, kind: FileKind, name: &str, data: Vec<u8>) -> Result<()> {
        let data = opendal::Buffer::from(data);
        let path = Self::path(kind, name);
        match self.atomicity {
            Atomicity::Put => self.with(|op| op.write(&path, data.clone())).map(|_| ()).map_err(|e| self.err("write", kind, name, e)),
            Atomicity::TempRename => {
                let dir = path.rsplit_once('/').map(|(d, _)| format!("{d}/")).unwrap_or_default();
                // Named for its writer, so `check` and `prune` can tell when it is stale.
                let tmp = format!("{dir}{}", super::staged::new_name());
                if let Err(e) = self.with(|op| op.write(&tmp, data.clone())) {
                    // A part written before a full disk or a lost connection.
                    let _ = self.with(|op| op.delete(&tmp));
                    return Err(self.err("write", kind, name, e));
                }
                // SFTP writes are pipelined and a refused one can go unreported: the
                // file is renamed into place only at its full size.
                let kept = self.with(|op| op.stat(&tmp)).map(|m| m.content_length()).map_err(|e| self.err("write", kind, name, e))?;
                if kept != data.len() as u64 {
                    let _ = self.with(|op| op.delete(&tmp));
                    let why = format!(
                        "the server kept {kept} of {} bytes; the usual cause is a full disk or a quota: free space on the server, then run the command again",
                        data.len()
                    );
                    let what = format!("write {} in {}", display_name(kind, name), self.url);
                    return Err(Error::io(what, std::io::Error::new(std::io::ErrorKind::StorageFull, why)));
                }
                if let Err(e) = self.with(|op| op.rename(&tmp, &path)) {
                    // SFTP's rename does not replace: an existing file of this name
                    // has the same content (names are content hashes, or a config
                    // written once), except for a race we report.
                    let _ = self.with(|op| op.delete(&tmp));
                    if self.with(|op| op.exists(&path)).unwrap_or(false) && kind != FileKind::Config {
                        return Ok(());
                    }
                    return Err(self.err("write", kind, name, e));
                }
                Ok(())
            }
        }
    }
}

/// Whether an error text says the connection failed or dropped.
/// What a request that kept failing in transit says (after its retries).
pub(crate) const LOST_CONNECTION: &str = "lost the connection to the server (retried and gave up): check that it is up and reachable";

fn is_connection(raw: &str) -> bool {
    let raw = raw.to_ascii_lowercase();
    ["connect", "connection", "broken pipe", "timed out", "timeout", "ssh error", "reset", "eof"]
        .iter()
        .any(|w| raw.contains(w))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().chars().take(300).collect()
}

impl Backend for ObjectBackend {
    fn location(&self) -> String {
        self.url.clone()
    }

    fn create(&self) -> Result<()> {
        if self.exists(FileKind::Config, "config")? {
            return Err(Error::Invalid(format!("{} already holds a repository", self.url)));
        }
        if self.atomicity == Atomicity::TempRename {
            for kind in FileKind::ALL.into_iter().filter(|k| *k != FileKind::Config) {
                let dir = format!("{}/", kind.dir());
                self.with(|op| op.create_dir(&dir)).map_err(|e| self.classify(format!("create {dir} in {}", self.url), e))?;
            }
        } else {
            // A first request that fails clearly if the bucket is missing or the keys are wrong.
            self.list(FileKind::Key)?;
        }
        Ok(())
    }

    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>> {
        if kind == FileKind::Config {
            return Ok(match self.with(|op| op.stat("config")) {
                Ok(m) => vec![FileInfo { name: "config".into(), size: m.content_length() }],
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(self.classify(format!("read config in {}", self.url), e)),
            });
        }
        let dir = format!("{}/", kind.dir());
        let opts = ListOptions { recursive: true, ..Default::default() };
        let entries = match self.with(|op| op.list_options(&dir, opts.clone())) {
            Ok(e) => e,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(self.classify(format!("list {dir} in {}", self.url), e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            if !entry.metadata().is_file() {
                continue;
            }
            let name = entry.name().to_string();
            // Only the repository's own names, in their own place: a foreign object or a
            // staged temp name is never listed, so no command reads or deletes it.
            if !super::names::is_valid(kind, &name) || entry.path() != Self::path(kind, &name) {
                continue;
            }
            let size = match entry.metadata().content_length() {
                0 => self.size(kind, &name)?,
                n => n,
            };
            out.push(FileInfo { name, size });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let data = self.with(|op| op.read(&Self::path(kind, name))).map_err(|e| self.err("read", kind, name, e))?;
        DOWNLOADED.fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(data.to_vec())
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        Ok(self.range(kind, name, offset, len)?.to_vec())
    }

    fn read_range_into(&self, kind: FileKind, name: &str, offset: u64, out: &mut [u8]) -> Result<()> {
        // Straight from the response's pieces: no copy of the whole range in between.
        let mut at = 0;
        for piece in self.range(kind, name, offset, out.len())? {
            out[at..at + piece.len()].copy_from_slice(&piece);
            at += piece.len();
        }
        Ok(())
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        self.with(|op| op.stat(&Self::path(kind, name))).map(|m| m.content_length()).map_err(|e| self.err("stat", kind, name, e))
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.put(kind, name, data.to_vec())
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        super::names::check(kind, name)?;
        match self.with(|op| op.delete(&Self::path(kind, name))) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("delete", kind, name, e)),
        }
    }

    fn exists(&self, kind: FileKind, name: &str) -> Result<bool> {
        if kind == FileKind::Config && self.has_config.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let found = self.with(|op| op.exists(&Self::path(kind, name))).map_err(|e| self.err("stat", kind, name, e))?;
        if found && kind == FileKind::Config {
            self.has_config.store(true, Ordering::Relaxed);
        }
        if !found && kind == FileKind::Config && self.atomicity == Atomicity::Put {
            // A HEAD on a missing bucket is a bare 404: a listing names the real cause.
            self.with(|op| op.list("keys/")).map_err(|e| self.classify(format!("list keys/ in {}", self.url), e))?;
        }
        Ok(found)
    }

    fn upload_threads(&self) -> usize {
        UPLOAD_THREADS
    }

    fn pack_bytes(&self) -> Option<usize> {
        Some(PACK_BYTES)
    }

    fn read_plan(&self) -> ReadPlan {
        ReadPlan::NETWORK
    }

    fn create_staged(&self, kind: FileKind) -> Result<Box<dyn StagedFile + '_>> {
        Ok(Box::new(ObjectStaged { backend: self, kind, buf: Vec::new() }))
    }
}

/// A pack collected in memory (a few MiB) and sent in one PUT, without a copy.
struct ObjectStaged<'a> {
    backend: &'a ObjectBackend,
    kind: FileKind,
    buf: Vec<u8>,
}

impl StagedFile for ObjectStaged<'_> {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(data);
        Ok(())
    }
    fn finish(self: Box<Self>, name: &str) -> Result<()> {
        self.backend.put(self.kind, name, self.buf)
    }
}

/// Packs uploaded at once to a network repository.
const UPLOAD_THREADS: usize = 4;

/// A backup's packs on a network repository: 4 MiB (restic's smallest) rather than 16, so an
/// incremental's few MiB of new data go up while the input is read, not all after it.
const PACK_BYTES: usize = 4 * 1024 * 1024;
