//! Snapshots of several streams (AOF directories): every file keeps exactly its own bytes.

use crate::common;

use std::sync::Arc;

use common::vault::test_bytes;
use rdbvault::engine::backup::{self, BackupOptions, Input};
use rdbvault::store::ChunkerParams;
use rdbvault::crypto::KdfParams;
use rdbvault::format::index::Index;
use rdbvault::store::{LocalBackend, Repository};
use rdbvault::engine::restore::{self, Blobs, RestoreOptions};
use rdbvault::format::snapshot::SourceDesc;

#[test]
fn many_files_with_empty_ones_keep_their_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let kdf = KdfParams { m_cost: 8192, ..KdfParams::default() };
    let repo = Repository::init(Arc::new(LocalBackend::new(dir.path().join("repo"))), b"pw", ChunkerParams::default(), kdf).unwrap();
    // Small files finish in one job each, so workers complete them out of order; empty
    // files end exactly where the next file starts.
    let files: Vec<(String, Vec<u8>)> = (0..40u64)
        .map(|i| {
            let len = match i % 4 {
                0 => 0,
                1 => 3_000,
                2 => 300_000,
                _ => 40_000,
            };
            (format!("f{i:02}"), test_bytes(len, i + 1))
        })
        .collect();
    for round in 0..3 {
        let inputs = files.iter().map(|(n, d)| Input::new(n.clone(), Box::new(std::io::Cursor::new(d.clone())))).collect();
        let opts = BackupOptions { threads: 4, ..BackupOptions::default() };
        let (_, snap) = backup::run(&repo, SourceDesc::default(), inputs, &opts).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(snap.files.iter().map(|f| f.size).collect::<Vec<_>>(), files.iter().map(|(_, d)| d.len() as u64).collect::<Vec<_>>());
        let index = Index::load(&repo).unwrap();
        let blobs = Blobs::new(&repo, &index).unwrap();
        let out = dir.path().join(format!("out{round}"));
        restore::restore_to_path(&blobs, &snap, &out, &RestoreOptions::default()).unwrap();
        for (name, data) in &files {
            assert!(std::fs::read(out.join(name)).unwrap() == *data, "round {round}: {name} differs");
        }
    }
}
