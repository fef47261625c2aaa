//! A profile's hook commands, run by `sh -c` around its jobs with `RDBVAULT_*` variables
//! that describe the job (never a password), each killed (with everything it started)
//! when it outlives the profile's hook `timeout`.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ops::status::JobStatus;
use crate::ops::spec::JobSpec;

/// Runs `cmd` for the job `status` of `spec`; `Err` says how it failed, with the end of its
/// standard error.
pub fn run(which: &str, cmd: &str, spec: &JobSpec, status: &JobStatus) -> Result<(), String> {
    let snapshot = status.report.get("snapshot_id").and_then(|v| v.as_str()).unwrap_or("");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills what the shell started too.
        .process_group(0)
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
        .spawn()
        .map_err(|e| format!("{which} hook {cmd:?} could not start: {e}"))?;
    // Read stderr on the side: a hook that fills the pipe must not block its own wait.
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    });
    let limit = spec.hooks.limit();
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if started.elapsed() >= limit => {
                kill_group(&mut child);
                return Err(format!("{which} hook {cmd:?} did not finish within {}s (hooks.timeout): it was killed", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20).min(limit.saturating_sub(started.elapsed()))),
            Err(e) => return Err(format!("{which} hook {cmd:?}: waiting for it failed: {e}")),
        }
    };
    let err = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&err);
    let tail: String = err.trim().lines().last().unwrap_or("").chars().take(300).collect();
    let tail = if tail.is_empty() { String::new() } else { format!(": {tail}") };
    Err(format!("{which} hook {cmd:?} failed ({status}){tail}"))
}

/// Kills the hook's process group and reaps the shell.
fn kill_group(child: &mut std::process::Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) with a negative pid signals the group the hook leads; no memory is touched.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
