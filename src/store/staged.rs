//! Staged files are named after the process writing them
//! (`.staged.tmp-<host tag>-<pid>-<random>`), so one a killed command left can be
//! told from one still being written, and removed at once.
//!
//! A staged file is stale when its writer is gone:
//! - written on this host: its process is no longer running;
//! - written on another host: no live lock in the repository is held by that
//!   host and pid; files in `locks/`, `keys/` and the config's folder (written
//!   without a lock: a lock being taken, `key add`, `init`) must also be older
//!   than [`STALE_AFTER`], as a live writer there holds no lock to show;
//! - unowned (named by earlier versions): older than [`UNOWNED_STALE`].

use std::collections::HashSet;
use std::time::Duration;

use super::backend::{FileKind, TempFile};
use super::lock::{self, process_alive, STALE_AFTER};
use super::repository::Repository;
use crate::error::Result;

/// The start of every staged file's name.
pub const PREFIX: &str = ".staged.tmp-";
/// Staged files without an owner in their name are stale after this long.
pub const UNOWNED_STALE: Duration = Duration::from_secs(3600);

/// Eight hex digits standing for a host name (names may hold any character).
pub fn host_tag(host: &str) -> String {
    hex::encode(&blake3::hash(host.as_bytes()).as_bytes()[..4])
}

/// A fresh staged-file name owned by this process.
pub fn new_name() -> String {
    let random = hex::encode(crate::crypto::random_bytes::<6>());
    format!("{PREFIX}{}-{}-{random}", host_tag(&crate::host::hostname()), std::process::id())
}

/// Whether `name` is a staged file's name (the only temporary names rdbvault deletes).
pub fn is_staged(name: &str) -> bool {
    name.strip_prefix(PREFIX).is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 48 && rest.bytes().all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The host tag and pid a staged name records; `None` for unowned names.
fn owner(name: &str) -> Option<(String, u32)> {
    let mut parts = name.strip_prefix(PREFIX)?.split('-');
    let (tag, pid, _random) = (parts.next()?, parts.next()?, parts.next()?);
    if tag.len() != 8 || parts.next().is_some() {
        return None;
    }
    Some((tag.to_string(), pid.parse().ok()?))
}

/// A staged file whose writer is gone, and how that is known.
#[derive(Debug, Clone)]
pub struct Stale {
    /// The file.
    pub file: TempFile,
    /// Why it is stale, for messages.
    pub why: String,
}

/// Why `file` is stale, or `None` while its writer may still be at work.
fn verdict(file: &TempFile, live: &HashSet<(String, u32)>, me: &(String, u32)) -> Option<String> {
    let age = file.age.unwrap_or(Duration::ZERO);
    let Some((tag, pid)) = owner(&file.name) else {
        return (age >= UNOWNED_STALE).then(|| format!("written {} minutes ago by an older rdbvault", age.as_secs() / 60));
    };
    if (&tag, pid) == (&me.0, me.1) {
        return None;
    }
    if tag == me.0 {
        return (!process_alive(pid)).then(|| format!("its writer, process {pid} on this host, is gone"));
    }
    if live.contains(&(tag, pid)) {
        return None;
    }
    let lockless = matches!(file.kind, FileKind::Lock | FileKind::Key | FileKind::Config);
    if lockless && age < STALE_AFTER {
        return None;
    }
    Some(format!("its writer, process {pid} on another host, holds no live lock"))
}

/// Every stale staged file in the repository.
pub fn stale(repo: &Repository) -> Result<Vec<Stale>> {
    let files = repo.backend().list_staged()?;
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let live: HashSet<(String, u32)> = lock::list(repo)?
        .into_iter()
        .filter_map(|l| l.info.ok())
        .filter(|info| !info.is_stale())
        .map(|info| (host_tag(&info.host), info.pid))
        .collect();
    let me = (host_tag(&crate::host::hostname()), std::process::id());
    Ok(files.into_iter().filter_map(|file| verdict(&file, &live, &me).map(|why| Stale { file, why })).collect())
}

/// Removes every stale staged file; returns how many went.
pub fn remove_stale(repo: &Repository) -> Result<u64> {
    let mut removed = 0;
    for s in stale(repo)? {
        repo.backend().delete_staged(&s.file)?;
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(kind: FileKind, name: &str, age_secs: u64) -> TempFile {
        TempFile { kind, sub: None, name: name.into(), age: Some(Duration::from_secs(age_secs)) }
    }

    #[test]
    fn names_record_their_owner() {
        let name = new_name();
        assert!(is_staged(&name), "{name}");
        assert_eq!(owner(&name), Some((host_tag(&crate::host::hostname()), std::process::id())));
        assert!(is_staged(".staged.tmp-0123456789ab"));
        assert_eq!(owner(".staged.tmp-0123456789ab"), None);
        for foreign in [".staged.tmp-", ".staged.tmp-../x", ".staged.tmp-ABC", ".nfs0001", "staged.tmp-ab"] {
            assert!(!is_staged(foreign), "{foreign}");
        }
    }

    #[test]
    fn only_files_of_gone_writers_are_stale() {
        let me = ("aaaaaaaa".to_string(), 1);
        let live: HashSet<(String, u32)> = [("bbbbbbbb".to_string(), 7)].into();
        let here = host_tag(&crate::host::hostname());
        let this = (here.clone(), std::process::id());
        let mine = format!("{PREFIX}aaaaaaaa-1-000000000000");
        assert_eq!(verdict(&file(FileKind::Pack, &mine, 9999), &live, &me), None, "our own");
        let running = format!("{PREFIX}{here}-{}-000000000000", std::process::id());
        assert_eq!(verdict(&file(FileKind::Pack, &running, 9999), &live, &(here.clone(), 0)), None, "a running process here");
        let gone = format!("{PREFIX}{here}-{}-000000000000", u32::MAX - 1);
        assert!(verdict(&file(FileKind::Pack, &gone, 0), &live, &this).is_some(), "a gone process here, at once");
        let locked = format!("{PREFIX}bbbbbbbb-7-000000000000");
        assert_eq!(verdict(&file(FileKind::Pack, &locked, 9999), &live, &this), None, "a lock holder elsewhere");
        let unlocked = format!("{PREFIX}bbbbbbbb-8-000000000000");
        assert!(verdict(&file(FileKind::Pack, &unlocked, 0), &live, &this).is_some(), "no lock elsewhere, at once");
        assert_eq!(verdict(&file(FileKind::Lock, &unlocked, 60), &live, &this), None, "a lock being taken elsewhere");
        assert!(verdict(&file(FileKind::Lock, &unlocked, STALE_AFTER.as_secs()), &live, &this).is_some());
        assert_eq!(verdict(&file(FileKind::Pack, ".staged.tmp-0123456789ab", 60), &live, &this), None);
        assert!(verdict(&file(FileKind::Pack, ".staged.tmp-0123456789ab", 3600), &live, &this).is_some());
    }
}
