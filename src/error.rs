//! The library's error type: every failure names the file or blob it concerns.

use std::path::PathBuf;

/// Everything that can go wrong inside the library, with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("wrong password: no key in {0} opens with it")]
    WrongPassword(String),
    #[error("{0} is not an rdbvault repository (no config file)")]
    NotARepository(String),
    #[error("{0} already holds a repository")]
    AlreadyExists(PathBuf),
    #[error("{what} is damaged or was tampered with: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("blob {id} is not in the index (an index file was lost or damaged, or a pack deleted); `rdbvault check` names the damage, `rdbvault repair index` rebuilds the index from the pack headers")]
    MissingBlob { id: String },
    #[error("no snapshot matches {0:?}")]
    NoSnapshot(String),
    #[error("snapshot prefix {0:?} is ambiguous: {1}")]
    AmbiguousSnapshot(String, String),
    #[error("{0}")]
    Invalid(String),
    #[error("repository is locked: {0}")]
    Locked(String),
    #[error("{what}: {source}")]
    Rdb {
        what: String,
        #[source]
        source: crate::rdb::RdbError,
    },
    /// An input that had to be an RDB (no `--raw`) is not a complete one: nothing is saved.
    #[error("{}", not_rdb(.input, .bytes, .error))]
    NotRdb {
        input: String,
        /// Bytes read from it before the check failed.
        bytes: u64,
        /// Part of the message, not a cause to print again (an empty input's is noise).
        error: crate::rdb::RdbError,
    },
    /// Stopped on request (a cancelled job): what was written so far is left as a killed run leaves it.
    #[error("cancelled")]
    Cancelled,
    #[error("source {name}: {source}")]
    Source {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// The message of [`Error::NotRdb`]: what is wrong, that nothing was saved, and the way out.
fn not_rdb(input: &str, bytes: &u64, source: &crate::rdb::RdbError) -> String {
    let what = if *bytes == 0 { format!("{input} is empty (0 bytes), not an RDB") } else { format!("{input} is not a complete RDB: {source}") };
    format!("{what}; no snapshot was saved (pass --raw to store arbitrary bytes as they are, without this check)")
}

/// Library result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with what we were doing when it happened.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    /// An RDB stream that does not parse, named.
    pub fn rdb(what: impl Into<String>, source: crate::rdb::RdbError) -> Self {
        Error::Rdb { what: what.into(), source }
    }

    /// `Err(Cancelled)` once `cancel` is set: checked between blobs and packs by long loops.
    pub fn check_cancel(cancel: Option<&std::sync::atomic::AtomicBool>) -> Result<()> {
        match cancel {
            Some(c) if c.load(std::sync::atomic::Ordering::Relaxed) => Err(Error::Cancelled),
            _ => Ok(()),
        }
    }

    /// A damaged object, named.
    pub fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Corrupt { what: what.into(), detail: detail.into() }
    }
}
