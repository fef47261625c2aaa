//! `rdbvault merge`: keys of several snapshots in one RDB; the last copy of a shared key wins,
//! or the merge is refused naming the key.

use crate::common;

use common::server::RedisServer;
use common::vault::Vault;

/// Runs `cmds` on `srv`.
fn apply(srv: &RedisServer, cmds: &[&[&str]]) {
    let mut c = srv.resp();
    for cmd in cmds {
        c.ok(cmd);
    }
}

const A: &[&[&str]] = &[&["SET", "shared", "from-a"], &["SET", "only:a", "1"], &["RPUSH", "list:a", "x", "y"], &["SELECT", "2"], &["SET", "db2", "a"]];
const B: &[&[&str]] = &[&["SET", "shared", "from-b"], &["HSET", "only:b", "f", "v"], &["SET", "ttl:b", "v", "PX", "90000000"], &["SELECT", "2"], &["SET", "db2", "b"]];

#[test]
fn merge_keeps_the_last_copy_and_loads_with_the_expected_digest() {
    let vault = Vault::init();
    let mut ids = Vec::new();
    for cmds in [A, B] {
        let srv = RedisServer::start(&[]);
        apply(&srv, cmds);
        srv.save_rdb();
        ids.push(vault.backup(&srv.rdb_path(), &[]).0);
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("merged.rdb");
    let t = target.to_str().unwrap();
    let out = vault.ok(&["merge", &ids[0], &ids[1], "--target", t]);
    assert_eq!(
        out,
        format!("merged 2 snapshots: 6 keys (2 held by more than one, the last copy kept) and 0 function libraries into {t} as RDB version 10\n")
    );
    // The same data written into one server, A then B.
    let expected = RedisServer::start(&[]);
    apply(&expected, A);
    apply(&expected, B);
    let merged = RedisServer::load_rdb(&std::fs::read(&target).unwrap());
    assert_eq!(merged.digest(), expected.digest());
    assert_eq!(merged.cli(&["GET", "shared"]).trim(), "from-b");

    // --on-conflict error names the key and both snapshots, and writes nothing.
    let refused = dir.path().join("refused.rdb");
    let err = vault.fails(&["merge", &ids[0], &ids[1], "--on-conflict", "error", "--target", refused.to_str().unwrap()]);
    assert!(err.contains(&format!("key \"shared\" in db 0 is in snapshot {} and in snapshot {}; nothing was written", &ids[0][..8], &ids[1][..8])), "{err}");
    assert!(!refused.exists());
    // A selection without a shared key merges under `error` too.
    vault.ok(&["merge", &ids[0], &ids[1], "--on-conflict", "error", "--keys", "only:*", "--target", refused.to_str().unwrap()]);
    let loaded = RedisServer::load_rdb(&std::fs::read(&refused).unwrap());
    assert_eq!(loaded.total_keys(), 2);
}
