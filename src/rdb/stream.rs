//! Stream decoding (RDB types 15, 19, 21): listpack nodes keyed by master id, metadata, consumer groups.

use std::io::Read;

use super::blob::{self, Elem};
use super::error::Result;
use super::listpack;
use super::reader::ByteReader;
use super::string::Scratch;
use super::value::{Consumer, ConsumerGroup, PendingEntry, Stream, StreamEntry, StreamId};

/// Entry flag: the entry was deleted (XDEL) and must be skipped.
const FLAG_DELETED: i64 = 1;
/// Entry flag: the entry has exactly the master entry's fields, only values are stored.
const FLAG_SAMEFIELDS: i64 = 2;

/// Reads a stream value of RDB type `ty`; with `decode == false` only walks over it.
pub(crate) fn read_stream<R: Read>(
    r: &mut ByteReader<R>,
    ty: u8,
    decode: bool,
) -> Result<Option<Stream>> {
    let mut s = Stream::default();
    if decode {
        let entries = &mut s.entries;
        each_entry(r, &mut Scratch::default(), |id, fields| {
            let fields = fields.iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect();
            entries.push(StreamEntry { id, fields });
        })?;
    } else {
        for _ in 0..r.read_count()? {
            r.skip_string()?;
            r.skip_string()?;
        }
    }
    read_tail(r, ty, &mut s)?;
    Ok(if decode { Some(s) } else { None })
}

/// Hands each live entry of the stream's nodes to `f`, its id and its field/value pairs as
/// they stand in the node: one node in memory at a time, however long the stream.
pub(crate) fn each_entry<R: Read>(
    r: &mut ByteReader<R>,
    s: &mut Scratch,
    mut f: impl FnMut(StreamId, &[(Elem<'_>, Elem<'_>)]),
) -> Result<()> {
    let nodes = r.read_count()?;
    for _ in 0..nodes {
        let at = r.offset();
        let (master, len) = {
            let b = r.read_string_ref(s)?.0;
            (decode_raw_id(b), b.len())
        };
        let master = master.ok_or_else(|| {
            r.corrupt_at(at, format!("stream node key is {len} bytes, expected 16"))
        })?;
        let lp_at = r.offset();
        let done = node_entries(master, r.read_string_ref(s)?.0, &mut f);
        done.map_err(|e| match e {
            NodeError::Listpack(m) => r.corrupt_at(lp_at, format!("stream listpack: {m}")),
            NodeError::Node(m) => r.corrupt_at(lp_at, format!("stream node {master}: {m}")),
        })?;
    }
    Ok(())
}

/// What is wrong with a stream node: its listpack, or the entries in it.
enum NodeError {
    Listpack(String),
    Node(String),
}

/// The live entries of the node keyed `master` whose listpack is `lp`, handed to `f`.
fn node_entries(
    master: StreamId,
    lp: &[u8],
    f: &mut impl FnMut(StreamId, &[(Elem<'_>, Elem<'_>)]),
) -> std::result::Result<(), NodeError> {
    let mut elems = Vec::with_capacity(blob::declared(lp, 4));
    listpack::each(lp, |e| {
        elems.push(e);
        Ok(())
    })
    .map_err(NodeError::Listpack)?;
    decode_node(master, &elems, f).map_err(NodeError::Node)
}

/// Reads what follows a stream's nodes: its length, ids, counters and consumer groups, into `s`.
pub(crate) fn read_tail<R: Read>(r: &mut ByteReader<R>, ty: u8, s: &mut Stream) -> Result<()> {
    s.length = r.read_len()?;
    s.last_id = read_id(r)?;
    if ty >= 19 {
        s.first_id = Some(read_id(r)?);
        s.max_deleted_id = Some(read_id(r)?);
        s.entries_added = Some(r.read_len()?);
    }
    let ngroups = r.read_count()?;
    for _ in 0..ngroups {
        let name = r.read_string()?;
        let last_id = read_id(r)?;
        let entries_read = if ty >= 19 { Some(r.read_len()?) } else { None };
        let npel = r.read_count()?;
        let mut pending = Vec::with_capacity(npel.min(1024) as usize);
        for _ in 0..npel {
            let id = raw_id(r)?;
            let delivery_time_ms = r.read_u64_le()?;
            let delivery_count = r.read_len()?;
            pending.push(PendingEntry {
                id,
                delivery_time_ms,
                delivery_count,
            });
        }
        let nconsumers = r.read_count()?;
        let mut consumers = Vec::with_capacity(nconsumers.min(1024) as usize);
        for _ in 0..nconsumers {
            let cname = r.read_string()?;
            let seen_time_ms = r.read_u64_le()?;
            let active_time_ms = if ty >= 21 {
                Some(r.read_u64_le()?)
            } else {
                None
            };
            let n = r.read_count()?;
            let mut ids = Vec::with_capacity(n.min(1024) as usize);
            for _ in 0..n {
                ids.push(raw_id(r)?);
            }
            consumers.push(Consumer {
                name: cname,
                seen_time_ms,
                active_time_ms,
                pending: ids,
            });
        }
        s.groups.push(ConsumerGroup {
            name,
            last_id,
            entries_read,
            pending,
            consumers,
        });
    }
    Ok(())
}

/// Reads an id stored as two RDB lengths (ms, seq).
fn read_id<R: Read>(r: &mut ByteReader<R>) -> Result<StreamId> {
    Ok(StreamId {
        ms: r.read_len()?,
        seq: r.read_len()?,
    })
}

/// Reads an id stored as 16 raw big-endian bytes.
fn raw_id<R: Read>(r: &mut ByteReader<R>) -> Result<StreamId> {
    let b: [u8; 16] = r.read_array()?;
    decode_raw_id(&b).ok_or_else(|| r.corrupt("bad stream id"))
}

fn decode_raw_id(b: &[u8]) -> Option<StreamId> {
    if b.len() != 16 {
        return None;
    }
    let mut ms = [0u8; 8];
    let mut seq = [0u8; 8];
    ms.copy_from_slice(&b[..8]);
    seq.copy_from_slice(&b[8..]);
    Some(StreamId {
        ms: u64::from_be_bytes(ms),
        seq: u64::from_be_bytes(seq),
    })
}

/// Cursor over the elements of a stream listpack node.
struct Cursor<'e, 'a> {
    e: &'e [Elem<'a>],
    i: usize,
}

impl<'a> Cursor<'_, 'a> {
    fn next(&mut self, what: &str) -> std::result::Result<Elem<'a>, String> {
        let v = *self
            .e
            .get(self.i)
            .ok_or_else(|| format!("listpack ends while reading {what}"))?;
        self.i += 1;
        Ok(v)
    }

    fn int(&mut self, what: &str) -> std::result::Result<i64, String> {
        let v = self.next(what)?;
        v.to_i64().ok_or_else(|| format!("{what} is not an integer"))
    }

    /// Reads a count that cannot exceed the number of elements in the node.
    fn count(&mut self, what: &str) -> std::result::Result<usize, String> {
        let n = self.int(what)?;
        if n < 0 || n as usize > self.e.len() {
            return Err(format!("invalid {what} {n}"));
        }
        Ok(n as usize)
    }
}

/// Decodes one stream listpack node (master entry followed by delta-encoded entries), handing
/// each live entry to `f`.
fn decode_node(
    master: StreamId,
    e: &[Elem<'_>],
    f: &mut impl FnMut(StreamId, &[(Elem<'_>, Elem<'_>)]),
) -> std::result::Result<(), String> {
    let mut c = Cursor { e, i: 0 };
    c.int("count")?;
    c.int("deleted count")?;
    let nmaster = c.count("master field count")?;
    let mut master_fields = Vec::with_capacity(nmaster);
    for _ in 0..nmaster {
        master_fields.push(c.next("master field")?);
    }
    if c.int("master terminator")? != 0 {
        return Err("master entry is not terminated by 0".into());
    }
    let mut fields = Vec::new();
    while c.i < e.len() {
        let flags = c.int("flags")?;
        let ms_diff = c.int("ms delta")?;
        let seq_diff = c.int("seq delta")?;
        let id = StreamId {
            ms: master.ms.wrapping_add(ms_diff as u64),
            seq: master.seq.wrapping_add(seq_diff as u64),
        };
        fields.clear();
        if flags & FLAG_SAMEFIELDS != 0 {
            for &f in &master_fields {
                fields.push((f, c.next("value")?));
            }
        } else {
            let n = c.count("field count")?;
            for _ in 0..n {
                let f = c.next("field")?;
                let v = c.next("value")?;
                fields.push((f, v));
            }
        }
        c.next("entry element count")?;
        if flags & FLAG_DELETED == 0 {
            f(id, &fields);
        }
    }
    Ok(())
}
