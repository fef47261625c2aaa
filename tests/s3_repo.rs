//! Repositories on S3-compatible object storage, against moto in server mode on loopback.

use crate::common;

use common::net::{exercise, lost_connection, transient_failure, HttpProxy, Moto, Proxy};
use common::vault::{Vault, PACK_TARGET};

fn url(port: u16, bucket: &str) -> String {
    format!("s3:http://127.0.0.1:{port}/{bucket}/redis/prod")
}

#[test]
fn every_command_works_on_s3() {
    let moto = Moto::start(false);
    moto.create_bucket("backups");
    let v = Vault::init_remote(&url(moto.port, "backups"), Moto::env(), None);
    exercise(&v);
    // A second init on the same prefix is refused.
    assert!(v.fails(&["init", "--kdf-memory-kib", "8192"]).contains("already holds a repository"));
}

#[test]
fn foreign_objects_in_the_bucket_are_never_listed_or_deleted() {
    let moto = Moto::start(false);
    moto.create_bucket("backups");
    let v = Vault::init_remote(&url(moto.port, "backups"), Moto::env(), None);
    let rdb = v.dir.path().join("x.rdb");
    std::fs::write(&rdb, common::vault::random_data(3, 50_000)).expect("input");
    v.ok(&["backup", "--raw", rdb.to_str().expect("utf-8")]);
    let foreign = ["/backups/redis/prod/locks/README", "/backups/redis/prod/data/ab/notes.txt", "/backups/redis/prod/index/x"];
    for path in foreign {
        assert!(moto.http("PUT", path, b"not ours").contains("200"), "put {path}");
        let got = moto.http("GET", path, b"");
        assert!(got.contains("200"), "get {path} right after the put: {got}");
    }
    v.ok(&["unlock", "--remove-all"]);
    v.ok(&["prune", "--max-unused", "0%"]);
    v.ok(&["forget", "--keep-last", "1"]);
    v.check_passes(&["--read-data"]);
    for path in foreign {
        assert!(moto.http("GET", path, b"").contains("200"), "{path} was deleted");
    }
}

/// Runs `rdbvault -r REPO ARGS` with moto's credentials, expecting a failure; its stderr.
fn failing(dir: &std::path::Path, repo: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rdbvault"))
        .current_dir(dir)
        .arg("-r")
        .arg(repo)
        .args(args)
        .envs(Moto::env())
        .env("RDBVAULT_PASSWORD", "pw")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("not-a-secret-Zq9"), "secret printed: {err}");
    err
}

/// `init` against an endpoint where no server listens retries, then says the connection is
/// lost, as every other command does, not the HTTP client's own words.
#[test]
fn init_without_a_server_says_the_connection_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let repo = url(common::server::free_port(), "backups");
    let err = failing(dir.path(), &repo, &["init"]);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    assert!(errors[0].contains(&repo) && errors[0].contains("lost the connection to the server"), "{err}");
    assert!(!err.contains("reqwest"), "{err}");
}

#[test]
fn s3_errors_are_one_clear_line_without_secrets() {
    let moto = Moto::start(false);
    let dir = tempfile::tempdir().unwrap();
    let run = |repo: &str, args: &[&str]| {
        let err = failing(dir.path(), repo, args);
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        err
    };
    let missing = url(moto.port, "nosuchbucket");
    let err = run(&missing, &["snapshots"]);
    assert!(err.contains(&missing) && err.contains("the bucket does not exist"), "{err}");
    let err = run(&url(moto.port, "x"), &["init"]);
    assert!(err.contains("bucket \"x\"") && err.contains("not a valid bucket name"), "{err}");

    let strict = Moto::start(true);
    let err = run(&url(strict.port, "backups"), &["snapshots"]);
    assert!(err.contains("permission denied") && err.contains("AWS_ACCESS_KEY_ID"), "{err}");
    let err = run(&url(strict.port, "backups"), &["init"]);
    assert!(err.contains("permission denied") && err.contains("AWS_ACCESS_KEY_ID"), "{err}");

    let err = run("rest:http://127.0.0.1:8000/", &["init"]);
    assert!(err.contains("the rest: backend is not supported"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no local directory was created");
    let err = run("s3:http://AKIA:hunter2secret@127.0.0.1:1/b/p", &["init"]);
    assert!(!err.contains("hunter2secret") && err.contains("AWS_ACCESS_KEY_ID"), "{err}");
}

/// An https endpoint is verified against the system's roots (here `SSL_CERT_FILE`, as for
/// a private CA): with no roots at all, or roots that do not vouch for the server, the
/// command stops with one clear line; with the server's CA trusted, a backup and a
/// byte-exact restore go through.
#[test]
fn s3_over_https_verifies_the_server_certificate() {
    let (certs, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (cert, key, ca) = common::server::make_tls_certs(certs.path()).expect("openssl makes the test certificates");
    let (_, _, other_ca) = common::server::make_tls_certs(other.path()).expect("openssl makes a second CA");
    let moto = Moto::start_tls(&cert, &key);
    let repo = format!("s3:https://127.0.0.1:{}/backups/redis/prod", moto.port);
    let refused = |roots: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rdbvault"))
            .args(["-r", &repo, "init", "--kdf-memory-kib", "8192"])
            .envs(Moto::env())
            .env("RDBVAULT_PASSWORD", "pw")
            .env("XDG_CACHE_HOME", certs.path().join("cache"))
            .env_remove("SSL_CERT_DIR")
            .env("SSL_CERT_FILE", roots)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "the server was trusted: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        err
    };
    let err = refused(std::path::Path::new("/nonexistent/rdbvault-test-roots.pem"));
    assert!(err.contains("No CA certificates") && err.contains("SSL_CERT_FILE"), "says what is missing and how to fix it: {err}");
    let err = refused(&other_ca);
    assert!(err.to_lowercase().contains("certificate"), "the error names the certificate: {err}");

    let mut env = Moto::env();
    env.push(("SSL_CERT_FILE".into(), ca.display().to_string()));
    let v = common::vault::Vault::init_remote(&repo, env, None);
    let rdb = v.dir.path().join("x.rdb");
    let data = common::vault::random_data(5, 200_000);
    std::fs::write(&rdb, &data).unwrap();
    v.ok(&["backup", "--raw", rdb.to_str().unwrap()]);
    assert!(v.restore("latest", &v.dir.path().join("back.rdb")) == data, "restored over https byte-exact");
    v.check_passes(&["--read-data"]);
}

#[test]
fn s3_lost_connection_mid_backup_recovers() {
    let (_moto, proxy, v) = behind_proxy();
    lost_connection(&v, &proxy);
}

#[test]
fn s3_transient_failures_are_retried_and_counted() {
    let (_moto, proxy, v) = behind_proxy();
    transient_failure(&v, &proxy);
}

/// A repository on moto reached through a proxy the test can cut, with small packs.
fn behind_proxy() -> (Moto, Proxy, Vault) {
    let moto = Moto::start(false);
    moto.create_bucket("backups");
    let proxy = Proxy::start(moto.port);
    let v = Vault::init_remote(&url(proxy.port, "backups"), Moto::env(), Some(PACK_TARGET));
    (moto, proxy, v)
}

#[test]
fn s3_503_answers_are_retried_and_counted_in_json() {
    let moto = Moto::start(false);
    moto.create_bucket("backups");
    let proxy = HttpProxy::start(moto.port);
    let v = Vault::init_remote(&url(proxy.port, "backups"), Moto::env(), Some(PACK_TARGET));
    let data = common::vault::random_data(7, 400_000);
    let input = v.dir.path().join("in.bin");
    std::fs::write(&input, &data).unwrap();
    // Pack uploads and downloads: requests the command makes before it reports (a lock's
    // removal comes after, and its retries only reach the stderr total).
    proxy.fail_every(3, "PUT /backups/redis/prod/data/");
    let failed = || proxy.failed.load(std::sync::atomic::Ordering::SeqCst);
    let backup = v.json(&["backup", "--raw", input.to_str().unwrap()]);
    assert!(failed() >= 3, "the proxy answered 503 a few times: {}", failed());
    assert_eq!(backup["retries"].as_u64(), Some(failed()), "every 503 was retried once and counted: {backup:#}");
    proxy.fail_every(3, "GET /backups/redis/prod/data/");
    let before = failed();
    let out = v.dir.path().join("out.bin");
    let restored = v.json(&["restore", "latest", "-t", out.to_str().unwrap()]);
    assert!(failed() - before >= 3, "{}", failed() - before);
    assert_eq!(restored["retries"].as_u64(), Some(failed() - before), "{restored:#}");
    assert!(std::fs::read(&out).unwrap() == data);
    // A copy into this repository: its pack uploads fail the same way.
    let local = Vault::init();
    let id = local.backup_bytes("other.bin", &common::vault::random_data(8, 400_000));
    proxy.fail_every(3, "PUT /backups/redis/prod/data/");
    let before = failed();
    let copy = local.cmd(&["--json", "copy", "--to-repo", v.repo.to_str().unwrap()])
        .envs(Moto::env())
        .env("RDBVAULT_TO_PASSWORD", &v.password)
        .env("RDBVAULT_PACK_TARGET", PACK_TARGET)
        .output()
        .unwrap();
    assert!(copy.status.success(), "{}", String::from_utf8_lossy(&copy.stderr));
    let copy: serde_json::Value = serde_json::from_slice(&copy.stdout).unwrap();
    assert!(failed() - before >= 3, "{}", failed() - before);
    assert_eq!(copy["retries"].as_u64(), Some(failed() - before), "{copy:#}");
    proxy.fail_every(0, "");
    let copied = copy["snapshots"][0]["copy"].as_str().unwrap();
    assert!(v.try_restore(copied).unwrap() == common::vault::random_data(8, 400_000), "{id} copied as {copied}");
    v.ok(&["check", "--read-data"]);
}

#[test]
fn s3_restore_reads_each_pack_in_few_requests() {
    let moto = Moto::start(false);
    moto.create_bucket("backups");
    let proxy = HttpProxy::start(moto.port);
    let v = Vault::init_remote(&url(proxy.port, "backups"), Moto::env(), None);
    let data = common::vault::random_data(11, 6_000_000);
    let input = v.dir.path().join("in.bin");
    std::fs::write(&input, &data).unwrap();
    proxy.take();
    v.ok(&["backup", "--raw", input.to_str().unwrap()]);
    let count = |lines: &[String], prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
    let packs = count(&proxy.take(), "PUT /backups/redis/prod/data/");
    let out = v.dir.path().join("out.bin");
    v.ok(&["restore", "latest", "-t", out.to_str().unwrap()]);
    let lines = proxy.take();
    let reads = count(&lines, "GET /backups/redis/prod/data/");
    assert!(std::fs::read(&out).unwrap() == data, "restored byte-exact");
    // The frames: one GET per pack, not one per ~1 MiB stretch; the chunk lists lie together
    // in a pack of their own, read once (the leaves the top blobs name lie in the stretch
    // the top blobs were read from; read again for them, the count was packs + 2); plus one
    // for the compression dictionary.
    // Packs on S3 close at 4 MiB, not 16, so uploads start while the input is still read
    // and the last one, which nothing overlaps, is short: two of data, one of chunk lists.
    assert_eq!(packs, 3, "pack uploads");
    assert!(reads <= packs + 1, "{reads} pack reads for {packs} packs: {lines:#?}");
}

/// An incremental backup of an RDB reads its base's chunk facts (a piece per 4096 chunks) in
/// one range read, not a request per piece.
#[test]
fn s3_incremental_reads_the_base_chunk_facts_in_one_range_read() {
    let moto = Moto::start(false);
    moto.create_bucket("backups");
    let proxy = HttpProxy::start(moto.port);
    // Chunks of ~256 bytes, so a small RDB has several pieces of facts.
    let v = Vault::init_remote_with(&url(proxy.port, "backups"), Moto::env(), None, &["--record-chunks", "64,256,1024"]);
    let redis = common::server::RedisServer::start(&[]);
    common::data::fill_sample(&redis, 40_000);
    let input = v.dir.path().join("dump.rdb");
    redis.save_copy(&input);
    let (_, first) = v.backup(&input, &[]);
    let pieces = first["chunks"].as_u64().unwrap().div_ceil(4096);
    assert!(pieces >= 3, "{first}");
    redis.cli(&["SET", "str:0:7", "changed"]);
    redis.save_copy(&input);
    proxy.take();
    v.backup(&input, &[]);
    let lines = proxy.take();
    let snaps = v.json(&["snapshots"]);
    assert!(snaps[1]["key_layers"]["base"]["facts"].as_array().is_some_and(|f| f.len() as u64 == pieces), "the second index layers on the first: {snaps:#}");
    let mut reads: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for l in lines.iter().filter(|l| l.starts_with("GET /backups/redis/prod/data/")) {
        *reads.entry(l.split_whitespace().nth(1).unwrap_or("")).or_default() += 1;
    }
    let latest = v.json(&["cat", "snapshot", "latest"]);
    assert!(latest["files"][0]["list_base"].is_object(), "the second list is a delta on the first: {latest:#}");
    // The pack of the first index holds its top table (stored last), the pieces (side by
    // side) and the first backup's chunk lists: two reads (the first lists and facts in one
    // batch), where a read per piece made 1 + pieces. The dictionary's pack is read twice
    // too: once by the compressor, once by the base's reader.
    assert!(reads.values().all(|&n| n <= 2), "pack reads for the base's top table and {pieces} pieces of facts: {reads:#?}");
}

/// A restore of an incremental snapshot whose changed chunks (in the second backup's
/// pack) lie all over the file still reads each data pack once: the restore is planned
/// in pack order, not stretch by stretch of output.
#[test]
fn s3_restore_of_an_incremental_reads_each_data_pack_once() {
    let moto = Moto::start(false);
    moto.create_bucket("backups");
    let proxy = HttpProxy::start(moto.port);
    let v = Vault::init_remote(&url(proxy.port, "backups"), Moto::env(), None);
    let mut data = common::vault::random_data(12, 40_000_000);
    v.backup_bytes("in.bin", &data);
    for (n, at) in (0..data.len()).step_by(4_000_000).enumerate() {
        data[at..at + 100].copy_from_slice(&common::vault::random_data(n as u64, 100));
    }
    v.backup_bytes("in.bin", &data);
    proxy.take();
    let out = v.dir.path().join("out.bin");
    v.ok(&["restore", "latest", "-t", out.to_str().unwrap()]);
    let lines = proxy.take();
    assert!(std::fs::read(&out).unwrap() == data, "restored byte-exact");
    let mut reads: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for l in lines.iter().filter(|l| l.starts_with("GET /backups/redis/prod/data/")) {
        *reads.entry(l.split_whitespace().nth(1).unwrap_or("")).or_default() += 1;
    }
    // Packs of data are read once each; a pack of chunk lists once per window of lists that
    // needs it (two windows here): a window's leaves lie in the stretch read for its top
    // blobs, and are not fetched again (they were: the old bound allowed five reads of a
    // pack, and a run of that code read three packs twice). Stretch by stretch of output
    // (16 MiB), the second backup's pack was read once per stretch. Two backups, so at most
    // two packs of lists.
    let list_like = reads.values().filter(|&&n| n > 1).count();
    assert!(reads.values().all(|&n| n <= 2) && list_like <= 2, "{reads:#?}");
}

#[test]
fn init_creates_a_missing_bucket_and_says_so() {
    let moto = Moto::start(false);
    let init = |repo: &str| {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rdbvault"))
            .current_dir(dir.path())
            .args(["-r", repo, "init", "--kdf-memory-kib", "8192"])
            .envs(Moto::env())
            .env("RDBVAULT_PASSWORD", "pw")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = url(moto.port, "made-by-init");
    let said = init(&first);
    assert!(said.contains(&format!("created the bucket of {first}")), "{said}");
    let second = format!("s3:http://127.0.0.1:{}/made-by-init/other", moto.port);
    let said = init(&second);
    assert!(!said.contains("bucket"), "an existing bucket is used as it is: {said}");
    // The repository init made in the new bucket takes backups.
    let mut v = Vault::init_remote(&second.replace("/other", "/third"), Moto::env(), None);
    (v.repo, v.password) = (first.into(), "pw".into());
    let id = v.backup_bytes("in.bin", &common::vault::random_data(5, 100_000));
    assert!(v.try_restore(&id).unwrap() == common::vault::random_data(5, 100_000));
}

#[test]
fn a_backup_of_unchanged_data_reads_the_config_once_and_not_its_own_lock() {
    let moto = Moto::start(false);
    moto.create_bucket("backups");
    let proxy = HttpProxy::start(moto.port);
    let v = Vault::init_remote(&url(proxy.port, "backups"), Moto::env(), None);
    let data = common::vault::random_data(3, 300_000);
    v.backup_bytes("in.bin", &data);
    proxy.take();
    v.backup_bytes("in.bin", &data);
    let lines = proxy.take();
    let count = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
    // The config is fetched beside the key files (no HEAD probe first), and taking the lock
    // lists the others while ours is written, without reading ours back.
    assert_eq!(count("HEAD /backups/redis/prod/config"), 0, "{lines:#?}");
    assert_eq!(count("GET /backups/redis/prod/config"), 1, "{lines:#?}");
    assert_eq!(count("GET /backups/redis/prod/locks/"), 0, "{lines:#?}");
    assert_eq!(count("PUT /backups/redis/prod/locks/"), 1, "{lines:#?}");
    assert_eq!(count("DELETE /backups/redis/prod/locks/"), 1, "{lines:#?}");
    assert_eq!(v.snapshots().len(), 2);
}
