//! A long-running follower: merged segments, scheduled new bases, orphan segments.

use crate::common;

use common::follow::{all_snapshots, digest_of_dir, follow, follow_with, instant, online, stop, writes};
use common::server::RedisServer;
use common::vault::Vault;

/// Files of one kind in the repository (`index`, `snapshots`).
fn files(v: &Vault, kind: &str) -> usize {
    let dir = v.repo.join(kind);
    std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

#[test]
fn committed_segments_are_merged_and_restores_stay_exact() {
    let srv = RedisServer::start(&[]);
    let v = Vault::init();
    let mut c = srv.resp();
    let f = follow_with(&v, &[&srv.url(), "--compact-every", "3"]);
    online(&mut c);
    let mut instants = Vec::new();
    for round in 1..=4 {
        writes(&mut c, round);
        instants.push(instant(&mut c));
    }
    let (ok, stdout, stderr) = stop(f);
    assert!(ok, "{stderr}");
    // Every 3 commits became one segment with one index file (the last merge, when
    // stopping, takes what is left); the base has its own index file.
    let merges = stdout.matches("merged ").count();
    assert!(stdout.contains("merged 3 log segments into"), "{stdout}");
    let segments = all_snapshots(&v).iter().filter(|s| s.1.is_some()).count();
    assert!(segments == merges || segments == merges + 1, "{stdout}{:?}", all_snapshots(&v));
    assert!(files(&v, "index") <= segments + 1, "{stdout}");
    let tl = v.json(&["timeline"]);
    assert_eq!(tl["servers"][0]["gaps"].as_array().map(Vec::len), Some(0), "{tl}");
    for (at, digest) in &instants {
        assert_eq!(&digest_of_dir(&v, at), digest, "restore --at {at}");
    }
    let checked = v.ok(&["check", "--read-data"]);
    assert!(checked.contains("0 errors, 0 warnings"), "{checked}");
}

#[test]
fn base_every_starts_new_chains_that_forget_can_drop() {
    let srv = RedisServer::start(&[]);
    let v = Vault::init();
    let mut c = srv.resp();
    let f = follow_with(&v, &[&srv.url(), "--base-every", "2s"]);
    online(&mut c);
    writes(&mut c, 1);
    std::thread::sleep(std::time::Duration::from_secs(3));
    online(&mut c);
    writes(&mut c, 2);
    let (at, digest) = instant(&mut c);
    let (ok, stdout, stderr) = stop(f);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("new base (--base-every)"), "{stdout}");
    assert!(!stderr.contains("full resync"), "a scheduled base is no warning: {stderr}");
    let chains = |v: &Vault| v.json(&["timeline"])["servers"][0]["chains"].as_array().map_or(0, Vec::len);
    let before = chains(&v);
    assert!(before >= 2, "{}", v.ok(&["timeline"]));
    assert_eq!(digest_of_dir(&v, &at), digest);
    // Old chains go with their bases: keep the newest base only.
    v.ok(&["forget", "--keep-last", "1", "--prune"]);
    assert_eq!(chains(&v), 1);
    v.check_passes(&["--read-data"]);
}

#[test]
fn orphan_segments_are_reported_by_check_and_dropped_by_prune() {
    let srv = RedisServer::start(&[]);
    let v = Vault::init();
    let mut c = srv.resp();
    let f = follow(&v, &srv);
    online(&mut c);
    writes(&mut c, 1);
    instant(&mut c);
    let (ok, _, stderr) = stop(f);
    assert!(ok, "{stderr}");
    let all = all_snapshots(&v);
    let base = all.iter().find(|s| s.1.is_none()).expect("a base").0.clone();
    let segment = all.iter().find(|s| s.1.is_some()).expect("a segment").0.clone();
    // The base is lost (deleted by hand): its segments can never be restored.
    std::fs::remove_file(v.repo.join("snapshots").join(&base)).expect("delete base");
    let checked = v.ok(&["check"]);
    assert!(checked.contains(&format!("log segment {} of 127.0.0.1:{} is in no chain: its base snapshot {} is gone", &segment[..8], srv.port, &base[..8])), "{checked}");
    assert!(checked.contains("`rdbvault prune` deletes it"), "{checked}");
    let pruned = v.ok(&["prune"]);
    assert!(pruned.contains("deleted 1 orphan log segment no chain uses"), "{pruned}");
    assert_eq!(files(&v, "snapshots"), 0);
    let checked = v.ok(&["check", "--read-data"]);
    assert!(checked.contains("0 errors, 0 warnings"), "{checked}");
}
