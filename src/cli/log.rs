//! `--log-format json`: every line written to standard error (warnings, notes, the final
//! error, and what child commands print there) becomes one JSON object
//! `{"time", "level", "message"}`: standard error is a pipe read by a thread that wraps
//! each line and writes it to the real standard error.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};

/// The redirect; [`JsonStderr::finish`] flushes the last lines and restores standard error.
pub struct JsonStderr {
    saved: RawFd,
    thread: std::thread::JoinHandle<()>,
}

/// Redirects standard error into the JSON writer.
pub fn json_stderr() -> std::io::Result<JsonStderr> {
    let mut fds = [0; 2];
    // SAFETY: plain fd calls on descriptors this function owns; errors are checked.
    unsafe {
        if libc::pipe(fds.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let saved = libc::dup(libc::STDERR_FILENO);
        if saved < 0 || libc::dup2(fds[1], libc::STDERR_FILENO) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::close(fds[1]);
        libc::fcntl(saved, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(fds[0], libc::F_SETFD, libc::FD_CLOEXEC);
        let out_fd = libc::dup(saved);
        if out_fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::fcntl(out_fd, libc::F_SETFD, libc::FD_CLOEXEC);
        let read = std::fs::File::from_raw_fd(fds[0]);
        let mut out = std::fs::File::from_raw_fd(out_fd);
        let thread = std::thread::spawn(move || {
            for line in BufReader::new(read).split(b'\n') {
                let Ok(line) = line else { break };
                let _ = out.write_all(json_line(&String::from_utf8_lossy(&line)).as_bytes());
            }
        });
        Ok(JsonStderr { saved, thread })
    }
}

impl JsonStderr {
    /// Puts the real standard error back (closing the pipe) and waits for the writer.
    pub fn finish(self) {
        // SAFETY: `saved` is our duplicate of the original standard error.
        unsafe {
            libc::dup2(self.saved, libc::STDERR_FILENO);
            libc::close(self.saved);
        }
        let _ = self.thread.join();
    }
}

/// One stderr line as a JSON object, its level from the `error:` / `warning:` prefix.
fn json_line(line: &str) -> String {
    let line = line.trim_end_matches('\r');
    let (level, message) = match (line.strip_prefix("error: "), line.strip_prefix("warning: ")) {
        (Some(m), _) => ("error", m),
        (_, Some(m)) => ("warning", m),
        _ => ("info", line),
    };
    let time = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    format!("{}\n", serde_json::json!({ "time": time, "level": level, "message": message }))
}
