//! The streaming record scanner (rdb::records) against the full parser: same keys, dbs,
//! types, expiries and record extents, on every fixture, on generated RDBs, in any pieces;
//! damaged input gives errors, never panics.

use std::path::Path;

use proptest::prelude::*;
use rdbvault::rdb::records::{Event, Scanner};
use rdbvault::rdb::{Item, RdbReader, ReadOptions};

/// (offset, end, db, key, type, expiry) of every record.
type Rec = (u64, u64, u64, Vec<u8>, u8, Option<i64>);

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rdb");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "rdb"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).expect("read fixture")))
        .collect();
    out.sort();
    assert!(out.len() >= 5, "fixtures missing");
    out
}

/// Records as the parser sees them (walking values, no checksum check).
fn parsed(data: &[u8]) -> Result<Vec<Rec>, String> {
    let opts = ReadOptions { verify_checksum: false, ..ReadOptions::walk_only() };
    let mut r = RdbReader::with_options(data, opts).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(item) = r.next_item().map_err(|e| e.to_string())? {
        if let Item::Record(rec) = item {
            out.push((rec.offset, r.offset(), rec.db, rec.key, rec.rdb_type, rec.expire_ms.map(|e| e as i64)));
        }
    }
    Ok(out)
}

/// Records as the scanner sees them when fed `pieces`-byte pieces; checks that items tile the file.
fn scanned(data: &[u8], pieces: usize) -> Result<Vec<Rec>, String> {
    let mut s = Scanner::new();
    let mut out = Vec::new();
    let mut at = 0u64;
    let mut gap = None;
    for p in data.chunks(pieces.max(1)) {
        s.push(p, |e| {
            let (offset, len) = match e {
                Event::Record(r) => {
                    out.push((r.offset, r.offset + r.len, r.db, r.key.to_vec(), r.rdb_type, r.expire_ms));
                    (r.offset, r.len)
                }
                Event::Boundary { offset, len, .. } => (offset, len),
            };
            if offset != at {
                gap.get_or_insert(format!("item at {offset}, previous ended at {at}"));
            }
            at = offset + len;
        })
        .map_err(|e| e.to_string())?;
    }
    s.finish().map_err(|e| e.to_string())?;
    if let Some(g) = gap {
        return Err(g);
    }
    assert_eq!(at + s.trailing(), data.len() as u64, "items and trailing bytes cover the file");
    Ok(out)
}

#[test]
fn fixtures_scan_like_the_parser() {
    for (name, data) in fixtures() {
        let want = parsed(&data).unwrap();
        assert!(!want.is_empty(), "{name}");
        for pieces in [usize::MAX, 1, 3, 64, 1000] {
            assert_eq!(scanned(&data, pieces).unwrap(), want, "{name} in pieces of {pieces}");
        }
    }
}

/// Strings the walk decodes although it skips values (AUX fields, type-3 zset scores) and an
/// LZF length no compressor gives: the scan fails on them too (each found by the `rdb` fuzz
/// target, which compares the two).
#[test]
fn what_the_walk_refuses_the_scan_refuses() {
    let rdb = |body: &[u8]| {
        let mut b = b"REDIS0009".to_vec();
        b.extend_from_slice(body);
        b.push(0xFF);
        b.extend_from_slice(&[0; 8]);
        b
    };
    let cases: [(&str, Vec<u8>); 4] = [
        // AUX "a" = LZF of one literal byte that claims 5 bytes.
        ("LZF aux value", rdb(&[0xFA, 1, b'a', 0xC3, 2, 5, 0x00, b'x'])),
        // zset (type 3) "z" with member "m" scored "abc".
        ("ASCII score", rdb(&[3, 1, b'z', 1, 1, b'm', 3, b'a', b'b', b'c'])),
        // string "k" = two LZF bytes claiming 65536.
        ("LZF ratio", rdb(&[0, 1, b'k', 0xC3, 2, 0x80, 0, 1, 0, 0, 0x00, b'x'])),
        // the same AUX, valid: both read it
        ("valid", rdb(&[0xFA, 1, b'a', 0xC3, 2, 1, 0x00, b'x', 3, 1, b'z', 1, 1, b'm', 3, b'1', b'.', b'5'])),
    ];
    for (what, data) in cases {
        let walk = parsed(&data);
        for pieces in [usize::MAX, 1, 5] {
            let scan = scanned(&data, pieces);
            assert_eq!(scan.is_ok(), walk.is_ok(), "{what} in pieces of {pieces}: scan {scan:?}, walk {walk:?}");
        }
        assert_eq!(walk.is_ok(), what == "valid", "{what}: {walk:?}");
    }
}

/// An RDB string: plain with a 6/14/32-bit length, or (`lzf`) LZF of literal runs.
fn string(out: &mut Vec<u8>, s: &[u8], lzf: bool) {
    if lzf && !s.is_empty() {
        let mut c = Vec::new();
        for run in s.chunks(32) {
            c.push(run.len() as u8 - 1);
            c.extend_from_slice(run);
        }
        out.push(0xC3);
        len(out, c.len() as u64);
        len(out, s.len() as u64);
        out.extend_from_slice(&c);
        return;
    }
    len(out, s.len() as u64);
    out.extend_from_slice(s);
}

fn len(out: &mut Vec<u8>, n: u64) {
    match n {
        0..64 => out.push(n as u8),
        64..16_384 => out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]),
        _ => {
            out.push(0x80);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
}

/// One generated key: db, key, expiry, lzf key, value shape (0 string, 1 set, 2 zset2, 3 hash, 4 int key), size.
type Gen = (u8, Vec<u8>, Option<u64>, bool, u8, usize);

/// An RDB version 10 file with the generated keys (sorted by db), an aux field and a checksum of 0.
fn build(keys: &[Gen]) -> Vec<u8> {
    let mut f = b"REDIS0010".to_vec();
    f.push(0xFA);
    string(&mut f, b"redis-ver", false);
    string(&mut f, b"7.0.0", false);
    let mut keys = keys.to_vec();
    keys.sort_by_key(|k| k.0);
    let mut db = None;
    for (i, (d, key, exp, lzf, shape, size)) in keys.iter().enumerate() {
        if db != Some(*d) {
            f.extend_from_slice(&[0xFE, *d, 0xFB, 1, 0]);
            db = Some(*d);
        }
        if let Some(e) = exp {
            f.push(0xFC);
            f.extend_from_slice(&e.to_le_bytes());
        }
        if i % 3 == 0 {
            f.extend_from_slice(&[0xF9, 5]);
        }
        let value: Vec<u8> = (0..*size).map(|j| (j * 31 + i) as u8).collect();
        let ty = [0u8, 2, 5, 4, 0][*shape as usize];
        f.push(ty);
        if *shape == 4 {
            f.extend_from_slice(&[0xC1, i as u8, 1]);
        } else {
            string(&mut f, key, *lzf);
        }
        match shape {
            0 | 4 => string(&mut f, &value, *lzf),
            1 => {
                // Many members, so that pieces cut a loop of elements anywhere.
                let extra = size % 50;
                len(&mut f, 2 + extra as u64);
                string(&mut f, &value, false);
                string(&mut f, b"m", false);
                for j in 0..extra {
                    string(&mut f, format!("member:{j}").as_bytes(), j % 7 == 0);
                }
            }
            2 => {
                len(&mut f, 1);
                string(&mut f, &value, *lzf);
                f.extend_from_slice(&1.5f64.to_le_bytes());
            }
            _ => {
                len(&mut f, 1);
                string(&mut f, b"field", false);
                string(&mut f, &value, false);
            }
        }
    }
    f.push(0xFF);
    f.extend_from_slice(&[0; 8]);
    f
}

fn gen_key() -> impl Strategy<Value = Gen> {
    (0u8..3, proptest::collection::vec(any::<u8>(), 0..80), proptest::option::of(any::<u64>()), any::<bool>(), 0u8..5, 0usize..20_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn generated_rdbs_scan_like_the_parser(keys in proptest::collection::vec(gen_key(), 1..40), pieces in 1usize..5000) {
        let data = build(&keys);
        let want = parsed(&data).unwrap();
        prop_assert_eq!(want.len(), keys.len());
        prop_assert_eq!(scanned(&data, pieces).unwrap(), want);
    }

    /// Damaged fixtures: the scanner never panics, whatever the parser reads the scanner reads
    /// alike, and what the parser refuses the scanner refuses.
    #[test]
    fn damaged_rdbs_fail_cleanly(
        seed in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        pieces in 1usize..300,
    ) {
        let all = fixtures();
        let mut b = all[seed.index(all.len())].1.clone();
        for (pos, val) in flips {
            let i = pos.index(b.len());
            b[i] = val;
        }
        if let Some(c) = cut {
            b.truncate(c.index(b.len() + 1));
        }
        // A backup takes its facts from the scan: it must refuse exactly what the walk refuses.
        match (scanned(&b, pieces), parsed(&b)) {
            (scan, Ok(want)) => prop_assert_eq!(scan, Ok(want)),
            (scan, Err(e)) => prop_assert!(scan.is_err(), "the walk fails ({}) but the scan reads it", e),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(version in 0u16..14, body in proptest::collection::vec(any::<u8>(), 0..600), pieces in 1usize..50) {
        let mut bytes = format!("REDIS{version:04}").into_bytes();
        bytes.extend_from_slice(&body);
        let _ = scanned(&bytes, pieces);
        let _ = scanned(&body, pieces);
    }
}
