//! Snapshot selection with restic's semantics: `--host`, `--tag`, `--source` filters,
//! `latest` as the newest matching snapshot, and the newest N per host and source.

use std::collections::BTreeMap;

use crate::crypto::Id;
use crate::error::{Error, Result};
use crate::store::Repository;

use super::snapshot::{Listing, Snapshot, Unreadable};

/// Which snapshots a command looks at; an empty filter matches every snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Any of these hosts.
    pub hosts: Vec<String>,
    /// Any of these tag lists, each matching when the snapshot has all its tags.
    pub tags: Vec<Vec<String>>,
    /// Any of these sources: `kind:name` as listings show it, or the name alone.
    pub sources: Vec<String>,
}

impl Filter {
    /// True when it matches every snapshot.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.tags.is_empty() && self.sources.is_empty()
    }

    /// Whether `s` passes every given filter.
    pub fn matches(&self, s: &Snapshot) -> bool {
        let host = self.hosts.is_empty() || self.hosts.iter().any(|h| h == &s.host);
        let tags = self.tags.is_empty() || self.tags.iter().any(|list| list.iter().all(|t| s.tags.contains(t)));
        let full = source_of(s);
        let source = self.sources.is_empty() || self.sources.iter().any(|x| x == &full || x == &s.source.name);
        host && tags && source
    }

    /// The filter as options, for messages: `--host a --tag x,y`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.hosts.iter().map(|h| format!("--host {h}")).collect();
        parts.extend(self.tags.iter().map(|t| format!("--tag {}", t.join(","))));
        parts.extend(self.sources.iter().map(|s| format!("--source {s}")));
        parts.join(" ")
    }

    /// The error for a spec that matched no snapshot (naming the filter, if any).
    fn none_matches(&self, spec: &str) -> Error {
        if self.is_empty() {
            Error::NoSnapshot(spec.into())
        } else {
            Error::NoSnapshot(format!("{spec} {}", self.describe()))
        }
    }
}

/// A snapshot's source as listings show it: `kind:name`.
pub fn source_of(s: &Snapshot) -> String {
    format!("{}:{}", s.source.kind, s.source.name)
}

/// Finds `latest` (the newest readable snapshot `filter` matches, never a log segment), a
/// full id or a unique prefix (which must match `filter` too); also returns the unreadable
/// files `latest` skipped.
pub fn find(repo: &Repository, spec: &str, filter: &Filter) -> Result<((Id, Snapshot), Vec<Unreadable>)> {
    if spec == "latest" {
        let Listing { snapshots, unreadable } = Listing::load(repo)?;
        let any = !snapshots.is_empty();
        return match snapshots.into_iter().rev().find(|(_, s)| !s.is_log_segment() && filter.matches(s)) {
            Some(newest) => Ok((newest, unreadable)),
            // None readable: the error is the damage, not "no snapshot".
            None if !any => Err(unreadable.into_iter().next().map_or_else(|| filter.none_matches(spec), Unreadable::into_error)),
            None => Err(filter.none_matches(spec)),
        };
    }
    let (found, skipped) = Snapshot::find(repo, spec)?;
    if !filter.matches(&found.1) {
        return Err(Error::Invalid(format!(
            "snapshot {} does not match {} (host {}, source {}, tags [{}])",
            found.0.short(),
            filter.describe(),
            found.1.host,
            source_of(&found.1),
            found.1.tags.join(",")
        )));
    }
    Ok((found, skipped))
}

/// The snapshots `specs` name (each once, in the order given), or every snapshot
/// `filter` matches when `specs` is empty; oldest first in that case.
pub fn select(repo: &Repository, specs: &[String], filter: &Filter) -> Result<(Vec<(Id, Snapshot)>, Vec<Unreadable>)> {
    if specs.is_empty() {
        let Listing { snapshots, unreadable } = Listing::load(repo)?;
        return Ok((snapshots.into_iter().filter(|(_, s)| filter.matches(s)).collect(), unreadable));
    }
    let mut out: Vec<(Id, Snapshot)> = Vec::new();
    let mut skipped = Vec::new();
    for spec in specs {
        let (found, mut sk) = find(repo, spec, filter)?;
        skipped.append(&mut sk);
        if out.iter().all(|(id, _)| *id != found.0) {
            out.push(found);
        }
    }
    Ok((out, skipped))
}

/// The newest `n` snapshots of each host and source, oldest first (as `snapshots --latest N`).
pub fn latest_per_group(snaps: Vec<(Id, Snapshot)>, n: usize) -> Vec<(Id, Snapshot)> {
    let mut groups: BTreeMap<(String, String), Vec<(Id, Snapshot)>> = BTreeMap::new();
    for (id, s) in snaps {
        groups.entry((s.host.clone(), source_of(&s))).or_default().push((id, s));
    }
    let mut out: Vec<(Id, Snapshot)> = Vec::new();
    for (_, mut group) in groups {
        group.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        let skip = group.len().saturating_sub(n);
        out.extend(group.into_iter().skip(skip));
    }
    out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    out
}
