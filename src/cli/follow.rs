//! `rdbvault follow`: keep a replica connection and store the write stream as log segments.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;

use rdbvault::engine::backup::BackupOptions;
use rdbvault::redis::follow::replica::{self, Event, FollowOptions};
use rdbvault::redis::follow::timeline::rfc3339;

use super::redis_args::RedisArgs;
use super::{open_repo_for_index, output, Global};

#[derive(clap::Args, Debug)]
pub struct FollowArgs {
    /// The server to follow: redis://[user[:password]@]host[:port] or rediss://... (its ACL user
    /// needs +psync and +replconf); or name it with -h/-p or --sentinel instead.
    #[arg(required_unless_present_any = ["redis_host", "redis_port", "sentinel"])]
    pub url: Option<String>,
    /// Commit the buffered stream at least this often (e.g. 1s, 500ms, 1m); a crash loses at most this much.
    #[arg(long, default_value = "1s", value_parser = parse_interval, value_name = "DURATION")]
    pub commit_interval: Duration,
    /// Merge this many committed segments into one segment and one index file, so a long
    /// run leaves about 2 objects per N commits besides its packs (at least 2).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(2..), value_name = "N")]
    pub compact_every: u64,
    /// Take a new base snapshot (a full sync) once the current one is this old (e.g. 24h),
    /// so `forget` and `prune` can drop old chains.
    #[arg(long, value_parser = parse_interval, value_name = "DURATION")]
    pub base_every: Option<Duration>,
    /// zstd level for new data (0 = no compression; 1-22). At the default 3, a frame that follows
    /// one that compressed less than 2:1 takes zstd's faster single-table search.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(0..=22))]
    pub compression: i32,
    /// Tag the base snapshots and segments (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    // --read-timeout here: seconds without data from the master (it pings every 10 s) before reconnecting.
    #[command(flatten)]
    pub redis: RedisArgs,
}

/// Set by SIGTERM / SIGINT: commit what is buffered and exit 0.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Installs the stop handler (no SA_RESTART: a blocked read returns at once).
fn catch_stop_signals() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

pub fn run(g: &Global, a: FollowArgs) -> anyhow::Result<()> {
    // Runs for days: freed 16 MiB buffers must go back to the system.
    rdbvault::host::return_large_buffers();
    let url = a.redis.server(a.url.as_deref())?;
    let repo = open_repo_for_index(g)?;
    let _lock = super::lock(g, &repo, false)?;
    let opts = FollowOptions {
        connect: a.redis.connect_options()?,
        commit_interval: a.commit_interval,
        backup: BackupOptions { zstd_level: a.compression, tags: a.tags.clone(), threads: 2, ..BackupOptions::default() },
        max_buffer: 16 << 20,
        compact_every: a.compact_every as usize,
        base_every: a.base_every,
        sentinel: a.redis.sentinel.clone().zip(a.redis.master_name.clone()),
    };
    catch_stop_signals();
    let addr = opts.log_name(&url);
    let (quiet, json) = (g.quiet, g.json);
    let mut on = |e: Event<'_>| match e {
        Event::Base { id, snap, offset, gap_from_ms, scheduled } => {
            match gap_from_ms {
                Some(from) if scheduled => {
                    if !quiet && !json {
                        println!("new base (--base-every): no log from {} until this new base", rfc3339(from));
                    }
                }
                Some(from) => eprintln!("warning: {addr} answered with a full resync: no log from {} until this new base", rfc3339(from)),
                None => {}
            }
            if !quiet && !json {
                println!("base snapshot {} saved: full sync of {addr} at offset {offset} ({})", id.short(), output::bytes(snap.size()));
            }
        }
        Event::Resumed { offset, replid } => {
            if !quiet && !json {
                println!("resumed {addr} at offset {offset} (partial resync of {replid}, no gap)");
            }
        }
        Event::Lost { error } => eprintln!("warning: {error}; reconnecting"),
        Event::Master { addr: at } => {
            if !quiet && !json {
                println!("following {addr} at {at} (master named by the sentinel)");
            }
        }
        Event::Compacted { segments, id, info } => {
            if !quiet && !json {
                println!("merged {segments} log segments into {} (offsets {}..{})", id.short(), info.start, info.end);
            }
        }
    };
    let pos = replica::follow(&repo, &url, &opts, &STOP, &mut on).with_context(|| format!("follow {addr}"))?;
    let Some(pos) = pos else { return Ok(()) };
    if json {
        return output::print_json(&serde_json::json!({
            "server": addr,
            "base": pos.base,
            "replid": pos.replid,
            "offset": pos.offset,
            "covered_to": rfc3339(pos.end_ms),
        }));
    }
    if !quiet {
        println!("stopped: log of {addr} committed up to offset {} (covers until {})", pos.offset, rfc3339(pos.end_ms));
    }
    Ok(())
}

/// Parses `1s`, `500ms`, `2m`.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = super::timeline::parse_duration(s)?;
    if d.is_zero() {
        return Err("the interval must be positive".into());
    }
    Ok(d)
}
