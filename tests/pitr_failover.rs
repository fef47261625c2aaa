//! Following through a Sentinel failover: the follower moves to the promoted replica with
//! a partial resync, so the log has no gap.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::follow::{digest_of_dir, follow_with, stop, writes};
use common::server::{free_port, wait_until, RedisServer, ServerConfig};
use common::vault::Vault;

/// A `redis-server --sentinel` monitoring `mymaster` at `master_port`, killed on drop.
struct Sentinel {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    fn start(master_port: u16) -> Sentinel {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds mymaster 2000\nsentinel failover-timeout mymaster 10000\n",
            dir.path().display()
        );
        std::fs::write(&conf, text).expect("write sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .args(["--sentinel", "--logfile"])
            .arg(dir.path().join("sentinel.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server --sentinel");
        let s = Sentinel { port, child, _dir: dir };
        wait_until(Duration::from_secs(10), "the sentinel to answer", || s.ask(&["PING"]).is_ok());
        s
    }

    fn ask(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let mut con = redis::Client::open(format!("redis://127.0.0.1:{}", self.port))?.get_connection()?;
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c.query(&mut con)
    }

    /// The port Sentinel names for the master.
    fn master_port(&self) -> Option<u16> {
        let reply: Vec<String> = redis::from_redis_value(self.ask(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"]).ok()?).ok()?;
        reply.get(1)?.parse().ok()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `srv` has `n` replicas online.
fn replicas_online(srv: &RedisServer, n: usize) {
    wait_until(Duration::from_secs(30), "replicas online", || {
        let info: String = srv.cmd(&["INFO", "replication"]);
        info.matches("state=online").count() >= n
    });
}

#[test]
fn follows_through_a_sentinel_failover_without_a_gap() {
    let master = RedisServer::start(&[]);
    let replica = RedisServer::start_with(ServerConfig::default().arg("replicaof", &["127.0.0.1", &master.port.to_string()]));
    let sentinel = Sentinel::start(master.port);
    let v = Vault::init();
    let at = format!("127.0.0.1:{}", sentinel.port);
    let f = follow_with(&v, &["--sentinel", &at, "--master-name", "mymaster"]);
    replicas_online(&master, 2);
    let mut c = master.resp();
    writes(&mut c, 1);
    // Both the replica and the follower have everything before the failover.
    assert_eq!(c.ok(&["WAIT", "2", "10000"]).int(), 2);

    // The sentinel must know the replica before it can promote it.
    wait_until(Duration::from_secs(30), "the sentinel to accept a failover", || {
        matches!(sentinel.ask(&["SENTINEL", "FAILOVER", "mymaster"]), Ok(redis::Value::Okay))
    });
    wait_until(Duration::from_secs(30), "the replica to be promoted", || sentinel.master_port() == Some(replica.port));
    wait_until(Duration::from_secs(30), "the promoted replica to take writes", || {
        replica.cmd::<String>(&["INFO", "replication"]).contains("role:master")
    });
    // The follower finds the new master through the sentinel (once the old master, now
    // demoted, drops it) and continues there; the old master is its other replica.
    replicas_online(&replica, 2);
    let mut c = replica.resp();
    writes(&mut c, 2);
    assert_eq!(c.ok(&["WAIT", "2", "10000"]).int(), 2, "the follower did not acknowledge on the new master");
    let when = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("format time");
    let digest = replica.digest();
    std::thread::sleep(Duration::from_millis(1100));
    writes(&mut c, 3);

    let (ok, stdout, stderr) = stop(f);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&format!("following mymaster at 127.0.0.1:{}", replica.port)), "{stdout}");
    assert!(stdout.contains("resumed") && stdout.contains("no gap"), "{stdout}{stderr}");
    assert!(!stderr.contains("full resync"), "{stderr}");
    let tl = v.json(&["timeline"]);
    let server = &tl["servers"][0];
    assert_eq!(server["server"], "mymaster", "{tl}");
    assert_eq!(server["chains"].as_array().map(Vec::len), Some(1), "{tl}");
    assert_eq!(server["gaps"].as_array().map(Vec::len), Some(0), "{tl}");
    assert_eq!(digest_of_dir(&v, &when), digest);
}
