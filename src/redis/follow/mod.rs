//! Point-in-time recovery: follow a server as a replica, store its write stream as log
//! segments beside base snapshots, and rebuild the dataset as it was at any instant.
//!
//! A log segment is an ordinary snapshot (so prune, check and copy keep its data) with
//! source kind [`segment::LOG_KIND`], one file [`segment::LOG_FILE`] holding the raw
//! replication stream (RESP commands, exactly as the master sent them) and a
//! [`segment::SegmentInfo`] as its source details.

pub mod aof_at;
pub mod compact;
pub mod keys_at;
pub mod replica;
pub mod replay;
pub mod resp;
pub mod restore_at;
pub mod segment;
pub mod timeline;

use crate::redis::source::SourceError;

/// Why following or a point-in-time restore failed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The server refused or broke off.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Reading or writing the repository failed.
    #[error(transparent)]
    Repo(#[from] crate::Error),
    /// The replication stream is not what the protocol allows.
    #[error("replication stream from {addr} at offset {offset}: {msg}")]
    Stream {
        /// host:port of the master.
        addr: String,
        /// Replication offset where the bad bytes start.
        offset: u64,
        /// What was wrong.
        msg: String,
    },
    /// The log does not cover the time asked for.
    #[error("{0}")]
    NotCovered(String),
    /// Loading the base or sending the log to a live server failed.
    #[error(transparent)]
    Load(#[from] crate::redis::load::LoadError),
    /// The target server refused a logged command.
    #[error("{addr} refused a logged command ({command}): {reply}")]
    Replay {
        /// host:port of the target.
        addr: String,
        /// The command's name.
        command: String,
        /// The server's error.
        reply: String,
    },
    /// A local file or the helper redis-server failed.
    #[error("{what}: {source}")]
    Local {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl FollowError {
    /// A local I/O failure, named.
    pub fn local(what: impl Into<String>, source: std::io::Error) -> Self {
        FollowError::Local { what: what.into(), source }
    }
}

/// Result alias for following and point-in-time restores.
pub type Result<T, E = FollowError> = std::result::Result<T, E>;
