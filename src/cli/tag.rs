//! `rdbvault tag`: add, remove or replace snapshot tags (restic's `tag`).

use rdbvault::format::select;
use rdbvault::maintain::tag::{self, TagChange};

use super::filter::FilterArgs;
use super::{open_repo, output, Global};

/// A changed snapshot gets a new id (its file is rewritten, then the old one removed) and
/// records the id it had first as `original`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["add", "remove", "set"])))]
pub struct TagArgs {
    /// The snapshots to change (`latest`, ids or unique prefixes); default: all the filters match.
    #[arg(value_name = "SNAPSHOT")]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Add these tags (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "TAG[,TAG...]")]
    pub add: Vec<String>,
    /// Remove these tags (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "TAG[,TAG...]")]
    pub remove: Vec<String>,
    /// Replace all tags with these (`--set ''` removes every tag).
    #[arg(long, value_delimiter = ',', value_name = "TAG[,TAG...]", conflicts_with_all = ["add", "remove"])]
    pub set: Option<Vec<String>>,
}

pub fn run(g: &Global, a: TagArgs) -> anyhow::Result<()> {
    let clean = |v: &[String]| v.iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect::<Vec<_>>();
    let change = TagChange { set: a.set.as_deref().map(clean), add: clean(&a.add), remove: clean(&a.remove) };
    let repo = open_repo(g)?;
    // Exclusive: two runs must not both rewrite one snapshot, nor forget remove it meanwhile.
    let lock = super::lock(g, &repo, true)?;
    let (snaps, unreadable) = select::select(&repo, &a.ids, &a.filter.filter())?;
    super::warn_skipped(&unreadable);
    let mut changed = Vec::new();
    for (id, snap) in &snaps {
        if let Some(r) = tag::retag(&repo, &lock, id, snap, &change)? {
            if !g.json && !g.quiet {
                println!("{} -> {}  tags: {}", &r.old_id[..8], &r.new_id[..8], r.tags.join(","));
            }
            changed.push(r);
        }
    }
    if g.json {
        return output::print_json(&serde_json::json!({ "changed": changed.len(), "snapshots": changed }));
    }
    if !g.quiet {
        println!("changed {}", output::plural(changed.len(), "snapshot"));
    }
    Ok(())
}
