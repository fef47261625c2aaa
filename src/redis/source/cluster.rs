//! `--cluster`: find every master and its slots so each can be streamed.

use std::net::IpAddr;

use super::command;
use super::error::{Result, SourceError};
use super::transport::ConnectOptions;
use super::url::RedisUrl;
use super::ClusterShard;

/// Number of hash slots in a Redis cluster.
pub const SLOTS: u32 = 16384;

/// A master as announced in `CLUSTER NODES`, with an address we can actually reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterMaster {
    /// 40-character node id.
    pub node_id: String,
    /// Host to connect to (the seed's host when the node announced loopback or nothing).
    pub host: String,
    /// Client port.
    pub port: u16,
    /// Inclusive slot ranges served, sorted.
    pub slots: Vec<(u16, u16)>,
}

impl ClusterMaster {
    /// Connection target for this master, with the seed URL's credentials and TLS.
    pub fn url(&self, seed: &RedisUrl) -> RedisUrl {
        seed.with_host_port(&self.host, self.port)
    }

    /// Shard description for [`super::SourceInfo::cluster`].
    pub fn shard(&self) -> ClusterShard {
        let group_id = match (self.slots.first(), self.slots.len()) {
            (Some((a, b)), 1) => format!("slots-{a}-{b}"),
            (Some((a, b)), n) => format!("slots-{a}-{b}-and-{}-more", n - 1),
            (None, _) => format!("node-{}", self.node_id),
        };
        ClusterShard { node_id: self.node_id.clone(), slots: self.slots.clone(), group_id }
    }
}

/// Ask the seed node for `CLUSTER NODES` and return the healthy masters that serve slots.
pub fn discover_masters(seed: &RedisUrl, opts: &ConnectOptions) -> Result<Vec<ClusterMaster>> {
    let addr = seed.addr();
    let mut con = command::connect(seed, opts)?;
    let text = command::text(&mut con, &addr, &["CLUSTER", "NODES"])?;
    parse_nodes(&text, seed)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

/// Parse `CLUSTER NODES` output; `seed` supplies the host for nodes that announce none or loopback.
pub fn parse_nodes(text: &str, seed: &RedisUrl) -> Result<Vec<ClusterMaster>> {
    let addr = seed.addr();
    let bad = |msg: String| SourceError::Cluster { addr: addr.clone(), msg };
    let mut masters = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < 8 {
            return Err(bad(format!("short CLUSTER NODES line with {} fields", f.len())));
        }
        let flags: Vec<&str> = f[2].split(',').collect();
        if !flags.contains(&"master") || flags.iter().any(|x| matches!(*x, "fail" | "noaddr" | "handshake")) {
            continue;
        }
        let mut slots = Vec::new();
        for s in &f[8..] {
            if s.starts_with('[') {
                continue; // migrating/importing marker, not ownership
            }
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) else {
                return Err(bad(format!("bad slot range {s:?}")));
            };
            if a > b || u32::from(b) >= SLOTS {
                return Err(bad(format!("bad slot range {s:?}")));
            }
            slots.push((a, b));
        }
        if slots.is_empty() {
            continue; // a master without slots holds no data
        }
        slots.sort_unstable();
        // ip:port@cport[,hostname]
        let hostport = f[1].split(['@', ',']).next().unwrap_or("");
        let (ip, port) = hostport.rsplit_once(':').ok_or_else(|| bad(format!("bad node address {:?}", f[1])))?;
        let port = port.parse::<u16>().map_err(|_| bad(format!("bad node port {:?}", f[1])))?;
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        let host = if flags.contains(&"myself") && port == seed.port {
            seed.host.clone()
        } else if ip.is_empty() || (is_loopback(ip) && !is_loopback(&seed.host)) {
            // The node sits on the seed's machine but announced an address only valid there.
            seed.host.clone()
        } else {
            ip.to_string()
        };
        masters.push(ClusterMaster { node_id: f[0].to_string(), host, port, slots });
    }
    masters.sort_by_key(|m| m.slots.first().copied());
    Ok(masters)
}

/// Fail unless the masters together own every slot exactly once (a backup must not miss data silently).
pub fn check_coverage(addr: &str, masters: &[ClusterMaster]) -> Result<()> {
    let mut ranges: Vec<(u16, u16)> = masters.iter().flat_map(|m| m.slots.iter().copied()).collect();
    ranges.sort_unstable();
    let mut next: u32 = 0;
    for (a, b) in ranges {
        if u32::from(a) != next {
            let msg = if u32::from(a) > next {
                format!("slots {next}-{} are served by no healthy master", a - 1)
            } else {
                format!("slot {a} is claimed twice")
            };
            return Err(SourceError::Cluster { addr: addr.to_string(), msg });
        }
        next = u32::from(b) + 1;
    }
    if next != SLOTS {
        return Err(SourceError::Cluster { addr: addr.to_string(), msg: format!("slots {next}-{} are served by no healthy master", SLOTS - 1) });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-a slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 :30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5459 5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 master,fail - 0 1426238316232 5 connected
";

    #[test]
    fn picks_masters_and_maps_addresses() {
        let seed = RedisUrl::parse("redis://db.example:30001").unwrap();
        let m = parse_nodes(NODES, &seed).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].slots, vec![(0, 5459), (5460, 5460)]);
        assert_eq!((m[0].host.as_str(), m[0].port), ("db.example", 30001));
        assert_eq!(m[1].host, "db.example"); // announced no ip
        assert_eq!(m[2].host, "db.example"); // announced loopback, seed is remote
        check_coverage("x", &m).unwrap();
        let seed = RedisUrl::parse("redis://127.0.0.1:30001").unwrap();
        let m = parse_nodes(NODES, &seed).unwrap();
        assert_eq!(m[2].host, "127.0.0.1");
        assert!(check_coverage("x", &m[..2]).is_err());
    }
}
