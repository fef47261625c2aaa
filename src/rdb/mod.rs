//! Streaming parser for Redis RDB files (versions 1 to 12, Redis 2.x to 7.4, and Valkey 9's
//! `VALKEY080` files) and the matching writer ([`RdbWriter`]).
//!
//! [`RdbReader`] pulls one [`Item`] at a time from any `std::io::Read`; memory stays bounded by
//! the largest single value. Each [`Record`] carries the decoded value and the exact serialized
//! bytes, from which [`dump_payload`] builds a `RESTORE` payload. [`summarize`] gives cheap
//! per-database facts for snapshots.

mod blob;
mod crc64;
mod encode;
mod encode_value;
mod error;
mod escape;
mod intset;
mod json;
mod json_ascii;
mod listpack;
mod lzf;
mod memory;
mod object;
mod reader;
pub mod records;
mod stream;
mod string;
mod summary;
mod value;
mod value_json;
mod writer;
mod ziplist;
mod zipmap;

use std::io::Read;

pub use crc64::crc64;
/// Appends an RDB length field (SELECTDB's database number, string lengths).
pub(crate) use encode::len as put_len;
pub(crate) use string::push_unsigned;
pub use encode_value::VALKEY_MIN_VERSION;
pub use writer::{library_name, printable, RdbWriter, WriteError, MIN_WRITE_VERSION};
pub use error::{RdbError, Result};
pub use escape::{escape, quoted, unescape};
pub use json::{bytes_to_json, record_to_json, value_to_json, write_bytes_json, write_value_json};
pub use value_json::ValuesJson;
pub use memory::approx_memory;
pub use object::{encoding_of, kind_of, module_type_name};
pub use summary::{summarize, summarize_each, DbSummary, Summary};
pub use value::{
    Consumer, ConsumerGroup, HashField, ModuleValue, PendingEntry, Stream, StreamEntry, StreamId,
    Value, ValueKind,
};

use reader::ByteReader;

/// Newest Redis RDB format version this parser understands (Redis 7.4).
pub const MAX_RDB_VERSION: u16 = 12;

/// Newest Valkey RDB format version this parser understands (Valkey 9.0; `VALKEY` magic).
pub const MAX_VALKEY_VERSION: u16 = 80;

/// Valkey 9 atomic slot migration state: a job name and slot ranges (skipped).
const OP_SLOT_IMPORT: u8 = 0xF3;

const OP_SLOT_INFO: u8 = 0xF4;
const OP_FUNCTION2: u8 = 0xF5;
const OP_FUNCTION_PRE_GA: u8 = 0xF6;
const OP_MODULE_AUX: u8 = 0xF7;
const OP_IDLE: u8 = 0xF8;
const OP_FREQ: u8 = 0xF9;
const OP_AUX: u8 = 0xFA;
const OP_RESIZEDB: u8 = 0xFB;
const OP_EXPIRETIME_MS: u8 = 0xFC;
const OP_EXPIRETIME: u8 = 0xFD;
const OP_SELECTDB: u8 = 0xFE;
const OP_EOF: u8 = 0xFF;

/// Module opcode that must precede the `when` field of a MODULE_AUX record.
const MODULE_OPCODE_UINT: u64 = 2;

/// What the reader should do with each value; trades detail for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Decode values into [`Value`]; when false values are walked over and reported as `NotDecoded`.
    pub decode_values: bool,
    /// Keep the raw serialized value bytes in [`Record::raw`] (needed for `RESTORE`).
    pub capture_raw: bool,
    /// Fail on a CRC64 mismatch at EOF (RDB version >= 5, non-zero stored checksum).
    pub verify_checksum: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            decode_values: true,
            capture_raw: true,
            verify_checksum: true,
        }
    }
}

impl ReadOptions {
    /// Only keys, types and raw bytes: the fast path for backups.
    pub fn raw_only() -> Self {
        ReadOptions {
            decode_values: false,
            capture_raw: true,
            verify_checksum: true,
        }
    }

    /// Neither decoded values nor raw bytes: the cheapest walk (used by [`summarize`]).
    pub fn walk_only() -> Self {
        ReadOptions {
            decode_values: false,
            capture_raw: false,
            verify_checksum: true,
        }
    }
}

/// One key/value pair from the RDB, with everything needed to inspect or restore it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Database number (from the last SELECTDB; 0 if none was seen).
    pub db: u64,
    pub key: Vec<u8>,
    /// Logical type (what `TYPE` reports).
    pub kind: ValueKind,
    /// RDB value type byte (0..=25).
    pub rdb_type: u8,
    /// Encoding name in `OBJECT ENCODING` words for the serialized form (see [`encoding_of`]).
    pub encoding: &'static str,
    /// Absolute expiry time in Unix milliseconds.
    pub expire_ms: Option<u64>,
    /// LRU idle time in seconds, if the RDB recorded it.
    pub idle: Option<u64>,
    /// LFU frequency counter, if the RDB recorded it.
    pub freq: Option<u8>,
    /// Decoded value, or `Value::NotDecoded`.
    pub value: Value,
    /// Type byte followed by the value bytes exactly as in the file (empty unless capture_raw).
    pub raw: Vec<u8>,
    /// Length of type byte + serialized value (known even without capture).
    pub serialized_len: u64,
    /// File offset where this record (its first opcode) starts.
    pub offset: u64,
}

impl Record {
    /// Builds the `RESTORE` payload for this record; needs `capture_raw`.
    pub fn dump_payload(&self, rdb_version: u16) -> Option<Vec<u8>> {
        let (&ty, value) = self.raw.split_first()?;
        Some(dump_payload(ty, value, rdb_version))
    }
}

/// One top-level element of an RDB stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// AUX field such as `redis-ver`, `ctime`, `used-mem`.
    Aux { key: Vec<u8>, value: Vec<u8> },
    /// Following records belong to this database.
    SelectDb(u64),
    /// Hash table size hints for the current database.
    ResizeDb { db_size: u64, expires_size: u64 },
    /// Cluster slot sizing hint (Redis 7.4+).
    SlotInfo {
        slot: u64,
        slot_size: u64,
        expires_slot_size: u64,
    },
    /// A function library (FUNCTION2 opcode): its source code.
    Function(Vec<u8>),
    /// Module auxiliary data, skipped.
    ModuleAux {
        module: String,
        encver: u64,
        when: u64,
        skipped_bytes: u64,
    },
    /// A key/value pair.
    Record(Record),
}

/// Pull parser over an RDB stream; yields items until EOF, then verifies the checksum.
pub struct RdbReader<R: Read> {
    r: ByteReader<R>,
    version: u16,
    opts: ReadOptions,
    db: u64,
    done: bool,
    failed: bool,
    stored_checksum: Option<u64>,
}

impl<R: Read> RdbReader<R> {
    /// Reads the `REDIS` magic and 4-digit version with default options.
    pub fn new(r: R) -> Result<Self> {
        Self::with_options(r, ReadOptions::default())
    }

    /// Reads the header and keeps `opts` for every following item.
    pub fn with_options(r: R, opts: ReadOptions) -> Result<Self> {
        let mut r = ByteReader::new(r);
        let header: [u8; 9] = r
            .read_array()
            .map_err(|e| RdbError::BadHeader(format!("cannot read the 9-byte header: {e}")))?;
        let version = parse_header(&header)?;
        Ok(RdbReader {
            r,
            version,
            opts,
            db: 0,
            done: false,
            failed: false,
            stored_checksum: None,
        })
    }

    /// RDB format version from the header.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.r.offset()
    }

    /// Keeps the bytes read from here on (offset [`Self::offset`]) for [`Self::take_kept`]: a
    /// walk can hand whole records' bytes to other threads without copying them again.
    pub fn keep_bytes(&mut self) {
        self.r.keep();
    }

    /// The bytes kept since the last take, up to stream offset `upto` (a record's end, at most
    /// [`Self::offset`]); `spare` (any buffer no longer needed) becomes the new keeping buffer.
    pub fn take_kept(&mut self, upto: u64, spare: Vec<u8>) -> Vec<u8> {
        self.r.take_kept(upto, spare)
    }

    /// Checksum stored after EOF (None before EOF or for versions < 5; 0 means "not computed").
    pub fn stored_checksum(&self) -> Option<u64> {
        self.stored_checksum
    }

    /// Returns the next item, or None once EOF has been read and the checksum verified.
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        if self.done {
            return Ok(None);
        }
        let res = self.read_item();
        if res.is_err() {
            self.failed = true;
            self.done = true;
        }
        res
    }

    fn read_item(&mut self) -> Result<Option<Item>> {
        let start = self.r.offset();
        let (mut expire_ms, mut idle, mut freq) = (None, None, None);
        loop {
            self.r.key = None;
            let op_at = self.r.offset();
            let op = self.r.read_u8()?;
            let item = match op {
                OP_EOF => {
                    let computed = self.r.crc();
                    if self.version >= 5 {
                        let at = self.r.offset();
                        let stored = self.r.read_u64_le()?;
                        self.stored_checksum = Some(stored);
                        if self.opts.verify_checksum && stored != 0 && stored != computed {
                            return Err(RdbError::Checksum {
                                offset: at,
                                stored,
                                computed,
                            });
                        }
                    }
                    self.done = true;
                    return Ok(None);
                }
                OP_SELECTDB => {
                    self.db = self.r.read_len()?;
                    Item::SelectDb(self.db)
                }
                OP_EXPIRETIME => {
                    expire_ms = Some(self.r.read_u32_le()? as u64 * 1000);
                    continue;
                }
                OP_EXPIRETIME_MS => {
                    expire_ms = Some(self.r.read_u64_le()?);
                    continue;
                }
                OP_IDLE => {
                    idle = Some(self.r.read_len()?);
                    continue;
                }
                OP_FREQ => {
                    freq = Some(self.r.read_u8()?);
                    continue;
                }
                OP_RESIZEDB => Item::ResizeDb {
                    db_size: self.r.read_len()?,
                    expires_size: self.r.read_len()?,
                },
                OP_AUX => Item::Aux {
                    key: self.r.read_string()?,
                    value: self.r.read_string()?,
                },
                OP_SLOT_INFO => Item::SlotInfo {
                    slot: self.r.read_len()?,
                    slot_size: self.r.read_len()?,
                    expires_slot_size: self.r.read_len()?,
                },
                OP_FUNCTION2 => Item::Function(self.r.read_string()?),
                OP_SLOT_IMPORT if self.version >= VALKEY_MIN_VERSION => {
                    self.r.skip_string()?;
                    for _ in 0..self.r.read_count()? {
                        self.r.read_len()?;
                        self.r.read_len()?;
                    }
                    continue;
                }
                OP_FUNCTION_PRE_GA => {
                    return Err(self.r.unsupported_at(
                        op_at,
                        "pre-GA function format (Redis 7.0 release candidates)",
                    ))
                }
                OP_MODULE_AUX => {
                    let (module, encver) = module_type_name(self.r.read_len()?);
                    let when_at = self.r.offset();
                    if self.r.read_len()? != MODULE_OPCODE_UINT {
                        return Err(self
                            .r
                            .corrupt_at(when_at, "module aux 'when' is not a UINT opcode"));
                    }
                    let when = self.r.read_len()?;
                    let skipped_bytes = object::skip_module_opcodes(&mut self.r)?;
                    Item::ModuleAux {
                        module,
                        encver,
                        when,
                        skipped_bytes,
                    }
                }
                ty if kind_of(ty).is_some() => {
                    let kind = kind_of(ty).unwrap_or(ValueKind::Module);
                    let key = self.r.read_string()?;
                    self.r.key = Some(key);
                    if self.opts.capture_raw {
                        self.r.start_capture(&[ty]);
                    }
                    let value_at = self.r.offset();
                    let (value, encoding) = object::read_object(&mut self.r, ty, self.opts.decode_values, self.version)?;
                    let raw = self.r.take_capture();
                    let serialized_len = self.r.offset() - value_at + 1;
                    let key = self.r.key.take().unwrap_or_default();
                    Item::Record(Record {
                        db: self.db,
                        key,
                        kind,
                        rdb_type: ty,
                        encoding,
                        expire_ms,
                        idle,
                        freq,
                        value,
                        raw,
                        serialized_len,
                        offset: start,
                    })
                }
                ty if ty < 200 => {
                    return Err(self
                        .r
                        .unsupported_at(op_at, format!("unsupported value type {ty}")))
                }
                ty if ty < OP_SLOT_INFO => {
                    return Err(self
                        .r
                        .unsupported_at(op_at, format!("unsupported opcode {ty:#04x}")))
                }
                other => {
                    return Err(self
                        .r
                        .corrupt_at(op_at, format!("unknown opcode {other:#04x}")))
                }
            };
            return Ok(Some(item));
        }
    }
}

impl<R: Read> Iterator for RdbReader<R> {
    type Item = Result<Item>;

    /// Yields items; after an error or EOF it yields nothing more.
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.next_item().transpose()
    }
}

/// The RDB version from a 9-byte header: `REDIS` + 4 digits (1 to 12) or `VALKEY` + 3 digits (80).
fn parse_header(header: &[u8; 9]) -> Result<u16> {
    let (digits, valkey) = if header.starts_with(b"VALKEY") {
        (&header[6..], true)
    } else if header.starts_with(b"REDIS") {
        (&header[5..], false)
    } else {
        return Err(RdbError::BadHeader("missing REDIS or VALKEY magic".into()));
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(RdbError::BadHeader(format!(
            "version {:?} is not {} digits",
            String::from_utf8_lossy(digits),
            digits.len()
        )));
    }
    let version = digits.iter().fold(0u16, |v, d| v * 10 + (d - b'0') as u16);
    let ok = if valkey {
        (VALKEY_MIN_VERSION..=MAX_VALKEY_VERSION).contains(&version)
    } else {
        (1..=MAX_RDB_VERSION).contains(&version)
    };
    if !ok {
        return Err(RdbError::BadHeader(if valkey {
            format!("Valkey RDB version {version} is not supported ({VALKEY_MIN_VERSION} to {MAX_VALKEY_VERSION})")
        } else {
            format!("RDB version {version} is not supported (1 to {MAX_RDB_VERSION})")
        }));
    }
    Ok(version)
}

/// Builds a DUMP/RESTORE payload: type byte + value bytes + 2-byte LE RDB version + 8-byte LE CRC64 of all that.
pub fn dump_payload(type_byte: u8, value_bytes: &[u8], rdb_version: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(value_bytes.len() + 11);
    out.push(type_byte);
    out.extend_from_slice(value_bytes);
    out.extend_from_slice(&rdb_version.to_le_bytes());
    let crc = crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Builds a `FUNCTION RESTORE` payload (what `FUNCTION DUMP` returns): one FUNCTION2 opcode
/// and library code per library, then the RDB version and CRC64 as in [`dump_payload`].
pub fn functions_payload(libraries: &[Vec<u8>], rdb_version: u16) -> Vec<u8> {
    let mut out = Vec::new();
    for code in libraries {
        out.push(OP_FUNCTION2);
        encode::string(&mut out, code);
    }
    out.extend_from_slice(&rdb_version.to_le_bytes());
    let crc = crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_payload_layout() {
        let p = dump_payload(0, &[3, b'a', b'b', b'c'], 10);
        assert_eq!(&p[..7], &[0, 3, b'a', b'b', b'c', 10, 0]);
        assert_eq!(
            u64::from_le_bytes(p[7..].try_into().unwrap()),
            crc64(0, &p[..7])
        );
    }

    #[test]
    fn header_errors() {
        assert!(matches!(
            RdbReader::new(&b"REDIS"[..]),
            Err(RdbError::BadHeader(_))
        ));
        assert!(matches!(
            RdbReader::new(&b"RODIS0009"[..]),
            Err(RdbError::BadHeader(_))
        ));
        assert!(matches!(
            RdbReader::new(&b"REDIS0013"[..]),
            Err(RdbError::BadHeader(_))
        ));
        assert!(matches!(
            RdbReader::new(&b"REDIS00x9"[..]),
            Err(RdbError::BadHeader(_))
        ));
        let mut r = RdbReader::new(&b"REDIS0003\xff"[..]).unwrap();
        assert_eq!(r.next_item().unwrap(), None);
    }
}
