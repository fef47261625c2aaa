//! The job runner (`rdbvault::ops::Jobs`) on real repositories: backups from a live
//! redis-server and from files, progress, cancel, conflicts and the history file.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use common::handmade::Rdb;
use common::server::{wait_until, RedisServer};
use common::vault::{random_data, Vault, PASSWORD};
use rdbvault::ops::{Hooks, JobId, JobKind, JobSpec, JobState, Jobs, PasswordSource, RepoSpec, SourceSpec, SourceTarget, Trigger};
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

/// A runner with a backup of a held FIFO running, and `small`, a one-key RDB of another source.
struct Held {
    jobs: Jobs,
    id: JobId,
    go: mpsc::Sender<()>,
    writer: std::thread::JoinHandle<()>,
    small: PathBuf,
}

impl Held {
    fn start(v: &Vault) -> Held {
        let (fifo, go, writer) = held_fifo(v.dir.path(), big_rdb());
        let small = v.dir.path().join("small.rdb");
        std::fs::write(&small, Rdb::new("7.0.0").string(0, b"k", b"v", None).bytes()).expect("write");
        let jobs = Jobs::new(history(v));
        let id = jobs.submit(backup(v, "held", SourceTarget::Rdb(fifo))).expect("submit");
        wait_until(Duration::from_secs(60), "the backup to start", || jobs.get(id).is_some_and(|s| s.state == JobState::Running));
        Held { jobs, id, go, writer, small }
    }

    /// Lets the rest of the RDB through; the backup can then finish.
    fn release(self) -> Jobs {
        self.go.send(()).expect("writer waits");
        self.writer.join().expect("writer");
        self.jobs
    }
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
    let h = Held::start(&v);
    let (held, jobs) = (h.id, h.jobs.clone());
    let prune = jobs.submit(job(&v, JobKind::Prune)).expect("submit");
    let other = jobs.submit(backup(&v, "small", SourceTarget::Rdb(h.small.clone()))).expect("submit");
    // The second backup was submitted after the prune, but only conflicts with it, not with
    // the running backup: it waits behind the prune (jobs start in submission order).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(jobs.get(prune).map(|s| s.state), Some(JobState::Queued));
    assert_eq!(jobs.get(other).map(|s| s.state), Some(JobState::Queued));
    h.release();
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
    let h = Held::start(&v);
    let (held, jobs) = (h.id, h.jobs.clone());
    let other = jobs.submit(backup(&v, "small", SourceTarget::Rdb(h.small.clone()))).expect("submit");
    let o = jobs.wait(other).expect("status");
    assert_eq!(o.state, JobState::Succeeded, "{}", o.message);
    assert_eq!(jobs.get(held).map(|s| s.state), Some(JobState::Running), "the held backup still runs");
    h.release();
    assert_eq!(jobs.wait(held).map(|s| s.state), Some(JobState::Succeeded));
}

#[test]
fn a_queued_job_cancelled_never_runs_and_history_survives_a_new_runner() {
    let v = Vault::init();
    let h = Held::start(&v);
    let (held, jobs) = (h.id, h.jobs.clone());
    let prune = jobs.submit(job(&v, JobKind::Prune)).expect("submit");
    assert!(jobs.cancel(prune));
    let p = jobs.wait(prune).expect("status");
    assert_eq!((p.state, p.started_ms, p.message.as_str()), (JobState::Cancelled, 0, "cancelled before it started"));
    h.release();
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

#[test]
fn hooks_run_around_a_job_and_a_failing_before_hook_stops_it() {
    let v = Vault::init();
    let rdb = v.dir.path().join("dump.rdb");
    std::fs::write(&rdb, Rdb::new("7.0.0").string(0, b"k", b"v", None).bytes()).expect("write");
    let log = v.dir.path().join("hooks.log");
    let record = |which: &str| format!("echo {which} $RDBVAULT_JOB_KIND $RDBVAULT_JOB_STATE $RDBVAULT_PROFILE $RDBVAULT_REPOSITORY_NAME $RDBVAULT_SNAPSHOT_ID${{RDBVAULT_PASSWORD:-}} >> {}", log.display());
    let jobs = Jobs::new(history(&v));
    let mut spec = backup(&v, "file", SourceTarget::Rdb(rdb.clone()));
    spec.profile = Some("prod".into());
    spec.hooks = Hooks { before: Some(record("before")), after: Some(record("after")), on_error: Some(record("on_error")), timeout: None };
    let st = jobs.wait(jobs.submit(spec.clone()).expect("submit")).expect("status");
    assert_eq!(st.state, JobState::Succeeded, "{}", st.message);
    let snap = st.report["snapshot_id"].as_str().expect("id").to_string();
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        format!("before backup running prod main\nafter backup succeeded prod main {snap}\n")
    );

    std::fs::remove_file(&log).expect("rm");
    spec.hooks.before = Some("echo 'redis is in maintenance' >&2; exit 3".into());
    let st = jobs.wait(jobs.submit(spec).expect("submit")).expect("status");
    assert_eq!(st.state, JobState::Failed);
    assert_eq!(
        st.message,
        "before hook \"echo 'redis is in maintenance' >&2; exit 3\" failed (exit status: 3): redis is in maintenance; the job did not run"
    );
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "on_error backup failed prod main\n");
    assert_eq!(v.snapshots().len(), 1, "the job did not run");
}

/// A hook that outlives `hooks.timeout` is killed with what it started, and the job fails
/// saying so.
#[test]
fn a_hook_past_its_timeout_is_killed_and_fails_the_job() {
    let v = Vault::init();
    let rdb = v.dir.path().join("dump.rdb");
    std::fs::write(&rdb, Rdb::new("7.0.0").string(0, b"k", b"v", None).bytes()).expect("write");
    let log = v.dir.path().join("hook.log");
    let jobs = Jobs::new(history(&v));
    let mut spec = backup(&v, "file", SourceTarget::Rdb(rdb));
    spec.hooks.before = Some(format!("echo started >> {0}; sleep 4; echo late >> {0}", log.display()));
    spec.hooks.timeout = Some(std::time::Duration::from_secs(1));
    let started = std::time::Instant::now();
    let st = jobs.wait(jobs.submit(spec.clone()).expect("submit")).expect("status");
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(st.state, JobState::Failed);
    assert_eq!(st.message, format!("before hook {:?} did not finish within 1s (hooks.timeout): it was killed; the job did not run", spec.hooks.before.as_deref().unwrap()));
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "started\n", "the hook's sleep was killed with its shell");
    assert!(v.snapshots().is_empty());
    assert_eq!(rdbvault::ops::spec::parse_timeout("90s"), Ok(std::time::Duration::from_secs(90)));
    assert!(rdbvault::ops::spec::parse_timeout("10x").unwrap_err().contains("s, m or h"));
    assert!(rdbvault::ops::spec::parse_timeout("0s").is_err());
}

#[test]
fn a_failed_job_is_posted_to_the_webhook() {
    let v = Vault::init();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        // Headers, then Content-Length bytes of body.
        loop {
            let n = std::io::Read::read(&mut s, &mut buf).expect("read");
            req.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&req).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).and_then(|n| n.parse().ok()).expect("length");
                if body.len() >= len || n == 0 {
                    s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").expect("answer");
                    return (head.to_string(), body.to_string());
                }
            }
        }
    });
    let jobs = Jobs::new(history(&v));
    jobs.notify_failures_to(Some(format!("http://127.0.0.1:{port}/hooks/rdbvault")));
    let mut spec = job(&v, JobKind::Prune);
    spec.repo.password = PasswordSource::Env("RDBVAULT_OPS_TEST_UNSET".into());
    let id = jobs.submit(spec).expect("submit");
    let (head, body) = server.join().expect("listener");
    assert!(head.starts_with("POST /hooks/rdbvault HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("Content-Type: application/json"), "{head}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(body["repo"], "main");
    assert_eq!(body["job"]["id"], id.0);
    assert_eq!(body["job"]["kind"], "prune");
    assert_eq!(body["error"], "password of repository main: password_env RDBVAULT_OPS_TEST_UNSET is not set");
    assert_eq!(jobs.wait(id).map(|s| s.state), Some(JobState::Failed));
    assert_eq!(jobs.webhook_error(), None);
}

#[test]
fn metrics_and_health_follow_the_jobs() {
    let v = Vault::init();
    let rdb = v.dir.path().join("dump.rdb");
    std::fs::write(&rdb, Rdb::new("7.0.0").string(0, b"k", b"v", None).bytes()).expect("write");
    let jobs = Jobs::new(history(&v));
    let st = jobs.wait(jobs.submit(backup(&v, "file", SourceTarget::Rdb(rdb))).expect("submit")).expect("status");
    assert_eq!(st.state, JobState::Succeeded, "{}", st.message);
    let text = rdbvault::ops::metrics::render(&jobs);
    let value = |line: &str| -> f64 {
        let l = text.lines().find(|l| l.starts_with(line)).unwrap_or_else(|| panic!("no {line} in\n{text}"));
        l.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("number")
    };
    let labels = "{repository=\"main\",job=\"backup\",profile=\"\"}";
    assert_eq!(value(&format!("rdbvault_last_success_timestamp_seconds{labels}")), st.finished_ms as f64 / 1000.0);
    assert_eq!(value(&format!("rdbvault_backup_bytes_added{labels}")), st.report["summary"]["bytes_added"].as_f64().expect("added"));
    assert_eq!(value(&format!("rdbvault_job_errors_total{labels}")), 0.0);
    // Measured at the end of the job, its lock file still there.
    let size = value("rdbvault_repository_size_bytes{repository=\"main\"}");
    let files = common::vault::dir_size(&v.repo) as f64;
    assert!(size > files && size < files + 1024.0, "{size} vs {files}");
    assert!(value("rdbvault_dedup_ratio{repository=\"main\"}") > 0.0);
    assert!(text.contains("# TYPE rdbvault_job_errors_total counter\n"), "{text}");
    assert_eq!(rdbvault::ops::metrics::health(&jobs)["status"], "ok");

    let mut spec = job(&v, JobKind::Check { read_data_subset: None });
    spec.repo.password = PasswordSource::Env("RDBVAULT_OPS_TEST_UNSET".into());
    jobs.wait(jobs.submit(spec).expect("submit")).expect("status");
    let health = rdbvault::ops::metrics::health(&jobs);
    assert_eq!(health["status"], "failing");
    assert_eq!(health["failing"][0]["job"], "check");
    let text = rdbvault::ops::metrics::render(&jobs);
    assert!(text.contains("rdbvault_job_errors_total{repository=\"main\",job=\"check\",profile=\"\"} 1\n"), "{text}");
}
