//! `rdbvault diff`: keys added, removed and changed between two snapshots.

use std::io::Write;

use rdbvault::redis::diff::{self, ChangeKind};
use rdbvault::rdb::bytes_to_json;

use super::keys::KeyArgs;
use super::{output, with_blobs_matching, Global};

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The older snapshot (`latest`, an id or a unique prefix).
    pub old: String,
    /// The newer snapshot.
    pub new: String,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
}

pub fn run(g: &Global, a: DiffArgs) -> anyhow::Result<()> {
    let filter = a.keys.filter(None)?;
    with_blobs_matching(g, &[&a.old, &a.new], &a.filter, |snaps, blobs| {
        let (old, new) = (&snaps[0].1, &snaps[1].1);
        if g.json {
            let mut lists = [Vec::new(), Vec::new(), Vec::new()];
            let counts = diff::diff(blobs, old, new, &filter, |c| {
                lists[c.kind as usize].push(serde_json::json!({"db": c.db, "key": bytes_to_json(&c.key)}));
                Ok(())
            })?;
            let [added, removed, changed] = lists;
            return output::print_json(&serde_json::json!({
                "old": snaps[0].0.to_hex(), "new": snaps[1].0.to_hex(),
                "added": added, "removed": removed, "changed": changed, "counts": counts,
            }));
        }
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let counts = diff::diff(blobs, old, new, &filter, |c| {
            let mark = match c.kind {
                ChangeKind::Added => "+",
                ChangeKind::Removed => "-",
                ChangeKind::Changed => "~",
            };
            let ctx = |e| rdbvault::Error::io("write diff", e);
            write!(out, "{mark} {} ", c.db).map_err(ctx)?;
            out.write_all(&c.key).and_then(|()| out.write_all(b"\n")).map_err(ctx)
        })?;
        out.flush()?;
        if !g.quiet {
            println!(
                "{} added, {} removed, {} changed, {} unchanged",
                counts.added, counts.removed, counts.changed, counts.unchanged
            );
        }
        Ok(())
    })
}
