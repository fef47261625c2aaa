//! `rdbvault serve`: the web UI and HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use rdbvault::web::{self, Repo, ServeOptions};

use super::{open_repo, Global};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Config file; its [serve] section gives listen, password_hash / token_hash (Argon2id
    /// PHC strings), tls_cert and tls_key.
    #[arg(long, env = "RDBVAULT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on; anything but loopback needs a login and TLS (or --insecure-http).
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
}

/// The `[serve]` section of the config file.
#[derive(serde::Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct ServeSection {
    listen: Option<SocketAddr>,
    password_hash: Option<String>,
    token_hash: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

fn serve_section(path: &std::path::Path) -> anyhow::Result<ServeSection> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read config file {}", path.display()))?;
    let mut table: toml::Table = toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?;
    match table.remove("serve") {
        Some(v) => v.try_into().with_context(|| format!("config file {}: [serve]", path.display())),
        None => Ok(ServeSection::default()),
    }
}

pub fn run(g: &Global, a: ServeArgs) -> anyhow::Result<()> {
    let section = a.config.as_deref().map(serve_section).transpose()?.unwrap_or_default();
    let listen = a.listen.or(section.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8077)));
    let tls = match (a.tls_cert.or(section.tls_cert), a.tls_key.or(section.tls_key)) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => anyhow::bail!("[serve] needs both tls_cert and tls_key, or neither"),
    };
    let auth_hashes: Vec<String> = [section.password_hash, section.token_hash].into_iter().flatten().collect();
    let mut opts = ServeOptions { listen, repos: Vec::new(), auth_hashes, tls, insecure_http: a.insecure_http };
    // Refuse an exposed address before asking for any password.
    web::check_exposure(&opts)?;
    let repo = open_repo(g).context("open the repository to serve (-r)")?;
    opts.repos.push(Repo { name: "default".into(), location: repo.backend().location(), repo });
    let server = web::bind(opts)?;
    let scheme = if server.is_tls() { "https" } else { "http" };
    if !g.quiet {
        eprintln!("rdbvault serve: listening on {scheme}://{}/", server.addr);
    }
    Ok(server.run()?)
}
