//! A Redis dataset with every type, compact and plain encodings, TTLs, several dbs,
//! a stream with consumer groups and a function library, built with a real redis-server.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use super::resp::RespConn;
use super::server::RedisServer;
use super::vault::Vault;

/// Config for a server that keeps everything in compact encodings.
pub const COMPACT: &[(&str, &str)] = &[
    ("hash-max-listpack-entries", "1000"),
    ("zset-max-listpack-entries", "1000"),
    ("set-max-intset-entries", "1000"),
    ("list-max-listpack-size", "128"),
    ("rdbcompression", "yes"),
];

/// Config for a server that uses the plain encodings for (almost) everything.
pub const PLAIN: &[(&str, &str)] = &[
    ("hash-max-listpack-entries", "0"),
    ("zset-max-listpack-entries", "0"),
    ("set-max-intset-entries", "0"),
    ("list-max-listpack-size", "1"),
    ("rdbcompression", "yes"),
];

/// Wall-clock milliseconds, to compare absolute expiries with server TTLs.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Fills a server with every type, small and large, across dbs 0, 1 and 3.
pub fn fill(c: &mut RespConn) {
    c.ok(&["SELECT", "0"]);
    c.ok(&["SET", "str:int", "12345"]);
    c.ok(&["SET", "str:neg", "-42"]);
    c.ok(&["SET", "str:i64max", "9223372036854775807"]);
    c.ok(&["SET", "str:leading0", "0123"]);
    c.ok(&["SET", "str:short", "hello"]);
    c.ok(&["SET", "str:empty", ""]);
    c.ok(&["SET", "str:utf8", "café ☕"]);
    c.ok(&["SET", "str:44", &"x".repeat(44)]);
    c.ok(&["SET", "str:long", &"abcdefgh".repeat(200)]); // compressible: LZF
    let binary: Vec<u8> = (0..=255u8).rev().collect();
    c.cmd_bytes(&[b"SET", b"str:bin", &binary]);
    c.cmd_bytes(&[b"SET", b"key:\xff\x00\r\n", b"binary key"]);
    c.ok(&["SET", "ttl:str", "expiring", "PX", "100000000"]);

    c.ok(&[
        "RPUSH",
        "list:small",
        "a",
        "b",
        "1",
        "-3",
        "500000",
        "9999999999",
        "",
    ]);
    let big: Vec<String> = (0..300)
        .map(|i| format!("item-{i}-{}", "y".repeat(i % 70)))
        .collect();
    let mut args = vec!["RPUSH", "list:big"];
    args.extend(big.iter().map(String::as_str));
    c.ok(&args);

    c.ok(&[
        "SADD",
        "set:ints",
        "1",
        "2",
        "3",
        "-5",
        "70000",
        "5000000000",
    ]);
    c.ok(&["SADD", "set:strs", "a", "b", "c", "12x"]);
    let members: Vec<String> = (0..600).map(|i| format!("m{i}")).collect();
    let mut args = vec!["SADD", "set:big"];
    args.extend(members.iter().map(String::as_str));
    c.ok(&args);

    c.ok(&[
        "ZADD",
        "zset:small",
        "1",
        "a",
        "2.5",
        "b",
        "-inf",
        "c",
        "1e300",
        "d",
        "-0.125",
        "e",
    ]);
    let mut zargs: Vec<String> = vec!["ZADD".into(), "zset:big".into()];
    for i in 0..200 {
        zargs.push(format!("{}", i as f64 / 7.0));
        zargs.push(format!("member-{i}"));
    }
    let z: Vec<&str> = zargs.iter().map(String::as_str).collect();
    c.ok(&z);

    c.ok(&["HSET", "hash:small", "f1", "v1", "f2", "123", "empty", ""]);
    c.cmd_bytes(&[b"HSET", b"hash:bin", b"\x00\xfe", b"\xff\xff", b"n", b"-7"]);
    let mut hargs: Vec<String> = vec!["HSET".into(), "hash:big".into()];
    for i in 0..600 {
        hargs.push(format!("field{i}"));
        hargs.push(format!("value{i}"));
    }
    let h: Vec<&str> = hargs.iter().map(String::as_str).collect();
    c.ok(&h);
    c.ok(&["EXPIRE", "hash:small", "5000"]);

    // Stream with deletions, differing field sets and two consumer groups.
    for i in 0..10 {
        c.ok(&[
            "XADD",
            "stream:s",
            &format!("{}-{}", 1000 + i, i % 2),
            "temp",
            &i.to_string(),
            "unit",
            "C",
        ]);
    }
    c.ok(&[
        "XADD", "stream:s", "2000-0", "other", "field", "x", "y", "z", "w",
    ]);
    c.ok(&["XDEL", "stream:s", "1003-1"]);
    c.ok(&["XGROUP", "CREATE", "stream:s", "g1", "0"]);
    c.ok(&["XGROUP", "CREATE", "stream:s", "g2", "$"]);
    c.ok(&[
        "XREADGROUP",
        "GROUP",
        "g1",
        "alice",
        "COUNT",
        "3",
        "STREAMS",
        "stream:s",
        ">",
    ]);
    c.ok(&[
        "XREADGROUP",
        "GROUP",
        "g1",
        "bob",
        "COUNT",
        "2",
        "STREAMS",
        "stream:s",
        ">",
    ]);
    c.ok(&["XACK", "stream:s", "g1", "1001-1"]);

    c.ok(&[
        "FUNCTION",
        "LOAD",
        "#!lua name=testlib\nredis.register_function('one', function() return 1 end)",
    ]);

    c.ok(&["SELECT", "1"]);
    c.ok(&["SET", "db1:a", "1"]);
    c.ok(&["SET", "db1:b", "two", "EX", "3600"]);
    c.ok(&["RPUSH", "db1:list", "x", "y"]);

    c.ok(&["SELECT", "3"]);
    c.ok(&["ZADD", "db3:z", "3", "three"]);
    c.ok(&["HSET", "db3:h", "a", "b"]);
    c.ok(&["PEXPIRE", "db3:h", "86400000"]);
    c.ok(&["SELECT", "0"]);
}

/// Parses keyspace lines of INFO into db -> (keys, expires).
pub fn keyspace(c: &mut RespConn) -> BTreeMap<u64, (u64, u64)> {
    let info = c.cmd(&["INFO", "keyspace"]).text();
    let mut out = BTreeMap::new();
    for line in info.lines().filter(|l| l.starts_with("db")) {
        let (db, rest) = line.split_once(':').expect("db line");
        let kv: HashMap<&str, u64> = rest
            .split(',')
            .filter_map(|p| p.split_once('='))
            .filter_map(|(k, v)| v.parse().ok().map(|v| (k, v)))
            .collect();
        out.insert(
            db[2..].parse().expect("db number"),
            (kv["keys"], kv["expires"]),
        );
    }
    out
}

/// `v` sorted, for order-free comparisons of members and keys.
pub fn sorted<T: Ord + Clone>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Adds `user:N` hashes in dbs 0 and 1 and `user:ttl` (with a TTL) in db 1.
pub fn fill_users(c: &mut RespConn, n: usize) {
    for db in ["0", "1"] {
        c.ok(&["SELECT", db]);
        for i in 0..n {
            c.ok(&["HSET", &format!("user:{i}"), "name", &format!("u{i}-db{db}"), "visits", &i.to_string()]);
        }
    }
    c.ok(&["SET", "user:ttl", "soon", "EX", "7200"]);
    c.ok(&["SELECT", "0"]);
}

/// A server filled with [`fill`] and [`fill_users`], saved and backed up into a new repository.
pub struct Backed {
    /// The filled server (still running, for comparisons).
    pub srv: RedisServer,
    /// The repository holding its backup.
    pub vault: Vault,
    /// Snapshot id of that backup.
    pub snap: String,
}

impl Backed {
    /// Starts redis-server with its default encodings limits (so small values are compact
    /// and big ones plain), fills, saves and backs up.
    pub fn new() -> Backed {
        let srv = RedisServer::start(&[]);
        let mut c = srv.resp();
        fill(&mut c);
        fill_users(&mut c, 30);
        let vault = Vault::init();
        let snap = backup_now(&srv, &vault);
        Backed { srv, vault, snap }
    }
}

/// SAVEs the server and backs its dump up; returns the snapshot id.
pub fn backup_now(srv: &RedisServer, vault: &Vault) -> String {
    srv.save_rdb();
    vault.backup(&srv.rdb_path(), &[]).0
}

/// Every key of `db`, sorted (binary-safe).
pub fn keys_of(c: &mut RespConn, db: u64) -> Vec<Vec<u8>> {
    c.ok(&["SELECT", &db.to_string()]);
    let keys = sorted(c.cmd(&["KEYS", "*"]).byte_list());
    c.ok(&["SELECT", "0"]);
    keys
}

/// Bytes of a JSON string (escaped as redis-cli escapes bytes).
pub fn json_bytes(v: &serde_json::Value) -> Vec<u8> {
    rdbvault::rdb::unescape(v.as_str().expect("a JSON string")).expect("well-formed escapes")
}
