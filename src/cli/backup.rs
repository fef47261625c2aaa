//! `rdbvault backup`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use rdbvault::engine::backup::{self, BackupOptions, Input};
use rdbvault::crypto::Id;
use rdbvault::redis::live;
use rdbvault::format::snapshot::{Snapshot, SourceDesc};
use rdbvault::redis::source::RedisUrl;

use super::{open_repo_for_index, output, Global};

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// The RDB file to back up, or a redis:// / rediss:// URL of a live server.
    pub source: Option<PathBuf>,
    /// Read the data from standard input.
    #[arg(long, conflicts_with_all = ["source", "aof"], conflicts_with_all = LIVE_ONLY)]
    pub stdin: bool,
    /// File name to record for data read from stdin.
    #[arg(long, default_value = "dump.rdb", requires = "stdin", conflicts_with_all = ["source", "aof"])]
    pub stdin_name: String,
    /// Back up a Redis 7 multi-part AOF directory (manifest + base + incr files).
    #[arg(long, value_name = "DIR", conflicts_with = "source", conflicts_with_all = LIVE_ONLY)]
    pub aof: Option<PathBuf>,
    /// How to get a live server's RDB: stream it as a replica, or BGSAVE and read the file.
    #[arg(long, value_enum, default_value_t = LiveMode::Replication)]
    pub mode: LiveMode,
    /// With --mode bgsave: where the server's RDB file is, as seen from here.
    #[arg(long, value_name = "PATH", required_if_eq("mode", "bgsave"), requires = "mode")]
    pub rdb_path: Option<PathBuf>,
    /// The URL is a cluster node: back up every master, one snapshot per shard, in one group.
    #[arg(long, conflicts_with_all = ["rdb_path", "bgsave_timeout"])]
    pub cluster: bool,
    /// Read the Redis password from this file (overrides the URL and REDISCLI_AUTH).
    #[arg(long, value_name = "FILE")]
    pub redis_password_file: Option<PathBuf>,
    /// PEM file with the CA certificate(s) to trust for rediss://.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Accept any TLS certificate (testing only: allows man-in-the-middle).
    #[arg(long)]
    pub tls_insecure: bool,
    /// Seconds to wait for a connection to a server.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Seconds without data from a server before giving up.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub read_timeout: f64,
    /// With --mode bgsave: seconds to wait for the save to finish.
    #[arg(long, value_name = "SECS", default_value_t = 3600.0, requires = "mode")]
    pub bgsave_timeout: f64,
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
    /// Store the bytes as they are, even if they are not a complete RDB (by default a
    /// truncated, damaged, empty or non-RDB input is refused and nothing is saved).
    #[arg(long)]
    pub raw: bool,
}

/// Options that only apply to a redis:// or rediss:// source.
const LIVE_ONLY: [&str; 9] =
    ["mode", "rdb_path", "cluster", "redis_password_file", "tls_ca", "tls_insecure", "connect_timeout", "read_timeout", "bgsave_timeout"];

/// `--mode` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveMode {
    /// Stream the RDB over the replication protocol.
    Replication,
    /// Run BGSAVE and read the RDB file (local servers).
    Bgsave,
}

/// What the SOURCE argument and flags name.
enum Target {
    Stdin,
    File(PathBuf),
    Server(RedisUrl),
    Aof(PathBuf),
}

pub fn run(g: &Global, a: BackupArgs) -> anyhow::Result<()> {
    let target = target(&a)?;
    let repo = open_repo_for_index(g)?;
    let _lock = super::lock(g, &repo, false)?;
    if let Err(e) = rdbvault::store::staged::remove_stale(&repo) {
        eprintln!("warning: could not remove the staged files of interrupted commands: {e}");
    }
    let total = match &target {
        Target::File(p) => std::fs::metadata(p).ok().map(|m| m.len()),
        _ => None,
    };
    let mut opts = BackupOptions {
        zstd_level: a.compression,
        host: a.host.clone(),
        tags: a.tags.clone(),
        progress: output::progress(total, g.quiet, g.json, "backup"),
        raw: a.raw,
        ..BackupOptions::default()
    };
    if let Some(t) = a.threads {
        opts.threads = t;
    }
    let live_opts = live_options(&a)?;
    let result = match target {
        Target::Stdin => {
            let desc = SourceDesc { kind: "stdin".into(), name: a.stdin_name.clone(), ..Default::default() };
            let input = Input { name: a.stdin_name.clone(), reader: Box::new(std::io::stdin()) };
            let r = backup::run(&repo, desc, vec![input], &opts);
            r.map_err(|e| anyhow::Error::from(backup::name_input(e, |name| format!("standard input ({name})"))))
        }
        Target::File(path) => {
            let (desc, input) = open_file(&path)?;
            let r = backup::run(&repo, desc, vec![input], &opts);
            r.map_err(|e| anyhow::Error::from(backup::name_input(e, |_| path.display().to_string())))
        }
        Target::Aof(dir) => live::backup_aof(&repo, &dir, &live_opts, &opts).map_err(anyhow::Error::from),
        Target::Server(url) if a.cluster => {
            let result = live::backup_cluster(&repo, &url, &live_opts, &opts, |id, snap| {
                if let Some(pb) = &opts.progress {
                    pb.suspend(|| report_shard(g, id, snap));
                } else {
                    report_shard(g, id, snap);
                }
            });
            if let Some(pb) = &opts.progress {
                pb.finish_and_clear();
            }
            let (group, snaps) = result?;
            return report_group(g, &group, &snaps);
        }
        Target::Server(url) => {
            let mode = match (a.mode, &a.rdb_path) {
                (LiveMode::Bgsave, Some(p)) => live::Mode::Bgsave { rdb_path: p.clone() },
                (LiveMode::Bgsave, None) => bail!("--mode bgsave needs --rdb-path"),
                (LiveMode::Replication, _) => live::Mode::Replication,
            };
            live::backup_server(&repo, &url, &mode, &live_opts, &opts).map_err(anyhow::Error::from)
        }
    };
    if let Some(pb) = &opts.progress {
        pb.finish_and_clear();
    }
    let (id, snap) = result?;
    report(g, &id, &snap)
}

/// Decides what to back up and rejects flags that do not fit it.
fn target(a: &BackupArgs) -> anyhow::Result<Target> {
    let url = a.source.as_ref().and_then(|s| s.to_str()).filter(|s| s.starts_with("redis://") || s.starts_with("rediss://"));
    let live_only = a.mode == LiveMode::Bgsave
        || a.rdb_path.is_some()
        || a.redis_password_file.is_some()
        || a.tls_ca.is_some()
        || a.tls_insecure;
    if url.is_none() && (a.cluster || live_only) {
        bail!("--cluster, --mode, --rdb-path, --redis-password-file and --tls-* only apply to a redis:// or rediss:// source");
    }
    if a.rdb_path.is_some() && a.mode != LiveMode::Bgsave {
        bail!("--rdb-path only applies to --mode bgsave");
    }
    if a.cluster && a.mode == LiveMode::Bgsave {
        bail!("--cluster works in replication mode only (the masters' files are not local)");
    }
    if let Some(u) = url {
        let mut url = RedisUrl::parse(u)?;
        url.resolve_password_from_env(a.redis_password_file.as_deref())?;
        return Ok(Target::Server(url));
    }
    if let Some(dir) = &a.aof {
        return Ok(Target::Aof(dir.clone()));
    }
    if a.stdin {
        return Ok(Target::Stdin);
    }
    match &a.source {
        Some(p) => Ok(Target::File(p.clone())),
        None => bail!("nothing to back up: give an RDB file, a redis:// URL, --aof DIR or --stdin"),
    }
}

/// Time-outs and TLS trust from the flags.
fn live_options(a: &BackupArgs) -> anyhow::Result<live::LiveOptions> {
    let secs = |v: f64, flag: &str| -> anyhow::Result<Duration> {
        Duration::try_from_secs_f64(v).ok().filter(|d| !d.is_zero()).with_context(|| format!("{flag} must be a positive number of seconds"))
    };
    let mut o = live::LiveOptions::default();
    o.connect.connect_timeout = secs(a.connect_timeout, "--connect-timeout")?;
    o.connect.read_timeout = secs(a.read_timeout, "--read-timeout")?;
    o.connect.tls_ca_file = a.tls_ca.clone();
    o.connect.tls_insecure = a.tls_insecure;
    o.bgsave.timeout = secs(a.bgsave_timeout, "--bgsave-timeout")?;
    Ok(o)
}

/// Opens a regular file and describes it.
fn open_file(path: &Path) -> anyhow::Result<(SourceDesc, Input<'static>)> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let meta = file.metadata().with_context(|| format!("stat {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "dump.rdb".into());
    let abs = std::fs::canonicalize(path).unwrap_or(path.to_path_buf());
    let desc = SourceDesc { kind: "file".into(), name: abs.display().to_string(), ..Default::default() };
    Ok((desc, Input { name, reader: Box::new(rdbvault::store::prefetch::Prefetch::new(file)) }))
}

/// One line per saved cluster shard, as it happens (text mode only).
fn report_shard(g: &Global, id: &Id, snap: &Snapshot) {
    if g.json || g.quiet {
        return;
    }
    let files: Vec<&str> = snap.files.iter().map(|f| f.name.as_str()).collect();
    println!(
        "snapshot {} saved: {} from {} ({} processed, {} added)",
        id.short(),
        files.join(", "),
        snap.source.name,
        output::bytes(snap.summary.bytes_processed),
        output::bytes(snap.summary.bytes_added)
    );
}

/// Prints the outcome of a cluster backup.
fn report_group(g: &Global, group: &str, snaps: &[(Id, Snapshot)]) -> anyhow::Result<()> {
    if g.json {
        return output::print_json(&serde_json::json!({
            "group": group,
            "snapshots": snaps.iter().map(|(id, s)| snapshot_json(id, s)).collect::<Vec<_>>(),
        }));
    }
    if !g.quiet {
        println!("group {group}: {} shard snapshots saved", snaps.len());
    }
    Ok(())
}

fn snapshot_json(id: &Id, snap: &Snapshot) -> serde_json::Value {
    serde_json::json!({
        "snapshot_id": id.to_hex(),
        "group": snap.group,
        "source": snap.source,
        "files": snap.files.iter().map(|f| serde_json::json!({"name": f.name, "size": f.size, "blake3": f.blake3})).collect::<Vec<_>>(),
        "summary": snap.summary,
        "retries": super::retries(),
    })
}

/// Prints what a backup did.
pub fn report(g: &Global, id: &Id, snap: &Snapshot) -> anyhow::Result<()> {
    let s = &snap.summary;
    if let Some(err) = snap.redis.as_ref().and_then(|r| r.rdb_error.as_ref()) {
        eprintln!("warning: the backed-up data is not a valid RDB ({err}); it was stored as it is (--raw)");
    }
    if g.json {
        return output::print_json(&snapshot_json(id, snap));
    }
    if g.quiet {
        return Ok(());
    }
    let secs = s.duration_ms as f64 / 1000.0;
    let rate = if secs > 0.0 { s.bytes_processed as f64 / secs } else { 0.0 };
    let names: Vec<&str> = snap.files.iter().map(|f| f.name.as_str()).collect();
    println!("snapshot {} saved", id.short());
    println!("  source:    {}:{}", snap.source.kind, snap.source.name);
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
            r.keys.or_else(|| (!r.keys_per_db.is_empty()).then(|| r.keys_per_db.values().sum())).unwrap_or(0),
            dbs.join(" ")
        );
    }
    Ok(())
}
