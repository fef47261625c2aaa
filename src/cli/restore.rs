//! `rdbvault restore`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use rdbvault::index::Index;
use rdbvault::restore::{self, RestoreOptions};
use rdbvault::snapshot::Snapshot;

use super::{open_repo, output, Global};

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// `latest`, a snapshot id or a unique prefix of one.
    #[arg(required_unless_present = "group", conflicts_with = "group")]
    pub snapshot: Option<String>,
    /// Restore every snapshot of this group (`latest`, an id or a prefix) into the
    /// target directory, each under its own file name (cluster shards: `<shard>.rdb`).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Where to write: a file, a directory, or `-` for stdout.
    #[arg(long, short = 't')]
    pub target: PathBuf,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(g: &Global, a: RestoreArgs) -> anyhow::Result<()> {
    let repo = open_repo(g)?;
    if let Some(group) = &a.group {
        return run_group(g, &repo, group, &a);
    }
    let Some(spec) = &a.snapshot else { anyhow::bail!("give a snapshot (or latest) or --group") };
    let (id, snap) = Snapshot::find(&repo, spec)?;
    let index = Index::load(&repo)?;
    let blobs = restore::Blobs::new(&repo, &index)?;
    let to_stdout = a.target.as_os_str() == "-";
    let mut opts = RestoreOptions {
        progress: output::progress(Some(snap.size()), g.quiet || to_stdout, g.json, "restore"),
        ..RestoreOptions::default()
    };
    if let Some(t) = a.threads {
        opts.threads = t;
    }
    let started = std::time::Instant::now();
    let result = if to_stdout {
        let stdout = std::io::stdout();
        let mut lock = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        let r = restore::restore_to_writer(&blobs, &snap, &mut lock, &opts);
        r.and_then(|()| lock.flush().map_err(|e| rdbvault::Error::io("write stdout", e))).map(|()| Vec::new())
    } else {
        restore::restore_to_path(&blobs, &snap, &a.target, &opts)
    };
    if let Some(pb) = &opts.progress {
        pb.finish_and_clear();
    }
    let paths = result?;
    let secs = started.elapsed().as_secs_f64();
    if g.json {
        return output::print_json(&serde_json::json!({
            "snapshot_id": id.to_hex(),
            "files": paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "bytes": snap.size(),
            "duration_ms": (secs * 1000.0) as u64,
        }));
    }
    if !g.quiet && !to_stdout {
        for p in &paths {
            println!("restored {}", p.display());
        }
        println!("snapshot {}: {} in {secs:.2} s, verified", id.short(), output::bytes(snap.size()));
    }
    Ok(())
}

/// Restores every snapshot of a group into one directory.
fn run_group(g: &Global, repo: &rdbvault::repo::Repository, spec: &str, a: &RestoreArgs) -> anyhow::Result<()> {
    let snaps = rdbvault::snapshot::find_group(repo, spec)?;
    if a.target.as_os_str() == "-" {
        anyhow::bail!("a group restores to a directory, not to stdout");
    }
    std::fs::create_dir_all(&a.target).with_context(|| format!("create {}", a.target.display()))?;
    let index = Index::load(repo)?;
    let blobs = restore::Blobs::new(repo, &index)?;
    let total: u64 = snaps.iter().map(|(_, s)| s.size()).sum();
    let mut opts = RestoreOptions { progress: output::progress(Some(total), g.quiet, g.json, "restore"), ..RestoreOptions::default() };
    if let Some(t) = a.threads {
        opts.threads = t;
    }
    let mut done = Vec::new();
    for (id, snap) in &snaps {
        match restore::restore_to_path(&blobs, snap, &a.target, &opts) {
            Ok(paths) => done.push((id, paths)),
            Err(e) => {
                if let Some(pb) = &opts.progress {
                    pb.finish_and_clear();
                }
                return Err(e.into());
            }
        }
    }
    if let Some(pb) = &opts.progress {
        pb.finish_and_clear();
    }
    if g.json {
        return output::print_json(&serde_json::json!({
            "group": snaps.first().and_then(|(_, s)| s.group.clone()),
            "snapshots": done.iter().map(|(id, paths)| serde_json::json!({
                "snapshot_id": id.to_hex(),
                "files": paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "bytes": total,
        }));
    }
    if !g.quiet {
        for (id, paths) in &done {
            for p in paths {
                println!("restored {} from snapshot {}", p.display(), id.short());
            }
        }
        println!("{} snapshots, {} verified", done.len(), output::bytes(total));
    }
    Ok(())
}
