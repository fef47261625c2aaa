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
