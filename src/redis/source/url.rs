//! `redis://` / `rediss://` URLs and where the password comes from.

use std::fmt;
use std::path::Path;

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
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database number from the path (an RDB always holds all databases; kept for the command connection).
    pub db: u32,
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
        let scheme = if self.tls { "rediss" } else { "redis" };
        write!(f, "{scheme}://")?;
        if let Some(u) = &self.username {
            write!(f, "{u}@")?;
        }
        write!(f, "{}/{}", self.addr(), self.db)
    }
}

impl RedisUrl {
    /// Parse `redis://[user[:pass]@]host[:port][/db]` or the `rediss://` TLS form.
    pub fn parse(input: &str) -> Result<Self> {
        let (tls, rest) = if let Some(r) = input.strip_prefix("redis://") {
            (false, r)
        } else if let Some(r) = input.strip_prefix("rediss://") {
            (true, r)
        } else {
            return Err(SourceError::InvalidUrl("scheme must be redis:// or rediss://".into()));
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
        let db = if path.is_empty() {
            0
        } else {
            path.parse::<u32>()
                .map_err(|_| SourceError::InvalidUrl(format!("database must be a number, got {path:?}")))?
        };
        Ok(RedisUrl { tls, host, port, db, username, password })
    }

    /// `host:port` (IPv6 hosts in brackets), used in every message.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Same credentials and TLS, another node (used for cluster masters).
    pub fn with_host_port(&self, host: &str, port: u16) -> Self {
        RedisUrl { host: host.to_string(), port, ..self.clone() }
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
        assert_eq!(u.db, 3);
        assert_eq!(u.username.as_deref(), Some("backup"));
        assert_eq!(u.password.as_ref().unwrap().expose(), "s@cret");
        let shown = format!("{u} {u:?}");
        assert!(!shown.contains("s@cret") && !shown.contains("s%40cret"), "{shown}");
    }

    #[test]
    fn defaults_and_ipv6() {
        let u = RedisUrl::parse("redis://127.0.0.1").unwrap();
        assert_eq!((u.port, u.db, u.tls), (6379, 0, false));
        assert!(u.username.is_none() && u.password.is_none());
        let u = RedisUrl::parse("redis://:pw@[::1]:7000/").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.addr(), "[::1]:7000");
        assert!(u.username.is_none());
        assert_eq!(u.password.as_ref().unwrap().expose(), "pw");
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
