//! `rdbvault copy`: snapshots between repositories on any backends.

use crate::common;

use std::path::PathBuf;

use common::net::{Moto, Sshd};
use common::server::RedisServer;
use common::vault::Vault;

/// Runs `copy` from `from` to `to` (with both repositories' environments) and parses its --json.
fn copy(from: &Vault, to: &Vault, extra: &[&str]) -> serde_json::Value {
    let pw = from.dir.path().join("to-password");
    std::fs::write(&pw, format!("{}\n", to.password)).unwrap();
    let mut args = vec!["--json", "copy", "--to-repo", to.repo.to_str().unwrap(), "--to-password-file", pw.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = from.cmd(&args).envs(to.env.iter().map(|(k, v)| (k, v))).output().unwrap();
    assert!(out.status.success(), "copy failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("copy --json")
}

/// Two snapshots of a real Redis RDB (the second after a change); the RDB files.
fn two_backups(v: &Vault) -> (Vec<(String, Vec<u8>)>, PathBuf) {
    let redis = RedisServer::start(&[]);
    common::data::fill_sample(&redis, 1000);
    let input = v.dir.path().join("dump.rdb");
    let one = std::fs::read(redis.save_copy(&input)).unwrap();
    let (s1, _) = v.backup(&input, &[]);
    redis.cli(&["SET", "str:0:7", "changed"]);
    let two = std::fs::read(redis.save_copy(&input)).unwrap();
    let (s2, _) = v.backup(&input, &[]);
    (vec![(s1, one), (s2, two)], input)
}

/// Each snapshot's copy in `v` (found by its original id) restores byte-exact; check passes.
fn holds_copies(v: &Vault, originals: &[(String, Vec<u8>)], copies: &serde_json::Value) {
    let listed = v.json(&["snapshots"]);
    assert_eq!(listed.as_array().unwrap().len(), originals.len(), "{listed:#}");
    for (original, bytes) in originals {
        let copy = copies["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["source"] == original.as_str())
            .map(|c| c["copy"].as_str().unwrap().to_string());
        let id = copy.unwrap_or_else(|| panic!("{original} not in {copies:#}"));
        assert!(v.try_restore(&id).unwrap() == *bytes, "{id} restores byte-exact in {}", v.repo.display());
    }
    v.check_passes(&["--read-data"]);
}

#[test]
fn copy_local_to_s3_to_sftp_and_back() {
    let local = Vault::init();
    let (snaps, _) = two_backups(&local);
    let moto = Moto::start(false);
    moto.create_bucket("backups");
    let s3 = Vault::init_remote(&format!("s3:http://127.0.0.1:{}/backups/copy", moto.port), Moto::env(), None);
    let sshd = Sshd::start();
    let sftp_url = format!("sftp://root@127.0.0.1:{}{}", sshd.port, sshd.repo_dir("repo").display());
    let sftp = Vault::init_remote(&sftp_url, sshd.client_env(sshd.port), None);

    let to_s3 = copy(&local, &s3, &[]);
    assert_eq!((to_s3["copied"].as_u64(), to_s3["skipped"].as_u64()), (Some(2), Some(0)), "{to_s3:#}");
    holds_copies(&s3, &snaps, &to_s3);
    let inspected = s3.ok(&["inspect", "latest"]);
    assert!(inspected.contains("keys: 2800"), "the copy keeps the facts: {inspected}");

    // S3 -> SFTP names the S3 copies as sources: map them back to the originals.
    let to_sftp = copy(&s3, &sftp, &[]);
    assert_eq!(to_sftp["copied"].as_u64(), Some(2), "{to_sftp:#}");
    let via_s3: Vec<(String, Vec<u8>)> = snaps
        .iter()
        .map(|(orig, bytes)| {
            let c = to_s3["snapshots"].as_array().unwrap().iter().find(|c| c["source"] == orig.as_str()).unwrap();
            (c["copy"].as_str().unwrap().to_string(), bytes.clone())
        })
        .collect();
    holds_copies(&sftp, &via_s3, &to_sftp);

    // Back to where they came from: already there, so nothing is stored.
    let back = copy(&sftp, &local, &[]);
    assert_eq!((back["copied"].as_u64(), back["skipped"].as_u64()), (Some(0), Some(2)), "{back:#}");
    assert_eq!(local.snapshots().len(), 2);
    // And to a fresh local repository: restores byte-exact there too.
    let fresh = Vault::init();
    let to_fresh = copy(&sftp, &fresh, &[]);
    assert_eq!(to_fresh["copied"].as_u64(), Some(2));
    for (id, bytes) in &snaps {
        let c = to_s3["snapshots"].as_array().unwrap().iter().find(|c| c["source"] == id.as_str()).unwrap();
        let on_sftp = to_sftp["snapshots"].as_array().unwrap().iter().find(|x| x["source"] == c["copy"]).unwrap();
        let on_fresh = to_fresh["snapshots"].as_array().unwrap().iter().find(|x| x["source"] == on_sftp["copy"]).unwrap();
        assert!(fresh.try_restore(on_fresh["copy"].as_str().unwrap()).unwrap() == *bytes);
    }
    fresh.check_passes(&["--read-data"]);
    // A second copy finds everything there.
    let again = copy(&local, &s3, &[]);
    assert_eq!((again["copied"].as_u64(), again["skipped"].as_u64()), (Some(0), Some(2)), "{again:#}");
}

#[test]
fn different_repositories_rechunk_with_their_own_keys() {
    let src = Vault::init();
    let (snaps, input) = two_backups(&src);
    let dest = Vault::init();
    let first = copy(&src, &dest, &[&snaps[0].0]);
    assert_eq!(first["copied"].as_u64(), Some(1), "{first:#}");
    let second = copy(&src, &dest, &[]);
    assert_eq!((second["copied"].as_u64(), second["skipped"].as_u64()), (Some(1), Some(1)), "{second:#}");
    let sum = |v: &serde_json::Value, field: &str| v["snapshots"].as_array().unwrap().iter().map(|c| c["summary"][field].as_u64().unwrap()).sum::<u64>();
    // One changed key: new data chunks (3 of 83 mostly; up to ~16 where the changed length
    // moves the record cuts after it for a while), the chunk lists and the key-index page
    // around it (on 1000 keys the index is a single page, rewritten whole: about 1/3 of the
    // first copy's bytes, so bytes alone cannot tell a rechunked copy from a full one here).
    let stored_again = |field: &str| (sum(&first, field), sum(&second, field));
    let (first_chunks, second_chunks) = stored_again("new_chunks");
    assert!(second_chunks * 4 < first_chunks, "the second snapshot's copy stores only the chunks that changed: {first:#} {second:#}");
    let (first_bytes, second_bytes) = stored_again("bytes_added");
    assert!(second_bytes * 3 < first_bytes * 2, "the second snapshot's copy stores only what changed: {first:#} {second:#}");
    holds_copies(&dest, &snaps, &second_and_first(&first, &second));
    // The copies were cut and hashed with the destination's keys: a backup of the same
    // RDB in the destination finds every chunk already there.
    let (_, summary) = dest.backup(&input, &[]);
    assert_eq!(summary["new_chunks"].as_u64(), Some(0), "{summary}");
    let err = String::from_utf8_lossy(
        &src.cmd(&["copy", "--to-repo", dest.repo.to_str().unwrap()]).env("RDBVAULT_TO_PASSWORD", "wrong").output().unwrap().stderr,
    )
    .into_owned();
    assert!(err.contains("wrong password"), "{err}");
}

#[test]
fn a_clone_with_the_same_keys_gets_only_what_it_lacks() {
    let src = Vault::init();
    let redis = RedisServer::start(&[]);
    common::data::fill_sample(&redis, 1000);
    let input = src.dir.path().join("dump.rdb");
    let one = std::fs::read(redis.save_copy(&input)).unwrap();
    let (s1, _) = src.backup(&input, &[]);
    // A byte copy of the repository: same config, so the same id key and chunker.
    let clone = src.copy();
    redis.cli(&["SET", "str:0:7", "changed"]);
    let two = std::fs::read(redis.save_copy(&input)).unwrap();
    let (s2, backed_up) = src.backup(&input, &[]);
    let copied = copy(&src, &clone, &[]);
    assert_eq!((copied["copied"].as_u64(), copied["skipped"].as_u64()), (Some(1), Some(1)), "{copied:#}");
    let c = copied["snapshots"].as_array().unwrap().iter().find(|c| c["source"] == s2.as_str()).unwrap();
    assert_eq!(c["summary"]["new_chunks"], backed_up["new_chunks"], "the same chunks are new as in the source: {copied:#}");
    holds_copies(&clone, &[(s1, one), (s2, two)], &copied);
}

/// Both copy reports' snapshots in one list.
fn second_and_first(first: &serde_json::Value, second: &serde_json::Value) -> serde_json::Value {
    let mut all: Vec<serde_json::Value> = second["snapshots"].as_array().unwrap().iter().filter(|c| c["skipped"] == false).cloned().collect();
    all.extend(first["snapshots"].as_array().unwrap().iter().cloned());
    serde_json::json!({ "snapshots": all })
}

#[test]
fn copy_takes_the_snapshot_filters() {
    let src = Vault::init();
    let input = src.dir.path().join("a.bin");
    let mut ids = Vec::new();
    for (seed, tag) in [(1, "daily"), (2, "weekly"), (3, "daily")] {
        std::fs::write(&input, common::vault::random_data(seed, 20_000)).unwrap();
        ids.push(src.backup(&input, &["--raw", "--tag", tag]).0);
    }
    let sources = |v: &serde_json::Value| -> Vec<String> {
        v["snapshots"].as_array().unwrap().iter().map(|c| c["source"].as_str().unwrap().to_string()).collect()
    };
    let dest = Vault::init();
    let weekly = copy(&src, &dest, &["--tag", "weekly"]);
    assert_eq!(sources(&weekly), [ids[1].clone()], "{weekly:#}");
    let newest_daily = copy(&src, &dest, &["--tag", "daily", "--latest", "1"]);
    assert_eq!(sources(&newest_daily), [ids[2].clone()], "{newest_daily:#}");
    assert_eq!(dest.snapshots().len(), 2);
    let run = |args: &[&str]| {
        let mut all = vec!["copy", "--to-repo", dest.repo.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = src.cmd(&all).env("RDBVAULT_TO_PASSWORD", &dest.password).output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&["--host", "elsewhere"]);
    assert!(err.contains("no snapshot") && err.contains("--host elsewhere"), "{err}");
    let err = run(&[&ids[0], "--tag", "weekly"]);
    assert!(err.contains("does not match --tag weekly"), "a snapshot named by id must match the filters too: {err}");
    assert_eq!(dest.snapshots().len(), 2, "nothing was copied by the failed runs");
}
