//! Argon2's working memory, mapped fresh from the kernel.
//!
//! The crate's own allocation asks for 64-byte alignment, which the system allocator can
//! only zero by writing every byte: one thread then faults in all 64 MiB (~20-40 ms) before
//! the lanes start. Fresh anonymous pages are already zero, and Argon2 writes each block
//! before it reads it, so here the lanes fault in their own pages in parallel as they fill
//! them. Unmapping returns the pages, and what the password left in them, to the kernel.
//! The region asks for transparent huge pages: 32 faults instead of 16 384, each of which
//! costs page-table and memory-cgroup bookkeeping (~10% of a small incremental's CPU).

use argon2_lanes::Block;

/// `len` blocks of zeroed memory from an anonymous mapping.
pub struct FreshBlocks {
    ptr: std::ptr::NonNull<Block>,
    len: usize,
    /// The whole mapping: the blocks start at its first huge-page boundary.
    base: *mut libc::c_void,
    mapped: usize,
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
        Some(FreshBlocks { ptr: std::ptr::NonNull::new(start.cast())?, len, base, mapped })
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

    #[test]
    fn derived_keys_match_the_crates_own_allocation() {
        let p = argon2_lanes::Params::new(1024, 2, 2, Some(32)).expect("params");
        let argon = argon2_lanes::Argon2::new(argon2_lanes::Algorithm::Argon2id, argon2_lanes::Version::V0x13, p.clone());
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        argon.hash_password_into(b"pw", b"saltsaltsalt", &mut a).expect("hash");
        let blocks = FreshBlocks::new(p.block_count()).expect("map");
        argon.hash_password_into_with_memory(b"pw", b"saltsaltsalt", &mut b, blocks).expect("hash");
        assert_eq!(a, b);
        assert_ne!(a, [0u8; 32]);
    }
}
