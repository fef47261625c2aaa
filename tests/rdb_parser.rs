//! Integration tests for `rdbvault::rdb` against real redis-server dumps and hand-made fixtures.

use crate::common;

use std::collections::{BTreeMap, HashMap};

use common::dataset::{fill, keyspace, now_ms, sorted, COMPACT, PLAIN};
use common::rdb::records;
use common::resp::{Resp, RespConn};
use common::server::RedisServer;
use rdbvault::rdb::{
    self, dump_payload, Item, RdbError, RdbReader, ReadOptions, Record, Value, ValueKind,
};

fn parse_all(bytes: &[u8], opts: ReadOptions) -> (u16, Vec<Item>) {
    let mut r = RdbReader::with_options(bytes, opts).expect("header");
    let mut items = Vec::new();
    while let Some(it) = r
        .next_item()
        .unwrap_or_else(|e| panic!("parse failed: {e}"))
    {
        items.push(it);
    }
    assert_eq!(
        r.offset(),
        bytes.len() as u64,
        "parser must consume the whole file"
    );
    (r.version(), items)
}

fn score_of(r: &Resp) -> f64 {
    r.text().parse::<f64>().expect("score")
}

/// Asserts one parsed record matches what the live server holds.
fn check_record(c: &mut RespConn, rec: &Record) {
    let key: &[u8] = &rec.key;
    let name = String::from_utf8_lossy(key).into_owned();
    c.ok(&["SELECT", &rec.db.to_string()]);
    let ty = c.cmd_bytes(&[b"TYPE", key]).text();
    assert_eq!(ty, rec.kind.as_str(), "type of {name}");
    let enc = c.cmd_bytes(&[b"OBJECT", b"ENCODING", key]).text();
    assert_eq!(enc, rec.encoding, "encoding of {name}");

    let pttl = c.cmd_bytes(&[b"PTTL", key]).int();
    match rec.expire_ms {
        None => assert_eq!(pttl, -1, "{name} has no TTL"),
        Some(at) => {
            assert!(pttl > 0, "{name} should have a TTL");
            let server_at = now_ms() + pttl as u64;
            assert!(
                at.abs_diff(server_at) < 10_000,
                "{name}: expiry {at} vs server {server_at}"
            );
        }
    }

    match &rec.value {
        Value::String(s) => assert_eq!(&c.cmd_bytes(&[b"GET", key]).bytes(), s, "{name}"),
        Value::List(items) => {
            assert_eq!(
                &c.cmd_bytes(&[b"LRANGE", key, b"0", b"-1"]).byte_list(),
                items,
                "{name}"
            )
        }
        Value::Set(items) => assert_eq!(
            sorted(c.cmd_bytes(&[b"SMEMBERS", key]).byte_list()),
            sorted(items.clone()),
            "{name}"
        ),
        Value::SortedSet(items) => {
            let reply = c
                .cmd_bytes(&[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"])
                .array();
            let server: BTreeMap<Vec<u8>, f64> = reply
                .chunks(2)
                .map(|p| (p[0].bytes(), score_of(&p[1])))
                .collect();
            let ours: BTreeMap<Vec<u8>, f64> = items.iter().cloned().collect();
            assert_eq!(server.len(), items.len(), "{name}");
            for (m, s) in &ours {
                let theirs = server
                    .get(m)
                    .unwrap_or_else(|| panic!("{name}: missing member"));
                assert!(
                    s == theirs || (s - theirs).abs() <= s.abs() * 1e-15,
                    "{name}: {s} vs {theirs}"
                );
            }
        }
        Value::Hash(fields) => {
            let reply = c.cmd_bytes(&[b"HGETALL", key]).byte_list();
            let server: BTreeMap<Vec<u8>, Vec<u8>> = reply
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect();
            let ours: BTreeMap<Vec<u8>, Vec<u8>> = fields
                .iter()
                .map(|(f, v, t)| {
                    assert!(t.is_none());
                    (f.clone(), v.clone())
                })
                .collect();
            assert_eq!(ours, server, "{name}");
            assert_eq!(fields.len(), server.len());
        }
        Value::Stream(s) => check_stream(c, key, s),
        Value::Module(_) | Value::NotDecoded => panic!("unexpected value for {name}"),
    }
}

fn check_stream(c: &mut RespConn, key: &[u8], s: &rdb::Stream) {
    let xr = c.cmd_bytes(&[b"XRANGE", key, b"-", b"+"]).array();
    assert_eq!(xr.len(), s.entries.len());
    for (e, ours) in xr.iter().zip(&s.entries) {
        let e = e.array();
        assert_eq!(e[0].text(), ours.id.to_string());
        let flat: Vec<Vec<u8>> = ours
            .fields
            .iter()
            .flat_map(|(f, v)| [f.clone(), v.clone()])
            .collect();
        assert_eq!(e[1].byte_list(), flat);
    }
    assert_eq!(c.cmd_bytes(&[b"XLEN", key]).int() as u64, s.length);
    let info = c.cmd_bytes(&[b"XINFO", b"STREAM", key]).array();
    let info: HashMap<String, Resp> = info
        .chunks(2)
        .map(|p| (p[0].text(), p[1].clone()))
        .collect();
    assert_eq!(info["last-generated-id"].text(), s.last_id.to_string());
    assert_eq!(
        info["max-deleted-entry-id"].text(),
        s.max_deleted_id.expect("v2 stream").to_string()
    );
    assert_eq!(
        info["entries-added"].int() as u64,
        s.entries_added.expect("v2 stream")
    );
    let groups = c.cmd_bytes(&[b"XINFO", b"GROUPS", key]).array();
    assert_eq!(groups.len(), s.groups.len());
    assert!(!s.groups.is_empty());
    for g in groups {
        let g: HashMap<String, Resp> = g
            .array()
            .chunks(2)
            .map(|p| (p[0].text(), p[1].clone()))
            .collect();
        let ours = s
            .groups
            .iter()
            .find(|x| x.name == g["name"].bytes())
            .expect("group present");
        assert_eq!(g["last-delivered-id"].text(), ours.last_id.to_string());
        assert_eq!(g["pending"].int() as usize, ours.pending.len());
        assert_eq!(g["consumers"].int() as usize, ours.consumers.len());
        for p in &ours.pending {
            assert!(p.delivery_count >= 1);
            assert!(p.delivery_time_ms.abs_diff(now_ms()) < 600_000);
        }
        let pend = c
            .cmd_bytes(&[b"XPENDING", key, &g["name"].bytes(), b"-", b"+", b"100"])
            .array();
        let server_ids: Vec<String> = pend.iter().map(|p| p.array()[0].text()).collect();
        let our_ids: Vec<String> = ours.pending.iter().map(|p| p.id.to_string()).collect();
        assert_eq!(server_ids, our_ids);
        let owners: Vec<String> = pend.iter().map(|p| p.array()[1].text()).collect();
        for (id, owner) in our_ids.iter().zip(owners) {
            let cons = ours
                .consumers
                .iter()
                .find(|c| c.name == owner.as_bytes())
                .expect("consumer");
            assert!(cons.pending.iter().any(|p| &p.to_string() == id));
        }
    }
}

fn check_server_dump(extra: &[(&str, &str)], expect_encodings: &[&str]) {
    let srv = RedisServer::start(extra);
    let mut c = srv.resp();
    fill(&mut c);
    let bytes = srv.save_rdb();
    let (version, items) = parse_all(&bytes, ReadOptions::default());
    assert_eq!(version, 10, "redis 7.0 writes RDB 10");
    let recs = records(&items);

    // Every key the parser reports matches the server.
    for rec in &recs {
        check_record(&mut c, rec);
    }
    // Key counts per db match INFO keyspace.
    let mut ours: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for r in &recs {
        let e = ours.entry(r.db).or_default();
        e.0 += 1;
        e.1 += r.expire_ms.is_some() as u64;
    }
    assert_eq!(ours, keyspace(&mut c));
    let summary = rdb::summarize(&bytes[..]).expect("summary");
    assert_eq!(summary.keys, recs.len() as u64);
    assert_eq!(summary.total_bytes, bytes.len() as u64);
    assert_eq!(summary.functions, 1);
    assert_eq!(
        summary.aux.get("redis-ver").map(String::as_str),
        Some("7.0.15")
    );
    assert!(summary.aux.contains_key("used-mem"));
    for (db, (keys, expires)) in keyspace(&mut c) {
        assert_eq!(summary.dbs[&db].keys, keys);
        assert_eq!(summary.dbs[&db].keys_with_ttl, expires);
    }
    let long = recs
        .iter()
        .find(|r| r.key == b"str:long")
        .expect("str:long");
    assert_eq!(long.raw[1], 0xC3, "str:long must be stored LZF-compressed");
    let encs: Vec<&str> = recs.iter().map(|r| r.encoding).collect();
    for e in expect_encodings {
        assert!(
            encs.contains(e),
            "expected some key with encoding {e}, got {encs:?}"
        );
    }
    // Function library code comes through.
    assert!(items
        .iter()
        .any(|i| matches!(i, Item::Function(code) if code.starts_with(b"#!lua name=testlib"))));
    assert!(items.iter().any(|i| matches!(i, Item::SelectDb(3))));

    // Skip-decoding mode sees the same keys, encodings and raw bytes.
    let (_, fast) = parse_all(&bytes, ReadOptions::raw_only());
    let fast = records(&fast);
    assert_eq!(fast.len(), recs.len());
    for (a, b) in recs.iter().zip(&fast) {
        assert_eq!(
            (a.db, &a.key, a.encoding, &a.raw, a.expire_ms),
            (b.db, &b.key, b.encoding, &b.raw, b.expire_ms)
        );
        assert_eq!(b.value, Value::NotDecoded);
        assert_eq!(a.serialized_len, a.raw.len() as u64);
        assert!(rdb::approx_memory(a) > 0);
        let j = rdb::record_to_json(a);
        assert_eq!(j["type"], a.kind.as_str());
    }

    // DUMP payloads built from raw bytes equal what the server's DUMP returns.
    for rec in &recs {
        c.ok(&["SELECT", &rec.db.to_string()]);
        let server_dump = c.cmd_bytes(&[b"DUMP", &rec.key]).bytes();
        assert_eq!(
            rec.dump_payload(version).expect("raw captured"),
            server_dump,
            "DUMP of {:?}",
            rec.key
        );
        assert_eq!(
            dump_payload(rec.raw[0], &rec.raw[1..], version),
            server_dump
        );
    }
}

#[test]
fn real_dump_compact_encodings() {
    check_server_dump(
        COMPACT,
        &[
            "int",
            "embstr",
            "raw",
            "quicklist",
            "intset",
            "listpack",
            "hashtable",
            "stream",
        ],
    );
}

#[test]
fn real_dump_plain_encodings() {
    check_server_dump(
        PLAIN,
        &["int", "raw", "quicklist", "hashtable", "skiplist", "stream"],
    );
}

#[test]
fn quicklist_plain_nodes() {
    let srv = RedisServer::start(&[]);
    let mut c = srv.resp();
    c.ok(&["DEBUG", "QUICKLIST-PACKED-THRESHOLD", "100"]);
    let big = "B".repeat(500);
    c.ok(&["RPUSH", "l", "small", &big, "tail"]);
    let bytes = srv.save_rdb();
    let (version, items) = parse_all(&bytes, ReadOptions::default());
    let rec = records(&items)[0].clone();
    assert_eq!(rec.rdb_type, 18);
    assert_eq!(
        rec.value,
        Value::List(vec![
            b"small".to_vec(),
            big.clone().into_bytes(),
            b"tail".to_vec()
        ])
    );
    assert_eq!(
        rec.dump_payload(version).unwrap(),
        c.cmd(&["DUMP", "l"]).bytes()
    );
}

#[test]
fn restore_on_fresh_server_matches_digest() {
    let src = RedisServer::start(COMPACT);
    let mut c = src.resp();
    fill(&mut c);
    let bytes = src.save_rdb();
    let (version, items) = parse_all(&bytes, ReadOptions::raw_only());
    let dst = RedisServer::start(PLAIN);
    let mut d = dst.resp();
    let mut restored = 0;
    for rec in records(&items).into_iter().filter(|r| r.db == 0) {
        let payload = rec.dump_payload(version).unwrap();
        // DIGEST-VALUE mixes in the expiry, so restore with the absolute TTL from the RDB.
        let ttl = rec.expire_ms.unwrap_or(0).to_string();
        let r = d.cmd_bytes(&[b"RESTORE", &rec.key, ttl.as_bytes(), &payload, b"ABSTTL"]);
        assert_eq!(r, Resp::Simple("OK".into()), "RESTORE {:?}", rec.key);
        let a = c.cmd_bytes(&[b"DEBUG", b"DIGEST-VALUE", &rec.key]).array()[0].bytes();
        let b = d.cmd_bytes(&[b"DEBUG", b"DIGEST-VALUE", &rec.key]).array()[0].bytes();
        assert_eq!(a, b, "digest of {:?}", rec.key);
        restored += 1;
    }
    assert!(restored > 15);
}

/// A small real dump used by the corruption tests.
fn small_real_dump() -> Vec<u8> {
    let srv = RedisServer::start(COMPACT);
    let mut c = srv.resp();
    c.ok(&["SET", "user:42", &"payload".repeat(30)]);
    c.ok(&["HSET", "h", "a", "1", "b", "2"]);
    c.ok(&["RPUSH", "l", "x", "y", "z"]);
    c.ok(&["ZADD", "z", "1", "one"]);
    c.ok(&["SADD", "s", "1", "2"]);
    c.ok(&["XADD", "st", "1-1", "f", "v"]);
    c.ok(&["SET", "n", "7", "EX", "1000"]);
    srv.save_rdb()
}

fn parse_result(bytes: &[u8], opts: ReadOptions) -> Result<usize, RdbError> {
    let mut r = RdbReader::with_options(bytes, opts)?;
    let mut n = 0;
    while r.next_item()?.is_some() {
        n += 1;
    }
    Ok(n)
}

#[test]
fn flipped_bytes_are_detected_with_offset() {
    let bytes = small_real_dump();
    assert!(parse_result(&bytes, ReadOptions::default()).is_ok());
    for pos in 9..bytes.len() {
        let mut b = bytes.clone();
        b[pos] ^= 0x20;
        for opts in [ReadOptions::default(), ReadOptions::walk_only()] {
            let err = parse_result(&b, opts).expect_err("corruption must be detected");
            let off = err.offset().expect("error names an offset");
            assert!(off <= bytes.len() as u64);
            assert!(err.to_string().contains(&format!("at byte {off}")), "{err}");
        }
    }
    // A value-byte flip is caught by the checksum and names the checksum's offset.
    let pos = bytes
        .windows(7)
        .position(|w| w == b"payload")
        .expect("value present")
        + 3;
    let mut b = bytes.clone();
    b[pos] ^= 1;
    match parse_result(&b, ReadOptions::default()) {
        Err(RdbError::Checksum { offset, .. }) => assert_eq!(offset, bytes.len() as u64 - 8),
        other => panic!("expected checksum error, got {other:?}"),
    }
    // With verification off it parses.
    let opts = ReadOptions {
        verify_checksum: false,
        ..ReadOptions::default()
    };
    assert!(parse_result(&b, opts).is_ok());
}

#[test]
fn truncation_is_an_error_naming_offset_and_key() {
    let bytes = small_real_dump();
    for cut in 0..bytes.len() {
        let err = parse_result(&bytes[..cut], ReadOptions::default()).expect_err("truncated");
        if cut < 9 {
            assert!(matches!(err, RdbError::BadHeader(_)));
            continue;
        }
        match &err {
            RdbError::Truncated { offset, .. } => assert_eq!(*offset, cut as u64, "{err}"),
            RdbError::Corrupt { offset, .. } => assert!(*offset <= cut as u64, "{err}"),
            other => panic!("unexpected error {other}"),
        }
    }
    // Cutting inside the (LZF-compressed) string value names its key.
    let pos = bytes
        .windows(7)
        .position(|w| w == b"user:42")
        .expect("key present")
        + 7
        + 4;
    let err = parse_result(&bytes[..pos], ReadOptions::default()).unwrap_err();
    assert_eq!(err.key(), Some(&b"user:42"[..]));
    assert_eq!(
        err.to_string(),
        format!(
            "truncated RDB at byte {pos} while reading key \"user:42\": unexpected end of data"
        )
    );
}

/// Builds the seed corpus with a real server and checks it holds the same
/// keys as the committed seeds; RDBVAULT_REGENERATE_FIXTURES=1 rewrites them.
#[test]
fn seed_fixtures_match_a_fresh_server() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rdb");
    let regenerate = std::env::var_os("RDBVAULT_REGENERATE_FIXTURES").is_some();
    for (name, cfg) in [("compact.rdb", COMPACT), ("plain.rdb", PLAIN)] {
        let srv = RedisServer::start(cfg);
        let mut c = srv.resp();
        c.ok(&["SET", "s", "hello"]);
        c.ok(&["SET", "i", "123"]);
        c.ok(&["SET", "lzf", &"abc".repeat(40)]);
        c.ok(&["SET", "t", "v", "PX", "99999999"]);
        c.ok(&["RPUSH", "l", "a", "1", "bb"]);
        c.ok(&["SADD", "si", "1", "2", "300"]);
        c.ok(&["SADD", "ss", "x", "y"]);
        c.ok(&["ZADD", "z", "1.5", "a", "2", "b"]);
        c.ok(&["HSET", "h", "f", "v", "g", "7"]);
        c.ok(&["XADD", "st", "5-1", "a", "1"]);
        c.ok(&["XADD", "st", "6-0", "a", "2", "b", "3"]);
        c.ok(&["XGROUP", "CREATE", "st", "g", "0"]);
        c.ok(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "COUNT",
            "1",
            "STREAMS",
            "st",
            ">",
        ]);
        c.ok(&["SELECT", "2"]);
        c.ok(&["SET", "other", "db"]);
        let fresh = srv.save_rdb();
        if regenerate {
            std::fs::write(dir.join(name), &fresh).unwrap();
        }
        let committed = std::fs::read(dir.join(name)).unwrap();
        let keys = |b: &[u8]| {
            let (_, items) = parse_all(b, ReadOptions::default());
            let mut k: Vec<(u64, Vec<u8>, String)> =
                records(&items).iter().map(|r| (r.db, r.key.clone(), r.encoding.to_string())).collect();
            k.sort();
            k
        };
        assert_eq!(keys(&fresh), keys(&committed), "{name}: keys and encodings");
    }
}

#[test]
fn seed_fixtures_parse() {
    for name in ["compact.rdb", "plain.rdb"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/rdb")
            .join(name);
        let bytes = std::fs::read(&path).unwrap();
        let (_, items) = parse_all(&bytes, ReadOptions::default());
        let recs = records(&items);
        assert_eq!(recs.len(), 11, "{name}");
        let st = recs.iter().find(|r| r.key == b"st").unwrap();
        match &st.value {
            Value::Stream(s) => {
                assert_eq!(s.entries.len(), 2);
                assert_eq!(
                    s.entries[1].fields,
                    vec![
                        (b"a".to_vec(), b"2".to_vec()),
                        (b"b".to_vec(), b"3".to_vec())
                    ]
                );
                assert_eq!(s.groups[0].pending.len(), 1);
                assert_eq!(s.groups[0].consumers[0].name, b"c1");
            }
            other => panic!("{other:?}"),
        }
        let other = recs.iter().find(|r| r.key == b"other").unwrap();
        assert_eq!(other.db, 2);
        assert_eq!(
            recs.iter().filter(|r| r.kind == ValueKind::String).count(),
            5
        );
    }
}
