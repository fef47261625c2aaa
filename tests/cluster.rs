//! A three-master cluster of real redis-servers: discover masters, stream each RDB.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::rdb::assert_valid_rdb;
use common::server::{set_following_moved, start_cluster, RedisServer};
use rdbvault::redis::source::{self, cluster, ConnectOptions, RedisUrl};

#[test]
fn cluster_masters_are_discovered_and_streamed() {
    let nodes = start_cluster();
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
