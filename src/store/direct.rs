//! Reading a local file that is not in the page cache straight from the disk.
//!
//! A buffered read of a cold file makes the kernel allocate a page-cache page for every
//! 4 KiB, charge it to the memory cgroup, put it on its lists, and copy it out: 0.15-0.65
//! CPU-s per GiB here, a fifth of an incremental backup's CPU. With `O_DIRECT` the disk writes
//! into our buffers and none of that happens (0.04 CPU-s per GiB; one copy into the chunker's
//! window adds 0.06). Two threads of their own ([`LANES`]) each keep a read in flight, as the
//! kernel's read-ahead would. A file mostly in the page cache already (an RDB the server has just
//! written) is read through the cache, which is faster than the disk; so is any file on a
//! file system without direct I/O, and any other system than Linux.
//!
//! The blocks themselves can be taken ([`open_sequential`], [`Blocks`]): the chunker then cuts
//! them where the disk put them, and the copy into its window (5.8% of an incremental backup's
//! CPU) is gone. Each block has [`HEAD`] bytes of room before its data for what the consumer
//! carries over from the block before.

use std::fs::File;
use std::io::Read;

use crossbeam_channel::{bounded, Receiver, Sender};

/// Bytes per direct read.
pub const BLOCK: usize = 2 << 20;
/// Blocks read and waiting for the consumer, over all lanes (a multiple of [`LANES`]).
const AHEAD: usize = 2;
/// Threads reading at once, each every `LANES`th block: with one, the disk idled from the end
/// of each read until its thread was scheduled again, which on two busy cores is often late.
const LANES: usize = 2;
/// Buffer, offset and length alignment for direct I/O: a multiple of every logical block size.
const ALIGN: usize = 4096;
/// Files smaller than this are read through the cache: a thread is not worth it.
const MIN_DIRECT: u64 = 8 << 20;
/// Page-cache probes spread over the file to tell a cold one from a warm one.
const PROBES: u64 = 32;
/// Room before each block's data for bytes a consumer carries over from the block before.
pub const HEAD: usize = 256 << 10;
/// Blocks a consumer handed back, waiting to be read into.
const SPARE: usize = 8;

/// A file to read from its start: its blocks as the disk delivers them, or a reader.
pub enum Sequential {
    /// Read direct, a few blocks ahead: take them with [`Blocks::next`].
    Blocks(Blocks),
    /// Through the page cache (a warm or small file, or no direct I/O here).
    Read(Box<dyn Read + Send>),
}

/// Opens `file` for reading from its start: direct when the file is mostly not cached, else
/// the kernel's cache with read-ahead ([`super::prefetch::Prefetch`]).
pub fn open_sequential(file: File) -> Sequential {
    match direct(&file) {
        Some(b) => Sequential::Blocks(b),
        None => {
            // On its own thread: on a cold cache the advice takes tens of milliseconds to queue
            // the reads, which the repository's opening can overlap.
            if let Ok(f) = file.try_clone() {
                std::thread::spawn(move || super::prefetch::advise(&f, 0, super::prefetch::AHEAD));
            }
            Sequential::Read(Box::new(super::prefetch::Prefetch::new(file)))
        }
    }
}

/// A reader for `file` from its start: direct when the file is mostly not cached, else the
/// kernel's cache with read-ahead ([`super::prefetch::Prefetch`]).
pub fn sequential(file: File) -> Box<dyn Read + Send> {
    match open_sequential(file) {
        Sequential::Blocks(blocks) => blocks.into_reader(),
        Sequential::Read(r) => r,
    }
}

/// A direct reader of the same file, already reading, when that pays.
#[cfg(target_os = "linux")]
fn direct(file: &File) -> Option<Blocks> {
    let len = file.metadata().ok().filter(|m| m.is_file())?.len();
    if len < MIN_DIRECT || cached_share(file, len) >= 0.5 {
        return None;
    }
    open_direct(file)
}

/// A direct reader of the same file, already reading; `None` where the file system refuses
/// `O_DIRECT`.
#[cfg(target_os = "linux")]
pub(crate) fn open_direct(file: &File) -> Option<Blocks> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // The same file, not whatever the path names now; a description of its own, since
    // O_DIRECT is a property of the description.
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let raw = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path).ok()?;
    let (spare, free) = bounded(SPARE);
    let mut queues = Vec::with_capacity(LANES);
    for lane in 0..LANES {
        let (raw, cached, free) = (raw.try_clone().ok()?, file.try_clone().ok()?, free.clone());
        let (tx, blocks) = bounded(AHEAD / LANES);
        std::thread::Builder::new().name("direct read".into()).spawn(move || read_ahead(raw, cached, lane, tx, free)).ok()?;
        queues.push(blocks);
    }
    Some(Blocks { lanes: queues, next: 0, done: false, block: BLOCK, spare })
}

#[cfg(not(target_os = "linux"))]
fn direct(_file: &File) -> Option<Blocks> {
    None
}

/// The share of probed pages the page cache holds (a read that must not wait for the disk).
#[cfg(target_os = "linux")]
fn cached_share(file: &File, len: u64) -> f64 {
    use std::os::fd::AsRawFd;
    let mut hits = 0;
    for i in 0..PROBES {
        let mut byte = 0u8;
        let iov = libc::iovec { iov_base: (&mut byte as *mut u8).cast(), iov_len: 1 };
        let at = (len / PROBES * i) as libc::off_t;
        // SAFETY: a one-byte read into `byte`, which outlives the call.
        let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, at, libc::RWF_NOWAIT) };
        if n == 1 {
            hits += 1;
        }
    }
    hits as f64 / PROBES as f64
}

/// A filled block: its buffer and the range of it that holds data (after at least [`HEAD`]
/// bytes of room).
pub type Block = (Vec<u8>, usize, usize);

/// Bytes of a block's buffer: the room, the data and what aligning it may skip.
const BUFFER: usize = HEAD + BLOCK + ALIGN;

/// Reads blocks `lane`, `lane + LANES`, … of the file into aligned buffers, ahead of the
/// consumer; `cached` takes over from the first unaligned point (the file's end) or if the file
/// system refuses direct reads.
/// A buffer comes back when the consumer is done with it; while none has, a new one is made
/// (never waited for: a consumer may hold blocks until it has the next). At most [`AHEAD`]
/// filled blocks wait over all lanes, so the buffers in use are those, one read in flight per
/// lane, and what the consumer holds.
#[cfg(target_os = "linux")]
fn read_ahead(raw: File, cached: File, lane: usize, tx: Sender<std::io::Result<Block>>, free: Receiver<Vec<u8>>) {
    use std::os::unix::fs::FileExt;
    let mut offset = (lane * BLOCK) as u64;
    let mut raw = Some(raw);
    loop {
        let mut buf = free.try_recv().unwrap_or_else(|_| vec![0u8; BUFFER]);
        let start = HEAD + buf[HEAD..].as_ptr().align_offset(ALIGN);
        let region = &mut buf[start..start + BLOCK];
        let mut filled = 0;
        while filled < BLOCK {
            let at = offset + filled as u64;
            let got = match &raw {
                Some(f) if filled % ALIGN == 0 => f.read_at(&mut region[filled..], at),
                _ => cached.read_at(&mut region[filled..], at),
            };
            match got {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if raw.is_some() && e.raw_os_error() == Some(libc::EINVAL) => raw = None,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        offset += (LANES * BLOCK) as u64;
        if filled == 0 || tx.send(Ok((buf, start, start + filled))).is_err() || filled < BLOCK {
            return;
        }
    }
}

/// The consumer's side of [`read_ahead`]: the file's blocks in order.
pub struct Blocks {
    /// One queue per reading thread; block `i` comes from queue `i % lanes.len()`.
    lanes: Vec<Receiver<std::io::Result<Block>>>,
    next: usize,
    /// A short block or an error was the last: later lanes may have read past it.
    done: bool,
    /// Bytes in every block but the last.
    block: usize,
    spare: Sender<Vec<u8>>,
}

/// The file's blocks in order; `None` after the last.
impl Iterator for Blocks {
    type Item = std::io::Result<Block>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let got = self.lanes[self.next % self.lanes.len()].recv().ok();
        self.next += 1;
        self.done = match &got {
            Some(Ok((_, start, end))) => end - start < self.block,
            _ => true,
        };
        got
    }
}

impl Blocks {
    /// The blocks as a reader that copies them out (for a consumer that needs larger windows).
    pub fn into_reader(self) -> Box<dyn Read + Send> {
        Box::new(Direct { blocks: self, cur: None })
    }

    /// Returns a block's buffer to be read into again (others are dropped).
    pub fn give_back(&self, buf: Vec<u8>) {
        if buf.len() == BUFFER {
            let _ = self.spare.try_send(buf);
        }
    }

    /// Blocks of `data` as `read_ahead` delivers them, `block` bytes each after `room` bytes
    /// of room, for tests.
    #[cfg(test)]
    pub fn of_bytes(data: &[u8], block: usize, room: usize) -> Blocks {
        let (tx, blocks) = bounded(data.len() / block.max(1) + 1);
        let (spare, _free) = bounded(SPARE);
        for piece in data.chunks(block.max(1)) {
            let mut buf = vec![0u8; room + piece.len()];
            buf[room..].copy_from_slice(piece);
            let _ = tx.send(Ok((buf, room, room + piece.len())));
        }
        Blocks { lanes: vec![blocks], next: 0, done: false, block: block.max(1), spare }
    }
}

/// [`Blocks`] as a reader, copying each block out.
struct Direct {
    blocks: Blocks,
    cur: Option<Block>,
}

impl Read for Direct {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some((buf, pos, end)) = &mut self.cur {
                if *pos < *end {
                    let n = out.len().min(*end - *pos);
                    out[..n].copy_from_slice(&buf[*pos..*pos + n]);
                    *pos += n;
                    return Ok(n);
                }
            }
            if let Some((buf, _, _)) = self.cur.take() {
                self.blocks.give_back(buf);
            }
            match self.blocks.next() {
                Some(Ok(block)) => self.cur = Some(block),
                Some(Err(e)) => return Err(e),
                // The reader ended: end of file.
                None => return Ok(0),
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A file of `len` bytes no page of which is cached (written, synced and dropped).
    fn cold_file(dir: &std::path::Path, len: usize) -> (std::path::PathBuf, Vec<u8>) {
        let path = dir.join("cold");
        let data: Vec<u8> = (0..len as u64).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let f = File::open(&path).unwrap();
        f.sync_all().unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: advice on an open descriptor.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        (path, data)
    }

    /// Whether the file system lets `path` be opened for direct I/O.
    fn takes_direct(path: &std::path::Path) -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path).is_ok()
    }

    #[test]
    fn cold_files_read_direct_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        // Not a multiple of the block or of the alignment: the tail comes through the cache.
        let (path, data) = cold_file(dir.path(), 3 * BLOCK + 12_345 + MIN_DIRECT as usize);
        let file = File::open(&path).unwrap();
        // Whether the kernel dropped the pages is the host's business (an overlay file system
        // may keep them), so the direct reader is opened as `direct` opens it for a cold file.
        let d = open_direct(&file);
        let takes_direct = takes_direct(&path);
        assert_eq!(d.is_some(), takes_direct, "a file is read direct exactly where the file system allows it");
        let mut out = Vec::new();
        match d {
            Some(blocks) => blocks.into_reader().read_to_end(&mut out).unwrap(),
            None => sequential(file).read_to_end(&mut out).unwrap(),
        };
        assert!(out == data, "the bytes read differ from the file's");
        // And `direct` chooses it exactly when the probes find the file mostly uncached.
        let file = File::open(&path).unwrap();
        let cold = cached_share(&file, data.len() as u64) < 0.5;
        assert_eq!(direct(&file).is_some(), cold && takes_direct);
    }

    #[test]
    fn every_lane_ends_where_the_file_does() {
        let dir = tempfile::tempdir().unwrap();
        // Ending in the first lane's block, in the last lane's, on an aligned short block.
        for len in [5 * BLOCK, 6 * BLOCK, 5 * BLOCK + 12_345, 6 * BLOCK - ALIGN] {
            let (path, data) = cold_file(dir.path(), len);
            let Some(blocks) = open_direct(&File::open(&path).unwrap()) else {
                assert!(!takes_direct(&path), "the file system takes direct I/O, but no direct reader opened");
                return;
            };
            let mut sizes = Vec::new();
            let mut out = Vec::new();
            for block in blocks {
                let (buf, start, end) = block.unwrap();
                sizes.push(end - start);
                out.extend_from_slice(&buf[start..end]);
            }
            assert!(out == data, "{len} bytes read as {} in blocks of {sizes:?}", out.len());
            assert!(sizes.iter().rev().skip(1).all(|&n| n == BLOCK), "{sizes:?}");
        }
    }

    #[test]
    fn cached_files_read_through_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (path, data) = cold_file(dir.path(), MIN_DIRECT as usize + 5);
        // Reading it once brings it into the cache.
        assert!(std::fs::read(&path).unwrap() == data);
        let file = File::open(&path).unwrap();
        assert!(cached_share(&file, data.len() as u64) > 0.9);
        assert!(direct(&file).is_none());
        let mut out = Vec::new();
        sequential(file).read_to_end(&mut out).unwrap();
        assert!(out == data);
    }

    #[test]
    fn small_files_read_through_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = cold_file(dir.path(), 1 << 20);
        assert!(direct(&File::open(&path).unwrap()).is_none());
    }
}
