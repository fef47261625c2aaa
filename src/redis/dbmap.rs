//! Which database each key of `restore --to` goes to: `/N` in the URL, `--map-db FROM:TO`.
//!
//! Rules, as a redis-cli user expects them: a URL without a database keeps every key in
//! its own db. `/N` (or `?db=N`) is where the keys go, so they must come from one db:
//! the one `--db FROM` selects, or the only one the snapshot holds; a snapshot with
//! several dbs and no `--db` is refused. `--map-db FROM:TO` (repeatable) moves the keys of
//! FROM to TO and keeps other dbs as they are; it cannot be combined with `/N`, and two
//! source dbs may not land in one target (their keys could collide).

use std::collections::BTreeMap;

/// Source db -> target db; with `strict`, a db not listed has no target (an error).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbMap {
    pairs: BTreeMap<u64, u64>,
    strict: bool,
}

impl DbMap {
    /// The db a key of `db` goes to; `None` if it has none (a key the rule did not expect).
    pub fn target(&self, db: u64) -> Option<u64> {
        match self.pairs.get(&db) {
            Some(to) => Some(*to),
            None if self.strict => None,
            None => Some(db),
        }
    }

    /// Whether keys keep their db.
    pub fn is_identity(&self) -> bool {
        !self.strict && self.pairs.iter().all(|(from, to)| from == to)
    }

    /// Applies the rules above. `url_db` is the db the URL names, `pairs` the `--map-db`
    /// flags, `only_db` the `--db` filter, `snapshot_dbs` the dbs the snapshot holds keys
    /// in (`None` if its facts do not say). The error says what to give instead.
    pub fn for_restore(url_db: Option<u64>, pairs: &[(u64, u64)], only_db: Option<u64>, snapshot_dbs: Option<&[u64]>) -> Result<DbMap, String> {
        if let Some(n) = url_db {
            if !pairs.is_empty() {
                return Err(format!(
                    "the --to URL names db {n} and --map-db is given: use one of them (drop /{n} from the URL, or write --map-db FROM:{n})"
                ));
            }
            let from = match (only_db, snapshot_dbs) {
                (Some(from), _) => from,
                (None, Some([])) => return Ok(DbMap::default()),
                (None, Some([one])) => *one,
                (None, Some(many)) => {
                    let list: Vec<String> = many.iter().map(u64::to_string).collect();
                    return Err(format!(
                        "the --to URL names db {n} but the snapshot holds keys in dbs {}: choose the one to restore into db {n} \
                         with --db FROM, or drop /{n} from the URL to keep every key in its own db (--map-db FROM:TO moves some)",
                        list.join(", ")
                    ));
                }
                (None, None) => {
                    return Err(format!(
                        "the --to URL names db {n} but the snapshot does not record which dbs it holds: choose the db whose keys go to db {n} with --db FROM"
                    ))
                }
            };
            return Ok(DbMap { pairs: BTreeMap::from([(from, n)]), strict: true });
        }
        let mut map = BTreeMap::new();
        for &(from, to) in pairs {
            if map.insert(from, to).is_some_and(|old| old != to) {
                return Err(format!("--map-db gives two targets for db {from}"));
            }
        }
        let map = DbMap { pairs: map, strict: false };
        // Every source db that will be restored, and where it lands: no two into one.
        let sources: Vec<u64> = match snapshot_dbs {
            Some(dbs) => dbs.iter().copied().filter(|d| only_db.is_none_or(|o| o == *d)).collect(),
            None => map.pairs.keys().copied().collect(),
        };
        let mut into: BTreeMap<u64, u64> = BTreeMap::new();
        for from in sources {
            let to = map.target(from).unwrap_or(from);
            if let Some(other) = into.insert(to, from) {
                return Err(format!(
                    "--map-db would put the keys of db {other} and db {from} both into db {to}, where they could collide: map them to different dbs"
                ));
            }
        }
        Ok(map)
    }
}

/// Parses one `--map-db FROM:TO`.
pub fn parse_pair(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("{s:?} is not FROM:TO (two database numbers, e.g. 0:3)");
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    Ok((a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_db_takes_one_source_db() {
        let m = DbMap::for_restore(Some(3), &[], None, Some(&[0])).unwrap();
        assert_eq!((m.target(0), m.target(1)), (Some(3), None));
        let m = DbMap::for_restore(Some(3), &[], Some(5), Some(&[0, 5])).unwrap();
        assert_eq!((m.target(5), m.target(0)), (Some(3), None));
        assert!(DbMap::for_restore(Some(3), &[], None, Some(&[0, 5])).unwrap_err().contains("dbs 0, 5"));
        assert!(DbMap::for_restore(Some(3), &[], None, None).is_err());
        assert!(DbMap::for_restore(Some(3), &[(0, 1)], None, None).is_err());
        assert!(DbMap::for_restore(Some(3), &[], None, Some(&[])).unwrap().is_identity());
    }

    #[test]
    fn map_db_moves_and_refuses_merges() {
        let m = DbMap::for_restore(None, &[(0, 4)], None, Some(&[0, 1])).unwrap();
        assert_eq!((m.target(0), m.target(1)), (Some(4), Some(1)));
        assert!(DbMap::for_restore(None, &[(0, 1)], None, Some(&[0, 1])).unwrap_err().contains("db 0 and db 1"));
        assert!(DbMap::for_restore(None, &[(0, 1)], Some(0), Some(&[0, 1])).is_ok());
        assert!(DbMap::for_restore(None, &[(0, 2), (1, 2)], None, None).is_err());
        assert!(DbMap::for_restore(None, &[(0, 2), (0, 3)], None, None).is_err());
        assert_eq!(parse_pair("0:3"), Ok((0, 3)));
        assert!(parse_pair("0-3").is_err() && parse_pair("a:1").is_err());
    }
}
