//! `check`: finds every damaged or missing piece of a repository and names it.
//! It only reads; it never changes, locks or repairs anything.
//!
//! Structure: key files match their names and parse; index files match their
//! names, decrypt and parse; every index entry points into an existing pack at
//! the place its header says; every pack is indexed; no blob is stored in two
//! packs; every snapshot decrypts and every chunk-list and chunk it needs is
//! indexed. Data (`--read-data`): every selected pack hashes to its name and
//! every blob in it decrypts, decompresses and hashes to its id.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use rand::seq::SliceRandom;
use serde::Serialize;

use crate::crypto::Id;
use crate::error::{Error, Result};
use crate::format::index::{repair_hint, Index, IndexFile};
use crate::format::pack::{frames, members_digest, read_header, BlobEntry, BlobKeys, LastFrame};
use crate::format::compress::Decoder;
use crate::store::{display_name, staged, Backend, FileKind, KeyFile, Repository};
use crate::engine::restore::Blobs;
use crate::format::snapshot::{Snapshot, Unreadable};

/// How bad a finding is: errors make `check` fail, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Data is or may be lost.
    Error,
    /// Harmless leftovers that backup or prune clean up.
    Warning,
}

/// One finding, naming the file and blob concerned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// Short category: key, config, index, pack, blob, snapshot, duplicate, unindexed-pack, superseded-index,
    /// layout, foreign, staged-file, key-index.
    pub kind: &'static str,
    /// Repository file, like `data/ab/abcd…` or `index/…`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Blob id, when one blob is concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: ")?;
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        if let Some(blob) = &self.blob {
            write!(f, "blob {blob}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Which packs `--read-data` reads in full.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadData {
    /// None: structure only.
    None,
    /// Every pack.
    All,
    /// Group `n` (1-based) of `m` groups of packs by id.
    Group(u32, u32),
    /// A random share (0..=1) of the packs.
    Share(f64),
}

impl ReadData {
    /// Parses `N/M` or `P%`.
    pub fn parse_subset(s: &str) -> Result<ReadData> {
        let bad = || Error::Invalid(format!("{s:?} is not a subset like 1/10 or 5%"));
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(0.0..=100.0).contains(&p) {
                return Err(bad());
            }
            return Ok(ReadData::Share(p / 100.0));
        }
        let (n, m) = s.split_once('/').ok_or_else(bad)?;
        let (n, m): (u32, u32) = (n.trim().parse().map_err(|_| bad())?, m.trim().parse().map_err(|_| bad())?);
        if m == 0 || n == 0 || n > m {
            return Err(bad());
        }
        Ok(ReadData::Group(n, m))
    }

    fn select(&self, packs: &[String]) -> Vec<String> {
        match *self {
            ReadData::None => Vec::new(),
            ReadData::All => packs.to_vec(),
            ReadData::Group(n, m) => packs
                .iter()
                .filter(|p| {
                    let first = p.get(..8).and_then(|h| u32::from_str_radix(h, 16).ok()).unwrap_or(0);
                    first % m == n - 1
                })
                .cloned()
                .collect(),
            ReadData::Share(share) => {
                let mut all = packs.to_vec();
                all.shuffle(&mut rand::thread_rng());
                all.truncate((packs.len() as f64 * share).ceil() as usize);
                all.sort();
                all
            }
        }
    }
}

/// Everything `check` found, with counts of what it looked at.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Findings, in the order found.
    pub problems: Vec<Problem>,
    /// Key files examined.
    pub keys: usize,
    /// Index files examined.
    pub index_files: usize,
    /// Pack files in the repository.
    pub packs: usize,
    /// Snapshots examined.
    pub snapshots: usize,
    /// Packs read in full.
    pub packs_read: usize,
    /// Blobs decrypted and verified while reading data.
    pub blobs_read: usize,
}

impl CheckReport {
    /// Number of errors.
    pub fn errors(&self) -> usize {
        self.problems.iter().filter(|p| p.severity == Severity::Error).count()
    }

    /// Number of warnings.
    pub fn warnings(&self) -> usize {
        self.problems.iter().filter(|p| p.severity == Severity::Warning).count()
    }

    fn push(&mut self, severity: Severity, kind: &'static str, file: Option<String>, blob: Option<&Id>, message: impl Into<String>) {
        let p = Problem { severity, kind, file, blob: blob.map(Id::to_hex), message: message.into() };
        if !self.problems.contains(&p) {
            self.problems.push(p);
        }
    }

    fn error(&mut self, kind: &'static str, file: Option<String>, blob: Option<&Id>, e: impl std::fmt::Display) {
        self.push(Severity::Error, kind, file, blob, e.to_string());
    }
}

/// Checks the layout (see [`check_layout`]), then the key files without a
/// password: each matches its name and parses.
pub fn check_keys(backend: &dyn Backend, report: &mut CheckReport) -> Result<()> {
    if !check_layout(backend, report)? {
        return Ok(());
    }
    let keys = backend.list(FileKind::Key)?;
    if keys.is_empty() {
        report.error("key", Some("keys/".into()), None, "the repository has no key files");
    }
    for info in keys {
        report.keys += 1;
        let what = display_name(FileKind::Key, &info.name);
        let checked = backend.read(FileKind::Key, &info.name).and_then(|b| {
            if Id::of_bytes(&b).to_hex() != info.name {
                return Err(Error::corrupt(&what, "content does not match its name (bytes were changed)"));
            }
            KeyFile::parse(&b, &what).map(|_| ())
        });
        if let Err(e) = checked {
            report.error("key", Some(what), None, e);
        }
    }
    Ok(())
}

/// Checks an opened repository (the config already decrypted) and adds findings to `report`.
pub fn check(repo: &Repository, read_data: ReadData, report: &mut CheckReport) -> Result<()> {
    check_cancellable(repo, read_data, report, None)
}

/// [`check`] that stops with [`Error::Cancelled`] between packs once `cancel` is set.
pub fn check_cancellable(
    repo: &Repository,
    read_data: ReadData,
    report: &mut CheckReport,
    cancel: Option<&std::sync::atomic::AtomicBool>,
) -> Result<()> {
    if report.problems.iter().any(|p| p.kind == "layout") {
        return Ok(());
    }
    check_staged(repo, report);
    // Streamed into the table, one file at a time: the parsed files are not held beside it.
    let (index, damaged) = Index::load_tolerant(repo)?;
    report.index_files = index.files.len();
    for (name, e) in &damaged {
        report.error("index", Some(display_name(FileKind::Index, name)), None, e);
    }
    let damaged: HashSet<&String> = damaged.iter().map(|(n, _)| n).collect();
    for name in &index.files {
        if index.superseded.contains(name) {
            report.push(
                Severity::Warning,
                "superseded-index",
                Some(display_name(FileKind::Index, name)),
                None,
                "replaced by a newer index file but not yet deleted (an interrupted prune); it is ignored and prune removes it",
            );
        }
    }
    let on_disk: HashMap<String, u64> = repo.backend().list(FileKind::Pack)?.into_iter().map(|f| (f.name, f.size)).collect();
    report.packs = on_disk.len();
    let live: Vec<&String> = index.files.iter().filter(|n| !index.superseded.contains(*n) && !damaged.contains(n)).collect();
    check_packs(repo, &live, &index, &on_disk, report);
    let (blobs, damaged_dicts) = Blobs::tolerant(repo, &index);
    for (id, e) in damaged_dicts {
        let pack = index.get(&id).map(|(p, _)| display_name(FileKind::Pack, &p.to_hex()));
        report.error("blob", pack, Some(&id), format!("compression dictionary: {e}"));
    }
    check_snapshots(repo, &blobs, read_data == ReadData::All, report)?;
    let mut names: Vec<String> = on_disk.keys().cloned().collect();
    names.sort();
    for name in read_data.select(&names) {
        Error::check_cancel(cancel)?;
        read_pack(repo, &name, &blobs, report);
    }
    Ok(())
}

/// Names every entry rdbvault did not put in the repository: foreign files and
/// links are warnings (ignored, never deleted); a link or file where a folder or
/// the config belongs is an error (commands refuse it). False if that stops the check.
pub fn check_layout(backend: &dyn Backend, report: &mut CheckReport) -> Result<bool> {
    let mut usable = true;
    for f in backend.foreign()? {
        if f.blocking {
            usable = false;
            report.error("layout", Some(f.path), None, f.problem);
        } else {
            report.push(Severity::Warning, "foreign", Some(f.path), None, f.problem);
        }
    }
    Ok(usable)
}

/// Names the staged files interrupted commands left (warnings: prune or the next backup removes them).
fn check_staged(repo: &Repository, report: &mut CheckReport) {
    match staged::stale(repo) {
        Ok(stale) => {
            for s in stale {
                let msg = format!("temporary file of an interrupted command ({}); `rdbvault prune` or the next backup removes it", s.why);
                report.push(Severity::Warning, "staged-file", Some(s.file.path()), None, msg);
            }
        }
        Err(e) => report.error("staged-file", None, None, format!("cannot tell which staged files are stale: {e}")),
    }
}

/// Checks the entries of the index files `live` against the packs' headers, reading the
/// files again one at a time (a repository of 8 M blobs holds ~500 MB of parsed entries).
fn check_packs(repo: &Repository, live: &[&String], index: &Index, on_disk: &HashMap<String, u64>, report: &mut CheckReport) {
    // The index holds one copy of each blob: an entry in another pack names a second
    // copy (a set of every blob's packs would take ~230 bytes per blob).
    let mut dups: BTreeMap<Id, BTreeSet<Id>> = BTreeMap::new();
    let mut indexed: HashSet<String> = HashSet::new();
    for name in live {
        let what = display_name(FileKind::Index, name);
        let file = match repo.read_sealed(FileKind::Index, name).and_then(|p| IndexFile::parse(&p, &what)) {
            Ok(file) => file,
            // Merged into a newer file or pruned since it was loaded: its entries were checked there.
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                report.error("index", Some(what), None, repair_hint(e));
                continue;
            }
        };
        check_file_packs(repo, index.live_entries_by_pack(vec![((*name).clone(), file)]), index, on_disk, &mut dups, &mut indexed, report);
    }
    let mut orphans: Vec<&String> = on_disk.keys().filter(|n| !indexed.contains(*n)).collect();
    orphans.sort();
    for name in orphans {
        let what = display_name(FileKind::Pack, name);
        if Id::from_hex(name).is_none() {
            report.error("pack", Some(what), None, "file name is not a pack id");
        } else if let Err(e) = read_header(repo.backend().as_ref(), repo.cipher(), name) {
            report.error("pack", Some(what), None, e);
        } else {
            let msg = "unindexed pack left by an interrupted backup or prune; the next backup adopts it, prune removes it";
            report.push(Severity::Warning, "unindexed-pack", Some(what), None, msg);
        }
    }
    for (id, in_packs) in &dups {
        let mut names: Vec<String> = in_packs.iter().map(|p| display_name(FileKind::Pack, &p.to_hex())).collect();
        names.sort();
        let msg = format!("stored in {} packs ({}); prune keeps one copy", names.len(), names.join(", "));
        report.push(Severity::Warning, "duplicate", None, Some(id), msg);
    }
}

/// Checks one index file's packs: each exists and its header holds every entry.
fn check_file_packs(
    repo: &Repository,
    packs: BTreeMap<Id, (String, Vec<BlobEntry>)>,
    index: &Index,
    on_disk: &HashMap<String, u64>,
    dups: &mut BTreeMap<Id, BTreeSet<Id>>,
    indexed: &mut HashSet<String>,
    report: &mut CheckReport,
) {
    for (pack, (_, entries)) in &packs {
        indexed.insert(pack.to_hex());
        for e in entries {
            if let Some((chosen, _)) = index.get(&e.id).filter(|(p, _)| p != pack) {
                dups.entry(e.id).or_default().extend([chosen, *pack]);
            }
        }
    }
    for (pack, (index_name, entries)) in &packs {
        let name = pack.to_hex();
        let what = display_name(FileKind::Pack, &name);
        if !on_disk.contains_key(&name) {
            let msg = format!("is missing, but {} names it ({} blobs lost)", display_name(FileKind::Index, index_name), entries.len());
            report.error("pack", Some(what), None, msg);
            continue;
        }
        let header = match read_header(repo.backend().as_ref(), repo.cipher(), &name) {
            Ok(h) => h,
            Err(e) => {
                report.error("pack", Some(what), None, e);
                continue;
            }
        };
        let blobs_end = header.last().map_or(0, |l| l.offset as u64 + l.length as u64);
        let places: HashMap<(Id, u32), BlobEntry> = header.iter().map(|h| ((h.id, h.offset), *h)).collect();
        for e in entries {
            if e.offset as u64 + e.length as u64 > blobs_end {
                let msg = format!("index entry at bytes {}..{} lies outside the pack's {blobs_end} bytes of blobs", e.offset, e.offset as u64 + e.length as u64);
                report.error("index", Some(what.clone()), Some(&e.id), msg);
            } else if places.get(&(e.id, e.offset)) != Some(e) {
                report.error("index", Some(what.clone()), Some(&e.id), "index entry does not match the pack header");
            }
        }
    }
}

fn check_snapshots(repo: &Repository, blobs: &Blobs<'_>, read_all: bool, report: &mut CheckReport) -> Result<()> {
    let mut lists: HashMap<Id, Option<usize>> = HashMap::new();
    for info in repo.backend().list(FileKind::Snapshot)? {
        report.snapshots += 1;
        let what = display_name(FileKind::Snapshot, &info.name);
        let snap = match Snapshot::load(repo, &info.name) {
            Ok(s) => s,
            Err(error) => {
                report.error("snapshot", Some(what), None, Unreadable { name: info.name.clone(), error }.into_error());
                continue;
            }
        };
        for file in &snap.files {
            let mut count = Some(0usize);
            for hex in &file.lists {
                let Some(id) = Id::from_hex(hex) else {
                    report.error("snapshot", Some(what.clone()), None, format!("file {}: bad chunk-list id {hex:?}", file.name));
                    count = None;
                    continue;
                };
                let n = match lists.get(&id) {
                    Some(n) => *n,
                    None => {
                        let n = check_list(blobs, &id, &what, &file.name, report);
                        lists.insert(id, n);
                        n
                    }
                };
                count = count.zip(n).map(|(a, b)| a + b);
            }
            if let Some(c) = count {
                if c as u64 != file.chunks {
                    let msg = format!("file {}: chunk lists hold {c} chunks, snapshot says {}", file.name, file.chunks);
                    report.error("snapshot", Some(what.clone()), None, msg);
                }
            }
        }
        let checked = match (&snap.key_index, &snap.key_layers) {
            (Some(r), _) => crate::maintain::keycheck::check_key_index(blobs, &snap, r, read_all),
            (None, Some(r)) => crate::maintain::keycheck::check_key_layers(blobs, &snap, r, read_all),
            (None, None) => Ok(()),
        };
        if let Err(e) = checked {
            report.error("key-index", Some(what.clone()), None, format!("{e}; the RDB itself is not affected (restore of the whole snapshot still works), but selecting keys through the index fails"));
        }
    }
    Ok(())
}

/// Loads one chunk list (a top blob and its leaves, or a flat list) and checks its
/// chunks are indexed; returns its length if readable.
fn check_list(blobs: &Blobs<'_>, id: &Id, snap: &str, file: &str, report: &mut CheckReport) -> Option<usize> {
    let index = match blobs.index() {
        Ok(index) => index,
        Err(e) => {
            report.error("index", None, None, e);
            return None;
        }
    };
    let ids = match blobs.list_chunks(id) {
        Ok(ids) => ids,
        Err(e @ Error::MissingBlob { .. }) => {
            report.error("snapshot", Some(snap.to_string()), Some(id), format!("file {file}: chunk list: {e}"));
            return None;
        }
        Err(e) => {
            let pack = index.get(id).map(|(p, _)| display_name(FileKind::Pack, &p.to_hex()));
            report.error("blob", pack, Some(id), format!("chunk list of {snap} file {file}: {e}"));
            return None;
        }
    };
    for c in &ids {
        if !index.contains(c) {
            report.error("snapshot", Some(snap.to_string()), Some(c), format!("file {file}: chunk is not in the index"));
        }
    }
    Some(ids.len())
}

/// Reads a pack in full: its bytes hash to its name and every blob verifies.
fn read_pack(repo: &Repository, name: &str, blobs: &Blobs<'_>, report: &mut CheckReport) {
    let index = match blobs.index() {
        Ok(index) => index,
        Err(e) => return report.error("index", None, None, e),
    };
    let mut zstd = blobs.decoder();
    let what = display_name(FileKind::Pack, name);
    let bytes = match repo.backend().read(FileKind::Pack, name) {
        Ok(b) => b,
        Err(e) => return report.error("pack", Some(what), None, e),
    };
    report.packs_read += 1;
    if Id::of_bytes(&bytes).to_hex() != name {
        report.error("pack", Some(what.clone()), None, "content does not match its name (bytes were changed)");
    }
    let (entries, whole_frames) = match read_header(repo.backend().as_ref(), repo.cipher(), name) {
        Ok(h) => (h, true),
        Err(e) => {
            report.error("pack", Some(what.clone()), None, e);
            // Still verify the blobs the index places here.
            let Some(pack) = Id::from_hex(name) else { return };
            (index.iter().filter(|(p, _)| *p == pack).map(|(_, e)| e).collect(), false)
        }
    };
    // Blobs of one frame come one after another: each frame is opened once.
    let keys = BlobKeys::of(repo);
    let mut last = LastFrame::default();
    let pack = Id::from_hex(name).unwrap_or(Id([0; 32]));
    for frame in frames(&entries) {
        for e in frame {
            read_blob(&keys, &mut zstd, &mut last, &pack, e, &bytes, &what, report);
        }
        // A bound frame's digest must name exactly the blobs its header lists.
        let first = &frame[0];
        if let (true, Some(Some(digest))) = (whole_frames, last.digest_of(&pack, first)) {
            if digest != members_digest(first.kind, frame.iter().map(|e| (&e.id, e.raw_len))) {
                report.error("blob", Some(what.clone()), Some(&first.id), "its frame's bound chunk ids do not match the pack header");
            }
        }
    }
}

/// Verifies one blob of a pack read in full, opening its frame unless it was opened last.
#[allow(clippy::too_many_arguments)]
fn read_blob(keys: &BlobKeys<'_>, zstd: &mut Decoder<'_>, last: &mut LastFrame, pack: &Id, e: &BlobEntry, bytes: &[u8], what: &str, report: &mut CheckReport) {
    report.blobs_read += 1;
    let blob_what = format!("blob {} in {what}", e.id);
    let (start, end) = (e.offset as usize, e.offset as usize + e.length as usize);
    let verified = bytes
        .get(start..end)
        .ok_or_else(|| Error::corrupt(&blob_what, "lies beyond the end of its pack"))
        .and_then(|sealed| last.blob(keys, zstd, pack, e, sealed, &blob_what).map(|_| ()));
    if let Err(e2) = verified {
        let msg = match e2 {
            Error::Corrupt { detail, .. } => detail,
            other => other.to_string(),
        };
        report.error("blob", Some(what.to_string()), Some(&e.id), msg);
    }
}
