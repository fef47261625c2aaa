//! rdbvault: encrypted, deduplicated, incremental backups of Redis databases.
//!
//! Data flow of a backup: source stream -> [`chunker`] -> keyed BLAKE3 id
//! ([`crypto`]) -> dedup against the [`index`] -> zstd -> XChaCha20-Poly1305
//! -> [`pack`] files -> index files -> a [`snapshot`]. See `docs/format.md`.

pub mod backup;
pub mod check;
pub mod chunker;
pub mod chunklist;
pub mod compress;
pub mod crypto;
pub mod diff;
pub mod error;
pub mod facts;
pub mod failpoint;
pub mod forget;
pub mod glob;
pub mod idhash;
pub mod index;
pub mod inspect;
pub mod keys;
pub mod keyscan;
pub mod live;
pub mod load;
pub mod lock;
pub mod pack;
pub mod packer;
pub mod prune;
pub mod rdb;
pub mod repair;
pub mod repo;
pub mod restore;
pub mod snapshot;
pub mod source;
pub mod stats;
#[cfg(test)]
mod testutil;

pub use error::{Error, Result};
