//! `rdbvault backup`.

use std::path::PathBuf;

use anyhow::{bail, Context};

use rdbvault::backup::{self, BackupOptions, Input};
use rdbvault::snapshot::SourceDesc;

use super::{open_repo, output, Global};

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// The RDB file to back up.
    pub source: Option<PathBuf>,
    /// Read the data from standard input.
    #[arg(long, conflicts_with = "source")]
    pub stdin: bool,
    /// File name to record for data read from stdin.
    #[arg(long, default_value = "dump.rdb", requires = "stdin")]
    pub stdin_name: String,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Record this host name instead of the machine's.
    #[arg(long)]
    pub host: Option<String>,
    /// zstd level for new data (0 = no compression; 1-22).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(0..=22))]
    pub compression: i32,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(g: &Global, a: BackupArgs) -> anyhow::Result<()> {
    let (source, input, total): (SourceDesc, Input<'static>, Option<u64>) = if a.stdin {
        let desc = SourceDesc { kind: "stdin".into(), name: a.stdin_name.clone(), ..Default::default() };
        (desc, Input { name: a.stdin_name.clone(), reader: Box::new(std::io::stdin()) }, None)
    } else {
        let Some(path) = a.source.clone() else { bail!("nothing to back up: give an RDB file, or --stdin") };
        let file = std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
        let meta = file.metadata().with_context(|| format!("stat {}", path.display()))?;
        if !meta.is_file() {
            bail!("{} is not a regular file", path.display());
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "dump.rdb".into());
        let abs = std::fs::canonicalize(&path).unwrap_or(path.clone());
        let desc = SourceDesc { kind: "file".into(), name: abs.display().to_string(), ..Default::default() };
        (desc, Input { name, reader: Box::new(file) }, Some(meta.len()))
    };
    let repo = open_repo(g)?;
    let _lock = super::lock(g, &repo, false)?;
    let mut opts = BackupOptions {
        zstd_level: a.compression,
        host: a.host.clone(),
        tags: a.tags.clone(),
        progress: output::progress(total, g.quiet, g.json, "backup"),
        ..BackupOptions::default()
    };
    if let Some(t) = a.threads {
        opts.threads = t;
    }
    let result = backup::run(&repo, source, vec![input], &opts);
    if let Some(pb) = &opts.progress {
        pb.finish_and_clear();
    }
    let (id, snap) = result?;
    report(g, &id, &snap)
}

/// Prints what a backup did.
pub fn report(g: &Global, id: &rdbvault::crypto::Id, snap: &rdbvault::snapshot::Snapshot) -> anyhow::Result<()> {
    let s = &snap.summary;
    if let Some(err) = snap.redis.as_ref().and_then(|r| r.rdb_error.as_ref()) {
        eprintln!("warning: the backed-up data is not a valid RDB ({err}); it was stored as it is");
    }
    if g.json {
        return output::print_json(&serde_json::json!({
            "snapshot_id": id.to_hex(),
            "files": snap.files.iter().map(|f| serde_json::json!({"name": f.name, "size": f.size, "blake3": f.blake3})).collect::<Vec<_>>(),
            "summary": s,
        }));
    }
    if g.quiet {
        return Ok(());
    }
    let secs = s.duration_ms as f64 / 1000.0;
    let rate = if secs > 0.0 { s.bytes_processed as f64 / secs } else { 0.0 };
    let names: Vec<&str> = snap.files.iter().map(|f| f.name.as_str()).collect();
    println!("snapshot {} saved", id.short());
    println!("  files:     {} ({})", snap.files.len(), names.join(", "));
    println!("  processed: {} in {secs:.2} s ({}/s)", output::bytes(s.bytes_processed), output::bytes(rate as u64));
    println!("  chunks:    {} ({} new, {} of new data)", s.chunks, s.new_chunks, output::bytes(s.new_raw_bytes));
    println!("  added:     {} to the repository", output::bytes(s.bytes_added));
    if let Some(r) = snap.redis.as_ref().filter(|r| r.rdb_error.is_none()) {
        let dbs: Vec<String> = r.keys_per_db.iter().map(|(db, n)| format!("db{db}={n}")).collect();
        println!(
            "  redis:     RDB v{} from Redis {}, {} keys ({})",
            r.rdb_version.unwrap_or(0),
            r.redis_version.as_deref().unwrap_or("?"),
            r.keys.unwrap_or(0),
            dbs.join(" ")
        );
    }
    Ok(())
}
