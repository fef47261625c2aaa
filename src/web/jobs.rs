//! The job endpoints: list, start (backup, forget, prune, check, restore), progress and
//! cancel, through the shared runner of `ops::jobs` (the scheduler submits to it too).
//!
//! A restore into Redis runs as a dry run first; the real one must name that dry run
//! (`confirm`), which must have succeeded for the same snapshot, keys and target.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::ops::config::{Config, ScheduledJob};
use crate::ops::spec::RestoreChoices;
use crate::ops::{JobId, JobKind, JobSpec, JobState, Jobs, RepoSpec, Trigger};

use super::api::find;
use super::error::{blocking, ApiError};
use super::Site;

/// What a restore dry run checked: the snapshot (full id), key pattern, target and choices.
type RestoreTarget = (String, Option<String>, String, RestoreChoices);

/// The runner and what the web UI needs to build jobs.
pub struct WebJobs {
    pub jobs: Jobs,
    /// The config file, for jobs of a profile (backup, forget).
    pub config: Option<Arc<Config>>,
    /// How to open each served repository in a job, by name.
    pub repos: HashMap<String, RepoSpec>,
    /// Restore dry runs started here, by job.
    dry_runs: Mutex<HashMap<JobId, RestoreTarget>>,
}

impl WebJobs {
    pub fn new(jobs: Jobs, config: Option<Arc<Config>>, repos: HashMap<String, RepoSpec>) -> WebJobs {
        WebJobs { jobs, config, repos, dry_runs: Mutex::new(HashMap::new()) }
    }
}

fn runner(site: &Site) -> Result<&WebJobs, ApiError> {
    site.jobs.as_ref().ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "this server runs no jobs"))
}

fn job_id(text: &str) -> Result<JobId, ApiError> {
    text.parse().map_err(|_| ApiError::bad(format!("{text:?} is not a job id (a whole number)")))
}

/// `GET /api/jobs`: running and past jobs, newest first.
pub async fn list(State(site): State<Arc<Site>>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(runner(&site)?.jobs.list())))
}

/// `GET /api/jobs/{id}`: one job's state, progress and report.
pub async fn get(State(site): State<Arc<Site>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = job_id(&id)?;
    let status = runner(&site)?.jobs.get(id).ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    Ok(Json(json!(status)))
}

/// How often an event stream looks at its job.
const EVENT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);
/// A comment line after this long without a change keeps proxies from closing the stream.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// `GET /api/jobs/{id}/events`: the job's status (as `GET /api/jobs/{id}` gives it) as
/// Server-Sent Events: a `status` event whenever it changes, the last one when it ends.
pub async fn events(State(site): State<Arc<Site>>, Path(id): Path<String>) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let id = job_id(&id)?;
    runner(&site)?.jobs.get(id).ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let (mut last, mut quiet) = (String::new(), std::time::Duration::ZERO);
        while let Some(status) = site.jobs.as_ref().and_then(|w| w.jobs.get(id)) {
            let text = json!(status).to_string();
            let event = if text != last {
                quiet = std::time::Duration::ZERO;
                Some(format!("event: status\ndata: {text}\n\n"))
            } else {
                quiet += EVENT_EVERY;
                (quiet >= KEEP_ALIVE).then(|| {
                    quiet = std::time::Duration::ZERO;
                    ": still running\n\n".to_string()
                })
            };
            if let Some(e) = event {
                if tx.send(Ok(axum::body::Bytes::from(e))).await.is_err() {
                    return;
                }
            }
            if status.state.finished() {
                return;
            }
            last = text;
            tokio::time::sleep(EVENT_EVERY).await;
        }
    });
    let headers = [(axum::http::header::CONTENT_TYPE, "text/event-stream"), (axum::http::header::CACHE_CONTROL, "no-cache")];
    Ok((headers, axum::body::Body::new(super::download::FromRestore(rx))).into_response())
}

/// `POST /api/jobs/{id}/cancel`: asks a queued or running job to stop.
pub async fn cancel(State(site): State<Arc<Site>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = job_id(&id)?;
    let w = runner(&site)?;
    let status = w.jobs.get(id).ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    if status.state.finished() {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("job {id} has already ended ({})", json!(status.state).as_str().unwrap_or("ended"))));
    }
    Ok(Json(json!({ "id": id, "cancelled": w.jobs.cancel(id) })))
}

fn text(body: &Value, name: &str) -> Result<Option<String>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ApiError::bad(format!("{name} must be a string, not {other}"))),
    }
}

/// A profile of the config that uses repository `repo`: the one named, else the only one.
fn profile_for(w: &WebJobs, body: &Value, repo: &str) -> Result<String, ApiError> {
    let config = w.config.as_ref().ok_or_else(|| ApiError::bad("backup and forget jobs need a profile: start serve with --config"))?;
    if let Some(p) = text(body, "profile")? {
        return Ok(p);
    }
    let names: Vec<&String> = config.profiles.values().filter(|p| p.repository == repo).map(|p| &p.name).collect();
    match names.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(ApiError::bad(format!("no profile of the config uses repository {repo:?}"))),
        many => Err(ApiError::bad(format!("several profiles use repository {repo:?}: name one in \"profile\" ({})", many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")))),
    }
}

/// `POST /api/jobs` `{"kind": ..., "repo": ..., ...}`: starts a job; answers its status.
pub async fn start(State(site): State<Arc<Site>>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body: Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("the body is not JSON: {e}")))?;
    let w = runner(&site)?;
    let kind = text(&body, "kind")?.unwrap_or_default();
    if !["backup", "forget", "prune", "check", "restore"].contains(&kind.as_str()) {
        let what = if kind.is_empty() { "missing \"kind\"".to_string() } else { format!("unknown job kind {kind:?}") };
        return Err(ApiError::bad(format!("{what}: use backup, forget, prune, check or restore")));
    }
    let name = text(&body, "repo")?.or_else(|| (site.repos.len() == 1).then(|| site.repos[0].name.clone()));
    let name = name.ok_or_else(|| ApiError::bad("missing \"repo\" (the repository's name)"))?;
    let r = site.repo(&name)?;
    let repo_spec = w.repos.get(&name).cloned().ok_or_else(|| ApiError::bad(format!("repository {name:?} cannot run jobs here")))?;
    let of_profile = |job| -> Result<JobSpec, ApiError> {
        let profile = profile_for(w, &body, &name)?;
        let config = w.config.as_ref().ok_or_else(|| ApiError::bad("no config"))?;
        config.job(&profile, job, text(&body, "read_data_subset")?, Trigger::Manual).map_err(ApiError::bad)
    };
    let mut restore = None;
    let spec = match kind.as_str() {
        "backup" => of_profile(ScheduledJob::Backup)?,
        "forget" => of_profile(ScheduledJob::Forget)?,
        "prune" => JobSpec::new(JobKind::Prune, repo_spec, Trigger::Manual),
        "check" => JobSpec::new(JobKind::Check { read_data_subset: text(&body, "read_data_subset")? }, repo_spec, Trigger::Manual),
        "restore" => {
            let snap = text(&body, "snapshot")?.ok_or_else(|| ApiError::bad("missing \"snapshot\""))?;
            let to_url = text(&body, "to_url")?.ok_or_else(|| ApiError::bad("missing \"to_url\" (redis://host:port/db to restore into)"))?;
            let keys = text(&body, "keys")?;
            let dry_run = flag(&body, "dry_run", true)?;
            let options = restore_choices(&body)?;
            let r2 = r.clone();
            let (id, _) = blocking(move || find(&r2.repo, &snap)).await?;
            let target: RestoreTarget = (id.to_hex(), keys.clone(), to_url.clone(), options.clone());
            if !dry_run {
                confirmed(w, &body, &target)?;
            }
            restore = dry_run.then(|| target);
            JobSpec::new(JobKind::Restore { snapshot: id.to_hex(), keys, to_url, dry_run, options }, repo_spec, Trigger::Manual)
        }
        other => return Err(ApiError::bad(format!("unknown job kind {other:?}"))),
    };
    let id = w.jobs.submit(spec).map_err(|e| ApiError::new(StatusCode::CONFLICT, e.to_string()))?;
    if let (Some(t), Ok(mut d)) = (restore, w.dry_runs.lock()) {
        d.insert(id, t);
    }
    let status = w.jobs.get(id).ok_or_else(|| ApiError::internal(format!("job {id} vanished")))?;
    Ok((StatusCode::ACCEPTED, Json(json!(status))))
}

/// A true/false field, `default` when absent.
fn flag(body: &Value, name: &str, default: bool) -> Result<bool, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ApiError::bad(format!("{name} must be true or false, not {other}"))),
    }
}

/// A restore's `map_db` (`"0:3,1:4"` or `["0:3", "1:4"]`), `replace` and `skip_existing`.
fn restore_choices(body: &Value) -> Result<RestoreChoices, ApiError> {
    let pairs: Vec<String> = match body.get("map_db") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect(),
        Some(Value::Array(a)) => a.iter().map(|v| v.as_str().map(String::from).ok_or_else(|| ApiError::bad(format!("map_db entries are \"FROM:TO\" strings, not {v}")))).collect::<Result<_, _>>()?,
        Some(other) => return Err(ApiError::bad(format!("map_db must be \"FROM:TO,...\" or a list of \"FROM:TO\", not {other}"))),
    };
    let map_db = pairs.iter().map(|p| crate::redis::dbmap::parse_pair(p).map_err(|e| ApiError::bad(format!("map_db: {e}")))).collect::<Result<_, _>>()?;
    let (replace, skip_existing) = (flag(body, "replace", false)?, flag(body, "skip_existing", false)?);
    if replace && skip_existing {
        return Err(ApiError::bad("replace and skip_existing exclude each other: choose whether keys that exist on the target are overwritten or kept"));
    }
    Ok(RestoreChoices { map_db, replace, skip_existing })
}

/// Refuses a real restore unless `confirm` names a succeeded dry run of the same restore.
fn confirmed(w: &WebJobs, body: &Value, target: &RestoreTarget) -> Result<(), ApiError> {
    let need = "a restore runs as a dry run first: start it with \"dry_run\": true, then confirm with \"dry_run\": false and \"confirm\": DRY_RUN_JOB_ID";
    let id = match body.get("confirm") {
        Some(Value::Number(n)) => n.as_u64().map(JobId).ok_or_else(|| ApiError::bad(need))?,
        Some(Value::String(s)) => job_id(s)?,
        _ => return Err(ApiError::bad(need)),
    };
    let same = w.dry_runs.lock().ok().and_then(|d| d.get(&id).cloned()).is_some_and(|t| &t == target);
    if !same {
        return Err(ApiError::bad(format!("job {id} is not a dry run of this restore (same snapshot, keys and target); {need}")));
    }
    match w.jobs.get(id).map(|s| s.state) {
        Some(JobState::Succeeded) => Ok(()),
        Some(state) => Err(ApiError::new(StatusCode::CONFLICT, format!("the dry run (job {id}) has not succeeded: it is {}", json!(state).as_str().unwrap_or("unknown")))),
        None => Err(ApiError::not_found(format!("no job {id}"))),
    }
}
