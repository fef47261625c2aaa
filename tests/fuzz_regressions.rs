//! Inputs the fuzz targets (fuzz/) found, each a test that failed before its fix, and a check
//! that every committed seed of fuzz/corpus still parses. `RDBVAULT_WRITE_FUZZ_SEEDS=1 cargo
//! test --test fuzz_regressions` rewrites the seeds the library produces (fuzz/README.md).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdbvault::crypto::{Cipher, Id, KdfParams, SecretKey};
use rdbvault::format::index::IndexFile;
use rdbvault::format::pack::{frame_entries, parse_header, sealed_header, BlobEntry, BlobType, FLAG_ZSTD};
use rdbvault::format::snapshot::{BackupSummary, RedisFacts, Snapshot, SnapshotFile, SourceDesc};
use rdbvault::rdb::RdbReader;
use rdbvault::redis::source::aof::streamed_files;
use rdbvault::redis::source::{RedisUrl, ReplicationStream};
use rdbvault::store::KeyFile;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

/// The committed seeds of one target (files named `seed-*`).
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus(target))
        .unwrap_or_else(|e| panic!("fuzz/corpus/{target}: {e}"))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("seed-")))
        .map(|p| (p.display().to_string(), std::fs::read(&p).expect("read seed")))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in fuzz/corpus/{target}");
    out
}

fn id(n: u8) -> Id {
    Id([n; 32])
}

/// Three frames as a pack writer lays them out: a compressed data frame of three blobs, a chunk list, a dictionary.
fn entries() -> Vec<BlobEntry> {
    let mut out: Vec<BlobEntry> = frame_entries(BlobType::Data, FLAG_ZSTD, 0, 120, &[(id(1), 100), (id(2), 40), (id(3), 1)]).collect();
    out.extend(frame_entries(BlobType::ChunkList, 0, 120, 136, &[(id(4), 96)]));
    out.extend(frame_entries(BlobType::Dictionary, FLAG_ZSTD, 256, 60, &[(id(5), 500)]));
    out
}

const PACK_HEADER_AAD: &[u8] = b"rdbvault:pack-header";

/// A pack header's plaintext behind the u32 LE end of its frames, as the pack_header target reads it.
fn pack_header_seed(entries: &[BlobEntry], blobs_end: u32) -> Vec<u8> {
    let cipher = Cipher::new(&SecretKey::from_bytes([7; 32]));
    let sealed = sealed_header(&cipher, entries);
    let plain = cipher.open(PACK_HEADER_AAD, &sealed[..sealed.len() - 4], "seed").expect("own seal");
    let mut out = blobs_end.to_le_bytes().to_vec();
    out.extend_from_slice(&plain);
    out
}

fn snapshot(full: bool) -> Snapshot {
    let mut details = serde_json::Map::new();
    if full {
        details.insert("replid".into(), "8f1e".into());
        details.insert("repl_offset".into(), 1234.into());
    }
    Snapshot {
        version: 1,
        time: "2026-01-02T03:04:05Z".into(),
        host: "db1".into(),
        username: "redis".into(),
        tags: if full { vec!["daily".into(), "eu".into()] } else { vec![] },
        group: full.then(|| "g1".into()),
        source: SourceDesc { kind: if full { "redis".into() } else { "file".into() }, name: "dump.rdb".into(), details },
        redis: full.then(|| RedisFacts {
            rdb_version: Some(10),
            redis_version: Some("7.0.15".into()),
            keys_per_db: [(0, 12), (1, 1)].into_iter().collect(),
            keys: Some(13),
            keys_with_ttl: Some(1),
            file: None,
            rdb_error: None,
        }),
        files: vec![SnapshotFile { name: "dump.rdb".into(), size: 481, blake3: "ab".repeat(32), chunks: 2, lists: vec![id(9).to_hex()], list_base: None }],
        summary: BackupSummary { bytes_processed: 481, chunks: 2, new_chunks: 1, new_raw_bytes: 300, bytes_added: 350, duration_ms: 7 },
        original: None,
        key_index: None,
        key_layers: None,
    }
}

/// What a master sends for a full sync of `rdb`: handshake replies, then the framed payload.
fn replication_seed(step: u8, auth: bool, diskless: bool, rdb: &[u8]) -> Vec<u8> {
    let mut out = vec![step, auth as u8];
    if auth {
        out.extend_from_slice(b"+OK\r\n");
    }
    out.extend_from_slice(b"+OK\r\n-ERR Unrecognized REPLCONF option: rdb-only\r\n\n\n+FULLRESYNC 8f1e0a 1234\r\n");
    if diskless {
        let mark = [b'm'; 40];
        out.extend_from_slice(b"$EOF:");
        out.extend_from_slice(&mark);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(rdb);
        out.extend_from_slice(&mark);
    } else {
        out.extend_from_slice(format!("${}\r\n", rdb.len()).as_bytes());
        out.extend_from_slice(rdb);
    }
    out
}

/// The seeds the library writes (RDB seeds are copied files, see fuzz/README.md).
fn write_seeds() {
    let write = |target: &str, name: &str, bytes: &[u8]| {
        std::fs::create_dir_all(corpus(target)).expect("corpus dir");
        std::fs::write(corpus(target).join(format!("seed-{name}")), bytes).expect("write seed");
    };
    let e = entries();
    write("pack_header", "three-frames", &pack_header_seed(&e, 316));
    write("pack_header", "one-frame", &pack_header_seed(&e[3..4], 136));
    write("pack_header", "empty", &pack_header_seed(&[], 0));
    let two = IndexFile { supersedes: vec![id(7)], packs: vec![(id(10), e.clone()), (id(11), e[..3].to_vec())] };
    write("index_file", "two-packs", &two.to_bytes());
    write("index_file", "empty", &IndexFile::default().to_bytes());
    write("snapshot_json", "full", &serde_json::to_vec(&snapshot(true)).expect("json"));
    write("snapshot_json", "plain", &serde_json::to_vec(&snapshot(false)).expect("json"));
    let master = SecretKey::from_bytes([3; 32]);
    let cheap = KdfParams { m_cost: 8, t_cost: 1, p_cost: 1 };
    let (_, key) = KeyFile::seal(&master, b"fuzz", cheap).and_then(|k| k.to_file()).expect("key file");
    write("key_file", "cheap-kdf", &key);
    write(
        "aof_manifest",
        "redis7",
        b"file appendonly.aof.2.base.rdb seq 2 type b\nfile appendonly.aof.1.incr.aof seq 1 type h\nfile appendonly.aof.3.incr.aof seq 3 type i\n",
    );
    write("aof_manifest", "comments", b"# written by hand\n\nfile a.aof seq 1 type b startoffset 0 endoffset 12\nfile b.aof seq 2 type i\n");
    let rdb = std::fs::read(corpus("rdb").join("seed-compact.rdb")).expect("rdb seed");
    write("replication_stream", "sized-auth", &replication_seed(255, true, false, &rdb));
    write("replication_stream", "diskless", &replication_seed(6, false, true, &rdb));
}

/// The master's side of a replication connection under test: reads return `data`, writes are dropped.
struct Pipe<'a>(&'a [u8]);

impl Read for Pipe<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.0.read(out)
    }
}

impl Write for Pipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The payload a master's bytes (`step` and `auth` bytes first, as the fuzz target reads them) yield.
fn replicate(input: &[u8]) -> Result<Vec<u8>, String> {
    let url = if input[1] & 1 == 1 { "redis://u:pw@fuzz:6379" } else { "redis://fuzz:6379" };
    let url = RedisUrl::parse(url).map_err(|e| e.to_string())?;
    let mut s = ReplicationStream::over(&url, Pipe(&input[2..]), Duration::from_secs(1)).map_err(|e| e.to_string())?;
    let mut payload = Vec::new();
    s.read_to_end(&mut payload).map_err(|e| e.to_string())?;
    Ok(payload)
}

#[test]
fn every_committed_fuzz_seed_parses() {
    if std::env::var_os("RDBVAULT_WRITE_FUZZ_SEEDS").is_some() {
        write_seeds();
    }
    for (name, b) in seeds("rdb") {
        let mut r = RdbReader::new(&b[..]).unwrap_or_else(|e| panic!("{name}: {e}"));
        while r.next_item().unwrap_or_else(|e| panic!("{name}: {e}")).is_some() {}
    }
    for (name, b) in seeds("pack_header") {
        let end = u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as u64;
        parse_header(&b[4..], end, &name).unwrap_or_else(|e| panic!("{e}"));
    }
    for (name, b) in seeds("index_file") {
        IndexFile::parse(&b, &name).unwrap_or_else(|e| panic!("{e}"));
    }
    for (name, b) in seeds("snapshot_json") {
        serde_json::from_slice::<Snapshot>(&b).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, b) in seeds("key_file") {
        let key = KeyFile::parse(&b, &name).unwrap_or_else(|e| panic!("{e}"));
        assert!(key.open(b"fuzz", &name).expect("opens").is_some(), "{name}: the fuzz target's password opens it");
    }
    for (name, b) in seeds("aof_manifest") {
        streamed_files(Path::new(&name), &b).unwrap_or_else(|e| panic!("{e}"));
    }
    for (name, b) in seeds("replication_stream") {
        let payload = replicate(&b).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(payload.starts_with(b"REDIS"), "{name}: the payload is the RDB");
    }
}

/// pack_header: two frames of 0 bytes at one offset parsed as two frames, but the writer
/// (which knows frames by offset) sealed them back as one, so a header did not round-trip.
/// No frame is shorter than its seal; such a header is now refused.
#[test]
fn pack_header_with_frames_shorter_than_their_seal_is_refused() {
    let input = std::fs::read(corpus("pack_header").join("regress-zero-length-frames")).expect("committed input");
    let end = u32::from_le_bytes(input[..4].try_into().expect("4 bytes")) as u64;
    let err = parse_header(&input[4..], end, "pack x").expect_err("a frame of 0 bytes");
    assert!(err.to_string().contains("shorter than its seal"), "{err}");
    // A well-formed header still parses and round-trips.
    let e = entries();
    let seed = pack_header_seed(&e, 316);
    assert_eq!(parse_header(&seed[4..], 316, "pack y").expect("parses"), e);
}

/// aof_manifest: `file .` passed the name check, so the AOF directory itself was to be read (and restored onto) as a file.
#[test]
fn aof_manifest_rejects_the_directory_itself_as_a_file_name() {
    let err = streamed_files(Path::new("appendonly.aof.manifest"), b"file . seq 1 type b\n").expect_err("'.' is no file name");
    assert!(err.to_string().contains("unsafe file name \".\""), "{err}");
}

/// snapshot_json: two files of 2^64-1 bytes made `Snapshot::size` overflow (a panic where overflow is checked).
#[test]
fn snapshot_size_saturates_instead_of_overflowing() {
    let mut snap = snapshot(false);
    snap.files[0].size = u64::MAX;
    snap.files.push(snap.files[0].clone());
    let json = serde_json::to_vec(&snap).expect("json");
    let parsed: Snapshot = serde_json::from_slice(&json).expect("a snapshot");
    assert_eq!(parsed.size(), u64::MAX);
}

/// The cheap key file of the corpus with other Argon2 costs.
fn key_file_with_costs(m_cost: u64, t_cost: u64) -> KeyFile {
    let b = std::fs::read(corpus("key_file").join("seed-cheap-kdf")).expect("key file seed");
    let mut json: serde_json::Value = serde_json::from_slice(&b).expect("json");
    json["kdf_params"]["m_cost"] = m_cost.into();
    json["kdf_params"]["t_cost"] = t_cost.into();
    KeyFile::parse(&serde_json::to_vec(&json).expect("json"), "keys/forged").expect("still a key file")
}

/// key_file: a key file's Argon2 memory cost was used unchecked, so a forged `m_cost` of
/// 2^32-1 KiB made opening it allocate 4 TiB (an abort) before the password was even tried.
#[test]
fn key_file_with_terabyte_argon2_memory_is_refused_before_hashing() {
    let err = key_file_with_costs(u32::MAX as u64, 1).open(b"fuzz", "keys/forged").expect_err("refused");
    assert!(err.to_string().contains("exceed the limit"), "{err}");
    assert!(err.to_string().contains("keys/forged"), "{err}");
}

/// key_file: likewise 2^32-1 passes would hash for days.
#[test]
fn key_file_with_billions_of_argon2_passes_is_refused_before_hashing() {
    let err = key_file_with_costs(8, u32::MAX as u64).open(b"fuzz", "keys/forged").expect_err("refused");
    assert!(err.to_string().contains("exceed the limit"), "{err}");
}

/// Sealing a new key under costs above the limit fails at once (the repository would not open).
#[test]
fn sealing_a_key_file_above_the_argon2_limit_fails() {
    let params = KdfParams { m_cost: u32::MAX, t_cost: 1, p_cost: 1 };
    assert!(KeyFile::seal(&SecretKey::from_bytes([3; 32]), b"pw", params).is_err());
}

/// rdb: an LZF string whose compressed length is near 2^64 overflowed the plausibility check of
/// its uncompressed length (a panic where overflow is checked) instead of failing as truncated.
#[test]
fn rdb_lzf_string_with_a_huge_compressed_length_is_an_error() {
    let input = b"REDIS0010\x00\x01k\xc3\x81\xff\xff\xff\xff\xff\xff\xff\xff\x00";
    let mut r = RdbReader::new(&input[..]).expect("header");
    let err = r.next_item().expect_err("truncated");
    assert!(matches!(err, rdbvault::rdb::RdbError::Truncated { .. }), "{err}");
}
