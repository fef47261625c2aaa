//! Who may use the server: the login (Argon2id hashes from the config), session cookies
//! (HttpOnly, SameSite=Strict, Secure under TLS), a CSRF token on every state-changing
//! request, and a Host check against DNS rebinding on loopback.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::RngCore;
use serde_json::{json, Value};

use super::error::ApiError;
use super::Site;

/// Name of the session cookie.
pub const COOKIE: &str = "rdbvault_session";
/// Header that must carry the CSRF token on POST and DELETE.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts after login.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most (the oldest goes first).
const MAX_SESSIONS: usize = 256;
/// Delay after a failed login (slows guessing).
const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(700);

struct Session {
    csrf: String,
    expires: Instant,
}

/// The login configuration and the live sessions.
pub struct Auth {
    hashes: Vec<String>,
    /// Whether cookies get `Secure` (served over TLS).
    secure: bool,
    /// Listening on loopback: only loopback Host headers are accepted.
    loopback: bool,
    /// The CSRF token for requests outside a session (login; everything without a login).
    site_csrf: String,
    sessions: Mutex<HashMap<String, Session>>,
    /// BLAKE3 of bearer tokens already verified (Argon2 once per token, not per request).
    tokens: Mutex<HashSet<[u8; 32]>>,
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Compares secrets without leaking where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `secret` matches an Argon2id PHC hash.
fn verify(hash: &str, secret: &str) -> bool {
    use argon2::{Argon2, PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(secret.as_bytes(), &h).is_ok())
}

impl Auth {
    pub fn new(hashes: Vec<String>, secure: bool, addr: SocketAddr) -> Auth {
        Auth {
            hashes,
            secure,
            loopback: addr.ip().is_loopback(),
            site_csrf: random_hex(),
            sessions: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashSet::new()),
        }
    }

    /// Whether a login is needed.
    pub fn required(&self) -> bool {
        !self.hashes.is_empty()
    }

    /// The live session a request's cookie names, with its CSRF token.
    fn session(&self, headers: &HeaderMap) -> Option<(String, String)> {
        let id = cookie(headers, COOKIE)?;
        let mut sessions = self.sessions.lock().ok()?;
        match sessions.get(&id) {
            Some(s) if s.expires > Instant::now() => Some((id, s.csrf.clone())),
            Some(_) => {
                sessions.remove(&id);
                None
            }
            None => None,
        }
    }

    /// Whether the request carries a bearer token that matches a configured hash.
    async fn bearer_ok(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) else {
            return false;
        };
        let digest = *blake3::hash(token.as_bytes()).as_bytes();
        if self.tokens.lock().is_ok_and(|t| t.contains(&digest)) {
            return true;
        }
        if self.check_secret(token.to_string()).await {
            if let Ok(mut t) = self.tokens.lock() {
                t.insert(digest);
            }
            return true;
        }
        false
    }

    /// Argon2 verification of a login secret, off the request threads.
    async fn check_secret(&self, secret: String) -> bool {
        let hashes = self.hashes.clone();
        tokio::task::spawn_blocking(move || hashes.iter().any(|h| verify(h, &secret))).await.unwrap_or(false)
    }

    fn start_session(&self) -> (String, String) {
        let (id, csrf) = (random_hex(), random_hex());
        if let Ok(mut s) = self.sessions.lock() {
            let now = Instant::now();
            s.retain(|_, v| v.expires > now);
            if s.len() >= MAX_SESSIONS {
                if let Some(oldest) = s.iter().min_by_key(|(_, v)| v.expires).map(|(k, _)| k.clone()) {
                    s.remove(&oldest);
                }
            }
            s.insert(id.clone(), Session { csrf: csrf.clone(), expires: now + SESSION_TTL });
        }
        (id, csrf)
    }

    fn cookie_header(&self, value: &str, max_age: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
    }
}

/// The value of cookie `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// Whether a Host header names a loopback address (`localhost`, `127.x`, `[::1]`, any port).
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Paths anyone may fetch: the UI's files, the health check and what login needs.
fn public(path: &str) -> bool {
    matches!(path, "/" | "/health" | "/api/health" | "/api/session" | "/api/login") || path.starts_with("/assets/")
}

fn refuse(status: StatusCode, message: &str) -> Response {
    ApiError::new(status, message).into_response()
}

/// Checks Host, login and CSRF before any handler runs; sets strict response headers.
pub async fn guard(State(site): State<Arc<Site>>, req: Request, next: Next) -> Response {
    let auth = &site.auth;
    let headers = req.headers();
    if auth.loopback {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if !loopback_host(host) {
            return refuse(StatusCode::FORBIDDEN, &format!("Host {host:?} is not accepted: this server listens on loopback and answers only to localhost, 127.0.0.1 or [::1]"));
        }
    }
    let path = req.uri().path().to_string();
    let session = auth.session(headers);
    let bearer = auth.required() && session.is_none() && !public(&path) && auth.bearer_ok(headers).await;
    if auth.required() && !public(&path) && session.is_none() && !bearer {
        return refuse(StatusCode::UNAUTHORIZED, "log in first: POST /api/login with {\"password\": ...}, or send Authorization: Bearer TOKEN");
    }
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD);
    if writes && !bearer {
        let want = match (&session, path.as_str()) {
            (Some((_, csrf)), p) if p != "/api/login" => csrf.clone(),
            _ => auth.site_csrf.clone(),
        };
        let got = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !same(got, &want) {
            return refuse(StatusCode::FORBIDDEN, "missing or wrong X-CSRF-Token header: send the csrf value GET /api/session returns");
        }
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"),
    );
    resp
}

/// `GET /api/session`: whether a login is needed, whether this browser has one, and the
/// CSRF token to send with POST and DELETE.
pub async fn session(State(site): State<Arc<Site>>, headers: HeaderMap) -> Json<Value> {
    let auth = &site.auth;
    let s = auth.session(&headers);
    let csrf = s.as_ref().map_or_else(|| auth.site_csrf.clone(), |(_, c)| c.clone());
    Json(json!({ "auth_required": auth.required(), "logged_in": s.is_some(), "csrf": csrf }))
}

/// `POST /api/login` `{"password": "..."}`: a session cookie and its CSRF token.
pub async fn login(State(site): State<Arc<Site>>, body: Bytes) -> Response {
    let auth = &site.auth;
    if !auth.required() {
        return ApiError::bad("this server needs no login (no password_hash or token_hash in [serve])").into_response();
    }
    let secret = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("password").and_then(|p| p.as_str()).map(str::to_string));
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return ApiError::bad("send JSON {\"password\": \"...\"}").into_response();
    };
    if !auth.check_secret(secret).await {
        tokio::time::sleep(FAILED_LOGIN_DELAY).await;
        return refuse(StatusCode::UNAUTHORIZED, "wrong password or token");
    }
    let (id, csrf) = auth.start_session();
    let cookie = auth.cookie_header(&id, SESSION_TTL.as_secs());
    ([(header::SET_COOKIE, cookie)], Json(json!({ "logged_in": true, "csrf": csrf }))).into_response()
}

/// `POST /api/logout`: ends the session.
pub async fn logout(State(site): State<Arc<Site>>, headers: HeaderMap) -> Response {
    let auth = &site.auth;
    if let Some((id, _)) = auth.session(&headers) {
        if let Ok(mut s) = auth.sessions.lock() {
            s.remove(&id);
        }
    }
    ([(header::SET_COOKIE, auth.cookie_header("", 0))], Json(json!({ "logged_in": false }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for ok in ["localhost", "localhost:8077", "127.0.0.1:1", "127.3.4.5", "[::1]:80", "[::1]"] {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in ["evil.example", "evil.example:8077", "10.0.0.1:80", "", "localhost.evil:80"] {
            assert!(!loopback_host(bad), "{bad}");
        }
    }
}
