//! `rdbvault cat`: one repository file as decrypted JSON, for debugging.

use rdbvault::crypto::Id;
use rdbvault::format::index::IndexFile;
use rdbvault::format::pack::{self, BlobEntry, BlobType};
use rdbvault::store::{FileKind, KeyFile, Repository};
use serde_json::{json, Value};

use super::{open_repo, output, Global};

/// `cat TYPE [ID]`.
#[derive(clap::Args, Debug)]
pub struct CatArgs {
    /// What to print: config, snapshot, index, key, lock, or pack (its header).
    #[arg(value_enum, value_name = "TYPE")]
    pub kind: Kind,
    /// The file's id or a unique prefix (`latest` for a snapshot); not for config.
    #[arg(value_name = "ID", required_if_eq_any = [("kind", "snapshot"), ("kind", "index"), ("kind", "key"), ("kind", "lock"), ("kind", "pack")])]
    pub id: Option<String>,
}

/// `cat TYPE`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The repository config (format version, chunker parameters; the id key hidden).
    Config,
    /// A snapshot.
    Snapshot,
    /// An index file.
    Index,
    /// A key file (KDF parameters; the sealed master key hidden).
    Key,
    /// A lock.
    Lock,
    /// A pack file's header: the blobs it holds.
    Pack,
}

/// What replaces secrets in the output.
const HIDDEN: &str = "(secret, not shown)";

pub fn run(g: &Global, a: CatArgs) -> anyhow::Result<()> {
    let repo = open_repo(g)?;
    let id = a.id.as_deref().unwrap_or_default();
    if a.kind == Kind::Config && a.id.is_some() {
        anyhow::bail!("`cat config` takes no id: a repository has one config");
    }
    let v = match a.kind {
        Kind::Config => {
            let c = repo.config();
            json!({ "version": c.version, "repo_id": c.repo_id, "chunker": c.chunker, "id_key": HIDDEN })
        }
        Kind::Snapshot => {
            let (found, _) = rdbvault::format::snapshot::Snapshot::find(&repo, id)?;
            sealed_json(&repo, FileKind::Snapshot, &found.0.to_hex())?
        }
        Kind::Lock => sealed_json(&repo, FileKind::Lock, &resolve(&repo, FileKind::Lock, id)?)?,
        Kind::Key => {
            let name = resolve(&repo, FileKind::Key, id)?;
            let bytes = repo.backend().read(FileKind::Key, &name)?;
            let mut v = serde_json::to_value(KeyFile::parse(&bytes, &format!("keys/{name}"))?)?;
            v["data"] = HIDDEN.into();
            v
        }
        Kind::Index => {
            let name = resolve(&repo, FileKind::Index, id)?;
            let plain = repo.read_sealed(FileKind::Index, &name)?;
            let file = IndexFile::parse(&plain, &format!("index/{name}"))?;
            json!({
                "supersedes": file.supersedes.iter().map(Id::to_hex).collect::<Vec<_>>(),
                "packs": file.packs.iter().map(|(p, e)| json!({ "id": p.to_hex(), "blobs": blobs(e) })).collect::<Vec<_>>(),
            })
        }
        Kind::Pack => {
            let name = resolve(&repo, FileKind::Pack, id)?;
            let entries = pack::read_header(repo.backend().as_ref(), repo.cipher(), &name)?;
            json!({ "id": name, "blobs": blobs(&entries) })
        }
    };
    output::print_json(&v)
}

/// A sealed JSON file, decrypted.
fn sealed_json(repo: &Repository, kind: FileKind, name: &str) -> anyhow::Result<Value> {
    let plain = repo.read_sealed(kind, name)?;
    Ok(serde_json::from_slice(&plain)?)
}

/// The file of `kind` whose name is `spec` or starts with it (one only).
fn resolve(repo: &Repository, kind: FileKind, spec: &str) -> anyhow::Result<String> {
    let spec = spec.to_ascii_lowercase();
    let names: Vec<String> = repo.backend().list(kind)?.into_iter().map(|f| f.name).filter(|n| !spec.is_empty() && n.starts_with(&spec)).collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!("no file in {}/ matches {spec:?}", kind.dir()),
        many => anyhow::bail!(
            "{spec:?} is ambiguous in {}/: {}",
            kind.dir(),
            many.iter().map(|n| n.get(..8).unwrap_or(n)).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Index and pack-header entries as JSON.
fn blobs(entries: &[BlobEntry]) -> Vec<Value> {
    entries
        .iter()
        .map(|e| {
            let kind = match e.kind {
                BlobType::Data => "data",
                BlobType::ChunkList => "chunk-list",
                BlobType::Dictionary => "dictionary",
            };
            json!({
                "id": e.id.to_hex(), "type": kind, "flags": e.flags, "offset": e.offset, "length": e.length,
                "raw_length": e.raw_len, "frame_offset": e.inner, "frame_length": e.frame_len,
            })
        })
        .collect()
}
