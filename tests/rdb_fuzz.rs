//! Property tests: arbitrary and mutated RDB bytes must yield Ok or Err, never a panic or hang.

use std::path::Path;

use proptest::prelude::*;
use rdbvault::rdb::{summarize, RdbReader, ReadOptions};

/// Seed corpus: small real and hand-made RDB files in tests/fixtures/rdb.
fn seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rdb");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "rdb"))
        .collect();
    names.sort();
    let out: Vec<Vec<u8>> = names
        .iter()
        .map(|p| std::fs::read(p).expect("read seed"))
        .collect();
    assert!(out.len() >= 2, "seed corpus missing");
    out
}

/// Runs the parser to completion in every mode; the result itself does not matter.
fn exercise(bytes: &[u8]) {
    let modes = [
        ReadOptions::default(),
        ReadOptions::raw_only(),
        ReadOptions {
            verify_checksum: false,
            ..ReadOptions::default()
        },
    ];
    for opts in modes {
        if let Ok(r) = RdbReader::with_options(bytes, opts) {
            let mut n = 0usize;
            for item in r {
                n += 1;
                assert!(n <= bytes.len(), "more items than bytes");
                if let Ok(rdbvault::rdb::Item::Record(rec)) = item {
                    let _ = rdbvault::rdb::record_to_json(&rec);
                    let _ = rdbvault::rdb::approx_memory(&rec);
                }
            }
        }
    }
    let _ = summarize(bytes);
}

#[test]
fn seeds_parse_cleanly() {
    for s in seeds() {
        let mut r = RdbReader::new(&s[..]).unwrap();
        while r.next_item().unwrap().is_some() {}
        assert!(summarize(&s[..]).unwrap().keys > 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(version in 0u16..14, body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut bytes = format!("REDIS{version:04}").into_bytes();
        bytes.extend_from_slice(&body);
        exercise(&bytes);
        exercise(&body);
    }

    #[test]
    fn mutated_real_rdbs_never_panic(
        seed in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        insert in proptest::option::of((any::<prop::sample::Index>(), proptest::collection::vec(any::<u8>(), 1..9))),
    ) {
        let all = seeds();
        let mut b = all[seed.index(all.len())].clone();
        for (pos, val) in flips {
            let i = pos.index(b.len());
            b[i] = val;
        }
        if let Some((pos, extra)) = insert {
            let i = pos.index(b.len());
            b.splice(i..i, extra);
        }
        if let Some(c) = cut {
            b.truncate(c.index(b.len() + 1));
        }
        exercise(&b);
    }
}
