//! The `rdbvault` command against real redis-servers: live backups end to end.

use crate::common;

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::net::TcpListener;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::data::{key_commands, Rng};
use common::server::{
    aof_server, fill_sample, pipe_commands, rewrite_aof_and_wait, set_following_moved, start_cluster, wait_until, RedisServer, ServerConfig,
};
use common::vault::Vault;
use serde_json::Value;

/// PSYNC + REPLCONF to stream, INFO for the description: all replication mode needs.
const MINIMAL_ACL: &[&str] = &["ACL", "SETUSER", "backup", "on", ">s3cret", "-@all", "+psync", "+replconf", "+info"];

fn diskless() -> RedisServer {
    RedisServer::start(&[("repl-diskless-sync", "yes"), ("repl-diskless-sync-delay", "0")])
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The repository's snapshots as JSON objects.
fn snapshots(v: &Vault, extra: &[&str]) -> Vec<Value> {
    let mut a = vec!["snapshots"];
    a.extend_from_slice(extra);
    v.json(&a).as_array().expect("a JSON array").clone()
}

/// Asserts a failed run left one clear error line and no snapshot.
fn assert_refused(v: &Vault, out: &Output, want: &str) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "should fail: {}", String::from_utf8_lossy(&out.stdout));
    assert!(err.contains(want), "expected {want:?} in: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(snapshots(v, &[]).is_empty(), "a refused backup must leave no snapshot");
    err
}

/// Restores a one-file snapshot and loads it into a fresh server.
fn restore_and_load(v: &Vault, snap: &str) -> RedisServer {
    let rdb = v.restore(snap, &v.dir.path().join(format!("{snap}.rdb")));
    RedisServer::load_rdb(&rdb)
}

#[test]
fn diskless_and_disk_based_sync_restore_the_same_dataset() {
    for diskless in ["yes", "no"] {
        let src = RedisServer::start(&[("repl-diskless-sync", diskless), ("repl-diskless-sync-delay", "0")]);
        fill_sample(&src, 2000);
        let v = Vault::init();
        let out = v.json(&["backup", &src.url()]);
        let id = out["snapshot_id"].as_str().unwrap().to_string();
        assert_eq!(out["source"]["kind"], "redis");

        let snap = &snapshots(&v, &[])[0];
        let addr = format!("127.0.0.1:{}", src.port);
        assert_eq!(snap["source"]["name"], addr.as_str());
        assert_eq!(snap["files"][0]["name"], "dump.rdb");
        assert_eq!(snap["redis"]["rdb_version"], 10);
        assert!(snap["redis"]["redis_version"].as_str().is_some_and(|s| s.starts_with('7')));
        assert_eq!(snap["redis"]["keys_per_db"]["0"], 2000 + 4 * 200);
        assert_eq!(snap["redis"]["keys_per_db"]["2"], 2000 + 4 * 200);
        let details = &snap["source"]["details"];
        assert_eq!(details["role"], "master");
        assert!(details["used_memory"].as_u64().is_some_and(|m| m > 0));
        assert!(details["snapshot_time_ms"].as_u64().is_some());
        assert!(details["replid"].as_str().is_some_and(|r| r.len() == 40));
        assert!(snap["group"].is_null());
        assert!(v.ok(&["snapshots"]).contains(&format!("redis:{addr}")));

        let copy = restore_and_load(&v, &id);
        assert_eq!(copy.digest(), src.digest(), "diskless={diskless}");
        assert_eq!(copy.total_keys(), src.total_keys());
    }
}

#[test]
fn acl_user_by_url_env_and_password_file() {
    let src = diskless();
    fill_sample(&src, 300);
    let () = src.cmd(MINIMAL_ACL);
    let v = Vault::init();
    let port = src.port;
    v.ok(&["backup", &format!("redis://backup:s3cret@127.0.0.1:{port}")]);
    let out = v.run_env(&["backup", &format!("redis://backup@127.0.0.1:{port}")], &[("REDISCLI_AUTH", "s3cret")]);
    assert!(out.status.success(), "REDISCLI_AUTH: {}", stderr(&out));
    let pw = v.dir.path().join("redis-pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    // The file wins over a wrong password in the URL and in the environment.
    let out = v.run_env(
        &["backup", &format!("redis://backup:wrong@127.0.0.1:{port}"), "--redis-password-file", pw.to_str().unwrap()],
        &[("REDISCLI_AUTH", "also-wrong")],
    );
    assert!(out.status.success(), "--redis-password-file: {}", stderr(&out));

    let all = snapshots(&v, &[]);
    assert_eq!(all.len(), 3);
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains("s3cret") && !text.contains("backup@"), "credentials stored: {text}");
    let digest = src.digest();
    for s in &all {
        assert_eq!(restore_and_load(&v, s["short_id"].as_str().unwrap()).digest(), digest);
    }
}

#[test]
fn refused_backups_leave_no_snapshot() {
    let src = diskless();
    fill_sample(&src, 100);
    let () = src.cmd(MINIMAL_ACL);
    let () = src.cmd(&["ACL", "SETUSER", "nosync", "on", ">pw", "-@all", "+info"]);
    let v = Vault::init();
    let port = src.port;

    let out = v.run(&["backup", &format!("redis://backup:hunter2@127.0.0.1:{port}")]);
    let err = assert_refused(&v, &out, "authentication failed");
    assert!(!err.contains("hunter2"), "password echoed: {err}");

    let out = v.run(&["backup", &format!("redis://nosync:pw@127.0.0.1:{port}")]);
    assert_refused(&v, &out, "permission denied");

    // A server that is still loading its dataset.
    let loading = answering_server("-LOADING Redis is loading the dataset in memory\r\n");
    let out = v.run(&["backup", &format!("redis://127.0.0.1:{loading}")]);
    assert_refused(&v, &out, "loading");

    // A server that accepts the connection and never answers: the read time-out.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = listener.local_addr().unwrap().port();
    let hold = std::thread::spawn(move || {
        let conn = listener.accept();
        std::thread::sleep(Duration::from_secs(3));
        drop(conn);
    });
    let start = Instant::now();
    let out = v.run(&["backup", &format!("redis://127.0.0.1:{silent}"), "--read-timeout", "1", "--connect-timeout", "2"]);
    assert_refused(&v, &out, "did not answer");
    assert!(start.elapsed() < Duration::from_secs(4), "time-out not honoured: {:?}", start.elapsed());
    hold.join().unwrap();

    // Nothing listening.
    let closed = common::server::free_port();
    let out = v.run(&["backup", &format!("redis://127.0.0.1:{closed}")]);
    assert_refused(&v, &out, "connect");
}

/// A fake server answering every command with `reply`.
fn answering_server(reply: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for sock in listener.incoming().take(4) {
            let Ok(mut sock) = sock else { return };
            let Ok(clone) = sock.try_clone() else { return };
            let mut reader = std::io::BufReader::new(clone);
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if line.starts_with('*') && sock.write_all(reply.as_bytes()).is_err() {
                    break;
                }
                line.clear();
            }
        }
    });
    port
}

#[test]
fn server_killed_mid_stream_leaves_no_snapshot() {
    for diskless in ["yes", "no"] {
        let mut src = RedisServer::start(&[
            ("repl-diskless-sync", diskless),
            ("repl-diskless-sync-delay", "0"),
            ("rdbcompression", "no"),
            // Slow the fork's writing so the kill surely lands mid-stream.
            ("rdb-key-save-delay", "10"),
        ]);
        let () = src.cmd(&["DEBUG", "POPULATE", "200000", "key", "256"]);
        let v = Vault::init();
        let child = v.cmd(&["backup", &src.url()]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        if diskless == "no" {
            // The file is sent only once saved: save fast, kill during the transfer.
            let () = src.cmd(&["CONFIG", "SET", "rdb-key-save-delay", "0"]);
        }
        let saving = || src.info_field("persistence", "rdb_bgsave_in_progress") == "1";
        wait_until(Duration::from_secs(20), "the sync to start", saving);
        if diskless == "yes" {
            // The fork streams as it saves.
            std::thread::sleep(Duration::from_millis(700));
        } else {
            // The backup (a debug build) then reads ~50 MB: the kill lands during that.
            wait_until(Duration::from_secs(30), "the save to finish", || !saving());
        }
        src.kill();
        let out = child.wait_with_output().unwrap();
        let err = assert_refused(&v, &out, "dropped at byte");
        assert!(err.contains("dump.rdb"), "names the stream: {err}");
    }
}

#[test]
fn bgsave_mode_backs_up_the_saved_file() {
    let src = RedisServer::start(&[]);
    fill_sample(&src, 500);
    let v = Vault::init();
    let rdb_path = src.path("dump.rdb");
    let out = v.json(&["backup", &src.url(), "--mode", "bgsave", "--rdb-path", rdb_path.to_str().unwrap()]);
    let id = out["snapshot_id"].as_str().unwrap().to_string();
    let snap = &snapshots(&v, &[])[0];
    assert_eq!(snap["source"]["kind"], "bgsave");
    assert_eq!(snap["source"]["details"]["path"], rdb_path.to_str().unwrap());
    assert_eq!(snap["redis"]["rdb_version"], 10);
    assert_eq!(restore_and_load(&v, &id).digest(), src.digest());
    // bgsave needs the file's path.
    let err = v.fails(&["backup", &src.url(), "--mode", "bgsave"]);
    assert!(err.contains("--rdb-path"), "{err}");
}

/// Restores an AOF snapshot as `<dir>/aofparts` and starts a server on it.
fn load_aof(v: &Vault, snap: &str) -> RedisServer {
    let dir = tempfile::tempdir().unwrap();
    v.ok(&["restore", snap, "--target", dir.path().join("aofparts").to_str().unwrap()]);
    RedisServer::start_with(
        ServerConfig { dir: Some(dir), ..Default::default() }
            .arg("appendonly", &["yes"])
            .arg("appenddirname", &["aofparts"])
            .arg("appendfilename", &["app.aof"]),
    )
}

#[test]
fn aof_directory_with_a_rewrite_between_backups() {
    let src = aof_server();
    fill_sample(&src, 300);
    let v = Vault::init();
    let dir = src.path("aofparts");
    let first = v.json(&["backup", "--aof", dir.to_str().unwrap()]);
    let digest1 = src.digest();
    let names: Vec<&str> = first["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names.last(), Some(&"app.aof.manifest"), "manifest last: {names:?}");
    assert!(names.iter().any(|n| n.ends_with(".base.rdb")) && names.iter().any(|n| n.ends_with(".incr.aof")), "{names:?}");

    rewrite_aof_and_wait(&src);
    let () = src.cmd(&["SET", "after-rewrite", "1"]);
    let () = src.cmd(&["HSET", "h-after", "f", "v"]);
    let second = v.json(&["backup", "--aof", dir.to_str().unwrap()]);
    let digest2 = src.digest();
    assert_ne!(digest1, digest2);

    let all = snapshots(&v, &[]);
    assert_eq!(all.len(), 2);
    for s in &all {
        assert_eq!(s["source"]["kind"], "aof");
        assert_eq!(s["source"]["details"]["aof"]["manifest_name"], "app.aof.manifest");
        assert_eq!(s["source"]["details"]["aof"]["attempts"], 1);
        assert_eq!(s["redis"]["rdb_version"], 10, "from the base file's header");
    }
    assert_ne!(all[0]["source"]["details"]["aof"]["files"], all[1]["source"]["details"]["aof"]["files"]);
    assert_eq!(load_aof(&v, first["snapshot_id"].as_str().unwrap()).digest(), digest1);
    assert_eq!(load_aof(&v, second["snapshot_id"].as_str().unwrap()).digest(), digest2);
}

#[test]
fn aof_rewrites_during_backups_never_give_a_mixed_set() {
    let src = aof_server();
    fill_sample(&src, 1000);
    let () = src.cmd(&["DEBUG", "POPULATE", "100000", "pop", "100"]);
    rewrite_aof_and_wait(&src); // DEBUG POPULATE is not logged: a rewrite puts it in the base
    let digest = src.digest();
    let v = Vault::init();
    let dir = src.path("aofparts");
    // Rewrite over and over while backing up: every saved snapshot must be one consistent set.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let outs: Vec<Output> = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                rewrite_aof_and_wait(&src);
            }
        });
        let outs = (0..3).map(|_| v.run(&["backup", "--aof", dir.to_str().unwrap()])).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        outs
    });
    for out in &outs {
        assert!(out.status.success() || stderr(out).contains("rewritten"), "{}", stderr(out));
    }
    let all = snapshots(&v, &[]);
    let attempts: Vec<&Value> = all.iter().map(|s| &s["source"]["details"]["aof"]["attempts"]).collect();
    eprintln!("{} of 3 backups saved; attempts: {attempts:?}", all.len());
    for s in &all {
        assert_eq!(load_aof(&v, s["short_id"].as_str().unwrap()).digest(), digest);
    }
}

#[test]
fn three_master_cluster_is_one_group_of_shard_snapshots() {
    let nodes = start_cluster();
    let written: BTreeSet<String> = (0..300).map(|i| format!("ckey:{i}")).collect();
    for k in &written {
        set_following_moved(&nodes, k, &format!("value of {k}"));
    }

    let v = Vault::init();
    let out = v.json(&["backup", &nodes[1].url(), "--cluster"]);
    let group = out["group"].as_str().expect("group id").to_string();
    assert_eq!(group.len(), 16);
    assert_eq!(out["snapshots"].as_array().unwrap().len(), 3);
    // A second run is another group; --group picks the first.
    v.ok(&["backup", &nodes[0].url(), "--cluster"]);
    assert_eq!(snapshots(&v, &[]).len(), 6);
    let shards = snapshots(&v, &["--group", &group]);
    assert_eq!(shards.len(), 3);
    let mut node_ids = BTreeSet::new();
    for s in &shards {
        assert_eq!(s["group"], group.as_str());
        assert_eq!(s["source"]["kind"], "cluster-shard");
        let shard = &s["source"]["details"]["cluster"];
        assert!(shard["slots"].as_array().is_some_and(|r| !r.is_empty()));
        node_ids.insert(shard["node_id"].as_str().unwrap().to_string());
        assert_eq!(s["files"][0]["name"], format!("{}.rdb", shard["group_id"].as_str().unwrap()).as_str());
    }
    assert_eq!(node_ids.len(), 3);
    assert!(v.ok(&["snapshots", "--group", &group]).contains("cluster-shard:127.0.0.1:"));

    let target = v.dir.path().join("cluster-restore");
    v.ok(&["restore", "--group", &group, "--target", target.to_str().unwrap()]);
    let mut files: Vec<_> = std::fs::read_dir(&target).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    let mut union = BTreeSet::new();
    for f in &files {
        assert!(f.extension().is_some_and(|e| e == "rdb") && f.file_name().unwrap().to_str().unwrap().starts_with("slots-"));
        let copy = RedisServer::load_rdb(&std::fs::read(f).unwrap());
        let keys: Vec<String> = copy.cmd(&["KEYS", "*"]);
        for k in keys {
            let val: String = copy.cmd(&["GET", &k]);
            assert_eq!(val, format!("value of {k}"));
            assert!(union.insert(k), "key held by two shards");
        }
    }
    assert_eq!(union, written);
    // `latest` is the newest group.
    let latest = v.dir.path().join("latest-restore");
    v.ok(&["restore", "--group", "latest", "--target", latest.to_str().unwrap()]);
    assert_eq!(std::fs::read_dir(&latest).unwrap().count(), 3);
}

#[test]
fn cluster_with_a_dead_master_fails_clearly() {
    let nodes = start_cluster();
    // The master of the highest slots (backed up last) refuses us: earlier shards stay saved.
    let last = nodes.iter().find(|n| {
        let text: String = n.cmd(&["CLUSTER", "NODES"]);
        text.lines().any(|l| l.contains("myself") && l.split_whitespace().skip(8).any(|r| r.ends_with("-16383")))
    });
    let () = last.expect("a master owns slot 16383").cmd(&["CONFIG", "SET", "requirepass", "other"]);
    let v = Vault::init();
    let out = v.run(&["backup", &nodes[0].url(), "--cluster"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("cluster shard slots-") && err.contains("2 of 3 shards saved in group"), "{err}");
    assert_eq!(snapshots(&v, &[]).len(), 2);
}

/// Waits until the main dict is not rehashing, so the RDB key order is stable.
fn wait_rehashed(src: &RedisServer) {
    wait_until(Duration::from_secs(20), "rehashing to finish", || {
        let stats: String = src.cmd(&["DEBUG", "HTSTATS", "0"]);
        !stats.contains("rehashing")
    });
}

#[test]
fn one_percent_changed_keys_add_a_small_fraction_live() {
    let src = diskless();
    let n = 200_000u64;
    let mut rng = Rng(11);
    let cmds: Vec<Vec<String>> = (0..n).flat_map(|i| key_commands(i, 0, &mut rng)).collect();
    pipe_commands(src.port, &cmds);
    drop(cmds);
    wait_rehashed(&src);
    assert_eq!(src.total_keys(), n);
    let v = Vault::init();
    let first = v.json(&["backup", &src.url()]);

    // Rewrite 1% of the keys, scattered across the keyspace.
    let mut rng = Rng(99);
    let cmds: Vec<Vec<String>> = (0..n / 100).flat_map(|_| key_commands(rng.below(n), 1, &mut rng)).collect();
    pipe_commands(src.port, &cmds);
    wait_rehashed(&src);
    let second = v.json(&["backup", &src.url()]);

    let (s1, s2) = (&first["summary"], &second["summary"]);
    let added1 = s1["bytes_added"].as_u64().unwrap();
    let added2 = s2["bytes_added"].as_u64().unwrap();
    let ratio = added2 as f64 / added1 as f64;
    eprintln!(
        "keys {n}: RDB {} B; first backup added {added1} B in {} ms, second {added2} B in {} ms ({:.1}%), new chunks {} of {}",
        s2["bytes_processed"],
        s1["duration_ms"],
        s2["duration_ms"],
        ratio * 100.0,
        s2["new_chunks"],
        s2["chunks"]
    );
    assert!(added2 > 0, "changed keys must store something");
    assert!(ratio < 0.3, "second backup added {:.1}% of the first", ratio * 100.0);
    let copy = restore_and_load(&v, second["snapshot_id"].as_str().unwrap());
    assert_eq!(copy.digest(), src.digest());
}

#[test]
fn flags_that_need_a_url_are_rejected() {
    let v = Vault::init();
    let file = v.dir.path().join("x.rdb");
    std::fs::write(&file, b"REDIS0010\xff").unwrap();
    for extra in [&["--cluster"][..], &["--mode", "bgsave", "--rdb-path", "/x"], &["--tls-insecure"]] {
        let mut a = vec!["backup", file.to_str().unwrap()];
        a.extend_from_slice(extra);
        let err = v.fails(&a);
        assert!(err.contains("redis://"), "{extra:?}: {err}");
    }
    let err = v.fails(&["backup", "redis://127.0.0.1:1", "--cluster", "--mode", "bgsave", "--rdb-path", "/x"]);
    assert!(err.contains("--cluster"), "{err}");
    let err = v.fails(&["backup", "redis://u:pw@127.0.0.1:1", "--connect-timeout", "0"]);
    assert!(err.contains("--connect-timeout"), "{err}");
}
