//! Choosing snapshots as restic does: `--host`, `--tag`, `--source` on every command that
//! reads snapshots, `latest` as the newest match, `snapshots ID...`, `--latest N`, `tag`.

use crate::common;

use std::path::PathBuf;

use serde_json::{json, Value};

use common::vault::{rdb_fixture, Vault};


/// The ids `snapshots` lists with these options, in its order.
fn listed(v: &Vault, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["snapshots"];
    args.extend_from_slice(extra);
    v.json(&args).as_array().expect("array").iter().map(|s| s["id"].as_str().expect("id").to_string()).collect()
}

fn stderr_of(v: &Vault, args: &[&str]) -> String {
    let o = v.run(args);
    assert!(!o.status.success(), "{args:?} should fail: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Four snapshots, oldest first: a (h1, tags x,y, plain.rdb), b (h1, tag x, compact.rdb),
/// c (h2, tag y, plain.rdb), d (h2, no tags, compact.rdb as other.rdb).
struct Four {
    v: Vault,
    ids: [String; 4],
    plain: Vec<u8>,
    compact: Vec<u8>,
}

fn four() -> Four {
    let v = Vault::init();
    let (plain, compact) = (rdb_fixture("plain.rdb"), rdb_fixture("compact.rdb"));
    let a = v.backup_stdin("dump.rdb", &plain, &["--host", "h1", "--tag", "x,y"]);
    let b = v.backup_stdin("dump.rdb", &compact, &["--host", "h1", "--tag", "x"]);
    let c = v.backup_stdin("dump.rdb", &plain, &["--host", "h2", "--tag", "y"]);
    let d = v.backup_stdin("other.rdb", &compact, &["--host", "h2"]);
    Four { v, ids: [a, b, c, d], plain, compact }
}

fn target(v: &Vault, name: &str) -> PathBuf {
    v.dir.path().join(name)
}

#[test]
fn filters_follow_restic_semantics() {
    let Four { v, ids: [a, b, c, d], .. } = four();
    // `--tag x,y` given to backup makes two tags.
    let all = v.json(&["snapshots"]);
    assert_eq!(all[0]["tags"], json!(["x", "y"]));

    // Comma: all of them; several --tag: any of the lists.
    assert_eq!(listed(&v, &["--tag", "x,y"]), [a.clone()]);
    assert_eq!(listed(&v, &["--tag", "x"]), [a.clone(), b.clone()]);
    assert_eq!(listed(&v, &["--tag", "x", "--tag", "y"]), [a.clone(), b.clone(), c.clone()]);
    assert_eq!(listed(&v, &["--host", "h2"]), [c.clone(), d.clone()]);
    assert_eq!(listed(&v, &["--host", "h1", "--host", "h2"]), [a.clone(), b.clone(), c.clone(), d.clone()]);
    assert_eq!(listed(&v, &["--host", "h2", "--tag", "y"]), [c.clone()]);
    // A source as listed (`kind:name`) or by its name alone.
    assert_eq!(listed(&v, &["--source", "stdin:other.rdb"]), [d.clone()]);
    assert_eq!(listed(&v, &["--source", "other.rdb"]), [d.clone()]);
    assert_eq!(listed(&v, &["--source", "dump.rdb", "--host", "h2"]), [c.clone()]);
    assert!(listed(&v, &["--host", "nobody"]).is_empty());
    assert_eq!(v.ok(&["snapshots", "--host", "nobody"]).lines().last(), Some("0 snapshots"));
}

#[test]
fn latest_is_the_newest_matching_snapshot_everywhere() {
    let Four { v, ids: [a, b, c, d], plain, compact } = four();
    // restore
    let out = target(&v, "h1.rdb");
    v.ok(&["restore", "latest", "--host", "h1", "--target", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), compact, "newest of h1 is b");
    let out = target(&v, "y.rdb");
    v.ok(&["restore", "latest", "--tag", "y", "--target", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), plain, "newest tagged y is c");
    // inspect
    let s = v.json(&["inspect", "latest", "--summary", "--tag", "x,y"]);
    assert_eq!(s["snapshot_id"], a.as_str());
    let s = v.json(&["inspect", "latest", "--summary"]);
    assert_eq!(s["snapshot_id"], d.as_str(), "no filter: the newest of all");
    // diff: both sides resolved under the filters
    let s = v.json(&["diff", &c[..8], "latest", "--host", "h2"]);
    assert_eq!((s["old"]["snapshot_id"].as_str(), s["new"]["snapshot_id"].as_str()), (Some(c.as_str()), Some(d.as_str())));
    let s = v.json(&["diff", "latest", "latest", "--host", "h2", "--source", "dump.rdb"]);
    assert_eq!((s["old"]["snapshot_id"].as_str(), s["new"]["snapshot_id"].as_str()), (Some(c.as_str()), Some(c.as_str())));
    // stats: what a restore of the matching snapshots writes
    let s = v.json(&["stats", "--host", "h1"]);
    assert_eq!(s, json!({"snapshots": 2, "total_file_count": 2, "total_size": plain.len() + compact.len()}));
    let s = v.json(&["stats", "latest", "--host", "h2", "--mode", "restore-size"]);
    assert_eq!(s["total_size"], compact.len());

    // Nothing matches: the error names the filter.
    let err = stderr_of(&v, &["restore", "latest", "--host", "h3", "--target", target(&v, "none").to_str().unwrap()]);
    assert_eq!(err.trim(), "error: no snapshot matches \"latest --host h3\"");
    // A snapshot named by id must match the filters too.
    let err = stderr_of(&v, &["inspect", &b, "--host", "h2", "--summary"]);
    assert_eq!(
        err.trim(),
        format!("error: snapshot {} does not match --host h2 (host h1, source stdin:dump.rdb, tags [x])", &b[..8])
    );
    assert_eq!(listed(&v, &[&b, "--tag", "x"]), [b.clone()]);
    assert!(stderr_of(&v, &["snapshots", &b, "--tag", "y"]).contains("does not match --tag y"));
    // --group restores a whole group: the filters do not apply there.
    let err = stderr_of(&v, &["restore", "--group", "latest", "--host", "h1", "--target", v.dir.path().to_str().unwrap()]);
    assert!(err.contains("--host, --tag and --source do not apply"), "{err}");
}

#[test]
fn forget_applies_its_policy_to_matching_snapshots_only() {
    let Four { v, ids: [a, b, c, d], .. } = four();
    // --keep-tag a,b keeps the snapshots with both tags.
    let r = v.json(&["forget", "--keep-tag", "x,y", "--group-by", "", "--dry-run"]);
    let kept: Vec<&Value> = r["groups"][0]["keep"].as_array().unwrap().iter().map(|d| &d["id"]).collect();
    assert_eq!(kept, [&json!(a)], "{r}");
    assert_eq!(r["groups"][0]["keep"][0]["reasons"], json!(["has tag x,y"]));
    assert_eq!(r["removed"], 3);
    let r = v.json(&["forget", "--keep-tag", "x", "--keep-tag", "y", "--group-by", "", "--dry-run"]);
    assert_eq!(r["removed"], 1, "only d has neither: {r}");
    let r = v.json(&["forget", "--keep-last", "1", "--group-by", "host", "--host", "h1", "--dry-run"]);
    assert_eq!(r["groups"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["groups"][0]["remove"][0]["id"], a.as_str());
    assert_eq!(r["removed"], 1);
    let text = v.ok(&["forget", "--keep-last", "1", "--group-by", "", "--tag", "y"]);
    assert!(text.starts_with("snapshots of all:\nkeep 1 snapshot:\n"), "{text}");
    assert!(text.contains("remove 1 snapshot:\n"), "{text}");
    assert_eq!(listed(&v, &[]), [b.clone(), c.clone(), d.clone()]);
    // Ids with filters: each must match, or nothing is removed.
    let err = stderr_of(&v, &["forget", &b, &d, "--host", "h1"]);
    assert!(err.contains(&format!("snapshot {} does not match --host h1", &d[..8])), "{err}");
    assert_eq!(listed(&v, &[]).len(), 3);
    v.ok(&["forget", &b, "--host", "h1"]);
    assert_eq!(listed(&v, &[]), [c, d]);
}

#[test]
fn snapshots_by_id_and_newest_per_host_and_source() {
    let Four { v, ids: [a, b, c, d], .. } = four();
    let e = v.backup_stdin("dump.rdb", &rdb_fixture("plain.rdb"), &["--host", "h1"]);
    // Named snapshots only, in time order, each once.
    assert_eq!(listed(&v, &[&c[..8], &a, &c]), [a.clone(), c.clone()]);
    assert_eq!(listed(&v, &["latest"]), [e.clone()]);
    // Newest N of each host and source: h1/dump.rdb has a, b, e; h2/dump.rdb c; h2/other.rdb d.
    assert_eq!(listed(&v, &["--latest", "1"]), [c.clone(), d.clone(), e.clone()]);
    assert_eq!(listed(&v, &["--latest", "2"]), [b.clone(), c.clone(), d.clone(), e.clone()]);
    assert_eq!(listed(&v, &["--latest", "1", "--host", "h1"]), [e.clone()]);
    let text = v.ok(&["snapshots", "--latest", "1", "--host", "h2"]);
    assert_eq!(text.lines().last(), Some("2 snapshots"));
    let text = v.ok(&["snapshots", &a]);
    assert_eq!(text.lines().last(), Some("1 snapshot"));
    assert!(stderr_of(&v, &["snapshots", "ffffffff"]).contains("no snapshot matches \"ffffffff\""));
}

#[test]
fn tag_rewrites_changed_snapshots_and_keeps_their_data() {
    let Four { v, ids: [a, b, c, d], plain, .. } = four();
    let out = v.ok(&["tag", "--add", "keep", &a]);
    let tagged = listed(&v, &["--tag", "keep"]);
    assert_eq!(tagged.len(), 1);
    let a2 = tagged[0].clone();
    assert_eq!(out, format!("{} -> {}  tags: x,y,keep\nchanged 1 snapshot\n", &a[..8], &a2[..8]));
    assert_ne!(a2, a, "a changed snapshot is a new file");
    assert!(!v.repo.join("snapshots").join(&a).exists(), "the old file is removed");
    let s = v.json(&["snapshots", &a2]);
    assert_eq!(s[0]["original"], a.as_str());
    assert_eq!(s[0]["tags"], json!(["x", "y", "keep"]));
    assert_eq!(v.try_restore(&a2).expect("restore the retagged snapshot"), plain);

    // Changing it again keeps the first id as `original`.
    let r = v.json(&["tag", "--remove", "y", "--tag", "keep"]);
    assert_eq!(r["changed"], 1);
    let a3 = r["snapshots"][0]["new_id"].as_str().unwrap().to_string();
    assert_eq!(r["snapshots"][0]["old_id"], a2.as_str());
    assert_eq!(v.json(&["snapshots", &a3])[0]["original"], a.as_str());

    // Nothing to change: nothing rewritten.
    assert_eq!(v.ok(&["tag", "--add", "x", "--tag", "x"]), "changed 0 snapshots\n");
    assert_eq!(listed(&v, &[]).len(), 4);
    // Filters choose: every snapshot of h2 loses its tags.
    let r = v.json(&["tag", "--set", "", "--host", "h2"]);
    assert_eq!(r["changed"], 1, "d had no tags: {r}");
    assert!(v.json(&["snapshots", "--host", "h2"]).as_array().unwrap().iter().all(|s| s["tags"] == json!([])));
    assert!(stderr_of(&v, &["snapshots", &c]).contains("no snapshot matches"), "c was rewritten");
    let r = v.json(&["tag", "--set", "p,q", &b]);
    assert_eq!(r["snapshots"][0]["tags"], json!(["p", "q"]));
    assert_eq!(listed(&v, &["--host", "h2"]).len(), 2);
    assert_eq!(listed(&v, &[&d]), [d.clone()], "an unchanged snapshot keeps its id");

    // It writes the repository: it needs a lock, and a change to make.
    assert!(stderr_of(&v, &["--no-lock", "tag", "--add", "z", &d]).contains("this one writes it and must lock it"));
    assert!(stderr_of(&v, &["tag", &d]).contains("--add"));
    assert!(stderr_of(&v, &["tag", "--set", "a", "--add", "b", &d]).contains("cannot be used with"));
}
