//! An index file's plaintext (after the seal opened), then the in-memory index built from it.
#![no_main]

extern crate rdbvault_fuzz;

use libfuzzer_sys::fuzz_target;
use rdbvault::format::index::{Index, IndexFile};

fuzz_target!(|data: &[u8]| {
    let mut visited = 0usize;
    let visit = IndexFile::visit(data, "fuzz", |_, _| visited += 1);
    let Ok(file) = IndexFile::parse(data, "fuzz") else {
        assert!(visit.is_err(), "visit and parse disagree");
        return;
    };
    assert_eq!(visited, file.packs.iter().map(|(_, e)| e.len()).sum::<usize>());
    let files = vec![("fuzz".to_string(), file)];
    let index = Index::from_files(&files);
    for (_, entries) in &files[0].1.packs {
        for e in entries {
            assert!(index.get(&e.id).is_some(), "parsed blob missing from the index");
        }
    }
    let _ = IndexFile::parse(&files[0].1.to_bytes(), "fuzz");
    let by_pack = index.live_entries_by_pack(files);
    assert!(by_pack.values().all(|(_, e)| e.windows(2).all(|w| (w[0].offset, w[0].inner) <= (w[1].offset, w[1].inner))), "entries out of frame order");
});
