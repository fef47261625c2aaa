//! `rdbvault serve`: the web UI and HTTP API, the job runner and the config's schedules.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use rdbvault::ops::config::{self, Config};
use rdbvault::ops::schedule::Scheduler;
use rdbvault::ops::{Jobs, PasswordSource, RepoSpec};
use rdbvault::store::{Location, Repository};
use rdbvault::web::{self, jobs::WebJobs, Repo, ServeOptions};

use super::{password, repo_backend, with_cache, Global};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Config file (else RDBVAULT_CONFIG, else ~/.config/rdbvault/config.toml when it
    /// exists): its repositories are served, its schedules run, [serve] sets listen,
    /// password_hash / token_hash (Argon2id), tls_cert, tls_key, webhook and history.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8077); anything but loopback needs a login
    /// and TLS, or --insecure-http.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Serve plain HTTP on a non-loopback address (passwords and data cross the network in clear).
    #[arg(long)]
    pub insecure_http: bool,
    /// TLS certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Job history file (JSON lines; default: [serve] history, else next to the config
    /// file, else $XDG_STATE_HOME/rdbvault/jobs.jsonl).
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
}

/// The config file named by the flag or RDBVAULT_CONFIG, or the default one if it exists.
fn load_config(flag: Option<&std::path::Path>) -> anyhow::Result<Option<Config>> {
    let named = flag.is_some() || std::env::var_os("RDBVAULT_CONFIG").is_some_and(|v| !v.is_empty());
    match config::default_path(flag) {
        Some(p) if named || p.exists() => Ok(Some(Config::load(&p)?)),
        _ => Ok(None),
    }
}

/// Where the `-r` repository's password came from, for jobs that reopen it.
fn password_source(g: &Global, prompted: impl FnOnce() -> PasswordSource) -> PasswordSource {
    if let Some(f) = &g.password_file {
        PasswordSource::File(f.clone())
    } else if let Some(c) = &g.password_command {
        PasswordSource::Command(c.clone())
    } else if std::env::var_os("RDBVAULT_PASSWORD").is_some() {
        PasswordSource::Env("RDBVAULT_PASSWORD".into())
    } else {
        prompted()
    }
}

/// Opens a repository of the config file with its own password source.
fn open_configured(g: &Global, spec: &RepoSpec) -> anyhow::Result<Repository> {
    let location = Location::parse(&spec.location)?;
    let pw = spec.password.resolve(&spec.name)?;
    let repo = Repository::open(location.open()?, pw.as_bytes()).with_context(|| format!("open repository {:?} of the config file", spec.name))?;
    with_cache(g, &location, repo)
}

fn state_dir() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir)
        .join("rdbvault")
}

pub fn run(g: &Global, a: ServeArgs) -> anyhow::Result<()> {
    let config = load_config(a.config.as_deref())?;
    let section = config.as_ref().map(|c| c.serve.clone()).unwrap_or_default();
    let listen = match (a.listen, &section.listen) {
        (Some(l), _) => l,
        (None, Some(s)) => s.parse().with_context(|| format!("[serve] listen = {s:?} is not ADDR:PORT (e.g. 127.0.0.1:8077)"))?,
        (None, None) => SocketAddr::from(([127, 0, 0, 1], 8077)),
    };
    let tls = match (a.tls_cert.or(section.tls_cert.clone()), a.tls_key.or(section.tls_key.clone())) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => anyhow::bail!("[serve] needs both tls_cert and tls_key, or neither"),
    };
    let auth_hashes: Vec<String> = [section.password_hash.clone(), section.token_hash.clone()].into_iter().flatten().collect();
    let mut opts = ServeOptions { listen, repos: Vec::new(), auth_hashes, tls, insecure_http: a.insecure_http, jobs: None };
    // Refuse an exposed address before asking for any password.
    web::check_exposure(&opts)?;

    let mut specs = HashMap::new();
    if let Some(location) = &g.repo {
        let pw = password::get(g, false)?;
        let repo = Repository::open(repo_backend(g)?, pw.as_bytes()).context("open the repository to serve (-r)")?;
        let repo = with_cache(g, &Location::parse(location)?, repo)?;
        let source = password_source(g, || PasswordSource::Literal(pw));
        specs.insert("default".to_string(), RepoSpec { name: "default".into(), location: location.clone(), password: source });
        opts.repos.push(Repo::new("default", repo));
    }
    for (name, spec) in config.iter().flat_map(|c| &c.repositories) {
        let repo = open_configured(g, spec)?;
        specs.insert(name.clone(), spec.clone());
        opts.repos.push(Repo::new(name.clone(), repo));
    }
    if opts.repos.is_empty() {
        anyhow::bail!("nothing to serve: give a repository with -r, or a config file (--config) with [repositories]");
    }

    let history = a.history.or(section.history.clone()).unwrap_or_else(|| match &config {
        Some(c) => c.history_path(),
        None => state_dir().join("jobs.jsonl"),
    });
    if let Some(dir) = history.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create the job history's folder {}", dir.display()))?;
    }
    let jobs = Jobs::new(history.clone());
    if let Some(e) = jobs.history_error() {
        eprintln!("warning: job history {}: {e}; jobs run but are not recorded", history.display());
    }
    jobs.notify_failures_to(section.webhook.clone());
    let config = config.map(Arc::new);
    let _scheduler = match &config {
        Some(c) if !c.schedules.is_empty() => Some(Scheduler::spawn((**c).clone(), jobs.clone()).context("start the scheduler")?),
        _ => None,
    };
    opts.jobs = Some(WebJobs::new(jobs, config.clone(), specs));

    let server = web::bind(opts)?;
    let scheme = if server.is_tls() { "https" } else { "http" };
    if !g.quiet {
        let schedules = config.as_ref().map_or(0, |c| c.schedules.len());
        eprintln!("rdbvault serve: listening on {scheme}://{}/", server.addr);
        if schedules > 0 {
            eprintln!("rdbvault serve: running {}", super::output::plural(schedules, "schedule"));
        }
    }
    Ok(server.run()?)
}
