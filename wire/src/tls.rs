//! rustls configurations for mutual TLS between cairn processes.
//!
//! Every connection is TLS 1.3 with a certificate on both sides, and both sides verify the other
//! against the cluster CA only (never the system roots): a peer without a certificate from the
//! cluster CA is refused during the handshake. The subject OrganizationalUnit of a verified leaf
//! certificate says what the peer is ([`PeerRole`]); [`peer_role`] reads it so the node can refuse
//! a client that talks the peer protocol.
//!
//! All configurations use rustls's *ring* provider explicitly; nothing relies on a process-wide
//! default provider.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// The ALPN protocol every cairn connection negotiates; a peer that does not offer it is refused.
pub const ALPN: &[u8] = b"cairn/1";

/// The DNS name every node certificate carries. Clients verify it whatever address they dial, so
/// a node's certificate does not depend on its IP addresses.
pub const SERVER_NAME: &str = "cairn-node";

/// The largest certificate or key file [`Identity::load`] (and [`crate::certs`]) will read.
pub const PEM_FILE_MAX_BYTES: u64 = 1024 * 1024;

/// What a verified peer is, as its certificate says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerRole {
    /// A node of the cluster: it serves clients and replicates with its peers.
    Node,
    /// A client (or an operator tool): it may send client requests, nothing else.
    Client,
}

impl PeerRole {
    /// The subject OrganizationalUnit a certificate of this role carries.
    pub const fn organizational_unit(self) -> &'static str {
        match self {
            Self::Node => "cairn-node",
            Self::Client => "cairn-client",
        }
    }

    /// The role a subject OrganizationalUnit names, if any.
    pub fn from_organizational_unit(ou: &str) -> Option<Self> {
        [Self::Node, Self::Client]
            .into_iter()
            .find(|role| role.organizational_unit() == ou)
    }
}

impl fmt::Display for PeerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Node => "node",
            Self::Client => "client",
        })
    }
}

/// Why an identity could not be loaded or a TLS configuration built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read (or is larger than [`PEM_FILE_MAX_BYTES`]).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The named source holds no PEM certificate.
    #[error("no certificate in {0}")]
    NoCertificate(String),
    /// The named source holds no PEM private key (PKCS#8, SEC1 or PKCS#1).
    #[error("no private key in {0}")]
    NoPrivateKey(String),
    /// The named source is not well-formed PEM.
    #[error("malformed PEM in {source_name}: {reason}")]
    Pem {
        /// The file or PEM string it came from.
        source_name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A CA certificate cannot serve as a trust anchor.
    #[error("invalid CA certificate in {source_name}: {source}")]
    InvalidCa {
        /// The file or PEM string it came from.
        source_name: String,
        /// Why rustls refused it.
        source: rustls::Error,
    },
    /// The private key is unusable or does not belong to the certificate.
    #[error("the key in {key} cannot be used with the certificate in {cert}: {source}")]
    InvalidKey {
        /// Where the certificate came from.
        cert: String,
        /// Where the key came from.
        key: String,
        /// Why rustls refused it.
        source: rustls::Error,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The configuration cannot protect QUIC packets (no TLS 1.3 cipher suite QUIC can start
    /// with).
    #[error("TLS configuration unusable for QUIC: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// Who this process is on the wire: the cluster CA it trusts, its own certificate chain and
/// the chain's private key.
///
/// An `Identity` is checked when it is built: the CA certificates are valid trust anchors and the
/// key belongs to the leaf certificate. Cloning is cheap.
#[derive(Clone)]
pub struct Identity {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl fmt::Debug for Identity {
    /// Shows the sizes, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("roots", &self.roots.len())
            .field("chain", &self.chain.len())
            .field("key", &"[elided]")
            .finish()
    }
}

impl Identity {
    /// Loads an identity from PEM files: the cluster CA certificate(s), this process's
    /// certificate chain (leaf first) and its private key. Errors name the offending file.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let ca_pem = read_pem_file(ca)?;
        let cert_pem = read_pem_file(cert)?;
        let key_pem = read_pem_file(key)?;
        let (ca_name, cert_name, key_name) = (
            ca.display().to_string(),
            cert.display().to_string(),
            key.display().to_string(),
        );
        Self::parse(
            (&ca_pem, &ca_name),
            (&cert_pem, &cert_name),
            (&key_pem, &key_name),
        )
    }

    /// Builds an identity from PEM strings: the cluster CA certificate(s), this process's
    /// certificate chain (leaf first) and its private key.
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        Self::parse(
            (ca_pem.as_bytes(), "the CA PEM"),
            (cert_pem.as_bytes(), "the certificate PEM"),
            (key_pem.as_bytes(), "the key PEM"),
        )
    }

    /// The leaf certificate: the one this process presents.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        // `parse` refuses an empty chain.
        &self.chain[0]
    }

    /// Each argument is the PEM bytes and a name for error messages.
    fn parse(ca: (&[u8], &str), cert: (&[u8], &str), key: (&[u8], &str)) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for root in parse_certs(ca.0, ca.1)? {
            roots.add(root).map_err(|source| TlsError::InvalidCa {
                source_name: ca.1.to_owned(),
                source,
            })?;
        }
        let chain = parse_certs(cert.0, cert.1)?;
        let private_key = PrivateKeyDer::from_pem_slice(key.0).map_err(|e| match e {
            pem::Error::NoItemsFound => TlsError::NoPrivateKey(key.1.to_owned()),
            e => TlsError::Pem {
                source_name: key.1.to_owned(),
                reason: e.to_string(),
            },
        })?;

        // Catch a key that does not match its certificate now, with both names in the error,
        // rather than as a handshake failure on some later connection.
        rustls::sign::CertifiedKey::from_der(chain.clone(), private_key.clone_key(), &provider())
            .map_err(|source| TlsError::InvalidKey {
            cert: cert.1.to_owned(),
            key: key.1.to_owned(),
            source,
        })?;

        Ok(Self {
            roots: Arc::new(roots),
            chain,
            key: Arc::new(private_key),
        })
    }
}

/// Every certificate in `pem`; at least one.
fn parse_certs(pem: &[u8], source_name: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            source_name: source_name.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(source_name.to_owned()));
    }
    Ok(certs)
}

fn read_pem_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    read_capped(path, PEM_FILE_MAX_BYTES).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads a whole file of at most `max` bytes; a larger file is an error of kind
/// `FileTooLarge`, and no more than `max + 1` bytes are read to find out.
pub(crate) fn read_capped(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(bytes)
}

/// The crypto provider of every cairn TLS configuration.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side: TLS 1.3 only, a client certificate is required and verified against the
/// cluster CA, [`ALPN`] is the only protocol offered.
pub fn server_config(id: &Identity) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    // The builder requires a client certificate unless told otherwise; we never tell it.
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::clone(&id.roots), Arc::clone(&provider))
            .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain.clone(), id.key.clone_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The client side: TLS 1.3 only, the server is verified against the cluster CA alone (no system
/// roots) and must carry the name the caller dials (for cairn, [`SERVER_NAME`]); our certificate
/// is presented; [`ALPN`] is the only protocol offered.
pub fn client_config(id: &Identity) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(Arc::clone(&id.roots))
        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The role of the peer of an established connection, read from the subject OrganizationalUnit
/// of its leaf certificate.
///
/// The certificate has been verified against the cluster CA during the handshake, so the role is
/// as trustworthy as the CA's issuance. `None` when the peer presented no certificate, or its
/// leaf does not name exactly one known role.
pub fn peer_role(conn: &quinn::Connection) -> Option<PeerRole> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certificate_role(chain.first()?)
}

/// The common name (the name it was issued for) of the verified peer's leaf certificate.
pub fn peer_name(conn: &quinn::Connection) -> Option<String> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certificate_name(chain.first()?)
}

/// The subject CommonName of a certificate: `None` when it cannot be parsed or has not exactly
/// one.
pub fn certificate_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    let mut names = cert.subject().iter_common_name();
    let name = names.next()?;
    if names.next().is_some() {
        return None;
    }
    name.as_str().ok().map(str::to_owned)
}

/// The role a certificate names in its subject OrganizationalUnit: `None` when it cannot be
/// parsed, has no OrganizationalUnit, more than one, or an unknown one.
pub fn certificate_role(cert: &CertificateDer<'_>) -> Option<PeerRole> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    let mut units = cert.subject().iter_organizational_unit();
    let unit = units.next()?;
    if units.next().is_some() {
        // Two roles in one certificate: trust neither.
        return None;
    }
    PeerRole::from_organizational_unit(unit.as_str().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs;

    fn node_identity() -> (certs::PemPair, certs::PemPair) {
        let ca = certs::new_ca("test").unwrap();
        let node = certs::issue(&ca, PeerRole::Node, "n1", &[]).unwrap();
        (ca, node)
    }

    #[test]
    fn a_certificate_is_named_after_what_it_was_issued_for() {
        let (_, node) = node_identity();
        let der = CertificateDer::pem_slice_iter(node.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(certificate_name(&der).as_deref(), Some("n1"));
    }

    #[test]
    fn roles_round_trip_through_their_organizational_unit() {
        for role in [PeerRole::Node, PeerRole::Client] {
            assert_eq!(
                PeerRole::from_organizational_unit(role.organizational_unit()),
                Some(role)
            );
        }
        assert_eq!(PeerRole::from_organizational_unit("cairn-admin"), None);
    }

    #[test]
    fn identity_from_pem_accepts_an_issued_pair_and_builds_both_configs() {
        let (ca, node) = node_identity();
        let id = Identity::from_pem(&ca.cert_pem, &node.cert_pem, &node.key_pem).unwrap();
        assert_eq!(certificate_role(id.leaf()), Some(PeerRole::Node));
        let server = server_config(&id).unwrap();
        assert_eq!(server.alpn_protocols, vec![ALPN.to_vec()]);
        let client = client_config(&id).unwrap();
        assert_eq!(client.alpn_protocols, vec![ALPN.to_vec()]);
    }

    #[test]
    fn identity_refuses_missing_certificate_and_key() {
        let (ca, node) = node_identity();
        let err = Identity::from_pem("", &node.cert_pem, &node.key_pem).unwrap_err();
        assert_eq!(err.to_string(), "no certificate in the CA PEM");
        let err = Identity::from_pem(&ca.cert_pem, &node.key_pem, &node.key_pem).unwrap_err();
        assert_eq!(err.to_string(), "no certificate in the certificate PEM");
        let err = Identity::from_pem(&ca.cert_pem, &node.cert_pem, &node.cert_pem).unwrap_err();
        assert_eq!(err.to_string(), "no private key in the key PEM");
    }

    #[test]
    fn identity_refuses_a_key_of_another_certificate() {
        let (ca, node) = node_identity();
        let other = certs::issue(&ca, PeerRole::Node, "n2", &[]).unwrap();
        let err = Identity::from_pem(&ca.cert_pem, &node.cert_pem, &other.key_pem).unwrap_err();
        assert!(matches!(err, TlsError::InvalidKey { .. }), "{err:?}");
    }

    #[test]
    fn identity_load_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = Identity::load(&missing, &missing, &missing).unwrap_err();
        assert!(matches!(&err, TlsError::Read { path, .. } if path == &missing));
        assert!(err.to_string().contains("nope.pem"), "{err}");
    }

    #[test]
    fn identity_load_refuses_an_oversized_file() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'a'; PEM_FILE_MAX_BYTES as usize + 1]).unwrap();
        let err = Identity::load(&big, &big, &big).unwrap_err();
        assert!(
            matches!(&err, TlsError::Read { source, .. } if source.kind() == std::io::ErrorKind::FileTooLarge),
            "{err:?}"
        );
    }

    #[test]
    fn identity_debug_never_shows_the_key() {
        let (ca, node) = node_identity();
        let id = Identity::from_pem(&ca.cert_pem, &node.cert_pem, &node.key_pem).unwrap();
        let shown = format!("{id:?}");
        assert!(shown.contains("[elided]"), "{shown}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }

    #[test]
    fn a_certificate_without_organizational_unit_has_no_role() {
        let ca = certs::new_ca("test").unwrap();
        // The CA certificate itself names no role.
        let der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
        assert_eq!(certificate_role(&der), None);
        assert_eq!(certificate_role(&CertificateDer::from(vec![1, 2, 3])), None);
    }
}
