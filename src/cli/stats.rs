//! `rdbvault stats`.

use rdbvault::format::index::Index;
use rdbvault::format::select;
use rdbvault::maintain::stats;

use super::filter::FilterArgs;
use super::{open_repo, output, Global};

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// Measure only these snapshots (`latest`, ids or unique prefixes); default: all the
    /// filters match.
    #[arg(value_name = "SNAPSHOT")]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// What to count: `restore-size` (bytes a restore of the snapshots writes), `raw` (the
    /// stored blobs they reference, each once). Without it and without snapshots or
    /// filters: the repository overview; with snapshots or filters: restore-size.
    #[arg(long, value_enum, value_name = "MODE")]
    pub mode: Option<Mode>,
}

/// `stats --mode`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Bytes and files a restore of the chosen snapshots would write.
    RestoreSize,
    /// The distinct stored blobs the chosen snapshots reference.
    #[value(alias = "raw-data")]
    Raw,
}

pub fn run(g: &Global, a: StatsArgs) -> anyhow::Result<()> {
    let repo = open_repo(g)?;
    let _lock = super::read_lock(g, &repo)?;
    let mode = match a.mode {
        Some(m) => Some(m),
        None if a.ids.is_empty() && a.filter.is_empty() => None,
        None => Some(Mode::RestoreSize),
    };
    let (snaps, unreadable) = select::select(&repo, &a.ids, &a.filter.filter())?;
    super::warn_skipped(&unreadable);
    match mode {
        None => overview(g, &repo, &snaps),
        Some(Mode::RestoreSize) => {
            let s = stats::restore_size(&snaps);
            if g.json {
                return output::print_json(&s);
            }
            println!("snapshots:   {}", s.snapshots);
            println!("files:       {}", s.total_file_count);
            println!("total size:  {} (what a restore writes)", output::bytes(s.total_size));
            Ok(())
        }
        Some(Mode::Raw) => {
            let index = Index::load(&repo)?;
            let s = stats::raw_data(&repo, &index, &snaps)?;
            if g.json {
                return output::print_json(&s);
            }
            println!("snapshots:          {}", s.snapshots);
            println!("blobs:              {}", s.total_blob_count);
            println!("uncompressed size:  {}", output::bytes(s.total_uncompressed_size));
            println!("stored size:        {} after compression and encryption", output::bytes(s.total_size));
            println!("compression ratio:  {:.2}x", s.compression_ratio);
            Ok(())
        }
    }
}

/// The whole repository: sizes, deduplication and compression.
fn overview(g: &Global, repo: &rdbvault::store::Repository, snaps: &[(rdbvault::crypto::Id, rdbvault::format::snapshot::Snapshot)]) -> anyhow::Result<()> {
    let index = Index::load(repo)?;
    let s = stats::compute(repo, &index, snaps)?;
    if g.json {
        return output::print_json(&s);
    }
    println!("snapshots:          {}", s.snapshots);
    println!("total size:         {} (all snapshots, uncompressed)", output::bytes(s.total_raw_bytes));
    println!("unique data:        {} in {}", output::bytes(s.unique_raw_bytes), output::plural(s.data_blobs, "chunk"));
    println!("stored data:        {} after compression and encryption", output::bytes(s.unique_stored_bytes));
    println!("repository size:    {} in {}", output::bytes(s.repository_bytes), output::plural(s.packs, "pack"));
    println!("dedup ratio:        {:.2}x", s.dedup_ratio);
    println!("compression ratio:  {:.2}x", s.compression_ratio);
    println!("overall:            {:.2}x", s.overall_ratio);
    let b = &s.breakdown;
    let share = |n: u64| if s.repository_bytes == 0 { 0.0 } else { n as f64 * 100.0 / s.repository_bytes as f64 };
    println!("where the bytes go:");
    println!(
        "  data:             {} compressed ({:.1}%) from {} in {} of {} on average, {:.2}x",
        output::bytes(b.data_compressed_bytes),
        share(b.data_compressed_bytes),
        output::bytes(b.data_raw_bytes),
        output::plural(b.data_chunks, "chunk"),
        output::bytes(b.average_chunk_bytes),
        b.data_compression_ratio
    );
    let parts = [
        (format!("frame sealing:    {} for {}", output::bytes(b.data_frame_overhead_bytes), output::plural(b.data_frames, "data frame")), b.data_frame_overhead_bytes),
        (format!("pack headers:     {}", output::bytes(b.pack_header_bytes)), b.pack_header_bytes),
        (format!("index files:      {} in {}", output::bytes(b.index_bytes), output::plural(b.index_files, "file")), b.index_bytes),
        (format!("chunk lists:      {} in {}", output::bytes(b.chunk_list_bytes), output::plural(b.chunk_list_blobs, "blob")), b.chunk_list_bytes),
        (format!("key index:        {}", output::bytes(b.key_index_bytes)), b.key_index_bytes),
        (format!("dictionary:       {}", output::bytes(b.dictionary_bytes)), b.dictionary_bytes),
        (format!("snapshots:        {}", output::bytes(b.snapshot_bytes)), b.snapshot_bytes),
        (format!("unindexed packs:  {}", output::bytes(b.unindexed_pack_bytes)), b.unindexed_pack_bytes),
        (format!("config and keys:  {}", output::bytes(b.other_bytes)), b.other_bytes),
    ];
    for (line, n) in parts {
        if n > 0 {
            println!("  {line} ({:.1}%)", share(n));
        }
    }
    Ok(())
}
