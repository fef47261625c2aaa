//! Incremental backups: a slightly changed RDB stores only what changed.

use crate::common;

use common::data::{fill, key_commands, Rng};
use common::server::RedisServer;
use common::vault::Vault;

#[test]
fn one_percent_changed_keys_add_a_small_fraction() {
    let redis = RedisServer::start(&[]);
    let n = 30_000u64;
    fill(&redis, n, 0, 11);
    let v = Vault::init();
    let first_rdb = redis.save_copy(&v.dir.path().join("v1.rdb"));
    let (_, first) = v.backup(&first_rdb, &[]);

    // Rewrite 1% of the keys, scattered across the keyspace.
    let mut rng = Rng(99);
    let mut cmds = Vec::new();
    for _ in 0..n / 100 {
        let i = rng.below(n);
        cmds.extend(key_commands(i, 1, &mut rng));
    }
    redis.pipe(&cmds);
    let second_rdb = redis.save_copy(&v.dir.path().join("v2.rdb"));
    let (id2, second) = v.backup(&second_rdb, &[]);

    let added1 = first["bytes_added"].as_u64().unwrap();
    let added2 = second["bytes_added"].as_u64().unwrap();
    let ratio = added2 as f64 / added1 as f64;
    eprintln!("first backup added {added1} B, second {added2} B ({:.1}%)", ratio * 100.0);
    assert!(added2 > 0, "changed keys must store something");
    assert!(ratio < 0.3, "second backup added {:.1}% of the first", ratio * 100.0);
    assert!(second["new_chunks"].as_u64().unwrap() < second["chunks"].as_u64().unwrap() / 2);

    // Both versions still restore exactly.
    let back2 = v.restore(&id2, &v.dir.path().join("r2.rdb"));
    assert!(back2 == std::fs::read(&second_rdb).unwrap());
    let back1 = v.restore(first_id(&v).as_str(), &v.dir.path().join("r1.rdb"));
    assert!(back1 == std::fs::read(&first_rdb).unwrap());
}

fn first_id(v: &Vault) -> String {
    v.json(&["snapshots"])[0]["id"].as_str().unwrap().to_string()
}
