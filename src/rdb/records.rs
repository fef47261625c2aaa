//! Push-driven RDB record scanner: where each key record starts and ends, its key, db, type and
//! expiry, without decoding values (they are skipped by their lengths), in constant memory.
//!
//! Bytes are pushed in pieces of any size ([`Scanner::push`]); events come back through a
//! callback as soon as an item is complete. Only a partial length field (at most
//! [`STAGE_MAX`] bytes) and the key being read are held between pushes, so a 500 MiB value
//! streams through. Every RDB version [`super::RdbReader`] reads is accepted, with the same
//! structural checks; errors are [`RdbError`]s, never panics.

use super::error::{RdbError, Result};
use super::lzf;
use super::object::kind_of;
use super::{
    parse_header, OP_AUX, OP_EOF, OP_EXPIRETIME, OP_EXPIRETIME_MS, OP_FREQ, OP_FUNCTION2, OP_FUNCTION_PRE_GA, OP_IDLE,
    OP_MODULE_AUX, OP_RESIZEDB, OP_SELECTDB, OP_SLOT_IMPORT, OP_SLOT_INFO, VALKEY_MIN_VERSION,
};

/// Longest field read in one piece (a 9-byte header, or a string header with two 9-byte
/// LZF lengths); a field split across pushes is staged in a buffer of this size.
const STAGE_MAX: usize = 32;

/// Largest element count the parser accepts ([`super::RdbReader`] uses the same bound).
const MAX_COUNT: u64 = (u32::MAX as u64) * 16;

/// A key record: from its first prefix opcode (EXPIRETIME, IDLE, FREQ) to the end of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRecord<'a> {
    /// File offset of the record's first byte (its first prefix opcode, else its type byte).
    pub offset: u64,
    /// Bytes from `offset` to the end of the value.
    pub len: u64,
    /// Database (from the last SELECTDB; 0 if none was seen).
    pub db: u64,
    /// The key (LZF-compressed keys decompressed, integer-encoded keys as decimal text).
    pub key: &'a [u8],
    /// RDB value type byte.
    pub rdb_type: u8,
    /// Absolute expiry in Unix milliseconds.
    pub expire_ms: Option<i64>,
}

/// What a non-record stretch of the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// The 9-byte `REDIS0012` / `VALKEY080` magic.
    Header,
    /// An AUX field (`redis-ver`, `ctime`, ...).
    Aux,
    /// SELECTDB.
    SelectDb,
    /// RESIZEDB hints.
    ResizeDb,
    /// Cluster slot sizing hints.
    SlotInfo,
    /// A function library.
    Function,
    /// Module auxiliary data.
    ModuleAux,
    /// The EOF opcode and its checksum.
    Eof,
}

/// One complete item of the file, in file order; items tile the file without gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A key/value record.
    Record(KeyRecord<'a>),
    /// Anything else: `len` bytes at `offset` (including prefix opcodes that preceded it).
    Boundary { offset: u64, len: u64, area: Area },
}

/// The key and value of an AUX item's bytes (as an [`Event::Boundary`] of [`Area::Aux`] spans
/// them), so a reader of the scan's events need not walk the file again for them.
pub fn aux_pair(item: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut r = super::reader::ByteReader::new(item);
    (r.read_u8().ok()? == OP_AUX).then_some(())?;
    Some((r.read_string().ok()?, r.read_string().ok()?))
}

/// The database number of a SELECTDB item's bytes.
pub fn selected_db(item: &[u8]) -> Option<u64> {
    let mut r = super::reader::ByteReader::new(item);
    (r.read_u8().ok()? == OP_SELECTDB).then_some(())?;
    r.read_len().ok()
}

/// One pending piece of work; the stack of them is the scanner's whole state.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// The 9-byte magic.
    Header,
    /// Expecting an opcode or a value type (bottom of the stack until EOF).
    Top,
    /// Raw bytes to pass over.
    Skip(u64),
    /// An RDB string to pass over.
    Str,
    /// A length field to pass over.
    Len,
    /// A zset score in the old ASCII form.
    AsciiDouble,
    /// A count, then that many repetitions of the body.
    Count(&'static [Frame]),
    /// Repetitions left of a body.
    Loop(u64, &'static [Frame]),
    /// A quicklist v2 node container (1 or 2).
    Container,
    /// Module opcodes up to their EOF.
    ModuleOps,
    /// A module aux `when` opcode (must be UINT).
    ModuleWhen,
    /// SELECTDB's number.
    Select,
    /// EXPIRETIME in seconds.
    ExpireSec,
    /// EXPIRETIME_MS.
    ExpireMs,
    /// An RDB string a walk of the file decodes (AUX, FUNCTION2, stream group and consumer
    /// names): passed over, but an LZF one is decompressed, so this fails where a walk fails.
    Checked,
    /// Compressed bytes of a [`Checked`] string still to collect, and its length.
    CheckLzf(u64, u64),
    /// The text of an ASCII zset score still to collect (a walk parses it, so this does too).
    DoubleText(u64),
    /// A record's key string.
    Key,
    /// Plain key bytes still to collect.
    KeyBytes(u64),
    /// Compressed key bytes still to collect, and the decompressed length.
    KeyLzf(u64, u64),
    /// The record is complete.
    EndRecord,
    /// The non-record item is complete.
    EndArea(Area),
    /// EOF and its checksum are complete.
    EndFile,
}

use Frame::*;

/// A length field or encoding tag at the front of `b`, and its size; None when `b` is too
/// short or the first byte is no field at all (`Scanner::field` says which).
#[inline(always)]
fn quick_field(b: &[u8]) -> Option<(Field, usize)> {
    let &first = b.first()?;
    match first >> 6 {
        0 => Some((Field::Plain((first & 0x3f) as u64), 1)),
        1 => b.get(1).map(|&s| (Field::Plain((((first & 0x3f) as u64) << 8) | s as u64), 2)),
        2 => match first {
            0x80 => b.get(1..5).map(|v| (Field::Plain(u32::from_be_bytes([v[0], v[1], v[2], v[3]]) as u64), 5)),
            0x81 => b.get(1..9).and_then(|v| <[u8; 8]>::try_from(v).ok()).map(|v| (Field::Plain(u64::from_be_bytes(v)), 9)),
            _ => None,
        },
        _ => Some((Field::Encoded(first & 0x3f), 1)),
    }
}

/// An LZF string that claims more bytes than its compressed length can give (the parser
/// refuses it too).
fn implausible_lzf(clen: u64, ulen: u64) -> bool {
    ulen > clen.saturating_mul(lzf::MAX_RATIO).saturating_add(64)
}

/// Whether [`Scanner::quick_elements`] can run a loop of this body.
fn quick_body(body: &[Frame]) -> bool {
    body.iter().all(|f| matches!(f, Str | Skip(_) | Len | Container))
}

const STRS: &[Frame] = &[Str];
const PAIRS: &[Frame] = &[Str, Str];
const ZSET1: &[Frame] = &[Str, AsciiDouble];
const ZSET2: &[Frame] = &[Str, Skip(8)];
const VALKEY_HASH2: &[Frame] = &[Str, Str, Skip(8)];
const HASH_TTL: &[Frame] = &[Len, Str, Str];
const QUICKLIST2: &[Frame] = &[Container, Str];
const LEN_PAIRS: &[Frame] = &[Len, Len];
const STREAM_PEL: &[Frame] = &[Skip(16), Skip(8), Len];
const STREAM_IDS: &[Frame] = &[Skip(16)];
const CONSUMER1: &[Frame] = &[Checked, Skip(8), Count(STREAM_IDS)];
const CONSUMER3: &[Frame] = &[Checked, Skip(8), Skip(8), Count(STREAM_IDS)];
const GROUP1: &[Frame] = &[Checked, Len, Len, Count(STREAM_PEL), Count(CONSUMER1)];
const GROUP2: &[Frame] = &[Checked, Len, Len, Len, Count(STREAM_PEL), Count(CONSUMER1)];
const GROUP3: &[Frame] = &[Checked, Len, Len, Len, Count(STREAM_PEL), Count(CONSUMER3)];
const STREAM1: &[Frame] = &[Count(PAIRS), Len, Len, Len, Count(GROUP1)];
const STREAM2: &[Frame] = &[Count(PAIRS), Len, Len, Len, Len, Len, Len, Len, Len, Count(GROUP2)];
const STREAM3: &[Frame] = &[Count(PAIRS), Len, Len, Len, Len, Len, Len, Len, Len, Count(GROUP3)];

/// A length field or a special string encoding tag.
enum Field {
    Plain(u64),
    Encoded(u8),
}

/// Streaming scanner over one RDB file; see the module docs.
pub struct Scanner {
    stack: Vec<Frame>,
    /// Start of a field that did not fit the last push.
    stage: Vec<u8>,
    /// Offset of the next byte not yet consumed (staged bytes are not consumed).
    offset: u64,
    version: u16,
    db: u64,
    /// Start of the item being read (set at its first opcode).
    item_start: Option<u64>,
    expire_ms: Option<i64>,
    rdb_type: u8,
    key: Vec<u8>,
    /// Compressed key bytes being collected.
    lzf: Vec<u8>,
    /// Bytes pushed after the EOF item (ignored, as the parser ignores them).
    trailing: u64,
    failed: bool,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    /// A scanner expecting the start of an RDB file.
    pub fn new() -> Self {
        Scanner {
            stack: vec![Top, Header],
            stage: Vec::with_capacity(STAGE_MAX),
            offset: 0,
            version: 0,
            db: 0,
            item_start: None,
            expire_ms: None,
            rdb_type: 0,
            key: Vec::new(),
            lzf: Vec::new(),
            trailing: 0,
            failed: false,
        }
    }

    /// RDB version from the header (0 until the header was read).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Bytes consumed so far (a field split across pushes counts once it is complete).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Start of the item being read, if one has begun and not yet ended.
    pub fn item_start(&self) -> Option<u64> {
        self.item_start
    }

    /// True once the EOF item (and its checksum) was read.
    pub fn is_done(&self) -> bool {
        self.stack.is_empty()
    }

    /// Bytes pushed after the EOF item.
    pub fn trailing(&self) -> u64 {
        self.trailing
    }

    /// Checks that the file ended where an RDB may end (after its EOF item).
    pub fn finish(&self) -> Result<()> {
        if self.failed {
            return Err(self.corrupt("the scan stopped at an earlier error"));
        }
        if !self.is_done() {
            return Err(RdbError::Truncated { offset: self.offset + self.stage.len() as u64, key: self.current_key() });
        }
        Ok(())
    }

    /// Scans `data`, the bytes that follow those pushed before; calls `on` for each item completed.
    pub fn push(&mut self, data: &[u8], mut on: impl FnMut(Event<'_>)) -> Result<()> {
        if self.failed {
            return Err(self.corrupt("the scan stopped at an earlier error"));
        }
        let res = self.push_inner(data, &mut on);
        if res.is_err() {
            self.failed = true;
        }
        res
    }

    fn push_inner(&mut self, data: &[u8], on: &mut impl FnMut(Event<'_>)) -> Result<()> {
        let mut pos = 0;
        if !self.stage.is_empty() {
            let old = self.stage.len();
            let add = (STAGE_MAX - old).min(data.len());
            let mut stage = std::mem::take(&mut self.stage);
            stage.extend_from_slice(&data[..add]);
            match self.step(&stage, on)? {
                Some(used) if used > old => {
                    self.offset += used as u64;
                    pos = used - old;
                    stage.clear();
                    self.stage = stage;
                }
                Some(_) => return Err(self.corrupt("scanner state error: a staged field did not complete")),
                None if add == data.len() => {
                    self.stage = stage;
                    return Ok(());
                }
                None => return Err(self.corrupt(format!("a field longer than {STAGE_MAX} bytes"))),
            }
        }
        loop {
            match self.step(&data[pos..], on)? {
                Some(used) => {
                    self.offset += used as u64;
                    pos += used;
                }
                None => break,
            }
        }
        self.stage.extend_from_slice(&data[pos..]);
        Ok(())
    }

    fn corrupt(&self, msg: impl Into<String>) -> RdbError {
        RdbError::Corrupt { offset: self.offset, key: self.current_key(), msg: msg.into() }
    }

    fn unsupported(&self, what: impl Into<String>) -> RdbError {
        RdbError::Unsupported { offset: self.offset, key: self.current_key(), what: what.into() }
    }

    /// The key of the record being read, for error messages.
    fn current_key(&self) -> Option<Vec<u8>> {
        let in_value = self.item_start.is_some() && self.stack.iter().any(|f| matches!(f, EndRecord));
        let key_read = !matches!(self.stack.last(), Some(Key | KeyBytes(_) | KeyLzf(..)));
        (in_value && key_read).then(|| self.key.clone())
    }

    /// Replaces the top frame.
    fn set_top(&mut self, f: Frame) {
        if let Some(top) = self.stack.last_mut() {
            *top = f;
        }
    }

    /// Pushes a sequence so that its first frame runs first.
    fn push_seq(&mut self, seq: &[Frame]) {
        self.stack.extend(seq.iter().rev());
    }

    /// Runs the top frame on the front of `b`: Some(bytes consumed) or None when `b` is too
    /// short (nothing changed then).
    fn step(&mut self, b: &[u8], on: &mut impl FnMut(Event<'_>)) -> Result<Option<usize>> {
        let Some(&frame) = self.stack.last() else {
            self.trailing += b.len() as u64;
            return Ok((!b.is_empty()).then_some(b.len()));
        };
        let used = match frame {
            Skip(n) => {
                let k = n.min(b.len() as u64);
                if k == 0 && n > 0 {
                    return Ok(None);
                }
                if k == n {
                    self.stack.pop();
                } else {
                    self.set_top(Skip(n - k));
                }
                k as usize
            }
            Str | Checked => {
                let Some((field, used)) = self.field(b)? else { return Ok(None) };
                match field {
                    Field::Plain(n) => self.set_top(Skip(n)),
                    Field::Encoded(e @ 0..=2) => self.set_top(Skip(1 << e)),
                    Field::Encoded(3) => {
                        let Some((clen, ulen, used)) = self.lzf_lengths(b, used)? else { return Ok(None) };
                        if matches!(frame, Checked) {
                            self.lzf.clear();
                            self.set_top(CheckLzf(clen, ulen));
                        } else {
                            self.set_top(Skip(clen));
                        }
                        return Ok(Some(used));
                    }
                    Field::Encoded(e) => return Err(self.corrupt(format!("unknown string encoding {e}"))),
                }
                used
            }
            Len | Select | Container | ModuleWhen => {
                let Some((n, used)) = self.len(b)? else { return Ok(None) };
                match frame {
                    Select => self.db = n,
                    Container if n != 1 && n != 2 => return Err(self.corrupt(format!("invalid quicklist container {n}"))),
                    ModuleWhen if n != 2 => return Err(self.corrupt("module aux 'when' is not a UINT opcode")),
                    _ => {}
                }
                self.stack.pop();
                used
            }
            AsciiDouble => {
                let Some(&n) = b.first() else { return Ok(None) };
                if n < 253 {
                    self.lzf.clear();
                    self.set_top(DoubleText(n as u64));
                } else {
                    self.stack.pop();
                }
                1
            }
            Count(body) => {
                let Some((n, used)) = self.len(b)? else { return Ok(None) };
                if n > MAX_COUNT {
                    return Err(self.corrupt(format!("implausible element count {n}")));
                }
                self.set_top(Loop(n, body));
                used
            }
            Loop(0, _) => {
                self.stack.pop();
                0
            }
            Loop(n, body) => {
                // Whole elements in one pass where it can; else one element frame by frame.
                let (done, used) = if quick_body(body) { self.quick_elements(b, n, body) } else { (0, 0) };
                if done > 0 {
                    self.set_top(Loop(n - done, body));
                    used
                } else {
                    self.set_top(Loop(n - 1, body));
                    self.push_seq(body);
                    0
                }
            }
            ModuleOps => {
                let Some((op, used)) = self.len(b)? else { return Ok(None) };
                match op {
                    0 => drop(self.stack.pop()),
                    1 | 2 => self.stack.push(Len),
                    3 => self.stack.push(Skip(4)),
                    4 => self.stack.push(Skip(8)),
                    5 => self.stack.push(Str),
                    op => return Err(self.corrupt(format!("unknown module opcode {op}"))),
                }
                used
            }
            ExpireSec => {
                let Some(t) = b.get(..4) else { return Ok(None) };
                let t = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
                self.expire_ms = Some(t as i64 * 1000);
                self.stack.pop();
                4
            }
            ExpireMs => {
                let Some(t) = b.get(..8).and_then(|t| <[u8; 8]>::try_from(t).ok()) else { return Ok(None) };
                self.expire_ms = Some(u64::from_le_bytes(t) as i64);
                self.stack.pop();
                8
            }
            Key => {
                let Some((field, used)) = self.field(b)? else { return Ok(None) };
                self.key.clear();
                match field {
                    Field::Plain(n) => self.set_top(KeyBytes(n)),
                    Field::Encoded(e @ 0..=2) => {
                        let size = 1usize << e;
                        let Some(v) = b.get(used..used + size) else { return Ok(None) };
                        let v = match v {
                            [a] => *a as i8 as i64,
                            [a, b] => i16::from_le_bytes([*a, *b]) as i64,
                            [a, b, c, d] => i32::from_le_bytes([*a, *b, *c, *d]) as i64,
                            _ => 0,
                        };
                        self.key.extend_from_slice(v.to_string().as_bytes());
                        self.stack.pop();
                        return Ok(Some(used + size));
                    }
                    Field::Encoded(3) => {
                        let Some((clen, ulen, used)) = self.lzf_lengths(b, used)? else { return Ok(None) };
                        self.lzf.clear();
                        self.set_top(KeyLzf(clen, ulen));
                        return Ok(Some(used));
                    }
                    Field::Encoded(e) => return Err(self.corrupt(format!("unknown string encoding {e}"))),
                }
                used
            }
            KeyBytes(n) | KeyLzf(n, _) | CheckLzf(n, _) | DoubleText(n) => {
                let k = n.min(b.len() as u64) as usize;
                if k == 0 && n > 0 {
                    return Ok(None);
                }
                let into = if matches!(frame, KeyBytes(_)) { &mut self.key } else { &mut self.lzf };
                into.extend_from_slice(&b[..k]);
                let left = n - k as u64;
                match frame {
                    KeyBytes(_) if left == 0 => drop(self.stack.pop()),
                    KeyBytes(_) => self.set_top(KeyBytes(left)),
                    KeyLzf(_, ulen) | CheckLzf(_, ulen) if left == 0 => {
                        let ulen = usize::try_from(ulen).map_err(|_| self.corrupt("LZF length does not fit in memory"))?;
                        let plain = lzf::decompress(&self.lzf, ulen).map_err(|m| self.corrupt(m))?;
                        if matches!(frame, KeyLzf(..)) {
                            self.key = plain;
                        } else {
                            // Only checked: a large FUNCTION2 payload is not held for the rest of the file.
                            self.lzf = Vec::new();
                        }
                        self.stack.pop();
                    }
                    KeyLzf(_, ulen) => self.set_top(KeyLzf(left, ulen)),
                    CheckLzf(_, ulen) => self.set_top(CheckLzf(left, ulen)),
                    DoubleText(_) if left == 0 => {
                        if super::string::parse_f64(&self.lzf).is_none() {
                            return Err(self.corrupt("invalid ASCII double"));
                        }
                        self.stack.pop();
                    }
                    DoubleText(_) => self.set_top(DoubleText(left)),
                    _ => {}
                }
                k
            }
            Header => {
                let Some(h) = b.get(..9).and_then(|h| <[u8; 9]>::try_from(h).ok()) else { return Ok(None) };
                self.version = parse_header(&h)?;
                self.stack.pop();
                on(Event::Boundary { offset: 0, len: 9, area: Area::Header });
                9
            }
            Top => {
                let Some(&op) = b.first() else { return Ok(None) };
                if let Some(used) = self.quick_record(b, op, on) {
                    return Ok(Some(used));
                }
                self.opcode(op)?;
                if self.item_start.is_none() {
                    self.item_start = Some(self.offset);
                }
                1
            }
            EndRecord => {
                let offset = self.item_start.take().unwrap_or(self.offset);
                let rec = KeyRecord {
                    offset,
                    len: self.offset - offset,
                    db: self.db,
                    key: &self.key,
                    rdb_type: self.rdb_type,
                    expire_ms: self.expire_ms.take(),
                };
                on(Event::Record(rec));
                self.stack.pop();
                0
            }
            EndArea(area) => {
                self.end_area(area, on);
                self.stack.pop();
                0
            }
            EndFile => {
                self.end_area(Area::Eof, on);
                self.stack.clear();
                0
            }
        };
        Ok(Some(used))
    }

    /// Reports the non-record item that ends here.
    fn end_area(&mut self, area: Area, on: &mut impl FnMut(Event<'_>)) {
        let offset = self.item_start.take().unwrap_or(self.offset);
        self.expire_ms = None;
        on(Event::Boundary { offset, len: self.offset - offset, area });
    }

    /// Dispatches on an opcode or value type byte read at the top level.
    fn opcode(&mut self, op: u8) -> Result<()> {
        let valkey = self.version >= VALKEY_MIN_VERSION;
        match op {
            OP_EOF => {
                self.stack.push(EndFile);
                if self.version >= 5 {
                    self.stack.push(Skip(8));
                }
            }
            OP_SELECTDB => self.push_seq(&[Select, EndArea(Area::SelectDb)]),
            OP_EXPIRETIME => self.stack.push(ExpireSec),
            OP_EXPIRETIME_MS => self.stack.push(ExpireMs),
            OP_IDLE => self.stack.push(Len),
            OP_FREQ => self.stack.push(Skip(1)),
            OP_RESIZEDB => self.push_seq(&[Len, Len, EndArea(Area::ResizeDb)]),
            OP_AUX => self.push_seq(&[Checked, Checked, EndArea(Area::Aux)]),
            OP_SLOT_INFO => self.push_seq(&[Len, Len, Len, EndArea(Area::SlotInfo)]),
            OP_FUNCTION2 => self.push_seq(&[Checked, EndArea(Area::Function)]),
            OP_SLOT_IMPORT if valkey => self.push_seq(&[Str, Count(LEN_PAIRS)]),
            OP_FUNCTION_PRE_GA => return Err(self.unsupported("pre-GA function format (Redis 7.0 release candidates)")),
            OP_MODULE_AUX => self.push_seq(&[Len, ModuleWhen, Len, ModuleOps, EndArea(Area::ModuleAux)]),
            ty if kind_of(ty).is_some() => {
                let value: &[Frame] = match ty {
                    22 if valkey => &[Count(VALKEY_HASH2)],
                    23..=25 if valkey => return Err(self.unsupported(format!("Valkey value type {ty} (newer than Valkey 9.0)"))),
                    6 => return Err(self.unsupported("module value of RDB type 6 (pre-4.0 format) cannot be skipped without the module")),
                    0 | 9..=13 | 16 | 17 | 20 | 23 => &[Str],
                    1 | 2 | 14 => &[Count(STRS)],
                    3 => &[Count(ZSET1)],
                    5 => &[Count(ZSET2)],
                    4 => &[Count(PAIRS)],
                    7 => &[Len, ModuleOps],
                    18 => &[Count(QUICKLIST2)],
                    15 => STREAM1,
                    19 => STREAM2,
                    21 => STREAM3,
                    22 => &[Count(HASH_TTL)],
                    24 => &[Skip(8), Count(HASH_TTL)],
                    25 => &[Skip(8), Str],
                    _ => return Err(self.unsupported(format!("unsupported value type {ty}"))),
                };
                self.rdb_type = ty;
                self.stack.push(EndRecord);
                self.push_seq(value);
                self.stack.push(Key);
            }
            ty if ty < 200 => return Err(self.unsupported(format!("unsupported value type {ty}"))),
            ty if ty < OP_SLOT_INFO => return Err(self.unsupported(format!("unsupported opcode {ty:#04x}"))),
            other => return Err(self.corrupt(format!("unknown opcode {other:#04x}"))),
        }
        Ok(())
    }

    /// A length field or encoding tag at the front of `b`, and its size.
    fn field(&self, b: &[u8]) -> Result<Option<(Field, usize)>> {
        match (quick_field(b), b.first()) {
            (Some(f), _) => Ok(Some(f)),
            (None, Some(&first)) if first >> 6 == 2 && first != 0x80 && first != 0x81 => {
                Err(self.corrupt(format!("unknown length encoding byte {first:#04x}")))
            }
            (None, _) => Ok(None),
        }
    }

    /// The bytes of one string field at the front of `b` (its header and what follows), when
    /// all of them are there and they are well formed; None leaves it to the frame-by-frame
    /// path (which also gives the errors, at their offsets).
    #[inline(always)]
    fn quick_str(&self, b: &[u8]) -> Option<usize> {
        let (field, used) = quick_field(b)?;
        let end = match field {
            Field::Plain(n) => used.checked_add(usize::try_from(n).ok()?)?,
            Field::Encoded(e @ 0..=2) => used + (1 << e),
            Field::Encoded(3) => {
                // Both lengths plain, and as plausible as `lzf_lengths` wants them.
                let (Field::Plain(clen), c) = quick_field(b.get(used..)?)? else { return None };
                let (Field::Plain(ulen), u) = quick_field(b.get(used + c..)?)? else { return None };
                if implausible_lzf(clen, ulen) {
                    return None;
                }
                (used + c + u).checked_add(usize::try_from(clen).ok()?)?
            }
            Field::Encoded(_) => return None,
        };
        (end <= b.len()).then_some(end)
    }

    /// Whole elements of a loop's `body` at the front of `b`, at most `n`: (elements, bytes).
    /// An element that is cut off or unusual ends the run. One pass with no stack traffic:
    /// sets, big zsets and hashes, and quicklist nodes are most of a file's elements.
    fn quick_elements(&self, b: &[u8], n: u64, body: &[Frame]) -> (u64, usize) {
        match body {
            [Str] => return self.quick_strings::<1, 0>(b, n),
            [Str, Str] => return self.quick_strings::<2, 0>(b, n),
            [Str, Skip(8)] => return self.quick_strings::<1, 8>(b, n),
            _ => {}
        }
        let (mut done, mut at) = (0u64, 0usize);
        'elements: while done < n {
            let mut p = at;
            for f in body {
                let Some(rest) = b.get(p..) else { break 'elements };
                let step = match *f {
                    Str => self.quick_str(rest),
                    Skip(k) => usize::try_from(k).ok().filter(|&k| k <= rest.len()),
                    Len => match quick_field(rest) {
                        Some((Field::Plain(_), used)) => Some(used),
                        _ => None,
                    },
                    Container => match quick_field(rest) {
                        Some((Field::Plain(1 | 2), used)) => Some(used),
                        _ => None,
                    },
                    _ => None,
                };
                let Some(step) = step else { break 'elements };
                p += step;
            }
            at = p;
            done += 1;
        }
        (done, at)
    }

    /// [`Scanner::quick_elements`] for a body of `S` strings and `SKIP` fixed bytes (set
    /// members, hash fields and values, big zsets' members and scores) without a dispatch per
    /// frame: the loop's instructions in a 1 GiB incremental fell from 0.76 G to 0.44 G.
    fn quick_strings<const S: usize, const SKIP: usize>(&self, b: &[u8], n: u64) -> (u64, usize) {
        let (mut done, mut at) = (0u64, 0usize);
        while done < n {
            let mut p = at;
            for _ in 0..S {
                // `quick_str` ends within `b`, so `p` never passes its end.
                let Some(step) = self.quick_str(&b[p..]) else { return (done, at) };
                p += step;
            }
            if SKIP > b.len() - p {
                break;
            }
            at = p + SKIP;
            done += 1;
        }
        (done, at)
    }

    /// A whole key record at the front of `b` whose value is one string (a string, or a
    /// small collection in one listpack, ziplist or intset) and whose key is plain: the
    /// record event and the bytes it used, or None for the frame-by-frame path.
    fn quick_record(&mut self, b: &[u8], op: u8, on: &mut impl FnMut(Event<'_>)) -> Option<usize> {
        if !matches!(op, 0 | 9..=13 | 16 | 17 | 20) {
            return None;
        }
        let (Field::Plain(klen), kused) = quick_field(b.get(1..)?)? else { return None };
        let key_at = 1 + kused;
        let value_at = key_at.checked_add(usize::try_from(klen).ok()?)?;
        let end = value_at + self.quick_str(b.get(value_at..)?)?;
        let offset = self.item_start.take().unwrap_or(self.offset);
        let rec = KeyRecord {
            offset,
            len: self.offset + end as u64 - offset,
            db: self.db,
            key: &b[key_at..value_at],
            rdb_type: op,
            expire_ms: self.expire_ms.take(),
        };
        on(Event::Record(rec));
        Some(end)
    }

    /// A plain length at the front of `b`; an encoding tag is corruption.
    fn len(&self, b: &[u8]) -> Result<Option<(u64, usize)>> {
        match self.field(b)? {
            None => Ok(None),
            Some((Field::Plain(n), used)) => Ok(Some((n, used))),
            Some((Field::Encoded(e), _)) => Err(self.corrupt(format!("expected a length, found string encoding tag {e}"))),
        }
    }

    /// The (compressed, uncompressed) lengths of an LZF string whose tag ended at `at`.
    fn lzf_lengths(&self, b: &[u8], at: usize) -> Result<Option<(u64, u64, usize)>> {
        let Some((clen, c)) = self.len(&b[at..])? else { return Ok(None) };
        let Some((ulen, u)) = self.len(&b[at + c..])? else { return Ok(None) };
        if implausible_lzf(clen, ulen) {
            return Err(self.corrupt(format!("LZF string claims {ulen} bytes from {clen} compressed bytes")));
        }
        Ok(Some((clen, ulen, at + c + u)))
    }
}

/// Every event of a whole file with owned keys, or the first error: for tests and small inputs.
pub fn scan_all(data: &[u8]) -> Result<Vec<(Event<'static>, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut s = Scanner::new();
    s.push(data, |e| out.push(owned(e)))?;
    s.finish()?;
    Ok(out)
}

/// An event with its key moved out (the returned event's key is empty).
fn owned(e: Event<'_>) -> (Event<'static>, Vec<u8>) {
    match e {
        Event::Record(r) => (Event::Record(KeyRecord { key: &[], ..r }), r.key.to_vec()),
        Event::Boundary { offset, len, area } => (Event::Boundary { offset, len, area }, Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small RDB with an aux field, two dbs, an expiry, an LZF key, an int key and a module value.
    fn sample() -> Vec<u8> {
        let mut f = b"REDIS0011".to_vec();
        f.extend_from_slice(&[0xFA, 3, b'a', b'b', b'c', 1, b'x']);
        f.extend_from_slice(&[0xFE, 0, 0xFB, 2, 0]);
        f.extend_from_slice(&[0, 1, b'k', 2, b'v', b'v']);
        f.extend_from_slice(&[0xFC]);
        f.extend_from_slice(&1_700_000_000_000u64.to_le_bytes());
        f.extend_from_slice(&[0, 0xC0, 7, 0xC1, 1, 2]);
        f.extend_from_slice(&[0xFE, 3]);
        // LZF key "xyzxyz" and a list of two strings.
        f.extend_from_slice(&[1, 0xC3, 6, 6, 2, b'x', b'y', b'z', 0b0010_0000, 2, 2, 1, b'a', 1, b'b']);
        // Module value: id, UINT 5, STRING "m", EOF.
        f.extend_from_slice(&[7, 1, b'm', 0x40, 9, 2, 5, 5, 1, b'm', 0]);
        f.push(0xFF);
        f.extend_from_slice(&[0; 8]);
        f
    }

    fn events(data: &[u8], piece: usize) -> Vec<(Event<'static>, Vec<u8>)> {
        let mut out = Vec::new();
        let mut s = Scanner::new();
        for p in data.chunks(piece) {
            s.push(p, |e| out.push(owned(e))).unwrap();
        }
        s.finish().unwrap();
        out
    }

    #[test]
    fn finds_records_and_areas_in_any_pieces() {
        let data = sample();
        let whole = events(&data, data.len());
        let keys: Vec<_> = whole.iter().filter(|(e, _)| matches!(e, Event::Record(_))).map(|(_, k)| k.clone()).collect();
        assert_eq!(keys, [&b"k"[..], b"7", b"xyzxyz", b"m"]);
        // Items tile the file.
        let mut at = 0;
        for (e, _) in &whole {
            let (o, l) = match e {
                Event::Record(r) => (r.offset, r.len),
                Event::Boundary { offset, len, .. } => (*offset, *len),
            };
            assert_eq!(o, at);
            at += l;
        }
        assert_eq!(at, data.len() as u64);
        let Event::Record(r) = whole[5].0 else { panic!("{:?}", whole[5]) };
        assert_eq!((r.db, r.expire_ms, r.rdb_type), (0, Some(1_700_000_000_000), 0));
        assert_eq!(r.len, 1 + 8 + 1 + 2 + 3);
        for piece in [1, 2, 3, 5, 7, 11] {
            assert_eq!(events(&data, piece), whole, "pieces of {piece}");
        }
    }

    #[test]
    fn sets_hashes_and_big_zsets_tile_alike_whole_and_in_pieces() {
        let mut f = b"REDIS0009".to_vec();
        f.extend_from_slice(&[0xFE, 0]);
        // A set of a plain, an integer and an LZF member.
        f.extend_from_slice(&[2, 1, b's', 3, 2, b'a', b'b', 0xC0, 9]);
        f.extend_from_slice(&[0xC3, 6, 6, 2, b'x', b'y', b'z', 0b0010_0000, 2]);
        // A hash of two fields, a zset of two members with binary scores.
        f.extend_from_slice(&[4, 1, b'h', 2, 1, b'f', 1, b'v', 1, b'g', 0xC1, 1, 2]);
        f.extend_from_slice(&[5, 1, b'z', 2, 1, b'm']);
        f.extend_from_slice(&1.5f64.to_le_bytes());
        f.extend_from_slice(&[1, b'n']);
        f.extend_from_slice(&2.5f64.to_le_bytes());
        f.extend_from_slice(&[0, 1, b'k', 1, b'v', 0xFF]);
        f.extend_from_slice(&[0; 8]);
        let whole = events(&f, f.len());
        let records: Vec<_> = whole.iter().filter_map(|(e, k)| if let Event::Record(r) = e { Some((k.clone(), r.offset, r.len)) } else { None }).collect();
        let starts = [11u64, 29, 42, 66];
        let expect: Vec<_> = [&b"s"[..], b"h", b"z", b"k"].iter().zip(starts).zip(starts.iter().skip(1).chain([&71])).map(|((k, o), e)| (k.to_vec(), o, e - o)).collect();
        assert_eq!(records, expect);
        for piece in 1..f.len() {
            assert_eq!(events(&f, piece), whole, "pieces of {piece}");
        }
    }

    #[test]
    fn errors_never_panic() {
        let data = sample();
        for cut in 0..data.len() {
            let mut s = Scanner::new();
            let _ = s.push(&data[..cut], |_| {});
            assert!(s.finish().is_err(), "cut at {cut}");
        }
        for i in 9..data.len() {
            for v in [0u8, 0x3f, 0x7f, 0x80, 0x81, 0xbf, 0xc3, 0xff] {
                let mut bad = data.clone();
                bad[i] = v;
                let _ = scan_all(&bad);
            }
        }
        assert!(matches!(scan_all(b"RODIS0009\xff"), Err(RdbError::BadHeader(_))));
    }

    #[test]
    fn huge_values_stream_in_constant_memory() {
        let mut f = b"REDIS0009".to_vec();
        let n: u64 = 300 << 20;
        f.extend_from_slice(&[0, 1, b'k', 0x81]);
        f.extend_from_slice(&n.to_be_bytes());
        let mut s = Scanner::new();
        let mut seen = Vec::new();
        s.push(&f, |e| seen.push(owned(e))).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..299 {
            s.push(&zeros, |e| seen.push(owned(e))).unwrap();
        }
        assert_eq!(s.item_start(), Some(9));
        s.push(&zeros, |e| seen.push(owned(e))).unwrap();
        s.push(&[0xFF, 0, 0, 0, 0, 0, 0, 0, 0], |e| seen.push(owned(e))).unwrap();
        s.finish().unwrap();
        assert!(s.stage.capacity() <= STAGE_MAX && s.key.capacity() < 64);
        let Event::Record(r) = seen[1].0 else { panic!() };
        assert_eq!((r.offset, r.len), (9, 3 + 9 + n));
    }
}
