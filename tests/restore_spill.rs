//! Restores that find their chunks by a join on disk (`--index-memory`): byte-exact in
//! both orders and to stdout, across snapshots that share and repeat chunks, and a clear
//! error, with nothing left behind, when a chunk is not indexed.

use crate::common;

use common::vault::{test_bytes, Vault};

/// Three versions of 6 MiB: the second changes stretches of the first, the third repeats a
/// stretch many times (one chunk at many places) and appends to the second.
fn versions() -> Vec<Vec<u8>> {
    let v1 = test_bytes(6 << 20, 11);
    let mut v2 = v1.clone();
    for at in (0..v2.len()).step_by(700_000) {
        let end = (at + 3000).min(v2.len());
        v2[at..end].copy_from_slice(&test_bytes(end - at, at as u64));
    }
    let mut v3 = v2.clone();
    let block = test_bytes(64 << 10, 99);
    for _ in 0..24 {
        v3.extend_from_slice(&block);
    }
    vec![v1, v2, v3]
}

#[test]
fn spilling_restores_are_byte_exact_in_every_order() {
    let v = Vault::init();
    let data = versions();
    let ids: Vec<String> = data.iter().enumerate().map(|(i, d)| v.backup_bytes(&format!("v{i}.rdb"), d)).collect();
    for (id, want) in ids.iter().zip(&data) {
        for order in ["output", "pack"] {
            let target = v.dir.path().join(format!("{id}-{order}.rdb"));
            let out = v.ok(&["restore", id, "--index-memory", "0", "--order", order, "-t", target.to_str().unwrap()]);
            assert!(out.contains("verified"), "{out}");
            assert!(std::fs::read(&target).unwrap() == *want, "snapshot {id} restored in {order} order differs");
        }
        // To stdout (the spill goes to the temporary directory), set through the environment.
        let o = v.cmd(&["restore", id, "-t", "-"]).env("RDBVAULT_INDEX_MEMORY", "0").output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(o.stdout == *want, "snapshot {id} restored to stdout differs");
    }
    // The join leaves no file beside the targets: only the restored files are there.
    let strays: Vec<_> = std::fs::read_dir(v.dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).filter(|n| n.starts_with('.') || n.contains("tmp")).collect();
    assert!(strays.is_empty(), "left behind: {strays:?}");
}

#[test]
fn a_chunk_missing_from_the_index_fails_the_spilling_restore_by_name() {
    let v = Vault::init();
    let data = versions();
    v.backup_bytes("v0.rdb", &data[0]);
    let id = v.backup_bytes("v1.rdb", &data[1]);
    // The first backup's index file names the chunks the second shares with it: without it
    // those chunks are indexed nowhere (their packs are still there, so no header is read).
    let mut index = v.files("index");
    index.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    std::fs::remove_file(&index[0]).unwrap();
    let target = v.dir.path().join("restored.rdb");
    let err = v.fails_text(&["restore", &id, "--index-memory", "0", "-t", target.to_str().unwrap()]);
    assert!(err.contains("missing") || err.contains("not in the index"), "{err}");
    assert!(!target.exists(), "a failed restore left its target");
    // The same repository restored with the index in memory fails alike: the join loses nothing.
    let err_memory = v.fails_text(&["restore", &id, "-t", target.to_str().unwrap()]);
    assert_eq!(err.lines().last(), err_memory.lines().last(), "the two restores fail differently");
}
