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

/// Every chunk-list and data entry of the index files, from `cat index` (one JSON object each).
fn index_entries(v: &Vault) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for f in v.files("index") {
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        for pack in v.json(&["cat", "index", &name])["packs"].as_array().unwrap() {
            for b in pack["blobs"].as_array().unwrap() {
                let mut b = b.clone();
                b["pack"] = pack["id"].clone();
                out.push(b);
            }
        }
    }
    out
}

fn field(b: &serde_json::Value, name: &str) -> u64 {
    b[name].as_u64().unwrap()
}

/// A top list blob is `"RVLT"` and 32-byte leaf ids; leaves and flat lists are 32-byte ids.
fn is_top(b: &serde_json::Value) -> bool {
    b["type"] == "chunk-list" && field(b, "raw_length") % 32 == 4
}

/// Index files use varints and gaps (one byte for a blob right after the last): at most
/// 36 bytes per blob, well under the 40 of fixed fields; the chunk lists are leaves that
/// hold exactly 32 bytes per chunk plus top blobs of 32 bytes per leaf, sharing frames
/// of ~32 KiB instead of one frame (and one seal) each.
#[test]
fn index_and_list_files_stay_within_bounds_from_their_entries() {
    let v = vault(RECORD_CHUNKS);
    let (_, s) = backup(&v, "v1.rdb", &rdb(&base(&mut Rng(3))));
    let chunks = field(&s, "chunks");
    let entries = index_entries(&v);
    let frames: std::collections::HashSet<(String, u64)> = entries.iter().map(|b| (b["pack"].as_str().unwrap().to_string(), field(b, "offset"))).collect();
    let packs: std::collections::HashSet<&str> = entries.iter().map(|b| b["pack"].as_str().unwrap()).collect();
    let files = v.files("index");
    let index_bytes: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
    // Per file: magic, version, counts, nonce and tag; per pack: id and count; per frame: 20.
    let bound = 36 * entries.len() as u64 + 20 * frames.len() as u64 + 40 * packs.len() as u64 + 60 * files.len() as u64;
    eprintln!("{} blobs, {} frames, {} packs: {index_bytes} B of index (bound {bound})", entries.len(), frames.len(), packs.len());
    assert!(index_bytes <= bound, "index files take {index_bytes} B, more than {bound}");
    assert!(index_bytes < 40 * entries.len() as u64, "index files take {index_bytes} B for {} blobs", entries.len());

    let lists: Vec<&serde_json::Value> = entries.iter().filter(|b| b["type"] == "chunk-list").collect();
    let (tops, leaves): (Vec<&serde_json::Value>, Vec<&serde_json::Value>) = lists.iter().copied().partition(|b| is_top(b));
    let leaf_bytes: u64 = leaves.iter().map(|b| field(b, "raw_length")).sum();
    let top_bytes: u64 = tops.iter().map(|b| field(b, "raw_length")).sum();
    assert_eq!(leaf_bytes, 32 * chunks, "leaves hold each chunk id once");
    assert_eq!(top_bytes, 4 * tops.len() as u64 + 32 * leaves.len() as u64, "top blobs hold each leaf id once");
    assert!(leaves.len() as u64 * 4 >= chunks / 16, "{} leaves for {chunks} chunks: not a tree", leaves.len());
    let list_frames: std::collections::HashSet<u64> = lists.iter().map(|b| field(b, "offset")).collect();
    let most = (leaf_bytes + top_bytes) / (32 << 10) + 2;
    assert!(list_frames.len() as u64 <= most, "{} list frames for {} B of lists", list_frames.len(), leaf_bytes + top_bytes);
}

/// After 1% of the keys change, the backup stores its chunk list as delta pieces against the
/// last full list: the new ids and a few bytes a run, not the leaves that hold a new id (as
/// a full list would) nor every list around a change. A second incremental draws from the
/// same full list (deltas never chain), and forgetting the full list's snapshot keeps what
/// the deltas draw from.
#[test]
fn one_percent_change_stores_its_chunk_list_as_a_small_delta() {
    let mut rng = Rng(23);
    let v1 = base(&mut rng);
    let change = |from: &[(u64, Vec<u8>)], rng: &mut Rng, salt: usize| {
        let mut to = from.to_vec();
        for k in 0..40 {
            let i = (k * 97 + 13 + salt) % to.len();
            let len = 100 + rng.below(1200);
            to[i].1 = value(rng, len);
        }
        to
    };
    let v2 = change(&v1, &mut rng, 0);
    let v3 = change(&v2, &mut rng, 5);
    let v = vault(RECORD_CHUNKS);
    let list_bytes = |entries: &[serde_json::Value], skip: &std::collections::HashSet<String>| -> u64 {
        entries.iter().filter(|b| b["type"] == "chunk-list" && !skip.contains(b["id"].as_str().unwrap())).map(|b| field(b, "raw_length")).sum()
    };
    let ids = |entries: &[serde_json::Value]| -> std::collections::HashSet<String> { entries.iter().map(|b| b["id"].as_str().unwrap().to_string()).collect() };
    let (first, s1) = backup(&v, "v1.rdb", &rdb(&v1));
    let full = list_bytes(&index_entries(&v), &Default::default());
    assert!(full >= 32 * field(&s1, "chunks"), "a full list holds every id");
    let (mut snaps, mut new_since) = (Vec::new(), 0);
    for (name, data) in [("v2.rdb", rdb(&v2)), ("v3.rdb", rdb(&v3))] {
        let before = ids(&index_entries(&v));
        let (id, s) = backup(&v, name, &data);
        let added = list_bytes(&index_entries(&v), &before);
        let snap = v.json(&["cat", "snapshot", &id]);
        let file = &snap["files"][0];
        let new_ids = field(&file["list_base"], "new_chunks");
        eprintln!("{name}: {added} B of list for {} chunks, {} new ({new_ids} new to the base); the full list: {full} B", field(&s, "chunks"), field(&s, "new_chunks"));
        // Drawn from the first backup's full list, even by name (a dump named by date).
        assert_eq!(file["list_base"]["snapshot"].as_str(), Some(first.as_str()), "{snap:#}");
        // Ids new since the base: this backup's new chunks, and those of the deltas before it.
        new_since += field(&s, "new_chunks");
        assert!(new_ids >= field(&s, "new_chunks") && new_ids <= new_since + 8, "{new_ids} ids new to the base");
        let pieces = file["lists"].as_array().unwrap().len() as u64;
        assert!(added <= 32 * new_ids + pieces * (16 + 3 * 32) + 8 * field(&s, "chunks") / 16, "{added} B of list for {new_ids} new ids in {pieces} pieces");
        assert!(added * 6 < full, "{added} B of list against {full} B for the whole list");
        assert!(v.restore(&id, &v.dir.path().join(format!("r-{name}"))) == data, "restore of {name} differs");
        snaps.push((id, data));
    }
    assert!(v.check_passes(&["--read-data"]).is_empty());
    // The full list's snapshot goes; what the deltas draw from stays.
    v.ok(&["forget", &first]);
    v.ok(&["prune"]);
    for (n, (id, data)) in snaps.iter().enumerate() {
        assert!(v.restore(id, &v.dir.path().join(format!("pruned-{n}.rdb"))) == *data, "restore after prune differs");
    }
    assert!(v.check_passes(&["--read-data"]).is_empty());
    // The next backup writes a full list again: its base is gone.
    let (_, s4) = backup(&v, "v4.rdb", &rdb(&v1));
    let last = v.json(&["cat", "snapshot", "latest"]);
    assert!(last["files"][0].get("list_base").is_none(), "{last:#}");
    assert_eq!(field(&s4, "chunks"), field(&s1, "chunks"));
}

/// A damaged frame of list blobs (leaves and top blobs share frames) fails the restore,
/// naming the pack, and `check` reports it.
#[test]
fn tampered_list_frames_are_refused() {
    let v = vault(RECORD_CHUNKS);
    let (id, _) = backup(&v, "v1.rdb", &rdb(&base(&mut Rng(29))));
    let entries = index_entries(&v);
    let mut frames: Vec<(String, u64, u64, bool)> = Vec::new();
    for b in entries.iter().filter(|b| b["type"] == "chunk-list") {
        let f = (b["pack"].as_str().unwrap().to_string(), field(b, "offset"), field(b, "length"));
        match frames.iter_mut().find(|(p, o, _, _)| *p == f.0 && *o == f.1) {
            Some(seen) => seen.3 |= is_top(b),
            None => frames.push((f.0, f.1, f.2, is_top(b))),
        }
    }
    assert!(frames.len() >= 2, "the lists fill several frames");
    assert!(frames.iter().any(|f| f.3), "a frame holds a top blob");
    for (pack, offset, length, _) in &frames {
        let w = v.copy();
        let path = w.repo.join("data").join(&pack[..2]).join(pack);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(offset + length / 2) as usize] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let err = w.try_restore(&id).expect_err("a damaged list frame must fail the restore");
        assert!(err.contains(&pack[..16]) && err.contains("authentication failed"), "{err}");
        let (ok, report) = w.check(&[]);
        assert!(!ok, "check passed a damaged list frame: {report:#}");
    }
}


#[test]
fn new_repositories_cut_record_chunks_of_at_least_1_kib() {
    // A default repository: record chunks of 1 KiB / 2 KiB / 16 KiB.
    let v = Vault::init();
    let mut rng = Rng(11);
    // 20 000 keys of 20-60 byte values: dozens of records per KiB.
    let keys: Vec<(u64, Vec<u8>)> = (0..20_000)
        .map(|id| {
            let len = 20 + rng.below(40);
            (id, value(&mut rng, len))
        })
        .collect();
    let data = rdb(&keys);
    backup(&v, "dump.rdb", &data);
    let b = v.json(&["stats"])["breakdown"].clone();
    let (chunks, average) = (b["data_chunks"].as_u64().unwrap(), b["average_chunk_bytes"].as_u64().unwrap());
    // A record starts a chunk only once the chunk holds 1 KiB (at 256 B, chunks averaged ~300 B
    // here, and each costs ~110 bytes of index, pack header and chunk list).
    assert!(average >= 1024, "{chunks} chunks of {average} B on average");
    let out = v.dir.path().join("back.rdb");
    assert!(v.restore("latest", &out) == data);
}

/// One small value that changes length, ten times over, stores at most the chunks beside it
/// each time: a cut depends on the records near it, not on the cut before it (with the chained
/// rule of older repositories, small records let one change move the cuts of many chunks).
#[test]
fn a_small_change_among_small_records_stores_only_its_neighbourhood() {
    let v = Vault::init();
    let mut rng = Rng(5);
    let mut keys: Vec<(u64, Vec<u8>)> = (0..20_000)
        .map(|id| {
            let len = 8 + rng.below(50);
            (id, value(&mut rng, len))
        })
        .collect();
    backup(&v, "dump.rdb", &rdb(&keys));
    for round in 0..10 {
        let at = rng.below(keys.len() as u64) as usize;
        let len = (keys[at].1.len() as u64 + 1 + rng.below(9)) % 60;
        keys[at].1 = value(&mut rng, len);
        let (_, s) = backup(&v, "dump.rdb", &rdb(&keys));
        let (new, bytes) = (s["new_chunks"].as_u64().unwrap(), s["new_raw_bytes"].as_u64().unwrap());
        assert!(new <= 3 && bytes <= 12 << 10, "round {round}, key {at}: {new} new chunks, {bytes} bytes: {s}");
    }
    let out = v.dir.path().join("back.rdb");
    assert!(v.restore("latest", &out) == rdb(&keys));
}
