//! A three-master cluster of real redis-servers: discover masters, stream each RDB.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::rdb::assert_valid_rdb;
use common::server::{wait_until, RedisServer};
use rdbvault::source::{self, cluster, ConnectOptions, RedisUrl};

fn set_following_moved(nodes: &[RedisServer], key: &str, value: &str) {
    let mut port = nodes[0].port;
    for _ in 0..3 {
        let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap().get_connection().unwrap();
        match redis::cmd("SET").arg(key).arg(value).query::<()>(&mut con) {
            Ok(()) => return,
            Err(e) => match e.redirect_node() {
                Some((addr, _)) => port = addr.rsplit(':').next().unwrap().parse().unwrap(),
                None => panic!("SET {key}: {e}"),
            },
        }
    }
    panic!("too many redirects for {key}");
}

#[test]
fn cluster_masters_are_discovered_and_streamed() {
    let nodes: Vec<RedisServer> = (0..3)
        .map(|_| {
            RedisServer::start(&[
                ("cluster-enabled", "yes"),
                ("cluster-config-file", "nodes.conf"),
                ("repl-diskless-sync", "yes"),
                ("repl-diskless-sync-delay", "0"),
            ])
        })
        .collect();
    let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
    let out = Command::new("redis-cli")
        .arg("--cluster").arg("create").args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli");
    assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
    for n in &nodes {
        wait_until(Duration::from_secs(20), "cluster_state:ok", || {
            let info: String = n.cmd(&["CLUSTER", "INFO"]);
            info.contains("cluster_state:ok")
        });
    }
    let written: BTreeSet<String> = (0..300).map(|i| format!("ckey:{i}")).collect();
    for k in &written {
        set_following_moved(&nodes, k, "v");
    }

    let url = RedisUrl::parse(&nodes[1].url()).unwrap();
    let opts = ConnectOptions { read_timeout: Duration::from_secs(10), ..Default::default() };
    let masters = cluster::discover_masters(&url, &opts).unwrap();
    assert_eq!(masters.len(), 3);
    let ports: BTreeSet<u16> = masters.iter().map(|m| m.port).collect();
    assert_eq!(ports, nodes.iter().map(|n| n.port).collect());
    cluster::check_coverage(&url.addr(), &masters).unwrap();

    let sources = source::open_cluster(&url, &opts).unwrap();
    assert_eq!(sources.len(), 3);
    let mut union = BTreeSet::new();
    let mut names = BTreeSet::new();
    for mut s in sources {
        let shard = s.info.cluster.clone().expect("shard info");
        assert_eq!(s.streams.len(), 1);
        let (name, reader) = &mut s.streams[0];
        assert_eq!(name, &format!("{}.rdb", shard.group_id));
        names.insert(name.clone());
        let mut rdb = Vec::new();
        reader.read_to_end(&mut rdb).unwrap();
        assert_valid_rdb(&rdb);
        // Load into a fresh standalone server and list its keys.
        let copy = RedisServer::load_rdb(&rdb);
        let keys: Vec<String> = copy.cmd(&["KEYS", "*"]);
        assert_eq!(keys.len() as u64, s.info.keys_per_db.get(&0).copied().unwrap_or(0));
        for k in keys {
            assert!(union.insert(k), "key held by two masters");
        }
    }
    assert_eq!(names.len(), 3);
    assert_eq!(union, written);
}
