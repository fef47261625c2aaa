//! rdbvault: encrypted, deduplicated, incremental backups of Redis databases.
pub mod rdb;
