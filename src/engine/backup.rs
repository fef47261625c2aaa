//! The backup pipeline: read -> chunk -> id -> dedup -> compress -> seal -> pack.
//!
//! Threads: the caller's thread reads and chunks the input; `threads` workers
//! compute ids and compress and seal new chunks; one collector puts ids back in
//! order, hashes the whole stream and builds the chunk lists; one packer
//! writes packs and index files. All channels are bounded, so memory stays
//! constant whatever the input size.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ScopedJoinHandle;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::engine::chunker::{Chunker, Chunks};
use crate::format::compress::{self, Compressor};
use crate::format::chunklist::TreeBuilder;
use crate::crypto::{Id, IdBuildHasher};
use crate::error::{Error, Result};
use crate::engine::facts::{self, FactsFeed};
use crate::rdb::RdbError;
use crate::format::index::{prefix, Known};
use crate::format::pack::{seal_frame, BlobType};
use crate::engine::restore::Blobs;
use crate::engine::packer::{adopt_orphan_packs, write_packs, FinishedPack, Packer};
use crate::store::direct::{Blocks, Sequential};
use crate::store::{FileKind, Repository};
use crate::engine::keybase;
use crate::engine::layering::{ChunkSeen, Layered, Layering};
use crate::engine::listdelta::{self, DeltaWriter};
use crate::format::keyindex::TopTable;
use crate::format::keylayers::lead;
use crate::format::snapshot::{BackupSummary, KeyIndexRef, KeyLayersRef, ListBase, Listing, Snapshot, SnapshotFile, SourceDesc};

/// How to run a backup.
#[derive(Clone)]
pub struct BackupOptions {
    /// zstd level (0 stores blobs uncompressed).
    pub zstd_level: i32,
    /// Host name to record instead of this machine's.
    pub host: Option<String>,
    /// Tags to record.
    pub tags: Vec<String>,
    /// Group id shared by snapshots taken together.
    pub group: Option<String>,
    /// Worker threads for hashing, compression and encryption.
    pub threads: usize,
    /// Progress bar advanced by bytes read.
    pub progress: Option<indicatif::ProgressBar>,
    /// Store the bytes as they are: an input that is not a complete RDB is kept (its
    /// error recorded) instead of refused.
    pub raw: bool,
    /// Set from another thread to stop the backup between batches (no snapshot is saved;
    /// the packs written so far stay indexed, as after a killed run).
    pub cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Write a key index of the RDB (see `redis::keyindex`).
    pub key_index: bool,
    /// Write it whole even when an earlier snapshot's could be its base.
    pub full_key_index: bool,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            zstd_level: 3,
            host: None,
            tags: Vec::new(),
            group: None,
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            progress: None,
            raw: false,
            cancel: None,
            key_index: true,
            full_key_index: false,
        }
    }
}

/// One input stream with the name it is restored under.
pub struct Input<'a> {
    /// File name on restore.
    pub name: String,
    /// The bytes.
    pub reader: Box<dyn Read + Send + 'a>,
    /// The same bytes as the disk delivered them, when read direct (`reader` is then unused).
    pub blocks: Option<Blocks>,
}

impl<'a> Input<'a> {
    /// An input read from `reader`.
    pub fn new(name: impl Into<String>, reader: Box<dyn Read + Send + 'a>) -> Self {
        Input { name: name.into(), reader, blocks: None }
    }

    /// A local file read from its start: its blocks as read direct when it is not cached
    /// (see `store::direct`), else through the page cache.
    pub fn file(name: impl Into<String>, file: std::fs::File) -> Self {
        match crate::store::direct::open_sequential(file) {
            Sequential::Blocks(b) => Input { name: name.into(), reader: Box::new(std::io::empty()), blocks: Some(b) },
            Sequential::Read(r) => Input::new(name, r),
        }
    }
}

/// Consecutive chunks handed to one worker (batching keeps channel traffic
/// low with 1 KiB chunks); they share one buffer with the parser's feed.
struct Job {
    seq: u64,
    chunks: facts::Batch,
}

/// A job is sent once it holds this many bytes (or its read window ends).
const JOB_BYTES: usize = crate::engine::chunker::BATCH_BYTES;

/// Threads that compress and seal key index pages.
const SEALERS: usize = 2;

/// A frame's plaintext is closed once it holds this many bytes: large enough
/// for zstd to find repeats across chunks and to make per-frame costs (seal,
/// open, dictionary set-up) small per byte, small enough that a restore that
/// needs one chunk of it decompresses little else.
const FRAME_TARGET: usize = 64 * 1024;

/// New list blobs (leaves of ~512 bytes, top blobs of ~2 KiB) share frames of
/// about this size: one seal and one index place per frame, not per leaf, while a
/// key lookup that needs one top blob's leaves opens little else.
pub const LIST_FRAME_TARGET: usize = 32 * 1024;

/// One sealed frame and the blobs (id, length) it holds, in order.
struct Sealed {
    kind: BlobType,
    flags: u8,
    data: Vec<u8>,
    blobs: Vec<(Id, u32)>,
}

impl Sealed {
    /// Seals `plain` as a frame holding the single blob `id`.
    fn single(repo: &Repository, kind: BlobType, id: Id, plain: &[u8], zstd: &mut Compressor) -> Sealed {
        let blobs = vec![(id, plain.len() as u32)];
        let (flags, data) = seal_frame(repo.cipher(), kind, plain, &blobs, zstd);
        Sealed { kind, flags, data, blobs }
    }
}

enum Event {
    /// Results for chunks `seq..seq + ids.len()`, with their bytes for the whole-file hash.
    Chunks { seq: u64, ids: Vec<(Id, u32, bool)>, bytes: facts::Batch },
    EndFile { name: String, end_seq: u64, size: u64 },
}

/// Blobs already stored or being stored by this run.
struct Dedup {
    known: Known,
    claimed: Mutex<Claimed>,
}

/// New ids this run stored, as 128-bit prefixes (see [`Known`]), in two
/// generations of at most [`GENERATION`] each: dedup within one run covers
/// the last ~0.5-1 GiB of new data, so memory stays flat however much is new;
/// a chunk repeated further apart is stored twice, never lost (and later
/// backups dedup against the index, which has both).
struct Claimed {
    current: HashSet<[u8; 16], IdBuildHasher>,
    previous: HashSet<[u8; 16], IdBuildHasher>,
}

/// Entries per generation: 7/8 of 2^19, what a hash set holds without growing
/// past 2^19 slots (8.5 MiB). Both generations are full from ~1 GiB of new data
/// on, so a 10 GiB backup holds what a 1 GiB one does (2^20 slots held 17 MiB
/// more at 10 GiB than at 1 GiB: docs/benchmarks.md, fourteenth round).
const GENERATION: usize = (1 << 19) / 8 * 7;

impl Claimed {
    /// Empty, with room for a whole generation (only touched memory counts, and
    /// a set that doubles holds its old and new tables at once).
    fn new() -> Claimed {
        let mut current = HashSet::default();
        current.reserve(GENERATION);
        Claimed { current, previous: HashSet::default() }
    }

    /// True if `p` was not claimed in the window; claims it.
    fn claim(&mut self, p: [u8; 16]) -> bool {
        if self.previous.contains(&p) || !self.current.insert(p) {
            return false;
        }
        if self.current.len() >= GENERATION {
            let next = Claimed::new().current;
            self.previous = std::mem::replace(&mut self.current, next);
        }
        true
    }
}

impl Dedup {
    /// True if the caller is the first to see this new id and must store it.
    fn claim(&self, id: &Id) -> bool {
        if self.known.contains(id) {
            return false;
        }
        match self.claimed.lock() {
            Ok(mut set) => set.claim(prefix(id)),
            Err(poisoned) => poisoned.into_inner().claim(prefix(id)),
        }
    }
}

/// Backs up `inputs` as one snapshot; returns its id and contents.
pub fn run(repo: &Repository, source: SourceDesc, inputs: Vec<Input<'_>>, opts: &BackupOptions) -> Result<(Id, Snapshot)> {
    run_with(repo, inputs, opts, |snap| {
        snap.source = source;
        Ok(())
    })
}

/// Like [`run`], but `finish` completes the snapshot (source, facts) after every input
/// was read and before it is saved; an error from it means no snapshot, so a source that
/// can only vouch for its data at the end (an AOF directory) can still refuse.
///
/// The input facts are read from (a lone input, or an AOF directory's `.rdb` base) must be
/// a complete RDB unless `opts.raw`: otherwise [`Error::NotRdb`] and no snapshot (packs
/// already written stay; the next backup reuses them, `prune` removes them).
pub fn run_with(
    repo: &Repository,
    inputs: Vec<Input<'_>>,
    opts: &BackupOptions,
    finish: impl FnOnce(&mut Snapshot) -> Result<()>,
) -> Result<(Id, Snapshot)> {
    let started = Instant::now();
    let time = crate::host::now_rfc3339();
    // Dedup needs only which blobs exist: not the full index, a quarter of its memory.
    // Listing the packs (for orphans to adopt) waits on the disk: done meanwhile.
    let facts_input = if inputs.len() == 1 { Some(0) } else { inputs.iter().position(|i| i.name.ends_with(".rdb")) };
    let indexed_file = facts_input.filter(|_| opts.key_index).map(|n| inputs[n].name.clone());
    let names: Vec<String> = inputs.iter().map(|i| i.name.clone()).collect();
    let (known, listed, (base, list_bases)) = std::thread::scope(|s| {
        let listing = s.spawn(|| repo.backend().list(FileKind::Pack));
        // The bases of a layered key index and of delta chunk lists, chosen among the
        // snapshots meanwhile.
        let bases = s.spawn(|| -> (Option<KeyIndexRef>, Vec<Option<(ListBase, Vec<Id>)>>) {
            let Ok(listing) = Listing::load(repo) else { return (None, Vec::new()) };
            let host = opts.host.clone().unwrap_or_else(crate::host::hostname);
            let file = indexed_file.as_ref().filter(|_| !opts.full_key_index);
            let key_base = file.and_then(|file| keybase::choose(&listing.snapshots, &host, file));
            (key_base, names.iter().map(|name| listdelta::choose(&listing.snapshots, &host, name, names.len() == 1)).collect())
        });
        let known = Known::load(repo);
        let listed = listing.join().unwrap_or_else(|_| Err(Error::Invalid("pack listing thread panicked".into())));
        (known, listed, bases.join().unwrap_or_default())
    });
    let (mut known, listed) = (known?, listed?);
    let indexed = std::mem::take(&mut known.packs);
    adopt_orphan_packs(repo, &listed, &indexed, &mut known)?;
    drop(listed);
    drop(indexed);
    Compressor::new(opts.zstd_level, None)?;
    // The repository's dictionary is read (a round trip on a network store) while the input
    // is read and hashed; workers wait for it only before they seal their first frame.
    let stored_dicts = std::mem::take(&mut known.dictionaries);
    let has_dict = !stored_dicts.is_empty();

    // Facts are read from a lone input, or from the RDB of a multi-file
    // source (the base file of an AOF directory): from its chunker's record scan
    // (`facts_input`, above).
    // Without a dictionary yet, the first megabytes of input train one.
    let mut inputs: Vec<(String, Vec<Chunks>, Chunker<Box<dyn Read + Send + '_>>)> = inputs
        .into_iter()
        .enumerate()
        .map(|(n, i)| {
            let config = repo.config();
            let mut chunker = Chunker::new(i.reader, config.chunker, config.chunker_seed()).records(config.records).record_cuts(config.record_cuts).blocks(i.blocks).batch_bytes(JOB_BYTES);
            if facts_input == Some(n) {
                chunker = chunker.scan_log();
            }
            (i.name, Vec::new(), chunker)
        })
        .collect();
    let mut samples: Vec<Vec<u8>> = Vec::new();
    if !has_dict && opts.zstd_level > 0 {
        if let Some((name, prefix, chunker)) = inputs.first_mut() {
            let mut sampled = 0;
            while sampled < compress::MAX_TRAINING_BYTES {
                match chunker.next() {
                    Some(Ok(batch)) => {
                        sampled += batch.bytes().len();
                        prefix.push(batch);
                    }
                    Some(Err(source)) => return Err(Error::Source { name: name.clone(), source }),
                    None => break,
                }
            }
            // The same samples as chunk by chunk: up to the chunk that reaches the limit.
            let mut taken = 0;
            for chunk in prefix.iter().flat_map(|b| b.iter()) {
                if taken >= compress::MAX_TRAINING_BYTES {
                    break;
                }
                taken += chunk.len();
                samples.push(chunk.to_vec());
            }
        }
    }
    // Workers use the dictionary once there is one; a new one is trained while
    // they start (the few small frames before it are compressed without).
    let dict: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    // Closed once the stored dictionary is loaded (or failed to load).
    let (loaded_tx, loaded_rx) = bounded::<()>(0);
    let wait_dict = (has_dict && opts.zstd_level > 0).then_some(&loaded_rx);
    let dedup = Arc::new(Dedup { known, claimed: Mutex::new(Claimed::new()) });
    let threads = opts.threads.max(1);

    let (job_tx, job_rx) = bounded::<Job>(threads * 4);
    let (seal_tx, seal_rx) = bounded::<Vec<Sealed>>(threads * 4);
    let (meta_tx, meta_rx) = bounded::<Vec<Sealed>>(threads * 4);
    let (ev_tx, ev_rx) = bounded::<Event>(threads * 64);

    let outcome = std::thread::scope(|s| {
        // Two closed packs may wait while one is written and fsynced.
        let (pack_tx, pack_rx) = bounded(2);
        let writer = s.spawn(move || write_packs(repo, pack_rx));
        let packer = s.spawn(move || run_packer(repo, seal_rx, meta_rx, pack_tx));
        let dict_loader = {
            let (dict, stored_dicts) = (&dict, &stored_dicts);
            s.spawn(move || -> Result<()> {
                if has_dict {
                    if let Some(d) = Blobs::new(repo, stored_dicts)?.dictionaries().preferred() {
                        let _ = dict.set(d);
                    }
                }
                drop(loaded_tx);
                Ok(())
            })
        };
        if !samples.is_empty() {
            let (seal_tx, dedup, dict) = (seal_tx.clone(), dedup.clone(), &dict);
            s.spawn(move || {
                let Some(d) = compress::train(&samples) else { return };
                drop(samples);
                let id = repo.hasher().id(&d);
                // Stored before any frame that needs it is sealed.
                if dedup.claim(&id) {
                    let _ = seal_tx.send(vec![Sealed::single(repo, BlobType::Dictionary, id, &d, &mut Compressor::plain())]);
                }
                let _ = dict.set(Arc::new(d));
            });
        }
        for _ in 0..threads {
            let (job_rx, seal_tx, ev_tx, dedup, dict) = (job_rx.clone(), seal_tx.clone(), ev_tx.clone(), dedup.clone(), &dict);
            s.spawn(move || run_worker(repo, &dedup, opts.zstd_level, (dict, wait_dict), job_rx, seal_tx, ev_tx));
        }
        drop(job_rx);
        // The indexed file's chunks, named to its layering as the collector puts them in order.
        let (chunks_tx, chunks_rx) = crossbeam_channel::unbounded();
        // The earlier snapshots' blobs this backup draws on: a key index's chunk facts, and
        // each input's base list, read ahead on threads of their own.
        let (marks, lists): (Vec<Option<ListBase>>, Vec<Option<Vec<Id>>>) = list_bases.into_iter().map(|b| b.map_or((None, None), |(m, l)| (Some(m), Some(l)))).unzip();
        let (key_stream, list_streams) = keybase::stream(s, repo, base.as_ref(), lists);
        let mut layering = opts.key_index.then(|| match key_stream {
            Some(b) => Layering::layers(chunks_rx, b),
            None => Layering::facts(chunks_rx),
        });
        let collector = {
            let (meta_tx, dedup) = (meta_tx.clone(), dedup.clone());
            let named = layering.is_some().then_some(chunks_tx).zip(facts_input);
            let deltas: Vec<Option<DeltaWriter>> = marks.into_iter().zip(list_streams).map(|(m, rx)| m.zip(rx).map(|(m, rx)| DeltaWriter::new(m, rx))).collect();
            s.spawn(move || run_collector(repo, &dedup, ev_rx, meta_tx, named, deltas))
        };
        // Key index blobs go to the packer like any other; this sender closes once the top
        // table is stored (after the collector, which knows where the chunk lists start).
        let index_tx = opts.key_index.then(|| meta_tx.clone());
        drop((seal_tx, meta_tx));

        let mut facts_thread = None;
        let mut index_sealer = None;
        let mut facts_bytes = 0u64;
        let mut read_result = Ok(0u64);
        let mut seq = 0u64;
        for (n, (name, prefix, chunker)) in inputs.into_iter().enumerate() {
            let batches = prefix.into_iter().map(Ok).chain(chunker);
            let feed = if facts_input == Some(n) {
                let store = index_tx.clone().map(|tx| {
                    let (store, sealer) = index_store(s, repo, dedup.clone(), opts.zstd_level, tx);
                    index_sealer = Some(sealer);
                    store
                });
                let (feed, handle) = facts::spawn(s, !opts.raw, store, layering.take());
                facts_thread = Some((name.clone(), handle));
                Some(feed)
            } else {
                None
            };
            let is_facts_input = feed.is_some();
            match read_input(name, batches, opts, &mut seq, &job_tx, &ev_tx, feed) {
                Ok((size, parser_stopped)) => {
                    if let Ok(total) = &mut read_result {
                        *total += size;
                    }
                    if is_facts_input {
                        facts_bytes = size;
                    }
                    // A strict parser stopped at an error: the backup will be refused.
                    if parser_stopped {
                        break;
                    }
                }
                Err(e) => {
                    read_result = Err(e);
                    break;
                }
            }
        }
        // The workers and the collector finish what is queued while the parser completes
        // the key index: the last data pack goes up meanwhile.
        drop(job_tx);
        drop(ev_tx);
        let mut index = None;
        let read_result = read_result.map(|size| {
            let parsed = facts_thread.map(|(name, h)| {
                let outcome = h.join().unwrap_or_else(|_| facts::Outcome {
                    parsed: Err(RdbError::Io { offset: 0, source: std::io::Error::other("the RDB parser thread panicked") }),
                    index: None,
                });
                index = outcome.index.map(|top| (name.clone(), top));
                (name, outcome.parsed, facts_bytes)
            });
            (size, parsed)
        });
        let collected = collector.join().unwrap_or_else(|_| Err(Error::Invalid("collector thread panicked".into())));
        // Every page the parser named is sealed before the top table names them.
        let sealed = index_sealer.into_iter().flatten().try_for_each(|h: ScopedJoinHandle<'_, Result<()>>| {
            h.join().unwrap_or_else(|_| Err(Error::Invalid("key index sealer thread panicked".into())))
        });
        let index = match (index, index_tx, &collected) {
            (Some((name, top)), Some(tx), Ok(c)) => {
                Some(sealed.and(top).and_then(|(top, layered)| store_top(repo, &dedup, tx, top, &name, c, (base.as_ref(), layered))))
            }
            _ => None,
        };
        let packed = packer.join().unwrap_or_else(|_| Err(Error::Invalid("packer thread panicked".into())));
        let written = writer.join().unwrap_or_else(|_| Err(Error::Invalid("pack writer thread panicked".into())));
        // The writer's error (e.g. a full disk) is the root cause of a packer that stopped;
        // a dictionary that could not be read, of workers that stopped.
        let loaded = dict_loader.join().unwrap_or_else(|_| Err(Error::Invalid("dictionary loader thread panicked".into())));
        let packed = loaded.and(written).and_then(|stats| packed.map(|()| stats));
        (read_result, collected, packed, index)
    });
    let (read_result, collected, packed, index) = outcome;
    // The packer's error (e.g. a full disk) is the root cause when there is one.
    let stats = packed?;
    let (bytes_processed, parsed) = read_result?;
    let collected = collected?;
    let (key_index, key_layers) = match index.transpose()? {
        Some(Stored::Full(r)) => (Some(r), None),
        Some(Stored::Layers(r)) => (None, Some(r)),
        None => (None, None),
    };
    let facts = match parsed {
        None => None,
        Some((name, parsed, _)) if opts.raw => facts::recorded(&name, parsed),
        Some((_, Ok(facts), _)) => Some(facts),
        Some((input, Err(error), bytes)) => return Err(Error::NotRdb { input, bytes, error }),
    };

    let mut snapshot = Snapshot {
        version: 1,
        time,
        host: opts.host.clone().unwrap_or_else(crate::host::hostname),
        username: crate::host::username(),
        tags: opts.tags.clone(),
        group: opts.group.clone(),
        source: SourceDesc::default(),
        redis: facts,
        files: collected.files,
        summary: BackupSummary {
            bytes_processed,
            chunks: collected.chunks,
            new_chunks: collected.new_chunks,
            new_raw_bytes: collected.new_raw_bytes,
            bytes_added: stats.bytes,
            duration_ms: started.elapsed().as_millis() as u64,
        },
        original: None,
        key_index,
        key_layers,
    };
    finish(&mut snapshot)?;
    let id = snapshot.save(repo)?;
    Ok((id, snapshot))
}

/// A key index blob store: the parser thread names each page (its id) and dedups it;
/// [`SEALERS`] threads of their own compress and seal the new ones for the packer, so the
/// parser's sorting and encoding at the end of the input overlap the compression (the
/// workers are done by then: the cores are free).
fn index_store<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    repo: &'s Repository,
    dedup: Arc<Dedup>,
    level: i32,
    tx: Sender<Vec<Sealed>>,
) -> (facts::StoreBlob<'s>, Vec<ScopedJoinHandle<'s, Result<()>>>) {
    let (page_tx, pages) = bounded::<(Id, Vec<u8>)>(2 * SEALERS);
    let sealers = (0..SEALERS)
        .map(|_| {
            let (pages, tx) = (pages.clone(), tx.clone());
            s.spawn(move || -> Result<()> {
                let mut zstd = Compressor::new(level, None)?;
                for (id, plain) in pages {
                    let sealed = Sealed::single(repo, BlobType::Data, id, &plain, &mut zstd);
                    tx.send(vec![sealed]).map_err(|_| Error::Invalid("pack writer stopped".into()))?;
                }
                Ok(())
            })
        })
        .collect();
    let store = Box::new(move |plain: &[u8]| {
        let id = repo.hasher().id(plain);
        if dedup.claim(&id) {
            // A sealer that stopped has said why; the caller joins it.
            page_tx.send((id, plain.to_vec())).map_err(|_| Error::Invalid("the key index sealers stopped".into()))?;
        }
        Ok(id)
    });
    (store, sealers)
}

/// What a backup's key index became.
enum Stored {
    Full(KeyIndexRef),
    Layers(KeyLayersRef),
}

/// Completes the top table with where the chunk lists of file `name` start, stores it (and
/// the runs of a layered index) and closes the index's sender.
fn store_top(
    repo: &Repository,
    dedup: &Dedup,
    tx: Sender<Vec<Sealed>>,
    mut top: TopTable,
    name: &str,
    c: &Collected,
    (base, layered): (Option<&KeyIndexRef>, Option<Layered>),
) -> Result<Stored> {
    let Some(i) = c.files.iter().position(|f| f.name == name) else {
        return Err(Error::Invalid(format!("key index: no file {name} in the snapshot")));
    };
    top.list_starts = c.list_starts.get(i).cloned().unwrap_or_default();
    let store = |plain: &[u8], zstd: &mut Compressor| -> Result<Id> {
        let id = repo.hasher().id(plain);
        if dedup.claim(&id) {
            tx.send(vec![Sealed::single(repo, BlobType::Data, id, plain, zstd)]).map_err(|_| Error::Invalid("pack writer stopped".into()))?;
        }
        Ok(id)
    };
    let id = store(&top.encode(), &mut Compressor::plain())?;
    let full = KeyIndexRef { file: name.to_string(), top: id.to_hex(), keys: top.keys, facts: Vec::new() };
    let Some(layered) = layered else { return Ok(Stored::Full(full)) };
    match (base, layered.runs) {
        (Some(base), Some(runs)) => {
            let runs = store(&runs.encode(), &mut Compressor::new(3, None)?)?;
            Ok(Stored::Layers(KeyLayersRef {
                file: name.to_string(),
                keys: top.keys + layered.covered,
                base: base.clone(),
                delta: id.to_hex(),
                delta_keys: top.keys,
                runs: runs.to_hex(),
            }))
        }
        _ => Ok(Stored::Full(KeyIndexRef { facts: layered.facts.iter().map(Id::to_hex).collect(), ..full })),
    }
}

/// Renames the input of an [`Error::NotRdb`] (`dump.rdb` -> what the user called it:
/// standard input, a path, a server); other errors pass unchanged.
pub fn name_input(e: Error, what: impl FnOnce(&str) -> String) -> Error {
    match e {
        Error::NotRdb { input, bytes, error } => Error::NotRdb { input: what(&input), bytes, error },
        other => other,
    }
}

/// Reads one input on the caller's thread; returns the bytes read and whether it stopped
/// early because the (strict) RDB parser fed alongside gave up.
fn read_input(
    name: String,
    batches: impl Iterator<Item = std::io::Result<Chunks>>,
    opts: &BackupOptions,
    seq: &mut u64,
    job_tx: &Sender<Job>,
    ev_tx: &Sender<Event>,
    mut facts: Option<FactsFeed>,
) -> Result<(u64, bool)> {
    let stopped = || Error::Invalid("backup workers stopped".into());
    let mut size = 0u64;
    let mut parser_gave_up = false;
    for batch in batches {
        Error::check_cancel(opts.cancel.as_deref())?;
        let mut batch = batch.map_err(|source| Error::Source { name: name.clone(), source })?;
        let bytes = batch.bytes().len();
        size += bytes as u64;
        if let Some(pb) = &opts.progress {
            pb.inc(bytes as u64);
        }
        let n = batch.len() as u64;
        let scanned = batch.take_scanned();
        let batch = Arc::new(batch);
        let parser_stopped = facts.as_mut().is_some_and(|f| !f.push(&batch, scanned));
        job_tx.send(Job { seq: *seq, chunks: batch }).map_err(|_| stopped())?;
        *seq += n;
        if parser_stopped && !opts.raw {
            parser_gave_up = true;
            break;
        }
    }
    ev_tx.send(Event::EndFile { name, end_seq: *seq, size }).map_err(|_| stopped())?;
    Ok((size, parser_gave_up))
}

/// The dictionary workers compress with, and, while the repository's own is still being
/// read, what closes once it is.
type DictSource<'a> = (&'a OnceLock<Arc<Vec<u8>>>, Option<&'a Receiver<()>>);

fn run_worker(
    repo: &Repository,
    dedup: &Dedup,
    level: i32,
    (dict, loading): DictSource<'_>,
    jobs: Receiver<Job>,
    sealed: Sender<Vec<Sealed>>,
    events: Sender<Event>,
) {
    // The level was validated before the threads started; a dictionary that
    // zstd refuses falls back to plain compression.
    let with_dict = |d: Option<&Arc<Vec<u8>>>| Compressor::new(level, d.map(|d| d.as_slice())).or_else(|_| Compressor::new(level, None));
    let Ok(mut zstd) = with_dict(dict.get()) else { return };
    let mut has_dict = dict.get().is_some();
    // Switches to the dictionary once there is one: a trained one whenever it is ready,
    // the stored one (`wait`) before the first frame is sealed.
    let mut settle = |zstd: &mut Compressor, wait: bool| -> bool {
        if has_dict {
            return true;
        }
        if let (true, Some(loading)) = (wait, loading) {
            let _ = loading.recv();
            // Still none: the stored dictionary could not be read (its loader says why).
            if dict.get().is_none() {
                return false;
            }
        }
        if let Some(d) = dict.get() {
            let Ok(z) = with_dict(Some(d)) else { return false };
            (*zstd, has_dict) = (z, true);
        }
        true
    };
    let mut frame = Vec::with_capacity(FRAME_TARGET + 16 * 1024);
    let mut members = Vec::new();
    for job in jobs {
        if !settle(&mut zstd, false) {
            return;
        }
        let mut ids = Vec::with_capacity(job.chunks.len());
        let mut frames = Vec::new();
        // New chunks go into the worker's frame in input order, adjacent or not, and the
        // frame stays open across jobs until it is full: an incremental's job holds ~10 KiB
        // of new chunks, and zstd takes 2x the CPU per byte on frames that small. A restore
        // opens such a frame once for all the stretches it spans (framecache.rs;
        // docs/benchmarks.md, twenty-ninth round).
        let slices: Vec<&[u8]> = job.chunks.iter().collect();
        let chunk_ids = repo.hasher().ids(&slices);
        for id in &chunk_ids {
            dedup.known.prefetch(id);
        }
        for (data, id) in slices.iter().zip(chunk_ids) {
            let len = data.len() as u32;
            let new = dedup.claim(&id);
            if new {
                frame.extend_from_slice(data);
                members.push((id, len));
                if frame.len() >= FRAME_TARGET {
                    if !settle(&mut zstd, true) {
                        return;
                    }
                    frames.push(close_frame(repo, &mut frame, &mut members, &mut zstd));
                }
            }
            ids.push((id, len, new));
        }
        if !frames.is_empty() && sealed.send(frames).is_err() {
            return;
        }
        if events.send(Event::Chunks { seq: job.seq, ids, bytes: job.chunks }).is_err() {
            return;
        }
    }
    if !members.is_empty() && settle(&mut zstd, true) {
        let _ = sealed.send(vec![close_frame(repo, &mut frame, &mut members, &mut zstd)]);
    }
}

fn close_frame(repo: &Repository, frame: &mut Vec<u8>, members: &mut Vec<(Id, u32)>, zstd: &mut Compressor) -> Sealed {
    let (flags, data) = seal_frame(repo.cipher(), BlobType::Data, frame, members, zstd);
    frame.clear();
    Sealed { kind: BlobType::Data, flags, data, blobs: std::mem::take(members) }
}

/// Chunk lists go to packs of their own, so a restore reads a file's lists in a
/// few range reads instead of one per list (and data frames lie side by side);
/// dictionaries stay with the data, stored before the frames that need them. The key
/// index goes with the lists (`meta`), so the last data pack is handed over as soon as
/// the workers are done, and uploads while the key index is still being sorted and stored.
fn run_packer<'a>(repo: &'a Repository, data_rx: Receiver<Vec<Sealed>>, meta_rx: Receiver<Vec<Sealed>>, packs: Sender<FinishedPack<'a>>) -> Result<()> {
    let mut data = Some(Packer::new(repo, packs.clone()));
    let mut meta = Some(Packer::new(repo, packs));
    let never = crossbeam_channel::never();
    loop {
        let (from_data, from_meta) = (if data.is_some() { &data_rx } else { &never }, if meta.is_some() { &meta_rx } else { &never });
        let (packer, got) = crossbeam_channel::select! {
            recv(from_data) -> got => (&mut data, got),
            recv(from_meta) -> got => (&mut meta, got),
        };
        match got {
            Ok(batch) => {
                let Some(p) = packer.as_mut() else { continue };
                for s in batch {
                    p.add_frame(s.kind, s.flags, &s.data, &s.blobs)?;
                }
            }
            Err(_) => {
                if let Some(p) = packer.take() {
                    p.finish()?;
                }
                if data.is_none() && meta.is_none() {
                    return Ok(());
                }
            }
        }
    }
}

#[derive(Default)]
struct Collected {
    files: Vec<SnapshotFile>,
    /// Per file, the offset where each of its chunk lists starts.
    list_starts: Vec<Vec<u64>>,
    chunks: u64,
    new_chunks: u64,
    new_raw_bytes: u64,
}

/// Puts chunk ids back in input order and stores the chunk lists.
/// With `named`, the chunks of input `n` are also named, in order, to `tx` (for the key
/// index's layering; it may have stopped listening).
/// An input with a writer in `deltas` (by input position) stores its list as delta pieces.
fn run_collector(
    repo: &Repository,
    dedup: &Dedup,
    events: Receiver<Event>,
    sealed: Sender<Vec<Sealed>>,
    named: Option<(Sender<ChunkSeen>, usize)>,
    mut deltas: Vec<Option<DeltaWriter>>,
) -> Result<Collected> {
    // Chunk lists are random ids: compressing them gains nothing.
    let mut plain = Compressor::plain();
    let mut out = Collected::default();
    let mut pending: BTreeMap<u64, (Vec<(Id, u32)>, facts::Batch)> = BTreeMap::new();
    let mut ends: VecDeque<(String, u64, u64)> = VecDeque::new();
    let mut whole = blake3::Hasher::new();
    let mut next = 0u64;
    let mut tree = TreeBuilder::new();
    let mut delta = deltas.get_mut(0).and_then(Option::take);
    let mut lists: Vec<String> = Vec::new();
    let mut file_chunks = 0u64;
    let (mut file_bytes, mut starts) = (0u64, Vec::new());
    // New list blobs (leaves and top blobs, or delta pieces), gathered into shared frames.
    let (mut frame, mut members): (Vec<u8>, Vec<(Id, u32)>) = (Vec::new(), Vec::new());
    let mut flush = |frame: &mut Vec<u8>, members: &mut Vec<(Id, u32)>| -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let (flags, data) = seal_frame(repo.cipher(), BlobType::ChunkList, frame, members, &mut plain);
        frame.clear();
        let s = Sealed { kind: BlobType::ChunkList, flags, data, blobs: std::mem::take(members) };
        sealed.send(vec![s]).map_err(|_| Error::Invalid("pack writer stopped".into()))
    };
    let mut store = |blob: Vec<u8>, frame: &mut Vec<u8>, members: &mut Vec<(Id, u32)>| -> Result<Id> {
        let id = repo.hasher().id(&blob);
        if dedup.claim(&id) {
            frame.extend_from_slice(&blob);
            members.push((id, blob.len() as u32));
            if frame.len() >= LIST_FRAME_TARGET {
                flush(frame, members)?;
            }
        }
        Ok(id)
    };

    for ev in events {
        match ev {
            Event::Chunks { seq, ids, bytes } => {
                out.chunks += ids.len() as u64;
                for (_, len, new) in &ids {
                    if *new {
                        out.new_chunks += 1;
                        out.new_raw_bytes += *len as u64;
                    }
                }
                pending.insert(seq, (ids.into_iter().map(|(id, len, _)| (id, len)).collect::<Vec<_>>(), bytes));
            }
            Event::EndFile { name, end_seq, size } => ends.push_back((name, end_seq, size)),
        }
        loop {
            // A file that ends here closes before the next file's chunks are taken: they may
            // already be waiting (workers finish out of order). Its end event always comes first.
            if matches!(ends.front(), Some((_, end, _)) if *end == next) {
                let Some((name, _, size)) = ends.pop_front() else { break };
                let blake3 = std::mem::take(&mut whole).finalize().to_hex().to_string();
                let last = match delta.as_mut() {
                    Some(d) => d.finish(&mut |b| store(b, &mut frame, &mut members))?,
                    None => tree.finish(&mut |b| store(b, &mut frame, &mut members))?,
                };
                lists.extend(last.map(|id| id.to_hex()));
                let list_base = delta.take().map(|d| d.base);
                out.files.push(SnapshotFile { name, size, blake3, chunks: file_chunks, lists: std::mem::take(&mut lists), list_base });
                out.list_starts.push(std::mem::take(&mut starts));
                delta = deltas.get_mut(out.files.len()).and_then(Option::take);
                (file_chunks, file_bytes) = (0, 0);
                continue;
            }
            let Some((ids, bytes)) = pending.remove(&next) else { break };
            // Whole batches in input order, off the reader's thread: BLAKE3 hashes many
            // 1 KiB chunks of a batch at once (SIMD).
            whole.update(bytes.bytes());
            drop(bytes);
            next += ids.len() as u64;
            file_chunks += ids.len() as u64;
            if let Some((tx, _)) = named.as_ref().filter(|(_, n)| *n == out.files.len()) {
                for (id, len) in &ids {
                    let _ = tx.send((lead(id), *len));
                }
            }
            for (id, len) in &ids {
                if !delta.as_ref().map_or(tree.open(), DeltaWriter::open) {
                    starts.push(file_bytes);
                }
                file_bytes += u64::from(*len);
                let done = match delta.as_mut() {
                    Some(d) => d.push(id, &mut |b| store(b, &mut frame, &mut members))?,
                    None => tree.push(id, &mut |b| store(b, &mut frame, &mut members))?,
                };
                lists.extend(done.map(|id| id.to_hex()));
            }
        }
    }
    if !pending.is_empty() || !ends.is_empty() {
        return Err(Error::Invalid("backup stopped before every chunk was stored".into()));
    }
    flush(&mut frame, &mut members)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_remembered_for_two_generations() {
        let mut c = Claimed::new();
        let p = |i: usize| {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            b
        };
        assert!(c.claim(p(0)));
        assert!(!c.claim(p(0)), "a repeat within the window is deduplicated");
        for i in 1..GENERATION {
            assert!(c.claim(p(i)));
        }
        // The first generation is now the previous one: still remembered.
        assert!(c.current.is_empty() && c.previous.len() == GENERATION);
        assert!(!c.claim(p(0)));
        for i in GENERATION..2 * GENERATION {
            assert!(c.claim(p(i)));
        }
        // Two generations later the first ids fell out of the window: stored again.
        assert!(c.claim(p(0)));
        assert!(!c.claim(p(2 * GENERATION - 1)));
    }
}
