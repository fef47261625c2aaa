//! `rdbvault prune`.

use rdbvault::store::lock::LockGuard;
use rdbvault::format::snapshot::Listing;
use rdbvault::maintain::forget::remove_snapshots;
use rdbvault::maintain::prune::{self, PruneOptions};
use rdbvault::redis::follow::timeline;
use rdbvault::store::{FileKind, Repository};

use super::{open_repo, output, Global};

#[derive(clap::Args, Debug, Clone)]
pub struct PruneArgs {
    /// Repack packs with more than this share unused (e.g. 5%, 0%); `unlimited` never
    /// repacks (packs with nothing used are still deleted).
    #[arg(long, default_value = "5%", value_parser = parse_share, value_name = "N%|unlimited")]
    pub max_unused: f64,
    /// Only print what would be deleted and repacked.
    #[arg(long)]
    pub dry_run: bool,
}

/// Parses `5%` or `5` (percent) into a share; `unlimited` is a share no pack exceeds.
pub fn parse_share(s: &str) -> Result<f64, String> {
    if s == "unlimited" {
        return Ok(f64::INFINITY);
    }
    let p: f64 = s.trim_end_matches('%').parse().map_err(|_| format!("{s:?} is not a percentage like 5% (or unlimited)"))?;
    if !(0.0..=100.0).contains(&p) {
        return Err(format!("{s:?} is not between 0% and 100%"));
    }
    Ok(p / 100.0)
}

pub fn run(g: &Global, a: PruneArgs) -> anyhow::Result<()> {
    let repo = open_repo(g)?;
    // A dry run only reads, so it can run beside backups.
    let lock = super::lock(g, &repo, !a.dry_run)?;
    let out = prune_locked(g, &repo, &lock, &a)?;
    if g.json {
        output::print_json(&out)?;
    }
    Ok(())
}

/// Total bytes of every repository file.
fn repo_bytes(repo: &Repository) -> anyhow::Result<u64> {
    let mut n = 0;
    for kind in FileKind::ALL {
        n += repo.backend().list(kind)?.iter().map(|f| f.size).sum::<u64>();
    }
    Ok(n)
}

/// Plans and (unless dry-run) runs a prune under a held exclusive lock; returns the JSON report.
pub fn prune_locked(g: &Global, repo: &Repository, lock: &LockGuard, a: &PruneArgs) -> anyhow::Result<serde_json::Value> {
    let before = repo_bytes(repo)?;
    let text = !g.json && !g.quiet;
    // Log segments no chain can use go first, so their data is freed by this prune.
    let orphans = timeline::orphans(&Listing::load(repo)?);
    if !a.dry_run {
        let ids: Vec<String> = orphans.iter().map(|(_, id, _)| id.to_hex()).collect();
        remove_snapshots(repo, &ids, lock)?;
    }
    if text && !orphans.is_empty() {
        let verb = if a.dry_run { "would delete" } else { "deleted" };
        println!("{verb} {} no chain uses", output::plural(orphans.len(), "orphan log segment"));
    }
    let plan = prune::plan(repo, PruneOptions { max_unused: a.max_unused })?;
    let s = &plan.summary;
    if text {
        let verb = if a.dry_run { "would" } else { "will" };
        let p = output::plural;
        let uses = if s.snapshots == 1 { "uses" } else { "use" };
        println!(
            "{} {uses} {}; {} unused, {} extra copies",
            p(s.snapshots, "snapshot"),
            p(s.used_blobs, "blob"),
            s.unused_blobs,
            s.duplicate_blobs
        );
        println!("{verb} delete {} and {}", p(s.delete_packs.len(), "unused pack"), p(s.unindexed_packs.len(), "unindexed pack"));
        println!("{verb} repack {}, copying {} of used data", p(s.repack_packs.len(), "pack"), output::bytes(s.bytes_repacked));
        println!("{verb} keep {} as they are; replace {} with files of up to 8 packs", p(s.kept_packs, "pack"), p(s.index_files.len(), "index file"));
        println!("{verb} free about {} of {} in packs", output::bytes(s.pack_bytes_deleted.saturating_sub(s.bytes_repacked)), output::bytes(s.pack_bytes_before));
    }
    let orphans: Vec<String> = orphans.iter().map(|(_, id, _)| id.to_hex()).collect();
    let mut report = serde_json::json!({ "dry_run": a.dry_run, "orphan_segments": orphans, "plan": s, "repository_bytes_before": before });
    if a.dry_run {
        return Ok(report);
    }
    if !s.has_work() && text {
        println!("nothing to prune");
    }
    let done = prune::execute(repo, plan, lock)?;
    let after = repo_bytes(repo)?;
    if text {
        println!(
            "wrote {} ({}); repository {} -> {}, freed {}",
            output::plural(done.new_packs, "new pack"),
            output::bytes(done.new_pack_bytes),
            output::bytes(before),
            output::bytes(after),
            output::bytes(before.saturating_sub(after))
        );
    }
    report["done"] = serde_json::to_value(&done)?;
    report["repository_bytes_after"] = after.into();
    report["bytes_freed"] = before.saturating_sub(after).into();
    Ok(report)
}
