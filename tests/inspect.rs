//! `rdbvault inspect` on a snapshot of a real redis-server: keys, values, TTLs, filters, memory.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::dataset::{json_bytes, keyspace, keys_of, now_ms, sorted, Backed};
use common::resp::RespConn;
use serde_json::Value as Json;

/// Parses `inspect --json` output (one object per line).
fn key_lines(b: &Backed, extra: &[&str]) -> Vec<Json> {
    let mut args = vec!["--json", "inspect", b.snap.as_str()];
    args.extend_from_slice(extra);
    b.vault.ok(&args).lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect()
}

fn list(v: &Json) -> Vec<Vec<u8>> {
    v.as_array().expect("array").iter().map(json_bytes).collect()
}

/// Asserts one key's JSON object against what the server holds.
fn check_key(c: &mut RespConn, k: &Json) {
    let db = k["db"].as_u64().expect("db");
    let key = json_bytes(&k["key"]);
    let name = String::from_utf8_lossy(&key).into_owned();
    c.ok(&["SELECT", &db.to_string()]);
    assert_eq!(c.cmd_bytes(&[b"TYPE", &key]).text(), k["type"].as_str().unwrap(), "type of {name}");
    assert_eq!(c.cmd_bytes(&[b"OBJECT", b"ENCODING", &key]).text(), k["encoding"].as_str().unwrap(), "{name}");
    let pttl = c.cmd_bytes(&[b"PTTL", &key]).int();
    match k["expire_at_ms"].as_u64() {
        None => assert_eq!((pttl, &k["ttl_ms"]), (-1, &Json::Null), "{name} has no TTL"),
        Some(at) => {
            assert!(pttl > 0, "{name} has a TTL on the server");
            assert!(at.abs_diff(now_ms() + pttl as u64) < 10_000, "{name}: expiry");
            let ttl = k["ttl_ms"].as_i64().expect("ttl_ms");
            assert!((ttl - pttl).abs() < 10_000, "{name}: ttl_ms {ttl} vs PTTL {pttl}");
        }
    }
    assert!(k["approx_memory"].as_u64().unwrap() > 0);
    let v = &k["value"];
    match k["type"].as_str().unwrap() {
        "string" => assert_eq!(json_bytes(v), c.cmd_bytes(&[b"GET", &key]).bytes(), "{name}"),
        "list" => assert_eq!(list(v), c.cmd_bytes(&[b"LRANGE", &key, b"0", b"-1"]).byte_list(), "{name}"),
        "set" => assert_eq!(sorted(list(v)), sorted(c.cmd_bytes(&[b"SMEMBERS", &key]).byte_list()), "{name}"),
        "hash" => {
            let ours: BTreeMap<Vec<u8>, Vec<u8>> =
                v.as_array().unwrap().iter().map(|f| (json_bytes(&f["field"]), json_bytes(&f["value"]))).collect();
            let flat = c.cmd_bytes(&[b"HGETALL", &key]).byte_list();
            let theirs: BTreeMap<Vec<u8>, Vec<u8>> = flat.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
            assert_eq!(ours, theirs, "{name}");
        }
        "zset" => {
            let reply = c.cmd_bytes(&[b"ZRANGE", &key, b"0", b"-1", b"WITHSCORES"]).byte_list();
            let theirs: BTreeMap<Vec<u8>, f64> =
                reply.chunks(2).map(|p| (p[0].clone(), String::from_utf8_lossy(&p[1]).parse().unwrap())).collect();
            let ours = v.as_array().unwrap();
            assert_eq!(ours.len(), theirs.len(), "{name}");
            for m in ours {
                let t = theirs[&json_bytes(&m["member"])];
                match m["score"].as_f64() {
                    Some(s) => assert!(s == t || (s - t).abs() <= s.abs() * 1e-15, "{name}: {s} vs {t}"),
                    None => assert_eq!(m["score"].as_str().unwrap(), if t > 0.0 { "inf" } else { "-inf" }, "{name}"),
                }
            }
        }
        "stream" => {
            assert_eq!(v["length"].as_i64().unwrap(), c.cmd_bytes(&[b"XLEN", &key]).int(), "{name}");
            let ids: Vec<String> =
                c.cmd_bytes(&[b"XRANGE", &key, b"-", b"+"]).array().iter().map(|e| e.array()[0].text()).collect();
            let ours: Vec<String> = v["entries"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().into()).collect();
            assert_eq!(ours, ids, "{name}");
            let groups = c.cmd_bytes(&[b"XINFO", b"GROUPS", &key]).array();
            assert_eq!(v["groups"].as_array().unwrap().len(), groups.len(), "{name}: consumer groups");
            assert!(!groups.is_empty());
        }
        other => panic!("unexpected type {other} for {name}"),
    }
}

#[test]
fn json_lists_every_key_with_the_servers_values() {
    let b = Backed::new();
    let mut c = b.srv.resp();
    let keys = key_lines(&b, &[]);
    // Exactly the server's keys, per db.
    let mut per_db: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    for k in &keys {
        per_db.entry(k["db"].as_u64().unwrap()).or_default().push(json_bytes(&k["key"]));
    }
    let space = keyspace(&mut c);
    assert_eq!(per_db.keys().collect::<Vec<_>>(), space.keys().collect::<Vec<_>>());
    for (db, ks) in &per_db {
        assert_eq!(&sorted(ks.clone()), &keys_of(&mut c, *db), "keys of db {db}");
    }
    for k in &keys {
        check_key(&mut c, k);
    }
    // Both compact and plain encodings and every type were covered.
    let encs: BTreeSet<String> = keys.iter().map(|k| format!("{}/{}", k["type"].as_str().unwrap(), k["encoding"].as_str().unwrap())).collect();
    for e in ["hash/listpack", "hash/hashtable", "set/intset", "set/hashtable", "zset/listpack", "zset/skiplist", "list/quicklist", "stream/stream", "string/int", "string/raw"] {
        assert!(encs.contains(e), "no {e} key in {encs:?}");
    }
}

#[test]
fn filters_summary_and_memory() {
    let b = Backed::new();
    let mut c = b.srv.resp();

    // --keys with --db and --type select exactly the matching keys.
    let users = key_lines(&b, &["--keys", "user:*", "--db", "1", "--type", "hash"]);
    c.ok(&["SELECT", "1"]);
    let expect: Vec<Vec<u8>> = sorted(c.cmd(&["KEYS", "user:*"]).byte_list())
        .into_iter()
        .filter(|k| c.cmd_bytes(&[b"TYPE", k]).text() == "hash")
        .collect();
    assert_eq!(expect.len(), 30);
    let got: Vec<Vec<u8>> = sorted(users.iter().map(|k| json_bytes(&k["key"])).collect());
    assert_eq!(got, expect);
    assert!(users.iter().all(|k| k["db"] == 1 && k["type"] == "hash"));
    let strings = key_lines(&b, &["--keys", "str:[ls]*", "--type", "string"]);
    let names: BTreeSet<String> = strings.iter().map(|k| k["key"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["str:leading0", "str:long", "str:short"].iter().map(|s| s.to_string()).collect());

    // Summary: version, aux fields, keys per db.
    let s = b.vault.json(&["inspect", &b.snap, "--summary"]);
    assert_eq!(s["summary"]["rdb_version"], 10);
    assert_eq!(s["summary"]["aux"]["redis-ver"], "7.0.15");
    assert_eq!(s["summary"]["functions"], 1);
    for (db, (keys, expires)) in keyspace(&mut c) {
        assert_eq!(s["summary"]["dbs"][db.to_string()]["keys"], keys, "db {db}");
        assert_eq!(s["summary"]["dbs"][db.to_string()]["keys_with_ttl"], expires, "db {db}");
    }
    let text = b.vault.ok(&["inspect", &b.snap]);
    assert!(text.contains("RDB version 10") && text.contains("db 3:"), "{text}");

    // Memory report: the largest keys first; prefixes and types add up.
    let m = b.vault.json(&["inspect", &b.snap, "--memory", "--top", "3"]);
    let top = m["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    let sizes: Vec<u64> = top.iter().map(|k| k["approx_memory"].as_u64().unwrap()).collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
    let total = m["total"]["bytes"].as_u64().unwrap();
    let by_prefix: u64 = m["by_prefix"].as_object().unwrap().values().map(|b| b["bytes"].as_u64().unwrap()).sum();
    assert_eq!(by_prefix, total);
    assert_eq!(m["by_prefix"]["user"]["keys"], 61);
    let csv = b.vault.ok(&["inspect", &b.snap, "--memory", "--top", "2", "--csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "group,name,db,type,encoding,keys,approx_bytes");
    assert_eq!(lines.iter().filter(|l| l.starts_with("key,")).count(), 2);
    assert!(lines.last().unwrap().starts_with("total,"));
    let table = b.vault.ok(&["inspect", &b.snap, "--memory"]);
    assert!(table.contains("largest keys") && table.contains("by key prefix"), "{table}");

    // Bad type names are refused.
    assert!(b.vault.fails(&["inspect", &b.snap, "--type", "sortedset"]).contains("unknown type"));
}

#[test]
fn damaged_pack_is_an_error_not_a_short_listing() {
    let b = Backed::new();
    let mut packs = Vec::new();
    let mut dirs = vec![b.vault.repo.join("data")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { dirs.push(p) } else { packs.push(p) }
        }
    }
    for p in &packs {
        let mut bytes = std::fs::read(p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(p, bytes).unwrap();
    }
    for args in [&["--json", "inspect", &b.snap][..], &["inspect", &b.snap, "--memory"], &["diff", &b.snap, &b.snap]] {
        let err = b.vault.fails(args);
        assert!(err.contains("damaged") || err.contains("tampered"), "{args:?}: {err}");
    }
}
