//! The web UI in a real headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`): snapshot list, key search and value, diff, restore of one key into
//! a second redis-server. With RDBVAULT_SCREENSHOTS=DIR it saves the main pages as PNGs.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::dataset::{backup_now, fill, fill_users};
use common::server::{free_port, RedisServer};
use common::vault::Vault;
use common::web::{http, Serve};
use serde_json::{json, Value};

/// A chromedriver process and one headless Chromium session.
struct Browser {
    driver: Child,
    addr: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver").arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn chromedriver (Debian package chromium-driver)");
        let addr = format!("127.0.0.1:{port}");
        common::server::wait_until(Duration::from_secs(20), "chromedriver", || std::net::TcpStream::connect(&addr).is_ok());
        let profile = tempfile::tempdir().expect("tempdir");
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1360,900",
                     format!("--user-data-dir={}", profile.path().display())],
        }}}});
        let mut b = Browser { driver, addr, session: String::new(), _profile: profile };
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_string();
        b
    }

    /// One WebDriver command; returns its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let r = http(&self.addr, None, method, path, &[("Content-Type", "application/json")], body.as_bytes());
        let v = r.json();
        assert!(r.status < 400, "{method} {path}: {v}");
        v["value"].clone()
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn open(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    fn js(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({ "script": script, "args": [] })))
    }

    /// Waits until `script` returns something truthy; returns it.
    fn wait_for(&self, what: &str, script: &str) -> Value {
        let start = Instant::now();
        loop {
            let v = self.js(script);
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting for {what}; page: {}", self.js("return document.querySelector('main').innerText"));
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The WebDriver id of the element `css` selects.
    fn element(&self, css: &str) -> String {
        let v = self.cmd("POST", "/element", Some(json!({ "using": "css selector", "value": css })));
        v.as_object().and_then(|o| o.values().next()).and_then(|id| id.as_str()).unwrap_or_else(|| panic!("no element {css}: {v}")).to_string()
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.cmd("POST", &format!("/element/{id}/clear"), Some(json!({})));
        self.cmd("POST", &format!("/element/{id}/value"), Some(json!({ "text": text })));
    }

    /// Saves a PNG of the page to $RDBVAULT_SCREENSHOTS/web-NAME.png when that is set.
    fn screenshot(&self, name: &str) {
        let Ok(dir) = std::env::var("RDBVAULT_SCREENSHOTS") else { return };
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64(b64.as_str().expect("base64 PNG"));
        std::fs::write(std::path::Path::new(&dir).join(format!("web-{name}.png")), png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http(&self.addr, None, "DELETE", &format!("/session/{}", self.session), &[], b"");
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = s.bytes().filter(|c| !b"=\r\n".contains(c)).collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &c)| n | (u32::from(val(c)) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn browse_search_diff_and_restore_a_key_in_a_real_browser() {
    let src = RedisServer::start(&[]);
    let mut c = src.resp();
    fill(&mut c);
    fill_users(&mut c, 30);
    let vault = Vault::init();
    let first = backup_now(&src, &vault);
    c.ok(&["HSET", "user:7", "name", "renamed"]);
    c.ok(&["SET", "fresh:key", "new value"]);
    let second = backup_now(&src, &vault);
    let target = RedisServer::start(&[]);
    let s = Serve::start(&vault, &[]);
    let b = Browser::start();
    let base = format!("http://{}/", s.addr);

    // The snapshot list shows both snapshots with their sizes, newest first.
    b.open(&base);
    let rows = b.wait_for("the snapshot list", "const r = document.querySelectorAll('#snapshots tbody tr'); return r.length == 2 && Array.from(r).map(x => x.dataset.id)");
    assert_eq!(rows, json!([second, first]));
    let text = b.js("return document.querySelector('#snapshots').innerText").as_str().unwrap().to_string();
    assert!(text.contains(&second[..8]) && text.contains("KiB"), "{text}");
    b.screenshot("snapshots");

    // Search a key in the newest snapshot and read its value.
    b.open(&format!("{base}#/keys/{second}"));
    b.wait_for("the key list", "return document.querySelectorAll('#keys tbody tr').length > 0");
    b.type_into("#key-pattern", "user:7");
    b.type_into("#key-db", "0");
    b.click("#key-search button[type=submit]");
    b.wait_for("the search result", "const r = document.querySelectorAll('#keys tbody tr'); return r.length == 1 && r[0].dataset.key == 'user:7'");
    b.click("#keys tbody tr");
    let value = b.wait_for("the value", "const v = document.querySelector('#value'); return v && v.innerText");
    let value = value.as_str().unwrap();
    assert!(value.contains("hash") && value.contains("renamed") && value.contains("visits"), "{value}");
    b.screenshot("keys");

    // Memory report page.
    b.open(&format!("{base}#/memory/{second}"));
    b.wait_for("the memory charts", "return document.querySelectorAll('main svg rect').length > 2");
    b.screenshot("memory");

    // Diff the two snapshots; drill down into the changed key.
    b.open(&format!("{base}#/diff"));
    b.wait_for("the diff form", "return document.querySelector('#diff-form')");
    b.click("#diff-form button[type=submit]");
    let counts = b.wait_for("the diff", "const c = document.querySelector('#diff-counts'); return c && c.innerText");
    assert!(counts.as_str().unwrap().starts_with("1 added, 0 removed, 1 changed"), "{counts}");
    let keys = b.js("return Array.from(document.querySelectorAll('#changes tbody tr')).map(r => r.dataset.key)");
    assert_eq!(keys, json!(["fresh:key", "user:7"]));
    b.click("#changes tbody tr[data-key='user:7']");
    let both = b.wait_for("both values", "const v = document.querySelectorAll('.value'); return v.length == 2 && document.querySelector('main').innerText");
    let both = both.as_str().unwrap();
    assert!(both.contains("u7-db0") && both.contains("renamed"), "{both}");
    b.screenshot("diff");

    // Restore one key into the second server: dry run first, then confirm.
    b.open(&format!("{base}#/jobs/restore/{second}"));
    b.wait_for("the restore form", "return document.querySelector('#restore-form')");
    b.type_into("#restore-keys", "fresh:*");
    b.type_into("#restore-to", &target.url());
    b.click("#restore-form button[type=submit]");
    let dry = b.wait_for("the dry run", "const d = document.querySelector('#restore-dry'); return d && d.innerText");
    assert!(dry.as_str().unwrap().contains("Dry run"), "{dry}");
    assert_eq!(target.cli(&["DBSIZE"]).trim(), "0", "a dry run writes nothing");
    b.screenshot("restore");
    b.click("#restore-confirm");
    let done = b.wait_for("the restore", "const d = document.querySelector('#restore-done'); return d && d.innerText");
    assert!(done.as_str().unwrap().contains("succeeded"), "{done}");
    assert_eq!(target.cli(&["GET", "fresh:key"]).trim(), "new value");
    assert_eq!(target.cli(&["DBSIZE"]).trim(), "1");
    b.wait_for("the job history", "return document.querySelectorAll('#jobs tbody tr').length >= 2");
    b.screenshot("jobs");
}
