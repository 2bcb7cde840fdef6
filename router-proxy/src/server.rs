//! The router's QUIC listener: one request per bidirectional stream, one answer back, exactly
//! as a shard node serves its clients.
//!
//! Every connection has passed mutual TLS against the cluster CA before anything here runs.
//! Two bounds hold the load: connections beyond `connections_max` are refused, and a request
//! that finds `requests_in_flight_max` others being served waits a short while for a slot, then
//! is answered `Busy` (the client tries another router or backs off). A frame that breaks a
//! protocol rule closes that connection with [`frame::close::FRAME_ERROR`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cairn_wire::api::{ApiError, Request, Response};
use cairn_wire::frame::{self, FrameError};
use cairn_wire::tls;
use tokio::sync::{Semaphore, SemaphorePermit};
use tracing::{debug, warn};

use crate::config::Limits;
use crate::metrics as m;
use crate::router::Router;

/// The listener's state.
pub(crate) struct Server {
    router: Arc<Router>,
    frame_max_bytes: u32,
    connections_max: u32,
    connections: AtomicU32,
    in_flight: Semaphore,
    in_flight_max: u32,
    in_flight_wait: Duration,
}

impl Server {
    pub(crate) fn new(router: Arc<Router>, limits: &Limits) -> Self {
        Self {
            router,
            frame_max_bytes: limits.frame_size_max_bytes,
            connections_max: limits.connections_max,
            connections: AtomicU32::new(0),
            in_flight: Semaphore::new(limits.requests_in_flight_max as usize),
            in_flight_max: limits.requests_in_flight_max,
            in_flight_wait: Duration::from_millis(limits.requests_in_flight_wait_ms),
        }
    }

    /// A slot to serve one request in, waiting at most `in_flight_wait` for one.
    async fn admit(&self) -> Option<InFlight<'_>> {
        let permit = tokio::time::timeout(self.in_flight_wait, self.in_flight.acquire())
            .await
            .ok()?
            // The semaphore is never closed.
            .ok()?;
        m::in_flight(1.0);
        Some(InFlight { _permit: permit })
    }

    /// Answers one request.
    async fn answer(&self, request: Request) -> Response {
        let started = Instant::now();
        let op = request.name();
        let response = match self.admit().await {
            Some(_slot) => self.router.handle(request).await,
            None => Response::Error(ApiError::Busy(format!(
                "the router is serving its maximum of {} requests",
                self.in_flight_max
            ))),
        };
        let error = match &response {
            Response::Error(e) => Some(e),
            _ => None,
        };
        m::request(op, m::outcome(error), started.elapsed());
        response
    }
}

/// One request being served: holds its slot and counts it.
struct InFlight<'a> {
    _permit: SemaphorePermit<'a>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        m::in_flight(-1.0);
    }
}

/// Accepts connections until the endpoint is closed.
pub(crate) async fn serve(endpoint: quinn::Endpoint, server: Arc<Server>) {
    while let Some(incoming) = endpoint.accept().await {
        if server.connections.load(Ordering::Relaxed) >= server.connections_max {
            m::connection_refused("connection_limit");
            incoming.refuse();
            continue;
        }
        // Counted before the task starts, so a burst of connections cannot overshoot the bound.
        server.connections.fetch_add(1, Ordering::Relaxed);
        m::connections_open(1.0);
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            connection(incoming, &server).await;
            server.connections.fetch_sub(1, Ordering::Relaxed);
            m::connections_open(-1.0);
        });
    }
}

async fn connection(incoming: quinn::Incoming, server: &Arc<Server>) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            // Wrong CA, no certificate, wrong protocol: the handshake fails before any data.
            warn!(%remote, "connection refused: {e}");
            m::connection_refused("handshake");
            return;
        }
    };
    if tls::peer_role(&conn).is_none() {
        warn!(%remote, "connection refused: certificate has no cairn role");
        m::connection_refused("no_role");
        conn.close(
            frame::close::NOT_AUTHORIZED.into(),
            b"certificate has no cairn role",
        );
        return;
    }
    // Peers cannot open unidirectional streams here (the endpoint allows none): a router speaks
    // only the request protocol.
    while let Ok((send, recv)) = conn.accept_bi().await {
        let server = Arc::clone(server);
        let conn = conn.clone();
        tokio::spawn(async move { request_stream(&server, &conn, send, recv).await });
    }
}

/// Closes a connection whose peer broke the framing rules.
fn reject(conn: &quinn::Connection, error: &FrameError) {
    if matches!(error, FrameError::Io(_)) {
        // The connection or stream went away: nothing to reject.
        return;
    }
    let remote = conn.remote_address();
    warn!(%remote, reason = error.reason(), "closing connection: {error}");
    m::frame_rejected(error.reason());
    conn.close(
        frame::close::FRAME_ERROR.into(),
        error.to_string().as_bytes(),
    );
}

async fn request_stream(
    server: &Server,
    conn: &quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let request: Request = match frame::read_frame(&mut recv, server.frame_max_bytes).await {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(e) => return reject(conn, &e),
    };
    let response = server.answer(request).await;
    let written = match frame::write_frame(&mut send, &response, server.frame_max_bytes).await {
        Err(FrameError::Oversized { len, max }) => {
            let too_large = Response::Error(ApiError::TooLarge {
                what: "response".into(),
                size: len,
                max: u64::from(max),
            });
            frame::write_frame(&mut send, &too_large, server.frame_max_bytes).await
        }
        other => other,
    };
    if let Err(e) = written {
        debug!("answering a request failed: {e}");
        return;
    }
    let _ = send.finish();
}
