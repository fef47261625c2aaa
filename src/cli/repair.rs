//! `rdbvault repair index`.

use super::{open_repo, output, Global};

#[derive(clap::Subcommand, Debug)]
pub enum RepairCommand {
    /// Rebuild the index from the pack headers.
    Index,
}

pub fn run(g: &Global, c: RepairCommand) -> anyhow::Result<()> {
    let RepairCommand::Index = c;
    let repo = open_repo(g)?;
    let lock = super::lock(g, &repo, true)?;
    let s = rdbvault::maintain::repair::repair_index(&repo, &lock)?;
    if g.json {
        return output::print_json(&s);
    }
    for (file, why) in &s.unreadable {
        eprintln!("warning: {file} left out: {why}");
    }
    if !g.quiet {
        println!("indexed {} blobs in {} packs; replaced {} index files", s.blobs, s.packs, s.old_index_files);
    }
    Ok(())
}
