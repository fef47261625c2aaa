//! What the log of each followed server covers: chains of base + contiguous segments, and gaps.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::crypto::Id;
use crate::format::snapshot::{Listing, Snapshot};
use crate::redis::source::SourceInfo;

use super::segment::SegmentInfo;
use super::{FollowError, Result};

/// A base snapshot and the log segments that continue it without a hole.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The base snapshot.
    pub base_id: Id,
    /// Its contents.
    pub base: Snapshot,
    /// Replication offset of the base (the full sync's).
    pub base_offset: u64,
    /// The segments, in stream order, each starting where the previous ended.
    pub segments: Vec<(Id, Snapshot, SegmentInfo)>,
}

impl Chain {
    /// Unix ms from which the chain can be restored (the first segment's start).
    pub fn from_ms(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.2.start_ms)
    }
    /// Unix ms up to which it can be restored (the last commit).
    pub fn to_ms(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.2.end_ms)
    }
    /// Replication offset the log reaches.
    pub fn end_offset(&self) -> u64 {
        self.segments.last().map_or(self.base_offset, |s| s.2.end)
    }
    /// Stored log bytes (before dedup and compression).
    pub fn log_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.1.size()).sum()
    }
    /// Replication id of the last segment.
    pub fn replid(&self) -> &str {
        self.segments.last().map_or("", |s| s.2.replid.as_str())
    }
}

/// The log of one followed server (`host:port`).
#[derive(Debug, Clone, Default)]
pub struct Server {
    /// Chains, oldest base first.
    pub chains: Vec<Chain>,
    /// Segments no chain uses: their base is gone, or they follow a hole.
    pub orphans: Vec<(Id, SegmentInfo)>,
}

/// Every followed server's log, by address.
pub fn load(listing: &Listing) -> BTreeMap<String, Server> {
    let by_id: BTreeMap<Id, &Snapshot> = listing.snapshots.iter().map(|(id, s)| (*id, s)).collect();
    let mut groups: BTreeMap<(String, String), Vec<(Id, Snapshot, SegmentInfo)>> = BTreeMap::new();
    for (id, snap) in &listing.snapshots {
        if let Some(seg) = SegmentInfo::of(snap) {
            groups.entry((snap.source.name.clone(), seg.base.clone())).or_default().push((*id, snap.clone(), seg));
        }
    }
    let mut out: BTreeMap<String, Server> = BTreeMap::new();
    for ((addr, base_hex), mut segs) in groups {
        let server = out.entry(addr).or_default();
        let base = Id::from_hex(&base_hex).and_then(|id| by_id.get(&id).map(|s| (id, (*s).clone())));
        let offset = base.as_ref().and_then(|(_, b)| base_offset(b));
        let (Some((base_id, base)), Some(base_offset)) = (base, offset) else {
            server.orphans.extend(segs.into_iter().map(|(id, _, s)| (id, s)));
            continue;
        };
        // A merged segment sorts before the small ones it replaces (same start, same
        // start time, further end): after an interrupted compaction those become orphans.
        segs.sort_by_key(|s| (s.2.start, s.2.start_ms, std::cmp::Reverse(s.2.end), s.2.end_ms));
        let mut chain = Chain { base_id, base, base_offset, segments: Vec::new() };
        for seg in segs {
            if seg.2.start == chain.end_offset() && (chain.segments.is_empty() || seg.2.end > seg.2.start || seg.2.end_ms > chain.to_ms()) {
                chain.segments.push(seg);
            } else {
                server.orphans.push((seg.0, seg.2));
            }
        }
        if !chain.segments.is_empty() {
            server.chains.push(chain);
        }
    }
    for s in out.values_mut() {
        s.chains.sort_by_key(|c| (c.from_ms(), c.to_ms()));
    }
    out
}

/// Log segments no chain uses (their base is gone, they follow a hole, or a merged segment
/// replaced them): `(server, segment id, why)`, for `check` to report and `prune` to delete.
pub fn orphans(listing: &Listing) -> Vec<(String, Id, String)> {
    let ids: std::collections::BTreeSet<Id> = listing.snapshots.iter().map(|(id, _)| *id).collect();
    let mut out = Vec::new();
    for (addr, server) in load(listing) {
        for (id, seg) in server.orphans {
            let base_kept = Id::from_hex(&seg.base).is_some_and(|b| ids.contains(&b));
            let why = if base_kept {
                format!("offsets {}..{} are not part of the chain of base {} (a hole before them, or a merged segment holds them)", seg.start, seg.end, short(&seg.base))
            } else {
                format!("its base snapshot {} is gone", short(&seg.base))
            };
            out.push((addr.clone(), id, why));
        }
    }
    out
}

fn short(hex: &str) -> &str {
    hex.get(..8).unwrap_or(hex)
}

/// The replication offset a base snapshot was taken at.
fn base_offset(snap: &Snapshot) -> Option<u64> {
    let info: SourceInfo = serde_json::from_value(serde_json::Value::Object(snap.source.details.clone())).ok()?;
    info.repl_offset
}

/// Where a follower resumes: its base, replication id and committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Full id of the base snapshot.
    pub base: String,
    /// Replication id to ask `PSYNC` for.
    pub replid: String,
    /// Offset committed (the next byte wanted is `offset + 1`).
    pub offset: u64,
    /// Unix ms up to which the log covers time.
    pub end_ms: u64,
    /// Log offset minus the master's offset (see [`SegmentInfo::shift`]).
    pub shift: u64,
}

/// The newest committed position of `addr`'s log, if it was followed before.
pub fn last_position(listing: &Listing, addr: &str) -> Option<Position> {
    let servers = load(listing);
    let chain = servers.get(addr)?.chains.iter().max_by_key(|c| c.to_ms())?;
    let shift = chain.segments.last().map_or(0, |s| s.2.shift);
    Some(Position { base: chain.base_id.to_hex(), replid: chain.replid().to_string(), offset: chain.end_offset(), end_ms: chain.to_ms(), shift })
}

/// A time span with no log: from one chain's end to the next chain's start.
#[derive(Debug, Clone, Serialize)]
pub struct Gap {
    /// Unix ms the earlier chain ends.
    pub from_ms: u64,
    /// Unix ms the later chain starts.
    pub to_ms: u64,
}

/// The gaps between a server's chains.
pub fn gaps(server: &Server) -> Vec<Gap> {
    let mut out = Vec::new();
    let mut covered_to: Option<u64> = None;
    for c in &server.chains {
        if let Some(end) = covered_to {
            if c.from_ms() > end {
                out.push(Gap { from_ms: end, to_ms: c.from_ms() });
            }
        }
        covered_to = Some(covered_to.map_or(c.to_ms(), |e| e.max(c.to_ms())));
    }
    out
}

/// Picks the followed server: `want`, or the only one.
pub fn pick<'a>(servers: &'a BTreeMap<String, Server>, want: Option<&str>) -> Result<(&'a String, &'a Server)> {
    match want {
        Some(w) => servers
            .get_key_value(w)
            .ok_or_else(|| FollowError::NotCovered(format!("no log of server {w} in the repository (followed: {})", names(servers)))),
        None if servers.len() == 1 => servers.iter().next().ok_or_else(|| FollowError::NotCovered("no log".into())),
        None if servers.is_empty() => Err(FollowError::NotCovered(
            "the repository holds no log of a followed server: run `rdbvault follow redis://...` first".into(),
        )),
        None => Err(FollowError::NotCovered(format!("the repository holds the logs of several servers: say which with --server ({})", names(servers)))),
    }
}

fn names(servers: &BTreeMap<String, Server>) -> String {
    servers.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// Where to cut a chain for a restore as of `at_ms`.
#[derive(Debug, Clone)]
pub struct Cut<'a> {
    /// The chain.
    pub chain: &'a Chain,
    /// Stream bytes received by `at_ms` end at this offset (commands are cut at or before it).
    pub offset: u64,
}

/// The chain and offset that give the dataset as of `at_ms`, or why none does.
pub fn cut_at<'a>(server: &'a Server, addr: &str, at_ms: u64) -> Result<Cut<'a>> {
    let chain = server.chains.iter().rev().find(|c| c.from_ms() <= at_ms && at_ms <= c.to_ms()).ok_or_else(|| {
        let ranges: Vec<String> = server.chains.iter().map(|c| format!("{} .. {}", rfc3339(c.from_ms()), rfc3339(c.to_ms()))).collect();
        FollowError::NotCovered(format!(
            "{} is not covered by the log of {addr}; covered: {} (see `rdbvault timeline`)",
            rfc3339(at_ms),
            if ranges.is_empty() { "nothing".into() } else { ranges.join(", ") }
        ))
    })?;
    let mut offset = chain.base_offset;
    for (_, _, seg) in &chain.segments {
        if seg.start_ms > at_ms {
            break;
        }
        for &(o, ms) in &seg.index {
            if ms <= at_ms {
                offset = offset.max(o);
            }
        }
    }
    Ok(Cut { chain, offset })
}

/// Unix ms as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: u64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| ms.to_string())
}
