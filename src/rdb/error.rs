//! Error type for RDB parsing: every failure names the byte offset and, when known, the key.

use thiserror::Error;

/// Why reading an RDB stream failed; carries the file offset so operators can locate damage.
#[derive(Debug, Error)]
pub enum RdbError {
    /// The stream does not start with `REDIS` + a 4-digit version we understand.
    #[error("not an RDB file: {0}")]
    BadHeader(String),
    /// The bytes at `offset` do not form a valid RDB structure.
    #[error("corrupt RDB at byte {offset}{}: {msg}", key_suffix(.key))]
    Corrupt {
        offset: u64,
        key: Option<Vec<u8>>,
        msg: String,
    },
    /// The stream ended at `offset` in the middle of a structure.
    #[error("truncated RDB at byte {offset}{}: unexpected end of data", key_suffix(.key))]
    Truncated { offset: u64, key: Option<Vec<u8>> },
    /// Valid RDB content this parser cannot handle (e.g. a pre-4.0 module value).
    #[error("unsupported RDB content at byte {offset}{}: {what}", key_suffix(.key))]
    Unsupported {
        offset: u64,
        key: Option<Vec<u8>>,
        what: String,
    },
    /// The trailing CRC64 does not match the bytes read.
    #[error("RDB checksum mismatch at byte {offset}: file says {stored:#018x}, computed {computed:#018x}")]
    Checksum {
        offset: u64,
        stored: u64,
        computed: u64,
    },
    /// The underlying reader failed (not an end-of-file condition).
    #[error("I/O error reading RDB at byte {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: std::io::Error,
    },
}

impl RdbError {
    /// Byte offset in the RDB stream where the problem was detected (None for header errors).
    pub fn offset(&self) -> Option<u64> {
        match self {
            RdbError::BadHeader(_) => None,
            RdbError::Corrupt { offset, .. }
            | RdbError::Truncated { offset, .. }
            | RdbError::Unsupported { offset, .. }
            | RdbError::Checksum { offset, .. }
            | RdbError::Io { offset, .. } => Some(*offset),
        }
    }

    /// The key whose value was being read, if the error happened inside a record.
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            RdbError::Corrupt { key, .. }
            | RdbError::Truncated { key, .. }
            | RdbError::Unsupported { key, .. } => key.as_deref(),
            _ => None,
        }
    }
}

impl RdbError {
    /// Names `key` as the record being read, where the error is about one and names none yet.
    pub(crate) fn for_key(mut self, name: &[u8]) -> Self {
        if let RdbError::Corrupt { key, .. } | RdbError::Truncated { key, .. } | RdbError::Unsupported { key, .. } = &mut self {
            key.get_or_insert_with(|| name.to_vec());
        }
        self
    }
}

/// Result alias used throughout the RDB module.
pub type Result<T> = std::result::Result<T, RdbError>;

/// Renders ` while reading key "..."` with non-printable bytes escaped, capped at 200 bytes.
fn key_suffix(key: &Option<Vec<u8>>) -> String {
    match key {
        None => String::new(),
        Some(k) => {
            let shown = &k[..k.len().min(200)];
            let mut s = String::from(" while reading key \"");
            for &b in shown {
                s.extend(std::ascii::escape_default(b).map(char::from));
            }
            if k.len() > shown.len() {
                s.push_str("...");
            }
            s.push('"');
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_offset_and_key() {
        let e = RdbError::Corrupt {
            offset: 123456,
            key: Some(b"user:42".to_vec()),
            msg: "ziplist entry overruns its buffer".into(),
        };
        assert_eq!(
            e.to_string(),
            "corrupt RDB at byte 123456 while reading key \"user:42\": ziplist entry overruns its buffer"
        );
        let t = RdbError::Truncated {
            offset: 7,
            key: Some(vec![0xff, b'"']),
        };
        assert_eq!(
            t.to_string(),
            "truncated RDB at byte 7 while reading key \"\\xff\\\"\": unexpected end of data"
        );
        assert_eq!(t.offset(), Some(7));
    }
}
