//! A followed server in tests: run `rdbvault follow`, write, and take instants to restore.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::resp::RespConn;
use super::server::{wait_until, RedisServer, ServerConfig};
use super::vault::Vault;

/// A running `rdbvault follow`.
pub fn follow(v: &Vault, srv: &RedisServer) -> Child {
    follow_with(v, &[&srv.url()])
}

/// A running `rdbvault follow` with `args` (the server and any options), committing every 200 ms.
pub fn follow_with(v: &Vault, args: &[&str]) -> Child {
    let mut all = vec!["follow", "--commit-interval", "200ms"];
    all.extend_from_slice(args);
    v.cmd(&all).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn follow")
}

/// SIGTERM, then the exit status and output.
pub fn stop(child: Child) -> (bool, String, String) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let out = child.wait_with_output().expect("follow output");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Instants count from when the log starts: waits until the follower is an online replica.
pub fn online(c: &mut RespConn) {
    wait_until(Duration::from_secs(30), "the follower to be online", || c.ok(&["INFO", "replication"]).text().contains("state=online"));
}

/// Mixed writes: strings, hashes, lists, TTLs, a transaction, another db, a large value, Lua.
pub fn writes(c: &mut RespConn, round: u32) {
    for i in 0..50 {
        c.ok(&["SET", &format!("k:{round}:{i}"), &format!("v{i}")]);
        c.ok(&["HSET", &format!("h:{round}"), &format!("f{i}"), &format!("{i}")]);
        c.ok(&["LPUSH", "list", &format!("{round}-{i}")]);
    }
    c.ok(&["EXPIRE", &format!("k:{round}:0"), "5000"]);
    c.ok(&["DEL", &format!("k:{round}:1")]);
    c.ok(&["MULTI"]);
    c.ok(&["INCRBY", "counter", "7"]);
    c.ok(&["SADD", "set", &format!("m{round}")]);
    c.ok(&["EXEC"]);
    c.ok(&["SELECT", "3"]);
    c.ok(&["SET", &format!("db3:{round}"), "x"]);
    c.ok(&["SELECT", "0"]);
    c.ok(&["SET", &format!("big:{round}"), &"b".repeat(300_000 + round as usize)]);
    c.ok(&["EVAL", "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', 'counter')", "1", &format!("lua:{round}"), "y"]);
}

/// Waits until the follower acknowledged (committed) every write, then returns the instant and digest.
pub fn instant(c: &mut RespConn) -> (String, String) {
    assert_eq!(c.ok(&["WAIT", "1", "10000"]).int(), 1, "the follower did not acknowledge the writes");
    let at = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("format time");
    let digest = c.ok(&["DEBUG", "DIGEST"]).text();
    std::thread::sleep(Duration::from_millis(1100));
    (at, digest)
}

/// Restores `at` as an AOF directory and loads it into a fresh redis-server; returns its digest.
pub fn digest_of_dir(v: &Vault, at: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = v.ok(&["restore", "--at", at, "--target", dir.path().join("appendonlydir").to_str().expect("path")]);
    assert!(out.contains("appendonly yes"), "{out}");
    let srv = RedisServer::start_with(ServerConfig { dir: Some(dir), ..Default::default() }.arg("appendonly", &["yes"]));
    srv.digest()
}

/// `(id, base)` of every snapshot, oldest first; `base` is set for log segments.
pub fn all_snapshots(v: &Vault) -> Vec<(String, Option<String>)> {
    let all = v.json(&["snapshots", "--all"]);
    let list = all.as_array().expect("snapshot list");
    list.iter()
        .map(|s| {
            let base = (s["source"]["kind"] == "redis-log").then(|| s["source"]["details"]["base"].as_str().expect("segment base").to_string());
            (s["id"].as_str().expect("id").to_string(), base)
        })
        .collect()
}

