//! Per-stage throughput of the backup and restore pipeline on ~32 MiB of
//! RDB-like data: chunking, keyed ids, zstd, sealing, opening, and the whole
//! `backup::run` / `restore::write_file` paths. `cargo bench -p rdbvault-benches --bench pipeline`.
//! Kept short (10 samples, ~3 s per benchmark) so a full run takes minutes.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, Throughput};
use criterion::measurement::WallTime;

use rdbvault::engine::backup::{self, BackupOptions, Input};
use rdbvault::engine::chunker::Chunker;
use rdbvault::store::ChunkerParams;
use rdbvault::crypto::{Cipher, IdHasher, KdfParams, SecretKey};
use rdbvault::format::index::Index;
use rdbvault::format::compress::{self, Compressor, Dictionaries};
use rdbvault::format::pack::{open_blob, seal_frame, BlobEntry, BlobKeys, BlobType};
use rdbvault::store::{LocalBackend, Repository};
use rdbvault::engine::restore::{self, RestoreOptions};
use rdbvault::format::snapshot::SourceDesc;

#[path = "support/rdbgen.rs"]
mod rdbgen;

const LEN: usize = 32 << 20;

fn group<'a>(c: &'a mut Criterion, name: &str, bytes: usize) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes(bytes as u64));
    g
}

fn chunks_of(data: &[u8]) -> Vec<Vec<u8>> {
    Chunker::new(data, ChunkerParams::default(), 0)
        .flat_map(|b| b.expect("chunking a slice").iter().map(<[u8]>::to_vec).collect::<Vec<_>>())
        .collect()
}

fn new_repo(dir: &std::path::Path) -> Repository {
    let kdf = KdfParams { m_cost: 1024, t_cost: 1, p_cost: 1 };
    Repository::init(Arc::new(LocalBackend::new(dir)), b"bench", ChunkerParams::default(), kdf).expect("init repository")
}

fn backup_once(repo: &Repository, data: &[u8]) -> rdbvault::format::snapshot::Snapshot {
    let input = Input::new("dump.rdb", Box::new(Cursor::new(data)));
    let source = SourceDesc { kind: "bench".into(), name: "dump.rdb".into(), ..Default::default() };
    backup::run(repo, source, vec![input], &BackupOptions { raw: true, ..BackupOptions::default() }).expect("backup").1
}

fn stages(c: &mut Criterion) {
    let data = rdbgen::rdb_like(LEN, 1);
    let chunks = chunks_of(&data);
    let hasher = IdHasher::new(SecretKey::random());
    let cipher = Cipher::new(&SecretKey::random());

    let mut g = group(c, "stage", LEN);
    g.bench_function("fastcdc_chunker", |b| b.iter(|| chunks_of(&data).len()));
    g.bench_function("blake3_keyed_ids", |b| b.iter(|| chunks.iter().map(|c| hasher.id(c).0[0] as usize).sum::<usize>()));
    // As the backup workers hash: 256 chunks per call, in SIMD lanes (sixteen with AVX-512,
    // eight with AVX2).
    g.bench_function("blake3_keyed_ids_lanes", |b| {
        b.iter(|| {
            let mut sum = 0usize;
            for job in chunks.chunks(256) {
                let slices: Vec<&[u8]> = job.iter().map(|c| c.as_slice()).collect();
                sum += hasher.ids(&slices).iter().map(|id| id.0[0] as usize).sum::<usize>();
            }
            sum
        })
    });
    g.bench_function("blake3_whole_stream", |b| b.iter(|| blake3::hash(&data)));
    g.bench_function("crc64_rdb_64k_spans", |b| b.iter(|| data.chunks(64 * 1024).fold(0, rdbvault::rdb::crc64)));
    let dict = compress::train(&chunks[..chunks.len().min(1024)]).expect("enough chunks to train a dictionary");
    for level in [1, 2, 3] {
        g.bench_function(format!("zstd_{level}_per_chunk"), |b| {
            let mut z = Compressor::new(level, None).expect("zstd context");
            b.iter(|| chunks.iter().map(|c| z.compress(c).map_or(c.len(), |v| v.len())).sum::<usize>())
        });
        g.bench_function(format!("zstd_{level}_per_chunk_dictionary"), |b| {
            let mut z = Compressor::new(level, Some(&dict)).expect("zstd context");
            b.iter(|| chunks.iter().map(|c| z.compress(c).map_or(c.len(), |v| v.len())).sum::<usize>())
        });
    }
    g.bench_function("xchacha20poly1305_seal", |b| {
        b.iter(|| chunks.iter().map(|c| cipher.seal(b"aad", c).len()).sum::<usize>())
    });
    let ids: Vec<_> = chunks.iter().map(|c| hasher.id(c)).collect();
    // Each frame's members (id, length), which its seal binds: computed before, not measured.
    let members: Vec<(_, u32)> = ids.iter().zip(&chunks).map(|(id, c)| (*id, c.len() as u32)).collect();
    g.bench_function("seal_blob_zstd3", |b| {
        let mut z = Compressor::new(3, Some(&dict)).expect("zstd context");
        b.iter(|| chunks.iter().zip(&members).map(|(c, m)| seal_frame(&cipher, BlobType::Data, c, std::slice::from_ref(m), &mut z).1.len()).sum::<usize>())
    });
    // Frames of 64 consecutive chunks (~64 KiB), as the backup writes them.
    let frames: Vec<Vec<u8>> = chunks.chunks(64).map(|f| f.concat()).collect();
    g.bench_function("seal_frame64_zstd3", |b| {
        let mut z = Compressor::new(3, Some(&dict)).expect("zstd context");
        b.iter(|| frames.iter().zip(members.chunks(64)).map(|(f, m)| seal_frame(&cipher, BlobType::Data, f, m, &mut z).1.len()).sum::<usize>())
    });
    let mut z = Compressor::new(3, Some(&dict)).expect("zstd context");
    let sealed: Vec<(BlobEntry, Vec<u8>)> = chunks
        .iter()
        .zip(&ids)
        .zip(&members)
        .map(|((c, id), m)| {
            let (flags, s) = seal_frame(&cipher, BlobType::Data, c, std::slice::from_ref(m), &mut z);
            let len = c.len() as u32;
            let e = BlobEntry { id: *id, kind: BlobType::Data, flags, offset: 0, length: s.len() as u32, raw_len: len, inner: 0, frame_len: len };
            (e, s)
        })
        .collect();
    let mut dicts = Dictionaries::new();
    dicts.add(dict.clone());
    let keys = BlobKeys { cipher: &cipher, hasher: &hasher };
    g.bench_function("open_blob_zstd3", |b| {
        let mut dec = dicts.decoder();
        b.iter(|| sealed.iter().map(|(e, s)| open_blob(&keys, &mut dec, e, s, "bench").expect("open").len()).sum::<usize>())
    });
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    let data = rdbgen::rdb_like(LEN, 2);
    let mut g = group(c, "pipeline", LEN);
    g.bench_function("backup_new_repo", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("temp dir");
                let repo = new_repo(dir.path());
                (dir, repo)
            },
            |(dir, repo)| {
                backup_once(&repo, &data);
                dir // dropped (deleted) outside the timed part
            },
            BatchSize::PerIteration,
        )
    });

    let dir = tempfile::tempdir().expect("temp dir");
    let repo = new_repo(dir.path());
    let snap = backup_once(&repo, &data);
    g.bench_function("backup_unchanged", |b| b.iter(|| backup_once(&repo, &data).summary.new_chunks));
    let index = Index::load(&repo).expect("index");
    let blobs = restore::Blobs::new(&repo, &index).expect("dictionaries");
    g.bench_function("restore_to_sink", |b| {
        b.iter(|| restore::write_file(&blobs, &snap.files[0], &mut std::io::sink(), &RestoreOptions::default()).expect("restore"))
    });
    g.finish();
}

criterion_group!(benches, stages, pipeline);
criterion_main!(benches);
