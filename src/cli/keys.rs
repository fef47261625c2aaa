//! The key filter flags shared by `inspect`, `diff` and `restore --to`.

use anyhow::anyhow;

use rdbvault::redis::glob::Glob;
use rdbvault::redis::keyscan::{parse_kind, KeyFilter};

/// `--keys`, `--db` (and, where it applies, `--type`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KeyArgs {
    /// Only keys matching this pattern (Redis KEYS syntax: `*`, `?`, `[a-z]`, `\` escapes).
    #[arg(long, value_name = "PATTERN")]
    pub keys: Option<String>,
    /// Only this database.
    #[arg(long, value_name = "N")]
    pub db: Option<u64>,
    /// Leave out keys matching this pattern (as --keys; redis-rdb-tools' --not-key).
    #[arg(long = "not-keys", value_name = "PATTERN")]
    pub not_keys: Option<String>,
    /// Only keys whose value takes at least N bytes in the RDB (type byte and serialized
    /// value, what RESTORE sends; redis-rdb-tools' --bytes).
    #[arg(long, value_name = "N")]
    pub min_bytes: Option<u64>,
}

impl KeyArgs {
    /// The library filter, with an optional `--type` name.
    pub fn filter(&self, kind: Option<&str>) -> anyhow::Result<KeyFilter> {
        let kind = kind
            .map(|k| parse_kind(k).ok_or_else(|| anyhow!("unknown type {k:?}: use string, list, set, zset, hash, stream or module")))
            .transpose()?;
        let glob = |p: &Option<String>| p.as_deref().map(|p| Glob::new(p.as_bytes()));
        Ok(KeyFilter { pattern: glob(&self.keys), db: self.db, kind, exclude: glob(&self.not_keys), min_bytes: self.min_bytes })
    }

    /// Whether any filter flag was given.
    pub fn any(&self) -> bool {
        self.keys.is_some() || self.db.is_some() || self.not_keys.is_some() || self.min_bytes.is_some()
    }
}
