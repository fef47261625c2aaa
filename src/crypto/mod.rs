//! Keys, authenticated encryption and keyed content ids.
//!
//! Every object is sealed as `nonce (24) || ciphertext || tag (16)` with
//! XChaCha20-Poly1305 and a fresh random nonce; the associated data binds the
//! object to its kind (and, for blobs, to its id) so objects cannot be swapped.
//!
//! Pure: no I/O, and uses nothing of the crate but `error`.

mod argon_memory;
pub mod idhash;

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};

/// Bytes added to every sealed object: nonce plus tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// 32 secret bytes that are wiped when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// A fresh key from the OS random generator.
    pub fn random() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        SecretKey(k)
    }

    /// Wraps key bytes taken from a decrypted file.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(bytes)
    }

    /// Reads a key from a byte slice (e.g. a decrypted key file).
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(SecretKey(arr))
    }

    /// The raw bytes, for sealing the key under another key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// Seals and opens objects under one key.
#[derive(Clone)]
pub struct Cipher {
    aead: XChaCha20Poly1305,
}

impl Cipher {
    /// A cipher for the given key.
    pub fn new(key: &SecretKey) -> Self {
        Cipher { aead: XChaCha20Poly1305::new(key.as_bytes().into()) }
    }

    /// Encrypts `plain` with a random nonce, binding `aad`.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        self.seal_parts(aad, &[plain])
    }

    /// Encrypts the concatenation of `parts` (without building it first)
    /// with a random nonce, binding `aad`: `nonce || ciphertext || tag`.
    pub fn seal_parts(&self, aad: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        // The thread-local CSPRNG (ChaCha, reseeded from the OS) saves a
        // getrandom syscall per blob; keys still come straight from the OS.
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut out = Vec::with_capacity(len + SEAL_OVERHEAD);
        out.extend_from_slice(&nonce);
        // Encrypted where it lands: one copy of the input, not two.
        for p in parts {
            out.extend_from_slice(p);
        }
        let tag = self
            .aead
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), aad, &mut out[NONCE_LEN..])
            // Encryption only fails for inputs beyond 256 GiB, which we never build.
            .expect("XChaCha20-Poly1305 encryption of a bounded buffer");
        out.extend_from_slice(&tag);
        out
    }

    /// Authenticates and decrypts; `what` names the object in the error.
    pub fn open(&self, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>> {
        too_short(sealed.len(), what)?;
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.aead
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| auth_failed(what))
    }

    /// Authenticates and decrypts `sealed` where it lies (no copy, no
    /// allocation); returns the part of it that now holds the plaintext.
    pub fn open_in_place<'b>(&self, aad: &[u8], sealed: &'b mut [u8], what: &str) -> Result<&'b mut [u8]> {
        too_short(sealed.len(), what)?;
        let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
        let (ct, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        self.aead
            .decrypt_in_place_detached(XNonce::from_slice(nonce), aad, ct, Tag::from_slice(tag))
            .map_err(|_| auth_failed(what))?;
        Ok(ct)
    }
}

fn too_short(len: usize, what: &str) -> Result<()> {
    if len < SEAL_OVERHEAD {
        return Err(Error::corrupt(what, format!("{len} bytes is too short for a sealed object")));
    }
    Ok(())
}

fn auth_failed(what: &str) -> Error {
    Error::corrupt(what, "authentication failed (wrong key, or bytes were changed)")
}

/// A content id: keyed BLAKE3 of the plaintext, so ids reveal nothing without the key.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub [u8; 32]);

impl AsRef<[u8]> for Id {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Id {
    /// Lower-case hex, the form used in file names and messages.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Id> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Id(out))
    }

    /// The unkeyed BLAKE3 of some bytes: names files after their content.
    pub fn of_bytes(data: &[u8]) -> Id {
        Id(*blake3::hash(data).as_bytes())
    }

    /// The first 8 hex digits, for short display.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl std::fmt::Debug for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Hashes an `Id` for hash maps by taking 8 of its bytes: ids are already
/// uniformly random, so SipHash would only cost time.
#[derive(Default, Clone, Copy)]
pub struct IdMapHasher(u64);

impl std::hash::Hasher for IdMapHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Ids (and 16-byte id prefixes) hash as one write of their bytes;
        // anything shorter (a length prefix) folds in bytewise.
        if let Some(b) = bytes.get(..8).filter(|_| bytes.len() >= 16) {
            self.0 = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        } else {
            for &x in bytes {
                self.0 = self.0.rotate_left(8) ^ x as u64;
            }
        }
    }
}

/// Builds `IdMapHasher`s for `HashMap<Id, _>` and `HashSet<Id>`.
pub type IdBuildHasher = std::hash::BuildHasherDefault<IdMapHasher>;

/// Computes blob ids with the repository's secret id key.
#[derive(Clone)]
pub struct IdHasher {
    key: SecretKey,
}

impl IdHasher {
    /// A hasher for the repository's id key.
    pub fn new(key: SecretKey) -> Self {
        IdHasher { key }
    }

    /// The id of a blob's plaintext.
    pub fn id(&self, data: &[u8]) -> Id {
        Id(*blake3::keyed_hash(self.key.as_bytes(), data).as_bytes())
    }

    /// The ids of many small blobs, hashed eight at a time (same ids as `id`).
    pub fn ids(&self, blobs: &[&[u8]]) -> Vec<Id> {
        crate::crypto::idhash::keyed_hashes(self.key.as_bytes(), blobs).into_iter().map(Id).collect()
    }
}

/// Argon2id cost parameters, stored beside the salt in each key file.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        // 64 MiB, 3 passes: costly for a guessing attacker. Two lanes, computed on two
        // cores, halve the wall time of an unlock (~0.06 s) at the same memory and passes,
        // so the attacker's cost per guess is unchanged.
        KdfParams { m_cost: 64 * 1024, t_cost: 3, p_cost: 2 }
    }
}

/// Derives a key-encryption key from a password with Argon2id, its lanes in parallel.
pub fn derive_key(password: &[u8], salt: &[u8], params: KdfParams) -> Result<SecretKey> {
    let p = argon2_lanes::Params::new(params.m_cost, params.t_cost, params.p_cost, Some(32))
        .map_err(|e| Error::Invalid(format!("bad Argon2 parameters: {e}")))?;
    let blocks = p.block_count();
    let argon = argon2_lanes::Argon2::new(argon2_lanes::Algorithm::Argon2id, argon2_lanes::Version::V0x13, p);
    let mut out = [0u8; 32];
    let hashed = match argon_memory::FreshBlocks::new(blocks) {
        Some(blocks) => argon.hash_password_into_with_memory(password, salt, &mut out, blocks),
        None => argon.hash_password_into(password, salt, &mut out),
    };
    hashed.map_err(|e| Error::Invalid(format!("Argon2 failed: {e}")))?;
    let key = SecretKey::from_bytes(out);
    out.zeroize();
    Ok(key)
}

/// Random bytes for salts and file names.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let c = Cipher::new(&SecretKey::random());
        let sealed = c.seal(b"kind", b"hello");
        assert_eq!(c.open(b"kind", &sealed, "x").unwrap(), b"hello");
        assert!(c.open(b"other", &sealed, "x").is_err());
        let mut bad = sealed.clone();
        bad[30] ^= 1;
        assert!(c.open(b"kind", &bad, "x").is_err());
        assert!(c.open(b"kind", &sealed[..10], "x").is_err());
        let mut inplace = sealed.clone();
        assert_eq!(c.open_in_place(b"kind", &mut inplace, "x").unwrap(), b"hello");
        let mut bad = sealed.clone();
        bad[30] ^= 1;
        assert!(c.open_in_place(b"kind", &mut bad, "x").is_err());
        assert!(c.open_in_place(b"kind", &mut bad[..39], "x").is_err());
        let parts = c.seal_parts(b"kind", &[b"hel", b"", b"lo"]);
        assert_eq!(c.open(b"kind", &parts, "x").unwrap(), b"hello");
    }

    #[test]
    fn nonces_differ() {
        let c = Cipher::new(&SecretKey::random());
        assert_ne!(c.seal(b"", b"same")[..24], c.seal(b"", b"same")[..24]);
    }

    #[test]
    fn keyed_ids_depend_on_key() {
        let a = IdHasher::new(SecretKey::random());
        let b = IdHasher::new(SecretKey::random());
        assert_ne!(a.id(b"x"), b.id(b"x"));
        assert_eq!(a.id(b"x"), a.id(b"x"));
        let id = a.id(b"x");
        assert_eq!(Id::from_hex(&id.to_hex()), Some(id));
    }
}
