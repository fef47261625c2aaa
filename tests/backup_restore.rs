//! Round trips: what goes in comes back byte for byte.

use crate::common;

use common::data::fill;
use common::server::RedisServer;
use common::vault::{test_bytes, Vault};

/// A server filled with `n` generated keys, a new repository, and the server's dump saved into it.
fn saved_dump(n: u64, seed: u64) -> (RedisServer, Vault, std::path::PathBuf) {
    let redis = RedisServer::start(&[]);
    fill(&redis, n, 0, seed);
    let v = Vault::init();
    let rdb = redis.save_copy(&v.dir.path().join("dump.rdb"));
    (redis, v, rdb)
}

#[test]
fn random_data_round_trips_and_dedups_against_itself() {
    let v = Vault::init();
    let data = test_bytes(3_000_000, 42);
    let file = v.dir.path().join("blob.bin");
    std::fs::write(&file, &data).unwrap();
    let (id, first) = v.backup(&file, &["--raw", "--tag", "nightly", "--host", "db1"]);
    assert_eq!(first["bytes_processed"], 3_000_000);
    assert!(first["bytes_added"].as_u64().unwrap() > 0);
    let back = v.restore(&id[..10], &v.dir.path().join("out.bin"));
    assert!(back == data, "restored bytes differ");

    // The same file again stores nothing new.
    let (_, second) = v.backup(&file, &["--raw"]);
    assert_eq!(second["new_chunks"], 0);
    assert_eq!(second["bytes_added"], 0);

    let list = v.json(&["snapshots"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["tags"][0], "nightly");
    assert_eq!(list[0]["host"], "db1");
    assert_eq!(list[0]["size"], 3_000_000);
    assert_eq!(list[0]["files"][0]["blake3"], blake3::hash(&data).to_hex().as_str());
}

#[test]
fn real_rdb_from_redis_round_trips() {
    let (redis, v, rdb) = saved_dump(20_000, 7);
    let original = std::fs::read(&rdb).unwrap();
    assert!(original.starts_with(b"REDIS"));
    let (id, _) = v.backup(&rdb, &[]);
    let back = v.restore("latest", &v.dir.path().join("restored.rdb"));
    assert!(back == original, "restored RDB differs");

    // The snapshot records the RDB version from the header.
    let list = v.json(&["snapshots"]);
    assert_eq!(list[0]["id"], id.as_str());
    assert!(list[0]["redis"]["rdb_version"].as_u64().unwrap() >= 9);
    assert_eq!(list[0]["redis"]["keys"], 20_000);
    assert_eq!(list[0]["redis"]["keys_per_db"]["0"], 20_000);
    assert!(list[0]["redis"]["redis_version"].as_str().unwrap().starts_with(|c: char| c.is_ascii_digit()));
    assert!(list[0]["redis"]["rdb_error"].is_null());

    // A restored file loads into a fresh server with the same keys.
    let fresh = RedisServer::load_rdb(&std::fs::read(v.dir.path().join("restored.rdb")).unwrap());
    assert_eq!(fresh.cli(&["DBSIZE"]).trim(), "20000");
    assert_eq!(fresh.cli(&["DEBUG", "DIGEST"]), redis.cli(&["DEBUG", "DIGEST"]));
}

#[test]
fn stdin_backup_and_stdout_restore() {
    let v = Vault::init();
    let data = test_bytes(1_500_000, 9);
    let out = v.run_stdin(&["--json", "backup", "--raw", "--stdin", "--stdin-name", "dump.rdb"], &data);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let restored = v.run(&["restore", "latest", "--target", "-"]);
    assert!(restored.status.success());
    assert!(restored.stdout == data, "stdout restore differs");
    let list = v.json(&["snapshots"]);
    assert_eq!(list[0]["source"]["kind"], "stdin");
    assert_eq!(list[0]["files"][0]["name"], "dump.rdb");
}

#[test]
fn empty_inputs_give_valid_empty_snapshots_with_raw() {
    let v = Vault::init();
    let empty = v.dir.path().join("empty.rdb");
    std::fs::write(&empty, b"").unwrap();
    let (id, summary) = v.backup(&empty, &["--raw"]);
    assert_eq!(summary["bytes_processed"], 0);
    assert_eq!(summary["chunks"], 0);
    let target = v.dir.path().join("restored-empty.rdb");
    assert_eq!(v.restore(&id, &target), Vec::<u8>::new());

    let out = v.run_stdin(&["backup", "--raw", "--stdin"], b"");
    assert!(out.status.success());
    assert_eq!(v.json(&["snapshots"]).as_array().unwrap().len(), 2);
}

#[test]
fn missing_input_and_missing_repository_are_clear_errors() {
    let v = Vault::init();
    let err = v.fails(&["backup", "/nonexistent/dump.rdb"]);
    assert!(err.contains("/nonexistent/dump.rdb"), "{err}");
    assert!(v.json(&["snapshots"]).as_array().unwrap().is_empty(), "no snapshot after a failed backup");

    let other = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rdbvault"))
        .args(["snapshots", "-r"])
        .arg(other.path())
        .env("RDBVAULT_PASSWORD", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an rdbvault repository"));

    let err = v.fails(&["restore", "deadbeef", "--target", "/tmp/never"]);
    assert!(err.contains("no snapshot matches"), "{err}");
}

#[test]
fn repository_from_environment_and_password_file() {
    let v = Vault::init();
    let pwfile = v.dir.path().join("pw");
    std::fs::write(&pwfile, format!("{}\n", v.password)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rdbvault"))
        .args(["--json", "stats", "--password-file"])
        .arg(&pwfile)
        .env("RDBVAULT_REPOSITORY", &v.repo)
        .env_remove("RDBVAULT_PASSWORD")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["snapshots"], 0);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rdbvault"))
        .args(["snapshots", "--password-command", &format!("echo '{}'", v.password)])
        .env("RDBVAULT_REPOSITORY", &v.repo)
        .env_remove("RDBVAULT_PASSWORD")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn stats_report_dedup_and_compression() {
    let v = Vault::init();
    let file = v.dir.path().join("d.bin");
    std::fs::write(&file, test_bytes(2_000_000, 5)).unwrap();
    let (_, first) = v.backup(&file, &["--raw"]);
    let (_, second) = v.backup(&file, &["--raw"]);
    assert_eq!(second["new_raw_bytes"], 0, "the second backup stores nothing new");
    // The data repeats a short text, so some chunk-key seeds cut identical chunks from it
    // (stored once): the unique bytes are what the first backup stored, at most the file.
    let unique = first["new_raw_bytes"].as_u64().unwrap();
    assert!(unique > 1_900_000 && unique <= 2_000_000, "{first}");
    let s = v.json(&["stats"]);
    assert_eq!(s["snapshots"], 2);
    assert_eq!(s["total_raw_bytes"], 4_000_000);
    assert_eq!(s["unique_raw_bytes"], unique);
    assert!((s["dedup_ratio"].as_f64().unwrap() - 4_000_000.0 / unique as f64).abs() < 1e-9);
    assert!(s["compression_ratio"].as_f64().unwrap() > 1.0, "partly textual data compresses");
}

#[test]
fn stats_break_the_repository_down_part_by_part() {
    let (_redis, v, rdb) = saved_dump(3_000, 4);
    v.backup(&rdb, &[]);
    let s = v.json(&["stats"]);
    let b = &s["breakdown"];
    let n = |k: &str| b[k].as_u64().unwrap_or_else(|| panic!("breakdown.{k}: {b}"));
    // Every byte of the repository is in exactly one part.
    let parts = [
        "data_compressed_bytes",
        "data_frame_overhead_bytes",
        "chunk_list_bytes",
        "dictionary_bytes",
        "key_index_bytes",
        "pack_header_bytes",
        "index_bytes",
        "snapshot_bytes",
        "unindexed_pack_bytes",
        "other_bytes",
    ];
    assert_eq!(parts.iter().map(|k| n(k)).sum::<u64>(), s["repository_bytes"].as_u64().unwrap(), "{b}");
    // Nonce, tag and members digest per bound frame.
    assert_eq!(n("data_frame_overhead_bytes"), 72 * n("data_frames"));
    assert!(n("key_index_bytes") > 0 && n("chunk_list_bytes") > 0 && n("pack_header_bytes") > 0, "{b}");
    assert_eq!((n("index_files"), n("unindexed_pack_bytes")), (1, 0));
    // The data is the RDB: the key index is counted apart, not as data.
    assert_eq!(n("data_raw_bytes"), std::fs::metadata(&rdb).unwrap().len());
    assert_eq!(n("average_chunk_bytes"), n("data_raw_bytes") / n("data_chunks"));
    let ratio = b["data_compression_ratio"].as_f64().unwrap();
    assert!((ratio - n("data_raw_bytes") as f64 / n("data_compressed_bytes") as f64).abs() < 1e-9 && ratio > 1.0);
    let text = v.ok(&["stats"]);
    let tail = text.split_once("where the bytes go:\n").map(|(_, t)| t).unwrap_or_else(|| panic!("{text}"));
    let labels: Vec<&str> = tail.lines().map(|l| l.trim_start().split(':').next().unwrap()).collect();
    assert_eq!(labels, ["data", "frame sealing", "pack headers", "index files", "chunk lists", "key index", "dictionary", "snapshots", "config and keys"], "{text}");
    let data = tail.lines().next().unwrap();
    assert!(data.starts_with("  data:             ") && data.contains(" compressed (") && data.contains(&format!(" in {} chunks of ", n("data_chunks"))), "{data}");
    assert!(data.ends_with(&format!(" on average, {ratio:.2}x")), "{data}");
}

#[test]
fn damaged_rdb_is_stored_as_is_with_raw_and_a_warning() {
    let (_redis, v, rdb) = saved_dump(3_000, 3);
    let mut bytes = std::fs::read(&rdb).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&rdb, &bytes).unwrap();

    let out = v.run(&["backup", "--raw", rdb.to_str().unwrap()]);
    assert!(out.status.success(), "with --raw the user's data is kept even when damaged");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning") && err.contains("not a valid RDB"), "{err}");
    let list = v.json(&["snapshots"]);
    assert!(list[0]["redis"]["rdb_error"].as_str().unwrap().contains("byte"), "error names an offset: {}", list[0]["redis"]);
    assert!(v.restore("latest", &v.dir.path().join("back.rdb")) == bytes);
}

/// The share of `path`'s pages in the page cache.
fn cached_share(path: &std::path::Path) -> f64 {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    let page = 4096;
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: a read-only shared mapping of an open file, asked which pages are resident and
    // unmapped at once; nothing reads through it.
    unsafe {
        let at = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0);
        assert_ne!(at, libc::MAP_FAILED);
        assert_eq!(libc::mincore(at, len, vec.as_mut_ptr()), 0);
        libc::munmap(at, len);
    }
    vec.iter().filter(|b| *b & 1 == 1).count() as f64 / vec.len() as f64
}

#[test]
fn a_restore_leaves_the_file_it_wrote_out_of_the_page_cache() {
    let v = Vault::init();
    let data = test_bytes(32 << 20, 7);
    let file = v.dir.path().join("blob.bin");
    std::fs::write(&file, &data).unwrap();
    let (id, _) = v.backup(&file, &["--raw"]);
    // Whether this file system drops a synced file's pages when asked (tmpfs keeps them: they
    // are its storage).
    let probe = v.dir.path().join("probe.bin");
    std::fs::write(&probe, &data[..8 << 20]).unwrap();
    let f = std::fs::File::open(&probe).unwrap();
    f.sync_all().unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: advice on an open descriptor.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let drops = cached_share(&probe) < 0.1;
    // Front to back (a local disk's default) and pack by pack (a network store's).
    for order in ["output", "pack"] {
        let out = v.dir.path().join(format!("out-{order}.bin"));
        v.ok(&["restore", &id[..10], "--order", order, "--target", out.to_str().unwrap()]);
        let left = cached_share(&out);
        if drops {
            assert!(left < 0.1, "--order {order}: {:.0}% of the restored file is still in the page cache", left * 100.0);
        } else {
            eprintln!("this file system keeps dropped pages ({:.0}% cached): only the bytes are checked", left * 100.0);
        }
        assert!(std::fs::read(&out).unwrap() == data, "--order {order}: restored bytes differ");
    }
}
