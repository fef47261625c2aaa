//! The repository's naming scheme: the only names rdbvault reads, writes or
//! deletes, so a file planted in the repository under another name is never touched.

use super::backend::FileKind;
use crate::error::{Error, Result};

/// A file id as rdbvault writes it: 64 lowercase hex digits.
pub fn is_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A pack subfolder name: two lowercase hex digits (`data/ab`).
pub fn is_pack_dir(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `name` is a name rdbvault gives files of `kind`.
pub fn is_valid(kind: FileKind, name: &str) -> bool {
    match kind {
        FileKind::Config => name == "config",
        _ => is_id(name),
    }
}

/// Fails unless `name` is a name rdbvault gives files of `kind` (so no other file is ever touched).
pub fn check(kind: FileKind, name: &str) -> Result<()> {
    if is_valid(kind, name) {
        return Ok(());
    }
    let what = if kind == FileKind::Config { "config".to_string() } else { format!("{} file", kind.dir()) };
    Err(Error::Invalid(format!("{name:?} is not the name of a {what} (64 hex digits); rdbvault touches no other file")))
}
