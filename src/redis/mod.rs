//! Everything that talks to or about Redis: the sources a live backup reads
//! (replication, BGSAVE, cluster, AOF directories), live backups, loading keys
//! into a server (`restore --to`), inspect, diff, key scans and glob patterns.
//!
//! Uses `engine`, `format`, `store` and the `rdb` parser.

pub mod cluster_target;
pub mod dbmap;
pub mod diff;
pub mod export;
pub mod follow;
pub mod glob;
pub mod inspect;
mod jsonl;
pub mod keyindex;
pub mod keyscan;
pub(crate) mod lanes;
pub mod live;
pub mod load;
pub mod load_error;
pub mod merge;
pub mod modules;
pub mod rewrite;
pub mod source;
