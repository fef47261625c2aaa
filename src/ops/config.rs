//! The config file (TOML): repositories and their password sources, Redis sources,
//! profiles, schedules and the `[serve]` settings. Unknown keys are refused, every name
//! a profile or schedule refers to must exist, and each error names file:line:column and key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use zeroize::Zeroizing;

use crate::maintain::check::ReadData;
use crate::maintain::forget::{Policy, Within};
use crate::ops::cron::{self, Cron};
use crate::ops::spec::{Hooks, JobKind, JobSpec, PasswordSource, RepoSpec, SourceSpec, SourceTarget, Trigger};
use crate::redis::live::Mode;
use crate::redis::source::{ConnectOptions, RedisUrl};

/// A config file that cannot be used: where, which key, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}{}{}", .file.display(), .at.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default(), if .key.is_empty() { format!(": {}", .message) } else { format!(": {}: {}", .key, .message) })]
pub struct ConfigError {
    pub file: PathBuf,
    /// Line and column (1-based), when known.
    pub at: Option<(usize, usize)>,
    /// The key, dotted (`profiles.prod.repository`); empty for the whole file.
    pub key: String,
    pub message: String,
}

/// A validated config file.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub repositories: BTreeMap<String, RepoSpec>,
    pub sources: BTreeMap<String, SourceSpec>,
    pub profiles: BTreeMap<String, Profile>,
    pub schedules: BTreeMap<String, Schedule>,
    pub serve: Serve,
}

/// A repository, a source and what to do with them.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub name: String,
    /// A key of [`Config::repositories`].
    pub repository: String,
    /// A key of [`Config::sources`] (backups need one).
    pub source: Option<String>,
    /// The retention policy of a forget (`keep_*`).
    pub retention: Policy,
    /// Tags of its backups.
    pub tags: Vec<String>,
    pub hooks: Hooks,
}

/// What a schedule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduledJob {
    Backup,
    Forget,
    Prune,
    Check,
}

/// When a schedule runs (UTC).
#[derive(Debug, Clone, PartialEq)]
pub enum When {
    Cron(Cron),
    Every(Duration),
}

/// A job run at times of its own.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    /// A key of [`Config::profiles`].
    pub profile: String,
    pub job: ScheduledJob,
    pub when: When,
    /// For a check: read this subset of the packs (`1/10`, `5%`).
    pub check_read_data_subset: Option<String>,
}

/// `[serve]`: what `rdbvault serve` listens on and how it authenticates.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Serve {
    /// Address to listen on (default 127.0.0.1:8077).
    pub listen: Option<String>,
    /// Argon2id PHC string of the API token (`rdbvault config hash-password`).
    pub token_hash: Option<String>,
    /// Argon2id PHC string of the login password.
    pub password_hash: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// URL to POST a JSON notice to when a job fails.
    pub webhook: Option<String>,
    /// The job history file (default: next to the config file, `rdbvault-jobs.jsonl`).
    pub history: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    repositories: BTreeMap<String, Spanned<RawRepo>>,
    #[serde(default)]
    sources: BTreeMap<String, Spanned<RawSource>>,
    #[serde(default)]
    profiles: BTreeMap<String, Spanned<RawProfile>>,
    #[serde(default)]
    schedules: BTreeMap<String, Spanned<RawSchedule>>,
    serve: Option<Spanned<Serve>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepo {
    repository: Spanned<String>,
    password_file: Option<PathBuf>,
    password_command: Option<String>,
    password_env: Option<String>,
    password: Option<Spanned<String>>,
    #[serde(default)]
    insecure_password: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    redis: Option<Spanned<String>>,
    rdb: Option<PathBuf>,
    mode: Option<Spanned<String>>,
    rdb_path: Option<PathBuf>,
    password_file: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    #[serde(default)]
    tls_insecure: bool,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    connect_timeout: Option<Spanned<f64>>,
    read_timeout: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    repository: Spanned<String>,
    source: Option<Spanned<String>>,
    keep_last: Option<u32>,
    keep_hourly: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    keep_yearly: Option<u32>,
    keep_within: Option<Spanned<String>>,
    #[serde(default)]
    keep_tags: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    hooks: Hooks,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    profile: Spanned<String>,
    job: Spanned<String>,
    cron: Option<Spanned<String>>,
    every: Option<Spanned<String>>,
    check_read_data_subset: Option<Spanned<String>>,
}

/// Where to look for the config file: `flag`, else `RDBVAULT_CONFIG`, else
/// `$XDG_CONFIG_HOME/rdbvault/config.toml` (default `~/.config`); `None` if none is set.
pub fn default_path(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("RDBVAULT_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("rdbvault").join("config.toml"))
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            at: None,
            key: String::new(),
            message: format!("cannot read it: {e}"),
        })?;
        Config::parse(&text, path)
    }

    /// Validates `text`, read from `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let p = Parser { text, path };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| p.line_col(s.start));
            let message = e.message().trim().to_string();
            ConfigError { file: path.to_path_buf(), at, key: key_of(text, e.span().map(|s| s.start)), message }
        })?;
        p.validate(raw)
    }

    /// The job a profile runs, for the CLI's and web UI's "run now".
    pub fn job(&self, profile: &str, job: ScheduledJob, read_data_subset: Option<String>, trigger: Trigger) -> Result<JobSpec, String> {
        let p = self.profiles.get(profile).ok_or_else(|| format!("no profile {profile:?} in {}", self.path.display()))?;
        let repo = self.repositories.get(&p.repository).cloned().ok_or_else(|| format!("no repository {:?}", p.repository))?;
        let kind = match job {
            ScheduledJob::Backup => {
                let name = p.source.as_ref().ok_or_else(|| format!("profile {profile:?} has no source to back up"))?;
                let source = self.sources.get(name).cloned().ok_or_else(|| format!("no source {name:?}"))?;
                JobKind::Backup { source, tags: p.tags.clone() }
            }
            ScheduledJob::Forget => {
                if p.retention.is_empty() {
                    return Err(format!("profile {profile:?} has no keep_* retention policy: a forget would remove every snapshot"));
                }
                JobKind::Forget { policy: p.retention.clone() }
            }
            ScheduledJob::Prune => JobKind::Prune,
            ScheduledJob::Check => JobKind::Check { read_data_subset },
        };
        Ok(JobSpec { kind, repo, trigger, profile: Some(p.name.clone()), hooks: p.hooks.clone() })
    }

    /// The job a schedule submits.
    pub fn schedule_job(&self, schedule: &Schedule, trigger: Trigger) -> Result<JobSpec, String> {
        self.job(&schedule.profile, schedule.job, schedule.check_read_data_subset.clone(), trigger)
    }

    /// The history file of `serve`: `[serve] history`, else next to the config file.
    pub fn history_path(&self) -> PathBuf {
        match &self.serve.history {
            Some(p) => p.clone(),
            None => self.path.parent().unwrap_or(Path::new(".")).join("rdbvault-jobs.jsonl"),
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Parser<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    fn err<T>(&self, span: std::ops::Range<usize>, key: impl Into<String>, message: impl Into<String>) -> Result<T, ConfigError> {
        Err(ConfigError { file: self.path.to_path_buf(), at: Some(self.line_col(span.start)), key: key.into(), message: message.into() })
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let mut c = Config { path: self.path.to_path_buf(), ..Config::default() };
        for (name, r) in raw.repositories {
            let span = r.span();
            let r = r.into_inner();
            let key = format!("repositories.{name}");
            let mut given = Vec::new();
            if let Some(f) = r.password_file {
                given.push(PasswordSource::File(f));
            }
            if let Some(cmd) = r.password_command {
                given.push(PasswordSource::Command(cmd));
            }
            if let Some(v) = r.password_env {
                given.push(PasswordSource::Env(v));
            }
            if let Some(pw) = r.password {
                if !r.insecure_password {
                    return self.err(pw.span(), format!("{key}.password"), "a password in the config file is readable by anyone who can read the file: use password_file, password_command or password_env (or set insecure_password = true to accept this)");
                }
                given.push(PasswordSource::Literal(Zeroizing::new(pw.into_inner())));
            }
            if given.len() != 1 {
                let what = if given.is_empty() { "no password source" } else { "more than one password source" };
                return self.err(span, key, format!("{what}: give exactly one of password_file, password_command, password_env"));
            }
            let location = r.repository.get_ref().clone();
            if let Err(e) = crate::store::Location::parse(&location) {
                return self.err(r.repository.span(), format!("{key}.repository"), e.to_string());
            }
            let password = given.remove(0);
            c.repositories.insert(name.clone(), RepoSpec { name, location, password });
        }
        for (name, s) in raw.sources {
            let span = s.span();
            let s = s.into_inner();
            let key = format!("sources.{name}");
            let mode = match &s.mode {
                None => Mode::Replication,
                Some(m) if m.get_ref() == "replication" => Mode::Replication,
                Some(m) if m.get_ref() == "bgsave" => match &s.rdb_path {
                    Some(p) => Mode::Bgsave { rdb_path: p.clone() },
                    None => return self.err(m.span(), format!("{key}.mode"), "mode = \"bgsave\" needs rdb_path (where the server's RDB file is, as seen from here)"),
                },
                Some(m) => return self.err(m.span(), format!("{key}.mode"), format!("{:?} is not a mode: use \"replication\" or \"bgsave\"", m.get_ref())),
            };
            let target = match (s.redis, s.rdb) {
                (Some(url), None) => {
                    if let Err(e) = RedisUrl::parse(url.get_ref()) {
                        return self.err(url.span(), format!("{key}.redis"), e.to_string());
                    }
                    SourceTarget::Redis { url: url.into_inner(), mode }
                }
                (None, Some(path)) => {
                    if s.mode.is_some() || s.password_file.is_some() || s.tls_ca.is_some() || s.tls_cert.is_some() || s.tls_insecure {
                        return self.err(span, key, "mode, password_file and tls_* only apply to a live server (redis = URL), not to an rdb file");
                    }
                    SourceTarget::Rdb(path)
                }
                _ => return self.err(span, key, "give exactly one of redis = \"redis://host:port\" or rdb = \"/path/dump.rdb\""),
            };
            if s.tls_cert.is_some() != s.tls_key.is_some() {
                return self.err(span, key, "tls_cert and tls_key go together");
            }
            let mut connect = ConnectOptions { tls_ca_file: s.tls_ca, tls_insecure: s.tls_insecure, tls_cert_file: s.tls_cert, tls_key_file: s.tls_key, ..ConnectOptions::default() };
            for (field, v, out) in [("connect_timeout", s.connect_timeout, &mut connect.connect_timeout), ("read_timeout", s.read_timeout, &mut connect.read_timeout)] {
                if let Some(v) = v {
                    match Duration::try_from_secs_f64(*v.get_ref()).ok().filter(|d| !d.is_zero()) {
                        Some(d) => *out = d,
                        None => return self.err(v.span(), format!("{key}.{field}"), "must be a positive number of seconds"),
                    }
                }
            }
            c.sources.insert(name.clone(), SourceSpec { name, target, connect, redis_password_file: s.password_file });
        }
        for (name, p) in raw.profiles {
            let p = p.into_inner();
            let key = format!("profiles.{name}");
            if !c.repositories.contains_key(p.repository.get_ref()) {
                return self.err(p.repository.span(), format!("{key}.repository"), format!("no [repositories.{}] in this file", p.repository.get_ref()));
            }
            if let Some(s) = &p.source {
                if !c.sources.contains_key(s.get_ref()) {
                    return self.err(s.span(), format!("{key}.source"), format!("no [sources.{}] in this file", s.get_ref()));
                }
            }
            let within = match &p.keep_within {
                Some(w) => match Within::parse(w.get_ref()) {
                    Ok(w) => Some(w),
                    Err(e) => return self.err(w.span(), format!("{key}.keep_within"), e.to_string()),
                },
                None => None,
            };
            let retention = Policy {
                last: p.keep_last.unwrap_or(0),
                hourly: p.keep_hourly.unwrap_or(0),
                daily: p.keep_daily.unwrap_or(0),
                weekly: p.keep_weekly.unwrap_or(0),
                monthly: p.keep_monthly.unwrap_or(0),
                yearly: p.keep_yearly.unwrap_or(0),
                within,
                tags: p.keep_tags,
            };
            let profile = Profile {
                name: name.clone(),
                repository: p.repository.into_inner(),
                source: p.source.map(Spanned::into_inner),
                retention,
                tags: p.tags,
                hooks: p.hooks,
            };
            c.profiles.insert(name, profile);
        }
        for (name, s) in raw.schedules {
            let span = s.span();
            let s = s.into_inner();
            let key = format!("schedules.{name}");
            let Some(profile) = c.profiles.get(s.profile.get_ref()) else {
                return self.err(s.profile.span(), format!("{key}.profile"), format!("no [profiles.{}] in this file", s.profile.get_ref()));
            };
            let job = match s.job.get_ref().as_str() {
                "backup" => ScheduledJob::Backup,
                "forget" => ScheduledJob::Forget,
                "prune" => ScheduledJob::Prune,
                "check" => ScheduledJob::Check,
                other => return self.err(s.job.span(), format!("{key}.job"), format!("{other:?} is not a job: use backup, forget, prune or check")),
            };
            if job == ScheduledJob::Backup && profile.source.is_none() {
                return self.err(s.job.span(), format!("{key}.job"), format!("profile {:?} has no source to back up", profile.name));
            }
            if job == ScheduledJob::Forget && profile.retention.is_empty() {
                return self.err(s.job.span(), format!("{key}.job"), format!("profile {:?} has no keep_* policy: a forget would remove every snapshot", profile.name));
            }
            let when = match (&s.cron, &s.every) {
                (Some(c), None) => When::Cron(Cron::parse(c.get_ref()).or_else(|e| self.err(c.span(), format!("{key}.cron"), e))?),
                (None, Some(e)) => When::Every(cron::parse_every(e.get_ref()).or_else(|m| self.err(e.span(), format!("{key}.every"), m))?),
                _ => return self.err(span, key, "give exactly one of cron = \"0 3 * * *\" or every = \"6h\""),
            };
            if let Some(sub) = &s.check_read_data_subset {
                if job != ScheduledJob::Check {
                    return self.err(sub.span(), format!("{key}.check_read_data_subset"), "only applies to job = \"check\"");
                }
                if let Err(e) = ReadData::parse_subset(sub.get_ref()) {
                    return self.err(sub.span(), format!("{key}.check_read_data_subset"), e.to_string());
                }
            }
            let check_read_data_subset = s.check_read_data_subset.map(Spanned::into_inner);
            c.schedules.insert(name.clone(), Schedule { name, profile: s.profile.into_inner(), job, when, check_read_data_subset });
        }
        if let Some(serve) = raw.serve {
            let span = serve.span();
            let serve = serve.into_inner();
            for (field, hash) in [("token_hash", &serve.token_hash), ("password_hash", &serve.password_hash)] {
                if let Some(h) = hash {
                    if !h.starts_with("$argon2id$") || argon2::PasswordHash::new(h).is_err() {
                        return self.err(span.clone(), format!("serve.{field}"), "not an Argon2id hash (a PHC string starting $argon2id$): make one with `rdbvault config hash-password`");
                    }
                }
            }
            if serve.tls_cert.is_some() != serve.tls_key.is_some() {
                return self.err(span, "serve", "tls_cert and tls_key go together");
            }
            c.serve = serve;
        }
        Ok(c)
    }
}

/// The dotted key a parse error points into, from the table header above the offset
/// and the key on its line (best effort; empty when unknown).
fn key_of(text: &str, offset: Option<usize>) -> String {
    let Some(offset) = offset else { return String::new() };
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[line_start..].find('\n').map_or(text.len(), |i| line_start + i);
    let line = text[line_start..line_end].trim();
    let table = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let key = line.split_once('=').map(|(k, _)| k.trim().to_string()).filter(|_| !line.starts_with('['));
    match (table, key) {
        (Some(t), Some(k)) => format!("{t}.{k}"),
        (None, Some(k)) => k,
        (Some(_), None) if line.starts_with('[') => line.trim_matches(|c| c == '[' || c == ']').trim().to_string(),
        (Some(t), None) => t,
        (None, None) => String::new(),
    }
}

/// The Argon2id PHC string of `password` (random salt), for `[serve]`.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| format!("hash the password: {e}"))
}

/// Whether `password` matches the Argon2id PHC string `hash` (false for a malformed hash).
pub fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}
