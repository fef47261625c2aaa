//! `--profile NAME`: a command takes its repository, password source, source and flags
//! from a profile of the config file; flags and environment variables given win.

use anyhow::bail;

use rdbvault::ops::spec::{PasswordSource, SourceTarget};
use rdbvault::redis::live::Mode;

use super::backup::LiveMode;
use super::{Cli, Command};

/// Fills what the command line left open from the profile `--profile` names, if any.
pub fn apply(cli: &mut Cli) -> anyhow::Result<()> {
    let Some(name) = cli.global.profile.clone() else { return Ok(()) };
    if matches!(cli.command, Command::Config(_)) {
        return Ok(());
    }
    let cfg = super::config::load(&cli.global)?;
    let Some(profile) = cfg.profiles.get(&name) else {
        let known: Vec<&str> = cfg.profiles.keys().map(String::as_str).collect();
        bail!("no profile {name:?} in {} (its profiles: {})", cfg.path.display(), if known.is_empty() { "none".into() } else { known.join(", ") });
    };
    let g = &mut cli.global;
    let repo = &cfg.repositories[&profile.repository];
    if g.repo.is_none() {
        g.repo = Some(repo.location.clone());
    }
    let password_given = g.password_file.is_some() || g.password_command.is_some() || std::env::var_os("RDBVAULT_PASSWORD").is_some();
    if !password_given {
        match &repo.password {
            PasswordSource::File(p) => g.password_file = Some(p.clone()),
            PasswordSource::Command(c) => g.password_command = Some(c.clone()),
            PasswordSource::Env(_) | PasswordSource::Literal(_) => {
                let pw = repo.password.resolve(&repo.name)?;
                // Read by `password::get` like a user's own RDBVAULT_PASSWORD (single-threaded here).
                std::env::set_var("RDBVAULT_PASSWORD", pw.as_str());
            }
        }
    }
    match &mut cli.command {
        Command::Backup(a) => {
            let named = a.source.is_some() || a.stdin || a.aof.is_some() || a.redis.names_server();
            if let (false, Some(source)) = (named, profile.source.as_ref().and_then(|s| cfg.sources.get(s))) {
                match &source.target {
                    SourceTarget::Rdb(path) => a.source = Some(path.clone()),
                    SourceTarget::Redis { url, mode } => {
                        a.source = Some(url.into());
                        if let Mode::Bgsave { rdb_path } = mode {
                            a.mode = LiveMode::Bgsave;
                            a.rdb_path = Some(rdb_path.clone());
                        }
                        let r = &mut a.redis;
                        r.redis_password_file = r.redis_password_file.take().or(source.redis_password_file.clone());
                        r.tls_ca = r.tls_ca.take().or(source.connect.tls_ca_file.clone());
                        r.tls_cert = r.tls_cert.take().or(source.connect.tls_cert_file.clone());
                        r.tls_key = r.tls_key.take().or(source.connect.tls_key_file.clone());
                        r.tls_insecure |= source.connect.tls_insecure;
                        // Only over the defaults: a time-out given on the command line wins.
                        let default = rdbvault::redis::source::ConnectOptions::default();
                        if r.connect_timeout == default.connect_timeout.as_secs_f64() {
                            r.connect_timeout = source.connect.connect_timeout.as_secs_f64();
                        }
                        if r.read_timeout == default.read_timeout.as_secs_f64() {
                            r.read_timeout = source.connect.read_timeout.as_secs_f64();
                        }
                    }
                }
            }
            if a.tags.is_empty() {
                a.tags = profile.tags.clone();
            }
        }
        Command::Forget(a) => {
            let policy_given = a.keep_last + a.keep_hourly + a.keep_daily + a.keep_weekly + a.keep_monthly + a.keep_yearly > 0
                || a.keep_within.is_some()
                || !a.keep_tags.is_empty();
            if a.ids.is_empty() && !policy_given {
                let p = &profile.retention;
                (a.keep_last, a.keep_hourly, a.keep_daily) = (p.last, p.hourly, p.daily);
                (a.keep_weekly, a.keep_monthly, a.keep_yearly) = (p.weekly, p.monthly, p.yearly);
                a.keep_within = p.within;
                a.keep_tags = p.tags.clone();
            }
        }
        _ => {}
    }
    Ok(())
}
