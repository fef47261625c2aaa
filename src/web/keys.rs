//! The key browser's endpoints: a page of keys and one key's value, read through the
//! snapshot's key index (only the index pages and records a page needs), or by streaming
//! the RDB and stopping as soon as the answer is complete for a snapshot without one.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::{json, Value};

use crate::redis::inspect::{key_json, snapshot_time_ms};
use crate::redis::keyindex::{self, KeyInfo};
use crate::rdb::{escape, unescape};

use super::api::{db_of, filter, find, number, the_rdb, with_few_blobs, Params};
use super::error::{blocking, ApiError};
use super::Site;

/// Most keys on one page.
pub const MAX_PAGE: u64 = 1000;

/// One listed key as JSON; `encoding`, `approx_memory` and `serialized_len` are null when
/// the page's records were too large to read them all ([`keyindex::DETAIL_BYTES`]).
fn key_row(k: &KeyInfo, at_ms: u64) -> Value {
    let d = k.detail.as_ref();
    json!({
        "db": k.db,
        "key": escape(&k.key),
        "type": k.kind.as_str(),
        "encoding": d.map(|d| d.encoding),
        "expire_at_ms": k.expire_ms,
        "ttl_ms": k.expire_ms.map(|t| t as i64 - at_ms as i64),
        "approx_memory": d.map(|d| d.approx_memory),
        "serialized_len": d.map(|d| d.serialized_len),
        "record_bytes": k.record_bytes,
    })
}

/// `GET /api/repos/{repo}/snapshots/{id}/keys?cursor=&limit=&pattern=&type=&db=`: a page of
/// keys (by db and name with a key index, in file order without); `next_cursor` (an opaque
/// string, null on the last page) asks for the next one; `indexed` says which way it was read.
pub async fn page(State(site): State<Arc<Site>>, Path((name, spec)): Path<(String, String)>, Query(q): Params) -> Result<Json<Value>, ApiError> {
    let r = site.repo(&name)?;
    blocking(move || {
        let limit = number(&q, "limit", 100, MAX_PAGE)?;
        if limit == 0 {
            return Err(ApiError::bad("limit=0: ask for 1 to 1000 keys"));
        }
        let cursor = q.get("cursor").filter(|c| !c.is_empty()).cloned();
        let (id, snap) = find(&r.repo, &spec)?;
        let f = filter(&q, &snap, &id)?;
        the_rdb(&id, &snap)?;
        let at = snapshot_time_ms(&snap);
        let query = keyindex::Query { db: f.db, pattern: f.pattern, kind: f.kind, cursor, limit: limit as usize, details: true };
        let page = with_few_blobs(&r, &snap, |blobs| Ok(keyindex::page(blobs, &snap, &query)?))?;
        let keys: Vec<Value> = page.entries.iter().map(|k| key_row(k, at)).collect();
        Ok(Json(json!({ "snapshot_id": id.to_hex(), "keys": keys, "next_cursor": page.next_cursor, "indexed": page.indexed })))
    })
    .await
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
        let rec = with_few_blobs(&r, &snap, |blobs| Ok(keyindex::value(blobs, &snap, db, &key)?))?;
        let rec = rec.ok_or_else(|| ApiError::not_found(format!("snapshot {} has no key {text:?} in db {db}", id.short())))?;
        let mut v = key_json(&rec, snapshot_time_ms(&snap));
        if let Value::Object(o) = &mut v {
            o.insert("snapshot_id".into(), json!(id.to_hex()));
        }
        Ok(Json(v))
    })
    .await
}
