//! Hand-made RDB fixtures for encodings current Redis no longer writes (zipmap, ziplists, intset,
//! linked lists, ASCII-double zsets) and for Redis 7.4 / module content; each byte is explained.

use crate::common;

use common::rdb::records;
use rdbvault::rdb::{
    crc64, dump_payload, Item, ModuleValue, RdbError, RdbReader, ReadOptions, Value,
    ValueKind,
};

/// RDB length encoding (6-bit, 14-bit, 32-bit or 64-bit big-endian forms).
fn len(n: u64) -> Vec<u8> {
    if n < 64 {
        vec![n as u8]
    } else if n < 16384 {
        vec![0x40 | (n >> 8) as u8, n as u8]
    } else if n <= u32::MAX as u64 {
        let mut v = vec![0x80];
        v.extend_from_slice(&(n as u32).to_be_bytes());
        v
    } else {
        let mut v = vec![0x81];
        v.extend_from_slice(&n.to_be_bytes());
        v
    }
}

/// RDB string: length prefix + bytes.
fn s(b: &[u8]) -> Vec<u8> {
    let mut v = len(b.len() as u64);
    v.extend_from_slice(b);
    v
}

/// Ziplist: zlbytes u32 LE, zltail u32 LE, zllen u16 LE, entries (prevlen, encoding, data), 0xFF.
/// Entries here are short strings (`00pppppp` encoding) or the 4-bit immediate ints 0..=12.
fn ziplist(entries: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut prev = 0u8;
    let mut tail = 10u32;
    for e in entries {
        tail = 10 + body.len() as u32;
        let mut entry = vec![prev];
        match std::str::from_utf8(e)
            .ok()
            .and_then(|t| t.parse::<u8>().ok())
        {
            Some(n) if n <= 12 && e.len() <= 2 => entry.push(0xF1 + n), // immediate int
            _ => {
                entry.push(e.len() as u8); // 6-bit string length
                entry.extend_from_slice(e);
            }
        }
        prev = entry.len() as u8;
        body.extend_from_slice(&entry);
    }
    let mut z = Vec::new();
    z.extend_from_slice(&((10 + body.len() + 1) as u32).to_le_bytes());
    z.extend_from_slice(&tail.to_le_bytes());
    z.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    z.extend_from_slice(&body);
    z.push(0xFF);
    z
}

/// Listpack element: a short string (`10pppppp`) or an int64 (`0xF4` + 8 bytes LE).
enum Lp<'a> {
    Str(&'a [u8]),
    Int(i64),
}

/// Listpack: total u32 LE, count u16 LE, entries (encoding+data, then 1-byte back-length), 0xFF.
fn listpack(entries: &[Lp]) -> Vec<u8> {
    let mut body = Vec::new();
    for e in entries {
        let enc = match e {
            Lp::Str(b) => {
                let mut v = vec![0x80 | b.len() as u8];
                v.extend_from_slice(b);
                v
            }
            Lp::Int(i) => {
                let mut v = vec![0xF4];
                v.extend_from_slice(&i.to_le_bytes());
                v
            }
        };
        body.extend_from_slice(&enc);
        body.push(enc.len() as u8); // back-length (< 128 fits one byte)
    }
    let mut lp = Vec::new();
    lp.extend_from_slice(&((6 + body.len() + 1) as u32).to_le_bytes());
    lp.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    lp.extend_from_slice(&body);
    lp.push(0xFF);
    lp
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn parse(bytes: &[u8]) -> Result<Vec<Item>, RdbError> {
    let mut r = RdbReader::new(bytes)?;
    let mut out = Vec::new();
    while let Some(i) = r.next_item()? {
        out.push(i);
    }
    assert_eq!(r.offset(), bytes.len() as u64);
    Ok(out)
}

fn bv(v: &[&str]) -> Vec<Vec<u8>> {
    v.iter().map(|x| x.as_bytes().to_vec()).collect()
}

/// Redis 2.4-style file (RDB version 3, no checksum) with the old compact encodings.
fn old_encodings_rdb() -> Vec<u8> {
    // Zipmap: zmlen=2, then <len>"name"<len><free=0>"ann", <len>"age"<len><free=1>"3"<pad>, 0xFF.
    let zipmap = cat(&[
        &[2],
        &[4],
        b"name",
        &[3, 0],
        b"ann",
        &[3],
        b"age",
        &[1, 1],
        b"3",
        &[0],
        &[0xFF],
    ]);
    // Intset: encoding=2 (int16), length=3, members 1, 2, 300 little-endian.
    let intset = cat(&[
        &2u32.to_le_bytes(),
        &3u32.to_le_bytes(),
        &1i16.to_le_bytes(),
        &2i16.to_le_bytes(),
        &300i16.to_le_bytes(),
    ]);
    cat(&[
        b"REDIS0003",  // magic + version 3
        &[0xFE, 0x00], // SELECTDB 0
        &[0xFD],
        &2_000_000_000u32.to_le_bytes(), // EXPIRETIME (seconds) for the next key
        &[0x09],
        &s(b"zm"),
        &s(&zipmap), // type 9: hash as zipmap
        &[0x0A],
        &s(b"zl"),
        &s(&ziplist(&[b"a", b"7", b"hello"])), // type 10: list as ziplist
        &[0x0B],
        &s(b"is"),
        &s(&intset), // type 11: set as intset
        &[0x0C],
        &s(b"zz"),
        &s(&ziplist(&[b"a", b"1.5", b"b", b"2"])), // type 12: zset ziplist (member, score)
        &[0x0D],
        &s(b"zh"),
        &s(&ziplist(&[b"f", b"v"])), // type 13: hash ziplist (field, value)
        &[0x01],
        &s(b"ll"),
        &[2],
        &s(b"x"),
        &[0xC0, 5], // type 1: linked list ["x", int8 5]
        &[0x03],
        &s(b"z3"),
        &[1],
        &s(b"m"),
        &[3],
        b"2.5", // type 3: zset with ASCII double score
        &[0x02],
        &s(b"st"),
        &[1],
        &[0xC1, 0x39, 0x30], // type 2: set with one int16 string 12345
        &[0xFF],             // EOF (no checksum before version 5)
    ])
}

#[test]
fn old_encodings_decode() {
    let items = parse(&old_encodings_rdb()).unwrap();
    let r = records(&items);
    assert_eq!(r.len(), 8);
    let hash = |v: &[(&str, &str)]| {
        Value::Hash(
            v.iter()
                .map(|(f, x)| (f.as_bytes().to_vec(), x.as_bytes().to_vec(), None))
                .collect(),
        )
    };
    assert_eq!((r[0].kind, r[0].encoding), (ValueKind::Hash, "zipmap"));
    assert_eq!(r[0].value, hash(&[("name", "ann"), ("age", "3")]));
    assert_eq!(r[0].expire_ms, Some(2_000_000_000_000));
    assert_eq!(r[1].value, Value::List(bv(&["a", "7", "hello"])));
    assert_eq!(r[1].expire_ms, None);
    assert_eq!(
        (r[2].encoding, &r[2].value),
        ("intset", &Value::Set(bv(&["1", "2", "300"])))
    );
    assert_eq!(
        r[3].value,
        Value::SortedSet(vec![(b"a".to_vec(), 1.5), (b"b".to_vec(), 2.0)])
    );
    assert_eq!(
        (r[4].encoding, &r[4].value),
        ("ziplist", &hash(&[("f", "v")]))
    );
    assert_eq!(
        (r[5].encoding, &r[5].value),
        ("linkedlist", &Value::List(bv(&["x", "5"])))
    );
    assert_eq!(
        (r[6].encoding, &r[6].value),
        ("skiplist", &Value::SortedSet(vec![(b"m".to_vec(), 2.5)]))
    );
    assert_eq!(r[7].value, Value::Set(bv(&["12345"])));
    // Raw bytes are exactly type byte + value bytes, and the DUMP payload's CRC covers them.
    assert_eq!(r[7].raw, vec![0x02, 1, 0xC1, 0x39, 0x30]);
    let p = dump_payload(r[7].raw[0], &r[7].raw[1..], 3);
    assert_eq!(&p[5..7], &[3, 0]);
    assert_eq!(p[7..].to_vec(), crc64(0, &p[..7]).to_le_bytes().to_vec());
}

#[test]
fn corrupt_ziplist_names_offset_and_key() {
    let mut bytes = old_encodings_rdb();
    // The list ziplist starts after "zl"'s key; make its first entry claim 9 bytes.
    let at = bytes.windows(3).position(|w| w == b"\x02zl").unwrap() + 3;
    // at: string length byte of the blob; blob header is 10 bytes; entry = prevlen, enc.
    bytes[at + 1 + 10 + 1] = 9;
    let err = parse(&bytes).unwrap_err();
    assert_eq!(err.offset(), Some(at as u64));
    assert_eq!(err.key(), Some(&b"zl"[..]));
    assert!(err.to_string().contains("ziplist"), "{err}");
}

/// Version-6 file with one string key and a real checksum.
fn checksummed(crc: Option<u64>) -> Vec<u8> {
    let mut b = cat(&[
        b"REDIS0006",
        &[0xFE, 0],
        &[0x00],
        &s(b"k"),
        &s(b"v"),
        &[0xFF],
    ]);
    let c = crc.unwrap_or_else(|| crc64(0, &b));
    b.extend_from_slice(&c.to_le_bytes());
    b
}

#[test]
fn checksum_handling() {
    assert_eq!(
        records(&parse(&checksummed(None)).unwrap())[0].value,
        Value::String(b"v".to_vec())
    );
    // A zero checksum means "not computed" and is accepted.
    assert!(parse(&checksummed(Some(0))).is_ok());
    let bad = checksummed(Some(12345));
    match parse(&bad) {
        Err(RdbError::Checksum { offset, stored, .. }) => {
            assert_eq!((offset, stored), (bad.len() as u64 - 8, 12345))
        }
        other => panic!("expected checksum error, got {other:?}"),
    }
    let mut r = RdbReader::with_options(
        &bad[..],
        ReadOptions {
            verify_checksum: false,
            ..Default::default()
        },
    )
    .unwrap();
    while r.next_item().unwrap().is_some() {}
    assert_eq!(r.stored_checksum(), Some(12345));
}

/// Encodes a module type id the way Redis does: 9 chars of 6 bits each, then a 10-bit encver.
fn module_id(name: &[u8; 9], encver: u64) -> u64 {
    const CS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let id = name.iter().fold(0u64, |id, c| {
        (id << 6) | CS.iter().position(|x| x == c).unwrap() as u64
    });
    (id << 10) | encver
}

/// Redis 7.4-style (RDB 12) file: slot info, module aux, module value, hash field TTL types.
fn v12_rdb() -> Vec<u8> {
    let min = 1_700_000_000_000u64;
    let mut b = cat(&[
        b"REDIS0012",
        &[0xFA],
        &s(b"redis-ver"),
        &s(b"7.4.0"), // AUX
        &[0xF4],
        &len(7),
        &len(3),
        &len(1), // SLOT_INFO slot 7, 3 keys, 1 expire
        &[0xF7],
        &len(module_id(b"testmod-A", 2)), // MODULE_AUX, module id
        &len(2),
        &len(2), // when_opcode = UINT, when = 2 (after keyspace)
        &len(2),
        &len(5),
        &len(5),
        &s(b"abc"),
        &len(0), // UINT 5, STRING "abc", EOF
        &[0xFE, 0],
        &[0xFB],
        &len(4),
        &len(1), // SELECTDB 0, RESIZEDB 4/1
        &[0xF8],
        &len(10), // IDLE 10 s for the next key
        &[0x07],
        &s(b"mod"),
        &len(module_id(b"ReJSON-RL", 3)), // type 7: module value
        &len(1),
        &len(3),
        &len(4),
        &1.5f64.to_le_bytes(),
        &len(3),
        &1f32.to_le_bytes(),
        &len(0), // SINT 3, DOUBLE, FLOAT, EOF: 17 bytes
        &[0xF9],
        &[5], // FREQ 5 for the next key
        &[24],
        &s(b"hm"),
        &min.to_le_bytes(),
        &len(2), // type 24: hash metadata, minExpire, 2 fields
        &len(0),
        &s(b"a"),
        &s(b"1"), //   ttl 0 = none
        &len(101),
        &s(b"b"),
        &s(b"2"), //   ttl 101 => minExpire + 100
        &[25],
        &s(b"hl"),
        &min.to_le_bytes(), // type 25: listpack-ex with minExpire
        &s(&listpack(&[
            Lp::Str(b"f"),
            Lp::Str(b"v"),
            Lp::Int(0),
            Lp::Str(b"g"),
            Lp::Str(b"w"),
            Lp::Int(min as i64 + 500),
        ])),
        &[22],
        &s(b"hp"),
        &len(1),
        &len(min + 999),
        &s(b"x"),
        &s(b"y"), // type 22: pre-GA, absolute TTL
        &[23],
        &s(b"hq"),
        &s(&listpack(&[Lp::Str(b"k"), Lp::Str(b"v"), Lp::Int(0)])), // type 23
        &[0xF5],
        &s(b"#!lua name=lib\n"), // FUNCTION2
        &[0xFF],
    ]);
    let c = crc64(0, &b);
    b.extend_from_slice(&c.to_le_bytes());
    b
}

#[test]
fn v12_content_decodes() {
    let min = 1_700_000_000_000u64;
    let items = parse(&v12_rdb()).unwrap();
    assert!(items.contains(&Item::SlotInfo {
        slot: 7,
        slot_size: 3,
        expires_slot_size: 1
    }));
    assert!(items.contains(&Item::ModuleAux {
        module: "testmod-A".into(),
        encver: 2,
        when: 2,
        skipped_bytes: 8
    }));
    assert!(items.contains(&Item::ResizeDb {
        db_size: 4,
        expires_size: 1
    }));
    assert!(items.contains(&Item::Function(b"#!lua name=lib\n".to_vec())));
    let r = records(&items);
    assert_eq!(r.len(), 5);
    assert_eq!(
        r[0].value,
        Value::Module(ModuleValue {
            name: "ReJSON-RL".into(),
            encver: 3,
            skipped_bytes: 17
        })
    );
    assert_eq!(
        (r[0].kind, r[0].idle, r[0].freq),
        (ValueKind::Module, Some(10), None)
    );
    let h = |v: &[(&str, &str, Option<u64>)]| {
        Value::Hash(
            v.iter()
                .map(|(f, x, t)| (f.as_bytes().to_vec(), x.as_bytes().to_vec(), *t))
                .collect(),
        )
    };
    assert_eq!(
        r[1].value,
        h(&[("a", "1", None), ("b", "2", Some(min + 100))])
    );
    assert_eq!((r[1].freq, r[1].encoding), (Some(5), "hashtable"));
    assert_eq!(
        r[2].value,
        h(&[("f", "v", None), ("g", "w", Some(min + 500))])
    );
    assert_eq!(r[2].encoding, "listpackex");
    assert_eq!(r[3].value, h(&[("x", "y", Some(min + 999))]));
    assert_eq!(r[4].value, h(&[("k", "v", None)]));
    // The JSON rendering carries field TTLs.
    let j = rdbvault::rdb::record_to_json(&r[1]);
    assert_eq!(j["value"][1]["expire_ms"], min + 100);
}

#[test]
fn unsupported_content_is_reported() {
    let unknown = cat(&[b"REDIS0012", &[26], &s(b"newtype"), &[0]]);
    let err = parse(&unknown).unwrap_err();
    assert!(
        err.to_string().contains("unsupported value type 26"),
        "{err}"
    );
    assert_eq!(err.offset(), Some(9));
    let old_module = cat(&[b"REDIS0009", &[6], &s(b"m"), &len(1)]);
    assert!(matches!(
        parse(&old_module),
        Err(RdbError::Unsupported { .. })
    ));
    let pre_ga_fn = cat(&[b"REDIS0010", &[0xF6], &s(b"x")]);
    assert!(parse(&pre_ga_fn)
        .unwrap_err()
        .to_string()
        .contains("pre-GA function"));
}

/// The committed fuzz seeds are exactly these hand-made files; set
/// RDBVAULT_REGENERATE_FIXTURES=1 to rewrite them after a change.
#[test]
fn handmade_seeds_match_the_builders() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rdb");
    for (name, bytes) in [("handmade-v3-old-encodings.rdb", old_encodings_rdb()), ("handmade-v12-modules-hfe.rdb", v12_rdb())] {
        if std::env::var_os("RDBVAULT_REGENERATE_FIXTURES").is_some() {
            std::fs::write(dir.join(name), &bytes).unwrap();
        }
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), bytes, "{name} differs from its builder");
    }
}
