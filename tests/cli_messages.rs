//! What the command line tells a person: options that do not apply are refused, a closed
//! stdout (`| head -1`) ends a command quietly, and messages name what happened.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::server::RedisServer;
use common::vault::Vault;

/// A hand-made RDB v10 in db 0: `n` string keys with 40-byte names, and `extra` keys
/// given as (name, expiry in ms since the epoch).
fn rdb_with(n: usize, extra: &[(&str, Option<u64>)]) -> Vec<u8> {
    let mut v = b"REDIS0010".to_vec();
    v.extend_from_slice(&[0xFE, 0x00]);
    let mut key = |name: &[u8], expire: Option<u64>| {
        if let Some(at) = expire {
            v.push(0xFC);
            v.extend_from_slice(&at.to_le_bytes());
        }
        v.extend_from_slice(&[0x00, name.len() as u8]);
        v.extend_from_slice(name);
        v.extend_from_slice(&[5, b'v', b'a', b'l', b'u', b'e']);
    };
    for i in 0..n {
        key(format!("user:session:{i:08}:abcdefghijklmnopqrs").as_bytes(), None);
    }
    for (name, at) in extra {
        key(name.as_bytes(), *at);
    }
    v.push(0xFF);
    v.extend_from_slice(&[0; 8]);
    v
}

fn backup_rdb(vault: &Vault, name: &str, rdb: &[u8]) -> String {
    let path = vault.dir.path().join(name);
    std::fs::write(&path, rdb).expect("write rdb");
    vault.backup(&path, &[]).0
}

#[test]
fn dry_run_without_to_is_refused_and_the_target_is_untouched() {
    let vault = Vault::init();
    let snap = backup_rdb(&vault, "dump.rdb", &rdb_with(3, &[]));
    let target = vault.dir.path().join("precious.rdb");
    std::fs::write(&target, "precious").expect("write");
    let t = target.to_str().expect("utf-8");
    let o = vault.run(&["restore", &snap, "--target", t, "--dry-run"]);
    assert_eq!(o.status.code(), Some(2), "clap's usage error");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("error: the argument '--target <TARGET>' cannot be used with '--dry-run'"), "{err}");
    assert_eq!(std::fs::read(&target).expect("read"), b"precious");
    // With --overwrite too, nothing is written.
    assert_eq!(vault.run(&["restore", &snap, "--target", t, "--dry-run", "--overwrite"]).status.code(), Some(2));
    assert_eq!(std::fs::read(&target).expect("read"), b"precious");
}

#[test]
fn options_that_only_apply_with_another_are_refused() {
    let vault = Vault::init();
    let snap = backup_rdb(&vault, "dump.rdb", &rdb_with(3, &[]));
    let out = vault.dir.path().join("out.rdb");
    let out = out.to_str().expect("utf-8");
    let cases: &[(&[&str], &str)] = &[
        (&["restore", &snap, "--target", out, "--replace"], "'--target <TARGET>' cannot be used with '--replace'"),
        (&["restore", &snap, "--target", out, "--batch", "5"], "'--target <TARGET>' cannot be used with '--batch <BATCH>'"),
        (&["restore", &snap, "--target", out, "--skip-existing"], "'--target <TARGET>' cannot be used with '--skip-existing'"),
        (&["restore", &snap, "--target", out, "--all"], "'--target <TARGET>' cannot be used with '--all'"),
        (&["restore", &snap, "--to", "redis://127.0.0.1:1", "--all", "--rdb-version", "9"], "'--to <URL>' cannot be used with '--rdb-version <N>'"),
        (&["restore", &snap, "--to", "redis://127.0.0.1:1", "--all", "--type", "hash"], "'--to <URL>' cannot be used with '--type <TYPE>'"),
        (&["restore", &snap, "--target", out, "--redis-password-file", "pw"], "cannot be used with '--redis-password-file <FILE>'"),
        (&["restore", &snap, "--to", "redis://127.0.0.1:1", "--all", "--threads", "2"], "'--to <URL>' cannot be used with '--threads <THREADS>'"),
        (&["restore", "--group", "latest", "--target", out, "--cluster"], "'--target <TARGET>' cannot be used with '--cluster'"),
        (&["restore", &snap, "--target", out, "--functions", "skip"], "'--target <TARGET>' cannot be used with '--functions <HOW>'"),
        (&["backup", "--stdin", "--tls-insecure"], "'--stdin' cannot be used with '--tls-insecure'"),
        (&["backup", "--aof", "dir", "--connect-timeout", "3"], "'--aof <DIR>' cannot be used with '--connect-timeout <SECS>'"),
        (&["backup", "x.rdb", "--stdin-name", "y"], "'[SOURCE]' cannot be used with '--stdin-name <STDIN_NAME>'"),
        (&["backup", "redis://127.0.0.1:1", "--rdb-path", "dump.rdb"], "required arguments were not provided:\n  --mode <MODE>"),
        (&["backup", "redis://127.0.0.1:1", "--bgsave-timeout", "5"], "required arguments were not provided:\n  --mode <MODE>"),
        (&["backup", "redis://127.0.0.1:1", "--cluster", "--mode", "bgsave", "--rdb-path", "d"], "'--cluster' cannot be used with '--rdb-path <PATH>'"),
        (&["inspect", &snap, "--summary", "--top", "3"], "'--summary' cannot be used with '--top <TOP>'"),
        (&["inspect", &snap, "--summary", "--keys", "a*"], "'--summary' cannot be used with '--keys <PATTERN>'"),
        (&["inspect", &snap, "--top", "3"], "required arguments were not provided:\n  --memory"),
        (&["forget", "--keep-last", "1", "--max-unused", "3%"], "required arguments were not provided:\n  --prune"),
        (&["forget", &snap, "--group-by", "host"], "'[SNAPSHOT_ID]...' cannot be used with '--group-by <GROUP_BY>'"),
    ];
    for (args, msg) in cases {
        let o = vault.run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: expected {msg:?} in {err}");
    }
    // --mode replication (explicit) with --rdb-path: refused before connecting.
    let err = vault.fails(&["backup", "redis://127.0.0.1:1", "--mode", "replication", "--rdb-path", "dump.rdb"]);
    assert_eq!(err.trim(), "error: --rdb-path only applies to --mode bgsave");
    assert!(!std::path::Path::new(out).exists(), "nothing was restored");
}

/// Runs `args` with stdout piped, reads `lines` lines, closes the pipe and waits.
fn close_stdout_after(vault: &Vault, args: &[&str], lines: usize) -> (Option<i32>, String) {
    let mut child = vault.cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    for _ in 0..lines {
        let mut line = Vec::new();
        assert!(stdout.read_until(b'\n', &mut line).expect("read") > 0, "{args:?} printed a line");
    }
    drop(stdout);
    let o = child.wait_with_output().expect("wait");
    (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn a_closed_stdout_ends_every_command_quietly_with_status_0() {
    let vault = Vault::init();
    let old = backup_rdb(&vault, "old.rdb", &rdb_with(10, &[]));
    // 5 000 keys: the key listings and the diff are far beyond a 64 KiB pipe buffer.
    let snap = backup_rdb(&vault, "dump.rdb", &rdb_with(5_000, &[]));
    for i in 0..3 {
        backup_rdb(&vault, &format!("more{i}.rdb"), &rdb_with(i, &[]));
    }
    let long: &[&[&str]] = &[
        &["--json", "inspect", &snap],
        &["inspect", &snap, "--keys", "*"],
        &["diff", &old, &snap],
        &["--json", "diff", &old, &snap],
        &["restore", &snap, "--target", "-"],
    ];
    // Short outputs: the pipe is closed before the command writes (it first derives the key).
    let short: &[&[&str]] = &[
        &["snapshots"],
        &["--json", "snapshots"],
        &["stats"],
        &["--json", "stats"],
        &["forget", "--dry-run", "--keep-last", "1"],
        &["--json", "forget", "--dry-run", "--keep-last", "1"],
        &["check"],
        &["key", "list"],
        &["--json", "key", "list"],
        &["inspect", &snap],
        &["inspect", &snap, "--memory"],
        &["inspect", &snap, "--memory", "--csv"],
    ];
    let runs = long.iter().map(|a| (a, 1)).chain(short.iter().map(|a| (a, 0)));
    for (args, lines) in runs {
        let (code, err) = close_stdout_after(&vault, args, lines);
        assert!(!err.contains("panicked") && !err.contains("Broken pipe") && !err.contains("error"), "{args:?}: {err}");
        assert_eq!(code, Some(0), "{args:?}: {err}");
    }
    assert_eq!(vault.snapshots().len(), 5, "forget --dry-run removed nothing");
}

#[test]
fn a_key_whose_ttl_passed_is_named_not_reported_as_unmatched() {
    let vault = Vault::init();
    let srv = RedisServer::start(&[]);
    let far = 4_102_444_800_000; // 2100-01-01
    let snap = backup_rdb(&vault, "ttl.rdb", &rdb_with(0, &[("old", Some(1000)), ("fresh", Some(far)), ("plain", None)]));
    let addr = srv.url().trim_start_matches("redis://").to_string();

    let out = vault.ok(&["restore", &snap, "--to", &srv.url(), "--keys", "old"]);
    assert_eq!(out, format!("1 key matched but its TTL had passed; nothing restored into {addr}\n"));
    let r = vault.json(&["restore", &snap, "--to", &srv.url(), "--keys", "old"]);
    assert_eq!((r["restored"].as_u64(), r["skipped_expired"].as_u64()), (Some(0), Some(1)));
    let out = vault.ok(&["restore", &snap, "--to", &srv.url(), "--keys", "nothing*"]);
    assert_eq!(out, format!("no keys to restore into {addr}: none matched\n"));
    assert_eq!(srv.cmd::<i64>(&["DBSIZE"]), 0);

    let out = vault.ok(&["restore", &snap, "--to", &srv.url(), "--all"]);
    assert!(out.contains("restored 2 keys into") && out.contains("skipped 1 key whose TTL had passed"), "{out}");
}

#[test]
fn key_commands_name_key_files() {
    let vault = Vault::init();
    let pw = vault.dir.path().join("pw");
    std::fs::write(&pw, "second password\n").expect("write");
    let out = vault.ok(&["key", "add", "--new-password-file", pw.to_str().expect("utf-8"), "--kdf-memory-kib", "8192"]);
    assert!(out.starts_with("added key file ") && out.trim_end().len() == "added key file ".len() + 8, "{out}");
    let o = vault.cmd(&["key", "passwd"]).env("RDBVAULT_NEW_PASSWORD", "third password").output().expect("run");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", common::vault::text(&o));
    assert!(out.starts_with("changed password; new key file ") && !out.contains("key key"), "{out}");
    let id = out.trim_end().rsplit(' ').next().expect("id").to_string();
    let list = vault.run_as("third password", &["--json", "key", "list"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    assert!(v.as_array().expect("list").iter().any(|k| k["id"].as_str().is_some_and(|k| k.starts_with(&id))), "{v}");
}

#[test]
fn every_commands_help_lists_the_environment_and_exit_codes() {
    let vault = Vault::init();
    let top = vault.run(&["--help"]);
    let text = String::from_utf8_lossy(&top.stdout).to_string();
    let commands: Vec<String> = text
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() > 15, "{text}");
    for cmd in std::iter::once(None).chain(commands.iter().map(Some)) {
        let args: Vec<&str> = cmd.map(String::as_str).into_iter().chain(["--help"]).collect();
        let o = vault.run(&args);
        let help = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        for needle in ["Environment:", "RDBVAULT_REPOSITORY", "REDISCLI_AUTH", "Exit codes:", "3 wrong password"] {
            assert!(help.contains(needle), "{args:?} --help lacks {needle:?}:\n{help}");
        }
    }
}
