//! `rdbvault snapshots`.

use rdbvault::format::snapshot::Listing;

use super::{open_repo, output, Global};

#[derive(clap::Args, Debug)]
pub struct SnapshotsArgs {
    /// Only snapshots with this tag (repeatable; all must match).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only snapshots from this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only snapshots of this group (e.g. the shards of one cluster backup).
    #[arg(long)]
    pub group: Option<String>,
}

pub fn run(g: &Global, a: SnapshotsArgs) -> anyhow::Result<()> {
    let repo = open_repo(g)?;
    let listing = Listing::load(&repo)?;
    super::warn_skipped(&listing.unreadable);
    let all: Vec<_> = listing
        .snapshots
        .into_iter()
        .filter(|(_, s)| a.tags.iter().all(|t| s.tags.contains(t)))
        .filter(|(_, s)| a.host.as_ref().is_none_or(|h| &s.host == h))
        .filter(|(_, s)| a.group.as_ref().is_none_or(|g| s.group.as_ref().is_some_and(|sg| sg.starts_with(g.as_str()))))
        .collect();
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
    println!(
        "{:<8}  {:<23}  {:<12}  {:<14}  {:<28}  {:>10}  {:>10}  {:<16}",
        "ID", "TIME", "HOST", "TAGS", "SOURCE", "SIZE", "ADDED", "GROUP"
    );
    for (id, s) in &all {
        let source = format!("{}:{}", s.source.kind, s.source.name);
        println!(
            "{:<8}  {:<23}  {:<12}  {:<14}  {:<28}  {:>10}  {:>10}  {:<16}{}",
            id.short(),
            s.time,
            s.host,
            s.tags.join(","),
            source,
            output::bytes(s.size()),
            output::bytes(s.summary.bytes_added),
            s.group.as_deref().unwrap_or(""),
            rdb_note(s)
        );
    }
    match listing.unreadable.len() {
        0 => println!("{} snapshots", all.len()),
        n => println!("{} snapshots ({n} unreadable, named on stderr)", all.len()),
    }
    Ok(())
}

/// `  (RDB error: ...)` for a snapshot whose data was stored although it is not a valid RDB.
fn rdb_note(s: &rdbvault::format::snapshot::Snapshot) -> String {
    s.redis.as_ref().and_then(|r| r.rdb_error.as_deref()).map(|e| format!("  (RDB error: {e})")).unwrap_or_default()
}
