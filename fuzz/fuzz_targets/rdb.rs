//! RDB bytes from a file, a server or a repository: every item, its JSON and RESTORE payload.
#![no_main]

extern crate rdbvault_fuzz;

use libfuzzer_sys::fuzz_target;
use rdbvault::rdb::records::Scanner;
use rdbvault::rdb::{approx_memory, dump_payload, record_to_json, summarize, Item, RdbReader, ReadOptions};

fuzz_target!(|data: &[u8]| {
    let no_crc = ReadOptions { verify_checksum: false, ..ReadOptions::default() };
    for opts in [no_crc, ReadOptions::raw_only()] {
        let Ok(mut r) = RdbReader::with_options(data, opts) else { return };
        let version = r.version();
        let mut items = 0usize;
        while let Ok(Some(item)) = r.next_item() {
            items += 1;
            assert!(items <= data.len(), "more items than input bytes");
            if let Item::Record(rec) = item {
                let _ = record_to_json(&rec);
                let _ = approx_memory(&rec);
                if let Some(p) = rec.dump_payload(version) {
                    assert_eq!(p.len(), rec.raw.len() + 10);
                }
                let _ = dump_payload(rec.rdb_type, &rec.raw, version);
            }
        }
    }
    let _ = summarize(data);
    // The record scanner: the same items whether fed whole or in pieces.
    let scan = |piece: usize| {
        let mut s = Scanner::new();
        let mut seen = Vec::new();
        for p in data.chunks(piece) {
            let pushed = s.push(p, |e| seen.push(format!("{e:?}")));
            if pushed.is_err() {
                return (seen, false);
            }
        }
        (seen, s.finish().is_ok())
    };
    let whole = scan(data.len().max(1));
    assert_eq!(scan(7), whole, "pieces change the scan");
    // A backup takes an RDB's facts from the scan: it must accept exactly what a walk accepts.
    let walk = ReadOptions { verify_checksum: false, ..ReadOptions::walk_only() };
    let walked = RdbReader::with_options(data, walk).is_ok_and(|mut r| loop {
        match r.next_item() {
            Ok(Some(_)) => {}
            Ok(None) => break true,
            Err(_) => break false,
        }
    });
    assert_eq!(whole.1, walked, "the scan and the walk disagree on whether this is a whole RDB");
});
