//! What `inspect` and `backup` tell a person and a script, to the byte: AOF snapshots'
//! facts, the key listing, the memory report and backup's JSON.

use crate::common;

use common::handmade::{now_ms, Rdb};
use common::vault::Vault;

const DAY: u64 = 86_400_000;
const MIN: u64 = 60_000;

/// Writes `rdb` into the vault's temp dir and backs it up; returns the snapshot id.
fn backup_rdb(vault: &Vault, name: &str, rdb: Vec<u8>) -> String {
    let path = vault.dir.path().join(name);
    std::fs::write(&path, rdb).expect("write rdb");
    vault.backup(&path, &[]).0
}

/// An AOF directory as Redis 7 writes it: manifest, base RDB, one incremental file.
fn aof_dir(vault: &Vault) -> std::path::PathBuf {
    let dir = vault.dir.path().join("appendonlydir");
    std::fs::create_dir(&dir).expect("mkdir");
    let base = Rdb::new("7.2.4")
        .string(0, b"a", b"1", None)
        .string(0, b"b", b"2", None)
        .string(0, b"c", b"3", Some(4_102_444_800_000))
        .string(2, b"d", b"4", None)
        .bytes();
    std::fs::write(dir.join("app.aof.1.base.rdb"), base).expect("write base");
    std::fs::write(dir.join("app.aof.1.incr.aof"), "*3\r\n$3\r\nSET\r\n$1\r\ne\r\n$1\r\n5\r\n").expect("write incr");
    std::fs::write(dir.join("app.aof.manifest"), "file app.aof.1.base.rdb seq 1 type b\nfile app.aof.1.incr.aof seq 1 type i\n")
        .expect("write manifest");
    dir
}

#[test]
fn an_aof_snapshot_records_its_base_facts_and_inspect_says_it_reads_the_base_only() {
    let vault = Vault::init();
    let dir = aof_dir(&vault);
    let dir = dir.to_str().expect("utf-8");

    let text = vault.ok(&["backup", "--aof", dir]);
    let line = text.lines().find(|l| l.starts_with("  redis:")).expect("a redis line");
    assert_eq!(line, "  redis:     RDB v10 from Redis 7.2.4, 4 keys (db0=3 db2=1) in the base file app.aof.1.base.rdb; its incremental files are not counted");
    let b = vault.json(&["backup", "--aof", dir]);
    let facts = serde_json::json!({
        "rdb_version": 10, "redis_version": "7.2.4", "keys_per_db": {"0": 3, "2": 1}, "keys": 4, "keys_with_ttl": 1,
        "file": "app.aof.1.base.rdb",
    });
    assert_eq!(b["redis"], facts);
    assert_eq!((b["source"]["kind"].as_str(), &b["mode"]), (Some("aof"), &serde_json::Value::Null));
    let snap = b["snapshot_id"].as_str().expect("id").to_string();
    let listed = vault.json(&["snapshots"]);
    assert_eq!(listed[1]["redis"], facts, "snapshots shows the base's facts");

    // inspect reads the base and says so: one line on stderr, the files left out in JSON.
    let o = vault.run(&["inspect", &snap]);
    assert!(o.status.success());
    let short = &snap[..8];
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!("snapshot {short} is an AOF directory: reading its base RDB app.aof.1.base.rdb only, without the commands of app.aof.1.incr.aof (--file NAME reads another file)\n")
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("  keys: 4 (1 with TTL)\n"));
    let s = vault.json(&["inspect", &snap, "--summary"]);
    assert_eq!((s["file"].as_str(), &s["files_not_read"]), (Some("app.aof.1.base.rdb"), &serde_json::json!(["app.aof.1.incr.aof", "app.aof.manifest"])));
    assert_eq!(s["summary"]["keys"], 4);
    let d = vault.json(&["diff", &snap, &snap]);
    assert_eq!(d["old"]["files_not_read"], serde_json::json!(["app.aof.1.incr.aof", "app.aof.manifest"]));

    // --file picks another file; a name the snapshot does not hold is refused, naming its files.
    let err = vault.fails(&["inspect", &snap, "--file", "nope.rdb"]);
    assert_eq!(err, format!("error: snapshot {short}: the snapshot holds no file named \"nope.rdb\"; its files are: app.aof.1.base.rdb, app.aof.1.incr.aof, app.aof.manifest\n"));
    let err = vault.fails(&["inspect", &snap, "--file", "app.aof.1.incr.aof"]);
    assert!(err.contains("app.aof.1.incr.aof") && err.contains("not an RDB"), "{err}");
    let o = vault.run(&["--json", "inspect", &snap, "--file", "app.aof.1.base.rdb", "--summary"]);
    assert!(o.status.success());
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(s["files_not_read"].as_array().map(Vec::len), Some(2));
    let err = vault.fails(&["diff", &snap, &snap, "--file", "x"]);
    assert!(err.contains("holds no file named \"x\""), "{err}");
}

/// Expiry times fixed by the test: one 10 days and 30 minutes after now, one 2 days and 30
/// minutes before, so the TTLs at the snapshot (taken seconds later) read `10d0h` and
/// `expired 2d0h before` however long the backup takes.
fn ttl_rdb(soon: u64, gone: u64) -> Vec<u8> {
    Rdb::new("7.0.15")
        .string(0, b"plain", b"v", None)
        .string(0, b"soon", b"v", Some(soon))
        .string(0, b"gone", b"v", Some(gone))
        .string(0, b"two words", b"v", None)
        .string(1, b"bin\xff\n\"q\"", b"\x00\x01", None)
        .bytes()
}

#[test]
fn the_key_listing_has_a_header_expiry_times_ttls_at_the_snapshot_and_escaped_keys() {
    let vault = Vault::init();
    let now = now_ms();
    let (soon, gone) = (now + 10 * DAY + 30 * MIN, now - 2 * DAY - 30 * MIN);
    let snap = backup_rdb(&vault, "dump.rdb", ttl_rdb(soon, gone));
    let time = |ms: u64| {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).expect("time");
        format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", t.year(), t.month() as u8, t.day(), t.hour(), t.minute(), t.second(), t.millisecond())
    };
    let text = vault.ok(&["inspect", &snap, "--keys", "*"]);
    let expected = [
        " DB  TYPE    ENCODING    EXPIRES                   TTL AT SNAPSHOT            MEMORY  KEY".to_string(),
        "  0  string  embstr      -                         -                            56 B  plain".to_string(),
        format!("  0  string  embstr      {}  10d0h                        80 B  soon", time(soon)),
        format!("  0  string  embstr      {}  expired 2d0h before          80 B  gone", time(gone)),
        "  0  string  embstr      -                         -                            64 B  \"two words\"".to_string(),
        "  1  string  embstr      -                         -                            64 B  \"bin\\xff\\n\\\"q\\\"\"".to_string(),
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), expected);

    // JSON: one shape per field: keys and values always strings (escaped alike), the expiry
    // once (absolute) with the TTL at the snapshot, the checksum as a string.
    let lines: Vec<serde_json::Value> =
        vault.ok(&["--json", "inspect", &snap]).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    let at = |i: usize, f: &str| lines[i][f].clone();
    assert_eq!((at(0, "key"), at(0, "expire_at_ms"), at(0, "ttl_ms")), ("plain".into(), serde_json::Value::Null, serde_json::Value::Null));
    assert_eq!(at(1, "expire_at_ms"), soon);
    let ttl = at(1, "ttl_ms").as_i64().expect("ttl_ms");
    assert!(ttl > (10 * DAY) as i64 && ttl <= (10 * DAY + 30 * MIN) as i64, "{ttl}");
    assert!(at(2, "ttl_ms").as_i64().expect("ttl_ms") < -((2 * DAY + 30 * MIN) as i64), "expired before the snapshot");
    assert_eq!((at(4, "db"), at(4, "key"), at(4, "value")), (1.into(), "bin\\xff\\n\"q\"".into(), "\\x00\\x01".into()));
    assert!(lines.iter().all(|l| l.get("expire_ms").is_none()), "no second expiry field");
    let s = vault.json(&["inspect", &snap, "--summary"]);
    assert_eq!(s["summary"]["checksum"], "0000000000000000");
    assert_eq!(s["files_not_read"], serde_json::json!([]));
}

#[test]
fn the_memory_report_gives_sizes_with_units_and_counts_in_words() {
    let vault = Vault::init();
    let one = backup_rdb(&vault, "one.rdb", Rdb::new("7.0.15").string(0, b"user:1", &[b'x'; 2000], None).bytes());
    let text = vault.ok(&["inspect", &one, "--memory"]);
    let expected = "\
1 key, about 2.0 KiB in memory

largest keys:
      MEMORY   DB  TYPE/ENCODING         KEY
     2.0 KiB    0  string/raw            user:1

by key prefix:
      MEMORY        KEYS  NAME
     2.0 KiB           1  user

by type:
      MEMORY        KEYS  NAME
     2.0 KiB           1  string
";
    assert_eq!(text, expected);
    // JSON keeps raw numbers.
    let m = vault.json(&["inspect", &one, "--memory"]);
    assert_eq!((m["total"]["keys"].as_u64(), m["total"]["bytes"].as_u64()), (Some(1), Some(2056)));
    assert_eq!(m["top"][0]["key"], "user:1");
}

#[test]
fn backup_json_carries_the_redis_facts_and_rates_only_over_a_second() {
    let vault = Vault::init();
    let path = vault.dir.path().join("dump.rdb");
    std::fs::write(&path, Rdb::new("7.0.15").string(0, b"k", b"v", None).string(3, b"j", b"w", None).bytes()).expect("write");
    let p = path.to_str().expect("utf-8");
    let b = vault.json(&["backup", p]);
    let facts = serde_json::json!({"rdb_version": 10, "redis_version": "7.0.15", "keys_per_db": {"0": 1, "3": 1}, "keys": 2, "keys_with_ttl": 0});
    assert_eq!(b["redis"], facts);
    assert_eq!((b["source"]["kind"].as_str(), &b["mode"]), (Some("file"), &serde_json::Value::Null));

    let text = vault.ok(&["backup", p]);
    assert!(text.contains("\n  redis:     RDB v10 from Redis 7.0.15, 2 keys (db0=1 db3=1)\n"), "{text}");
    let processed = text.lines().find(|l| l.starts_with("  processed:")).expect("processed line");
    let secs: f64 = processed.split(" in ").nth(1).and_then(|r| r.split(' ').next()).and_then(|s| s.parse().ok()).expect("seconds");
    assert_eq!(processed.ends_with("/s)"), secs >= 1.0, "a rate only over a second: {processed}");

    // A live server: the mode too.
    let srv = common::server::RedisServer::start(&[]);
    let _: () = srv.cmd(&["SET", "k", "v"]);
    let b = vault.json(&["backup", &srv.url()]);
    assert_eq!((b["source"]["kind"].as_str(), b["mode"].as_str()), (Some("redis"), Some("replication")));
    assert_eq!((b["redis"]["keys"].as_u64(), b["redis"]["keys_per_db"].clone()), (Some(1), serde_json::json!({"0": 1})));
}

#[test]
fn inspect_diff_and_restore_name_keys_alike() {
    let vault = Vault::init();
    let empty = backup_rdb(&vault, "empty.rdb", Rdb::new("7.0.15").bytes());
    let snap = backup_rdb(&vault, "dump.rdb", Rdb::new("7.0.15").string(2, b"bin\xff key", b"v", None).bytes());
    let name = serde_json::json!({"db": 2, "key": "bin\\xff key"});
    let line: serde_json::Value = serde_json::from_str(vault.ok(&["--json", "inspect", &snap]).trim_end()).expect("one key");
    assert_eq!((&line["db"], &line["key"]), (&name["db"], &name["key"]));
    let d = vault.json(&["diff", &empty, &snap]);
    assert_eq!((&d["changes"][0]["db"], &d["changes"][0]["key"]), (&name["db"], &name["key"]));

    let srv = common::server::RedisServer::start(&[]);
    let mut c = srv.resp();
    c.ok(&["SELECT", "2"]);
    c.cmd_bytes(&[b"SET", b"bin\xff key", b"there"]);
    let r = vault.json(&["restore", &snap, "--to", &srv.url(), "--all", "--dry-run"]);
    assert_eq!((&r["first_keys"], &r["conflict_keys"]), (&serde_json::json!([name]), &serde_json::json!([name])));
    let text = vault.ok(&["restore", &snap, "--to", &srv.url(), "--all", "--dry-run"]);
    assert!(text.contains("\nfirst keys: 2:\"bin\\xff key\"\n"), "{text}");
    assert!(text.contains("1 of them already exist (use --replace): 2:\"bin\\xff key\"\n"), "{text}");
}
