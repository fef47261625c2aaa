//! Storage: where repository files live and how they are opened, sealed and locked.
//!
//! The backend trait and its backends (a local directory today), the open repository
//! with its sealed-object I/O, the config, key files and password keys, and locks.
//! Uses `crypto` and the crate-wide `error`/`host`; nothing above it.

pub mod backend;
pub mod config;
pub mod failpoint;
pub mod keyfile;
pub mod keys;
pub mod local;
pub mod lock;
pub mod names;
pub mod nofollow;
pub mod prefetch;
pub mod repository;
pub mod staged;

pub use backend::{display_name, Backend, FileInfo, FileKind, Foreign, StagedFile, TempFile};
pub use config::{ChunkerParams, Config};
pub use keyfile::KeyFile;
pub use local::LocalBackend;
pub use repository::Repository;
