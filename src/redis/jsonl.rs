//! `export --format jsonl` on several threads: this thread walks the RDB as `inspect` does
//! and cuts its bytes into batches of whole records; workers write each batch's JSON lines
//! straight from those bytes ([`ValuesJson`]); the text reaches `out` in file order.
//!
//! Memory: a few batches of about [`BATCH_BYTES`] each (and their text), or one record and its
//! text where a record is larger.

use std::io::{Read, Write};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};

use super::keyscan::KeyFilter;
use crate::error::Error;
use crate::rdb::{push_unsigned, write_bytes_json, Item, RdbError, RdbReader, ReadOptions, ValueKind, ValuesJson};

/// Stream bytes per batch: the batch closes at the first record end past this (1 MiB
/// batches, whose text would pass the output buffer without a copy, were no faster).
const BATCH_BYTES: usize = 256 << 10;
/// Batches queued for each worker while it writes one.
const QUEUED: usize = 2;
/// Buffers larger than this (held for one large record) are not kept for reuse.
const MAX_SPARE: usize = 8 << 20;

/// A record to write: its head, and where its value lies in the batch's bytes.
struct Wanted {
    db: u64,
    key: Vec<u8>,
    kind: ValueKind,
    expire_ms: Option<u64>,
    ty: u8,
    start: usize,
    end: usize,
}

/// Whole records' bytes from stream offset `base` on, and the records to write from them.
struct Batch {
    base: u64,
    bytes: Vec<u8>,
    records: Vec<Wanted>,
}

/// A batch's text; on an error, the text of the records before the failing one, and why.
type Text = Result<Vec<u8>, (Vec<u8>, RdbError)>;

/// Exports the records of `r` (named `what` in errors) that pass `filter` as JSON lines (see
/// the module comment); returns how many.
pub(super) fn export_jsonl<R: Read>(r: R, what: &str, filter: &KeyFilter, out: &mut dyn Write) -> Result<u64, Error> {
    let mut rdb = RdbReader::with_options(r, ReadOptions::walk_only()).map_err(|e| Error::rdb(what, e))?;
    rdb.keep_bytes();
    // Where the bytes kept start.
    let mut base = rdb.offset();
    let version = rdb.version();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    let mut keys = 0;
    let walked = std::thread::scope(|s| {
        let mut lanes = Vec::with_capacity(workers);
        // Buffers done with go back: batches' bytes to this thread, texts to their worker.
        let (bytes_back, spare_bytes) = channel::<Vec<u8>>();
        for _ in 0..workers {
            let (to_worker, batches) = sync_channel::<Batch>(QUEUED);
            let (to_writer, texts) = channel::<Text>();
            let (text_back, spare_texts) = channel::<Vec<u8>>();
            let bytes_back = bytes_back.clone();
            s.spawn(move || work(batches, to_writer, Spares { texts: spare_texts, bytes: bytes_back }, version));
            lanes.push(Lane { batches: to_worker, texts, text_back });
        }
        let mut order = Order { lanes, sent: 0, written: 0, what };
        let mut records = Vec::new();
        let walked = loop {
            let item = rdb.next_item();
            let end = rdb.offset();
            match item {
                Ok(Some(Item::Record(rec))) if filter.matches(&rec) => {
                    let value_at = end + 1 - rec.serialized_len;
                    keys += 1;
                    records.push(Wanted {
                        db: rec.db,
                        key: rec.key,
                        kind: rec.kind,
                        expire_ms: rec.expire_ms,
                        ty: rec.rdb_type,
                        start: (value_at - base) as usize,
                        end: (end - base) as usize,
                    });
                }
                Ok(Some(_)) => {}
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
            if (end - base) as usize >= BATCH_BYTES {
                let bytes = rdb.take_kept(end, spare_bytes.try_recv().unwrap_or_default());
                order.send(Batch { base: std::mem::replace(&mut base, end), bytes, records: std::mem::take(&mut records) }, out)?;
            }
        };
        // The records before a failing one are written, then the first error in file order.
        let bytes = rdb.take_kept(rdb.offset(), Vec::new());
        order.send(Batch { base, bytes, records }, out)?;
        order.finish(out)?;
        Ok::<_, Error>(walked)
    })?;
    walked.map_err(|e| Error::rdb(what, e))?;
    out.flush().map_err(write_error)?;
    Ok(keys)
}

/// A worker as the writer sees it.
struct Lane {
    batches: SyncSender<Batch>,
    texts: Receiver<Text>,
    /// Texts written, for the worker to fill again.
    text_back: Sender<Vec<u8>>,
}

/// Buffers a worker reuses, and where it gives back batches' bytes.
struct Spares {
    texts: Receiver<Vec<u8>>,
    bytes: Sender<Vec<u8>>,
}

/// Batches go to the workers in turn and their text is taken back in the same turn.
struct Order<'a> {
    lanes: Vec<Lane>,
    sent: usize,
    written: usize,
    /// The file, for error messages.
    what: &'a str,
}

impl Order<'_> {
    /// Hands `batch` to the next worker (unless it holds nothing to write), then writes the
    /// texts that are ready.
    fn send(&mut self, batch: Batch, out: &mut dyn Write) -> Result<(), Error> {
        if batch.records.is_empty() {
            return Ok(());
        }
        let lane = &self.lanes[self.sent % self.lanes.len()];
        // A worker gone has sent its error, which the writing below reports.
        if lane.batches.send(batch).is_ok() {
            self.sent += 1;
        }
        while self.written < self.sent {
            match self.lanes[self.written % self.lanes.len()].texts.try_recv() {
                Ok(text) => self.write(text, out)?,
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// Writes every text still to come.
    fn finish(&mut self, out: &mut dyn Write) -> Result<(), Error> {
        while self.written < self.sent {
            match self.lanes[self.written % self.lanes.len()].texts.recv() {
                Ok(text) => self.write(text, out)?,
                Err(_) => break,
            }
        }
        Ok(())
    }

    fn write(&mut self, text: Text, out: &mut dyn Write) -> Result<(), Error> {
        let lane = &self.lanes[self.written % self.lanes.len()];
        self.written += 1;
        match text {
            Ok(mut text) => {
                out.write_all(&text).map_err(write_error)?;
                if text.capacity() <= MAX_SPARE {
                    text.clear();
                    let _ = lane.text_back.send(text);
                }
                Ok(())
            }
            Err((text, e)) => {
                out.write_all(&text).map_err(write_error)?;
                Err(Error::rdb(self.what, e))
            }
        }
    }
}

/// What a failed write of the output says.
fn write_error(e: std::io::Error) -> Error {
    Error::io("write the export", e)
}

/// A worker: writes the JSON lines of each batch it is handed, until the walker is done or
/// a value fails.
fn work(batches: Receiver<Batch>, to_writer: Sender<Text>, spares: Spares, version: u16) {
    let mut values = ValuesJson::new(Vec::new(), version);
    for batch in batches {
        let mut text = spares.texts.try_recv().unwrap_or_default();
        // Compressed strings grow as they are written: room for several times the bytes.
        text.reserve(4 * batch.bytes.len());
        let done = values.load(batch.bytes);
        if done.capacity() <= MAX_SPARE {
            let _ = spares.bytes.send(done);
        }
        let mut failed = None;
        for rec in &batch.records {
            let line = text.len();
            jsonl_head(&mut text, rec.db, &rec.key, rec.kind, rec.expire_ms);
            match values.write(rec.ty, rec.start, rec.end, batch.base + rec.start as u64, &rec.key, &mut text) {
                Ok(()) => text.extend_from_slice(b"}\n"),
                Err(e) => {
                    text.truncate(line);
                    failed = Some(e);
                    break;
                }
            }
        }
        let stop = failed.is_some();
        let text = match failed {
            None => Ok(text),
            Some(e) => Err((text, e)),
        };
        if to_writer.send(text).is_err() || stop {
            return;
        }
    }
}

/// The start of a JSON line, `{"db","expires_at","key","type",` then `"value":` (the keys in
/// the order `serde_json` sorts them); the value and `}` follow.
fn jsonl_head(out: &mut Vec<u8>, db: u64, key: &[u8], kind: ValueKind, expire_ms: Option<u64>) {
    out.extend_from_slice(b"{\"db\":");
    push_unsigned(out, db);
    out.extend_from_slice(b",\"expires_at\":");
    match expire_ms {
        Some(t) => push_unsigned(out, t),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"key\":");
    write_bytes_json(out, key);
    out.extend_from_slice(b",\"type\":\"");
    out.extend_from_slice(kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"value\":");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::{write_value_json, Record, RdbWriter, Value};

    fn record(key: String, value: Value, kind: ValueKind) -> Record {
        Record { db: 0, key: key.into_bytes(), kind, rdb_type: 0, encoding: "", expire_ms: None, idle: None, freq: None, value, raw: Vec::new(), serialized_len: 0, offset: 0 }
    }

    /// Enough keys for many batches, one value larger than a batch, and key `bad` (when
    /// given) a hash whose listpack only the JSON writer reads (the walk skips it whole).
    fn rdb(bad: Option<usize>) -> Vec<u8> {
        let mut w = RdbWriter::new(Vec::new(), 11).unwrap();
        for i in 0..24_000usize {
            let mut rec = match i % 3 {
                0 => record(format!("s:{i}"), Value::String(format!("{{\"doc\":{i},\"text\":\"{}\"}}", "ab\"c\\".repeat(i % 50)).into_bytes()), ValueKind::String),
                1 => record(format!("l:{i}"), Value::List((0..i % 40).map(|k| format!("item {k}\n").into_bytes()).collect()), ValueKind::List),
                _ => record(format!("h:{i}"), Value::Hash(vec![(b"f".to_vec(), vec![b'x'; if i == 3002 { 600_000 } else { i % 300 }], None)]), ValueKind::Hash),
            };
            if bad == Some(i) {
                rec.kind = ValueKind::Hash;
                rec.rdb_type = 16;
                rec.raw = [&[16u8, 10][..], b"notalistpk"].concat();
            }
            rec.expire_ms = (i % 7 == 0).then_some(1_900_000_000_000 + i as u64);
            w.record(&rec, 11).unwrap();
        }
        w.finish().unwrap()
    }

    /// The lines one thread writes from the decoded values, for the records up to `upto`.
    fn reference(rdb: &[u8], filter: &KeyFilter, upto: usize) -> Vec<u8> {
        let opts = ReadOptions { verify_checksum: false, ..ReadOptions::default() };
        let mut r = RdbReader::with_options(rdb, opts).unwrap();
        let mut out = Vec::new();
        let mut n = 0;
        while let Ok(Some(item)) = r.next_item() {
            if let Item::Record(rec) = item {
                n += 1;
                if n > upto {
                    break;
                }
                if filter.matches(&rec) {
                    jsonl_head(&mut out, rec.db, &rec.key, rec.kind, rec.expire_ms);
                    write_value_json(&mut out, &rec.value);
                    out.extend_from_slice(b"}\n");
                }
            }
        }
        out
    }

    #[test]
    fn lines_come_in_file_order_across_batches_and_workers() {
        let rdb = rdb(None);
        assert!(rdb.len() > 4 * BATCH_BYTES, "{} bytes: too few batches", rdb.len());
        for filter in [KeyFilter::default(), KeyFilter { kind: Some(ValueKind::List), ..KeyFilter::default() }] {
            let mut out = Vec::new();
            let keys = export_jsonl(&rdb[..], "t.rdb", &filter, &mut out).unwrap();
            let want = reference(&rdb, &filter, usize::MAX);
            assert_eq!(keys as usize, want.iter().filter(|&&b| b == b'\n').count());
            assert!(out == want, "the parallel export differs from the one-thread reference");
        }
    }

    #[test]
    fn lines_before_damage_are_written_then_the_error_names_the_key() {
        // Damage the walk finds (the file cut short), and damage only a worker finds.
        let cut = rdb(None)[..rdb(None).len() * 2 / 3].to_vec();
        let bad = rdb(Some(20_000));
        for (rdb, key) in [(cut, None), (bad, Some("h:20000"))] {
            let mut out = Vec::new();
            let err = export_jsonl(&rdb[..], "t.rdb", &KeyFilter::default(), &mut out).unwrap_err().to_string();
            assert!(err.contains("t.rdb"), "{err}");
            let lines = out.iter().filter(|&&b| b == b'\n').count();
            if let Some(key) = key {
                assert!(err.contains(key), "{err}");
                assert_eq!(lines, 20_000);
            }
            assert!(out == reference(&rdb, &KeyFilter::default(), lines), "the lines before the damage differ");
            assert!(lines > 1000, "{lines} lines before the damage");
        }
    }

    #[test]
    fn jsonl_lines_are_what_serde_json_writes() {
        use crate::rdb::{bytes_to_json, value_to_json, ValueKind};
        let mut rec = Record {
            db: 3,
            key: b"k\xff\"".to_vec(),
            kind: ValueKind::Hash,
            rdb_type: 4,
            encoding: "hashtable",
            expire_ms: None,
            idle: None,
            freq: None,
            value: Value::Hash(vec![(b"f".to_vec(), b"v\n".to_vec(), None)]),
            raw: Vec::new(),
            serialized_len: 0,
            offset: 0,
        };
        for expire in [None, Some(1_700_000_000_123)] {
            rec.expire_ms = expire;
            let mut out = Vec::new();
            jsonl_head(&mut out, rec.db, &rec.key, rec.kind, rec.expire_ms);
            crate::rdb::write_value_json(&mut out, &rec.value);
            out.extend_from_slice(b"}\n");
            let want = serde_json::json!({
                "db": rec.db,
                "key": bytes_to_json(&rec.key),
                "type": rec.kind.as_str(),
                "expires_at": rec.expire_ms,
                "value": value_to_json(&rec.value),
            });
            assert_eq!(String::from_utf8(out).unwrap(), format!("{want}\n"));
        }
    }
}
