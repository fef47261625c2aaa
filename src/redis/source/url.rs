//! `redis://` / `rediss://` / `unix://` URLs and where the password comes from.

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::error::{Result, SourceError};

/// Default Redis port when the URL names none.
pub const DEFAULT_PORT: u16 = 6379;

/// Environment variable redis-cli reads a password from; we honour it the same way.
pub const AUTH_ENV_VAR: &str = "REDISCLI_AUTH";

/// A password that is wiped from memory on drop and never printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Password(String);

impl Password {
    /// Wrap a password (the caller's copy should be zeroized by the caller).
    pub fn new(s: impl Into<String>) -> Self {
        Password(s.into())
    }

    /// The password itself, only for sending to the server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Parsed connection target; Display/Debug never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// `rediss://` was used.
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets); empty for a unix socket.
    pub host: String,
    /// TCP port (0 for a unix socket).
    pub port: u16,
    /// Unix socket path (`unix:///path`, `redis+unix:///path`); then `host`/`port` are unused.
    pub socket: Option<PathBuf>,
    /// Database number the URL names (`/N`, or `?db=N` for a socket); `None` when it names none.
    pub db: Option<u32>,
    /// ACL user name, if any (`None` means the `default` user).
    pub username: Option<String>,
    /// Password after applying the precedence rules.
    pub password: Option<Password>,
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.socket {
            write!(f, "unix://{}", path.display())?;
            let mut sep = '?';
            if let Some(db) = self.db {
                write!(f, "{sep}db={db}")?;
                sep = '&';
            }
            if let Some(u) = &self.username {
                write!(f, "{sep}user={u}")?;
            }
            return Ok(());
        }
        let scheme = if self.tls { "rediss" } else { "redis" };
        write!(f, "{scheme}://")?;
        if let Some(u) = &self.username {
            write!(f, "{u}@")?;
        }
        write!(f, "{}", self.addr())?;
        match self.db {
            Some(db) => write!(f, "/{db}"),
            None => Ok(()),
        }
    }
}

impl RedisUrl {
    /// Whether `input` is written as a Redis URL (any scheme [`parse`](Self::parse) accepts).
    pub fn looks_like_url(input: &str) -> bool {
        SCHEMES.iter().any(|s| input.starts_with(s))
    }

    /// Parse `redis://[user[:pass]@]host[:port][/db]`, the `rediss://` TLS form, or a unix
    /// socket as redis-rs spells it: `unix:///path[?db=N&user=U&pass=P]` (or `redis+unix://`).
    pub fn parse(input: &str) -> Result<Self> {
        if let Some(r) = input.strip_prefix("unix://").or_else(|| input.strip_prefix("redis+unix://")) {
            return Self::parse_unix(r);
        }
        let (tls, rest) = if let Some(r) = input.strip_prefix("redis://") {
            (false, r)
        } else if let Some(r) = input.strip_prefix("rediss://") {
            (true, r)
        } else {
            return Err(SourceError::InvalidUrl(
                "scheme must be redis://, rediss://, unix:// or redis+unix://".into(),
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                let (u, p) = match ui.find(':') {
                    Some(i) => (&ui[..i], Some(&ui[i + 1..])),
                    None => (ui, None),
                };
                let u = percent_decode(u)?;
                let p = p.map(percent_decode).transpose()?;
                // redis://:pass@host means the default user.
                ((!u.is_empty()).then_some(u), p.filter(|p| !p.is_empty()).map(Password))
            }
        };
        let (host, port) = split_host_port(hostport)?;
        let path = path.trim_end_matches('/');
        let db = if path.is_empty() { None } else { Some(parse_db(path)?) };
        Ok(RedisUrl { tls, host, port, socket: None, db, username, password })
    }

    /// The part after `unix://`: an absolute path, then `db`, `user`, `pass` query fields.
    fn parse_unix(rest: &str) -> Result<Self> {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if !path.starts_with('/') {
            return Err(SourceError::InvalidUrl("a unix socket URL needs an absolute path: unix:///path/redis.sock".into()));
        }
        let mut url = RedisUrl {
            tls: false,
            host: String::new(),
            port: 0,
            socket: Some(PathBuf::from(percent_decode(path)?)),
            db: None,
            username: None,
            password: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(&v.replace('+', " "))?;
            match k {
                "db" => url.db = Some(parse_db(&v)?),
                "user" => url.username = (!v.is_empty()).then_some(v),
                "pass" | "password" => url.password = (!v.is_empty()).then(|| Password(v)),
                "protocol" => {}
                other => return Err(SourceError::InvalidUrl(format!("unknown query field {other:?} (db, user and pass are understood)"))),
            }
        }
        Ok(url)
    }

    /// Where the server is, used in every message: `host:port` (IPv6 hosts in brackets) or the socket path.
    pub fn addr(&self) -> String {
        if let Some(path) = &self.socket {
            return path.display().to_string();
        }
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Same credentials and TLS, another node (used for cluster masters and Sentinel).
    pub fn with_host_port(&self, host: &str, port: u16) -> Self {
        RedisUrl { host: host.to_string(), port, socket: None, ..self.clone() }
    }

    /// A user name without a password: connecting would log in as nobody or as `default`,
    /// so every connect refuses it ([`SourceError::UserWithoutPassword`]).
    pub fn user_without_password(&self) -> Option<&str> {
        self.username.as_deref().filter(|_| self.password.is_none())
    }

    /// Fails with [`SourceError::UserWithoutPassword`] unless the credentials are complete.
    pub fn check_credentials(&self) -> Result<()> {
        match self.user_without_password() {
            Some(user) => Err(SourceError::UserWithoutPassword { user: user.to_string(), addr: self.addr() }),
            None => Ok(()),
        }
    }

    /// Apply the password precedence: `--password-file` > URL > `REDISCLI_AUTH` (given as `env_auth`).
    pub fn resolve_password(&mut self, password_file: Option<&Path>, env_auth: Option<String>) -> Result<()> {
        if let Some(path) = password_file {
            let mut raw = std::fs::read_to_string(path)
                .map_err(|source| SourceError::PasswordFile { path: path.to_path_buf(), source })?;
            let trimmed = raw.trim_end_matches(['\r', '\n']).to_string();
            raw.zeroize();
            self.password = Some(Password(trimmed));
        } else if self.password.is_none() {
            if let Some(mut env) = env_auth {
                if !env.is_empty() {
                    self.password = Some(Password(env.clone()));
                }
                env.zeroize();
            }
        }
        Ok(())
    }

    /// [`resolve_password`](Self::resolve_password) reading `REDISCLI_AUTH` from the process environment.
    pub fn resolve_password_from_env(&mut self, password_file: Option<&Path>) -> Result<()> {
        self.resolve_password(password_file, std::env::var(AUTH_ENV_VAR).ok())
    }
}

/// URL schemes [`RedisUrl::parse`] accepts.
const SCHEMES: [&str; 4] = ["redis://", "rediss://", "unix://", "redis+unix://"];

fn parse_db(s: &str) -> Result<u32> {
    s.parse::<u32>().map_err(|_| SourceError::InvalidUrl(format!("database must be a number, got {s:?}")))
}

fn split_host_port(hostport: &str) -> Result<(String, u16)> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| SourceError::InvalidUrl("unterminated IPv6 address".into()))?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(SourceError::InvalidUrl("junk after IPv6 address".into())),
        };
        (rest[..end].to_string(), port)
    } else {
        match hostport.rfind(':') {
            Some(i) => (hostport[..i].to_string(), Some(&hostport[i + 1..])),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(SourceError::InvalidUrl("missing host".into()));
    }
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| SourceError::InvalidUrl(format!("bad port {p:?}")))?,
    };
    Ok((host, port))
}

fn percent_decode(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let v = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| SourceError::InvalidUrl("bad %-escape in user info".into()))?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| SourceError::InvalidUrl("user info is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_url() {
        let u = RedisUrl::parse("rediss://backup:s%40cret@example.com:6380/3").unwrap();
        assert!(u.tls);
        assert_eq!(u.host, "example.com");
        assert_eq!(u.port, 6380);
        assert_eq!(u.db, Some(3));
        assert_eq!(u.username.as_deref(), Some("backup"));
        assert_eq!(u.password.as_ref().unwrap().expose(), "s@cret");
        let shown = format!("{u} {u:?}");
        assert!(!shown.contains("s@cret") && !shown.contains("s%40cret"), "{shown}");
    }

    #[test]
    fn defaults_and_ipv6() {
        let u = RedisUrl::parse("redis://127.0.0.1").unwrap();
        assert_eq!((u.port, u.db, u.tls), (6379, None, false));
        assert!(u.username.is_none() && u.password.is_none());
        let u = RedisUrl::parse("redis://:pw@[::1]:7000/").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.addr(), "[::1]:7000");
        assert!(u.username.is_none());
        assert_eq!(u.password.as_ref().unwrap().expose(), "pw");
    }

    #[test]
    fn unix_sockets_as_redis_rs_spells_them() {
        let u = RedisUrl::parse("unix:///run/redis.sock").unwrap();
        assert_eq!(u.socket.as_deref(), Some(Path::new("/run/redis.sock")));
        assert_eq!((u.db, u.addr()), (None, "/run/redis.sock".to_string()));
        let u = RedisUrl::parse("redis+unix:///tmp/r%20s.sock?db=2&user=backup&pass=s%26cret").unwrap();
        assert_eq!(u.socket.as_deref(), Some(Path::new("/tmp/r s.sock")));
        assert_eq!((u.db, u.username.as_deref()), (Some(2), Some("backup")));
        assert_eq!(u.password.as_ref().unwrap().expose(), "s&cret");
        assert!(!format!("{u} {u:?}").contains("s&cret"));
        for bad in ["unix://relative.sock", "unix:///x?db=x", "unix:///x?colour=red"] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in ["http://x", "redis://", "redis://h:notaport", "redis://h/x", "redis://u:%zz@h"] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn password_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "fromfile\n").unwrap();
        let mut u = RedisUrl::parse("redis://:fromurl@h").unwrap();
        u.resolve_password(Some(&file), Some("fromenv".into())).unwrap();
        assert_eq!(u.password.as_ref().unwrap().expose(), "fromfile");
        let mut u = RedisUrl::parse("redis://:fromurl@h").unwrap();
        u.resolve_password(None, Some("fromenv".into())).unwrap();
        assert_eq!(u.password.as_ref().unwrap().expose(), "fromurl");
        let mut u = RedisUrl::parse("redis://h").unwrap();
        u.resolve_password(None, Some("fromenv".into())).unwrap();
        assert_eq!(u.password.as_ref().unwrap().expose(), "fromenv");
        let mut u = RedisUrl::parse("redis://h").unwrap();
        let err = u.resolve_password(Some(&dir.path().join("missing")), None).unwrap_err();
        assert!(matches!(err, SourceError::PasswordFile { .. }));
    }
}
