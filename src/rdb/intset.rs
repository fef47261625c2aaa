//! Intset decoding (RDB type 11): `encoding:u32 length:u32 contents` with 2/4/8-byte little-endian integers.

/// Decodes an intset blob into decimal-text members.
pub(crate) fn parse(buf: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    each(buf, |v| out.push(v.to_string().into_bytes()))?;
    Ok(out)
}

/// Hands every member of an intset blob to `f`, in order (checked whole before the first).
pub(crate) fn each(buf: &[u8], mut f: impl FnMut(i64)) -> Result<(), String> {
    if buf.len() < 8 {
        return Err(format!(
            "intset of {} bytes is shorter than its header",
            buf.len()
        ));
    }
    let width = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if !matches!(width, 2 | 4 | 8) {
        return Err(format!("intset has invalid integer width {width}"));
    }
    let body = &buf[8..];
    if width.checked_mul(len) != Some(body.len()) {
        return Err(format!(
            "intset says {len} integers of {width} bytes but has {} content bytes",
            body.len()
        ));
    }
    for c in body.chunks_exact(width) {
        f(match width {
            2 => i16::from_le_bytes([c[0], c[1]]) as i64,
            4 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
            _ => i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn widths() {
        // width 2, 3 members: -1, 2, 300
        let b = [2, 0, 0, 0, 3, 0, 0, 0, 0xff, 0xff, 2, 0, 0x2c, 0x01];
        assert_eq!(
            parse(&b).unwrap(),
            vec![b"-1".to_vec(), b"2".to_vec(), b"300".to_vec()]
        );
        let b = [8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80];
        assert_eq!(parse(&b).unwrap(), vec![i64::MIN.to_string().into_bytes()]);
        assert!(parse(&[3, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(parse(&[2, 0, 0, 0, 9, 0, 0, 0, 1, 2]).is_err());
    }
}
