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
