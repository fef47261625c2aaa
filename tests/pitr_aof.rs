//! `restore --at` from `backup --aof` snapshots: the incremental AOF cut at its `#TS:` annotations.

use crate::common;

use std::time::Duration;

use common::follow::{digest_of_dir, writes};
use common::server::RedisServer;
use common::vault::Vault;

/// The time now and the digest, with a second of quiet on both sides (`#TS:` has one-second steps).
fn quiet_instant(srv: &RedisServer) -> (String, String) {
    std::thread::sleep(Duration::from_millis(1100));
    let at = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("format time");
    let digest = srv.digest();
    std::thread::sleep(Duration::from_millis(1100));
    (at, digest)
}

#[test]
fn aof_snapshots_restore_at_their_timestamps() {
    let srv = RedisServer::start(&[("appendonly", "yes"), ("aof-timestamp-enabled", "yes")]);
    let v = Vault::init();
    let mut c = srv.resp();
    writes(&mut c, 1);
    let first = quiet_instant(&srv);
    writes(&mut c, 2);
    let second = quiet_instant(&srv);
    let dir = srv.dir.path().join("appendonlydir");
    v.ok(&["backup", "--aof", dir.to_str().expect("path")]);
    for (at, digest) in [&first, &second] {
        assert_eq!(&digest_of_dir(&v, at), digest, "restore --at {at}");
    }
    let out = v.ok(&["restore", "--at", &first.0, "--target", v.dir.path().join("at.rdb").to_str().expect("path")]);
    assert!(out.contains("AOF snapshot") && out.contains("cut after #TS:"), "{out}");
    let loaded = RedisServer::load_rdb(&std::fs::read(v.dir.path().join("at.rdb")).expect("read rdb"));
    assert_eq!(loaded.digest(), first.1);
    let err = v.fails(&["restore", "--at", "2000-01-01T00:00:00Z", "--target", v.dir.path().join("old").to_str().expect("path")]);
    assert!(err.contains("is not covered by the AOF snapshots; covered: "), "{err}");
}

#[test]
fn aof_snapshots_without_timestamps_say_what_to_enable() {
    let srv = RedisServer::start(&[("appendonly", "yes")]);
    let v = Vault::init();
    let mut c = srv.resp();
    writes(&mut c, 1);
    v.ok(&["backup", "--aof", srv.dir.path().join("appendonlydir").to_str().expect("path")]);
    let err = v.fails(&["restore", "--at", "-1s", "--target", v.dir.path().join("x").to_str().expect("path")]);
    assert!(err.contains("aof-timestamp-enabled yes"), "{err}");
}
