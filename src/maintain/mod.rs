//! Repository maintenance: retention (forget), garbage collection (prune), copies
//! between repositories,
//! verification (check), repair of damaged metadata, and statistics.
//!
//! Uses `engine`, `format`, `store` and `crypto`; never a live server.
//! `docs/maintenance.md` explains the crash-safety of each operation.

pub mod check;
pub mod copy;
pub mod forget;
pub mod keycheck;
pub mod prune;
pub mod repair;
pub mod stats;
pub mod tag;
