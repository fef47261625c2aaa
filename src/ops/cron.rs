//! Cron expressions (five fields: minute hour day-of-month month day-of-week) and
//! intervals (`6h`), evaluated in UTC only: no time zones, so no daylight-saving
//! gaps or repeats (`0 3 * * *` is 03:00 UTC every day).

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Both day fields restricted: a day matches if either does (as in Vixie cron).
    either_day: bool,
}

const FIELDS: [(&str, u32, u32); 5] = [("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7)];
const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Cron {
    /// Parses `M H DoM Mon DoW` (`*`, `a`, `a-b`, `*/n`, `a-b/n`, lists with `,`; month and
    /// day names; 0 or 7 is Sunday) or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    pub fn parse(s: &str) -> Result<Cron, String> {
        let expanded = match s.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!("{s:?} is not a cron expression: it needs 5 fields (minute hour day-of-month month day-of-week), like \"0 3 * * *\""));
        }
        let mut sets = [0u64; 5];
        for (i, part) in parts.iter().enumerate() {
            sets[i] = field(part, i).map_err(|e| format!("cron {s:?}: {} field {part:?}: {e}", FIELDS[i].0))?;
        }
        // Sunday is 0 and 7.
        if sets[4] & (1 << 7) != 0 {
            sets[4] |= 1;
        }
        Ok(Cron {
            minutes: sets[0],
            hours: sets[1],
            days: sets[2],
            months: sets[3],
            weekdays: sets[4],
            either_day: !parts[2].starts_with('*') && !parts[4].starts_with('*'),
        })
    }

    /// The first minute strictly after `after` (Unix seconds) that matches, in Unix seconds;
    /// `None` if none does in the next eight years (e.g. `0 0 31 2 *`).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let start = OffsetDateTime::from_unix_timestamp(after - after.rem_euclid(60) + 60).ok()?;
        let mut t = PrimitiveDateTime::new(start.date(), start.time());
        let limit = t.year() + 8;
        while t.year() <= limit {
            if !bit(self.months, t.month() as u32) {
                let (y, m) = if t.month() == Month::December { (t.year() + 1, Month::January) } else { (t.year(), t.month().next()) };
                t = PrimitiveDateTime::new(Date::from_calendar_date(y, m, 1).ok()?, Time::MIDNIGHT);
                continue;
            }
            if !self.day_matches(t.date()) {
                t = PrimitiveDateTime::new(t.date().next_day()?, Time::MIDNIGHT);
                continue;
            }
            if !bit(self.hours, t.hour() as u32) {
                t = PrimitiveDateTime::new(t.date(), Time::from_hms(t.hour(), 0, 0).ok()?) + time::Duration::HOUR;
                continue;
            }
            if !bit(self.minutes, t.minute() as u32) {
                t += time::Duration::MINUTE;
                continue;
            }
            return Some(t.assume_utc().unix_timestamp());
        }
        None
    }

    fn day_matches(&self, d: Date) -> bool {
        let dom = bit(self.days, d.day() as u32);
        let dow = bit(self.weekdays, d.weekday().number_days_from_sunday() as u32);
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }
}

fn bit(set: u64, n: u32) -> bool {
    set & (1 << n) != 0
}

/// One field's set of values as bits.
fn field(s: &str, i: usize) -> Result<u64, String> {
    let (_, lo, hi) = FIELDS[i];
    let mut set = 0u64;
    for item in s.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, st)) => (r, st.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| format!("step {st:?} is not a positive number"))?),
            None => (item, 1),
        };
        let (a, b) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a, i)?, value(b, i)?),
                None if item.contains('/') => (value(r, i)?, hi),
                None => {
                    let v = value(r, i)?;
                    (v, v)
                }
            },
        };
        if a > b {
            return Err(format!("range {range:?} runs backwards"));
        }
        let mut v = a;
        while v <= b {
            set |= 1 << v;
            v += step;
        }
    }
    Ok(set)
}

/// A number in the field's range, or a month or day name.
fn value(s: &str, i: usize) -> Result<u32, String> {
    let (name, lo, hi) = FIELDS[i];
    let lower = s.to_ascii_lowercase();
    let named = match i {
        3 => MONTHS.iter().position(|m| *m == lower).map(|p| p as u32 + 1),
        4 => DAYS.iter().position(|d| *d == lower).map(|p| p as u32),
        _ => None,
    };
    let v = named.or_else(|| s.parse().ok()).ok_or_else(|| format!("{s:?} is not a {name}"))?;
    if !(lo..=hi).contains(&v) {
        return Err(format!("{v} is outside {lo}-{hi}"));
    }
    Ok(v)
}

/// Parses an interval: a number with a unit, `30s`, `15m`, `6h`, `1d`, `2w` (combinations
/// like `1h30m` too); at least one minute.
pub fn parse_every(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?} is not an interval like 30m, 6h or 1d");
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        total = n.checked_mul(unit).and_then(|x| x.checked_add(total)).ok_or_else(bad)?;
    }
    if !num.is_empty() || total == 0 {
        return Err(bad());
    }
    if total < 60 {
        return Err(format!("{s:?}: an interval must be at least 1 minute"));
    }
    Ok(std::time::Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap().unix_timestamp()
    }

    #[test]
    fn next_times_in_utc() {
        let c = Cron::parse("0 3 * * *").unwrap();
        assert_eq!(c.next_after(at("2026-03-29T02:59:00Z")), Some(at("2026-03-29T03:00:00Z")));
        assert_eq!(c.next_after(at("2026-03-29T03:00:00Z")), Some(at("2026-03-30T03:00:00Z")));
        let c = Cron::parse("*/15 9-17 * * mon-fri").unwrap();
        assert_eq!(c.next_after(at("2026-11-27T17:50:00Z")), Some(at("2026-11-30T09:00:00Z")));
        let c = Cron::parse("30 0 1,15 * sun").unwrap();
        // Either day field matches: the 1st, the 15th and every Sunday.
        assert_eq!(c.next_after(at("2026-11-28T00:00:00Z")), Some(at("2026-11-29T00:30:00Z")));
        assert_eq!(Cron::parse("0 0 29 2 *").unwrap().next_after(at("2026-01-01T00:00:00Z")), Some(at("2028-02-29T00:00:00Z")));
        assert_eq!(Cron::parse("0 0 31 2 *").unwrap().next_after(at("2026-01-01T00:00:00Z")), None);
        assert_eq!(Cron::parse("@weekly").unwrap().next_after(at("2026-11-29T00:00:00Z")), Some(at("2026-12-06T00:00:00Z")));
    }

    #[test]
    fn bad_expressions_are_named() {
        assert!(Cron::parse("0 3 * *").unwrap_err().contains("5 fields"));
        assert_eq!(Cron::parse("0 24 * * *").unwrap_err(), "cron \"0 24 * * *\": hour field \"24\": 24 is outside 0-23");
        assert!(Cron::parse("0 3 * foo *").unwrap_err().contains("\"foo\" is not a month"));
        assert!(Cron::parse("*/0 * * * *").unwrap_err().contains("step"));
        assert_eq!(parse_every("6h").unwrap().as_secs(), 6 * 3600);
        assert_eq!(parse_every("1h30m").unwrap().as_secs(), 5400);
        assert!(parse_every("10s").unwrap_err().contains("at least 1 minute"));
        assert!(parse_every("6x").is_err() && parse_every("6").is_err() && parse_every("").is_err());
    }
}
