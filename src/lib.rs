//! rdbvault: encrypted, deduplicated, incremental backups of Redis databases.
//!
//! The library is layered; each folder may use only the folders below it:
//!
//! ```text
//! maintain/   redis/        forget, prune, check, repair, stats | live servers, restore --to, inspect, diff
//!      \       /
//!      engine/              the pipelines: chunker, packer, backup, restore, facts
//!         |
//!      format/              what sits on disk above the sealing: packs, index, chunk lists, snapshots, zstd
//!         |
//!      store/               backends, the open repository, config, key files, locks
//!         |
//!      crypto/              cipher, keyed ids, the eight-lane id hasher (no I/O)
//! ```
//!
//! `rdb/` (the streaming RDB parser) is pure and usable from `engine` and `redis`;
//! `error` and `host` are crate-wide. Data flow of a backup: source stream -> chunker
//! -> keyed BLAKE3 id -> dedup against the index -> zstd -> XChaCha20-Poly1305 -> pack
//! files -> index files -> a snapshot. See `docs/format.md`.

pub mod crypto;
pub mod engine;
pub mod error;
pub mod format;
pub mod host;
pub mod maintain;
pub mod ops;
pub mod rdb;
pub mod redis;
pub mod store;
#[cfg(feature = "web")]
pub mod web;
#[cfg(test)]
mod testutil;

pub use error::{Error, Result};
