//! Bulk key data for backup tests: deterministic mixed-type keys, loaded through `redis-cli --pipe`.

use super::server::RedisServer;

/// Deterministic pseudo-random numbers, so test data is the same on every run.
pub struct Rng(pub u64);

impl Rng {
    /// Next xorshift64 value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A lowercase word of `len` letters.
    pub fn word(&mut self, len: usize) -> String {
        (0..len).map(|_| (b'a' + self.below(26) as u8) as char).collect()
    }
}

fn s(x: impl ToString) -> String {
    x.to_string()
}

/// Commands that (re)write key number `i` with a value of its type; `salt` changes the values.
pub fn key_commands(i: u64, salt: u64, rng: &mut Rng) -> Vec<Vec<String>> {
    let v = |rng: &mut Rng, n: usize| format!("{salt}-{}", rng.word(n));
    match i % 6 {
        0 => vec![vec![s("SET"), format!("str:{i}"), format!("{{\"id\":{i},\"name\":\"{}\",\"bio\":\"{}\"}}", v(rng, 8), v(rng, 60))]],
        1 => vec![vec![s("SET"), format!("cnt:{i}"), s(rng.below(1_000_000) + salt)]],
        2 => {
            let mut c = vec![s("HSET"), format!("user:{i}")];
            for f in ["name", "email", "city", "plan"] {
                c.push(s(f));
                c.push(v(rng, 12));
            }
            vec![vec![s("DEL"), format!("user:{i}")], c]
        }
        3 => {
            let mut c = vec![s("RPUSH"), format!("list:{i}")];
            c.extend((0..8).map(|_| v(rng, 10)));
            vec![vec![s("DEL"), format!("list:{i}")], c]
        }
        4 => {
            let mut c = vec![s("SADD"), format!("set:{i}")];
            c.extend((0..6).map(|_| v(rng, 6)));
            vec![vec![s("DEL"), format!("set:{i}")], c]
        }
        _ => {
            let mut c = vec![s("ZADD"), format!("zset:{i}")];
            for _ in 0..6 {
                c.push(s(rng.below(10_000)));
                c.push(v(rng, 8));
            }
            vec![vec![s("DEL"), format!("zset:{i}")], c]
        }
    }
}

/// Fills keys `0..n` with mixed types.
pub fn fill(redis: &RedisServer, n: u64, salt: u64, seed: u64) {
    let mut rng = Rng(seed | 1);
    let cmds: Vec<Vec<String>> = (0..n).flat_map(|i| key_commands(i, salt, &mut rng)).collect();
    redis.pipe(&cmds);
}

/// Fill a mix of types into a few databases (deterministic, modest size).
pub fn fill_sample(server: &RedisServer, n: usize) {
    let mut con = server.conn();
    for db in [0u32, 2] {
        let mut p = redis::pipe();
        p.cmd("SELECT").arg(db).ignore();
        for i in 0..n {
            p.cmd("SET").arg(format!("str:{db}:{i}")).arg(format!("value-{i}-{}", "x".repeat(i % 50))).ignore();
            if i % 10 == 0 {
                p.cmd("HSET").arg(format!("hash:{db}:{i}")).arg("a").arg(i).arg("b").arg("bee").ignore();
                p.cmd("RPUSH").arg(format!("list:{db}:{i}")).arg(1).arg(2).arg(3).ignore();
                p.cmd("ZADD").arg(format!("zset:{db}:{i}")).arg(1.5).arg("m1").arg(2).arg("m2").ignore();
                p.cmd("SADD").arg(format!("set:{db}:{i}")).arg("s1").arg("s2").ignore();
            }
        }
        p.cmd("PEXPIRE").arg(format!("str:{db}:0")).arg(3_600_000).ignore();
        let () = p.query(&mut con).expect("fill");
    }
}
