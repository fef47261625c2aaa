//! `--host`, `--tag`, `--source`: which snapshots a command looks at (restic's semantics).

use rdbvault::format::select::Filter;

/// Snapshot filters; `latest` is the newest snapshot they match, and a snapshot named by
/// id must match them too.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only snapshots from this host (repeatable: any of them).
    #[arg(long = "host", value_name = "HOST", help_heading = "Snapshot filters")]
    pub hosts: Vec<String>,
    /// Only snapshots with these tags: `--tag a,b` needs both, `--tag a --tag b` either.
    #[arg(long = "tag", value_name = "TAG[,TAG...]", help_heading = "Snapshot filters")]
    pub tags: Vec<String>,
    /// Only snapshots of this source: `kind:name` as `snapshots` shows it, or the name
    /// alone (repeatable: any of them).
    #[arg(long = "source", value_name = "SOURCE", help_heading = "Snapshot filters")]
    pub sources: Vec<String>,
}

impl FilterArgs {
    /// The library's filter.
    pub fn filter(&self) -> Filter {
        Filter {
            hosts: self.hosts.clone(),
            tags: self
                .tags
                .iter()
                .map(|t| t.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect::<Vec<_>>())
                .filter(|list| !list.is_empty())
                .collect(),
            sources: self.sources.clone(),
        }
    }

    /// True when no filter is given.
    pub fn is_empty(&self) -> bool {
        self.filter().is_empty()
    }
}
