//! Redis-style glob patterns (`KEYS`/`SCAN MATCH`): `*`, `?`, `[abc]`, `[^a-z]`, `\x`.
//!
//! Same rules as Redis' `stringmatchlen`, on bytes: a class may be negated with `^`,
//! holds single bytes and `a-z` ranges (reversed ranges are swapped), `\` escapes the
//! next byte inside and outside classes, and an unterminated class ends with the pattern.

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// `*`: any run of bytes, including none.
    Star,
    /// `?`: exactly one byte.
    Any,
    /// `[...]`: one byte in (or, negated, not in) the ranges.
    Class { negate: bool, ranges: Vec<(u8, u8)> },
    /// A byte that must match itself.
    Lit(u8),
}

/// A compiled glob pattern, matched against keys as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

impl Glob {
    /// Compiles a pattern; every byte string is a valid pattern.
    pub fn new(pattern: &[u8]) -> Glob {
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < pattern.len() {
            let c = pattern[i];
            i += 1;
            match c {
                b'*' => {
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                b'?' => tokens.push(Token::Any),
                b'\\' if i < pattern.len() => {
                    tokens.push(Token::Lit(pattern[i]));
                    i += 1;
                }
                b'[' => {
                    let (token, next) = class(pattern, i);
                    tokens.push(token);
                    i = next;
                }
                other => tokens.push(Token::Lit(other)),
            }
        }
        Glob { tokens }
    }

    /// A pattern that matches `key` alone.
    pub fn literal(key: &[u8]) -> Glob {
        Glob { tokens: key.iter().map(|b| Token::Lit(*b)).collect() }
    }

    /// The bytes every match starts with (up to the first wildcard), and whether that is the
    /// whole pattern (it then matches exactly one key).
    pub fn literal_prefix(&self) -> (Vec<u8>, bool) {
        let lits: Vec<u8> = self.tokens.iter().map_while(|t| if let Token::Lit(b) = t { Some(*b) } else { None }).collect();
        let exact = lits.len() == self.tokens.len();
        (lits, exact)
    }

    /// Whether the pattern is `*` alone (matches every key).
    pub fn matches_all(&self) -> bool {
        self.tokens == [Token::Star]
    }

    /// Whether `s` matches the whole pattern.
    pub fn matches(&self, s: &[u8]) -> bool {
        let (mut t, mut i) = (0usize, 0usize);
        // Where to resume after the last `*`: (token after it, next byte it may absorb).
        let mut star: Option<(usize, usize)> = None;
        loop {
            if t < self.tokens.len() {
                match &self.tokens[t] {
                    Token::Star => {
                        star = Some((t + 1, i));
                        t += 1;
                        continue;
                    }
                    tok if i < s.len() && one(tok, s[i]) => {
                        t += 1;
                        i += 1;
                        continue;
                    }
                    _ => {}
                }
            } else if i == s.len() {
                return true;
            }
            match star {
                Some((after, from)) if from < s.len() => {
                    star = Some((after, from + 1));
                    t = after;
                    i = from + 1;
                }
                _ => return false,
            }
        }
    }
}

/// Whether a single-byte token accepts `b`.
fn one(tok: &Token, b: u8) -> bool {
    match tok {
        Token::Any => true,
        Token::Lit(c) => *c == b,
        Token::Class { negate, ranges } => ranges.iter().any(|&(lo, hi)| lo <= b && b <= hi) != *negate,
        Token::Star => false,
    }
}

/// Parses a class starting after its `[`; returns it and the index after its `]`.
fn class(p: &[u8], mut i: usize) -> (Token, usize) {
    let negate = p.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut ranges = Vec::new();
    while i < p.len() && p[i] != b']' {
        let lo = if p[i] == b'\\' && i + 1 < p.len() {
            i += 1;
            p[i]
        } else {
            p[i]
        };
        if p.get(i + 1) == Some(&b'-') && i + 2 < p.len() {
            let hi = p[i + 2];
            ranges.push((lo.min(hi), lo.max(hi)));
            i += 3;
        } else {
            ranges.push((lo, lo));
            i += 1;
        }
    }
    (Token::Class { negate, ranges }, (i + 1).min(p.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Glob::new(p.as_bytes()).matches(s.as_bytes())
    }

    #[test]
    fn stars_and_questions() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("user:*", "user:1"));
        assert!(m("user:*", "user:"));
        assert!(!m("user:*", "users:1"));
        assert!(m("*:1", "user:session:1"));
        assert!(m("a*b*c", "aXXbYYbc"));
        assert!(!m("a*b*c", "aXXbYYbcd"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("**x", "abx"));
        assert!(Glob::new(b"**").matches_all());
    }

    #[test]
    fn classes_and_escapes() {
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"));
        assert!(!m("h[a-b]llo", "hcllo"));
        assert!(m("k[\\]]", "k]"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("x[a-", "x-"));
        assert!(m("x[ab", "xb"));
        assert!(m("tail\\", "tail\\"));
    }

    #[test]
    fn binary_keys() {
        assert!(Glob::new(b"k:*").matches(b"k:\xff\x00"));
        assert!(Glob::new(b"k:[\x00-\x10]").matches(b"k:\x05"));
    }
}
