//! The HTTP client behind S3 requests: loads the system's TLS roots only for https.
//!
//! A client with TLS roots reads every certificate file the system has (hundreds of small
//! files; ~40 ms before the first request on a cold cache, the whole key derivation's worth).
//! An `http://` endpoint (a local MinIO, a test server) never needs them, so requests are
//! sent by scheme: plain ones through a client without roots, https ones through one that
//! verifies against the system's roots, built on first use.

use std::sync::LazyLock;

use http::{Request, Response};
use opendal::{Buffer, HttpBody, HttpTransport, HttpTransporter};
use opendal_http_transport_reqwest::ReqwestTransport;

/// For `http://`: no TLS roots, so an unexpected redirect to https fails instead of trusting.
static PLAIN: LazyLock<ReqwestTransport> =
    LazyLock::new(|| ReqwestTransport::new(reqwest::Client::builder().tls_certs_only([]).build().unwrap_or_else(|_| reqwest::Client::new())));
/// For `https://`: the system's roots (the platform verifier).
static TLS: LazyLock<ReqwestTransport> = LazyLock::new(|| ReqwestTransport::new(reqwest::Client::new()));

/// Sends each request through the client its scheme needs.
struct ByScheme;

impl HttpTransport for ByScheme {
    async fn fetch(&self, req: Request<Buffer>) -> opendal::Result<Response<HttpBody>> {
        if req.uri().scheme_str() == Some("http") {
            PLAIN.fetch(req).await
        } else {
            TLS.fetch(req).await
        }
    }
}

/// Makes [`ByScheme`] the process's HTTP transport (the first install wins; later ones are no-ops).
pub fn install() {
    // TLS through the ring provider we already link; a second install is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    HttpTransporter::install_default(ByScheme);
}
