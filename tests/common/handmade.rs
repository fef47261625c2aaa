//! Hand-made RDB files (version 10) with exactly the keys a test names, for tests that
//! assert output to the byte without a redis-server.

/// Builds an RDB: aux fields, then keys in the order they are added.
pub struct Rdb {
    bytes: Vec<u8>,
    db: Option<u64>,
}

/// An RDB string (lengths below 16 KiB: a 6- or 14-bit length).
fn string(out: &mut Vec<u8>, s: &[u8]) {
    match s.len() {
        n @ 0..64 => out.push(n as u8),
        n @ 64..16_384 => out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]),
        n => panic!("hand-made strings stay below 16 KiB, not {n} bytes"),
    }
    out.extend_from_slice(s);
}

impl Rdb {
    /// An RDB written by `redis_version` (the `redis-ver` aux field).
    pub fn new(redis_version: &str) -> Rdb {
        let mut bytes = b"REDIS0010".to_vec();
        bytes.push(0xFA);
        string(&mut bytes, b"redis-ver");
        string(&mut bytes, redis_version.as_bytes());
        Rdb { bytes, db: None }
    }

    fn key(&mut self, db: u64, ty: u8, key: &[u8], expire_ms: Option<u64>) {
        if self.db != Some(db) {
            self.bytes.extend_from_slice(&[0xFE, db as u8]);
            self.db = Some(db);
        }
        if let Some(at) = expire_ms {
            self.bytes.push(0xFC);
            self.bytes.extend_from_slice(&at.to_le_bytes());
        }
        self.bytes.push(ty);
        string(&mut self.bytes, key);
    }

    /// A string key.
    pub fn string(mut self, db: u64, key: &[u8], value: &[u8], expire_ms: Option<u64>) -> Rdb {
        self.key(db, 0, key, expire_ms);
        string(&mut self.bytes, value);
        self
    }

    /// A set in a hash table.
    pub fn set(mut self, db: u64, key: &[u8], members: &[&[u8]]) -> Rdb {
        self.key(db, 2, key, None);
        self.bytes.push(members.len() as u8);
        for m in members {
            string(&mut self.bytes, m);
        }
        self
    }

    /// A set of small integers as an intset (16-bit members).
    pub fn intset(mut self, db: u64, key: &[u8], members: &[i16]) -> Rdb {
        self.key(db, 11, key, None);
        let mut blob = 2u32.to_le_bytes().to_vec();
        blob.extend_from_slice(&(members.len() as u32).to_le_bytes());
        for m in members {
            blob.extend_from_slice(&m.to_le_bytes());
        }
        string(&mut self.bytes, &blob);
        self
    }

    /// A hash in a hash table.
    pub fn hash(mut self, db: u64, key: &[u8], fields: &[(&[u8], &[u8])]) -> Rdb {
        self.key(db, 4, key, None);
        self.bytes.push(fields.len() as u8);
        for (f, v) in fields {
            string(&mut self.bytes, f);
            string(&mut self.bytes, v);
        }
        self
    }

    /// The file: end mark and a zero checksum (checksums disabled, as Redis allows).
    pub fn bytes(mut self) -> Vec<u8> {
        self.bytes.push(0xFF);
        self.bytes.extend_from_slice(&[0; 8]);
        self.bytes
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_millis() as u64
}
