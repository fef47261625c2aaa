//! A real `redis-server` on a free 127.0.0.1 port, in its own temp dir, killed on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::resp::{self, Resp, RespConn};

/// Kept here too for the tests that import it from `server`; it lives with the other generators.
#[allow(unused_imports)]
pub use super::data::fill_sample;

/// A free loopback port (bound to port 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind port 0").local_addr().expect("local addr").port()
}

/// How to start a server.
#[derive(Default)]
pub struct ServerConfig {
    /// Extra `--name value` arguments, each a separate argv entry.
    pub args: Vec<String>,
    /// Keep the default save points (otherwise `--save ''`).
    pub keep_save: bool,
    /// Also listen for TLS on a second port with these (cert, key, ca) files.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// Use this directory instead of a new temp dir (e.g. one holding a dump.rdb to load).
    pub dir: Option<tempfile::TempDir>,
    /// Run this server binary instead of `redis-server` from PATH (e.g. a valkey-server).
    pub binary: Option<PathBuf>,
}

impl ServerConfig {
    /// Add `--name value...`.
    pub fn arg(mut self, name: &str, values: &[&str]) -> Self {
        self.args.push(format!("--{name}"));
        self.args.extend(values.iter().map(|v| v.to_string()));
        self
    }
}

/// Running server; `Drop` kills it and waits for it.
pub struct RedisServer {
    /// Plain port.
    pub port: u16,
    /// TLS port, when configured.
    pub tls_port: Option<u16>,
    /// Working dir (`dir` config): dump.rdb, AOF directory, nodes.conf, redis.log.
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Start with default config plus `args` (pairs like `["repl-diskless-sync", "yes"]` become `--repl-diskless-sync yes`).
    pub fn start(args: &[(&str, &str)]) -> RedisServer {
        let mut cfg = ServerConfig::default();
        for (k, v) in args {
            cfg = cfg.arg(k, &[v]);
        }
        Self::start_with(cfg)
    }

    /// Start a server that loads `rdb` (written as dump.rdb into a fresh dir before start).
    pub fn load_rdb(rdb: &[u8]) -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("dump.rdb"), rdb).expect("write dump.rdb");
        Self::start_with(ServerConfig { dir: Some(dir), ..Default::default() })
    }

    /// Start with full control; retries on a new port if the server fails to come up.
    pub fn start_with(mut cfg: ServerConfig) -> RedisServer {
        let dir = cfg.dir.take().unwrap_or_else(|| tempfile::tempdir().expect("tempdir"));
        for attempt in 0..5 {
            let port = free_port();
            let tls_port = cfg.tls.as_ref().map(|_| free_port());
            let mut cmd = Command::new(cfg.binary.as_deref().unwrap_or(Path::new("redis-server")));
            cmd.arg("--port").arg(port.to_string())
                .args(["--bind", "127.0.0.1", "--daemonize", "no", "--enable-debug-command", "local"])
                .arg("--dir").arg(dir.path())
                .arg("--logfile").arg(dir.path().join("redis.log"));
            if !cfg.keep_save {
                cmd.args(["--save", ""]);
            }
            if let (Some((cert, key, ca)), Some(tp)) = (&cfg.tls, tls_port) {
                cmd.arg("--tls-port").arg(tp.to_string())
                    .arg("--tls-cert-file").arg(cert)
                    .arg("--tls-key-file").arg(key)
                    .arg("--tls-ca-cert-file").arg(ca)
                    .args(["--tls-auth-clients", "no"]);
            }
            cmd.args(&cfg.args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
            let mut child = cmd.spawn().expect("spawn redis-server (is it installed?)");
            if wait_ready(&mut child, port, Duration::from_secs(10)) {
                return RedisServer { port, tls_port, dir, child: Some(child) };
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.path().join("redis.log")).unwrap_or_default();
            eprintln!("redis-server attempt {attempt} on port {port} failed:\n{log}");
        }
        panic!("redis-server did not start");
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A `redis` crate connection as the default user.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url()).expect("client").get_connection().expect("connect")
    }

    /// Run a command as the default user and return the reply.
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c.query(&mut self.conn()).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// One INFO field.
    pub fn info_field(&self, section: &str, field: &str) -> String {
        let info: String = self.cmd(&["INFO", section]);
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
    }

    /// `DEBUG DIGEST` of the whole dataset.
    pub fn digest(&self) -> String {
        self.cmd(&["DEBUG", "DIGEST"])
    }

    /// Total keys over all databases.
    pub fn total_keys(&self) -> u64 {
        let info: String = self.cmd(&["INFO", "keyspace"]);
        info.lines()
            .filter_map(|l| l.split("keys=").nth(1))
            .filter_map(|r| r.split(',').next()?.parse::<u64>().ok())
            .sum()
    }

    /// SIGKILL the server and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Path of a file in the server's dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A binary-safe raw-reply connection (SELECT state persists), for byte-exact checks.
    pub fn resp(&self) -> RespConn {
        RespConn::connect(self.port).expect("connect to redis")
    }

    /// One binary-safe command on a new connection; the reply as sent.
    pub fn cmd_bytes(&self, args: &[&[u8]]) -> Resp {
        self.resp().cmd_bytes(args)
    }

    /// Where `SAVE` writes the dump.
    pub fn rdb_path(&self) -> PathBuf {
        self.path("dump.rdb")
    }

    /// `SAVE`s and returns the bytes of dump.rdb.
    pub fn save_rdb(&self) -> Vec<u8> {
        self.resp().ok(&["SAVE"]);
        std::fs::read(self.rdb_path()).expect("read dump.rdb")
    }

    /// `SAVE`s and copies dump.rdb to `to` (a dump of this moment that later saves leave alone).
    pub fn save_copy(&self, to: &Path) -> PathBuf {
        assert_eq!(self.cli(&["SAVE"]).trim(), "OK");
        std::fs::copy(self.rdb_path(), to).expect("copy dump.rdb");
        to.to_path_buf()
    }

    /// `redis-cli --raw` against this server; panics if it fails, returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--raw"])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends many commands at once through `redis-cli --pipe` (fast bulk loading); asserts no errors.
    pub fn pipe(&self, commands: &[Vec<String>]) {
        let mut buf = Vec::new();
        for cmd in commands {
            let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
            resp::encode(&mut buf, &args);
        }
        let mut child = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--pipe"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run redis-cli");
        child.stdin.take().expect("stdin").write_all(&buf).expect("write to redis-cli");
        let out = child.wait_with_output().expect("redis-cli --pipe");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("errors: 0"), "redis-cli --pipe: {text}");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// PING until PONG (LOADING and refused connections mean: not yet); false if the process died.
fn wait_ready(child: &mut Child, port: u16, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut buf = [0u8; 64];
            if s.write_all(b"PING\r\n").is_ok() {
                if let Ok(n) = s.read(&mut buf) {
                    if buf[..n].starts_with(b"+PONG") {
                        return true;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Poll `f` until true or panic after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `path` exists as an executable on PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {tool}")).stdout(Stdio::null()).status().map(|s| s.success()).unwrap_or(false)
}

/// Self-signed CA + server certificate for 127.0.0.1 made with `openssl`: (cert, key, ca).
pub fn make_tls_certs(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    if !have("openssl") {
        return None;
    }
    let ext = dir.join("ext.cnf");
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n").ok()?;
    let steps: [&[&str]; 3] = [
        &["req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=rdbvault-test-ca"],
        &["req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
        &["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf"],
    ];
    for s in steps {
        let ok = Command::new("openssl").args(s).current_dir(dir).stdout(Stdio::null()).stderr(Stdio::null()).status().ok()?.success();
        if !ok {
            return None;
        }
    }
    Some((dir.join("server.crt"), dir.join("server.key"), dir.join("ca.crt")))
}

/// Three masters (no replicas) made into a cluster with `redis-cli --cluster create`, all reporting `cluster_state:ok`.
pub fn start_cluster() -> Vec<RedisServer> {
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
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
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
    nodes
}

/// SET through a cluster, following MOVED redirects.
pub fn set_following_moved(nodes: &[RedisServer], key: &str, value: &str) {
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

/// A server with a multi-part AOF in `aofparts/` named `app.aof`, fsynced on every write.
pub fn aof_server() -> RedisServer {
    RedisServer::start(&[("appendonly", "yes"), ("appenddirname", "aofparts"), ("appendfilename", "app.aof"), ("appendfsync", "always")])
}

/// BGREWRITEAOF and wait until it completed.
pub fn rewrite_aof_and_wait(src: &RedisServer) {
    let before: u64 = src.info_field("persistence", "aof_rewrites").parse().unwrap();
    let _: String = src.cmd(&["BGREWRITEAOF"]);
    wait_until(Duration::from_secs(20), "AOF rewrite", || {
        src.info_field("persistence", "aof_rewrite_in_progress") == "0"
            && src.info_field("persistence", "aof_rewrites").parse::<u64>().unwrap() > before
    });
}

/// Sends RESP-encoded commands to the server on `port` through `redis-cli --pipe`.
pub fn pipe_commands(port: u16, commands: &[Vec<String>]) {
    let mut buf = Vec::new();
    for cmd in commands {
        write!(buf, "*{}\r\n", cmd.len()).unwrap();
        for a in cmd {
            write!(buf, "${}\r\n{}\r\n", a.len(), a).unwrap();
        }
    }
    let mut child = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli");
    child.stdin.take().unwrap().write_all(&buf).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("errors: 0"), "redis-cli --pipe: {text}");
}
