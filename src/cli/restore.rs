//! `rdbvault restore`.

use std::io::Write;
use std::path::PathBuf;


use rdbvault::engine::restore::{self, RestoreOptions};
use rdbvault::engine::target;

use anyhow::bail;
use rdbvault::format::snapshot::Snapshot;
use rdbvault::redis::dbmap::{self, DbMap};
use rdbvault::redis::cluster_target::LoadTarget;
use rdbvault::redis::load::{self, FunctionPolicy, LoadOptions, LoadReport};

use super::keys::KeyArgs;
use super::redis_args::RedisArgs;
use super::{open_repo_for_index, output, with_blobs_for, Global};

#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("live_target").multiple(true).args(["to", "redis_host", "redis_port", "sentinel"]))]
pub struct RestoreArgs {
    /// `latest`, a snapshot id or a unique prefix of one.
    #[arg(required_unless_present_any = ["group", "at"], conflicts_with = "group")]
    pub snapshot: Option<String>,
    /// Restore the followed server (see `follow`) as it was at TIME: RFC 3339
    /// (2026-11-29T10:15:03Z) or relative (-15m). --target DIR writes a Redis 7 AOF directory
    /// (base RDB + log cut at TIME + manifest); --target FILE.rdb replays that through a
    /// redis-server from PATH on a Unix socket; --to URL loads the base keys, then sends the log.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true, conflicts_with_all = ["snapshot", "group"])]
    pub at: Option<String>,
    /// With --at: the followed server (host:port), when the repository logs several.
    #[arg(long, value_name = "ADDR", requires = "at")]
    pub server: Option<String>,
    /// Restore every snapshot of this group (`latest`, an id or a prefix) into the
    /// target directory, each under its own file name (cluster shards: `<shard>.rdb`);
    /// with --to, load the keys of them all (a cluster backup into a server or, with
    /// --cluster, into a cluster of any shape).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Where to write: a file, a directory (a missing one with a trailing `/` is
    /// created), a FIFO or character device (written as a stream), or `-` for stdout.
    // Each --to option also conflicts with --target: clap drops a `requires = "to"` once an
    // argument that conflicts with --to is present.
    #[arg(
        long,
        short = 't',
        required_unless_present = "live_target",
        conflicts_with_all = [
            "to", "all", "replace", "skip_existing", "dry_run", "batch", "map_db", "functions", "connections", "cluster",
            "redis_host", "redis_port", "redis_db", "tls", "user", "pass", "redis_password_file", "sentinel",
            "master_name", "tls_ca", "tls_insecure", "tls_cert", "tls_key", "connect_timeout", "read_timeout",
        ]
    )]
    pub target: Option<PathBuf>,
    /// With --target: replace files that already exist (they keep their mode).
    #[arg(long, conflicts_with = "to")]
    pub overwrite: bool,
    /// Load the keys into this live Redis instead: redis://[user[:password]@]host[:port][/db],
    /// rediss://... for TLS, unix:///path/redis.sock[?db=N] (also redis+unix://); or name the
    /// server with -h/-p or --sentinel. Password also from REDISCLI_AUTH. Without /db every key
    /// goes to its own db; /db (or -n) is where the keys of one db go: the one --db selects, or
    /// the snapshot's only one.
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// With --to: restore the keys of db FROM into db TO (repeatable; other dbs keep their number).
    #[arg(long = "map-db", value_name = "FROM:TO", value_parser = dbmap::parse_pair, requires = "live_target")]
    pub map_db: Vec<(u64, u64)>,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
    /// With --to: load every key (or use --keys PATTERN).
    #[arg(long, requires = "live_target", conflicts_with = "keys")]
    pub all: bool,
    /// With --to: overwrite keys that already exist on the target.
    #[arg(long, requires = "live_target")]
    pub replace: bool,
    /// With --to: leave keys that already exist on the target alone (resumes a stopped restore).
    #[arg(long, requires = "live_target", conflicts_with = "replace")]
    pub skip_existing: bool,
    /// With --to: only show what would be loaded and what would conflict.
    #[arg(long, requires = "live_target")]
    pub dry_run: bool,
    /// With --to --all: the snapshot's function libraries: append (refused if the target has a
    /// library of the same name), replace (overwrite those), skip (leave them out).
    #[arg(long, value_enum, value_name = "HOW", default_value = "append", requires = "live_target")]
    pub functions: Functions,
    /// With --to: connections to write through at once (keys spread over them by hash slot).
    /// Two by default: Redis executes commands on one thread, and a second connection keeps
    /// it busy while the first one's replies are read; more only add switching.
    #[arg(long, value_name = "N", default_value_t = 2, requires = "live_target", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub connections: u64,
    /// With --to: the server is a node of a Redis Cluster: write each key to the master of
    /// its hash slot (one connection per master; MOVED and ASK are followed).
    #[arg(long, requires = "live_target")]
    pub cluster: bool,
    /// With --to: keys per pipelined batch.
    #[arg(long, default_value_t = 1000, requires = "live_target", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// With --target: only keys of this type; like --keys and --db, writes a new RDB of the selected keys.
    #[arg(long = "type", value_name = "TYPE", conflicts_with_all = ["to", "redis_host", "redis_port", "sentinel"])]
    pub kind: Option<String>,
    /// With --target: write this RDB version (6 to 12, or 80 for Valkey 9), for an older or other server.
    #[arg(long, value_name = "N", conflicts_with_all = ["to", "redis_host", "redis_port", "sentinel"])]
    pub rdb_version: Option<u16>,
    /// With --target: worker threads (default: one per core).
    #[arg(long, conflicts_with = "to")]
    pub threads: Option<usize>,
    /// With --target FILE: read each pack once and write the file out of order (pack), or
    /// write it front to back (output); default: pack on S3/SFTP, output on a local disk.
    #[arg(long, value_enum, value_name = "ORDER", conflicts_with = "to")]
    pub order: Option<Order>,
    /// With --target: MiB of index a restore may hold in memory; a larger file's chunks are
    /// found by a join on disk beside the target instead (about 170 bytes per chunk, unlinked).
    #[arg(long, env = "RDBVAULT_INDEX_MEMORY", value_name = "MIB", default_value_t = 64, conflicts_with = "to")]
    pub index_memory: u64,
    #[command(flatten)]
    pub redis: RedisArgs,
}

/// `--order`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Pack,
    Output,
}

/// `--functions`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Functions {
    Append,
    Replace,
    Skip,
}

impl From<Functions> for FunctionPolicy {
    fn from(f: Functions) -> Self {
        match f {
            Functions::Append => FunctionPolicy::Append,
            Functions::Replace => FunctionPolicy::Replace,
            Functions::Skip => FunctionPolicy::Skip,
        }
    }
}

pub fn run(g: &Global, a: RestoreArgs) -> anyhow::Result<()> {
    if let Some(at) = &a.at {
        return super::restore_at::run(g, &a, at);
    }
    if a.to.is_some() || a.redis.names_server() {
        return to_redis(g, &a);
    }
    let Some(target) = a.target.clone() else { bail!("give --target PATH or --to URL") };
    if a.keys.any() || a.kind.is_some() || a.rdb_version.is_some() {
        return super::extract::run(g, &a, &target);
    }
    let repo = open_repo_for_index(g)?;
    let _lock = super::read_lock(g, &repo)?;
    if let Some(group) = &a.group {
        if !a.filter.is_empty() {
            bail!("--group restores every snapshot of a group: --host, --tag and --source do not apply");
        }
        return run_group(g, &repo, group, &target, &a);
    }
    let Some(spec) = &a.snapshot else { anyhow::bail!("give a snapshot (or latest) or --group") };
    let (id, snap, held) = super::find_with_index(&repo, spec, &a.filter, a.index_memory << 20)?;
    let blobs = held.blobs(&repo)?;
    let to_stdout = target.as_os_str() == "-";
    let mut opts = RestoreOptions {
        progress: output::progress(Some(snap.size()), g.quiet || to_stdout, g.json, "restore"),
        overwrite: a.overwrite,
        pack_order: a.order.map(|o| o == Order::Pack),
        ..RestoreOptions::default()
    };
    if let Some(t) = a.threads {
        opts.threads = t;
    }
    let started = std::time::Instant::now();
    let result = if to_stdout {
        let stdout = std::io::stdout();
        let mut lock = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        let r = restore::restore_to_writer(&blobs, &snap, &mut lock, &opts);
        let r = r.and_then(|()| lock.flush().map_err(|e| rdbvault::Error::io("write stdout", e)));
        // A reader that went away (`| head -c 100`) is not a damaged restore: main exits quietly.
        r.map(|()| Vec::new()).map_err(|e| if broken_pipe(&e) { e } else { target::unusable("standard output", e) })
    } else {
        restore::restore_to_path(&blobs, &snap, &target, &opts)
    };
    if let Some(pb) = &opts.progress {
        pb.finish_and_clear();
    }
    let paths = result?;
    let secs = started.elapsed().as_secs_f64();
    if g.json {
        return output::print_json(&serde_json::json!({
            "snapshot_id": id.to_hex(),
            "files": paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "bytes": snap.size(),
            "duration_ms": (secs * 1000.0) as u64,
            "retries": super::retries(),
        }));
    }
    if !g.quiet && !to_stdout {
        for p in &paths {
            println!("restored {}", p.display());
        }
        println!("snapshot {}: {} in {secs:.2} s, verified", id.short(), output::bytes(snap.size()));
    }
    Ok(())
}

/// A write to standard output whose reader went away.
fn broken_pipe(e: &rdbvault::Error) -> bool {
    matches!(e, rdbvault::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
}

/// `restore --to URL`: loads keys into a live server with pipelined RESTORE.
fn to_redis(g: &Global, a: &RestoreArgs) -> anyhow::Result<()> {
    let server = a.redis.server(a.to.as_deref())?;
    let addr = server.addr();
    if !a.all && a.keys.keys.is_none() {
        bail!("say which keys to load into {addr}: --keys PATTERN or --all");
    }
    let connect = a.redis.connect_options()?;
    let mut target = if a.cluster {
        if server.socket.is_some() {
            bail!("--cluster finds the masters over TCP: give a node's redis://host:port");
        }
        if server.db.is_some_and(|d| d != 0) {
            bail!("{addr} is a Redis Cluster node and a cluster has db 0 only: drop /N from the URL");
        }
        LoadTarget::cluster(&server, &connect)?
    } else {
        LoadTarget::server(&server, &connect, a.connections as usize)?
    };
    let url_db = if a.cluster && a.map_db.is_empty() { Some(0) } else { server.db.map(u64::from) };
    let opts = LoadOptions {
        filter: a.keys.filter(None)?,
        replace: a.replace,
        skip_existing: a.skip_existing,
        dry_run: a.dry_run,
        functions: a.functions.into(),
        batch_keys: a.batch as usize,
        progress: output::key_progress(g.quiet || a.dry_run, g.json, "restore"),
        ..LoadOptions::default()
    };
    let load_one = |blobs: &restore::Blobs<'_>, snap: &Snapshot, target: &mut LoadTarget, opts: &LoadOptions| {
        let db_map = DbMap::for_restore(url_db, &a.map_db, a.keys.db, snapshot_dbs(snap).as_deref()).map_err(|e| {
            if a.cluster {
                anyhow::anyhow!("{addr} is a Redis Cluster, which has db 0 only, and the snapshot holds keys in several dbs: choose the db to restore with --db N")
            } else {
                anyhow::Error::msg(e)
            }
        })?;
        let opts = LoadOptions { db_map, ..opts.clone() };
        anyhow::Ok(load::load_to(blobs, snap, target, &opts)?)
    };
    let report = if let Some(group) = &a.group {
        if !a.filter.is_empty() {
            bail!("--group restores every snapshot of a group: --host, --tag and --source do not apply");
        }
        let repo = open_repo_for_index(g)?;
        let _lock = super::read_lock(g, &repo)?;
        let found = rdbvault::format::snapshot::find_group(&repo, group)?;
        super::warn_skipped(&found.unreadable);
        let index = super::load_index(&repo)?;
        let blobs = restore::Blobs::new(&repo, &index)?;
        let mut total = LoadReport::default();
        let mut opts = opts.clone();
        for (_, snap) in &found.snapshots {
            let r = load_one(&blobs, snap, &mut target, &opts);
            add_report(&mut total, r?);
            // Every shard of a cluster backup holds the same function libraries: load them once.
            opts.functions = FunctionPolicy::Skip;
        }
        Ok(total)
    } else {
        let Some(spec) = a.snapshot.as_deref() else { bail!("--to restores one snapshot; give its id or latest") };
        with_blobs_for(g, &[spec], &a.filter, Some(&opts.filter), |snaps, blobs| load_one(blobs, &snaps[0].1, &mut target, &opts))
    };
    if let Some(pb) = &opts.progress {
        pb.finish_and_clear();
    }
    let report = report?;
    if g.json {
        return output::print_json(&report);
    }
    if !g.quiet {
        print_load(&addr, &report);
    }
    Ok(())
}

/// Adds the report of one snapshot of a group to the group's.
fn add_report(total: &mut LoadReport, r: LoadReport) {
    total.rdb_version = r.rdb_version;
    total.dry_run = r.dry_run;
    total.connections = r.connections;
    total.restored += r.restored;
    total.skipped_expired += r.skipped_expired;
    total.skipped_existing += r.skipped_existing;
    for (db, n) in r.per_db {
        *total.per_db.entry(db).or_default() += n;
    }
    total.first_keys.extend(r.first_keys.into_iter().take(10usize.saturating_sub(total.first_keys.len())));
    total.conflicts += r.conflicts;
    total.conflict_keys.extend(r.conflict_keys.into_iter().take(20usize.saturating_sub(total.conflict_keys.len())));
    total.functions.extend(r.functions);
    total.function_conflicts.extend(r.function_conflicts);
    for (t, n) in r.module_types {
        *total.module_types.entry(t).or_default() += n;
    }
    total.payload_bytes += r.payload_bytes;
    total.duration_ms += r.duration_ms;
}

/// The dbs the snapshot holds keys in, from the facts recorded at backup (`None` if unknown).
fn snapshot_dbs(snap: &Snapshot) -> Option<Vec<u64>> {
    let facts = snap.redis.as_ref().filter(|r| r.rdb_error.is_none())?;
    if facts.keys_per_db.is_empty() && facts.keys != Some(0) {
        return None;
    }
    Some(facts.keys_per_db.iter().filter(|(_, n)| **n > 0).map(|(db, _)| u64::from(*db)).collect())
}

fn print_load(addr: &str, r: &LoadReport) {
    let keys = |n: u64| output::plural(n, "key");
    if !r.functions.is_empty() {
        let what = if r.functions.len() == 1 { "function library" } else { "function libraries" };
        println!("{} {what} {}", if r.dry_run { "would restore" } else { "restored" }, r.functions.join(", "));
        if !r.function_conflicts.is_empty() {
            println!("{} of them already exist (use --functions replace or skip): {}", r.function_conflicts.len(), r.function_conflicts.join(", "));
        }
    }
    if r.restored == 0 && r.skipped_existing == 0 {
        match r.skipped_expired {
            0 => println!("no keys to restore into {addr}: none matched"),
            1 => println!("1 key matched but its TTL had passed; nothing restored into {addr}"),
            n => println!("{n} keys matched but their TTLs had passed; nothing restored into {addr}"),
        }
        return;
    }
    let per_db = r.per_db.iter().map(|(db, n)| format!("db {db}: {n}")).collect::<Vec<_>>().join(", ");
    let names = |l: &[rdbvault::redis::keyscan::KeyRef]| l.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ");
    if r.dry_run {
        println!("would restore {} into {addr} ({per_db}), RDB version {}", keys(r.restored), r.rdb_version);
        println!("first keys: {}", names(&r.first_keys));
        if r.conflicts > 0 {
            println!("{} of them already exist (use --replace): {}", r.conflicts, names(&r.conflict_keys));
        }
    } else {
        let secs = r.duration_ms as f64 / 1000.0;
        // A rate says something only over a second or more and more than one key.
        let rate = if secs >= 1.0 && r.restored > 1 { format!(", {:.0} keys/s", r.restored as f64 / secs) } else { String::new() };
        let over = if r.connections > 1 { format!(" over {} connections", r.connections) } else { String::new() };
        println!("restored {} into {addr} ({per_db}) in {secs:.2} s{rate}{over}", keys(r.restored));
    }
    if r.skipped_existing > 0 {
        println!("skipped {} that already exist on {addr} (--skip-existing)", keys(r.skipped_existing));
    }
    match r.skipped_expired {
        0 => {}
        1 => println!("skipped 1 key whose TTL had passed"),
        n => println!("skipped {n} keys whose TTLs had passed"),
    }
}

/// Restores every snapshot of a group into one directory.
fn run_group(g: &Global, repo: &rdbvault::store::Repository, spec: &str, target: &std::path::Path, a: &RestoreArgs) -> anyhow::Result<()> {
    let found = rdbvault::format::snapshot::find_group(repo, spec)?;
    super::warn_skipped(&found.unreadable);
    let snaps = found.snapshots;
    if target.as_os_str() == "-" {
        anyhow::bail!("a group restores to a directory, not to stdout");
    }
    target::directory(target)?;
    // Every snapshot's files are checked before the first is written.
    for (_, snap) in &snaps {
        target::plan(snap, target, a.overwrite)?;
    }
    let files: Vec<_> = snaps.iter().flat_map(|(_, s)| s.files.iter().cloned()).collect();
    let index = super::load_index_for(repo, &files)?;
    let blobs = restore::Blobs::new(repo, &index)?;
    let total = snaps.iter().fold(0u64, |t, (_, s)| t.saturating_add(s.size()));
    let mut opts = RestoreOptions {
        progress: output::progress(Some(total), g.quiet, g.json, "restore"),
        overwrite: a.overwrite,
        pack_order: a.order.map(|o| o == Order::Pack),
        ..RestoreOptions::default()
    };
    if let Some(t) = a.threads {
        opts.threads = t;
    }
    let mut done = Vec::new();
    for (id, snap) in &snaps {
        match restore::restore_to_path(&blobs, snap, target, &opts) {
            Ok(paths) => done.push((id, paths)),
            Err(e) => {
                if let Some(pb) = &opts.progress {
                    pb.finish_and_clear();
                }
                return Err(e.into());
            }
        }
    }
    if let Some(pb) = &opts.progress {
        pb.finish_and_clear();
    }
    if g.json {
        return output::print_json(&serde_json::json!({
            "group": snaps.first().and_then(|(_, s)| s.group.clone()),
            "snapshots": done.iter().map(|(id, paths)| serde_json::json!({
                "snapshot_id": id.to_hex(),
                "files": paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "bytes": total,
        }));
    }
    if !g.quiet {
        for (id, paths) in &done {
            for p in paths {
                println!("restored {} from snapshot {}", p.display(), id.short());
            }
        }
        println!("{} snapshots, {} verified", done.len(), output::bytes(total));
    }
    Ok(())
}
