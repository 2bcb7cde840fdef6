//! The CA directory on disk: what `init_ca_dir` and `issue_to_dir` write, and what they refuse.

use std::path::Path;

use anyhow::Result;
use cairn_wire::certs::{self, CertError};
use cairn_wire::tls::{self, Identity, PeerRole};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

fn file_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = std::fs::read_dir(dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

#[cfg(unix)]
fn mode(path: &Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

#[test]
fn init_ca_dir_creates_the_directory_and_writes_the_ca() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("nested/ca");
    certs::init_ca_dir(&dir, "prod")?;
    assert_eq!(file_names(&dir)?, ["ca.key", "ca.pem"]);
    let pem = std::fs::read(dir.join("ca.pem"))?;
    let der = CertificateDer::from_pem_slice(&pem)?;
    // The CA names no role: it is not a peer.
    assert_eq!(tls::certificate_role(&der), None);
    Ok(())
}

#[test]
fn init_ca_dir_refuses_to_overwrite_an_existing_ca() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    certs::init_ca_dir(tmp.path(), "prod")?;
    let before = std::fs::read(tmp.path().join("ca.key"))?;
    let err = certs::init_ca_dir(tmp.path(), "prod").unwrap_err();
    assert!(matches!(err, CertError::AlreadyExists(_)), "{err:?}");
    assert_eq!(std::fs::read(tmp.path().join("ca.key"))?, before);

    // Either file alone is enough to refuse, and nothing is added.
    let only_key = tempfile::tempdir()?;
    std::fs::write(only_key.path().join("ca.key"), "precious")?;
    let err = certs::init_ca_dir(only_key.path(), "prod").unwrap_err();
    assert!(
        matches!(&err, CertError::AlreadyExists(p) if p.ends_with("ca.key")),
        "{err:?}"
    );
    assert_eq!(file_names(only_key.path())?, ["ca.key"]);
    assert_eq!(
        std::fs::read_to_string(only_key.path().join("ca.key"))?,
        "precious"
    );
    Ok(())
}

#[test]
fn issue_to_dir_without_a_ca_is_missing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let err = certs::issue_to_dir(tmp.path(), PeerRole::Node, "n1", &[]).unwrap_err();
    assert!(
        matches!(&err, CertError::Missing(p) if p == &tmp.path().join("ca.pem")),
        "{err:?}"
    );
    assert!(file_names(tmp.path())?.is_empty());
    Ok(())
}

#[test]
fn issue_to_dir_writes_a_loadable_identity_and_refuses_to_overwrite_it() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    certs::init_ca_dir(tmp.path(), "prod")?;
    let (cert, key) =
        certs::issue_to_dir(tmp.path(), PeerRole::Node, "n1", &["10.1.2.3".to_owned()])?;
    assert_eq!(cert, tmp.path().join("n1.pem"));
    assert_eq!(key, tmp.path().join("n1.key"));

    let id = Identity::load(&tmp.path().join("ca.pem"), &cert, &key)?;
    assert_eq!(tls::certificate_role(id.leaf()), Some(PeerRole::Node));

    let before = std::fs::read(&key)?;
    let err = certs::issue_to_dir(tmp.path(), PeerRole::Client, "n1", &[]).unwrap_err();
    assert!(matches!(err, CertError::AlreadyExists(_)), "{err:?}");
    assert_eq!(std::fs::read(&key)?, before);

    // "ca" would overwrite the CA itself.
    let err = certs::issue_to_dir(tmp.path(), PeerRole::Client, "ca", &[]).unwrap_err();
    assert!(matches!(err, CertError::AlreadyExists(_)), "{err:?}");
    Ok(())
}

#[test]
fn issue_to_dir_rejects_invalid_names_without_touching_the_directory() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    certs::init_ca_dir(tmp.path(), "prod")?;
    for name in ["", "../escape", "a/b", "white space", &"x".repeat(65)] {
        let err = certs::issue_to_dir(tmp.path(), PeerRole::Client, name, &[]).unwrap_err();
        assert!(
            matches!(err, CertError::InvalidName(_)),
            "{name:?}: {err:?}"
        );
    }
    assert_eq!(file_names(tmp.path())?, ["ca.key", "ca.pem"]);
    assert!(!tmp.path().parent().unwrap().join("escape.pem").exists());
    Ok(())
}

#[cfg(unix)]
#[test]
fn key_files_are_readable_by_their_owner_only() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("ca");
    certs::init_ca_dir(&dir, "prod")?;
    assert_eq!(mode(&dir.join("ca.key"))?, 0o600);
    assert_eq!(mode(&dir)? & 0o077, 0, "the new CA directory is private");
    let (cert, key) = certs::issue_to_dir(&dir, PeerRole::Client, "app", &[])?;
    assert_eq!(mode(&key)?, 0o600);
    assert_eq!(
        mode(&cert)? & 0o022,
        0,
        "nobody else may rewrite a certificate"
    );
    Ok(())
}
