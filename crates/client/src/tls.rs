//! TLS for `wss://` brokers: what this process trusts and what a failed
//! handshake means.
//!
//! Trust is the platform's root store (read once per process with
//! `rustls-native-certs`: `/etc/ssl/certs` and friends, `SSL_CERT_FILE`,
//! the macOS keychain, the Windows store) plus, optionally, private CA
//! certificates: the one stored with a mesh ([`crate::MeshConfig::ca`])
//! and the process default ([`set_default_ca`], which the CLI fills from
//! `--ca` or `CLAUDEMESH_CA`). The rustls client configuration (ring
//! provider only) is built once per set of private CAs and shared, so a
//! connection costs a handshake and nothing more.
//!
//! A certificate that does not verify becomes [`TlsError::Untrusted`], one
//! line that says what to do (`pass --ca <file>` for a private CA).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};

/// What went wrong with TLS: the trusted CAs, or a broker's certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be read.
    #[error("cannot read the CA file {path}: {source}")]
    CaRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CA file (or a stored CA) holds no usable certificate.
    #[error("{origin} is not a PEM CA certificate: {reason}")]
    CaInvalid {
        /// Where it came from ("the CA file /etc/…", "the CA stored for the mesh").
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// The CA stored for a mesh in `config.json` cannot be used.
    #[error(
        "the CA certificate stored for this mesh in config.json is not valid ({reason}); fix it or restore config.json from a backup"
    )]
    StoredCaInvalid {
        /// What is wrong.
        reason: String,
    },
    /// The broker's certificate does not verify against what this device
    /// trusts (unknown issuer, another name, expired): nothing was sent.
    #[error("cannot trust the broker at {url}: {problem}; {advice}")]
    Untrusted {
        /// The broker URL.
        url: String,
        /// What is wrong with its certificate.
        problem: String,
        /// What to do about it.
        advice: &'static str,
    },
    /// The TLS handshake failed for a reason other than the certificate.
    #[error("TLS with the broker at {url} failed: {reason}")]
    Handshake {
        /// The broker URL.
        url: String,
        /// Why.
        reason: String,
    },
}

impl TlsError {
    /// Whether retrying cannot help (everything but a handshake that may
    /// have been cut by the network).
    pub fn is_terminal(&self) -> bool {
        !matches!(self, TlsError::Handshake { .. })
    }
}

/// The process-wide private CA (PEM), trusted for every broker.
static DEFAULT_CA: RwLock<Option<String>> = RwLock::new(None);

/// Client configurations by the private CAs they trust besides the roots.
static CONFIGS: Mutex<BTreeMap<Vec<String>, Arc<ClientConfig>>> = Mutex::new(BTreeMap::new());

/// The platform's root certificates, read once.
static NATIVE_ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();

/// Sets (or clears) the private CA this process trusts for every broker,
/// besides the platform roots and the CA stored with a mesh. The CLI calls
/// it with the contents of `--ca` / `CLAUDEMESH_CA` ([`read_ca_file`]); a
/// mesh created or joined meanwhile stores it ([`default_ca`]).
pub fn set_default_ca(pem: Option<String>) {
    let mut slot = DEFAULT_CA.write().unwrap_or_else(|p| p.into_inner());
    *slot = pem;
}

/// The private CA set with [`set_default_ca`], if any.
pub fn default_ca() -> Option<String> {
    DEFAULT_CA.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Reads a PEM file of one or more CA certificates and returns them as PEM
/// (only the certificates: anything else in the file, such as a private
/// key, is left out). A file that cannot be read, or holds no certificate
/// rustls can use as a trust anchor, is an error naming the file.
pub fn read_ca_file(path: &Path) -> Result<String, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::CaRead {
        path: path.to_owned(),
        source,
    })?;
    let origin = format!("the CA file {}", path.display());
    let certs = parse_ca(&bytes, &origin)?;
    Ok(to_pem(&certs))
}

/// Parses and checks PEM CA certificates.
fn parse_ca(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let invalid = |reason: String| TlsError::CaInvalid {
        origin: origin.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid("no -----BEGIN CERTIFICATE----- block in it".into()));
    }
    let mut store = RootCertStore::empty();
    for cert in &certs {
        store
            .add(cert.clone())
            .map_err(|e| invalid(format!("a certificate in it cannot be parsed ({e})")))?;
    }
    Ok(certs)
}

fn to_pem(certs: &[CertificateDer<'_>]) -> String {
    let mut out = String::new();
    for cert in certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = claudemesh_crypto::encoding::b64_encode(cert.as_ref());
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

fn native_roots() -> &'static [CertificateDer<'static>] {
    NATIVE_ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(error = %e, "cannot read a platform root certificate");
        }
        if found.certs.is_empty() {
            tracing::warn!(
                "no platform root certificates found: only a private CA (--ca) can verify a wss:// broker"
            );
        }
        found.certs
    })
}

/// The client configuration trusting the platform roots, `mesh_ca` (a
/// mesh's stored CA) and the process default CA; built once per distinct
/// set and shared.
pub fn client_config(mesh_ca: Option<&str>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut extra: Vec<String> = mesh_ca.map(str::to_owned).into_iter().collect();
    if let Some(ca) = default_ca()
        && !extra.contains(&ca)
    {
        extra.push(ca);
    }
    let mut configs = CONFIGS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(config) = configs.get(&extra) {
        return Ok(config.clone());
    }
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(native_roots().iter().cloned());
    for (i, pem) in extra.iter().enumerate() {
        let certs = if i == 0 && mesh_ca.is_some() {
            parse_ca(pem.as_bytes(), "").map_err(|e| TlsError::StoredCaInvalid {
                reason: match e {
                    TlsError::CaInvalid { reason, .. } => reason,
                    other => other.to_string(),
                },
            })?
        } else {
            parse_ca(pem.as_bytes(), "the CA given with --ca or CLAUDEMESH_CA")?
        };
        for cert in certs {
            // parse_ca checked that each one is accepted.
            let _ = roots.add(cert);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::CaInvalid {
            origin: "the TLS set-up".into(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // The websocket upgrade is HTTP/1.1 (a proxy in front may offer h2).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    configs.insert(extra, config.clone());
    Ok(config)
}

/// What a failed connection to `url` means for TLS, if it was TLS that
/// failed (`None`: some other I/O error, such as a refused connection).
pub fn classify(url: &str, error: &std::io::Error) -> Option<TlsError> {
    let rustls_error = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    let url = url.to_owned();
    const PRIVATE_CA: &str = "if the broker uses a private CA, pass --ca <file> (or set CLAUDEMESH_CA) with that CA's certificate";
    Some(match rustls_error {
        rustls::Error::InvalidCertificate(cert) => {
            let (problem, advice) = match cert {
                CertificateError::UnknownIssuer => (
                    "its certificate is not signed by an authority this device trusts".to_owned(),
                    PRIVATE_CA,
                ),
                CertificateError::NotValidForName => (
                    "its certificate is not for this host name".to_owned(),
                    NAME_ADVICE,
                ),
                CertificateError::NotValidForNameContext { expected, presented } => (
                    format!(
                        "its certificate is for {}, not {}",
                        if presented.is_empty() {
                            "no host name".to_owned()
                        } else {
                            presented
                                .iter()
                                .map(|p| presented_name(p))
                                .collect::<Vec<_>>()
                                .join(", ")
                        },
                        server_name(expected)
                    ),
                    NAME_ADVICE,
                ),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => (
                    "its certificate has expired".to_owned(),
                    TIME_ADVICE,
                ),
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => (
                    "its certificate is not valid yet".to_owned(),
                    TIME_ADVICE,
                ),
                other => (
                    format!("its certificate was rejected ({other:?})"),
                    PRIVATE_CA,
                ),
            };
            TlsError::Untrusted {
                url,
                problem,
                advice,
            }
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            TlsError::Handshake {
                url,
                reason: "the broker did not answer in TLS; is it serving TLS on this port? (a broker without --tls-cert speaks ws://)".into(),
            }
        }
        other => TlsError::Handshake {
            url,
            reason: other.to_string(),
        },
    })
}

const NAME_ADVICE: &str = "use the host name the certificate names in the broker URL, or give the broker a certificate for this name";
const TIME_ADVICE: &str = "renew the broker's certificate (or check this machine's clock)";

/// A name as webpki reports it (`DnsName("a.example")`, `IpAddress(…)`),
/// as a person writes it.
fn presented_name(name: &str) -> &str {
    name.strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .or_else(|| {
            name.strip_prefix("IpAddress(")
                .and_then(|n| n.strip_suffix(')'))
        })
        .unwrap_or(name)
}

fn server_name(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = read_ca_file(&missing).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let err = read_ca_file(&junk).unwrap_err().to_string();
        assert!(
            err.contains("junk.pem") && err.contains("BEGIN CERTIFICATE"),
            "{err}"
        );
        let bad = dir.path().join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = read_ca_file(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.pem"), "{err}");
    }

    #[test]
    fn presented_names_read_as_written() {
        assert_eq!(presented_name("DnsName(\"a.example\")"), "a.example");
        assert_eq!(presented_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(presented_name("DirectoryName"), "DirectoryName");
    }

    #[test]
    fn configs_are_built_once_per_ca_set() {
        let a = client_config(None).unwrap();
        let b = client_config(None).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }
}
