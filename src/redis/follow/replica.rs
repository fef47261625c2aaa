//! The follower: a replica connection whose stream is committed as log segments.

use std::io::{BufReader, ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::crypto::Id;
use crate::engine::backup::{self, BackupOptions, Input};
use crate::engine::session::Session;
use crate::format::snapshot::{BackupSummary, Listing, Snapshot, SnapshotFile};
use crate::redis::live;
use crate::redis::source::replication::now_ms;
use crate::redis::source::transport::Transport;
use crate::redis::source::{info, sentinel, ConnectOptions, Psync, RedisUrl, ReplicationStream, SourceError, SourceInfo, SourceKind, RDB_STREAM_NAME};
use crate::store::{FileKind, Repository};

use super::compact;
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
    /// This many committed segments are merged into one (with their index files), so a
    /// long run leaves few objects.
    pub compact_every: usize,
    /// A new base snapshot (full sync) is taken once the current one is this old.
    pub base_every: Option<Duration>,
    /// `(sentinel host:port, master name)`: the master is asked for at every connection,
    /// so the follower moves to a promoted replica after a failover.
    pub sentinel: Option<(String, String)>,
}

impl FollowOptions {
    /// The name the log is stored under: the master name with Sentinel (the address
    /// changes at a failover), else the server's host:port.
    pub fn log_name(&self, url: &RedisUrl) -> String {
        match &self.sentinel {
            Some((_, name)) => name.clone(),
            None => url.addr(),
        }
    }
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
    Base { id: &'a Id, snap: &'a Snapshot, offset: u64, gap_from_ms: Option<u64>, scheduled: bool },
    /// The master accepted a partial resync: no gap.
    Resumed { offset: u64, replid: &'a str },
    /// The connection broke; the follower reconnects.
    Lost { error: &'a FollowError },
    /// Connected to this master (told with Sentinel, whose answer may change).
    Master { addr: &'a str },
    /// Committed segments were merged into one.
    Compacted { segments: usize, id: &'a Id, info: &'a SegmentInfo },
}

/// Follows `url` until `stop` is set; returns the committed position.
///
/// Resumes from the newest segment of this server in the repository with `PSYNC replid
/// offset`; a full resync stores a new base. Errors of the first connection end the run
/// (wrong password, no permission); later connection losses are retried.
pub fn follow(repo: &Repository, url: &RedisUrl, opts: &FollowOptions, stop: &AtomicBool, on: &mut dyn FnMut(Event<'_>)) -> Result<Option<Position>> {
    let name = opts.log_name(url);
    let mut pos = timeline::last_position(&Listing::load(repo)?, &name);
    // The repository stays open and its blob ids in memory for the whole run.
    let mut writer = Session::open(repo, opts.backup.zstd_level)?;
    let mut connected_once = false;
    let mut rebase = false;
    let mut recent = Vec::new();
    loop {
        let url = match &opts.sentinel {
            Some((at, master)) if connected_once => match sentinel::master_url(at, master, url, &opts.connect) {
                Ok(u) => u,
                Err(e) => {
                    on(Event::Lost { error: &e.into() });
                    pause(stop);
                    if stop.load(Ordering::SeqCst) {
                        return Ok(pos);
                    }
                    continue;
                }
            },
            _ => url.clone(),
        };
        let result = session(&mut writer, &url, &name, opts, stop, &mut pos, &mut connected_once, rebase, &mut recent, on);
        rebase = false;
        match result {
            Ok(Ended::Stopped) => return Ok(pos),
            // A scheduled new base: reconnect at once asking for a full sync.
            Ok(Ended::Rebase) => {
                rebase = true;
                continue;
            }
            Err(e) if !connected_once || !transient(&e) => return Err(e),
            Err(e) => on(Event::Lost { error: &e }),
        }
        pause(stop);
        if stop.load(Ordering::SeqCst) {
            return Ok(pos);
        }
    }
}

/// Waits before a reconnect (returns early on a stop request).
fn pause(stop: &AtomicBool) {
    let paused = Instant::now();
    while paused.elapsed() < RECONNECT_AFTER && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(POLL);
    }
}

/// Why a connection's session ended without an error.
enum Ended {
    /// Stop was requested.
    Stopped,
    /// The base is `--base-every` old: take a new one.
    Rebase,
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
                | SourceError::Sentinel { .. }
        )
    )
}

/// One connection: sync (partial or full), then read, commit and acknowledge until stopped or broken.
#[allow(clippy::too_many_arguments)]
fn session(
    writer: &mut Session<'_>,
    url: &RedisUrl,
    name: &str,
    opts: &FollowOptions,
    stop: &AtomicBool,
    pos: &mut Option<Position>,
    connected_once: &mut bool,
    rebase: bool,
    recent: &mut Vec<u8>,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<Ended> {
    let repo = writer.repo();
    let addr = url.addr();
    let server = info::fetch(url, &opts.connect)?;
    let transport = Transport::connect(url, &opts.connect)?;
    if opts.sentinel.is_some() {
        on(Event::Master { addr: &addr });
    }
    let mut from = pos.as_ref().filter(|_| !rebase).map(|p| (p.replid.clone(), p.offset - p.shift + 1));
    // After a failover the new master may hold less of the old stream than we do.
    let mut shift = pos.as_ref().map_or(0, |p| p.shift);
    if let Some((replid, want)) = from.as_mut() {
        if let Some(second) = rewind(&server, replid, *want, recent) {
            shift += *want - second;
            *want = second;
        }
    }
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
            p.shift = shift;
            on(Event::Resumed { offset: p.offset, replid: &p.replid });
            let mut log = Log::new(p.clone(), p.end_ms, base_time(repo, &p.base));
            log.recent = std::mem::take(recent);
            *pos = Some(p);
            (reader, Vec::new(), log)
        }
        Psync::Full(mut stream) => {
            let info = SourceInfo::from_server(SourceKind::Redis, url, &server).with_stream(&stream);
            let (Some(replid), Some(offset)) = (info.replid.clone(), info.repl_offset) else {
                return Err(FollowError::Stream { addr, offset: 0, msg: "full sync without a replication id and offset".into() });
            };
            let input = Input::new(RDB_STREAM_NAME, Box::new(&mut stream));
            let bopts = BackupOptions { progress: None, ..opts.backup.clone() };
            let (id, snap) = backup::run_with(repo, vec![input], &bopts, |snap| {
                live::complete(snap, &info);
                Ok(())
            })?;
            let gap_from_ms = pos.as_ref().map(|p| p.end_ms);
            on(Event::Base { id: &id, snap: &snap, offset, gap_from_ms, scheduled: rebase });
            let p = Position { base: id.to_hex(), replid, offset, end_ms: now_ms(), shift: 0 };
            let log = Log::new(p.clone(), p.end_ms, Some(Instant::now()));
            *pos = Some(p);
            let (reader, tail) = stream.into_rest();
            (reader, tail, log)
        }
    };
    let result = stream_loop(writer, &addr, name, opts, stop, reader, tail, &mut log, on);
    // Whatever ended the session, what arrived whole is committed (nothing is lost on a drop).
    let committed = log.commit(writer, name, &opts.backup, true).and_then(|()| log.compact(writer, name, &opts.backup, true, on));
    *pos = Some(log.pos.clone());
    *recent = std::mem::take(&mut log.recent);
    committed?;
    result
}

/// Committed stream bytes kept in memory, to check what a new master lacks after a failover.
const RECENT_TAIL: usize = 64 * 1024;

/// Appends `committed` to `recent`, keeping about the last [`RECENT_TAIL`] bytes; only
/// the tail of a large commit is copied (a 16 MiB copy per commit stayed resident).
fn keep_tail(recent: &mut Vec<u8>, committed: &[u8]) {
    if committed.len() >= RECENT_TAIL {
        recent.clear();
        recent.extend_from_slice(&committed[committed.len() - RECENT_TAIL..]);
        return;
    }
    recent.extend_from_slice(committed);
    if recent.len() > 2 * RECENT_TAIL {
        recent.drain(..recent.len() - RECENT_TAIL);
    }
}

/// The offset to ask a promoted master for when it holds less of the old stream than the
/// log (`want` is the next byte after the log): its `second_repl_offset`, if what lies
/// beyond it in the log is only keepalives and Pub/Sub (the old master's chatter after the
/// promotion, no data). None when no rewind is needed or possible (then a full sync follows).
fn rewind(server: &info::ServerInfo, replid: &str, want: u64, recent: &[u8]) -> Option<u64> {
    if server.fields.get("master_replid2").map(String::as_str) != Some(replid) {
        return None;
    }
    let second: u64 = server.fields.get("second_repl_offset")?.parse().ok()?;
    let extra = usize::try_from(want.checked_sub(second)?).ok().filter(|&n| n > 0 && n <= recent.len())?;
    let tail = &recent[recent.len() - extra..];
    let mut at = 0;
    while at < tail.len() {
        let frame = resp::parse(&tail[at..]).ok()??;
        if !matches!(frame.name(&tail[at..]).as_str(), "PING" | "PUBLISH" | "REPLCONF" | "SELECT") {
            return None;
        }
        at += frame.len;
    }
    Some(second)
}

/// When the base snapshot `base` (full id) was taken, as an instant of this run's clock
/// (for `--base-every` after a resume); None if unknown.
fn base_time(repo: &Repository, base: &str) -> Option<Instant> {
    let snap = Snapshot::load(repo, base).ok()?;
    let t = time::OffsetDateTime::parse(&snap.time, &time::format_description::well_known::Rfc3339).ok()?;
    let age_ms = now_ms().saturating_sub((t.unix_timestamp_nanos() / 1_000_000).max(0) as u64);
    Instant::now().checked_sub(Duration::from_millis(age_ms))
}

/// Reads the stream, commits every interval and acknowledges, until stopped (Ok) or broken (Err).
#[allow(clippy::too_many_arguments)]
fn stream_loop(
    writer: &mut Session<'_>,
    addr: &str,
    name: &str,
    opts: &FollowOptions,
    stop: &AtomicBool,
    mut reader: BufReader<Transport>,
    tail: Vec<u8>,
    log: &mut Log,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<Ended> {
    reader.get_ref().set_read_timeout(POLL).map_err(|e| SourceError::io(addr, "setting the socket time-out", POLL, e))?;
    if !tail.is_empty() {
        log.received(addr, &tail, now_ms())?;
    }
    let mut chunk = vec![0u8; 64 * 1024];
    let mut last_data = Instant::now();
    let mut last_ack = Instant::now() - ACK_EVERY;
    let mut last_commit = Instant::now();
    let mut took = Duration::ZERO;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(Ended::Stopped);
        }
        if let (Some(every), Some(since)) = (opts.base_every, log.base_since) {
            if since.elapsed() >= every {
                return Ok(Ended::Rebase);
            }
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
        // Due when the oldest uncommitted byte would be older than the interval by the time
        // a commit (as long as the last one took) is done: lag stays within the interval
        // while commits are slowed down (a busy CPU, a slow disk), not only the interval after it.
        let oldest = log.reads.first().map_or(0, |&(_, ms)| now_ms().saturating_sub(ms));
        let due = last_commit.elapsed() >= opts.commit_interval
            || Duration::from_millis(oldest) + took >= opts.commit_interval
            || log.buf.len() >= opts.max_buffer;
        if due && log.safe > 0 {
            let started = Instant::now();
            log.commit(writer, name, &opts.backup, false)?;
            took = started.elapsed();
            last_commit = Instant::now();
            log.want_ack = true;
            if log.pending() >= opts.compact_every.max(2) {
                log.compact(writer, name, &opts.backup, false, on)?;
            }
        }
        if log.want_ack || last_ack.elapsed() >= ACK_EVERY {
            let mut ack = Vec::new();
            resp::encode(&mut ack, &[b"REPLCONF", b"ACK", (log.pos.offset - log.pos.shift).to_string().as_bytes()]);
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
    /// When the chain's base was taken (for `--base-every`).
    base_since: Option<Instant>,
    /// Segments committed since the last compaction, in order.
    done: Vec<Done>,
    /// BLAKE3 of the stream bytes of `done`, together (the merged segment's file hash).
    done_hash: blake3::Hasher,
    /// The last committed bytes (at most about [`RECENT_TAIL`]), ending at `pos.offset`.
    recent: Vec<u8>,
    /// The first of `done` is the last merge, carried into the next one.
    carried: bool,
    /// Packs merged into full ones at the last compaction, deleted at the next.
    retired: Vec<Id>,
}

/// A committed segment, remembered until it is merged.
struct Done {
    id: Id,
    info: SegmentInfo,
    file: SnapshotFile,
    summary: BackupSummary,
    index: Option<Id>,
}

impl Log {
    fn new(pos: Position, start_ms: u64, base_since: Option<Instant>) -> Log {
        let (buf, reads, done) = (Vec::new(), Vec::new(), Vec::new());
        let done_hash = blake3::Hasher::new();
        Log { pos, buf, parsed: 0, safe: 0, in_multi: false, reads, start_ms, want_ack: true, base_since, done, done_hash, recent: Vec::new(), carried: false, retired: Vec::new() }
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
    fn commit(&mut self, writer: &mut Session<'_>, name: &str, bopts: &BackupOptions, always: bool) -> Result<()> {
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
            shift: self.pos.shift,
        };
        let (id, snap, stored) = segment::commit(writer, name, &info, &self.buf[..self.safe], bopts)?;
        self.done_hash.update(&self.buf[..self.safe]);
        keep_tail(&mut self.recent, &self.buf[..self.safe]);
        self.done.push(Done { id, info, file: stored.file, summary: snap.summary, index: stored.index });
        self.buf.drain(..self.safe);
        self.parsed -= self.safe;
        self.safe = 0;
        self.reads.drain(..later);
        self.pos.offset = cut;
        self.pos.end_ms = end_ms;
        self.start_ms = end_ms;
        Ok(())
    }

    /// Committed segments not merged yet (the carried merge not counted).
    fn pending(&self) -> usize {
        self.done.len() - usize::from(self.carried)
    }

    /// Merges the segments committed since the last compaction (and the last merge, while
    /// it is small) into one segment (the same data: their chunk lists joined), their index
    /// files into one, and their small packs into full ones; then deletes the small
    /// segments and index files, and the packs merged at the previous compaction (`last`:
    /// these too, the run ends). The merged files are written first: a crash in between
    /// leaves both, and readers take the merged segment (see `timeline::load`).
    fn compact(&mut self, writer: &mut Session<'_>, name: &str, bopts: &BackupOptions, last_run: bool, on: &mut dyn FnMut(Event<'_>)) -> Result<()> {
        let repo = writer.repo();
        let done = std::mem::take(&mut self.done);
        let hash = self.done_hash.finalize();
        self.carried = false;
        let (Some(first), Some(last)) = (done.first(), done.last()) else { return self.drop_retired(repo) };
        if done.len() < 2 {
            self.done_hash = blake3::Hasher::new();
            return self.drop_retired(repo);
        }
        let mut index = Vec::new();
        for d in &done {
            for &(o, ms) in &d.info.index {
                segment::push_index(&mut index, o, ms);
            }
        }
        let info = SegmentInfo { start: first.info.start, start_ms: first.info.start_ms, index, ..last.info.clone() };
        let file = SnapshotFile {
            name: segment::LOG_FILE.into(),
            size: done.iter().map(|d| d.file.size).sum(),
            blake3: hash.to_hex().to_string(),
            chunks: done.iter().map(|d| d.file.chunks).sum(),
            lists: done.iter().flat_map(|d| d.file.lists.iter().cloned()).collect(),
            list_base: None,
        };
        let mut summary = BackupSummary::default();
        for d in &done {
            summary.bytes_processed += d.summary.bytes_processed;
            summary.chunks += d.summary.chunks;
            summary.new_chunks += d.summary.new_chunks;
            summary.new_raw_bytes += d.summary.new_raw_bytes;
            summary.bytes_added += d.summary.bytes_added;
            summary.duration_ms += d.summary.duration_ms;
        }
        let deltas: Vec<Id> = done.iter().filter_map(|d| d.index).collect();
        let mut merged_index = deltas.first().copied();
        let (mut merged_packs, mut index_blobs) = (Vec::new(), 0);
        if deltas.len() > 1 {
            let merged = compact::merge_in_slices(repo, &deltas, compact::slice_blobs())?;
            // Carried (below) only while one index file holds the merge.
            merged_index = if merged.indexes.len() == 1 { merged.indexes.first().copied() } else { None };
            merged_packs = merged.retired;
            index_blobs = if merged_index.is_some() { merged.blobs } else { usize::MAX };
        }
        let snap = segment::segment_snapshot(name, &info, vec![file.clone()], summary.clone(), bopts, crate::host::now_rfc3339());
        let id = snap.save(repo)?;
        for d in &done {
            repo.backend().delete(FileKind::Snapshot, &d.id.to_hex())?;
        }
        if deltas.len() > 1 {
            for d in &deltas {
                repo.backend().delete(FileKind::Index, &d.to_hex())?;
            }
        }
        // A reader that loaded the index before this merge may still read the packs
        // merged now: they go at the next compaction.
        self.drop_retired(repo)?;
        self.retired = merged_packs;
        on(Event::Compacted { segments: done.len(), id: &id, info: &info });
        // Carried into the next merge while small: objects per day stay few under light load.
        if file.lists.len() < CARRY_LISTS && info.index.len() < CARRY_INDEX && index_blobs < CARRY_BLOBS && !last_run {
            self.done.push(Done { id, info, file, summary, index: merged_index });
            self.carried = true;
        } else {
            self.done_hash = blake3::Hasher::new();
        }
        if last_run {
            self.drop_retired(repo)?;
        }
        Ok(())
    }

    /// Deletes the packs merged away at a compaction.
    fn drop_retired(&mut self, repo: &Repository) -> Result<()> {
        for p in std::mem::take(&mut self.retired) {
            repo.backend().delete(FileKind::Pack, &p.to_hex())?;
        }
        Ok(())
    }
}

/// A merged segment holding fewer chunk lists and time index entries than these is
/// merged again at the next compaction (bounds what each compaction rewrites).
const CARRY_LISTS: usize = 1024;
const CARRY_INDEX: usize = 16 * 1024;
/// ... and whose index file names fewer blobs than this (each merge reads and rewrites it).
const CARRY_BLOBS: usize = 64 * 1024;

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
        let pos = Position { base: "b".into(), replid: "r".into(), offset: 1000, end_ms: 5, shift: 0 };
        let mut log = Log::new(pos, 5, None);
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
