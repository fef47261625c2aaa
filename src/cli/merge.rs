//! `rdbvault merge`: one RDB from the keys of several snapshots.

use std::path::PathBuf;

use anyhow::bail;
use rdbvault::redis::merge::{merge, MergeOptions, OnConflict};

use super::extract::write_output;
use super::keys::KeyArgs;
use super::{output, with_blobs, Global};

#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// Two or more snapshots (`latest`, ids or unique prefixes), merged in this order.
    #[arg(required = true, num_args = 2..)]
    pub snapshots: Vec<String>,
    /// The RDB file to write (`-` for stdout); appears only once complete.
    #[arg(long, short = 't')]
    pub target: PathBuf,
    /// A key in several snapshots: `last` keeps the copy of the snapshot given last, `error` refuses.
    #[arg(long, value_name = "last|error", default_value = "last")]
    pub on_conflict: String,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Only keys of this type (string, list, set, zset, hash, stream, module).
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    /// Write this RDB version (6 to 12, or 80 for Valkey 9); default: the newest of the snapshots'.
    #[arg(long, value_name = "N")]
    pub rdb_version: Option<u16>,
    /// Replace the target file if it exists.
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(g: &Global, a: MergeArgs) -> anyhow::Result<()> {
    let on_conflict = match a.on_conflict.as_str() {
        "last" => OnConflict::Last,
        "error" => OnConflict::Error,
        other => bail!("unknown --on-conflict {other:?}: use last or error"),
    };
    let opts = MergeOptions { on_conflict, filter: a.keys.filter(a.kind.as_deref())?, version: a.rdb_version };
    let specs: Vec<&str> = a.snapshots.iter().map(String::as_str).collect();
    let report = with_blobs(g, &specs, |snaps, blobs| {
        let labelled: Vec<(String, &rdbvault::format::snapshot::Snapshot)> = snaps.iter().map(|(id, s)| (id.short(), s)).collect();
        write_output(&a.target, a.overwrite, |out| Ok(merge(blobs, &labelled, &opts, out)?.0))
    })?;
    if g.json {
        return output::print_json(&report);
    }
    if !g.quiet && a.target.as_os_str() != "-" {
        println!(
            "merged {} snapshots: {} keys ({} held by more than one, the last copy kept) and {} function libraries into {} as RDB version {}",
            specs.len(),
            report.keys,
            report.conflicts,
            report.functions,
            a.target.display(),
            report.rdb_version
        );
    }
    Ok(())
}
