//! Keys, authenticated encryption and keyed content ids.
//!
//! Every object is sealed as `nonce (24) || ciphertext || tag (16)` with
//! XChaCha20-Poly1305 and a fresh random nonce; the associated data binds the
//! object to its kind (and, for blobs, to its id) so objects cannot be swapped.
//! XChaCha20 is HChaCha20 (a subkey from the key and the nonce's first 16
//! bytes) and then ring's ChaCha20-Poly1305, about twice RustCrypto's speed here.
//!
//! Pure: no I/O, and uses nothing of the crate but `error`.

mod argon_memory;
pub mod idhash;

use std::mem::MaybeUninit;

use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};
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
    key: SecretKey,
}

impl Cipher {
    /// A cipher for the given key.
    pub fn new(key: &SecretKey) -> Self {
        Cipher { key: key.clone() }
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
            .with_subkey(&nonce, |key, n| key.seal_in_place_separate_tag(n, Aad::from(aad), &mut out[NONCE_LEN..]))
            // Encryption only fails for inputs beyond 256 GiB, which we never build.
            .expect("XChaCha20-Poly1305 encryption of a bounded buffer");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Authenticates and decrypts; `what` names the object in the error.
    pub fn open(&self, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>> {
        too_short(sealed.len(), what)?;
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut plain = ct.to_vec();
        self.open_detached(aad, nonce, &mut plain, tag, what)?;
        Ok(plain)
    }

    /// Like [`Cipher::open`], but decrypts in `sealed`'s own buffer: no second buffer of
    /// fresh pages to fault in, only the plaintext moved down past the nonce.
    pub fn open_vec(&self, aad: &[u8], mut sealed: Vec<u8>, what: &str) -> Result<Vec<u8>> {
        let len = self.open_in_place(aad, &mut sealed, what)?.len();
        sealed.truncate(NONCE_LEN + len);
        sealed.drain(..NONCE_LEN);
        Ok(sealed)
    }

    /// Authenticates and decrypts `sealed` where it lies (no copy, no
    /// allocation); returns the part of it that now holds the plaintext.
    pub fn open_in_place<'b>(&self, aad: &[u8], sealed: &'b mut [u8], what: &str) -> Result<&'b mut [u8]> {
        too_short(sealed.len(), what)?;
        let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
        let (ct, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        self.open_detached(aad, nonce, ct, tag, what)?;
        Ok(ct)
    }

    /// Decrypts `ct` in place if `tag` authenticates it; on failure ring zeroes
    /// `ct`, so no unauthenticated plaintext is left behind.
    fn open_detached(&self, aad: &[u8], nonce: &[u8], ct: &mut [u8], tag: &[u8], what: &str) -> Result<()> {
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| auth_failed(what))?;
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| auth_failed(what))?;
        self.with_subkey(nonce, |key, n| key.open_in_place_separate_tag(n, Aad::from(aad), Tag::from(tag), ct, 0..).map(|_| ()))
            .map_err(|_| auth_failed(what))
    }

    /// Runs `f` with the message's ChaCha20-Poly1305 key (HChaCha20 of the key
    /// and the nonce's first 16 bytes) and 12-byte nonce (4 zero bytes and the
    /// nonce's last 8), then wipes that key: ring does not zeroize its keys.
    fn with_subkey<T>(&self, nonce: &[u8; NONCE_LEN], f: impl FnOnce(&LessSafeKey, Nonce) -> T) -> T {
        let mut sub = chacha20::hchacha::<chacha20::cipher::consts::U10>(self.key.as_bytes().into(), nonce[..16].into());
        let mut slot = MaybeUninit::<LessSafeKey>::uninit();
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &sub);
        sub.as_mut_slice().zeroize();
        // A 32-byte key is always accepted.
        let key = slot.write(LessSafeKey::new(unbound.expect("a 32-byte ChaCha20-Poly1305 key")));
        let mut short = [0u8; 12];
        short[4..].copy_from_slice(&nonce[16..]);
        let out = f(key, Nonce::assume_unique_for_key(short));
        // SAFETY: `slot` is plain bytes to MaybeUninit, which has no validity
        // invariant, and the key in it (no heap, no Drop) is not used again.
        unsafe { zeroize::zeroize_flat_type(slot.as_mut_ptr() as *mut MaybeUninit<LessSafeKey>) };
        out
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

    /// An id's leading 8 bytes as a number (a lead) are as uniform as the id: taken as they are.
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Builds `IdMapHasher`s for `HashMap<Id, _>`, `HashSet<Id>` and maps keyed by an id's lead.
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

    /// The ids of many small blobs, hashed side by side in SIMD lanes (same ids as `id`).
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
        assert_eq!(c.open_vec(b"kind", sealed.clone(), "x").unwrap(), b"hello");
        assert_eq!(c.open_vec(b"kind", c.seal(b"kind", b""), "x").unwrap(), b"");
        assert!(c.open_vec(b"other", sealed.clone(), "x").is_err());
        assert!(c.open_vec(b"kind", bad, "x").is_err());
        assert!(c.open_vec(b"kind", sealed[..39].to_vec(), "x").is_err());
    }

    /// draft-irtf-cfrg-xchacha-03, appendix A.3.1: the published XChaCha20-Poly1305 vector.
    #[test]
    fn matches_the_published_xchacha_vector() {
        let key: [u8; 32] = std::array::from_fn(|i| 0x80 + i as u8);
        let nonce: [u8; 24] = std::array::from_fn(|i| 0x40 + i as u8);
        let aad = hex::decode("50515253c0c1c2c3c4c5c6c7").unwrap();
        let plain = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let expect_ct = "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e";
        let expect_tag = "c0875924c1c7987947deafd8780acf49";
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&hex::decode(expect_ct).unwrap());
        sealed.extend_from_slice(&hex::decode(expect_tag).unwrap());
        let c = Cipher::new(&SecretKey::from_bytes(key));
        assert_eq!(c.open(&aad, &sealed, "vector").unwrap(), plain);
        let mut bad = sealed.clone();
        bad[24] ^= 0x80;
        assert!(c.open(&aad, &bad, "vector").is_err());
    }

    /// Sealed by us, opened by RustCrypto's XChaCha20-Poly1305 and back, at lengths around
    /// ChaCha's 64-byte blocks and ring's wider batches.
    #[test]
    fn interoperates_with_the_reference_implementation() {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        let key = SecretKey::random();
        let ours = Cipher::new(&key);
        let reference = chacha20poly1305::XChaCha20Poly1305::new(key.as_bytes().into());
        for len in [0usize, 1, 15, 16, 63, 64, 65, 255, 256, 257, 511, 1024, 4097, 65_536 + 3] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
            let aad = format!("blob {len}");
            let sealed = ours.seal(aad.as_bytes(), &plain);
            assert_eq!(sealed.len(), len + SEAL_OVERHEAD);
            let nonce = chacha20poly1305::XNonce::from_slice(&sealed[..24]);
            let opened = reference.decrypt(nonce, Payload { msg: &sealed[24..], aad: aad.as_bytes() }).unwrap();
            assert_eq!(opened, plain, "reference opens ours at {len} bytes");
            let theirs = reference.encrypt(nonce, Payload { msg: &plain, aad: aad.as_bytes() }).unwrap();
            let mut again = sealed[..24].to_vec();
            again.extend_from_slice(&theirs);
            assert_eq!(again, sealed, "same nonce, same bytes at {len}");
            let mut inplace = again.clone();
            assert_eq!(ours.open_in_place(aad.as_bytes(), &mut inplace, "x").unwrap(), &plain[..]);
            let mut tampered = again.clone();
            let last = tampered.len() - 1;
            tampered[last] ^= 1;
            assert!(ours.open_in_place(aad.as_bytes(), &mut tampered, "x").is_err());
            assert!(tampered[24..last - 15].iter().all(|&b| b == 0), "a failed open leaves no plaintext at {len}");
        }
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
