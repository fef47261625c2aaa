//! Record-aligned chunking: a change to a few keys (values that change length, keys deleted
//! and added) stores little more than those keys' records, neighbours are not sent again, and
//! restores stay byte-exact.

use crate::common;

use common::data::Rng;
use common::vault::Vault;

/// An RDB (version 10, checksum 0) of string keys `key:{id}` with incompressible values.
fn rdb(keys: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut f = b"REDIS0010\xFA\x09redis-ver\x057.0.0\xFE\x00".to_vec();
    for (id, value) in keys {
        let key = format!("key:{id:08}");
        f.push(0);
        f.push(key.len() as u8);
        f.extend_from_slice(key.as_bytes());
        f.extend_from_slice(&[0x80]);
        f.extend_from_slice(&(value.len() as u32).to_be_bytes());
        f.extend_from_slice(value);
    }
    f.push(0xFF);
    f.extend_from_slice(&[0; 8]);
    f
}

/// Bytes of one key's record in [`rdb`].
fn record_len(value: &[u8]) -> u64 {
    1 + 1 + 12 + 5 + value.len() as u64
}

fn value(rng: &mut Rng, len: u64) -> Vec<u8> {
    (0..len).map(|_| rng.below(256) as u8).collect()
}

/// 4000 keys of 100-1300 bytes (about 3 MiB).
fn base(rng: &mut Rng) -> Vec<(u64, Vec<u8>)> {
    (0..4000)
        .map(|id| {
            let len = 100 + rng.below(1200);
            (id, value(rng, len))
        })
        .collect()
}

fn backup(v: &Vault, name: &str, data: &[u8]) -> (String, serde_json::Value) {
    let path = v.dir.path().join(name);
    std::fs::write(&path, data).unwrap();
    v.backup(&path, &[])
}

/// A repository with 256 B / 1 KiB / 16 KiB chunks, cut at records (one record in one starts a
/// chunk) or (`off`) by FastCDC alone.
fn vault(record_chunks: &str) -> Vault {
    let v = Vault::init();
    std::fs::remove_dir_all(&v.repo).unwrap();
    v.ok(&["init", "--kdf-memory-kib", "8192", "--chunk-min", "256", "--chunk-avg", "1024", "--chunk-max", "16384", "--record-chunks", record_chunks]);
    v
}

const RECORD_CHUNKS: &str = "256,1024,16384";

/// 1% of keys rewritten with new lengths, 0.5% deleted, 0.5% added: the new raw bytes stay
/// within 3x those records' own bytes (1.4x when written), well under FastCDC's at the same
/// chunk sizes (3.4x).
#[test]
fn churn_of_one_percent_adds_few_bytes() {
    let mut rng = Rng(17);
    let v1 = base(&mut rng);
    let mut v2 = v1.clone();
    let mut changed = 0u64;
    for _ in 0..40 {
        let i = rng.below(v2.len() as u64) as usize;
        let len = 100 + rng.below(1200);
        v2[i].1 = value(&mut rng, len);
        changed += record_len(&v2[i].1);
    }
    for _ in 0..20 {
        let i = rng.below(v2.len() as u64) as usize;
        v2.remove(i);
        let at = rng.below(v2.len() as u64) as usize;
        let id = 10_000 + rng.below(1_000_000);
        let len = 100 + rng.below(1200);
        let val = value(&mut rng, len);
        changed += record_len(&val);
        v2.insert(at, (id, val));
    }
    let (a, b) = (rdb(&v1), rdb(&v2));
    let mut added = Vec::new();
    for mode in [RECORD_CHUNKS, "off"] {
        let v = vault(mode);
        backup(&v, "v1.rdb", &a);
        let (id, s) = backup(&v, "v2.rdb", &b);
        added.push(s["new_raw_bytes"].as_u64().unwrap());
        assert!(v.restore(&id, &v.dir.path().join("r2.rdb")) == b, "{mode}: restore differs");
    }
    eprintln!("changed records {changed} B; new raw bytes: record-aligned {} B, FastCDC {} B", added[0], added[1]);
    assert!(added[0] <= 3 * changed, "record-aligned chunks added {} B for {changed} B of changed records", added[0]);
    assert!(added[0] * 3 < added[1] * 2, "record-aligned {} B is not well under FastCDC's {} B", added[0], added[1]);
}

/// Deleting one key and adding another far from it sends only the chunks around those two.
#[test]
fn deleting_and_adding_keys_does_not_resend_neighbours() {
    let mut rng = Rng(5);
    let v1 = base(&mut rng);
    let mut v2 = v1.clone();
    v2.remove(1000);
    let val = value(&mut rng, 500);
    v2.insert(3000, (999_999, val));
    let v = vault(RECORD_CHUNKS);
    backup(&v, "v1.rdb", &rdb(&v1));
    let b = rdb(&v2);
    let (id, s) = backup(&v, "v2.rdb", &b);
    let (new, raw) = (s["new_chunks"].as_u64().unwrap(), s["new_raw_bytes"].as_u64().unwrap());
    eprintln!("{new} new chunks, {raw} B");
    // At most: the deleted key's chunk merged with its neighbour, the added key's chunk split in two.
    assert!(new <= 4, "{new} new chunks");
    assert!(raw <= 3 * 16384, "{raw} new bytes");
    assert!(v.restore(&id, &v.dir.path().join("r2.rdb")) == b);
}
