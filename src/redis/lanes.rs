//! The connections of `restore --to`: `RESTORE` commands packed into pipelined batches, one
//! lane (worker and connection) per connection, and every reply of every batch counted.
//!
//! A lane confirms keys in the order it sent them; it remembers the last key confirmed before
//! its first failure ([`Lane::last`]) and the sequence number of that failure ([`Lane::gap`]),
//! so the load can name a key up to which every key in RDB order was written. A cluster
//! lane follows `MOVED` and `ASK` replies to the node named, on a connection of its own.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::ops::Range;

use indicatif::ProgressBar;
use redis::{ConnectionLike, ServerError, ServerErrorKind, Value};

use crate::rdb::Record;
use crate::redis::keyscan::KeyRef;
use crate::redis::load_error::LoadError;
use crate::redis::source::command::{self, map_err};
use crate::redis::source::{ConnectOptions, RedisUrl};

/// Redirects followed for one key before giving up (a cluster that is resharding).
const MAX_REDIRECTS: usize = 5;

/// Appends one command in RESP: an array of bulk strings.
pub(crate) fn pack(out: &mut Vec<u8>, args: &[&[u8]]) {
    let _ = write!(out, "*{}\r\n", args.len());
    for a in args {
        let _ = write!(out, "${}\r\n", a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Digits of `n` in decimal.
fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// What one command of a batch was.
pub(crate) enum Sent {
    Select,
    /// `RESTORE` of the `seq`-th key sent, whose name is `key` and whose command is `span` of the batch's bytes.
    Key { seq: u64, db: u64, key: Range<usize>, span: Range<usize> },
}

/// Commands for one connection, packed, with what each one was.
#[derive(Default)]
pub(crate) struct Batch {
    buf: Vec<u8>,
    sent: Vec<Sent>,
    pub keys: usize,
    pub bytes: usize,
}

impl Batch {
    /// Queues `SELECT db`.
    pub fn select(&mut self, db: u64) {
        pack(&mut self.buf, &[b"SELECT", db.to_string().as_bytes()]);
        self.sent.push(Sent::Select);
    }

    /// Queues `RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME n | FREQ n]`: the expiry
    /// stays absolute, and the LRU idle time or LFU counter the RDB recorded comes along
    /// (a target whose maxmemory-policy uses the other one ignores it). The payload is built
    /// in place in the batch: the record's type byte and value bytes exactly as in the RDB,
    /// the RDB `version` and the CRC64 of both (the `DUMP` format), with no copy of its own.
    pub fn restore(&mut self, seq: u64, db: u64, rec: &Record, version: u16, replace: bool) {
        let start = self.buf.len();
        let args = 4 + usize::from(replace) + usize::from(rec.expire_ms.is_some()) + if rec.idle.is_some() || rec.freq.is_some() { 2 } else { 0 };
        let _ = write!(self.buf, "*{args}\r\n$7\r\nRESTORE\r\n${}\r\n", rec.key.len());
        let key = self.buf.len()..self.buf.len() + rec.key.len();
        self.buf.extend_from_slice(&rec.key);
        let ttl = rec.expire_ms.unwrap_or(0);
        let payload_len = rec.raw.len() + 10;
        let _ = write!(self.buf, "\r\n${}\r\n{ttl}\r\n${payload_len}\r\n", decimal_len(ttl));
        let payload = self.buf.len();
        self.buf.extend_from_slice(&rec.raw);
        self.buf.extend_from_slice(&version.to_le_bytes());
        let crc = crate::rdb::crc64(0, &self.buf[payload..]);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf.extend_from_slice(b"\r\n");
        if replace {
            self.buf.extend_from_slice(b"$7\r\nREPLACE\r\n");
        }
        if rec.expire_ms.is_some() {
            self.buf.extend_from_slice(b"$6\r\nABSTTL\r\n");
        }
        if let Some(n) = rec.idle {
            let _ = write!(self.buf, "$8\r\nIDLETIME\r\n${}\r\n{n}\r\n", decimal_len(n));
        } else if let Some(n) = rec.freq {
            let _ = write!(self.buf, "$4\r\nFREQ\r\n${}\r\n{n}\r\n", decimal_len(u64::from(n)));
        }
        self.sent.push(Sent::Key { seq, db, key, span: start..self.buf.len() });
        self.keys += 1;
        self.bytes += payload_len;
    }

    /// Sequence number of the first key of the batch.
    pub fn first_seq(&self) -> Option<u64> {
        self.sent.iter().find_map(|s| match s {
            Sent::Key { seq, .. } => Some(*seq),
            Sent::Select => None,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }
}

/// What every lane needs to know about the load.
pub(crate) struct Ctx<'a> {
    /// RDB version of the payloads.
    pub version: u16,
    pub skip_existing: bool,
    pub progress: Option<&'a ProgressBar>,
}

/// One connection's share of a load and what its target confirmed.
pub(crate) struct Lane {
    pub addr: String,
    pub written: u64,
    pub per_db: BTreeMap<u64, u64>,
    /// The last key confirmed before the lane's first failure: sequence number and `db:key`.
    pub last: Option<(u64, String)>,
    /// Sequence number of the first key not confirmed.
    pub gap: Option<u64>,
    /// Keys left alone as existing (`--skip-existing`).
    pub skipped: u64,
    /// Keys sent whose replies never came (the connection broke).
    pub unknown: u64,
    pub payload_bytes: u64,
    /// Why the lane stopped.
    pub failed: Option<LoadError>,
    /// Cluster nodes named by `MOVED`/`ASK`: how to reach them, and the connections made.
    redirect: Option<(RedisUrl, ConnectOptions)>,
    nodes: HashMap<String, redis::Connection>,
}

impl Lane {
    pub fn new(addr: String, redirect: Option<(RedisUrl, ConnectOptions)>) -> Lane {
        Lane {
            addr,
            written: 0,
            per_db: BTreeMap::new(),
            last: None,
            gap: None,
            skipped: 0,
            unknown: 0,
            payload_bytes: 0,
            failed: None,
            redirect,
            nodes: HashMap::new(),
        }
    }

    fn gap_at(&mut self, seq: Option<u64>) {
        if let Some(s) = seq {
            self.gap = Some(self.gap.map_or(s, |g| g.min(s)));
        }
    }

    /// Sends a batch and checks every reply; false once the lane has failed (a failed lane
    /// sends nothing more, and counts later batches as not written).
    pub fn deliver(&mut self, con: &mut dyn ConnectionLike, batch: &Batch, ctx: &Ctx<'_>) -> bool {
        if batch.is_empty() {
            return self.failed.is_none();
        }
        if self.failed.is_some() {
            self.gap_at(batch.first_seq());
            return false;
        }
        self.payload_bytes += batch.bytes as u64;
        let replies = match con.req_packed_commands(&batch.buf, 0, batch.sent.len()) {
            Ok(r) => r,
            Err(e) => {
                self.unknown += batch.keys as u64;
                self.gap_at(batch.first_seq());
                self.failed = Some(map_err(&self.addr, "RESTORE", e).into());
                return false;
            }
        };
        let before = self.written;
        // The last key confirmed before the first failure (named once per batch, not per key).
        let mut confirmed = None;
        for (what, reply) in batch.sent.iter().zip(replies) {
            let (seq, db, key, span) = match what {
                Sent::Select => {
                    if let Value::ServerError(e) = reply {
                        self.gap_at(batch.first_seq());
                        self.failed.get_or_insert_with(|| command::map_err(&self.addr, "SELECT", e.into()).into());
                    }
                    continue;
                }
                Sent::Key { seq, db, key, span } => (*seq, *db, &batch.buf[key.clone()], span),
            };
            let reply = match reply {
                Value::ServerError(e) if is_redirect(&e) && self.redirect.is_some() => match self.follow(&batch.buf[span.clone()], e) {
                    Ok(v) => v,
                    Err(err) => {
                        self.gap_at(Some(seq));
                        self.failed.get_or_insert(err);
                        continue;
                    }
                },
                other => other,
            };
            match reply {
                Value::ServerError(e) if ctx.skip_existing && e.code() == "BUSYKEY" => self.skipped += 1,
                Value::ServerError(e) => {
                    self.gap_at(Some(seq));
                    if self.failed.is_none() {
                        self.failed = Some(refusal(con, &self.addr, ctx.version, db, key, &e));
                    }
                }
                _ => {
                    self.written += 1;
                    *self.per_db.entry(db).or_default() += 1;
                    if self.gap.is_none() {
                        confirmed = Some((seq, db, key));
                    }
                }
            }
        }
        if let Some((seq, db, key)) = confirmed {
            self.last = Some((seq, KeyRef { db, key: key.to_vec() }.to_string()));
        }
        if let Some(pb) = ctx.progress {
            pb.inc(self.written - before);
        }
        self.failed.is_none()
    }

    /// Sends one command again to the node a `MOVED` or `ASK` reply names (after `ASKING`
    /// for `ASK`), as often as the nodes redirect it; the last reply.
    fn follow(&mut self, cmd: &[u8], first: ServerError) -> Result<Value, LoadError> {
        let mut reply = Value::ServerError(first);
        for _ in 0..MAX_REDIRECTS {
            let Value::ServerError(e) = &reply else { break };
            if !is_redirect(e) {
                break;
            }
            let ask = e.kind() == Some(ServerErrorKind::Ask);
            let node = e.details().and_then(|d| d.split_whitespace().nth(1)).unwrap_or_default().to_string();
            let con = self.node(&node)?;
            let mut packed = Vec::with_capacity(cmd.len() + 20);
            if ask {
                pack(&mut packed, &[b"ASKING"]);
            }
            packed.extend_from_slice(cmd);
            let n = if ask { 2 } else { 1 };
            let mut replies = con.req_packed_commands(&packed, 0, n).map_err(|e| map_err(&node, "RESTORE", e))?;
            reply = replies.pop().unwrap_or(Value::Nil);
        }
        Ok(reply)
    }

    /// The connection to a node named `host:port` in a redirect (made once).
    fn node(&mut self, node: &str) -> Result<&mut redis::Connection, LoadError> {
        let Some((seed, opts)) = &self.redirect else {
            return Err(LoadError::Redirect { addr: self.addr.clone(), node: node.into() });
        };
        if !self.nodes.contains_key(node) {
            let (host, port) = node.rsplit_once(':').unwrap_or_default();
            let port: u16 = port.parse().map_err(|_| LoadError::Redirect { addr: self.addr.clone(), node: node.into() })?;
            let host = if host.is_empty() { seed.host.clone() } else { host.trim_start_matches('[').trim_end_matches(']').to_string() };
            let con = command::connect(&seed.with_host_port(&host, port), opts)?;
            self.nodes.insert(node.to_string(), con);
        }
        self.nodes.get_mut(node).ok_or_else(|| LoadError::Redirect { addr: self.addr.clone(), node: node.into() })
    }
}

fn is_redirect(e: &ServerError) -> bool {
    matches!(e.kind(), Some(ServerErrorKind::Moved | ServerErrorKind::Ask))
}

/// The error for a refused `RESTORE`: a target too old for the payload, or the reply as given.
fn refusal(con: &mut dyn ConnectionLike, addr: &str, version: u16, db: u64, key: &[u8], e: &ServerError) -> LoadError {
    let text = format!("{} {}", e.code(), e.details().unwrap_or(""));
    if text.contains("payload version") {
        return LoadError::TargetTooOld {
            addr: addr.into(),
            rdb_version: version,
            target_version: server_version(con).unwrap_or_else(|| "of unknown version".into()),
        };
    }
    LoadError::Refused { addr: addr.into(), db, key: String::from_utf8_lossy(key).into_owned(), reply: text }
}

/// `redis_version` from `INFO server`, if the server tells.
pub(crate) fn server_version(con: &mut dyn ConnectionLike) -> Option<String> {
    let info: String = redis::cmd("INFO").arg("server").query(con).ok()?;
    info.lines().find_map(|l| l.strip_prefix("redis_version:")).map(|v| v.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_commands_are_packed_resp() {
        let mut rec = Record {
            db: 0,
            key: b"k".to_vec(),
            kind: crate::rdb::ValueKind::String,
            rdb_type: 0,
            encoding: "raw",
            expire_ms: Some(5),
            idle: None,
            freq: None,
            value: crate::rdb::Value::NotDecoded,
            raw: b"\x00\x01v".to_vec(),
            serialized_len: 3,
            offset: 0,
        };
        for (idle, freq, replace) in [(Some(12), None, true), (None, Some(7), false), (None, None, false)] {
            (rec.idle, rec.freq) = (idle, freq);
            let mut batch = Batch::default();
            batch.restore(1, 0, &rec, 11, replace);
            let payload = crate::rdb::dump_payload(0, b"\x01v", 11);
            let (idle, freq) = (idle.map(|n: u64| n.to_string()), freq.map(|n: u8| n.to_string()));
            let mut args: Vec<&[u8]> = vec![b"RESTORE", b"k", b"5", &payload];
            args.extend(replace.then_some(b"REPLACE".as_slice()));
            args.push(b"ABSTTL");
            if let Some(n) = &idle {
                args.extend([b"IDLETIME".as_slice(), n.as_bytes()]);
            } else if let Some(n) = &freq {
                args.extend([b"FREQ".as_slice(), n.as_bytes()]);
            }
            let mut want = Vec::new();
            pack(&mut want, &args);
            assert_eq!(batch.buf, want);
            assert_eq!(batch.bytes, payload.len());
        }
        assert_eq!((decimal_len(0), decimal_len(9), decimal_len(10), decimal_len(u64::MAX)), (1, 1, 2, 20));
    }

    #[test]
    fn packs_resp_arrays() {
        let mut out = Vec::new();
        pack(&mut out, &[b"SELECT", b"12"]);
        pack(&mut out, &[b""]);
        assert_eq!(out, b"*2\r\n$6\r\nSELECT\r\n$2\r\n12\r\n*1\r\n$0\r\n\r\n");
    }
}
