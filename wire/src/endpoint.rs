//! QUIC endpoints with mutual TLS.
//!
//! A node runs one [`server`] endpoint: it accepts connections from clients and peers, and dials
//! its peers from the same socket. A client runs a [`client`] endpoint. Both sides share one
//! transport configuration built from [`EndpointLimits`], and every connection dials
//! [`SERVER_NAME`] whatever address it goes to (see [`crate::tls`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ConnectionError, IdleTimeout, TransportConfig, VarInt};

use crate::frame::FRAME_MAX_BYTES_DEFAULT;
use crate::tls::{self, Identity, SERVER_NAME, TlsError};

/// The limits of every connection of an endpoint.
#[derive(Clone, Debug)]
pub struct EndpointLimits {
    /// A connection that hears nothing from its peer for this long is closed, in milliseconds
    /// (a handshake that does not complete within it fails).
    pub idle_timeout_ms: u64,
    /// How often an otherwise idle connection sends a keep-alive, in milliseconds; shorter than
    /// `idle_timeout_ms` so a healthy idle connection stays open.
    pub keep_alive_interval_ms: u64,
    /// The most bidirectional streams a peer may have open at once on one connection: the
    /// in-flight requests of a client.
    pub max_concurrent_bidi_streams: u32,
    /// The most unidirectional streams a peer may have open at once on one connection.
    pub max_concurrent_uni_streams: u32,
    /// How many bytes a peer may send on one stream before we read them; holds a frame of
    /// [`FRAME_MAX_BYTES_DEFAULT`] by default.
    pub stream_receive_window_bytes: u32,
    /// How many bytes a peer may send on all streams of a connection before we read them (also
    /// how many we keep unacknowledged in flight when sending).
    pub connection_receive_window_bytes: u32,
}

impl Default for EndpointLimits {
    fn default() -> Self {
        Self {
            idle_timeout_ms: 10_000,
            keep_alive_interval_ms: 1_000,
            max_concurrent_bidi_streams: 1024,
            max_concurrent_uni_streams: 64,
            stream_receive_window_bytes: FRAME_MAX_BYTES_DEFAULT,
            connection_receive_window_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Why an endpoint could not be set up or a connection made.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The identity cannot make a TLS configuration.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The UDP socket could not be bound (or no tokio runtime is running).
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The connection could not be established: refused, failed handshake, no answer.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address dialled.
        addr: SocketAddr,
        /// What went wrong, in words.
        reason: String,
    },
    /// The limits contradict each other or are out of range.
    #[error("invalid endpoint limits: {0}")]
    InvalidLimits(String),
}

/// The QUIC transport configuration of `limits`, shared by the server and client sides.
pub fn transport_config(limits: &EndpointLimits) -> Result<Arc<TransportConfig>, EndpointError> {
    let invalid = |reason: String| Err(EndpointError::InvalidLimits(reason));
    if limits.idle_timeout_ms == 0 {
        return invalid("idle_timeout_ms must be positive".to_owned());
    }
    if limits.keep_alive_interval_ms == 0 || limits.keep_alive_interval_ms >= limits.idle_timeout_ms
    {
        return invalid(format!(
            "keep_alive_interval_ms ({}) must be positive and shorter than idle_timeout_ms ({})",
            limits.keep_alive_interval_ms, limits.idle_timeout_ms
        ));
    }
    if limits.stream_receive_window_bytes == 0
        || limits.stream_receive_window_bytes > limits.connection_receive_window_bytes
    {
        return invalid(format!(
            "stream_receive_window_bytes ({}) must be positive and at most \
             connection_receive_window_bytes ({})",
            limits.stream_receive_window_bytes, limits.connection_receive_window_bytes
        ));
    }
    let idle_timeout = IdleTimeout::try_from(Duration::from_millis(limits.idle_timeout_ms))
        .map_err(|_| {
            EndpointError::InvalidLimits(format!(
                "idle_timeout_ms ({}) is too large",
                limits.idle_timeout_ms
            ))
        })?;

    let mut transport = TransportConfig::default();
    transport
        .max_idle_timeout(Some(idle_timeout))
        .keep_alive_interval(Some(Duration::from_millis(limits.keep_alive_interval_ms)))
        .max_concurrent_bidi_streams(VarInt::from_u32(limits.max_concurrent_bidi_streams))
        .max_concurrent_uni_streams(VarInt::from_u32(limits.max_concurrent_uni_streams))
        .stream_receive_window(VarInt::from_u32(limits.stream_receive_window_bytes))
        .receive_window(VarInt::from_u32(limits.connection_receive_window_bytes))
        .send_window(u64::from(limits.connection_receive_window_bytes));
    Ok(Arc::new(transport))
}

/// The quinn client configuration of `id` and `limits`: what [`client`] and [`server`] endpoints
/// dial with. Useful to dial from an endpoint built elsewhere with `Endpoint::connect_with`.
pub fn quic_client_config(
    id: &Identity,
    limits: &EndpointLimits,
) -> Result<quinn::ClientConfig, EndpointError> {
    let crypto = QuicClientConfig::try_from(tls::client_config(id)?).map_err(TlsError::from)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config(limits)?);
    Ok(config)
}

/// The quinn server configuration of `id` and `limits`: client certificate required.
pub fn quic_server_config(
    id: &Identity,
    limits: &EndpointLimits,
) -> Result<quinn::ServerConfig, EndpointError> {
    let crypto = QuicServerConfig::try_from(tls::server_config(id)?).map_err(TlsError::from)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config(limits)?);
    Ok(config)
}

/// A node's endpoint on `bind`: accepts connections (client certificate required) and dials out
/// with `id` as its default client configuration. Must be called inside a tokio runtime.
pub fn server(
    bind: SocketAddr,
    id: &Identity,
    limits: &EndpointLimits,
) -> Result<quinn::Endpoint, EndpointError> {
    let server_config = quic_server_config(id, limits)?;
    let client_config = quic_client_config(id, limits)?;
    let mut endpoint = quinn::Endpoint::server(server_config, bind)
        .map_err(|source| EndpointError::Bind { addr: bind, source })?;
    endpoint.set_default_client_config(client_config);
    Ok(endpoint)
}

/// A client's endpoint: an ephemeral UDP port on 0.0.0.0 that dials with `id`. It accepts no
/// connections. Must be called inside a tokio runtime.
pub fn client(id: &Identity, limits: &EndpointLimits) -> Result<quinn::Endpoint, EndpointError> {
    let client_config = quic_client_config(id, limits)?;
    let bind = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let mut endpoint = quinn::Endpoint::client(bind)
        .map_err(|source| EndpointError::Bind { addr: bind, source })?;
    endpoint.set_default_client_config(client_config);
    Ok(endpoint)
}

/// Dials `addr` from `endpoint` with its default client configuration, verifying the server as
/// [`SERVER_NAME`], and waits for the handshake. Failures are [`EndpointError::Connect`] with the
/// reason in words.
///
/// In TLS 1.3 the client finishes its handshake before the server has checked the client's
/// certificate: a server that refuses our certificate shows up as the returned connection being
/// closed with a TLS error (see [`quinn::Connection::closed`]), not as an error here.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
) -> Result<quinn::Connection, EndpointError> {
    let connecting = endpoint
        .connect(addr, SERVER_NAME)
        .map_err(|e| EndpointError::Connect {
            addr,
            reason: e.to_string(),
        })?;
    connecting.await.map_err(|e| EndpointError::Connect {
        addr,
        reason: describe(&e),
    })
}

/// Says why a connection failed, naming TLS refusals as such.
fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::TransportError(t) if is_crypto(t.code) => {
            format!("TLS handshake failed here: {t}")
        }
        ConnectionError::ConnectionClosed(c) if is_crypto(c.error_code) => {
            format!("the peer refused the TLS handshake: {c}")
        }
        ConnectionError::TimedOut => "no answer before the idle timeout".to_owned(),
        other => other.to_string(),
    }
}

/// Whether a QUIC transport error code carries a TLS alert (RFC 9001 §4.8: 0x100 + alert).
fn is_crypto(code: quinn::TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_make_a_transport_config() {
        transport_config(&EndpointLimits::default()).unwrap();
    }

    #[test]
    fn contradictory_limits_are_refused() {
        let base = EndpointLimits::default();
        let cases = [
            EndpointLimits {
                idle_timeout_ms: 0,
                ..base.clone()
            },
            EndpointLimits {
                keep_alive_interval_ms: base.idle_timeout_ms,
                ..base.clone()
            },
            EndpointLimits {
                keep_alive_interval_ms: 0,
                ..base.clone()
            },
            EndpointLimits {
                stream_receive_window_bytes: 0,
                ..base.clone()
            },
            EndpointLimits {
                stream_receive_window_bytes: base.connection_receive_window_bytes + 1,
                ..base.clone()
            },
            EndpointLimits {
                idle_timeout_ms: u64::MAX,
                ..base.clone()
            },
        ];
        for limits in cases {
            let err = transport_config(&limits).unwrap_err();
            assert!(
                matches!(err, EndpointError::InvalidLimits(_)),
                "{limits:?}: {err:?}"
            );
        }
    }

    #[test]
    fn endpoints_outside_a_runtime_fail_to_bind_instead_of_panicking() {
        let ca = crate::certs::new_ca("t").unwrap();
        let node = crate::certs::issue(&ca, tls::PeerRole::Node, "n", &[]).unwrap();
        let id = Identity::from_pem(&ca.cert_pem, &node.cert_pem, &node.key_pem).unwrap();
        let err = client(&id, &EndpointLimits::default()).unwrap_err();
        assert!(matches!(err, EndpointError::Bind { .. }), "{err:?}");
    }
}
