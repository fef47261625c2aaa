//! Sentinel discovery: ask a Sentinel where a named master is, then connect to it.

use super::command;
use super::error::{Result, SourceError};
use super::transport::ConnectOptions;
use super::url::RedisUrl;

/// `SENTINEL GET-MASTER-ADDR-BY-NAME name` at `sentinel` (`host:port`, plain TCP, no
/// credentials): the master's URL is `template` (credentials, TLS, db) at that address.
pub fn master_url(sentinel: &str, master_name: &str, template: &RedisUrl, opts: &ConnectOptions) -> Result<RedisUrl> {
    let at = RedisUrl::parse(&format!("redis://{sentinel}"))
        .map_err(|_| SourceError::InvalidUrl(format!("--sentinel wants HOST:PORT, got {sentinel:?}")))?;
    let addr = at.addr();
    let mut con = command::connect(&at, opts)?;
    let reply: redis::Value = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(master_name)
        .query(&mut con)
        .map_err(|e| command::map_err(&addr, "SENTINEL GET-MASTER-ADDR-BY-NAME", e))?;
    let fail = |msg: String| SourceError::Sentinel { addr: addr.clone(), msg };
    let items = match reply {
        redis::Value::Array(items) => items,
        redis::Value::Nil => return Err(fail(format!("knows no master named {master_name:?} (SENTINEL MASTERS lists the names it monitors)"))),
        other => return Err(fail(format!("unexpected reply {other:?}"))),
    };
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    match items.as_slice() {
        [host, port] => {
            let host = text(host).ok_or_else(|| fail("master address is not text".into()))?;
            let port = text(port).and_then(|p| p.parse::<u16>().ok()).ok_or_else(|| fail("master port is not a number".into()))?;
            Ok(template.with_host_port(&host, port))
        }
        _ => Err(fail(format!("expected [host, port], got {} items", items.len()))),
    }
}
