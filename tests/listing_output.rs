//! What a person reads in listings: aligned tables, one time format, plurals; `stats`
//! modes, `cat`, refused repository URLs, `prune --max-unused unlimited`.

use crate::common;

use std::process::Command;

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;

use common::vault::{random_data, rdb_fixture, Vault};


/// Runs with `TZ` set to five hours west of UTC (no daylight saving) and returns stdout.
fn in_est(v: &Vault, args: &[&str]) -> String {
    let o = v.run_env(args, &[("TZ", "EST5")]);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A stored time as listings show it in EST5.
fn est(rfc3339: &str) -> String {
    let t = time::OffsetDateTime::parse(rfc3339, &Rfc3339).expect("RFC 3339") - time::Duration::hours(5);
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    t.format(&fmt).expect("format")
}

#[test]
fn snapshots_table_is_sized_to_its_content() {
    let v = Vault::init();
    let plain = rdb_fixture("plain.rdb");
    // Without the key index, so the added bytes keep the width this table is written for.
    let a = v.backup_stdin("dump.rdb", &plain, &["--host", "h", "--tag", "nightly,eu", "--no-key-index"]);
    let b = v.backup_stdin("a-much-longer-source-name.rdb", &plain, &["--host", "db-primary.example.internal", "--no-key-index"]);
    let list = v.json(&["snapshots"]);
    let (ta, tb) = (est(list[0]["time"].as_str().unwrap()), est(list[1]["time"].as_str().unwrap()));
    let added = list[0]["summary"]["bytes_added"].as_u64().unwrap();
    assert!((100..10000).contains(&added), "{added}");
    assert_eq!(list[1]["summary"]["bytes_added"], 0);
    let (a, b) = (&a[..8], &b[..8]);
    // The Added column is as wide as its widest cell (about 1 KB: 3 or 4 digits).
    let added_b = if added < 1024 { format!("{added} B") } else { format!("{:.1} KiB", added as f64 / 1024.0) };
    let w = added_b.len().max(5);
    let (rule1, rule2) = ("-".repeat(116 + w), "-".repeat(72 + w));
    let want = format!(
        "\
ID        Time                 Host                         Tags        Source                                Size  {:>w$}
{rule1}
{a}  {ta}  h                            nightly,eu  stdin:dump.rdb                       391 B  {added_b:>w$}
{b}  {tb}  db-primary.example.internal              stdin:a-much-longer-source-name.rdb  391 B  {:>w$}
{rule1}
2 snapshots
",
        "Added", "0 B"
    );
    assert_eq!(in_est(&v, &["snapshots"]), want);

    // One short row: the columns shrink to the headers.
    let want = format!(
        "\
ID        Time                 Host  Tags        Source           Size  {:>w$}
{rule2}
{a}  {ta}  h     nightly,eu  stdin:dump.rdb  391 B  {added_b:>w$}
{rule2}
1 snapshot
",
        "Added"
    );
    assert_eq!(in_est(&v, &["snapshots", "--host", "h"]), want);

    // The same time format in forget and key list; JSON keeps RFC 3339.
    let forget = in_est(&v, &["forget", "--keep-last", "1", "--group-by", "", "--dry-run"]);
    assert_eq!(
        forget,
        format!("snapshots of all:\nkeep 1 snapshot:\n  {b}  {tb}  last snapshot\nwould remove 1 snapshot:\n  {a}  {ta}\n")
    );
    let keys = v.json(&["key", "list"]);
    let created = est(keys[0]["created"].as_str().unwrap());
    let key = &keys[0]["id"].as_str().unwrap()[..8];
    let (host, user) = (keys[0]["host"].as_str().unwrap(), keys[0]["username"].as_str().unwrap());
    let (hw, uw) = (host.len().max(4), user.len().max(4));
    let rule = "-".repeat(9 + 2 + 19 + 2 + hw + 2 + uw);
    assert_eq!(
        in_est(&v, &["key", "list"]),
        format!(" ID        Created              {:<hw$}  User\n{rule}\n*{key}  {created}  {host:<hw$}  {user}\n{rule}\n1 key file\n", "Host")
    );
}

#[test]
fn counts_are_worded_in_singular_and_plural() {
    let v = Vault::init();
    // Below the smallest chunk: one data blob, and a chunk-list leaf and its top blob (in a pack
    // of their own), whatever the chunker seed.
    v.backup_stdin("dump.rdb", &random_data(1, 200), &["--raw"]);
    let check = v.ok(&["check"]);
    assert_eq!(
        check.lines().last(),
        Some("checked 1 key file, 1 index file, 2 packs (0 read in full, 0 blobs verified), 1 snapshot: 0 errors, 0 warnings")
    );
    let prune = v.ok(&["prune", "--dry-run"]);
    assert!(prune.starts_with("1 snapshot uses 3 blobs; 0 unused, 0 extra copies\nwould delete 0 unused packs and 0 unindexed packs\n"), "{prune}");
    assert!(prune.contains("would keep 2 packs as they are; replace 1 index file with files of up to 8 packs\n"), "{prune}");
    let forget = v.ok(&["forget", "--keep-last", "1", "--dry-run"]);
    assert!(forget.contains("keep 1 snapshot:\n") && forget.contains("would remove 0 snapshots:\n"), "{forget}");

    // A damaged snapshot: one error.
    let snap = std::fs::read_dir(v.repo.join("snapshots")).unwrap().next().unwrap().unwrap().path();
    std::fs::write(&snap, b"garbage").unwrap();
    let o = v.run(&["check"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim(), "error: check found 1 error: the repository is damaged");
}

#[test]
fn stats_measures_chosen_snapshots_by_restore_size_or_raw_blobs() {
    let v = Vault::init();
    // Below the smallest chunk (256 bytes): one chunk each, whatever the repository's chunker seed.
    let (plain, compact) = (random_data(1, 200), random_data(2, 150));
    let a = v.backup_stdin("dump.rdb", &plain, &["--raw"]);
    let b = v.backup_stdin("dump.rdb", &plain, &["--raw"]);
    // Another host's: a full list of its own (a delta draws from the same host's file).
    let c = v.backup_stdin("other.rdb", &compact, &["--raw", "--host", "other"]);
    assert_eq!(v.ok(&["stats", "--mode", "restore-size"]), "snapshots:   3\nfiles:       3\ntotal size:  550 B (what a restore writes)\n");
    assert_eq!(v.json(&["stats", &a, &c]), json!({"snapshots": 2, "total_file_count": 2, "total_size": plain.len() + compact.len()}));

    // raw: each stored blob once, however many snapshots share it.
    let raw_a = v.json(&["stats", &a, "--mode", "raw"]);
    let raw_ab = v.json(&["stats", &a, &b, "--mode", "raw"]);
    let raw_all = v.json(&["stats", "--mode", "raw"]);
    assert_eq!(raw_a["snapshots"], 1);
    assert_eq!(raw_ab["snapshots"], 2);
    // Per full list: one data chunk, a list leaf of one 32-byte id, and a top blob ("RVLT" + the leaf's id).
    assert_eq!(raw_a["total_blob_count"], 3);
    assert_eq!(raw_a["total_uncompressed_size"], plain.len() + 32 + 36);
    // b shares a's chunk and stores one delta piece: "RVLD", one base (a's top blob), one op
    // keeping its one id (count, base, skip), no new ids.
    assert_eq!(raw_ab["total_blob_count"], 4);
    assert_eq!(raw_ab["total_uncompressed_size"], plain.len() + 32 + 36 + (4 + 1 + 32 + 1 + 3));
    assert_eq!(raw_all["total_blob_count"], 7);
    assert_eq!(raw_all["total_uncompressed_size"], plain.len() + compact.len() + 2 * (32 + 36) + 41);
    let overview = v.json(&["stats"]);
    assert_eq!(raw_all["total_blob_count"], overview["data_blobs"].as_u64().unwrap() + overview["list_blobs"].as_u64().unwrap());
    let stored = raw_a["total_size"].as_u64().unwrap();
    let text = v.ok(&["stats", &a, "--mode", "raw"]);
    let ratio = (plain.len() + 32 + 36) as f64 / stored as f64;
    assert_eq!(
        text,
        format!(
            "snapshots:          1\nblobs:              3\nuncompressed size:  {} B\nstored size:        {stored} B after compression and encryption\ncompression ratio:  {ratio:.2}x\n",
            plain.len() + 32 + 36
        )
    );
    // Sizes with units.
    let big = v.backup_stdin("big.rdb", &random_data(3, 2000), &["--raw"]);
    assert_eq!(v.ok(&["stats", &big, &c]), "snapshots:   2\nfiles:       2\ntotal size:  2.1 KiB (what a restore writes)\n");
}

#[test]
fn cat_prints_decrypted_json_but_no_key_material() {
    let v = Vault::init();
    // Below the smallest chunk: one data blob and one chunk list.
    let id = v.backup_stdin("dump.rdb", &random_data(1, 200), &["--raw", "--tag", "t"]);

    let config = v.json(&["cat", "config"]);
    assert_eq!(config["version"], 1);
    assert_eq!(config["id_key"], "(secret, not shown)");
    assert!(config["chunker"].is_object(), "{config}");
    assert_eq!(config.as_object().unwrap().len(), 4, "{config}");

    let key_id = v.json(&["key", "list"])[0]["id"].as_str().unwrap().to_string();
    let stored: Value = serde_json::from_slice(&std::fs::read(v.repo.join("keys").join(&key_id)).unwrap()).unwrap();
    let out = v.ok(&["cat", "key", &key_id[..8]]);
    let key: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(key["kdf"], "argon2id");
    assert_eq!(key["kdf_params"], stored["kdf_params"]);
    assert_eq!(key["data"], "(secret, not shown)");
    assert!(!out.contains(stored["data"].as_str().unwrap()), "the sealed master key is not printed");

    let snap = v.json(&["cat", "snapshot", "latest"]);
    let listed = &v.json(&["snapshots"])[0];
    for k in ["time", "host", "tags", "source", "files", "summary"] {
        assert_eq!(snap[k], listed[k], "{k}");
    }
    assert_eq!(v.json(&["cat", "snapshot", &id[..6]]), snap);

    let index_name = std::fs::read_dir(v.repo.join("index")).unwrap().next().unwrap().unwrap().file_name();
    let index = v.json(&["cat", "index", &index_name.to_str().unwrap()[..10]]);
    let pack = index["packs"][0]["id"].as_str().unwrap().to_string();
    // Data and chunk lists live in packs of their own.
    let blobs: Vec<&serde_json::Value> = index["packs"].as_array().unwrap().iter().flat_map(|p| p["blobs"].as_array().unwrap()).collect();
    assert_eq!(blobs.len(), 3, "{index:#}");
    let kinds: Vec<&str> = blobs.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"data") && kinds.contains(&"chunk-list"), "{kinds:?}");
    let header = v.json(&["cat", "pack", &pack]);
    assert_eq!(header["id"], pack.as_str());
    assert_eq!(&header["blobs"], &index["packs"][0]["blobs"], "the pack header and the index agree");

    let err = v.fails(&["cat", "lock", "ab"]);
    assert_eq!(err.trim(), "error: no file in locks/ matches \"ab\"");
    assert!(v.fails(&["cat", "snapshot"]).contains("<ID>"));
    assert!(v.fails(&["cat", "config", "x"]).contains("`cat config` takes no id"));
    let help = v.ok(&["cat", "--help"]);
    assert!(help.contains("never key material"), "{help}");
}

#[test]
fn foreign_repository_urls_are_refused_not_created() {
    let dir = tempfile::tempdir().unwrap();
    for (url, scheme) in [("rest:http://host:8000/", "rest"), ("b2:bucket:path", "b2"), ("azure:c:/", "azure"), ("gs:b:/", "gs"), ("rclone:remote:path", "rclone"), ("swift:c:/p", "swift")] {
        let o = Command::new(env!("CARGO_BIN_EXE_rdbvault"))
            .args(["-r", url, "init"])
            .current_dir(dir.path())
            .env("RDBVAULT_PASSWORD", "pw")
            .env_remove("RDBVAULT_REPOSITORY")
            .output()
            .unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            err.trim(),
            format!("error: repository {url}: the {scheme}: backend is not supported (use a local path, s3:... or sftp:...)")
        );
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing created in the working directory");
}

#[test]
fn prune_max_unused_unlimited_never_repacks() {
    let v = Vault::init_small_packs();
    let a = random_data(41, 300_000);
    let mut b = a[..150_000].to_vec();
    b.extend_from_slice(&random_data(42, 150_000));
    let first = v.backup_bytes("a.rdb", &a);
    v.backup_bytes("b.rdb", &b);
    v.ok(&["forget", &first]);
    let strict = v.json(&["prune", "--dry-run", "--max-unused", "0%"]);
    assert!(!strict["plan"]["repack_packs"].as_array().unwrap().is_empty(), "a pack holds used and unused data: {strict}");
    let lenient = v.json(&["prune", "--dry-run", "--max-unused", "unlimited"]);
    assert_eq!(lenient["plan"]["repack_packs"], json!([]));
    assert!(!lenient["plan"]["delete_packs"].as_array().unwrap().is_empty(), "wholly unused packs still go");
    let done = v.json(&["prune", "--max-unused", "unlimited"]);
    assert_eq!(done["done"]["new_packs"], 0);
    assert_eq!(v.try_restore("latest").expect("restore b"), b);
    let err = v.fails(&["prune", "--max-unused", "lots"]);
    assert!(err.contains("\"lots\" is not a percentage like 5% (or unlimited)"), "{err}");
}
