//! Runs one job's work against its repository: the same library calls the commands make,
//! with a hidden progress bar the job runner reads and a cancel flag it sets.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use indicatif::ProgressBar;
use serde_json::json;

use crate::engine::backup::{self, BackupOptions};
use crate::engine::restore::Blobs;
use crate::format::select::Filter;
use crate::format::snapshot::SourceDesc;
use crate::maintain::check::{self, CheckReport, ReadData};
use crate::maintain::{forget, prune};
use crate::ops::spec::{JobKind, JobSpec, SourceTarget};
use crate::ops::OpsError;
use crate::redis::dbmap::DbMap;
use crate::redis::glob::Glob;
use crate::redis::keyscan::KeyFilter;
use crate::redis::live::{self, LiveOptions};
use crate::redis::load::{self, LoadOptions};
use crate::redis::source::{command, RedisUrl};
use crate::store::lock::Lock;
use crate::store::{FileKind, Location, Repository};

/// What a job did: a one-line message and the command's JSON report.
pub struct Outcome {
    pub message: String,
    pub report: serde_json::Value,
    /// False when the work ran but found the repository damaged (a check with errors).
    pub ok: bool,
}

/// Bytes of the repository's files and the deduplication ratio (bytes the snapshots hold
/// over bytes of packs), for metrics; `None` if the listing fails.
fn sizes(repo: &Repository) -> Option<serde_json::Value> {
    let mut total = 0u64;
    let mut packs = 0u64;
    for kind in FileKind::ALL {
        let n: u64 = repo.backend().list(kind).ok()?.iter().map(|f| f.size).sum();
        total += n;
        if kind == FileKind::Pack {
            packs = n;
        }
    }
    let listing = crate::format::snapshot::Listing::load(repo).ok()?;
    let logical: u64 = listing.snapshots.iter().filter(|(_, s)| !s.is_log_segment()).map(|(_, s)| s.summary.bytes_processed).sum();
    let ratio = if packs > 0 { logical as f64 / packs as f64 } else { 0.0 };
    Some(json!({ "repository_bytes": total, "pack_bytes": packs, "snapshot_bytes": logical, "dedup_ratio": ratio }))
}

/// Runs `spec`, advancing `progress` (bytes for a backup, keys for a restore) and stopping
/// between blobs and packs once `cancel` is set.
pub fn run(spec: &JobSpec, progress: &ProgressBar, cancel: &Arc<AtomicBool>) -> Result<Outcome, OpsError> {
    let pw = spec.repo.password.resolve(&spec.repo.name)?;
    let backend = Location::parse(&spec.repo.location)?.open()?;
    let repo = Repository::open(backend, pw.as_bytes())?;
    drop(pw);
    let no_wait = std::time::Duration::ZERO;
    match &spec.kind {
        JobKind::Backup { source, tags } => {
            let _lock = Lock::acquire(&repo, false, no_wait)?;
            let opts = BackupOptions { tags: tags.clone(), progress: Some(progress.clone()), cancel: Some(cancel.clone()), ..BackupOptions::default() };
            let (id, snap) = match &source.target {
                SourceTarget::Rdb(path) => {
                    let file = std::fs::File::open(path).map_err(|e| OpsError::Io { context: "open", path: path.clone(), source: e })?;
                    if let Ok(m) = file.metadata() {
                        progress.set_length(m.len());
                    }
                    let abs = std::fs::canonicalize(path).unwrap_or(path.clone());
                    let desc = SourceDesc { kind: "file".into(), name: abs.display().to_string(), ..Default::default() };
                    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "dump.rdb".into());
                    let input = backup::Input::file(name, file);
                    backup::run(&repo, desc, vec![input], &opts).map_err(|e| backup::name_input(e, |_| path.display().to_string()))?
                }
                SourceTarget::Redis { url, mode } => {
                    let mut url = RedisUrl::parse(url)?;
                    url.resolve_password_from_env(source.redis_password_file.as_deref())?;
                    let lopts = LiveOptions { connect: source.connect.clone(), ..LiveOptions::default() };
                    live::backup_server(&repo, &url, mode, &lopts, &opts)?
                }
            };
            let s = &snap.summary;
            Ok(Outcome {
                message: format!("snapshot {} saved: {} bytes processed, {} added", id.short(), s.bytes_processed, s.bytes_added),
                report: json!({ "snapshot_id": id.to_hex(), "source": source.name, "summary": s, "redis": snap.redis, "repository": sizes(&repo) }),
                ok: true,
            })
        }
        JobKind::Forget { policy } => {
            let lock = Lock::acquire(&repo, true, no_wait)?;
            let (rows, _) = forget::rows(&repo, &Filter::default())?;
            let by = forget::GroupBy::parse("host,source")?;
            let groups = forget::apply(&rows, policy, by);
            let mut remove: Vec<String> = groups.iter().flat_map(|g| g.remove.iter().map(|d| d.id.clone())).collect();
            let segments = forget::segments_of(&repo, &remove)?;
            remove.extend(segments.iter().map(|c| c.id.clone()));
            forget::remove_snapshots(&repo, &remove, &lock)?;
            Ok(Outcome {
                message: format!("removed {} snapshots", remove.len()),
                report: json!({ "groups": groups, "segments": segments, "removed": remove.len() }),
                ok: true,
            })
        }
        JobKind::Prune => {
            let lock = Lock::acquire(&repo, true, no_wait)?;
            let plan = prune::plan(&repo, prune::PruneOptions::default())?;
            let summary = plan.summary.clone();
            let done = prune::execute_cancellable(&repo, plan, &lock, Some(cancel))?;
            Ok(Outcome {
                message: format!("deleted {} packs, repacked {}", summary.delete_packs.len(), summary.repack_packs.len()),
                report: json!({ "plan": summary, "done": done, "repository": sizes(&repo) }),
                ok: true,
            })
        }
        JobKind::Check { read_data_subset } => {
            let read_data = match read_data_subset {
                Some(s) => ReadData::parse_subset(s)?,
                None => ReadData::None,
            };
            let _lock = Lock::acquire(&repo, false, no_wait)?;
            let mut report = CheckReport::default();
            check::check_keys(repo.backend().as_ref(), &mut report)?;
            check::check_cancellable(&repo, read_data, &mut report, Some(cancel))?;
            let (errors, warnings) = (report.errors(), report.warnings());
            Ok(Outcome {
                message: format!("check found {errors} errors, {warnings} warnings"),
                report: serde_json::to_value(&report).unwrap_or_default(),
                ok: errors == 0,
            })
        }
        JobKind::Restore { snapshot, keys, to_url, dry_run, options } => {
            let server = RedisUrl::parse(to_url)?;
            let addr = server.addr();
            let mut con = command::connect(&server, &Default::default())?;
            let _lock = Lock::acquire(&repo, false, no_wait)?;
            let ((id, snap), _) = crate::format::select::find(&repo, snapshot, &Filter::default())?;
            if snap.is_log_segment() {
                return Err(OpsError::Invalid(format!("snapshot {} is a log segment of a followed server: restore it with `rdbvault restore --at`", id.short())));
            }
            let (index, _) = crate::engine::restore::load_index(&repo)?;
            let blobs = Blobs::new(&repo, &index)?;
            let filter = KeyFilter { pattern: keys.as_deref().map(|p| Glob::new(p.as_bytes())), ..KeyFilter::default() };
            let dbs = snap.redis.as_ref().filter(|r| r.rdb_error.is_none() && !r.keys_per_db.is_empty()).map(|r| r.keys_per_db.keys().map(|d| u64::from(*d)).collect::<Vec<u64>>());
            let db_map = DbMap::for_restore(server.db.map(u64::from), &options.map_db, None, dbs.as_deref()).map_err(OpsError::Invalid)?;
            let opts = LoadOptions {
                filter,
                db_map,
                replace: options.replace,
                skip_existing: options.skip_existing,
                dry_run: *dry_run,
                progress: Some(progress.clone()),
                cancel: Some(cancel.clone()),
                ..LoadOptions::default()
            };
            let report = load::load(&blobs, &snap, &mut con, &addr, &opts)?;
            let verb = if *dry_run { "would restore" } else { "restored" };
            Ok(Outcome {
                message: format!("{verb} {} keys of snapshot {} into {addr}", report.restored, id.short()),
                report: serde_json::to_value(&report).unwrap_or_default(),
                ok: true,
            })
        }
    }
}
