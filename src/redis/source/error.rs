//! Errors of the live sources; messages never contain a password.

use std::io;
use std::time::Duration;

/// Result alias so every source function reports a [`SourceError`].
pub type Result<T, E = SourceError> = std::result::Result<T, E>;

/// Everything that can go wrong while reading a Redis source, named so an operator knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The URL could not be understood (the password is never echoed back).
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// The password file could not be read.
    #[error("cannot read password file {path}: {source}")]
    PasswordFile {
        /// Path of the file.
        path: std::path::PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {source} (is a server listening there? allow more time with --connect-timeout)")]
    Connect {
        /// host:port that was tried.
        addr: String,
        /// Underlying error.
        source: io::Error,
    },
    /// TLS configuration or handshake failure.
    #[error("TLS error with {addr}: {msg}")]
    Tls {
        /// host:port of the server.
        addr: String,
        /// What went wrong.
        msg: String,
    },
    /// A user name came without a password and no source of one had it: never connect as someone else.
    #[error(
        "user {user} given without a password for {addr}: put it in the URL (redis://{user}:PASSWORD@host), in \
         REDISCLI_AUTH or in a file named by --redis-password-file, or run on a terminal to be asked for it \
         (rdbvault never falls back to another user)"
    )]
    UserWithoutPassword {
        /// The ACL user name given.
        user: String,
        /// Where the server is.
        addr: String,
    },
    /// Sentinel could not tell where the master is.
    #[error("sentinel {addr}: {msg}")]
    Sentinel {
        /// host:port of the Sentinel asked.
        addr: String,
        /// What went wrong.
        msg: String,
    },
    /// The server rejected the credentials.
    #[error("authentication failed at {addr}: wrong user name or password ({reply})")]
    WrongPassword {
        /// host:port of the server.
        addr: String,
        /// The server's error reply.
        reply: String,
    },
    /// The server needs a password and none was given (`NOAUTH`).
    #[error(
        "the server {addr} requires a password ({reply}): pass one in the URL (redis://:PASSWORD@host or \
         redis://USER:PASSWORD@host), with --redis-password-file FILE or in REDISCLI_AUTH"
    )]
    AuthRequired {
        /// host:port of the server.
        addr: String,
        /// The server's error reply.
        reply: String,
    },
    /// The ACL user lacks a permission the operation needs.
    #[error("permission denied at {addr} for {command}: {reply} (the ACL user needs this command)")]
    NoPermission {
        /// host:port of the server.
        addr: String,
        /// The command that was refused.
        command: String,
        /// The server's error reply.
        reply: String,
    },
    /// The server is still loading its dataset into memory.
    #[error("server {addr} is loading its dataset, retry later: {reply}")]
    Loading {
        /// host:port of the server.
        addr: String,
        /// The server's error reply.
        reply: String,
    },
    /// The server is a replica whose link to its master is down.
    #[error("server {addr} is a replica whose master link is down: {reply}")]
    MasterDown {
        /// host:port of the server.
        addr: String,
        /// The server's error reply.
        reply: String,
    },
    /// Any other error reply from the server.
    #[error("server {addr} answered {command} with an error: {reply}")]
    Server {
        /// host:port of the server.
        addr: String,
        /// The command that failed.
        command: String,
        /// The server's error reply.
        reply: String,
    },
    /// The server sent something the protocol does not allow.
    #[error("protocol error from {addr}: {msg}")]
    Protocol {
        /// host:port of the server.
        addr: String,
        /// What was unexpected.
        msg: String,
    },
    /// No answer within the configured time.
    #[error("timed out after {after:?} from {addr} while {during}")]
    Timeout {
        /// host:port of the server.
        addr: String,
        /// What we were waiting for.
        during: String,
        /// The configured limit.
        after: Duration,
    },
    /// The TCP connection was made but nothing answered the first exchange.
    #[error(
        "connected to {addr} but the server did not answer {during} within {after:?} (is it a Redis server? TLS to a plain port?); \
         check the address and the scheme (redis:// for a plain port, rediss:// for a TLS port), or allow a slow server more time with --read-timeout"
    )]
    NoAnswer {
        /// host:port of the server.
        addr: String,
        /// What went unanswered (`PING`, `AUTH`, the TLS handshake).
        during: String,
        /// The configured read time-out.
        after: Duration,
    },
    /// The connection ended before the RDB payload was complete.
    #[error("connection to {addr} dropped at byte {at} of {total}")]
    Truncated {
        /// host:port of the server.
        addr: String,
        /// Payload bytes received before the drop.
        at: u64,
        /// Expected total ("unknown" for a diskless transfer whose end mark never came).
        total: String,
    },
    /// Other I/O failure on the connection.
    #[error("I/O error with {addr} while {during}: {source}")]
    Io {
        /// host:port of the server.
        addr: String,
        /// What we were doing.
        during: String,
        /// Underlying error.
        source: io::Error,
    },
    /// An error from the `redis` crate on the command connection.
    #[error("command connection to {addr} failed: {msg}")]
    Command {
        /// host:port of the server.
        addr: String,
        /// The redis crate's message.
        msg: String,
    },
    /// BGSAVE failed or did not finish in time.
    #[error("BGSAVE on {addr} failed: {msg}")]
    Bgsave {
        /// host:port of the server.
        addr: String,
        /// What went wrong.
        msg: String,
    },
    /// `--rdb-path` names a file other than the one the server's BGSAVE just wrote.
    #[error(
        "{path} is not the RDB file {addr} just saved: {why}; --rdb-path must name the server's dir/dbfilename \
         as seen from this machine (CONFIG GET dir, CONFIG GET dbfilename)"
    )]
    WrongRdbFile {
        /// The file given.
        path: std::path::PathBuf,
        /// Where the server is.
        addr: String,
        /// What does not match.
        why: String,
    },
    /// A local file (RDB, AOF) could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// Path of the file.
        path: std::path::PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// The AOF manifest is malformed.
    #[error("bad AOF manifest {path}: {msg}")]
    AofManifest {
        /// Path of the manifest.
        path: std::path::PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The manifest names a file that is not there (and no rewrite replaced the manifest).
    #[error(
        "the AOF manifest {manifest} names {name}, which is missing from {}: the AOF directory is incomplete \
         (put the file back, or have Redis write a complete AOF with BGREWRITEAOF)", dir_of(.manifest)
    )]
    AofMissingFile {
        /// Path of the manifest.
        manifest: std::path::PathBuf,
        /// The missing file's name, as the manifest gives it.
        name: String,
    },
    /// The AOF kept being rewritten while we read it.
    #[error("AOF in {dir} was rewritten during every one of {attempts} read attempts; try again when no BGREWRITEAOF is running")]
    AofUnstable {
        /// The AOF directory.
        dir: std::path::PathBuf,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The callback consuming a stream failed.
    #[error("consumer of {name} failed: {source}")]
    Consumer {
        /// Stream name.
        name: String,
        /// The consumer's error.
        source: io::Error,
    },
    /// Cluster topology could not be used.
    #[error("cluster error at {addr}: {msg}")]
    Cluster {
        /// host:port of the node asked.
        addr: String,
        /// What went wrong.
        msg: String,
    },
}

/// The directory a manifest is in, for messages.
fn dir_of(manifest: &std::path::Path) -> String {
    manifest.parent().map(|d| d.display().to_string()).unwrap_or_else(|| ".".into())
}

impl SourceError {
    /// Turn a server error line (without the leading '-') into the most specific variant.
    pub(crate) fn from_reply(addr: &str, command: &str, reply: &str) -> Self {
        let addr = addr.to_string();
        let reply = reply.trim().to_string();
        let upper = reply.to_ascii_uppercase();
        if upper.starts_with("WRONGPASS") || upper.starts_with("ERR INVALID PASSWORD") || upper.starts_with("INVALIDPASSWORD") {
            SourceError::WrongPassword { addr, reply }
        } else if upper.starts_with("NOPERM") {
            SourceError::NoPermission { addr, command: command.to_string(), reply }
        } else if upper.starts_with("LOADING") {
            SourceError::Loading { addr, reply }
        } else if upper.starts_with("MASTERDOWN") {
            SourceError::MasterDown { addr, reply }
        } else if upper.starts_with("NOAUTH") {
            // Only ever the answer to a connection that did not authenticate: no password was given.
            SourceError::AuthRequired { addr, reply }
        } else {
            SourceError::Server { addr, command: command.to_string(), reply }
        }
    }

    /// Wrap an I/O error, turning socket time-outs into [`SourceError::Timeout`].
    pub(crate) fn io(addr: &str, during: &str, timeout: Duration, source: io::Error) -> Self {
        if matches!(source.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
            SourceError::Timeout { addr: addr.to_string(), during: during.to_string(), after: timeout }
        } else {
            SourceError::Io { addr: addr.to_string(), during: during.to_string(), source }
        }
    }

    /// Convert into an `io::Error` for `Read` impls, keeping a time-out recognisable by kind.
    pub(crate) fn into_io(self) -> io::Error {
        let kind = match &self {
            SourceError::Timeout { .. } => io::ErrorKind::TimedOut,
            SourceError::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            SourceError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, self)
    }
}
