//! What the UI, the API, the history file and the metrics show of a job.

use serde::{Deserialize, Serialize};

use crate::ops::spec::Trigger;

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

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
