//! The byte pipe to a server: plain TCP or TLS (rustls), with time-outs.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::error::{Result, SourceError};
use super::url::RedisUrl;

/// How to reach servers: time-outs and TLS trust, shared by every connection of a backup.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Limit for establishing the TCP connection.
    pub connect_timeout: Duration,
    /// Limit for any single read (the master sends keepalives at least every second while it forks).
    pub read_timeout: Duration,
    /// PEM file with the CA(s) to trust for `rediss://`; `None` uses the Mozilla roots (webpki-roots).
    pub tls_ca_file: Option<PathBuf>,
    /// Accept any server certificate (testing only: allows man-in-the-middle).
    pub tls_insecure: bool,
    /// Client certificate (PEM chain) to present, for servers with `tls-auth-clients yes`.
    pub tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of the client certificate.
    pub tls_key_file: Option<PathBuf>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            tls_ca_file: None,
            tls_insecure: false,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl ConnectOptions {
    /// Contents of the CA file, for the `redis` crate's TLS setup.
    pub(crate) fn ca_pem(&self) -> Result<Option<Vec<u8>>> {
        match &self.tls_ca_file {
            None => Ok(None),
            Some(p) => std::fs::read(p)
                .map(Some)
                .map_err(|source| SourceError::File { path: p.clone(), source }),
        }
    }

    /// Client certificate and key files, for the `redis` crate's TLS setup.
    pub(crate) fn client_pem(&self) -> Result<Option<redis::ClientTlsConfig>> {
        let read = |p: &PathBuf| std::fs::read(p).map_err(|source| SourceError::File { path: p.clone(), source });
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Ok(Some(redis::ClientTlsConfig { client_cert: read(cert)?, client_key: read(key)? })),
            _ => Ok(None),
        }
    }
}

/// A connected stream, plain or TLS.
pub enum Transport {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    /// Unix domain socket.
    Unix(UnixStream),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
            Transport::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
            Transport::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
            Transport::Unix(s) => s.flush(),
        }
    }
}

impl Transport {
    /// Changes the read time-out (a follower polls with a short one to send ACKs on time).
    pub fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.set_read_timeout(Some(t)),
            Transport::Tls(s) => s.sock.set_read_timeout(Some(t)),
            Transport::Unix(s) => s.set_read_timeout(Some(t)),
        }
    }

    /// Connect to `url` (TLS if it is `rediss://`), with the configured time-outs.
    pub fn connect(url: &RedisUrl, opts: &ConnectOptions) -> Result<Self> {
        url.check_credentials()?;
        let addr = url.addr();
        if let Some(path) = &url.socket {
            let sock = UnixStream::connect(path).map_err(|source| SourceError::Connect { addr: addr.clone(), source })?;
            sock.set_read_timeout(Some(opts.read_timeout))
                .and_then(|_| sock.set_write_timeout(Some(opts.read_timeout)))
                .map_err(|source| SourceError::Connect { addr: addr.clone(), source })?;
            return Ok(Transport::Unix(sock));
        }
        let tcp = connect_tcp(&url.host, url.port, opts.connect_timeout)
            .map_err(|source| SourceError::Connect { addr: addr.clone(), source })?;
        let set = tcp
            .set_read_timeout(Some(opts.read_timeout))
            .and_then(|_| tcp.set_write_timeout(Some(opts.read_timeout)))
            .and_then(|_| tcp.set_nodelay(true));
        set.map_err(|source| SourceError::Connect { addr: addr.clone(), source })?;
        if !url.tls {
            return Ok(Transport::Plain(tcp));
        }
        let config = tls_config(opts).map_err(|msg| SourceError::Tls { addr: addr.clone(), msg })?;
        let name = ServerName::try_from(url.host.clone())
            .map_err(|e| SourceError::Tls { addr: addr.clone(), msg: format!("bad server name: {e}") })?;
        let conn = rustls::ClientConnection::new(Arc::new(config), name)
            .map_err(|e| SourceError::Tls { addr: addr.clone(), msg: e.to_string() })?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        // Drive the handshake now so certificate problems are reported as TLS errors.
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        SourceError::NoAnswer { addr: addr.clone(), during: "the TLS handshake".into(), after: opts.read_timeout }
                    }
                    _ => SourceError::Tls { addr: addr.clone(), msg: e.to_string() },
                })?;
        }
        Ok(Transport::Tls(Box::new(stream)))
    }
}

fn connect_tcp(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = None;
    for sa in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&sa, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host resolved to no address")))
}

fn tls_config(opts: &ConnectOptions) -> std::result::Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifying = if opts.tls_insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &opts.tls_ca_file {
            Some(path) => {
                for c in pem_certs(path, "CA file")? {
                    roots.add(c).map_err(|e| format!("bad CA certificate: {e}"))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots)
    };
    match (&opts.tls_cert_file, &opts.tls_key_file) {
        (Some(cert), Some(key)) => {
            let certs = pem_certs(cert, "client certificate")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("cannot read client key {}: {e}", key.display()))?;
            verifying.with_client_auth_cert(certs, key).map_err(|e| format!("bad client certificate: {e}"))
        }
        _ => Ok(verifying.with_no_client_auth()),
    }
}

/// The certificates of a PEM file (`what` names it in messages); at least one.
fn pem_certs(path: &std::path::Path, what: &str) -> std::result::Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("bad PEM in {what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {what} {}", path.display()));
    }
    Ok(certs)
}

/// Certificate verifier for `tls_insecure`: checks signatures are well-formed, trusts any chain.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
