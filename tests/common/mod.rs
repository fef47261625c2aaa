//! Helpers shared by the integration tests: real redis-server processes on
//! loopback ports, the CLI against temp-dir repositories, test data, RDB checks.
#![allow(dead_code)]

pub mod data;
pub mod dataset;
pub mod follow;
pub mod handmade;
pub mod net;
pub mod rdb;
pub mod resp;
pub mod server;
pub mod vault;
pub mod web;
