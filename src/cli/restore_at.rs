//! `rdbvault restore --at TIME`: a followed server as it was at TIME (base + log cut at TIME).

use anyhow::bail;

use rdbvault::engine::restore::Blobs;
use rdbvault::format::snapshot::Listing;
use std::path::Path;

use rdbvault::redis::follow::keys_at::KeySelect;
use rdbvault::redis::follow::restore_at::{self, LogReport};
use rdbvault::redis::follow::timeline::{self, rfc3339};
use rdbvault::redis::follow::{aof_at, replay, FollowError};
use rdbvault::redis::load::{self, LoadOptions};
use rdbvault::redis::source::command;

use super::restore::RestoreArgs;
use super::{open_repo_for_index, output, Global};

pub fn run(g: &Global, a: &RestoreArgs, at: &str) -> anyhow::Result<()> {
    if a.keys.db.is_some() || a.keys.min_bytes.is_some() || a.kind.is_some() {
        bail!("--at restores keys by name only: --db, --min-bytes and --type do not apply (use --keys / --not-keys)");
    }
    let keys = a.keys.any().then(|| a.keys.filter(None)).transpose()?.map(|filter| KeySelect {
        filter,
        pattern: a.keys.keys.clone().unwrap_or_else(|| "*".into()).into_bytes(),
    });
    let at_ms = super::timeline::parse_at(at)?;
    let repo = open_repo_for_index(g)?;
    let _lock = super::read_lock(g, &repo)?;
    let listing = Listing::load(&repo)?;
    super::warn_skipped(&listing.unreadable);
    let servers = timeline::load(&listing);
    let index = super::load_index(&repo)?;
    let blobs = Blobs::new(&repo, &index)?;
    let started = std::time::Instant::now();
    let followed = timeline::pick(&servers, a.server.as_deref()).and_then(|(addr, server)| Ok((addr, timeline::cut_at(server, addr, at_ms)?)));
    let (addr, cut) = match followed {
        Ok(found) => found,
        // No followed log holds TIME: an AOF snapshot with timestamps may.
        Err(e) => match aof_at::pick(&blobs, &listing, a.server.as_deref(), at_ms)? {
            Some((id, snap)) => {
                if keys.is_some() {
                    bail!("restore --at from an AOF snapshot ({}) restores the whole server: --keys applies to a followed log only", id.short());
                }
                if a.to.is_some() || a.redis.names_server() {
                    bail!("restore --at from an AOF snapshot ({}) writes --target DIR or --target FILE.rdb, not a live server", id.short());
                }
                let (log, dest, hint) = to_target(a, &mut |dir| aof_at::write_dir(&blobs, &snap, at_ms, dir))?;
                let what = format!("AOF snapshot {} of {} cut after #TS:{}", id.short(), snap.source.name, at_ms / 1000);
                return report(g, &snap.source.name, at_ms, &what, &log, &dest, hint.as_deref(), started);
            }
            None => return Err(e.into()),
        },
    };
    let what = format!("base {}", cut.chain.base_id.short());
    if a.to.is_some() || a.redis.names_server() {
        let url = a.redis.server(a.to.as_deref())?;
        let mut con = command::connect(&url, &a.redis.connect_options()?)?;
        let filter = keys.as_ref().map(|k| k.filter.clone()).unwrap_or_default();
        let opts = LoadOptions { filter, replace: a.replace, skip_existing: a.skip_existing, batch_keys: a.batch as usize, ..LoadOptions::default() };
        if keys.is_some() {
            // A log the pattern cannot be cut from is refused before anything is written.
            restore_at::for_each_selected(&blobs, &cut, keys.as_ref(), &mut |_, _| Ok(()))?;
        }
        let base = load::load(&blobs, &cut.chain.base, &mut con, &url.addr(), &opts)?;
        let log = restore_at::send_log(&blobs, &cut, keys.as_ref(), &mut con, &url.addr())?;
        let dest = format!("into {}: {} base keys", url.addr(), base.restored);
        return report(g, addr, at_ms, &what, &log, &dest, None, started);
    }
    let (log, dest, hint) = to_target(a, &mut |dir| restore_at::write_aof_dir(&blobs, &cut, keys.as_ref(), dir))?;
    report(g, addr, at_ms, &what, &log, &dest, hint.as_deref(), started)
}

/// Writes the AOF directory `--target` names, or replays one into `--target FILE.rdb`;
/// returns what was written, where, and how to start a server on it.
fn to_target(a: &RestoreArgs, write: &mut dyn FnMut(&Path) -> Result<LogReport, FollowError>) -> anyhow::Result<(LogReport, String, Option<String>)> {
    let Some(target) = a.target.clone() else { bail!("give --target DIR (or FILE.rdb) or --to URL") };
    if target.extension().is_some_and(|e| e == "rdb") {
        if target.exists() && !a.overwrite {
            bail!("{} already exists (use --overwrite)", target.display());
        }
        let work = replay::work_dir(&target)?;
        let result = write(&work.join("appendonlydir")).and_then(|log| replay::aof_to_rdb(&work, &target).map(|()| log));
        let _ = std::fs::remove_dir_all(&work);
        let dest = format!("to {} (replayed through redis-server from PATH)", target.display());
        return Ok((result?, dest, None));
    }
    let log = write(&target)?;
    let hint = match (target.parent().filter(|p| !p.as_os_str().is_empty()), target.file_name()) {
        (Some(parent), Some(name)) => format!(
            "start it with: redis-server --appendonly yes --dir {} --appenddirname {}",
            parent.display(),
            name.to_string_lossy()
        ),
        _ => "start redis-server with --appendonly yes and --appenddirname naming this directory".into(),
    };
    Ok((log, format!("to the AOF directory {}", target.display()), Some(hint)))
}

#[allow(clippy::too_many_arguments)]
fn report(g: &Global, addr: &str, at_ms: u64, what: &str, log: &LogReport, dest: &str, hint: Option<&str>, started: std::time::Instant) -> anyhow::Result<()> {
    if g.json {
        return output::print_json(&serde_json::json!({
            "server": addr,
            "at": rfc3339(at_ms),
            "from": what,
            "offset": log.offset,
            "commands": log.commands,
            "log_bytes": log.bytes,
            "skipped_commands": log.skipped,
            "duration_ms": started.elapsed().as_millis() as u64,
        }));
    }
    if !g.quiet {
        println!(
            "restored {addr} as of {} {dest}: {what} + {} logged commands ({}), up to offset {}",
            rfc3339(at_ms),
            log.commands,
            output::bytes(log.bytes),
            log.offset
        );
        if log.skipped > 0 {
            println!("left out {} logged commands about other keys", log.skipped);
        }
        if let Some(h) = hint {
            println!("{h}");
        }
    }
    Ok(())
}
