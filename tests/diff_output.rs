//! What `diff` tells a person and a script: changes sorted by db and key, what changed
//! (value, TTL, type; a re-encoding apart), and `--exit-code`.

use crate::common;

use common::handmade::Rdb;
use common::vault::Vault;
use serde_json::json;

const T1: u64 = 4_102_444_800_000; // 2100-01-01
const T2: u64 = 4_133_980_800_000; // 2101-01-01

fn backup_rdb(vault: &Vault, name: &str, rdb: Vec<u8>) -> String {
    let path = vault.dir.path().join(name);
    std::fs::write(&path, rdb).expect("write rdb");
    vault.backup(&path, &[]).0
}

/// Two snapshots: in the second, `b`'s value, `c`'s TTL and `d`'s type changed, `n` was
/// re-encoded (intset -> hashtable, same members), `e` was added, `z` removed; db 1 is the same.
fn pair(vault: &Vault) -> (String, String) {
    let old = Rdb::new("7.0.15")
        .string(0, b"z", b"gone", None)
        .string(0, b"b", b"x", None)
        .string(0, b"c", b"y", Some(T1))
        .set(0, b"d", &[b"m"])
        .intset(0, b"n", &[1, 2])
        .string(1, b"k", b"same", None)
        .bytes();
    let new = Rdb::new("7.0.15")
        .string(0, b"e", b"new", None)
        .string(0, b"b", b"changed", None)
        .string(0, b"c", b"y", Some(T2))
        .hash(0, b"d", &[(b"m", b"1")])
        .set(0, b"n", &[b"2", b"1"])
        .string(1, b"k", b"same", None)
        .bytes();
    (backup_rdb(vault, "old.rdb", old), backup_rdb(vault, "new.rdb", new))
}

#[test]
fn diff_is_sorted_and_says_what_changed_in_text_and_json() {
    let vault = Vault::init();
    let (old, new) = pair(&vault);
    let text = vault.ok(&["diff", &old, &new]);
    assert_eq!(
        text,
        "\
~ 0 b  value
~ 0 c  ttl 2100-01-01T00:00:00.000Z -> 2101-01-01T00:00:00.000Z
~ 0 d  type set -> hash
+ 0 e
= 0 n  encoding intset -> hashtable
- 0 z
1 added, 1 removed, 3 changed, 1 re-encoded with the same data, 1 unchanged
"
    );
    let d = vault.json(&["diff", &old, &new]);
    let state = |t: &str, e: &str, x: Option<u64>| json!({"type": t, "encoding": e, "expire_at_ms": x});
    assert_eq!(
        d["changes"],
        json!([
            {"db": 0, "key": "b", "change": "changed", "what": ["value"], "old": state("string", "embstr", None), "new": state("string", "embstr", None)},
            {"db": 0, "key": "c", "change": "changed", "what": ["ttl"], "old": state("string", "embstr", Some(T1)), "new": state("string", "embstr", Some(T2))},
            {"db": 0, "key": "d", "change": "changed", "what": ["type", "value"], "old": state("set", "hashtable", None), "new": state("hash", "hashtable", None)},
            {"db": 0, "key": "e", "change": "added", "what": [], "old": null, "new": state("string", "embstr", None)},
            {"db": 0, "key": "n", "change": "reencoded", "what": ["encoding"], "old": state("set", "intset", None), "new": state("set", "hashtable", None)},
            {"db": 0, "key": "z", "change": "removed", "what": [], "old": state("string", "embstr", None), "new": null},
        ])
    );
    assert_eq!(d["counts"], json!({"added": 1, "removed": 1, "changed": 3, "reencoded": 1, "unchanged": 1}));
    assert_eq!(d["differences"], 5);
    assert_eq!((d["old"]["snapshot_id"].as_str(), d["new"]["file"].as_str()), (Some(old.as_str()), Some("new.rdb")));
}

#[test]
fn exit_code_says_whether_the_snapshots_differ_and_errors_exit_above_1() {
    let vault = Vault::init();
    let (old, new) = pair(&vault);
    let status = |args: &[&str]| vault.run(args).status.code();
    assert_eq!(status(&["diff", &old, &new, "--exit-code"]), Some(1));
    assert_eq!(status(&["--json", "diff", &old, &new, "--exit-code"]), Some(1));
    assert_eq!(status(&["diff", &old, &old, "--exit-code"]), Some(0));
    assert_eq!(status(&["diff", &old, &new]), Some(0), "without --exit-code a difference is no failure");
    // Only a re-encoding: the same data, no difference.
    let a = backup_rdb(&vault, "a.rdb", Rdb::new("7.0.15").intset(0, b"n", &[1, 2]).bytes());
    let b = backup_rdb(&vault, "b.rdb", Rdb::new("7.0.15").set(0, b"n", &[b"1", b"2"]).bytes());
    assert_eq!(status(&["diff", &a, &b, "--exit-code"]), Some(0));
    // Errors: 2 with --exit-code (1 would read as "differences"), 1 without.
    let o = vault.run(&["diff", &old, "ffffffff", "--exit-code"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("error: "), "the error is named");
    assert_eq!(status(&["diff", &old, "ffffffff"]), Some(1));
}
