//! What a job is: its kind, the repository it works on and where that repository's
//! password comes from (resolved only when the job runs, never stored in a status).

use std::path::PathBuf;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::maintain::forget::Policy;
use crate::ops::OpsError;
use crate::redis::live::Mode;
use crate::redis::source::ConnectOptions;

/// One job to run.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub kind: JobKind,
    pub repo: RepoSpec,
    pub trigger: Trigger,
    /// The config profile it comes from, if any (statuses and metrics show it).
    pub profile: Option<String>,
    /// Commands run before and after it.
    pub hooks: Hooks,
}

impl JobSpec {
    /// A job with no profile and no hooks.
    pub fn new(kind: JobKind, repo: RepoSpec, trigger: Trigger) -> JobSpec {
        JobSpec { kind, repo, trigger, profile: None, hooks: Hooks::default() }
    }
}


/// Who asked for a job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A user (web UI, API).
    Manual,
    /// The schedule of this name.
    Schedule(String),
    /// The run of the schedule of this name that was missed while the scheduler was not
    /// running, caught up once when it started.
    Startup(String),
}

/// What the job does.
#[derive(Debug, Clone)]
pub enum JobKind {
    /// Back up a source as one snapshot, with these tags.
    Backup { source: SourceSpec, tags: Vec<String> },
    /// Remove the snapshots a retention policy does not keep (grouped by host and source).
    Forget { policy: Policy },
    /// Delete data no snapshot needs (repack packs more than 5% unused).
    Prune,
    /// Check the repository; `Some("1/10")` also reads that subset of the packs.
    Check { read_data_subset: Option<String> },
    /// Load a snapshot's keys (all, or those matching the glob `keys`) into a live Redis.
    Restore { snapshot: String, keys: Option<String>, to_url: String, dry_run: bool, options: RestoreChoices },
}

/// How a restore job treats databases and keys that exist on the target (`restore --to`'s
/// `--map-db`, `--replace`, `--skip-existing`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreChoices {
    /// (from, to) database pairs.
    pub map_db: Vec<(u64, u64)>,
    /// Overwrite keys that exist on the target.
    pub replace: bool,
    /// Leave keys that exist on the target as they are.
    pub skip_existing: bool,
}

impl JobKind {
    /// The short name statuses, history and metrics use.
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::Backup { .. } => "backup",
            JobKind::Forget { .. } => "forget",
            JobKind::Prune => "prune",
            JobKind::Check { .. } => "check",
            JobKind::Restore { .. } => "restore",
        }
    }

    /// Jobs that change which snapshots or packs exist: they run alone on their repository.
    fn exclusive(&self) -> bool {
        matches!(self, JobKind::Forget { .. } | JobKind::Prune)
    }
}

impl JobSpec {
    /// Whether the two may not run at the same time: on one repository, a forget or prune
    /// conflicts with everything, and two backups of the same source conflict; backups of
    /// different sources, checks and restores run side by side.
    pub fn conflicts_with(&self, other: &JobSpec) -> bool {
        if self.repo.location != other.repo.location {
            return false;
        }
        if self.kind.exclusive() || other.kind.exclusive() {
            return true;
        }
        match (&self.kind, &other.kind) {
            (JobKind::Backup { source: a, .. }, JobKind::Backup { source: b, .. }) => a.target == b.target,
            _ => false,
        }
    }
}

/// A repository: its name (shown), location (opened) and password source.
#[derive(Debug, Clone)]
pub struct RepoSpec {
    /// The name in the config file (statuses show this, never the password).
    pub name: String,
    /// A path, `s3:...` or `sftp:...`.
    pub location: String,
    pub password: PasswordSource,
}

/// Where a repository password comes from.
#[derive(Clone)]
pub enum PasswordSource {
    /// The first line of this file.
    File(PathBuf),
    /// The first line this shell command prints.
    Command(String),
    /// This environment variable.
    Env(String),
    /// The password itself (`insecure_password = true` in the config file).
    Literal(Zeroizing<String>),
}

impl std::fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordSource::File(p) => write!(f, "File({})", p.display()),
            PasswordSource::Command(c) => write!(f, "Command({c:?})"),
            PasswordSource::Env(v) => write!(f, "Env({v})"),
            PasswordSource::Literal(_) => f.write_str("Literal(<redacted>)"),
        }
    }
}

impl PasswordSource {
    /// Reads the password now; `repo` names the repository in errors.
    pub fn resolve(&self, repo: &str) -> Result<Zeroizing<String>, OpsError> {
        let fail = |detail: String| OpsError::Password { repo: repo.to_string(), detail };
        let text = match self {
            PasswordSource::File(path) => Zeroizing::new(
                std::fs::read_to_string(path).map_err(|e| fail(format!("read password_file {}: {e}", path.display())))?,
            ),
            PasswordSource::Command(cmd) => {
                let out = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdin(std::process::Stdio::null())
                    .stderr(std::process::Stdio::inherit())
                    .output()
                    .map_err(|e| fail(format!("run password_command: {e}")))?;
                if !out.status.success() {
                    return Err(fail(format!("password_command failed ({})", out.status)));
                }
                Zeroizing::new(String::from_utf8(out.stdout).map_err(|_| fail("password_command printed non-UTF-8".into()))?)
            }
            PasswordSource::Env(var) => {
                Zeroizing::new(std::env::var(var).map_err(|_| fail(format!("password_env {var} is not set")))?)
            }
            PasswordSource::Literal(pw) => pw.clone(),
        };
        let line = Zeroizing::new(text.lines().next().unwrap_or("").to_string());
        if line.is_empty() {
            return Err(fail("the password is empty".into()));
        }
        Ok(line)
    }
}

/// A source to back up: its name and where the data comes from.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// The name in the config file.
    pub name: String,
    pub target: SourceTarget,
    /// Time-outs and TLS trust for a live server.
    pub connect: ConnectOptions,
    /// File holding the Redis password (else the URL's, else `REDISCLI_AUTH`).
    pub redis_password_file: Option<PathBuf>,
}

/// Where a backup reads from.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceTarget {
    /// An RDB file.
    Rdb(PathBuf),
    /// A live server (`redis://`, `rediss://`, `unix://`), read as the mode says.
    Redis { url: String, mode: Mode },
}

impl Trigger {
    /// The schedule that submitted the job, if one did.
    pub fn schedule(&self) -> Option<&str> {
        match self {
            Trigger::Schedule(n) | Trigger::Startup(n) => Some(n),
            Trigger::Manual => None,
        }
    }
}

/// Shell commands run around a job (a profile's `hooks`), with `RDBVAULT_*` variables
/// describing it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Runs first; if it fails, the job does not run.
    pub before: Option<String>,
    /// Runs after a job that succeeded.
    pub after: Option<String>,
    /// Runs after a job that failed.
    pub on_error: Option<String>,
    /// How long one hook may run before it is killed (`30s`, `10m`, `1h`); default
    /// [`Hooks::DEFAULT_TIMEOUT`].
    #[serde(default, deserialize_with = "hook_timeout")]
    pub timeout: Option<std::time::Duration>,
}

impl Hooks {
    /// A hook that hangs must not hold its job (and every job queued behind it) forever.
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

    /// The time limit of one hook.
    pub fn limit(&self) -> std::time::Duration {
        self.timeout.unwrap_or(Self::DEFAULT_TIMEOUT)
    }
}

/// `timeout = "30s"`: a whole number and a unit (s, m, h), at least one second.
fn hook_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<std::time::Duration>, D::Error> {
    let text = String::deserialize(d)?;
    parse_timeout(&text).map(Some).map_err(serde::de::Error::custom)
}

/// Parses a hook time limit (`30s`, `10m`, `1h`).
pub fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("timeout {text:?} is not a time limit: write a whole number and s, m or h (30s, 10m, 1h)");
    let (n, unit) = text.trim().split_at(text.trim().find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => None,
    }
    .filter(|s| *s > 0)
    .ok_or_else(bad)?;
    Ok(std::time::Duration::from_secs(secs))
}

