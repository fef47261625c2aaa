//! `rdbvault forget`.

use rdbvault::maintain::forget::{self, GroupBy, Policy, Within};

use super::prune::PruneArgs;
use super::{open_repo, output, Global};

#[derive(clap::Args, Debug)]
pub struct ForgetArgs {
    /// Remove exactly these snapshots (ids or unique prefixes; damaged ones too)
    /// instead of applying a --keep-* policy.
    #[arg(value_name = "SNAPSHOT_ID")]
    pub ids: Vec<String>,
    /// Apply the policy only to the snapshots these match (named ids must match them too).
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
    /// Keep the N newest snapshots.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_last: u32,
    /// Keep the newest snapshot of each of the last N hours that have snapshots.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_hourly: u32,
    /// ... of the last N days.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_daily: u32,
    /// ... of the last N ISO weeks.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_weekly: u32,
    /// ... of the last N months.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_monthly: u32,
    /// ... of the last N years.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_yearly: u32,
    /// Keep snapshots newer than the group's newest minus this span (e.g. 2d, 1y2m3d4h).
    #[arg(long, value_parser = |s: &str| Within::parse(s).map_err(|e| e.to_string()), value_name = "SPAN")]
    pub keep_within: Option<Within>,
    /// Keep snapshots with this tag (repeatable: any; `a,b`: snapshots with both).
    #[arg(long = "keep-tag", value_name = "TAG[,TAG...]")]
    pub keep_tags: Vec<String>,
    /// Apply the policy per group of: host, source, tags (comma-separated).
    #[arg(long, default_value = "host,source", conflicts_with = "ids")]
    pub group_by: String,
    /// Forget a named base snapshot even though log segments of a followed server continue
    /// it (they are forgotten with it, and the point-in-time restores they allow are lost).
    #[arg(long)]
    pub yes: bool,
    /// Only print what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    /// Run prune afterwards.
    #[arg(long)]
    pub prune: bool,
    /// With --prune: repack packs with more than this share unused.
    #[arg(long, default_value = "5%", value_parser = super::prune::parse_share, requires = "prune")]
    pub max_unused: f64,
}

pub fn run(g: &Global, a: ForgetArgs) -> anyhow::Result<()> {
    let policy = Policy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
        yearly: a.keep_yearly,
        within: a.keep_within,
        tags: a.keep_tags.clone(),
    };
    if !a.ids.is_empty() && !policy.is_empty() {
        anyhow::bail!(
            "give snapshot ids or a --keep-* policy, not both: `forget ID...` removes exactly those snapshots, \
             `forget --keep-...` applies the policy to every snapshot"
        );
    }
    if a.ids.is_empty() && policy.is_empty() {
        anyhow::bail!("no retention policy given (e.g. --keep-last 7) and no snapshot ids; refusing to forget every snapshot");
    }
    let by = GroupBy::parse(&a.group_by)?;
    let repo = open_repo(g)?;
    // A dry run only reads, so it can run beside backups.
    let lock = super::lock(g, &repo, !a.dry_run)?;
    let (remove, mut report) = if a.ids.is_empty() {
        let (rows, skipped) = forget::rows(&repo, &a.filter.filter())?;
        super::warn_skipped(&skipped);
        let groups = forget::apply(&rows, &policy, by);
        if !g.json && !g.quiet {
            print_groups(&groups, a.dry_run);
        }
        let mut remove: Vec<String> = groups.iter().flat_map(|gr| gr.remove.iter().map(|d| d.id.clone())).collect();
        // Segments are never counted by a policy: they go with their base.
        let segments = forget::segments_of(&repo, &remove)?;
        if !g.json && !g.quiet && !segments.is_empty() {
            let verb = if a.dry_run { "would remove" } else { "remove" };
            println!("{verb} {} of the removed bases", output::plural(segments.len(), "log segment"));
        }
        remove.extend(segments.iter().map(|c| c.id.clone()));
        let report = serde_json::json!({ "dry_run": a.dry_run, "groups": groups, "segments": segments, "removed": remove.len() });
        (remove, report)
    } else {
        if !a.filter.is_empty() {
            for id in &a.ids {
                super::find_snapshot_matching(&repo, id, &a.filter)?;
            }
        }
        let chosen = forget::choose(&repo, &a.ids)?;
        let ids: Vec<String> = chosen.iter().map(|c| c.id.clone()).collect();
        let segments = forget::segments_of(&repo, &ids)?;
        if !segments.is_empty() && !a.yes && !a.dry_run {
            anyhow::bail!(
                "{} of followed servers continue these snapshots and would be forgotten with them, losing the \
                 point-in-time restores they allow; see `rdbvault forget --dry-run ID...`, then add --yes to go ahead",
                output::plural(segments.len(), "log segment")
            );
        }
        if !g.json && !g.quiet {
            let verb = if a.dry_run { "would remove" } else { "remove" };
            println!("{verb} {}:", output::plural(chosen.len(), "snapshot"));
            for c in &chosen {
                println!("  {}  {}", &c.id[..8], c.time.as_deref().map_or_else(|| "(unreadable)".to_string(), output::time));
            }
            if !segments.is_empty() {
                println!("{verb} {} of these bases too", output::plural(segments.len(), "log segment"));
            }
        }
        let removed = chosen.len() + segments.len();
        let report = serde_json::json!({ "dry_run": a.dry_run, "snapshots": chosen, "segments": segments, "removed": removed });
        (ids.into_iter().chain(segments.into_iter().map(|c| c.id)).collect(), report)
    };
    if !a.dry_run {
        forget::remove_snapshots(&repo, &remove, &lock)?;
    }
    if a.prune {
        let prune_args = PruneArgs { dry_run: a.dry_run, max_unused: a.max_unused };
        report["prune"] = super::prune::prune_locked(g, &repo, &lock, &prune_args)?;
    }
    if g.json {
        output::print_json(&report)?;
    }
    Ok(())
}

fn print_groups(groups: &[forget::GroupDecision], dry_run: bool) {
    for gr in groups {
        let mut label = Vec::new();
        if let Some(h) = &gr.group.host {
            label.push(format!("host {h}"));
        }
        if let Some(s) = &gr.group.source {
            label.push(format!("source {s}"));
        }
        if let Some(t) = &gr.group.tags {
            label.push(format!("tags [{}]", t.join(",")));
        }
        println!("snapshots of {}:", if label.is_empty() { "all".to_string() } else { label.join(", ") });
        println!("keep {}:", output::plural(gr.keep.len(), "snapshot"));
        for d in &gr.keep {
            println!("  {}  {}  {}", &d.id[..8], output::time(&d.time), d.reasons.join(", "));
        }
        let verb = if dry_run { "would remove" } else { "remove" };
        println!("{verb} {}:", output::plural(gr.remove.len(), "snapshot"));
        for d in &gr.remove {
            println!("  {}  {}", &d.id[..8], output::time(&d.time));
        }
    }
}
