//! Log segments: a stretch of the replication stream, committed as one snapshot.

use serde::{Deserialize, Serialize};

use crate::crypto::Id;
use crate::engine::backup::{self, BackupOptions, Input};
use crate::format::snapshot::{Snapshot, SourceDesc};
use crate::store::Repository;

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

/// Stores `bytes` as one segment of the log of `addr`; the snapshot file written last is the commit.
pub fn commit(repo: &Repository, addr: &str, info: &SegmentInfo, bytes: &[u8], bopts: &BackupOptions) -> crate::Result<(Id, Snapshot)> {
    let details = match serde_json::to_value(info) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let desc = SourceDesc { kind: LOG_KIND.into(), name: addr.to_string(), details };
    let input = Input { name: LOG_FILE.into(), reader: Box::new(bytes) };
    let bopts = BackupOptions { raw: true, progress: None, ..bopts.clone() };
    backup::run_with(repo, vec![input], &bopts, |snap| {
        snap.source = desc;
        snap.redis = None;
        Ok(())
    })
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
