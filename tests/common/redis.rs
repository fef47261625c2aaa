//! Test helper: a throw-away `redis-server` on a free loopback port, plus a tiny RESP client.
//!
//! ```ignore
//! let srv = RedisServer::start(&["--hash-max-listpack-entries", "0"]);
//! let mut c = srv.conn();
//! c.ok(&["SET", "k", "v"]);
//! let rdb: Vec<u8> = srv.save_rdb();
//! ```
//! The server runs in its own temp dir with `--save ''` and `--appendonly no`, and is killed
//! (and reaped) on drop.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// Bulk or simple string bytes; panics otherwise.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Resp::Bulk(Some(b)) => b.clone(),
            Resp::Simple(s) => s.clone().into_bytes(),
            other => panic!("expected a string reply, got {other:?}"),
        }
    }

    /// Lossy UTF-8 text of a string reply.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    pub fn int(&self) -> i64 {
        match self {
            Resp::Int(i) => *i,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    pub fn array(&self) -> Vec<Resp> {
        match self {
            Resp::Array(Some(a)) => a.clone(),
            other => panic!("expected an array reply, got {other:?}"),
        }
    }

    /// Array of string replies as byte vectors.
    pub fn byte_list(&self) -> Vec<Vec<u8>> {
        self.array().iter().map(Resp::bytes).collect()
    }
}

/// A blocking RESP connection.
pub struct RespConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RespConn {
    pub fn connect(port: u16) -> std::io::Result<RespConn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(RespConn {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    /// Sends a command with binary-safe arguments and returns the reply.
    pub fn cmd_bytes(&mut self, args: &[&[u8]]) -> Resp {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&out).expect("write to redis");
        read_reply(&mut self.reader)
    }

    pub fn cmd(&mut self, args: &[&str]) -> Resp {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.cmd_bytes(&a)
    }

    /// Runs a command and panics on an error reply.
    pub fn ok(&mut self, args: &[&str]) -> Resp {
        let r = self.cmd(args);
        if let Resp::Error(e) = &r {
            panic!("{args:?} failed: {e}");
        }
        r
    }
}

fn read_line(r: &mut impl BufRead) -> String {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).expect("read from redis");
    assert!(line.ends_with(b"\r\n"), "bad RESP line {line:?}");
    line.truncate(line.len() - 2);
    String::from_utf8(line).expect("RESP header is UTF-8")
}

fn read_reply(r: &mut impl BufRead) -> Resp {
    let line = read_line(r);
    let (tag, rest) = line.split_at(1);
    match tag {
        "+" => Resp::Simple(rest.to_string()),
        "-" => Resp::Error(rest.to_string()),
        ":" => Resp::Int(rest.parse().expect("integer reply")),
        "$" => {
            let n: i64 = rest.parse().expect("bulk length");
            if n < 0 {
                return Resp::Bulk(None);
            }
            let mut b = vec![0u8; n as usize + 2];
            r.read_exact(&mut b).expect("read bulk");
            b.truncate(n as usize);
            Resp::Bulk(Some(b))
        }
        "*" => {
            let n: i64 = rest.parse().expect("array length");
            if n < 0 {
                return Resp::Array(None);
            }
            Resp::Array(Some((0..n).map(|_| read_reply(r)).collect()))
        }
        other => panic!("unknown RESP tag {other:?}"),
    }
}

/// A running redis-server owned by a test.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

impl RedisServer {
    /// Starts redis-server with `extra` config args (e.g. `["--list-max-listpack-size", "1"]`).
    /// Retries with a new port if the chosen one gets taken; panics if it cannot start.
    pub fn start(extra: &[&str]) -> RedisServer {
        let mut last_err = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = {
                let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
                l.local_addr().expect("local addr").port()
            };
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .arg("--dir")
                .arg(dir.path())
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--enable-debug-command", "yes"])
                .arg("--logfile")
                .arg(dir.path().join("redis.log"))
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server (is it installed?)");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let log =
                        std::fs::read_to_string(dir.path().join("redis.log")).unwrap_or_default();
                    last_err = format!("redis-server exited with {status}: {log}");
                    break;
                }
                if let Ok(mut c) = RespConn::connect(port) {
                    if c.cmd(&["PING"]) == Resp::Simple("PONG".into()) {
                        return RedisServer { child, port, dir };
                    }
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_err = "redis-server did not answer PING in time".into();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("could not start redis-server: {last_err}");
    }

    /// Temp directory holding dump.rdb and redis.log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn rdb_path(&self) -> PathBuf {
        self.dir.path().join("dump.rdb")
    }

    /// A new RESP connection to this server.
    pub fn conn(&self) -> RespConn {
        RespConn::connect(self.port).expect("connect to redis")
    }

    /// Runs `SAVE` and returns the bytes of dump.rdb.
    pub fn save_rdb(&self) -> Vec<u8> {
        self.conn().ok(&["SAVE"]);
        std::fs::read(self.rdb_path()).expect("read dump.rdb")
    }

    /// Runs `redis-cli --raw` with `args` against this server and returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--raw"])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
