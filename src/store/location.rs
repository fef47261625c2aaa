//! Repository URLs: which backend `-r` / `RDBVAULT_REPOSITORY` names.
//!
//! A plain path (or `local:PATH`) is a directory; `s3:` and `sftp:` name network
//! repositories. Schemes other tools serve and we do not are refused by name, so
//! `rest:...` never becomes a local directory called `rest:...`.

use std::path::PathBuf;
use std::sync::Arc;

use super::backend::Backend;
use super::local::LocalBackend;
use crate::error::{Error, Result};

/// Where a repository lives, parsed from the user's string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local (or mounted) directory.
    Local(PathBuf),
    /// A bucket (and key prefix) on an S3-compatible object store.
    S3 {
        /// `http://host:port` or `https://host`.
        endpoint: String,
        bucket: String,
        /// Key prefix inside the bucket, without leading or trailing slashes.
        prefix: String,
    },
    /// A directory on an SSH server.
    Sftp {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        /// Absolute (or home-relative) directory on the server.
        path: String,
    },
}

/// Restic schemes we recognise but do not serve.
const UNSUPPORTED: [&str; 6] = ["rest", "b2", "azure", "gs", "rclone", "swift"];

impl Location {
    /// Parses a repository string; a string without a known scheme is a path.
    pub fn parse(s: &str) -> Result<Location> {
        if s.is_empty() {
            return Err(Error::Invalid("empty repository location".into()));
        }
        if let Some(rest) = s.strip_prefix("local:") {
            return Ok(Location::Local(PathBuf::from(rest)));
        }
        if let Some(rest) = s.strip_prefix("s3:") {
            return parse_s3(s, rest);
        }
        if let Some(rest) = s.strip_prefix("sftp://") {
            return parse_sftp_url(s, rest);
        }
        if let Some(rest) = s.strip_prefix("sftp:") {
            return parse_sftp_scp(s, rest);
        }
        if let Some((scheme, _)) = s.split_once(':') {
            if UNSUPPORTED.contains(&scheme) {
                return Err(Error::Invalid(format!(
                    "repository {}: the {scheme}: backend is not supported (use a local path, s3:... or sftp:...)",
                    redact(s)
                )));
            }
        }
        Ok(Location::Local(PathBuf::from(s)))
    }

    /// The location for messages, without any password.
    pub fn display(&self) -> String {
        match self {
            Location::Local(p) => p.display().to_string(),
            Location::S3 { endpoint, bucket, prefix } => {
                let sep = if prefix.is_empty() { "" } else { "/" };
                format!("s3:{endpoint}/{bucket}{sep}{prefix}")
            }
            Location::Sftp { user, host, port, path } => {
                let user = user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
                match port {
                    Some(p) => format!("sftp://{user}{host}:{p}/{}", path.trim_start_matches('/')),
                    None => format!("sftp:{user}{host}:{path}"),
                }
            }
        }
    }
}

impl Location {
    /// The backend serving this location (network backends connect lazily).
    pub fn open(&self) -> Result<Arc<dyn Backend>> {
        let url = self.display();
        match self {
            Location::Local(p) => Ok(Arc::new(LocalBackend::new(p))),
            #[cfg(feature = "s3")]
            Location::S3 { endpoint, bucket, prefix } => Ok(Arc::new(super::s3::open(endpoint, bucket, prefix, url)?)),
            #[cfg(feature = "sftp")]
            Location::Sftp { user, host, port, path } => {
                Ok(Arc::new(super::sftp::open(user.as_deref(), host, *port, path, url)?))
            }
            #[allow(unreachable_patterns)]
            _ => Err(Error::Invalid(format!("repository {url}: this build of rdbvault has no support for it (built without the s3/sftp feature)"))),
        }
    }
}

impl Location {
    /// Creates a missing S3 bucket (for `init`); true when it was created. Other
    /// locations have nothing to create before the repository itself.
    pub fn create_bucket(&self) -> Result<bool> {
        match self {
            #[cfg(feature = "s3")]
            Location::S3 { endpoint, bucket, .. } => {
                Ok(super::s3::create_bucket(endpoint, bucket, &self.display())? == super::s3::Bucket::Created)
            }
            _ => Ok(false),
        }
    }
}

fn bad(s: &str, why: &str) -> Error {
    Error::Invalid(format!("repository {}: {why}", redact(s)))
}

fn parse_s3(s: &str, rest: &str) -> Result<Location> {
    let (scheme, rest) = if let Some(r) = rest.strip_prefix("http://") {
        ("http", r)
    } else if let Some(r) = rest.strip_prefix("https://") {
        ("https", r)
    } else {
        ("https", rest)
    };
    let mut parts = rest.splitn(3, '/');
    let host = parts.next().unwrap_or_default();
    let bucket = parts.next().unwrap_or_default();
    let prefix = parts.next().unwrap_or_default().trim_matches('/').to_string();
    if host.contains('@') {
        return Err(bad(s, "credentials do not belong in the URL: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"));
    }
    if host.is_empty() || bucket.is_empty() {
        return Err(bad(s, "expected s3:[http[s]://]HOST/BUCKET[/PREFIX]"));
    }
    Ok(Location::S3 { endpoint: format!("{scheme}://{host}"), bucket: bucket.to_string(), prefix })
}

/// `sftp://[user@]host[:port]/path`.
fn parse_sftp_url(s: &str, rest: &str) -> Result<Location> {
    let (authority, path) = rest.split_once('/').ok_or_else(|| bad(s, "expected sftp://[USER@]HOST[:PORT]/PATH"))?;
    let (user, hostport) = split_user(s, authority)?;
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
            (h, Some(p.parse::<u16>().map_err(|_| bad(s, &format!("{p:?} is not a port number")))?))
        }
        _ => (hostport, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || path.is_empty() {
        return Err(bad(s, "expected sftp://[USER@]HOST[:PORT]/PATH"));
    }
    Ok(Location::Sftp { user, host: host.to_string(), port, path: format!("/{path}") })
}

/// `sftp:[user@]host:path` (scp-like).
fn parse_sftp_scp(s: &str, rest: &str) -> Result<Location> {
    let (authority, path) = rest.split_once(':').ok_or_else(|| bad(s, "expected sftp:[USER@]HOST:PATH"))?;
    let (user, host) = split_user(s, authority)?;
    if host.is_empty() || path.is_empty() {
        return Err(bad(s, "expected sftp:[USER@]HOST:PATH"));
    }
    Ok(Location::Sftp { user, host: host.to_string(), port: None, path: path.to_string() })
}

fn split_user<'a>(s: &str, authority: &'a str) -> Result<(Option<String>, &'a str)> {
    match authority.rsplit_once('@') {
        Some((user, _)) if user.contains(':') => {
            Err(bad(s, "passwords do not belong in the URL: use an ssh key or agent (ssh's own config)"))
        }
        Some((user, host)) => Ok((Some(user.to_string()), host)),
        None => Ok((None, authority)),
    }
}

/// The string with any `user:password@` reduced to `user:***@`, for messages.
pub fn redact(s: &str) -> String {
    let Some(at) = s.find('@') else { return s.to_string() };
    let start = s[..at].rfind("//").map(|i| i + 2).or_else(|| s[..at].find(':').map(|i| i + 1)).unwrap_or(0);
    match s[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &s[..start + colon], &s[at..]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(endpoint: &str, bucket: &str, prefix: &str) -> Location {
        Location::S3 { endpoint: endpoint.into(), bucket: bucket.into(), prefix: prefix.into() }
    }

    #[test]
    fn paths_stay_local() {
        assert_eq!(Location::parse("/srv/repo").unwrap(), Location::Local("/srv/repo".into()));
        assert_eq!(Location::parse("repo").unwrap(), Location::Local("repo".into()));
        assert_eq!(Location::parse("local:/x:y").unwrap(), Location::Local("/x:y".into()));
        assert_eq!(Location::parse("C:/odd").unwrap(), Location::Local("C:/odd".into()));
    }

    #[test]
    fn s3_urls() {
        assert_eq!(Location::parse("s3:http://127.0.0.1:9000/b/p/q/").unwrap(), s3("http://127.0.0.1:9000", "b", "p/q"));
        assert_eq!(Location::parse("s3:https://h/b").unwrap(), s3("https://h", "b", ""));
        assert_eq!(Location::parse("s3:s3.amazonaws.com/b/p").unwrap(), s3("https://s3.amazonaws.com", "b", "p"));
        assert!(Location::parse("s3:http://host").is_err());
        let e = Location::parse("s3:http://AK:sEcReT42@h/b").unwrap_err().to_string();
        assert!(!e.contains("sEcReT42"), "{e}");
    }

    #[test]
    fn sftp_urls() {
        let l = Location::parse("sftp:backup@host:/srv/r").unwrap();
        assert_eq!(l, Location::Sftp { user: Some("backup".into()), host: "host".into(), port: None, path: "/srv/r".into() });
        assert_eq!(l.display(), "sftp:backup@host:/srv/r");
        let l = Location::parse("sftp://u@h:2222/srv/r").unwrap();
        assert_eq!(l, Location::Sftp { user: Some("u".into()), host: "h".into(), port: Some(2222), path: "/srv/r".into() });
        assert_eq!(l.display(), "sftp://u@h:2222/srv/r");
        assert!(Location::parse("sftp://h:port/x").is_err());
        let e = Location::parse("sftp://u:hunter2@h/x").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn foreign_schemes_are_refused() {
        for s in ["rest:http://h/", "b2:bucket:path", "azure:c:/", "gs:b:/", "rclone:r:p", "swift:c:/p"] {
            let e = Location::parse(s).unwrap_err().to_string();
            assert!(e.contains("not supported"), "{s}: {e}");
        }
    }
}
