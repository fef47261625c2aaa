//! The replication stream's framing: each command is a RESP array of bulk strings.

/// Longest header line accepted (`*<n>` or `$<len>`).
const MAX_HEADER: usize = 32;
/// Most arguments accepted in one command.
const MAX_ARGS: usize = 1 << 24;
/// Longest argument accepted (Redis' own proto-max-bulk-len limit is 512 MiB by default).
const MAX_ARG: usize = 1 << 32;

/// One command at the start of a buffer: its length and where its arguments are.
#[derive(Debug)]
pub struct Frame {
    /// Bytes of the whole command.
    pub len: usize,
    /// Byte ranges of the arguments in the buffer.
    pub args: Vec<(usize, usize)>,
}

/// What the log reader must know about a command.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Kind {
    /// Starts a transaction.
    Multi,
    /// Ends one.
    Exec,
    /// A keepalive (`PING`): not data.
    Ping,
    /// `REPLCONF GETACK`: the master asks for our offset.
    GetAck,
    /// Any other `REPLCONF`: not data.
    Replconf,
    /// A data command.
    Data,
}

impl Frame {
    /// Argument `i`.
    pub fn arg<'a>(&self, buf: &'a [u8], i: usize) -> Option<&'a [u8]> {
        self.args.get(i).map(|&(a, b)| &buf[a..b])
    }

    /// The command's name, lossy, for messages.
    pub fn name(&self, buf: &[u8]) -> String {
        String::from_utf8_lossy(self.arg(buf, 0).unwrap_or_default()).to_ascii_uppercase()
    }

    /// Classifies the command.
    pub fn kind(&self, buf: &[u8]) -> Kind {
        let name = self.arg(buf, 0).unwrap_or_default();
        let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        if is("multi") {
            Kind::Multi
        } else if is("exec") {
            Kind::Exec
        } else if is("ping") {
            Kind::Ping
        } else if is("replconf") {
            match self.arg(buf, 1) {
                Some(a) if a.eq_ignore_ascii_case(b"getack") => Kind::GetAck,
                _ => Kind::Replconf,
            }
        } else {
            Kind::Data
        }
    }
}

/// Parses the command at the start of `buf`: `Ok(None)` if it is not complete yet.
pub fn parse(buf: &[u8]) -> Result<Option<Frame>, String> {
    let Some((n, mut pos)) = header(buf, 0, b'*')? else { return Ok(None) };
    if n == 0 || n > MAX_ARGS {
        return Err(format!("command with {n} arguments"));
    }
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        let Some((len, start)) = header(buf, pos, b'$')? else { return Ok(None) };
        if len > MAX_ARG {
            return Err(format!("argument of {len} bytes"));
        }
        let end = start + len;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err("argument not followed by CR LF".into());
        }
        args.push((start, end));
        pos = end + 2;
    }
    Ok(Some(Frame { len: pos, args }))
}

/// `<tag><decimal>\r\n` at `pos`: the number and where the line ends.
fn header(buf: &[u8], pos: usize, tag: u8) -> Result<Option<(usize, usize)>, String> {
    let Some(&first) = buf.get(pos) else { return Ok(None) };
    if first != tag {
        return Err(format!("expected {:?}, found byte {first:#04x}", tag as char));
    }
    let rest = &buf[pos + 1..buf.len().min(pos + 1 + MAX_HEADER)];
    let Some(cr) = rest.iter().position(|&b| b == b'\r') else {
        return if rest.len() >= MAX_HEADER { Err("over-long header line".into()) } else { Ok(None) };
    };
    if rest.len() < cr + 2 {
        return Ok(None);
    }
    if rest[cr + 1] != b'\n' {
        return Err("header line not ended by CR LF".into());
    }
    let digits = std::str::from_utf8(&rest[..cr]).map_err(|_| "non-ASCII header".to_string())?;
    let n = digits.parse::<usize>().map_err(|_| format!("bad length {digits:?}"))?;
    Ok(Some((n, pos + 1 + cr + 2)))
}

/// A command as RESP (what a replica or an AOF file holds).
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_commands_only() {
        let mut buf = Vec::new();
        encode(&mut buf, &[b"SET", b"k", b"v\r\n"]);
        let f = parse(&buf).unwrap().unwrap();
        assert_eq!(f.len, buf.len());
        assert_eq!(f.arg(&buf, 2), Some(&b"v\r\n"[..]));
        assert_eq!(f.kind(&buf), Kind::Data);
        for cut in 0..buf.len() {
            assert!(parse(&buf[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        let mut ack = Vec::new();
        encode(&mut ack, &[b"replconf", b"GETACK", b"*"]);
        assert_eq!(parse(&ack).unwrap().unwrap().kind(&ack), Kind::GetAck);
        assert!(parse(b"+OK\r\n").is_err());
        assert!(parse(b"*1\r\n$3\r\nabcXY").is_err());
    }
}
