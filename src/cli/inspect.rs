//! `rdbvault inspect`: summary, key listing or memory report of a snapshot's RDB.

use std::io::Write;

use rdbvault::redis::inspect::{self, now_ms, MemoryReport};
use rdbvault::redis::keyscan::{rdb_file, scan_snapshot};
use rdbvault::rdb::{ReadOptions, Summary};

use super::keys::KeyArgs;
use super::output::{self, csv_field};
use super::{with_blobs_matching, Global};

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// `latest`, a snapshot id or a unique prefix of one.
    pub snapshot: String,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
    /// Only keys of this type (string, list, set, zset, hash, stream, module).
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    /// Print the summary even with --json (otherwise --json lists keys).
    #[arg(long, conflicts_with_all = ["memory", "keys", "db", "kind"])]
    pub summary: bool,
    /// Memory report: the largest keys, memory by key prefix and by type.
    #[arg(long)]
    pub memory: bool,
    /// Keys in the memory report.
    #[arg(long, default_value_t = 20, requires = "memory", conflicts_with = "summary")]
    pub top: usize,
    /// Memory report as CSV.
    #[arg(long, requires = "memory", conflicts_with_all = ["json", "summary"])]
    pub csv: bool,
}

pub fn run(g: &Global, a: InspectArgs) -> anyhow::Result<()> {
    let filter = a.keys.filter(a.kind.as_deref())?;
    with_blobs_matching(g, &[&a.snapshot], &a.filter, |snaps, blobs| {
        let (id, snap) = &snaps[0];
        let file = rdb_file(snap)?;
        if snap.files.len() > 1 && !g.quiet {
            eprintln!("snapshot holds {} files; inspecting {}", snap.files.len(), file.name);
        }
        if a.memory {
            let report = inspect::memory_report(blobs, snap, &filter, a.top)?;
            return if g.json {
                output::print_json(&report.to_json())
            } else if a.csv {
                print_memory_csv(&report)
            } else {
                print_memory(&report)
            };
        }
        let list = !a.summary && (g.json || a.keys.any() || a.kind.is_some());
        if !list {
            let s = inspect::summary(blobs, snap)?;
            if g.json {
                return output::print_json(&serde_json::json!({"snapshot_id": id.to_hex(), "file": file.name, "summary": s}));
            }
            print_summary(&id.short(), &file.name, &s);
            return Ok(());
        }
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        if g.json {
            inspect::write_key_lines(blobs, snap, &filter, &mut out)?;
            return Ok(());
        }
        let now = now_ms();
        let opts = ReadOptions { capture_raw: false, ..ReadOptions::default() };
        scan_snapshot::<anyhow::Error>(blobs, snap, opts, &filter, |_, rec| {
            let ttl = rec.expire_ms.map(|at| format!("{}ms", at as i64 - now as i64)).unwrap_or_else(|| "-".into());
            let mem = rdbvault::rdb::approx_memory(&rec);
            let line = format!("{:>3} {:<7} {:<11} {:>10} {:>10}  ", rec.db, rec.kind.as_str(), rec.encoding, ttl, mem);
            out.write_all(line.as_bytes())?;
            out.write_all(&rec.key)?;
            out.write_all(b"\n")?;
            Ok(())
        })?;
        out.flush()?;
        Ok(())
    })
}

fn print_summary(id: &str, file: &str, s: &Summary) {
    println!("snapshot {id}, {file}: RDB version {}, {}", s.rdb_version, output::bytes(s.total_bytes));
    for (k, v) in &s.aux {
        println!("  aux {k} = {v}");
    }
    println!("  keys: {} ({} with TTL)", s.keys, s.keys_with_ttl);
    if s.functions > 0 {
        println!("  function libraries: {}", s.functions);
    }
    if !s.module_aux.is_empty() {
        println!("  modules with aux data: {}", s.module_aux.join(", "));
    }
    for (db, d) in &s.dbs {
        println!("  db {db}: {} keys, {} with TTL, {} serialized", d.keys, d.keys_with_ttl, output::bytes(d.value_bytes));
        let join = |m: &std::collections::BTreeMap<String, u64>| m.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ");
        println!("    types:     {}", join(&d.by_type));
        println!("    encodings: {}", join(&d.by_encoding));
    }
}

fn print_memory(r: &MemoryReport) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "{} keys, about {} in memory", r.total.keys, output::bytes(r.total.bytes))?;
    writeln!(out, "\nlargest keys:")?;
    writeln!(out, "  {:>12} {:>3} {:<20} key", "bytes", "db", "type/encoding")?;
    for k in &r.top {
        let te = format!("{}/{}", k.kind, k.encoding);
        writeln!(out, "  {:>12} {:>3} {te:<20} {}", k.bytes, k.db, String::from_utf8_lossy(&k.key))?;
    }
    for (title, m) in [("by key prefix", &r.by_prefix), ("by type", &r.by_type)] {
        writeln!(out, "\n{title}:")?;
        writeln!(out, "  {:>12} {:>10}  name", "bytes", "keys")?;
        let mut rows: Vec<_> = m.iter().collect();
        rows.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(b.0)));
        for (name, b) in rows {
            let name = if name.is_empty() { "(no prefix)" } else { name };
            writeln!(out, "  {:>12} {:>10}  {name}", b.bytes, b.keys)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn print_memory_csv(r: &MemoryReport) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "group,name,db,type,encoding,keys,approx_bytes")?;
    for k in &r.top {
        let name = csv_field(&String::from_utf8_lossy(&k.key));
        writeln!(out, "key,{name},{},{},{},1,{}", k.db, k.kind, k.encoding, k.bytes)?;
    }
    for (name, b) in &r.by_prefix {
        writeln!(out, "prefix,{},,,,{},{}", csv_field(name), b.keys, b.bytes)?;
    }
    for (name, b) in &r.by_type {
        writeln!(out, "type,{name},,{name},,{},{}", b.keys, b.bytes)?;
    }
    writeln!(out, "total,,,,,{},{}", r.total.keys, r.total.bytes)?;
    out.flush()?;
    Ok(())
}

