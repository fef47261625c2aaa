//! Zipmap decoding (RDB type 9, Redis < 2.6 small hashes): `zmlen (len key len free value pad)* 0xFF`.

use super::value::Pairs;

/// Decodes a zipmap blob into (field, value) pairs.
pub(crate) fn parse(buf: &[u8]) -> Result<Pairs, String> {
    let mut out = Vec::new();
    let mut pos = 1usize; // skip zmlen (a count that saturates at 254)
    if buf.is_empty() {
        return Err("empty zipmap".into());
    }
    loop {
        let (klen, p) = match read_len(buf, pos)? {
            None => break,
            Some(x) => x,
        };
        let key = buf
            .get(p..p + klen)
            .ok_or("zipmap key overruns its buffer")?
            .to_vec();
        let (vlen, p) = read_len(buf, p + klen)?.ok_or("zipmap ends after a key")?;
        let free = *buf.get(p).ok_or("zipmap entry overruns its buffer")? as usize;
        let vstart = p + 1;
        let value = buf
            .get(vstart..vstart + vlen)
            .ok_or("zipmap value overruns its buffer")?
            .to_vec();
        pos = vstart + vlen + free;
        out.push((key, value));
    }
    if pos + 1 != buf.len() {
        return Err("zipmap has bytes after its terminator".into());
    }
    Ok(out)
}

/// Reads a zipmap length at `pos`: None at the 0xFF terminator, else (length, next position).
fn read_len(buf: &[u8], pos: usize) -> Result<Option<(usize, usize)>, String> {
    match buf.get(pos) {
        None => Err("zipmap is missing its 0xFF terminator".into()),
        Some(255) => Ok(None),
        Some(254) => {
            let b = buf
                .get(pos + 1..pos + 5)
                .ok_or("zipmap length overruns its buffer")?;
            Ok(Some((
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
                pos + 5,
            )))
        }
        Some(&n) => Ok(Some((n as usize, pos + 1))),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn two_pairs_with_free_space() {
        // zmlen=2; "a" -> "1" (free 0); "bc" -> "xy" with 2 free bytes of padding; end.
        let z = [
            2, 1, b'a', 1, 0, b'1', 2, b'b', b'c', 2, 2, b'x', b'y', 0, 0, 0xff,
        ];
        let got = parse(&z).unwrap();
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"bc".to_vec(), b"xy".to_vec())
            ]
        );
        assert!(parse(&z[..z.len() - 1]).is_err());
        assert!(parse(&[1, 9, b'a', 0xff]).is_err());
    }
}
