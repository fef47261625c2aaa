//! `rdbvault snapshots`.

use rdbvault::format::select;
use rdbvault::format::snapshot::Snapshot;

use super::filter::FilterArgs;
use super::output::{self, Align};
use super::{open_repo, Global};

#[derive(clap::Args, Debug)]
pub struct SnapshotsArgs {
    /// Only these snapshots (`latest`, ids or unique prefixes).
    #[arg(value_name = "SNAPSHOT")]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only the newest N snapshots of each host and source.
    #[arg(long, value_name = "N")]
    pub latest: Option<usize>,
    /// Only snapshots of this group (e.g. the shards of one cluster backup).
    #[arg(long)]
    pub group: Option<String>,
    /// Also list the log segments of followed servers (hidden unless named by id).
    #[arg(long, visible_alias = "segments")]
    pub all: bool,
}

pub fn run(g: &Global, a: SnapshotsArgs) -> anyhow::Result<()> {
    let repo = open_repo(g)?;
    let (mut all, unreadable) = select::select(&repo, &a.ids, &a.filter.filter())?;
    super::warn_skipped(&unreadable);
    // Segments are stretches of a replication log (`timeline` shows them): not restorable alone.
    let hidden = if a.all || !a.ids.is_empty() { 0 } else { all.iter().filter(|(_, s)| s.is_log_segment()).count() };
    if hidden > 0 {
        all.retain(|(_, s)| !s.is_log_segment());
    }
    all.retain(|(_, s)| a.group.as_ref().is_none_or(|g| s.group.as_ref().is_some_and(|sg| sg.starts_with(g.as_str()))));
    all.sort_by(|x, y| x.1.time.cmp(&y.1.time).then(x.0.cmp(&y.0)));
    if let Some(n) = a.latest {
        all = select::latest_per_group(all, n);
    }
    if g.json {
        let list: Vec<serde_json::Value> = all
            .iter()
            .map(|(id, s)| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("id".into(), id.to_hex().into());
                    obj.insert("short_id".into(), id.short().into());
                    obj.insert("size".into(), s.size().into());
                }
                v
            })
            .collect();
        return output::print_json(&list);
    }
    let with_group = all.iter().any(|(_, s)| s.group.is_some());
    let with_note = all.iter().any(|(_, s)| rdb_note(s).is_some());
    let mut columns = vec![
        ("ID", Align::Left),
        ("Time", Align::Left),
        ("Host", Align::Left),
        ("Tags", Align::Left),
        ("Source", Align::Left),
        ("Size", Align::Right),
        ("Added", Align::Right),
    ];
    if with_group {
        columns.push(("Group", Align::Left));
    }
    if with_note {
        columns.push(("Note", Align::Left));
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|(id, s)| {
            let mut row = vec![
                id.short(),
                output::time(&s.time),
                s.host.clone(),
                s.tags.join(","),
                select::source_of(s),
                output::bytes(s.size()),
                output::bytes(s.summary.bytes_added),
            ];
            if with_group {
                row.push(s.group.clone().unwrap_or_default());
            }
            if with_note {
                row.push(rdb_note(s).unwrap_or_default());
            }
            row
        })
        .collect();
    print!("{}", output::table(&columns, &rows));
    match unreadable.len() {
        0 => println!("{}", output::plural(all.len(), "snapshot")),
        n => println!("{} ({n} unreadable, named on stderr)", output::plural(all.len(), "snapshot")),
    }
    if hidden > 0 {
        println!("{} of followed servers hidden; see `rdbvault timeline` (or `snapshots --all`)", output::plural(hidden, "log segment"));
    }
    Ok(())
}

/// `RDB error: ...` for a snapshot whose data was stored although it is not a valid RDB.
fn rdb_note(s: &Snapshot) -> Option<String> {
    s.redis.as_ref().and_then(|r| r.rdb_error.as_deref()).map(|e| format!("RDB error: {e}"))
}
