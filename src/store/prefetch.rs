//! Reading a local file front to back with the kernel fetching ahead, and telling it when a
//! range read is done with.
//!
//! The chunker reads 2 MiB at a time and then works on it; the kernel's own
//! read-ahead is a few hundred KiB, so on a cold cache each window would wait
//! for the disk. Asking for the next 64 MiB (`POSIX_FADV_WILLNEED`) as reading
//! goes overlaps the disk with hashing and compression (16 MiB left the reader
//! waiting on a cold cache: 0.2 s more per GiB here). The kernel's page cache
//! holds what is fetched, so the process's memory does not grow with it.

use std::fs::File;
use std::io::Read;

/// How far ahead of the read position the kernel is asked to fetch.
pub(crate) const AHEAD: u64 = 64 * 1024 * 1024;

/// A file read sequentially from its start, fetched ahead.
pub struct Prefetch {
    file: File,
    pos: u64,
    advised: u64,
}

impl Prefetch {
    /// Wraps a file positioned at its start.
    pub fn new(file: File) -> Prefetch {
        Prefetch { file, pos: 0, advised: 0 }
    }
}

impl Read for Prefetch {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos + AHEAD / 2 >= self.advised {
            advise(&self.file, self.advised, AHEAD);
            self.advised += AHEAD;
        }
        let n = self.file.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Asks the kernel to start reading `len` bytes at `offset` into its cache.
#[cfg(target_os = "linux")]
pub(crate) fn advise(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: advice on an open descriptor; it only schedules reads. A failure
    // (e.g. a pipe) costs nothing but the read-ahead.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), offset as i64, len as i64, libc::POSIX_FADV_WILLNEED);
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn advise(_file: &File, _offset: u64, _len: u64) {}

/// Tells the kernel a range read will not be read again soon (its clean pages are dropped).
#[cfg(target_os = "linux")]
pub(crate) fn forget(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: advice on an open descriptor; it reads and writes none of our memory.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), offset as i64, len as i64, libc::POSIX_FADV_DONTNEED) };
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn forget(_file: &File, _offset: u64, _len: u64) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_whole_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..40_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut out = Vec::new();
        Prefetch::new(File::open(&path).unwrap()).read_to_end(&mut out).unwrap();
        assert!(out == data);
    }
}
