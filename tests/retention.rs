//! Retention tables: for fixed snapshot times, exactly which snapshots each
//! policy keeps (restic semantics), and why.

use rdbvault::maintain::forget::{apply, GroupBy, Policy, Row, Within};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const TIMES: [&str; 14] = [
    "2022-12-31T23:00:00Z", // s01
    "2023-06-01T00:00:00Z", // s02
    "2024-01-01T10:00:00Z", // s03
    "2024-01-01T12:00:00Z", // s04
    "2024-01-02T09:00:00Z", // s05 (release)
    "2024-01-02T18:00:00Z", // s06
    "2024-01-08T08:00:00Z", // s07
    "2024-01-15T08:00:00Z", // s08
    "2024-02-01T00:00:00Z", // s09 (release)
    "2024-02-20T00:00:00Z", // s10
    "2024-03-05T10:00:00Z", // s11
    "2024-03-05T10:30:00Z", // s12
    "2024-03-05T11:15:00Z", // s13
    "2024-03-06T09:00:00Z", // s14
];

fn t(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

fn rows() -> Vec<Row> {
    TIMES
        .iter()
        .enumerate()
        .map(|(i, time)| Row {
            id: format!("s{:02}", i + 1),
            time: t(time),
            host: "h".into(),
            source: "file:/dump.rdb".into(),
            tags: if i == 4 || i == 8 { vec!["release".into()] } else { vec![] },
        })
        .collect()
}

/// Kept ids, sorted.
fn kept(policy: Policy) -> Vec<String> {
    let groups = apply(&rows(), &policy, GroupBy::default());
    assert_eq!(groups.len(), 1);
    let g = &groups[0];
    assert_eq!(g.keep.len() + g.remove.len(), TIMES.len());
    let mut k: Vec<String> = g.keep.iter().map(|d| d.id.clone()).collect();
    k.sort();
    k
}

fn ids(list: &[u32]) -> Vec<String> {
    list.iter().map(|i| format!("s{i:02}")).collect()
}

fn within(s: &str) -> Option<Within> {
    Some(Within::parse(s).unwrap())
}

#[test]
fn retention_table() {
    let table: Vec<(&str, Policy, Vec<u32>)> = vec![
        ("keep-last 3", Policy { last: 3, ..Policy::default() }, vec![12, 13, 14]),
        ("keep-last 100", Policy { last: 100, ..Policy::default() }, (1..=14).collect()),
        // 10:00 and 10:30 share an hour: the newer (s12) stands for it.
        ("keep-hourly 4", Policy { hourly: 4, ..Policy::default() }, vec![10, 12, 13, 14]),
        // The newest snapshot of each day: s13 for 03-05.
        ("keep-daily 4", Policy { daily: 4, ..Policy::default() }, vec![9, 10, 13, 14]),
        ("keep-daily 8", Policy { daily: 8, ..Policy::default() }, vec![4, 6, 7, 8, 9, 10, 13, 14]),
        // ISO weeks 10, 8, 5 of 2024.
        ("keep-weekly 3", Policy { weekly: 3, ..Policy::default() }, vec![9, 10, 14]),
        // Weeks 10, 8, 5, 3, 2, 1 (s06 newest of week 1), then 2023-W22, 2022-W52.
        ("keep-weekly 10", Policy { weekly: 10, ..Policy::default() }, vec![1, 2, 6, 7, 8, 9, 10, 14]),
        ("keep-monthly 3", Policy { monthly: 3, ..Policy::default() }, vec![8, 10, 14]),
        ("keep-yearly 10", Policy { yearly: 10, ..Policy::default() }, vec![1, 2, 14]),
        ("keep-yearly 2", Policy { yearly: 2, ..Policy::default() }, vec![2, 14]),
        // Newest is 03-06 09:00; 1d back is 03-05 09:00.
        ("keep-within 1d", Policy { within: within("1d"), ..Policy::default() }, vec![11, 12, 13, 14]),
        // 23h back is exactly s11's time: strictly newer only.
        ("keep-within 23h", Policy { within: within("23h"), ..Policy::default() }, vec![12, 13, 14]),
        ("keep-within 1m", Policy { within: within("1m"), ..Policy::default() }, vec![10, 11, 12, 13, 14]),
        ("keep-within 1y", Policy { within: within("1y"), ..Policy::default() }, (2..=14).collect()),
        ("keep-tag release", Policy { tags: vec!["release".into()], ..Policy::default() }, vec![5, 9]),
        (
            "keep-last 1 + keep-monthly 2 + keep-tag release",
            Policy { last: 1, monthly: 2, tags: vec!["release".into()], ..Policy::default() },
            vec![5, 9, 10, 14],
        ),
        (
            "restic-style combination",
            Policy { last: 2, daily: 3, weekly: 2, monthly: 2, yearly: 3, ..Policy::default() },
            vec![1, 2, 10, 13, 14],
        ),
    ];
    for (name, policy, want) in table {
        assert_eq!(kept(policy), ids(&want), "policy {name}");
    }
}

#[test]
fn reasons_name_every_rule_that_keeps_a_snapshot() {
    let policy = Policy { last: 1, monthly: 2, within: within("1d"), tags: vec!["release".into()], ..Policy::default() };
    let groups = apply(&rows(), &policy, GroupBy::default());
    let reasons = |id: &str| groups[0].keep.iter().find(|d| d.id == id).map(|d| d.reasons.clone()).unwrap_or_default();
    assert_eq!(reasons("s14"), vec!["last snapshot", "monthly snapshot", "within 1d"]);
    assert_eq!(reasons("s10"), vec!["monthly snapshot"]);
    assert_eq!(reasons("s09"), vec!["has tag release"]);
    assert_eq!(reasons("s12"), vec!["within 1d"]);
    assert!(groups[0].remove.iter().all(|d| d.reasons.is_empty()));
    assert_eq!(groups[0].remove.iter().map(|d| d.id.as_str()).collect::<Vec<_>>()[0], "s08", "newest first");
}

#[test]
fn groups_are_separate_unless_merged() {
    let mut all = rows();
    for r in rows() {
        all.push(Row { id: format!("o{}", &r.id[1..]), host: "other".into(), ..r });
    }
    let policy = Policy { last: 1, ..Policy::default() };
    let groups = apply(&all, &policy, GroupBy::default());
    assert_eq!(groups.len(), 2);
    let kept: Vec<&str> = groups.iter().flat_map(|g| g.keep.iter().map(|d| d.id.as_str())).collect();
    assert_eq!(kept, vec!["s14", "o14"]);
    let merged = apply(&all, &policy, GroupBy::parse("source").unwrap());
    assert_eq!(merged.len(), 1);
    assert_eq!(merged[0].keep.len(), 1);
    let by_tags = apply(&rows(), &policy, GroupBy::parse("host,tags").unwrap());
    assert_eq!(by_tags.len(), 2, "tagged and untagged snapshots form two groups");
    assert!(GroupBy::parse("colour").is_err());
}

#[test]
fn within_parsing_and_calendar_arithmetic() {
    let w = Within::parse("1y2m3d4h").unwrap();
    assert_eq!(w, Within { years: 1, months: 2, days: 3, hours: 4 });
    assert_eq!(w.to_string(), "1y2m3d4h");
    for bad in ["", "2", "d", "2x", "1d1d", "-1d"] {
        assert!(Within::parse(bad).is_err(), "{bad:?} should not parse");
    }
    assert_eq!(Within::parse("1m").unwrap().before(t("2024-03-31T12:00:00Z")), t("2024-02-29T12:00:00Z"));
    assert_eq!(Within::parse("1y").unwrap().before(t("2024-02-29T00:00:00Z")), t("2023-02-28T00:00:00Z"));
    assert_eq!(Within::parse("2m1d").unwrap().before(t("2024-01-15T00:00:00Z")), t("2023-11-14T00:00:00Z"));
    assert_eq!(Within::parse("36h").unwrap().before(t("2024-01-02T12:00:00Z")), t("2024-01-01T00:00:00Z"));
}

#[test]
fn empty_policy_is_detected() {
    assert!(Policy::default().is_empty());
    assert!(!Policy { tags: vec!["x".into()], ..Policy::default() }.is_empty());
    assert!(!Policy { within: within("1h"), ..Policy::default() }.is_empty());
}
