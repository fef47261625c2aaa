//! Server facts from `INFO`, read before a backup and stored in its description.

use std::collections::BTreeMap;

use super::command;
use super::error::Result;
use super::transport::ConnectOptions;
use super::url::RedisUrl;

/// INFO sections we read; together they describe what a snapshot was taken from.
pub const SECTIONS: [&str; 6] = ["server", "replication", "memory", "keyspace", "persistence", "cluster"];

/// Parsed INFO output, kept raw too so new fields need no code change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerInfo {
    /// Every `field:value` line of the sections read.
    pub fields: BTreeMap<String, String>,
    /// `INFO keyspace`: keys per database number.
    pub keys_per_db: BTreeMap<u32, u64>,
}

impl ServerInfo {
    /// Parse the text of one or more INFO sections.
    pub fn parse(text: &str) -> Self {
        let mut info = ServerInfo::default();
        info.merge(text);
        info
    }

    /// Add the text of another INFO section.
    pub fn merge(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once(':') else { continue };
            if let Some(db) = k.strip_prefix("db").and_then(|d| d.parse::<u32>().ok()) {
                let keys = v
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("keys="))
                    .and_then(|n| n.parse::<u64>().ok());
                if let Some(keys) = keys {
                    self.keys_per_db.insert(db, keys);
                }
            }
            self.fields.insert(k.to_string(), v.to_string());
        }
    }

    /// A field as text.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// A numeric field.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(|v| v.parse().ok())
    }

    /// `redis_version`.
    pub fn redis_version(&self) -> Option<&str> {
        self.get("redis_version")
    }
    /// `role` (master / slave).
    pub fn role(&self) -> Option<&str> {
        self.get("role")
    }
    /// `used_memory` in bytes.
    pub fn used_memory(&self) -> Option<u64> {
        self.get_u64("used_memory")
    }
    /// Whether a BGSAVE child is running.
    pub fn bgsave_in_progress(&self) -> bool {
        self.get("rdb_bgsave_in_progress") == Some("1")
    }
    /// `rdb_last_save_time` (unix seconds of the last successful save).
    pub fn last_save_time(&self) -> Option<u64> {
        self.get_u64("rdb_last_save_time")
    }
    /// `rdb_last_bgsave_status` (ok / err).
    pub fn last_bgsave_status(&self) -> Option<&str> {
        self.get("rdb_last_bgsave_status")
    }
    /// Whether the server runs in cluster mode.
    pub fn cluster_enabled(&self) -> bool {
        self.get("cluster_enabled") == Some("1")
    }
}

/// Read the sections in [`SECTIONS`] over a fresh command connection.
pub fn fetch(url: &RedisUrl, opts: &ConnectOptions) -> Result<ServerInfo> {
    let mut con = command::connect(url, opts)?;
    fetch_with(&mut con, &url.addr())
}

/// Read the sections in [`SECTIONS`] over an existing connection.
pub fn fetch_with(con: &mut redis::Connection, addr: &str) -> Result<ServerInfo> {
    let mut info = ServerInfo::default();
    for s in SECTIONS {
        info.merge(&command::text(con, addr, &["INFO", s])?);
    }
    Ok(info)
}

/// Read just `INFO persistence` (polled while waiting for BGSAVE).
pub fn persistence(con: &mut redis::Connection, addr: &str) -> Result<ServerInfo> {
    Ok(ServerInfo::parse(&command::text(con, addr, &["INFO", "persistence"])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections() {
        let text = "# Server\r\nredis_version:7.0.15\r\nrole:master\r\n\r\n# Keyspace\r\ndb0:keys=12,expires=1,avg_ttl=0\r\ndb3:keys=4,expires=0,avg_ttl=0\r\n# Persistence\r\nrdb_bgsave_in_progress:0\r\nrdb_last_save_time:1700000000\r\nrdb_last_bgsave_status:ok\r\n";
        let i = ServerInfo::parse(text);
        assert_eq!(i.redis_version(), Some("7.0.15"));
        assert_eq!(i.role(), Some("master"));
        assert_eq!(i.keys_per_db, BTreeMap::from([(0, 12), (3, 4)]));
        assert!(!i.bgsave_in_progress());
        assert_eq!(i.last_save_time(), Some(1_700_000_000));
        assert_eq!(i.last_bgsave_status(), Some("ok"));
    }
}
