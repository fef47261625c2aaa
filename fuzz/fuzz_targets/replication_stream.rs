//! What a master sends on a replication connection: the handshake replies, then the RDB
//! payload in disk (`$<len>`) or diskless (`$EOF:<mark>`) framing. The first byte sets the
//! largest read the pipe returns (to cut the end mark across reads), the second whether AUTH is sent.
#![no_main]

extern crate rdbvault_fuzz;

use std::io::{self, Read, Write};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rdbvault::redis::source::replication::ReplicationStream;
use rdbvault::redis::source::url::RedisUrl;

/// The master's side: reads return the fuzz input in pieces; writes are dropped.
struct Pipe<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Pipe<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = out.len().min(self.step).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

impl Write for Pipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let [step, auth, rest @ ..] = data else { return };
    let url = if auth & 1 == 1 { "redis://user:pw@fuzz:6379" } else { "redis://fuzz:6379" };
    let url = RedisUrl::parse(url).expect("fixed url");
    let pipe = Pipe { data: rest, step: *step as usize + 1 };
    let Ok(mut s) = ReplicationStream::over(&url, pipe, Duration::from_secs(1)) else { return };
    let _ = (s.rdb_version(), s.payload_len(), s.replid(), s.repl_offset());
    let mut payload = Vec::new();
    let _ = s.read_to_end(&mut payload);
    assert!(payload.len() <= rest.len(), "payload longer than what was sent");
});
