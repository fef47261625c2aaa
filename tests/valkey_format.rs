//! Valkey 9 RDB files (`VALKEY080` magic, HASH_2 hashes with per-field expiry, the
//! SLOT_IMPORT opcode) read by the parser, `inspect`, `export` and `restore --target`, and
//! converted to Redis 7.4's field-TTL hash where asked; a hand-made fixture, bytes explained.

use crate::common;

use rdbvault::rdb::{crc64, Item, RdbReader, Value};

/// Hash field expiries in the fixture (absolute Unix ms; far in the future).
const FIELD_TTL: u64 = 4_102_444_800_000;
const KEY_TTL: u64 = 4_102_444_800_123;

fn s(b: &[u8]) -> Vec<u8> {
    assert!(b.len() < 64);
    [vec![b.len() as u8], b.to_vec()].concat()
}

/// `tests/fixtures/rdb/handmade-valkey80-hash2.rdb`, byte by byte.
fn valkey80_rdb() -> Vec<u8> {
    let mut f = b"VALKEY080".to_vec(); // magic "VALKEY" + 3-digit RDB version 80 (Valkey 9.0)
    f.extend([&[0xFA][..], &s(b"valkey-ver"), &s(b"9.0.0")].concat()); // AUX valkey-ver
    // SLOT_IMPORT (0xF3, Valkey 9 atomic slot migration): job name, 1 range, slots 0..=99.
    f.extend([&[0xF3][..], &s(b"job-1"), &[1, 0, 0x40, 99]].concat());
    f.extend([0xFE, 0, 0xFB, 2, 1]); // SELECTDB 0, RESIZEDB 2 keys, 1 with expiry
    // Type 22 (HASH_2 in a VALKEY file): 2 fields, each name, value, then its expiry as
    // 8 bytes LE: FIELD_TTL for "tmp", -1 (no expiry) for "keep".
    f.extend([&[22][..], &s(b"h:ttl"), &[2]].concat());
    f.extend([s(b"tmp"), s(b"gone soon"), FIELD_TTL.to_le_bytes().to_vec()].concat());
    f.extend([s(b"keep"), s(b"forever"), (-1i64).to_le_bytes().to_vec()].concat());
    // EXPIRETIME_MS (8 bytes LE), then a plain string.
    f.push(0xFC);
    f.extend(KEY_TTL.to_le_bytes());
    f.extend([&[0][..], &s(b"s"), &s(b"v")].concat());
    f.push(0xFF); // EOF, then the CRC64 of everything before it, LE
    let crc = crc64(0, &f);
    f.extend(crc.to_le_bytes());
    f
}

fn fixture_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rdb/handmade-valkey80-hash2.rdb")
}

/// The committed fixture is exactly the builder's output (RDBVAULT_REGENERATE_FIXTURES=1 rewrites it).
#[test]
fn fixture_matches_its_builder() {
    if std::env::var_os("RDBVAULT_REGENERATE_FIXTURES").is_some() {
        std::fs::write(fixture_path(), valkey80_rdb()).unwrap();
    }
    assert_eq!(std::fs::read(fixture_path()).unwrap(), valkey80_rdb());
}

/// The keys (name, value, expiry) of an RDB, and its header.
fn keys(rdb: &[u8]) -> (Vec<(Vec<u8>, Value, Option<u64>, u8)>, u16) {
    let r = RdbReader::new(rdb).expect("header");
    let v = r.version();
    let recs = r
        .map(|i| i.expect("item"))
        .filter_map(|i| if let Item::Record(r) = i { Some((r.key, r.value, r.expire_ms, r.rdb_type)) } else { None })
        .collect();
    (recs, v)
}

fn expected_hash() -> Value {
    Value::Hash(vec![
        (b"tmp".to_vec(), b"gone soon".to_vec(), Some(FIELD_TTL)),
        (b"keep".to_vec(), b"forever".to_vec(), None),
    ])
}

#[test]
fn parser_reads_valkey_9() {
    let (recs, version) = keys(&valkey80_rdb());
    assert_eq!(version, 80);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0], (b"h:ttl".to_vec(), expected_hash(), None, 22));
    assert_eq!(recs[1], (b"s".to_vec(), Value::String(b"v".to_vec()), Some(KEY_TTL), 0));
    let e = RdbReader::new(&b"VALKEY081"[..]).err().expect("81 refused").to_string();
    assert_eq!(e, "not an RDB file: Valkey RDB version 81 is not supported (80 to 80)");
}

#[test]
fn inspect_export_and_restore_read_a_valkey_snapshot() {
    let vault = common::vault::Vault::init();
    let (snap, _) = vault.backup(&fixture_path(), &[]);
    let summary = vault.ok(&["inspect", &snap]);
    assert!(summary.contains("80"), "{summary}");

    let line = vault.ok(&["export", &snap, "--format", "jsonl", "--type", "hash"]);
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["value"][0]["expire_ms"], FIELD_TTL);
    assert!(v["value"][1].get("expire_ms").is_none());

    // As is: still a Valkey file with its HASH_2; for Redis 7.4: field TTLs kept as type 24.
    let dir = tempfile::tempdir().unwrap();
    for (version, magic, ty) in [(None, &b"VALKEY080"[..], 22u8), (Some("12"), b"REDIS0012", 24)] {
        let out = dir.path().join(format!("out-{version:?}.rdb"));
        let mut args = vec!["restore", &snap, "--keys", "*", "--target", out.to_str().unwrap()];
        if let Some(v) = version {
            args.extend(["--rdb-version", v]);
        }
        vault.ok(&args);
        let rdb = std::fs::read(&out).unwrap();
        assert!(rdb.starts_with(magic));
        let (recs, _) = keys(&rdb);
        assert_eq!((recs[0].1.clone(), recs[0].3), (expected_hash(), ty));
        assert_eq!(recs[1].2, Some(KEY_TTL));
    }
    let err = vault.fails(&["restore", &snap, "--rdb-version", "11", "--target", dir.path().join("x.rdb").to_str().unwrap()]);
    assert!(
        err.contains("key \"h:ttl\" in db 0 (hash) cannot be written as RDB version 11: hash fields with their own TTL need RDB 12 (Redis 7.4) or 80 (Valkey 9.0)"),
        "{err}"
    );
}
