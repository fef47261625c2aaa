//! The `rdbvault` command: parses arguments and calls into the library.

mod cli;

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::parse();
    let quiet = args.global.quiet;
    let json_log = match args.global.log_format {
        cli::LogFormat::Json => cli::log::json_stderr().ok(),
        cli::LogFormat::Text => None,
    };
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if !stdout_write_panic(info.payload()) {
            default_hook(info);
        }
    }));
    let result = panic::catch_unwind(AssertUnwindSafe(|| cli::run(args)));
    cli::report_retries(quiet);
    let code = exit(result);
    if let Some(log) = json_log {
        log.finish();
    }
    code
}

/// Prints the error, if any, and says how the process exits.
fn exit(result: std::thread::Result<anyhow::Result<()>>) -> ExitCode {
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        // Like `grep | head`: the reader has all it wanted, so this is a success.
        Ok(Err(e)) if stdout_closed(&e) => ExitCode::SUCCESS,
        Ok(Err(e)) if e.downcast_ref::<cli::Status>().is_some() => {
            ExitCode::from(e.downcast_ref::<cli::Status>().map_or(1, |s| s.0))
        }
        Ok(Err(e)) => {
            eprintln!("error: {}", cli::describe(&e));
            ExitCode::from(cli::exit_code(&e))
        }
        Err(payload) if stdout_write_panic(&*payload) => ExitCode::SUCCESS,
        Err(payload) => panic::resume_unwind(payload),
    }
}

/// `println!` panics when standard output's reader went away (`rdbvault snapshots | head -1`).
fn stdout_write_panic(payload: &(dyn Any + Send)) -> bool {
    let msg = payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
    msg.is_some_and(|m| m.starts_with("failed printing to stdout")) && stdout_reader_gone()
}

/// An error caused by a broken pipe on standard output, not by a Redis or network peer.
fn stdout_closed(e: &anyhow::Error) -> bool {
    let broken_pipe = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    broken_pipe && stdout_reader_gone()
}

/// Whether standard output is a pipe or socket whose reading end is closed.
fn stdout_reader_gone() -> bool {
    let mut p = libc::pollfd { fd: libc::STDOUT_FILENO, events: 0, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}
