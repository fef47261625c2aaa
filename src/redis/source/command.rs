//! Ordinary command connection (the `redis` crate), sharing credentials and TLS with replication.

use redis::{ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisConnectionInfo};

use super::error::{Result, SourceError};
use super::transport::ConnectOptions;
use super::url::RedisUrl;

/// Open a `redis` crate connection to `url` with the same time-outs and TLS trust as the streams.
pub fn connect(url: &RedisUrl, opts: &ConnectOptions) -> Result<redis::Connection> {
    let addr = url.addr();
    let conn_addr = if url.tls {
        ConnectionAddr::TcpTls { host: url.host.clone(), port: url.port, insecure: opts.tls_insecure, tls_params: None }
    } else {
        ConnectionAddr::Tcp(url.host.clone(), url.port)
    };
    let mut settings = RedisConnectionInfo::default().set_skip_set_lib_name();
    if let Some(u) = &url.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = &url.password {
        settings = settings.set_password(p.expose());
    }
    let info = conn_addr
        .into_connection_info()
        .map_err(|e| map_err(&addr, "connect", e))?
        .set_redis_settings(settings);
    let client = if url.tls {
        let certs = redis::TlsCertificates { client_tls: None, root_cert: opts.ca_pem()? };
        redis::Client::build_with_tls(info, certs)
    } else {
        redis::Client::open(info)
    }
    .map_err(|e| map_err(&addr, "connect", e))?;
    let con = client
        .get_connection_with_timeout(opts.connect_timeout)
        .map_err(|e| map_err(&addr, "connect", e))?;
    con.set_read_timeout(Some(opts.read_timeout))
        .and_then(|_| con.set_write_timeout(Some(opts.read_timeout)))
        .map_err(|e| map_err(&addr, "connect", e))?;
    Ok(con)
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
