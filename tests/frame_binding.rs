//! Bound frames: a frame's sealed plaintext carries a digest of its chunks' ids
//! and lengths, so a restore that uses all of a frame's chunks trusts them
//! after authentication instead of hashing each. Repositories written before
//! (unbound frames, every chunk hashed) still restore byte for byte, and a
//! frame whose ids were swapped by someone holding the key is refused, naming
//! its pack.

use crate::common;

use std::sync::Arc;

use rdbvault::crypto::Id;
use rdbvault::engine::restore::Blobs;
use rdbvault::format::index::{Index, IndexFile};
use rdbvault::format::pack::{open_frame, BlobEntry, BlobKeys, BlobType, PackBuilder, FLAG_BOUND};
use rdbvault::store::{FileKind, LocalBackend, Repository};

use common::vault::{test_bytes, Vault, PASSWORD};

/// The inputs of the fixture's two snapshots (see `old_repository`).
fn fixture_data(bump_every_50th: bool) -> Vec<u8> {
    (0..4000u64)
        .map(|i| format!("key:{i}:value:{}:{}\n", (i * 7919) % 10007 + u64::from(bump_every_50th && i % 50 == 0), "x".repeat((i % 37) as usize)))
        .collect::<String>()
        .into_bytes()
}

/// A copy of `tests/fixtures/repo-frames-v2`: written by rdbvault before frames
/// were bound (`init --kdf-memory-kib 8192`, 32 KiB packs, `backup --raw` of
/// `fixture_data(false)` as snapshot 6e4dca33, then of `fixture_data(true)` as f4a8d476).
fn old_repository() -> Vault {
    Vault::from_fixture("repo-frames-v2")
}

fn open(v: &Vault) -> Repository {
    Repository::open(Arc::new(LocalBackend::new(&v.repo)), PASSWORD.as_bytes()).expect("open")
}

#[test]
fn repository_with_unbound_frames_restores_byte_exact_and_takes_new_backups() {
    let v = old_repository();
    let (a, b) = (fixture_data(false), fixture_data(true));
    let r = open(&v);
    let index = Index::load(&r).expect("index");
    assert!(index.iter().all(|(_, e)| e.flags & FLAG_BOUND == 0), "the fixture predates bound frames");
    assert!(index.iter().any(|(_, e)| e.raw_len < e.frame_len), "the fixture has frames of several chunks");
    assert_eq!(v.try_restore("6e4dca33").expect("restore a"), a);
    assert_eq!(v.try_restore("f4a8d476").expect("restore b"), b);
    assert!(v.check_passes(&["--read-data"]).is_empty());

    // A new backup into it writes bound frames beside the old ones.
    let mut c = b.clone();
    c.extend_from_slice(&test_bytes(100_000, 7));
    let c_id = v.backup_bytes("c.rdb", &c);
    let index = Index::load(&open(&v)).expect("index");
    assert!(index.iter().any(|(_, e)| e.flags & FLAG_BOUND != 0), "new frames are bound");
    assert_eq!(v.try_restore(&c_id).expect("restore c"), c);

    // Prune re-seals partly used old frames as bound ones; everything left still restores.
    v.ok(&["forget", "6e4dca33"]);
    v.ok(&["prune", "--max-unused", "0%"]);
    assert!(v.check_passes(&["--read-data"]).is_empty());
    assert_eq!(v.try_restore("f4a8d476").expect("restore b after prune"), b);
    assert_eq!(v.try_restore(&c_id).expect("restore c after prune"), c);
}

/// A data frame of several chunks (its pack and first blob), with its blobs in frame order.
fn frame_of_several(index: &Index) -> (Id, BlobEntry, Vec<(u32, Id, u32)>) {
    frames_of_several(index).next().expect("a frame of several chunks")
}

/// Every bound data frame of three or more chunks, as [`frame_of_several`] gives one.
fn frames_of_several(index: &Index) -> impl Iterator<Item = (Id, BlobEntry, Vec<(u32, Id, u32)>)> + '_ {
    index.iter().filter(|(_, e)| e.kind == BlobType::Data && e.inner == 0 && e.raw_len < e.frame_len && e.raw_len * 3 <= e.frame_len).map(|(pack, first)| {
        assert!(first.flags & FLAG_BOUND != 0);
        let mut members: Vec<(u32, Id, u32)> =
            index.iter().filter(|(p, e)| *p == pack && e.same_frame(&first)).map(|(_, e)| (e.inner, e.id, e.raw_len)).collect();
        members.sort();
        (pack, first, members)
    })
}

/// Copies the frame into a new pack whose header (and so the index) lists its
/// first two chunks in swapped places: what a writer holding the key but
/// confused about the frame's contents would store. One index file replaces
/// all others, so the frame's chunks are only in the new pack; returns its name.
fn swap_first_two(r: &Repository, pack: Id, first: BlobEntry, members: &[(u32, Id, u32)]) -> Id {
    let files = Index::read_files(r).expect("index files");
    let index = Index::from_files(&files);
    let mut swapped: Vec<(Id, u32)> = members.iter().map(|(_, id, len)| (*id, *len)).collect();
    swapped.swap(0, 1);
    let sealed = r.backend().read_range(FileKind::Pack, &pack.to_hex(), first.offset as u64, first.length as usize).expect("read frame");
    let mut builder = PackBuilder::new();
    builder.add_frame(first.kind, first.flags, &sealed, &swapped);
    let (bytes, new_pack, entries) = builder.finish(r.cipher());
    r.backend().write(FileKind::Pack, &new_pack.to_hex(), &bytes).expect("write pack");
    let supersedes = files.iter().map(|(name, _)| Id::from_hex(name).expect("index name")).collect();
    let mut packs: Vec<_> = index
        .live_entries_by_pack(files)
        .into_iter()
        .map(|(p, (_, entries))| (p, entries.into_iter().filter(|e| !(p == pack && e.same_frame(&first))).collect::<Vec<_>>()))
        .collect();
    packs.push((new_pack, entries));
    r.write_sealed(FileKind::Index, &IndexFile { supersedes, packs }.to_bytes()).expect("write index");
    new_pack
}

fn shown(pack: Id) -> String {
    format!("data/{}/{}", &pack.to_hex()[..2], pack.to_hex())
}

#[test]
fn frame_with_swapped_ids_is_refused_naming_its_pack() {
    let v = Vault::init();
    let data = test_bytes(400_000, 3);
    let id = v.backup_bytes("a.rdb", &data);
    let r = open(&v);
    let (pack, first, members) = frame_of_several(&Index::load(&r).expect("index"));
    let new_pack = swap_first_two(&r, pack, first, &members);

    let err = v.try_restore(&id).expect_err("a frame whose ids were swapped must not restore");
    assert!(err.contains(&shown(new_pack)) && err.contains("bound chunk ids do not match"), "{err}");

    let (ok, report) = v.check(&["--read-data"]);
    assert!(!ok);
    let problems = report["problems"].as_array().cloned().unwrap_or_default();
    assert!(
        problems.iter().any(|p| p["message"].as_str().is_some_and(|m| m.contains("do not match the pack header"))),
        "{report:#}"
    );
}

/// A restore that uses only part of a bound frame trusts its digest through the
/// index's list of the frame's blobs; when that list was swapped, the digest
/// disagrees, so the chunks are hashed, and the swapped one is refused.
#[test]
fn frame_with_swapped_ids_is_refused_when_used_in_part() {
    let v = Vault::init();
    let a = test_bytes(400_000, 3);
    v.backup_bytes("a.rdb", &a);
    let r = open(&v);
    let index = Index::load(&r).expect("index");
    // A frame whose chunks lie together in `a`, and where: its plaintext, found there. (A
    // frame's chunks are the new ones of a stretch of input; one that another worker stored
    // first is left out, so not every frame is one piece of the input.)
    let blobs = Blobs::new(&r, &index).expect("blobs");
    let (pack, first, members, at) = frames_of_several(&index)
        .find_map(|(pack, first, members)| {
            let sealed = r.backend().read_range(FileKind::Pack, &pack.to_hex(), first.offset as u64, first.length as usize).expect("read frame");
            let plain = open_frame(&BlobKeys::of(&r), &mut blobs.decoder(), &first, &sealed, "frame").expect("open frame");
            a.windows(plain.len()).position(|w| w == plain.as_slice()).map(|at| (pack, first, members, at))
        })
        .expect("a frame of several chunks lying together in the input");
    // `b` changes a byte of the frame's last chunk: it uses the others only.
    let (last_inner, _, last_len) = *members.last().expect("members");
    let mut b = a.clone();
    b[at + last_inner as usize + last_len as usize / 2] ^= 0x55;
    let b_id = v.backup_bytes("b.rdb", &b);
    assert_eq!(v.try_restore(&b_id).expect("restore b"), b, "b restores before the swap");
    let new_pack = swap_first_two(&r, pack, first, &members);

    let err = v.try_restore(&b_id).expect_err("a frame whose ids were swapped must not restore");
    assert!(err.contains(&shown(new_pack)) && err.contains("does not hash to its id"), "{err}");
}
