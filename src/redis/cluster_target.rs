//! Where `restore --to` writes: several connections to one server (keys spread by hash), or
//! one connection per master of a Redis Cluster (keys routed by their CRC16 hash slot).

use crate::redis::source::cluster::{check_coverage, discover_masters, SLOTS};
use crate::redis::source::{command, ConnectOptions, RedisUrl, SourceError};

/// CRC16 (XMODEM, polynomial 0x1021) table, as Redis Cluster hashes keys.
const CRC16: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u16) << 8;
        let mut b = 0;
        while b < 8 {
            c = if c & 0x8000 != 0 { (c << 1) ^ 0x1021 } else { c << 1 };
            b += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// The hash slot of a key: CRC16 of its hash tag (`{...}`, when not empty) or of the whole key.
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        rest.iter().position(|&b| b == b'}').filter(|&close| close > 0).map(|close| &rest[..close])
    });
    let crc = tagged.unwrap_or(key).iter().fold(0u16, |crc, &b| (crc << 8) ^ CRC16[usize::from((crc >> 8) as u8 ^ b)]);
    crc % SLOTS as u16
}

/// Which connection a key goes to.
#[derive(Debug, Clone)]
pub enum Route {
    /// One of N connections to one server, by the key's slot (so a key always takes the same one).
    Hash(usize),
    /// The master serving the key's slot: connection index per slot.
    Slots(Vec<u16>),
}

impl Route {
    pub fn lane(&self, key: &[u8]) -> usize {
        match self {
            Route::Hash(n) => usize::from(slot(key)) % (*n).max(1),
            Route::Slots(table) => usize::from(table[usize::from(slot(key))]),
        }
    }
}

/// The connections a load writes through.
pub struct LoadTarget {
    /// The server (or seed node) as named in messages.
    pub addr: String,
    /// Each connection and the address it goes to.
    pub connections: Vec<(String, redis::Connection)>,
    pub route: Route,
    /// For a cluster: how to reach the nodes a `MOVED`/`ASK` names.
    pub redirect: Option<(RedisUrl, ConnectOptions)>,
}

impl LoadTarget {
    /// `n` connections to one server.
    pub fn server(url: &RedisUrl, opts: &ConnectOptions, n: usize) -> Result<LoadTarget, SourceError> {
        let addr = url.addr();
        let connections = (0..n.max(1)).map(|_| Ok((addr.clone(), command::connect(url, opts)?))).collect::<Result<Vec<_>, SourceError>>()?;
        Ok(LoadTarget { addr, route: Route::Hash(connections.len()), connections, redirect: None })
    }

    /// One connection per master of the cluster `seed` belongs to; every slot must be served.
    pub fn cluster(seed: &RedisUrl, opts: &ConnectOptions) -> Result<LoadTarget, SourceError> {
        let addr = seed.addr();
        let masters = discover_masters(seed, opts)?;
        check_coverage(&addr, &masters)?;
        let mut table = vec![0u16; SLOTS as usize];
        let mut connections = Vec::with_capacity(masters.len());
        for (i, m) in masters.iter().enumerate() {
            for &(a, b) in &m.slots {
                table[usize::from(a)..=usize::from(b)].fill(i as u16);
            }
            let url = m.url(seed);
            connections.push((url.addr(), command::connect(&url, opts)?));
        }
        Ok(LoadTarget { addr, connections, route: Route::Slots(table), redirect: Some((seed.clone(), opts.clone())) })
    }

    /// Whether this is a cluster (one connection per master).
    pub fn is_cluster(&self) -> bool {
        matches!(self.route, Route::Slots(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot(b"123456789"), 0x31C3 % 16384);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"), "an empty tag hashes the whole key");
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    #[test]
    fn hash_routes_spread_and_stay() {
        let r = Route::Hash(4);
        let lanes: std::collections::BTreeSet<usize> = (0..100).map(|i| r.lane(format!("k{i}").as_bytes())).collect();
        assert_eq!(lanes.len(), 4);
        assert_eq!(r.lane(b"same"), r.lane(b"same"));
    }
}
