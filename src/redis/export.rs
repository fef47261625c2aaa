//! `rdbvault export`: a snapshot's keys as JSON lines, CSV, Redis commands (RESP, for
//! `redis-cli --pipe`) or key names, one key at a time (memory bounded by the largest key).
//!
//! Text escaping (`keys`, `csv`): valid UTF-8 is kept except `\` (written `\\`) and control
//! characters; those and bytes that are not UTF-8 are written `\xNN`. JSON (`jsonl`) uses the
//! rule of `inspect --json`: a UTF-8 string stays a string, anything else becomes `{"hex": "..."}`.

use std::io::{Read, Write};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};

use serde::Serialize;

use crate::engine::restore::Blobs;
use crate::error::Error;
use crate::format::snapshot::Snapshot;
use crate::rdb::{printable, Item, RdbReader, ReadOptions, Record, Stream, Value};
use crate::redis::keyindex;
use crate::redis::keyscan::{rdb_file, KeyFilter};

/// Elements per generated command, so no single command grows with the key.
const ELEMENTS_PER_COMMAND: usize = 512;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
    Resp,
    Keys,
}

impl Format {
    /// Parses `jsonl`, `csv`, `resp` or `keys`.
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "jsonl" => Format::Jsonl,
            "csv" => Format::Csv,
            "resp" => Format::Resp,
            "keys" => Format::Keys,
            _ => return None,
        })
    }
}

/// What was exported.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportReport {
    pub keys: u64,
    pub functions: u64,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Repo(#[from] Error),
    #[error("key {key} in db {db} is a module value ({module}): Redis commands cannot rebuild it; export it as jsonl, or use restore --to or restore --target")]
    Module { db: u64, key: String, module: String },
    #[error("write the export: {0}")]
    Io(#[from] std::io::Error),
}

/// Exports the keys of `snap` that pass `filter` to `out`.
pub fn export_snapshot(blobs: &Blobs<'_>, snap: &Snapshot, filter: &KeyFilter, format: Format, out: &mut dyn Write) -> Result<ExportReport, ExportError> {
    let file = rdb_file(snap)?;
    keyindex::with_reader(blobs, snap, file, filter, |r| export(r, &file.name, filter, format, out))
}

/// Exports the keys of the RDB `r` (named `what` in errors). JSON lines are written straight
/// from the RDB bytes on several threads ([`super::jsonl`]); for the other formats the RDB is read and decoded
/// on this thread while a second one formats the keys ([`Formatter`]), in batches through a
/// bounded channel, so memory stays bounded by a few batches and the largest key.
pub fn export<R: Read>(r: R, what: &str, filter: &KeyFilter, format: Format, out: &mut dyn Write) -> Result<ExportReport, ExportError> {
    if format == Format::Jsonl {
        let keys = super::jsonl::export_jsonl(r, what, filter, out)?;
        return Ok(ExportReport { keys, functions: 0 });
    }
    let opts = if format == Format::Keys { ReadOptions::walk_only() } else { ReadOptions { capture_raw: false, ..ReadOptions::default() } };
    let mut rdb = RdbReader::with_options(r, opts).map_err(|e| Error::rdb(what, e))?;
    let whole = filter.whole_dbs() && filter.db.is_none();
    let mut report = ExportReport::default();
    if format == Format::Csv {
        out.write_all(b"db,key,type,expires_at,field,value\n")?;
    }
    std::thread::scope(|s| {
        let (to_format, batches) = sync_channel::<Vec<Item>>(QUEUED_BATCHES);
        let (to_write, formatted) = channel::<Result<Vec<u8>, ExportError>>();
        s.spawn(move || Formatter { format, db: None }.run(batches, to_write));
        let write = |out: &mut dyn Write, text: Result<Vec<u8>, ExportError>| -> Result<(), ExportError> { Ok(out.write_all(&text?)?) };
        let (mut batch, mut bytes) = (Vec::new(), 0u64);
        while let Some(item) = rdb.next_item().map_err(|e| Error::rdb(what, e))? {
            match &item {
                Item::Function(_) if whole && format == Format::Resp => report.functions += 1,
                Item::Record(rec) if filter.matches(rec) => {
                    report.keys += 1;
                    bytes += rec.serialized_len;
                }
                _ => continue,
            }
            batch.push(item);
            if batch.len() >= BATCH_KEYS || bytes >= BATCH_BYTES {
                bytes = 0;
                if to_format.send(std::mem::take(&mut batch)).is_err() {
                    break;
                }
                for text in formatted.try_iter() {
                    write(out, text)?;
                }
            }
        }
        if !batch.is_empty() {
            let _ = to_format.send(batch);
        }
        drop(to_format);
        for text in formatted {
            write(out, text)?;
        }
        Ok::<_, ExportError>(())
    })?;
    out.flush()?;
    Ok(report)
}

/// Keys per batch handed to the formatting thread, and the serialized bytes at which a batch closes.
const BATCH_KEYS: usize = 512;
const BATCH_BYTES: u64 = 256 << 10;
/// Batches queued for the formatting thread while it formats one.
const QUEUED_BATCHES: usize = 4;

/// The formatting thread: turns batches of items into the text of the output format.
struct Formatter {
    format: Format,
    /// The db the RESP output has selected.
    db: Option<u64>,
}

impl Formatter {
    /// Formats every batch until the reader is done or the writer has gone (then stops at the first error).
    fn run(mut self, batches: Receiver<Vec<Item>>, to_write: Sender<Result<Vec<u8>, ExportError>>) {
        for batch in batches {
            let mut text = Vec::with_capacity(BATCH_BYTES as usize);
            let done = batch.iter().try_for_each(|item| self.item(&mut text, item));
            // The keys before a failing one are written first, as they would be without the thread.
            let sent = to_write.send(Ok(text));
            if let Err(e) = done {
                let _ = to_write.send(Err(e));
                return;
            }
            if sent.is_err() {
                return;
            }
        }
    }

    fn item(&mut self, out: &mut Vec<u8>, item: &Item) -> Result<(), ExportError> {
        match item {
            Item::Function(code) => resp(out, &[b"FUNCTION", b"LOAD", b"REPLACE", code])?,
            Item::Record(rec) => match self.format {
                Format::Keys => writeln!(out, "{}", text(&rec.key))?,
                // Written straight from the RDB bytes by `export_jsonl`, never batched.
                Format::Jsonl => {}
                Format::Csv => csv(out, rec)?,
                Format::Resp => {
                    if self.db != Some(rec.db) {
                        resp(out, &[b"SELECT", rec.db.to_string().as_bytes()])?;
                        self.db = Some(rec.db);
                    }
                    commands(out, rec)?;
                }
            },
            _ => {}
        }
        Ok(())
    }
}

/// Bytes as line-safe text (see the module comment for the rule).
pub fn text(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for byte in c.encode_utf8(&mut buf).bytes() {
                        s.push_str(&format!("\\x{byte:02x}"));
                    }
                }
                c => s.push(c),
            }
        }
        for &byte in chunk.invalid() {
            s.push_str(&format!("\\x{byte:02x}"));
        }
    }
    s
}

/// A CSV field: quoted when it holds a comma, quote or space, quotes doubled.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', ' ']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A score as Redis accepts it back (`inf`, `-inf`, else the shortest exact decimal).
fn score(f: f64) -> String {
    if f == f64::INFINITY {
        "inf".into()
    } else if f == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        // The shorter of the plain and the exponent form; both parse back to the same double.
        let (plain, exp) = (format!("{f}"), format!("{f:e}"));
        if exp.len() < plain.len() { exp } else { plain }
    }
}

/// One CSV row per element: strings have no field, lists their index, sets the member,
/// sorted sets member and score, hashes field and value, streams `ID FIELD` and value.
fn csv(out: &mut dyn Write, rec: &Record) -> std::io::Result<()> {
    let head = format!(
        "{},{},{},{}",
        rec.db,
        csv_field(&text(&rec.key)),
        rec.kind.as_str(),
        rec.expire_ms.map(|t| t.to_string()).unwrap_or_default()
    );
    let mut row = |field: &str, value: &str| writeln!(out, "{head},{},{}", csv_field(field), csv_field(value));
    match &rec.value {
        Value::String(s) => row("", &text(s)),
        Value::List(items) => items.iter().enumerate().try_for_each(|(i, v)| row(&i.to_string(), &text(v))),
        Value::Set(items) => items.iter().try_for_each(|m| row(&text(m), "")),
        Value::SortedSet(items) => items.iter().try_for_each(|(m, s)| row(&text(m), &score(*s))),
        Value::Hash(fields) => fields.iter().try_for_each(|(f, v, _)| row(&text(f), &text(v))),
        Value::Stream(s) => s
            .entries
            .iter()
            .try_for_each(|e| e.fields.iter().try_for_each(|(f, v)| row(&format!("{} {}", e.id, text(f)), &text(v)))),
        Value::Module(m) => row("", &format!("<module {}>", m.name)),
        Value::NotDecoded => Ok(()),
    }
}

/// Writes one command as a RESP array of bulk strings.
fn resp(out: &mut dyn Write, args: &[&[u8]]) -> std::io::Result<()> {
    write!(out, "*{}\r\n", args.len())?;
    for a in args {
        write!(out, "${}\r\n", a.len())?;
        out.write_all(a)?;
        out.write_all(b"\r\n")?;
    }
    Ok(())
}

/// Writes `NAME key` + chunks of `args` as commands of at most [`ELEMENTS_PER_COMMAND`] elements.
fn chunked(out: &mut dyn Write, name: &[u8], key: &[u8], args: &[Vec<u8>], per: usize) -> std::io::Result<()> {
    for chunk in args.chunks(ELEMENTS_PER_COMMAND * per) {
        let mut cmd: Vec<&[u8]> = vec![name, key];
        cmd.extend(chunk.iter().map(Vec::as_slice));
        resp(out, &cmd)?;
    }
    Ok(())
}

/// The commands that rebuild one key (value, field TTLs, stream groups, then the key's expiry).
fn commands(out: &mut dyn Write, rec: &Record) -> Result<(), ExportError> {
    let k = rec.key.as_slice();
    match &rec.value {
        Value::String(s) => resp(out, &[b"SET", k, s])?,
        Value::List(items) => chunked(out, b"RPUSH", k, items, 1)?,
        Value::Set(items) => chunked(out, b"SADD", k, items, 1)?,
        Value::SortedSet(items) => {
            let args: Vec<Vec<u8>> = items.iter().flat_map(|(m, s)| [score(*s).into_bytes(), m.clone()]).collect();
            chunked(out, b"ZADD", k, &args, 2)?
        }
        Value::Hash(fields) => {
            let args: Vec<Vec<u8>> = fields.iter().flat_map(|(f, v, _)| [f.clone(), v.clone()]).collect();
            chunked(out, b"HSET", k, &args, 2)?;
            for (f, _, t) in fields {
                if let Some(t) = t {
                    resp(out, &[b"HPEXPIREAT", k, t.to_string().as_bytes(), b"FIELDS", b"1", f])?;
                }
            }
        }
        Value::Stream(s) => stream(out, k, s)?,
        Value::Module(m) => {
            return Err(ExportError::Module { db: rec.db, key: printable(k), module: m.name.clone() })
        }
        Value::NotDecoded => {}
    }
    if let Some(t) = rec.expire_ms {
        resp(out, &[b"PEXPIREAT", k, t.to_string().as_bytes()])?;
    }
    Ok(())
}

/// Stream commands as Redis' own AOF rewrite emits them: entries, last id, groups, pending entries.
fn stream(out: &mut dyn Write, k: &[u8], s: &Stream) -> std::io::Result<()> {
    let last = s.last_id.to_string();
    if s.entries.is_empty() {
        // An empty stream exists: create it with one entry and trim it away.
        resp(out, &[b"XADD", k, b"MAXLEN", b"0", last.as_bytes(), b"x", b"y"])?;
    }
    for e in &s.entries {
        let id = e.id.to_string();
        let mut cmd: Vec<&[u8]> = vec![b"XADD", k, id.as_bytes()];
        for (f, v) in &e.fields {
            cmd.push(f);
            cmd.push(v);
        }
        resp(out, &cmd)?;
    }
    let mut setid: Vec<Vec<u8>> = vec![b"XSETID".to_vec(), k.to_vec(), last.into_bytes()];
    if let (Some(added), Some(max_del)) = (s.entries_added, s.max_deleted_id) {
        setid.extend([b"ENTRIESADDED".to_vec(), added.to_string().into_bytes(), b"MAXDELETEDID".to_vec(), max_del.to_string().into_bytes()]);
    }
    resp(out, &setid.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
    for g in &s.groups {
        let gid = g.last_id.to_string();
        let mut create: Vec<Vec<u8>> = vec![b"XGROUP".to_vec(), b"CREATE".to_vec(), k.to_vec(), g.name.clone(), gid.clone().into_bytes()];
        if let Some(n) = g.entries_read.filter(|&n| n != u64::MAX) {
            create.extend([b"ENTRIESREAD".to_vec(), n.to_string().into_bytes()]);
        }
        resp(out, &create.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
        for c in &g.consumers {
            resp(out, &[b"XGROUP", b"CREATECONSUMER", k, &g.name, &c.name])?;
            for id in &c.pending {
                let Some(p) = g.pending.iter().find(|p| p.id == *id) else { continue };
                let (id, time, count) = (id.to_string(), p.delivery_time_ms.to_string(), p.delivery_count.to_string());
                resp(out, &[
                    b"XCLAIM", k, &g.name, &c.name, b"0", id.as_bytes(), b"TIME", time.as_bytes(),
                    b"RETRYCOUNT", count.as_bytes(), b"FORCE", b"JUSTID", b"LASTID", gid.as_bytes(),
                ])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_escapes_controls_backslash_and_non_utf8() {
        assert_eq!(text(b"caf\xc3\xa9 a\\b\n\xff"), "café a\\\\b\\x0a\\xff");
        assert_eq!(csv_field("a,b \"c\""), "\"a,b \"\"c\"\"\"");
        assert_eq!(score(f64::NEG_INFINITY), "-inf");
        assert_eq!(score(0.1), "0.1");
    }
}
