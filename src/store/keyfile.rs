//! Key files: the master key sealed under a key derived from one password.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{derive_key, random_bytes, Cipher, Id, KdfParams, SecretKey};
use crate::error::{Error, Result};

const KEY_AAD: &[u8] = b"rdbvault:key";

/// Highest Argon2 costs a key file may name (4 GiB, 100 passes, 64 lanes): a forged key file
/// must not make every command allocate terabytes or hash for days before the password fails.
pub const MAX_KDF: KdfParams = KdfParams { m_cost: 4 * 1024 * 1024, t_cost: 100, p_cost: 64 };

/// Why `p` is beyond [`MAX_KDF`], if it is.
fn over_max(p: KdfParams) -> Option<String> {
    let over = p.m_cost > MAX_KDF.m_cost || p.t_cost > MAX_KDF.t_cost || p.p_cost > MAX_KDF.p_cost;
    over.then(|| {
        format!(
            "Argon2 costs (memory {} KiB, {} passes, {} lanes) exceed the limit ({} KiB, {} passes, {} lanes)",
            p.m_cost, p.t_cost, p.p_cost, MAX_KDF.m_cost, MAX_KDF.t_cost, MAX_KDF.p_cost
        )
    })
}

/// The on-disk key file (plain JSON: nothing in it is secret without the password).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// Format version.
    pub version: u32,
    /// When this password was added (RFC 3339).
    pub created: String,
    /// Host that added it, to tell keys apart in `key list`.
    pub host: String,
    /// User that added it.
    pub username: String,
    /// Always "argon2id".
    pub kdf: String,
    /// Argon2id costs.
    pub kdf_params: KdfParams,
    /// Hex salt (16 random bytes).
    pub salt: String,
    /// Hex of the sealed master key.
    pub data: String,
}

impl KeyFile {
    /// Seals `master` under `password`.
    pub fn seal(master: &SecretKey, password: &[u8], params: KdfParams) -> Result<KeyFile> {
        if let Some(msg) = over_max(params) {
            return Err(Error::Invalid(msg));
        }
        let salt = random_bytes::<16>();
        let kek = derive_key(password, &salt, params)?;
        let sealed = Cipher::new(&kek).seal(KEY_AAD, master.as_bytes());
        Ok(KeyFile {
            version: 1,
            created: crate::host::now_rfc3339(),
            host: crate::host::hostname(),
            username: crate::host::username(),
            kdf: "argon2id".into(),
            kdf_params: params,
            salt: hex::encode(salt),
            data: hex::encode(sealed),
        })
    }

    /// Opens the master key; `None` when the password does not fit.
    pub fn open(&self, password: &[u8], what: &str) -> Result<Option<SecretKey>> {
        if self.kdf != "argon2id" {
            return Err(Error::corrupt(what, format!("unknown key derivation {:?}", self.kdf)));
        }
        if let Some(msg) = over_max(self.kdf_params) {
            return Err(Error::corrupt(what, msg));
        }
        let salt = hex::decode(&self.salt).map_err(|_| Error::corrupt(what, "salt is not hex"))?;
        let sealed = hex::decode(&self.data).map_err(|_| Error::corrupt(what, "sealed key is not hex"))?;
        let kek = derive_key(password, &salt, self.kdf_params)?;
        match Cipher::new(&kek).open(KEY_AAD, &sealed, what) {
            Ok(plain) => {
                let plain = Zeroizing::new(plain);
                let key = SecretKey::from_slice(&plain)
                    .ok_or_else(|| Error::corrupt(what, "sealed master key has the wrong length"))?;
                Ok(Some(key))
            }
            Err(_) => Ok(None),
        }
    }

    /// Serialized bytes and the file name they get (hash of the bytes).
    pub fn to_file(&self) -> Result<(String, Vec<u8>)> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Invalid(format!("key file: {e}")))?;
        Ok((Id::of_bytes(&bytes).to_hex(), bytes))
    }

    /// Parses a key file.
    pub fn parse(bytes: &[u8], what: &str) -> Result<KeyFile> {
        serde_json::from_slice(bytes).map_err(|e| Error::corrupt(what, format!("not a key file: {e}")))
    }
}
