//! Pack-ordered restore into a file (the default on network stores, `--order pack` here): chunks repeated across the file and
//! across packs land at every place, byte-exact; a damaged pack met in the
//! middle of the restore is named and leaves nothing at the target.

use crate::common;

use std::path::{Path, PathBuf};

use common::vault::{pack_header_start, random_data, test_bytes, Vault};

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    out.sort();
    out
}

/// 3 MB whose 64 KiB blocks repeat: blocks of a small pool, in a shuffled
/// order, some twice in a row, plus fresh noise between them.
fn repetitive(seed: u64) -> Vec<u8> {
    let pool: Vec<Vec<u8>> = (0..6).map(|i| test_bytes(64 << 10, 100 + i)).collect();
    let mut out = Vec::new();
    let mut x = seed;
    while out.len() < 3_000_000 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        match (x >> 33) % 4 {
            0 => out.extend_from_slice(&random_data(x, 5000)),
            1 => {
                let b = &pool[((x >> 40) % 6) as usize];
                out.extend_from_slice(b);
                out.extend_from_slice(b);
            }
            _ => out.extend_from_slice(&pool[((x >> 40) % 6) as usize]),
        }
    }
    out
}

#[test]
fn chunks_repeated_across_the_file_and_across_packs_restore_byte_exact() {
    let v = Vault::init_small_packs();
    let first = repetitive(1);
    let id1 = v.backup_bytes("a.rdb", &first);
    // The second file reuses the first's chunks in another order (frames used in part, from
    // many packs, each chunk at several places) with new bytes between them.
    let mut second = first[1_500_000..].to_vec();
    second.extend_from_slice(&random_data(9, 70_000));
    second.extend_from_slice(&first[..1_500_000]);
    second.extend_from_slice(&first[200_000..900_000]);
    let id2 = v.backup_bytes("a.rdb", &second);
    assert!(v.files("data").len() > 4, "many packs: {}", v.files("data").len());
    for (id, data) in [(&id1, &first), (&id2, &second)] {
        for order in ["pack", "output"] {
            let out = v.dir.path().join(format!("out-{id}-{order}"));
            v.ok(&["restore", id, "--target", out.to_str().unwrap(), "--order", order]);
            assert!(std::fs::read(&out).unwrap() == *data, "file restore of {id} in {order} order is byte-exact");
        }
        let streamed = v.cmd(&["restore", id, "--target", "-"]).output().unwrap();
        assert!(streamed.status.success() && streamed.stdout == *data, "stream restore of {id} is byte-exact");
    }
}

/// A data pack (not a chunk-list pack) from the middle of those the backup wrote.
fn a_middle_data_pack(v: &Vault) -> PathBuf {
    let mut packs: Vec<(std::time::SystemTime, PathBuf)> =
        v.files("data").into_iter().map(|p| (std::fs::metadata(&p).unwrap().modified().unwrap(), p)).collect();
    packs.sort();
    // Data packs are written as the input goes; the largest ones are data, not lists.
    let big = packs.iter().map(|(_, p)| std::fs::metadata(p).unwrap().len()).max().unwrap();
    let data: Vec<PathBuf> = packs.into_iter().map(|(_, p)| p).filter(|p| std::fs::metadata(p).unwrap().len() * 2 > big).collect();
    data[data.len() / 2].clone()
}

fn assert_fails_naming(v: &Vault, pack: &Path, what: &str) {
    let name = pack.file_name().unwrap().to_str().unwrap().to_string();
    let dir = v.dir.path().join(format!("out-{what}"));
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join("restored.rdb");
    let err = v.fails(&["restore", "latest", "--target", target.to_str().unwrap(), "--order", "pack"]);
    assert!(err.contains(&name), "{what}: the error names pack {name}: {err}");
    assert!(err.contains(what), "{what}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(files_in(&dir).is_empty(), "{what}: no target and no temp file left: {:?}", files_in(&dir));
}

#[test]
fn damaged_pack_in_the_middle_of_a_restore_is_named_and_leaves_nothing() {
    let v = Vault::init_small_packs();
    v.backup_bytes("a.rdb", &test_bytes(2_000_000, 5));
    let pack = a_middle_data_pack(&v);
    let original = std::fs::read(&pack).unwrap();

    let mut tampered = original.clone();
    tampered[pack_header_start(&original) / 2] ^= 1;
    std::fs::write(&pack, &tampered).unwrap();
    assert_fails_naming(&v, &pack, "authentication failed");

    // Cut inside its frames: the header is gone and the reads run past the end.
    std::fs::write(&pack, &original[..pack_header_start(&original) / 2]).unwrap();
    assert_fails_naming(&v, &pack, "file ends before byte");

    std::fs::write(&pack, &original).unwrap();
    assert!(v.try_restore("latest").unwrap() == test_bytes(2_000_000, 5));
}
