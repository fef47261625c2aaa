//! `rdbvault init`.

use rdbvault::store::ChunkerParams;
use rdbvault::crypto::KdfParams;
use rdbvault::store::{Config, FileKind, Repository};

use super::{output, password, repo_location, Global};

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Minimum chunk size in bytes (fixed for the life of the repository).
    #[arg(long, default_value_t = ChunkerParams::default().min_size)]
    pub chunk_min: u32,
    /// Average chunk size in bytes.
    #[arg(long, default_value_t = ChunkerParams::default().avg_size)]
    pub chunk_avg: u32,
    /// Maximum chunk size in bytes.
    #[arg(long, default_value_t = ChunkerParams::default().max_size)]
    pub chunk_max: u32,
    /// Chunk sizes MIN,AVG,MAX in bytes for cuts at RDB key-record starts, or `off` for
    /// FastCDC only (fixed for the life of the repository). A record starts a chunk when its
    /// keyed key hash is the least within max(MIN, AVG/2) bytes on either side.
    #[arg(long, default_value_t = RecordChunks(Some(ChunkerParams::RECORDS)), value_parser = parse_record_chunks)]
    pub record_chunks: RecordChunks,
    /// Argon2id memory cost in KiB for this password (higher resists guessing better).
    #[arg(long, default_value_t = KdfParams::default().m_cost)]
    pub kdf_memory_kib: u32,
}

pub fn run(g: &Global, a: InitArgs) -> anyhow::Result<()> {
    let location = repo_location(g)?;
    let backend = location.open()?;
    let path = backend.location();
    let bucket_created = location.create_bucket()?;
    if bucket_created && !g.quiet && !g.json {
        println!("created the bucket of {path}");
    }
    if backend.exists(FileKind::Config, "config")? {
        anyhow::bail!("{path} already holds a repository");
    }
    let pw = password::get(g, true)?;
    let chunker = ChunkerParams { min_size: a.chunk_min, avg_size: a.chunk_avg, max_size: a.chunk_max };
    let kdf = KdfParams { m_cost: a.kdf_memory_kib, ..KdfParams::default() };
    let mut config = Config::new(chunker);
    config.records = a.record_chunks.0;
    let repo = Repository::init_with(backend, pw.as_bytes(), config, kdf)?;
    if g.json {
        output::print_json(&serde_json::json!({
            "repository": path,
            "id": repo.config().repo_id,
            "chunker": repo.config().chunker,
            "record_chunks": repo.config().records,
            "record_cuts": repo.config().record_cuts,
            "bucket_created": bucket_created,
        }))?;
    } else if !g.quiet {
        println!("created repository {} at {path}", &repo.config().repo_id[..8]);
        println!("keep the password safe: without it the data cannot be recovered");
    }
    Ok(())
}

/// `--record-chunks`: sizes, or None for `off`.
#[derive(Debug, Clone, Copy)]
pub struct RecordChunks(Option<ChunkerParams>);

impl std::fmt::Display for RecordChunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(p) => write!(f, "{},{},{}", p.min_size, p.avg_size, p.max_size),
        }
    }
}

fn parse_record_chunks(s: &str) -> Result<RecordChunks, String> {
    if s == "off" {
        return Ok(RecordChunks(None));
    }
    let sizes: Vec<u32> = s.split(',').map(|n| n.trim().parse::<u32>()).collect::<Result<_, _>>().map_err(|e| format!("{s:?}: {e} (expected MIN,AVG,MAX in bytes or off)"))?;
    let [min_size, avg_size, max_size] = sizes[..] else {
        return Err(format!("{s:?}: expected three sizes MIN,AVG,MAX in bytes, or off"));
    };
    let p = ChunkerParams { min_size, avg_size, max_size };
    p.validate()?;
    Ok(RecordChunks(Some(p)))
}
