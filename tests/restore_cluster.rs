//! `restore --to NODE --cluster`: a snapshot of one server restored into a three-master
//! cluster made by the test, each key on the master of its hash slot.

use crate::common;

use std::collections::BTreeSet;
use std::process::Command;

use common::dataset::{fill, keys_of};
use common::resp::RespConn;
use common::server::{set_following_moved, start_cluster, RedisServer};
use common::vault::Vault;

fn digest(c: &mut RespConn, key: &[u8]) -> Vec<u8> {
    c.cmd_bytes(&[b"DEBUG", b"DIGEST-VALUE", key]).array()[0].bytes()
}

#[test]
fn a_single_server_snapshot_restores_into_a_cluster() {
    let src = RedisServer::start(&[]);
    let mut c = src.resp();
    fill(&mut c);
    c.ok(&["SELECT", "0"]);
    for i in 0..200 {
        c.ok(&["SET", &format!("n:{i}"), &i.to_string()]);
        c.ok(&["SADD", &format!("{{tag}}:{i}"), "a", "b"]);
    }
    let vault = Vault::init();
    let snap = common::dataset::backup_now(&src, &vault);
    let nodes = start_cluster();
    let url = nodes[1].url();

    // The snapshot holds dbs 0, 1 and 3; a cluster has db 0 only.
    let err = vault.fails(&["restore", &snap, "--to", &url, "--cluster", "--all"]);
    assert!(err.contains("is a Redis Cluster, which has db 0 only") && err.contains("--db N"), "{err}");

    let r = vault.json(&["restore", &snap, "--to", &url, "--cluster", "--all", "--db", "0", "--batch", "16"]);
    let want = keys_of(&mut c, 0);
    assert_eq!(r["connections"], 3);
    assert_eq!(r["restored"], want.len() as u64);
    assert_eq!(r["functions"], serde_json::json!(["testlib"]));

    let mut union = BTreeSet::new();
    c.ok(&["SELECT", "0"]);
    for n in &nodes {
        let mut node = n.resp();
        let keys = keys_of(&mut node, 0);
        assert!(!keys.is_empty(), "every master got keys");
        for k in keys {
            assert_eq!(digest(&mut node, &k), digest(&mut c, &k), "DIGEST-VALUE of {}", String::from_utf8_lossy(&k));
            assert!(union.insert(k), "a key on two masters");
        }
        // Each master has the function library.
        let fcall: i64 = n.cmd(&["FCALL", "one", "0"]);
        assert_eq!(fcall, 1);
    }
    assert_eq!(union.into_iter().collect::<Vec<_>>(), want);
    // Hash-tagged keys live together; every key reads through a cluster-aware client.
    for key in ["{tag}:7", "n:42", "str:long", "hash:big", "stream:s"] {
        let out = Command::new("redis-cli").args(["-c", "-p", &nodes[0].port.to_string(), "TYPE", key]).output().unwrap();
        let ty = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(["string", "set", "hash", "stream"].contains(&ty.as_str()), "{key}: {ty}");
    }
    let out = Command::new("redis-cli").args(["-c", "-p", &nodes[2].port.to_string(), "GET", "n:42"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
}

#[test]
fn a_cluster_backup_restores_into_a_single_server_and_into_a_cluster() {
    let nodes = start_cluster();
    for i in 0..300 {
        set_following_moved(&nodes, &format!("ckey:{i}"), &format!("v{i}"));
    }
    for n in &nodes {
        let _: String = n.cmd(&["FUNCTION", "LOAD", "#!lua name=clib\nredis.register_function('two', function() return 2 end)"]);
    }
    let vault = Vault::init();
    vault.ok(&["backup", &nodes[0].url(), "--cluster"]);

    // Three shard snapshots into one server; their libraries once.
    let single = RedisServer::start(&[]);
    let r = vault.json(&["restore", "--group", "latest", "--to", &single.url(), "--all"]);
    assert_eq!(r["restored"], 300);
    assert_eq!(r["functions"], serde_json::json!(["clib"]));
    assert_eq!(single.total_keys(), 300);
    let got: String = single.cmd(&["GET", "ckey:123"]);
    assert_eq!(got, "v123");
    let two: i64 = single.cmd(&["FCALL", "two", "0"]);
    assert_eq!(two, 2);

    // And back into the cluster, emptied: each key on its master, the library on each.
    for n in &nodes {
        let _: String = n.cmd(&["FLUSHALL"]);
        let _: String = n.cmd(&["FUNCTION", "FLUSH"]);
    }
    let r = vault.json(&["restore", "--group", "latest", "--to", &nodes[2].url(), "--cluster", "--all"]);
    assert_eq!(r["restored"], 300);
    assert_eq!(nodes.iter().map(|n| n.total_keys()).sum::<u64>(), 300);
    for n in &nodes {
        let two: i64 = n.cmd(&["FCALL", "two", "0"]);
        assert_eq!(two, 2);
    }
    let out = Command::new("redis-cli").args(["-c", "-p", &nodes[0].port.to_string(), "GET", "ckey:77"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v77");
}

#[test]
fn keys_of_a_slot_being_migrated_follow_ask_to_the_importing_node() {
    let nodes = start_cluster();
    let src = RedisServer::start(&[]);
    for i in 0..5 {
        let () = src.cmd(&["SET", &format!("{{m}}{i}"), &format!("v{i}")]);
        let () = src.cmd(&["SET", &format!("other:{i}"), "x"]);
    }
    let vault = Vault::init();
    let snap = common::dataset::backup_now(&src, &vault);

    // Slot of {m} half-way from its owner A to node B: A answers ASK for keys it does not hold.
    let slot: i64 = nodes[0].cmd(&["CLUSTER", "KEYSLOT", "{m}"]);
    let owns = |n: &RedisServer| redis::cmd("EXISTS").arg("{m}").query::<i64>(&mut n.conn()).is_ok();
    let a = nodes.iter().position(owns).expect("an owner");
    let b = (a + 1) % nodes.len();
    let id = |n: &RedisServer| -> String { n.cmd(&["CLUSTER", "MYID"]) };
    let (a_id, b_id) = (id(&nodes[a]), id(&nodes[b]));
    let slot = slot.to_string();
    let _: String = nodes[a].cmd(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &b_id]);
    let _: String = nodes[b].cmd(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &a_id]);

    let r = vault.json(&["restore", &snap, "--to", &nodes[a].url(), "--cluster", "--all"]);
    assert_eq!(r["restored"], 10);
    let on = |n: &RedisServer| -> i64 { n.cmd(&["CLUSTER", "COUNTKEYSINSLOT", &slot]) };
    assert_eq!((on(&nodes[a]), on(&nodes[b])), (0, 5), "the keys went to the importing node");

    // Once the slot belongs to B, every key reads through a cluster-aware client.
    for n in &nodes {
        let _: String = n.cmd(&["CLUSTER", "SETSLOT", &slot, "NODE", &b_id]);
    }
    let out = Command::new("redis-cli").args(["-c", "-p", &nodes[a].port.to_string(), "GET", "{m}3"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v3");
}

/// The master (index in `nodes`) that serves `key`'s slot: the one that answers TYPE without MOVED.
fn owner(nodes: &[RedisServer], key: &str) -> usize {
    nodes.iter().position(|n| redis::cmd("TYPE").arg(key).query::<String>(&mut n.conn()).is_ok()).expect("an owner")
}

/// Moves up to `count` keys of `slot` from `from` to `to` with MIGRATE (as `redis-cli --cluster reshard` does).
fn migrate_keys(from: &RedisServer, to: &RedisServer, slot: &str, count: usize) -> usize {
    let keys: Vec<String> = from.cmd(&["CLUSTER", "GETKEYSINSLOT", slot, &count.to_string()]);
    if !keys.is_empty() {
        let port = to.port.to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        args.extend(keys.iter().map(String::as_str));
        let _: String = from.cmd(&args);
    }
    keys.len()
}

#[test]
fn a_slot_resharded_mid_restore_meets_moved_and_ask_and_every_key_arrives() {
    // The snapshot: plain keys, and keys under hash tags {sN} and {tN} (one slot per tag).
    let src = RedisServer::start(&[]);
    let mut c = src.resp();
    for i in 0..200 {
        c.ok(&["SET", &format!("k:{i}"), &format!("v{i}")]);
    }
    for tag in ["s0", "s1", "s2", "s3", "t0", "t1", "t2", "t3"] {
        for i in 0..15 {
            c.ok(&["SET", &format!("{{{tag}}}str:{i}"), &format!("{tag}-{i}")]);
            c.ok(&["HSET", &format!("{{{tag}}}h:{i}"), "a", "1", "b", &i.to_string()]);
            c.ok(&["RPUSH", &format!("{{{tag}}}l:{i}"), "x", "y", "z"]);
        }
    }
    let vault = Vault::init();
    let snap = common::dataset::backup_now(&src, &vault);
    let want = keys_of(&mut c, 0);

    // The cluster already holds keys of the {tN} slots (not in the snapshot), so a MIGRATE has work.
    let nodes = start_cluster();
    for tag in ["t0", "t1", "t2", "t3"] {
        for i in 0..10 {
            set_following_moved(&nodes, &format!("{{{tag}}}old:{i}"), "old");
        }
    }

    // Writes paused everywhere: the restore reads the slot map, checks, then waits on its first write.
    for n in &nodes {
        let _: String = n.cmd(&["CLIENT", "PAUSE", "20000", "WRITE"]);
    }
    let restore = vault
        .cmd(&["--json", "restore", &snap, "--to", &nodes[0].url(), "--cluster", "--all", "--batch", "8"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run rdbvault");
    let blocked = |n: &RedisServer| n.info_field("clients", "blocked_clients") != "0";
    let mut x = None;
    common::server::wait_until(std::time::Duration::from_secs(20), "the restore waiting on its first write", || {
        x = nodes.iter().position(blocked);
        x.is_some()
    });
    let x = x.expect("a node the restore waits on");
    for (i, n) in nodes.iter().enumerate() {
        if i != x {
            let _: String = n.cmd(&["CLIENT", "UNPAUSE"]);
        }
    }

    // Its slot map is now stale. A slot {sN} moves wholly to another master: the restore meets MOVED.
    let id = |n: &RedisServer| -> String { n.cmd(&["CLUSTER", "MYID"]) };
    let slot_of = |tag: &str| -> String { nodes[0].cmd::<i64>(&["CLUSTER", "KEYSLOT", tag]).to_string() };
    let s_tag = ["{s0}", "{s1}", "{s2}", "{s3}"].into_iter().find(|t| owner(&nodes, t) != x).expect("an {sN} slot off the paused node");
    let (s_from, s_slot) = (owner(&nodes, s_tag), slot_of(s_tag));
    let s_to = (s_from + 1) % 3;
    let _: String = nodes[s_to].cmd(&["CLUSTER", "SETSLOT", &s_slot, "IMPORTING", &id(&nodes[s_from])]);
    let _: String = nodes[s_from].cmd(&["CLUSTER", "SETSLOT", &s_slot, "MIGRATING", &id(&nodes[s_to])]);
    for n in &nodes {
        let _: String = n.cmd(&["CLUSTER", "SETSLOT", &s_slot, "NODE", &id(&nodes[s_to])]);
    }
    // A slot {tN} starts migrating between the two masters not paused, and half its keys move: the restore meets ASK for keys not on the old owner.
    let t_tag = ["{t0}", "{t1}", "{t2}", "{t3}"].into_iter().find(|t| owner(&nodes, t) != x).expect("a {tN} slot off the paused node");
    let (t_from, t_slot) = (owner(&nodes, t_tag), slot_of(t_tag));
    let t_to = (0..3).find(|&i| i != x && i != t_from).expect("a third master");
    let _: String = nodes[t_to].cmd(&["CLUSTER", "SETSLOT", &t_slot, "IMPORTING", &id(&nodes[t_from])]);
    let _: String = nodes[t_from].cmd(&["CLUSTER", "SETSLOT", &t_slot, "MIGRATING", &id(&nodes[t_to])]);
    assert_eq!(migrate_keys(&nodes[t_from], &nodes[t_to], &t_slot, 5), 5);
    let _: String = nodes[x].cmd(&["CLIENT", "UNPAUSE"]);

    let out = restore.wait_with_output().expect("rdbvault");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(r["restored"], want.len() as u64);
    let count = |n: usize, slot: &str| -> i64 { nodes[n].cmd(&["CLUSTER", "COUNTKEYSINSLOT", slot]) };
    // MOVED followed: the moved slot's 45 keys are on its new master.
    assert_eq!((count(s_from, &s_slot), count(s_to, &s_slot)), (0, 45));
    // ASK followed: the 45 restored keys went to the importing node; 5 old keys are still to migrate.
    assert_eq!((count(t_from, &t_slot), count(t_to, &t_slot)), (5, 45 + 5));

    // The migration finishes; then every key is on the master of its slot, with the source's value.
    assert_eq!(migrate_keys(&nodes[t_from], &nodes[t_to], &t_slot, 1000), 5);
    for n in &nodes {
        let _: String = n.cmd(&["CLUSTER", "SETSLOT", &t_slot, "NODE", &id(&nodes[t_to])]);
    }
    let mut union = BTreeSet::new();
    for n in &nodes {
        let mut node = n.resp();
        for k in keys_of(&mut node, 0) {
            let name = String::from_utf8_lossy(&k).into_owned();
            assert!(redis::cmd("TYPE").arg(&k).query::<String>(&mut n.conn()).is_ok(), "{name} is on a master that does not serve its slot");
            if !name.contains("old:") {
                assert_eq!(digest(&mut node, &k), digest(&mut c, &k), "DIGEST-VALUE of {name}");
            }
            assert!(union.insert(k), "{name} on two masters");
        }
    }
    let old: BTreeSet<Vec<u8>> = union.iter().filter(|k| k.windows(4).any(|w| w == b"old:")).cloned().collect();
    assert_eq!(old.len(), 40);
    assert_eq!(union.difference(&old).cloned().collect::<Vec<_>>(), want);
}
