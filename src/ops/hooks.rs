//! A profile's hook commands, run by `sh -c` around its jobs with `RDBVAULT_*` variables
//! that describe the job (never a password).

use std::process::{Command, Stdio};

use crate::ops::jobs::JobStatus;
use crate::ops::spec::JobSpec;

/// Runs `cmd` for the job `status` of `spec`; `Err` says how it failed, with the end of its
/// standard error.
pub fn run(which: &str, cmd: &str, spec: &JobSpec, status: &JobStatus) -> Result<(), String> {
    let snapshot = status.report.get("snapshot_id").and_then(|v| v.as_str()).unwrap_or("");
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // A hook that runs rdbvault itself must not find a password this way.
        .env_remove("RDBVAULT_PASSWORD")
        .env("RDBVAULT_HOOK", which)
        .env("RDBVAULT_JOB_ID", status.id.to_string())
        .env("RDBVAULT_JOB_KIND", &status.kind)
        .env("RDBVAULT_JOB_STATE", serde_json::to_value(status.state).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default())
        .env("RDBVAULT_JOB_MESSAGE", &status.message)
        .env("RDBVAULT_PROFILE", spec.profile.as_deref().unwrap_or(""))
        .env("RDBVAULT_REPOSITORY_NAME", &spec.repo.name)
        .env("RDBVAULT_REPOSITORY", &spec.repo.location)
        .env("RDBVAULT_SNAPSHOT_ID", snapshot)
        .output()
        .map_err(|e| format!("{which} hook {cmd:?} could not start: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: String = err.trim().lines().last().unwrap_or("").chars().take(300).collect();
    let tail = if tail.is_empty() { String::new() } else { format!(": {tail}") };
    Err(format!("{which} hook {cmd:?} failed ({}){tail}", out.status))
}
