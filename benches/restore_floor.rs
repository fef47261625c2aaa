//! The restore floor: CPU-seconds of only opening (XChaCha20-Poly1305) and
//! decompressing (zstd) the frames a snapshot file uses, one thread, each
//! frame once, with the sealed bytes already in memory; then, for scale, the
//! other costs a verified restore adds (keyed ids of every chunk, whole-file
//! BLAKE3, the copy of each chunk to its place). Compare with `restore`'s
//! user+sys. Usage (release build):
//!
//! RDBVAULT_PASSWORD=... cargo bench -p rdbvault-benches --bench restore_floor -- REPO [SNAPSHOT]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rdbvault::crypto::Id;
use rdbvault::engine::restore::{load_index, Blobs};
use rdbvault::format::pack::{frame_aad, BlobEntry, DIGEST_LEN, FLAG_BOUND, FLAG_ZSTD};
use rdbvault::format::snapshot::Snapshot;
use rdbvault::store::{FileKind, LocalBackend, Repository};

/// CPU time of this thread, in seconds.
fn thread_cpu() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a plain clock read into a local.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// Runs `f`, printing its CPU and wall seconds; returns the CPU seconds.
fn timed(what: &str, bytes: u64, f: impl FnOnce()) -> f64 {
    let (c0, w0) = (thread_cpu(), Instant::now());
    f();
    let (cpu, wall) = (thread_cpu() - c0, w0.elapsed().as_secs_f64());
    println!("{what:<44} {cpu:7.3} CPU-s {wall:7.3} wall-s {:8.0} MB/s", bytes as f64 / 1e6 / cpu);
    cpu
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let Some(path) = args.first() else {
        eprintln!("usage: RDBVAULT_PASSWORD=... cargo bench -p rdbvault-benches --bench restore_floor -- REPO [SNAPSHOT]");
        std::process::exit(2);
    };
    let spec = args.get(1).map_or("latest", String::as_str);
    let password = std::env::var("RDBVAULT_PASSWORD").expect("RDBVAULT_PASSWORD");
    let repo = Repository::open(Arc::new(LocalBackend::new(path)), password.as_bytes()).expect("open the repository");
    let (index, _) = load_index(&repo).expect("load the index");
    let ((_, snap), _) = Snapshot::find(&repo, spec).expect("find the snapshot");
    let blobs = Blobs::new(&repo, &index).expect("load dictionaries");
    let file = &snap.files[0];

    // The file's chunks, and its frames in the order it first uses them.
    let mut chunks: Vec<(usize, BlobEntry)> = Vec::new();
    let mut frame_of: HashMap<(Id, u32), usize> = HashMap::new();
    let mut frames: Vec<(Id, BlobEntry)> = Vec::new();
    for id in blobs.chunk_ids(file) {
        let id = id.expect("read the chunk lists");
        let (pack, e) = index.get(&id).expect("chunk in the index");
        let k = *frame_of.entry((pack, e.offset)).or_insert_with(|| {
            frames.push((pack, e));
            frames.len() - 1
        });
        chunks.push((k, e));
    }
    // How the file uses its frames: each once in order (opened straight into the
    // output, vouched by its digest), or partly (vouched through the index's list
    // of the frame's blobs, or hashed chunk by chunk).
    let mut next: Vec<Option<(u64, u64)>> = vec![Some((0, 0)); frames.len()];
    let (mut used, mut at) = (vec![0u64; frames.len()], 0u64);
    for (k, e) in &chunks {
        next[*k] = match next[*k] {
            Some((inner, out)) if inner == e.inner as u64 && (inner == 0 || out == at) => Some((inner + e.raw_len as u64, at + e.raw_len as u64)),
            _ => None,
        };
        used[*k] += e.raw_len as u64;
        at += e.raw_len as u64;
    }
    let whole = (0..frames.len()).filter(|&k| next[k].is_some_and(|(inner, _)| inner == frames[k].1.frame_len as u64)).count();
    let partly = (0..frames.len()).filter(|&k| used[k] < frames[k].1.frame_len as u64).count();
    let partly_chunks = chunks.iter().filter(|(k, _)| used[*k] < frames[*k].1.frame_len as u64).count();
    println!("frames used once, whole and in order: {whole}; used in part: {partly} (holding {partly_chunks} of the file's chunks)");
    let mut sealed: Vec<Vec<u8>> = frames
        .iter()
        .map(|(pack, e)| repo.backend().read_range(FileKind::Pack, &pack.to_hex(), e.offset as u64, e.length as usize).expect("read a frame"))
        .collect();
    let sealed_bytes: u64 = sealed.iter().map(|s| s.len() as u64).sum();
    let plain_bytes: u64 = frames.iter().map(|(_, e)| e.frame_len as u64).sum();
    println!(
        "{}: {} bytes, {} chunks, {} frames ({} sealed bytes, {} plaintext bytes, {} bound)",
        file.name,
        file.size,
        chunks.len(),
        frames.len(),
        sealed_bytes,
        plain_bytes,
        frames.iter().filter(|(_, e)| e.flags & FLAG_BOUND != 0).count()
    );

    let cipher = repo.cipher();
    let aead = timed("floor: AEAD open of every frame", sealed_bytes, || {
        for ((_, e), s) in frames.iter().zip(&mut sealed) {
            cipher.open_in_place(&frame_aad(e.kind, e.flags), s, "frame").expect("open a frame");
        }
    });
    let mut zstd = blobs.decoder();
    let mut decompress = |e: &BlobEntry, s: &[u8], out: &mut [u8]| {
        let body = &s[24..s.len() - 16];
        let body = if e.flags & FLAG_BOUND != 0 { &body[DIGEST_LEN..] } else { body };
        if e.flags & FLAG_ZSTD != 0 {
            zstd.decompress_into(body, out, "frame").expect("decompress a frame");
        } else {
            out.copy_from_slice(body);
        }
    };
    // Into one reused buffer, as a restore does: no page faults on fresh memory.
    let mut one = vec![1u8; frames.iter().map(|(_, e)| e.frame_len as usize).max().unwrap_or(0)];
    let unzstd = timed("floor: zstd decompression (copy if stored)", plain_bytes, || {
        for ((_, e), s) in frames.iter().zip(&sealed) {
            decompress(e, s, &mut one[..e.frame_len as usize]);
        }
    });
    // Untimed: every frame's plaintext, for the costs below.
    let mut plain: Vec<Vec<u8>> = frames.iter().map(|(_, e)| vec![1u8; e.frame_len as usize]).collect();
    for (((_, e), s), out) in frames.iter().zip(&sealed).zip(&mut plain) {
        decompress(e, s, out);
    }
    println!("{:<44} {:7.3} CPU-s", "floor (AEAD + zstd)", aead + unzstd);

    // What a verified restore adds on top, for scale.
    // Touched once, so the copy below does not count page faults.
    let mut output = vec![1u8; file.size as usize];
    timed("copy of every chunk to its place", file.size, || {
        let mut at = 0;
        for (k, e) in &chunks {
            let src = &plain[*k][e.inner as usize..(e.inner + e.raw_len) as usize];
            output[at..at + src.len()].copy_from_slice(src);
            at += src.len();
        }
    });
    timed("keyed ids of every chunk (eight lanes)", file.size, || {
        let slices: Vec<&[u8]> = chunks.iter().map(|(k, e)| &plain[*k][e.inner as usize..(e.inner + e.raw_len) as usize]).collect();
        for (ids, got) in slices.chunks(4096).zip(chunks.chunks(4096)) {
            for (id, (_, e)) in repo.hasher().ids(ids).into_iter().zip(got) {
                assert!(id == e.id, "a chunk does not hash to its id");
            }
        }
    });
    timed("whole-file BLAKE3", file.size, || {
        let mut h = blake3::Hasher::new();
        for part in output.chunks(256 << 10) {
            h.update(part);
        }
        assert_eq!(h.finalize().to_hex().as_str(), file.blake3, "whole-file hash");
    });
}
