//! `rdbvault unlock`.

use super::{open_repo, output, Global};

#[derive(clap::Args, Debug)]
pub struct UnlockArgs {
    /// Remove every lock, not only stale ones (only when no other rdbvault runs).
    #[arg(long)]
    pub remove_all: bool,
}

pub fn run(g: &Global, a: UnlockArgs) -> anyhow::Result<()> {
    let repo = open_repo(g)?;
    let removed = rdbvault::store::lock::remove(&repo, a.remove_all)?;
    if g.json {
        return output::print_json(&serde_json::json!({ "removed": removed }));
    }
    if !g.quiet {
        let what = if a.remove_all { "locks" } else { "stale locks" };
        println!("removed {} {what}", removed.len());
    }
    Ok(())
}
