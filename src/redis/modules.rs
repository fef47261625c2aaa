//! Module keys in `restore --to`: which module each module data type needs, and whether the
//! target has loaded it (`MODULE LIST`), so a load refuses before writing rather than failing
//! on the first module key.

use std::collections::BTreeMap;

use redis::{ConnectionLike, Value};

/// Well-known module data types (the 9-character names in the RDB) and the names the modules
/// that register them have in `MODULE LIST` (Redis Stack's and Valkey's).
const KNOWN: &[(&str, &[&str])] = &[
    ("ReJSON-RL", &["ReJSON", "json"]),
    ("MBbloom--", &["bf"]),
    ("MBbloomCF", &["bf"]),
    ("TopK-TYPE", &["bf"]),
    ("CMSk-TYPE", &["bf"]),
    ("TDIS-TYPE", &["bf"]),
    ("bloomfltr", &["bf", "bloom"]),
    ("TSDB-TYPE", &["timeseries"]),
    ("graphdata", &["graph"]),
];

/// The modules `MODULE LIST` names on the server, or `None` if it does not answer.
pub fn loaded(con: &mut dyn ConnectionLike) -> Option<Vec<String>> {
    let v: Value = redis::cmd("MODULE").arg("LIST").query(con).ok()?;
    let Value::Array(mods) = v else { return None };
    Some(mods.iter().filter_map(module_name).collect())
}

/// The `name` field of one `MODULE LIST` entry (a flat array in RESP2, a map in RESP3).
fn module_name(entry: &Value) -> Option<String> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    match entry {
        Value::Array(f) => f.chunks(2).find(|p| text(&p[0]).as_deref() == Some("name")).and_then(|p| p.get(1)).and_then(text),
        Value::Map(f) => f.iter().find(|(k, _)| text(k).as_deref() == Some("name")).and_then(|(_, v)| text(v)),
        _ => None,
    }
}

/// The module types of `needed` (type name -> keys) that a server with `loaded` modules
/// cannot load, each described for the refusal: `ReJSON-RL (module ReJSON, 3 keys)`. A type
/// not in the table is taken as loadable when the server has any module at all.
pub fn missing(needed: &BTreeMap<String, u64>, loaded: &[String]) -> Vec<String> {
    let has = |m: &str| loaded.iter().any(|l| l.eq_ignore_ascii_case(m));
    let keys = |n: u64| if n == 1 { "1 key".to_string() } else { format!("{n} keys") };
    needed
        .iter()
        .filter_map(|(ty, n)| match KNOWN.iter().find(|(t, _)| t == ty) {
            Some((_, mods)) if !mods.iter().any(|m| has(m)) => Some(format!("{ty} (module {}, {})", mods.join(" or "), keys(*n))),
            None if loaded.is_empty() => Some(format!("{ty} (a module that registers this data type, {})", keys(*n))),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_types() {
        let needed: BTreeMap<String, u64> = [("ReJSON-RL".to_string(), 3), ("custom-01".to_string(), 1)].into();
        assert_eq!(
            missing(&needed, &[]),
            vec!["ReJSON-RL (module ReJSON or json, 3 keys)", "custom-01 (a module that registers this data type, 1 key)"]
        );
        assert_eq!(missing(&needed, &["rejson".into()]), Vec::<String>::new());
        assert_eq!(missing(&needed, &["bf".into()]), vec!["ReJSON-RL (module ReJSON or json, 3 keys)"]);
    }

    #[test]
    fn reads_module_list_entries() {
        let flat = Value::Array(vec![
            Value::BulkString(b"name".to_vec()),
            Value::BulkString(b"ReJSON".to_vec()),
            Value::BulkString(b"ver".to_vec()),
            Value::Int(20000),
        ]);
        assert_eq!(module_name(&flat).as_deref(), Some("ReJSON"));
    }
}
