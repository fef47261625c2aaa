//! A pack header's plaintext (after the seal opened): `blobs_end` u32 LE, then the header.
#![no_main]

extern crate rdbvault_fuzz;

use libfuzzer_sys::fuzz_target;
use rdbvault::crypto::{Cipher, SecretKey};
use rdbvault::format::pack::{parse_header, sealed_header};

fuzz_target!(|data: &[u8]| {
    let Some((end, header)) = data.split_first_chunk::<4>() else { return };
    let blobs_end = u32::from_le_bytes(*end) as u64;
    let Ok(entries) = parse_header(header, blobs_end, "fuzz") else { return };
    for e in &entries {
        assert!(e.inner as u64 + e.raw_len as u64 <= e.frame_len as u64, "blob outside its frame");
        assert!(e.offset as u64 + e.length as u64 <= blobs_end, "frame outside the pack");
    }
    // What the writer makes of the parsed entries must parse back to them.
    let cipher = Cipher::new(&SecretKey::from_bytes([7; 32]));
    let sealed = sealed_header(&cipher, &entries);
    let plain = cipher.open(b"rdbvault:pack-header", &sealed[..sealed.len() - 4], "fuzz").expect("own seal");
    assert_eq!(parse_header(&plain, blobs_end, "fuzz").expect("own header"), entries);
});
