//! Passwords: several per repository, added and removed without touching data;
//! the key in use and the last key cannot be removed.

use crate::common;

use common::vault::{random_data, Vault};

fn key_ids(repo: &Vault, pw: &str) -> Vec<(String, bool)> {
    let o = repo.run_as(pw, &["--json", "key", "list"]);
    assert!(o.status.success(), "{}", common::vault::text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    v.as_array().expect("list").iter().map(|k| (k["id"].as_str().expect("id").to_string(), k["current"] == true)).collect()
}

#[test]
fn add_list_remove_and_change_passwords() {
    let repo = Vault::init_small_packs();
    let data = random_data(70, 60_000);
    let id = repo.backup_bytes("a.rdb", &data);
    let packs = repo.files("data");
    let first = key_ids(&repo, common::vault::PASSWORD);
    assert_eq!(first.len(), 1);
    assert!(first[0].1, "the key in use is marked");

    let pwfile = repo.dir.path().join("new-pw");
    std::fs::write(&pwfile, "second password\n").expect("write");
    repo.ok(&["key", "add", "--new-password-file", pwfile.to_str().expect("utf-8")]);
    let both = key_ids(&repo, "second password");
    assert_eq!(both.len(), 2);
    assert_eq!(both.iter().filter(|k| k.1).count(), 1);

    // Removing the key in use is refused; with the other password it works.
    let msg = repo.fails_text(&["key", "remove", &first[0].0[..8]]);
    assert!(msg.contains("in use"), "{msg}");
    let o = repo.run_as("second password", &["key", "remove", &first[0].0[..8]]);
    assert!(o.status.success(), "{}", common::vault::text(&o));
    let o = repo.run(&["snapshots"]);
    assert_eq!(o.status.code(), Some(3), "the old password no longer opens the repository");
    let last = key_ids(&repo, "second password");
    let o = repo.run_as("second password", &["key", "remove", &last[0].0]);
    assert!(!o.status.success(), "the last key cannot be removed");

    // passwd: new key in, old key out.
    let o = repo.cmd(&["key", "passwd"])
        .env("RDBVAULT_PASSWORD", "second password")
        .env("RDBVAULT_NEW_PASSWORD", "third password")
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", common::vault::text(&o));
    assert_eq!(repo.run_as("second password", &["snapshots"]).status.code(), Some(3));
    let third = key_ids(&repo, "third password");
    assert_eq!(third.len(), 1);
    assert_ne!(third[0].0, last[0].0);

    assert_eq!(repo.files("data"), packs, "no data was re-encrypted");
    let o = repo.run_as("third password", &["restore", &id, "-t", "-"]);
    assert!(o.status.success());
    assert_eq!(o.stdout, data);
    assert!(repo.run_as("third password", &["check"]).status.success());
}
