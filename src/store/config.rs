//! The repository config: format version, chunker parameters and the id key.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::SecretKey;
use crate::error::{Error, Result};

/// The only repository format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Decrypted contents of `config`.
#[derive(Clone)]
pub struct Config {
    /// Format version.
    pub version: u32,
    /// Random id of the repository (not secret), to tell repositories apart.
    pub repo_id: String,
    /// How the input is cut into chunks; fixed for the life of the repository
    /// so that chunks of different backups line up.
    pub chunker: ChunkerParams,
    /// Chunk sizes for cuts at RDB key-record starts (None: FastCDC only, as repositories
    /// made before record-aligned chunking keep doing so that their chunks still line up).
    pub records: Option<ChunkerParams>,
    /// Which record starts become cuts; fixed with the sizes above.
    pub record_cuts: RecordCuts,
    /// Secret key for blob ids (keyed BLAKE3).
    pub id_key: SecretKey,
}

#[derive(Serialize, Deserialize)]
struct ConfigJson {
    version: u32,
    repo_id: String,
    chunker: ChunkerParams,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    records: Option<ChunkerParams>,
    #[serde(default, skip_serializing_if = "RecordCuts::is_chained")]
    record_cuts: RecordCuts,
    id_key: String,
}

impl Config {
    /// A new config with a fresh id key and record-aligned chunking.
    pub fn new(chunker: ChunkerParams) -> Config {
        Config {
            version: FORMAT_VERSION,
            repo_id: hex::encode(crate::crypto::random_bytes::<16>()),
            chunker,
            records: Some(ChunkerParams::RECORDS),
            record_cuts: RecordCuts::LeastNearby,
            id_key: SecretKey::random(),
        }
    }

    /// The chunker's gear seed, derived from the id key so it is secret too.
    pub fn chunker_seed(&self) -> u64 {
        let h = blake3::keyed_hash(self.id_key.as_bytes(), b"rdbvault chunker seed");
        let mut b = [0u8; 8];
        b.copy_from_slice(&h.as_bytes()[..8]);
        u64::from_le_bytes(b)
    }

    /// Plaintext JSON (wiped when dropped).
    pub fn to_plain(&self) -> Result<Zeroizing<Vec<u8>>> {
        let json = ConfigJson {
            version: self.version,
            repo_id: self.repo_id.clone(),
            chunker: self.chunker,
            records: self.records,
            record_cuts: self.record_cuts,
            id_key: hex::encode(self.id_key.as_bytes()),
        };
        let out = serde_json::to_vec(&json).map_err(|e| Error::Invalid(format!("config: {e}")));
        let _ = Zeroizing::new(json.id_key);
        out.map(Zeroizing::new)
    }

    /// Parses decrypted config JSON.
    pub fn from_plain(plain: &[u8]) -> Result<Config> {
        let json: ConfigJson =
            serde_json::from_slice(plain).map_err(|e| Error::corrupt("config", format!("bad JSON: {e}")))?;
        let id_hex = Zeroizing::new(json.id_key);
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(id_hex.as_bytes(), &mut key[..])
            .map_err(|_| Error::corrupt("config", "id key is not 64 hex digits"))?;
        if json.version != FORMAT_VERSION {
            return Err(Error::Invalid(format!(
                "repository format version {} is not supported by this rdbvault (it reads version {FORMAT_VERSION})",
                json.version
            )));
        }
        json.chunker.validate().map_err(|e| Error::corrupt("config", e))?;
        if let Some(r) = json.records {
            r.validate().map_err(|e| Error::corrupt("config", format!("record chunks: {e}")))?;
        }
        Ok(Config {
            version: json.version,
            repo_id: json.repo_id,
            chunker: json.chunker,
            records: json.records,
            record_cuts: json.record_cuts,
            id_key: SecretKey::from_bytes(*key),
        })
    }
}

/// Chunk size bounds, fixed per repository so that backups line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// No cut before this many bytes.
    pub min_size: u32,
    /// Target average chunk size.
    pub avg_size: u32,
    /// A cut is forced at this many bytes.
    pub max_size: u32,
}

impl Default for ChunkerParams {
    /// Chosen by measurement on real RDB files; see docs/format.md ("Chunking").
    fn default() -> Self {
        ChunkerParams { min_size: 256, avg_size: 1024, max_size: 8 * 1024 }
    }
}

/// Which RDB record starts become chunk boundaries (see docs/format.md, "Chunking").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordCuts {
    /// The first chosen key at least `min_size` bytes after the previous cut: a cut depends on
    /// the one before it, so one changed record could move the cuts of many chunks after it
    /// (repositories made before `LeastNearby` keep it, so their chunks still line up).
    #[default]
    Chained,
    /// A record whose keyed key hash is the least of all records starting within half
    /// `avg_size` (at least `min_size`) bytes on either side: a cut depends only on its
    /// neighbours, so a changed record moves no cut further than that from it.
    LeastNearby,
}

impl RecordCuts {
    fn is_chained(&self) -> bool {
        *self == RecordCuts::Chained
    }
}

impl ChunkerParams {
    /// Default sizes for cuts at RDB record starts (chosen by measurement, see docs/benchmarks.md):
    /// each chunk costs ~110 bytes of index, pack header and chunk list, so a 1 KiB minimum
    /// (not 256 B) stores a full backup of the 1 GiB set in 3% fewer bytes, while a 1% change
    /// adds 12% more (still 0.08x restic's).
    pub const RECORDS: ChunkerParams = ChunkerParams { min_size: 1024, avg_size: 2048, max_size: 16 * 1024 };

    /// Checks the bounds FastCDC accepts and that they are ordered.
    pub fn validate(&self) -> std::result::Result<(), String> {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN};
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min_size)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg_size)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max_size)
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "chunk sizes min {} / avg {} / max {} are out of range (need {MINIMUM_MIN} <= min <= avg <= max <= {MAXIMUM_MAX}, avg >= {AVERAGE_MIN}, max >= {MAXIMUM_MIN})",
                self.min_size, self.avg_size, self.max_size
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config written before record-aligned chunking has no `records`: it keeps FastCDC (its
    /// chunks still line up with its older snapshots); a new one round-trips its sizes.
    #[test]
    fn record_chunks_are_optional_and_round_trip() {
        let key = "11".repeat(32);
        let old = format!(r#"{{"version":1,"repo_id":"ab","chunker":{{"min_size":256,"avg_size":1024,"max_size":8192}},"id_key":"{key}"}}"#);
        let c = Config::from_plain(old.as_bytes()).unwrap();
        assert_eq!(c.records, None);
        assert_eq!(c.record_cuts, RecordCuts::Chained, "an older config keeps the cuts its chunks were made with");
        assert!(!String::from_utf8(c.to_plain().unwrap().to_vec()).unwrap().contains("records"));
        let new = Config::new(ChunkerParams::default());
        assert_eq!(new.records, Some(ChunkerParams::RECORDS));
        assert_eq!(Config::from_plain(&new.to_plain().unwrap()).unwrap().records, Some(ChunkerParams::RECORDS));
        assert_eq!(Config::from_plain(&new.to_plain().unwrap()).unwrap().record_cuts, RecordCuts::LeastNearby);
        assert!(String::from_utf8(new.to_plain().unwrap().to_vec()).unwrap().contains(r#""record_cuts":"least-nearby""#));
        let bad = old.replace(r#""id_key""#, r#""records":{"min_size":9000,"avg_size":1024,"max_size":8192},"id_key""#);
        assert!(Config::from_plain(bad.as_bytes()).is_err());
    }
}
