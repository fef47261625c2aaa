//! `restore --target FILE` with `--keys`, `--db`, `--type` or `--rdb-version`: writes a new RDB
//! of the selected keys (see `rdbvault::redis::rewrite`), and the shared output-file handling
//! of `export`.

use std::io::Write;
use std::path::Path;

use anyhow::bail;
use rdbvault::engine::target::{self, Dest};
use rdbvault::redis::rewrite::{rewrite_snapshot, RewriteOptions};

use super::restore::RestoreArgs;
use super::{output, with_blobs_for, Global};

/// Output buffer: small writes are gathered; the pieces of text export's threads hand over
/// (256 KiB batches) are mostly larger and go straight through without a copy.
const OUT_BUF: usize = 256 << 10;

/// Writes through `fill` to `path`: stdout for `-`, a FIFO or device as a stream, else a
/// temp file renamed into place only once `fill` succeeded (mode 0600).
pub fn write_output<T>(path: &Path, overwrite: bool, fill: impl FnOnce(&mut dyn Write) -> anyhow::Result<T>) -> anyhow::Result<T> {
    if path.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(OUT_BUF, stdout.lock());
        let v = fill(&mut out)?;
        out.flush()?;
        return Ok(v);
    }
    let dest = target::dest(path, overwrite)?;
    if let Dest::Stream(p) = &dest {
        let mut out = std::io::BufWriter::with_capacity(OUT_BUF, target::open_stream(p)?);
        let v = fill(&mut out)?;
        out.flush()?;
        return Ok(v);
    }
    let mut result = None;
    let mut failure = None;
    let r = target::write_atomically(&dest, |f| {
        let mut out = std::io::BufWriter::with_capacity(OUT_BUF, f);
        match fill(&mut out).and_then(|v| out.flush().map(|()| v).map_err(Into::into)) {
            Ok(v) => {
                result = Some(v);
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                failure = Some(e);
                Err(rdbvault::Error::Invalid(msg))
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    r?;
    result.ok_or_else(|| anyhow::anyhow!("nothing was written to {}", path.display()))
}

/// `restore SNAP --target FILE` with a key selection or an RDB version.
pub fn run(g: &Global, a: &RestoreArgs, path: &Path) -> anyhow::Result<()> {
    if a.group.is_some() {
        bail!("--keys, --db, --type and --rdb-version select from one snapshot; give its id instead of --group");
    }
    let Some(spec) = a.snapshot.as_deref() else { bail!("give a snapshot (or latest)") };
    let opts = RewriteOptions { filter: a.keys.filter(a.kind.as_deref())?, version: a.rdb_version, reencode: false };
    let report = with_blobs_for(g, &[spec], &Default::default(), Some(&opts.filter), |snaps, blobs| {
        write_output(path, a.overwrite, |out| Ok(rewrite_snapshot(blobs, &snaps[0].1, &opts, out)?.0))
    })?;
    if g.json {
        return output::print_json(&report);
    }
    if !g.quiet && path.as_os_str() != "-" {
        let per_db = report.per_db.iter().map(|(db, n)| format!("db {db}: {n}")).collect::<Vec<_>>().join(", ");
        println!(
            "wrote {} keys ({per_db}){} to {} as RDB version {} ({})",
            report.keys,
            match report.functions {
                0 => String::new(),
                n => format!(" and {n} function libraries"),
            },
            path.display(),
            report.rdb_version,
            output::bytes(report.bytes)
        );
        if !report.module_aux_dropped.is_empty() {
            eprintln!("warning: module aux data of {} was not copied", report.module_aux_dropped.join(", "));
        }
    }
    Ok(())
}
