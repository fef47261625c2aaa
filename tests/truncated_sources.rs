//! Truncated and damaged sources: an input that is not a complete RDB is refused (no
//! snapshot, a message naming the input and what is wrong) unless `--raw` asks to store it.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use common::server::RedisServer;
use common::vault::{random_data, text, Vault};

/// A small RDB written by a real redis-server `SAVE`.
fn saved_rdb() -> Vec<u8> {
    let srv = RedisServer::start(&[]);
    common::server::fill_sample(&srv, 60);
    let rdb = srv.save_rdb();
    assert!(rdb.starts_with(b"REDIS") && rdb.len() > 2_000, "{} bytes", rdb.len());
    rdb
}

/// Where `needle` starts in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap_or_else(|| panic!("{:?} not in the RDB", String::from_utf8_lossy(needle)))
}

/// Damaged versions of `rdb`, named, with what the refusal must say.
fn damaged(rdb: &[u8]) -> Vec<(String, Vec<u8>, String)> {
    let len = rdb.len();
    let a_key = find(rdb, b"str:0:0");
    let raw_cuts: Vec<(&str, usize, String)> = vec![
        ("empty", 0, "is empty (0 bytes), not an RDB".to_string()),
        ("one byte", 1, "not an RDB file: cannot read the 9-byte header".to_string()),
        ("header only", 9, "truncated RDB at byte 9".to_string()),
        ("inside a key", a_key + 3, "truncated RDB at byte".to_string()),
        ("in the middle", len / 2, "truncated RDB at byte".to_string()),
        ("just before the EOF opcode", len - 9, format!("truncated RDB at byte {}", len - 9)),
        ("just before the checksum", len - 8, "truncated RDB at byte".to_string()),
        ("inside the checksum", len - 3, "truncated RDB at byte".to_string()),
    ];
    let mut cuts: Vec<(String, usize, String)> =
        raw_cuts.into_iter().map(|(n, at, want)| (format!("cut {n} (at {at})"), at, want)).collect();
    cuts.sort_by_key(|c| c.1);
    let mut out: Vec<(String, Vec<u8>, String)> = cuts.into_iter().map(|(n, at, want)| (n, rdb[..at].to_vec(), want)).collect();
    // One byte of a value flipped: the structure parses, the checksum does not match.
    let mut flipped = rdb.to_vec();
    flipped[find(rdb, b"value-1-x") + 6] ^= 0x01; // short strings are stored as they are
    out.push(("a value byte flipped".into(), flipped, "checksum mismatch".into()));
    // Not an RDB at all.
    out.push(("random bytes".into(), random_data(5, 4_000), "not an RDB file: missing REDIS or VALKEY magic".into()));
    out
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_cut_is_refused_from_stdin_and_from_a_file_and_raw_stores_it() {
    let rdb = saved_rdb();
    let v = Vault::init();
    for (what, bytes, want) in damaged(&rdb) {
        let o = v.run_stdin(&["backup", "--stdin"], &bytes);
        assert!(!o.status.success(), "{what}: stdin backup succeeded");
        let err = stderr(&o);
        assert!(err.contains("standard input (dump.rdb)") && err.contains(&want), "{what}: {err}");
        assert!(err.contains("no snapshot was saved") && err.contains("--raw"), "{what}: {err}");
        assert!(!err.contains("warning"), "{what}: {err}");

        let file = v.dir.path().join("cut.rdb");
        std::fs::write(&file, &bytes).unwrap();
        let err = v.fails(&["backup", file.to_str().unwrap()]);
        assert!(err.contains(&file.display().to_string()) && err.contains(&want) && err.contains("--raw"), "{what}: {err}");
    }
    assert!(v.snapshots().is_empty(), "a refused backup saved a snapshot");
    assert!(v.ok(&["snapshots"]).contains("0 snapshots"));
    // Packs written before the refusal are kept for the next backup: the repository is sound.
    v.check_passes(&["--read-data"]);

    // The complete RDB is accepted and listed without a marker.
    let good = v.run_stdin(&["backup", "--stdin"], &rdb);
    assert!(good.status.success(), "{}", stderr(&good));
    assert!(!stderr(&good).contains("warning"), "{}", stderr(&good));
    assert!(!v.ok(&["snapshots"]).contains("RDB error"));

    // --raw stores each damaged input byte for byte, with a warning and a flag in the listing.
    for (i, (what, bytes, want)) in damaged(&rdb).into_iter().enumerate() {
        let o = v.run_stdin(&["backup", "--raw", "--stdin"], &bytes);
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        if !bytes.is_empty() {
            assert!(stderr(&o).contains("warning") && stderr(&o).contains("--raw"), "{what}: {}", stderr(&o));
        }
        let restored = v.run(&["restore", "latest", "--target", "-"]);
        assert!(restored.status.success(), "{what}: {}", text(&restored));
        assert!(restored.stdout == bytes, "{what}: restored bytes differ");
        let listing = v.ok(&["snapshots"]);
        // The last row sits above the closing rule and the count.
        let last = listing.lines().rev().nth(2).expect("a row");
        if i > 0 {
            assert!(last.contains("RDB error: ") && last.contains(&want), "{what}: {last}");
        }
    }
    let file = v.dir.path().join("cut-raw.rdb");
    std::fs::write(&file, &rdb[..rdb.len() / 3]).unwrap();
    let (id, _) = v.backup(&file, &["--raw"]);
    assert!(v.restore(&id, &v.dir.path().join("back.rdb")) == rdb[..rdb.len() / 3]);
    v.check_passes(&["--read-data"]);
}

/// A stream that is damaged early stops being read: the backup does not swallow the rest.
#[test]
fn a_stream_damaged_early_is_refused_without_reading_it_all() {
    let v = Vault::init();
    let mut bytes = b"REDIS0009".to_vec();
    bytes.push(0x77); // no such opcode or type
    bytes.extend_from_slice(&random_data(9, 40 << 20));
    let o = v.run_stdin(&["backup", "--stdin"], &bytes);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("at byte 9"), "{}", stderr(&o));
    assert!(v.snapshots().is_empty());
    let stored = common::vault::dir_size(&v.repo.join("data"));
    assert!(stored < 15 << 20, "{stored} bytes stored of a 40 MiB stream refused at byte 9");
    v.check_passes(&[]);
}

/// Writes a Redis 7 AOF directory: `base` as the RDB base, one incremental file.
fn aof_dir(v: &Vault, base: Option<&[u8]>) -> std::path::PathBuf {
    let dir = v.dir.path().join(format!("aof-{}", rand::random::<u32>()));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("appendonly.aof.manifest"),
        "file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n",
    )
    .unwrap();
    if let Some(b) = base {
        std::fs::write(dir.join("appendonly.aof.1.base.rdb"), b).unwrap();
    }
    std::fs::write(dir.join("appendonly.aof.1.incr.aof"), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n").unwrap();
    dir
}

#[test]
fn aof_directories_with_a_missing_or_cut_base_are_refused() {
    let rdb = saved_rdb();
    let v = Vault::init();

    let dir = aof_dir(&v, None);
    let err = v.fails(&["backup", "--aof", dir.to_str().unwrap()]);
    assert!(err.contains("names appendonly.aof.1.base.rdb, which is missing"), "{err}");
    assert!(err.contains("appendonly.aof.manifest") && !err.contains("rewritten"), "{err}");

    let dir = aof_dir(&v, Some(&rdb[..rdb.len() / 2]));
    let err = v.fails(&["backup", "--aof", dir.to_str().unwrap()]);
    assert!(err.contains("appendonly.aof.1.base.rdb (the base file the AOF manifest names) is not a complete RDB"), "{err}");
    assert!(err.contains("truncated RDB at byte") && err.contains("--raw"), "{err}");
    assert!(v.snapshots().is_empty());

    let o = v.run(&["backup", "--raw", "--aof", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let dir = aof_dir(&v, Some(&rdb));
    v.ok(&["backup", "--aof", dir.to_str().unwrap()]);
    assert_eq!(v.snapshots().len(), 2);
    v.check_passes(&[]);
}

/// Reads one RESP command (`*N` then N bulk strings); `None` at the end of the connection.
fn read_command(r: &mut impl BufRead) -> Option<Vec<String>> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let n: usize = line.trim().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).ok()?;
        let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
        let mut arg = vec![0u8; len + 2];
        r.read_exact(&mut arg).ok()?;
        args.push(String::from_utf8_lossy(&arg[..len]).to_uppercase());
    }
    Some(args)
}

/// A fake master that answers PING, INFO and REPLCONF and sends `payload` as a complete,
/// correctly framed full sync: the protocol is whole, the RDB inside is not.
fn master_sending(payload: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for sock in listener.incoming().take(4) {
            let Ok(mut sock) = sock else { return };
            let payload = payload.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(sock.try_clone().unwrap());
                while let Some(cmd) = read_command(&mut r) {
                    let reply: Vec<u8> = match cmd[0].as_str() {
                        "PING" => b"+PONG\r\n".to_vec(),
                        "INFO" => {
                            let body = "# Server\r\nredis_version:7.0.0\r\nrole:master\r\n";
                            format!("${}\r\n{body}\r\n", body.len()).into_bytes()
                        }
                        "PSYNC" => {
                            let mut w = format!("+FULLRESYNC {} 0\r\n${}\r\n", "1".repeat(40), payload.len()).into_bytes();
                            w.extend_from_slice(&payload);
                            w
                        }
                        _ => b"+OK\r\n".to_vec(),
                    };
                    if sock.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn a_server_sending_a_cut_rdb_leaves_no_snapshot() {
    let rdb = saved_rdb();
    let v = Vault::init();
    let port = master_sending(rdb[..rdb.len() - 20].to_vec());
    let err = v.fails(&["backup", &format!("redis://127.0.0.1:{port}"), "--read-timeout", "5"]);
    assert!(err.contains(&format!("the RDB sent by 127.0.0.1:{port} (dump.rdb) is not a complete RDB")), "{err}");
    assert!(err.contains("truncated RDB at byte"), "{err}");
    assert!(v.snapshots().is_empty());

    let port = master_sending(rdb.clone());
    v.ok(&["backup", &format!("redis://127.0.0.1:{port}")]);
    assert_eq!(v.snapshots().len(), 1);
    assert!(v.restore("latest", &v.dir.path().join("from-fake.rdb")) == rdb);
    v.check_passes(&[]);
}
