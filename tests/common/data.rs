//! Starts a real `redis-server` on a free loopback port in its own temp dir.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server, killed on drop.
pub struct Redis {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

impl Redis {
    /// Starts a server with extra `--name value` config arguments.
    pub fn start(extra: &[&str]) -> Redis {
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is installed");
            let mut r = Redis { child, port, dir };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = r.child.try_wait() {
                    break;
                }
                if r.try_cli(&["PING"]).map(|s| s.trim() == "PONG").unwrap_or(false) {
                    return r;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("redis-server did not start");
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli").args(["-p", &self.port.to_string(), "--raw"]).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs one redis-cli command and returns its raw output.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args).unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }

    /// Sends many commands at once through `redis-cli --pipe`.
    pub fn pipe(&self, commands: &[Vec<String>]) {
        super::server::pipe_commands(self.port, commands);
    }

    /// SAVEs and returns a copy of the dump taken now.
    pub fn save_copy(&self, to: &std::path::Path) -> PathBuf {
        assert_eq!(self.cli(&["SAVE"]).trim(), "OK");
        std::fs::copy(self.dir.path().join("dump.rdb"), to).expect("copy dump.rdb");
        to.to_path_buf()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic pseudo-random numbers for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn word(&mut self, len: usize) -> String {
        (0..len).map(|_| (b'a' + self.below(26) as u8) as char).collect()
    }
}

fn s(x: impl ToString) -> String {
    x.to_string()
}

/// Commands that (re)write key number `i` with a value of its type; `salt` changes the values.
pub fn key_commands(i: u64, salt: u64, rng: &mut Rng) -> Vec<Vec<String>> {
    let v = |rng: &mut Rng, n: usize| format!("{salt}-{}", rng.word(n));
    match i % 6 {
        0 => vec![vec![s("SET"), format!("str:{i}"), format!("{{\"id\":{i},\"name\":\"{}\",\"bio\":\"{}\"}}", v(rng, 8), v(rng, 60))]],
        1 => vec![vec![s("SET"), format!("cnt:{i}"), s(rng.below(1_000_000) + salt)]],
        2 => {
            let mut c = vec![s("HSET"), format!("user:{i}")];
            for f in ["name", "email", "city", "plan"] {
                c.push(s(f));
                c.push(v(rng, 12));
            }
            vec![vec![s("DEL"), format!("user:{i}")], c]
        }
        3 => {
            let mut c = vec![s("RPUSH"), format!("list:{i}")];
            c.extend((0..8).map(|_| v(rng, 10)));
            vec![vec![s("DEL"), format!("list:{i}")], c]
        }
        4 => {
            let mut c = vec![s("SADD"), format!("set:{i}")];
            c.extend((0..6).map(|_| v(rng, 6)));
            vec![vec![s("DEL"), format!("set:{i}")], c]
        }
        _ => {
            let mut c = vec![s("ZADD"), format!("zset:{i}")];
            for _ in 0..6 {
                c.push(s(rng.below(10_000)));
                c.push(v(rng, 8));
            }
            vec![vec![s("DEL"), format!("zset:{i}")], c]
        }
    }
}

/// Fills keys `0..n` with mixed types.
pub fn fill(redis: &Redis, n: u64, salt: u64, seed: u64) {
    let mut rng = Rng(seed | 1);
    let cmds: Vec<Vec<String>> = (0..n).flat_map(|i| key_commands(i, salt, &mut rng)).collect();
    redis.pipe(&cmds);
}
