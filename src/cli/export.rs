//! `rdbvault export`: a snapshot's keys as JSON lines, CSV, RESP commands or key names.

use std::path::PathBuf;

use anyhow::anyhow;
use rdbvault::redis::export::{export_snapshot, Format};

use super::extract::write_output;
use super::keys::KeyArgs;
use super::{output, with_blobs, Global};

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// `latest`, a snapshot id or a unique prefix of one.
    pub snapshot: String,
    /// jsonl (one JSON object per key), csv (one row per element), resp (commands for
    /// `redis-cli --pipe`) or keys (one key name per line).
    #[arg(long, value_name = "FORMAT")]
    pub format: String,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Only keys of this type (string, list, set, zset, hash, stream, module).
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    /// Write here instead of standard output (a new file appears only when complete).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// With -o: replace a file that already exists.
    #[arg(long, requires = "output")]
    pub overwrite: bool,
}

pub fn run(g: &Global, a: ExportArgs) -> anyhow::Result<()> {
    let format = Format::parse(&a.format).ok_or_else(|| anyhow!("unknown --format {:?}: use jsonl, csv, resp or keys", a.format))?;
    let filter = a.keys.filter(a.kind.as_deref())?;
    let path = a.output.clone().unwrap_or_else(|| PathBuf::from("-"));
    let report = with_blobs(g, &[&a.snapshot], |snaps, blobs| {
        write_output(&path, a.overwrite, |out| Ok(export_snapshot(blobs, &snaps[0].1, &filter, format, out)?))
    })?;
    if path.as_os_str() != "-" {
        if g.json {
            return output::print_json(&report);
        }
        if !g.quiet {
            println!("exported {} keys to {}", report.keys, path.display());
        }
    }
    Ok(())
}
