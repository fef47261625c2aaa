//! `rdbvault backup`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use rdbvault::engine::backup::{self, BackupOptions, Input};
use rdbvault::crypto::Id;
use rdbvault::redis::live;
use rdbvault::format::snapshot::{Snapshot, SourceDesc};
use rdbvault::redis::source::RedisUrl;
use rdbvault::store::Repository;

use super::redis_args::{RedisArgs, SERVER_ONLY};
use super::{open_repo_for_index, output, Global};

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// The RDB file to back up, or the URL of a live server: redis://[user[:password]@]host[:port][/db],
    /// rediss://... for TLS, unix:///path/redis.sock (also redis+unix://); or name the server with
    /// -h/-p or --sentinel instead. An RDB holds every database: /db only selects the connection's.
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
    /// With --mode bgsave: seconds to wait for the save to finish.
    #[arg(long, value_name = "SECS", default_value_t = 3600.0, requires = "mode")]
    pub bgsave_timeout: f64,
    /// Tag the snapshot (repeatable; `--tag a,b` gives two tags).
    #[arg(long = "tag", value_delimiter = ',', value_name = "TAG[,TAG...]")]
    pub tags: Vec<String>,
    /// Record this host name instead of the machine's.
    #[arg(long)]
    pub host: Option<String>,
    /// zstd level for new data (0 = no compression; 1-22). At the default 3, a frame that follows
    /// one that compressed less than 2:1 takes zstd's faster single-table search.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(0..=22))]
    pub compression: i32,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Store the bytes as they are, even if they are not a complete RDB (by default a
    /// truncated, damaged, empty or non-RDB input is refused and nothing is saved).
    #[arg(long)]
    pub raw: bool,
    /// Do not write a key index (exact-key inspect/restore/export then read the whole RDB).
    #[arg(long)]
    pub no_key_index: bool,
    /// Write the key index whole, not as a delta on an earlier snapshot's (see docs/format.md).
    #[arg(long, conflicts_with = "no_key_index")]
    pub full_key_index: bool,
    #[command(flatten)]
    pub redis: RedisArgs,
}

/// Options that only apply to a live server.
const LIVE_ONLY: [&str; 19] = [
    "mode",
    "rdb_path",
    "cluster",
    "bgsave_timeout",
    SERVER_ONLY[0],
    SERVER_ONLY[1],
    SERVER_ONLY[2],
    SERVER_ONLY[3],
    SERVER_ONLY[4],
    SERVER_ONLY[5],
    SERVER_ONLY[6],
    SERVER_ONLY[7],
    SERVER_ONLY[8],
    SERVER_ONLY[9],
    SERVER_ONLY[10],
    SERVER_ONLY[11],
    SERVER_ONLY[12],
    SERVER_ONLY[13],
    SERVER_ONLY[14],
];

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
    super::fixed_mmap_threshold();
    let live_opts = live_options(&a)?;
    let target = target(&a)?;
    // A file is opened first, so its reading starts while the repository is opened.
    let file_input = match &target {
        Target::File(p) => Some(open_file(p)?),
        _ => None,
    };
    let repo = open_repo_for_index(g)?;
    let _lock = super::lock(g, &repo, false)?;
    std::thread::scope(|s| {
        // Staged files of interrupted commands go while the backup runs: finding them lists
        // every folder of the repository (~40 ms on a cold disk, 256 of them for packs), and
        // this process's own staged files are never stale.
        let cleaning = s.spawn(|| rdbvault::store::staged::remove_stale(&repo));
        let done = back_up(g, &a, target, file_input, &repo, &live_opts);
        match cleaning.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("warning: could not remove the staged files of interrupted commands: {e}"),
            Err(_) => eprintln!("warning: removing the staged files of interrupted commands panicked"),
        }
        done
    })
}

/// The backup itself, once the repository is open and locked.
fn back_up(g: &Global, a: &BackupArgs, target: Target, mut file_input: Option<(SourceDesc, Input<'static>)>, repo: &Repository, live_opts: &live::LiveOptions) -> anyhow::Result<()> {
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
        key_index: !a.no_key_index,
        full_key_index: a.full_key_index,
        ..BackupOptions::default()
    };
    if let Some(t) = a.threads {
        opts.threads = t;
    }
    let result = match target {
        Target::Stdin => {
            let desc = SourceDesc { kind: "stdin".into(), name: a.stdin_name.clone(), ..Default::default() };
            let input = Input::new(a.stdin_name.clone(), Box::new(std::io::stdin()));
            let r = backup::run(&repo, desc, vec![input], &opts);
            r.map_err(|e| anyhow::Error::from(backup::name_input(e, |name| format!("standard input ({name})"))))
        }
        Target::File(path) => {
            let (desc, input) = match file_input.take() {
                Some(opened) => opened,
                None => open_file(&path)?,
            };
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
            waiting(&opts, match mode {
                live::Mode::Replication => "waiting for the server to fork and send its RDB",
                live::Mode::Bgsave { .. } => "waiting for the server's BGSAVE to finish",
            });
            live::backup_server(&repo, &url, &mode, &live_opts, &opts).map_err(anyhow::Error::from)
        }
    };
    if let Some(pb) = &opts.progress {
        pb.finish_and_clear();
    }
    let (id, snap) = result?;
    report(g, &id, &snap)
}

/// Says on the progress bar what a live backup waits for until the first bytes arrive.
fn waiting(opts: &BackupOptions, what: &str) {
    if let Some(pb) = &opts.progress {
        pb.set_message(what.to_string());
        pb.enable_steady_tick(Duration::from_millis(200));
    }
}

/// Decides what to back up and rejects flags that do not fit it.
fn target(a: &BackupArgs) -> anyhow::Result<Target> {
    let url = a.source.as_ref().and_then(|s| s.to_str()).filter(|s| RedisUrl::looks_like_url(s));
    let live = url.is_some() || a.redis.names_server();
    let live_only = a.mode == LiveMode::Bgsave || a.rdb_path.is_some() || a.redis.any();
    if !live && (a.cluster || live_only) {
        bail!(
            "--cluster, --mode, --rdb-path and the Redis connection options only apply to a live server: \
             a redis://, rediss:// or unix:// URL, or -h/-p or --sentinel"
        );
    }
    if live && a.source.is_some() && url.is_none() {
        bail!("give the server once: {} is not a URL, and -h/-p or --sentinel name the server", a.source.as_ref().map(|p| p.display().to_string()).unwrap_or_default());
    }
    if a.rdb_path.is_some() && a.mode != LiveMode::Bgsave {
        bail!("--rdb-path only applies to --mode bgsave");
    }
    if a.cluster && a.mode == LiveMode::Bgsave {
        bail!("--cluster works in replication mode only (the masters' files are not local)");
    }
    if live {
        let server = a.redis.server(url)?;
        if a.cluster && server.socket.is_some() {
            bail!("--cluster discovers the masters over TCP: give a node's redis://host:port");
        }
        return Ok(Target::Server(server));
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
    let mut o = live::LiveOptions { connect: a.redis.connect_options()?, ..live::LiveOptions::default() };
    o.bgsave.timeout = Duration::try_from_secs_f64(a.bgsave_timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--bgsave-timeout must be a positive number of seconds")?;
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
    Ok((desc, Input::file(name, file)))
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
    let spread = live::spread_ms(snaps);
    if g.json {
        return output::print_json(&serde_json::json!({
            "group": group,
            "spread_ms": spread,
            "snapshots": snaps.iter().map(|(id, s)| snapshot_json(id, s)).collect::<Vec<_>>(),
        }));
    }
    if !g.quiet {
        println!("group {group}: {} shard snapshots saved", snaps.len());
        if let Some(ms) = spread {
            println!("  the shards' snapshot times lie within {ms} ms of each other (from the first fork to the last)");
        }
    }
    Ok(())
}

/// How a live server's RDB was obtained (`None` for files, stdin and AOF directories).
fn mode(kind: &str) -> Option<&'static str> {
    match kind {
        "redis" | "cluster-shard" => Some("replication"),
        "bgsave" => Some("bgsave"),
        _ => None,
    }
}

fn snapshot_json(id: &Id, snap: &Snapshot) -> serde_json::Value {
    serde_json::json!({
        "snapshot_id": id.to_hex(),
        "group": snap.group,
        "source": snap.source,
        "mode": mode(&snap.source.kind),
        "redis": snap.redis,
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
    // A rate over less than a second says more about start-up than about throughput.
    let rate = if secs >= 1.0 { format!(" ({}/s)", output::bytes((s.bytes_processed as f64 / secs) as u64)) } else { String::new() };
    let names: Vec<&str> = snap.files.iter().map(|f| f.name.as_str()).collect();
    println!("snapshot {} saved", id.short());
    println!("  source:    {}:{}", snap.source.kind, snap.source.name);
    println!("  files:     {} ({})", snap.files.len(), names.join(", "));
    println!("  processed: {} in {secs:.2} s{rate}", output::bytes(s.bytes_processed));
    println!("  chunks:    {} ({} new, {} of new data)", s.chunks, s.new_chunks, output::bytes(s.new_raw_bytes));
    println!("  added:     {} to the repository", output::bytes(s.bytes_added));
    if let Some(r) = snap.redis.as_ref().filter(|r| r.rdb_error.is_none() && r.rdb_version.is_some()) {
        let dbs: Vec<String> = r.keys_per_db.iter().map(|(db, n)| format!("db{db}={n}")).collect();
        let keys = r.keys.or_else(|| (!r.keys_per_db.is_empty()).then(|| r.keys_per_db.values().sum()));
        let keys = keys.map_or_else(|| "keys not counted".to_string(), |n| output::plural(n, "key"));
        let dbs = if dbs.is_empty() { String::new() } else { format!(" ({})", dbs.join(" ")) };
        let of = r.file.as_ref().map(|f| format!(" in the base file {f}; its incremental files are not counted")).unwrap_or_default();
        println!(
            "  redis:     RDB v{} from Redis {}, {keys}{dbs}{of}",
            r.rdb_version.unwrap_or(0),
            r.redis_version.as_deref().unwrap_or("?"),
        );
    }
    Ok(())
}
