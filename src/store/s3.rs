//! The S3 builder: endpoint, bucket and prefix from the URL; credentials only
//! from the environment and `~/.aws` (OpenDAL's default chain), never the URL.

use opendal::services::S3;

use super::object::{Atomicity, ObjectBackend};
use crate::error::Result;

/// What to check when S3 refuses us.
const AUTH_HINT: &str =
    "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE and ~/.aws/credentials) and the bucket's policy";

/// A backend for `s3:ENDPOINT/BUCKET/PREFIX`; `url` is the redacted location for messages.
pub fn open(endpoint: &str, bucket: &str, prefix: &str, url: String) -> Result<ObjectBackend> {
    // TLS through the ring provider we already link; a second install is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    opendal_http_transport_reqwest::install_default();
    let region = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|_| "us-east-1".to_string());
    let profile = std::env::var("AWS_PROFILE").ok();
    let (endpoint, bucket, root) = (endpoint.to_string(), bucket.to_string(), format!("/{prefix}"));
    let make = move || {
        let builder = S3::default().endpoint(&endpoint).bucket(&bucket).root(&root).region(&region);
        match &profile {
            Some(p) => builder.profile(p),
            None => builder,
        }
    };
    ObjectBackend::new(make, url, AUTH_HINT, Atomicity::Put)
}
