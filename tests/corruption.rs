//! Damaged repositories and wrong passwords: clear errors, never wrong output.

use crate::common;

use std::path::{Path, PathBuf};

use common::vault::{test_bytes, Vault};

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_in(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn flip(path: &Path, offset: usize) {
    let mut b = std::fs::read(path).unwrap();
    let at = offset.min(b.len() - 1);
    b[at] ^= 0x20;
    std::fs::write(path, b).unwrap();
}

/// A repository with one snapshot of 400 KB, and the original bytes.
fn setup() -> (Vault, Vec<u8>) {
    let v = Vault::init();
    let data = test_bytes(400_000, 3);
    let f = v.dir.path().join("in.rdb");
    std::fs::write(&f, &data).unwrap();
    v.backup(&f, &["--raw"]);
    (v, data)
}

fn assert_restore_fails_cleanly(v: &Vault, must_name: &str) {
    let target = v.dir.path().join("out").join("restored.rdb");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let err = v.fails(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(err.contains(must_name), "error should name {must_name}: {err}");
    assert!(!target.exists(), "a failed restore must not leave the target");
    assert!(files_in(target.parent().unwrap()).is_empty(), "no temp files left behind");
}

#[test]
fn wrong_password_is_a_clear_error_and_writes_nothing() {
    let (v, _) = setup();
    let before = files_in(&v.repo);
    let out = v.cmd(&["backup", "/etc/hostname"]).env("RDBVAULT_PASSWORD", "wrong").output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong password"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(files_in(&v.repo), before, "nothing written");
}

#[test]
fn flipped_byte_in_a_pack_blob_names_the_blob_and_pack() {
    let (v, _) = setup();
    // One pack of data and one of chunk lists: flip a byte in the data pack (the larger).
    let packs = files_in(&v.repo.join("data"));
    assert_eq!(packs.len(), 2);
    let data_pack = packs.iter().max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap();
    flip(data_pack, 100);
    let pack_name = data_pack.file_name().unwrap().to_str().unwrap().to_string();
    assert_restore_fails_cleanly(&v, &pack_name);
    let err = v.fails(&["restore", "latest", "--target", "-"]);
    assert!(err.contains("blob ") && err.contains("authentication failed"), "{err}");
}

#[test]
fn truncated_pack_is_named() {
    let (v, _) = setup();
    let pack = files_in(&v.repo.join("data")).remove(0);
    let b = std::fs::read(&pack).unwrap();
    std::fs::write(&pack, &b[..b.len() / 2]).unwrap();
    assert_restore_fails_cleanly(&v, pack.file_name().unwrap().to_str().unwrap());
}

#[test]
fn flipped_byte_in_index_snapshot_config_or_key_is_named() {
    // A damaged index is worked around by restore (tests/damaged_metadata.rs).
    for (dir, expect) in [("snapshots", "snapshots/"), ("config", "config"), ("keys", "keys/")] {
        for offset in [0usize, 30, 5000] {
            let (v, _) = setup();
            let path = if dir == "config" { v.repo.join("config") } else { files_in(&v.repo.join(dir)).remove(0) };
            flip(&path, offset);
            let target = v.dir.path().join("r.rdb");
            let err = v.fails(&["restore", "latest", "--target", target.to_str().unwrap()]);
            assert!(err.contains(expect), "{dir} at {offset}: error should name {expect}: {err}");
            assert!(!target.exists());
        }
    }
}

#[test]
fn missing_pack_is_named() {
    let (v, _) = setup();
    let pack = files_in(&v.repo.join("data")).remove(0);
    std::fs::remove_file(&pack).unwrap();
    assert_restore_fails_cleanly(&v, pack.file_name().unwrap().to_str().unwrap());
}

#[test]
fn ciphertexts_reveal_no_plaintext() {
    let (v, data) = setup();
    let needle = &data[..64];
    for f in files_in(&v.repo) {
        let b = std::fs::read(&f).unwrap();
        assert!(!b.windows(needle.len()).any(|w| w == needle), "{} holds plaintext", f.display());
        assert!(!b.windows(8).any(|w| w == b"key:user"), "{} holds plaintext", f.display());
    }
}

/// The stored dictionary is read while the input is, and new frames wait for it: when it
/// cannot be read, the backup names the missing pack (not its stopped workers) and saves
/// no snapshot.
#[test]
fn a_backup_whose_dictionary_is_missing_names_the_pack() {
    let (v, _) = setup();
    let packs = files_in(&v.repo.join("data"));
    let names: Vec<String> = packs.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for p in &packs {
        std::fs::remove_file(p).unwrap();
    }
    let f = v.dir.path().join("next.rdb");
    std::fs::write(&f, test_bytes(400_000, 4)).unwrap();
    let err = v.fails(&["backup", "--raw", f.to_str().unwrap()]);
    assert!(names.iter().any(|n| err.contains(n.as_str())), "{err}");
    assert!(!err.contains("stopped"), "{err}");
    assert_eq!(v.snapshots().len(), 1, "no snapshot saved");
}
