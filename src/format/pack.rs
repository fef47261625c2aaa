//! Pack files: sealed frames back to back, then a sealed header listing them.
//!
//! A frame is one sealed (and usually zstd-compressed) run of blobs of one
//! type: the new chunks of a stretch of input, or a single chunk list.
//! Layout: `frame_0 .. frame_n-1 || sealed header || header length (u32 LE)`.
//! Header plaintext: `"RVPK" || version u8 (2) || frame count u32 || frames`,
//! each frame `type u8 || flags u8 || sealed length u32 || blob count u32 ||
//! blobs`, each blob `id [32] || raw_len u32`; frame offsets follow from the
//! sealed lengths and blob offsets inside a frame from the raw lengths. The
//! file is named by the BLAKE3 of its bytes.

use crate::format::compress::{Compressor, Decoder};
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
const VERSION: u8 = 2;
/// Bytes per frame in a pack header, before its blobs.
const FRAME_LEN: usize = 10;
/// Bytes per blob in a pack header.
const BLOB_LEN: usize = 36;
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

/// Flag bit: the frame's plaintext was zstd-compressed before sealing.
pub const FLAG_ZSTD: u8 = 1;
/// Flag bit: the frame is *bound*: its sealed plaintext starts with the
/// [`members_digest`] of its blobs, so a reader that knows all of them trusts
/// their bytes after authentication without hashing each one.
pub const FLAG_BOUND: u8 = 2;
/// Length of a bound frame's members digest.
pub const DIGEST_LEN: usize = 32;

/// One blob as a pack header (and the index) describes it. Blobs are stored in
/// frames: one sealed, compressed unit holding consecutive new blobs, so that
/// 1 KiB chunks are compressed, sealed and read back in runs, not one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobEntry {
    /// Keyed hash of the blob's plaintext.
    pub id: Id,
    /// What it holds.
    pub kind: BlobType,
    /// FLAG_* bits of its frame.
    pub flags: u8,
    /// Byte offset of its sealed frame in the pack.
    pub offset: u32,
    /// Sealed length of its frame in the pack.
    pub length: u32,
    /// The blob's plaintext length.
    pub raw_len: u32,
    /// Where the blob starts in its frame's plaintext.
    pub inner: u32,
    /// Plaintext length of the whole frame.
    pub frame_len: u32,
}

impl BlobEntry {
    /// Whether two entries name the same sealed frame of one pack.
    pub fn same_frame(&self, other: &BlobEntry) -> bool {
        self.offset == other.offset && self.length == other.length
    }
}

/// Associated data for a frame: binds its type and its layout (bound or not).
/// An unbound frame's blobs are bound by their ids, which every read verifies;
/// a bound frame's by the members digest it carries.
pub fn frame_aad(kind: BlobType, flags: u8) -> [u8; 15] {
    // `rdbvault:frame` or `rdbvault:bound`, then the type byte.
    let mut aad = if flags & FLAG_BOUND != 0 { *b"rdbvault:bound\0" } else { *b"rdbvault:frame\0" };
    aad[14] = kind.code();
    aad
}

/// What a bound frame commits to: its type and its blobs' ids and lengths in
/// order (so also each blob's place in the frame).
pub fn members_digest<'i>(kind: BlobType, members: impl ExactSizeIterator<Item = (&'i Id, u32)>) -> [u8; DIGEST_LEN] {
    let mut h = blake3::Hasher::new();
    h.update(b"rdbvault:frame-members\0");
    h.update(&[kind.code()]);
    h.update(&(members.len() as u32).to_le_bytes());
    for (id, raw_len) in members {
        h.update(&id.0);
        h.update(&raw_len.to_le_bytes());
    }
    *h.finalize().as_bytes()
}

/// Turns a frame's plaintext, holding `members` (id, length) in order, into
/// its sealed, bound and possibly compressed form.
pub fn seal_frame(cipher: &Cipher, kind: BlobType, plain: &[u8], members: &[(Id, u32)], zstd: &mut Compressor) -> (u8, Vec<u8>) {
    let digest = members_digest(kind, members.iter().map(|(id, n)| (id, *n)));
    match zstd.compress(plain) {
        Some(compressed) => {
            let flags = FLAG_ZSTD | FLAG_BOUND;
            (flags, cipher.seal_parts(&frame_aad(kind, flags), &[&digest, &compressed]))
        }
        None => (FLAG_BOUND, cipher.seal_parts(&frame_aad(kind, FLAG_BOUND), &[&digest, plain])),
    }
}

/// The error for a bound frame whose digest does not match the blobs a reader was told it holds.
pub fn members_mismatch(what: &str) -> Error {
    Error::corrupt(
        what,
        "its frame's bound chunk ids do not match the index (frames or index entries were swapped); run `rdbvault check --read-data`",
    )
}

/// What opening a blob needs besides its bytes.
pub struct BlobKeys<'a> {
    /// Decrypts.
    pub cipher: &'a Cipher,
    /// Verifies the id.
    pub hasher: &'a IdHasher,
}

impl<'a> BlobKeys<'a> {
    /// The keys of a repository.
    pub fn of(repo: &'a crate::store::Repository) -> BlobKeys<'a> {
        BlobKeys { cipher: repo.cipher(), hasher: repo.hasher() }
    }
}

/// Decrypts and decompresses the frame that holds `entry`; `what` names it in
/// errors. A bound frame's digest is dropped: the caller verifies each blob.
pub fn open_frame(keys: &BlobKeys<'_>, zstd: &mut Decoder<'_>, entry: &BlobEntry, sealed: &[u8], what: &str) -> Result<Vec<u8>> {
    let mut sealed = sealed.to_vec();
    let mut plain = vec![0u8; entry.frame_len as usize];
    open_frame_into(keys, zstd, entry, &mut sealed, &mut plain, what)?;
    Ok(plain)
}

/// Opens the frame that holds `entry` where its sealed bytes lie and writes
/// its plaintext to `out` (exactly its length); returns a bound frame's
/// members digest, authenticated but not yet compared with anything.
pub fn open_frame_into(
    keys: &BlobKeys<'_>,
    zstd: &mut Decoder<'_>,
    entry: &BlobEntry,
    sealed: &mut [u8],
    out: &mut [u8],
    what: &str,
) -> Result<Option<[u8; DIGEST_LEN]>> {
    let opened = keys.cipher.open_in_place(&frame_aad(entry.kind, entry.flags), sealed, what)?;
    let (digest, body) = if entry.flags & FLAG_BOUND != 0 {
        if opened.len() < DIGEST_LEN {
            return Err(Error::corrupt(what, "bound frame is too short for its digest"));
        }
        let (d, body) = opened.split_at(DIGEST_LEN);
        let mut digest = [0u8; DIGEST_LEN];
        digest.copy_from_slice(d);
        (Some(digest), body)
    } else {
        (None, &*opened)
    };
    if entry.flags & FLAG_ZSTD != 0 {
        zstd.decompress_into(body, out, what)?;
    } else if body.len() == out.len() {
        out.copy_from_slice(body);
    } else {
        return Err(Error::corrupt(what, format!("frame holds {} bytes, index says {}", body.len(), entry.frame_len)));
    }
    Ok(digest)
}

/// The blob's bytes in its opened frame, verified against its id.
pub fn blob_in_frame<'f>(keys: &BlobKeys<'_>, entry: &BlobEntry, frame: &'f [u8], what: &str) -> Result<&'f [u8]> {
    let plain = blob_bytes(entry, frame, what)?;
    if keys.hasher.id(plain) != entry.id {
        return Err(id_mismatch(what));
    }
    Ok(plain)
}

/// The blob's bytes in its opened frame, not yet verified: for callers that
/// hash many blobs at once ([`crate::crypto::IdHasher::ids`]).
pub fn blob_bytes<'f>(entry: &BlobEntry, frame: &'f [u8], what: &str) -> Result<&'f [u8]> {
    let (start, end) = (entry.inner as usize, entry.inner as usize + entry.raw_len as usize);
    frame.get(start..end).ok_or_else(|| Error::corrupt(what, format!("bytes {start}..{end} lie outside its {}-byte frame", frame.len())))
}

/// The error for a blob whose content does not hash to its id.
pub fn id_mismatch(what: &str) -> Error {
    Error::corrupt(what, "content does not hash to its id")
}

/// Decrypts, decompresses and verifies one blob; `what` names it in errors.
pub fn open_blob(keys: &BlobKeys<'_>, zstd: &mut Decoder<'_>, entry: &BlobEntry, sealed: &[u8], what: &str) -> Result<Vec<u8>> {
    let frame = open_frame(keys, zstd, entry, sealed, what)?;
    Ok(blob_in_frame(keys, entry, &frame, what)?.to_vec())
}

/// The most recently opened frame, so that the blobs of one frame, read one
/// after another, cost one decryption and one decompression.
#[derive(Default)]
pub struct LastFrame {
    key: Option<(Id, u32, u32)>,
    plain: Vec<u8>,
    digest: Option<[u8; DIGEST_LEN]>,
}

impl LastFrame {
    /// The verified bytes of `entry` (in pack `pack`), opening its frame from
    /// `sealed` unless it is the one opened last.
    pub fn blob<'f>(
        &'f mut self,
        keys: &BlobKeys<'_>,
        zstd: &mut Decoder<'_>,
        pack: &Id,
        entry: &BlobEntry,
        sealed: &[u8],
        what: &str,
    ) -> Result<&'f [u8]> {
        let key = (*pack, entry.offset, entry.length);
        if self.key != Some(key) {
            self.key = None;
            let mut sealed = sealed.to_vec();
            self.plain.resize(entry.frame_len as usize, 0);
            self.digest = open_frame_into(keys, zstd, entry, &mut sealed, &mut self.plain, what)?;
            self.key = Some(key);
        }
        blob_in_frame(keys, entry, &self.plain, what)
    }

    /// The members digest of `entry`'s frame if it is the one opened last
    /// (`Some(None)` for an unbound frame), for `check` to compare with the
    /// pack header's list of the frame's blobs.
    pub fn digest_of(&self, pack: &Id, entry: &BlobEntry) -> Option<Option<[u8; DIGEST_LEN]>> {
        (self.key == Some((*pack, entry.offset, entry.length))).then_some(self.digest)
    }
}

/// Accumulates sealed frames into one pack in memory.
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

    /// Appends one sealed frame holding `blobs` (id and length, in order).
    pub fn add_frame(&mut self, kind: BlobType, flags: u8, sealed: &[u8], blobs: &[(Id, u32)]) {
        self.entries.extend(frame_entries(kind, flags, self.buf.len() as u32, sealed.len() as u32, blobs));
        self.buf.extend_from_slice(sealed);
    }

    /// Bytes of frames so far.
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
        self.buf.extend_from_slice(&sealed_header(cipher, &self.entries));
        let id = Id::of_bytes(&self.buf);
        (self.buf, id, self.entries)
    }
}

/// The end of a pack: its sealed header listing `entries`, then the header's length.
pub fn sealed_header(cipher: &Cipher, entries: &[BlobEntry]) -> Vec<u8> {
    let mut header = Vec::with_capacity(9 + entries.len() * BLOB_LEN);
    header.extend_from_slice(MAGIC);
    header.push(VERSION);
    let frames = frames(entries);
    header.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    for f in frames {
        let first = &f[0];
        header.push(first.kind.code());
        header.push(first.flags);
        header.extend_from_slice(&first.length.to_le_bytes());
        header.extend_from_slice(&(f.len() as u32).to_le_bytes());
        for e in f {
            header.extend_from_slice(&e.id.0);
            header.extend_from_slice(&e.raw_len.to_le_bytes());
        }
    }
    let mut sealed = cipher.seal(HEADER_AAD, &header);
    let len = sealed.len() as u32;
    sealed.extend_from_slice(&len.to_le_bytes());
    sealed
}

/// Entries for a frame of `blobs` (id, length, in order) sealed into `length`
/// bytes at `offset` of a pack.
pub fn frame_entries(kind: BlobType, flags: u8, offset: u32, length: u32, blobs: &[(Id, u32)]) -> impl Iterator<Item = BlobEntry> + '_ {
    let frame_len: u32 = blobs.iter().map(|(_, n)| n).sum();
    blobs.iter().scan(0u32, move |inner, (id, raw_len)| {
        let e = BlobEntry { id: *id, kind, flags, offset, length, raw_len: *raw_len, inner: *inner, frame_len };
        *inner += raw_len;
        Some(e)
    })
}

/// Splits entries into runs that share one frame (consecutive entries with the same place).
pub fn frames(entries: &[BlobEntry]) -> Vec<&[BlobEntry]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=entries.len() {
        if i == entries.len() || !entries[i].same_frame(&entries[start]) {
            if i > start {
                out.push(&entries[start..i]);
            }
            start = i;
        }
    }
    out
}

/// Reads a pack's header from the end of the file, checking every entry fits.
pub fn read_header(backend: &dyn crate::store::Backend, cipher: &Cipher, name: &str) -> Result<Vec<BlobEntry>> {
    use crate::store::FileKind;
    let what = crate::store::display_name(FileKind::Pack, name);
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

/// Parses an opened header's plaintext; `blobs_end` is where the frames must end (the parser of outside bytes, fuzzed).
pub fn parse_header(h: &[u8], blobs_end: u64, what: &str) -> Result<Vec<BlobEntry>> {
    if h.len() < 9 || &h[..4] != MAGIC || h[4] != VERSION {
        return Err(Error::corrupt(what, "header has a wrong magic or version"));
    }
    let short = || Error::corrupt(what, "header ends inside a frame entry");
    let u32_at = |p: usize| -> Result<u32> {
        h.get(p..p + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok_or_else(short)
    };
    let count = u32_at(5)? as usize;
    let mut entries = Vec::new();
    let mut offset = 0u64;
    let mut p = 9;
    for _ in 0..count {
        let fixed = h.get(p..p + FRAME_LEN).ok_or_else(short)?;
        let kind = BlobType::from_code(fixed[0]).ok_or_else(|| Error::corrupt(what, format!("unknown blob type {}", fixed[0])))?;
        let flags = fixed[1];
        let length = u32_at(p + 2)?;
        let blobs = u32_at(p + 6)? as usize;
        p += FRAME_LEN;
        let list = h.get(p..p + blobs * BLOB_LEN).ok_or_else(short)?;
        p += blobs * BLOB_LEN;
        if blobs == 0 {
            return Err(Error::corrupt(what, "header lists an empty frame"));
        }
        // Every frame is sealed: one shorter than its nonce and tag was never written (and two
        // such frames at one offset would read as one).
        if (length as usize) < SEAL_OVERHEAD {
            return Err(Error::corrupt(what, format!("header lists a frame of {length} bytes, shorter than its seal")));
        }
        let first = entries.len();
        let mut inner = 0u64;
        for raw in list.chunks_exact(BLOB_LEN) {
            let mut id = [0u8; 32];
            id.copy_from_slice(&raw[..32]);
            let raw_len = u32::from_le_bytes([raw[32], raw[33], raw[34], raw[35]]);
            let offset = u32::try_from(offset).map_err(|_| Error::corrupt(what, "pack is larger than 4 GiB"))?;
            entries.push(BlobEntry { id: Id(id), kind, flags, offset, length, raw_len, inner: inner as u32, frame_len: 0 });
            inner += raw_len as u64;
        }
        let frame_len = u32::try_from(inner).map_err(|_| Error::corrupt(what, "a frame is larger than 4 GiB"))?;
        for e in &mut entries[first..] {
            e.frame_len = frame_len;
        }
        offset += length as u64;
    }
    if p != h.len() {
        return Err(Error::corrupt(what, "header length does not match its frame count"));
    }
    if offset != blobs_end {
        return Err(Error::corrupt(what, format!("header lists {offset} bytes of frames, file holds {blobs_end}")));
    }
    Ok(entries)
}
