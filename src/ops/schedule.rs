//! The scheduler: submits each schedule's job to [`Jobs`] when it is due.
//!
//! Times are UTC seconds from a [`Clock`] (a fake one in tests). A schedule whose last run
//! (from the job history) is older than its most recent due time was missed while the
//! scheduler was not running: it runs once at start (trigger `Startup`), not once per
//! missed slot. A schedule with no run in the history starts fresh: an interval runs at
//! start, a cron expression at its next time. A run is skipped, not queued, while the
//! schedule's previous job is still queued or running; conflicts with other jobs on the
//! repository wait in [`Jobs`], so two conflicting jobs never run together.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::ops::config::{Config, Schedule, When};
use crate::ops::jobs::{JobId, Jobs};
use crate::ops::spec::Trigger;

/// Where the scheduler reads the time (Unix seconds).
pub trait Clock: Send + Sync {
    fn now(&self) -> i64;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }
}

/// A clock the test sets.
#[derive(Default)]
pub struct FakeClock(pub AtomicI64);

impl FakeClock {
    pub fn at(t: i64) -> FakeClock {
        FakeClock(AtomicI64::new(t))
    }
    pub fn set(&self, t: i64) {
        self.0.store(t, Ordering::SeqCst);
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A schedule and the next time it is due.
struct Entry {
    schedule: Schedule,
    /// Unix seconds; `None` when it never runs again (a cron that matches no date).
    next: Option<i64>,
}

/// What one [`Scheduler::tick`] did.
#[derive(Debug, Default, PartialEq)]
pub struct Tick {
    /// (schedule, job) submitted.
    pub submitted: Vec<(String, JobId)>,
    /// Schedules due whose previous job was still queued or running.
    pub skipped: Vec<String>,
    /// Schedules whose job could not be made or submitted, with why.
    pub failed: Vec<(String, String)>,
}

/// Submits due jobs; [`Scheduler::tick`] does one round, [`Scheduler::spawn`] loops.
pub struct Scheduler {
    config: Config,
    jobs: Jobs,
    clock: Arc<dyn Clock>,
    entries: Vec<Entry>,
    started: bool,
}

/// Next due time of `when` after a run at `last`.
fn next_after(when: &When, last: i64) -> Option<i64> {
    match when {
        When::Cron(c) => c.next_after(last),
        When::Every(d) => Some(last + d.as_secs() as i64),
    }
}

impl Scheduler {
    /// A scheduler for every schedule of `config`; the last runs come from `jobs`' history.
    pub fn new(config: Config, jobs: Jobs, clock: Arc<dyn Clock>) -> Scheduler {
        let now = clock.now();
        let history = jobs.list();
        let entries = config
            .schedules
            .values()
            .map(|s| {
                // Newest first: the first job this schedule submitted.
                let last = history.iter().find(|j| j.trigger.schedule() == Some(s.name.as_str())).map(|j| (j.submitted_ms / 1000) as i64);
                let next = match (last, &s.when) {
                    (Some(last), w) => next_after(w, last),
                    (None, When::Every(_)) => Some(now),
                    (None, w @ When::Cron(_)) => next_after(w, now),
                };
                Entry { schedule: s.clone(), next }
            })
            .collect();
        Scheduler { config, jobs, clock, entries, started: false }
    }

    /// When the next schedule is due (Unix seconds), if any is.
    pub fn next_due(&self) -> Option<i64> {
        self.entries.iter().filter_map(|e| e.next).min()
    }

    /// Submits the jobs due now; the first round marks caught-up runs as `Startup`.
    pub fn tick(&mut self) -> Tick {
        let now = self.clock.now();
        let mut out = Tick::default();
        let live = self.jobs.list().into_iter().filter(|j| !j.state.finished()).collect::<Vec<_>>();
        let first = !self.started;
        self.started = true;
        for e in &mut self.entries {
            let Some(due) = e.next.filter(|d| *d <= now) else { continue };
            let name = e.schedule.name.clone();
            e.next = next_after(&e.schedule.when, now.max(due));
            if live.iter().any(|j| j.trigger.schedule() == Some(name.as_str())) {
                out.skipped.push(name);
                continue;
            }
            let trigger = if first && due < now { Trigger::Startup(name.clone()) } else { Trigger::Schedule(name.clone()) };
            match self.config.schedule_job(&e.schedule, trigger).map_err(crate::ops::OpsError::Invalid).and_then(|spec| self.jobs.submit(spec)) {
                Ok(id) => out.submitted.push((name, id)),
                Err(err) => out.failed.push((name, err.to_string())),
            }
        }
        out
    }

    /// Runs the scheduler on its own thread until the handle is stopped or dropped.
    pub fn spawn(config: Config, jobs: Jobs) -> std::io::Result<SchedulerHandle> {
        let mut s = Scheduler::new(config, jobs, Arc::new(SystemClock));
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("scheduler".into()).spawn(move || loop {
            s.tick();
            // Wake at the next due time, at least once a minute (the clock may jump).
            let wait = s.next_due().map_or(60, |t| (t - s.clock.now()).clamp(1, 60));
            match stopped.recv_timeout(Duration::from_secs(wait as u64)) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        })?;
        Ok(SchedulerHandle { stop: Some(stop), thread: Some(thread) })
    }
}

/// The running scheduler thread; stopping or dropping it ends the thread (jobs already
/// submitted go on).
pub struct SchedulerHandle {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SchedulerHandle {
    /// Stops the scheduler and waits for its thread.
    pub fn stop(mut self) {
        self.end();
    }

    fn end(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        self.end();
    }
}
