//! Prune after forget: the repository shrinks by a measured amount, every
//! remaining snapshot restores byte-identical, duplicates and leftovers of an
//! interrupted prune are accepted by check and cleaned by the next prune.

use crate::common;

use std::sync::Arc;

use rdbvault::format::index::{Index, IndexFile};
use rdbvault::format::pack::PackBuilder;
use rdbvault::store::{FileKind, LocalBackend, Repository};

use common::vault::{random_data, Vault, PASSWORD};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).expect("json output")
}

#[test]
fn prune_after_forget_frees_space_and_keeps_every_snapshot() {
    let repo = Vault::init_small_packs();
    let a = random_data(31, 400_000);
    let mut b = a[..200_000].to_vec();
    b.extend_from_slice(&random_data(32, 200_000));
    let c = random_data(33, 150_000);
    let ids: Vec<String> = [("a.rdb", &a), ("b.rdb", &b), ("c.rdb", &c)].iter().map(|(n, d)| repo.backup_bytes(n, d)).collect();

    assert!(repo.fails_text(&["forget"]).contains("no retention policy"));
    let dry = repo.ok(&["forget", "--keep-last", "2", "--group-by", "host", "--dry-run"]);
    assert!(dry.contains("would remove 1 snapshot:"), "{dry}");
    assert_eq!(repo.snapshots().len(), 3);
    let forgot = json(&repo.ok(&["--json", "forget", "--keep-last", "2", "--group-by", "host"]));
    assert_eq!(forgot["removed"], 1);
    let group = &forgot["groups"][0];
    assert_eq!(group["remove"][0]["id"], ids[0].as_str());
    assert_eq!(group["keep"][0]["reasons"], serde_json::json!(["last snapshot"]));
    assert_eq!(repo.snapshots(), ids[1..].to_vec());

    let lenient = json(&repo.ok(&["--json", "prune", "--dry-run", "--max-unused", "100%"]));
    assert_eq!(lenient["plan"]["repack_packs"].as_array().map(Vec::len), Some(0));
    let files_before = repo.files("data");
    let size_before = repo.size();
    let planned = json(&repo.ok(&["--json", "prune", "--dry-run"]));
    assert_eq!(repo.files("data"), files_before, "dry run changed nothing");
    assert!(!planned["plan"]["delete_packs"].as_array().expect("list").is_empty());

    let done = json(&repo.ok(&["--json", "prune"]));
    let size_after = repo.size();
    let freed = size_before - size_after;
    eprintln!("repository {size_before} -> {size_after} bytes, freed {freed} (a's 200000 unique bytes)");
    assert_eq!(done["bytes_freed"], freed, "reported and measured sizes agree");
    assert!(freed >= 180_000, "freed only {freed} bytes");
    assert!(size_after >= 350_000, "b and c still need their data");

    assert!(repo.check_passes(&["--read-data"]).is_empty());
    let packs = repo.files("data").len() as u64;
    assert!(packs > 8, "enough packs for two index files: {packs}");
    assert_eq!(repo.files("index").len() as u64, packs.div_ceil(8), "the new index is written eight packs to a file, as a backup writes it");
    let read = |subset: &str| repo.check(&["--read-data-subset", subset]).1["packs_read"].as_u64().expect("packs_read");
    assert_eq!(read("1/2") + read("2/2"), packs, "the groups cover every pack once");
    assert_eq!(read("50%"), packs.div_ceil(2));
    assert_eq!(read("100%"), packs);
    assert!(repo.fails_text(&["check", "--read-data-subset", "3/2"]).contains("not a subset"));
    assert_eq!(repo.try_restore(&ids[1]).expect("restore b"), b);
    assert_eq!(repo.try_restore(&ids[2]).expect("restore c"), c);
    let again = json(&repo.ok(&["--json", "prune"]));
    assert_eq!(again["plan"]["delete_packs"].as_array().map(Vec::len), Some(0), "{again}");
    assert_eq!(again["plan"]["repack_packs"].as_array().map(Vec::len), Some(0), "{again}");
    assert_eq!(repo.size(), size_after, "a second prune has nothing to do");

    // Staged files without an owner in their name (earlier versions) go once they are an hour old.
    let old_tmp = repo.repo.join("data").join("00").join(".staged.tmp-00000000000a");
    let new_tmp = repo.repo.join("index").join(".staged.tmp-00000000000b");
    for p in [&old_tmp, &new_tmp] {
        std::fs::write(p, b"partial").expect("write temp");
    }
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options().write(true).open(&old_tmp).and_then(|f| f.set_modified(two_hours_ago)).expect("age temp");
    let cleaned = json(&repo.ok(&["--json", "prune"]));
    assert_eq!(cleaned["done"]["temp_files_removed"], 1);
    assert!(!old_tmp.exists() && new_tmp.exists());
    std::fs::remove_file(&new_tmp).expect("rm");
    let size_after = repo.size();

    // forget --prune in one go removes b's unique half too.
    repo.ok(&["forget", "--keep-last", "1", "--group-by", "", "--prune"]);
    assert!(repo.size() < size_after - 180_000);
    assert!(repo.check_passes(&["--read-data"]).is_empty());
    assert_eq!(repo.try_restore(&ids[2]).expect("restore c"), c);
}

fn open(repo: &Vault) -> Repository {
    Repository::open(Arc::new(LocalBackend::new(&repo.repo)), PASSWORD.as_bytes()).expect("open")
}

#[test]
fn duplicate_blobs_and_superseded_index_files_are_cleaned() {
    let repo = Vault::init_small_packs();
    let a = random_data(41, 200_000);
    let id = repo.backup_bytes("a.rdb", &a);

    // Store one frame (and so its blobs) a second time in a new pack, as an
    // interrupted prune plus an adopting backup would.
    let r = open(&repo);
    let index = Index::load(&r).expect("index");
    let (pack, entry) = index.iter().next().expect("a blob");
    let sealed = r.backend().read_range(FileKind::Pack, &pack.to_hex(), entry.offset as u64, entry.length as usize).expect("read");
    let mut members: Vec<_> = index.iter().filter(|(p, e)| *p == pack && e.same_frame(&entry)).map(|(_, e)| (e.inner, e.id, e.raw_len)).collect();
    members.sort();
    let members: Vec<_> = members.into_iter().map(|(_, id, len)| (id, len)).collect();
    let mut builder = PackBuilder::new();
    builder.add_frame(entry.kind, entry.flags, &sealed, &members);
    let (bytes, new_pack, entries) = builder.finish(r.cipher());
    r.backend().write(FileKind::Pack, &new_pack.to_hex(), &bytes).expect("write pack");
    r.write_sealed(FileKind::Index, &IndexFile { supersedes: vec![], packs: vec![(new_pack, entries)] }.to_bytes()).expect("index");

    let warnings = repo.check_passes(&["--read-data"]);
    assert!(warnings.iter().any(|w| w["kind"] == "duplicate" && w["blob"] == entry.id.to_hex().as_str()), "{warnings:?}");
    let old_index = repo.files("index");
    let saved: Vec<(std::path::PathBuf, Vec<u8>)> = old_index.iter().map(|p| (p.clone(), std::fs::read(p).expect("read"))).collect();

    repo.ok(&["prune"]);
    assert!(repo.check_passes(&["--read-data"]).is_empty(), "prune kept one copy");
    assert_eq!(repo.try_restore(&id).expect("restore"), a);

    // A prune that stopped before deleting the old index files: they are
    // superseded, ignored by loading, accepted by check, removed by prune.
    for (p, bytes) in &saved {
        std::fs::write(p, bytes).expect("put back");
    }
    let warnings = repo.check_passes(&["--read-data"]);
    assert!(!warnings.is_empty() && warnings.iter().all(|w| w["kind"] == "superseded-index"), "{warnings:?}");
    assert_eq!(repo.try_restore(&id).expect("restore"), a);
    repo.ok(&["prune"]);
    assert!(repo.check_passes(&[]).is_empty());
    assert_eq!(repo.files("index").len(), 1);

    // repair index rebuilds from pack headers after the index is lost.
    for p in repo.files("index") {
        std::fs::remove_file(p).expect("rm");
    }
    assert!(!repo.check(&[]).0, "a lost index is an error");
    repo.ok(&["repair", "index"]);
    assert!(repo.check_passes(&["--read-data"]).is_empty());
    assert_eq!(repo.try_restore(&id).expect("restore"), a);
}

#[test]
fn backup_ignores_superseded_index_files_that_name_deleted_blobs() {
    let repo = Vault::init_small_packs();
    let a = random_data(51, 300_000);
    let b = random_data(52, 100_000);
    repo.backup_bytes("a.rdb", &a);
    repo.backup_bytes("b.rdb", &b);
    let stale: Vec<(std::path::PathBuf, Vec<u8>)> = repo.files("index").iter().map(|p| (p.clone(), std::fs::read(p).expect("read"))).collect();
    repo.ok(&["forget", "--keep-last", "1", "--group-by", "", "--prune"]);

    // A prune killed before deleting the old index files leaves them behind; they
    // still list a's blobs, whose packs are gone. A backup must store them again.
    for (p, bytes) in &stale {
        std::fs::write(p, bytes).expect("put back");
    }
    let again = repo.backup_bytes("a.rdb", &a);
    assert_eq!(repo.try_restore(&again).expect("restore a, backed up again"), a);
    let warnings = repo.check_passes(&["--read-data"]);
    assert!(warnings.iter().all(|w| w["kind"] == "superseded-index"), "{warnings:?}");
}
