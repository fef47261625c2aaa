//! Test-only crash injection: `RDBVAULT_FAILPOINT` aborts the process at a
//! chosen repository write or delete, so tests can prove crash safety without timing.
//!
//! `after-op:N` aborts right after the N-th successful write or delete;
//! `before-op:N` aborts at the N-th one just before it takes effect (for a
//! write: the temp file is complete and synced but not yet renamed). Unset, it
//! costs one atomic increment per operation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Where in an operation a failpoint fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The operation is prepared but has not taken effect.
    Before,
    /// The operation took effect.
    After,
}

static SPEC: OnceLock<Option<(Stage, u64)>> = OnceLock::new();
static OPS: AtomicU64 = AtomicU64::new(0);

fn spec() -> Option<(Stage, u64)> {
    *SPEC.get_or_init(|| {
        let v = std::env::var("RDBVAULT_FAILPOINT").ok()?;
        let (stage, n) = v.split_once(':')?;
        let stage = match stage {
            "before-op" => Stage::Before,
            "after-op" | "after-write" => Stage::After,
            _ => return None,
        };
        Some((stage, n.parse().ok()?))
    })
}

/// Starts a mutating operation; returns its 1-based number.
pub fn begin() -> u64 {
    OPS.fetch_add(1, Ordering::SeqCst) + 1
}

/// Aborts the process if the failpoint names operation `op` at `stage`.
pub fn hit(op: u64, stage: Stage) {
    if spec() == Some((stage, op)) {
        eprintln!("rdbvault: failpoint {stage:?} operation {op} reached, aborting");
        std::process::abort();
    }
}
