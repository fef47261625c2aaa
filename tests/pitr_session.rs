//! A long-running follower: merged segments, scheduled new bases, orphan segments.

use crate::common;

use common::data::Rng;
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
    // Every 3 commits were merged into the segment of the merges before (the last merge,
    // when stopping, takes what is left): one segment; the base has its own index file.
    assert!(stdout.contains("merged 3 log segments into"), "{stdout}");
    assert!(stdout.contains("merged 4 log segments into"), "the last merge is merged again: {stdout}");
    let segments = all_snapshots(&v).iter().filter(|s| s.1.is_some()).count();
    assert_eq!(segments, 1, "{stdout}{:?}", all_snapshots(&v));
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

/// Pack files in the repository (`data/xx/…`).
fn packs(v: &Vault) -> usize {
    let dir = v.repo.join("data");
    std::fs::read_dir(&dir).map(|d| d.flatten().map(|sub| std::fs::read_dir(sub.path()).map_or(0, |f| f.count())).sum()).unwrap_or(0)
}

#[test]
fn many_commits_leave_a_bounded_number_of_objects_and_every_instant_restores() {
    let srv = RedisServer::start(&[]);
    let v = Vault::init();
    let mut c = srv.resp();
    c.ok(&["SET", "in:base", "1"]);
    let f = follow_with(&v, &[&srv.url(), "--compact-every", "4"]);
    online(&mut c);
    let mut instants = Vec::new();
    for i in 0..24 {
        c.ok(&["SET", &format!("k:{i}"), &format!("value {i} {}", "x".repeat(i * 100))]);
        c.ok(&["INCR", "counter"]);
        c.ok(&["RPUSH", "list", &i.to_string()]);
        // The follower acknowledges only what it committed: every round is its own commit.
        assert_eq!(c.ok(&["WAIT", "1", "10000"]).int(), 1);
        if i % 5 == 0 {
            let at = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("time");
            instants.push((at, c.ok(&["DEBUG", "DIGEST"]).text()));
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let (ok, stdout, stderr) = stop(f);
    assert!(ok, "{stderr}");
    assert!(stdout.matches("merged ").count() >= 5, "{stdout}");
    // 24+ commits of a pack each: the base's pack, one merged pack, and the commits since the
    // last merge (merged at the stop too); one segment; the base's index file and one more.
    let segments = all_snapshots(&v).iter().filter(|s| s.1.is_some()).count();
    assert_eq!(segments, 1, "{stdout}");
    assert!(packs(&v) <= 3, "{} packs: {stdout}", packs(&v));
    assert!(files(&v, "index") <= 2, "{} index files", files(&v, "index"));
    for (at, digest) in &instants {
        assert_eq!(&digest_of_dir(&v, at), digest, "restore --at {at}");
    }
    v.check_passes(&["--read-data"]);
}

/// Slice size given to the follower: blobs an index file written by a compaction names
/// besides its last two packs (the pack being filled is written early when a slice fills).
const SLICE: usize = 50;

#[test]
fn compaction_writes_index_files_of_bounded_size_and_every_instant_restores() {
    let srv = RedisServer::start(&[]);
    let mut v = Vault::init_small_packs();
    v.env.push(("RDBVAULT_COMPACT_SLICE_BLOBS".into(), SLICE.to_string()));
    let mut c = srv.resp();
    let f = follow_with(&v, &[&srv.url(), "--compact-every", "4"]);
    online(&mut c);
    let mut rng = Rng(0x5eed_f011);
    let mut instants = Vec::new();
    // About 60 KiB of log per commit (~60 chunks of 1 KiB, two 32 KiB packs' worth): a
    // window of 4 commits names ~240 blobs, several slices.
    for round in 0..12 {
        for i in 0..40 {
            c.ok(&["SET", &format!("k:{round}:{i}"), &rng.word(1500)]);
        }
        assert_eq!(c.ok(&["WAIT", "1", "10000"]).int(), 1);
        if round % 3 == 2 {
            let at = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("time");
            instants.push((at, c.ok(&["DEBUG", "DIGEST"]).text()));
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
    }
    let (ok, stdout, stderr) = stop(f);
    assert!(ok, "{stderr}");
    assert!(stdout.matches("merged ").count() >= 3, "{stdout}");
    let names: Vec<String> = std::fs::read_dir(v.repo.join("index")).expect("index dir").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    let mut merged = 0;
    for name in &names {
        let file = v.json(&["cat", "index", name]);
        let mut per_pack: Vec<usize> = file["packs"].as_array().expect("packs").iter().map(|p| p["blobs"].as_array().map_or(0, Vec::len)).collect();
        per_pack.sort_unstable();
        let besides_last_two: usize = per_pack.iter().rev().skip(2).sum();
        assert!(besides_last_two < SLICE, "index file {name} names {per_pack:?} blobs per pack: more than a slice of {SLICE} besides two packs");
        merged += usize::from(!file["supersedes"].as_array().expect("supersedes").is_empty());
    }
    assert!(merged > 3, "{merged} of {} index files supersede commits' index files: the compactions wrote one each", names.len());
    for (at, digest) in &instants {
        assert_eq!(&digest_of_dir(&v, at), digest, "restore --at {at}");
    }
    v.check_passes(&["--read-data"]);
}
