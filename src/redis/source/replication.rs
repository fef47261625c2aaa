//! Live mode: stream the RDB over the replication protocol, as `redis-cli --rdb` does.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::time::Duration;

use super::error::{Result, SourceError};
use super::transport::{ConnectOptions, Transport};
use super::url::RedisUrl;

/// Length of the random end mark of a diskless (`$EOF:`) transfer.
pub const EOF_MARK_LEN: usize = 40;
/// Longest protocol line accepted before the payload (defends against a garbage peer).
const MAX_LINE: u64 = 64 * 1024;
/// Bytes read from the socket at a time in diskless mode.
const CHUNK: usize = 64 * 1024;

/// How the master frames the payload.
enum Payload {
    /// Disk-based sync: `$<len>\r\n` then exactly `len` bytes.
    Sized { total: u64, received: u64 },
    /// Diskless sync: `$EOF:<mark>\r\n`, payload, mark; `buf[start..]` not yet handed out.
    /// `tail`: bytes read past the end mark (the replication stream that follows, for `follow`).
    Eof { mark: [u8; EOF_MARK_LEN], buf: Vec<u8>, start: usize, finished: bool, received: u64, tail: Vec<u8> },
}

/// The master's answer to a `PSYNC`: a full sync (an RDB, then the stream) or a partial resync.
pub enum Psync<T = Transport> {
    /// `+FULLRESYNC`: the RDB payload; the stream follows it ([`ReplicationStream::into_rest`]).
    Full(ReplicationStream<T>),
    /// `+CONTINUE [new replid]`: the stream continues at the offset asked for.
    Continue {
        /// The new replication id after a failover, if the master sent one.
        replid: Option<String>,
        /// The connection, positioned at the first byte of the stream.
        reader: BufReader<T>,
    },
}

/// The RDB of one master as a `Read`: Ok(0) only after the complete payload, an error on any early end.
/// `T` is the byte pipe: a [`Transport`] in use, any `Read + Write` under test.
pub struct ReplicationStream<T = Transport> {
    addr: String,
    reader: BufReader<T>,
    read_timeout: Duration,
    payload: Payload,
    /// RDB bytes already read off the wire to learn the RDB version; handed out first.
    prefix: Vec<u8>,
    prefix_pos: usize,
    replid: Option<String>,
    repl_offset: Option<u64>,
    sync_time_ms: u64,
    rdb_version: Option<u32>,
}

impl<T: Read + Write> std::fmt::Debug for ReplicationStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationStream")
            .field("addr", &self.addr)
            .field("payload_len", &self.payload_len())
            .field("rdb_version", &self.rdb_version)
            .finish()
    }
}

impl ReplicationStream {
    /// Connect, authenticate, ask for a full sync and wait until the payload starts.
    pub fn connect(url: &RedisUrl, opts: &ConnectOptions) -> Result<Self> {
        let transport = Transport::connect(url, opts)?;
        ReplicationStream::over(url, transport, opts.read_timeout)
    }
}

impl<T: Read + Write> ReplicationStream<T> {
    /// The replication handshake and payload framing over an open pipe (the parser of the master's bytes).
    pub fn over(url: &RedisUrl, pipe: T, read_timeout: Duration) -> Result<Self> {
        let mut s = Handshake::open(url, pipe, read_timeout)?;
        // Older servers do not know rdb-only; they just also send the live stream, which we never read.
        match s.command("REPLCONF", &[b"REPLCONF", b"rdb-only", b"1"]) {
            Ok(_) | Err(SourceError::Server { .. }) => {}
            Err(e) => return Err(e),
        }
        s.send(&[b"PSYNC", b"?", b"-1"])?;
        match Self::answer(s)? {
            Psync::Full(stream) => Ok(stream),
            Psync::Continue { .. } => Err(SourceError::Protocol { addr: url.addr(), msg: "unexpected +CONTINUE to PSYNC ? -1".into() }),
        }
    }

    /// Like a replica: `PSYNC replid offset` to continue after `from` (the next byte wanted), else a full sync.
    pub fn psync(url: &RedisUrl, pipe: T, read_timeout: Duration, from: Option<(&str, u64)>) -> Result<Psync<T>> {
        let mut s = Handshake::open(url, pipe, read_timeout)?;
        s.command("REPLCONF", &[b"REPLCONF", b"capa", b"psync2"])?;
        match from {
            Some((replid, offset)) => s.send(&[b"PSYNC", replid.as_bytes(), offset.to_string().as_bytes()])?,
            None => s.send(&[b"PSYNC", b"?", b"-1"])?,
        }
        Self::answer(s)
    }

    /// The connection after the payload was read to its end, and the stream bytes already read past it.
    pub fn into_rest(self) -> (BufReader<T>, Vec<u8>) {
        let tail = match self.payload {
            Payload::Eof { tail, .. } => tail,
            Payload::Sized { .. } => Vec::new(),
        };
        (self.reader, tail)
    }

    /// Reads the master's answer to PSYNC up to the payload (full sync) or the stream (partial).
    fn answer(mut s: Handshake<T>) -> Result<Psync<T>> {
        let (addr, read_timeout) = (s.addr.clone(), s.timeout);
        let mut replid = None;
        let mut repl_offset = None;
        let mut sync_time_ms = now_ms();
        let payload = loop {
            let line = s.line("waiting for the master to fork")?;
            if line.is_empty() {
                continue; // keepalive newline while the master forks
            }
            if let Some(rest) = line.strip_prefix("+FULLRESYNC ") {
                let mut it = rest.split_whitespace();
                replid = it.next().map(str::to_string);
                repl_offset = it.next().and_then(|o| o.parse().ok());
                sync_time_ms = now_ms();
                continue;
            }
            if let Some(rest) = line.strip_prefix("+CONTINUE") {
                let replid = rest.split_whitespace().next().map(str::to_string);
                return Ok(Psync::Continue { replid, reader: s.reader });
            }
            if let Some(err) = line.strip_prefix('-') {
                return Err(SourceError::from_reply(&addr, "PSYNC", err));
            }
            if let Some(mark) = line.strip_prefix("$EOF:") {
                let mark: [u8; EOF_MARK_LEN] = mark.as_bytes().try_into().map_err(|_| SourceError::Protocol {
                    addr: addr.clone(),
                    msg: format!("EOF mark has {} bytes, expected {EOF_MARK_LEN}", mark.len()),
                })?;
                break Payload::Eof { mark, buf: Vec::with_capacity(CHUNK + EOF_MARK_LEN), start: 0, finished: false, received: 0, tail: Vec::new() };
            }
            if let Some(len) = line.strip_prefix('$') {
                let total = len.parse::<u64>().map_err(|_| SourceError::Protocol {
                    addr: addr.clone(),
                    msg: format!("bad payload length {len:?}"),
                })?;
                break Payload::Sized { total, received: 0 };
            }
            return Err(SourceError::Protocol { addr, msg: format!("unexpected reply to PSYNC: {:?}", truncate(&line)) });
        };
        let mut stream = ReplicationStream {
            addr,
            reader: s.reader,
            read_timeout,
            payload,
            prefix: Vec::new(),
            prefix_pos: 0,
            replid,
            repl_offset,
            sync_time_ms,
            rdb_version: None,
        };
        stream.peek_rdb_header()?;
        Ok(Psync::Full(stream))
    }

    /// host:port this stream comes from.
    pub fn addr(&self) -> &str {
        &self.addr
    }
    /// Replication id from `+FULLRESYNC`, identifying the dataset history.
    pub fn replid(&self) -> Option<&str> {
        self.replid.as_deref()
    }
    /// Master replication offset the snapshot corresponds to.
    pub fn repl_offset(&self) -> Option<u64> {
        self.repl_offset
    }
    /// Unix time (ms) when the master accepted the full sync, i.e. about when it forked.
    pub fn sync_time_ms(&self) -> u64 {
        self.sync_time_ms
    }
    /// RDB format version from the payload header (`REDIS0010` → 10).
    pub fn rdb_version(&self) -> Option<u32> {
        self.rdb_version
    }
    /// Payload size for a disk-based sync; `None` for diskless (size unknown up front).
    pub fn payload_len(&self) -> Option<u64> {
        match self.payload {
            Payload::Sized { total, .. } => Some(total),
            Payload::Eof { .. } => None,
        }
    }

    fn peek_rdb_header(&mut self) -> Result<()> {
        let mut head = [0u8; 9];
        let mut got = 0;
        while got < head.len() {
            let n = self.read_payload(&mut head[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        self.prefix = head[..got].to_vec();
        if !self.prefix.starts_with(b"REDIS") {
            return Err(SourceError::Protocol { addr: self.addr.clone(), msg: "payload does not start with an RDB header".into() });
        }
        self.rdb_version = std::str::from_utf8(&self.prefix[5..]).ok().and_then(|v| v.parse().ok());
        Ok(())
    }

    fn read_payload(&mut self, out: &mut [u8]) -> Result<usize> {
        let addr = &self.addr;
        let timeout = self.read_timeout;
        match &mut self.payload {
            Payload::Sized { total, received } => {
                let remaining = *total - *received;
                if remaining == 0 {
                    return Ok(0);
                }
                let want = out.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
                let n = self.reader.read(&mut out[..want]).map_err(|e| drop_or_io(addr, "reading the RDB payload", timeout, e, *received, total.to_string()))?;
                if n == 0 {
                    return Err(SourceError::Truncated { addr: addr.clone(), at: *received, total: total.to_string() });
                }
                *received += n as u64;
                Ok(n)
            }
            Payload::Eof { mark, buf, start, finished, received, tail } => loop {
                let safe_end = if *finished { buf.len() } else { buf.len().saturating_sub(EOF_MARK_LEN) };
                if *start < safe_end {
                    let n = out.len().min(safe_end - *start);
                    out[..n].copy_from_slice(&buf[*start..*start + n]);
                    *start += n;
                    *received += n as u64;
                    return Ok(n);
                }
                if *finished {
                    return Ok(0);
                }
                buf.drain(..*start);
                *start = 0;
                let old = buf.len();
                buf.resize(old + CHUNK, 0);
                let r = self.reader.read(&mut buf[old..]);
                let n = match r {
                    Ok(n) => n,
                    Err(e) => {
                        buf.truncate(old);
                        let at = *received + old as u64;
                        return Err(drop_or_io(addr, "reading the diskless RDB payload", timeout, e, at, "unknown (end mark never arrived)".into()));
                    }
                };
                buf.truncate(old + n);
                if n == 0 {
                    return Err(SourceError::Truncated {
                        addr: addr.clone(),
                        at: *received + old as u64,
                        total: "unknown (end mark never arrived)".into(),
                    });
                }
                let from = old.saturating_sub(EOF_MARK_LEN - 1);
                if let Some(p) = buf[from..].windows(EOF_MARK_LEN).position(|w| w == &mark[..]) {
                    *tail = buf[from + p + EOF_MARK_LEN..].to_vec();
                    buf.truncate(from + p);
                    *finished = true;
                }
            },
        }
    }
}

impl<T: Read + Write> Read for ReplicationStream<T> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.prefix_pos < self.prefix.len() {
            let n = out.len().min(self.prefix.len() - self.prefix_pos);
            out[..n].copy_from_slice(&self.prefix[self.prefix_pos..self.prefix_pos + n]);
            self.prefix_pos += n;
            return Ok(n);
        }
        self.read_payload(out).map_err(SourceError::into_io)
    }
}

/// A [`ReplicationStream`] that connects on first read, so many masters are not forked at once.
pub struct LazyReplicationStream {
    url: RedisUrl,
    opts: ConnectOptions,
    inner: Option<ReplicationStream>,
}

impl LazyReplicationStream {
    /// Remember where to connect; nothing happens until the first `read`.
    pub fn new(url: RedisUrl, opts: ConnectOptions) -> Self {
        LazyReplicationStream { url, opts, inner: None }
    }

    /// The connected stream, once the first read happened (for its replid, offset, RDB version).
    pub fn stream(&self) -> Option<&ReplicationStream> {
        self.inner.as_ref()
    }
}

impl Read for LazyReplicationStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.inner.is_none() {
            self.inner = Some(ReplicationStream::connect(&self.url, &self.opts).map_err(SourceError::into_io)?);
        }
        match self.inner.as_mut() {
            Some(s) => s.read(out),
            None => Err(io::Error::other("replication stream not connected")),
        }
    }
}

fn drop_or_io(addr: &str, during: &str, timeout: Duration, e: io::Error, at: u64, total: String) -> SourceError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe => {
            SourceError::Truncated { addr: addr.to_string(), at, total }
        }
        _ => SourceError::io(addr, during, timeout, e),
    }
}

/// Connection state before the payload: line-oriented RESP.
struct Handshake<T> {
    addr: String,
    reader: BufReader<T>,
    timeout: Duration,
}

impl<T: Read + Write> Handshake<T> {
    /// Connects the protocol: `AUTH` when the URL has a password, then `REPLCONF capa eof`.
    fn open(url: &RedisUrl, pipe: T, timeout: Duration) -> Result<Self> {
        let mut s = Handshake { addr: url.addr(), reader: BufReader::with_capacity(CHUNK, pipe), timeout };
        if let Some(pw) = &url.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(u) = &url.username {
                args.push(u.as_bytes());
            }
            args.push(pw.expose().as_bytes());
            s.command("AUTH", &args)?;
        }
        s.command("REPLCONF", &[b"REPLCONF", b"capa", b"eof"])?;
        Ok(s)
    }

    fn send(&mut self, args: &[&[u8]]) -> Result<()> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        let w = self.reader.get_mut();
        let r = w.write_all(&out).and_then(|_| w.flush());
        zeroize::Zeroize::zeroize(&mut out);
        r.map_err(|e| SourceError::io(&self.addr, "sending a command", self.timeout, e))
    }

    /// One reply line without CR LF; an error if the connection closed.
    fn line(&mut self, during: &str) -> Result<String> {
        let mut raw = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut raw)
            .map_err(|e| SourceError::io(&self.addr, during, self.timeout, e))?;
        if n == 0 {
            return Err(SourceError::Protocol { addr: self.addr.clone(), msg: format!("connection closed while {during}") });
        }
        if raw.last() != Some(&b'\n') {
            return Err(SourceError::Protocol { addr: self.addr.clone(), msg: format!("over-long or cut line while {during}") });
        }
        while matches!(raw.last(), Some(b'\n' | b'\r')) {
            raw.pop();
        }
        Ok(String::from_utf8_lossy(&raw).into_owned())
    }

    /// Send a command that answers with a status line; map error replies.
    fn command(&mut self, name: &str, args: &[&[u8]]) -> Result<String> {
        self.send(args)?;
        let line = self.line(&format!("waiting for the reply to {name}"))?;
        if let Some(err) = line.strip_prefix('-') {
            return Err(SourceError::from_reply(&self.addr, name, err));
        }
        if line.starts_with('+') {
            return Ok(line);
        }
        Err(SourceError::Protocol { addr: self.addr.clone(), msg: format!("unexpected reply to {name}: {:?}", truncate(&line)) })
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
