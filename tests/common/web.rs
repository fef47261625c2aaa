//! `rdbvault serve` on a free loopback port, and a small HTTP/1.1 client (plain or TLS)
//! that shows the tests every status, header and byte the server sends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::vault::Vault;

/// A running `rdbvault serve`, killed on drop.
pub struct Serve {
    child: Child,
    /// `127.0.0.1:PORT` it listens on.
    pub addr: String,
    /// CA to trust when it serves TLS.
    pub ca: Option<std::path::PathBuf>,
}

/// One HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The `error` message of a failed request.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no error in {}", String::from_utf8_lossy(&self.body))).to_string()
    }

    /// Everything it sent, as text (for greps).
    pub fn text(&self) -> String {
        let mut s: String = self.headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
        s.push_str(&String::from_utf8_lossy(&self.body));
        s
    }
}

impl Serve {
    /// Starts `rdbvault -r REPO serve --listen 127.0.0.1:0 ARGS` and waits for its address.
    pub fn start(vault: &Vault, args: &[&str]) -> Serve {
        Self::try_start(vault, args).unwrap_or_else(|e| panic!("serve did not start: {e}"))
    }

    /// Like [`Serve::start`]; the error is what it printed when it exited instead.
    pub fn try_start(vault: &Vault, args: &[&str]) -> Result<Serve, String> {
        let mut a = vec!["serve"];
        if !args.contains(&"--listen") {
            a.extend(["--listen", "127.0.0.1:0"]);
        }
        a.extend_from_slice(args);
        let mut child = vault
            .cmd(&a)
            .env("XDG_STATE_HOME", vault.dir.path().join("state"))
            .env("XDG_CONFIG_HOME", vault.dir.path().join("config"))
            .env_remove("RDBVAULT_CONFIG")
            .stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn rdbvault serve");
        let mut err = BufReader::new(child.stderr.take().expect("stderr"));
        let mut said = String::new();
        loop {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.wait();
                return Err(said);
            }
            said.push_str(&line);
            if let Some(url) = line.trim().strip_prefix("rdbvault serve: listening on ") {
                let addr = url.trim_end_matches('/').split("://").nth(1).expect("address").to_string();
                // Keep draining stderr so the server never blocks on a full pipe.
                std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
                return Ok(Serve { child, addr, ca: None });
            }
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], b"")
    }

    /// A request with extra headers (`Host` is set unless given).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        http(&self.addr, self.ca.as_deref(), method, path, headers, body)
    }

    /// GET with a session cookie.
    pub fn get_with(&self, path: &str, cookie: &str) -> Reply {
        self.request("GET", path, &[("Cookie", cookie)], b"")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request to `addr` (over TLS trusting `ca` when given).
pub fn http(addr: &str, ca: Option<&Path>, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let tcp = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    tcp.set_read_timeout(Some(Duration::from_secs(120))).ok();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut raw = Vec::new();
    match ca {
        None => exchange(tcp, &req, body, &mut raw),
        Some(ca) => exchange(tls_client(tcp, ca), &req, body, &mut raw),
    }
    parse(&raw)
}

/// Sends the request and reads the answer: up to its Content-Length when it gives one
/// (a server may keep the connection open despite `Connection: close`), else to the end.
fn exchange(mut s: impl Read + Write, req: &str, body: &[u8], raw: &mut Vec<u8>) {
    s.write_all(req.as_bytes()).expect("send request");
    s.write_all(body).expect("send body");
    s.flush().expect("flush");
    let mut buf = [0u8; 64 * 1024];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let len = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
            if len.is_some_and(|n| raw.len() >= end + 4 + n) {
                return;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

/// A TLS stream to 127.0.0.1 trusting only `ca`.
fn tls_client(tcp: TcpStream, ca: &Path) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(c.expect("CA cert")).expect("add CA");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    rustls::StreamOwned::new(rustls::ClientConnection::new(Arc::new(cfg), name).expect("TLS client"), tcp)
}

fn parse(raw: &[u8]) -> Reply {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no HTTP header in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status line");
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    let mut body = raw[end + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = unchunk(&body);
    }
    Reply { status, headers, body }
}

fn unchunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else { return out };
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
}

/// A `[serve]` config file in `dir` with these lines; returns its path.
pub fn config(dir: &Path, lines: &str) -> std::path::PathBuf {
    let p = dir.join("rdbvault.toml");
    std::fs::write(&p, format!("[serve]\n{lines}\n")).expect("write config");
    p
}

/// The Argon2id PHC hash of `secret` (what `[serve] password_hash` holds).
pub fn hash(secret: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::from_b64("cmRidmF1bHR0ZXN0c2FsdA").expect("salt");
    argon2::Argon2::default().hash_password(secret.as_bytes(), &salt).expect("hash").to_string()
}
