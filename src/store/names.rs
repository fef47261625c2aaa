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
    let scheme = match kind {
        FileKind::Config => "the repository folder (only \"config\")".to_string(),
        FileKind::Pack => "data/xx/ with 64 hex digits".to_string(),
        _ => format!("{}/ with 64 hex digits", kind.dir()),
    };
    Err(Error::Invalid(format!("{name:?} is not a name rdbvault gives files in {scheme}; it touches no other file")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_schemes_names_pass() {
        let id = "0123456789abcdef".repeat(4);
        assert!(check(FileKind::Lock, &id).is_ok() && check(FileKind::Config, "config").is_ok());
        for bad in ["README", "../../etc/passwd", &id.to_uppercase(), &id[..63], &format!("{id}0"), "config"] {
            assert!(check(FileKind::Lock, bad).is_err(), "{bad}");
        }
        assert!(check(FileKind::Config, &id).is_err());
        assert!(is_pack_dir("ab") && !is_pack_dir("AB") && !is_pack_dir("abc") && !is_pack_dir(".."));
    }
}
