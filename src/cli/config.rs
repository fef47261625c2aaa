//! `rdbvault config check|show|hash-password`: the config file (`--config`,
//! `RDBVAULT_CONFIG`, then `$XDG_CONFIG_HOME/rdbvault/config.toml`).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use rdbvault::ops::config::{self, Config};

use super::{output, Global};

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the config file: types, unknown keys, and that every profile, repository
    /// and source a setting names exists (errors name file:line:column and the key).
    Check,
    /// Print the config file with secrets (passwords, hashes, URL passwords) redacted.
    Show,
    /// Read a password (no echo; from standard input when it is not a terminal) and print
    /// its Argon2id hash, for [serve] password_hash or token_hash.
    HashPassword,
}

pub fn run(g: &Global, c: ConfigCommand) -> anyhow::Result<()> {
    match c {
        ConfigCommand::Check => {
            let cfg = load(g)?;
            if g.json {
                return output::print_json(&serde_json::json!({
                    "file": cfg.path,
                    "repositories": cfg.repositories.keys().collect::<Vec<_>>(),
                    "sources": cfg.sources.keys().collect::<Vec<_>>(),
                    "profiles": cfg.profiles.keys().collect::<Vec<_>>(),
                    "schedules": cfg.schedules.keys().collect::<Vec<_>>(),
                }));
            }
            if !g.quiet {
                let p = output::plural;
                println!(
                    "{} is valid: {}, {}, {}, {}",
                    cfg.path.display(),
                    p(cfg.repositories.len(), "repository").replace("repositorys", "repositories"),
                    p(cfg.sources.len(), "source"),
                    p(cfg.profiles.len(), "profile"),
                    p(cfg.schedules.len(), "schedule")
                );
            }
            Ok(())
        }
        ConfigCommand::Show => {
            let cfg = load(g)?;
            let text = std::fs::read_to_string(&cfg.path).with_context(|| format!("read {}", cfg.path.display()))?;
            let mut table: toml::Table = toml::from_str(&text).with_context(|| format!("parse {}", cfg.path.display()))?;
            redact_table(&mut table);
            if g.json {
                return output::print_json(&table);
            }
            print!("{}", toml::to_string(&table).context("print the config")?);
            Ok(())
        }
        ConfigCommand::HashPassword => {
            let pw = read_password()?;
            println!("{}", config::hash_password(&pw).map_err(anyhow::Error::msg)?);
            Ok(())
        }
    }
}

/// The config file `--config`, `RDBVAULT_CONFIG` or the XDG default names.
pub fn path(g: &Global) -> anyhow::Result<PathBuf> {
    config::default_path(g.config.as_deref())
        .context("no config file: use --config FILE or set RDBVAULT_CONFIG (or XDG_CONFIG_HOME / HOME for the default)")
}

/// Loads and validates the config file.
pub fn load(g: &Global) -> anyhow::Result<Config> {
    Ok(Config::load(&path(g)?)?)
}

/// Keys whose values are never printed.
const SECRET_KEYS: [&str; 3] = ["password", "password_hash", "token_hash"];

fn redact_table(t: &mut toml::Table) {
    for (k, v) in t.iter_mut() {
        if SECRET_KEYS.contains(&k.as_str()) {
            *v = toml::Value::String("<redacted>".into());
        } else {
            redact_value(v);
        }
    }
}

fn redact_value(v: &mut toml::Value) {
    match v {
        toml::Value::Table(t) => redact_table(t),
        toml::Value::Array(a) => a.iter_mut().for_each(redact_value),
        toml::Value::String(s) => *s = redact_url(s),
        _ => {}
    }
}

/// `scheme://user:secret@host...` with the secret replaced (Redis URLs, webhooks).
fn redact_url(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else { return s.to_string() };
    let auth_end = rest.find('/').unwrap_or(rest.len());
    match rest[..auth_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            let has_secret = rest[..at].contains(':') || !user.is_empty();
            let who = if rest[..at].contains(':') { format!("{user}:<redacted>") } else if has_secret { "<redacted>".to_string() } else { String::new() };
            format!("{scheme}://{who}@{}", &rest[at + 1..])
        }
        None => s.to_string(),
    }
}

/// A password from the terminal (asked twice, no echo) or the first line of standard input.
fn read_password() -> anyhow::Result<Zeroizing<String>> {
    let pw = if std::io::stdin().is_terminal() {
        let pw = Zeroizing::new(rpassword::prompt_password("password to hash: ").context("read password")?);
        let again = Zeroizing::new(rpassword::prompt_password("enter it again: ").context("read password")?);
        if *again != *pw {
            bail!("the two passwords differ");
        }
        pw
    } else {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin().lock().read_line(&mut line).context("read the password from standard input")?;
        Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_string())
    };
    if pw.is_empty() {
        bail!("an empty password is not allowed");
    }
    Ok(pw)
}
