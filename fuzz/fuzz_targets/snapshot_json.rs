//! A snapshot's plaintext JSON (after the seal opened), as `Snapshot::load` parses it.
#![no_main]

extern crate rdbvault_fuzz;

use libfuzzer_sys::fuzz_target;
use rdbvault::crypto::Id;
use rdbvault::format::snapshot::Snapshot;

fuzz_target!(|data: &[u8]| {
    let Ok(snap) = serde_json::from_slice::<Snapshot>(data) else { return };
    let _ = snap.size();
    for f in &snap.files {
        for l in &f.lists {
            let _ = Id::from_hex(l);
        }
    }
    let again = serde_json::to_vec(&snap).expect("a parsed snapshot serializes");
    let back: Snapshot = serde_json::from_slice(&again).expect("own JSON parses");
    assert_eq!(back.files, snap.files);
});
