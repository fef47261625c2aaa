//! `restore --at T --target FILE.rdb`: a redis-server from PATH loads the AOF directory and saves an RDB.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{FollowError, Result};

/// The program run to replay (found through PATH).
pub const REDIS_SERVER: &str = "redis-server";
/// Longest wait for the helper server to answer at all.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Starts `redis-server` on a Unix socket only (no TCP port) in `work`, which holds the AOF
/// directory `appendonlydir`; once loaded, SAVEs and moves the RDB to `out`.
pub fn aof_to_rdb(work: &Path, out: &Path) -> Result<()> {
    let sock = work.join("redis.sock");
    let mut child = Command::new(REDIS_SERVER)
        .args(["--port", "0", "--save", "", "--appendonly", "yes", "--appenddirname", "appendonlydir"])
        .args(["--dbfilename", "replayed.rdb", "--daemonize", "no", "--protected-mode", "no"])
        .arg("--dir")
        .arg(work)
        .arg("--unixsocket")
        .arg(&sock)
        .arg("--logfile")
        .arg(work.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            FollowError::local(
                format!("restore to an RDB replays the log through {REDIS_SERVER}, which could not be started (is it in PATH? restore to a directory instead)"),
                e,
            )
        })?;
    let result = save(&mut child, &sock, work);
    let _ = child.kill();
    let _ = child.wait();
    result?;
    let saved = work.join("replayed.rdb");
    std::fs::rename(&saved, out)
        .or_else(|_| std::fs::copy(&saved, out).map(|_| ()))
        .map_err(|e| FollowError::local(format!("move the replayed RDB to {}", out.display()), e))
}

fn save(child: &mut Child, sock: &Path, work: &Path) -> Result<()> {
    let log = work.join("redis.log");
    let failed = |what: &str| {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let last: Vec<&str> = tail.lines().rev().take(3).collect();
        FollowError::local(format!("the helper {REDIS_SERVER} {what} (its log: {})", last.join(" | ")), std::io::ErrorKind::Other.into())
    };
    let started = Instant::now();
    let mut con = loop {
        if let Ok(Some(_)) = child.try_wait() {
            return Err(failed("exited while loading the AOF directory"));
        }
        if let Ok(c) = UnixStream::connect(sock) {
            break c;
        }
        if started.elapsed() > START_LIMIT {
            return Err(failed("did not open its socket"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Loading may take long: wait as long as the server keeps answering LOADING.
    loop {
        let reply = ask(&mut con, b"*1\r\n$4\r\nPING\r\n").map_err(|e| FollowError::local("talk to the helper redis-server", e))?;
        if reply.starts_with("+PONG") {
            break;
        }
        if !reply.starts_with("-LOADING") {
            return Err(failed(&format!("answered PING with {reply}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let reply = ask(&mut con, b"*1\r\n$4\r\nSAVE\r\n").map_err(|e| FollowError::local("talk to the helper redis-server", e))?;
    if !reply.starts_with("+OK") {
        return Err(failed(&format!("answered SAVE with {reply}")));
    }
    Ok(())
}

/// Sends one command and reads its one-line reply.
fn ask(con: &mut UnixStream, cmd: &[u8]) -> std::io::Result<String> {
    con.write_all(cmd)?;
    let mut line = String::new();
    BufReader::new(&mut *con).read_line(&mut line)?;
    Ok(line.trim_end().to_string())
}

/// A fresh work directory beside `out` (same file system, so the result is renamed into place).
pub fn work_dir(out: &Path) -> Result<PathBuf> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = parent.join(format!(".rdbvault-replay-{}", hex::encode(crate::crypto::random_bytes::<6>())));
    std::fs::create_dir(&dir).map_err(|e| FollowError::local(format!("create {}", dir.display()), e))?;
    Ok(dir)
}
