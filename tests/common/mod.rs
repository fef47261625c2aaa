//! Shared test helpers: real redis-server processes on loopback ports.
#![allow(dead_code)]

pub mod server;
pub mod rdb;
