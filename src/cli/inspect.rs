//! `rdbvault inspect`: summary, key listing or memory report of a snapshot's RDB.

use std::io::Write;

use rdbvault::crypto::Id;
use rdbvault::format::snapshot::{Snapshot, SnapshotFile};
use rdbvault::redis::inspect::{self, snapshot_time_ms, ttl_ms, MemoryReport};
use rdbvault::redis::keyindex::scan_file;
use rdbvault::redis::keyscan::{files_not_read, pick_file};
use rdbvault::rdb::{quoted, ReadOptions, Summary};

use super::keys::KeyArgs;
use super::output::{self, csv_field};
use super::{with_blobs_for, Global};

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
    /// Read this file of a multi-file snapshot (default: its RDB, the base of an AOF directory).
    #[arg(long, value_name = "NAME")]
    pub file: Option<String>,
}

pub fn run(g: &Global, a: InspectArgs) -> anyhow::Result<()> {
    let filter = a.keys.filter(a.kind.as_deref())?;
    with_blobs_for(g, &[&a.snapshot], &a.filter, Some(&filter), |snaps, blobs| {
        let (id, snap) = &snaps[0];
        let file = chosen_file(id, snap, a.file.as_deref(), g.quiet)?;
        let read = read_json(id, snap, file);
        if a.memory {
            let report = inspect::memory_report(blobs, file, &filter, a.top)?;
            return if g.json {
                let mut v = report.to_json();
                merge(&mut v, read);
                output::print_json(&v)
            } else if a.csv {
                print_memory_csv(&report)
            } else {
                print_memory(&report)
            };
        }
        let list = !a.summary && (g.json || a.keys.any() || a.kind.is_some());
        let at = snapshot_time_ms(snap);
        if !list {
            let s = inspect::summary(blobs, file)?;
            if g.json {
                let mut v = serde_json::json!({"summary": inspect::summary_json(&s)});
                merge(&mut v, read);
                return output::print_json(&v);
            }
            print_summary(&id.short(), &file.name, &s);
            return Ok(());
        }
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        if g.json {
            inspect::write_key_lines(blobs, snap, file, at, &filter, &mut out)?;
            return Ok(());
        }
        writeln!(out, "{:>3}  {:<6}  {:<10}  {:<24}  {:<21}  {:>10}  KEY", "DB", "TYPE", "ENCODING", "EXPIRES", "TTL AT SNAPSHOT", "MEMORY")?;
        let opts = ReadOptions { capture_raw: false, ..ReadOptions::default() };
        scan_file::<anyhow::Error>(blobs, snap, file, opts, &filter, |_, rec| {
            let (expires, ttl) = match (rec.expire_ms, ttl_ms(&rec, at)) {
                (Some(when), Some(left)) if left > 0 => (output::time_ms(when), output::span_ms(left as u64)),
                (Some(when), Some(left)) => (output::time_ms(when), format!("expired {} before", output::span_ms(left.unsigned_abs()))),
                _ => ("-".to_string(), "-".to_string()),
            };
            let mem = output::bytes(rdbvault::rdb::approx_memory(&rec));
            writeln!(out, "{:>3}  {:<6}  {:<10}  {expires:<24}  {ttl:<21}  {mem:>10}  {}", rec.db, rec.kind.as_str(), rec.encoding, quoted(&rec.key))?;
            Ok(())
        })?;
        out.flush()?;
        Ok(())
    })
}

/// The file to read (`--file`, else the snapshot's RDB), saying on stderr what is left out.
pub(super) fn chosen_file<'a>(id: &Id, snap: &'a Snapshot, name: Option<&str>, quiet: bool) -> anyhow::Result<&'a SnapshotFile> {
    let file = pick_file(snap, name).map_err(|e| anyhow::anyhow!("snapshot {}: {e}", id.short()))?;
    let unread = files_not_read(snap, file);
    if quiet || unread.is_empty() {
        return Ok(file);
    }
    if snap.source.kind == "aof" && name.is_none() {
        let incr: Vec<&str> = unread.iter().copied().filter(|n| n.ends_with(".aof")).collect();
        let without = match incr.as_slice() {
            [] => String::new(),
            _ => format!(", without the commands of {}", incr.join(", ")),
        };
        eprintln!("snapshot {} is an AOF directory: reading its base RDB {} only{without} (--file NAME reads another file)", id.short(), file.name);
    } else {
        eprintln!("snapshot {} holds {} files: reading {} only (--file NAME reads another file)", id.short(), snap.files.len(), file.name);
    }
    Ok(file)
}

/// Which file of a snapshot was read, for JSON output: `snapshot_id`, `file`, `files_not_read`.
pub(super) fn read_json(id: &Id, snap: &Snapshot, file: &SnapshotFile) -> serde_json::Value {
    serde_json::json!({"snapshot_id": id.to_hex(), "file": file.name, "files_not_read": files_not_read(snap, file)})
}

/// Adds the fields of the object `extra` to the object `v`.
fn merge(v: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
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
        println!("  db {db}: {}, {} with TTL, {} serialized", output::plural(d.keys, "key"), d.keys_with_ttl, output::bytes(d.value_bytes));
        let join = |m: &std::collections::BTreeMap<String, u64>| m.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ");
        println!("    types:     {}", join(&d.by_type));
        println!("    encodings: {}", join(&d.by_encoding));
    }
}

fn print_memory(r: &MemoryReport) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "{}, about {} in memory", output::plural(r.total.keys, "key"), output::bytes(r.total.bytes))?;
    writeln!(out, "\nlargest keys:")?;
    writeln!(out, "  {:>10}  {:>3}  {:<20}  KEY", "MEMORY", "DB", "TYPE/ENCODING")?;
    for k in &r.top {
        let te = format!("{}/{}", k.kind, k.encoding);
        writeln!(out, "  {:>10}  {:>3}  {te:<20}  {}", output::bytes(k.bytes), k.db, quoted(&k.key))?;
    }
    for (title, m) in [("by key prefix", &r.by_prefix), ("by type", &r.by_type)] {
        writeln!(out, "\n{title}:")?;
        writeln!(out, "  {:>10}  {:>10}  NAME", "MEMORY", "KEYS")?;
        let mut rows: Vec<_> = m.iter().collect();
        rows.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(b.0)));
        for (name, b) in rows {
            let name = if name.is_empty() { "(no prefix)" } else { name };
            writeln!(out, "  {:>10}  {:>10}  {name}", output::bytes(b.bytes), b.keys)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn print_memory_csv(r: &MemoryReport) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "group,name,db,type,encoding,keys,approx_bytes")?;
    for k in &r.top {
        let name = csv_field(&rdbvault::rdb::escape(&k.key));
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
