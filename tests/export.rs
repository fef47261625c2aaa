//! `rdbvault export`: jsonl, csv, keys and resp; resp piped into `redis-cli --pipe` rebuilds
//! the dataset (same `DEBUG DIGEST`, same function libraries).

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::dataset::{json_bytes, Backed};
use common::server::RedisServer;

#[test]
fn resp_rebuilds_the_dataset_through_redis_cli_pipe() {
    let b = Backed::new();
    let resp = b.vault.cmd(&["export", &b.snap, "--format", "resp"]).output().expect("run export");
    assert!(resp.status.success(), "{}", String::from_utf8_lossy(&resp.stderr));
    let fresh = RedisServer::start(&[]);
    let mut pipe = Command::new("redis-cli")
        .args(["-p", &fresh.port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli");
    pipe.stdin.take().unwrap().write_all(&resp.stdout).unwrap();
    let out = pipe.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("errors: 0"), "{text}");
    assert_eq!(fresh.digest(), b.srv.digest());
    assert!(fresh.cli(&["FUNCTION", "LIST"]).contains("testlib"));
    // Consumer groups and their pending entries come back too.
    assert_eq!(fresh.cli(&["XPENDING", "stream:s", "g1"]), b.srv.cli(&["XPENDING", "stream:s", "g1"]));
}

#[test]
fn jsonl_is_one_binary_safe_object_per_key() {
    let b = Backed::new();
    let out = b.vault.ok(&["export", &b.snap, "--format", "jsonl", "--db", "0", "--keys", "*:bin"]);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), 2, "{out}");
    let s = lines.iter().find(|l| l["key"] == "str:bin").expect("str:bin");
    assert_eq!(json_bytes(&s["value"]), (0..=255u8).rev().collect::<Vec<_>>());
    assert_eq!((s["db"].as_u64(), s["type"].as_str(), s["expires_at"].is_null()), (Some(0), Some("string"), true));
    let h = lines.iter().find(|l| l["key"] == "hash:bin").expect("hash:bin");
    assert_eq!(json_bytes(&h["value"][0]["field"]), vec![0x00, 0xfe], "binary fields are escaped strings, as in inspect --json");

    let ttl = b.vault.ok(&["export", &b.snap, "--format", "jsonl", "--keys", "ttl:str"]);
    let v: serde_json::Value = serde_json::from_str(ttl.trim()).unwrap();
    let expected = common::dataset::now_ms() + 100_000_000;
    assert!(v["expires_at"].as_u64().is_some_and(|t| t <= expected && t + 600_000 > expected), "{v}");
}

#[test]
fn keys_and_csv_escape_what_would_break_a_line() {
    let b = Backed::new();
    let keys = b.vault.ok(&["export", &b.snap, "--format", "keys", "--db", "0", "--keys", "key:*"]);
    assert_eq!(keys, "key:\\xff\\x00\\x0d\\x0a\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("z.csv");
    let msg = b.vault.ok(&["export", &b.snap, "--format", "csv", "--keys", "zset:small", "-o", file.to_str().unwrap()]);
    assert_eq!(msg, format!("exported 1 keys to {}\n", file.display()));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "db,key,type,expires_at,field,value\n0,zset:small,zset,,c,-inf\n0,zset:small,zset,,e,-0.125\n\
         0,zset:small,zset,,a,1\n0,zset:small,zset,,b,2.5\n0,zset:small,zset,,d,1e300\n"
    );
    let err = b.vault.fails(&["export", &b.snap, "--format", "xml"]);
    assert!(err.contains("unknown --format \"xml\": use jsonl, csv, resp or keys"), "{err}");
}

/// `export --format jsonl` writes every value as `inspect --json` decodes it, and each line
/// byte for byte as `serde_json` writes it, on every RDB fixture (all encodings: ziplists,
/// listpacks, intsets, zipmaps, quicklists, streams, modules, field TTLs, Valkey 9) and the
/// live data set (LZF strings, large collections, streams with groups).
#[test]
fn jsonl_values_are_what_inspect_decodes_on_every_fixture() {
    let vault = common::vault::Vault::init();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rdb");
    let mut fixtures: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "rdb")).collect();
    fixtures.sort();
    assert!(fixtures.len() >= 5, "fixtures missing");
    for path in fixtures {
        let (snap, _) = vault.backup(&path, &[]);
        jsonl_is_inspects(&vault, &snap, &path.display().to_string());
    }
    let b = Backed::new();
    jsonl_is_inspects(&b.vault, &b.snap, "data set");
}

fn jsonl_is_inspects(vault: &common::vault::Vault, snap: &str, what: &str) {
    let exported = vault.ok(&["export", snap, "--format", "jsonl"]);
    let inspected = vault.ok(&["--json", "inspect", snap]);
    let keys: Vec<serde_json::Value> = inspected.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let lines: Vec<&str> = exported.lines().collect();
    assert!(!lines.is_empty() && lines.len() == keys.len(), "{what}: {} lines, {} keys", lines.len(), keys.len());
    for (line, key) in lines.iter().zip(&keys) {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        assert_eq!(&serde_json::to_string(&v).unwrap(), line, "{what}: not as serde_json writes it");
        for (field, inspect_field) in [("db", "db"), ("key", "key"), ("type", "type"), ("expires_at", "expire_at_ms"), ("value", "value")] {
            assert_eq!(v[field], key[inspect_field], "{what}: {field} of {line}");
        }
    }
}
