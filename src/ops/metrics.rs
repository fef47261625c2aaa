//! Prometheus metrics (text format 0.0.4) and a JSON health summary, computed from the
//! jobs `Jobs` remembers (its history file survives restarts).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::json;

use crate::ops::jobs::Jobs;
use crate::ops::status::{JobState, JobStatus};

/// Labels of one job series: repository, job kind, profile.
type Key = (String, String, String);

#[derive(Default)]
struct Series {
    last_success_ms: Option<u64>,
    last_duration_ms: Option<u64>,
    last_state: Option<JobState>,
    errors: u64,
    bytes_added: Option<u64>,
}

fn key(j: &JobStatus) -> Key {
    (j.repo.clone(), j.kind.clone(), j.profile.clone().unwrap_or_default())
}

/// Per series, from the remembered jobs (newest first).
fn series(jobs: &[JobStatus]) -> BTreeMap<Key, Series> {
    let mut out: BTreeMap<Key, Series> = BTreeMap::new();
    for j in jobs.iter().filter(|j| j.state.finished()) {
        let s = out.entry(key(j)).or_default();
        if s.last_state.is_none() {
            s.last_state = Some(j.state);
            s.last_duration_ms = Some(j.finished_ms.saturating_sub(j.started_ms)).filter(|_| j.started_ms > 0);
        }
        if j.state == JobState::Succeeded && s.last_success_ms.is_none() {
            s.last_success_ms = Some(j.finished_ms);
            s.bytes_added = j.report["summary"]["bytes_added"].as_u64();
        }
        if j.state == JobState::Failed {
            s.errors += 1;
        }
    }
    out
}

/// The newest size report per repository (from backups and prunes).
fn repositories(jobs: &[JobStatus]) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for j in jobs {
        let r = &j.report["repository"];
        if r.is_object() {
            out.entry(j.repo.clone()).or_insert_with(|| r.clone());
        }
    }
    out
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The metrics page.
pub fn render(jobs: &Jobs) -> String {
    let all = jobs.list();
    let series = series(&all);
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    };
    let labels = |(r, k, p): &Key| format!("repository=\"{}\",job=\"{}\",profile=\"{}\"", label(r), label(k), label(p));
    let rows = |f: &dyn Fn(&Series) -> Option<f64>| series.iter().filter_map(|(k, s)| f(s).map(|v| (labels(k), v))).collect::<Vec<_>>();
    family("rdbvault_last_success_timestamp_seconds", "gauge", "When the last successful job of this kind ended (Unix seconds).", rows(&|s| s.last_success_ms.map(|ms| ms as f64 / 1000.0)));
    family("rdbvault_last_duration_seconds", "gauge", "How long the last job of this kind ran.", rows(&|s| s.last_duration_ms.map(|ms| ms as f64 / 1000.0)));
    family("rdbvault_last_success", "gauge", "1 if the last job of this kind succeeded, 0 if it failed or was cancelled.", rows(&|s| s.last_state.map(|st| f64::from(u8::from(st == JobState::Succeeded)))));
    family("rdbvault_backup_bytes_added", "gauge", "Bytes the last successful backup added to the repository.", rows(&|s| s.bytes_added.map(|b| b as f64)));
    family("rdbvault_job_errors_total", "counter", "Failed jobs among those remembered (the history keeps the last 1000).", rows(&|s| Some(s.errors as f64)));
    let repos = repositories(&all);
    let repo_rows = |field: &str| repos.iter().filter_map(|(r, v)| v[field].as_f64().map(|x| (format!("repository=\"{}\"", label(r)), x))).collect::<Vec<_>>();
    family("rdbvault_repository_size_bytes", "gauge", "Bytes of all repository files, after the last backup or prune.", repo_rows("repository_bytes"));
    family("rdbvault_dedup_ratio", "gauge", "Bytes the snapshots hold over bytes stored in packs.", repo_rows("dedup_ratio"));
    let running = all.iter().filter(|j| j.state == JobState::Running).count();
    let queued = all.iter().filter(|j| j.state == JobState::Queued).count();
    family("rdbvault_jobs", "gauge", "Jobs queued and running now.", vec![("state=\"running\"".into(), running as f64), ("state=\"queued\"".into(), queued as f64)]);
    out
}

/// `{"status": "ok"|"failing", ...}`: failing when the last job of any kind on any
/// repository failed; lists those, the jobs running now and history problems.
pub fn health(jobs: &Jobs) -> serde_json::Value {
    let all = jobs.list();
    let failing: Vec<serde_json::Value> = series(&all)
        .iter()
        .filter(|(_, s)| s.last_state == Some(JobState::Failed))
        .map(|((r, k, p), _)| {
            let last = all.iter().find(|j| j.repo == *r && j.kind == *k && j.profile.as_deref().unwrap_or("") == p && j.state.finished());
            json!({ "repository": r, "job": k, "profile": p, "error": last.map(|j| j.message.clone()) })
        })
        .collect();
    json!({
        "status": if failing.is_empty() { "ok" } else { "failing" },
        "failing": failing,
        "running": all.iter().filter(|j| j.state == JobState::Running).map(|j| j.id).collect::<Vec<_>>(),
        "queued": all.iter().filter(|j| j.state == JobState::Queued).map(|j| j.id).collect::<Vec<_>>(),
        "history_error": jobs.history_error(),
        "webhook_error": jobs.webhook_error(),
    })
}

/// Follower lag of every followed server in `repos` (name, repository): seconds since the
/// newest moment its committed log covers, and the replication offset it reaches (a
/// server's `master_repl_offset` minus that is the bytes not yet committed). A repository
/// that cannot be listed gets a comment line saying why, not a made-up value.
pub fn followers(repos: &[(&str, &crate::store::Repository)], now_ms: u64) -> String {
    let (mut lag, mut offset, mut notes) = (Vec::new(), Vec::new(), String::new());
    for (name, repo) in repos {
        let listing = match crate::format::snapshot::Listing::load(repo) {
            Ok(l) => l,
            Err(e) => {
                let _ = writeln!(notes, "# repository {name}: follower lag unknown: {}", e.to_string().replace('\n', " "));
                continue;
            }
        };
        for (addr, server) in crate::redis::follow::timeline::load(&listing) {
            let Some(chain) = server.chains.last() else { continue };
            let labels = format!("repository=\"{}\",server=\"{}\"", label(name), label(&addr));
            lag.push((labels.clone(), now_ms.saturating_sub(chain.to_ms()) as f64 / 1000.0));
            offset.push((labels, chain.end_offset() as f64));
        }
    }
    let mut out = notes;
    for (name, help, rows) in [
        ("rdbvault_follower_lag_seconds", "Seconds since the newest moment a followed server's committed log covers.", lag),
        ("rdbvault_follower_committed_offset", "Replication offset up to which a followed server's writes are committed (its master_repl_offset minus this is the bytes behind).", offset),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
    out
}
