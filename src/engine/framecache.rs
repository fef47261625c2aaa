//! Opened frames that several restore stretches need, shared by the restore's workers.
//!
//! A backup worker keeps its frame open across jobs until it is full, so an incremental's few
//! new chunks per job still make full frames; their chunks then lie a few MiB apart in the
//! output, and several stretches take chunks from each. The first worker to open such a frame
//! keeps its plaintext and authenticated members digest here, and the next stretches copy
//! from it instead of reading and opening it again. A frame is kept only when a stretch leaves
//! it unfinished (its chunks so far stop short of its end), and given up once a stretch
//! reaches its end; the least recently used go first beyond [`CAP_BYTES`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::crypto::Id;
use crate::format::pack::{BlobEntry, DIGEST_LEN};

/// Plaintext kept at most (16 full frames): a few frames are in use at any place of the
/// output, one or two per backup worker and snapshot of the chain, while frames left
/// unfinished for good (their last chunk replaced in a later backup) wait here until pushed out.
const CAP_BYTES: usize = 1 << 20;

/// A frame as it was opened: its plaintext and, for a bound frame, its members digest.
pub struct Opened {
    pub plain: Vec<u8>,
    pub digest: Option<[u8; DIGEST_LEN]>,
}

/// The frames kept, by (pack, offset), each with the serial of its last use.
#[derive(Default)]
pub struct FrameCache {
    inner: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    frames: HashMap<(Id, u32), (u64, u32, Arc<Opened>)>,
    /// Keys in the order they were last used, with the serial of that use (a key whose
    /// serial has moved on, or that was given up, is stale here and skipped).
    order: VecDeque<((Id, u32), u64)>,
    bytes: usize,
    serial: u64,
    /// Frames handed out.
    hits: u64,
}

impl Kept {
    /// Drops stale keys from `order` once they outnumber the live ones, so that frames
    /// used, kept or given up again and again do not grow it.
    fn tidy(&mut self) {
        if self.order.len() > 2 * self.frames.len() + 64 {
            let frames = &self.frames;
            self.order.retain(|(key, serial)| frames.get(key).is_some_and(|(s, _, _)| s == serial));
        }
    }
}

impl FrameCache {
    fn lock(&self) -> MutexGuard<'_, Kept> {
        // A worker that panicked left whole entries only: the map is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The frame at `e`, if a worker opened it and kept it; it becomes the newest kept.
    pub fn get(&self, pack: Id, e: &BlobEntry) -> Option<Arc<Opened>> {
        let mut kept = self.lock();
        kept.serial += 1;
        let serial = kept.serial;
        let (s, length, opened) = kept.frames.get_mut(&(pack, e.offset))?;
        if *length != e.length || opened.plain.len() != e.frame_len as usize {
            return None;
        }
        *s = serial;
        let opened = opened.clone();
        kept.hits += 1;
        kept.order.push_back(((pack, e.offset), serial));
        kept.tidy();
        Some(opened)
    }

    /// Keeps a copy of the frame at `e`, opened as `plain` with `digest`.
    pub fn keep(&self, pack: Id, e: &BlobEntry, plain: &[u8], digest: Option<[u8; DIGEST_LEN]>) {
        let opened = Arc::new(Opened { plain: plain.to_vec(), digest });
        let mut kept = self.lock();
        kept.serial += 1;
        let serial = kept.serial;
        kept.bytes += plain.len();
        if let Some((_, _, old)) = kept.frames.insert((pack, e.offset), (serial, e.length, opened)) {
            kept.bytes -= old.plain.len();
        }
        kept.order.push_back(((pack, e.offset), serial));
        kept.tidy();
        while kept.bytes > CAP_BYTES {
            let Some((key, serial)) = kept.order.pop_front() else { break };
            if kept.frames.get(&key).is_some_and(|(s, _, _)| *s == serial) {
                if let Some((_, _, old)) = kept.frames.remove(&key) {
                    kept.bytes -= old.plain.len();
                }
            }
        }
    }

    /// Gives up the frame at `e`: a stretch has taken its last chunk.
    pub fn forget(&self, pack: Id, e: &BlobEntry) {
        let mut kept = self.lock();
        if let Some((_, _, old)) = kept.frames.remove(&(pack, e.offset)) {
            kept.bytes -= old.plain.len();
        }
        // Its place in `order` is now stale: `tidy` or the eviction in `keep` drops it.
    }

    /// Frames handed out so far.
    #[cfg(test)]
    pub fn hits(&self) -> u64 {
        self.lock().hits
    }

    /// Plaintext bytes kept now.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::BlobType;

    fn entry(offset: u32, frame_len: u32) -> BlobEntry {
        BlobEntry { id: Id([0; 32]), kind: BlobType::Data, flags: 0, offset, length: frame_len / 2, raw_len: 100, inner: 0, frame_len }
    }

    #[test]
    fn a_kept_frame_is_found_until_forgotten() {
        let cache = FrameCache::default();
        let (pack, e) = (Id([7; 32]), entry(4096, 1000));
        assert!(cache.get(pack, &e).is_none());
        cache.keep(pack, &e, &[5u8; 1000], Some([9; DIGEST_LEN]));
        let got = cache.get(pack, &e).expect("kept");
        assert_eq!((got.plain.as_slice(), got.digest), (&[5u8; 1000][..], Some([9; DIGEST_LEN])));
        // Another pack, another offset or another sealed length is another frame.
        assert!(cache.get(Id([8; 32]), &e).is_none());
        assert!(cache.get(pack, &entry(0, 1000)).is_none());
        assert!(cache.get(pack, &BlobEntry { length: 1, ..e }).is_none());
        cache.forget(pack, &e);
        assert!(cache.get(pack, &e).is_none());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn the_least_recently_used_frames_go_first_beyond_the_cap() {
        let cache = FrameCache::default();
        let pack = Id([1; 32]);
        let frame = 64 << 10;
        let n = (CAP_BYTES / frame) as u32;
        for i in 0..n + 3 {
            cache.keep(pack, &entry(i * frame as u32, frame as u32), &vec![i as u8; frame], None);
        }
        assert!(cache.bytes() <= CAP_BYTES);
        for i in 0..3 {
            assert!(cache.get(pack, &entry(i * frame as u32, frame as u32)).is_none(), "frame {i} outlived the cap");
        }
        for i in 3..n + 3 {
            assert_eq!(cache.get(pack, &entry(i * frame as u32, frame as u32)).expect("kept").plain[0], i as u8);
        }
        // A frame used again outlives those kept after it but not used since.
        for _ in 0..1000 {
            assert!(cache.get(pack, &entry(3 * frame as u32, frame as u32)).is_some());
        }
        cache.keep(pack, &entry((n + 3) * frame as u32, frame as u32), &vec![1; frame], None);
        assert!(cache.get(pack, &entry(3 * frame as u32, frame as u32)).is_some(), "the frame just used went");
        assert!(cache.get(pack, &entry(4 * frame as u32, frame as u32)).is_none(), "the least recently used frame stayed");
        {
            let kept = cache.lock();
            assert!(kept.order.len() <= 2 * kept.frames.len() + 64 + 1, "stale places piled up");
        }
        // Keeping a frame again replaces it without counting it twice.
        let again = entry((n + 3) * frame as u32, frame as u32);
        cache.keep(pack, &again, &vec![0xee; frame], None);
        assert!(cache.bytes() <= CAP_BYTES);
        assert_eq!(cache.get(pack, &again).expect("kept").plain[0], 0xee);
    }
}
