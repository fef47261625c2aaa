//! `rdbvault timeline`: what the log of each followed server covers.

use std::time::Duration;

use anyhow::bail;

use rdbvault::format::snapshot::Listing;
use rdbvault::redis::follow::timeline::{self, rfc3339};

use super::{open_repo, output, Global};

#[derive(clap::Args, Debug)]
pub struct TimelineArgs {
    /// Only this followed server (host:port).
    #[arg(long, value_name = "ADDR")]
    pub server: Option<String>,
}

pub fn run(g: &Global, a: TimelineArgs) -> anyhow::Result<()> {
    let repo = open_repo(g)?;
    let _lock = super::read_lock(g, &repo)?;
    let listing = Listing::load(&repo)?;
    super::warn_skipped(&listing.unreadable);
    let mut servers = timeline::load(&listing);
    if let Some(s) = &a.server {
        servers.retain(|addr, _| addr == s);
    }
    let mut out = Vec::new();
    for (addr, server) in &servers {
        let gaps = timeline::gaps(server);
        let last = server.chains.iter().map(|c| c.to_ms()).max();
        out.push(serde_json::json!({
            "server": addr,
            "chains": server.chains.iter().map(|c| serde_json::json!({
                "base": c.base_id.to_hex(),
                "base_time": c.base.time,
                "replid": c.replid(),
                "start_offset": c.base_offset,
                "end_offset": c.end_offset(),
                "from": rfc3339(c.from_ms()),
                "to": rfc3339(c.to_ms()),
                "from_ms": c.from_ms(),
                "to_ms": c.to_ms(),
                "segments": c.segments.len(),
                "log_bytes": c.log_bytes(),
            })).collect::<Vec<_>>(),
            "gaps": gaps.iter().map(|gap| serde_json::json!({
                "from": rfc3339(gap.from_ms), "to": rfc3339(gap.to_ms), "from_ms": gap.from_ms, "to_ms": gap.to_ms,
            })).collect::<Vec<_>>(),
            "last_commit": last.map(rfc3339),
            "last_commit_ms": last,
            "orphan_segments": server.orphans.len(),
        }));
    }
    if g.json {
        return output::print_json(&serde_json::json!({ "servers": out }));
    }
    if servers.is_empty() {
        if let Some(s) = &a.server {
            bail!("no log of server {s} in the repository");
        }
        println!("no followed server: run `rdbvault follow redis://...` to start a log");
        return Ok(());
    }
    for (addr, server) in &servers {
        println!("server {addr}");
        let gaps = timeline::gaps(server);
        for c in &server.chains {
            println!(
                "  base {} ({}), offsets {}..{}: restorable from {} to {} ({} segments, {} of log)",
                c.base_id.short(),
                c.base.time,
                c.base_offset,
                c.end_offset(),
                rfc3339(c.from_ms()),
                rfc3339(c.to_ms()),
                c.segments.len(),
                output::bytes(c.log_bytes())
            );
        }
        for gap in &gaps {
            println!("  gap: no log from {} to {} (a full resync started a new base)", rfc3339(gap.from_ms), rfc3339(gap.to_ms));
        }
        if !server.orphans.is_empty() {
            println!("  {} segments belong to no restorable chain (their base snapshot is gone)", server.orphans.len());
        }
        if let Some(last) = server.chains.iter().map(|c| c.to_ms()).max() {
            println!("  last commit: {}", rfc3339(last));
        }
    }
    Ok(())
}

/// Parses `1s`, `500ms`, `15m`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 500ms, 1s, 15m, 2h or 1d"))?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        "d" => n.saturating_mul(86_400_000),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m, h or d)")),
    };
    Ok(Duration::from_millis(ms))
}

/// `--at TIME`: RFC 3339 (`2026-11-29T10:15:03Z`, fractions allowed) or relative to now (`-15m`); unix ms.
pub fn parse_at(s: &str) -> anyhow::Result<u64> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    if let Some(rel) = s.strip_prefix('-') {
        let d = parse_duration(rel).map_err(|e| anyhow::anyhow!("--at {s}: {e}"))?;
        return Ok(now.saturating_sub(d.as_millis() as u64));
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| anyhow::anyhow!("--at {s:?} is neither an RFC 3339 time (2026-11-29T10:15:03Z) nor relative (-15m): {e}"))?;
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    u64::try_from(ms).map_err(|_| anyhow::anyhow!("--at {s}: before 1970"))
}
