//! `rdbvault diff`: keys added, removed and changed between two snapshots, and what changed.

use std::io::Write;

use rdbvault::redis::diff::{self, Change, ChangeKind, KeyState};
use rdbvault::rdb::quoted;

use super::inspect::{chosen_file, read_json};
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
    /// Only keys of this type in either snapshot (string, list, set, zset, hash, stream,
    /// module; redis-rdb-tools' --type): a key whose type changed shows as added or removed.
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    /// Compare this file of both snapshots (default: their RDB, the base of an AOF directory).
    #[arg(long, value_name = "NAME")]
    pub file: Option<String>,
    /// Exit with 1 when the snapshots' keys differ and 0 when they do not, as `diff` and
    /// `git diff --exit-code` do; errors then exit with 2 or more.
    #[arg(long)]
    pub exit_code: bool,
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
}

pub fn run(g: &Global, a: DiffArgs) -> anyhow::Result<()> {
    if a.exit_code {
        super::errors_exit_above_1();
    }
    let filter = a.keys.filter(a.kind.as_deref())?;
    let counts = with_blobs_matching(g, &[&a.old, &a.new], &a.filter, |snaps, blobs| {
        let ((old_id, old), (new_id, new)) = (&snaps[0], &snaps[1]);
        let old_file = chosen_file(old_id, old, a.file.as_deref(), g.quiet)?;
        let new_file = chosen_file(new_id, new, a.file.as_deref(), g.quiet)?;
        if g.json {
            let mut changes = Vec::new();
            let counts = diff::diff(blobs, old_file, new_file, &filter, |c| {
                changes.push(change_json(&c));
                Ok(())
            })?;
            output::print_json(&serde_json::json!({
                "old": read_json(old_id, old, old_file),
                "new": read_json(new_id, new, new_file),
                "changes": changes,
                "counts": counts,
                "differences": counts.differences(),
            }))?;
            return Ok(counts);
        }
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let counts = diff::diff(blobs, old_file, new_file, &filter, |c| {
            writeln!(out, "{}", change_line(&c)).map_err(|e| rdbvault::Error::io("write diff", e))
        })?;
        out.flush()?;
        if !g.quiet {
            let mut line = format!("{} added, {} removed, {} changed", counts.added, counts.removed, counts.changed);
            if counts.reencoded > 0 {
                line.push_str(&format!(", {} re-encoded with the same data", counts.reencoded));
            }
            line.push_str(&format!(", {} unchanged", counts.unchanged));
            writeln!(out, "{line}")?;
            out.flush()?;
        }
        Ok(counts)
    })?;
    if a.exit_code && counts.differences() > 0 {
        return Err(super::Status(1).into());
    }
    Ok(())
}

/// One line per key: `+` added, `-` removed, `~` changed (and what), `=` same data re-encoded.
fn change_line(c: &Change) -> String {
    let name = format!("{} {}", c.key.db, quoted(&c.key.key));
    let (Some(o), Some(n)) = (&c.old, &c.new) else {
        return format!("{} {name}", if c.kind == ChangeKind::Added { "+" } else { "-" });
    };
    let mut parts = Vec::new();
    for what in c.what() {
        parts.push(match what {
            "type" => format!("type {} -> {}", o.kind, n.kind),
            "value" if o.kind != n.kind => continue,
            "ttl" => format!("ttl {} -> {}", expiry(o), expiry(n)),
            "encoding" => format!("encoding {} -> {}", o.encoding, n.encoding),
            other => other.to_string(),
        });
    }
    let mark = if c.kind == ChangeKind::Reencoded { "=" } else { "~" };
    format!("{mark} {name}  {}", parts.join(", "))
}

fn expiry(s: &KeyState) -> String {
    s.expire_at_ms.map_or_else(|| "none".to_string(), output::time_ms)
}

fn change_json(c: &Change) -> serde_json::Value {
    serde_json::json!({
        "db": c.key.db,
        "key": rdbvault::rdb::escape(&c.key.key),
        "change": c.kind,
        "what": c.what(),
        "old": c.old,
        "new": c.new,
    })
}
