//! The failure webhook: a JSON POST `{job, repo, error}` to `[serve] webhook`, over plain
//! HTTP or HTTPS (rustls with the Mozilla roots), ten seconds at most.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::ops::jobs::JobStatus;
use crate::ops::spec::JobSpec;

const TIMEOUT: Duration = Duration::from_secs(10);

/// The notice for a failed job: which job, which repository (by name) and the error.
pub fn body(status: &JobStatus, spec: &JobSpec) -> serde_json::Value {
    serde_json::json!({
        "job": {
            "id": status.id,
            "kind": status.kind,
            "profile": spec.profile,
            "trigger": status.trigger,
            "started_ms": status.started_ms,
            "finished_ms": status.finished_ms,
        },
        "repo": status.repo,
        "error": status.message,
    })
}

/// POSTs the notice; `Err` says why it was not accepted (no 2xx answer).
pub fn post(url: &str, status: &JobStatus, spec: &JobSpec) -> Result<(), String> {
    let (tls, rest) = match url.split_once("://") {
        Some(("http", r)) => (false, r),
        Some(("https", r)) => (true, r),
        _ => return Err("the URL must start with http:// or https://".into()),
    };
    let (hostport, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (h, p.parse().map_err(|_| format!("bad port in {hostport:?}"))?),
        _ => (hostport, if tls { 443 } else { 80 }),
    };
    let body = body(status, spec).to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: rdbvault/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    let addr = (host.trim_matches(|c| c == '[' || c == ']'), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("cannot connect to {hostport}: {e}"))?;
    tcp.set_read_timeout(Some(TIMEOUT)).and_then(|()| tcp.set_write_timeout(Some(TIMEOUT))).map_err(|e| e.to_string())?;
    let answer = if tls { exchange(tls_stream(host, tcp)?, &request)? } else { exchange(tcp, &request)? };
    let line = answer.lines().next().unwrap_or("");
    let code: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("not an HTTP answer: {line:?}"))?;
    if (200..300).contains(&code) {
        Ok(())
    } else {
        Err(format!("answered {line}"))
    }
}

fn exchange(mut s: impl Read + Write, request: &str) -> Result<String, String> {
    s.write_all(request.as_bytes()).and_then(|()| s.flush()).map_err(|e| format!("send: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    // The status line is all we need.
    while !head.contains(&b'\n') {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read the answer: {e}")),
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn tls_stream(host: &str, tcp: TcpStream) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.trim_matches(|c| c == '[' || c == ']').to_string()).map_err(|e| format!("bad host name {host}: {e}"))?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// The URL without its query and user info (they may hold a token), for messages.
pub fn redact(url: &str) -> String {
    let base = url.split(['?', '#']).next().unwrap_or(url);
    match base.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) if !host.contains('/') || rest.find('@') < rest.find('/') => format!("{scheme}://<redacted>@{host}"),
            _ => format!("{scheme}://{rest}"),
        },
        None => base.to_string(),
    }
}
