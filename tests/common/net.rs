//! Network repository servers for tests, on loopback: moto (S3), OpenSSH's sshd
//! (SFTP), and a TCP proxy in front of them that the test can take down and
//! bring back (a lost connection, without losing the server's data).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::server::{free_port, wait_until};

/// A child process killed on drop.
pub struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16, what: &str) {
    wait_until(Duration::from_secs(60), what, || TcpStream::connect(("127.0.0.1", port)).is_ok());
}

/// A moto S3 server (`moto_server`), in memory, killed on drop.
pub struct Moto {
    pub port: u16,
    _proc: Proc,
}

impl Moto {
    /// Starts one; `auth` makes it check credentials (every key is then unknown to it).
    pub fn start(auth: bool) -> Moto {
        Moto::start_with(auth, None)
    }

    /// Starts one serving https with the given certificate and key (no auth).
    pub fn start_tls(cert: &Path, key: &Path) -> Moto {
        Moto::start_with(false, Some((cert, key)))
    }

    fn start_with(auth: bool, tls: Option<(&Path, &Path)>) -> Moto {
        let port = free_port();
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]).stdout(Stdio::null()).stderr(Stdio::null());
        if auth {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        }
        if let Some((cert, key)) = tls {
            cmd.arg("-c").arg(cert).arg("-k").arg(key);
        }
        let child = cmd.spawn().expect("start moto_server (pip install 'moto[server]')");
        let proc = Proc(child);
        wait_for_port(port, "moto_server listening");
        Moto { port, _proc: proc }
    }

    /// Creates a bucket with a plain HTTP PUT. A loaded machine can show moto's port open
    /// before its app answers (the connection closes with no reply): that is retried.
    pub fn create_bucket(&self, bucket: &str) {
        let put = || {
            let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
            write!(s, "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.port).ok()?;
            let mut reply = String::new();
            let _ = s.read_to_string(&mut reply);
            Some(reply).filter(|r| !r.is_empty())
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let reply = loop {
            match put() {
                Some(reply) => break reply,
                None if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                None => panic!("create bucket: moto at port {} gave no reply for 30 s", self.port),
            }
        };
        assert!(reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"), "create bucket: {reply}");
    }

    /// Sends one unsigned HTTP request (moto without `auth` takes it; objects are put
    /// public-read so an unsigned GET may read them back); returns the status line.
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nx-amz-acl: public-read\r\nConnection: close\r\n\r\n", self.port, body.len())
            .expect("send request");
        s.write_all(body).expect("send body");
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        reply.lines().next().unwrap_or("").to_string()
    }

    /// Credentials moto accepts (it does not check them unless started with `auth`).
    pub fn env() -> Vec<(String, String)> {
        [("AWS_ACCESS_KEY_ID", "rdbvault-test"), ("AWS_SECRET_ACCESS_KEY", "not-a-secret-Zq9"), ("AWS_REGION", "us-east-1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// An sshd on a free port with generated host and user keys, serving SFTP to root,
/// and an `ssh` wrapper (first on PATH) that uses a generated client config.
pub struct Sshd {
    pub port: u16,
    pub dir: tempfile::TempDir,
    _proc: Proc,
}

impl Sshd {
    pub fn start() -> Sshd {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for key in ["host_key", "user_key"] {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(key))
                .status()
                .expect("run ssh-keygen");
            assert!(st.success(), "ssh-keygen failed");
        }
        std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).expect("authorized_keys");
        let port = free_port();
        let p = |n: &str| d.join(n).display().to_string();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\nStrictModes no\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 Subsystem sftp internal-sftp\n",
                p("host_key"),
                p("authorized_keys"),
                p("sshd.pid")
            ),
        )
        .expect("sshd_config");
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).expect("sshd.log"))
            .spawn()
            .expect("start /usr/sbin/sshd (apt-get install openssh-server)");
        let proc = Proc(child);
        wait_for_port(port, "sshd listening");
        Sshd { port, dir, _proc: proc }
    }

    /// Writes an ssh client config trusting this server's host key on `port` (the
    /// server's or a proxy's) and a PATH whose `ssh` uses it; returns the environment.
    pub fn client_env(&self, port: u16) -> Vec<(String, String)> {
        let d = self.dir.path();
        let host_key = std::fs::read_to_string(d.join("host_key.pub")).expect("host key");
        std::fs::write(d.join(format!("known_hosts-{port}")), format!("[127.0.0.1]:{port} {host_key}")).expect("known_hosts");
        let config = d.join(format!("ssh_config-{port}"));
        std::fs::write(
            &config,
            format!(
                "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 5\n",
                d.join("user_key").display(),
                d.join(format!("known_hosts-{port}")).display()
            ),
        )
        .expect("ssh_config");
        let bin = d.join(format!("bin-{port}"));
        std::fs::create_dir_all(&bin).expect("bin dir");
        write_script(&bin.join("ssh"), &format!("#!/bin/sh\nexec /usr/bin/ssh -F {} \"$@\"\n", config.display()));
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        vec![("PATH".to_string(), path)]
    }

    /// A directory on the server (the same machine) for a repository.
    pub fn repo_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod script");
}

/// A TCP proxy on a free port to `target` that, once clients have sent the bytes
/// `cut_after` names, cuts every connection and refuses new ones until `up()`.
pub struct Proxy {
    pub port: u16,
    state: Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    down: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
    /// Bytes read from clients so far.
    upstream: AtomicU64,
    /// The upstream byte count at which the proxy goes down by itself (0: never).
    cut_at: AtomicU64,
}

impl ProxyState {
    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Proxy {
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let state = Arc::new(ProxyState::default());
        let st = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if st.down.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let mut list = st.conns.lock().unwrap();
                for s in [&client, &server] {
                    if let Ok(s) = s.try_clone() {
                        list.push(s);
                    }
                }
                drop(list);
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap(), Some(st.clone()));
                pipe(server, client, None);
            }
        });
        Proxy { port, state }
    }

    /// Goes down by itself once clients have sent `bytes` more: at that point in the
    /// stream, however fast the client runs.
    pub fn cut_after(&self, bytes: u64) {
        self.state.cut_at.store(self.state.upstream.load(Ordering::SeqCst) + bytes, Ordering::SeqCst);
    }

    /// Whether the proxy has cut its connections (and refuses new ones).
    pub fn is_down(&self) -> bool {
        self.state.down.load(Ordering::SeqCst)
    }

    /// Accepts connections again (and no longer cuts by itself).
    pub fn up(&self) {
        self.state.cut_at.store(0, Ordering::SeqCst);
        self.state.down.store(false, Ordering::SeqCst);
    }
}

/// Copies `from` to `to`; upstream, counts the bytes and cuts the proxy where it was told to,
/// before forwarding the bytes that reach that count.
fn pipe(mut from: TcpStream, mut to: TcpStream, upstream: Option<Arc<ProxyState>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(state) = &upstream {
                        let total = state.upstream.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                        let cut_at = state.cut_at.load(Ordering::SeqCst);
                        if cut_at != 0 && total >= cut_at {
                            state.cut();
                            break;
                        }
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Every command on a network repository: backup of a real RDB, an incremental
/// backup, snapshots, byte-exact restores, inspect, forget + prune, check --read-data.
pub fn exercise(v: &super::vault::Vault) {
    let redis = super::server::RedisServer::start(&[]);
    super::data::fill_sample(&redis, 2000);
    // One input path, so both snapshots are in one group for `forget`.
    let input = v.dir.path().join("dump.rdb");
    let one = std::fs::read(redis.save_copy(&input)).unwrap();
    let (s1, first) = v.backup(&input, &[]);
    assert!(first["bytes_added"].as_u64().unwrap() > 0, "{first}");
    redis.cli(&["SET", "str:0:7", "changed"]);
    let two = std::fs::read(redis.save_copy(&input)).unwrap();
    let (s2, second) = v.backup(&input, &[]);
    // New chunk bytes before compression: how small the first backup compresses depends on
    // whether its dictionary was trained before its frames were sealed (a race, by design).
    // If this fails, both summaries and the bytes the two files share at each end tell a
    // file that Redis rewrote in a new order from chunks that moved around one change.
    let prefix = one.iter().zip(&two).take_while(|(a, b)| a == b).count();
    let suffix = one.iter().rev().zip(two.iter().rev()).take_while(|(a, b)| a == b).count();
    assert!(
        second["new_raw_bytes"].as_u64().unwrap() < first["new_raw_bytes"].as_u64().unwrap() / 4,
        "an incremental backup stores only what changed: {second}, after {first}; the files ({} and {} bytes) share {prefix} bytes at the start and {suffix} at the end",
        one.len(),
        two.len()
    );
    let list = v.json(&["snapshots"]);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert!(v.restore(&s1, &v.dir.path().join("r1.rdb")) == one, "first snapshot restores byte-exact");
    assert!(v.restore(&s2, &v.dir.path().join("r2.rdb")) == two, "second snapshot restores byte-exact");
    let inspected = v.ok(&["inspect", &s2]);
    assert!(inspected.contains("keys: 5600"), "inspect shows the key count: {inspected}");
    v.ok(&["forget", "--keep-last", "1", "--prune"]);
    let list = v.json(&["snapshots"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert!(v.restore("latest", &v.dir.path().join("r3.rdb")) == two, "restores after prune");
    v.ok(&["check", "--read-data"]);
}

/// Starts a backup of a fresh RDB (`name`) and returns once the proxy has cut it off, after
/// it uploaded a few packs. The proxy cuts at that byte count itself: a test thread that
/// watched the count and then cut let a fast backup finish in between.
fn backup_until_cut(v: &super::vault::Vault, proxy: &Proxy, name: &str) -> (PathBuf, Child) {
    let input = v.dir.path().join(name);
    let redis = super::server::RedisServer::start(&[]);
    super::data::fill_sample(&redis, 20_000);
    redis.save_copy(&input);
    proxy.cut_after(300_000);
    let child = v.cmd(&["backup", input.to_str().unwrap()]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_until(Duration::from_secs(20), "some packs uploaded and the connection cut", || proxy.is_down());
    (input, child)
}

/// A backup cut off by a lost connection fails with a clear error; once the server
/// is back, `check` passes and the next backup completes.
pub fn lost_connection(v: &super::vault::Vault, proxy: &Proxy) {
    let (input, child) = backup_until_cut(v, proxy, "big.rdb");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the backup should fail while the server is away: {stderr}");
    assert!(stderr.contains("lost the connection"), "clear error: {stderr}");
    assert_eq!(stderr.trim().lines().filter(|l| l.starts_with("error:")).count(), 1, "one error line: {stderr}");
    proxy.up();
    v.ok(&["check"]);
    let (_, _) = v.backup(&input, &[]);
    v.ok(&["unlock"]);
    v.ok(&["check", "--read-data"]);
    assert!(v.restore("latest", &v.dir.path().join("big.out")) == std::fs::read(&input).unwrap());
}

/// Connections cut for a second and a half during a backup are retried: the backup succeeds,
/// says on stderr how many requests it retried, and the data restores.
pub fn transient_failure(v: &super::vault::Vault, proxy: &Proxy) {
    let (input, child) = backup_until_cut(v, proxy, "flaky.rdb");
    // Long enough that OpenDAL's own retries (from 200 ms) meet a closed door too.
    std::thread::sleep(Duration::from_millis(1500));
    proxy.up();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "retries should carry the backup through: {stderr}");
    assert!(stderr.contains("retried") && stderr.contains("requests after transient network errors"), "{stderr}");
    v.ok(&["check", "--read-data"]);
    assert!(v.restore("latest", &v.dir.path().join("flaky.out")) == std::fs::read(&input).unwrap());
}

/// An HTTP proxy on a free port in front of `target` that logs every request line
/// (`GET /bucket/prefix/index/...`) and can answer every Nth request of a kind with a 503.
/// It asks both sides to close after each exchange, so every connection carries one request.
pub struct HttpProxy {
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
    faults: Arc<Mutex<Faults>>,
    /// Requests answered with a 503 so far.
    pub failed: Arc<AtomicU64>,
}

/// Which requests the proxy fails: every `every`th whose request line starts with `prefix`.
#[derive(Default)]
struct Faults {
    every: u64,
    prefix: String,
    seen: u64,
}

impl Faults {
    /// Whether this request is one to fail.
    fn hit(&mut self, line: &str) -> bool {
        if self.every == 0 || !line.starts_with(&self.prefix) {
            return false;
        }
        self.seen += 1;
        self.seen % self.every == 0
    }
}

impl HttpProxy {
    pub fn start(target: u16) -> HttpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let (log, faults, failed): (Arc<Mutex<Vec<String>>>, Arc<Mutex<Faults>>, Arc<AtomicU64>) = Default::default();
        let (l, fa, f) = (log.clone(), faults.clone(), failed.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (l, fa, f) = (l.clone(), fa.clone(), f.clone());
                std::thread::spawn(move || {
                    let _ = exchange(client, target, &l, &fa, &f);
                });
            }
        });
        HttpProxy { port, log, faults, failed }
    }

    /// From now on answers every `n`th request whose request line starts with `prefix`
    /// (`PUT /bucket/prefix/data/`) with 503 Service Unavailable; 0 fails none.
    pub fn fail_every(&self, n: u64, prefix: &str) {
        *self.faults.lock().unwrap() = Faults { every: n, prefix: prefix.to_string(), seen: 0 };
    }

    /// The request lines logged since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

/// Reads an HTTP head (through the blank line).
fn read_head(r: &mut impl std::io::BufRead) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line);
    }
}

/// The head with `Connection: close` instead of any Connection header.
fn closing(head: &[String]) -> String {
    let mut out: String = head
        .iter()
        .filter(|h| !h.to_ascii_lowercase().starts_with("connection:"))
        .map(|h| format!("{h}\r\n"))
        .collect();
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn exchange(client: TcpStream, target: u16, log: &Mutex<Vec<String>>, faults: &Mutex<Faults>, failed: &AtomicU64) -> std::io::Result<()> {
    let mut from_client = std::io::BufReader::new(client.try_clone()?);
    let mut to_client = client;
    let head = read_head(&mut from_client)?;
    let length: u64 = head
        .iter()
        .find_map(|h| h.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.trim().to_string()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let line = head.first().cloned().unwrap_or_default();
    let fail = faults.lock().unwrap().hit(&line);
    log.lock().unwrap().push(line);
    if fail {
        std::io::copy(&mut (&mut from_client).take(length), &mut std::io::sink())?;
        failed.fetch_add(1, Ordering::SeqCst);
        let body = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
        write!(to_client, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
        return to_client.shutdown(Shutdown::Both);
    }
    let mut server = TcpStream::connect(("127.0.0.1", target))?;
    server.write_all(closing(&head).as_bytes())?;
    std::io::copy(&mut (&mut from_client).take(length), &mut server)?;
    let mut from_server = std::io::BufReader::new(server);
    let reply = read_head(&mut from_server)?;
    to_client.write_all(closing(&reply).as_bytes())?;
    std::io::copy(&mut from_server, &mut to_client)?;
    to_client.shutdown(Shutdown::Both)
}
