//! The RDB writer: parse -> write -> parse keeps every key, value, TTL and function for every
//! encoding the parser reads (fixtures and the fuzz corpus), `redis-check-rdb` accepts the
//! output, and redis-server 7.0 loads it with the same `DEBUG DIGEST` as the original;
//! `restore --target` with a key selection or an older `--rdb-version`.

use crate::common;

use std::path::Path;

use common::dataset::{self, Backed, COMPACT, PLAIN};
use common::server::RedisServer;
use rdbvault::rdb::{Item, RdbReader, Record};
use rdbvault::redis::keyscan::KeyFilter;
use rdbvault::redis::glob::Glob;
use rdbvault::redis::rewrite::{rewrite, RewriteOptions};

/// Every item of an RDB, decoded with raw bytes.
fn items(rdb: &[u8]) -> Vec<Item> {
    RdbReader::new(rdb).expect("header").map(|i| i.expect("item")).collect()
}

/// What must survive a rewrite: db, key, type, value, expiry, LRU/LFU.
type Kept = (u64, Vec<u8>, &'static str, String, Option<u64>, Option<u64>, Option<u8>);

fn kept(items: &[Item]) -> (Vec<Kept>, Vec<Vec<u8>>) {
    let mut keys = Vec::new();
    let mut functions = Vec::new();
    for i in items {
        match i {
            Item::Record(r) => keys.push(kept_record(r)),
            Item::Function(f) => functions.push(f.clone()),
            _ => {}
        }
    }
    (keys, functions)
}

fn kept_record(r: &Record) -> Kept {
    (r.db, r.key.clone(), r.kind.as_str(), format!("{:?}", r.value), r.expire_ms, r.idle, r.freq)
}

/// A stream of an older type re-encoded as a newer one gains the metadata Redis assumes when
/// loading the older type (first id, entries added, unknown read counters, active times):
/// drop what the original did not have before comparing.
fn forget_upgraded(after: &mut Record, before: &Record) {
    use rdbvault::rdb::Value;
    if let (Value::Stream(a), Value::Stream(b)) = (&mut after.value, &before.value) {
        if b.first_id.is_none() {
            (a.first_id, a.max_deleted_id, a.entries_added) = (None, None, None);
        }
        for (ga, gb) in a.groups.iter_mut().zip(&b.groups) {
            if gb.entries_read.is_none() {
                ga.entries_read = None;
            }
            for (ca, cb) in ga.consumers.iter_mut().zip(&gb.consumers) {
                if cb.active_time_ms.is_none() {
                    ca.active_time_ms = None;
                }
            }
        }
    }
}

/// Rewrites `rdb` whole, copying bytes or re-encoding every value.
fn rewritten(rdb: &[u8], version: Option<u16>, reencode: bool) -> Vec<u8> {
    let opts = RewriteOptions { version, reencode, ..Default::default() };
    rewrite(rdb, "test", &opts, Vec::new()).expect("rewrite").1
}

/// RDB length (6-bit or 14-bit form) and string (length + bytes).
fn len(n: usize) -> Vec<u8> {
    if n < 64 { vec![n as u8] } else { vec![0x40 | (n >> 8) as u8, n as u8] }
}
fn s(b: &[u8]) -> Vec<u8> {
    [len(b.len()), b.to_vec()].concat()
}

/// Listpack of small ints (0..=127, one byte `0xxxxxxx`) and short strings (`10llllll` + bytes),
/// each followed by its one-byte back-length; header: total bytes u32 LE, count u16 LE; 0xFF.
fn lp(elems: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    for e in elems {
        let entry = match std::str::from_utf8(e).ok().and_then(|t| t.parse::<u8>().ok()) {
            Some(n) if n < 128 => vec![n],
            _ => [vec![0x80 | e.len() as u8], e.to_vec()].concat(),
        };
        body.extend_from_slice(&entry);
        body.push(entry.len() as u8);
    }
    let total = 6 + body.len() + 1;
    [(total as u32).to_le_bytes().to_vec(), (elems.len() as u16).to_le_bytes().to_vec(), body, vec![0xFF]].concat()
}

/// A stream id as 16 big-endian bytes (ms, seq).
fn raw_id(ms: u64, seq: u64) -> Vec<u8> {
    [ms.to_be_bytes(), seq.to_be_bytes()].concat()
}

/// Encodings no local server writes (Redis 7.0 writes neither 3.2-6.2's nor 7.2's), built by hand:
/// a quicklist v1 list (type 14), a set listpack (type 20, Redis 7.2), streams of types 15
/// (Redis 5) and 21 (Redis 7.2, consumer active time), as RDB 11.
fn handmade_v11() -> Vec<u8> {
    let mut f = b"REDIS0011".to_vec();
    f.extend([0xFE, 0]); // SELECTDB 0
    // Type 14: one node, a ziplist: zlbytes 17, zltail 13, zllen 2, entries
    // [prevlen 0, 6-bit string of 1 byte, 'a'] [prevlen 3, 0x01, 'b'], end 0xFF.
    let zl = [17, 0, 0, 0, 13, 0, 0, 0, 2, 0, 0, 1, b'a', 3, 1, b'b', 0xFF];
    f.extend([&[14u8][..], &s(b"ql"), &len(1), &s(&zl)].concat());
    // Type 20: a listpack of members "x", "y".
    f.extend([&[20u8][..], &s(b"setlp"), &s(&lp(&[b"x", b"y"]))].concat());
    // Streams: one node keyed by its master id 1-0; the listpack holds the master entry
    // (count 1, deleted 0, 1 field "f", terminator 0) then the entry (flags 2 = same fields,
    // ms/seq deltas 0 0, value "v", lp-count 4 = 1 value + 3).
    let node = lp(&[b"1", b"0", b"1", b"f", b"0", b"2", b"0", b"0", b"v", b"4"]);
    let entries = [len(1), s(&raw_id(1, 0)), s(&node), len(1), len(1), len(0)].concat(); // nodes, length 1, last id 1-0
    let pel = [len(1), raw_id(1, 0), 1_700_000_000_000u64.to_le_bytes().to_vec(), len(2)].concat(); // 1 pending, delivered twice
    // Type 15: entries, then 1 group "g" (last id 1-0), its PEL, 1 consumer "c" (seen time, its PEL ids).
    let consumer15 = [s(b"c"), 1_700_000_000_001u64.to_le_bytes().to_vec(), len(1), raw_id(1, 0)].concat();
    f.extend([&[15u8][..], &s(b"stream15"), &entries, &len(1), &s(b"g"), &len(1), &len(0), &pel, &len(1), &consumer15].concat());
    // Type 21: entries, first id 1-0, max deleted 0-0, entries added 1; the group has its entries read
    // (1), the consumer its active time.
    let meta = [len(1), len(0), len(0), len(0), len(1)].concat();
    let consumer21 = [s(b"c"), 1_700_000_000_001u64.to_le_bytes().to_vec(), 1_700_000_000_002u64.to_le_bytes().to_vec(), len(1), raw_id(1, 0)].concat();
    f.extend([&[21u8][..], &s(b"stream21"), &entries, &meta, &len(1), &s(b"g"), &len(1), &len(0), &len(1), &pel, &len(1), &consumer21].concat());
    f.push(0xFF);
    let crc = rdbvault::rdb::crc64(0, &f);
    f.extend(crc.to_le_bytes());
    f
}

/// The files the round trip runs over: the fixtures, every fuzz corpus entry that parses,
/// and [`handmade_v11`].
fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut out = vec![("handmade v11".to_string(), handmade_v11())];
    for dir in ["tests/fixtures/rdb", "fuzz/corpus/rdb"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for e in std::fs::read_dir(&dir).expect("read corpus dir") {
            let path = e.expect("entry").path();
            let bytes = std::fs::read(&path).expect("read");
            let parses = RdbReader::new(&bytes[..]).is_ok_and(|r| r.into_iter().all(|i| i.is_ok()));
            if parses {
                out.push((path.display().to_string(), bytes));
            }
        }
    }
    out
}

#[test]
fn round_trip_keeps_every_key_of_every_encoding() {
    let corpus = corpus();
    assert!(corpus.len() >= 6, "only {} corpus files parse", corpus.len());
    let mut types = std::collections::BTreeSet::new();
    for (name, rdb) in &corpus {
        let before = items(rdb);
        for i in &before {
            if let Item::Record(r) = i {
                types.insert(r.rdb_type);
            }
        }
        let version = RdbReader::new(&rdb[..]).unwrap().version().max(6);
        for reencode in [false, true] {
            let out = rewritten(rdb, Some(version), reencode);
            let mut after = items(&out);
            let olds = before.iter().filter_map(|i| if let Item::Record(r) = i { Some(r) } else { None });
            let news = after.iter_mut().filter_map(|i| if let Item::Record(r) = i { Some(r) } else { None });
            news.zip(olds).for_each(|(a, b)| forget_upgraded(a, b));
            assert_eq!(kept(&after), kept(&before), "{name}, reencode {reencode}");
            if !reencode {
                // Copied values keep their exact bytes (encoding, compression).
                let raw = |it: &[Item]| it.iter().filter_map(|i| if let Item::Record(r) = i { Some(r.raw.clone()) } else { None }).collect::<Vec<_>>();
                assert_eq!(raw(&after), raw(&before), "{name}");
            }
        }
    }
    // Every value type the parser reads is in the corpus: plain, ziplist, listpack, intset,
    // zipmap, quicklists, streams 15/19/21, modules, Redis 7.4 field-TTL hashes.
    for ty in [0u8, 1, 2, 3, 4, 5, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 24, 25] {
        assert!(types.contains(&ty), "no value of RDB type {ty} in the corpus: {types:?}");
    }
}

/// redis-check-rdb's verdict on `rdb`.
fn check_rdb(rdb: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.rdb");
    std::fs::write(&path, rdb).unwrap();
    let out = std::process::Command::new("redis-check-rdb").arg(&path).output().expect("run redis-check-rdb");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && text.contains("RDB looks OK"), "redis-check-rdb refused the output:\n{text}");
    text
}

/// A server filled with every type under `config`, its dump, and its digest.
fn filled(config: &[(&str, &str)]) -> (RedisServer, Vec<u8>, String) {
    let srv = RedisServer::start(config);
    let mut c = srv.resp();
    dataset::fill(&mut c);
    dataset::fill_users(&mut c, 5);
    let rdb = srv.save_rdb();
    let digest = srv.digest();
    (srv, rdb, digest)
}

#[test]
fn rebuilt_streams_and_7_2_encodings_load_into_redis_7_0() {
    // RDB 11 types (set listpack, stream v3) rewritten for Redis 7.0: plain set, streams rebuilt.
    let out = rewritten(&handmade_v11(), Some(10), false);
    check_rdb(&out);
    let srv = RedisServer::load_rdb(&out);
    let mut c = srv.resp();
    assert_eq!(dataset::sorted(c.cmd(&["SMEMBERS", "setlp"]).byte_list()), vec![b"x".to_vec(), b"y".to_vec()]);
    assert_eq!(c.cmd(&["LRANGE", "ql", "0", "-1"]).byte_list(), vec![b"a".to_vec(), b"b".to_vec()]);
    for key in ["stream15", "stream21"] {
        let pending = srv.cli(&["XPENDING", key, "g"]);
        assert!(pending.contains("1-0") && pending.contains('c'), "{key}: {pending}");
        assert!(srv.cli(&["XRANGE", key, "-", "+"]).contains('v'));
    }
}

#[test]
fn redis_loads_the_rewrite_with_the_same_digest() {
    for config in [COMPACT, PLAIN] {
        let (_srv, rdb, digest) = filled(config);
        for reencode in [false, true] {
            let out = rewritten(&rdb, None, reencode);
            check_rdb(&out);
            let loaded = RedisServer::load_rdb(&out);
            assert_eq!(loaded.digest(), digest, "reencode {reencode}");
            let libs = loaded.cli(&["FUNCTION", "LIST"]);
            assert!(libs.contains("testlib"), "function library lost: {libs}");
        }
    }
}

#[test]
fn an_older_version_is_written_where_the_data_allows() {
    let (_srv, rdb, digest) = filled(COMPACT);
    // Redis 7.0 loads an RDB 9 (Redis 5-6.2) file: plain encodings, stream type 15.
    let no_functions = RewriteOptions {
        version: Some(9),
        filter: KeyFilter { pattern: Some(Glob::new(b"*")), ..Default::default() },
        ..Default::default()
    };
    let (report, out) = rewrite(&rdb[..], "dump.rdb", &no_functions, Vec::new()).expect("rewrite as 9");
    assert!(out.starts_with(b"REDIS0009"));
    assert_eq!(report.rdb_version, 9);
    check_rdb(&out);
    assert_eq!(RedisServer::load_rdb(&out).digest(), digest);
    let types: Vec<u8> = items(&out).iter().filter_map(|i| if let Item::Record(r) = i { Some(r.rdb_type) } else { None }).collect();
    assert!(types.iter().all(|t| [0, 1, 2, 4, 5, 11, 9, 10, 12, 13, 14, 15].contains(t)), "{types:?}");

    // The whole snapshot holds a function library, which RDB 9 cannot.
    let err = rewrite(&rdb[..], "dump.rdb", &RewriteOptions { version: Some(9), ..Default::default() }, Vec::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "function library testlib cannot be written as RDB version 9: functions need RDB 10 (Redis 7.0) or later"
    );
    // Streams need RDB 9.
    let err = rewrite(&rdb[..], "dump.rdb", &RewriteOptions { version: Some(8), ..no_functions }, Vec::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "key \"stream:s\" in db 0 (stream) cannot be written as RDB version 8: streams need RDB 9 (Redis 5.0) or later"
    );
}

#[test]
fn restore_keys_to_a_file_writes_just_those_keys() {
    let b = Backed::new();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("users.rdb");
    let t = target.to_str().unwrap();
    let out = b.vault.ok(&["restore", &b.snap, "--keys", "user:*", "--db", "0", "--target", t]);
    let rdb = std::fs::read(&target).unwrap();
    assert!(out.starts_with(&format!("wrote 30 keys (db 0: 30) to {t} as RDB version 10 (1.")) && out.ends_with(" KiB)\n"), "{out}");
    check_rdb(&rdb);
    let (keys, functions) = kept(&items(&rdb));
    assert_eq!(keys.len(), 30);
    assert!(keys.iter().all(|k| k.0 == 0 && k.1.starts_with(b"user:")), "{keys:?}");
    assert!(functions.is_empty(), "a key selection holds keys only");
    let loaded = RedisServer::load_rdb(&rdb);
    let mut c = loaded.resp();
    assert_eq!(c.cmd(&["HGET", "user:7", "name"]).text(), "u7-db0");
    assert_eq!(dataset::keys_of(&mut c, 0).len(), 30);
    assert_eq!(std::fs::metadata(&target).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777).unwrap(), 0o600);

    // An existing file is not replaced without --overwrite; nothing else is left behind.
    let err = b.vault.fails(&["restore", &b.snap, "--keys", "user:1*", "--target", t]);
    assert!(err.contains("exists; pass --overwrite to replace it"), "{err}");
    b.vault.ok(&["restore", &b.snap, "--keys", "user:1*", "--target", t, "--overwrite"]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // An older version: the key and its type are named where the data does not allow it.
    let old = dir.path().join("old.rdb");
    let err = b.vault.fails(&["restore", &b.snap, "--type", "stream", "--rdb-version", "8", "--target", old.to_str().unwrap()]);
    assert!(err.contains("key \"stream:s\" in db 0 (stream) cannot be written as RDB version 8: streams need RDB 9 (Redis 5.0) or later"), "{err}");
    assert!(!old.exists(), "a refused rewrite leaves no file");
    b.vault.ok(&["restore", &b.snap, "--type", "stream", "--rdb-version", "9", "--target", old.to_str().unwrap()]);
    assert!(std::fs::read(&old).unwrap().starts_with(b"REDIS0009"));
}

/// Whether every item of `rdb` parses.
fn parses(rdb: &[u8]) -> bool {
    RdbReader::new(rdb).is_ok_and(|r| r.into_iter().all(|i| i.is_ok()))
}

/// Rewrites `rdb` (same version, at least 6) both ways; whatever parses must come back the same
/// (or be refused with an error, never written wrong).
fn assert_round_trip(rdb: &[u8]) {
    let before = items(rdb);
    let version = RdbReader::new(rdb).unwrap().version().max(6);
    for reencode in [false, true] {
        let opts = RewriteOptions { version: Some(version), reencode, ..Default::default() };
        let Ok((_, out)) = rewrite(rdb, "mutated", &opts, Vec::new()) else { continue };
        let mut after = items(&out);
        let olds = before.iter().filter_map(|i| if let Item::Record(r) = i { Some(r) } else { None });
        let news = after.iter_mut().filter_map(|i| if let Item::Record(r) = i { Some(r) } else { None });
        news.zip(olds).for_each(|(a, b)| forget_upgraded(a, b));
        assert_eq!(kept(&after), kept(&before), "reencode {reencode}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    /// Mutated corpus files that still parse (their checksum zeroed: "not computed") round-trip.
    #[test]
    fn mutated_rdbs_that_parse_round_trip(
        seed in proptest::prelude::any::<proptest::sample::Index>(),
        flips in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 1..4),
    ) {
        let all = corpus();
        let mut b = all[seed.index(all.len())].1.clone();
        let body = b.len() - 8;
        for (pos, val) in flips {
            b[pos.index(body)] = val;
        }
        b[body..].fill(0);
        if parses(&b) {
            assert_round_trip(&b);
        }
    }
}
