//! Human-readable sizes, durations and progress bars.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// `1.5 MiB`-style sizes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A bytes progress bar on a terminal, or nothing when quiet / not a tty / JSON.
pub fn progress(total: Option<u64>, quiet: bool, json: bool, msg: &str) -> Option<ProgressBar> {
    if quiet || json || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = match total {
        Some(t) => ProgressBar::new(t).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    pb.set_message(msg.to_string());
    show_transfer(&pb, msg);
    Some(pb)
}

/// Keeps the bar's message showing the bytes uploaded to and downloaded from a network
/// repository, with their rates, while the bar lives (a local repository adds nothing).
fn show_transfer(pb: &ProgressBar, msg: &str) {
    let (weak, msg) = (pb.downgrade(), msg.to_string());
    let (start, at) = (super::transferred(), std::time::Instant::now());
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let Some(pb) = weak.upgrade().filter(|pb| !pb.is_finished()) else { return };
        let (up, down) = super::transferred();
        let moved = (up - start.0, down - start.1);
        pb.set_message(transfer_message(&msg, moved, at.elapsed().as_secs_f64()));
    });
}

/// `backup, up 12.0 MiB (3.0 MiB/s)`: the parts that moved any bytes.
fn transfer_message(msg: &str, (up, down): (u64, u64), secs: f64) -> String {
    let mut out = msg.to_string();
    for (word, n) in [("up", up), ("down", down)] {
        if n > 0 {
            let rate = if secs > 0.0 { (n as f64 / secs) as u64 } else { 0 };
            out.push_str(&format!(", {word} {} ({}/s)", bytes(n), bytes(rate)));
        }
    }
    out
}

/// Prints a JSON value on stdout.
pub fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A keys-per-second spinner on a terminal, or nothing when quiet / not a tty / JSON.
pub fn key_progress(quiet: bool, json: bool, msg: &str) -> Option<ProgressBar> {
    if quiet || json || !std::io::stderr().is_terminal() {
        return None;
    }
    let style = ProgressStyle::with_template("{msg} {spinner} {human_pos} keys {per_sec} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let pb = ProgressBar::new_spinner().with_style(style);
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    Some(pb)
}

/// One CSV field, quoted when it holds a comma, quote or line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A Unix time in milliseconds as RFC 3339 UTC with milliseconds, as snapshots record times.
pub fn time_ms(ms: u64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| format!("{ms} ms after the epoch"))
}

/// A span of milliseconds in its two largest units: `2d3h`, `1h5m`, `4m0s`, `12s`, `250ms`.
pub fn span_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}
/// `1 snapshot`, `2 snapshots`, `3 indexes`: a count with its noun.
pub fn plural<N: std::fmt::Display + PartialEq + From<u8>>(n: N, word: &str) -> String {
    if n == N::from(1) {
        format!("{n} {word}")
    } else if word.ends_with(['s', 'x']) || word.ends_with("sh") || word.ends_with("ch") {
        format!("{n} {word}es")
    } else {
        format!("{n} {word}s")
    }
}

/// A stored RFC 3339 time as every listing shows it: `2026-11-29 10:15:03`, local time
/// (from `TZ` or the system's zone); a time that does not parse is shown as stored.
pub fn time(rfc3339: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    let Ok(t) = time::OffsetDateTime::parse(rfc3339, &Rfc3339) else { return rfc3339.to_string() };
    let local = t.to_offset(local_offset(t.unix_timestamp()));
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    local.format(&fmt).unwrap_or_else(|_| rfc3339.to_string())
}

/// The local zone's offset from UTC at `unix` seconds (UTC when the C library cannot say).
fn local_offset(unix: i64) -> time::UtcOffset {
    // time_t is 64 bits on every platform this builds for.
    let t = unix as libc::time_t;
    // SAFETY: `tm` is plain data that localtime_r fills in; both pointers are valid for the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: as above; localtime_r is the reentrant form and keeps no pointer.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return time::UtcOffset::UTC;
    }
    i32::try_from(tm.tm_gmtoff).ok().and_then(|s| time::UtcOffset::from_whole_seconds(s).ok()).unwrap_or(time::UtcOffset::UTC)
}

/// How a table column is aligned.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers and sizes, under a right-aligned header.
    Right,
}

/// A table as restic prints one: columns sized to their widest cell, two spaces apart,
/// a rule under the header and after the rows; no trailing spaces.
pub fn table(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = columns.iter().map(|(h, _)| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, ((cell, w), (_, align))) in cells.iter().zip(&widths).zip(columns).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let pad = " ".repeat(w.saturating_sub(width(cell)));
            match align {
                Align::Left => {
                    out.push_str(cell);
                    out.push_str(&pad);
                }
                Align::Right => {
                    out.push_str(&pad);
                    out.push_str(cell);
                }
            }
        }
        out.trim_end().to_string()
    };
    let rule = "-".repeat(widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1));
    let mut out = line(columns.iter().map(|(h, _)| *h).collect());
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out.push_str(&rule);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_message_names_bytes_and_rates() {
        assert_eq!(transfer_message("backup", (0, 0), 2.0), "backup");
        assert_eq!(transfer_message("copy", (4 << 20, 1024), 2.0), "copy, up 4.0 MiB (2.0 MiB/s), down 1.0 KiB (512 B/s)");
    }
}
