//! Redis 7 multi-part AOF directories: read the manifest's files as one consistent set.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{Result, SourceError};

/// Default number of attempts when a rewrite keeps interfering.
pub const DEFAULT_ATTEMPTS: u32 = 5;

/// Role of a file in the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AofFileKind {
    /// `type b`: the base (RDB or AOF preamble) written by the last rewrite.
    Base,
    /// `type h`: superseded file awaiting deletion; not needed for restore.
    History,
    /// `type i`: incremental commands since the base.
    Incr,
}

/// One `file ... seq ... type ...` line of the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AofFile {
    /// File name inside the AOF directory.
    pub name: String,
    /// Sequence number.
    pub seq: u64,
    /// Base, history or incremental.
    pub kind: AofFileKind,
    /// Bytes read (incremental files keep growing; we read the length seen at open).
    #[serde(default)]
    pub size: u64,
}

/// The manifest of a consistent read, stored in the snapshot description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AofManifest {
    /// Manifest file name (e.g. `appendonly.aof.manifest`).
    pub manifest_name: String,
    /// Files streamed (base and incremental, in load order); history files are left out.
    pub files: Vec<AofFile>,
    /// How many attempts it took to get a set that did not change under us.
    pub attempts: u32,
}

/// What the callback of [`collect`] is being handed.
#[derive(Clone, Debug)]
pub struct AofStream<'a> {
    /// File name (restore it under this name in the AOF directory).
    pub name: &'a str,
    /// Bytes the reader will yield.
    pub size: u64,
    /// 1-based attempt; on a retry the consumer must discard what earlier attempts gave it.
    pub attempt: u32,
}

/// Parse manifest text into its file entries (all kinds, in file order).
pub fn parse_manifest(path: &Path, text: &str) -> Result<Vec<AofFile>> {
    let bad = |msg: String| SourceError::AofManifest { path: path.to_path_buf(), msg };
    let mut files = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let toks: Vec<&str> = line.split_whitespace().collect();
        if !toks.len().is_multiple_of(2) {
            return Err(bad(format!("line {}: odd number of fields (quoted names are not supported)", lineno + 1)));
        }
        let (mut name, mut seq, mut kind) = (None, None, None);
        for kv in toks.chunks(2) {
            match kv[0] {
                "file" => name = Some(kv[1]),
                "seq" => seq = Some(kv[1].parse::<u64>().map_err(|_| bad(format!("line {}: bad seq", lineno + 1)))?),
                "type" => {
                    kind = Some(match kv[1] {
                        "b" => AofFileKind::Base,
                        "h" => AofFileKind::History,
                        "i" => AofFileKind::Incr,
                        other => return Err(bad(format!("line {}: unknown type {other:?}", lineno + 1))),
                    })
                }
                _ => {} // forward compatible: ignore unknown keys
            }
        }
        let (Some(name), Some(seq), Some(kind)) = (name, seq, kind) else {
            return Err(bad(format!("line {}: needs file, seq and type", lineno + 1)));
        };
        if name.contains('/') || name.contains('\\') || name == ".." || name == "." || name.starts_with('"') {
            return Err(bad(format!("line {}: unsafe file name {name:?}", lineno + 1)));
        }
        files.push(AofFile { name: name.to_string(), seq, kind, size: 0 });
    }
    if !files.iter().any(|f| f.kind != AofFileKind::History) {
        return Err(bad("lists no base or incremental file".into()));
    }
    Ok(files)
}

/// Find the manifest in `dir`: `manifest_name` if given, else the only `*.manifest` file.
pub fn find_manifest(dir: &Path, manifest_name: Option<&str>) -> Result<PathBuf> {
    if let Some(n) = manifest_name {
        return Ok(dir.join(n));
    }
    let rd = std::fs::read_dir(dir).map_err(|source| SourceError::File { path: dir.to_path_buf(), source })?;
    let mut found = Vec::new();
    for e in rd {
        let e = e.map_err(|source| SourceError::File { path: dir.to_path_buf(), source })?;
        let name = e.file_name().to_string_lossy().into_owned();
        // Redis writes a new manifest as `temp-<name>` and renames it into
        // place: one may be seen mid-rewrite and is not a second manifest.
        if name.ends_with(".manifest") && !name.starts_with("temp-") {
            found.push(e.path());
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(SourceError::AofManifest { path: dir.to_path_buf(), msg: "no *.manifest file in the AOF directory".into() }),
        _ => Err(SourceError::AofManifest { path: dir.to_path_buf(), msg: "several *.manifest files; name one (appendfilename)".into() }),
    }
}

/// The files [`collect`] streams for this manifest content, in the order it streams them
/// (base first, then incremental files by sequence; history files left out; the manifest follows).
pub fn streamed_files(manifest_path: &Path, manifest: &[u8]) -> Result<Vec<AofFile>> {
    let text = String::from_utf8_lossy(manifest);
    let mut files: Vec<AofFile> =
        parse_manifest(manifest_path, &text)?.into_iter().filter(|f| f.kind != AofFileKind::History).collect();
    files.sort_by_key(|f| (f.kind != AofFileKind::Base, f.seq));
    Ok(files)
}

/// Outcome of one attempt.
enum Attempt {
    Done(AofManifest),
    Changed,
}

/// Stream every base/incr file and then the manifest to `consume`, retrying the whole set if a rewrite interfered.
pub fn collect<F>(dir: &Path, manifest_name: Option<&str>, max_attempts: u32, mut consume: F) -> Result<AofManifest>
where
    F: FnMut(&AofStream<'_>, &mut dyn Read) -> io::Result<()>,
{
    let manifest_path = find_manifest(dir, manifest_name)?;
    for attempt in 1..=max_attempts.max(1) {
        if let Attempt::Done(m) = collect_once(dir, &manifest_path, attempt, &mut consume)? {
            return Ok(m);
        }
    }
    Err(SourceError::AofUnstable { dir: dir.to_path_buf(), attempts: max_attempts.max(1) })
}

fn collect_once<F>(dir: &Path, manifest_path: &Path, attempt: u32, consume: &mut F) -> Result<Attempt>
where
    F: FnMut(&AofStream<'_>, &mut dyn Read) -> io::Result<()>,
{
    let before = match std::fs::read(manifest_path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Attempt::Changed),
        Err(source) => return Err(SourceError::File { path: manifest_path.to_path_buf(), source }),
    };
    let mut files = streamed_files(manifest_path, &before)?;
    for f in &mut files {
        let path = dir.join(&f.name);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A rewrite deletes old files only after replacing the manifest: if the manifest
                // still names this file, it is missing, not rewritten away.
                return match std::fs::read(manifest_path) {
                    Ok(now) if now == before => Err(SourceError::AofMissingFile { manifest: manifest_path.to_path_buf(), name: f.name.clone() }),
                    _ => Ok(Attempt::Changed),
                };
            }
            Err(source) => return Err(SourceError::File { path, source }),
        };
        let size = file.metadata().map_err(|source| SourceError::File { path: path.clone(), source })?.len();
        f.size = size;
        let mut reader = file.take(size);
        let meta = AofStream { name: &f.name, size, attempt };
        consume(&meta, &mut reader).map_err(|source| SourceError::Consumer { name: f.name.clone(), source })?;
    }
    let after = match std::fs::read(manifest_path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Attempt::Changed),
        Err(source) => return Err(SourceError::File { path: manifest_path.to_path_buf(), source }),
    };
    if after != before {
        return Ok(Attempt::Changed);
    }
    let manifest_name = manifest_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let meta = AofStream { name: &manifest_name, size: before.len() as u64, attempt };
    consume(&meta, &mut before.as_slice()).map_err(|source| SourceError::Consumer { name: manifest_name.clone(), source })?;
    Ok(Attempt::Done(AofManifest { manifest_name, files, attempts: attempt }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis7_manifest() {
        let text = "file appendonly.aof.2.base.rdb seq 2 type b\nfile appendonly.aof.1.incr.aof seq 1 type h\nfile appendonly.aof.3.incr.aof seq 3 type i\nfile appendonly.aof.4.incr.aof seq 4 type i\n";
        let f = parse_manifest(Path::new("m"), text).unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!(f[0].kind, AofFileKind::Base);
        assert_eq!(f[1].kind, AofFileKind::History);
        assert_eq!(f[3].seq, 4);
    }

    #[test]
    fn the_temp_manifest_of_a_rewrite_is_not_a_second_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("appendonly.aof.manifest"), "").unwrap();
        std::fs::write(dir.path().join("temp-appendonly.aof.manifest"), "").unwrap();
        assert_eq!(find_manifest(dir.path(), None).unwrap(), dir.path().join("appendonly.aof.manifest"));
        std::fs::write(dir.path().join("other.aof.manifest"), "").unwrap();
        assert!(find_manifest(dir.path(), None).is_err(), "two real manifests are ambiguous");
    }

    #[test]
    fn rejects_bad_manifests() {
        for bad in ["file x seq 1", "file x seq one type b", "file ../x seq 1 type b", "file x seq 1 type z", "file x seq 1 type h"] {
            assert!(parse_manifest(Path::new("m"), bad).is_err(), "{bad}");
        }
    }
}
