//! Log segments: a stretch of the replication stream, committed as one snapshot.

use serde::{Deserialize, Serialize};

use crate::crypto::Id;
use crate::engine::backup::BackupOptions;
use crate::engine::session::{Session, Stored};
use crate::format::snapshot::{BackupSummary, Snapshot, SnapshotFile, SourceDesc};

/// Source kind of a log segment snapshot.
pub const LOG_KIND: &str = crate::format::snapshot::LOG_SEGMENT_KIND;
/// The file of a segment: the raw stream bytes.
pub const LOG_FILE: &str = "stream.resp";
/// Version of [`SegmentInfo`].
pub const FORMAT: u32 = 1;
/// Time index resolution: reads within one such window share one entry (the last).
pub const INDEX_MS: u64 = 10;

/// What a segment snapshot records about its stretch of the stream (its source details).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentInfo {
    /// [`FORMAT`].
    pub format: u32,
    /// Full id of the base snapshot (the RDB of the full sync) this log continues.
    pub base: String,
    /// Replication id the master streamed under (changes after a failover).
    pub replid: String,
    /// Replication offset before the first byte (the previous segment's `end`, or the base's offset).
    pub start: u64,
    /// Replication offset after the last byte; always on a command boundary outside MULTI/EXEC.
    pub end: u64,
    /// Unix ms from which this segment covers time (the previous segment's `end_ms`).
    pub start_ms: u64,
    /// Unix ms up to which every byte received is in this segment or an earlier one.
    pub end_ms: u64,
    /// Time index: `(offset, ms)` = by receive time `ms` (this host's clock), the stream had
    /// arrived up to `offset`; one entry per read, the last read of each [`INDEX_MS`] window.
    pub index: Vec<(u64, u64)>,
    /// Log offset minus the master's replication offset: non-zero after a failover in which
    /// the old master streamed keepalives the promoted replica never had (they stay in the
    /// log; the new master's stream continues after them).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shift: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl SegmentInfo {
    /// The segment a snapshot is, if it is one.
    pub fn of(snap: &Snapshot) -> Option<SegmentInfo> {
        if snap.source.kind != LOG_KIND {
            return None;
        }
        serde_json::from_value(serde_json::Value::Object(snap.source.details.clone())).ok()
    }
}

/// Appends `(offset, ms)` to a time index, replacing the last entry when both fall in one window.
pub fn push_index(index: &mut Vec<(u64, u64)>, offset: u64, ms: u64) {
    match index.last_mut() {
        Some(last) if last.1 / INDEX_MS == ms / INDEX_MS => *last = (offset, ms.max(last.1)),
        _ => index.push((offset, ms)),
    }
}

/// Stores `bytes` as one segment of the log of `addr` through the open `session`; the
/// snapshot file written last is the commit.
pub fn commit(session: &mut Session<'_>, addr: &str, info: &SegmentInfo, bytes: &[u8], bopts: &BackupOptions) -> crate::Result<(Id, Snapshot, Stored)> {
    let started = std::time::Instant::now();
    let time = crate::host::now_rfc3339();
    let stored = session.store(LOG_FILE, bytes)?;
    let summary = BackupSummary {
        bytes_processed: bytes.len() as u64,
        chunks: stored.file.chunks,
        new_chunks: stored.new_chunks,
        new_raw_bytes: stored.new_raw_bytes,
        bytes_added: stored.bytes_added,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    let snap = segment_snapshot(addr, info, vec![stored.file.clone()], summary, bopts, time);
    let id = snap.save(session.repo())?;
    Ok((id, snap, stored))
}

/// The snapshot of a segment holding `files` (its one stream file).
pub fn segment_snapshot(addr: &str, info: &SegmentInfo, files: Vec<SnapshotFile>, summary: BackupSummary, bopts: &BackupOptions, time: String) -> Snapshot {
    let details = match serde_json::to_value(info) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    Snapshot {
        version: 1,
        time,
        host: bopts.host.clone().unwrap_or_else(crate::host::hostname),
        username: crate::host::username(),
        tags: bopts.tags.clone(),
        group: bopts.group.clone(),
        source: SourceDesc { kind: LOG_KIND.into(), name: addr.to_string(), details },
        redis: None,
        files,
        summary,
        original: None,
        key_index: None,
        key_layers: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keeps_the_last_read_of_each_window() {
        let mut ix = Vec::new();
        push_index(&mut ix, 10, 1000);
        push_index(&mut ix, 20, 1005);
        push_index(&mut ix, 30, 1010);
        assert_eq!(ix, vec![(20, 1005), (30, 1010)]);
    }
}
