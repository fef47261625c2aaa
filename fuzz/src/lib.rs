//! Shared by every fuzz target: an allocator that aborts (a crash libFuzzer records) on any
//! single allocation above [`LIMIT`], so a length taken from the input without a check is
//! found even when the memory is never touched.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;

/// Largest allocation a parser may make for inputs of the fuzzed size (a few KiB).
pub const LIMIT: usize = 64 << 20;

/// The system allocator with a cap per allocation.
pub struct Capped;

fn too_big(_size: usize) -> ! {
    let _ = std::io::stderr().write_all(b"fuzz: allocation above 64 MiB: a length from the input went unchecked\n");
    std::process::abort()
}

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LIMIT {
            too_big(layout.size());
        }
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LIMIT {
            too_big(layout.size());
        }
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > LIMIT {
            too_big(new_size);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Capped = Capped;
