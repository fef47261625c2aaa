//! The on-disk format above the sealing: pack files and their frames, index files,
//! chunk lists, snapshots, and zstd compression with its dictionary.
//!
//! Reads and writes through `store`; uses `crypto`. Knows nothing of pipelines or Redis.
//! `docs/format.md` is the specification these files implement.

pub mod blobset;
pub mod chunklist;
pub mod compress;
pub mod index;
pub mod keyindex;
pub mod keylayers;
pub mod pack;
pub mod select;
pub mod snapshot;
mod varint;
