//! A Redis 7 AOF manifest: the files it names are later opened inside the AOF directory.
#![no_main]

extern crate rdbvault_fuzz;

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use rdbvault::redis::source::aof::streamed_files;

fuzz_target!(|data: &[u8]| {
    let Ok(files) = streamed_files(Path::new("appendonly.aof.manifest"), data) else { return };
    assert!(!files.is_empty());
    for f in &files {
        let mut parts = Path::new(&f.name).components();
        assert!(
            matches!((parts.next(), parts.next()), (Some(Component::Normal(_)), None)),
            "manifest names {:?}, which is not a file inside the AOF directory",
            f.name
        );
    }
});
