//! `rdbvault serve`'s HTTP API through the real binary on a loopback port, over a real
//! repository holding backups of a real redis-server.

use crate::common;

use std::collections::BTreeSet;

use common::dataset::{backup_now, json_bytes, Backed};
use common::web::{config, hash, Serve};
use serde_json::Value;

/// Every key a paged listing returns, following `next_cursor` to the end.
fn all_pages(s: &Serve, snap: &str, query: &str, limit: u64) -> Vec<Value> {
    let (mut out, mut cursor) = (Vec::new(), String::new());
    loop {
        let r = s.get(&format!("/api/repos/default/snapshots/{snap}/keys?limit={limit}&cursor={cursor}{query}"));
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let keys = v["keys"].as_array().expect("keys").clone();
        assert!(keys.len() as u64 <= limit);
        out.extend(keys);
        match v["next_cursor"].as_str() {
            Some(n) => cursor = n.to_string(),
            None => return out,
        }
    }
}

/// A POST with the server's CSRF token (no login configured).
fn post(s: &Serve, path: &str, body: &Value) -> common::web::Reply {
    let csrf = s.get("/api/session").json()["csrf"].as_str().unwrap().to_string();
    s.request("POST", path, &[("X-CSRF-Token", &csrf), ("Content-Type", "application/json")], body.to_string().as_bytes())
}

/// Starts a job; returns its id.
fn start_job(s: &Serve, body: Value) -> u64 {
    let r = post(s, "/api/jobs", &body);
    assert_eq!(r.status, 202, "{body}: {}", r.text());
    r.json()["id"].as_u64().unwrap()
}

/// Polls a job until it ends; returns its status.
fn wait_job(s: &Serve, id: u64) -> Value {
    let start = std::time::Instant::now();
    loop {
        let v = s.get(&format!("/api/jobs/{id}")).json();
        if !["queued", "running"].contains(&v["state"].as_str().unwrap()) {
            return v;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(120), "job {id} did not end: {v}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn snapshots_list_sizes_ratios_and_details() {
    let b = Backed::new();
    b.srv.resp().ok(&["SET", "later", "added after the first backup"]);
    let second = backup_now(&b.srv, &b.vault);
    let s = Serve::start(&b.vault, &[]);

    let repos = s.get("/api/repos").json();
    assert_eq!(repos[0]["name"], "default");
    assert_eq!(repos[0]["location"].as_str().unwrap(), b.vault.repo.display().to_string());

    let list = s.get("/api/repos/default/snapshots").json();
    let snaps = list["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 2);
    assert_eq!(snaps[0]["id"], b.snap.as_str());
    assert_eq!(snaps[1]["id"], second.as_str());
    let rdb_len = std::fs::metadata(b.srv.rdb_path()).unwrap().len();
    assert_eq!(snaps[1]["size"], rdb_len);
    for snap in snaps {
        assert!(snap["bytes_added"].as_u64().unwrap() > 0);
        assert!(snap["compression_ratio"].as_f64().unwrap() > 0.0);
        assert!(snap["dedup_ratio"].as_f64().unwrap() >= 1.0);
        assert_eq!(snap["source"]["kind"], "file");
    }
    // The second backup shares most chunks with the first: it adds less than its size.
    assert!(snaps[1]["bytes_added"].as_u64().unwrap() < snaps[1]["size"].as_u64().unwrap());
    assert_eq!(snaps[1]["keys"], b.srv.total_keys());
    assert_eq!(snaps[0]["keys"], b.srv.total_keys() - 1);

    let one = s.get(&format!("/api/repos/default/snapshots/{}", &second[..8])).json();
    assert_eq!(one["id"], second.as_str());
    assert_eq!(one["files"][0]["name"], "dump.rdb");
    assert_eq!(one["files"][0]["size"], rdb_len);
    assert_eq!(one["redis"]["keys_per_db"]["1"], 31 + 3);
    assert!(one["redis"]["redis_version"].as_str().unwrap().starts_with('7'));
    let latest = s.get("/api/repos/default/snapshots/latest").json();
    assert_eq!(latest["id"], second.as_str());
}

#[test]
fn keys_come_in_pages_filtered_by_pattern_type_and_db() {
    let b = Backed::new();
    let s = Serve::start(&b.vault, &[]);
    let snap = &b.snap;

    let users = all_pages(&s, snap, "&pattern=user:*", 7);
    let got: BTreeSet<(u64, String)> = users.iter().map(|k| (k["db"].as_u64().unwrap(), k["key"].as_str().unwrap().to_string())).collect();
    let mut want = BTreeSet::new();
    for db in [0, 1] {
        for i in 0..30 {
            want.insert((db, format!("user:{i}")));
        }
    }
    want.insert((1, "user:ttl".to_string()));
    assert_eq!(got, want);
    assert_eq!(users.len(), want.len(), "no key twice across pages");

    let db1_strings = all_pages(&s, snap, "&pattern=user:*&db=1&type=string", 1000);
    assert_eq!(db1_strings.len(), 1);
    assert_eq!(db1_strings[0]["key"], "user:ttl");
    let ttl = db1_strings[0]["ttl_ms"].as_i64().unwrap();
    assert!(ttl > 7_000_000 && ttl <= 7_201_000, "TTL left at the snapshot's time: {ttl}");

    let first = s.get(&format!("/api/repos/default/snapshots/{snap}/keys?limit=3")).json();
    assert_eq!(first["keys"].as_array().unwrap().len(), 3);
    assert!(first["next_cursor"].is_string(), "{first}");
    assert_eq!(first["indexed"], true, "read through the key index");
    let every = all_pages(&s, snap, "", 1000);
    assert_eq!(every.len() as u64, b.srv.total_keys());
    // The binary key is listed escaped, as redis-cli shows it.
    assert!(every.iter().any(|k| k["key"] == "key:\\xff\\x00\\r\\n"));
}

/// The rows of every page of a listing, sorted by (db, key), without `ttl_ms` (relative to
/// each snapshot's own time).
fn sorted_rows(s: &Serve, snap: &str, query: &str, limit: u64) -> Vec<Value> {
    let mut rows = all_pages(s, snap, query, limit);
    for r in &mut rows {
        r.as_object_mut().unwrap().remove("ttl_ms");
    }
    rows.sort_by_key(|r| (r["db"].as_u64().unwrap(), r["key"].as_str().unwrap().to_string()));
    rows
}

/// A page read through the key index lists the same keys, with the same type, encoding,
/// expiry and sizes, as the RDB streamed (a snapshot of the same dump without an index).
#[test]
fn index_backed_pages_equal_streamed_pages() {
    let b = Backed::new();
    let plain = b.vault.backup(&b.srv.rdb_path(), &["--no-key-index"]).0;
    let s = Serve::start(&b.vault, &[]);
    let first = |snap: &str| s.get(&format!("/api/repos/default/snapshots/{snap}/keys?limit=2")).json();
    assert_eq!(first(&b.snap)["indexed"], true);
    assert_eq!(first(&plain)["indexed"], false);
    for (query, limit) in [("", 7), ("&pattern=user:*", 4), ("&pattern=*:1*&type=hash", 3), ("&db=1", 1000), ("&pattern=str:bin", 1), ("&pattern=no:such*", 10)] {
        let indexed = sorted_rows(&s, &b.snap, query, limit);
        let streamed = sorted_rows(&s, &plain, query, limit);
        assert_eq!(indexed, streamed, "{query}");
        assert!(query.contains("no:such") || !indexed.is_empty(), "{query}");
        assert!(indexed.iter().all(|r| r["encoding"].is_string() && r["approx_memory"].as_u64().unwrap() > 0 && r["record_bytes"].as_u64().unwrap() > 0), "{query}");
    }
    // In key order, each key once, across pages.
    let every = all_pages(&s, &b.snap, "", 5);
    let order: Vec<(u64, String)> = every.iter().map(|k| (k["db"].as_u64().unwrap(), k["key"].as_str().unwrap().to_string())).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(order.len() as u64, b.srv.total_keys());
}

/// The server keeps the repository's index between requests and reloads it when the index
/// files change: a snapshot taken while it runs, then a prune that rewrites packs.
#[test]
fn the_key_browser_follows_new_backups_and_prunes_while_serving() {
    let b = Backed::new();
    let s = Serve::start(&b.vault, &[]);
    let latest_keys = |pattern: &str| {
        let v = s.get(&format!("/api/repos/default/snapshots/latest/keys?pattern={pattern}")).json();
        v["keys"].as_array().expect("keys").iter().map(|k| k["key"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert!(latest_keys("later*").is_empty());
    assert_eq!(latest_keys("user:1?").len(), 20);

    b.srv.resp().ok(&["DEL", "user:10", "user:11"]);
    b.srv.resp().ok(&["SET", "later", "added while serving"]);
    let second = backup_now(&b.srv, &b.vault);
    assert_eq!(latest_keys("later*"), ["later"]);
    let value = |snap: &str, key: &str| s.get(&format!("/api/repos/default/snapshots/{snap}/key?db=0&key={key}"));
    assert_eq!(value(&second, "later").json()["value"], "added while serving");

    b.vault.ok(&["forget", &b.snap]);
    b.vault.ok(&["prune", "--max-unused", "0%"]);
    assert_eq!(latest_keys("user:1?").len(), 18);
    assert_eq!(value(&second, "later").json()["value"], "added while serving");
    assert_eq!(value(&second, "user:12").status, 200);
}

#[test]
fn a_key_value_comes_as_json_with_binary_escaped() {
    let b = Backed::new();
    let s = Serve::start(&b.vault, &[]);
    let key = |db: u64, k: &str| {
        let q: String = k.bytes().map(|c| if c.is_ascii_alphanumeric() || c == b':' { (c as char).to_string() } else { format!("%{c:02X}") }).collect();
        s.get(&format!("/api/repos/default/snapshots/{}/key?db={db}&key={q}", b.snap))
    };

    let v = key(0, "str:bin").json();
    assert_eq!(v["type"], "string");
    assert_eq!(json_bytes(&v["value"]), (0..=255u8).rev().collect::<Vec<u8>>());
    let v = key(0, "key:\\xff\\x00\\r\\n").json();
    assert_eq!(v["value"], "binary key");
    let v = key(0, "hash:bin").json();
    assert_eq!(v["type"], "hash");
    let fields: Vec<(Vec<u8>, Vec<u8>)> = v["value"].as_array().unwrap().iter().map(|e| (json_bytes(&e["field"]), json_bytes(&e["value"]))).collect();
    assert!(fields.contains(&(b"\x00\xfe".to_vec(), b"\xff\xff".to_vec())));
    let v = key(1, "user:3").json();
    assert_eq!(v["db"], 1);
    assert!(v["value"].as_array().unwrap().iter().any(|e| e["field"] == "name" && e["value"] == "u3-db1"));
    let v = key(0, "stream:s").json();
    assert_eq!(v["type"], "stream");
    assert!(v["value"]["entries"].is_array() || v["value"].is_object(), "{v}");
    let v = key(3, "db3:z").json();
    assert_eq!(v["type"], "zset");
    let v = key(0, "hash:small").json();
    assert!(v["ttl_ms"].as_i64().unwrap() > 0);

    let missing = key(0, "no:such:key");
    assert_eq!(missing.status, 404);
    assert!(missing.error().contains("has no key \"no:such:key\" in db 0"), "{}", missing.error());
}

#[test]
fn memory_diff_timeline_and_download() {
    let b = Backed::new();
    {
        let mut c = b.srv.resp();
        c.ok(&["SET", "new:key", "v"]);
        c.ok(&["DEL", "str:short"]);
        c.ok(&["SET", "str:int", "54321"]);
    }
    let second = backup_now(&b.srv, &b.vault);
    let s = Serve::start(&b.vault, &[]);

    let m = s.get(&format!("/api/repos/default/snapshots/{}/memory?top=5", b.snap)).json();
    assert_eq!(m["total"]["keys"], b.srv.total_keys(), "one key added, one removed since");
    assert_eq!(m["top"].as_array().unwrap().len(), 5);
    assert_eq!(m["by_prefix"]["user"]["keys"], 61);
    assert!(m["by_type"]["hash"]["bytes"].as_u64().unwrap() > 0);

    let d = s.get(&format!("/api/repos/default/diff?old={}&new={second}", b.snap)).json();
    assert_eq!(d["counts"]["added"], 1);
    assert_eq!(d["counts"]["removed"], 1);
    assert_eq!(d["counts"]["changed"], 1);
    let changes: BTreeSet<(String, String)> =
        d["changes"].as_array().unwrap().iter().map(|c| (c["kind"].as_str().unwrap().into(), c["key"].as_str().unwrap().into())).collect();
    assert!(changes.contains(&("added".into(), "new:key".into())));
    assert!(changes.contains(&("removed".into(), "str:short".into())));
    assert!(changes.contains(&("changed".into(), "str:int".into())));
    let d = s.get(&format!("/api/repos/default/diff?old={}&new={second}&pattern=new:*", b.snap)).json();
    assert_eq!(d["differences"], 1);

    let t = s.get("/api/repos/default/timeline").json();
    assert_eq!(t["servers"], serde_json::json!([]));

    let rdb = s.get(&format!("/api/repos/default/snapshots/{second}/rdb"));
    assert_eq!(rdb.status, 200);
    assert_eq!(rdb.body, std::fs::read(b.srv.rdb_path()).unwrap(), "the download is the backed-up RDB, byte for byte");
    assert_eq!(rdb.header("content-length").unwrap(), rdb.body.len().to_string());
    assert!(rdb.header("content-disposition").unwrap().contains(&format!("{}-dump.rdb", &second[..8])));

    assert_eq!(s.get("/api/health").json()["status"], "ok");
}

#[test]
fn bad_input_gets_a_clear_4xx_json_error() {
    let b = Backed::new();
    let plain = b.vault.backup(&b.srv.rdb_path(), &["--no-key-index"]).0;
    let s = Serve::start(&b.vault, &[]);
    let snap = &b.snap;
    let keys = format!("/api/repos/default/snapshots/{snap}/keys");
    let cases: &[(&str, u16, &str)] = &[
        (&format!("{keys}?limit=5000"), 400, "limit=5000 is too large (at most 1000)"),
        (&format!("{keys}?limit=0"), 400, "limit=0"),
        (&format!("{keys}?cursor=n99999999999"), 400, "cursor=\"n99999999999\" is not a cursor this server gave"),
        (&format!("{keys}?cursor=-1"), 400, "cursor=\"-1\" is not a cursor this server gave"),
        (&format!("{keys}?cursor=k0:zz"), 400, "is not a cursor this server gave"),
        (&format!("{keys}?cursor=k184467440737095516160:00"), 400, "is not a cursor this server gave"),
        (&format!("/api/repos/default/snapshots/{plain}/keys?cursor=n99999999999"), 400, "cursor n99999999999 is past the last key"),
        (&format!("/api/repos/default/snapshots/{plain}/keys?cursor=n184467440737095516160"), 400, "is not a cursor this server gave"),
        (&format!("/api/repos/default/snapshots/{plain}/keys?cursor=k0:00"), 400, "is not a cursor this server gave"),
        (&format!("{keys}?pattern=user:%5Babc"), 400, "is never closed"),
        (&format!("{keys}?pattern=user%5C"), 400, "lone \\"),
        (&format!("{keys}?type=sortedset"), 400, "unknown type \"sortedset\""),
        (&format!("{keys}?db=7"), 404, "has no keys in db 7 (it has keys in db 0, 1, 3)"),
        (&format!("{keys}?db=x"), 400, "db=\"x\" is not a database number"),
        ("/api/repos/default/snapshots/deadbeef/keys", 404, "no snapshot matches \"deadbeef\""),
        ("/api/repos/default/snapshots/not-an-id", 400, "is not a snapshot id"),
        ("/api/repos/other/snapshots", 404, "no repository named \"other\" (there are: default)"),
        ("/api/nope", 404, "no such endpoint: /api/nope"),
        (&format!("/api/repos/default/snapshots/{snap}/key?key=%5Cxzz"), 400, "malformed escape"),
        (&format!("/api/repos/default/snapshots/{snap}/key"), 400, "missing parameter key"),
        ("/api/repos/default/diff?old=latest", 400, "missing parameter new"),
        (&format!("/api/repos/default/snapshots/{snap}/memory?top=100000"), 400, "top=100000 is too large"),
    ];
    for (path, status, msg) in cases {
        let r = s.get(path);
        assert_eq!(r.status, *status, "{path}: {}", r.text());
        assert!(r.header("content-type").unwrap().starts_with("application/json"), "{path}");
        assert!(r.error().contains(msg), "{path}: {:?} lacks {msg:?}", r.error());
    }
}

#[test]
fn no_response_carries_the_repository_or_redis_password() {
    let redis_pw = "redis-Secret-4711";
    let srv = common::server::RedisServer::start(&[]);
    let vault = common::vault::Vault::init();
    let mut c = srv.resp();
    c.ok(&["SET", "k", "v"]);
    c.ok(&["CONFIG", "SET", "requirepass", redis_pw]);
    c.ok(&["AUTH", redis_pw]);
    let out = vault.cmd(&["backup", &format!("redis://:{redis_pw}@127.0.0.1:{}", srv.port)]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.ok(&["SET", "k2", "v2"]);
    let out = vault.cmd(&["backup", &format!("redis://127.0.0.1:{}", srv.port)]).env("REDISCLI_AUTH", redis_pw).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = Serve::start(&vault, &[]);
    let snaps = s.get("/api/repos/default/snapshots").json();
    let (a, b) = (snaps["snapshots"][0]["id"].as_str().unwrap().to_string(), snaps["snapshots"][1]["id"].as_str().unwrap().to_string());
    let paths = [
        "/".to_string(),
        "/assets/app.js".into(),
        "/api/session".into(),
        "/api/health".into(),
        "/api/repos".into(),
        "/api/repos/default/snapshots?all=1".into(),
        format!("/api/repos/default/snapshots/{a}"),
        format!("/api/repos/default/snapshots/{b}"),
        format!("/api/repos/default/snapshots/{b}/keys"),
        format!("/api/repos/default/snapshots/{b}/key?key=k"),
        format!("/api/repos/default/snapshots/{b}/memory"),
        format!("/api/repos/default/diff?old={a}&new={b}"),
        "/api/repos/default/timeline".into(),
        format!("/api/repos/default/snapshots/{b}/rdb"),
        "/api/repos/default/snapshots/ffff".into(),
        "/health".into(),
    ];
    let target = common::server::RedisServer::start(&[]);
    let to_url = format!("redis://:{redis_pw}@127.0.0.1:{}", target.port);
    let job = start_job(&s, serde_json::json!({"kind": "restore", "snapshot": b, "to_url": to_url, "dry_run": true}));
    let done = wait_job(&s, job);
    assert_eq!(done["state"], "failed", "the target has no password set: AUTH fails: {done}");
    let paths: Vec<String> = paths.into_iter().chain([format!("/api/jobs/{job}"), "/api/jobs".into()]).collect();
    for p in paths {
        let r = s.get(&p);
        assert!(r.status < 500, "{p}: {}", r.text());
        let text = r.text();
        for secret in [redis_pw, vault.password.as_str()] {
            assert!(!text.contains(secret), "{p} sent a password: {text}");
        }
    }
}

#[test]
fn a_non_loopback_address_needs_a_login_and_tls_or_insecure_http() {
    let b = Backed::new();
    let dir = b.vault.dir.path();
    let err = Serve::try_start(&b.vault, &["--listen", "0.0.0.0:0"]).err().expect("refused");
    assert!(err.contains("refusing to listen on 0.0.0.0:0: it is not a loopback address and no login is configured"), "{err}");
    let cfg = config(dir, &format!("password_hash = \"{}\"", hash("opensesame")));
    let cfg = cfg.to_str().unwrap();
    let err = Serve::try_start(&b.vault, &["--listen", "0.0.0.0:0", "--config", cfg]).err().expect("refused");
    assert!(err.contains("refusing to listen on 0.0.0.0:0 without TLS"), "{err}");
    assert!(err.contains("--insecure-http"), "{err}");
    // With the login and an explicit --insecure-http it starts, and asks for the login.
    let mut s = Serve::start(&b.vault, &["--listen", "0.0.0.0:0", "--config", cfg, "--insecure-http"]);
    let port = s.addr.rsplit(':').next().unwrap().to_string();
    s.addr = format!("127.0.0.1:{port}");
    assert_eq!(s.get("/api/repos").status, 401);
}

/// The `name=value` of a Set-Cookie header, for sending back.
fn cookie_of(r: &common::web::Reply) -> String {
    r.header("set-cookie").expect("a cookie").split(';').next().unwrap().to_string()
}

#[test]
fn login_gives_a_strict_cookie_and_every_post_needs_the_csrf_token() {
    let b = Backed::new();
    let cfg = config(b.vault.dir.path(), &format!("password_hash = \"{}\"\ntoken_hash = \"{}\"", hash("opensesame"), hash("tok-123")));
    let s = Serve::start(&b.vault, &["--config", cfg.to_str().unwrap()]);

    let r = s.get("/api/repos");
    assert_eq!(r.status, 401);
    assert!(r.error().contains("log in first"));
    assert_eq!(s.get("/").status, 200, "the page itself loads, to show the login form");
    let session = s.get("/api/session").json();
    assert_eq!(session["auth_required"], true);
    assert_eq!(session["logged_in"], false);
    let site_csrf = session["csrf"].as_str().unwrap().to_string();

    let login = |csrf: &str, pw: &str| s.request("POST", "/api/login", &[("X-CSRF-Token", csrf), ("Content-Type", "application/json")], format!("{{\"password\":\"{pw}\"}}").as_bytes());
    let r = login("", "opensesame");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.error().contains("X-CSRF-Token"));
    let r = login(&site_csrf, "wrong");
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "wrong password or token");
    assert!(r.header("set-cookie").is_none());
    let r = login(&site_csrf, "opensesame");
    assert_eq!(r.status, 200, "{}", r.text());
    let set = r.header("set-cookie").unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{set}");
    }
    assert!(!set.contains("Secure"), "no Secure flag over plain HTTP: {set}");
    let cookie = cookie_of(&r);
    let csrf = r.json()["csrf"].as_str().unwrap().to_string();
    assert_ne!(csrf, site_csrf);

    assert_eq!(s.get_with("/api/repos", &cookie).status, 200);
    assert_eq!(s.get_with("/api/session", &cookie).json()["csrf"], csrf.as_str());
    let r = s.request("POST", "/api/logout", &[("Cookie", &cookie), ("X-CSRF-Token", &site_csrf)], b"");
    assert_eq!(r.status, 403, "the session's own token is needed, not the login one");
    let r = s.request("POST", "/api/logout", &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(s.get_with("/api/repos", &cookie).status, 401, "the session ended");

    // A script with the token: no cookie, no CSRF token needed.
    assert_eq!(s.request("GET", "/api/repos", &[("Authorization", "Bearer tok-123")], b"").status, 200);
    assert_eq!(s.request("GET", "/api/repos", &[("Authorization", "Bearer tok-124")], b"").status, 401);
}

#[test]
fn loopback_answers_only_loopback_host_names() {
    let b = Backed::new();
    let s = Serve::start(&b.vault, &[]);
    let r = s.request("GET", "/api/repos", &[("Host", "evil.example:8077")], b"");
    assert_eq!(r.status, 403);
    assert!(r.error().contains("answers only to localhost"));
    assert_eq!(s.request("GET", "/api/repos", &[("Host", "localhost:8077")], b"").status, 200);
    // Without a login, POSTs still need the server's CSRF token (another site's page could send them).
    let r = s.request("POST", "/api/logout", &[], b"");
    assert_eq!(r.status, 403);
    let csrf = s.get("/api/session").json()["csrf"].as_str().unwrap().to_string();
    assert_eq!(s.request("POST", "/api/logout", &[("X-CSRF-Token", &csrf)], b"").status, 200);
    let page = s.get("/");
    assert!(page.header("content-security-policy").unwrap().contains("default-src 'self'"));
    assert!(String::from_utf8_lossy(&page.body).contains("/assets/app.js"));
}

#[test]
fn tls_serves_https_and_marks_the_cookie_secure() {
    let b = Backed::new();
    let dir = b.vault.dir.path();
    let (cert, key, ca) = common::server::make_tls_certs(dir).expect("openssl makes test certificates");
    let cfg = config(dir, &format!("password_hash = \"{}\"\ntls_cert = {:?}\ntls_key = {:?}", hash("opensesame"), cert, key));
    let mut s = Serve::start(&b.vault, &["--config", cfg.to_str().unwrap()]);
    s.ca = Some(ca);
    let csrf = s.get("/api/session").json()["csrf"].as_str().unwrap().to_string();
    let r = s.request("POST", "/api/login", &[("X-CSRF-Token", &csrf)], b"{\"password\":\"opensesame\"}");
    assert_eq!(r.status, 200, "{}", r.text());
    let set = r.header("set-cookie").unwrap();
    assert!(set.contains("; Secure") && set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");

    let bad = config(dir, "tls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\"");
    let err = Serve::try_start(&b.vault, &["--config", bad.to_str().unwrap()]).err().expect("refused");
    assert!(err.contains("TLS: certificate file /nonexistent/cert.pem"), "{err}");
}

#[test]
fn jobs_back_up_check_and_restore_only_after_a_dry_run() {
    let b = Backed::new();
    let target = common::server::RedisServer::start(&[]);
    let cfg = b.vault.dir.path().join("rdbvault.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repositories.main]\nrepository = {:?}\npassword_env = \"RDBVAULT_PASSWORD\"\n[sources.live]\nredis = \"{}\"\n[profiles.prod]\nrepository = \"main\"\nsource = \"live\"\nkeep_last = 5\n",
            b.vault.repo, b.srv.url()
        ),
    )
    .unwrap();
    let s = Serve::start(&b.vault, &["--config", cfg.to_str().unwrap()]);
    let names: Vec<Value> = s.get("/api/repos").json().as_array().unwrap().iter().map(|r| r["name"].clone()).collect();
    assert_eq!(names, vec![Value::from("default"), Value::from("main")]);

    // Back up now, through the profile that uses repository "main".
    let backup = start_job(&s, serde_json::json!({"kind": "backup", "repo": "main"}));
    let st = wait_job(&s, backup);
    assert_eq!(st["state"], "succeeded", "{st}");
    assert!(st["bytes_done"].as_u64().unwrap() > 0, "progress was counted: {st}");
    assert_eq!(s.get("/api/repos/main/snapshots").json()["snapshots"].as_array().unwrap().len(), 2);
    let r = post(&s, "/api/jobs", &serde_json::json!({"kind": "backup", "repo": "default"}));
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "no profile of the config uses repository \"default\"");

    let check = wait_job(&s, start_job(&s, serde_json::json!({"kind": "check", "repo": "main"})));
    assert_eq!(check["state"], "succeeded", "{check}");
    assert_eq!(check["message"], "check found 0 errors, 0 warnings");
    let metrics = s.get("/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert!(text.contains("rdbvault_last_success_timestamp_seconds{") && text.contains("job=\"check\""), "{text}");

    // A restore without its dry run is refused; the dry run writes nothing.
    let restore = |extra: Value| {
        let mut v = serde_json::json!({"kind": "restore", "repo": "main", "snapshot": &b.snap[..10], "keys": "user:1*", "to_url": target.url()});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v
    };
    let r = post(&s, "/api/jobs", &restore(serde_json::json!({"dry_run": false})));
    assert_eq!(r.status, 400);
    assert!(r.error().starts_with("a restore runs as a dry run first"), "{}", r.error());
    let dry = wait_job(&s, start_job(&s, restore(serde_json::json!({"dry_run": true}))));
    assert_eq!(dry["state"], "succeeded", "{dry}");
    assert_eq!(dry["report"]["restored"], 22, "user:1 and user:10..19 in dbs 0 and 1: {dry}");
    assert_eq!(target.cli(&["DBSIZE"]).trim(), "0");
    let other = post(&s, "/api/jobs", &restore(serde_json::json!({"dry_run": false, "confirm": dry["id"], "keys": "*"})));
    assert_eq!(other.status, 400, "a dry run of other keys does not confirm this restore");
    assert!(other.error().contains("is not a dry run of this restore"));
    let real = wait_job(&s, start_job(&s, restore(serde_json::json!({"dry_run": false, "confirm": dry["id"]}))));
    assert_eq!(real["state"], "succeeded", "{real}");
    assert_eq!(target.cli(&["HGET", "user:12", "name"]).trim(), "u12-db0");
    assert_eq!(target.cli(&["-n", "1", "HGET", "user:12", "name"]).trim(), "u12-db1");

    let r = post(&s, &format!("/api/jobs/{}/cancel", real["id"]), &serde_json::json!({}));
    assert_eq!(r.status, 409);
    assert!(r.error().contains("has already ended (succeeded)"));
    let list = s.get("/api/jobs").json();
    let ids: Vec<u64> = list.as_array().unwrap().iter().map(|j| j["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 4);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    for (path, status, msg) in [
        ("/api/jobs/999", 404, "no job 999"),
        ("/api/jobs/abc", 400, "\"abc\" is not a job id"),
    ] {
        let r = s.get(path);
        assert_eq!((r.status, r.error().contains(msg)), (status, true), "{path}: {}", r.text());
    }
    let r = post(&s, "/api/jobs", &serde_json::json!({"kind": "explode"}));
    assert_eq!(r.status, 400);
    assert!(r.error().contains("unknown job kind \"explode\""));
    let health = s.get("/health").json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["jobs_running"], 0);
}

/// Restore jobs take `map_db`, `replace` and `skip_existing`, as `restore --to` does; a dry
/// run confirms only a restore with the same choices.
#[test]
fn restore_jobs_map_dbs_and_replace_or_skip_existing_keys() {
    let b = Backed::new();
    let target = common::server::RedisServer::start(&[]);
    target.cli(&["-n", "4", "SET", "user:12", "mine"]);
    target.cli(&["-n", "4", "SET", "user:13", "mine"]);
    let s = Serve::start(&b.vault, &[]);
    let body = |extra: Value| {
        let mut v = serde_json::json!({"kind": "restore", "snapshot": b.snap, "keys": "user:1?", "to_url": target.url(), "map_db": "0:4, 1:5"});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v
    };
    // A dry run, then the restore it confirms; returns the restore's status.
    let restore = |choices: Value| {
        let dry = wait_job(&s, start_job(&s, body(choices.clone())));
        assert_eq!(dry["state"], "succeeded", "{dry}");
        let mut real = choices;
        real.as_object_mut().unwrap().extend(serde_json::json!({"dry_run": false, "confirm": dry["id"]}).as_object().unwrap().clone());
        wait_job(&s, start_job(&s, body(real)))
    };
    let get = |db: &str, key: &str| target.cli(&["-n", db, "TYPE", key]).trim().to_string();

    let stopped = restore(serde_json::json!({}));
    assert_eq!(stopped["state"], "failed", "keys that exist stop it: {stopped}");
    assert!(stopped["message"].as_str().unwrap().contains("user:12"), "{stopped}");

    let kept = restore(serde_json::json!({"skip_existing": true}));
    assert_eq!(kept["state"], "succeeded", "{kept}");
    assert_eq!(target.cli(&["-n", "4", "GET", "user:12"]).trim(), "mine");
    assert_eq!(target.cli(&["-n", "4", "HGET", "user:14", "name"]).trim(), "u14-db0");
    assert_eq!(target.cli(&["-n", "5", "HGET", "user:12", "name"]).trim(), "u12-db1");
    assert_eq!(target.cli(&["-n", "0", "DBSIZE"]).trim(), "0", "db 0 went to db 4");

    let replaced = restore(serde_json::json!({"replace": true}));
    assert_eq!(replaced["state"], "succeeded", "{replaced}");
    assert_eq!((get("4", "user:12"), get("4", "user:13")), ("hash".to_string(), "hash".to_string()));
    assert_eq!(target.cli(&["-n", "4", "HGET", "user:12", "name"]).trim(), "u12-db0");

    let dry = wait_job(&s, start_job(&s, body(serde_json::json!({"replace": true}))));
    let r = post(&s, "/api/jobs", &body(serde_json::json!({"skip_existing": true, "dry_run": false, "confirm": dry["id"]})));
    assert_eq!(r.status, 400, "a dry run with other choices does not confirm: {}", r.text());
    assert!(r.error().contains("is not a dry run of this restore"));
    for (extra, msg) in [
        (serde_json::json!({"replace": true, "skip_existing": true}), "replace and skip_existing exclude each other"),
        (serde_json::json!({"map_db": "0-4"}), "map_db: \"0-4\" is not FROM:TO"),
        (serde_json::json!({"map_db": 3}), "map_db must be"),
        (serde_json::json!({"replace": "yes"}), "replace must be true or false"),
    ] {
        let r = post(&s, "/api/jobs", &body(extra));
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.error().contains(msg), "{:?} lacks {msg:?}", r.error());
    }
}

/// `/metrics` gives each followed server's lag (seconds since its newest committed moment)
/// and the replication offset committed, which the server's own offset reaches once it
/// has acknowledged every write.
#[test]
fn metrics_show_the_lag_of_a_followed_server() {
    use common::follow;
    let v = common::vault::Vault::init();
    let srv = common::server::RedisServer::start(&[]);
    let child = follow::follow(&v, &srv);
    let mut c = srv.resp();
    follow::online(&mut c);
    follow::writes(&mut c, 1);
    follow::instant(&mut c);
    let master_offset: f64 = c.ok(&["INFO", "replication"]).text().lines().find_map(|l| l.strip_prefix("master_repl_offset:")).expect("offset").trim().parse().unwrap();
    let s = Serve::start(&v, &[]);
    let text = s.get("/metrics").text();
    let value = |name: &str| -> f64 {
        let series = format!("{name}{{repository=\"default\",server=\"127.0.0.1:{}\"}} ", srv.port);
        let line = text.lines().find(|l| l.starts_with(&series)).unwrap_or_else(|| panic!("no {series}: {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let lag = value("rdbvault_follower_lag_seconds");
    assert!((0.0..60.0).contains(&lag), "{lag}");
    assert_eq!(value("rdbvault_follower_committed_offset"), master_offset, "every write was acknowledged");
    follow::stop(child);
}

/// A job's progress comes as Server-Sent Events: `status` events with the job's JSON
/// status, the last one when it has ended, then the stream closes.
#[test]
fn job_progress_streams_as_server_sent_events() {
    let b = Backed::new();
    let s = Serve::start(&b.vault, &[]);
    let id = start_job(&s, serde_json::json!({"kind": "check", "read_data_subset": "1/1"}));
    let r = s.get(&format!("/api/jobs/{id}/events"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let text = r.text();
    let events: Vec<Value> = text
        .split("\n\n")
        .filter(|e| e.starts_with("event: status\n"))
        .map(|e| serde_json::from_str(e.strip_prefix("event: status\ndata: ").expect("one data line")).expect("JSON"))
        .collect();
    assert!(!events.is_empty(), "{text}");
    assert!(events.iter().all(|e| e["id"] == id), "{text}");
    let states: Vec<&str> = events.iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(states.last(), Some(&"succeeded"), "{text}");
    assert!(states[..states.len() - 1].iter().all(|s| ["queued", "running"].contains(s)), "{states:?}");
    assert_eq!(events.last(), Some(&s.get(&format!("/api/jobs/{id}")).json()), "the last event is the final status");
    let missing = s.get("/api/jobs/999/events");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error(), "no job 999");
}
