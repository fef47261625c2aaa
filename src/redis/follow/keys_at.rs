//! `restore --at T --keys PATTERN`: the matching keys as they were at T, from the log's
//! commands about them (commands about other keys are left out).
//!
//! A command is placed by the keys it names (the replication stream holds effects: scripts
//! and blocking commands arrive as the plain writes they did):
//! - every key matches: kept; none matches: left out;
//! - independent keys (`DEL a b`, `MSET a 1 b 2`): kept with the matching keys only;
//! - data leaving a matching key for another (`RENAME user:1 tmp`, `SMOVE`, `LMOVE`): what it
//!   does to the matching key is kept (`DEL user:1`, `SREM`, `LPOP`);
//! - data entering a matching key from another (`RENAME tmp user:1`, `SUNIONSTORE user:1 a b`,
//!   `COPY`): the matching key's state depends on keys left out, so the restore is refused
//!   before anything is written, naming the command (`SMOVE` is the exception: `SADD`);
//! - `FLUSHDB`/`FLUSHALL` delete the matching keys only (a script running `KEYS PATTERN`);
//! - commands this table does not know, and `SWAPDB`, are refused.

use crate::redis::keyscan::KeyFilter;

use super::resp::{self, Frame};
use super::{FollowError, Result};

/// Which keys to restore: the filter, and the `--keys` pattern as given (for FLUSH).
#[derive(Debug, Clone)]
pub struct KeySelect {
    /// Pattern and exclusion (the db part is not used: the log keeps every db).
    pub filter: KeyFilter,
    /// The `--keys` pattern, in Redis `KEYS` syntax (`*` when only `--not-keys` is given).
    pub pattern: Vec<u8>,
}

impl KeySelect {
    fn matches(&self, key: &[u8]) -> bool {
        self.filter.matches_key(0, key)
    }
}

/// Keyless commands that touch no key: left out of a filtered log.
const KEYLESS: &[&str] = &["PUBLISH", "SPUBLISH", "FUNCTION", "SCRIPT"];
/// Commands whose key is argument 1 and that touch no other key.
const ONE_KEY: &[&str] = &[
    "SET", "SETNX", "SETEX", "PSETEX", "APPEND", "SETRANGE", "INCR", "DECR", "INCRBY", "DECRBY", "INCRBYFLOAT", "GETSET", "GETDEL", "GETEX",
    "SETBIT", "BITFIELD", "EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT", "PERSIST", "RESTORE", "RESTORE-ASKING", "MOVE", "HSET", "HSETNX",
    "HMSET", "HDEL", "HINCRBY", "HINCRBYFLOAT", "LPUSH", "RPUSH", "LPUSHX", "RPUSHX", "LINSERT", "LSET", "LREM", "LTRIM", "LPOP", "RPOP",
    "SADD", "SREM", "SPOP", "ZADD", "ZINCRBY", "ZREM", "ZREMRANGEBYSCORE", "ZREMRANGEBYRANK", "ZREMRANGEBYLEX", "ZPOPMIN", "ZPOPMAX", "PFADD",
    "PFDEBUG", "GEOADD", "XADD", "XDEL", "XTRIM", "XSETID", "XCLAIM", "XAUTOCLAIM", "XACK",
];
/// Commands naming several keys that each change on their own: `(name, first key, step)`.
const EACH_KEY: &[(&str, usize, usize)] = &[("DEL", 1, 1), ("UNLINK", 1, 1), ("PFCOUNT", 1, 1), ("TOUCH", 1, 1), ("MSET", 1, 2), ("MSETNX", 1, 2)];

/// What a filtered log does with one command.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    Skip,
    /// Send this command instead (as its arguments).
    Instead(Vec<Vec<u8>>),
}

/// Decides about one data command (`args[0]` is its name).
fn place(sel: &KeySelect, args: &[&[u8]]) -> std::result::Result<Verdict, String> {
    let Some(cmd) = args.first() else { return Err("an empty command (a damaged log segment?)".into()) };
    let name = String::from_utf8_lossy(cmd).to_ascii_uppercase();
    let n = name.as_str();
    let m = |i: usize| args.get(i).is_some_and(|k| sel.matches(k));
    let key = |i: usize| String::from_utf8_lossy(args.get(i).copied().unwrap_or_default()).into_owned();
    let all_or_none = |keys: &[usize]| {
        if keys.iter().all(|&i| m(i)) {
            Verdict::Keep
        } else {
            Verdict::Skip
        }
    };
    let into = |dst: usize, src: usize| format!("{n} fills {:?}, which matches, from {:?}, which does not", key(dst), key(src));
    Ok(match n {
        "SELECT" => Verdict::Keep,
        _ if KEYLESS.contains(&n) => Verdict::Skip,
        _ if ONE_KEY.contains(&n) => all_or_none(&[1]),
        "XGROUP" => all_or_none(&[2]),
        "FLUSHDB" | "FLUSHALL" => {
            if sel.filter.exclude.is_some() {
                return Err(format!("{n} with --not-keys (only a --keys pattern can be flushed alone)"));
            }
            let script = if n == "FLUSHDB" { FLUSH_DB } else { FLUSH_ALL };
            Verdict::Instead(vec![b"EVAL".to_vec(), script.as_bytes().to_vec(), b"0".to_vec(), sel.pattern.clone()])
        }
        _ if EACH_KEY.iter().any(|e| e.0 == n) => {
            let Some(&(_, first, step)) = EACH_KEY.iter().find(|e| e.0 == n) else { return Ok(Verdict::Skip) };
            let groups: Vec<&[&[u8]]> = args.get(first..).unwrap_or_default().chunks(step).collect();
            let kept: Vec<&[&[u8]]> = groups.iter().copied().filter(|g| sel.matches(g[0])).collect();
            if kept.len() == groups.len() {
                Verdict::Keep
            } else if kept.is_empty() {
                Verdict::Skip
            } else {
                let mut out = vec![cmd.to_vec()];
                out.extend(kept.iter().flat_map(|g| g.iter().map(|a| a.to_vec())));
                Verdict::Instead(out)
            }
        }
        // Data moves from the key at 1 into the key at 2.
        "RENAME" | "RENAMENX" | "SMOVE" | "LMOVE" | "RPOPLPUSH" | "COPY" => match (m(1), m(2)) {
            (true, true) => Verdict::Keep,
            (false, false) => Verdict::Skip,
            (true, false) => match n {
                "RENAME" | "RENAMENX" => Verdict::Instead(vec![b"DEL".to_vec(), args[1].to_vec()]),
                "SMOVE" => Verdict::Instead(vec![b"SREM".to_vec(), args[1].to_vec(), args.get(3).copied().unwrap_or_default().to_vec()]),
                "LMOVE" => {
                    let pop = if args.get(3).is_some_and(|w| w.eq_ignore_ascii_case(b"left")) { "LPOP" } else { "RPOP" };
                    Verdict::Instead(vec![pop.as_bytes().to_vec(), args[1].to_vec()])
                }
                "RPOPLPUSH" => Verdict::Instead(vec![b"RPOP".to_vec(), args[1].to_vec()]),
                _ => Verdict::Skip,
            },
            // The master logs SMOVE only when the member moved: it joined the destination.
            (false, true) if n == "SMOVE" => Verdict::Instead(vec![b"SADD".to_vec(), args[2].to_vec(), args.get(3).copied().unwrap_or_default().to_vec()]),
            (false, true) => return Err(into(2, 1)),
        },
        // A destination computed from source keys, which stay as they are.
        "SUNIONSTORE" | "SINTERSTORE" | "SDIFFSTORE" | "PFMERGE" | "ZRANGESTORE" | "GEOSEARCHSTORE" | "BITOP" | "ZUNIONSTORE" | "ZINTERSTORE"
        | "ZDIFFSTORE" => {
            let (dst, sources): (usize, Vec<usize>) = match n {
                "BITOP" => (2, (3..args.len()).collect()),
                "ZRANGESTORE" | "GEOSEARCHSTORE" => (1, vec![2]),
                "ZUNIONSTORE" | "ZINTERSTORE" | "ZDIFFSTORE" => {
                    let count = args.get(2).and_then(|c| std::str::from_utf8(c).ok()).and_then(|c| c.parse::<usize>().ok()).unwrap_or(0);
                    (1, (3..(3 + count).min(args.len())).collect())
                }
                _ => (1, (2..args.len()).collect()),
            };
            if !m(dst) {
                Verdict::Skip
            } else if let Some(&src) = sources.iter().find(|&&i| !m(i)) {
                return Err(into(dst, src));
            } else {
                Verdict::Keep
            }
        }
        "SWAPDB" => return Err("SWAPDB (it moves every key of two dbs)".into()),
        _ => return Err(format!("{n}, which --keys cannot place (it does not know which keys it changes)")),
    })
}

/// FLUSHDB for the matching keys: deletes what `KEYS ARGV[1]` finds.
const FLUSH_DB: &str = "for _,k in ipairs(redis.call('KEYS',ARGV[1])) do redis.call('DEL',k) end return 0";
/// FLUSHALL for the matching keys: the same in every db the server has.
const FLUSH_ALL: &str = "local db=0 while true do local r=redis.pcall('SELECT',db) if type(r)=='table' and r.err then break end \
for _,k in ipairs(redis.call('KEYS',ARGV[1])) do redis.call('DEL',k) end db=db+1 end return 0";

/// A log sink that passes on the commands about matching keys (see the module doc).
pub struct KeyLog<'s> {
    sel: &'s KeySelect,
    /// A MULTI not passed on yet (it is, before the first command of its block that is).
    multi: Option<Vec<u8>>,
    /// The MULTI of the current block was passed on: so is its EXEC.
    open: bool,
    /// Commands passed on (rewritten ones included), and their bytes.
    pub kept: u64,
    pub kept_bytes: u64,
    /// Commands left out.
    pub skipped: u64,
}

impl<'s> KeyLog<'s> {
    /// A filter for `sel`.
    pub fn new(sel: &'s KeySelect) -> KeyLog<'s> {
        KeyLog { sel, multi: None, open: false, kept: 0, kept_bytes: 0, skipped: 0 }
    }

    /// Takes one command of the log (MULTI and EXEC included) and passes what it keeps to `sink`.
    pub fn take(&mut self, bytes: &[u8], frame: &Frame, sink: &mut dyn FnMut(&[u8], &Frame) -> Result<()>) -> Result<()> {
        let args: Vec<&[u8]> = (0..frame.args.len()).filter_map(|i| frame.arg(bytes, i)).collect();
        let name = frame.name(bytes);
        match name.as_str() {
            "MULTI" => {
                self.multi = Some(bytes.to_vec());
                self.open = false;
                return Ok(());
            }
            "EXEC" => {
                self.multi = None;
                if std::mem::take(&mut self.open) {
                    sink(bytes, frame)?;
                }
                return Ok(());
            }
            _ => {}
        }
        let verdict = place(self.sel, &args).map_err(|why| {
            FollowError::NotCovered(format!(
                "restore --at with --keys: the log holds {why}; the matching keys' state at that time depends on keys the pattern leaves out, \
                 so nothing was restored: widen --keys, or restore the whole server (--target FILE.rdb or --to a scratch server) and copy the keys from there"
            ))
        })?;
        let owned;
        let (bytes, frame) = match verdict {
            Verdict::Skip => {
                self.skipped += 1;
                return Ok(());
            }
            Verdict::Keep => (bytes, frame),
            Verdict::Instead(new) => {
                let mut out = Vec::new();
                resp::encode(&mut out, &new.iter().map(Vec::as_slice).collect::<Vec<_>>());
                let Ok(Some(f)) = resp::parse(&out) else { return Err(FollowError::NotCovered(format!("could not rewrite {name}"))) };
                owned = (out, f);
                (owned.0.as_slice(), &owned.1)
            }
        };
        if let Some(m) = self.multi.take() {
            if let Ok(Some(f)) = resp::parse(&m) {
                sink(&m, &f)?;
                self.open = true;
            }
        }
        self.kept += 1;
        self.kept_bytes += bytes.len() as u64;
        sink(bytes, frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::glob::Glob;

    fn sel(p: &str) -> KeySelect {
        KeySelect { filter: KeyFilter { pattern: Some(Glob::new(p.as_bytes())), ..KeyFilter::default() }, pattern: p.as_bytes().to_vec() }
    }

    fn verdict(args: &[&str]) -> std::result::Result<Verdict, String> {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        place(&sel("u:*"), &a)
    }

    fn instead(args: &[&str]) -> std::result::Result<Verdict, String> {
        Ok(Verdict::Instead(args.iter().map(|s| s.as_bytes().to_vec()).collect()))
    }

    #[test]
    fn places_commands_by_their_keys() {
        assert!(verdict(&[]).is_err(), "an empty command is refused, not a panic");
        assert_eq!(verdict(&["SET", "u:1", "x"]), Ok(Verdict::Keep));
        assert_eq!(verdict(&["set", "o:1", "x"]), Ok(Verdict::Skip));
        assert_eq!(verdict(&["MSET", "u:1", "a", "o:1", "b", "u:2", "c"]), instead(&["MSET", "u:1", "a", "u:2", "c"]));
        assert_eq!(verdict(&["DEL", "o:1", "o:2"]), Ok(Verdict::Skip));
        assert_eq!(verdict(&["RENAME", "u:1", "o:1"]), instead(&["DEL", "u:1"]));
        assert_eq!(verdict(&["LMOVE", "u:1", "o:1", "LEFT", "RIGHT"]), instead(&["LPOP", "u:1"]));
        assert_eq!(verdict(&["SMOVE", "o:1", "u:1", "m"]), instead(&["SADD", "u:1", "m"]));
        assert_eq!(verdict(&["ZUNIONSTORE", "u:d", "2", "u:a", "u:b", "WEIGHTS", "1", "2"]), Ok(Verdict::Keep));
        assert_eq!(verdict(&["SUNIONSTORE", "o:d", "u:a"]), Ok(Verdict::Skip));
        assert!(verdict(&["RENAME", "o:1", "u:1"]).is_err_and(|e| e.contains("\"u:1\", which matches, from \"o:1\"")));
        assert!(verdict(&["SINTERSTORE", "u:d", "u:a", "o:b"]).is_err());
        assert!(verdict(&["SWAPDB", "0", "1"]).is_err());
        assert!(verdict(&["NOSUCH", "u:1"]).is_err());
    }
}
