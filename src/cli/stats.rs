//! `rdbvault stats`.

use rdbvault::format::index::Index;
use rdbvault::format::snapshot::Listing;

use super::{open_repo, output, Global};

pub fn run(g: &Global) -> anyhow::Result<()> {
    let repo = open_repo(g)?;
    let _lock = super::read_lock(g, &repo)?;
    let index = Index::load(&repo)?;
    let listing = Listing::load(&repo)?;
    super::warn_skipped(&listing.unreadable);
    let snaps = listing.snapshots;
    let s = rdbvault::maintain::stats::compute(&repo, &index, &snaps)?;
    if g.json {
        return output::print_json(&s);
    }
    println!("snapshots:          {}", s.snapshots);
    println!("total size:         {} (all snapshots, uncompressed)", output::bytes(s.total_raw_bytes));
    println!("unique data:        {} in {} chunks", output::bytes(s.unique_raw_bytes), s.data_blobs);
    println!("stored data:        {} after compression and encryption", output::bytes(s.unique_stored_bytes));
    println!("repository size:    {} in {} packs", output::bytes(s.repository_bytes), s.packs);
    println!("dedup ratio:        {:.2}x", s.dedup_ratio);
    println!("compression ratio:  {:.2}x", s.compression_ratio);
    println!("overall:            {:.2}x", s.overall_ratio);
    Ok(())
}
