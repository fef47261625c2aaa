//! RDB-like test data, shared by the criterion benches and `tests/memory_bound.rs`
//! (included there with `#[path]`).
//!
//! A 4 MiB pool of record-like bytes (JSON-ish documents, base64-ish tokens,
//! repetitive log lines, binary integers, each behind a short RDB-style type
//! and length header) is built once; the stream is then made of slices of the
//! pool at pseudo-random offsets (50 B - 3 KiB, like Redis values), each behind
//! a fresh 8-byte key id. So the data compresses like real RDB payloads but
//! chunks rarely repeat, and generation is memcpy-fast even in debug builds.

#![allow(dead_code)]

const POOL: usize = 4 << 20;
const WORDS: &[&str] = &[
    "alpha", "order", "status", "pending", "shipped", "user", "session", "cart", "price", "total", "region", "mobile",
    "premium", "search", "click", "refund", "latency", "error", "debug", "viewer",
];

/// xorshift64*: fast, deterministic, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Endless RDB-like bytes.
pub struct RdbGen {
    rng: Rng,
    pool: Vec<u8>,
    key: u64,
}

impl RdbGen {
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut pool = Vec::with_capacity(POOL + 8192);
        while pool.len() < POOL {
            record(&mut rng, &mut pool);
        }
        RdbGen { rng, pool, key: 0 }
    }

    /// Appends at least `n` bytes to `out`.
    pub fn fill(&mut self, out: &mut Vec<u8>, n: usize) {
        let end = out.len() + n;
        while out.len() < end {
            let len = 50 + self.rng.below(3000) as usize;
            let at = self.rng.below((self.pool.len() - len) as u64) as usize;
            self.key += 1 + self.rng.below(7);
            out.push(0); // RDB_TYPE_STRING
            out.extend_from_slice(&self.key.to_le_bytes());
            out.extend_from_slice(&self.pool[at..at + len]);
        }
    }
}

/// `len` bytes starting with an RDB header.
pub fn rdb_like(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 4096);
    out.extend_from_slice(b"REDIS0010\xfa\x09redis-ver\x067.0.15");
    RdbGen::new(seed).fill(&mut out, len);
    out.truncate(len);
    out
}

fn record(rng: &mut Rng, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0]); // type + 2-byte length, patched below
    match rng.below(4) {
        0 => {
            let s = format!(
                "{{\"id\":{},\"status\":\"{}\",\"customer\":{{\"id\":{},\"country\":\"DE\"}},\"items\":[",
                rng.below(1 << 30),
                WORDS[rng.below(WORDS.len() as u64) as usize],
                rng.below(10_000_000)
            );
            out.extend_from_slice(s.as_bytes());
            for i in 0..1 + rng.below(12) {
                let s = format!(
                    "{}{{\"sku\":\"SKU-{:06}\",\"qty\":{},\"tag\":\"{}\"}}",
                    if i > 0 { "," } else { "" },
                    rng.below(1_000_000),
                    1 + rng.below(9),
                    WORDS[rng.below(WORDS.len() as u64) as usize]
                );
                out.extend_from_slice(s.as_bytes());
            }
            out.extend_from_slice(b"]}");
        }
        1 => {
            const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            for _ in 0..16 + rng.below(112) {
                out.push(B64[rng.below(64) as usize]);
            }
        }
        2 => {
            for _ in 0..2 + rng.below(30) {
                let s = format!("GET /api/v1/items?page={} 200 {}ms\n", rng.below(1000), rng.below(90));
                out.extend_from_slice(s.as_bytes());
            }
        }
        _ => {
            for _ in 0..1 + rng.below(64) {
                out.extend_from_slice(&(rng.below(1 << 20) as u32).to_le_bytes());
            }
        }
    }
    let len = (out.len() - start - 3).min(u16::MAX as usize) as u16;
    out[start] = (len % 5) as u8;
    out[start + 1..start + 3].copy_from_slice(&len.to_le_bytes());
}
