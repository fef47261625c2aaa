//! The pipelines that move bytes: chunking, hashing and packing a stream into a
//! snapshot (backup), reading it back verified (restore), and the Redis facts
//! gathered on the way (facts).
//!
//! Uses `format`, `store`, `crypto` and the pure `rdb` parser; never a live server.

pub mod backup;
pub mod chunker;
pub mod facts;
mod framecache;
pub mod keybase;
pub mod keywalk;
pub mod layering;
pub mod listdelta;
pub mod lists;
pub mod packorder;
pub mod packer;
pub mod range;
pub mod restore;
pub mod scanned;
pub mod session;
pub mod spill;
pub mod target;
