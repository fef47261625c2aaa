//! `--not-keys PATTERN` and `--min-bytes N` (redis-rdb-tools' `--not-key` and `--bytes`) on
//! inspect, export and restore.

use crate::common;

use std::collections::BTreeSet;

use common::dataset::{keys_of, Backed};
use common::server::RedisServer;

fn lines(s: &str) -> BTreeSet<String> {
    s.lines().map(str::to_string).collect()
}

#[test]
fn not_keys_and_min_bytes_select_the_same_keys_everywhere() {
    let b = Backed::new();
    // --not-keys: users 0..29 of db 0 without user:1 and user:10..19.
    let want: BTreeSet<String> = (0..30).filter(|i| !i.to_string().starts_with('1')).map(|i| format!("user:{i}")).collect();
    let sel = ["--db", "0", "--keys", "user:*", "--not-keys", "user:1*"];
    let exported = b.vault.ok(&[&["export", b.snap.as_str(), "--format", "keys"][..], &sel].concat());
    assert_eq!(lines(&exported), want);
    let listed = b.vault.ok(&[&["--json", "inspect", b.snap.as_str()][..], &sel].concat());
    let listed: BTreeSet<String> = listed.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["key"].as_str().unwrap().to_string()).collect();
    assert_eq!(listed, want);
    let dst = RedisServer::start(&[]);
    let r = b.vault.json(&[&["restore", b.snap.as_str(), "--to", &dst.url()][..], &sel].concat());
    assert_eq!(r["restored"], want.len() as u64);
    let on_target: BTreeSet<String> = keys_of(&mut dst.resp(), 0).into_iter().map(|k| String::from_utf8(k).unwrap()).collect();
    assert_eq!(on_target, want);
    // --all with --not-keys: everything else.
    let rest = RedisServer::start(&[]);
    let r = b.vault.json(&["restore", &b.snap, "--to", &rest.url(), "--all", "--not-keys", "user:*"]);
    assert_eq!(r["restored"], b.srv.total_keys() - 61);
    assert!(keys_of(&mut rest.resp(), 0).iter().all(|k| !k.starts_with(b"user:")));

    // --min-bytes: the keys whose serialized value is that large, as the memory report gives their sizes.
    let mem = b.vault.json(&["inspect", &b.snap, "--memory", "--top", "1000", "--db", "0"]);
    let sizes: Vec<(String, u64)> = mem["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["key"].as_str().unwrap().to_string(), k["serialized_len"].as_u64().unwrap()))
        .collect();
    let big: BTreeSet<String> = sizes.iter().filter(|(_, n)| *n >= 1000).map(|(k, _)| k.clone()).collect();
    assert!(big.len() >= 3 && big.len() < sizes.len() / 2, "{big:?}");
    let exported = b.vault.ok(&["export", &b.snap, "--format", "keys", "--db", "0", "--min-bytes", "1000"]);
    assert_eq!(lines(&exported), big);
    let file = b.vault.dir.path().join("big.rdb");
    let r = b.vault.json(&["restore", &b.snap, "--db", "0", "--min-bytes", "1000", "--target", file.to_str().unwrap()]);
    assert_eq!(r["keys"], big.len() as u64, "{r}");
}
