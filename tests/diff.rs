//! `rdbvault diff` finds exactly the keys a test added, removed and changed.

use crate::common;

use std::collections::BTreeSet;

use common::dataset::{backup_now, json_bytes, Backed};
use serde_json::Value as Json;

/// `(db, key)` pairs of the changes of one kind (`added`, `removed`, `changed`) of `diff --json`.
fn set(d: &Json, kind: &str) -> BTreeSet<(u64, String)> {
    d["changes"]
        .as_array()
        .expect("array")
        .iter()
        .filter(|c| c["change"] == kind)
        .map(|c| (c["db"].as_u64().unwrap(), String::from_utf8_lossy(&json_bytes(&c["key"])).into_owned()))
        .collect()
}

fn pairs(items: &[(u64, &str)]) -> BTreeSet<(u64, String)> {
    items.iter().map(|(db, k)| (*db, k.to_string())).collect()
}

#[test]
fn diff_reports_exactly_the_changed_keys() {
    let b = Backed::new();
    let mut c = b.srv.resp();
    let same = b.vault.json(&["diff", &b.snap, &b.snap]);
    assert_eq!(same["counts"]["added"], 0);
    assert_eq!(same["counts"]["removed"], 0);
    assert_eq!(same["counts"]["changed"], 0);

    c.ok(&["SET", "str:short", "hello!"]); // value
    c.ok(&["EXPIRE", "str:int", "1000"]); // expiry only
    c.ok(&["HSET", "hash:big", "field7", "other"]); // one field of a big hash
    c.ok(&["XADD", "stream:s", "3000-0", "f", "v"]); // stream entry
    c.ok(&["DEL", "list:small"]);
    c.ok(&["SET", "new:key", "1"]);
    c.ok(&["SELECT", "1"]);
    c.ok(&["HSET", "user:4", "visits", "99"]);
    c.ok(&["DEL", "user:5"]);
    c.ok(&["SELECT", "3"]);
    c.ok(&["SET", "user:5", "now in db 3"]);
    c.ok(&["SELECT", "0"]);
    let after = backup_now(&b.srv, &b.vault);

    let d = b.vault.json(&["diff", &b.snap, &after]);
    assert_eq!(set(&d, "added"), pairs(&[(0, "new:key"), (3, "user:5")]));
    assert_eq!(set(&d, "removed"), pairs(&[(0, "list:small"), (1, "user:5")]));
    assert_eq!(
        set(&d, "changed"),
        pairs(&[(0, "str:short"), (0, "str:int"), (0, "hash:big"), (0, "stream:s"), (1, "user:4")])
    );
    let total: u64 = common::dataset::keyspace(&mut c).values().map(|(k, _)| k).sum();
    assert_eq!(d["counts"]["unchanged"].as_u64().unwrap() + 7, total);

    // --type narrows it to the keys of one type (redis-rdb-tools' --type).
    let d = b.vault.json(&["diff", &b.snap, &after, "--type", "hash"]);
    assert_eq!(set(&d, "changed"), pairs(&[(0, "hash:big"), (1, "user:4")]));
    assert_eq!(set(&d, "removed"), pairs(&[(1, "user:5")]));
    assert_eq!(set(&d, "added"), pairs(&[]));
    let err = b.vault.fails(&["diff", &b.snap, &after, "--type", "blob"]);
    assert!(err.contains("unknown type \"blob\""), "{err}");

    // --keys and --db narrow the comparison.
    let d = b.vault.json(&["diff", &b.snap, &after, "--keys", "user:*"]);
    assert_eq!(set(&d, "added"), pairs(&[(3, "user:5")]));
    assert_eq!(set(&d, "removed"), pairs(&[(1, "user:5")]));
    assert_eq!(set(&d, "changed"), pairs(&[(1, "user:4")]));
    let d = b.vault.json(&["diff", &b.snap, &after, "--db", "0", "--keys", "str:*"]);
    assert_eq!(set(&d, "changed"), pairs(&[(0, "str:short"), (0, "str:int")]));
    assert_eq!(d["counts"]["added"], 0);

    // Text output: one line per key, then the counts.
    let text = b.vault.ok(&["diff", &b.snap, &after, "--keys", "user:*"]);
    let lines: Vec<&str> = text.lines().collect();
    // Sorted by db and key, each change saying what changed.
    assert_eq!(lines, ["~ 1 user:4  value", "- 1 user:5", "+ 3 user:5", "1 added, 1 removed, 1 changed, 59 unchanged"]);
}
