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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_message_names_bytes_and_rates() {
        assert_eq!(transfer_message("backup", (0, 0), 2.0), "backup");
        assert_eq!(transfer_message("copy", (4 << 20, 1024), 2.0), "copy, up 4.0 MiB (2.0 MiB/s), down 1.0 KiB (512 B/s)");
    }
}
