//! `rdbvault repair index` and `rdbvault repair snapshots`.

use std::io::{BufRead, IsTerminal, Write};

use rdbvault::maintain::repair;

use super::{open_repo, output, Global};

#[derive(clap::Subcommand, Debug)]
pub enum RepairCommand {
    /// Rebuild the index from the pack headers.
    Index,
    /// Remove damaged snapshot files (asks first; their data goes at the next prune).
    Snapshots(RepairSnapshotsArgs),
}

#[derive(clap::Args, Debug)]
pub struct RepairSnapshotsArgs {
    /// Remove without asking (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Only list the damaged snapshot files.
    #[arg(long, conflicts_with = "yes")]
    pub dry_run: bool,
}

pub fn run(g: &Global, c: RepairCommand) -> anyhow::Result<()> {
    match c {
        RepairCommand::Index => index(g),
        RepairCommand::Snapshots(a) => snapshots(g, a),
    }
}

fn index(g: &Global) -> anyhow::Result<()> {
    let repo = open_repo(g)?;
    let lock = super::lock(g, &repo, true)?;
    let s = repair::repair_index(&repo, &lock)?;
    if g.json {
        return output::print_json(&s);
    }
    for (file, why) in &s.unreadable {
        let what = if s.kept.contains(file) { "kept its entries from the old index" } else { "left out" };
        eprintln!("warning: {file}: header cannot be read ({why}); {what}");
    }
    if !g.quiet {
        println!("indexed {} blobs in {} packs; replaced {} index files", s.blobs, s.packs, s.old_index_files);
    }
    Ok(())
}

fn snapshots(g: &Global, a: RepairSnapshotsArgs) -> anyhow::Result<()> {
    let repo = open_repo(g)?;
    // A dry run only reads, so it can run beside backups.
    let lock = super::lock(g, &repo, !a.dry_run)?;
    let (damaged, other) = repair::unreadable_snapshots(&repo)?;
    for u in &other {
        eprintln!("warning: left alone: {u}");
    }
    let names: Vec<String> = damaged.iter().map(|u| u.name.clone()).collect();
    let text = !g.json && !g.quiet;
    if text {
        let verb = if a.dry_run { "would remove" } else { "remove" };
        println!("{verb} {}:", files(damaged.len()));
        for u in &damaged {
            println!("  {}  {}", u.short(), u.error);
        }
    }
    let removed = !a.dry_run && !damaged.is_empty() && confirmed(&a, damaged.len())?;
    if removed {
        repair::remove_snapshot_files(&repo, &damaged, &lock)?;
        if text {
            println!("removed {}; `rdbvault prune` frees the data only they used", files(damaged.len()));
        }
    }
    if g.json {
        let removed = if removed { names.len() } else { 0 };
        output::print_json(&serde_json::json!({ "dry_run": a.dry_run, "damaged": names, "removed": removed }))?;
    }
    Ok(())
}

/// `--yes`, or a "y" typed at the terminal; without a terminal and `--yes`, an error that says so.
fn confirmed(a: &RepairSnapshotsArgs, n: usize) -> anyhow::Result<bool> {
    if a.yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "refusing to remove {} without confirmation: stdin is not a terminal; \
             run `rdbvault repair snapshots --yes` (or --dry-run to only list them)",
            files(n)
        );
    }
    eprint!("remove the {} listed above? [y/N] ", files(n));
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    let yes = matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes");
    if !yes {
        eprintln!("nothing removed");
    }
    Ok(yes)
}

/// `1 damaged snapshot file`, `2 damaged snapshot files`.
fn files(n: usize) -> String {
    format!("{n} damaged snapshot file{}", if n == 1 { "" } else { "s" })
}
