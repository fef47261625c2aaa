//! Pack files: many sealed blobs back to back, then a sealed header listing them.
//!
//! Layout: `blob_0 .. blob_n-1 || sealed header || header length (u32 LE)`.
//! Header plaintext: `"RVPK" || version u8 || count u32 || entries`, each entry
//! `type u8 || flags u8 || raw_len u32 || length u32 || id [32]` (42 bytes);
//! offsets follow from the lengths. The file is named by the BLAKE3 of its bytes.

use crate::compress::{Compressor, Decoder};
use crate::crypto::{Cipher, Id, IdHasher, SEAL_OVERHEAD};
use crate::error::{Error, Result};

/// Packs are closed once they reach this size.
pub const PACK_TARGET: usize = 16 * 1024 * 1024;

/// The pack size in use: PACK_TARGET, or `RDBVAULT_PACK_TARGET` bytes (at least
/// 4 KiB) so tests get many packs from little data.
pub fn pack_target() -> usize {
    static TARGET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *TARGET.get_or_init(|| {
        std::env::var("RDBVAULT_PACK_TARGET").ok().and_then(|v| v.parse::<usize>().ok()).map_or(PACK_TARGET, |n| n.max(4096))
    })
}
const MAGIC: &[u8; 4] = b"RVPK";
const VERSION: u8 = 1;
const ENTRY_LEN: usize = 42;
const HEADER_AAD: &[u8] = b"rdbvault:pack-header";

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobType {
    /// A chunk of source bytes.
    Data,
    /// A list of chunk ids (part of a file's chunk list).
    ChunkList,
    /// A zstd dictionary that compressed blobs may name.
    Dictionary,
}

impl BlobType {
    /// The byte stored in pack headers and index files.
    pub fn code(self) -> u8 {
        match self {
            BlobType::Data => 0,
            BlobType::ChunkList => 1,
            BlobType::Dictionary => 2,
        }
    }

    /// Parses a stored type byte.
    pub fn from_code(c: u8) -> Option<BlobType> {
        match c {
            0 => Some(BlobType::Data),
            1 => Some(BlobType::ChunkList),
            2 => Some(BlobType::Dictionary),
            _ => None,
        }
    }
}

/// Flag bit: the blob's plaintext was zstd-compressed before sealing.
pub const FLAG_ZSTD: u8 = 1;

/// One blob as a pack header (and the index) describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobEntry {
    /// Keyed hash of the blob's plaintext.
    pub id: Id,
    /// What it holds.
    pub kind: BlobType,
    /// FLAG_* bits.
    pub flags: u8,
    /// Byte offset in the pack.
    pub offset: u32,
    /// Sealed length in the pack.
    pub length: u32,
    /// Plaintext length after decompression.
    pub raw_len: u32,
}

/// Associated data for a blob: binds its type and id, so a blob cannot be moved.
pub fn blob_aad(kind: BlobType, id: &Id) -> [u8; 33] {
    let mut aad = [0u8; 33];
    aad[0] = kind.code();
    aad[1..].copy_from_slice(&id.0);
    aad
}

/// Turns a blob's plaintext into its sealed, possibly compressed form.
pub fn seal_blob(cipher: &Cipher, kind: BlobType, id: &Id, plain: &[u8], zstd: &mut Compressor) -> (u8, Vec<u8>) {
    let aad = blob_aad(kind, id);
    match zstd.compress(plain) {
        Some(compressed) => (FLAG_ZSTD, cipher.seal(&aad, &compressed)),
        None => (0, cipher.seal(&aad, plain)),
    }
}

/// What opening a blob needs besides its bytes.
pub struct BlobKeys<'a> {
    /// Decrypts.
    pub cipher: &'a Cipher,
    /// Verifies the id.
    pub hasher: &'a IdHasher,
}

/// Decrypts, decompresses and verifies one blob; `what` names it in errors.
pub fn open_blob(keys: &BlobKeys<'_>, zstd: &mut Decoder<'_>, entry: &BlobEntry, sealed: &[u8], what: &str) -> Result<Vec<u8>> {
    let aad = blob_aad(entry.kind, &entry.id);
    let opened = keys.cipher.open(&aad, sealed, what)?;
    let plain = if entry.flags & FLAG_ZSTD != 0 {
        zstd.decompress(&opened, entry.raw_len as usize, what)?
    } else {
        opened
    };
    if plain.len() != entry.raw_len as usize {
        return Err(Error::corrupt(what, format!("holds {} bytes, index says {}", plain.len(), entry.raw_len)));
    }
    if keys.hasher.id(&plain) != entry.id {
        return Err(Error::corrupt(what, "content does not hash to its id"));
    }
    Ok(plain)
}

/// Accumulates sealed blobs into one pack in memory.
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<BlobEntry>,
}

impl Default for PackBuilder {
    fn default() -> Self {
        PackBuilder::new()
    }
}

impl PackBuilder {
    /// An empty pack.
    pub fn new() -> Self {
        PackBuilder { buf: Vec::with_capacity(pack_target() + 1024 * 1024), entries: Vec::new() }
    }

    /// Appends one sealed blob.
    pub fn add(&mut self, id: Id, kind: BlobType, flags: u8, raw_len: u32, sealed: &[u8]) {
        self.entries.push(BlobEntry {
            id,
            kind,
            flags,
            offset: self.buf.len() as u32,
            length: sealed.len() as u32,
            raw_len,
        });
        self.buf.extend_from_slice(sealed);
    }

    /// Bytes of blobs so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the pack reached its target size.
    pub fn is_full(&self) -> bool {
        self.buf.len() >= pack_target()
    }

    /// Appends the sealed header; returns the pack's bytes, name and entries.
    pub fn finish(mut self, cipher: &Cipher) -> (Vec<u8>, Id, Vec<BlobEntry>) {
        let mut header = Vec::with_capacity(9 + self.entries.len() * ENTRY_LEN);
        header.extend_from_slice(MAGIC);
        header.push(VERSION);
        header.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            header.push(e.kind.code());
            header.push(e.flags);
            header.extend_from_slice(&e.raw_len.to_le_bytes());
            header.extend_from_slice(&e.length.to_le_bytes());
            header.extend_from_slice(&e.id.0);
        }
        let sealed = cipher.seal(HEADER_AAD, &header);
        self.buf.extend_from_slice(&sealed);
        self.buf.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        let id = Id::of_bytes(&self.buf);
        (self.buf, id, self.entries)
    }
}

/// Length of the sealed header for `count` blobs (to read it with one range request).
pub fn header_len(count: usize) -> usize {
    9 + count * ENTRY_LEN + SEAL_OVERHEAD
}

/// Reads a pack's header from the end of the file, checking every entry fits.
pub fn read_header(backend: &dyn crate::repo::Backend, cipher: &Cipher, name: &str) -> Result<Vec<BlobEntry>> {
    use crate::repo::FileKind;
    let what = crate::repo::display_name(FileKind::Pack, name);
    let size = backend.size(FileKind::Pack, name)?;
    if size < 4 {
        return Err(Error::corrupt(&what, "too short to hold a header"));
    }
    let len_bytes = backend.read_range(FileKind::Pack, name, size - 4, 4)?;
    let hlen = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as u64;
    if hlen + 4 > size || hlen < SEAL_OVERHEAD as u64 {
        return Err(Error::corrupt(&what, format!("header length {hlen} does not fit a {size}-byte file")));
    }
    let sealed = backend.read_range(FileKind::Pack, name, size - 4 - hlen, hlen as usize)?;
    let header = cipher.open(HEADER_AAD, &sealed, &format!("{what} (header)"))?;
    parse_header(&header, size - 4 - hlen, &what)
}

fn parse_header(h: &[u8], blobs_end: u64, what: &str) -> Result<Vec<BlobEntry>> {
    if h.len() < 9 || &h[..4] != MAGIC || h[4] != VERSION {
        return Err(Error::corrupt(what, "header has a wrong magic or version"));
    }
    let count = u32::from_le_bytes([h[5], h[6], h[7], h[8]]) as usize;
    if h.len() != 9 + count * ENTRY_LEN {
        return Err(Error::corrupt(what, "header length does not match its blob count"));
    }
    let mut entries = Vec::with_capacity(count);
    let mut offset = 0u64;
    for raw in h[9..].chunks_exact(ENTRY_LEN) {
        let kind = BlobType::from_code(raw[0]).ok_or_else(|| Error::corrupt(what, format!("unknown blob type {}", raw[0])))?;
        let raw_len = u32::from_le_bytes([raw[2], raw[3], raw[4], raw[5]]);
        let length = u32::from_le_bytes([raw[6], raw[7], raw[8], raw[9]]);
        let mut id = [0u8; 32];
        id.copy_from_slice(&raw[10..42]);
        entries.push(BlobEntry { id: Id(id), kind, flags: raw[1], offset: offset as u32, length, raw_len });
        offset += length as u64;
    }
    if offset != blobs_end {
        return Err(Error::corrupt(what, format!("header lists {offset} bytes of blobs, file holds {blobs_end}")));
    }
    Ok(entries)
}
