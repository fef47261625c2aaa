//! Targeted index lookups: a command that reads one exact key searches the index files for
//! the few blobs the key index leads to instead of loading the whole index. The bytes are
//! those a full read gives; a tampered index file is refused on that path too (the command
//! falls back to the whole load, which reads pack headers instead and warns), and index
//! files a newer one supersedes are left out as the whole load leaves them out.

use crate::common;

use std::sync::Arc;

use rdbvault::crypto::Id;
use rdbvault::engine::restore::{load_index, Blobs, Lookup};
use rdbvault::format::index::{Index, IndexFile};
use rdbvault::format::pack::{BlobEntry, BlobType};
use rdbvault::format::snapshot::Snapshot;
use rdbvault::redis::keyindex::value;
use rdbvault::store::{FileKind, LocalBackend, Repository};

use common::handmade::Rdb;
use common::vault::{Vault, PASSWORD};

/// 24 000 keys in two dbs, scrambled, values of varied sizes: several chunk lists and
/// key-index pages.
fn dataset() -> Vec<u8> {
    let mut rdb = Rdb::new("7.0.15");
    for db in [0u64, 3] {
        for i in 0..12_000u64 {
            let n = i * 7919 % 12_000;
            let value = vec![b'a' + (n % 26) as u8; 30 + (n * 37 % 300) as usize];
            rdb = match n % 2 {
                0 => rdb.string(db, format!("user:{n}").as_bytes(), &value, None),
                _ => rdb.hash(db, format!("order:{n}").as_bytes(), &[(b"total", &value[..5]), (b"note", &value)]),
            };
        }
    }
    rdb.bytes()
}

/// The dataset backed up with a key index and without (read by streaming the whole RDB).
fn backed() -> (Vault, String, String) {
    let v = Vault::init();
    let file = v.dir.path().join("dump.rdb");
    std::fs::write(&file, dataset()).expect("write rdb");
    let (indexed, _) = v.backup(&file, &[]);
    let (plain, _) = v.backup(&file, &["--no-key-index"]);
    (v, indexed, plain)
}

fn open(v: &Vault) -> Repository {
    Repository::open(Arc::new(LocalBackend::new(&v.repo)), PASSWORD.as_bytes()).expect("open")
}

fn top_of(snap: &Snapshot) -> Id {
    Id::from_hex(&snap.key_index.as_ref().expect("a key index").top).expect("top id")
}

/// From the first SELECTDB to the checksum of an RDB `restore --keys --target` wrote (the
/// aux fields name the time of writing).
fn records_of(v: &Vault, snap: &str, key: &str, db: &str) -> Vec<u8> {
    let path = v.dir.path().join(format!("{snap}-{key}.rdb"));
    v.ok(&["restore", snap, "--keys", key, "--db", db, "--target", path.to_str().expect("utf-8")]);
    let bytes = std::fs::read(&path).expect("restored file");
    common::rdb::assert_valid_rdb(&bytes);
    // Past the header and the aux fields (their values, such as the time, may hold 0xFE).
    let mut at = 9;
    while bytes[at] == 0xFA {
        at = skip_string(&bytes, skip_string(&bytes, at + 1));
    }
    assert_eq!(bytes[at], 0xFE, "a SELECTDB after the aux fields");
    bytes[at..bytes.len() - 8].to_vec()
}

/// The offset after the RDB string (or integer) encoded at `at`.
fn skip_string(b: &[u8], at: usize) -> usize {
    let len = |at: usize| -> (usize, usize) {
        match b[at] >> 6 {
            0 => ((b[at] & 0x3F) as usize, at + 1),
            1 => (((b[at] & 0x3F) as usize) << 8 | b[at + 1] as usize, at + 2),
            _ if b[at] == 0x80 => (u32::from_be_bytes(b[at + 1..at + 5].try_into().unwrap()) as usize, at + 5),
            _ => panic!("length encoding {:#x}", b[at]),
        }
    };
    match b[at] {
        0xC0 => at + 2,
        0xC1 => at + 3,
        0xC2 => at + 5,
        0xC3 => {
            let (clen, next) = len(at + 1);
            let (_, next) = len(next);
            next + clen
        }
        _ => {
            let (n, next) = len(at);
            next + n
        }
    }
}

#[test]
fn a_targeted_lookup_gives_the_bytes_of_a_full_read_and_holds_few_entries() {
    let (v, indexed, plain) = backed();
    for (key, db) in [("user:4784", "0"), ("order:11", "3"), ("order:11999", "0"), ("user:0", "3")] {
        let a = records_of(&v, &indexed, key, db);
        assert_eq!(a, records_of(&v, &plain, key, db), "{key} in db {db}");
        assert_eq!(common::rdb::count(&a, key.as_bytes()), 1, "{key}");
        let args = ["--json", "inspect", "SNAP", "--keys", key, "--db", db];
        let run = |snap: &str| v.ok(&args.map(|a| if a == "SNAP" { snap } else { a }));
        assert_eq!(run(&indexed).lines().count(), 1);
        let ttl_free = |s: String| s.split(",\"ttl_ms\"").next().map(str::to_string);
        assert_eq!(ttl_free(run(&indexed)), ttl_free(run(&plain)));
    }

    // The library calls: the same records as through the whole index, from a lookup that
    // holds a small part of it (chunk lists, dictionaries, the blobs of one key).
    let repo = open(&v);
    let find = |id: &str| Snapshot::find(&repo, id).expect("snapshot").0 .1;
    let snap = find(&indexed);
    let lookup = Arc::new(Lookup::new(&repo, &[top_of(&snap)]).expect("lookup"));
    let (index, _) = load_index(&repo).expect("index");
    // The first search keeps the top table, chunk lists and dictionaries, nothing else.
    let lists = index.iter().filter(|(_, e)| e.kind != BlobType::Data).count();
    assert_eq!(lookup.len(), lists + 1);
    let few = Blobs::few(&repo, lookup.clone()).expect("blobs");
    let all = Blobs::new(&repo, &index).expect("blobs");
    let rec = value(&few, &snap, 3, b"order:4785").expect("value").expect("present");
    assert_eq!(Some(rec.clone()), value(&all, &snap, 3, b"order:4785").expect("value"));
    assert_eq!(rec.kind.as_str(), "hash");
    assert!(value(&few, &snap, 0, b"order:no-such").expect("value").is_none());
    // Then a key-index page and the chunks of the chunk list(s) holding the record.
    assert!(lookup.len() < index.len(), "the lookup holds {} of {} blobs", lookup.len(), index.len());
    // Reading a whole file through it loads the whole index after all.
    let mut whole = Vec::new();
    rdbvault::engine::restore::write_file(&few, &snap.files[0], &mut whole, &Default::default()).expect("whole file");
    assert_eq!(whole, dataset());
}

#[test]
fn a_tampered_index_file_is_refused_on_the_targeted_path() {
    let (v, indexed, _) = backed();
    let args = ["--json", "inspect", &indexed, "--keys", "order:11", "--db", "3"];
    let before = v.ok(&args);
    let file = v.files("index").into_iter().next().expect("an index file");
    let name = file.file_name().expect("name").to_string_lossy().into_owned();
    let mut bytes = std::fs::read(&file).expect("read index file");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&file, bytes).expect("write index file");

    let repo = open(&v);
    let snap = Snapshot::find(&repo, &indexed).expect("snapshot").0 .1;
    let err = Lookup::new(&repo, &[top_of(&snap)]).err().expect("a tampered index file is refused").to_string();
    assert!(err.contains(&name) && err.contains("rdbvault repair index"), "{err}");

    // The command warns, naming the file, and answers from the pack headers instead.
    let o = v.run(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains(&name), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), before);
}

#[test]
fn superseded_index_files_are_left_out_as_the_whole_load_leaves_them_out() {
    let (v, indexed, _) = backed();
    let repo = open(&v);
    let snap = Snapshot::find(&repo, &indexed).expect("snapshot").0 .1;
    let top = top_of(&snap);
    // An index file naming a blob that no other file names.
    let fake = Id([0xAB; 32]);
    let entry = BlobEntry { id: fake, kind: BlobType::Data, flags: 0, offset: 0, length: 40, raw_len: 8, inner: 0, frame_len: 8 };
    let extra = repo.write_sealed(FileKind::Index, &IndexFile { supersedes: vec![], packs: vec![(Id([0xCD; 32]), vec![entry])] }.to_bytes()).expect("write index file");
    let located = |repo: &Repository| {
        let blobs = Blobs::few(repo, Arc::new(Lookup::new(repo, &[top]).expect("lookup"))).expect("blobs");
        blobs.locate(&fake).map(|(pack, _)| pack).ok()
    };
    assert_eq!(located(&repo), Some(Id([0xCD; 32])));
    assert!(Index::load(&repo).expect("index").contains(&fake));
    // A newer file supersedes it (a prune stopped before deleting it).
    repo.write_sealed(FileKind::Index, &IndexFile { supersedes: vec![extra], packs: vec![] }.to_bytes()).expect("write index file");
    assert_eq!(located(&repo), None);
    assert!(!Index::load(&repo).expect("index").contains(&fake));
    // The key still answers through the lookup.
    let blobs = Blobs::few(&repo, Arc::new(Lookup::new(&repo, &[top]).expect("lookup"))).expect("blobs");
    assert!(value(&blobs, &snap, 0, b"user:4784").expect("value").is_some());
}
