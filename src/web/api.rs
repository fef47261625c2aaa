//! The read-only endpoints: repositories, snapshots, memory report, diff, timeline.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::{json, Value};

use crate::crypto::Id;
use crate::engine::restore::{load_index, Blobs};
use crate::format::snapshot::{Listing, Snapshot, SnapshotFile};
use crate::redis::diff::{self, Change};
use crate::redis::follow::timeline;
use crate::redis::glob::Glob;
use crate::redis::inspect::memory_report;
use crate::redis::keyscan::{parse_kind, rdb_file, KeyFilter};
use crate::rdb::escape;
use crate::store::Repository;

use crate::host::release_memory;
use super::error::{blocking, ApiError};
use super::{Repo, Site};

/// Query parameters as given (parsed by each endpoint, so bad input gets our own message).
pub type Params = Query<HashMap<String, String>>;

/// Longest key pattern accepted.
const MAX_PATTERN: usize = 4096;
/// Most changes one diff answer lists (the counts cover them all).
const MAX_DIFF_CHANGES: usize = 10_000;
/// Most keys a memory report ranks.
const MAX_TOP: usize = 1000;

/// `GET /metrics`: Prometheus text about the jobs this server ran and the lag of every
/// followed server of the served repositories ([`crate::ops::metrics`]).
pub async fn metrics(State(site): State<Arc<Site>>) -> Result<impl axum::response::IntoResponse, ApiError> {
    let mut body = site.jobs.as_ref().map(|w| crate::ops::metrics::render(&w.jobs)).unwrap_or_default();
    let lag = blocking(move || {
        let repos: Vec<(&str, &Repository)> = site.repos.iter().map(|r| (r.name.as_str(), &r.repo)).collect();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Ok(crate::ops::metrics::followers(&repos, now))
    })
    .await?;
    body.push_str(&lag);
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body))
}

/// `GET /health` (and `/api/health`): `ok`, or `failing` when the last job of some kind
/// on some repository failed; how many jobs run. Open without login, for probes.
pub async fn health(State(site): State<Arc<Site>>) -> Json<Value> {
    let jobs = site.jobs.as_ref().map(|w| w.jobs.list()).unwrap_or_default();
    let running = jobs.iter().filter(|j| !j.state.finished()).count();
    // Newest first: the first finished job of each (repository, kind) is its last outcome.
    let mut seen = std::collections::BTreeSet::new();
    let failing: Vec<Value> = jobs
        .iter()
        .filter(|j| j.state.finished() && seen.insert((j.repo.clone(), j.kind.clone())))
        .filter(|j| j.state == crate::ops::JobState::Failed)
        .map(|j| json!({ "job": j.id, "kind": j.kind, "repo": j.repo, "finished_ms": j.finished_ms }))
        .collect();
    let status = if failing.is_empty() { "ok" } else { "failing" };
    Json(json!({ "status": status, "repositories": site.repos.len(), "jobs_running": running, "failing": failing }))
}

/// Any other `/api/...` path.
pub async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

/// `GET /api/repos`: the repositories served.
pub async fn repos(State(site): State<Arc<Site>>) -> Json<Value> {
    Json(json!(site.repos.iter().map(|r| json!({ "name": r.name, "location": r.location })).collect::<Vec<_>>()))
}

/// `a / b`, or null when `b` is 0 (everything deduplicated: no ratio to show).
fn ratio(a: u64, b: u64) -> Value {
    if b == 0 {
        Value::Null
    } else {
        json!(((a as f64 / b as f64) * 100.0).round() / 100.0)
    }
}

/// One snapshot as a list row: what it holds, what it cost, how well it deduplicated.
pub fn snapshot_row(id: &Id, s: &Snapshot) -> Value {
    let m = &s.summary;
    json!({
        "id": id.to_hex(),
        "short_id": id.short(),
        "time": s.time,
        "host": s.host,
        "tags": s.tags,
        "group": s.group,
        "source": { "kind": s.source.kind, "name": s.source.name },
        "size": s.size(),
        "bytes_processed": m.bytes_processed,
        "bytes_added": m.bytes_added,
        "new_raw_bytes": m.new_raw_bytes,
        "duration_ms": m.duration_ms,
        // Source bytes per new byte before compression, and new bytes per stored byte.
        "dedup_ratio": ratio(m.bytes_processed, m.new_raw_bytes),
        "compression_ratio": ratio(m.new_raw_bytes, m.bytes_added),
        "keys": s.redis.as_ref().and_then(|r| r.keys),
        "redis_version": s.redis.as_ref().and_then(|r| r.redis_version.clone()),
        "log_segment": s.is_log_segment(),
    })
}

/// `GET /api/repos/{repo}/snapshots`: every readable snapshot, oldest first (log
/// segments of followed servers only with `?all=1`), and the unreadable ones named.
pub async fn snapshots(State(site): State<Arc<Site>>, Path(name): Path<String>, Query(q): Params) -> Result<Json<Value>, ApiError> {
    let r = site.repo(&name)?;
    let all = flag(&q, "all")?;
    blocking(move || {
        let listing = Listing::load(&r.repo)?;
        let rows: Vec<Value> = listing.snapshots.iter().filter(|(_, s)| all || !s.is_log_segment()).map(|(id, s)| snapshot_row(id, s)).collect();
        let unreadable: Vec<String> = listing.unreadable.iter().map(|u| u.to_string()).collect();
        Ok(Json(json!({ "repository": r.name, "snapshots": rows, "unreadable": unreadable })))
    })
    .await
}

/// `GET /api/repos/{repo}/snapshots/{id}`: the snapshot's row plus its files and Redis facts.
pub async fn snapshot(State(site): State<Arc<Site>>, Path((name, spec)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    let r = site.repo(&name)?;
    blocking(move || {
        let (id, snap) = find(&r.repo, &spec)?;
        let mut v = snapshot_row(&id, &snap);
        if let Value::Object(o) = &mut v {
            o.insert("username".into(), json!(snap.username));
            o.insert("redis".into(), json!(snap.redis));
            o.insert("source".into(), json!(snap.source));
            o.insert(
                "files".into(),
                json!(snap.files.iter().map(|f| json!({ "name": f.name, "size": f.size, "blake3": f.blake3, "chunks": f.chunks })).collect::<Vec<_>>()),
            );
            o.insert("original".into(), json!(snap.original));
        }
        Ok(Json(v))
    })
    .await
}

/// Whether a `0`/`1`/`true`/`false` query flag is set.
fn flag(q: &HashMap<String, String>, name: &str) -> Result<bool, ApiError> {
    match q.get(name).map(String::as_str) {
        None | Some("0") | Some("false") => Ok(false),
        Some("1") | Some("true") | Some("") => Ok(true),
        Some(other) => Err(ApiError::bad(format!("{name}={other:?}: use 1 or 0"))),
    }
}

/// A whole number from the query, `default` when absent, at most `max`.
pub fn number(q: &HashMap<String, String>, name: &str, default: u64, max: u64) -> Result<u64, ApiError> {
    let Some(s) = q.get(name) else { return Ok(default) };
    let n: u64 = s.parse().map_err(|_| ApiError::bad(format!("{name}={s:?} is not a whole number")))?;
    if n > max {
        return Err(ApiError::bad(format!("{name}={n} is too large (at most {max})")));
    }
    Ok(n)
}

/// Finds a snapshot by `latest`, id or prefix; refuses log segments and malformed ids.
pub fn find(repo: &Repository, spec: &str) -> Result<(Id, Snapshot), ApiError> {
    if spec != "latest" && (spec.is_empty() || spec.len() > 64 || !spec.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(ApiError::bad(format!("{spec:?} is not a snapshot id: use `latest`, an id or a prefix of one (hex digits)")));
    }
    let (found, _) = Snapshot::find(repo, &spec.to_ascii_lowercase())?;
    if found.1.is_log_segment() {
        return Err(ApiError::bad(format!(
            "snapshot {} is a log segment of a followed server: restore it through the timeline (point in time), not alone",
            found.0.short()
        )));
    }
    Ok(found)
}

/// The key filter of `pattern`, `type` and `db`, checked against the snapshot's databases.
pub fn filter(q: &HashMap<String, String>, snap: &Snapshot, id: &Id) -> Result<KeyFilter, ApiError> {
    let pattern = match q.get("pattern").map(String::as_str) {
        None | Some("") => None,
        Some(p) => Some(glob(p)?),
    };
    let kind = match q.get("type").map(String::as_str) {
        None | Some("") => None,
        Some(t) => Some(parse_kind(t).ok_or_else(|| ApiError::bad(format!("unknown type {t:?}: use string, list, set, zset, hash, stream or module")))?),
    };
    let db = match q.get("db").map(String::as_str) {
        None | Some("") => None,
        Some(d) => Some(db_of(snap, id, d)?),
    };
    Ok(KeyFilter { pattern, db, kind, ..KeyFilter::default() })
}

/// A database number that the snapshot has keys in.
pub fn db_of(snap: &Snapshot, id: &Id, text: &str) -> Result<u64, ApiError> {
    let db: u64 = text.parse().map_err(|_| ApiError::bad(format!("db={text:?} is not a database number")))?;
    let dbs = snap.redis.as_ref().map(|r| &r.keys_per_db);
    if let Some(dbs) = dbs.filter(|d| !d.is_empty()) {
        if u32::try_from(db).map_or(true, |d| !dbs.contains_key(&d)) {
            let have: Vec<String> = dbs.keys().map(|d| d.to_string()).collect();
            return Err(ApiError::not_found(format!("snapshot {} has no keys in db {db} (it has keys in db {})", id.short(), have.join(", "))));
        }
    }
    Ok(db)
}

/// A Redis glob pattern; refuses an unterminated `[` class or a trailing `\`, which
/// Redis would take literally but which is almost always a typo.
fn glob(p: &str) -> Result<Glob, ApiError> {
    if p.len() > MAX_PATTERN {
        return Err(ApiError::bad(format!("pattern is {} bytes long; at most {MAX_PATTERN}", p.len())));
    }
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 == b.len() => return Err(ApiError::bad(format!("bad pattern {p:?}: it ends with a lone \\ (write \\\\ for a backslash)"))),
            b'\\' => i += 1,
            b'[' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b']' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                if j >= b.len() {
                    return Err(ApiError::bad(format!("bad pattern {p:?}: the [ at byte {i} is never closed (write \\[ for a literal bracket)")));
                }
                i = j;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(Glob::new(b))
}

/// Runs `f` with a blob reader over the repository's whole index, loaded for this request
/// (which reads a whole snapshot) and dropped after it.
pub fn with_blobs<T>(r: &Repo, f: impl FnOnce(&Blobs<'_>) -> Result<T, ApiError>) -> Result<T, ApiError> {
    let done = load_index(&r.repo).map_err(ApiError::from).and_then(|(index, _)| f(&Blobs::new(&r.repo, &index)?));
    release_memory();
    done
}

/// Runs `f` with a blob reader that finds the few blobs it reads through the repository's
/// kept [`Lookup`](crate::engine::restore::Lookup) (key pages and values of `snap`); with
/// damaged index files, through the whole index (which reads pack headers instead).
pub fn with_few_blobs<T>(r: &Repo, snap: &Snapshot, f: impl FnOnce(&Blobs<'_>) -> Result<T, ApiError>) -> Result<T, ApiError> {
    let first = crate::redis::keyindex::first_blobs(snap);
    let done = match r.index.get(&r.repo, &first) {
        Ok(lookup) => Blobs::few(&r.repo, lookup).map_err(ApiError::from).and_then(|blobs| f(&blobs)),
        Err(_) => return with_blobs(r, f),
    };
    release_memory();
    done
}

/// The RDB file of a snapshot, or a 400 naming its files.
pub fn the_rdb<'a>(id: &Id, snap: &'a Snapshot) -> Result<&'a SnapshotFile, ApiError> {
    rdb_file(snap).map_err(|e| ApiError::bad(format!("snapshot {}: {e}", id.short())))
}

/// `GET /api/repos/{repo}/snapshots/{id}/memory?top=&pattern=&type=&db=`: largest keys
/// and memory by prefix and type, streamed (memory: the top list and one bucket per prefix).
pub async fn memory(State(site): State<Arc<Site>>, Path((name, spec)): Path<(String, String)>, Query(q): Params) -> Result<Json<Value>, ApiError> {
    let r = site.repo(&name)?;
    blocking(move || {
        let top = number(&q, "top", 20, MAX_TOP as u64)? as usize;
        let (id, snap) = find(&r.repo, &spec)?;
        let filter = filter(&q, &snap, &id)?;
        let file = the_rdb(&id, &snap)?;
        let report = with_blobs(&r, |blobs| Ok(memory_report(blobs, file, &filter, top)?))?;
        let mut v = report.to_json();
        if let Value::Object(o) = &mut v {
            o.insert("snapshot_id".into(), json!(id.to_hex()));
        }
        Ok(Json(v))
    })
    .await
}

fn change_json(c: &Change) -> Value {
    json!({
        "kind": c.kind,
        "db": c.key.db,
        "key": escape(&c.key.key),
        "old": c.old,
        "new": c.new,
        "what": c.what(),
    })
}

/// `GET /api/repos/{repo}/diff?old=&new=&pattern=&db=&limit=`: keys added, removed and
/// changed; at most `limit` changes listed, all counted.
pub async fn diff(State(site): State<Arc<Site>>, Path(name): Path<String>, Query(q): Params) -> Result<Json<Value>, ApiError> {
    let r = site.repo(&name)?;
    blocking(move || {
        let need = |k: &str| q.get(k).filter(|s| !s.is_empty()).ok_or_else(|| ApiError::bad(format!("missing parameter {k} (a snapshot id)")));
        let (old_id, old) = find(&r.repo, need("old")?)?;
        let (new_id, new) = find(&r.repo, need("new")?)?;
        let limit = number(&q, "limit", 1000, MAX_DIFF_CHANGES as u64)? as usize;
        let mut filter = filter(&q, &new, &new_id)?;
        filter.kind = None;
        let (old_file, new_file) = (the_rdb(&old_id, &old)?, the_rdb(&new_id, &new)?);
        let mut changes = Vec::new();
        let counts = with_blobs(&r, |blobs| {
            Ok(diff::diff(blobs, old_file, new_file, &filter, |c| {
                if changes.len() < limit {
                    changes.push(change_json(&c));
                }
                Ok(())
            })?)
        })?;
        let listed = changes.len() as u64;
        Ok(Json(json!({
            "old": old_id.to_hex(),
            "new": new_id.to_hex(),
            "counts": counts,
            "differences": counts.differences(),
            "changes": changes,
            "truncated": listed < counts.differences() + counts.reencoded,
        })))
    })
    .await
}

/// `GET /api/repos/{repo}/timeline`: what each followed server's log covers, and its gaps.
pub async fn timeline(State(site): State<Arc<Site>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let r = site.repo(&name)?;
    blocking(move || {
        let listing = Listing::load(&r.repo)?;
        let servers: Vec<Value> = timeline::load(&listing)
            .iter()
            .map(|(addr, server)| {
                let chains: Vec<Value> = server
                    .chains
                    .iter()
                    .map(|c| json!({ "base": c.base_id.to_hex(), "base_time": c.base.time, "from_ms": c.from_ms(), "to_ms": c.to_ms(), "segments": c.segments.len(), "log_bytes": c.log_bytes() }))
                    .collect();
                json!({ "server": addr, "chains": chains, "gaps": timeline::gaps(server), "orphan_segments": server.orphans.len() })
            })
            .collect();
        Ok(Json(json!({ "servers": servers })))
    })
    .await
}
