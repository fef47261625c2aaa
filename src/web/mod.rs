//! `rdbvault serve`: the HTTP JSON API and the embedded web UI over one or more open
//! repositories. Axum on a small tokio runtime; every repository read runs on the
//! blocking pool, so a long scan never stalls other requests.

pub mod api;
pub mod assets;
pub mod auth;
pub mod cache;
pub mod download;
pub mod error;
pub mod jobs;
pub mod keys;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::store::Repository;

pub use error::{ApiError, WebError};

/// One repository the server shows: a name for URLs and an open repository (the
/// password was used to open it and is not kept).
pub struct Repo {
    /// URL-safe name (`default` for the one given with `-r`).
    pub name: String,
    /// Where it is, for display (never holds credentials).
    pub location: String,
    /// The open repository.
    pub repo: Repository,
    /// Its index, kept between requests.
    pub index: cache::IndexCache,
}

impl Repo {
    /// A repository to serve under `name`.
    pub fn new(name: impl Into<String>, repo: Repository) -> Repo {
        Repo { name: name.into(), location: repo.backend().location(), repo, index: cache::IndexCache::default() }
    }
}

/// Everything `serve` needs, resolved by the CLI.
pub struct ServeOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The repositories to show.
    pub repos: Vec<Repo>,
    /// Argon2id PHC strings a login secret may match (a password's, a token's); empty = no login.
    pub auth_hashes: Vec<String>,
    /// Certificate chain and private key (PEM) to serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Serve plain HTTP on a non-loopback address (the operator said so).
    pub insecure_http: bool,
    /// The job runner (actions, restore, history), when jobs can run.
    pub jobs: Option<jobs::WebJobs>,
}

/// Shared state of the running server.
pub struct Site {
    pub repos: Vec<Arc<Repo>>,
    pub auth: auth::Auth,
    pub jobs: Option<jobs::WebJobs>,
}

impl Site {
    /// The repository named `name`, or a 404 naming the ones there are.
    pub fn repo(&self, name: &str) -> Result<Arc<Repo>, ApiError> {
        self.repos.iter().find(|r| r.name == name).cloned().ok_or_else(|| {
            let names: Vec<&str> = self.repos.iter().map(|r| r.name.as_str()).collect();
            ApiError::not_found(format!("no repository named {name:?} (there are: {})", names.join(", ")))
        })
    }
}

/// Refuses a configuration that would expose the repositories: a non-loopback address
/// needs a login and either TLS or an explicit `--insecure-http`.
pub fn check_exposure(o: &ServeOptions) -> Result<(), WebError> {
    if o.listen.ip().is_loopback() {
        return Ok(());
    }
    if o.auth_hashes.is_empty() {
        return Err(WebError::Refused(format!(
            "refusing to listen on {}: it is not a loopback address and no login is configured; set [serve] password_hash or token_hash in the config (`rdbvault config hash-password` prints one), or listen on 127.0.0.1",
            o.listen
        )));
    }
    if o.tls.is_none() && !o.insecure_http {
        return Err(WebError::Refused(format!(
            "refusing to listen on {} without TLS: set [serve] tls_cert and tls_key (or --tls-cert/--tls-key), or pass --insecure-http to send passwords and data in clear",
            o.listen
        )));
    }
    Ok(())
}

/// The routes of the API and the UI.
pub fn router(site: Arc<Site>) -> Router {
    let api = Router::new()
        .route("/api/health", get(api::health))
        .route("/api/session", get(auth::session))
        .route("/api/login", post(auth::login))
        .route("/api/logout", post(auth::logout))
        .route("/api/repos", get(api::repos))
        .route("/api/repos/{repo}/snapshots", get(api::snapshots))
        .route("/api/repos/{repo}/snapshots/{id}", get(api::snapshot))
        .route("/api/repos/{repo}/snapshots/{id}/keys", get(keys::page))
        .route("/api/repos/{repo}/snapshots/{id}/key", get(keys::value))
        .route("/api/repos/{repo}/snapshots/{id}/memory", get(api::memory))
        .route("/api/repos/{repo}/snapshots/{id}/rdb", get(download::rdb))
        .route("/api/repos/{repo}/diff", get(api::diff))
        .route("/api/repos/{repo}/timeline", get(api::timeline))
        .route("/api/jobs", get(jobs::list).post(jobs::start))
        .route("/api/jobs/{id}", get(jobs::get))
        .route("/api/jobs/{id}/cancel", post(jobs::cancel))
        .route("/api/jobs/{id}/events", get(jobs::events))
        .route("/health", get(api::health))
        .route("/metrics", get(api::metrics))
        .fallback(api::no_route);
    api.route("/", get(assets::index))
        .route("/assets/{name}", get(assets::file))
        .layer(axum::middleware::from_fn_with_state(site.clone(), auth::guard))
        .with_state(site)
}

/// A bound server, ready to run.
pub struct Server {
    runtime: tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    site: Arc<Site>,
    /// The address it listens on (the port is known even when 0 was asked for).
    pub addr: SocketAddr,
}

/// Checks the options, loads TLS files and binds the address.
pub fn bind(o: ServeOptions) -> Result<Server, WebError> {
    check_exposure(&o)?;
    let tls = o.tls.as_ref().map(|(cert, key)| tls::acceptor(cert, key)).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| WebError::Io { context: "start the server's runtime".into(), source: e })?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(o.listen))
        .map_err(|e| WebError::Io { context: format!("listen on {}", o.listen), source: e })?;
    let addr = listener.local_addr().map_err(|e| WebError::Io { context: format!("listen on {}", o.listen), source: e })?;
    let auth = auth::Auth::new(o.auth_hashes, tls.is_some(), addr);
    let site = Arc::new(Site { repos: o.repos.into_iter().map(Arc::new).collect(), auth, jobs: o.jobs });
    Ok(Server { runtime, listener, tls, site, addr })
}

impl Server {
    /// Whether it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until the process ends.
    pub fn run(self) -> Result<(), WebError> {
        crate::host::return_large_buffers();
        let site = self.site.clone();
        let app = router(self.site);
        let addr = self.addr;
        // Drops the indexes no request used for a while, so an idle server stays small.
        self.runtime.spawn(async move {
            loop {
                tokio::time::sleep(cache::IDLE / 5).await;
                site.repos.iter().for_each(|r| r.index.trim(cache::IDLE));
            }
        });
        let served = self.runtime.block_on(async move {
            match self.tls {
                Some(acceptor) => axum::serve(tls::TlsListener::new(self.listener, acceptor), app).await,
                None => axum::serve(self.listener, app).await,
            }
        });
        served.map_err(|e| WebError::Io { context: format!("serve on {addr}"), source: e })
    }
}
