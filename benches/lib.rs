//! Nothing: the package is its benchmarks (`pipeline.rs`, `restore_floor.rs`); Cargo wants a target
//! besides them to call it a package.
