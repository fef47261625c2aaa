//! Live replication against real redis-server processes on 127.0.0.1.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::data::fill_sample;
use common::rdb::assert_valid_rdb;
use common::server::{have, make_tls_certs, RedisServer, ServerConfig};
use rdbvault::redis::source::{self, ConnectOptions, RedisUrl, ReplicationStream, SourceError, SourceKind};

fn opts() -> ConnectOptions {
    ConnectOptions { connect_timeout: Duration::from_secs(5), read_timeout: Duration::from_secs(10), ..Default::default() }
}

fn read_all(r: &mut dyn Read) -> Vec<u8> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).expect("stream must end cleanly");
    v
}

/// Stream the source, load the RDB into a fresh server, compare digest and key count.
fn roundtrip(src: &RedisServer) -> (source::SourceInfo, Vec<u8>) {
    let url = RedisUrl::parse(&src.url()).unwrap();
    let mut live = source::open_replication(&url, &opts()).expect("open replication");
    assert_eq!(live.streams.len(), 1);
    let (name, reader) = &mut live.streams[0];
    assert_eq!(name, "dump.rdb");
    let rdb = read_all(reader.as_mut());
    assert_valid_rdb(&rdb);
    let copy = RedisServer::load_rdb(&rdb);
    assert_eq!(copy.digest(), src.digest(), "restored dataset differs");
    assert_eq!(copy.total_keys(), src.total_keys());
    (live.info, rdb)
}

#[test]
fn diskless_sync_streams_a_complete_rdb() {
    let src = RedisServer::start(&[("repl-diskless-sync", "yes"), ("repl-diskless-sync-delay", "0")]);
    fill_sample(&src, 2000);
    let (info, _) = roundtrip(&src);
    assert_eq!(info.kind, SourceKind::Redis);
    assert_eq!(info.rdb_version, Some(10));
    assert_eq!(info.role.as_deref(), Some("master"));
    assert_eq!(info.keys_per_db.get(&0).copied(), Some(2000 + 4 * 200));
    assert_eq!(info.keys_per_db.get(&2).copied(), Some(2000 + 4 * 200));
    assert!(info.replid.as_deref().is_some_and(|r| r.len() == 40));
    assert!(info.redis_version.is_some() && info.used_memory.is_some() && info.snapshot_time_ms.is_some());
    // The description is what the snapshot stores: it must serialise.
    assert!(serde_json::to_string(&info).unwrap().contains("\"kind\":\"redis\""));
}

#[test]
fn disk_based_sync_streams_a_complete_rdb() {
    let src = RedisServer::start(&[("repl-diskless-sync", "no")]);
    fill_sample(&src, 1500);
    let url = RedisUrl::parse(&src.url()).unwrap();
    let s = ReplicationStream::connect(&url, &opts()).unwrap();
    let len = s.payload_len().expect("disk-based sync announces a length");
    drop(s);
    let (_, rdb) = roundtrip(&src);
    assert!(len > 0 && (rdb.len() as u64).abs_diff(len) < 4096);
}

#[test]
fn empty_dataset_streams() {
    let src = RedisServer::start(&[("repl-diskless-sync", "yes"), ("repl-diskless-sync-delay", "0")]);
    let (info, rdb) = roundtrip(&src);
    assert!(info.keys_per_db.is_empty());
    assert!(rdb.len() < 1024);
}

/// The minimal ACL for replication mode: PSYNC + REPLCONF to stream, INFO for the description.
const MINIMAL_ACL: &[&str] = &["ACL", "SETUSER", "backup", "on", ">s3cret", "-@all", "+psync", "+replconf", "+info"];

#[test]
fn acl_user_with_minimal_permissions_works() {
    let src = RedisServer::start(&[("repl-diskless-sync", "yes"), ("repl-diskless-sync-delay", "0")]);
    fill_sample(&src, 300);
    let () = src.cmd(MINIMAL_ACL);
    let mut url = RedisUrl::parse(&format!("redis://backup@127.0.0.1:{}", src.port)).unwrap();
    // Password from REDISCLI_AUTH-style source (no password in the URL).
    url.resolve_password(None, Some("s3cret".into())).unwrap();
    let mut live = source::open_replication(&url, &opts()).expect("minimal ACL must be enough");
    let rdb = read_all(live.streams[0].1.as_mut());
    assert_valid_rdb(&rdb);
    assert_eq!(RedisServer::load_rdb(&rdb).digest(), src.digest());
}

#[test]
fn wrong_password_is_reported_without_leaking_it() {
    let src = RedisServer::start(&[]);
    let () = src.cmd(MINIMAL_ACL);
    let url = RedisUrl::parse(&format!("redis://backup:hunter2-wrong@127.0.0.1:{}", src.port)).unwrap();
    let err = ReplicationStream::connect(&url, &opts()).unwrap_err();
    assert!(matches!(err, SourceError::WrongPassword { .. }), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let err = source::open_replication(&url, &opts()).unwrap_err();
    assert!(matches!(err, SourceError::WrongPassword { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("hunter2"));
    // requirepass-style default user too.
    let () = src.cmd(&["CONFIG", "SET", "requirepass", "right"]);
    let url = RedisUrl::parse(&format!("redis://:wrong@127.0.0.1:{}", src.port)).unwrap();
    let err = ReplicationStream::connect(&url, &opts()).unwrap_err();
    assert!(matches!(err, SourceError::WrongPassword { .. }), "{err:?}");
}

#[test]
fn user_without_sync_permission_gets_noperm() {
    let src = RedisServer::start(&[]);
    let () = src.cmd(&["ACL", "SETUSER", "reader", "on", ">pw", "+@all", "-psync", "-sync", "~*", "&*"]);
    let url = RedisUrl::parse(&format!("redis://reader:pw@127.0.0.1:{}", src.port)).unwrap();
    let err = ReplicationStream::connect(&url, &opts()).unwrap_err();
    match &err {
        SourceError::NoPermission { command, .. } => assert_eq!(command, "PSYNC"),
        other => panic!("expected NOPERM, got {other:?}"),
    }
    assert!(err.to_string().contains("permission"), "{err}");
}

#[test]
fn server_killed_mid_stream_is_an_error_not_eof() {
    for diskless in ["yes", "no"] {
        let mut src = RedisServer::start(&[
            ("repl-diskless-sync", diskless),
            ("repl-diskless-sync-delay", "0"),
            ("rdbcompression", "no"),
        ]);
        let () = src.cmd(&["DEBUG", "POPULATE", "400000", "key", "128"]);
        let url = RedisUrl::parse(&src.url()).unwrap();
        let mut s = ReplicationStream::connect(&url, &opts()).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0usize;
        while got < 256 * 1024 {
            let n = s.read(&mut buf).expect("first bytes");
            assert!(n > 0);
            got += n;
        }
        src.kill();
        let err = loop {
            match s.read(&mut buf) {
                Ok(0) => panic!("clean EOF after a killed server (diskless={diskless}, {got} bytes)"),
                Ok(n) => got += n,
                Err(e) => break e,
            }
        };
        assert!(got < 40 * 1024 * 1024, "server sent everything before the kill; make the data larger");
        let msg = err.to_string();
        assert!(msg.contains("dropped at byte"), "diskless={diskless}: {msg}");
        // The error stays an error.
        assert!(s.read(&mut buf).is_err() || diskless == "no");
    }
}

#[test]
fn silent_listener_times_out_within_the_limit() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(3));
        drop(sock);
    });
    let o = ConnectOptions { read_timeout: Duration::from_millis(400), ..opts() };
    let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
    let start = Instant::now();
    let err = ReplicationStream::connect(&url, &o).unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, SourceError::Timeout { .. }), "{err:?}");
    assert!(took >= Duration::from_millis(350) && took < Duration::from_secs(2), "{took:?}");
    hold.join().unwrap();
}

/// A scripted fake master: answers the handshake, then writes `chunks` with pauses, then closes or hangs.
fn fake_master(chunks: Vec<Vec<u8>>, hang: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut reader = std::io::BufReader::new(sock.try_clone().unwrap());
        let mut replies = 0;
        let mut line = String::new();
        // Answer REPLCONF x2 with +OK; PSYNC is answered by the chunks.
        while replies < 3 {
            line.clear();
            if std::io::BufRead::read_line(&mut reader, &mut line).unwrap() == 0 {
                return;
            }
            if line.starts_with('*') {
                replies += 1;
                if replies < 3 {
                    sock.write_all(b"+OK\r\n").unwrap();
                }
            }
        }
        for c in chunks {
            sock.write_all(&c).unwrap();
            sock.flush().unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        if hang {
            std::thread::sleep(Duration::from_secs(3));
        }
    });
    port
}

#[test]
fn diskless_end_mark_split_across_packets_is_stripped() {
    let mark: Vec<u8> = b"0123456789abcdef0123456789abcdef01234567".to_vec();
    let mut payload = b"REDIS0010".to_vec();
    payload.extend((0..100_000u32).map(|i| (i % 251) as u8));
    payload.extend_from_slice(&mark[..10]); // a partial mark inside the data must survive
    payload.push(0xFF);
    let mut wire = b"\n\n+FULLRESYNC 1111111111111111111111111111111111111111 42\r\n\n$EOF:".to_vec();
    wire.extend_from_slice(&mark);
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(&payload);
    wire.extend_from_slice(&mark);
    // Chop so that the mark straddles writes.
    let cut = wire.len() - 25;
    let chunks = vec![wire[..1000].to_vec(), wire[1000..cut].to_vec(), wire[cut..].to_vec()];
    let port = fake_master(chunks, true);
    let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
    let mut s = ReplicationStream::connect(&url, &opts()).unwrap();
    assert_eq!(s.repl_offset(), Some(42));
    assert_eq!(s.rdb_version(), Some(10));
    assert_eq!(read_all(&mut s), payload);
    let mut b = [0u8; 8];
    assert_eq!(s.read(&mut b).unwrap(), 0, "stays at EOF");
}

#[test]
fn missing_end_mark_or_short_payload_is_an_error() {
    let mark = b"0123456789abcdef0123456789abcdef01234567";
    let mut wire = b"+FULLRESYNC 1111111111111111111111111111111111111111 0\r\n$EOF:".to_vec();
    wire.extend_from_slice(mark);
    wire.extend_from_slice(b"\r\nREDIS0010");
    wire.extend_from_slice(&[7u8; 500]); // payload, but the mark never comes
    let port = fake_master(vec![wire], false);
    let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
    let mut s = ReplicationStream::connect(&url, &opts()).unwrap();
    let mut v = Vec::new();
    let e = s.read_to_end(&mut v).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");

    let port = fake_master(vec![b"+FULLRESYNC x 0\r\n$100\r\nREDIS0010abc".to_vec()], false);
    let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
    let mut s = ReplicationStream::connect(&url, &opts()).unwrap();
    let e = s.read_to_end(&mut v).unwrap_err();
    assert!(e.to_string().contains("dropped at byte 12 of 100"), "{e}");
}

#[test]
fn stalled_payload_times_out() {
    let port = fake_master(vec![b"+FULLRESYNC x 0\r\n$100\r\nREDIS0010abc".to_vec()], true);
    let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
    let o = ConnectOptions { read_timeout: Duration::from_millis(300), ..opts() };
    let mut s = ReplicationStream::connect(&url, &o).unwrap();
    let start = Instant::now();
    let e = s.read_to_end(&mut Vec::new()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn error_replies_are_named() {
    for (reply, want) in [("-LOADING Redis is loading the dataset in memory\r\n", "loading"), ("-MASTERDOWN Link with MASTER is down\r\n", "master link is down")] {
        let port = fake_master(vec![reply.as_bytes().to_vec()], false);
        let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
        let err = ReplicationStream::connect(&url, &opts()).unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
    }
}

#[test]
fn bgsave_mode_waits_for_a_fresh_save() {
    let src = RedisServer::start(&[("rdb-key-save-delay", "300")]);
    fill_sample(&src, 500);
    // A save already running when we ask: BGSAVE answers "already in progress" and we must wait it out.
    let before: u64 = src.info_field("persistence", "rdb_saves").parse().unwrap();
    let _: String = src.cmd(&["BGSAVE"]);
    assert_eq!(src.info_field("persistence", "rdb_bgsave_in_progress"), "1", "make the first save slower");
    let url = RedisUrl::parse(&src.url()).unwrap();
    let wait = source::bgsave::BgsaveOptions { timeout: Duration::from_secs(30), poll_interval: Duration::from_millis(50) };
    let mut live = source::open_bgsave(&url, &opts(), &src.path("dump.rdb"), &wait).unwrap();
    let after: u64 = src.info_field("persistence", "rdb_saves").parse().unwrap();
    assert!(after >= before + 2, "our own BGSAVE must run after the one in progress ({before} -> {after})");
    assert_eq!(live.info.kind, SourceKind::Bgsave);
    assert_eq!(live.info.rdb_version, Some(10));
    let rdb = read_all(live.streams[0].1.as_mut());
    assert_valid_rdb(&rdb);
    assert_eq!(RedisServer::load_rdb(&rdb).digest(), src.digest());
}

#[test]
fn tls_stream_with_ca_file() {
    let certs_dir = tempfile::tempdir().unwrap();
    assert!(have("openssl"), "the TLS test needs the `openssl` command to make certificates: install it (e.g. apt-get install openssl)");
    let certs = make_tls_certs(certs_dir.path()).expect("openssl failed to create the test certificates");
    let ca = certs.2.clone();
    let src = RedisServer::start_with(
        ServerConfig { tls: Some(certs), ..Default::default() }
            .arg("repl-diskless-sync", &["yes"])
            .arg("repl-diskless-sync-delay", &["0"]),
    );
    fill_sample(&src, 300);
    let () = src.cmd(MINIMAL_ACL);
    let tls_port = src.tls_port.unwrap();
    let url = RedisUrl::parse(&format!("rediss://backup:s3cret@127.0.0.1:{tls_port}")).unwrap();
    let o = ConnectOptions { tls_ca_file: Some(ca), ..opts() };
    let mut live = source::open_replication(&url, &o).expect("TLS replication with CA file");
    assert!(live.info.tls);
    assert_eq!(live.info.keys_per_db.get(&0).copied(), Some(300 + 4 * 30));
    let rdb = read_all(live.streams[0].1.as_mut());
    assert_valid_rdb(&rdb);
    assert_eq!(RedisServer::load_rdb(&rdb).digest(), src.digest());

    // Without the CA the certificate is not trusted; with skip-verify it is accepted.
    let err = ReplicationStream::connect(&url, &opts()).unwrap_err();
    assert!(matches!(err, SourceError::Tls { .. }), "{err:?}");
    let insecure = ConnectOptions { tls_insecure: true, ..opts() };
    let mut s = ReplicationStream::connect(&url, &insecure).expect("insecure TLS");
    assert_valid_rdb(&read_all(&mut s));
}
