//! zstd compression of blobs, with a repository dictionary for small chunks.
//!
//! Chunks of 1-2 KiB compress poorly on their own; a dictionary trained on the
//! first backup's chunks brings per-chunk compression close to whole-file
//! compression (measured in docs/format.md). Each compressed frame records its
//! dictionary's id, so decompression finds the right one among the
//! repository's dictionary blobs.

use std::collections::HashMap;
use std::sync::Arc;

use zstd::dict::DecoderDictionary;
use zstd::zstd_safe::{CParameter, DictAttachPref, Strategy};

use crate::error::{Error, Result};

/// Dictionary size; 64 KiB is zstd's usual choice for small records.
pub const DICT_SIZE: usize = 64 * 1024;
/// Train only when at least this much sample data is available.
pub const MIN_TRAINING_BYTES: usize = 256 * 1024;
/// At most this much sample data is used for training (1 MiB trains in
/// ~0.1 s and compresses within 0.1% of a 4 MiB-trained dictionary).
pub const MAX_TRAINING_BYTES: usize = 1024 * 1024;

/// Trains a dictionary from sample chunks; `None` when there is too little data
/// or zstd finds nothing to learn.
pub fn train(samples: &[Vec<u8>]) -> Option<Vec<u8>> {
    let total: usize = samples.iter().map(|s| s.len()).sum();
    if total < MIN_TRAINING_BYTES || samples.len() < 64 {
        return None;
    }
    let dict = zstd::dict::from_samples(samples, DICT_SIZE).ok()?;
    dict_id(&dict).map(|_| dict)
}

/// The id zstd wrote into a dictionary's header (0 if it is not a zstd dictionary).
pub fn dict_id(dict: &[u8]) -> Option<u32> {
    zstd::zstd_safe::get_dict_id_from_dict(dict).map(|n| n.get())
}

/// Frames shorter than this (the last frame each backup worker closes, so all of a small
/// backup's; an incremental's frames stay open across jobs until full since the twenty-ninth
/// round) are compressed with the dictionary, which stores 7.6% fewer bytes at 12 KiB and
/// 2.2% at 64 KiB. Longer frames do without: a full backup's 64 KiB frames would pay a third
/// more compression CPU for that 2.2%; a limit of 64 KiB cost it 7% of its CPU for 0.44%
/// fewer bytes. zstd is told to attach the dictionary's tables rather than copy them into each
/// frame, which it does on its own only below 8 KiB (the copy cost an incremental 6% of its
/// instructions in the nineteenth round; docs/benchmarks.md, twenty-sixth round).
pub const DICT_BELOW: usize = 32 * 1024;

/// The level (the default) at which frames that compress less than 2:1 take a faster search.
const TUNED_LEVEL: i32 = 3;
/// Hash table of the faster search, with or without the dictionary (an attached dictionary
/// keeps tables of its own). 2^15 was the dictionary's while each frame copied its tables; with
/// them attached, 2^16 stores 0.3% fewer bytes on 12 KiB slices of an RDB, and the same on an
/// incremental's frames.
const HASH_LOG: u32 = 16;

/// A per-thread compressor that reuses its zstd contexts.
pub struct Compressor {
    inner: Option<Search>,
    with_dict: Option<Search>,
}

/// zstd's own search for the level and, at [`TUNED_LEVEL`], a faster one used while frames
/// compress less than 2:1.
///
/// Level 3 runs zstd's double-fast search (two hash tables) on a 64 KiB input. On RDB data
/// that is mostly numbers, ids and random bytes (ratio ~1.5) the single-table fast search with
/// 5-byte matches finds within 0.2-0.6% as much at 1.5x the speed (a 1 GiB full backup takes
/// 20% less CPU); on text and JSON (ratio ~3) it loses 2-9%, which level 3 keeps. The previous
/// frame's ratio predicts the next one's (docs/benchmarks.md, ninth round).
struct Search {
    own: zstd::bulk::Compressor<'static>,
    fast: Option<zstd::bulk::Compressor<'static>>,
    use_fast: bool,
}

impl Search {
    fn new(level: i32, dict: Option<&[u8]>) -> std::io::Result<Search> {
        let make = || match dict {
            Some(d) => {
                let mut c = zstd::bulk::Compressor::with_dictionary(level, d)?;
                c.set_parameter(CParameter::ForceAttachDict(DictAttachPref::ForceAttach))?;
                Ok(c)
            }
            None => zstd::bulk::Compressor::new(level),
        };
        let fast = if level == TUNED_LEVEL {
            let mut c = make()?;
            c.set_parameter(CParameter::Strategy(Strategy::ZSTD_fast))?;
            c.set_parameter(CParameter::HashLog(HASH_LOG))?;
            c.set_parameter(CParameter::MinMatch(5))?;
            Some(c)
        } else {
            None
        };
        Ok(Search { own: make()?, use_fast: fast.is_some(), fast })
    }

    fn compress(&mut self, plain: &[u8]) -> Option<Vec<u8>> {
        let c = match self.fast.as_mut() {
            Some(f) if self.use_fast => f,
            _ => &mut self.own,
        };
        let out = c.compress(plain).ok()?;
        self.use_fast = self.fast.is_some() && out.len() * 2 > plain.len();
        (out.len() < plain.len()).then_some(out)
    }
}

impl Compressor {
    /// A compressor at `level` (0 = store uncompressed), with an optional
    /// dictionary for inputs shorter than [`DICT_BELOW`].
    pub fn new(level: i32, dict: Option<&[u8]>) -> Result<Compressor> {
        if level == 0 {
            return Ok(Compressor { inner: None, with_dict: None });
        }
        let err = |e: std::io::Error| Error::Invalid(format!("zstd level {level}: {e}"));
        let inner = Search::new(level, None).map_err(err)?;
        let with_dict = dict.map(|d| Search::new(level, Some(d))).transpose().map_err(err)?;
        Ok(Compressor { inner: Some(inner), with_dict })
    }

    /// A compressor that never compresses (for incompressible blobs).
    pub fn plain() -> Compressor {
        Compressor { inner: None, with_dict: None }
    }

    /// Compressed bytes when they are smaller than the input, else `None`.
    pub fn compress(&mut self, plain: &[u8]) -> Option<Vec<u8>> {
        match self.with_dict.as_mut() {
            Some(d) if plain.len() < DICT_BELOW => d.compress(plain),
            _ => self.inner.as_mut()?.compress(plain),
        }
    }
}

/// The repository's dictionaries, by zstd dictionary id.
#[derive(Default, Clone)]
pub struct Dictionaries {
    raw: HashMap<u32, Arc<Vec<u8>>>,
    prepared: HashMap<u32, Arc<DecoderDictionary<'static>>>,
}

impl Dictionaries {
    /// No dictionaries.
    pub fn new() -> Self {
        Dictionaries::default()
    }

    /// Adds a dictionary's bytes.
    pub fn add(&mut self, dict: Vec<u8>) {
        if let Some(id) = dict_id(&dict) {
            self.prepared.insert(id, Arc::new(DecoderDictionary::copy(&dict)));
            self.raw.insert(id, Arc::new(dict));
        }
    }

    /// The dictionary new backups use: the one with the lowest id, so that
    /// every backup picks the same one even if two were ever stored.
    pub fn preferred(&self) -> Option<Arc<Vec<u8>>> {
        self.raw.iter().min_by_key(|(id, _)| **id).map(|(_, d)| d.clone())
    }

    /// Number of dictionaries.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// A decoder for one thread, reusing its zstd contexts across blobs.
    pub fn decoder(&self) -> Decoder<'_> {
        Decoder { dicts: self, plain: None, with_dict: None, current: 0 }
    }
}

/// Per-thread zstd decompression state.
pub struct Decoder<'d> {
    dicts: &'d Dictionaries,
    plain: Option<zstd::bulk::Decompressor<'d>>,
    with_dict: Option<zstd::bulk::Decompressor<'d>>,
    current: u32,
}

impl<'d> Decoder<'d> {
    /// Decompresses one zstd frame of known size, with the dictionary it names.
    pub fn decompress(&mut self, frame: &[u8], raw_len: usize, what: &str) -> Result<Vec<u8>> {
        let mut out = vec![0u8; raw_len];
        self.decompress_into(frame, &mut out, what)?;
        Ok(out)
    }

    /// Decompresses one zstd frame into `out`, which it must fill exactly.
    pub fn decompress_into(&mut self, frame: &[u8], out: &mut [u8], what: &str) -> Result<()> {
        let zstd_err = |e: std::io::Error| Error::corrupt(what, format!("zstd data does not decompress: {e}"));
        let d = match zstd::zstd_safe::get_dict_id_from_frame(frame).map(|n| n.get()) {
            None => {
                if self.plain.is_none() {
                    self.plain = Some(zstd::bulk::Decompressor::new().map_err(zstd_err)?);
                }
                self.plain.as_mut().ok_or_else(|| Error::Invalid("zstd context".into()))?
            }
            Some(id) => {
                let dicts: &'d Dictionaries = self.dicts;
                let dict = dicts
                    .prepared
                    .get(&id)
                    .ok_or_else(|| Error::corrupt(what, format!("needs zstd dictionary {id:#010x}, which the repository lacks")))?;
                if self.with_dict.is_none() {
                    self.with_dict = Some(zstd::bulk::Decompressor::new().map_err(zstd_err)?);
                }
                let d = self.with_dict.as_mut().ok_or_else(|| Error::Invalid("zstd context".into()))?;
                if self.current != id {
                    d.set_prepared_dictionary(dict).map_err(zstd_err)?;
                    self.current = id;
                }
                d
            }
        };
        let n = d.decompress_to_buffer(frame, out).map_err(zstd_err)?;
        if n != out.len() {
            return Err(Error::corrupt(what, format!("holds {n} bytes, index says {}", out.len())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Vec<u8>> {
        (0..2000u32)
            .map(|i| format!("{{\"user\":{i},\"name\":\"user-{}\",\"plan\":\"pro\",\"visits\":{}}}", i * 7919 % 1000, i % 97).repeat(12).into_bytes())
            .collect()
    }

    #[test]
    fn dictionary_round_trip_and_missing_dictionary_is_named() {
        let s = samples();
        let dict = train(&s).expect("enough samples to train");
        let mut c = Compressor::new(3, Some(&dict)).unwrap();
        let frame = c.compress(&s[5]).expect("compresses");
        let mut dicts = Dictionaries::new();
        let err = dicts.decoder().decompress(&frame, s[5].len(), "blob x").unwrap_err().to_string();
        assert!(err.contains("blob x") && err.contains("dictionary"), "{err}");
        dicts.add(dict);
        let mut dec = dicts.decoder();
        assert_eq!(dec.decompress(&frame, s[5].len(), "blob x").unwrap(), s[5]);
        let plain = Compressor::new(3, None).unwrap().compress(&s[6]).unwrap();
        assert_eq!(dec.decompress(&plain, s[6].len(), "blob y").unwrap(), s[6]);
        assert_eq!(dec.decompress(&frame, s[5].len(), "blob x").unwrap(), s[5]);
    }

    /// 256 KiB of records as an RDB holds them: short keys, then values of words and numbers
    /// (compressing ~4:1) or, with `random`, 12 random bytes and a number (less than 2:1).
    fn records(random: bool) -> Vec<u8> {
        let words = ["order", "status", "pending", "user", "session", "cart", "price", "region", "mobile", "click"];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut data = Vec::new();
        while data.len() < 256 * 1024 {
            data.extend_from_slice(format!("\x00\x0cuser:{}:{}\x1c", next(90_000), words[next(10) as usize]).as_bytes());
            if random {
                (0..12).for_each(|_| data.push(next(256) as u8));
                data.extend_from_slice(next(100_000).to_string().as_bytes());
            } else {
                let (a, b, c) = (words[next(10) as usize], words[next(10) as usize], words[next(10) as usize]);
                data.extend_from_slice(format!("{{\"{a}\":{},\"{b}\":\"{c}\"}}", next(100_000)).as_bytes());
            }
        }
        data.truncate(256 * 1024);
        data
    }

    #[test]
    fn the_default_level_searches_faster_only_where_zstds_own_search_finds_little_more() {
        for random in [false, true] {
            let data = records(random);
            let mut ours = Compressor::new(TUNED_LEVEL, None).unwrap();
            for (i, frame) in data.chunks(64 * 1024).enumerate() {
                let got = ours.compress(frame).unwrap();
                let zstds = zstd::bulk::compress(frame, 3).unwrap();
                assert_eq!(Dictionaries::new().decoder().decompress(&got, frame.len(), "f").unwrap(), frame);
                if !random {
                    // Text compresses over 2:1: after the first frame, zstd's own level 3 runs.
                    assert!(zstds.len() * 2 < frame.len());
                    assert!(i == 0 || got == zstds, "frame {i}: {} bytes against zstd's {}", got.len(), zstds.len());
                } else {
                    // The faster search, within 1% of level 3's size.
                    assert!(got != zstds, "frame {i} ran zstd's own level 3");
                    assert!(got.len() * 100 <= zstds.len() * 101, "frame {i}: {} bytes against zstd's {}", got.len(), zstds.len());
                }
            }
        }
    }

    /// An incremental's frames (a few changed chunks) take the dictionary and come out smaller;
    /// a full frame does without it.
    #[test]
    fn frames_below_the_limit_use_the_dictionary_and_full_frames_do_not() {
        let data = records(true);
        let dict = train(&data.chunks(2400).map(|c| c.to_vec()).collect::<Vec<_>>()).expect("enough samples to train");
        let mut dicts = Dictionaries::new();
        dicts.add(dict.clone());
        let mut with = Compressor::new(TUNED_LEVEL, Some(&dict)).unwrap();
        let mut without = Compressor::new(TUNED_LEVEL, None).unwrap();
        let frame_dict = |f: &[u8]| zstd::zstd_safe::get_dict_id_from_frame(f).map(|n| n.get());
        let (mut small_with, mut small_without) = (0, 0);
        for frame in data.chunks(12 * 1024) {
            let got = with.compress(frame).unwrap();
            assert_eq!(frame_dict(&got), dict_id(&dict), "a 12 KiB frame names the dictionary");
            assert_eq!(dicts.decoder().decompress(&got, frame.len(), "f").unwrap(), frame);
            small_with += got.len();
            small_without += without.compress(frame).unwrap().len();
        }
        assert!(small_with * 100 < small_without * 97, "{small_with} bytes with the dictionary against {small_without}");
        let full = with.compress(&data[..DICT_BELOW]).unwrap();
        assert_eq!(frame_dict(&full), None, "a frame of the limit's length is compressed on its own");
    }

    #[test]
    fn too_few_samples_train_nothing_and_level_zero_stores_plain() {
        assert!(train(&samples()[..10]).is_none());
        assert!(Compressor::new(0, None).unwrap().compress(&[0u8; 4096]).is_none());
        let mut c = Compressor::new(3, None).unwrap();
        let frame = c.compress(&[7u8; 4096]).unwrap();
        assert_eq!(Dictionaries::new().decoder().decompress(&frame, 4096, "b").unwrap(), vec![7u8; 4096]);
    }
}
