//! `rdbvault restore --to`: a snapshot loaded into a fresh redis-server is the same data.

use crate::common;

use common::dataset::{keyspace, keys_of, Backed};
use common::resp::RespConn;
use common::server::RedisServer;

fn digest(c: &mut RespConn, key: &[u8]) -> Vec<u8> {
    c.cmd_bytes(&[b"DEBUG", b"DIGEST-VALUE", key]).array()[0].bytes()
}

/// Asserts every key of `src` in `dbs` exists in `dst` with the same digest and expiry.
fn assert_same_keys(src: &mut RespConn, dst: &mut RespConn, dbs: &[u64], only: impl Fn(&[u8]) -> bool) -> usize {
    let mut n = 0;
    for &db in dbs {
        let keys: Vec<Vec<u8>> = keys_of(src, db).into_iter().filter(|k| only(k)).collect();
        assert_eq!(keys, keys_of(dst, db).into_iter().filter(|k| only(k)).collect::<Vec<_>>(), "keys of db {db}");
        src.ok(&["SELECT", &db.to_string()]);
        dst.ok(&["SELECT", &db.to_string()]);
        for k in &keys {
            let name = String::from_utf8_lossy(k);
            assert_eq!(digest(src, k), digest(dst, k), "DIGEST-VALUE of {name} in db {db}");
            let (a, b) = (src.cmd_bytes(&[b"PTTL", k]).int(), dst.cmd_bytes(&[b"PTTL", k]).int());
            assert!((a < 0) == (b < 0) && (a - b).abs() < 10_000, "TTL of {name}: {a} vs {b}");
            n += 1;
        }
    }
    n
}

/// A backed-up dataset and an empty target server, with a connection to each server.
fn backed_and_empty_target() -> (Backed, RespConn, RedisServer, RespConn) {
    let b = Backed::new();
    let src = b.srv.resp();
    let dst_srv = RedisServer::start(&[]);
    let dst = dst_srv.resp();
    (b, src, dst_srv, dst)
}

#[test]
fn restores_every_key_with_identical_digests() {
    let (b, mut src, dst_srv, mut dst) = backed_and_empty_target();
    let started = std::time::Instant::now();
    let r = b.vault.json(&["restore", &b.snap, "--to", &dst_srv.url(), "--all", "--batch", "7"]);
    let secs = started.elapsed().as_secs_f64();
    let space = keyspace(&mut src);
    let total: u64 = space.values().map(|(k, _)| k).sum();
    assert_eq!(r["restored"], total);
    assert_eq!(r["skipped_expired"], 0);
    eprintln!("restore --to: {total} keys in {secs:.2} s ({:.0} keys/s, including process start)", total as f64 / secs);
    assert_eq!(keyspace(&mut dst), space, "keys and expires per db");
    let dbs: Vec<u64> = space.keys().copied().collect();
    let n = assert_same_keys(&mut src, &mut dst, &dbs, |_| true);
    assert_eq!(n as u64, total);

    // Again without --replace: refused, naming conflicting keys; nothing changes.
    src.ok(&["SELECT", "0"]);
    src.ok(&["SET", "str:short", "changed"]);
    let fresh = common::dataset::backup_now(&b.srv, &b.vault);
    let err = b.vault.fails(&["restore", &fresh, "--to", &dst_srv.url(), "--keys", "str:*"]);
    assert!(err.contains("already exist") && err.contains("--replace") && err.contains("0:str:short"), "{err}");
    dst.ok(&["SELECT", "0"]);
    assert_eq!(dst.cmd(&["GET", "str:short"]).text(), "hello");
    // --dry-run reports what would happen and writes nothing.
    let dry = b.vault.json(&["restore", &fresh, "--to", &dst_srv.url(), "--keys", "str:*", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert!(dry["conflicts"].as_u64().unwrap() >= 10);
    assert_eq!(dst.cmd(&["GET", "str:short"]).text(), "hello");
    // With --replace it overwrites.
    b.vault.ok(&["restore", &fresh, "--to", &dst_srv.url(), "--keys", "str:*", "--replace"]);
    assert_eq!(dst.cmd(&["GET", "str:short"]).text(), "changed");
    assert_same_keys(&mut src, &mut dst, &dbs, |_| true);
}

#[test]
fn keys_pattern_and_db_restore_only_matching_keys() {
    let (b, mut src, dst_srv, mut dst) = backed_and_empty_target();
    let r = b.vault.json(&["restore", &b.snap, "--to", &dst_srv.url(), "--keys", "user:*"]);
    assert_eq!(r["restored"], 61);
    assert_eq!(r["per_db"]["0"], 30);
    assert_eq!(r["per_db"]["1"], 31, "user:ttl is in db 1");
    for db in [0, 1, 3] {
        assert!(keys_of(&mut dst, db).iter().all(|k| k.starts_with(b"user:")), "db {db} holds only user keys");
    }
    assert_same_keys(&mut src, &mut dst, &[0, 1], |k| k.starts_with(b"user:"));

    let other = RedisServer::start(&[]);
    let mut o = other.resp();
    let r = b.vault.json(&["restore", &b.snap, "--to", &other.url(), "--keys", "user:1?", "--db", "1"]);
    assert_eq!(r["restored"], 10);
    let keys: Vec<String> = keys_of(&mut o, 1).iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    assert_eq!(keys, (10..20).map(|i| format!("user:{i}")).collect::<Vec<_>>());
    assert!(keys_of(&mut o, 0).is_empty());

    // One of --all / --keys is required; --keys needs --to or fits restore to a file.
    assert!(b.vault.fails(&["restore", &b.snap, "--to", &other.url()]).contains("--keys PATTERN or --all"));
    assert!(b.vault.fails(&["restore", &b.snap]).contains("--target"));
}

/// A hand-made RDB: `version`, key `a` = `b`, and key `old` that expired in 1970.
fn handmade_rdb(version: &str) -> Vec<u8> {
    let mut v = format!("REDIS{version}").into_bytes();
    v.extend_from_slice(&[0xFE, 0x00]);
    v.extend_from_slice(&[0xFC]);
    v.extend_from_slice(&1000u64.to_le_bytes());
    v.extend_from_slice(&[0x00, 3, b'o', b'l', b'd', 1, b'x']);
    v.extend_from_slice(&[0x00, 1, b'a', 1, b'b']);
    v.push(0xFF);
    v.extend_from_slice(&[0; 8]);
    v
}

#[test]
fn expired_keys_are_skipped_and_newer_rdb_versions_refused() {
    let vault = common::vault::Vault::init();
    let dst_srv = RedisServer::start(&[]);
    let mut dst = dst_srv.resp();
    let path = vault.dir.path().join("v10.rdb");
    std::fs::write(&path, handmade_rdb("0010")).unwrap();
    let (snap, _) = vault.backup(&path, &[]);
    let r = vault.json(&["restore", &snap, "--to", &dst_srv.url(), "--all"]);
    assert_eq!((r["restored"].as_u64(), r["skipped_expired"].as_u64()), (Some(1), Some(1)));
    assert_eq!(dst.cmd(&["GET", "a"]).text(), "b");
    assert_eq!(dst.cmd(&["EXISTS", "old"]).int(), 0);

    let path = vault.dir.path().join("v12.rdb");
    std::fs::write(&path, handmade_rdb("0012")).unwrap();
    let (snap, _) = vault.backup(&path, &[]);
    dst.ok(&["FLUSHALL"]);
    let err = vault.fails(&["restore", &snap, "--to", &dst_srv.url(), "--all"]);
    assert!(err.contains("older than the snapshot") && err.contains("RDB version 12") && err.contains("7.0"), "{err}");
    assert_eq!(dst.cmd(&["DBSIZE"]).int(), 0, "nothing written");
}
