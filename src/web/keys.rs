//! The key browser's endpoints: a page of keys and one key's value, read by streaming
//! the snapshot's RDB and stopping as soon as the answer is complete (memory: one page).
//!
//! A key's value comes through the key index (`redis::keyindex::value`); [`scan_page`]
//! still streams (it keeps the numeric cursor); an index-backed page is the next step,
//! since the index answers in key order with its own cursor.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::{json, Value};

use crate::engine::restore::Blobs;
use crate::error::Error;
use crate::format::snapshot::SnapshotFile;
use crate::redis::inspect::{key_json, snapshot_time_ms, ttl_ms};
use crate::redis::keyscan::{scan_file, KeyFilter};
use crate::rdb::{approx_memory, escape, unescape, ReadOptions, Record};

use super::api::{db_of, filter, find, number, the_rdb, with_blobs, Params};
use super::error::{blocking, ApiError};
use super::Site;

/// Most keys on one page.
pub const MAX_PAGE: u64 = 1000;

/// Why a scan ended before the RDB did.
enum Stop {
    /// The answer is complete.
    Done,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Failed(e)
    }
}

/// Runs a scan that may stop early; an early stop is success.
fn scan_until(blobs: &Blobs<'_>, file: &SnapshotFile, opts: ReadOptions, filter: &KeyFilter, each: impl FnMut(u16, Record) -> Result<(), Stop>) -> Result<(), Error> {
    match scan_file(blobs, file, opts, filter, each) {
        Ok(_) | Err(Stop::Done) => Ok(()),
        Err(Stop::Failed(e)) => Err(e),
    }
}

/// One page: the keys after the first `skip` that pass `filter`, at most `limit`; whether more follow.
fn scan_page(blobs: &Blobs<'_>, file: &SnapshotFile, filter: &KeyFilter, skip: u64, limit: usize, at_ms: u64) -> Result<(Vec<Value>, u64, bool), Error> {
    let (mut seen, mut rows, mut more) = (0u64, Vec::new(), false);
    let opts = ReadOptions { capture_raw: false, ..ReadOptions::default() };
    scan_until(blobs, file, opts, filter, |_, rec| {
        if seen < skip {
            seen += 1;
            return Ok(());
        }
        if rows.len() == limit {
            more = true;
            return Err(Stop::Done);
        }
        rows.push(json!({
            "db": rec.db,
            "key": escape(&rec.key),
            "type": rec.kind.as_str(),
            "encoding": rec.encoding,
            "expire_at_ms": rec.expire_ms,
            "ttl_ms": ttl_ms(&rec, at_ms),
            "approx_memory": approx_memory(&rec),
            "serialized_len": rec.serialized_len,
        }));
        Ok(())
    })?;
    Ok((rows, seen, more))
}

/// `GET /api/repos/{repo}/snapshots/{id}/keys?cursor=&limit=&pattern=&type=&db=`: a page of
/// keys; `next_cursor` (an opaque string, null on the last page) asks for the next one.
pub async fn page(State(site): State<Arc<Site>>, Path((name, spec)): Path<(String, String)>, Query(q): Params) -> Result<Json<Value>, ApiError> {
    let r = site.repo(&name)?;
    blocking(move || {
        let limit = number(&q, "limit", 100, MAX_PAGE)?;
        if limit == 0 {
            return Err(ApiError::bad("limit=0: ask for 1 to 1000 keys"));
        }
        let cursor = cursor_of(&q)?;
        let (id, snap) = find(&r.repo, &spec)?;
        let filter = filter(&q, &snap, &id)?;
        let file = the_rdb(&id, &snap)?;
        let at = snapshot_time_ms(&snap);
        let (keys, seen, more) = with_blobs(&r, |blobs| Ok(scan_page(blobs, file, &filter, cursor, limit as usize, at)?))?;
        if cursor > 0 && seen < cursor {
            return Err(ApiError::bad(format!("cursor {cursor} is past the last key: only {seen} keys of snapshot {} match", id.short())));
        }
        let next = more.then(|| format!("n{}", cursor + keys.len() as u64));
        Ok(Json(json!({ "snapshot_id": id.to_hex(), "keys": keys, "next_cursor": next })))
    })
    .await
}

/// Keys to skip from an opaque `cursor` (`n<count>`, as `next_cursor` gives; the key
/// index's cursors can join this form without changing the API).
fn cursor_of(q: &std::collections::HashMap<String, String>) -> Result<u64, ApiError> {
    match q.get("cursor").map(String::as_str) {
        None | Some("") => Ok(0),
        Some(c) => c
            .strip_prefix('n')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| ApiError::bad(format!("cursor={c:?} is not a cursor this server gave (next_cursor of the previous page)"))),
    }
}

/// `GET /api/repos/{repo}/snapshots/{id}/key?db=N&key=K`: one key with its value as JSON;
/// `key` is escaped as the listings show it (`\xff` for a byte that is not printable).
pub async fn value(State(site): State<Arc<Site>>, Path((name, spec)): Path<(String, String)>, Query(q): Params) -> Result<Json<Value>, ApiError> {
    let r = site.repo(&name)?;
    blocking(move || {
        let text = q.get("key").ok_or_else(|| ApiError::bad("missing parameter key (the key name, escaped as the key list shows it)"))?;
        let key = unescape(text).ok_or_else(|| ApiError::bad(format!("key={text:?} has a malformed escape (use \\xHH, \\\\ or \\\")")))?;
        let (id, snap) = find(&r.repo, &spec)?;
        let db = db_of(&snap, &id, q.get("db").map_or("0", String::as_str))?;
        the_rdb(&id, &snap)?;
        let rec = with_blobs(&r, |blobs| Ok(crate::redis::keyindex::value(blobs, &snap, db, &key)?))?;
        let rec = rec.ok_or_else(|| ApiError::not_found(format!("snapshot {} has no key {text:?} in db {db}", id.short())))?;
        let mut v = key_json(&rec, snapshot_time_ms(&snap));
        if let Value::Object(o) = &mut v {
            o.insert("snapshot_id".into(), json!(id.to_hex()));
        }
        Ok(Json(v))
    })
    .await
}
