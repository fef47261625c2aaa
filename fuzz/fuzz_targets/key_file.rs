//! A key file (plain JSON); opened with a password when its Argon2 costs are small enough to
//! fuzz, and refused without hashing when they are above the limit.
#![no_main]

extern crate rdbvault_fuzz;

use libfuzzer_sys::fuzz_target;
use rdbvault::store::keyfile::MAX_KDF;
use rdbvault::store::KeyFile;

fuzz_target!(|data: &[u8]| {
    let Ok(key) = KeyFile::parse(data, "keys/fuzz") else { return };
    let (_, bytes) = key.to_file().expect("a parsed key file serializes");
    KeyFile::parse(&bytes, "keys/fuzz").expect("own JSON parses");
    let p = key.kdf_params;
    if p.m_cost <= 64 && p.t_cost <= 2 && p.p_cost <= 2 {
        let _ = key.open(b"fuzz", "keys/fuzz");
    } else if p.m_cost > MAX_KDF.m_cost || p.t_cost > MAX_KDF.t_cost || p.p_cost > MAX_KDF.p_cost {
        assert!(key.open(b"fuzz", "keys/fuzz").is_err(), "costs above the limit must be refused");
    }
});
