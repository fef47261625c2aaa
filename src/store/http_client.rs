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
static PLAIN: LazyLock<Result<ReqwestTransport, String>> = LazyLock::new(|| client(reqwest::Client::builder().tls_certs_only([])));
/// For `https://`: the system's roots (the platform verifier); building it fails where the
/// system has none (a slim container without ca-certificates), which is said, not a panic.
static TLS: LazyLock<Result<ReqwestTransport, String>> = LazyLock::new(|| client(reqwest::Client::builder()));

/// A transport from `builder`, or why there is none (reqwest's own `Client::new` panics).
fn client(builder: reqwest::ClientBuilder) -> Result<ReqwestTransport, String> {
    builder.build().map(ReqwestTransport::new).map_err(|e| {
        let why = std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
        format!("cannot set up TLS: {why} (install the ca-certificates package, or set SSL_CERT_FILE to a PEM file of the CA certificates to trust)")
    })
}

/// Sends each request through the client its scheme needs.
struct ByScheme;

impl HttpTransport for ByScheme {
    async fn fetch(&self, req: Request<Buffer>) -> opendal::Result<Response<HttpBody>> {
        let plain = req.uri().scheme_str() == Some("http");
        let client: &Result<ReqwestTransport, String> = if plain { &PLAIN } else { &TLS };
        match client {
            Ok(client) if plain => client.fetch(req).await,
            Ok(client) => client.fetch(req).await.map_err(untrusted),
            Err(why) => Err(opendal::Error::new(opendal::ErrorKind::ConfigInvalid, why.clone())),
        }
    }
}

/// A server certificate the roots do not vouch for is a permanent error that says so:
/// reqwest reports it as a failed send, which would be retried and then blamed on the network.
fn untrusted(e: opendal::Error) -> opendal::Error {
    let raw = format!("{e:?}");
    // rustls's own words, e.g. "invalid peer certificate: UnknownIssuer".
    const SAYS: &str = "invalid peer certificate: ";
    let Some(at) = raw.find(SAYS) else { return e };
    let detail: String = raw[at + SAYS.len()..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    opendal::Error::new(
        opendal::ErrorKind::ConfigInvalid,
        format!("the server's TLS certificate is not trusted ({detail}): if it comes from a private CA, set SSL_CERT_FILE to that CA's certificate (PEM)"),
    )
}

/// Makes [`ByScheme`] the process's HTTP transport (the first install wins; later ones are no-ops).
pub fn install() {
    // TLS through the ring provider we already link; a second install is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    HttpTransporter::install_default(ByScheme);
}
