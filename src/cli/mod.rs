//! Command-line definitions and dispatch (the only place `anyhow` is used).

mod backup;
mod init;
mod output;
mod password;
mod restore;
mod snapshots;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use rdbvault::repo::{LocalBackend, Repository};

/// Encrypted, deduplicated, incremental backups of Redis databases.
#[derive(Parser, Debug)]
#[command(name = "rdbvault", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// Repository location (a directory).
    #[arg(short = 'r', long = "repo", env = "RDBVAULT_REPOSITORY", global = true)]
    pub repo: Option<PathBuf>,
    /// Read the repository password from this file (first line).
    #[arg(long, env = "RDBVAULT_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Run this shell command and use the first line it prints as the password.
    #[arg(long, env = "RDBVAULT_PASSWORD_COMMAND", global = true)]
    pub password_command: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors; no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository.
    Init(init::InitArgs),
    /// Back up an RDB file, stdin, a live Redis server or cluster, or an AOF directory.
    Backup(backup::BackupArgs),
    /// List snapshots.
    Snapshots(snapshots::SnapshotsArgs),
    /// Restore a snapshot to a file, a directory or stdout.
    Restore(restore::RestoreArgs),
    /// Show sizes, deduplication and compression ratios.
    Stats,
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    match cli.command {
        Command::Init(a) => init::run(&g, a),
        Command::Backup(a) => backup::run(&g, a),
        Command::Snapshots(a) => snapshots::run(&g, a),
        Command::Restore(a) => restore::run(&g, a),
        Command::Stats => stats::run(&g),
    }
}

/// The repository location, from `-r` or `RDBVAULT_REPOSITORY`.
fn repo_path(g: &Global) -> anyhow::Result<PathBuf> {
    g.repo.clone().ok_or_else(|| anyhow::anyhow!("no repository given: use -r PATH or set RDBVAULT_REPOSITORY"))
}

/// Opens the repository with the password from the usual sources.
fn open_repo(g: &Global) -> anyhow::Result<Repository> {
    let path = repo_path(g)?;
    let backend = Arc::new(LocalBackend::new(&path));
    if !path.join("config").exists() {
        return Err(rdbvault::Error::NotARepository(path.display().to_string()).into());
    }
    let pw = password::get(g, false)?;
    Ok(Repository::open(backend, pw.as_bytes())?)
}

/// One line for the user: the error and its causes.
pub fn describe(e: &anyhow::Error) -> String {
    let mut s = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
    }
    s
}

/// Exit codes: 1 for errors, 3 for a wrong password, 10 for a missing repository.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<rdbvault::Error>() {
        Some(rdbvault::Error::WrongPassword(_)) => 3,
        Some(rdbvault::Error::NotARepository(_)) => 10,
        _ => 1,
    }
}
