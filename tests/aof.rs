//! Multi-part AOF directories of a real redis-server.

use crate::common;

use std::collections::BTreeMap;

use common::server::{aof_server, fill_sample, rewrite_aof_and_wait, RedisServer, ServerConfig};
use rdbvault::redis::source::{self, aof, AofFileKind, SourceError, SourceKind};

/// Collect into a map name -> bytes, keeping only the last attempt's files.
fn collect(dir: &std::path::Path, attempts: u32, mut on_file: impl FnMut(u32, &str)) -> source::Result<(source::SourceInfo, BTreeMap<String, Vec<u8>>)> {
    let mut files = BTreeMap::new();
    let mut current = 0;
    let info = source::collect_aof(dir, attempts, |meta, r| {
        if meta.attempt != current {
            files.clear();
            current = meta.attempt;
        }
        let mut v = Vec::new();
        r.read_to_end(&mut v)?;
        assert_eq!(v.len() as u64, meta.size);
        files.insert(meta.name.to_string(), v);
        on_file(meta.attempt, meta.name);
        Ok(())
    })?;
    Ok((info, files))
}

#[test]
fn collected_files_match_the_manifest_and_restore() {
    let src = aof_server();
    fill_sample(&src, 300);
    let dir = src.path("aofparts");
    let (info, files) = collect(&dir, 3, |_, _| {}).unwrap();
    assert_eq!(info.kind, SourceKind::Aof);
    let m = info.aof.clone().unwrap();
    assert_eq!(m.manifest_name, "app.aof.manifest");
    assert_eq!(m.attempts, 1);
    let mut expected: Vec<String> = m.files.iter().map(|f| f.name.clone()).collect();
    expected.push(m.manifest_name.clone());
    expected.sort();
    assert_eq!(files.keys().cloned().collect::<Vec<_>>(), expected);
    assert!(m.files.iter().any(|f| f.kind == AofFileKind::Base));
    assert!(m.files.iter().any(|f| f.kind == AofFileKind::Incr));
    assert_eq!(files[&m.manifest_name], std::fs::read(dir.join(&m.manifest_name)).unwrap());

    // Rewrite, write more, read again: a new consistent set.
    rewrite_aof_and_wait(&src);
    let _: () = src.cmd(&["SET", "after-rewrite", "1"]);
    let (info2, files2) = collect(&dir, 3, |_, _| {}).unwrap();
    assert_ne!(info2.aof.as_ref().unwrap().files, m.files);
    assert!(!m.files.iter().any(|f| f.kind == AofFileKind::History));

    // The collected files, put back by name, restore the same dataset.
    let restore = tempfile::tempdir().unwrap();
    std::fs::create_dir(restore.path().join("aofparts")).unwrap();
    for (name, bytes) in &files2 {
        std::fs::write(restore.path().join("aofparts").join(name), bytes).unwrap();
    }
    let copy = RedisServer::start_with(
        ServerConfig { dir: Some(restore), ..Default::default() }
            .arg("appendonly", &["yes"])
            .arg("appenddirname", &["aofparts"])
            .arg("appendfilename", &["app.aof"]),
    );
    assert_eq!(copy.digest(), src.digest());
}

#[test]
fn rewrite_during_collection_is_detected_and_retried() {
    let src = aof_server();
    fill_sample(&src, 200);
    let dir = src.path("aofparts");
    let mut seen = Vec::new();
    let (info, files) = collect(&dir, 3, |attempt, name| {
        if attempt == 1 && seen.is_empty() {
            rewrite_aof_and_wait(&src);
        }
        seen.push((attempt, name.to_string()));
    })
    .unwrap();
    let m = info.aof.unwrap();
    assert_eq!(m.attempts, 2);
    assert!(seen.iter().any(|(a, _)| *a == 2));
    for f in &m.files {
        assert_eq!(files[&f.name], std::fs::read(dir.join(&f.name)).unwrap(), "{}", f.name);
    }
    // A rewrite on every attempt ends in a clear error.
    let err = collect(&dir, 2, |_, _| rewrite_aof_and_wait(&src)).map(|_| ()).unwrap_err();
    assert!(matches!(err, SourceError::AofUnstable { attempts: 2, .. }), "{err:?}");
    assert!(err.to_string().contains("rewritten"));
}

#[test]
fn missing_manifest_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let err = aof::collect(d.path(), None, 2, |_, _| Ok(())).unwrap_err();
    assert!(matches!(err, SourceError::AofManifest { .. }), "{err:?}");
}
