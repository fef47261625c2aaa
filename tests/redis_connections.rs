//! Every command that talks to Redis takes the same connection options: time-outs and TLS
//! for `restore --to`, the database in the URL and `--map-db`, a user without a password,
//! the BGSAVE file check, unix sockets, redis-cli shorthands, Sentinel, cluster concurrency.

use crate::common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{make_tls_certs, start_cluster, set_following_moved, wait_until, free_port, RedisServer, ServerConfig};
use common::vault::{text, Vault};

/// A repository holding one backup (from a file) of `src`.
fn backed(src: &RedisServer) -> Vault {
    let v = Vault::init();
    let rdb = src.save_copy(&v.dir.path().join("dump.rdb"));
    v.backup(&rdb, &[]);
    v
}

/// Keys in `db` of `server`.
fn dbsize(server: &RedisServer, db: u32) -> u64 {
    let mut con = server.conn();
    redis::cmd("SELECT").arg(db).query::<()>(&mut con).unwrap();
    redis::cmd("DBSIZE").query(&mut con).unwrap()
}

/// The error line of a failed run: exactly one line on stderr.
fn one_line_error(v: &Vault, args: &[&str]) -> String {
    let out = v.run(args);
    assert!(!out.status.success(), "{args:?} should fail: {}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "{args:?}: one line expected: {err}");
    err
}

#[test]
fn restore_to_times_out_and_takes_the_tls_options() {
    let src = RedisServer::start(&[]);
    let () = src.cmd(&["DEBUG", "POPULATE", "20", "key", "10"]);
    let v = backed(&src);

    // A listener that never answers: the kernel accepts, nothing replies.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!("redis://127.0.0.1:{port}");
    let started = Instant::now();
    let err = one_line_error(&v, &["restore", "latest", "--to", &url, "--all", "--read-timeout", "1"]);
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    assert!(err.contains(&format!("connected to 127.0.0.1:{port} but the server did not answer PING within 1s")), "{err}");
    assert!(err.contains("rediss:// for a TLS port") && err.contains("--read-timeout"), "{err}");

    // rediss:// to a plain port: named as a TLS problem, within the time-out.
    let dst = RedisServer::start(&[]);
    let started = Instant::now();
    let err = one_line_error(&v, &["restore", "latest", "--to", &format!("rediss://127.0.0.1:{}", dst.port), "--all", "--read-timeout", "1", "--tls-insecure"]);
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    assert!(err.contains(&format!("127.0.0.1:{}", dst.port)) && err.contains("TLS"), "{err}");
    drop(silent);

    // TLS with a CA file and a client certificate, for backup and restore alike.
    let certs = tempfile::tempdir().unwrap();
    let Some((cert, key, ca)) = make_tls_certs(certs.path()) else { panic!("openssl is needed") };
    let (client_cert, client_key) = client_certificate(certs.path());
    let tls = RedisServer::start_with(ServerConfig { tls: Some((cert, key, ca.clone())), ..Default::default() }.arg("tls-auth-clients", &["yes"]));
    let tls_url = format!("rediss://127.0.0.1:{}", tls.tls_port.unwrap());
    let ca = ca.to_str().unwrap();
    let err = v.fails_text(&["restore", "latest", "--to", &tls_url, "--all", "--tls-ca", ca]);
    assert!(err.contains(&format!("127.0.0.1:{}", tls.tls_port.unwrap())), "without a client certificate: {err}");
    let with_cert = ["--tls-ca", ca, "--tls-cert", client_cert.to_str().unwrap(), "--tls-key", client_key.to_str().unwrap()];
    let mut args = vec!["restore", "latest", "--to", &tls_url, "--all"];
    args.extend_from_slice(&with_cert);
    assert!(v.ok(&args).contains("restored 20 keys"));
    assert_eq!(tls.digest(), src.digest());
    let mut args = vec!["backup", &tls_url];
    args.extend_from_slice(&with_cert);
    v.ok(&args);
    // The password file works for restore --to as for backup.
    let pw = v.dir.path().join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let () = dst.cmd(&["CONFIG", "SET", "requirepass", "s3cret"]);
    let out = v.ok(&["restore", "latest", "--to", &dst.url(), "--all", "--redis-password-file", pw.to_str().unwrap()]);
    assert!(out.contains("restored 20 keys"), "{out}");
}

/// A client certificate signed by the test CA in `dir` (made by `make_tls_certs`).
fn client_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::write(dir.join("client.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    let steps: [&[&str]; 2] = [
        &["req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=backup"],
        &["x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "client.crt", "-days", "2", "-extfile", "client.cnf"],
    ];
    for s in steps {
        let ok = Command::new("openssl").args(s).current_dir(dir).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success();
        assert!(ok, "openssl {s:?}");
    }
    (dir.join("client.crt"), dir.join("client.key"))
}

#[test]
fn the_database_in_the_url_and_map_db() {
    let src = RedisServer::start(&[]);
    let () = src.cmd(&["DEBUG", "POPULATE", "3", "zero", "5"]);
    let mut con = src.conn();
    redis::cmd("SELECT").arg(5).query::<()>(&mut con).unwrap();
    redis::cmd("DEBUG").arg("POPULATE").arg(2).arg("five").arg(5).query::<()>(&mut con).unwrap();
    let v = backed(&src);
    let dst = RedisServer::start(&[]);

    let err = v.fails_text(&["restore", "latest", "--to", &format!("{}/3", dst.url()), "--all"]);
    assert!(
        err.contains("the --to URL names db 3 but the snapshot holds keys in dbs 0, 5: choose the one to restore into db 3 with --db FROM"),
        "{err}"
    );
    assert_eq!(dst.total_keys(), 0);

    // /3 with --db 5: the keys of db 5 go to db 3.
    let out = v.ok(&["restore", "latest", "--to", &format!("{}/3", dst.url()), "--all", "--db", "5"]);
    assert!(out.contains("restored 2 keys") && out.contains("(db 3: 2)"), "{out}");
    assert_eq!((dbsize(&dst, 3), dst.total_keys()), (2, 2));
    // -n is the same as /N.
    let out = v.ok(&["restore", "latest", "-h", "127.0.0.1", "-p", &dst.port.to_string(), "-n", "4", "--db", "0", "--all"]);
    assert!(out.contains("(db 4: 3)"), "{out}");
    assert_eq!(dbsize(&dst, 4), 3);

    // --map-db moves one db and keeps the others.
    let dst = RedisServer::start(&[]);
    let out = v.ok(&["restore", "latest", "--to", &dst.url(), "--all", "--map-db", "0:7"]);
    assert!(out.contains("(db 5: 2, db 7: 3)"), "{out}");
    assert_eq!((dbsize(&dst, 7), dbsize(&dst, 5), dbsize(&dst, 0)), (3, 2, 0));
    let err = v.fails_text(&["restore", "latest", "--to", &dst.url(), "--all", "--map-db", "0:5", "--replace"]);
    assert!(err.contains("would put the keys of db 0 and db 5 both into db 5"), "{err}");
    let err = v.fails_text(&["restore", "latest", "--to", &format!("{}/1", dst.url()), "--all", "--map-db", "0:5"]);
    assert!(err.contains("names db 1 and --map-db is given"), "{err}");
    let err = v.fails_text(&["restore", "latest", "--target", "x.rdb", "--map-db", "0:5"]);
    assert!(err.contains("--map-db"), "{err}");
}

#[test]
fn a_user_without_a_password_never_connects_as_another() {
    let src = RedisServer::start(&[]);
    let () = src.cmd(&["DEBUG", "POPULATE", "10", "key", "5"]);
    let () = src.cmd(&["ACL", "SETUSER", "backup", "on", ">pw", "+@all", "~*"]);
    let v = backed(&src);
    let connections = || src.info_field("stats", "total_connections_received").parse::<u64>().unwrap();
    let user_url = format!("redis://backup@127.0.0.1:{}", src.port);
    let port = src.port.to_string();
    for args in [
        &["backup", user_url.as_str()][..],
        &["restore", "latest", "--to", user_url.as_str(), "--all"],
        &["backup", "-p", port.as_str(), "--user", "backup"],
    ] {
        let before = connections();
        let err = v.fails_text(args);
        assert!(err.contains(&format!("user backup given without a password for 127.0.0.1:{}", src.port)), "{args:?}: {err}");
        assert!(err.contains("REDISCLI_AUTH") && !err.contains("wrong user name or password"), "{args:?}: {err}");
        // Only our own INFO connection: rdbvault did not connect at all.
        assert_eq!(connections(), before + 1, "{args:?}");
    }
    // REDISCLI_AUTH completes the user; the default user cannot sync, so it was `backup`.
    let () = src.cmd(&["ACL", "SETUSER", "default", "-psync", "-sync", "-replconf"]);
    let o = v.run_env(&["backup", &user_url], &[("REDISCLI_AUTH", "pw")]);
    assert!(o.status.success(), "{}", text(&o));
    let o = v.run_env(&["backup", &format!("redis://127.0.0.1:{}", src.port)], &[]);
    assert!(!o.status.success(), "the default user may not sync: {}", text(&o));
}

#[test]
fn a_user_without_a_password_is_asked_on_the_terminal() {
    let src = RedisServer::start(&[]);
    let () = src.cmd(&["ACL", "SETUSER", "backup", "on", ">pw", "+@all", "~*"]);
    let v = Vault::init();
    // `script` gives the command a terminal; the password is typed into it.
    let cmd = format!(
        "{} -r {} backup redis://backup@127.0.0.1:{}",
        env!("CARGO_BIN_EXE_rdbvault"),
        v.repo.display(),
        src.port
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("RDBVAULT_PASSWORD", &v.password)
        .env_remove("REDISCLI_AUTH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"pw\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains(&format!("password of Redis user backup at 127.0.0.1:{}: ", src.port)), "{shown}");
    assert!(shown.contains("snapshot ") && shown.contains(" saved"), "{shown}");
    assert_eq!(v.snapshots().len(), 1);
}

#[test]
fn bgsave_refuses_a_file_the_server_did_not_just_write() {
    let src = RedisServer::start(&[]);
    let () = src.cmd(&["DEBUG", "POPULATE", "50", "key", "5"]);
    let other = RedisServer::start(&[]);
    let () = other.cmd(&["DEBUG", "POPULATE", "100", "key", "5"]);
    let v = Vault::init();
    let backup = |path: &Path| v.fails_text(&["backup", &src.url(), "--mode", "bgsave", "--rdb-path", path.to_str().unwrap()]);
    let right = src.rdb_path();
    let wants = |err: &str, path: &Path, why: &str| {
        let head = format!("{} is not the RDB file 127.0.0.1:{} just saved: {why}", path.display(), src.port);
        assert!(err.contains(&head), "{err}");
        assert!(err.contains(&format!("; the server writes {}", right.display())), "{err}");
        assert!(err.contains("--rdb-path must name the server's dir/dbfilename"), "{err}");
    };

    // Another server's fresh dump: the key count differs.
    let wrong = other.save_copy(&v.dir.path().join("other.rdb"));
    wants(&backup(&wrong), &wrong, "it holds 100 keys, the server 50 when its save finished (at most 0 changed meanwhile)");
    // An old dump: its mtime is far from the save.
    let stale = src.save_copy(&v.dir.path().join("stale.rdb"));
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&stale).unwrap().set_modified(hour_ago).unwrap();
    let err = backup(&stale);
    wants(&err, &stale, "it was last written 3");
    assert!(err.contains(" s before the server's save finished"), "{err}");
    // A fresh copy with the right keys, which the save did not replace.
    let copy = src.save_copy(&v.dir.path().join("copy.rdb"));
    wants(&backup(&copy), &copy, "the BGSAVE that just finished did not replace it");
    assert!(v.snapshots().is_empty());
    // The right file is accepted.
    v.ok(&["backup", &src.url(), "--mode", "bgsave", "--rdb-path", right.to_str().unwrap()]);
    assert_eq!(v.snapshots().len(), 1);
}

#[test]
fn unix_sockets_and_redis_cli_shorthands() {
    let sock_server = |dir: &tempfile::TempDir| {
        let sock = dir.path().join("redis.sock");
        let s = RedisServer::start_with(ServerConfig::default().arg("unixsocket", &[sock.to_str().unwrap()]).arg("unixsocketperm", &["700"]));
        (s, sock)
    };
    let d1 = tempfile::tempdir().unwrap();
    let (src, sock) = sock_server(&d1);
    let () = src.cmd(&["DEBUG", "POPULATE", "7", "key", "5"]);
    let v = Vault::init();
    let out = v.json(&["backup", &format!("unix://{}", sock.display())]);
    assert_eq!(out["source"]["name"], sock.to_str().unwrap());

    let d2 = tempfile::tempdir().unwrap();
    let (dst, dst_sock) = sock_server(&d2);
    let out = v.ok(&["restore", "latest", "--to", &format!("redis+unix://{}?db=2", dst_sock.display()), "--all", "--db", "0"]);
    assert!(out.contains("restored 7 keys") && out.contains("(db 2: 7)"), "{out}");
    assert_eq!(dbsize(&dst, 2), 7);

    // -h/-p/--user/--pass, with the warning redis-cli gives.
    let () = src.cmd(&["ACL", "SETUSER", "backup", "on", ">pw", "+@all", "~*"]);
    let o = v.run(&["backup", "-h", "127.0.0.1", "-p", &src.port.to_string(), "--user", "backup", "--pass", "pw"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--pass is visible to other users"), "{}", text(&o));
    let fresh = RedisServer::start(&[]);
    let out = v.ok(&["restore", "latest", "-p", &fresh.port.to_string(), "--all"]);
    assert!(out.contains("restored 7 keys"), "{out}");
    let err = v.fails_text(&["backup", &src.url(), "-p", "1"]);
    assert!(err.contains("give the server once"), "{err}");

    for cmd in ["backup", "restore"] {
        let help = v.ok(&[cmd, "--help"]);
        for want in ["rediss://", "unix:///path/redis.sock", "[/db]", "--redis-host", "--tls-cert", "--sentinel", "--read-timeout"] {
            assert!(help.contains(want), "{cmd} --help lacks {want}");
        }
    }
}

/// A `redis-server --sentinel` watching `master` as `mymaster`, killed on drop.
struct Sentinel(std::process::Child, u16, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sentinel(master: &RedisServer) -> Sentinel {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(&conf, format!("port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {} 1\n", dir.path().display(), master.port)).unwrap();
    let child = Command::new("redis-server").arg(&conf).arg("--sentinel").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let s = Sentinel(child, port, dir);
    wait_until(Duration::from_secs(10), "sentinel", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    s
}

#[test]
fn sentinel_finds_the_master() {
    let master = RedisServer::start(&[]);
    let () = master.cmd(&["DEBUG", "POPULATE", "5", "key", "5"]);
    let s = sentinel(&master);
    let v = Vault::init();
    let at = format!("127.0.0.1:{}", s.1);
    let out = v.json(&["backup", "--sentinel", &at, "--master-name", "mymaster"]);
    assert_eq!(out["source"]["name"], format!("127.0.0.1:{}", master.port).as_str());
    let err = v.fails_text(&["backup", "--sentinel", &at, "--master-name", "nosuch"]);
    assert!(err.contains(&format!("sentinel {at}: knows no master named \"nosuch\"")), "{err}");
    let err = v.fails_text(&["backup", "--sentinel", &at]);
    assert!(err.contains("--master-name"), "{err}");
}

#[test]
fn cluster_shards_are_backed_up_together() {
    let nodes = start_cluster();
    for i in 0..30 {
        set_following_moved(&nodes, &format!("k{i}"), "v");
    }
    // Each master waits 2 s before it forks: one after another, the forks would lie 4 s apart.
    for n in &nodes {
        let () = n.cmd(&["CONFIG", "SET", "repl-diskless-sync-delay", "2"]);
    }
    let v = Vault::init();
    let out = v.json(&["backup", &nodes[0].url(), "--cluster"]);
    assert_eq!(out["snapshots"].as_array().unwrap().len(), 3);
    let spread = out["spread_ms"].as_u64().expect("spread_ms");
    assert!(spread < 2000, "shards forked {spread} ms apart");
    let text = v.ok(&["backup", &nodes[0].url(), "--cluster"]);
    assert!(text.contains("the shards' snapshot times lie within ") && text.contains(" ms of each other"), "{text}");
}
