//! Byte strings (keys, values) shown as redis-cli shows them: printable text as it is,
//! everything else escaped, so every key can be read, copied and told apart.
//!
//! Escapes: `\\`, `\n`, `\r`, `\t`, `\a`, `\b`, and `\xHH` for any other control byte or
//! byte that is not part of valid UTF-8 (printable UTF-8 characters stay as they are, where
//! redis-cli would escape their bytes). [`quoted`] also escapes `"` and wraps a key in
//! double quotes when it needs escaping, is empty or holds a space.

/// The escaped text of `b`, without quotes (what `--json` carries: always a JSON string,
/// the bytes themselves when they are printable UTF-8 without a backslash).
pub fn escape(b: &[u8]) -> String {
    escape_with(b, false)
}

/// `b` as a table cell: as it is when plain, else in double quotes with `"` escaped too.
pub fn quoted(b: &[u8]) -> String {
    let s = escape_with(b, true);
    if s.is_empty() || s.len() != b.len() || s.contains([' ', '"', '\'']) {
        format!("\"{s}\"")
    } else {
        s
    }
}

fn escape_with(b: &[u8], quotes: bool) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' if quotes => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for byte in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{byte:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// The bytes an [`escape`]d string stands for; `None` for a malformed escape.
pub fn unescape(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        out.push(match bytes.next()? {
            b'\\' => b'\\',
            b'"' => b'"',
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'a' => 0x07,
            b'b' => 0x08,
            b'x' => {
                let hex = [bytes.next()?, bytes.next()?];
                u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?
            }
            _ => return None,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_redis_cli_and_round_trips() {
        assert_eq!(escape(b"user:1"), "user:1");
        assert_eq!(escape(b"caf\xc3\xa9"), "café");
        assert_eq!(escape(b"a\\b\n\xff\x00\"q"), "a\\\\b\\n\\xff\\x00\"q");
        assert_eq!(quoted(b"user:1"), "user:1");
        assert_eq!(quoted(b"a b"), "\"a b\"");
        assert_eq!(quoted(b"\xff\"x"), "\"\\xff\\\"x\"");
        assert_eq!(quoted(b""), "\"\"");
        for raw in [&b"plain"[..], b"a\\xff", b"\xff\xfe\r\t\x07\x08\x1b", b"caf\xc3\xa9 \"", b""] {
            assert_eq!(unescape(&escape(raw)).as_deref(), Some(raw), "{raw:?}");
            let q = quoted(raw);
            let inner = q.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(&q);
            assert_eq!(unescape(inner).as_deref(), Some(raw), "{raw:?}");
        }
        assert_eq!(unescape("\\q"), None);
    }
}
