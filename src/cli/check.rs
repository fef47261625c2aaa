//! `rdbvault check`.

use rdbvault::maintain::check::{self, CheckReport, Problem, ReadData, Severity};
use rdbvault::format::snapshot::Listing;
use rdbvault::redis::follow::timeline;
use rdbvault::store::{display_name, FileKind, Repository};

use super::{output, password, repo_backend, Global};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Also read every pack and verify every blob.
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read only a subset of the packs: `N/M` (group N of M, by pack id) or `P%` (random).
    #[arg(long, value_name = "N/M|P%")]
    pub read_data_subset: Option<String>,
}

pub fn run(g: &Global, a: CheckArgs) -> anyhow::Result<()> {
    let read_data = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => ReadData::parse_subset(s)?,
        (None, true) => ReadData::All,
        (None, false) => ReadData::None,
    };
    let backend = repo_backend(g)?;
    let mut report = CheckReport::default();
    check::check_keys(backend.as_ref(), &mut report)?;
    let pw = password::get(g, false)?;
    match Repository::open(backend, pw.as_bytes()) {
        Ok(repo) => {
            // Shared: a prune (exclusive) cannot delete packs under a running check.
            let _lock = super::read_lock(g, &repo)?;
            check::check(&repo, read_data, &mut report)?;
            for (server, id, why) in timeline::orphans(&Listing::load(&repo)?) {
                report.problems.push(Problem {
                    severity: Severity::Warning,
                    kind: "orphan-segment",
                    file: Some(display_name(FileKind::Snapshot, &id.to_hex())),
                    blob: None,
                    message: format!("log segment {} of {server} is in no chain: {why}; `rdbvault prune` deletes it", id.short()),
                });
            }
        }
        Err(e @ rdbvault::Error::WrongPassword(_)) if report.errors() == 0 => return Err(e.into()),
        Err(e) => report.problems.push(Problem {
            severity: Severity::Error,
            kind: "config",
            file: Some("config".into()),
            blob: None,
            message: format!("cannot open the repository: {e}"),
        }),
    }
    print(g, &report)?;
    if report.errors() > 0 {
        anyhow::bail!("check found {}: the repository is damaged", output::plural(report.errors(), "error"));
    }
    Ok(())
}

fn print(g: &Global, r: &CheckReport) -> anyhow::Result<()> {
    if g.json {
        return output::print_json(r);
    }
    for p in &r.problems {
        if !g.quiet || p.severity == Severity::Error {
            println!("{p}");
        }
    }
    if !g.quiet {
        let p = output::plural;
        println!(
            "checked {}, {}, {} ({} read in full, {} verified), {}: {}, {}",
            p(r.keys, "key file"),
            p(r.index_files, "index file"),
            p(r.packs, "pack"),
            r.packs_read,
            p(r.blobs_read, "blob"),
            p(r.snapshots, "snapshot"),
            p(r.errors(), "error"),
            p(r.warnings(), "warning")
        );
    }
    Ok(())
}
