//! Reads a byte range of a snapshot file without restoring the rest: the chunk list that
//! covers it (found from where each list starts), then only the chunks inside the range,
//! each verified against its id.

use crate::crypto::Id;
use crate::engine::restore::Blobs;
use crate::error::{Error, Result};
use crate::format::snapshot::SnapshotFile;

/// Byte ranges of one file; keeps the last chunk list and chunk, since neighbouring
/// records share them.
pub struct RangeReader<'b, 'a> {
    blobs: &'b Blobs<'a>,
    file: &'b SnapshotFile,
    /// File offset where each of `file.lists` starts.
    starts: &'b [u64],
    /// The loaded list: its number and each chunk's (id, start, length).
    list: Option<(usize, Vec<(Id, u64, u64)>)>,
    /// Chunk ids of lists read ahead by [`RangeReader::prepare`], by list number.
    ahead: std::collections::HashMap<usize, Vec<Id>>,
    chunk: Option<(Id, Vec<u8>)>,
}

impl<'b, 'a> RangeReader<'b, 'a> {
    /// A reader of `file`, whose chunk lists start at `starts` (one per list).
    pub fn new(blobs: &'b Blobs<'a>, file: &'b SnapshotFile, starts: &'b [u64]) -> Result<RangeReader<'b, 'a>> {
        if starts.len() != file.lists.len() || starts.windows(2).any(|w| w[0] >= w[1]) || starts.first().is_some_and(|s| *s != 0) {
            return Err(Error::corrupt(
                format!("key index of {}", file.name),
                format!("it names {} chunk-list starts for {} chunk lists; run `rdbvault check`", starts.len(), file.lists.len()),
            ));
        }
        Ok(RangeReader { blobs, file, starts, list: None, ahead: Default::default(), chunk: None })
    }

    /// Reads the chunk lists covering `ranges` (start, length) and finds where all their
    /// chunks are stored in one search, instead of one search per list when the index is
    /// searched a few blobs at a time.
    pub fn prepare(&mut self, ranges: impl IntoIterator<Item = (u64, u64)>) -> Result<()> {
        let mut lists = std::collections::BTreeSet::new();
        for (start, len) in ranges {
            let first = self.starts.partition_point(|s| *s <= start).saturating_sub(1);
            let last = self.starts.partition_point(|s| *s < start.saturating_add(len)).saturating_sub(1);
            lists.extend((first..=last.max(first)).filter(|n| *n < self.starts.len()));
        }
        let mut ids = Vec::new();
        for n in lists {
            let chunks = self.blobs.list_chunks(&self.list_id(n)?)?;
            ids.extend_from_slice(&chunks);
            self.ahead.insert(n, chunks);
        }
        self.blobs.locate_all(&ids)
    }

    fn list_id(&self, n: usize) -> Result<Id> {
        let hex = &self.file.lists[n];
        Id::from_hex(hex).ok_or_else(|| Error::corrupt(format!("snapshot file {}", self.file.name), format!("bad list id {hex}")))
    }

    /// Appends bytes `start..start + len` of the file to `out`.
    pub fn read(&mut self, start: u64, len: u64, out: &mut Vec<u8>) -> Result<()> {
        let end = start.checked_add(len).filter(|e| *e <= self.file.size).ok_or_else(|| {
            Error::corrupt(format!("snapshot file {}", self.file.name), format!("range {start}+{len} is past its end ({} bytes)", self.file.size))
        })?;
        let mut pos = start;
        while pos < end {
            let n = self.starts.partition_point(|s| *s <= pos).saturating_sub(1);
            let chunks = self.list(n)?;
            let i = chunks.partition_point(|(_, s, _)| *s <= pos).saturating_sub(1);
            let Some(&(id, cstart, clen)) = chunks.get(i).filter(|(_, s, l)| *s <= pos && pos < s + l) else {
                return Err(Error::corrupt(
                    format!("snapshot file {}", self.file.name),
                    format!("chunk list {n} does not cover offset {pos}; run `rdbvault check`"),
                ));
            };
            let data = self.chunk(id)?;
            let from = (pos - cstart) as usize;
            let to = (end.min(cstart + clen) - cstart) as usize;
            let part = data.get(from..to).ok_or_else(|| Error::corrupt(format!("blob {}", id.to_hex()), "shorter than the index says"))?;
            out.extend_from_slice(part);
            pos += part.len() as u64;
        }
        Ok(())
    }

    fn list(&mut self, n: usize) -> Result<&[(Id, u64, u64)]> {
        if self.list.as_ref().is_none_or(|(m, _)| *m != n) {
            let ids = match self.ahead.remove(&n) {
                Some(ids) => ids,
                None => self.blobs.list_chunks(&self.list_id(n)?)?,
            };
            self.blobs.locate_all(&ids)?;
            let mut at = self.starts[n];
            let mut chunks = Vec::with_capacity(ids.len());
            for c in ids {
                let (_, e) = self.blobs.locate(&c)?;
                chunks.push((c, at, u64::from(e.raw_len)));
                at += u64::from(e.raw_len);
            }
            self.list = Some((n, chunks));
        }
        Ok(self.list.as_ref().map(|(_, c)| c.as_slice()).unwrap_or_default())
    }

    fn chunk(&mut self, id: Id) -> Result<&[u8]> {
        if self.chunk.as_ref().is_none_or(|(c, _)| *c != id) {
            self.chunk = Some((id, self.blobs.load(&id)?));
        }
        Ok(self.chunk.as_ref().map(|(_, d)| d.as_slice()).unwrap_or_default())
    }
}
