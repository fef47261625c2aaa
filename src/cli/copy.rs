//! `rdbvault copy`: copies snapshots to another repository.

use std::path::PathBuf;

use rdbvault::engine::backup::BackupOptions;
use rdbvault::engine::restore::{Blobs, RestoreOptions};
use rdbvault::format::select;
use rdbvault::maintain::copy::{self, Copied};
use rdbvault::store::{FileKind, Location, Repository};

use super::{load_index, lock, open_repo_for_index, output, password, read_lock, warn_skipped, with_cache, Global};

#[derive(clap::Args, Debug)]
pub struct CopyArgs {
    /// Snapshots to copy (`latest`, ids or unique prefixes); every snapshot the filters
    /// match when none is given.
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
    /// Only the newest N snapshots of each host and source.
    #[arg(long, value_name = "N")]
    pub latest: Option<usize>,
    /// The repository to copy to: a directory, s3:... or sftp:... (the source is -r).
    #[arg(long, env = "RDBVAULT_TO_REPOSITORY", value_name = "REPO")]
    pub to_repo: String,
    /// Read the destination's password from this file (first line); also RDBVAULT_TO_PASSWORD.
    #[arg(long, env = "RDBVAULT_TO_PASSWORD_FILE", value_name = "FILE")]
    pub to_password_file: Option<PathBuf>,
    /// Run this shell command and use the first line it prints as the destination's password.
    #[arg(long, env = "RDBVAULT_TO_PASSWORD_COMMAND", value_name = "COMMAND", conflicts_with = "to_password_file")]
    pub to_password_command: Option<String>,
    /// Worker threads for each side (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(g: &Global, a: CopyArgs) -> anyhow::Result<()> {
    let src = open_repo_for_index(g)?;
    let _src_lock = read_lock(g, &src)?;
    let (mut snaps, unreadable) = select::select(&src, &a.snapshots, &a.filter.filter())?;
    warn_skipped(&unreadable);
    if let Some(n) = a.latest {
        snaps = select::latest_per_group(snaps, n);
    }
    if snaps.is_empty() && !a.filter.is_empty() {
        anyhow::bail!("no snapshot in {} matches {}: nothing to copy", src.backend().location(), a.filter.filter().describe());
    }
    let dest = open_destination(g, &a)?;
    if dest.config().repo_id == src.config().repo_id && dest.backend().location() == src.backend().location() {
        anyhow::bail!("{} is the source repository itself: give another one to --to-repo", dest.backend().location());
    }
    let _dest_lock = lock(g, &dest, false)?;
    let index = load_index(&src)?;
    let blobs = Blobs::new(&src, &index)?;
    let total = snaps.iter().map(|(_, s)| s.size()).sum();
    let mut backup = BackupOptions { progress: output::progress(Some(total), g.quiet, g.json, "copy"), ..BackupOptions::default() };
    let mut restore = RestoreOptions::default();
    if let Some(t) = a.threads {
        (backup.threads, restore.threads) = (t, t);
    }
    let to = dest.backend().location();
    let result = copy::copy(&blobs, &snaps, &dest, &restore, &backup, |c| {
        if g.json || g.quiet {
            return;
        }
        let line = describe(c, &to);
        match &backup.progress {
            Some(pb) => pb.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    });
    if let Some(pb) = &backup.progress {
        pb.finish_and_clear();
    }
    let done = result?;
    if g.json {
        let copied: Vec<_> = done
            .iter()
            .map(|c| {
                serde_json::json!({
                    "source": c.source.to_hex(),
                    "copy": c.copy.to_hex(),
                    "skipped": c.skipped,
                    "summary": c.summary,
                })
            })
            .collect();
        return output::print_json(&serde_json::json!({
            "to": to,
            "snapshots": copied,
            "copied": done.iter().filter(|c| !c.skipped).count(),
            "skipped": done.iter().filter(|c| c.skipped).count(),
            "retries": super::retries(),
        }));
    }
    if !g.quiet {
        let n = done.iter().filter(|c| !c.skipped).count();
        println!("copied {n} of {} snapshots to {to}", done.len());
    }
    Ok(())
}

/// Opens the destination with its own password (and cache).
fn open_destination(g: &Global, a: &CopyArgs) -> anyhow::Result<Repository> {
    let location = Location::parse(&a.to_repo)?;
    let backend = location.open()?;
    if !backend.exists(FileKind::Config, "config")? {
        return Err(rdbvault::Error::NotARepository(backend.location()).into());
    }
    let pw = password::destination(a.to_password_file.as_deref(), a.to_password_command.as_deref())?;
    with_cache(g, &location, Repository::open(backend, pw.as_bytes())?)
}

/// One line per snapshot: copied, and what that stored, or already there.
fn describe(c: &Copied, to: &str) -> String {
    if c.skipped {
        return format!("snapshot {} is already in {to} as {}: skipped", c.source.short(), c.copy.short());
    }
    format!(
        "snapshot {} copied as {} ({} new chunks, {} added)",
        c.source.short(),
        c.copy.short(),
        c.summary.new_chunks,
        output::bytes(c.summary.bytes_added)
    )
}
