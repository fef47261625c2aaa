//! Argon2's working memory, mapped fresh from the kernel.
//!
//! The crate's own allocation asks for 64-byte alignment, which the system allocator can
//! only zero by writing every byte: one thread then faults in all 64 MiB (~20-40 ms) before
//! the lanes start. Fresh anonymous pages are already zero, and Argon2 writes each block
//! before it reads it, so here the lanes fault in their own pages in parallel as they fill
//! them. Unmapping returns the pages, and what the password left in them, to the kernel.
//! The region asks for transparent huge pages: 32 faults instead of 16 384, each of which
//! costs page-table and memory-cgroup bookkeeping (~10% of a small incremental's CPU).
//! Faulting in 64 MiB still costs 20-50 ms on a VM, so a command that opens a repository over
//! the network has a thread fault the region in while the key file is on its way ([`prepare`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use argon2_lanes::Block;

/// `len` blocks of zeroed memory from an anonymous mapping.
pub struct FreshBlocks {
    ptr: std::ptr::NonNull<Block>,
    len: usize,
    /// The whole mapping: the blocks start at its first huge-page boundary.
    base: *mut libc::c_void,
    mapped: usize,
    /// Bytes from the start already faulted in (by [`prepare`]'s thread).
    faulted: usize,
}

/// A transparent huge page on x86-64 and most arm64 kernels.
const HUGE_PAGE: usize = 2 << 20;

impl FreshBlocks {
    /// None when the mapping fails (the caller falls back to the crate's allocation).
    pub fn new(len: usize) -> Option<FreshBlocks> {
        let bytes = len.checked_mul(std::mem::size_of::<Block>()).filter(|&b| b > 0)?;
        // A huge page more than needed, so the blocks can start on a huge-page boundary
        // (untouched address space costs no memory).
        let mapped = bytes.checked_add(HUGE_PAGE)?;
        // SAFETY: a private anonymous mapping of `mapped`; no file, no fixed address.
        let base = unsafe { libc::mmap(std::ptr::null_mut(), mapped, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
        if base == libc::MAP_FAILED {
            return None;
        }
        let skip = (HUGE_PAGE - base as usize % HUGE_PAGE) % HUGE_PAGE;
        // SAFETY: `skip` < HUGE_PAGE, so `skip + bytes` lies within the mapping.
        let start = unsafe { base.cast::<u8>().add(skip) };
        // SAFETY: advice on a range of our own mapping; a kernel without huge pages ignores it.
        unsafe { libc::madvise(start.cast(), bytes, libc::MADV_HUGEPAGE) };
        Some(FreshBlocks { ptr: std::ptr::NonNull::new(start.cast())?, len, base, mapped, faulted: 0 })
    }
}

/// A region being faulted in ahead of the key derivation.
struct Prefault {
    len: usize,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Option<FreshBlocks>>,
}

/// The region [`prepare`] started, until the key derivation takes it.
static PREPARED: Mutex<Option<Prefault>> = Mutex::new(None);

/// Bytes faulted in between looks at the stop flag: one huge page.
const STEP: usize = HUGE_PAGE;

/// Starts faulting in a region of `len` blocks on a thread of its own (replacing one
/// prepared before), for the key derivation that [`take`] hands it to.
pub fn prepare(len: usize) {
    if let Some(p) = Prefault::start(len) {
        let old = PREPARED.lock().unwrap_or_else(|p| p.into_inner()).replace(p);
        drop(old.and_then(Prefault::finish));
    }
}

impl Prefault {
    fn start(len: usize) -> Option<Prefault> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("argon2-memory".into()).spawn(move || {
            let mut region = FreshBlocks::new(len)?;
            let bytes = len * std::mem::size_of::<Block>();
            let start = region.as_mut().as_mut_ptr().cast::<u8>();
            while region.faulted < bytes && !flag.load(Ordering::Relaxed) {
                let end = (region.faulted + STEP).min(bytes);
                while region.faulted < end {
                    // SAFETY: inside the region this thread owns; writing a zero keeps it
                    // reading as zeros (a valid block) and faults its page in.
                    unsafe { std::ptr::write_volatile(start.add(region.faulted), 0) };
                    region.faulted += 4096;
                }
            }
            Some(region)
        });
        Some(Prefault { len, stop, thread: thread.ok()? })
    }

    /// Stops the thread where it is and takes its region.
    fn finish(self) -> Option<FreshBlocks> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().ok().flatten()
    }
}

/// `len` zeroed blocks: the prepared region if it has that size (stopped where its thread
/// got to: the lanes fault in the rest), else a fresh one.
pub fn take(len: usize) -> Option<FreshBlocks> {
    let prepared = PREPARED.lock().unwrap_or_else(|p| p.into_inner()).take();
    match prepared.and_then(|p| if p.len == len { p.finish() } else { drop(p.finish()); None }) {
        Some(region) => Some(region),
        None => FreshBlocks::new(len),
    }
}

impl AsMut<[Block]> for FreshBlocks {
    fn as_mut(&mut self) -> &mut [Block] {
        // SAFETY: the mapping holds `len` blocks, is page-aligned (blocks need 64 bytes), reads
        // as zeros until written (a valid block), and is borrowed through `self` only.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for FreshBlocks {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, which nothing borrows any more.
        unsafe {
            libc::munmap(self.base, self.mapped);
        }
    }
}

// SAFETY: the mapping is owned memory like a Box; Argon2's lanes borrow it through `as_mut`.
unsafe impl Send for FreshBlocks {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key derived in `memory`, and the key the crate derives in its own allocation.
    fn both_ways(kib: u32, memory: impl FnOnce(usize) -> FreshBlocks) -> ([u8; 32], [u8; 32]) {
        let p = argon2_lanes::Params::new(kib, 2, 2, Some(32)).expect("params");
        let argon = argon2_lanes::Argon2::new(argon2_lanes::Algorithm::Argon2id, argon2_lanes::Version::V0x13, p.clone());
        let (mut own, mut ours) = ([0u8; 32], [0u8; 32]);
        argon.hash_password_into(b"pw", b"saltsaltsalt", &mut own).expect("hash");
        argon.hash_password_into_with_memory(b"pw", b"saltsaltsalt", &mut ours, memory(p.block_count())).expect("hash");
        (own, ours)
    }

    #[test]
    fn derived_keys_match_the_crates_own_allocation() {
        let (own, ours) = both_ways(1024, |len| FreshBlocks::new(len).expect("map"));
        assert_eq!(own, ours);
        assert_ne!(own, [0u8; 32]);
    }

    #[test]
    fn a_prefaulted_region_derives_the_same_key() {
        let (own, ours) = both_ways(4096, |len| {
            let started = Prefault::start(len).expect("thread");
            std::thread::sleep(std::time::Duration::from_millis(30));
            let blocks = started.finish().expect("map");
            assert!(blocks.faulted > 0, "the thread faulted nothing in");
            blocks
        });
        assert_eq!(own, ours);
    }

    #[test]
    fn a_prepared_region_of_another_size_is_not_handed_out() {
        let (want, other) = (4096 + 8, 8192 + 8);
        prepare(other);
        let blocks = take(want).expect("map");
        assert_eq!(blocks.len, want);
    }
}
