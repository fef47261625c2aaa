//! Errors of the operations layer: each names the job, file or setting it concerns.

use std::path::PathBuf;

/// What can go wrong running jobs, reading their history or resolving a password.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Repo(#[from] crate::Error),
    #[error(transparent)]
    Load(#[from] crate::redis::load::LoadError),
    #[error(transparent)]
    Live(#[from] crate::redis::live::LiveError),
    #[error(transparent)]
    Source(#[from] crate::redis::source::SourceError),
    #[error("{context} {}: {source}", .path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("password of repository {repo}: {detail}")]
    Password { repo: String, detail: String },
    #[error("job history {}: {detail}", .path.display())]
    History { path: PathBuf, detail: String },
    #[error("cannot start the job thread: {0}")]
    Spawn(std::io::Error),
    #[error("{0}")]
    Invalid(String),
}
