//! Mutual TLS over real QUIC on 127.0.0.1: who gets in, who is refused, and what each side
//! learns about the other.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cairn_wire::certs::{self, PemPair};
use cairn_wire::endpoint::{self, EndpointError, EndpointLimits};
use cairn_wire::frame::{self, FRAME_MAX_BYTES_DEFAULT, close};
use cairn_wire::tls::{self, Identity, PeerRole};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, ConnectionError, VarInt};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Every wait in these tests ends by this deadline; none takes near it when things work.
const DEADLINE: Duration = Duration::from_secs(20);

/// The TLS alert a client gets when it sends no certificate to a server that requires one
/// (RFC 8446 §4.4.2.4: `certificate_required`).
const ALERT_CERTIFICATE_REQUIRED: u8 = 116;

/// The TLS alert for a certificate chain that does not lead to a trusted CA (RFC 8446 §6.2:
/// `unknown_ca`).
const ALERT_UNKNOWN_CA: u8 = 48;

fn identity(ca: &PemPair, role: PeerRole, name: &str) -> Result<Identity> {
    let pair = certs::issue(ca, role, name, &[])?;
    Ok(Identity::from_pem(
        &ca.cert_pem,
        &pair.cert_pem,
        &pair.key_pem,
    )?)
}

/// A node endpoint on an ephemeral port of 127.0.0.1.
fn node(id: &Identity) -> Result<(quinn::Endpoint, SocketAddr)> {
    let bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let ep = endpoint::server(bind, id, &EndpointLimits::default())?;
    let addr = ep.local_addr()?;
    Ok((ep, addr))
}

/// Accepts the next connection attempt and completes (or fails) its handshake.
fn accept_one(ep: &quinn::Endpoint) -> JoinHandle<Result<Connection, ConnectionError>> {
    let ep = ep.clone();
    tokio::spawn(async move {
        let incoming = ep
            .accept()
            .await
            .expect("the endpoint is open for the whole test");
        incoming.await
    })
}

/// The TLS alert carried by a connection error, if it is a TLS failure (RFC 9001 §4.8: the QUIC
/// error code is 0x100 + the alert).
fn tls_alert(e: &ConnectionError) -> Option<u8> {
    let code = match e {
        ConnectionError::TransportError(t) => t.code,
        ConnectionError::ConnectionClosed(c) => c.error_code,
        _ => return None,
    };
    let code = u64::from(code);
    (0x100..0x200)
        .contains(&code)
        .then_some((code & 0xff) as u8)
}

/// How a client that the server refuses finds out. In TLS 1.3 the client completes its side of
/// the handshake before the server has judged the client's certificate, so the refusal arrives
/// either as a failed connect or as the fresh connection being closed with a TLS error.
async fn refusal_seen_by_client(
    connected: Result<Connection, EndpointError>,
) -> Result<Option<u8>> {
    match connected {
        Err(EndpointError::Connect { reason, .. }) => {
            eprintln!("connect failed: {reason}");
            assert!(reason.contains("TLS"), "unclear reason: {reason}");
            Ok(None)
        }
        Err(other) => bail!("unexpected error: {other}"),
        Ok(conn) => {
            let closed = timeout(DEADLINE, conn.closed())
                .await
                .context("the server never closed the refused connection")?;
            eprintln!("connect succeeded; the refusal arrived as the close: {closed}");
            let alert = tls_alert(&closed);
            assert!(alert.is_some(), "closed without a TLS error: {closed:?}");
            Ok(alert)
        }
    }
}

/// A client endpoint whose TLS config trusts `ca` but presents no certificate at all.
fn client_without_certificate(ca: &PemPair) -> Result<(quinn::Endpoint, quinn::ClientConfig)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes())?)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![tls::ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(Arc::new(tls))?));
    config.transport_config(endpoint::transport_config(&EndpointLimits::default())?);
    let ep = quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok((ep, config))
}

#[tokio::test]
async fn cluster_client_exchanges_frames_and_each_side_sees_the_others_role() -> Result<()> {
    let ca = certs::new_ca("test")?;
    let (server_ep, addr) = node(&identity(&ca, PeerRole::Node, "n1")?)?;
    let client_ep = endpoint::client(
        &identity(&ca, PeerRole::Client, "app")?,
        &EndpointLimits::default(),
    )?;

    let server = tokio::spawn(async move {
        let conn = server_ep.accept().await.context("endpoint closed")?.await?;
        let role = tls::peer_role(&conn);
        let (mut send, mut recv) = conn.accept_bi().await?;
        let request: (u64, String) = frame::read_frame(&mut recv, FRAME_MAX_BYTES_DEFAULT)
            .await?
            .context("client sent nothing")?;
        frame::write_frame(&mut send, &request, FRAME_MAX_BYTES_DEFAULT).await?;
        send.finish()?;
        // The client closes once it has the echo; keep the connection until then.
        let closed = conn.closed().await;
        anyhow::Ok((role, closed))
    });

    let conn = timeout(DEADLINE, endpoint::connect(&client_ep, addr)).await??;
    assert_eq!(tls::peer_role(&conn), Some(PeerRole::Node));
    let (mut send, mut recv) = conn.open_bi().await?;
    let request = (7u64, "hello cairn".to_owned());
    frame::write_frame(&mut send, &request, FRAME_MAX_BYTES_DEFAULT).await?;
    send.finish()?;
    let echo: Option<(u64, String)> = timeout(
        DEADLINE,
        frame::read_frame(&mut recv, FRAME_MAX_BYTES_DEFAULT),
    )
    .await??;
    assert_eq!(echo, Some(request));
    let end: Option<(u64, String)> = timeout(
        DEADLINE,
        frame::read_frame(&mut recv, FRAME_MAX_BYTES_DEFAULT),
    )
    .await??;
    assert_eq!(end, None, "the server finished its stream after the echo");
    conn.close(VarInt::from_u32(close::NORMAL), b"done");

    let (role, closed) = timeout(DEADLINE, server).await???;
    assert_eq!(role, Some(PeerRole::Client));
    assert!(
        matches!(&closed, ConnectionError::ApplicationClosed(c) if c.error_code == VarInt::from_u32(close::NORMAL)),
        "{closed:?}"
    );
    Ok(())
}

#[tokio::test]
async fn node_endpoint_dials_a_peer_that_sees_it_as_a_node() -> Result<()> {
    let ca = certs::new_ca("test")?;
    let (a, _) = node(&identity(&ca, PeerRole::Node, "a")?)?;
    let (b, b_addr) = node(&identity(&ca, PeerRole::Node, "b")?)?;
    let accepted = accept_one(&b);

    let conn = timeout(DEADLINE, endpoint::connect(&a, b_addr)).await??;
    assert_eq!(tls::peer_role(&conn), Some(PeerRole::Node));
    let at_b = timeout(DEADLINE, accepted).await???;
    assert_eq!(tls::peer_role(&at_b), Some(PeerRole::Node));
    Ok(())
}

#[tokio::test]
async fn client_with_certificate_from_another_ca_is_refused() -> Result<()> {
    let ca = certs::new_ca("test")?;
    let (server_ep, addr) = node(&identity(&ca, PeerRole::Node, "n1")?)?;
    let accepted = accept_one(&server_ep);

    // Trusts the real CA (so it accepts the server) but its own certificate is a stranger's.
    let other = certs::new_ca("other")?;
    let stranger = certs::issue(&other, PeerRole::Client, "intruder", &[])?;
    let id = Identity::from_pem(&ca.cert_pem, &stranger.cert_pem, &stranger.key_pem)?;
    let client_ep = endpoint::client(&id, &EndpointLimits::default())?;

    let connected = timeout(DEADLINE, endpoint::connect(&client_ep, addr)).await?;
    if let Some(alert) = refusal_seen_by_client(connected).await? {
        assert_eq!(alert, ALERT_UNKNOWN_CA);
    }

    let at_server = timeout(DEADLINE, accepted).await?;
    let err = at_server?.expect_err("the server must not yield a connection");
    assert_eq!(tls_alert(&err), Some(ALERT_UNKNOWN_CA), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn client_without_certificate_is_refused() -> Result<()> {
    let ca = certs::new_ca("test")?;
    let (server_ep, addr) = node(&identity(&ca, PeerRole::Node, "n1")?)?;
    let accepted = accept_one(&server_ep);

    let (client_ep, config) = client_without_certificate(&ca)?;
    let connecting = client_ep.connect_with(config, addr, tls::SERVER_NAME)?;
    let connected = timeout(DEADLINE, connecting)
        .await?
        .map_err(|e| EndpointError::Connect {
            addr,
            reason: format!("TLS refused: {e}"),
        });
    let alert = refusal_seen_by_client(connected).await?;
    if let Some(alert) = alert {
        assert_eq!(alert, ALERT_CERTIFICATE_REQUIRED);
    }

    let at_server = timeout(DEADLINE, accepted).await?;
    let err = at_server?.expect_err("the server must not yield a connection");
    assert_eq!(tls_alert(&err), Some(ALERT_CERTIFICATE_REQUIRED), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn client_trusting_another_ca_refuses_the_server() -> Result<()> {
    let ca = certs::new_ca("test")?;
    let (server_ep, addr) = node(&identity(&ca, PeerRole::Node, "n1")?)?;
    let accepted = accept_one(&server_ep);

    let other = certs::new_ca("other")?;
    let client_ep = endpoint::client(
        &identity(&other, PeerRole::Client, "lost")?,
        &EndpointLimits::default(),
    )?;
    let err = timeout(DEADLINE, endpoint::connect(&client_ep, addr))
        .await?
        .expect_err("the client must refuse a server from another CA");
    match &err {
        EndpointError::Connect { addr: a, reason } => {
            assert_eq!(*a, addr);
            assert!(reason.starts_with("TLS handshake failed here"), "{reason}");
            assert!(reason.contains("UnknownIssuer"), "{reason}");
        }
        other => panic!("unexpected error: {other:?}"),
    }

    let at_server = timeout(DEADLINE, accepted).await?;
    let err = at_server?.expect_err("the server must not yield a connection");
    assert_eq!(tls_alert(&err), Some(ALERT_UNKNOWN_CA), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn connect_to_nobody_fails_with_connect_error() -> Result<()> {
    let ca = certs::new_ca("test")?;
    let limits = EndpointLimits {
        idle_timeout_ms: 300,
        keep_alive_interval_ms: 100,
        ..EndpointLimits::default()
    };
    let client_ep = endpoint::client(&identity(&ca, PeerRole::Client, "app")?, &limits)?;
    // A bound UDP socket that never answers: the handshake times out after the idle timeout.
    let silent = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr = silent.local_addr()?;
    let err = timeout(DEADLINE, endpoint::connect(&client_ep, addr))
        .await?
        .expect_err("nobody answers");
    assert!(
        matches!(&err, EndpointError::Connect { reason, .. } if reason.contains("idle timeout")),
        "{err:?}"
    );
    Ok(())
}
