//! Helpers shared by the integration tests: a real redis-server and the CLI.
#![allow(dead_code)]

pub mod redis;
pub mod vault;
