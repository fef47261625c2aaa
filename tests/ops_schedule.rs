//! The scheduler through the library with a fake clock (no sleeping for due times):
//! cron and interval due times in UTC, one catch-up run for missed slots, and conflicts.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rdbvault::ops::config::Config;
use rdbvault::ops::jobs::{JobId, JobState, JobStatus, Jobs};
use rdbvault::ops::schedule::{FakeClock, Scheduler};
use rdbvault::ops::Trigger;

/// Unix seconds of an RFC 3339 UTC time.
fn at(s: &str) -> i64 {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).expect("time").unix_timestamp()
}

/// A config whose repository is `repo` (its password from `password_command`) with these schedules.
fn config(dir: &Path, password_command: &str, schedules: &str) -> Config {
    let text = format!(
        "[repositories.main]\nrepository = {:?}\npassword_command = {password_command:?}\n\n\
         [sources.file]\nrdb = {:?}\n\n\
         [profiles.prod]\nrepository = \"main\"\nsource = \"file\"\nkeep_last = 3\n\n{schedules}",
        dir.join("repo").display().to_string(),
        dir.join("dump.rdb").display().to_string()
    );
    Config::parse(&text, &dir.join("rdbvault.toml")).expect("valid config")
}

fn scheduler(dir: &Path, cfg: Config, now: &str) -> (Scheduler, Jobs, Arc<FakeClock>) {
    let jobs = Jobs::new(dir.join("jobs.jsonl"));
    let clock = Arc::new(FakeClock::at(at(now)));
    (Scheduler::new(cfg, jobs.clone(), clock.clone()), jobs, clock)
}

/// Ticks; waits for the jobs it submitted to end; returns their ids and triggers.
fn tick(s: &mut Scheduler, jobs: &Jobs) -> Vec<(JobId, Trigger)> {
    let t = s.tick();
    assert!(t.failed.is_empty(), "{:?}", t.failed);
    t.submitted.iter().map(|(_, id)| (*id, jobs.wait(*id).expect("status").trigger)).collect()
}

#[test]
fn a_cron_schedule_runs_at_its_times_in_utc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), "echo pw", "[schedules.nightly]\nprofile = \"prod\"\njob = \"backup\"\ncron = \"0 3 * * *\"\n");
    // 2026-03-29 is a DST change day in Europe: UTC has none.
    let (mut s, jobs, clock) = scheduler(dir.path(), cfg, "2026-03-29T01:00:00Z");
    assert_eq!(s.next_due(), Some(at("2026-03-29T03:00:00Z")), "no history: the next slot, not now");
    assert!(tick(&mut s, &jobs).is_empty());
    clock.set(at("2026-03-29T02:59:59Z"));
    assert!(tick(&mut s, &jobs).is_empty());
    clock.set(at("2026-03-29T03:00:00Z"));
    let ran = tick(&mut s, &jobs);
    assert_eq!(ran.iter().map(|r| &r.1).collect::<Vec<_>>(), vec![&Trigger::Schedule("nightly".into())]);
    assert!(tick(&mut s, &jobs).is_empty(), "once per slot");
    assert_eq!(s.next_due(), Some(at("2026-03-30T03:00:00Z")));
    let st = jobs.get(ran[0].0).expect("status");
    assert_eq!((st.kind.as_str(), st.repo.as_str(), st.profile.as_deref()), ("backup", "main", Some("prod")));
}

#[test]
fn an_interval_schedule_runs_at_start_then_every_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), "echo pw", "[schedules.often]\nprofile = \"prod\"\njob = \"prune\"\nevery = \"6h\"\n");
    let (mut s, jobs, clock) = scheduler(dir.path(), cfg, "2026-11-29T10:00:00Z");
    assert_eq!(tick(&mut s, &jobs).len(), 1, "no history: runs at start");
    clock.advance(6 * 3600 - 1);
    assert!(tick(&mut s, &jobs).is_empty());
    clock.advance(1);
    assert_eq!(tick(&mut s, &jobs).len(), 1);
    // A tick a day late runs once, not once per missed slot.
    clock.advance(24 * 3600);
    assert_eq!(tick(&mut s, &jobs).len(), 1);
    assert!(tick(&mut s, &jobs).is_empty());
}

/// A finished job of schedule `name` submitted at `when`, as the history file holds it.
fn past_run(id: u64, name: &str, when: &str) -> String {
    let ms = at(when) as u64 * 1000;
    let st = JobStatus {
        id: JobId(id),
        kind: "backup".into(),
        repo: "main".into(),
        profile: Some("prod".into()),
        trigger: Trigger::Schedule(name.into()),
        state: JobState::Succeeded,
        submitted_ms: ms,
        started_ms: ms,
        finished_ms: ms + 1000,
        bytes_done: 0,
        bytes_total: 0,
        message: String::new(),
        report: serde_json::Value::Null,
    };
    serde_json::to_string(&st).expect("json") + "\n"
}

#[test]
fn runs_missed_while_stopped_run_once_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let schedules = "[schedules.nightly]\nprofile = \"prod\"\njob = \"backup\"\ncron = \"0 3 * * *\"\n\n\
                     [schedules.hourly]\nprofile = \"prod\"\njob = \"check\"\ncron = \"0 * * * *\"\n";
    let cfg = config(dir.path(), "echo pw", schedules);
    // nightly last ran three days ago (three slots missed); hourly ran this hour (none missed).
    let history = past_run(1, "nightly", "2026-11-26T03:00:00Z") + &past_run(2, "hourly", "2026-11-29T10:00:00Z");
    std::fs::write(dir.path().join("jobs.jsonl"), history).expect("history");
    let (mut s, jobs, clock) = scheduler(dir.path(), cfg, "2026-11-29T10:20:00Z");
    let ran = tick(&mut s, &jobs);
    assert_eq!(ran.iter().map(|r| &r.1).collect::<Vec<_>>(), vec![&Trigger::Startup("nightly".into())]);
    assert!(tick(&mut s, &jobs).is_empty());
    assert_eq!(s.next_due(), Some(at("2026-11-29T11:00:00Z")));
    clock.set(at("2026-11-29T11:00:00Z"));
    let ran = tick(&mut s, &jobs);
    assert_eq!(ran.iter().map(|r| &r.1).collect::<Vec<_>>(), vec![&Trigger::Schedule("hourly".into())]);
    // New ids follow the history's.
    assert!(ran[0].0 > JobId(2));
}

#[test]
fn conflicting_jobs_never_run_together_and_a_busy_schedule_is_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gate = dir.path().join("gate");
    // The password command waits for the gate file: it holds each job running.
    let hold = format!("while [ ! -e {} ]; do sleep 0.05; done; echo pw", gate.display());
    let schedules = "[schedules.backup]\nprofile = \"prod\"\njob = \"backup\"\nevery = \"1h\"\n\n\
                     [schedules.prune]\nprofile = \"prod\"\njob = \"prune\"\nevery = \"1h\"\n";
    let cfg = config(dir.path(), &hold, schedules);
    let (mut s, jobs, clock) = scheduler(dir.path(), cfg, "2026-11-29T10:00:00Z");
    let t = s.tick();
    assert_eq!(t.submitted.len(), 2, "{t:?}");
    let (backup, prune) = (t.submitted[0].1, t.submitted[1].1);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while jobs.get(backup).map(|s| s.state) != Some(JobState::Running) {
        assert!(std::time::Instant::now() < deadline, "backup never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(jobs.get(prune).map(|s| s.state), Some(JobState::Queued), "prune waits for the backup");
    // An hour later both are still busy: the slot is skipped, not queued behind them.
    clock.advance(3600);
    let t = s.tick();
    assert!(t.submitted.is_empty(), "{t:?}");
    assert_eq!(t.skipped, vec!["backup".to_string(), "prune".to_string()]);
    std::fs::write(&gate, "").expect("gate");
    let (b, p) = (jobs.wait(backup).expect("status"), jobs.wait(prune).expect("status"));
    assert!(p.started_ms >= b.finished_ms, "{b:?} {p:?}");
}
