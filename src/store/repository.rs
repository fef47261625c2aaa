//! An open repository: its backend, master key and config, and sealed-object I/O.

use std::sync::Arc;

use super::backend::{display_name, Backend, FileKind};
use super::config::{ChunkerParams, Config};
use super::keycache::KeyCache;
use super::keyfile::KeyFile;

use crate::crypto::{Cipher, Id, IdHasher, KdfParams, SecretKey};
use crate::error::{Error, Result};

/// Associated data that binds each sealed file to its kind.
fn kind_aad(kind: FileKind) -> &'static [u8] {
    match kind {
        FileKind::Config => b"rdbvault:config",
        FileKind::Index => b"rdbvault:index",
        FileKind::Snapshot => b"rdbvault:snapshot",
        FileKind::Key => b"rdbvault:key",
        FileKind::Pack => b"rdbvault:pack-header",
        FileKind::Lock => b"rdbvault:lock",
    }
}

/// The config's sealed bytes, or why there are none: no config file means no repository
/// (asked again with `exists`, so a missing bucket keeps its own message).
fn sealed_config(backend: &Arc<dyn Backend>, read: Result<Vec<u8>>) -> Result<Vec<u8>> {
    match read {
        Ok(bytes) => Ok(bytes),
        Err(e) => match backend.exists(FileKind::Config, "config") {
            Ok(false) => Err(Error::NotARepository(backend.location())),
            Ok(true) => Err(e),
            Err(probe) => Err(probe),
        },
    }
}

/// A repository unlocked with a password.
#[derive(Clone)]
pub struct Repository {
    backend: Arc<dyn Backend>,
    cipher: Cipher,
    hasher: IdHasher,
    config: Config,
    master: SecretKey,
    key_name: String,
}

impl Repository {
    /// Creates a new repository with one password.
    pub fn init(backend: Arc<dyn Backend>, password: &[u8], chunker: ChunkerParams, kdf: KdfParams) -> Result<Repository> {
        Self::init_with(backend, password, Config::new(chunker), kdf)
    }

    /// Creates a new repository with one password and the given config (chunk sizes, id key).
    pub fn init_with(backend: Arc<dyn Backend>, password: &[u8], config: Config, kdf: KdfParams) -> Result<Repository> {
        config.chunker.validate().map_err(Error::Invalid)?;
        if let Some(r) = config.records {
            r.validate().map_err(|e| Error::Invalid(format!("record chunks: {e}")))?;
        }
        if backend.exists(FileKind::Config, "config")? {
            return Err(Error::Invalid(format!("{} already holds a repository", backend.location())));
        }
        backend.create()?;
        let master = SecretKey::random();
        let cipher = Cipher::new(&master);
        let key = KeyFile::seal(&master, password, kdf)?;
        let (key_name, key_bytes) = key.to_file()?;
        backend.write(FileKind::Key, &key_name, &key_bytes)?;
        let plain = config.to_plain()?;
        backend.write(FileKind::Config, "config", &cipher.seal(kind_aad(FileKind::Config), &plain))?;
        let hasher = IdHasher::new(config.id_key.clone());
        Ok(Repository { backend, cipher, hasher, config, master, key_name })
    }

    /// Opens a repository, trying the password against every key file.
    pub fn open(backend: Arc<dyn Backend>, password: &[u8]) -> Result<Repository> {
        Repository::open_cached(backend, password, None)
    }

    /// `open`, trying the key files cached in `keys` first, while the repository's key files
    /// are listed: a cached one counts only if the listing still names it.
    pub fn open_cached(backend: Arc<dyn Backend>, password: &[u8], keys: Option<&KeyCache>) -> Result<Repository> {
        // The config travels beside the key files and the key derivation: on object storage that
        // saves a round trip before the derivation and one after it.
        std::thread::scope(|scope| {
            let config = scope.spawn(|| backend.read(FileKind::Config, "config"));
            let config = move || config.join().unwrap_or_else(|_| Err(Error::Invalid("reading the config panicked".into())));
            let listing = scope.spawn(|| backend.list(FileKind::Key));
            let listing = move || listing.join().unwrap_or_else(|_| Err(Error::Invalid("listing the key files panicked".into())));
            Repository::open_with(&backend, password, config, listing, keys)
        })
    }

    /// `open` once the config's bytes and the key files' names are on their way; a missing
    /// config means no repository.
    fn open_with(
        backend: &Arc<dyn Backend>,
        password: &[u8],
        config: impl FnOnce() -> Result<Vec<u8>>,
        listing: impl FnOnce() -> Result<Vec<super::FileInfo>>,
        cache: Option<&KeyCache>,
    ) -> Result<Repository> {
        // A cached key file the password opens (a damaged one is read again below).
        let cached = cache.map(KeyCache::load).unwrap_or_default();
        let mut tried = std::collections::HashSet::new();
        let mut opened = None;
        for (name, bytes) in &cached {
            let what = display_name(FileKind::Key, name);
            match KeyFile::parse(bytes, &what).and_then(|k| k.open(password, &what)) {
                Ok(Some(master)) => {
                    opened = Some((master, name.clone()));
                    break;
                }
                Ok(None) => {
                    tried.insert(name.clone());
                }
                Err(_) => {}
            }
        }
        let keys = match listing() {
            Ok(keys) if !keys.is_empty() => keys,
            other => {
                sealed_config(backend, config())?;
                other?;
                return Err(Error::corrupt("keys/", "the repository has no key files"));
            }
        };
        if let Some(cache) = cache {
            cache.keep_only(&keys);
        }
        // A key removed from the repository opens nothing, cached or not.
        opened = opened.filter(|(_, name)| keys.iter().any(|k| k.name == *name));
        let mut damaged = Vec::new();
        for info in keys.iter().filter(|k| !tried.contains(&k.name)) {
            if opened.is_some() {
                break;
            }
            let what = display_name(FileKind::Key, &info.name);
            let parsed = backend.read(FileKind::Key, &info.name).and_then(|b| {
                if Id::of_bytes(&b).to_hex() != info.name {
                    return Err(Error::corrupt(&what, "content does not match its name (bytes were changed)"));
                }
                if let Some(cache) = cache {
                    cache.store(&info.name, &b);
                }
                KeyFile::parse(&b, &what)
            });
            match parsed.and_then(|k| k.open(password, &what)) {
                Ok(Some(master)) => opened = Some((master, info.name.clone())),
                Ok(None) => {}
                Err(e) => damaged.push(e.to_string()),
            }
        }
        let Some((master, key_name)) = opened else {
            if !damaged.is_empty() {
                return Err(Error::Invalid(format!(
                    "wrong password, or a damaged key file: {} (`rdbvault check` names damaged key files; open with another password and `rdbvault key remove ID` removes one)",
                    damaged.join("; ")
                )));
            }
            return Err(Error::WrongPassword(backend.location()));
        };
        let cipher = Cipher::new(&master);
        let sealed = sealed_config(backend, config())?;
        let plain = zeroize::Zeroizing::new(cipher.open(kind_aad(FileKind::Config), &sealed, "config")?);
        let config = Config::from_plain(&plain)?;
        let hasher = IdHasher::new(config.id_key.clone());
        Ok(Repository { backend: backend.clone(), cipher, hasher, config, master, key_name })
    }

    /// Serves index and snapshot files from a local cache in `base`/<repository id>.
    pub fn with_cache(mut self, base: &std::path::Path) -> Repository {
        let id = &self.config.repo_id;
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            let dir = base.join(id);
            self.backend = Arc::new(super::cache::CachedBackend::new(self.backend, dir));
        }
        self
    }

    /// The storage behind this repository.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The cipher for blobs and sealed files.
    pub fn cipher(&self) -> &Cipher {
        &self.cipher
    }

    /// The keyed hasher for blob ids.
    pub fn hasher(&self) -> &IdHasher {
        &self.hasher
    }

    /// The decrypted config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Name of the key file the password opened.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// Seals `plain` and stores it under the hash of the sealed bytes; returns that name.
    pub fn write_sealed(&self, kind: FileKind, plain: &[u8]) -> Result<Id> {
        let (id, sealed) = self.seal_file(kind, plain);
        self.backend.write(kind, &id.to_hex(), &sealed)?;
        Ok(id)
    }

    /// A sealed file's bytes and the name they will be stored under (their hash).
    pub fn seal_file(&self, kind: FileKind, plain: &[u8]) -> (Id, Vec<u8>) {
        let sealed = self.cipher.seal(kind_aad(kind), plain);
        (Id::of_bytes(&sealed), sealed)
    }

    /// Reads, checks the name against the content hash, and decrypts a sealed file.
    pub fn read_sealed(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let what = display_name(kind, name);
        let sealed = self.backend.read(kind, name)?;
        if kind != FileKind::Config && Id::of_bytes(&sealed).to_hex() != name {
            return Err(Error::corrupt(what, "content does not match its name (bytes were changed)"));
        }
        self.cipher.open(kind_aad(kind), &sealed, &what)
    }

    /// Adds a password: a new key file sealing the same master key.
    pub fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<String> {
        let key = KeyFile::seal(&self.master, password, kdf)?;
        let (name, bytes) = key.to_file()?;
        self.backend.write(FileKind::Key, &name, &bytes)?;
        Ok(name)
    }
}
