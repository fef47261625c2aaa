//! Key derivation on two lanes: new key files (`init`, `key add`) name Argon2id with two
//! lanes (computed in parallel) at the same memory and passes; key files of older
//! rdbvault versions (one lane) still open, and a password added to such a repository
//! gets two lanes.

use crate::common;

use std::path::Path;

use common::vault::{copy_dir, Vault};

/// The Argon2 costs of every key file of `v`, as (m_cost, t_cost, p_cost).
fn kdf_params(v: &Vault) -> Vec<(u64, u64, u64)> {
    let mut out: Vec<(u64, u64, u64)> = v
        .files("keys")
        .iter()
        .map(|f| {
            let key: serde_json::Value = serde_json::from_slice(&std::fs::read(f).expect("read key file")).expect("key file json");
            let p = &key["kdf_params"];
            let n = |name: &str| p[name].as_u64().unwrap_or_else(|| panic!("{name} in {key}"));
            (n("m_cost"), n("t_cost"), n("p_cost"))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn init_writes_a_key_file_with_two_lanes_that_opens() {
    let v = Vault::init();
    assert_eq!(kdf_params(&v), vec![(8192, 3, 2)]);
    assert!(v.ok(&["cat", "config"]).contains("repo_id"));
    assert!(!v.run_as("wrong password", &["cat", "config"]).status.success());
}

#[test]
fn one_lane_key_file_of_an_older_version_opens_and_a_new_password_gets_two_lanes() {
    let v = Vault::init();
    std::fs::remove_dir_all(&v.repo).expect("remove the new repository");
    // Written by rdbvault before two lanes (`init --kdf-memory-kib 8192`: one lane).
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/repo-frames-v2"), &v.repo);
    for dir in ["locks", "keys", "index", "snapshots", "data"] {
        std::fs::create_dir_all(v.repo.join(dir)).expect("mkdir");
    }
    assert_eq!(kdf_params(&v), vec![(8192, 3, 1)]);
    assert!(v.ok(&["cat", "config"]).contains("repo_id"));
    let o = v.cmd(&["key", "add"]).env("RDBVAULT_NEW_PASSWORD", "second pw").output().expect("run rdbvault");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Same memory and passes as the key in use, two lanes.
    assert_eq!(kdf_params(&v), vec![(8192, 3, 1), (8192, 3, 2)]);
    let o = v.run_as("second pw", &["cat", "config"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(v.ok(&["cat", "config"]).contains("repo_id"), "the old password still opens");
}
