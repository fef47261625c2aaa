//! Storage: where repository files live and how they are opened, sealed and locked.
//!
//! The backend trait and its backends (a local directory, S3, SFTP), the open repository
//! with its sealed-object I/O, the config, key files and password keys, and locks.
//! Uses `crypto` and the crate-wide `error`/`host`; nothing above it.

pub mod backend;
pub mod cache;
pub mod config;
pub mod direct;
pub mod failpoint;
#[cfg(feature = "s3")]
mod http_client;
pub mod keycache;
pub mod keyfile;
pub mod keys;
pub mod local;
pub mod location;
pub mod lock;
#[cfg(any(feature = "s3", feature = "sftp"))]
pub mod object;
pub mod names;
pub mod nofollow;
pub mod prefetch;
pub mod repository;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "sftp")]
pub mod sftp;
pub mod staged;

pub use backend::{display_name, Backend, FileInfo, FileKind, Foreign, ReadPlan, StagedFile, TempFile};
pub use config::{ChunkerParams, Config, RecordCuts};
pub use keyfile::KeyFile;
pub use local::LocalBackend;
pub use location::Location;
pub use repository::Repository;
