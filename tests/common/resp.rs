//! A binary-safe RESP2 client with typed replies, for tests that compare raw bytes and reply shapes.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A RESP2 reply, kept as sent so tests can check exact bytes and shapes.
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    /// `+OK`-style status line.
    Simple(String),
    /// `-ERR ...` error line.
    Error(String),
    /// `:n` integer.
    Int(i64),
    /// `$n` bulk string; `None` for the null bulk.
    Bulk(Option<Vec<u8>>),
    /// `*n` array; `None` for the null array.
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// Bulk or simple string bytes; panics otherwise.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Resp::Bulk(Some(b)) => b.clone(),
            Resp::Simple(s) => s.clone().into_bytes(),
            other => panic!("expected a string reply, got {other:?}"),
        }
    }

    /// Lossy UTF-8 text of a string reply.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// Integer reply; panics otherwise.
    pub fn int(&self) -> i64 {
        match self {
            Resp::Int(i) => *i,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    /// Array reply elements; panics otherwise.
    pub fn array(&self) -> Vec<Resp> {
        match self {
            Resp::Array(Some(a)) => a.clone(),
            other => panic!("expected an array reply, got {other:?}"),
        }
    }

    /// Array of string replies as byte vectors.
    pub fn byte_list(&self) -> Vec<Vec<u8>> {
        self.array().iter().map(Resp::bytes).collect()
    }
}

/// A blocking RESP connection; keeps SELECT state across commands.
pub struct RespConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RespConn {
    /// Connects to a loopback port (30 s read timeout, so a hang fails the test).
    pub fn connect(port: u16) -> std::io::Result<RespConn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(RespConn {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    /// Sends a command with binary-safe arguments and returns the reply.
    pub fn cmd_bytes(&mut self, args: &[&[u8]]) -> Resp {
        let mut out = Vec::new();
        encode(&mut out, args);
        self.writer.write_all(&out).expect("write to redis");
        read_reply(&mut self.reader)
    }

    /// Sends a text command and returns the reply (errors come back as `Resp::Error`).
    pub fn cmd(&mut self, args: &[&str]) -> Resp {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.cmd_bytes(&a)
    }

    /// Runs a command and panics on an error reply.
    pub fn ok(&mut self, args: &[&str]) -> Resp {
        let r = self.cmd(args);
        if let Resp::Error(e) = &r {
            panic!("{args:?} failed: {e}");
        }
        r
    }
}

/// Appends one command in RESP wire form (shared by this client and `redis-cli --pipe` input).
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    rdbvault::redis::follow::resp::encode(out, args)
}

fn read_line(r: &mut impl BufRead) -> String {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).expect("read from redis");
    assert!(line.ends_with(b"\r\n"), "bad RESP line {line:?}");
    line.truncate(line.len() - 2);
    String::from_utf8(line).expect("RESP header is UTF-8")
}

fn read_reply(r: &mut impl BufRead) -> Resp {
    let line = read_line(r);
    let (tag, rest) = line.split_at(1);
    match tag {
        "+" => Resp::Simple(rest.to_string()),
        "-" => Resp::Error(rest.to_string()),
        ":" => Resp::Int(rest.parse().expect("integer reply")),
        "$" => {
            let n: i64 = rest.parse().expect("bulk length");
            if n < 0 {
                return Resp::Bulk(None);
            }
            let mut b = vec![0u8; n as usize + 2];
            r.read_exact(&mut b).expect("read bulk");
            b.truncate(n as usize);
            Resp::Bulk(Some(b))
        }
        "*" => {
            let n: i64 = rest.parse().expect("array length");
            if n < 0 {
                return Resp::Array(None);
            }
            Resp::Array(Some((0..n).map(|_| read_reply(r)).collect()))
        }
        other => panic!("unknown RESP tag {other:?}"),
    }
}
