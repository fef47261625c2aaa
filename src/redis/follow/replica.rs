//! The follower: a replica connection whose stream is committed as log segments.

use std::io::{BufReader, ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::crypto::Id;
use crate::engine::backup::{self, BackupOptions, Input};
use crate::format::snapshot::{Listing, Snapshot};
use crate::redis::live;
use crate::redis::source::replication::now_ms;
use crate::redis::source::transport::Transport;
use crate::redis::source::{info, ConnectOptions, Psync, RedisUrl, ReplicationStream, SourceError, SourceInfo, SourceKind, RDB_STREAM_NAME};
use crate::store::Repository;

use super::resp::{self, Kind};
use super::segment::{self, SegmentInfo};
use super::timeline::{self, Position};
use super::{FollowError, Result};

/// How to follow.
#[derive(Clone)]
pub struct FollowOptions {
    /// Time-outs and TLS trust (the read time-out also detects a silent master).
    pub connect: ConnectOptions,
    /// Buffered stream is committed at least this often.
    pub commit_interval: Duration,
    /// How segments and bases are stored.
    pub backup: BackupOptions,
    /// A segment is committed early once this many bytes are buffered (bounds memory).
    pub max_buffer: usize,
}

/// How often a replica reports its offset (what Redis replicas do).
const ACK_EVERY: Duration = Duration::from_secs(1);
/// Socket poll interval: ACKs, commits and a stop request are served at least this often.
const POLL: Duration = Duration::from_millis(100);
/// Pause before reconnecting after a lost connection.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// What the follower tells its caller as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// A full sync was stored as a new base snapshot.
    Base { id: &'a Id, snap: &'a Snapshot, offset: u64, gap_from_ms: Option<u64> },
    /// The master accepted a partial resync: no gap.
    Resumed { offset: u64, replid: &'a str },
    /// The connection broke; the follower reconnects.
    Lost { error: &'a FollowError },
}

/// Follows `url` until `stop` is set; returns the committed position.
///
/// Resumes from the newest segment of this server in the repository with `PSYNC replid
/// offset`; a full resync stores a new base. Errors of the first connection end the run
/// (wrong password, no permission); later connection losses are retried.
pub fn follow(repo: &Repository, url: &RedisUrl, opts: &FollowOptions, stop: &AtomicBool, on: &mut dyn FnMut(Event<'_>)) -> Result<Option<Position>> {
    let addr = url.addr();
    let mut pos = timeline::last_position(&Listing::load(repo)?, &addr);
    let mut connected_once = false;
    loop {
        let result = session(repo, url, opts, stop, &mut pos, &mut connected_once, on);
        match result {
            Ok(()) => return Ok(pos),
            Err(e) if !connected_once || !transient(&e) => return Err(e),
            Err(e) => on(Event::Lost { error: &e }),
        }
        let paused = Instant::now();
        while paused.elapsed() < RECONNECT_AFTER {
            if stop.load(Ordering::SeqCst) {
                return Ok(pos);
            }
            std::thread::sleep(POLL);
        }
    }
}

/// Whether a failure is worth a reconnect (not a refusal or a repository error).
fn transient(e: &FollowError) -> bool {
    matches!(
        e,
        FollowError::Source(
            SourceError::Connect { .. }
                | SourceError::Truncated { .. }
                | SourceError::Io { .. }
                | SourceError::Timeout { .. }
                | SourceError::NoAnswer { .. }
                | SourceError::Protocol { .. }
                | SourceError::Loading { .. }
                | SourceError::Command { .. }
        )
    )
}

/// One connection: sync (partial or full), then read, commit and acknowledge until stopped or broken.
fn session(
    repo: &Repository,
    url: &RedisUrl,
    opts: &FollowOptions,
    stop: &AtomicBool,
    pos: &mut Option<Position>,
    connected_once: &mut bool,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<()> {
    let addr = url.addr();
    let server = info::fetch(url, &opts.connect)?;
    let transport = Transport::connect(url, &opts.connect)?;
    let from = pos.as_ref().map(|p| (p.replid.clone(), p.offset + 1));
    let answer = ReplicationStream::psync(url, transport, opts.connect.read_timeout, from.as_ref().map(|(r, o)| (r.as_str(), *o)))?;
    *connected_once = true;
    let (reader, tail, mut log) = match answer {
        Psync::Continue { replid, reader } => {
            let Some(mut p) = pos.clone() else {
                return Err(FollowError::Stream { addr, offset: 0, msg: "+CONTINUE to a PSYNC that asked for a full sync".into() });
            };
            if let Some(r) = replid {
                p.replid = r;
            }
            on(Event::Resumed { offset: p.offset, replid: &p.replid });
            let log = Log::new(p.clone(), p.end_ms);
            *pos = Some(p);
            (reader, Vec::new(), log)
        }
        Psync::Full(mut stream) => {
            let info = SourceInfo::from_server(SourceKind::Redis, url, &server).with_stream(&stream);
            let (Some(replid), Some(offset)) = (info.replid.clone(), info.repl_offset) else {
                return Err(FollowError::Stream { addr, offset: 0, msg: "full sync without a replication id and offset".into() });
            };
            let input = Input { name: RDB_STREAM_NAME.into(), reader: Box::new(&mut stream) };
            let bopts = BackupOptions { progress: None, ..opts.backup.clone() };
            let (id, snap) = backup::run_with(repo, vec![input], &bopts, |snap| {
                live::complete(snap, &info);
                Ok(())
            })?;
            let gap_from_ms = pos.as_ref().map(|p| p.end_ms);
            on(Event::Base { id: &id, snap: &snap, offset, gap_from_ms });
            let p = Position { base: id.to_hex(), replid, offset, end_ms: now_ms() };
            let log = Log::new(p.clone(), p.end_ms);
            *pos = Some(p);
            let (reader, tail) = stream.into_rest();
            (reader, tail, log)
        }
    };
    let result = stream_loop(repo, &addr, opts, stop, reader, tail, &mut log);
    // Whatever ended the session, what arrived whole is committed (nothing is lost on a drop).
    let committed = log.commit(repo, &addr, &opts.backup, true);
    *pos = Some(log.pos.clone());
    committed?;
    result
}

/// Reads the stream, commits every interval and acknowledges, until stopped (Ok) or broken (Err).
fn stream_loop(
    repo: &Repository,
    addr: &str,
    opts: &FollowOptions,
    stop: &AtomicBool,
    mut reader: BufReader<Transport>,
    tail: Vec<u8>,
    log: &mut Log,
) -> Result<()> {
    reader.get_ref().set_read_timeout(POLL).map_err(|e| SourceError::io(addr, "setting the socket time-out", POLL, e))?;
    if !tail.is_empty() {
        log.received(addr, &tail, now_ms())?;
    }
    let mut chunk = vec![0u8; 64 * 1024];
    let mut last_data = Instant::now();
    let mut last_ack = Instant::now() - ACK_EVERY;
    let mut last_commit = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        match reader.read(&mut chunk) {
            Ok(0) => {
                return Err(SourceError::Protocol { addr: addr.to_string(), msg: "the master closed the replication connection".into() }.into())
            }
            Ok(n) => {
                last_data = Instant::now();
                log.received(addr, &chunk[..n], now_ms())?;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {
                if last_data.elapsed() > opts.connect.read_timeout {
                    let during = "waiting for the replication stream".to_string();
                    return Err(SourceError::NoAnswer { addr: addr.to_string(), during, after: opts.connect.read_timeout }.into());
                }
            }
            Err(e) => return Err(SourceError::io(addr, "reading the replication stream", opts.connect.read_timeout, e).into()),
        }
        let due = last_commit.elapsed() >= opts.commit_interval || log.buf.len() >= opts.max_buffer;
        if due && log.safe > 0 {
            log.commit(repo, addr, &opts.backup, false)?;
            last_commit = Instant::now();
            log.want_ack = true;
        }
        if log.want_ack || last_ack.elapsed() >= ACK_EVERY {
            let mut ack = Vec::new();
            resp::encode(&mut ack, &[b"REPLCONF", b"ACK", log.pos.offset.to_string().as_bytes()]);
            let w = reader.get_mut();
            w.write_all(&ack).and_then(|_| w.flush()).map_err(|e| SourceError::io(addr, "sending REPLCONF ACK", opts.connect.read_timeout, e))?;
            last_ack = Instant::now();
            log.want_ack = false;
        }
    }
}

/// The uncommitted part of the stream and what is known about it.
struct Log {
    /// Committed position: `buf` starts at `pos.offset`.
    pos: Position,
    buf: Vec<u8>,
    /// Bytes of `buf` parsed into whole commands.
    parsed: usize,
    /// Bytes of `buf` ending on a command boundary outside MULTI/EXEC (what a commit may take).
    safe: usize,
    in_multi: bool,
    /// `(offset reached, receive ms)` of each read not yet committed.
    reads: Vec<(u64, u64)>,
    /// Start of the time the next segment covers.
    start_ms: u64,
    /// The master asked for our offset.
    want_ack: bool,
}

impl Log {
    fn new(pos: Position, start_ms: u64) -> Log {
        Log { pos, buf: Vec::new(), parsed: 0, safe: 0, in_multi: false, reads: Vec::new(), start_ms, want_ack: true }
    }

    /// Takes bytes read at `ms`: parses the whole commands among them.
    fn received(&mut self, addr: &str, bytes: &[u8], ms: u64) -> Result<()> {
        self.buf.extend_from_slice(bytes);
        self.reads.push((self.pos.offset + self.buf.len() as u64, ms));
        loop {
            let frame = resp::parse(&self.buf[self.parsed..]).map_err(|msg| FollowError::Stream {
                addr: addr.to_string(),
                offset: self.pos.offset + self.parsed as u64,
                msg,
            })?;
            let Some(frame) = frame else { return Ok(()) };
            match frame.kind(&self.buf[self.parsed..]) {
                Kind::Multi => self.in_multi = true,
                Kind::Exec => self.in_multi = false,
                Kind::GetAck => self.want_ack = true,
                Kind::Ping | Kind::Replconf | Kind::Data => {}
            }
            self.parsed += frame.len;
            if !self.in_multi {
                self.safe = self.parsed;
            }
        }
    }

    /// Commits the safe part of the buffer as one segment (`always`: even an empty one, to
    /// record that time up to now is covered).
    fn commit(&mut self, repo: &Repository, addr: &str, bopts: &BackupOptions, always: bool) -> Result<()> {
        if self.safe == 0 && !always {
            return Ok(());
        }
        let cut = self.pos.offset + self.safe as u64;
        let later = self.reads.partition_point(|&(o, _)| o <= cut);
        let now = now_ms();
        // Every byte received before the first read that reaches past the cut is in this segment.
        let end_ms = self.reads.get(later).map_or(now, |&(_, ms)| ms.saturating_sub(1)).max(self.start_ms);
        let mut index = Vec::new();
        for &(o, ms) in &self.reads[..later] {
            segment::push_index(&mut index, o, ms);
        }
        let info = SegmentInfo {
            format: segment::FORMAT,
            base: self.pos.base.clone(),
            replid: self.pos.replid.clone(),
            start: self.pos.offset,
            end: cut,
            start_ms: self.start_ms,
            end_ms,
            index,
        };
        segment::commit(repo, addr, &info, &self.buf[..self.safe], bopts)?;
        self.buf.drain(..self.safe);
        self.parsed -= self.safe;
        self.safe = 0;
        self.reads.drain(..later);
        self.pos.offset = cut;
        self.pos.end_ms = end_ms;
        self.start_ms = end_ms;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read, Write};

    use super::*;

    /// A master that answers from a script and records what it was sent.
    struct Scripted {
        input: Cursor<Vec<u8>>,
        sent: Vec<u8>,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.sent.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn stream_bytes_read_with_the_end_mark_are_kept() {
        let mark = "m".repeat(40);
        let mut script = format!("+OK\r\n+OK\r\n+FULLRESYNC {} 100\r\n$EOF:{mark}\r\n", "a".repeat(40)).into_bytes();
        script.extend_from_slice(b"REDIS0011-rdb-body");
        script.extend_from_slice(mark.as_bytes());
        let mut stream = Vec::new();
        resp::encode(&mut stream, &[b"SET", b"k", b"v"]);
        script.extend_from_slice(&stream);
        let url = RedisUrl::parse("redis://127.0.0.1:6379").unwrap();
        let pipe = Scripted { input: Cursor::new(script), sent: Vec::new() };
        let Psync::Full(mut rdb) = ReplicationStream::psync(&url, pipe, Duration::from_secs(1), None).unwrap() else { panic!("expected a full sync") };
        assert_eq!((rdb.replid().map(str::len), rdb.repl_offset()), (Some(40), Some(100)));
        let mut body = Vec::new();
        rdb.read_to_end(&mut body).unwrap();
        assert_eq!(body, b"REDIS0011-rdb-body");
        let (mut reader, mut rest) = rdb.into_rest();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, stream);
        assert!(String::from_utf8_lossy(&reader.get_ref().sent).contains("PSYNC\r\n$1\r\n?\r\n$2\r\n-1"));
    }

    #[test]
    fn commits_cut_outside_transactions_and_time_covers_only_what_arrived() {
        let pos = Position { base: "b".into(), replid: "r".into(), offset: 1000, end_ms: 5 };
        let mut log = Log::new(pos, 5);
        let mut bytes = Vec::new();
        resp::encode(&mut bytes, &[b"SET", b"a", b"1"]);
        let first = bytes.len();
        resp::encode(&mut bytes, &[b"MULTI"]);
        resp::encode(&mut bytes, &[b"INCR", b"c"]);
        log.received("x", &bytes, 10).unwrap();
        assert_eq!(log.safe, first, "a commit never splits MULTI/EXEC");
        let mut exec = Vec::new();
        resp::encode(&mut exec, &[b"EXEC"]);
        log.received("x", &exec, 20).unwrap();
        assert_eq!(log.safe, bytes.len() + exec.len());
        let mut getack = Vec::new();
        resp::encode(&mut getack, &[b"REPLCONF", b"GETACK", b"*"]);
        log.want_ack = false;
        log.received("x", &getack[..5], 30).unwrap();
        assert!(!log.want_ack);
        log.received("x", &getack[5..], 40).unwrap();
        assert!(log.want_ack);
    }
}
