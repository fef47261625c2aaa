//! Retention policies (restic's semantics): which snapshots `forget` keeps, and why.
//!
//! Snapshots are grouped (by host and source unless told otherwise) and each
//! group is walked newest first. `keep-last N` keeps the N newest; `keep-hourly
//! N` (daily, weekly, monthly, yearly alike) keeps the newest snapshot of each
//! of the last N hours that have snapshots; `keep-within D` keeps everything
//! newer than the group's newest snapshot minus D; `keep-tag T` keeps any
//! snapshot tagged T (`a,b`: tagged a and b). A snapshot is kept if any rule keeps it. Times are UTC.

use std::collections::BTreeMap;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

use crate::error::{Error, Result};
use crate::store::lock::LockGuard;
use crate::store::{FileKind, Repository};
use crate::format::select::Filter;
use crate::format::snapshot::{Listing, Snapshot, Unreadable};

/// A calendar span for `keep-within`, like `1y2m3d4h`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Within {
    /// Years.
    pub years: i32,
    /// Months.
    pub months: i32,
    /// Days.
    pub days: i64,
    /// Hours.
    pub hours: i64,
}

impl Within {
    /// Parses `2d`, `1y2m3d4h`, ... (units y, m, d, h; each at most once, in any order).
    pub fn parse(s: &str) -> Result<Within> {
        let bad = || Error::Invalid(format!("{s:?} is not a duration like 2d, 12h or 1y2m3d4h"));
        let mut w = Within::default();
        let mut num = String::new();
        let mut seen = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            if num.is_empty() || seen.contains(c) {
                return Err(bad());
            }
            let n: i64 = num.parse().map_err(|_| bad())?;
            let small = || i32::try_from(n).map_err(|_| bad());
            match c {
                'y' => w.years = small()?,
                'm' => w.months = small()?,
                'd' => w.days = n,
                'h' => w.hours = n,
                _ => return Err(bad()),
            }
            seen.push(c);
            num.clear();
        }
        if !num.is_empty() || seen.is_empty() {
            return Err(bad());
        }
        Ok(w)
    }

    /// `t` minus this span: calendar years and months first (the day is clamped
    /// to the target month's length), then days and hours.
    pub fn before(&self, t: OffsetDateTime) -> OffsetDateTime {
        let total = t.year() as i64 * 12 + (t.month() as i64 - 1) - self.years as i64 * 12 - self.months as i64;
        let (year, month0) = (total.div_euclid(12), total.rem_euclid(12));
        let shifted = i32::try_from(year)
            .ok()
            .and_then(|y| Month::try_from(month0 as u8 + 1).ok().map(|m| (y, m)))
            .and_then(|(y, m)| {
                let day = t.day().min(m.length(y));
                Date::from_calendar_date(y, m, day).ok()
            })
            .map_or(t, |d| t.replace_date(d));
        shifted - time::Duration::days(self.days) - time::Duration::hours(self.hours)
    }
}

impl std::fmt::Display for Within {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, unit) in [(self.years as i64, 'y'), (self.months as i64, 'm'), (self.days, 'd'), (self.hours, 'h')] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// Which snapshots to keep; zero counts are off.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Keep the N newest.
    pub last: u32,
    /// Keep the newest of each of the last N hours with snapshots.
    pub hourly: u32,
    /// ... days.
    pub daily: u32,
    /// ... ISO weeks.
    pub weekly: u32,
    /// ... months.
    pub monthly: u32,
    /// ... years.
    pub yearly: u32,
    /// Keep everything within this span of the newest snapshot.
    pub within: Option<Within>,
    /// Keep snapshots with any of these tags (`a,b`: with both).
    pub tags: Vec<String>,
}

impl Policy {
    /// True when no rule is set (forget then refuses to run).
    pub fn is_empty(&self) -> bool {
        self.last + self.hourly + self.daily + self.weekly + self.monthly + self.yearly == 0
            && self.within.is_none()
            && self.tags.is_empty()
    }
}

/// What snapshots are grouped by before the policy applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBy {
    /// By host.
    pub host: bool,
    /// By source (kind and name).
    pub source: bool,
    /// By the set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy { host: true, source: true, tags: false }
    }
}

impl GroupBy {
    /// Parses `host,source,tags` (any subset; empty groups everything together).
    pub fn parse(s: &str) -> Result<GroupBy> {
        let mut g = GroupBy { host: false, source: false, tags: false };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "source" | "path" | "paths" => g.source = true,
                "tags" | "tag" => g.tags = true,
                other => return Err(Error::Invalid(format!("cannot group by {other:?} (use host, source, tags)"))),
            }
        }
        Ok(g)
    }
}

/// The facts of one snapshot the policy looks at.
#[derive(Debug, Clone)]
pub struct Row {
    /// Snapshot id (hex).
    pub id: String,
    /// When it was taken.
    pub time: OffsetDateTime,
    /// Its host.
    pub host: String,
    /// Its source, `kind:name`.
    pub source: String,
    /// Its tags.
    pub tags: Vec<String>,
}

impl Row {
    /// The row for a stored snapshot.
    pub fn of(id: &crate::crypto::Id, s: &Snapshot) -> Result<Row> {
        let time = OffsetDateTime::parse(&s.time, &Rfc3339)
            .map_err(|e| Error::corrupt(format!("snapshots/{id}"), format!("time {:?} is not RFC 3339: {e}", s.time)))?;
        Ok(Row {
            id: id.to_hex(),
            time,
            host: s.host.clone(),
            source: format!("{}:{}", s.source.kind, s.source.name),
            tags: s.tags.clone(),
        })
    }
}

/// The values a group shares.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupKey {
    /// Host, when grouping by host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Source, when grouping by source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Sorted tags, when grouping by tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Decision {
    /// Snapshot id.
    pub id: String,
    /// Its time (RFC 3339).
    pub time: String,
    /// Why it is kept (empty when removed).
    pub reasons: Vec<String>,
}

/// The verdicts for one group, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct GroupDecision {
    /// What the group's snapshots share.
    pub group: GroupKey,
    /// Kept snapshots with reasons.
    pub keep: Vec<Decision>,
    /// Snapshots to forget.
    pub remove: Vec<Decision>,
}

/// Applies `policy` to every group of `rows`.
pub fn apply(rows: &[Row], policy: &Policy, by: GroupBy) -> Vec<GroupDecision> {
    let mut groups: BTreeMap<GroupKey, Vec<Row>> = BTreeMap::new();
    for r in rows {
        let mut tags = r.tags.clone();
        tags.sort();
        let key = GroupKey {
            host: by.host.then(|| r.host.clone()),
            source: by.source.then(|| r.source.clone()),
            tags: by.tags.then_some(tags),
        };
        groups.entry(key).or_default().push(r.clone());
    }
    groups.into_iter().map(|(group, rows)| apply_group(group, rows, policy)).collect()
}

fn apply_group(group: GroupKey, mut rows: Vec<Row>, policy: &Policy) -> GroupDecision {
    rows.sort_by(|a, b| b.time.cmp(&a.time).then(a.id.cmp(&b.id)));
    type Bucket = fn(&OffsetDateTime, usize) -> i64;
    let rules: [(u32, &str, Bucket); 6] = [
        (policy.last, "last snapshot", |_, n| n as i64),
        (policy.hourly, "hourly snapshot", |t, _| (t.year() as i64 * 1000 + t.ordinal() as i64) * 100 + t.hour() as i64),
        (policy.daily, "daily snapshot", |t, _| t.year() as i64 * 1000 + t.ordinal() as i64),
        (policy.weekly, "weekly snapshot", |t, _| {
            let (y, w, _) = t.to_iso_week_date();
            y as i64 * 100 + w as i64
        }),
        (policy.monthly, "monthly snapshot", |t, _| t.year() as i64 * 100 + t.month() as i64),
        (policy.yearly, "yearly snapshot", |t, _| t.year() as i64),
    ];
    let mut left: Vec<u32> = rules.iter().map(|r| r.0).collect();
    let mut last: Vec<Option<i64>> = vec![None; rules.len()];
    let cutoff = match (policy.within, rows.first()) {
        (Some(w), Some(newest)) => Some((w, w.before(newest.time))),
        _ => None,
    };
    let mut out = GroupDecision { group, keep: Vec::new(), remove: Vec::new() };
    for (n, row) in rows.iter().enumerate() {
        let mut reasons = Vec::new();
        for (i, (_, why, bucket)) in rules.iter().enumerate() {
            if left[i] == 0 {
                continue;
            }
            let b = bucket(&row.time, n);
            if last[i] != Some(b) {
                last[i] = Some(b);
                left[i] -= 1;
                reasons.push(why.to_string());
            }
        }
        if let Some((w, t)) = cutoff {
            if row.time > t {
                reasons.push(format!("within {w}"));
            }
        }
        // `a,b` keeps snapshots that have both (restic's tag lists).
        let tagged: Vec<&String> = policy.tags.iter().filter(|t| t.split(',').all(|p| row.tags.iter().any(|r| r == p))).collect();
        if !tagged.is_empty() {
            reasons.push(format!("has tag {}", tagged.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(",")));
        }
        let time = row.time.format(&Rfc3339).unwrap_or_default();
        let d = Decision { id: row.id.clone(), time, reasons };
        if d.reasons.is_empty() {
            out.remove.push(d);
        } else {
            out.keep.push(d);
        }
    }
    out
}

/// Loads every readable snapshot `filter` matches as a policy row (log segments are not
/// rows: they go with their base, see [`segments_of`]); also returns the snapshot files that
/// cannot be read (no policy keeps or removes those).
pub fn rows(repo: &Repository, filter: &Filter) -> Result<(Vec<Row>, Vec<Unreadable>)> {
    let listing = Listing::load(repo)?;
    let rows = listing
        .snapshots
        .iter()
        .filter(|(_, s)| !s.is_log_segment() && filter.matches(s))
        .map(|(id, s)| Row::of(id, s))
        .collect::<Result<Vec<_>>>()?;
    Ok((rows, listing.unreadable))
}

/// A snapshot named on the command line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Chosen {
    /// Snapshot id (its file name).
    pub id: String,
    /// Its time, when the file can be read.
    pub time: Option<String>,
}

/// Resolves snapshot ids or unique prefixes to snapshot files, each once, in
/// the order given; fails (choosing nothing) if any matches no snapshot or
/// several. Damaged snapshots can be chosen: only their names are needed.
pub fn choose(repo: &Repository, specs: &[String]) -> Result<Vec<Chosen>> {
    let mut out: Vec<Chosen> = Vec::new();
    for spec in specs {
        let id = Snapshot::resolve(repo, spec)?;
        if out.iter().all(|c| c.id != id) {
            let time = Snapshot::load(repo, &id).ok().map(|s| s.time);
            out.push(Chosen { id, time });
        }
    }
    Ok(out)
}

/// The log segments that continue any of `bases` (full ids), oldest first: useless once their
/// base is gone, so they are forgotten with it.
pub fn segments_of(repo: &Repository, bases: &[String]) -> Result<Vec<Chosen>> {
    let listing = Listing::load(repo)?;
    Ok(listing
        .snapshots
        .into_iter()
        .filter(|(id, s)| s.log_base().is_some_and(|b| bases.iter().any(|x| x == b)) && !bases.contains(&id.to_hex()))
        .map(|(id, s)| Chosen { id: id.to_hex(), time: Some(s.time) })
        .collect())
}

/// Deletes the given snapshot files (their data goes at the next prune).
pub fn remove_snapshots(repo: &Repository, ids: &[String], lock: &LockGuard) -> Result<()> {
    lock.require_exclusive("forget")?;
    for id in ids {
        repo.backend().delete(FileKind::Snapshot, id)?;
    }
    Ok(())
}
