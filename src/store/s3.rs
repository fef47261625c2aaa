//! The S3 builder: endpoint, bucket and prefix from the URL; credentials only
//! from the environment and `~/.aws` (OpenDAL's default chain), never the URL.

use opendal::services::S3;

use super::object::{Atomicity, ObjectBackend};
use crate::error::{Error, Result};

/// What to check when S3 refuses us.
const AUTH_HINT: &str =
    "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE and ~/.aws/credentials) and the bucket's policy";

/// A backend for `s3:ENDPOINT/BUCKET/PREFIX`; `url` is the redacted location for messages.
pub fn open(endpoint: &str, bucket: &str, prefix: &str, url: String) -> Result<ObjectBackend> {
    super::http_client::install();
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

/// What `create_bucket` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// It was there already.
    Existed,
    /// It was created now.
    Created,
}

/// Creates the bucket of `s3:ENDPOINT/BUCKET/...` unless it exists (a signed `HEAD /BUCKET`
/// first, so a key allowed only into an existing bucket never needs to create one).
pub fn create_bucket(endpoint: &str, bucket: &str, url: &str) -> Result<Bucket> {
    use opendal::{Buffer, HttpTransporter};
    use reqsign_core::{Context, OsEnv, Signer};

    super::http_client::install();
    let failed = |what: &str, why: String| Error::Invalid(format!("repository {url}: {what} bucket {bucket:?}: {why}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("start the network runtime", e))?;
    let region = std::env::var("AWS_REGION").or_else(|_| std::env::var("AWS_DEFAULT_REGION")).unwrap_or_else(|_| "us-east-1".to_string());
    let mut provider = reqsign_aws_v4::DefaultCredentialProvider::builder();
    if let Ok(profile) = std::env::var("AWS_PROFILE") {
        provider = provider.with_profile(&profile);
    }
    let http = HttpTransporter::default();
    let ctx = Context::new().with_file_read(reqsign_file_read_tokio::TokioFileRead).with_env(OsEnv).with_http_send(http.clone());
    let signer = Signer::new(ctx, provider.build(), reqsign_aws_v4::RequestSigner::new("s3", &region));
    // Outside us-east-1 S3 wants the region named in the body.
    let body = match region.as_str() {
        "us-east-1" => String::new(),
        r => format!("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{r}</LocationConstraint></CreateBucketConfiguration>"),
    };
    let send_once = |method: &str, body: String| -> Result<std::result::Result<(u16, String), opendal::Error>> {
        runtime.block_on(async {
            let req = http::Request::builder()
                .method(method)
                .uri(format!("{}/{bucket}", endpoint.trim_end_matches('/')))
                .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
                .body(Buffer::from(body.into_bytes()))
                .map_err(|e| failed("reach", e.to_string()))?;
            let (mut parts, body) = req.into_parts();
            signer.sign(&mut parts, None).await.map_err(|e| failed("sign the request for", format!("{e} ({AUTH_HINT})")))?;
            // A connection that fails is a transport error (retried below), not an answer.
            Ok(match http.send(http::Request::from_parts(parts, body)).await {
                Ok(resp) => Ok((resp.status().as_u16(), String::from_utf8_lossy(&resp.into_body().to_vec()).into_owned())),
                Err(e) => Err(e),
            })
        })
    };
    // Transient network errors are retried with backoff, as every other request is.
    let send = |method: &str, body: String| -> Result<(u16, String)> {
        let mut delay = std::time::Duration::from_millis(200);
        for _ in 0..4 {
            match send_once(method, body.clone())? {
                Ok(answer) => return Ok(answer),
                Err(e) if e.is_temporary() => {
                    crate::store::object::count_retry();
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                Err(e) => return Err(failed("reach", e.message().to_string())),
            }
        }
        // Still failing in transit: said as every other request says it.
        send_once(method, body)?.map_err(|e| failed("reach", if e.is_temporary() { super::object::LOST_CONNECTION.to_string() } else { e.message().to_string() }))
    };
    let (status, _) = send("HEAD", String::new())?;
    match status {
        200..=299 => return Ok(Bucket::Existed),
        // The bucket exists and is not ours to look at, or our keys are wrong: the
        // first request of `init` says which, in the backend's own words.
        403 | 301 | 400 => return Ok(Bucket::Existed),
        404 => {}
        s => return Err(failed("look up", format!("the server answered HTTP {s}"))),
    }
    let (status, reply) = send("PUT", body)?;
    let code = reply.split("<Code>").nth(1).and_then(|r| r.split("</Code>").next()).unwrap_or_default();
    match (status, code) {
        (200..=299, _) | (_, "BucketAlreadyOwnedByYou") => Ok(Bucket::Created),
        (_, "AccessDenied") | (403, _) => Err(failed("create", format!("permission denied: create it yourself, or {AUTH_HINT}"))),
        (_, "InvalidBucketName") => Err(failed("create", "not a valid bucket name (3-63 lowercase letters, digits, dots and hyphens)".into())),
        (_, "BucketAlreadyExists") => Err(failed("create", "the name is taken by another account: choose another".into())),
        (s, c) => Err(failed("create", format!("the server answered HTTP {s} {c}"))),
    }
}
