//! The cluster CA and the node and client certificates it issues (rcgen).
//!
//! A cluster has one CA. Every node and client carries a certificate the CA signed, and every
//! connection verifies the other side against it ([`crate::tls`]). The certificate's subject
//! OrganizationalUnit says what its holder is ([`PeerRole::organizational_unit`]).
//!
//! All keys are ECDSA P-256. On disk a CA directory holds `ca.pem` and `ca.key`, and each issued
//! identity `<name>.pem` and `<name>.key`; key files are created with mode 0600 and nothing is
//! ever overwritten.

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::tls::{self, PeerRole};

/// How long a CA certificate is valid, in days (10 years).
pub const CA_VALIDITY_DAYS: i64 = 3650;

/// How long a node or client certificate is valid, in days (2 years).
pub const LEAF_VALIDITY_DAYS: i64 = 730;

/// How far before "now" every certificate becomes valid, in minutes: hosts at different sites
/// have clocks that disagree a little, and a certificate must be usable at once everywhere.
pub const NOT_BEFORE_BACKDATE_MINUTES: i64 = 60;

/// The longest node or client name (and cluster name), in characters.
pub const NAME_LEN_MAX: usize = 64;

/// The most extra subject alternative names one certificate may carry.
pub const EXTRA_SANS_MAX: usize = 32;

/// The longest DNS name, in characters (RFC 1035).
const DNS_NAME_LEN_MAX: usize = 253;

/// A certificate and its private key, both PEM-encoded.
#[derive(Clone)]
pub struct PemPair {
    /// The certificate (`-----BEGIN CERTIFICATE-----`).
    pub cert_pem: String,
    /// The PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`).
    pub key_pem: String,
}

impl fmt::Debug for PemPair {
    /// Shows the certificate, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PemPair")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .finish()
    }
}

/// Why a certificate could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file or directory operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// rcgen could not generate a key or sign a certificate, or could not parse the CA.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The CA certificate or key cannot issue certificates.
    #[error("invalid CA: {0}")]
    InvalidCa(String),
    /// The file exists already; certificates and keys are never overwritten.
    #[error("{} already exists; refusing to overwrite it", .0.display())]
    AlreadyExists(PathBuf),
    /// A file the operation needs does not exist (e.g. the CA of a directory without one).
    #[error("{} is missing", .0.display())]
    Missing(PathBuf),
    /// A node, client or cluster name is not 1 to [`NAME_LEN_MAX`] characters of
    /// `[A-Za-z0-9_.-]`.
    #[error("invalid name {0:?}: must be 1 to {NAME_LEN_MAX} characters of A-Z a-z 0-9 _ . -")]
    InvalidName(String),
    /// An extra subject alternative name is neither an IP address nor a DNS name, or may not be
    /// used for this role.
    #[error("invalid subject alternative name {san:?}: {reason}")]
    InvalidSan {
        /// The name as given.
        san: String,
        /// Why it is refused.
        reason: String,
    },
    /// More than [`EXTRA_SANS_MAX`] extra subject alternative names.
    #[error("{count} extra subject alternative names, at most {EXTRA_SANS_MAX} are allowed")]
    TooManySans {
        /// How many were given.
        count: usize,
    },
}

/// Creates a self-signed cluster CA: CN `cairn CA <cluster>`, valid for [`CA_VALIDITY_DAYS`],
/// ECDSA P-256. It may sign leaf certificates only (path length 0).
///
/// `cluster` follows the rules of a node name ([`CertError::InvalidName`]).
pub fn new_ca(cluster: &str) -> Result<PemPair, CertError> {
    validate_name(cluster)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("cairn CA {cluster}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALIDITY_DAYS);

    let cert = params.self_signed(&key)?;
    Ok(PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a certificate for `name` in `role`, signed by `ca`: CN `name`, subject
/// OrganizationalUnit [`PeerRole::organizational_unit`], valid for [`LEAF_VALIDITY_DAYS`],
/// ECDSA P-256, extended key usage serverAuth and clientAuth (a node is both a server and a client
/// of its peers).
///
/// Node certificates always carry the DNS names [`tls::SERVER_NAME`] and `localhost` and the IP
/// address 127.0.0.1. `extra_sans` (at most [`EXTRA_SANS_MAX`]) that parse as IP addresses become
/// IP SANs, the others DNS SANs. A client certificate may not carry [`tls::SERVER_NAME`]: it would
/// let the client pose as a node to other clients.
pub fn issue(
    ca: &PemPair,
    role: PeerRole,
    name: &str,
    extra_sans: &[String],
) -> Result<PemPair, CertError> {
    validate_name(name)?;
    let extra_sans = parse_extra_sans(role, extra_sans)?;
    let issuer = parse_ca(ca)?;

    let mut sans = Vec::new();
    if role == PeerRole::Node {
        sans.push(SanType::DnsName(tls::SERVER_NAME.try_into()?));
        sans.push(SanType::DnsName("localhost".try_into()?));
        sans.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
    for san in extra_sans {
        if !sans.contains(&san) {
            sans.push(san);
        }
    }

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, role.organizational_unit());
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, LEAF_VALIDITY_DAYS);

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Creates a cluster CA in `dir` (creating the directory, mode 0700, if needed): writes
/// `dir/ca.pem` and `dir/ca.key` (mode 0600).
///
/// Refuses with [`CertError::AlreadyExists`] if either file exists; on any failure, no file is
/// left behind.
pub fn init_ca_dir(dir: &Path, cluster: &str) -> Result<(), CertError> {
    let (cert_path, key_path) = ca_paths(dir);
    validate_name(cluster)?;
    create_dir(dir)?;
    refuse_existing(&[&cert_path, &key_path])?;
    let ca = new_ca(cluster)?;
    write_pair(&ca, &cert_path, &key_path)
}

/// Issues a certificate with the CA in `dir` (`dir/ca.pem`, `dir/ca.key`; [`CertError::Missing`]
/// if absent) and writes it to `dir/<name>.pem` and `dir/<name>.key` (mode 0600). See [`issue`]
/// for what the certificate carries.
///
/// Refuses with [`CertError::AlreadyExists`] if either file exists; on any failure, no file is
/// left behind. Returns the certificate's path and the key's path.
pub fn issue_to_dir(
    dir: &Path,
    role: PeerRole,
    name: &str,
    extra_sans: &[String],
) -> Result<(PathBuf, PathBuf), CertError> {
    // The name becomes a file name: validate it before building any path from it.
    validate_name(name)?;
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));

    let (ca_cert_path, ca_key_path) = ca_paths(dir);
    let ca = PemPair {
        cert_pem: read_existing(&ca_cert_path)?,
        key_pem: read_existing(&ca_key_path)?,
    };
    refuse_existing(&[&cert_path, &key_path])?;
    let pair = issue(&ca, role, name, extra_sans)?;
    write_pair(&pair, &cert_path, &key_path)?;
    Ok((cert_path, key_path))
}

/// The paths of the CA certificate and key in a CA directory.
fn ca_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("ca.pem"), dir.join("ca.key"))
}

fn validate_name(name: &str) -> Result<(), CertError> {
    let valid = (1..=NAME_LEN_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(CertError::InvalidName(name.to_owned()))
    }
}

fn parse_extra_sans(role: PeerRole, extra_sans: &[String]) -> Result<Vec<SanType>, CertError> {
    if extra_sans.len() > EXTRA_SANS_MAX {
        return Err(CertError::TooManySans {
            count: extra_sans.len(),
        });
    }
    extra_sans
        .iter()
        .map(|san| {
            let invalid = |reason: &str| CertError::InvalidSan {
                san: san.clone(),
                reason: reason.to_owned(),
            };
            if let Ok(ip) = san.parse::<IpAddr>() {
                return Ok(SanType::IpAddress(ip));
            }
            let dns_valid = (1..=DNS_NAME_LEN_MAX).contains(&san.len())
                && san
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
                && !san.starts_with(['.', '-'])
                && !san.ends_with(['.', '-'])
                && !san.contains("..");
            if !dns_valid {
                return Err(invalid(
                    "neither an IP address nor a DNS name (A-Z a-z 0-9 . -, at most 253 characters)",
                ));
            }
            if role == PeerRole::Client && san.eq_ignore_ascii_case(tls::SERVER_NAME) {
                return Err(invalid("only node certificates may carry the node server name"));
            }
            Ok(SanType::DnsName(san.as_str().try_into()?))
        })
        .collect()
}

/// Rebuilds the CA's issuer from its PEM pair, checking that the certificate is a CA and the key
/// is its key: a mismatch would issue certificates no peer accepts.
fn parse_ca(ca: &PemPair) -> Result<Issuer<'static, KeyPair>, CertError> {
    let der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes())
        .map_err(|e| CertError::InvalidCa(format!("CA certificate PEM: {e}")))?;
    let key = KeyPair::from_pem(&ca.key_pem)
        .map_err(|e| CertError::InvalidCa(format!("CA key PEM: {e}")))?;

    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| CertError::InvalidCa(format!("CA certificate: {e}")))?;
    if !cert.is_ca() {
        return Err(CertError::InvalidCa(
            "the certificate is not a CA certificate".to_owned(),
        ));
    }
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(CertError::InvalidCa(
            "the key does not belong to the CA certificate".to_owned(),
        ));
    }
    Ok(Issuer::from_ca_cert_der(&der, key)?)
}

/// Sets the validity window: from a little before now (clock skew) to `days` from now.
fn set_validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(NOT_BEFORE_BACKDATE_MINUTES);
    params.not_after = now + time::Duration::days(days);
}

fn create_dir(dir: &Path) -> Result<(), CertError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        // The directory holds the CA key.
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| CertError::Io {
        path: dir.to_owned(),
        source,
    })
}

fn refuse_existing(paths: &[&Path]) -> Result<(), CertError> {
    for path in paths {
        // symlink_metadata: a dangling symlink exists too, and writing through it is refused.
        match std::fs::symlink_metadata(path) {
            Ok(_) => return Err(CertError::AlreadyExists(path.to_path_buf())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(CertError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    Ok(())
}

fn read_existing(path: &Path) -> Result<String, CertError> {
    let bytes = tls::read_capped(path, tls::PEM_FILE_MAX_BYTES).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            CertError::Missing(path.to_owned())
        } else {
            CertError::Io {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    String::from_utf8(bytes).map_err(|e| CertError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

/// Writes the key (0600), then the certificate (0644); if the certificate cannot be written, the
/// key is removed again so a failed step leaves the directory as it was.
fn write_pair(pair: &PemPair, cert_path: &Path, key_path: &Path) -> Result<(), CertError> {
    write_new(key_path, &pair.key_pem, 0o600)?;
    if let Err(e) = write_new(cert_path, &pair.cert_pem, 0o644) {
        if let Err(cleanup) = std::fs::remove_file(key_path) {
            tracing::warn!(path = %key_path.display(), error = %cleanup, "cannot remove key after failed write");
        }
        return Err(e);
    }
    Ok(())
}

/// Creates `path` (never overwriting: `create_new`) with `mode` on Unix, writes `contents` and
/// syncs it to disk. A partly written file is removed.
fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), CertError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            CertError::AlreadyExists(path.to_owned())
        } else {
            CertError::Io {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    let written = file
        .write_all(contents.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(source) = written {
        drop(file);
        // Best effort: the write error is what the caller needs to see.
        let _ = std::fs::remove_file(path);
        return Err(CertError::Io {
            path: path.to_owned(),
            source,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use x509_parser::extensions::GeneralName;

    use super::*;

    fn parse(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn ca_is_a_self_signed_p256_ca_named_after_the_cluster() {
        let ca = new_ca("prod-eu").unwrap();
        let der = parse(&ca.cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(cert.is_ca());
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "cairn CA prod-eu");
        assert_eq!(cert.subject(), cert.issuer());
        assert_eq!(
            cert.signature_algorithm.algorithm,
            x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256
        );
        let validity = cert.validity().time_to_expiration().unwrap();
        assert!(validity > time::Duration::days(CA_VALIDITY_DAYS - 1));
        assert!(validity <= time::Duration::days(CA_VALIDITY_DAYS));
    }

    #[test]
    fn node_certificate_carries_role_server_name_and_extra_sans() {
        let ca = new_ca("c").unwrap();
        let node = issue(
            &ca,
            PeerRole::Node,
            "node-1",
            &["10.0.0.7".to_owned(), "n1.example.org".to_owned()],
        )
        .unwrap();
        let der = parse(&node.cert_pem);
        assert_eq!(tls::certificate_role(&der), Some(PeerRole::Node));

        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(!cert.is_ca());
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "node-1");
        let sans = &cert.subject_alternative_name().unwrap().unwrap().value;
        let names: Vec<String> = sans
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
                other => panic!("unexpected SAN {other:?}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                "cairn-node",
                "localhost",
                "ip:[127, 0, 0, 1]",
                "ip:[10, 0, 0, 7]",
                "n1.example.org"
            ]
        );
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let validity = cert.validity().time_to_expiration().unwrap();
        assert!(validity > time::Duration::days(LEAF_VALIDITY_DAYS - 1));
        assert!(validity <= time::Duration::days(LEAF_VALIDITY_DAYS));
    }

    #[test]
    fn client_certificate_names_the_client_role_and_no_server_name() {
        let ca = new_ca("c").unwrap();
        let client = issue(&ca, PeerRole::Client, "ops_tool", &[]).unwrap();
        let der = parse(&client.cert_pem);
        assert_eq!(tls::certificate_role(&der), Some(PeerRole::Client));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(cert.subject_alternative_name().unwrap().is_none());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
    }

    #[test]
    fn client_certificate_may_not_claim_the_node_server_name() {
        let ca = new_ca("c").unwrap();
        let err = issue(&ca, PeerRole::Client, "c1", &["CAIRN-node".to_owned()]).unwrap_err();
        assert!(matches!(err, CertError::InvalidSan { .. }), "{err:?}");
    }

    #[test]
    fn invalid_names_are_rejected() {
        let ca = new_ca("c").unwrap();
        let long = "a".repeat(NAME_LEN_MAX + 1);
        for name in ["", "a/b", "../x", "with space", "ünï", long.as_str()] {
            let err = issue(&ca, PeerRole::Node, name, &[]).unwrap_err();
            assert!(
                matches!(err, CertError::InvalidName(_)),
                "{name:?}: {err:?}"
            );
        }
        assert!(issue(&ca, PeerRole::Node, &"a".repeat(NAME_LEN_MAX), &[]).is_ok());
        assert!(matches!(new_ca("a b"), Err(CertError::InvalidName(_))));
    }

    #[test]
    fn invalid_and_too_many_sans_are_rejected() {
        let ca = new_ca("c").unwrap();
        for san in ["", "a..b", "-a", "a_b", "a b", "ä.example"] {
            let err = issue(&ca, PeerRole::Node, "n", &[san.to_owned()]).unwrap_err();
            assert!(
                matches!(err, CertError::InvalidSan { .. }),
                "{san:?}: {err:?}"
            );
        }
        let many = vec!["a.example".to_owned(); EXTRA_SANS_MAX + 1];
        let err = issue(&ca, PeerRole::Node, "n", &many).unwrap_err();
        assert!(matches!(err, CertError::TooManySans { count } if count == EXTRA_SANS_MAX + 1));
    }

    #[test]
    fn issuing_with_a_leaf_or_a_foreign_key_as_ca_is_refused() {
        let ca = new_ca("c").unwrap();
        let leaf = issue(&ca, PeerRole::Node, "n", &[]).unwrap();
        let err = issue(&leaf, PeerRole::Node, "m", &[]).unwrap_err();
        assert!(matches!(err, CertError::InvalidCa(_)), "{err:?}");

        let other = new_ca("d").unwrap();
        let mixed = PemPair {
            cert_pem: ca.cert_pem.clone(),
            key_pem: other.key_pem,
        };
        let err = issue(&mixed, PeerRole::Node, "n", &[]).unwrap_err();
        assert!(matches!(err, CertError::InvalidCa(_)), "{err:?}");
    }

    #[test]
    fn pem_pair_debug_never_shows_the_key() {
        let ca = new_ca("c").unwrap();
        let shown = format!("{ca:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }
}
