//! Operations above the maintenance and Redis layers: the config file, a job runner with
//! history, hooks and a failure webhook, the scheduler and the metrics `serve` exposes.

pub mod config;
pub mod cron;
pub mod error;
pub mod history;
pub mod hooks;
pub mod jobs;
pub mod schedule;
pub mod spec;
pub mod task;
pub mod webhook;

pub use error::OpsError;
pub use jobs::{JobId, JobState, JobStatus, Jobs};
pub use spec::{Hooks, JobKind, JobSpec, PasswordSource, RepoSpec, SourceSpec, SourceTarget, Trigger};
