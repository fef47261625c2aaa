//! The `rdbvault` command: parses arguments and calls into the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let quiet = args.global.quiet;
    let result = cli::run(args);
    cli::report_retries(quiet);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli::describe(&e));
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
