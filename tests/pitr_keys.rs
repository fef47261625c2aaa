//! `restore --at T --keys PATTERN`: the matching keys as the full restore at T has them.

use crate::common;

use common::follow::{follow, instant, online, stop};
use common::resp::RespConn;
use common::server::{RedisServer, ServerConfig};
use common::vault::Vault;

/// Deletes, in every db, the keys that do not match `user:*` (the full restore, filtered by hand).
fn keep_only_user_keys(srv: &RedisServer) {
    let mut c = srv.resp();
    for db in 0..16 {
        c.ok(&["SELECT", &db.to_string()]);
        for k in c.ok(&["KEYS", "*"]).byte_list() {
            if !k.starts_with(b"user:") {
                c.cmd_bytes(&[b"DEL", &k]);
            }
        }
    }
}

/// Every key of every db with the digest of its value and whether it expires.
fn keys_of(srv: &RedisServer) -> Vec<(u32, String, String, bool)> {
    let mut c = srv.resp();
    let mut out = Vec::new();
    for db in 0..16u32 {
        c.ok(&["SELECT", &db.to_string()]);
        for k in c.ok(&["KEYS", "*"]).byte_list() {
            let key = String::from_utf8_lossy(&k).into_owned();
            let digest = c.ok(&["DEBUG", "DIGEST-VALUE", &key]).array()[0].text();
            out.push((db, key.clone(), digest, c.ok(&["PTTL", &key]).int() > 0));
        }
    }
    out.sort();
    out
}

/// Writes touching matching (`user:*`) and other keys together, in every way the log can.
fn mixed_writes(c: &mut RespConn) {
    c.ok(&["SET", "user:1", "a"]);
    c.ok(&["SET", "other:1", "b"]);
    c.ok(&["MULTI"]);
    c.ok(&["INCR", "user:c"]);
    c.ok(&["INCR", "other:c"]);
    c.ok(&["EXEC"]);
    c.ok(&["MULTI"]);
    c.ok(&["SET", "other:only", "1"]);
    c.ok(&["EXEC"]);
    c.ok(&["MSET", "user:m1", "1", "other:m1", "2", "user:m2", "3"]);
    c.ok(&["DEL", "user:m2", "other:m1"]);
    c.ok(&["RENAME", "user:base", "other:renamed"]);
    c.ok(&["RENAME", "user:h", "user:h2"]);
    c.ok(&["SADD", "other:set", "m1", "m2"]);
    c.ok(&["SMOVE", "other:set", "user:set", "m1"]);
    c.ok(&["LMOVE", "user:list", "other:list", "LEFT", "RIGHT"]);
    c.ok(&["PEXPIRE", "user:m1", "500000"]);
    c.ok(&["SET", "user:ttl", "x", "EX", "1000"]);
    c.ok(&["EVAL", "redis.call('SET', KEYS[1], 'l'); redis.call('SET', KEYS[2], 'l'); return 1", "2", "user:lua", "other:lua"]);
    c.ok(&["SUNIONSTORE", "user:u", "user:set"]);
    c.ok(&["SUNIONSTORE", "other:u", "user:set", "other:set"]);
    c.ok(&["SELECT", "3"]);
    c.ok(&["SET", "user:db3", "x"]);
    c.ok(&["SET", "other:db3", "y"]);
    c.ok(&["FLUSHDB"]);
    c.ok(&["SET", "user:db3c", "z"]);
    c.ok(&["SELECT", "0"]);
}

#[test]
fn restore_at_with_keys_holds_the_matching_keys_of_the_full_restore() {
    let srv = RedisServer::start(&[]);
    let v = Vault::init();
    let mut c = srv.resp();
    // Before following: these are in the base.
    c.ok(&["SET", "user:base", "1"]);
    c.ok(&["SET", "other:base", "2"]);
    c.ok(&["HSET", "user:h", "f", "v"]);
    c.ok(&["RPUSH", "user:list", "a", "b", "c"]);
    let f = follow(&v, &srv);
    online(&mut c);
    mixed_writes(&mut c);
    let (t1, _) = instant(&mut c);
    // After T1: a matching key filled from another one.
    c.ok(&["SET", "user:1", "later"]);
    c.ok(&["RENAME", "other:1", "user:stolen"]);
    let (t2, _) = instant(&mut c);
    let (ok, _, stderr) = stop(f);
    assert!(ok, "{stderr}");

    let full = RedisServer::start(&[]);
    v.ok(&["restore", "--at", &t1, "--to", &full.url()]);
    assert!(keys_of(&full).iter().any(|k| k.1 == "other:renamed"), "the full restore holds other keys");
    keep_only_user_keys(&full);
    let expected = keys_of(&full);
    let names: Vec<&str> = expected.iter().map(|k| k.1.as_str()).collect();
    assert_eq!(
        names,
        ["user:1", "user:c", "user:h2", "user:list", "user:lua", "user:m1", "user:set", "user:ttl", "user:u", "user:db3c"],
        "{expected:?}"
    );

    // Into a live server: exactly those keys, values and expiries.
    let live = RedisServer::start(&[]);
    let out = v.ok(&["restore", "--at", &t1, "--to", &live.url(), "--keys", "user:*"]);
    assert!(out.contains("left out ") && out.contains(" logged commands about other keys"), "{out}");
    assert_eq!(keys_of(&live), expected);
    assert_eq!(live.digest(), full.digest());

    // As an AOF directory, loaded by a fresh redis-server.
    let dir = tempfile::tempdir().expect("tempdir");
    v.ok(&["restore", "--at", &t1, "--keys", "user:*", "--target", dir.path().join("appendonlydir").to_str().expect("path")]);
    let loaded = RedisServer::start_with(ServerConfig { dir: Some(dir), ..Default::default() }.arg("appendonly", &["yes"]));
    assert_eq!(keys_of(&loaded), expected);
    assert_eq!(loaded.digest(), full.digest());

    // At T2 a matching key got the value of one the pattern leaves out: refused, nothing written.
    let refused = RedisServer::start(&[]);
    let err = v.fails(&["restore", "--at", &t2, "--to", &refused.url(), "--keys", "user:*"]);
    assert!(err.contains("the log holds RENAME fills \"user:stolen\", which matches, from \"other:1\", which does not"), "{err}");
    assert!(err.contains("nothing was restored: widen --keys, or restore the whole server"), "{err}");
    assert_eq!(refused.total_keys(), 0);
    // A pattern taking both keys in is fine.
    let wide = RedisServer::start(&[]);
    v.ok(&["restore", "--at", &t2, "--to", &wide.url(), "--keys", "*:*"]);
    assert_eq!(wide.cmd::<String>(&["GET", "user:stolen"]), "b");

    let err = v.fails(&["restore", "--at", &t1, "--to", &live.url(), "--db", "0"]);
    assert!(err.contains("--db, --min-bytes and --type do not apply"), "{err}");
}
