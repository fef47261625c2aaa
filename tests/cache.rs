//! The local cache of a network repository's index and snapshot files: requests are
//! counted by an HTTP proxy between rdbvault and moto.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::net::{HttpProxy, Moto};
use common::vault::{random_data, Vault};

/// Downloads of files in `folder` (`index`, `snapshots`) among logged request lines.
fn downloads(lines: &[String], folder: &str) -> usize {
    lines.iter().filter(|l| l.starts_with(&format!("GET /backups/redis/prod/{folder}/"))).count()
}

/// The cache directory of the test repository (one repository: one id below `rdbvault/`,
/// beside `keys/`).
fn cache_of(v: &Vault) -> PathBuf {
    let base = v.dir.path().join("cache/rdbvault");
    let mut ids: Vec<PathBuf> = std::fs::read_dir(&base).expect("cache dir").flatten().map(|e| e.path()).filter(|p| !p.ends_with("keys")).collect();
    assert_eq!(ids.len(), 1, "one repository id under {}", base.display());
    ids.pop().unwrap()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    out.sort();
    out
}

fn on_moto() -> (Moto, HttpProxy, Vault) {
    let moto = Moto::start(false);
    moto.create_bucket("backups");
    let proxy = HttpProxy::start(moto.port);
    let v = Vault::init_remote(&format!("s3:http://127.0.0.1:{}/backups/redis/prod", proxy.port), Moto::env(), None);
    (moto, proxy, v)
}

#[test]
fn index_and_snapshot_files_are_downloaded_once() {
    let (_moto, proxy, v) = on_moto();
    let one = v.backup_bytes("a.bin", &random_data(1, 300_000));
    // Safe if deleted: the next commands fetch what they need again.
    std::fs::remove_dir_all(v.dir.path().join("cache")).unwrap();
    proxy.take();
    v.ok(&["snapshots"]);
    assert_eq!(downloads(&proxy.take(), "snapshots"), 1, "the first listing downloads the snapshot");
    v.ok(&["snapshots"]);
    assert_eq!(downloads(&proxy.take(), "snapshots"), 0, "a second listing downloads nothing");

    let two = v.backup_bytes("b.bin", &random_data(2, 300_000));
    assert_eq!(downloads(&proxy.take(), "index"), 1, "the first backup after the cache was deleted reads the index");
    v.backup_bytes("c.bin", &random_data(3, 300_000));
    let log = proxy.take();
    assert_eq!(downloads(&log, "index"), 0, "an incremental backup downloads no index file: {log:#?}");
    assert_eq!(v.snapshots().len(), 3);
    assert_eq!(downloads(&proxy.take(), "snapshots"), 0, "new snapshots are cached as they are written");

    // Without the cache every index file is downloaded again.
    let out = v.dir.path().join("two.out");
    v.ok(&["--no-cache", "restore", &two, "-t", out.to_str().unwrap()]);
    assert!(downloads(&proxy.take(), "index") >= 3, "--no-cache reads every index file");
    assert_eq!(std::fs::read(&out).unwrap(), random_data(2, 300_000));

    // Cached copies are private.
    let cache = cache_of(&v);
    for dir in [cache.clone(), cache.join("index"), cache.join("snapshots")] {
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700, "{}", dir.display());
    }
    for f in files(&cache.join("index")).iter().chain(&files(&cache.join("snapshots"))) {
        assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600, "{}", f.display());
    }
    assert_eq!(v.try_restore(&one).unwrap(), random_data(1, 300_000));
}

#[test]
fn a_tampered_copy_is_detected_and_fetched_again() {
    let (_moto, proxy, v) = on_moto();
    v.backup_bytes("a.bin", &random_data(1, 200_000));
    let cache = cache_of(&v);
    let index = files(&cache.join("index"));
    assert_eq!(index.len(), 1, "the backup cached its index file");
    let snapshot = files(&cache.join("snapshots")).pop().expect("cached snapshot");
    let (good_index, good_snapshot) = (std::fs::read(&index[0]).unwrap(), std::fs::read(&snapshot).unwrap());
    let mut bad = good_index.clone();
    bad[40] ^= 1;
    std::fs::write(&index[0], &bad).unwrap();
    std::fs::write(&snapshot, b"not a snapshot").unwrap();
    proxy.take();
    let snap = v.backup_bytes("b.bin", &random_data(2, 200_000));
    v.ok(&["snapshots"]);
    let log = proxy.take();
    assert_eq!(downloads(&log, "index"), 1, "the tampered index copy is fetched again: {log:#?}");
    assert_eq!(std::fs::read(&index[0]).unwrap(), good_index, "and the copy repaired");
    assert_eq!(downloads(&log, "snapshots"), 1, "the tampered snapshot copy is fetched again: {log:#?}");
    assert_eq!(std::fs::read(&snapshot).unwrap(), good_snapshot);
    assert_eq!(v.try_restore(&snap).unwrap(), random_data(2, 200_000));
    v.check_passes(&["--read-data"]);
}

#[test]
fn copies_of_files_gone_from_the_repository_are_dropped() {
    let (_moto, _proxy, v) = on_moto();
    // One source name: one group, so `forget --keep-last 1` forgets the first.
    v.backup_bytes("a.bin", &random_data(1, 100_000));
    let keep = v.backup_bytes("a.bin", &random_data(2, 100_000));
    let snapshots = cache_of(&v).join("snapshots");
    assert_eq!(files(&snapshots).len(), 2);
    // Another client (here: one without the cache) forgets a snapshot.
    v.ok(&["--no-cache", "forget", "--keep-last", "1"]);
    assert_eq!(files(&snapshots).len(), 2, "--no-cache leaves the cache alone");
    v.ok(&["snapshots"]);
    let left = files(&snapshots);
    assert_eq!(left.len(), 1, "the copy of the forgotten snapshot is dropped: {left:?}");
    assert!(left[0].ends_with(&keep), "{left:?}");
}

#[test]
fn local_repositories_use_no_cache() {
    let v = Vault::init();
    v.backup_bytes("a.bin", &random_data(1, 100_000));
    v.ok(&["snapshots"]);
    assert!(!v.dir.path().join("cache").exists(), "a local repository is its own cache");
}

#[test]
fn key_files_are_downloaded_once_and_a_removed_key_opens_nothing() {
    let (_moto, proxy, v) = on_moto();
    proxy.take();
    v.ok(&["snapshots"]);
    assert_eq!(downloads(&proxy.take(), "keys"), 1, "the first command downloads its key file");
    v.ok(&["snapshots"]);
    let log = proxy.take();
    assert_eq!(downloads(&log, "keys"), 0, "a later command derives the key from the cached copy: {log:#?}");
    assert!(log.iter().any(|l| l.contains("prefix=redis%2Fprod%2Fkeys") || l.contains("prefix=redis/prod/keys")), "the key files are still listed: {log:#?}");
    let keys = v.dir.path().join("cache/rdbvault/keys");
    let cached: Vec<PathBuf> = files(&keys).iter().flat_map(|d| files(d)).collect();
    assert_eq!(cached.len(), 1, "one key file cached: {cached:?}");
    assert_eq!(std::fs::metadata(&cached[0]).unwrap().permissions().mode() & 0o777, 0o600);
    let first = cached[0].file_name().unwrap().to_str().unwrap().to_string();

    // Another password removes the first: its cached copy opens nothing any more.
    let o = v.cmd(&["key", "add", "--kdf-memory-kib", "8192"]).env("RDBVAULT_NEW_PASSWORD", "second pw").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = v.run_as("second pw", &["key", "remove", &first[..12]]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = v.run(&["snapshots"]);
    assert!(!o.status.success(), "a removed key still opened the repository");
    assert!(String::from_utf8_lossy(&o.stderr).contains("password"), "{}", String::from_utf8_lossy(&o.stderr));
    let left: Vec<PathBuf> = files(&keys).iter().flat_map(|d| files(d)).collect();
    assert!(left.iter().all(|p| !p.ends_with(&first)), "the removed key left the cache: {left:?}");
    let o = v.run_as("second pw", &["snapshots"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
