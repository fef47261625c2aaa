//! The connection options of every command that talks to Redis (`backup` of a live server,
//! `restore --to`), so each takes the same ones with the same meaning.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use rdbvault::redis::source::{sentinel, ConnectOptions, Password, RedisUrl, SourceError};

/// How to reach and trust a Redis server: a URL (given by the command) or redis-cli style
/// `-h/-p/-n/--user/--pass`, or a Sentinel; credentials; TLS; time-outs.
///
/// URLs: `redis://[user[:password]@]host[:port][/db]`, `rediss://...` for TLS,
/// `unix:///path/redis.sock[?db=N&user=U&pass=P]` (also `redis+unix://`).
#[derive(clap::Args, Debug, Clone, Default)]
#[command(disable_help_flag = true)]
pub struct RedisArgs {
    /// Server host name or address, as redis-cli -h (instead of a URL; default 127.0.0.1).
    #[arg(short = 'h', long = "redis-host", value_name = "HOST", help_heading = "Redis connection")]
    pub redis_host: Option<String>,
    /// Server port, as redis-cli -p (default 6379).
    #[arg(short = 'p', long = "redis-port", value_name = "PORT", help_heading = "Redis connection")]
    pub redis_port: Option<u16>,
    /// Database number, as redis-cli -n (the same as /N in a URL).
    #[arg(short = 'n', long = "redis-db", value_name = "DB", help_heading = "Redis connection")]
    pub redis_db: Option<u32>,
    /// Use TLS with -h/-p or --sentinel (a URL says it with rediss://).
    #[arg(long, help_heading = "Redis connection")]
    pub tls: bool,
    /// ACL user name, as redis-cli --user; without a password it is asked for (or taken from REDISCLI_AUTH).
    #[arg(long, value_name = "NAME", help_heading = "Redis connection")]
    pub user: Option<String>,
    /// Password, as redis-cli --pass/-a: other users see it in the process list; prefer
    /// REDISCLI_AUTH or --redis-password-file.
    #[arg(long = "pass", short = 'a', value_name = "PASSWORD", help_heading = "Redis connection")]
    pub pass: Option<String>,
    /// Read the Redis password from this file (first line; overrides the URL, --pass and REDISCLI_AUTH).
    #[arg(long, value_name = "FILE", help_heading = "Redis connection")]
    pub redis_password_file: Option<PathBuf>,
    /// Ask this Sentinel (HOST:PORT, plain TCP) where the master --master-name is, then connect to it.
    #[arg(long, value_name = "HOST:PORT", requires = "master_name", conflicts_with_all = ["redis_host", "redis_port"], help_heading = "Redis connection")]
    pub sentinel: Option<String>,
    /// The master's name at the Sentinel (as in `sentinel monitor NAME ...`).
    #[arg(long, value_name = "NAME", requires = "sentinel", help_heading = "Redis connection")]
    pub master_name: Option<String>,
    /// PEM file with the CA certificate(s) to trust for rediss:// (default: the Mozilla roots).
    #[arg(long, value_name = "FILE", help_heading = "Redis connection")]
    pub tls_ca: Option<PathBuf>,
    /// Accept any TLS certificate (testing only: allows man-in-the-middle).
    #[arg(long, help_heading = "Redis connection")]
    pub tls_insecure: bool,
    /// Client certificate (PEM) to present, for servers with tls-auth-clients yes.
    #[arg(long, value_name = "FILE", requires = "tls_key", help_heading = "Redis connection")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert", help_heading = "Redis connection")]
    pub tls_key: Option<PathBuf>,
    /// Seconds to wait for a connection to a server.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, help_heading = "Redis connection")]
    pub connect_timeout: f64,
    /// Seconds without an answer from a server before giving up.
    #[arg(long, value_name = "SECS", default_value_t = 60.0, help_heading = "Redis connection")]
    pub read_timeout: f64,
    /// Print help (-h is the Redis host, as in redis-cli).
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// Arg ids of [`RedisArgs`] that only make sense with a server (for `conflicts_with_all`).
pub const SERVER_ONLY: [&str; 15] = [
    "redis_host",
    "redis_port",
    "redis_db",
    "tls",
    "user",
    "pass",
    "redis_password_file",
    "sentinel",
    "master_name",
    "tls_ca",
    "tls_insecure",
    "tls_cert",
    "tls_key",
    "connect_timeout",
    "read_timeout",
];

impl RedisArgs {
    /// Whether the options name a server themselves (so the command needs no URL).
    pub fn names_server(&self) -> bool {
        self.redis_host.is_some() || self.redis_port.is_some() || self.sentinel.is_some()
    }

    /// Whether any option that needs a server was given.
    pub fn any(&self) -> bool {
        self.names_server()
            || self.redis_db.is_some()
            || self.tls
            || self.user.is_some()
            || self.pass.is_some()
            || self.redis_password_file.is_some()
            || self.tls_ca.is_some()
            || self.tls_insecure
            || self.tls_cert.is_some()
    }

    /// Time-outs and TLS trust.
    pub fn connect_options(&self) -> anyhow::Result<ConnectOptions> {
        Ok(ConnectOptions {
            connect_timeout: secs(self.connect_timeout, "--connect-timeout")?,
            read_timeout: secs(self.read_timeout, "--read-timeout")?,
            tls_ca_file: self.tls_ca.clone(),
            tls_insecure: self.tls_insecure,
            tls_cert_file: self.tls_cert.clone(),
            tls_key_file: self.tls_key.clone(),
        })
    }

    /// The server to talk to, from `url` or the options, with its password found: the
    /// file, else the URL or --pass, else REDISCLI_AUTH, else (for a user name) a prompt.
    pub fn server(&self, url: Option<&str>) -> anyhow::Result<RedisUrl> {
        let mut server = match url {
            Some(_) if self.names_server() => bail!("give the server once: a URL, or -h/-p, or --sentinel"),
            Some(_) if self.tls => bail!("--tls is for -h/-p and --sentinel: a URL asks for TLS with rediss://"),
            Some(u) => RedisUrl::parse(u)?,
            None => {
                let scheme = if self.tls { "rediss" } else { "redis" };
                let host = self.redis_host.as_deref().unwrap_or("127.0.0.1");
                let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
                let port = self.redis_port.unwrap_or(rdbvault::redis::source::url::DEFAULT_PORT);
                RedisUrl::parse(&format!("{scheme}://{host}:{port}"))?
            }
        };
        if let Some(db) = self.redis_db {
            if server.db.is_some_and(|d| d != db) {
                bail!("the database is given twice: /{} in the URL and -n {db}", server.db.unwrap_or_default());
            }
            server.db = Some(db);
        }
        if let (Some(at), Some(name)) = (&self.sentinel, &self.master_name) {
            server = sentinel::master_url(at, name, &server, &self.connect_options()?)?;
        }
        if let Some(user) = &self.user {
            if server.username.as_ref().is_some_and(|u| u != user) {
                bail!("the user name is given twice: in the URL and with --user");
            }
            server.username = Some(user.clone());
        }
        if let Some(pass) = &self.pass {
            eprintln!("warning: a password given with --pass is visible to other users of this machine (ps); prefer REDISCLI_AUTH or --redis-password-file");
            if server.password.is_some() {
                bail!("the password is given twice: in the URL and with --pass");
            }
            server.password = Some(Password::new(pass.clone()));
        }
        server.resolve_password_from_env(self.redis_password_file.as_deref())?;
        if let Some(user) = server.user_without_password().map(str::to_string) {
            server.password = Some(ask_password(&user, &server)?);
        }
        Ok(server)
    }
}

/// Asks for the password of `user` on the terminal (no echo); without a terminal, the error
/// says where a password can come from. Never falls back to another user.
fn ask_password(user: &str, server: &RedisUrl) -> anyhow::Result<Password> {
    let missing = || SourceError::UserWithoutPassword { user: user.to_string(), addr: server.addr() };
    if !std::io::stdin().is_terminal() {
        return Err(missing().into());
    }
    let pw = zeroize::Zeroizing::new(
        rpassword::prompt_password(format!("password of Redis user {user} at {}: ", server.addr())).context("read the Redis password")?,
    );
    if pw.is_empty() {
        return Err(missing().into());
    }
    Ok(Password::new(pw.as_str()))
}

/// A positive number of seconds.
fn secs(v: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v).ok().filter(|d| !d.is_zero()).with_context(|| format!("{flag} must be a positive number of seconds"))
}
