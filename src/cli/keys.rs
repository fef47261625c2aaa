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
}

impl KeyArgs {
    /// The library filter, with an optional `--type` name.
    pub fn filter(&self, kind: Option<&str>) -> anyhow::Result<KeyFilter> {
        let kind = kind
            .map(|k| parse_kind(k).ok_or_else(|| anyhow!("unknown type {k:?}: use string, list, set, zset, hash, stream or module")))
            .transpose()?;
        Ok(KeyFilter { pattern: self.keys.as_deref().map(|p| Glob::new(p.as_bytes())), db: self.db, kind })
    }

    /// Whether any filter flag was given.
    pub fn any(&self) -> bool {
        self.keys.is_some() || self.db.is_some()
    }
}
