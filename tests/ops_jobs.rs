//! The job runner (`rdbvault::ops::Jobs`) on real repositories: backups from a live
//! redis-server and from files, progress, cancel, conflicts and the history file.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use common::handmade::Rdb;
use common::server::{wait_until, RedisServer};
use common::vault::{random_data, Vault, PASSWORD};
use rdbvault::ops::{JobKind, JobSpec, JobState, Jobs, PasswordSource, RepoSpec, SourceSpec, SourceTarget, Trigger};
use rdbvault::redis::live::Mode;

/// The vault as a job's repository, its password in a file.
fn repo(v: &Vault) -> RepoSpec {
    let pw = v.dir.path().join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).expect("password file");
    RepoSpec { name: "main".into(), location: v.repo.display().to_string(), password: PasswordSource::File(pw) }
}

fn backup(v: &Vault, name: &str, target: SourceTarget) -> JobSpec {
    let source = SourceSpec { name: name.into(), target, connect: Default::default(), redis_password_file: None };
    JobSpec::new(JobKind::Backup { source, tags: vec!["nightly".into()] }, repo(v), Trigger::Manual)
}

fn job(v: &Vault, kind: JobKind) -> JobSpec {
    JobSpec::new(kind, repo(v), Trigger::Manual)
}

/// An RDB of about 16 MiB: 2048 keys of 8 KiB random values.
fn big_rdb() -> Vec<u8> {
    let mut rdb = Rdb::new("7.0.0");
    for i in 0..2048u64 {
        rdb = rdb.string(0, format!("key:{i}").as_bytes(), &random_data(i, 8192), None);
    }
    rdb.bytes()
}

/// A FIFO fed by a thread: the first half of `data` at once, the rest once `go` is sent,
/// so a backup reading it is held half-way, running, for as long as the test needs.
fn held_fifo(dir: &Path, data: Vec<u8>) -> (PathBuf, mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let path = dir.join("held.rdb");
    let c = std::ffi::CString::new(path.to_str().expect("utf-8 path")).expect("path");
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let (go, wait) = mpsc::channel::<()>();
    let p = path.clone();
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().write(true).open(&p).expect("open fifo");
        let half = data.len() / 2;
        if f.write_all(&data[..half]).is_err() {
            return;
        }
        let _ = wait.recv();
        // The reader may have stopped (a cancelled backup): a broken pipe is expected then.
        let _ = f.write_all(&data[half..]);
    });
    (path, go, writer)
}

fn history(v: &Vault) -> PathBuf {
    v.dir.path().join("state/jobs.jsonl")
}

#[test]
fn a_backup_job_of_a_live_server_saves_a_snapshot_and_a_check_job_passes() {
    let v = Vault::init();
    let srv = RedisServer::start(&[]);
    common::data::fill_sample(&srv, 200);
    let jobs = Jobs::new(history(&v));
    let id = jobs.submit(backup(&v, "cache", SourceTarget::Redis { url: srv.url(), mode: Mode::Replication })).expect("submit");
    let st = jobs.wait(id).expect("status");
    assert_eq!(st.state, JobState::Succeeded, "{}", st.message);
    assert_eq!((st.kind.as_str(), st.repo.as_str()), ("backup", "main"));
    assert!(st.message.starts_with("snapshot ") && st.message.contains(" saved"), "{}", st.message);
    assert!(st.bytes_done > 0 && st.started_ms >= st.submitted_ms && st.finished_ms >= st.started_ms, "{st:?}");
    let snap_id = st.report["snapshot_id"].as_str().expect("snapshot id").to_string();
    let listed = v.json(&["snapshots"]);
    assert_eq!(listed[0]["id"].as_str(), Some(snap_id.as_str()), "{listed:#}");
    assert_eq!(listed[0]["tags"], serde_json::json!(["nightly"]));

    let id = jobs.submit(job(&v, JobKind::Check { read_data_subset: Some("1/1".into()) })).expect("submit");
    let st = jobs.wait(id).expect("status");
    assert_eq!(st.state, JobState::Succeeded, "{}", st.message);
    assert!(st.report["packs_read"].as_u64().unwrap_or(0) > 0, "{:#}", st.report);
    // The repository is named, its password never shown.
    let all = serde_json::to_string(&jobs.list()).expect("json");
    assert!(!all.contains(PASSWORD), "{all}");
}

#[test]
fn progress_moves_while_a_backup_runs_and_cancel_leaves_a_repository_check_passes() {
    let v = Vault::init();
    let (fifo, go, writer) = held_fifo(v.dir.path(), big_rdb());
    let jobs = Jobs::new(history(&v));
    let id = jobs.submit(backup(&v, "held", SourceTarget::Rdb(fifo))).expect("submit");
    wait_until(Duration::from_secs(60), "the backup to read the first half", || {
        jobs.get(id).is_some_and(|s| s.state == JobState::Running && s.bytes_done > 0)
    });
    assert!(jobs.cancel(id));
    go.send(()).expect("writer waits");
    let st = jobs.wait(id).expect("status");
    writer.join().expect("writer");
    assert_eq!(st.state, JobState::Cancelled, "{}", st.message);
    assert!(st.message.starts_with("cancelled"), "{}", st.message);
    assert!(v.snapshots().is_empty(), "a cancelled backup saves no snapshot");
    v.check_passes(&["--read-data"]);
    assert!(!jobs.cancel(id), "an ended job cannot be cancelled");
}

#[test]
fn a_prune_waits_for_a_running_backup_while_a_backup_of_another_source_runs_beside_it() {
    let v = Vault::init();
    let (fifo, go, writer) = held_fifo(v.dir.path(), big_rdb());
    let small = v.dir.path().join("small.rdb");
    std::fs::write(&small, Rdb::new("7.0.0").string(0, b"k", b"v", None).bytes()).expect("write");
    let jobs = Jobs::new(history(&v));
    let held = jobs.submit(backup(&v, "held", SourceTarget::Rdb(fifo))).expect("submit");
    wait_until(Duration::from_secs(60), "the backup to start", || jobs.get(held).is_some_and(|s| s.state == JobState::Running));
    let prune = jobs.submit(job(&v, JobKind::Prune)).expect("submit");
    let other = jobs.submit(backup(&v, "small", SourceTarget::Rdb(small))).expect("submit");
    // The second backup was submitted after the prune, but only conflicts with it, not with
    // the running backup: it waits behind the prune (jobs start in submission order).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(jobs.get(prune).map(|s| s.state), Some(JobState::Queued));
    assert_eq!(jobs.get(other).map(|s| s.state), Some(JobState::Queued));
    go.send(()).expect("writer waits");
    writer.join().expect("writer");
    let b = jobs.wait(held).expect("status");
    assert_eq!(b.state, JobState::Succeeded, "{}", b.message);
    assert_eq!(b.bytes_done, big_rdb().len() as u64);
    let p = jobs.wait(prune).expect("status");
    assert_eq!(p.state, JobState::Succeeded, "{}", p.message);
    assert!(p.started_ms >= b.finished_ms, "prune started before the backup ended: {p:?} {b:?}");
    let o = jobs.wait(other).expect("status");
    assert_eq!(o.state, JobState::Succeeded, "{}", o.message);
    assert!(o.started_ms >= p.finished_ms, "{o:?} {p:?}");
}

#[test]
fn backups_of_different_sources_run_together() {
    let v = Vault::init();
    let (fifo, go, writer) = held_fifo(v.dir.path(), big_rdb());
    let small = v.dir.path().join("small.rdb");
    std::fs::write(&small, Rdb::new("7.0.0").string(0, b"k", b"v", None).bytes()).expect("write");
    let jobs = Jobs::new(history(&v));
    let held = jobs.submit(backup(&v, "held", SourceTarget::Rdb(fifo))).expect("submit");
    wait_until(Duration::from_secs(60), "the backup to start", || jobs.get(held).is_some_and(|s| s.state == JobState::Running));
    let other = jobs.submit(backup(&v, "small", SourceTarget::Rdb(small))).expect("submit");
    let o = jobs.wait(other).expect("status");
    assert_eq!(o.state, JobState::Succeeded, "{}", o.message);
    assert_eq!(jobs.get(held).map(|s| s.state), Some(JobState::Running), "the held backup still runs");
    go.send(()).expect("writer waits");
    writer.join().expect("writer");
    assert_eq!(jobs.wait(held).map(|s| s.state), Some(JobState::Succeeded));
}

#[test]
fn a_queued_job_cancelled_never_runs_and_history_survives_a_new_runner() {
    let v = Vault::init();
    let (fifo, go, writer) = held_fifo(v.dir.path(), big_rdb());
    let jobs = Jobs::new(history(&v));
    let held = jobs.submit(backup(&v, "held", SourceTarget::Rdb(fifo))).expect("submit");
    wait_until(Duration::from_secs(60), "the backup to start", || jobs.get(held).is_some_and(|s| s.state == JobState::Running));
    let prune = jobs.submit(job(&v, JobKind::Prune)).expect("submit");
    assert!(jobs.cancel(prune));
    let p = jobs.wait(prune).expect("status");
    assert_eq!((p.state, p.started_ms, p.message.as_str()), (JobState::Cancelled, 0, "cancelled before it started"));
    go.send(()).expect("writer waits");
    writer.join().expect("writer");
    jobs.wait(held).expect("status");
    let before = jobs.list();
    assert_eq!(before.iter().map(|s| s.id).collect::<Vec<_>>(), vec![prune, held], "newest first");
    drop(jobs);

    let again = Jobs::new(history(&v));
    assert_eq!(again.history_error(), None);
    assert_eq!(again.list(), before);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(history(&v)).expect("history").permissions());
    assert_eq!(mode & 0o777, 0o600);
    // New jobs are numbered after the remembered ones.
    let next = again.submit(job(&v, JobKind::Check { read_data_subset: None })).expect("submit");
    assert!(next > prune && next > held);
    assert_eq!(again.wait(next).map(|s| s.state), Some(JobState::Succeeded));
}

#[test]
fn a_failing_job_names_the_repository_problem() {
    let v = Vault::init();
    let mut spec = job(&v, JobKind::Check { read_data_subset: None });
    spec.repo.password = PasswordSource::Env("RDBVAULT_OPS_TEST_UNSET".into());
    let jobs = Jobs::new(history(&v));
    let st = jobs.wait(jobs.submit(spec).expect("submit")).expect("status");
    assert_eq!(st.state, JobState::Failed);
    assert_eq!(st.message, "password of repository main: password_env RDBVAULT_OPS_TEST_UNSET is not set");
}
