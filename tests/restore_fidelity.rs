//! `restore --to` keeps what a server holds besides keys and values: function libraries
//! (`--functions`), LRU idle times and LFU counters; it writes over several connections
//! (`--connections`) and refuses module keys a target cannot load.

use crate::common;

use common::dataset::Backed;
use common::server::RedisServer;
use common::vault::Vault;

const OTHER_LIB: &str = "#!lua name=testlib\nredis.register_function('one', function() return 2 end)";

fn fcall_one(srv: &RedisServer) -> i64 {
    srv.cmd(&["FCALL", "one", "0"])
}

fn library_names(srv: &RedisServer) -> Vec<String> {
    let list: redis::Value = srv.cmd(&["FUNCTION", "LIST"]);
    let text = format!("{list:?}");
    ["testlib", "otherlib"].iter().filter(|n| text.contains(*n)).map(|n| n.to_string()).collect()
}

#[test]
fn function_libraries_come_back_with_the_keys() {
    let b = Backed::new();
    let dst = RedisServer::start(&[]);
    let dry = b.vault.ok(&["restore", &b.snap, "--to", &dst.url(), "--all", "--dry-run"]);
    assert!(dry.contains("would restore function library testlib"), "{dry}");
    let r = b.vault.json(&["restore", &b.snap, "--to", &dst.url(), "--all"]);
    assert_eq!(r["functions"], serde_json::json!(["testlib"]));
    assert_eq!(library_names(&dst), ["testlib"]);
    assert_eq!(fcall_one(&dst), 1);
    assert_eq!(dst.digest(), b.srv.digest());

    // The library exists now: the default (append) refuses before writing a key, even with --replace.
    let err = b.vault.fails(&["restore", &b.snap, "--to", &dst.url(), "--all", "--replace"]);
    assert!(
        err.contains("the function library testlib already exists on 127.0.0.1:")
            && err.contains("--functions replace overwrites it, --functions skip restores the keys without the snapshot's libraries"),
        "{err}"
    );

    // A server with another library of that name and no keys: refused before anything is written.
    let other = RedisServer::start(&[]);
    let _: String = other.cmd(&["FUNCTION", "LOAD", OTHER_LIB]);
    let err = b.vault.fails(&["restore", &b.snap, "--to", &other.url(), "--all"]);
    assert!(err.contains("the function library testlib already exists"), "{err}");
    assert_eq!(other.total_keys(), 0);
    assert_eq!(fcall_one(&other), 2);
    let dry = b.vault.ok(&["restore", &b.snap, "--to", &other.url(), "--all", "--dry-run"]);
    assert!(dry.contains("1 of them already exist (use --functions replace or skip): testlib"), "{dry}");
    b.vault.ok(&["restore", &b.snap, "--to", &other.url(), "--all", "--functions", "replace"]);
    assert_eq!(fcall_one(&other), 1, "replaced by the snapshot's library");
    assert_eq!(other.digest(), b.srv.digest());

    // skip leaves them out; a key pattern restores keys only.
    for args in [&["--all", "--functions", "skip"][..], &["--keys", "*"][..]] {
        let bare = RedisServer::start(&[]);
        let mut a = vec!["restore", b.snap.as_str(), "--to"];
        let url = bare.url();
        a.push(&url);
        a.extend_from_slice(args);
        let r = b.vault.json(&a);
        assert_eq!(r["functions"], serde_json::json!([]), "{args:?}");
        assert!(library_names(&bare).is_empty(), "{args:?}");
        assert_eq!(bare.digest(), b.srv.digest(), "{args:?}");
    }
}

fn len(out: &mut Vec<u8>, n: u64) {
    assert!(n < 1 << 14);
    if n < 64 {
        out.push(n as u8);
    } else {
        out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
    }
}

fn s(out: &mut Vec<u8>, b: &[u8]) {
    len(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// The RDB `f` with EOF and a zero checksum (which the reader does not check) appended.
fn closed(mut f: Vec<u8>) -> Vec<u8> {
    f.push(0xFF);
    f.extend_from_slice(&[0; 8]);
    f
}

/// A new repository holding a backup of `rdb`, and the snapshot id.
fn backed_up(rdb: Vec<u8>) -> (Vault, String) {
    let vault = Vault::init();
    let path = vault.dir.path().join("handmade.rdb");
    std::fs::write(&path, rdb).unwrap();
    let (snap, _) = vault.backup(&path, &[]);
    (vault, snap)
}

/// RDB 10: `lru` with an LRU idle time of 5000 s, `lfu` with an LFU counter of 77, `plain`.
fn lru_lfu_rdb() -> Vec<u8> {
    let mut f = b"REDIS0010".to_vec();
    f.extend_from_slice(&[0xFE, 0]); // SELECTDB 0
    f.push(0xF8); // IDLE: a length, seconds
    len(&mut f, 5000);
    f.push(0); // type 0: string
    s(&mut f, b"lru");
    s(&mut f, b"v1");
    f.extend_from_slice(&[0xF9, 77]); // FREQ: one byte
    f.push(0);
    s(&mut f, b"lfu");
    s(&mut f, b"v2");
    f.push(0);
    s(&mut f, b"plain");
    s(&mut f, b"v3");
    closed(f)
}

#[test]
fn idle_times_and_lfu_counters_are_kept() {
    let (vault, snap) = backed_up(lru_lfu_rdb());

    let lru = RedisServer::start(&[("maxmemory-policy", "allkeys-lru")]);
    vault.ok(&["restore", &snap, "--to", &lru.url(), "--all"]);
    let idle: i64 = lru.cmd(&["OBJECT", "IDLETIME", "lru"]);
    assert!((5000..5100).contains(&idle), "OBJECT IDLETIME lru = {idle}");
    let fresh: i64 = lru.cmd(&["OBJECT", "IDLETIME", "plain"]);
    assert!(fresh < 100, "OBJECT IDLETIME plain = {fresh}");

    let lfu = RedisServer::start(&[("maxmemory-policy", "allkeys-lfu")]);
    vault.ok(&["restore", &snap, "--to", &lfu.url(), "--all"]);
    let freq: i64 = lfu.cmd(&["OBJECT", "FREQ", "lfu"]);
    assert_eq!(freq, 77);
    let new: i64 = lfu.cmd(&["OBJECT", "FREQ", "plain"]);
    assert_eq!(new, 5, "a key without a counter starts at LFU_INIT_VAL");
}

#[test]
fn connections_spread_the_keys_and_the_data_is_the_same() {
    let b = Backed::new();
    for n in ["1", "3"] {
        let dst = RedisServer::start(&[]);
        let before: u64 = dst.info_field("stats", "total_connections_received").parse().unwrap();
        let r = b.vault.json(&["restore", &b.snap, "--to", &dst.url(), "--all", "--connections", n, "--batch", "5"]);
        let after: u64 = dst.info_field("stats", "total_connections_received").parse().unwrap();
        assert_eq!(r["connections"], n.parse::<u64>().unwrap());
        assert_eq!(after - before, n.parse::<u64>().unwrap() + 1, "connections made (and one for INFO)");
        assert_eq!(dst.digest(), b.srv.digest(), "--connections {n}");
        assert_eq!(dst.total_keys(), b.srv.total_keys());
    }
}

/// Encodes a module type id as Redis does: 9 characters of 6 bits each, then a 10-bit encver.
fn module_id(name: &[u8; 9], encver: u64) -> u64 {
    const SET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    name.iter().fold(0u64, |id, c| (id << 6) | SET.iter().position(|x| x == c).unwrap() as u64) << 10 | encver
}

/// RDB 10: a string key, then `doc`, a module value of type ReJSON-RL (encver 3) holding
/// one string through the module opcodes (STRING = 5, then EOF = 0).
fn module_rdb() -> Vec<u8> {
    let mut f = b"REDIS0010".to_vec();
    f.extend_from_slice(&[0xFE, 0]);
    f.push(0);
    s(&mut f, b"plain");
    s(&mut f, b"v");
    f.push(7); // type 7: module value (RDB_TYPE_MODULE_2)
    s(&mut f, b"doc");
    // Module id as a 64-bit length: 0x81 then 8 bytes big-endian.
    f.push(0x81);
    f.extend_from_slice(&module_id(b"ReJSON-RL", 3).to_be_bytes());
    f.push(5); // RDB_MODULE_OPCODE_STRING
    s(&mut f, b"{\"a\":1}");
    f.push(0); // RDB_MODULE_OPCODE_EOF
    closed(f)
}

#[test]
fn module_keys_need_their_module_on_the_target() {
    let (vault, snap) = backed_up(module_rdb());
    let dst = RedisServer::start(&[]);
    let want = "the snapshot holds module keys that 127.0.0.1:";
    let needs = "cannot load without their modules: ReJSON-RL (module ReJSON or json, 1 key); load the modules into the target";
    let err = vault.fails(&["restore", &snap, "--to", &dst.url(), "--all"]);
    assert!(err.contains(want) && err.contains(needs), "{err}");
    assert_eq!(dst.total_keys(), 0, "refused before writing");
    // With --replace (no first pass) the load stops before the module key.
    let err = vault.fails(&["restore", &snap, "--to", &dst.url(), "--all", "--replace"]);
    assert!(err.contains(needs), "{err}");
    let exists: i64 = dst.cmd(&["EXISTS", "doc"]);
    assert_eq!(exists, 0);
    // Other keys restore.
    let r = vault.json(&["restore", &snap, "--to", &dst.url(), "--keys", "plain", "--replace"]);
    assert_eq!(r["restored"], 1);
}
