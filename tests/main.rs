//! The integration tests, one file per user-facing capability, linked into one binary:
//! one link instead of sixty, and one thread pool that keeps both cores busy to the end.
//! A new capability's file goes in the list below. `tests/memory_bound.rs` stays a binary
//! of its own because it reads `RUSAGE_CHILDREN` for the whole process.
//! Run one file with `cargo test --test integration NAME::`.

mod common;

mod aof;
mod backup_restore;
mod cache;
mod chunking;
mod cli_messages;
mod cluster;
mod concurrency;
mod copy;
mod corruption;
mod crash;
mod damaged_metadata;
mod diff;
mod diff_output;
mod export;
mod frame_binding;
mod full_disk;
mod fuzz_regressions;
mod hostile_repo;
mod hostile_targets;
mod incremental;
mod index_lookup;
mod inspect;
mod inspect_output;
mod key_filters;
mod key_index;
mod key_layers;
mod key_lanes;
mod keys;
mod layout;
mod listing_output;
mod live_backup;
mod live_redis;
mod locks;
mod merge;
mod multi_file;
mod ops_config;
mod ops_jobs;
mod ops_schedule;
mod pack_order;
mod pitr;
mod pitr_aof;
mod pitr_failover;
mod pitr_keys;
mod pitr_session;
mod prune;
mod rdb_fuzz;
mod rdb_handmade;
mod rdb_parser;
mod rdb_records;
mod rdb_writer;
mod readonly_repo;
mod redis_connections;
mod redis_messages;
mod restore_cluster;
mod restore_fidelity;
mod restore_live;
mod restore_spill;
mod retention;
mod s3_repo;
mod sftp_repo;
mod snapshot_selection;
mod tamper;
mod truncated_sources;
mod valkey_format;
mod valkey_live;
mod web_api;
mod web_ui;
