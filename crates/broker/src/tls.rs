//! Native TLS for the broker's one port (`--tls-cert`, `--tls-key`): loading
//! the PEM certificate chain and key into a rustls server configuration
//! (the ring provider only), the [`TlsListener`] that hands axum finished
//! TLS streams, and the client configuration `--health-check` uses to ask
//! its own port.
//!
//! Handshakes never run in the accept loop: each accepted TCP connection
//! gets its own task with [`HANDSHAKE_TIMEOUT`], so a client that stalls
//! mid-handshake delays nobody else. A client that speaks plain HTTP to the
//! TLS port (a `ws://` URL for a `wss://` broker) gets a plain `400` saying
//! so, instead of a connection that just dies.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Finished handshakes waiting for axum to pick them up.
const READY_QUEUE: usize = 64;

/// How much of a plain-HTTP request is read before answering it.
const PLAIN_REQUEST_MAX: usize = 8 * 1024;

/// The answer to plain HTTP on the TLS port.
const PLAIN_ANSWER: &str = "this broker serves TLS on this port: use wss:// (or https://)\n";

/// Why the certificate or key cannot be served. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read.
    #[error("cannot read the TLS certificate file {path}: {source}")]
    ReadCert {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file could not be read.
    #[error("cannot read the TLS key file {path}: {source}")]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no usable certificate.
    #[error("the TLS certificate file {path} is not a PEM certificate chain: {reason}")]
    BadCert {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key file holds no usable private key.
    #[error("the TLS key file {path} is not a PEM private key: {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error("the TLS key file {key} does not match the certificate in {cert}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the pair for another reason.
    #[error("the TLS certificate {cert} and key {key} cannot be used: {reason}")]
    Unusable {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        reason: String,
    },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads `cert` (a PEM chain, leaf first) and `key` (PKCS#8, PKCS#1 or
/// SEC1 PEM) into a server configuration speaking TLS 1.3 and 1.2 with
/// HTTP/1.1 (the websocket upgrade). Checks that the key is the leaf's.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|source| TlsError::ReadCert {
        path: cert.to_owned(),
        source,
    })?;
    let bad_cert = |reason: String| TlsError::BadCert {
        path: cert.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_cert(e.to_string()))?;
    if chain.is_empty() {
        return Err(bad_cert(
            "no -----BEGIN CERTIFICATE----- block in it".into(),
        ));
    }
    let key_pem = std::fs::read(key).map_err(|source| TlsError::ReadKey {
        path: key.to_owned(),
        source,
    })?;
    let bad_key = |reason: String| TlsError::BadKey {
        path: key.to_owned(),
        reason,
    };
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            bad_key("no -----BEGIN PRIVATE KEY----- (or RSA/EC PRIVATE KEY) block in it".into())
        }
        other => bad_key(other.to_string()),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key_der))
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            },
            rustls::Error::InvalidCertificate(e) => bad_cert(format!("{e:?}")),
            rustls::Error::General(reason) => bad_key(reason),
            other => TlsError::Unusable {
                cert: cert.to_owned(),
                key: key.to_owned(),
                reason: other.to_string(),
            },
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// An [`axum::serve::Listener`] yielding connections whose TLS handshake is
/// done. The TCP accept loop and the handshakes run in tasks of their own
/// ([`spawn`]).
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop stopped (shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// Starts accepting on `listener`: each connection is handshaken in its
/// own task and, once TLS is up, handed to the returned [`TlsListener`].
/// The loop ends when `stop` becomes true or the `TlsListener` is dropped.
pub fn spawn(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<(TlsListener, JoinHandle<()>)> {
    let local_addr = listener.local_addr()?;
    let (tx, ready) = mpsc::channel(READY_QUEUE);
    let acceptor = TlsAcceptor::from(config);
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = stop.wait_for(|s| *s) => break,
                () = tx.closed() => break,
            };
            match accepted {
                Ok((tcp, peer)) => {
                    tokio::spawn(handshake(acceptor.clone(), tcp, peer, tx.clone()));
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    // Out of file descriptors and the like: as axum does,
                    // wait a little rather than spin.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok((TlsListener { ready, local_addr }, task))
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    // Frames are small and latency matters (see server.rs).
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let mut first = [0u8; 1];
        let plain = matches!(tcp.peek(&mut first).await, Ok(1) if first[0].is_ascii_uppercase());
        if plain {
            answer_plain_http(tcp).await;
            return Ok(None);
        }
        acceptor.accept(tcp).await.map(Some)
    })
    .await;
    match outcome {
        Ok(Ok(Some(stream))) => {
            // Fails only when the server is shutting down.
            let _ = ready.send((stream, peer)).await;
        }
        Ok(Ok(None)) => tracing::debug!(%peer, "plain HTTP on the TLS port: answered 400"),
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// A TLS record starts with a content type byte (0x16 for a handshake);
/// an HTTP request with an upper-case method. Read the request head (so
/// closing does not reset the connection before the client reads the
/// answer), answer 400 in plain text, close.
async fn answer_plain_http(mut tcp: TcpStream) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while head.len() < PLAIN_REQUEST_MAX && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{PLAIN_ANSWER}",
        PLAIN_ANSWER.len()
    );
    let _ = tcp.write_all(answer.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

/// The client side of `claudemesh-broker --health-check` when the broker
/// serves TLS. It dials the broker's own port on loopback to ask `/readyz`,
/// so it checks that the handshake completes (with the signatures verified)
/// but not who the certificate names or whether it has expired: it is a
/// readiness probe, not a certificate monitor.
pub fn health_check_client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = provider();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts any certificate, still checking the handshake's signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
