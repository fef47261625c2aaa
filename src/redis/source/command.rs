//! Ordinary command connection (the `redis` crate), sharing credentials and TLS with replication.

use std::io;

use redis::{ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisConnectionInfo};

use super::error::{Result, SourceError};
use super::transport::ConnectOptions;
use super::url::RedisUrl;

/// Open a `redis` crate connection to `url` with the same time-outs and TLS trust as the streams.
///
/// The crate only connects; the first exchange is ours (`AUTH` with a password, else `PING`),
/// so each failure is named: no TCP connection, a peer that never answers (not Redis, or
/// TLS to a plain port), a password that is missing or wrong.
pub fn connect(url: &RedisUrl, opts: &ConnectOptions) -> Result<redis::Connection> {
    url.check_credentials()?;
    let addr = url.addr();
    let conn_addr = if let Some(path) = &url.socket {
        ConnectionAddr::Unix(path.clone())
    } else if url.tls {
        ConnectionAddr::TcpTls { host: url.host.clone(), port: url.port, insecure: opts.tls_insecure, tls_params: None }
    } else {
        ConnectionAddr::Tcp(url.host.clone(), url.port)
    };
    let settings = RedisConnectionInfo::default().set_skip_set_lib_name();
    let info = conn_addr
        .into_connection_info()
        .map_err(|e| map_err(&addr, "connect", e))?
        .set_redis_settings(settings);
    let client = if url.tls {
        let certs = redis::TlsCertificates { client_tls: opts.client_pem()?, root_cert: opts.ca_pem()? };
        redis::Client::build_with_tls(info, certs)
    } else {
        redis::Client::open(info)
    }
    .map_err(|e| map_err(&addr, "connect", e))?;
    let mut con = client.get_connection_with_timeout(opts.connect_timeout).map_err(|e| {
        let source = if e.is_timeout() {
            io::Error::new(io::ErrorKind::TimedOut, format!("no TCP connection within {:?}", opts.connect_timeout))
        } else {
            io::Error::other(e.to_string())
        };
        SourceError::Connect { addr: addr.clone(), source }
    })?;
    con.set_read_timeout(Some(opts.read_timeout))
        .and_then(|_| con.set_write_timeout(Some(opts.read_timeout)))
        .map_err(|e| map_err(&addr, "connect", e))?;
    let (name, first) = match &url.password {
        Some(p) => {
            let mut auth = redis::cmd("AUTH");
            if let Some(u) = &url.username {
                auth.arg(u);
            }
            auth.arg(p.expose());
            ("AUTH", auth)
        }
        None => ("PING", redis::cmd("PING")),
    };
    match first.query::<redis::Value>(&mut con) {
        Ok(_) => Ok(con),
        Err(e) if e.is_timeout() => Err(SourceError::NoAnswer { addr, during: name.into(), after: opts.read_timeout }),
        // Any other answer to PING (e.g. NOPERM for an ACL user without it) is from a Redis
        // that lets us in.
        Err(e) if url.password.is_none() && e.code().is_some_and(|c| c != "NOAUTH") => Ok(con),
        Err(e) if url.tls && e.code().is_none() => {
            Err(SourceError::Tls { addr, msg: format!("{name} failed: {e} (is the port a TLS port?)") })
        }
        Err(e) => Err(map_err(&addr, name, e)),
    }
}

/// Run a command whose answer is a text (INFO, CLUSTER NODES, BGSAVE status).
pub(crate) fn text(con: &mut redis::Connection, addr: &str, args: &[&str]) -> Result<String> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let v: redis::Value = cmd.query(con).map_err(|e| map_err(addr, &args.join(" "), e))?;
    match v {
        redis::Value::BulkString(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        redis::Value::SimpleString(s) => Ok(s),
        redis::Value::VerbatimString { text, .. } => Ok(text),
        redis::Value::Okay => Ok("OK".into()),
        other => Err(SourceError::Protocol { addr: addr.to_string(), msg: format!("unexpected reply to {}: {other:?}", args[0]) }),
    }
}

/// Translate a `redis` crate error into the same variants the replication stream uses.
pub(crate) fn map_err(addr: &str, command: &str, e: redis::RedisError) -> SourceError {
    if e.kind() == ErrorKind::AuthenticationFailed {
        return SourceError::WrongPassword { addr: addr.to_string(), reply: e.to_string() };
    }
    if e.is_timeout() {
        return SourceError::Command { addr: addr.to_string(), msg: format!("{command}: timed out (read time-out reached)") };
    }
    if let Some(code) = e.code() {
        let reply = format!("{code} {}", e.detail().unwrap_or(""));
        return SourceError::from_reply(addr, command, &reply);
    }
    SourceError::Command { addr: addr.to_string(), msg: format!("{command}: {e}") }
}
