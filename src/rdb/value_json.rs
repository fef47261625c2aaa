//! A value written as JSON straight from the file's bytes, without building a [`super::Value`]:
//! elements are escaped where they stand in the read buffer or in the blob that holds them
//! (listpack, ziplist, intset), so nothing is allocated per element. The text is exactly what
//! [`super::write_value_json`] writes for the decoded value; streams go one node at a time;
//! the rare forms (modules, zipmaps, Valkey hashes) are decoded and written through it.

use std::io::Read;

use super::blob::Elem;
use super::error::Result;
use super::json::{write_entry_json, write_field_json, write_field_value_json, write_item_json, write_member_json, write_score_json, write_stream_tail_json, write_value_json, STREAM_HEAD};
use super::object::{encoding_of, field_expiry, quicklist_container, read_object, string_encoding, QUICKLIST_PACKED, QUICKLIST_PLAIN};
use super::reader::ByteReader;
use super::string::Scratch;
use super::value::Stream;
use super::{intset, listpack, stream, ziplist, write_bytes_json, VALKEY_MIN_VERSION};

/// Writes the JSON of record values held in memory: batches of whole records cut from the
/// stream by a reader that walked and checksummed them, handed to another thread to write.
pub struct ValuesJson {
    r: ByteReader<std::io::Empty>,
    version: u16,
    scratch: Scratch,
}

impl ValuesJson {
    /// For the records of an RDB file of format `version`, in `bytes`.
    pub fn new(bytes: Vec<u8>, version: u16) -> Self {
        ValuesJson { r: ByteReader::in_memory(bytes), version, scratch: Scratch::default() }
    }

    /// The next batch's bytes in place of this one's, which come back for reuse.
    pub fn load(&mut self, bytes: Vec<u8>) -> Vec<u8> {
        self.scratch.trim();
        std::mem::replace(&mut self.r, ByteReader::in_memory(bytes)).into_bytes()
    }

    /// Appends the JSON of the value of type `ty` held in `bytes[start..end]`, which stands at
    /// `offset` in the file (for error messages, with `key`); the value must fill that span.
    pub fn write(&mut self, ty: u8, start: usize, end: usize, offset: u64, key: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.r.within(start, end, offset);
        let mut done = write_value(&mut self.r, ty, self.version, out, &mut self.scratch).map(|_| ());
        let left = (end - start) as u64 - (self.r.offset() - offset);
        if done.is_ok() && left != 0 {
            done = Err(self.r.corrupt(format!("{left} bytes of the value were not read")));
        }
        done.map_err(|e| e.for_key(key))
    }
}

/// Appends the JSON of the value of type `ty` read from `r`; returns its encoding name.
/// On an error `out` holds part of the value.
pub(crate) fn write_value<R: Read>(r: &mut ByteReader<R>, ty: u8, version: u16, out: &mut Vec<u8>, s: &mut Scratch) -> Result<&'static str> {
    let mut n = 0usize;
    match ty {
        _ if version >= VALKEY_MIN_VERSION && (22..=25).contains(&ty) => return decoded(r, ty, version, out),
        0 => {
            let (b, form) = r.read_string_ref(s)?;
            let enc = string_encoding(form, Some(b));
            write_bytes_json(out, b);
            return Ok(enc);
        }
        1 | 2 => {
            out.push(b'[');
            for i in 0..r.read_count()? as usize {
                write_item_json(out, i, Elem::Bytes(r.read_string_ref(s)?.0));
            }
        }
        3 | 5 => {
            out.push(b'[');
            for i in 0..r.read_count()? as usize {
                write_member_json(out, i, Elem::Bytes(r.read_string_ref(s)?.0));
                write_score_json(out, if ty == 3 { r.read_ascii_double()? } else { r.read_binary_double()? });
            }
        }
        4 => {
            out.push(b'[');
            for i in 0..r.read_count()? as usize {
                write_field_json(out, i, None, Elem::Bytes(r.read_string_ref(s)?.0));
                write_field_value_json(out, Elem::Bytes(r.read_string_ref(s)?.0));
            }
        }
        22 | 24 => {
            let min_expire = if ty == 24 { Some(r.read_u64_le()?) } else { None };
            out.push(b'[');
            for i in 0..r.read_count()? as usize {
                let expire = field_expiry(r.read_len()?, min_expire);
                write_field_json(out, i, expire, Elem::Bytes(r.read_string_ref(s)?.0));
                write_field_value_json(out, Elem::Bytes(r.read_string_ref(s)?.0));
            }
        }
        10 | 11 | 12 | 13 | 16 | 17 | 20 | 23 | 25 => {
            if ty == 25 {
                r.read_u64_le()?;
            }
            let at = r.offset();
            out.push(b'[');
            let done = { blob_json(ty, r.read_string_ref(s)?.0, out, &mut n) };
            done.map_err(|m| r.corrupt_at(at, format!("{}: {m}", encoding_of(ty))))?;
        }
        14 | 18 => {
            out.push(b'[');
            for _ in 0..r.read_count()? {
                let container = if ty == 18 { quicklist_container(r)? } else { QUICKLIST_PACKED };
                let at = r.offset();
                let node = r.read_string_ref(s)?.0;
                if container == QUICKLIST_PLAIN {
                    write_item_json(out, n, Elem::Bytes(node));
                    n += 1;
                    continue;
                }
                let done = each_elem(ty == 14, node, |e| {
                    write_item_json(out, n, e);
                    n += 1;
                    Ok(())
                });
                let what = if ty == 14 { "quicklist ziplist node" } else { "quicklist listpack node" };
                done.map_err(|m| r.corrupt_at(at, format!("{what}: {m}")))?;
            }
        }
        15 | 19 | 21 => {
            out.extend_from_slice(STREAM_HEAD);
            stream::each_entry(r, s, |id, fields| {
                write_entry_json(out, n, id, fields);
                n += 1;
            })?;
            let mut tail = Stream::default();
            stream::read_tail(r, ty, &mut tail)?;
            write_stream_tail_json(out, &tail);
            return Ok(encoding_of(ty));
        }
        _ => return decoded(r, ty, version, out),
    }
    out.push(b']');
    Ok(encoding_of(ty))
}

/// The forms written through a decoded value: modules, zipmaps, Valkey hashes, and
/// the types that are errors (with the parser's own message).
fn decoded<R: Read>(r: &mut ByteReader<R>, ty: u8, version: u16, out: &mut Vec<u8>) -> Result<&'static str> {
    let (value, enc) = read_object(r, ty, true, version)?;
    write_value_json(out, &value);
    Ok(enc)
}

/// The elements of a single-blob encoding (not zipmap) as JSON array items; `n` counts them.
fn blob_json<'a>(ty: u8, b: &'a [u8], out: &mut Vec<u8>, n: &mut usize) -> std::result::Result<(), String> {
    let zl = matches!(ty, 10 | 12 | 13);
    // Elements of the current pair or triple not yet written.
    let mut held: [Option<Elem<'a>>; 2] = [None, None];
    match ty {
        11 => intset::each(b, |v| {
            write_item_json(out, *n, Elem::Int(v));
            *n += 1;
        })?,
        10 | 20 => each_elem(zl, b, |e| {
            write_item_json(out, *n, e);
            *n += 1;
            Ok(())
        })?,
        12 | 17 => {
            each_elem(zl, b, |e| {
                if let Some(m) = held[0].take() {
                    write_member_json(out, *n / 2, m);
                    write_score_json(out, e.to_f64().ok_or("zset score is not a number")?);
                } else {
                    held[0] = Some(e);
                }
                *n += 1;
                Ok(())
            })?;
            odd_pair(*n)?;
        }
        13 | 16 => {
            each_elem(zl, b, |e| {
                if let Some(f) = held[0].take() {
                    write_field_json(out, *n / 2, None, f);
                    write_field_value_json(out, e);
                } else {
                    held[0] = Some(e);
                }
                *n += 1;
                Ok(())
            })?;
            odd_pair(*n)?;
        }
        _ => {
            each_elem(zl, b, |e| {
                match held {
                    [Some(f), Some(v)] => {
                        let ttl = e.to_i64().ok_or("field TTL is not an integer")?;
                        write_field_json(out, *n / 3, (ttl != 0).then_some(ttl as u64), f);
                        write_field_value_json(out, v);
                        held = [None, None];
                    }
                    [Some(_), None] => held[1] = Some(e),
                    _ => held[0] = Some(e),
                }
                *n += 1;
                Ok(())
            })?;
            if !n.is_multiple_of(3) {
                return Err(format!("{n} elements is not a multiple of 3 (field, value, ttl)"));
            }
        }
    }
    Ok(())
}

/// [`ziplist::each`] or [`listpack::each`].
fn each_elem<'a>(ziplist: bool, b: &'a [u8], f: impl FnMut(Elem<'a>) -> std::result::Result<(), String>) -> std::result::Result<(), String> {
    if ziplist {
        ziplist::each(b, f)
    } else {
        listpack::each(b, f)
    }
}

/// The error of a pair encoding with an odd number of elements.
fn odd_pair(n: usize) -> std::result::Result<(), String> {
    if n.is_multiple_of(2) {
        Ok(())
    } else {
        Err(format!("odd number of elements ({n}) in a pair encoding"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::encode::{len, string, ListpackBuilder};
    use super::super::{value_to_json, Item, RdbReader, ReadOptions, ValuesJson};

    /// Each record's value as JSON, one per line: written from the bytes, and from the decoded value.
    fn direct_and_decoded(rdb: &[u8]) -> (Result<Vec<u8>, String>, Result<Vec<u8>, String>) {
        let direct = (|| {
            // As `export` does it: a walk finds each value's bytes, then they are written.
            let mut r = RdbReader::with_options(rdb, ReadOptions { verify_checksum: false, ..ReadOptions::walk_only() })?;
            let mut values = ValuesJson::new(rdb.to_vec(), r.version());
            let mut out = Vec::new();
            while let Some(item) = r.next_item()? {
                if let Item::Record(rec) = item {
                    let end = r.offset() as usize;
                    let start = end + 1 - rec.serialized_len as usize;
                    values.write(rec.rdb_type, start, end, start as u64, &rec.key, &mut out)?;
                    out.extend_from_slice(format!(" {}\n", rec.encoding).as_bytes());
                }
            }
            Ok(out)
        })();
        let decoded = (|| {
            let opts = ReadOptions { verify_checksum: false, capture_raw: false, decode_values: true };
            let mut r = RdbReader::with_options(rdb, opts)?;
            let mut out = Vec::new();
            while let Some(item) = r.next_item()? {
                if let Item::Record(rec) = item {
                    // serde_json's text, which `write_value_json` must match.
                    serde_json::to_writer(&mut out, &value_to_json(&rec.value)).unwrap();
                    out.extend_from_slice(format!(" {}\n", rec.encoding).as_bytes());
                }
            }
            Ok(out)
        })();
        let text = |r: super::super::Result<Vec<u8>>| r.map_err(|e| e.to_string());
        (text(direct), text(decoded))
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/rdb/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    const FIXTURES: [&str; 5] =
        ["compact.rdb", "plain.rdb", "handmade-v3-old-encodings.rdb", "handmade-v12-modules-hfe.rdb", "handmade-valkey80-hash2.rdb"];

    /// A record of type `ty` with value bytes `value`.
    fn record(out: &mut Vec<u8>, ty: u8, key: &[u8], value: &[u8]) {
        out.push(ty);
        string(out, key);
        out.extend_from_slice(value);
    }

    fn listpack(items: &[&[u8]]) -> Vec<u8> {
        let mut b = ListpackBuilder::new();
        items.iter().for_each(|i| b.push(i));
        b.finish()
    }

    /// A ziplist of string entries (each shorter than 64 bytes).
    fn ziplist(items: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        let mut prev = 0u8;
        for i in items {
            body.extend_from_slice(&[prev, i.len() as u8]);
            body.extend_from_slice(i);
            prev = i.len() as u8 + 2;
        }
        let total = (10 + body.len() + 1) as u32;
        let mut z = total.to_le_bytes().to_vec();
        z.extend_from_slice(&0u32.to_le_bytes());
        z.extend_from_slice(&(items.len() as u16).to_le_bytes());
        z.extend_from_slice(&body);
        z.push(0xff);
        z
    }

    /// The encodings the fixtures lack: quicklists (v1 and v2, plain and packed nodes), listpack
    /// sets, zsets and hashes, binary scores that are not finite, LZF and integer strings, strings
    /// across the read buffer's end, every character class of the escaper.
    fn more_encodings() -> Vec<u8> {
        let odd: &[&[u8]] = &[b"plain", b"q\"uote\\", b"caf\xc3\xa9\n\xff\x00\x7f\t", b"\xe2\x80\xa8\xc2\x85", b"-12", b"70000", b"1e300", b""];
        let mut b = b"REDIS0011".to_vec();
        let s = |b: &[u8]| {
            let mut v = Vec::new();
            string(&mut v, b);
            v
        };
        let cat = |parts: &[&[u8]]| parts.concat();
        record(&mut b, 0, b"lzf", &[0xc3, 6, 6, 2, b'x', b'y', b'z', 0b0010_0000, 2]);
        record(&mut b, 0, b"int", &[0xc2, 0xfe, 0xff, 0xff, 0xff]);
        record(&mut b, 0, b"big", &s(&[b"\xc3\xa9\"".repeat(7000), vec![b'a'; 30_000]].concat()));
        record(&mut b, 14, b"ql1", &cat(&[&len_of(2), &s(&ziplist(odd)), &s(&ziplist(&[b"z"]))]));
        record(&mut b, 18, b"ql2", &cat(&[&len_of(3), &len_of(2), &s(&listpack(odd)), &len_of(1), &s(&[b'p'; 20_000]), &len_of(2), &s(&listpack(&[b"1", b"-5000"]))]));
        record(&mut b, 20, b"setlp", &s(&listpack(odd)));
        record(&mut b, 17, b"zsetlp", &s(&listpack(&[b"a", b"1", b"\xff", b"-0.125", b"c", b"inf", b"d", b"9007199254740993", b"e", b"-4096"])));
        record(&mut b, 16, b"hashlp", &s(&listpack(odd)));
        let mut zset2 = len_of(4);
        for (m, f) in [(&b"x"[..], f64::INFINITY), (b"y", f64::NEG_INFINITY), (b"z", f64::NAN), (b"w", 0.1)] {
            zset2.extend_from_slice(&s(m));
            zset2.extend_from_slice(&f.to_le_bytes());
        }
        record(&mut b, 5, b"zset2", &zset2);
        let mut set = len_of(odd.len() as u64);
        odd.iter().for_each(|i| set.extend_from_slice(&s(i)));
        record(&mut b, 2, b"set", &set);
        record(&mut b, 21, b"stream21", &stream(21));
        record(&mut b, 15, b"stream15", &stream(15));
        b.push(0xff);
        b.extend_from_slice(&[0; 8]);
        b
    }

    /// A stream value of type `ty` (15 or 21): a node of entries with the master's fields
    /// (one deleted) and one with its own, a node with one entry, two consumer groups.
    fn stream(ty: u8) -> Vec<u8> {
        let s = |b: &[u8]| {
            let mut v = Vec::new();
            string(&mut v, b);
            v
        };
        let raw = |ms: u64, seq: u64| [ms.to_be_bytes(), seq.to_be_bytes()].concat();
        let mut v = len_of(2);
        let node1: &[&[u8]] = &[b"2", b"1", b"2", b"f1", b"f2", b"0", b"2", b"0", b"0", b"v1", b"v\"2", b"6", b"3", b"1", b"0", b"x", b"y", b"6", b"0", b"2", b"5", b"3", b"a", b"1", b"b", b"-7", b"c\xff", b"", b"9"];
        v.extend_from_slice(&s(&raw(1000, 0)));
        v.extend_from_slice(&s(&listpack(node1)));
        v.extend_from_slice(&s(&raw(2000, 1)));
        v.extend_from_slice(&s(&listpack(&[b"1", b"0", b"1", b"only", b"0", b"2", b"0", b"0", b"42", b"5"])));
        for n in [3, 2000, 1] {
            len(&mut v, n);
        }
        if ty >= 19 {
            for n in [1000, 0, 0, 0, 4] {
                len(&mut v, n);
            }
        }
        v.extend_from_slice(&len_of(2));
        for (name, pending) in [(&b"g\"1"[..], true), (b"empty", false)] {
            v.extend_from_slice(&s(name));
            v.extend_from_slice(&[len_of(1000), len_of(0)].concat());
            if ty >= 19 {
                v.extend_from_slice(&len_of(3));
            }
            let ids: &[(u64, u64)] = if pending { &[(1000, 0), (1002, 5)] } else { &[] };
            v.extend_from_slice(&len_of(ids.len() as u64));
            for &(ms, seq) in ids {
                v.extend_from_slice(&[raw(ms, seq), 1_700_000_000_000u64.to_le_bytes().to_vec(), len_of(ms - 999)].concat());
            }
            v.extend_from_slice(&len_of(ids.len() as u64));
            for (k, &(ms, seq)) in ids.iter().enumerate() {
                v.extend_from_slice(&s(format!("c{k}\n").as_bytes()));
                v.extend_from_slice(&7u64.to_le_bytes());
                if ty >= 21 {
                    v.extend_from_slice(&8u64.to_le_bytes());
                }
                v.extend_from_slice(&len_of(1));
                v.extend_from_slice(&raw(ms, seq));
            }
        }
        v
    }

    fn len_of(n: u64) -> Vec<u8> {
        let mut v = Vec::new();
        len(&mut v, n);
        v
    }

    /// On every fixture and every encoding, the text written from the bytes is the text
    /// written from the decoded value, and so is the encoding name.
    #[test]
    fn direct_json_is_the_decoded_values_json() {
        let inputs = FIXTURES.iter().map(|f| (f.to_string(), fixture(f))).chain([("more".to_string(), more_encodings())]);
        for (name, rdb) in inputs {
            let (direct, decoded) = direct_and_decoded(&rdb);
            let decoded = decoded.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(decoded.len() > 20, "{name}");
            assert_eq!(String::from_utf8_lossy(&direct.unwrap()), String::from_utf8_lossy(&decoded), "{name}");
        }
    }

    /// Damaged files: where the decoded path reads a value the direct one writes the same text,
    /// and where it fails the direct one fails too.
    #[test]
    fn damaged_files_fail_alike() {
        let inputs = FIXTURES.iter().map(|f| fixture(f)).chain([more_encodings()]);
        for rdb in inputs {
            for at in 9..rdb.len().min(600) {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut bad = rdb.clone();
                    bad[at] ^= flip;
                    let (direct, decoded) = direct_and_decoded(&bad);
                    match decoded {
                        Ok(text) => assert_eq!(direct.as_deref(), Ok(&text[..]), "byte {at} ^ {flip:#x}"),
                        Err(e) => assert!(direct.is_err(), "byte {at} ^ {flip:#x}: decoded fails ({e}), direct does not"),
                    }
                }
            }
        }
    }
}
