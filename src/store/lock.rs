//! Repository locks: shared for backup and restore, exclusive for prune,
//! forget and repair, so nothing deletes data a running command relies on.
//!
//! A lock is a sealed JSON file in `locks/`. To take one: list the locks, give
//! up if a live conflicting one exists, write ours, list again and back off if
//! a conflicting lock appeared meanwhile (two racers both back off and retry
//! after a random pause). A thread rewrites the lock every few minutes while
//! the guard lives; a lock not refreshed for 30 minutes, or whose process on
//! this host is gone, is stale and ignored.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use rand::Rng;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::store::{display_name, FileKind, Repository};

/// A lock not refreshed for this long is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is rewritten with a fresh time.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// What a lock file says about its holder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockInfo {
    /// When the lock was written or last refreshed (RFC 3339).
    pub time: String,
    /// Host of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// Exclusive (prune, forget, repair) or shared (backup, restore).
    pub exclusive: bool,
    /// User of the holder.
    pub username: String,
}

impl LockInfo {
    /// A lock for this process, timed now.
    pub fn new(exclusive: bool) -> LockInfo {
        LockInfo {
            time: crate::host::now_rfc3339(),
            host: crate::host::hostname(),
            pid: std::process::id(),
            exclusive,
            username: crate::host::username(),
        }
    }

    /// Seals and stores the lock; returns its file name.
    pub fn save(&self, repo: &Repository) -> Result<String> {
        let (name, sealed) = self.seal(repo)?;
        repo.backend().write(FileKind::Lock, &name, &sealed)?;
        Ok(name)
    }

    /// The lock's file name and sealed bytes, before it is written.
    fn seal(&self, repo: &Repository) -> Result<(String, Vec<u8>)> {
        let json = serde_json::to_vec(self).map_err(|e| Error::Invalid(format!("lock: {e}")))?;
        let (id, sealed) = repo.seal_file(FileKind::Lock, &json);
        Ok((id.to_hex(), sealed))
    }

    /// How long ago the lock was written (zero if its time is in the future or unreadable).
    pub fn age(&self) -> Duration {
        OffsetDateTime::parse(&self.time, &Rfc3339)
            .ok()
            .and_then(|t| (OffsetDateTime::now_utc() - t).try_into().ok())
            .unwrap_or(Duration::ZERO)
    }

    /// Stale: not refreshed for STALE_AFTER, or its process on this host is gone.
    pub fn is_stale(&self) -> bool {
        if self.age() >= STALE_AFTER {
            return true;
        }
        self.host == crate::host::hostname() && !process_alive(self.pid)
    }

    /// `exclusive lock held by user@host pid 42 for 3s`.
    pub fn describe(&self) -> String {
        format!(
            "{} lock held by {}@{} pid {} (written {}s ago)",
            if self.exclusive { "exclusive" } else { "shared" },
            self.username,
            self.host,
            self.pid,
            self.age().as_secs()
        )
    }
}

/// Whether process `pid` runs on this host (one of another user counts).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// One lock file as found in the repository.
#[derive(Debug)]
pub struct FoundLock {
    /// File name in `locks/`.
    pub name: String,
    /// Its contents, or why they could not be read.
    pub info: Result<LockInfo>,
}

/// Lists and reads every lock file (files that vanish meanwhile are skipped).
pub fn list(repo: &Repository) -> Result<Vec<FoundLock>> {
    list_except(repo, None)
}

/// Like `list`, without reading the lock named `ours` (a round trip less on object storage).
fn list_except(repo: &Repository, ours: Option<&str>) -> Result<Vec<FoundLock>> {
    let mut out = Vec::new();
    for f in repo.backend().list(FileKind::Lock)? {
        if Some(f.name.as_str()) == ours {
            continue;
        }
        let info = repo.read_sealed(FileKind::Lock, &f.name).and_then(|plain| {
            serde_json::from_slice::<LockInfo>(&plain)
                .map_err(|e| Error::corrupt(display_name(FileKind::Lock, &f.name), format!("not a lock: {e}")))
        });
        if let Err(Error::Io { source, .. }) = &info {
            if source.kind() == std::io::ErrorKind::NotFound {
                continue;
            }
        }
        out.push(FoundLock { name: f.name, info });
    }
    Ok(out)
}

/// Removes stale locks (or, with `all`, every lock); returns the names removed.
pub fn remove(repo: &Repository, all: bool) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for l in list(repo)? {
        let stale = matches!(&l.info, Ok(info) if info.is_stale());
        if all || stale {
            repo.backend().delete(FileKind::Lock, &l.name)?;
            removed.push(l.name);
        }
    }
    Ok(removed)
}

/// Live locks that conflict with taking one of the given mode.
fn conflicts(repo: &Repository, exclusive: bool, ours: Option<&str>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for l in list_except(repo, ours)? {
        match l.info {
            Ok(info) if info.is_stale() => {}
            Ok(info) if exclusive || info.exclusive => out.push(info.describe()),
            Ok(_) => {}
            Err(e) => out.push(format!(
                "unreadable lock {} ({e}; `rdbvault unlock --remove-all` removes it once no other rdbvault runs)",
                display_name(FileKind::Lock, &l.name)
            )),
        }
    }
    Ok(out)
}

/// Entry points for taking locks.
pub struct Lock;

impl Lock {
    /// A shared lock (backup, restore): fails at once if an exclusive lock is live.
    pub fn shared(repo: &Repository) -> Result<LockGuard> {
        Lock::acquire(repo, false, Duration::ZERO)
    }

    /// An exclusive lock (prune, forget, repair): fails at once if any lock is live.
    pub fn exclusive(repo: &Repository) -> Result<LockGuard> {
        Lock::acquire(repo, true, Duration::ZERO)
    }

    /// Takes a lock, retrying for up to `retry` while conflicting locks are live.
    pub fn acquire(repo: &Repository, exclusive: bool, retry: Duration) -> Result<LockGuard> {
        Lock::acquire_refreshing(repo, exclusive, retry, REFRESH_EVERY)
    }

    /// Like `acquire`, refreshing the lock every `refresh` (tests use a short one).
    pub fn acquire_refreshing(repo: &Repository, exclusive: bool, retry: Duration, refresh: Duration) -> Result<LockGuard> {
        let started = Instant::now();
        loop {
            // Ours is written while the others are read: one round trip instead of two. A
            // conflict seen before ours landed withdraws it; none seen is checked once more after.
            let (name, sealed) = LockInfo::new(exclusive).seal(repo)?;
            let (before, saved) = std::thread::scope(|scope| {
                let saving = scope.spawn(|| repo.backend().write(FileKind::Lock, &name, &sealed));
                let before = conflicts(repo, exclusive, Some(&name));
                (before, saving.join().unwrap_or_else(|_| Err(Error::Invalid("writing the lock panicked".into()))))
            });
            let withdraw = || if saved.is_ok() { repo.backend().delete(FileKind::Lock, &name) } else { Ok(()) };
            let mut found = match before {
                Ok(found) => found,
                Err(e) => {
                    withdraw()?;
                    return Err(e);
                }
            };
            if found.is_empty() {
                saved?;
                found = conflicts(repo, exclusive, Some(&name))?;
                if found.is_empty() {
                    return Ok(LockGuard::start(repo, exclusive, name, refresh));
                }
                repo.backend().delete(FileKind::Lock, &name)?;
            } else {
                withdraw()?;
            }
            let left = retry.saturating_sub(started.elapsed());
            if left.is_zero() {
                let waited = if retry.is_zero() { String::new() } else { format!(" (waited {}s)", retry.as_secs()) };
                return Err(Error::Locked(format!("{}{waited}", found.join("; "))));
            }
            let pause = Duration::from_millis(rand::thread_rng().gen_range(50..500));
            std::thread::sleep(pause.min(left));
        }
    }
}

/// A held lock; refreshed in the background, removed when dropped.
pub struct LockGuard {
    repo: Repository,
    exclusive: bool,
    current: Arc<Mutex<String>>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl LockGuard {
    fn start(repo: &Repository, exclusive: bool, name: String, refresh: Duration) -> LockGuard {
        let current = Arc::new(Mutex::new(name));
        let (stop, stopped) = bounded::<()>(0);
        let thread = {
            let (repo, current) = (repo.clone(), current.clone());
            std::thread::spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(refresh) {
                    // A failed refresh is retried next round; the old lock stays meanwhile.
                    if let Ok(new) = LockInfo::new(exclusive).save(&repo) {
                        let old = match current.lock() {
                            Ok(mut cur) => std::mem::replace(&mut *cur, new),
                            Err(p) => std::mem::replace(&mut *p.into_inner(), new),
                        };
                        let _ = repo.backend().delete(FileKind::Lock, &old);
                    }
                }
            })
        };
        LockGuard { repo: repo.clone(), exclusive, current, stop: Some(stop), thread: Some(thread) }
    }

    /// Whether this is an exclusive lock.
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    /// Fails unless this is an exclusive lock (for functions that delete data).
    pub fn require_exclusive(&self, what: &str) -> Result<()> {
        if self.exclusive {
            Ok(())
        } else {
            Err(Error::Invalid(format!("{what} needs an exclusive lock")))
        }
    }

    /// Name of the current lock file.
    pub fn name(&self) -> String {
        match self.current.lock() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.repo.backend().delete(FileKind::Lock, &self.name());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ChunkerParams;
    use crate::crypto::KdfParams;
    use crate::store::LocalBackend;

    #[test]
    fn held_locks_are_refreshed_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let kdf = KdfParams { m_cost: 8, t_cost: 1, p_cost: 1 };
        let repo = Repository::init(Arc::new(LocalBackend::new(dir.path())), b"pw", ChunkerParams::default(), kdf).unwrap();
        let guard = Lock::acquire_refreshing(&repo, true, Duration::ZERO, Duration::from_millis(20)).unwrap();
        let first = guard.name();
        std::thread::sleep(Duration::from_millis(200));
        // The refresher writes the new file before deleting the old one, so a
        // listing may catch both for a moment; it must settle on one.
        let mut locks = list(&repo).unwrap();
        for _ in 0..100 {
            if locks.len() == 1 && locks[0].name == guard.name() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            locks = list(&repo).unwrap();
        }
        assert_eq!(locks.len(), 1, "the old lock file goes when a new one is written");
        assert_ne!(locks[0].name, first, "the lock was rewritten");
        assert_eq!(locks[0].name, guard.name());
        assert!(Lock::shared(&repo).is_err());
        drop(guard);
        assert!(list(&repo).unwrap().is_empty());
        assert!(Lock::shared(&repo).is_ok());
    }
}
