//! Command-line definitions and dispatch (the only place `anyhow` is used).

mod backup;
mod cat;
mod check;
mod config;
mod copy;
mod diff;
mod export;
mod extract;
mod filter;
mod follow;
mod forget;
mod init;
mod inspect;
mod key;
mod keys;
pub mod log;
mod merge;
mod output;
mod password;
mod profile;
mod prune;
mod redis_args;
mod repair;
mod restore;
mod restore_at;
#[cfg(feature = "web")]
mod serve;
mod snapshots;
mod stats;
mod tag;
mod timeline;
mod unlock;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use rdbvault::crypto::Id;
use rdbvault::format::index::Index;
use rdbvault::store::lock::{Lock, LockGuard};
use rdbvault::store::keycache::KeyCache;
use rdbvault::store::{Backend, FileKind, Location, Repository};
use rdbvault::engine::restore::Blobs;
use rdbvault::format::snapshot::{Snapshot, Unreadable};

/// Encrypted, deduplicated, incremental backups of Redis databases.
#[derive(Parser, Debug)]
#[command(name = "rdbvault", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// Repository location: a directory, s3:[http[s]://]HOST/BUCKET/PREFIX, sftp:USER@HOST:PATH
    /// or sftp://USER@HOST:PORT/PATH (credentials from AWS_* / ~/.aws and ssh's own config).
    #[arg(short = 'r', long = "repo", env = "RDBVAULT_REPOSITORY", global = true)]
    pub repo: Option<String>,
    /// Read the repository password from this file (first line).
    #[arg(long, env = "RDBVAULT_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Run this shell command and use the first line it prints as the password.
    #[arg(long, env = "RDBVAULT_PASSWORD_COMMAND", global = true)]
    pub password_command: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors; no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// When the repository is locked, keep retrying this long (e.g. 30s, 5m, 1h).
    #[arg(long, global = true, value_parser = parse_wait, value_name = "DURATION")]
    pub retry_lock: Option<std::time::Duration>,
    /// Do not lock the repository (commands that only read it: snapshots, restore, inspect,
    /// diff, stats, check); for read-only mounts. A concurrent prune may then remove data
    /// the command reads.
    #[arg(long, global = true)]
    pub no_lock: bool,
    /// Do not keep or use the local cache of a network repository's index and snapshot
    /// files ($XDG_CACHE_HOME/rdbvault, default ~/.cache/rdbvault).
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// The config file (default: $XDG_CONFIG_HOME/rdbvault/config.toml).
    #[arg(long, env = "RDBVAULT_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Take the repository, password source, source and flags from this profile of the
    /// config file (flags and environment variables given win).
    #[arg(long, env = "RDBVAULT_PROFILE", global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// How to write messages on standard error: text, or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `--log-format` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository.
    Init(init::InitArgs),
    /// Back up an RDB file, stdin, a live Redis server or cluster, or an AOF directory.
    Backup(backup::BackupArgs),
    /// List snapshots.
    Snapshots(snapshots::SnapshotsArgs),
    /// Restore a snapshot to a file, a directory, stdout, or into a live Redis (--to).
    Restore(restore::RestoreArgs),
    /// Follow a live server as a replica: a base snapshot, then its write stream as a log (point-in-time restore).
    Follow(follow::FollowArgs),
    /// What the log of each followed server covers: bases, restorable time ranges, gaps.
    Timeline(timeline::TimelineArgs),
    /// Show what a snapshot's RDB holds: summary, keys (--json), memory report (--memory).
    Inspect(inspect::InspectArgs),
    /// Keys added, removed and changed between two snapshots.
    Diff(diff::DiffArgs),
    /// Write one RDB holding the keys of several snapshots.
    Merge(merge::MergeArgs),
    /// Write a snapshot's keys as JSON lines, CSV, Redis commands (RESP) or key names.
    Export(export::ExportArgs),
    /// Show sizes, deduplication and compression ratios, or the sizes of chosen snapshots (--mode).
    Stats(stats::StatsArgs),
    /// Remove snapshots by id, or according to a retention policy.
    Forget(forget::ForgetArgs),
    /// Add, remove or replace the tags of snapshots.
    Tag(tag::TagArgs),
    /// Delete data no snapshot needs and repack partly used packs.
    Prune(prune::PruneArgs),
    /// Verify the repository's structure and, optionally, every byte of data.
    Check(check::CheckArgs),
    /// Copy snapshots to another repository (any backends); only data it lacks is stored.
    Copy(copy::CopyArgs),
    /// Manage passwords (key files).
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Print a repository file as decrypted JSON, for debugging (never key material: the
    /// config's id key and a key file's sealed master key are shown as hidden).
    Cat(cat::CatArgs),
    /// Remove stale locks (or all locks).
    Unlock(unlock::UnlockArgs),
    /// Rebuild damaged repository metadata.
    #[command(subcommand)]
    Repair(repair::RepairCommand),
    /// Check or show the config file; hash a password for its [serve] section.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Serve the web UI and HTTP API (127.0.0.1:8077 by default).
    #[cfg(feature = "web")]
    Serve(serve::ServeArgs),
}

/// What every command's `--help` ends with: the environment it reads and how it exits.
const HELP_FOOTER: &str = "\
Environment:
  RDBVAULT_REPOSITORY        the repository (-r)
  RDBVAULT_PASSWORD_FILE     file holding the repository password (--password-file)
  RDBVAULT_PASSWORD_COMMAND  command printing the repository password (--password-command)
  RDBVAULT_PASSWORD          the repository password itself (visible to the same user's processes)
  RDBVAULT_CONFIG            the config file (--config)
  RDBVAULT_PROFILE           the profile of the config file to use (--profile)
  REDISCLI_AUTH              the Redis password, as redis-cli takes it
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE, AWS_REGION
                             credentials for s3: repositories (also ~/.aws/credentials)
  XDG_CACHE_HOME             where network repositories are cached (default ~/.cache)

Exit codes:
  0 success, 1 error, 2 an option misused (and `diff --exit-code`: differences = 1, errors >= 2),
  3 wrong password, 10 no repository at that location";

/// Parses the command line, every command's help ending with [`HELP_FOOTER`].
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let cmd = Cli::command().after_long_help(HELP_FOOTER).mut_subcommands(|c| c.after_long_help(HELP_FOOTER));
    Cli::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit())
}

/// Runs one command.
pub fn run(mut cli: Cli) -> anyhow::Result<()> {
    profile::apply(&mut cli)?;
    let mut g = cli.global;
    // Repairs read the repository itself, never a copy of it.
    g.no_cache |= matches!(cli.command, Command::Repair(_));
    // `check` names foreign entries itself.
    let warn_skipped = !g.quiet && !matches!(cli.command, Command::Check(_));
    let result = match cli.command {
        Command::Init(a) => init::run(&g, a),
        Command::Backup(a) => backup::run(&g, a),
        Command::Snapshots(a) => snapshots::run(&g, a),
        Command::Restore(a) => restore::run(&g, a),
        Command::Follow(a) => follow::run(&g, a),
        Command::Timeline(a) => timeline::run(&g, a),
        Command::Inspect(a) => inspect::run(&g, a),
        Command::Diff(a) => diff::run(&g, a),
        Command::Export(a) => export::run(&g, a),
        Command::Merge(a) => merge::run(&g, a),
        Command::Stats(a) => stats::run(&g, a),
        Command::Tag(a) => tag::run(&g, a),
        Command::Cat(a) => cat::run(&g, a),
        Command::Forget(a) => forget::run(&g, a),
        Command::Prune(a) => prune::run(&g, a),
        Command::Check(a) => check::run(&g, a),
        Command::Copy(a) => copy::run(&g, a),
        Command::Key(c) => key::run(&g, c),
        Command::Unlock(a) => unlock::run(&g, a),
        Command::Repair(c) => repair::run(&g, c),
        Command::Config(c) => config::run(&g, c),
        #[cfg(feature = "web")]
        Command::Serve(a) => serve::run(&g, a),
    };
    if warn_skipped {
        for w in rdbvault::store::local::take_skipped() {
            eprintln!("warning: {w}");
        }
    }
    result
}

/// The repository location, from `-r` or `RDBVAULT_REPOSITORY`.
fn repo_location(g: &Global) -> anyhow::Result<Location> {
    let s = g.repo.as_deref().ok_or_else(|| anyhow::anyhow!("no repository given: use -r PATH or set RDBVAULT_REPOSITORY"))?;
    Ok(Location::parse(s)?)
}

/// The backend of an existing repository; fails before asking for a password if there is none.
fn repo_backend(g: &Global) -> anyhow::Result<Arc<dyn Backend>> {
    let backend = repo_location(g)?.open()?;
    if !backend.exists(FileKind::Config, "config")? {
        return Err(rdbvault::Error::NotARepository(backend.location()).into());
    }
    Ok(backend)
}

/// Opens the repository with the password from the usual sources.
fn open_repo(g: &Global) -> anyhow::Result<Repository> {
    open_repo_with(g, false)
}

/// Opens the repository for a command that reads the whole index: the disk
/// fetches the index files while the password's key is derived.
fn open_repo_for_index(g: &Global) -> anyhow::Result<Repository> {
    open_repo_with(g, true)
}

fn open_repo_with(g: &Global, index: bool) -> anyhow::Result<Repository> {
    let location = repo_location(g)?;
    // Over the network, the password's key is derived from a cached key file while the key
    // files are listed.
    let keys = match (&location, g.no_cache) {
        (Location::Local(_), _) | (_, true) => None,
        _ => rdbvault::store::cache::default_dir().map(|dir| KeyCache::new(&dir, &location.display())),
    };
    // Opening says "not a repository" itself; the early probe only spares a prompt.
    let backend = if password::at_hand(g) { location.open()? } else { repo_backend(g)? };
    let pw = password::get(g, false)?;
    if index {
        // Asking the kernel for each file takes a few milliseconds: the key need not wait.
        let backend = backend.clone();
        std::thread::spawn(move || backend.prefetch(FileKind::Index));
    }
    with_cache(g, &location, Repository::open_cached(backend, pw.as_bytes(), keys.as_ref())?)
}

/// The repository reading index and snapshot files through the local cache, unless
/// `--no-cache` or it is on local disk (where the cache would only be a second copy).
fn with_cache(g: &Global, location: &Location, repo: Repository) -> anyhow::Result<Repository> {
    if g.no_cache || matches!(location, Location::Local(_)) {
        return Ok(repo);
    }
    Ok(match rdbvault::store::cache::default_dir() {
        Some(dir) => repo.with_cache(&dir),
        None => repo,
    })
}

/// Takes a shared or exclusive lock for a command that writes the repository, waiting up
/// to `--retry-lock`.
fn lock(g: &Global, repo: &Repository, exclusive: bool) -> anyhow::Result<LockGuard> {
    if g.no_lock {
        anyhow::bail!(
            "--no-lock is only for commands that read the repository (snapshots, restore, inspect, diff, stats, check): this one writes it and must lock it"
        );
    }
    Ok(Lock::acquire(repo, exclusive, g.retry_lock.unwrap_or_default())?)
}

/// A shared lock for a command that only reads the repository: none with `--no-lock`, and
/// none (with a warning) when the repository cannot be written, so a read-only mount or a
/// full disk can still be restored from.
fn read_lock(g: &Global, repo: &Repository) -> anyhow::Result<Option<LockGuard>> {
    if g.no_lock {
        return Ok(None);
    }
    match Lock::acquire(repo, false, g.retry_lock.unwrap_or_default()) {
        Ok(guard) => Ok(Some(guard)),
        Err(rdbvault::Error::Io { context, source }) if cannot_write(&source) => {
            if !g.quiet {
                eprintln!(
                    "warning: cannot write a lock ({context}: {source}); going on without one: a prune running meanwhile could remove data this command reads (pass --no-lock to skip locking and this warning)"
                );
            }
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Errors that say the repository cannot take a new file (read-only, no permission, full).
fn cannot_write(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ReadOnlyFilesystem | PermissionDenied | StorageFull | QuotaExceeded | FileTooLarge)
}

/// Parses `30s`, `5m`, `1h` or plain seconds.
fn parse_wait(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 30s, 5m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m or h)")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// Opens the repository, finds the snapshots `specs` name, loads the index and
/// runs `f` with them and a blob reader.
fn with_blobs<T>(
    g: &Global,
    specs: &[&str],
    f: impl FnOnce(&[(Id, Snapshot)], &Blobs<'_>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    with_blobs_matching(g, specs, &filter::FilterArgs::default(), f)
}

/// [`with_blobs`] for snapshots that must match `--host`/`--tag`/`--source` (`latest`
/// is the newest that does).
fn with_blobs_matching<T>(
    g: &Global,
    specs: &[&str],
    filter: &filter::FilterArgs,
    f: impl FnOnce(&[(Id, Snapshot)], &Blobs<'_>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    with_blobs_for(g, specs, filter, None, f)
}

/// [`with_blobs_matching`] for a command that reads the keys `keys` selects: for exact key
/// names (no wildcard) of snapshots with a key index, the index files are searched for the
/// few blobs the key index leads to instead of being loaded whole. Damaged index files
/// fall back to the whole load (which reads pack headers instead, and warns).
fn with_blobs_for<T>(
    g: &Global,
    specs: &[&str],
    filter: &filter::FilterArgs,
    keys: Option<&rdbvault::redis::keyscan::KeyFilter>,
    f: impl FnOnce(&[(Id, Snapshot)], &Blobs<'_>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let repo = open_repo_for_index(g)?;
    let _lock = read_lock(g, &repo)?;
    let snaps = specs.iter().map(|s| find_snapshot_matching(&repo, s, filter)).collect::<anyhow::Result<Vec<_>>>()?;
    snaps.iter().try_for_each(|(id, snap)| not_a_segment(id, snap))?;
    let exact = keys.and_then(|k| k.pattern.as_ref()).is_some_and(|p| p.literal_prefix().1);
    let tops: Vec<Id> = snaps.iter().flat_map(|(_, s)| rdbvault::redis::keyindex::first_blobs(s)).collect();
    if exact && snaps.iter().all(|(_, s)| rdbvault::redis::keyindex::has_index(s)) {
        if let Ok(lookup) = rdbvault::engine::restore::Lookup::new(&repo, &tops) {
            return f(&snaps, &Blobs::few(&repo, Arc::new(lookup))?);
        }
    }
    let index = load_index(&repo)?;
    let blobs = Blobs::new(&repo, &index)?;
    f(&snaps, &blobs)
}

/// Network requests retried after a transient failure so far (for `--json` reports).
pub fn retries() -> u64 {
    #[cfg(any(feature = "s3", feature = "sftp"))]
    return rdbvault::store::object::retries();
    #[cfg(not(any(feature = "s3", feature = "sftp")))]
    0
}

/// Bytes (uploaded, downloaded) to network repositories so far, for progress bars.
pub fn transferred() -> (u64, u64) {
    #[cfg(any(feature = "s3", feature = "sftp"))]
    return rdbvault::store::object::transferred();
    #[cfg(not(any(feature = "s3", feature = "sftp")))]
    (0, 0)
}

/// Says on stderr how many network requests failed transiently and were retried.
pub fn report_retries(quiet: bool) {
    let n = retries();
    if n > 0 && !quiet {
        eprintln!("retried {n} requests after transient network errors");
    }
}

/// Finds a snapshot (`latest`, an id or a prefix) among those the filters match, warning
/// about the unreadable ones `latest` skipped.
fn find_snapshot_matching(repo: &Repository, spec: &str, filter: &filter::FilterArgs) -> anyhow::Result<(Id, Snapshot)> {
    let (found, skipped) = rdbvault::format::select::find(repo, spec, &filter.filter())?;
    warn_skipped(&skipped);
    Ok(found)
}

/// Refuses a log segment where a dataset snapshot is needed: alone it is a stretch of a
/// replication stream, only meaningful replayed over its base.
fn not_a_segment(id: &Id, snap: &Snapshot) -> anyhow::Result<()> {
    if snap.is_log_segment() {
        anyhow::bail!(
            "snapshot {} is a log segment of a followed server ({}): use `rdbvault restore --at TIME` (`rdbvault timeline` shows the times it covers)",
            id.short(),
            snap.source.name
        );
    }
    Ok(())
}

/// Names each unreadable snapshot a listing left out, on stderr (JSON on stdout stays clean).
fn warn_skipped(skipped: &[Unreadable]) {
    for u in skipped {
        eprintln!("warning: skipping {u}");
    }
}

/// Loads the index for reading snapshots; warns about damaged index files it worked around.
fn load_index(repo: &Repository) -> anyhow::Result<Index> {
    warn_damage(rdbvault::engine::restore::load_index(repo)?)
}

/// The index entries a restore of `files` needs (see `engine::restore::load_index_for`).
fn load_index_for(repo: &Repository, files: &[rdbvault::format::snapshot::SnapshotFile]) -> anyhow::Result<Index> {
    warn_damage(rdbvault::engine::restore::load_index_for(repo, files)?)
}

/// What a restore finds blobs through: the index entries it needs, in memory, or (a file
/// too large for that) the chunk lists and dictionaries only, its chunks found by a join on disk.
enum Held {
    Index(Index),
    Spill(Arc<rdbvault::engine::restore::Lookup>),
}

impl Held {
    fn blobs<'a>(&'a self, repo: &'a Repository) -> rdbvault::Result<Blobs<'a>> {
        match self {
            Held::Index(index) => Blobs::new(repo, index),
            Held::Spill(lookup) => Blobs::spilling(repo, lookup.clone()),
        }
    }
}

/// Keeps glibc's mmap threshold at 256 KiB for backups and spilling restores: by default
/// glibc raises it to the largest block freed (up to 32 MiB), after which each thread's
/// arena keeps the large buffers it had (index files, chunk lists, read windows, frames): a
/// 10 GiB restore then peaked at 130 MB instead of 86, a 10 GiB backup at 159 MB instead of
/// 97 (docs/benchmarks.md, thirteenth and fourteenth rounds), at the same speed.
pub(crate) fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: sets a malloc tuning parameter; no memory is touched.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}

/// Finds the snapshot `spec` names while the index files are listed (on object storage
/// the two listings share a round trip), then loads the index entries its restore needs,
/// or, when they would take more than `memory` bytes, prepares a restore that spills.
fn find_with_index(repo: &Repository, spec: &str, filter: &filter::FilterArgs, memory: u64) -> anyhow::Result<(Id, Snapshot, Held)> {
    let (found, listed) = std::thread::scope(|scope| {
        let listing = scope.spawn(|| repo.backend().list(FileKind::Index));
        let found = find_snapshot_matching(repo, spec, filter);
        (found, listing.join().unwrap_or_else(|_| Err(rdbvault::Error::Invalid("listing the index files panicked".into()))))
    });
    let (id, snap) = found?;
    not_a_segment(&id, &snap)?;
    let listed = listed?;
    if rdbvault::engine::restore::index_bytes_for(&listed, &snap.files) > memory {
        fixed_mmap_threshold();
        // Damaged index files fail the search: the load below works around them, and warns.
        if let Ok(lookup) = rdbvault::engine::restore::Lookup::new(repo, &[]) {
            return Ok((id, snap, Held::Spill(Arc::new(lookup))));
        }
    }
    let index = warn_damage(rdbvault::engine::restore::load_index_for_listed(repo, &snap.files, listed)?)?;
    Ok((id, snap, Held::Index(index)))
}

/// Says on stderr what loading the index worked around.
fn warn_damage((index, damage): (Index, rdbvault::engine::restore::IndexDamage)) -> anyhow::Result<Index> {
    for (_, e) in &damage.index_files {
        eprintln!("warning: {e}");
    }
    if !damage.index_files.is_empty() {
        eprintln!("warning: indexed {} packs no readable index file names from their own headers", damage.packs_read);
    }
    for (pack, why) in &damage.unreadable_packs {
        eprintln!("warning: {pack}: header cannot be read: {why}");
    }
    Ok(index)
}

/// One line for the user: the error and its causes.
pub fn describe(e: &anyhow::Error) -> String {
    let mut s = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
    }
    s
}

/// Exit codes: 1 for errors (2 once [`errors_exit_above_1`]), 3 for a wrong password,
/// 10 for a missing repository.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<rdbvault::Error>() {
        Some(rdbvault::Error::WrongPassword(_)) => 3,
        Some(rdbvault::Error::NotARepository(_)) => 10,
        _ if ERRORS_ABOVE_1.load(std::sync::atomic::Ordering::Relaxed) => 2,
        _ => 1,
    }
}

/// Set by a command whose status 1 means a result (`diff --exit-code`), not an error.
static ERRORS_ABOVE_1: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes errors exit with 2 or more, so status 1 is left to the command's own result.
fn errors_exit_above_1() {
    ERRORS_ABOVE_1.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// A result reported only by the exit status (`diff --exit-code` found differences).
#[derive(Debug)]
pub struct Status(pub u8);

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Status {}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
