//! Point-in-time recovery: `follow` a live server, then `restore --at` instants it passed.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::follow::{all_snapshots, digest_of_dir, follow, instant, online, stop, writes};
use common::server::{wait_until, RedisServer};
use common::vault::Vault;

#[test]
fn restores_each_instant_through_kills_and_reconnects() {
    let srv = RedisServer::start(&[]);
    let v = Vault::init();
    let mut c = srv.resp();
    c.ok(&["SET", "before", "follow"]);
    let f = follow(&v, &srv);
    // Instants count from when the log starts: the follower is an online replica.
    online(&mut c);
    let mut instants = Vec::new();
    writes(&mut c, 1);
    instants.push(instant(&mut c));
    writes(&mut c, 2);
    instants.push(instant(&mut c));

    // SIGKILL mid-stream: the restarted follower resumes without a gap.
    let mut f = f;
    writes(&mut c, 3);
    f.kill().expect("kill follower");
    let _ = f.wait();
    writes(&mut c, 4);
    let f = follow(&v, &srv);
    instants.push(instant(&mut c));

    // The master drops the replica: the follower reconnects and resumes.
    c.ok(&["CLIENT", "KILL", "TYPE", "replica"]);
    writes(&mut c, 5);
    instants.push(instant(&mut c));

    let (ok, stdout, stderr) = stop(f);
    assert!(ok, "follow failed: {stderr}");
    assert!(stdout.contains("resumed") && stdout.contains("no gap"), "{stdout}");
    assert!(stderr.contains("reconnecting"), "{stderr}");

    let tl = v.json(&["timeline"]);
    let server = &tl["servers"][0];
    assert_eq!(server["chains"].as_array().map(Vec::len), Some(1), "{tl}");
    assert_eq!(server["gaps"].as_array().map(Vec::len), Some(0), "{tl}");

    for (at, digest) in &instants {
        assert_eq!(&digest_of_dir(&v, at), digest, "restore --at {at}");
    }

    // --to a live server, and an RDB replayed through redis-server.
    let (at, digest) = &instants[1];
    let target = RedisServer::start(&[]);
    v.ok(&["restore", "--at", at, "--to", &target.url()]);
    assert_eq!(&target.digest(), digest);
    let (at, digest) = &instants[2];
    let rdb = v.dir.path().join("at.rdb");
    let out = v.ok(&["restore", "--at", at, "--target", rdb.to_str().expect("path")]);
    assert!(out.contains("redis-server"), "{out}");
    let loaded = RedisServer::load_rdb(&std::fs::read(&rdb).expect("read rdb"));
    assert_eq!(&loaded.digest(), digest);

    // Before the log starts: one clear line naming what is covered.
    let err = v.fails(&["restore", "--at", "2000-01-01T00:00:00Z", "--target", v.dir.path().join("old").to_str().expect("path")]);
    assert!(err.contains("is not covered") && err.contains("covered:"), "{err}");
}

#[test]
fn wrong_password_is_one_clear_line() {
    let srv = RedisServer::start(&[]);
    let () = srv.cmd(&["CONFIG", "SET", "requirepass", "secret"]);
    let v = Vault::init();
    let url = format!("redis://:nope@127.0.0.1:{}", srv.port);
    let out = v.run(&["follow", &url]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("authentication failed") && err.contains(&format!("127.0.0.1:{}", srv.port)), "{err}");
    wait_until(Duration::from_secs(1), "nothing committed", || v.json(&["snapshots"]).as_array().is_some_and(Vec::is_empty));
}

/// Two chains: a follow, then more writes than the backlog holds while nobody follows (so
/// PSYNC cannot continue), then a second follow that must take a new base. Returns the
/// second follow's output and an instant with its digest in each chain.
fn two_chains(srv: &RedisServer, v: &Vault) -> (String, String, (String, String), (String, String)) {
    let mut c = srv.resp();
    let f = follow(v, srv);
    online(&mut c);
    writes(&mut c, 1);
    let first = instant(&mut c);
    let (ok, _, stderr) = stop(f);
    assert!(ok, "{stderr}");
    writes(&mut c, 2);
    let f = follow(v, srv);
    online(&mut c);
    writes(&mut c, 3);
    let second = instant(&mut c);
    let (ok, stdout, stderr) = stop(f);
    assert!(ok, "{stderr}");
    (stdout, stderr, first, second)
}

#[test]
fn backlog_overrun_takes_a_new_base_and_shows_the_gap() {
    let srv = RedisServer::start(&[("repl-backlog-size", "16384")]);
    let v = Vault::init();
    let (stdout, stderr, (first, first_digest), (second, digest)) = two_chains(&srv, &v);
    assert!(stderr.contains("full resync") && stdout.contains("base snapshot"), "{stdout}{stderr}");
    let tl = v.json(&["timeline"]);
    let server = &tl["servers"][0];
    assert_eq!(server["chains"].as_array().map(Vec::len), Some(2), "{tl}");
    assert_eq!(server["gaps"].as_array().map(Vec::len), Some(1), "{tl}");
    let text = v.ok(&["timeline"]);
    assert!(text.contains("gap: no log from"), "{text}");
    assert_eq!(digest_of_dir(&v, &second), digest);
    // The first chain still restores its own span.
    assert_eq!(digest_of_dir(&v, &first), first_digest);
}

#[test]
fn segments_stay_out_of_listings_and_go_with_their_base() {
    // Two chains: the backlog overrun makes the second follow take a new base.
    let srv = RedisServer::start(&[("repl-backlog-size", "16384")]);
    let v = Vault::init();
    let (_, _, _, (at, digest)) = two_chains(&srv, &v);

    let all = all_snapshots(&v);
    let bases: Vec<&String> = all.iter().filter(|s| s.1.is_none()).map(|s| &s.0).collect();
    assert_eq!(bases.len(), 2, "{all:?}");
    let segments_of = |base: &String| all.iter().filter(|s| s.1.as_ref() == Some(base)).count();
    let (old, new) = (segments_of(bases[0]), segments_of(bases[1]));
    assert!(old > 0 && new > 0, "{all:?}");
    let plural = |n: usize| if n == 1 { "1 log segment".to_string() } else { format!("{n} log segments") };

    // `snapshots` hides segments behind one line; --all / --segments show them.
    let text = v.ok(&["snapshots"]);
    assert!(text.contains(&format!("{} of followed servers hidden; see `rdbvault timeline`", plural(old + new))), "{text}");
    assert!(!text.contains("redis-log:"), "{text}");
    assert!(v.ok(&["snapshots", "--segments"]).contains("redis-log:"));
    assert_eq!(v.json(&["snapshots"]).as_array().map(Vec::len), Some(2));

    // `latest` is the newest base, never a segment; a segment is not restored by id.
    assert_eq!(v.json(&["snapshots", "latest"])[0]["id"].as_str(), Some(bases[1].as_str()));
    let segment = &all.iter().find(|s| s.1.is_some()).expect("a segment").0;
    let err = v.fails(&["restore", &segment[..8], "--target", v.dir.path().join("seg").to_str().expect("path")]);
    assert!(err.contains("is a log segment of a followed server") && err.contains("restore --at"), "{err}");

    // Forgetting a base by id that segments continue needs --yes.
    let err = v.fails(&["forget", bases[0]]);
    assert!(err.contains(&plural(old)) && err.contains("--yes"), "{err}");
    assert_eq!(all_snapshots(&v).len(), all.len());

    // A policy counts bases only; the forgotten base takes its segments, the kept chain stays whole.
    let out = v.ok(&["forget", "--keep-last", "1", "--prune"]);
    assert!(out.contains(&format!("remove {} of the removed bases", plural(old))), "{out}");
    let left = all_snapshots(&v);
    let kept: Vec<&(String, Option<String>)> = all.iter().filter(|s| s.0 == *bases[1] || s.1.as_ref() == Some(bases[1])).collect();
    assert_eq!(left.iter().collect::<Vec<_>>(), kept, "{out}");
    v.check_passes(&["--read-data"]);
    assert_eq!(digest_of_dir(&v, &at), digest);
}

#[test]
fn follow_takes_the_shared_connection_flags() {
    let srv = RedisServer::start(&[]);
    let () = srv.cmd(&["CONFIG", "SET", "requirepass", "secret"]);
    let v = Vault::init();
    let port = srv.port.to_string();
    let args = ["follow", "-h", "127.0.0.1", "-p", &port, "--commit-interval", "200ms", "--read-timeout", "30"];
    let f = v.cmd(&args).env("REDISCLI_AUTH", "secret").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn follow");
    let mut c = srv.resp();
    c.ok(&["AUTH", "secret"]);
    online(&mut c);
    let (ok, stdout, stderr) = stop(f);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&format!("full sync of 127.0.0.1:{port}")), "{stdout}");
    assert!(v.ok(&["follow", "--help"]).contains("--sentinel"));
}
