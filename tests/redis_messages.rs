//! What a live server's failures are called: a missing password, a peer that never answers,
//! a `restore --to` that stops midway (and how it resumes).

use crate::common;

use std::net::TcpListener;

use common::server::RedisServer;
use common::vault::{text, Vault};

/// A repository holding a backup of a server filled with `keys` strings of `size` bytes.
fn backed(keys: u32, size: u32) -> (RedisServer, Vault) {
    let src = RedisServer::start(&[]);
    let () = src.cmd(&["DEBUG", "POPULATE", &keys.to_string(), "key", &size.to_string()]);
    let v = Vault::init();
    let rdb = src.save_copy(&v.dir.path().join("dump.rdb"));
    v.backup(&rdb, &[]);
    (src, v)
}

#[test]
fn a_server_that_needs_a_password_says_so() {
    let (_src, v) = backed(20, 10);
    let dst = RedisServer::start(&[]);
    let () = dst.cmd(&["CONFIG", "SET", "requirepass", "s3cret"]);
    let url = format!("redis://127.0.0.1:{}", dst.port);

    for args in [&["restore", "latest", "--to", url.as_str(), "--all"][..], &["backup", url.as_str()]] {
        let err = v.fails_text(args);
        assert!(err.contains(&format!("the server 127.0.0.1:{} requires a password (NOAUTH", dst.port)), "{args:?}: {err}");
        assert!(err.contains("REDISCLI_AUTH") && err.contains("--redis-password-file"), "{args:?}: {err}");
        assert!(!err.contains("wrong user name or password"), "{args:?}: {err}");
    }

    let err = v.fails_text(&["restore", "latest", "--to", &format!("redis://:nope@127.0.0.1:{}", dst.port), "--all"]);
    assert!(err.contains("wrong user name or password"), "{err}");

    let pw = v.dir.path().join("redis-pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let out = v.ok(&["restore", "latest", "--to", &url, "--all", "--redis-password-file", pw.to_str().unwrap()]);
    assert!(out.contains("restored 20 keys"), "{out}");
    let o = v.run_env(&["restore", "latest", "--to", &url, "--all", "--skip-existing"], &[("REDISCLI_AUTH", "s3cret")]);
    assert!(o.status.success() && text(&o).contains("skipped 20 keys that already exist"), "{}", text(&o));
}

#[test]
fn a_peer_that_never_answers_is_named() {
    let v = Vault::init();
    // Never accepted: the kernel completes the TCP handshake, nothing ever answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    for (url, during) in [
        (format!("redis://127.0.0.1:{port}"), "PING"),
        (format!("redis://u:pw@127.0.0.1:{port}"), "AUTH"),
        (format!("rediss://127.0.0.1:{port}"), "PING"),
    ] {
        let started = std::time::Instant::now();
        let args = ["backup", url.as_str(), "--read-timeout", "1", "--tls-insecure"];
        let err = v.fails_text(&args[..if url.starts_with("rediss") { 5 } else { 4 }]);
        let want = format!("connected to 127.0.0.1:{port} but the server did not answer {during} within 1s (is it a Redis server? TLS to a plain port?)");
        assert!(err.contains(&want), "{url}: {err}");
        assert!(!err.contains("connect: timed out") && !err.contains("pw"), "{url}: {err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{url}: {:?}", started.elapsed());
    }
    drop(silent);
}

#[test]
fn a_restore_stopped_by_oom_says_what_was_written_and_resumes_with_skip_existing() {
    let (src, v) = backed(3_000, 1_000);
    let dst = RedisServer::start(&[("maxmemory", "2mb"), ("maxmemory-policy", "noeviction")]);
    let url = dst.url();

    let err = v.fails_text(&["restore", "latest", "--to", &url, "--all", "--batch", "100"]);
    let written: u64 = err
        .split("stopped after writing ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count: {err}"));
    let on_target: u64 = dst.cmd(&["DBSIZE"]);
    assert!(written > 0 && written < 3_000, "{err}");
    assert_eq!(written, on_target, "the count is what the target holds: {err}");
    assert!(err.contains("OOM") && err.contains("--skip-existing") && err.contains("--replace") && err.contains("--dry-run"), "{err}");
    let last = err.split("the last key written was 0:").nth(1).and_then(|r| r.split(' ').next()).unwrap_or_else(|| panic!("{err}"));
    let exists: u64 = dst.cmd(&["EXISTS", last]);
    assert_eq!(exists, 1, "the key named last is on the target: {err}");

    // Without a flag the rerun refuses (the keys written exist); --skip-existing completes it.
    let refused = v.fails_text(&["restore", "latest", "--to", &url, "--all"]);
    assert!(refused.contains("already exist") && refused.contains("--replace"), "{refused}");
    let () = dst.cmd(&["CONFIG", "SET", "maxmemory", "0"]);
    let r = v.json(&["restore", "latest", "--to", &url, "--all", "--skip-existing"]);
    assert_eq!((r["restored"].as_u64(), r["skipped_existing"].as_u64()), (Some(3_000 - written), Some(written)), "{r}");
    assert_eq!(dst.digest(), src.digest());
}
