//! Password management: every password is a key file sealing the same master
//! key, so adding or removing one never re-encrypts data.

use serde::Serialize;

use crate::crypto::KdfParams;
use crate::error::{Error, Result};
use crate::store::{display_name, FileKind, KeyFile, Repository};

/// One key file as `key list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// Key file name.
    pub id: String,
    /// When the password was added.
    pub created: String,
    /// Host that added it.
    pub host: String,
    /// User that added it.
    pub username: String,
    /// Whether the password in use opened this key.
    pub current: bool,
}

fn read(repo: &Repository, name: &str) -> Result<KeyFile> {
    KeyFile::parse(&repo.backend().read(FileKind::Key, name)?, &display_name(FileKind::Key, name))
}

/// Every key file, oldest first.
pub fn list(repo: &Repository) -> Result<Vec<KeyInfo>> {
    let mut out = Vec::new();
    for f in repo.backend().list(FileKind::Key)? {
        let k = read(repo, &f.name)?;
        out.push(KeyInfo { current: f.name == repo.key_name(), id: f.name, created: k.created, host: k.host, username: k.username });
    }
    out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// The Argon2 costs of the key in use (new passwords get the same by default).
pub fn current_params(repo: &Repository) -> Result<KdfParams> {
    Ok(read(repo, repo.key_name())?.kdf_params)
}

/// Resolves a unique key id prefix.
pub fn find(repo: &Repository, prefix: &str) -> Result<String> {
    let p = prefix.to_ascii_lowercase();
    let names: Vec<String> =
        repo.backend().list(FileKind::Key)?.into_iter().map(|f| f.name).filter(|n| !p.is_empty() && n.starts_with(&p)).collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::Invalid(format!("no key matches {prefix:?}"))),
        _ => Err(Error::Invalid(format!("key prefix {prefix:?} is ambiguous"))),
    }
}

/// Removes a password; the one in use and the last one are refused.
pub fn remove(repo: &Repository, prefix: &str) -> Result<String> {
    let name = find(repo, prefix)?;
    if name == repo.key_name() {
        return Err(Error::Invalid(format!(
            "key {} is the one in use; use `key passwd` to change it, or remove it with another password",
            &name[..8]
        )));
    }
    if repo.backend().list(FileKind::Key)?.len() <= 1 {
        return Err(Error::Invalid("refusing to remove the last key: the repository would become unreadable".into()));
    }
    repo.backend().delete(FileKind::Key, &name)?;
    Ok(name)
}

/// Replaces the password in use: adds the new key first, then removes the old one.
pub fn passwd(repo: &Repository, new_password: &[u8], kdf: KdfParams) -> Result<String> {
    let name = repo.add_key(new_password, kdf)?;
    repo.backend().delete(FileKind::Key, repo.key_name())?;
    Ok(name)
}
