//! One request, one bidirectional QUIC stream: the exchange with a node, over connections
//! cached per node address.
//!
//! An exchange reports how far it got ([`Sent`]) so the retry policy can tell a request that
//! never left from one whose answer was lost.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_wire::api::Response;
use cairn_wire::endpoint;
use cairn_wire::frame::{self, FrameError};
use tokio::time::{Instant, timeout_at};

use crate::retry::{Outcome, Sent};

/// The connection to one node, shared by every request to it. Its async lock is held while
/// connecting, so concurrent requests to a node that is not connected yet wait for one
/// handshake instead of each starting their own.
type Slot = Arc<tokio::sync::Mutex<Option<quinn::Connection>>>;

/// The client's QUIC endpoint and its connections.
pub(crate) struct Transport {
    endpoint: quinn::Endpoint,
    /// One slot per node address ever contacted (the configured nodes and the leaders they
    /// named), so the map is bounded by the size of the cluster.
    slots: Mutex<HashMap<SocketAddr, Slot>>,
    connect_timeout: Duration,
    frame_max_bytes: u32,
}

impl Transport {
    pub(crate) fn new(
        endpoint: quinn::Endpoint,
        connect_timeout: Duration,
        frame_max_bytes: u32,
    ) -> Self {
        Self {
            endpoint,
            slots: Mutex::new(HashMap::new()),
            connect_timeout,
            frame_max_bytes,
        }
    }

    /// Sends one encoded request frame to `addr` and reads the answer, giving up at `deadline`.
    pub(crate) async fn exchange(
        &self,
        addr: SocketAddr,
        request_frame: &[u8],
        deadline: Instant,
    ) -> Outcome {
        let not_sent = |reason: String| Outcome::Transport {
            sent: Sent::Nothing,
            reason,
        };
        let conn = match self.connection(addr, deadline).await {
            Ok(conn) => conn,
            Err(reason) => return not_sent(reason),
        };
        // Opening a stream sends nothing: the stream only appears on the wire with its data.
        let (mut send, mut recv) = match timeout_at(deadline, conn.open_bi()).await {
            Ok(Ok(streams)) => streams,
            Ok(Err(e)) => return not_sent(format!("cannot open a stream: {e}")),
            Err(_) => return not_sent("the deadline passed while opening a stream".into()),
        };
        let frame_max_bytes = self.frame_max_bytes;
        let exchange = async move {
            let mut written = 0;
            while written < request_frame.len() {
                match send.write(&request_frame[written..]).await {
                    Ok(n) => written += n,
                    Err(e) => {
                        return Outcome::Transport {
                            // Not one byte accepted: the stream died before the request left.
                            sent: if written == 0 {
                                Sent::Nothing
                            } else {
                                Sent::Maybe
                            },
                            reason: format!("sending the request failed: {e}"),
                        };
                    }
                }
            }
            let maybe_sent = |reason: String| Outcome::Transport {
                sent: Sent::Maybe,
                reason,
            };
            if let Err(e) = send.finish() {
                return maybe_sent(format!("finishing the request stream failed: {e}"));
            }
            match frame::read_frame::<_, Response>(&mut recv, frame_max_bytes).await {
                Ok(Some(response)) => Outcome::Answer(response),
                Ok(None) => maybe_sent("the node closed the stream without answering".into()),
                Err(e @ (FrameError::Truncated | FrameError::Io(_))) => {
                    maybe_sent(format!("reading the answer failed: {e}"))
                }
                Err(
                    e @ (FrameError::Oversized { .. }
                    | FrameError::Version { .. }
                    | FrameError::Decode(_)
                    | FrameError::Encode(_)),
                ) => Outcome::Garbled(e.to_string()),
            }
        };
        let outcome = match timeout_at(deadline, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Transport {
                sent: Sent::Maybe,
                reason: "the deadline passed before the answer came".into(),
            },
        };
        match (outcome, tls_refusal(&conn)) {
            // In TLS 1.3 the client may send before the server has checked its certificate; a
            // server that then refuses it never accepted a stream, so nothing was processed.
            (Outcome::Transport { .. }, Some(refusal)) => not_sent(refusal),
            (outcome, _) => outcome,
        }
    }

    /// The live connection to `addr`, connecting (once, for all waiting requests) if needed.
    async fn connection(
        &self,
        addr: SocketAddr,
        deadline: Instant,
    ) -> Result<quinn::Connection, String> {
        let slot = {
            let mut slots = self.slots.lock().expect("connection map lock poisoned");
            Arc::clone(slots.entry(addr).or_default())
        };
        let mut slot = timeout_at(deadline, slot.lock())
            .await
            .map_err(|_| "the deadline passed while waiting for the connection".to_string())?;
        if let Some(conn) = slot.as_ref() {
            if conn.close_reason().is_none() {
                return Ok(conn.clone());
            }
            tracing::debug!(%addr, reason = ?conn.close_reason(), "connection lost; reconnecting");
            *slot = None;
        }
        let now = Instant::now();
        let connect_deadline = deadline.min(now + self.connect_timeout);
        let budget_ms = connect_deadline.saturating_duration_since(now).as_millis();
        let conn = match timeout_at(connect_deadline, endpoint::connect(&self.endpoint, addr)).await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => {
                return Err(format!(
                    "cannot connect: no handshake within {budget_ms} ms"
                ));
            }
        };
        tracing::debug!(%addr, "connected");
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Closes every connection and waits (briefly) for the nodes to acknowledge.
    pub(crate) async fn close(&self) {
        self.endpoint
            .close(frame::close::NORMAL.into(), b"client closed");
        // Waiting is a courtesy to the nodes (they free the connection at once instead of at
        // their idle timeout); never let it hold the caller up for long.
        let _ = tokio::time::timeout(Duration::from_millis(200), self.endpoint.wait_idle()).await;
    }
}

/// The reason, when `conn` was closed by a TLS alert (RFC 9001 §4.8: codes 0x100 + alert).
fn tls_refusal(conn: &quinn::Connection) -> Option<String> {
    match conn.close_reason()? {
        quinn::ConnectionError::ConnectionClosed(c)
            if (0x100..0x200).contains(&u64::from(c.error_code)) =>
        {
            Some(format!(
                "the node refused this client's TLS certificate: {c}"
            ))
        }
        quinn::ConnectionError::TransportError(t)
            if (0x100..0x200).contains(&u64::from(t.code)) =>
        {
            Some(format!("TLS failed: {t}"))
        }
        _ => None,
    }
}
