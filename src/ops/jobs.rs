//! The job runner shared by the scheduler and the web UI: each job runs on its own thread,
//! reports progress from a hidden progress bar, can be cancelled, and is recorded in the
//! history file when it ends.
//!
//! Conflicts wait, they are not refused: a job that conflicts (see
//! [`JobSpec::conflicts_with`]) with a running job, or with one submitted before it that
//! still waits, stays `Queued` until those end, so jobs on one repository start in the
//! order they were submitted. Cancelling a queued job ends it at once; cancelling a running
//! one stops it at its next check between blobs or packs, leaving the repository as a
//! killed command would (`check` passes).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::ops::history::{History, KEEP};
use crate::ops::spec::{JobSpec, Trigger};
use crate::ops::{hooks, task, webhook};
use crate::ops::OpsError;

/// A job's number, unique across restarts (the history's highest plus one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for JobId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(JobId)
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    /// Whether the job has ended.
    pub fn finished(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    }
}

/// What the UI, the API and the history show of a job (never a password).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: JobId,
    /// `backup`, `forget`, `prune`, `check` or `restore`.
    pub kind: String,
    /// The repository's name in the config file.
    pub repo: String,
    /// The config profile it comes from, if any.
    #[serde(default)]
    pub profile: Option<String>,
    pub trigger: Trigger,
    pub state: JobState,
    /// Unix milliseconds when it was submitted.
    pub submitted_ms: u64,
    /// Unix milliseconds when it started running (0 while queued).
    pub started_ms: u64,
    /// Unix milliseconds when it ended (0 until then).
    pub finished_ms: u64,
    /// Bytes read so far (a backup) or keys loaded (a restore).
    pub bytes_done: u64,
    /// What `bytes_done` goes up to, when known (0 otherwise).
    pub bytes_total: u64,
    /// What it did, or why it failed.
    pub message: String,
    /// The command's JSON report (`null` until it ends).
    pub report: serde_json::Value,
}

/// The job runner; clones share it.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    next: u64,
    /// Queued and running jobs, in submission order.
    live: Vec<Live>,
    /// Ended jobs, oldest first, at most [`KEEP`].
    done: VecDeque<JobStatus>,
    /// `None` if the file could not be read: jobs still run, nothing is recorded.
    history: Option<History>,
    /// Why the history file cannot be used, if so.
    history_error: Option<String>,
    /// Where failures are POSTed.
    webhook: Option<String>,
    webhook_error: Option<String>,
}

struct Live {
    status: JobStatus,
    spec: JobSpec,
    progress: ProgressBar,
    cancel: Arc<AtomicBool>,
}

impl Live {
    fn snapshot(&self) -> JobStatus {
        let mut s = self.status.clone();
        s.bytes_done = self.progress.position();
        s.bytes_total = self.progress.length().unwrap_or(0);
        s
    }
}

impl Jobs {
    /// A runner recording ended jobs in `history_path` (JSON lines), showing those already
    /// there. An unreadable history file does not stop it: see [`Jobs::history_error`].
    pub fn new(history_path: PathBuf) -> Jobs {
        let (history, done, history_error) = match History::open(history_path) {
            Ok((h, done)) => (Some(h), done, None),
            Err(e) => (None, Vec::new(), Some(e.to_string())),
        };
        let next = done.iter().map(|s| s.id.0).max().unwrap_or(0) + 1;
        let state = State { next, live: Vec::new(), done: done.into(), history, history_error, webhook: None, webhook_error: None };
        Jobs { inner: Arc::new(Inner { state: Mutex::new(state), changed: Condvar::new() }) }
    }

    /// Why the history file could not be read or written, if it could not.
    pub fn history_error(&self) -> Option<String> {
        self.lock().history_error.clone()
    }

    /// Queues `spec` and starts it on its own thread as soon as no conflicting job is ahead.
    pub fn submit(&self, spec: JobSpec) -> Result<JobId, OpsError> {
        let mut st = self.lock();
        let id = JobId(st.next);
        st.next += 1;
        let status = JobStatus {
            id,
            kind: spec.kind.name().to_string(),
            repo: spec.repo.name.clone(),
            profile: spec.profile.clone(),
            trigger: spec.trigger.clone(),
            state: JobState::Queued,
            submitted_ms: now_ms(),
            started_ms: 0,
            finished_ms: 0,
            bytes_done: 0,
            bytes_total: 0,
            message: String::new(),
            report: serde_json::Value::Null,
        };
        let cancel = Arc::new(AtomicBool::new(false));
        st.live.push(Live { status, spec, progress: ProgressBar::hidden(), cancel });
        drop(st);
        let me = self.clone();
        std::thread::Builder::new().name(format!("job-{id}")).spawn(move || me.work(id)).map_err(|e| {
            self.lock().live.retain(|l| l.status.id != id);
            OpsError::Spawn(e)
        })?;
        Ok(id)
    }

    /// One job, running or ended.
    pub fn get(&self, id: JobId) -> Option<JobStatus> {
        let st = self.lock();
        st.live.iter().find(|l| l.status.id == id).map(Live::snapshot).or_else(|| st.done.iter().find(|s| s.id == id).cloned())
    }

    /// Every queued, running and remembered job, newest first.
    pub fn list(&self) -> Vec<JobStatus> {
        let st = self.lock();
        let mut all: Vec<JobStatus> = st.live.iter().map(Live::snapshot).chain(st.done.iter().cloned()).collect();
        all.sort_by(|a, b| b.id.cmp(&a.id));
        all
    }

    /// Asks a queued or running job to stop; false if there is no such job or it has ended.
    pub fn cancel(&self, id: JobId) -> bool {
        let st = self.lock();
        let Some(live) = st.live.iter().find(|l| l.status.id == id) else { return false };
        live.cancel.store(true, Ordering::Relaxed);
        self.inner.changed.notify_all();
        true
    }

    /// Whether a job conflicting with `spec` is queued or running (the scheduler skips a
    /// run rather than queue a second one behind it).
    pub fn busy(&self, spec: &JobSpec) -> bool {
        self.lock().live.iter().any(|l| l.spec.conflicts_with(spec))
    }

    /// Waits until the job has ended and returns its status (tests, `serve` shutdown).
    pub fn wait(&self, id: JobId) -> Option<JobStatus> {
        let mut st = self.lock();
        while st.live.iter().any(|l| l.status.id == id) {
            st = self.inner.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.done.iter().find(|s| s.id == id).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job's thread: wait for its turn, run, record.
    fn work(&self, id: JobId) {
        let mut st = self.lock();
        let (spec, progress, cancel) = loop {
            let Some(pos) = st.live.iter().position(|l| l.status.id == id) else { return };
            let me = &st.live[pos];
            if me.cancel.load(Ordering::Relaxed) {
                let spec = me.spec.clone();
                drop(st);
                self.finish(id, JobState::Cancelled, "cancelled before it started".into(), serde_json::Value::Null, &spec);
                return;
            }
            let blocked = st.live[..pos].iter().any(|l| l.spec.conflicts_with(&me.spec))
                || st.live[pos + 1..].iter().any(|l| l.status.state == JobState::Running && l.spec.conflicts_with(&me.spec));
            if !blocked {
                let me = &mut st.live[pos];
                me.status.state = JobState::Running;
                me.status.started_ms = now_ms();
                break (me.spec.clone(), me.progress.clone(), me.cancel.clone());
            }
            st = self.inner.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        };
        let running = st.live.iter().find(|l| l.status.id == id).map(Live::snapshot);
        drop(st);
        let Some(running) = running else { return };
        if let Some(cmd) = &spec.hooks.before {
            if let Err(e) = hooks::run("before", cmd, &spec, &running) {
                let message = format!("{e}; the job did not run");
                let failed = JobStatus { state: JobState::Failed, message: message.clone(), ..running };
                if let Some(cmd) = &spec.hooks.on_error {
                    let _ = hooks::run("on_error", cmd, &spec, &failed);
                }
                self.finish(id, JobState::Failed, message, serde_json::Value::Null, &spec);
                return;
            }
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task::run(&spec, &progress, &cancel)));
        let (state, mut message, report) = match result {
            Ok(Ok(o)) => (if o.ok { JobState::Succeeded } else { JobState::Failed }, o.message, o.report),
            Ok(Err(e)) if cancel.load(Ordering::Relaxed) && cancelled(&e) => {
                (JobState::Cancelled, "cancelled; the data written so far stays for the next run (like an interrupted command)".into(), serde_json::Value::Null)
            }
            Ok(Err(e)) => (JobState::Failed, e.to_string(), serde_json::Value::Null),
            Err(_) => (JobState::Failed, "the job panicked (a bug: please report it)".into(), serde_json::Value::Null),
        };
        let ended = JobStatus { state, message: message.clone(), report: report.clone(), ..running };
        let hook = if state == JobState::Succeeded { ("after", &spec.hooks.after) } else { ("on_error", &spec.hooks.on_error) };
        if let (which, Some(cmd)) = hook {
            if let Err(e) = hooks::run(which, cmd, &spec, &ended) {
                message = format!("{message}; {e}");
            }
        }
        self.finish(id, state, message, report, &spec);
    }

    /// Moves a job from the live list to the ended ones and the history file.
    fn finish(&self, id: JobId, state: JobState, message: String, report: serde_json::Value, spec: &JobSpec) {
        let mut st = self.lock();
        let Some(pos) = st.live.iter().position(|l| l.status.id == id) else { return };
        let live = st.live.remove(pos);
        let mut status = live.snapshot();
        status.state = state;
        status.finished_ms = now_ms();
        status.message = message;
        status.report = report;
        st.done.push_back(status.clone());
        while st.done.len() > KEEP {
            st.done.pop_front();
        }
        let State { history, done, history_error, .. } = &mut *st;
        if let Some(h) = history {
            let recent: Vec<JobStatus> = done.iter().cloned().collect();
            if let Err(e) = h.append(&status, &recent) {
                *history_error = Some(e.to_string());
            }
        }
        let webhook = st.webhook.clone();
        drop(st);
        self.inner.changed.notify_all();
        if let (JobState::Failed, Some(url)) = (state, webhook) {
            if let Err(e) = webhook::post(&url, &status, spec) {
                self.lock().webhook_error = Some(format!("webhook {}: {e}", webhook::redact(&url)));
            }
        }
    }

    /// POSTs a JSON notice to `url` whenever a job fails (`[serve] webhook`).
    pub fn notify_failures_to(&self, url: Option<String>) {
        self.lock().webhook = url;
    }

    /// Why the last webhook notice could not be delivered, if it could not.
    pub fn webhook_error(&self) -> Option<String> {
        self.lock().webhook_error.clone()
    }
}

/// Whether the job stopped because it was asked to (directly, or as the cause of a stopped restore).
fn cancelled(e: &OpsError) -> bool {
    use crate::redis::load::LoadError;
    match e {
        OpsError::Repo(crate::Error::Cancelled) => true,
        OpsError::Load(LoadError::Repo(crate::Error::Cancelled)) => true,
        OpsError::Load(LoadError::Stopped { source, .. }) => matches!(**source, LoadError::Repo(crate::Error::Cancelled)),
        _ => false,
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
