//! Dispatch on the RDB value type byte: decodes (or just walks over) one serialized value.

use std::io::Read;

use super::error::Result;
use super::reader::ByteReader;
use super::string::{is_redis_int, parse_f64, Len, StrForm};
use super::value::{HashField, ModuleValue, Pairs, Value, ValueKind};
use super::{intset, listpack, stream, ziplist, zipmap};

/// Quicklist v2 node container: a single element stored as-is.
pub(crate) const QUICKLIST_PLAIN: u64 = 1;
/// Quicklist v2 node container: a listpack of elements.
pub(crate) const QUICKLIST_PACKED: u64 = 2;

/// Module value opcodes (RDB_MODULE_OPCODE_*).
const MOD_EOF: u64 = 0;
const MOD_SINT: u64 = 1;
const MOD_UINT: u64 = 2;
const MOD_FLOAT: u64 = 3;
const MOD_DOUBLE: u64 = 4;
const MOD_STRING: u64 = 5;

/// Logical type of an RDB value type byte, or None if the byte is not a value type.
pub fn kind_of(ty: u8) -> Option<ValueKind> {
    Some(match ty {
        0 => ValueKind::String,
        1 | 10 | 14 | 18 => ValueKind::List,
        2 | 11 | 20 => ValueKind::Set,
        3 | 5 | 12 | 17 => ValueKind::SortedSet,
        4 | 9 | 13 | 16 | 22..=25 => ValueKind::Hash,
        15 | 19 | 21 => ValueKind::Stream,
        6 | 7 => ValueKind::Module,
        _ => return None,
    })
}

/// Encoding name (as `OBJECT ENCODING` words it) of the serialized form; strings are refined by content.
pub fn encoding_of(ty: u8) -> &'static str {
    match ty {
        0 => "raw",
        1 => "linkedlist",
        2 | 4 | 22 | 24 => "hashtable",
        3 | 5 => "skiplist",
        6 | 7 => "module",
        9 => "zipmap",
        10 | 12 | 13 => "ziplist",
        11 => "intset",
        14 | 18 => "quicklist",
        15 | 19 | 21 => "stream",
        16 | 17 | 20 => "listpack",
        23 | 25 => "listpackex",
        _ => "unknown",
    }
}

/// Decodes the 64-bit module type id into its 9-character name and 10-bit encoding version.
pub fn module_type_name(id: u64) -> (String, u64) {
    const CHARSET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut chars = [0u8; 9];
    let mut bits = id >> 10;
    for c in chars.iter_mut().rev() {
        *c = CHARSET[(bits & 63) as usize];
        bits >>= 6;
    }
    (String::from_utf8_lossy(&chars).into_owned(), id & 1023)
}

/// Reads one value of type `ty`; returns the decoded value (or `NotDecoded`) and its encoding name.
pub(crate) fn read_object<R: Read>(
    r: &mut ByteReader<R>,
    ty: u8,
    decode: bool,
    version: u16,
) -> Result<(Value, &'static str)> {
    let enc = encoding_of(ty);
    let valkey = version >= super::VALKEY_MIN_VERSION;
    let value = match ty {
        22 if valkey => {
            // Valkey 9 HASH_2: per field its name, value, then expiry as 8 bytes LE (-1: none).
            let n = r.read_count()?;
            let mut out: Vec<HashField> = Vec::with_capacity(cap(n));
            for _ in 0..n {
                let f = r.string_or_skip(decode)?;
                let v = r.string_or_skip(decode)?;
                let t = i64::from_le_bytes(r.read_array()?);
                if let (Some(f), Some(v)) = (f, v) {
                    out.push((f, v, u64::try_from(t).ok()));
                }
            }
            if decode {
                Value::Hash(out)
            } else {
                Value::NotDecoded
            }
        }
        23..=25 if valkey => {
            return Err(r.unsupported_at(
                r.offset().saturating_sub(1),
                format!("Valkey value type {ty} (newer than Valkey 9.0)"),
            ))
        }
        0 => return read_string_value(r, decode),
        1 | 2 => {
            let items = read_strings(r, decode)?;
            match items {
                None => Value::NotDecoded,
                Some(v) if ty == 1 => Value::List(v),
                Some(v) => Value::Set(v),
            }
        }
        3 | 5 => {
            let n = r.read_count()?;
            let mut out = Vec::with_capacity(cap(n));
            for _ in 0..n {
                let m = r.string_or_skip(decode)?;
                let score = if ty == 3 {
                    r.read_ascii_double()?
                } else {
                    r.read_binary_double()?
                };
                if let Some(m) = m {
                    out.push((m, score));
                }
            }
            if decode {
                Value::SortedSet(out)
            } else {
                Value::NotDecoded
            }
        }
        4 => {
            let n = r.read_count()?;
            let mut out: Vec<HashField> = Vec::with_capacity(cap(n));
            for _ in 0..n {
                let f = r.string_or_skip(decode)?;
                let v = r.string_or_skip(decode)?;
                if let (Some(f), Some(v)) = (f, v) {
                    out.push((f, v, None));
                }
            }
            if decode {
                Value::Hash(out)
            } else {
                Value::NotDecoded
            }
        }
        6 => {
            return Err(r.unsupported_at(
                r.offset(),
                "module value of RDB type 6 (pre-4.0 format) cannot be skipped without the module",
            ))
        }
        7 => {
            let id = r.read_len()?;
            let (name, encver) = module_type_name(id);
            let skipped_bytes = skip_module_opcodes(r)?;
            Value::Module(ModuleValue {
                name,
                encver,
                skipped_bytes,
            })
        }
        9 | 10 | 11 | 12 | 13 | 16 | 17 | 20 | 23 => match blob(r, decode)? {
            None => Value::NotDecoded,
            Some((at, b)) => decode_blob(r, ty, at, &b)?,
        },
        25 => {
            let _min_expire = r.read_u64_le()?;
            match blob(r, decode)? {
                None => Value::NotDecoded,
                Some((at, b)) => decode_blob(r, ty, at, &b)?,
            }
        }
        14 | 18 => {
            let nodes = r.read_count()?;
            let mut out = Vec::new();
            for _ in 0..nodes {
                let container = if ty == 18 {
                    quicklist_container(r)?
                } else {
                    QUICKLIST_PACKED
                };
                if let Some((at, b)) = blob(r, decode)? {
                    if container == QUICKLIST_PLAIN {
                        out.push(b);
                    } else {
                        let items = if ty == 14 {
                            ziplist::parse(&b)
                        } else {
                            listpack::parse(&b)
                        };
                        let what = if ty == 14 {
                            "quicklist ziplist node"
                        } else {
                            "quicklist listpack node"
                        };
                        out.extend(items.map_err(|m| r.corrupt_at(at, format!("{what}: {m}")))?);
                    }
                }
            }
            if decode {
                Value::List(out)
            } else {
                Value::NotDecoded
            }
        }
        15 | 19 | 21 => match stream::read_stream(r, ty, decode)? {
            Some(s) => Value::Stream(Box::new(s)),
            None => Value::NotDecoded,
        },
        22 | 24 => {
            let min_expire = if ty == 24 {
                Some(r.read_u64_le()?)
            } else {
                None
            };
            let n = r.read_count()?;
            let mut out: Vec<HashField> = Vec::with_capacity(cap(n));
            for _ in 0..n {
                let expire = field_expiry(r.read_len()?, min_expire);
                let f = r.string_or_skip(decode)?;
                let v = r.string_or_skip(decode)?;
                if let (Some(f), Some(v)) = (f, v) {
                    out.push((f, v, expire));
                }
            }
            if decode {
                Value::Hash(out)
            } else {
                Value::NotDecoded
            }
        }
        _ => {
            return Err(r.unsupported_at(
                r.offset().saturating_sub(1),
                format!("unsupported value type {ty}"),
            ))
        }
    };
    Ok((value, enc))
}

/// A quicklist v2 node's container ([`QUICKLIST_PLAIN`] or [`QUICKLIST_PACKED`]).
pub(crate) fn quicklist_container<R: Read>(r: &mut ByteReader<R>) -> Result<u64> {
    let at = r.offset();
    let c = r.read_len()?;
    if c != QUICKLIST_PLAIN && c != QUICKLIST_PACKED {
        return Err(r.corrupt_at(at, format!("invalid quicklist container {c}")));
    }
    Ok(c)
}

/// A hash field's absolute expiry from its stored TTL: type 24 stores TTLs relative to
/// `min_expire`, offset by one (0 means "no TTL"); type 22 stores them as they are.
pub(crate) fn field_expiry(ttl: u64, min_expire: Option<u64>) -> Option<u64> {
    match (ttl, min_expire) {
        (0, _) => None,
        (t, Some(min)) => Some(t.wrapping_add(min).wrapping_sub(1)),
        (t, None) => Some(t),
    }
}

/// Pre-allocation cap for element vectors whose length comes from the file.
fn cap(n: u64) -> usize {
    n.min(1024) as usize
}

/// Reads a count-prefixed sequence of strings.
fn read_strings<R: Read>(r: &mut ByteReader<R>, decode: bool) -> Result<Option<Vec<Vec<u8>>>> {
    let n = r.read_count()?;
    let mut out = Vec::with_capacity(if decode { cap(n) } else { 0 });
    for _ in 0..n {
        if let Some(s) = r.string_or_skip(decode)? {
            out.push(s);
        }
    }
    Ok(if decode { Some(out) } else { None })
}

/// Reads a string value; short strings are read even when not decoding so the int/embstr/raw name is exact.
fn read_string_value<R: Read>(
    r: &mut ByteReader<R>,
    decode: bool,
) -> Result<(Value, &'static str)> {
    if decode {
        let (bytes, form) = r.read_string_form()?;
        let enc = string_encoding(form, Some(&bytes));
        return Ok((Value::String(bytes), enc));
    }
    let at = r.offset();
    let form = match r.read_len_or_enc()? {
        Len::Plain(n) if n <= 20 => {
            let b = r.read_bytes(n)?;
            return Ok((
                Value::NotDecoded,
                string_encoding(StrForm::Bytes(n), Some(&b)),
            ));
        }
        Len::Plain(n) => {
            r.skip(n)?;
            StrForm::Bytes(n)
        }
        Len::Encoded(0) => r.skip(1).map(|_| StrForm::Int)?,
        Len::Encoded(1) => r.skip(2).map(|_| StrForm::Int)?,
        Len::Encoded(2) => r.skip(4).map(|_| StrForm::Int)?,
        Len::Encoded(3) => {
            let (clen, ulen) = r.read_lzf_header(at)?;
            r.skip(clen)?;
            StrForm::Bytes(ulen)
        }
        Len::Encoded(e) => return Err(r.corrupt_at(at, format!("unknown string encoding {e}"))),
    };
    Ok((Value::NotDecoded, string_encoding(form, None)))
}

/// Names a string's encoding the way Redis does after loading it (`tryObjectEncoding`).
pub(crate) fn string_encoding(form: StrForm, bytes: Option<&[u8]>) -> &'static str {
    match form {
        StrForm::Int => "int",
        StrForm::Bytes(_) if bytes.is_some_and(is_redis_int) => "int",
        StrForm::Bytes(n) if n <= 44 => "embstr",
        StrForm::Bytes(_) => "raw",
    }
}

/// Reads a string holding an encoded blob, remembering where it started (for error offsets).
fn blob<R: Read>(r: &mut ByteReader<R>, decode: bool) -> Result<Option<(u64, Vec<u8>)>> {
    let at = r.offset();
    Ok(r.string_or_skip(decode)?.map(|b| (at, b)))
}

/// Walks module opcodes until RDB_MODULE_OPCODE_EOF; returns the number of bytes walked.
pub(crate) fn skip_module_opcodes<R: Read>(r: &mut ByteReader<R>) -> Result<u64> {
    let start = r.offset();
    loop {
        let at = r.offset();
        match r.read_len()? {
            MOD_EOF => break,
            MOD_SINT | MOD_UINT => {
                r.read_len()?;
            }
            MOD_FLOAT => r.skip(4)?,
            MOD_DOUBLE => r.skip(8)?,
            MOD_STRING => {
                r.skip_string()?;
            }
            op => return Err(r.corrupt_at(at, format!("unknown module opcode {op}"))),
        }
    }
    Ok(r.offset() - start)
}

/// Splits a flat element list into (field, value) pairs.
fn pairs(items: Vec<Vec<u8>>) -> std::result::Result<Pairs, String> {
    if !items.len().is_multiple_of(2) {
        return Err(format!(
            "odd number of elements ({}) in a pair encoding",
            items.len()
        ));
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        out.push((a, b));
    }
    Ok(out)
}

/// Decodes a single-blob encoding (zipmap, ziplist, intset, listpack variants).
fn decode_blob<R: Read>(r: &ByteReader<R>, ty: u8, at: u64, b: &[u8]) -> Result<Value> {
    let name = encoding_of(ty);
    let decoded: std::result::Result<Value, String> = (|| {
        Ok(match ty {
            9 => Value::Hash(
                zipmap::parse(b)?
                    .into_iter()
                    .map(|(f, v)| (f, v, None))
                    .collect(),
            ),
            10 => Value::List(ziplist::parse(b)?),
            11 => Value::Set(intset::parse(b)?),
            20 => Value::Set(listpack::parse(b)?),
            12 | 17 => {
                let items = if ty == 12 {
                    ziplist::parse(b)?
                } else {
                    listpack::parse(b)?
                };
                let mut out = Vec::with_capacity(items.len() / 2);
                for (m, s) in pairs(items)? {
                    let score = parse_f64(&s).ok_or("zset score is not a number")?;
                    out.push((m, score));
                }
                Value::SortedSet(out)
            }
            13 | 16 => {
                let items = if ty == 13 {
                    ziplist::parse(b)?
                } else {
                    listpack::parse(b)?
                };
                Value::Hash(
                    pairs(items)?
                        .into_iter()
                        .map(|(f, v)| (f, v, None))
                        .collect(),
                )
            }
            23 | 25 => {
                let items = listpack::parse(b)?;
                if !items.len().is_multiple_of(3) {
                    return Err(format!(
                        "{} elements is not a multiple of 3 (field, value, ttl)",
                        items.len()
                    ));
                }
                let mut out = Vec::with_capacity(items.len() / 3);
                let mut it = items.into_iter();
                while let (Some(f), Some(v), Some(t)) = (it.next(), it.next(), it.next()) {
                    let ttl = super::string::parse_i64(&t).ok_or("field TTL is not an integer")?;
                    out.push((f, v, if ttl == 0 { None } else { Some(ttl as u64) }));
                }
                Value::Hash(out)
            }
            _ => return Err(format!("type {ty} is not a blob encoding")),
        })
    })();
    decoded.map_err(|m| r.corrupt_at(at, format!("{name}: {m}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names() {
        // Encode "ReJSON-RL" with encver 3 the way Redis does, then decode.
        const CHARSET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut id = 0u64;
        for c in b"ReJSON-RL" {
            let pos = CHARSET.iter().position(|x| x == c).unwrap() as u64;
            id = (id << 6) | pos;
        }
        id = (id << 10) | 3;
        assert_eq!(module_type_name(id), ("ReJSON-RL".to_string(), 3));
    }

    #[test]
    fn kinds_and_encodings() {
        assert_eq!(kind_of(0), Some(ValueKind::String));
        assert_eq!(kind_of(8), None);
        assert_eq!(kind_of(26), None);
        assert_eq!(encoding_of(18), "quicklist");
        assert_eq!(string_encoding(StrForm::Bytes(3), Some(b"123")), "int");
        assert_eq!(string_encoding(StrForm::Bytes(3), Some(b"abc")), "embstr");
        assert_eq!(string_encoding(StrForm::Bytes(45), None), "raw");
    }
}
