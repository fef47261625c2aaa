//! Sources a backup reads: a live Redis (replication or BGSAVE), an AOF directory, a cluster.
//!
//! Every opener returns a [`LiveSource`]: named byte streams for the backup core plus a
//! serialisable [`SourceInfo`] to store in the snapshot.

pub mod aof;
pub mod bgsave;
pub mod cluster;
pub mod command;
pub mod error;
pub mod info;
pub mod replication;
pub mod sentinel;
pub mod transport;
pub mod url;

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

pub use aof::{AofFile, AofFileKind, AofManifest};
pub use cluster::ClusterMaster;
pub use error::{Result, SourceError};
pub use info::ServerInfo;
pub use replication::{LazyReplicationStream, Psync, ReplicationStream};
pub use transport::ConnectOptions;
pub use url::{Password, RedisUrl};

/// One stream of a source: the file name it restores to, and its bytes (read lazily by the core).
pub type NamedStream = (String, Box<dyn Read + Send>);

/// Stream name of a standalone server's RDB (what Redis itself calls the file).
pub const RDB_STREAM_NAME: &str = "dump.rdb";

/// What the core consumes: the streams to store and the description to keep beside them.
pub struct LiveSource {
    /// Facts about the source, stored in the snapshot.
    pub info: SourceInfo,
    /// Named streams, in the order they should be read.
    pub streams: Vec<NamedStream>,
    /// For a BGSAVE file: the key count the server reported, to check the file's against.
    pub key_check: Option<bgsave::KeyCheck>,
}

impl std::fmt::Debug for LiveSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.streams.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("LiveSource").field("info", &self.info).field("streams", &names).finish()
    }
}

/// How the snapshot was obtained, so a restore knows what the files are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// RDB streamed over the replication protocol.
    Redis,
    /// RDB file written by BGSAVE and read from disk.
    Bgsave,
    /// Redis 7 multi-part AOF directory.
    Aof,
}

/// Description of a snapshot's source, serialised into the snapshot metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// How the data was obtained.
    pub kind: SourceKind,
    /// `host:port` of the server (no credentials); `None` for an AOF directory read from disk.
    #[serde(default)]
    pub addr: Option<String>,
    /// Local path read (BGSAVE RDB file or AOF directory).
    #[serde(default)]
    pub path: Option<String>,
    /// Whether the connection used TLS.
    #[serde(default)]
    pub tls: bool,
    /// `redis_version` from INFO server.
    #[serde(default)]
    pub redis_version: Option<String>,
    /// `role` from INFO replication (master / slave).
    #[serde(default)]
    pub role: Option<String>,
    /// `used_memory` in bytes at backup start.
    #[serde(default)]
    pub used_memory: Option<u64>,
    /// Keys per database from INFO keyspace at backup start (the RDB may differ slightly).
    #[serde(default)]
    pub keys_per_db: BTreeMap<u32, u64>,
    /// RDB format version from the payload header, when known.
    #[serde(default)]
    pub rdb_version: Option<u32>,
    /// Replication id of the dataset history (from `+FULLRESYNC`).
    #[serde(default)]
    pub replid: Option<String>,
    /// Replication offset the snapshot corresponds to.
    #[serde(default)]
    pub repl_offset: Option<u64>,
    /// Unix ms of the point in time the data reflects: full-sync start (≈ fork) or BGSAVE completion.
    #[serde(default)]
    pub snapshot_time_ms: Option<u64>,
    /// Cluster shard this node served, for cluster backups.
    #[serde(default)]
    pub cluster: Option<ClusterShard>,
    /// AOF manifest, for AOF backups.
    #[serde(default)]
    pub aof: Option<AofManifest>,
}

/// A cluster master's share of the key space.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterShard {
    /// Node id of the master the data was read from.
    pub node_id: String,
    /// Inclusive slot ranges served.
    pub slots: Vec<(u16, u16)>,
    /// Stable name of the shard derived from its slots (`slots-0-5460`), unchanged by failover.
    pub group_id: String,
}

impl SourceInfo {
    /// A description filled from INFO; stream-specific fields are left empty.
    pub fn from_server(kind: SourceKind, url: &RedisUrl, info: &ServerInfo) -> Self {
        SourceInfo {
            kind,
            addr: Some(url.addr()),
            path: None,
            tls: url.tls,
            redis_version: info.redis_version().map(str::to_string),
            role: info.role().map(str::to_string),
            used_memory: info.used_memory(),
            keys_per_db: info.keys_per_db.clone(),
            rdb_version: None,
            replid: None,
            repl_offset: None,
            snapshot_time_ms: None,
            cluster: None,
            aof: None,
        }
    }

    /// Fills the facts of a full sync: replid, offset, RDB version, sync time.
    pub fn with_stream(mut self, s: &ReplicationStream) -> Self {
        self.rdb_version = s.rdb_version();
        self.replid = s.replid().map(str::to_string);
        self.repl_offset = s.repl_offset();
        self.snapshot_time_ms = Some(s.sync_time_ms());
        self
    }
}

/// Default live mode: INFO, then stream the RDB over replication as `dump.rdb`.
pub fn open_replication(url: &RedisUrl, opts: &ConnectOptions) -> Result<LiveSource> {
    let server = info::fetch(url, opts)?;
    let stream = ReplicationStream::connect(url, opts)?;
    let info = SourceInfo::from_server(SourceKind::Redis, url, &server).with_stream(&stream);
    Ok(LiveSource { info, streams: vec![(RDB_STREAM_NAME.to_string(), Box::new(stream))], key_check: None })
}

/// `--mode bgsave`: run BGSAVE, wait for it, then stream the local file at `rdb_path` as `dump.rdb`.
pub fn open_bgsave(url: &RedisUrl, opts: &ConnectOptions, rdb_path: &std::path::Path, wait: &bgsave::BgsaveOptions) -> Result<LiveSource> {
    bgsave::open(url, opts, rdb_path, wait)
}

/// `--cluster`: one source per master, each streaming lazily (connects on first read) as `<group_id>.rdb`.
pub fn open_cluster(url: &RedisUrl, opts: &ConnectOptions) -> Result<Vec<LiveSource>> {
    let masters = cluster::discover_masters(url, opts)?;
    cluster::check_coverage(&url.addr(), &masters)?;
    let mut out = Vec::with_capacity(masters.len());
    for m in masters {
        let node_url = m.url(url);
        let server = info::fetch(&node_url, opts)?;
        let shard = m.shard();
        let name = format!("{}.rdb", shard.group_id);
        let mut info = SourceInfo::from_server(SourceKind::Redis, &node_url, &server);
        info.cluster = Some(shard);
        let stream = LazyReplicationStream::new(node_url, opts.clone());
        out.push(LiveSource { info, streams: vec![(name, Box::new(stream))], key_check: None });
    }
    Ok(out)
}

/// An AOF directory: read a consistent set of files (retrying on rewrite) through `consume`.
pub fn collect_aof<F>(dir: &std::path::Path, max_attempts: u32, consume: F) -> Result<SourceInfo>
where
    F: FnMut(&aof::AofStream<'_>, &mut dyn Read) -> std::io::Result<()>,
{
    let manifest = aof::collect(dir, None, max_attempts, consume)?;
    Ok(SourceInfo {
        kind: SourceKind::Aof,
        addr: None,
        path: Some(dir.display().to_string()),
        tls: false,
        redis_version: None,
        role: None,
        used_memory: None,
        keys_per_db: BTreeMap::new(),
        rdb_version: None,
        replid: None,
        repl_offset: None,
        snapshot_time_ms: Some(replication::now_ms()),
        cluster: None,
        aof: Some(manifest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_info_round_trips_as_json() {
        let info = SourceInfo {
            kind: SourceKind::Redis,
            addr: Some("127.0.0.1:6379".into()),
            path: None,
            tls: true,
            redis_version: Some("7.0.15".into()),
            role: Some("master".into()),
            used_memory: Some(1024),
            keys_per_db: BTreeMap::from([(0, 5)]),
            rdb_version: Some(10),
            replid: Some("abc".into()),
            repl_offset: Some(1),
            snapshot_time_ms: Some(2),
            cluster: Some(ClusterShard { node_id: "n".into(), slots: vec![(0, 5460)], group_id: "slots-0-5460".into() }),
            aof: None,
        };
        let json = serde_json::to_string(&info).unwrap();
        assert!(json.contains("\"kind\":\"redis\""), "{json}");
        let back: SourceInfo = serde_json::from_str(&json).unwrap();
        assert_eq!(back, info);
        let minimal: SourceInfo = serde_json::from_str(r#"{"kind":"aof"}"#).unwrap();
        assert_eq!(minimal.kind, SourceKind::Aof);
    }
}
