//! Why `restore --to` failed or was refused, and what the message of a load that stopped
//! midway says (how many keys were written, up to which key, how to resume).

use crate::error::Error;
use crate::redis::source::SourceError;

/// Why a load into a live server failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Repo(#[from] Error),
    #[error(transparent)]
    Server(#[from] SourceError),
    #[error(
        "the target {addr} (Redis {target_version}) is older than the snapshot: it does not accept \
         RDB version {rdb_version} payloads; restore into a Redis at least as new as the one that wrote the snapshot"
    )]
    TargetTooOld { addr: String, rdb_version: u16, target_version: String },
    #[error("{count} of the keys to restore already exist on {addr}: {}{}; use --replace to overwrite them",
        keys.join(", "), if *count as usize > keys.len() { ", ..." } else { "" })]
    Conflicts { addr: String, count: u64, keys: Vec<String> },
    #[error("a key of db {db} has no target db: the database in the --to URL takes the keys of one db only (choose it with --db)")]
    Unmapped { db: u64 },
    #[error("a key of db {db} cannot go into a Redis Cluster, which has db 0 only: restore one db with --db N (its keys go to db 0)")]
    ClusterDb { db: u64 },
    #[error("{addr} refused RESTORE of {key} in db {db}: {reply}")]
    Refused { addr: String, db: u64, key: String, reply: String },
    #[error("the function {} {} already {} on {addr}: --functions replace overwrites {}, --functions skip restores the keys without the snapshot's libraries",
        if names.len() == 1 { "library" } else { "libraries" }, names.join(", "), if names.len() == 1 { "exists" } else { "exist" },
        if names.len() == 1 { "it" } else { "them" })]
    FunctionsExist { addr: String, names: Vec<String> },
    #[error("{addr} refused FUNCTION RESTORE of the libraries {}: {reply}; --functions skip restores the keys without them", names.join(", "))]
    FunctionsRefused { addr: String, names: Vec<String>, reply: String },
    #[error("the snapshot holds module keys that {addr} cannot load without their modules: {}; load the modules into the target \
             (loadmodule in its config) or restore the other keys with --keys PATTERN", missing.join(", "))]
    MissingModules { addr: String, missing: Vec<String> },
    #[error("{addr} redirected a key to {node}, which cannot be reached that way")]
    Redirect { addr: String, node: String },
    /// Keys were (or may have been) written before the failure: say which and how to resume.
    #[error("{}", stopped(.addr, .written, .unknown, .last, .source))]
    Stopped {
        addr: String,
        /// Keys the target confirmed.
        written: u64,
        /// Keys sent whose fate is unknown (the connection broke before their replies).
        unknown: u64,
        /// A key written, as `db:key`, such that every key before it in RDB order was written too.
        last: Option<String>,
        #[source]
        source: Box<LoadError>,
    },
}

/// The message of [`LoadError::Stopped`].
fn stopped(addr: &str, written: &u64, unknown: &u64, last: &Option<String>, source: &LoadError) -> String {
    let mut s = format!("the restore into {addr} stopped after writing {written} keys");
    if *unknown > 0 {
        s.push_str(&format!(" (and up to {unknown} more of the last batches, sent before the connection broke)"));
    }
    if let Some(last) = last {
        s.push_str(&format!("; the last key written was {last} (it and every key before it in RDB order are on the target: restore --dry-run lists them)"));
    }
    let cause = source.to_string();
    s.push_str(&format!(": {}. To resume, remove the cause and run the same restore with --skip-existing (keeps the keys already written) or --replace (overwrites them)", cause.trim_end_matches('.')));
    s
}
