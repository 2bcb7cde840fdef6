//! What a [`Client`](crate::Client) needs to know: where the nodes are, who it is, and how long it
//! may wait.

use std::net::SocketAddr;
use std::time::Duration;

use cairn_wire::endpoint::EndpointLimits;
use cairn_wire::frame::FRAME_MAX_BYTES_DEFAULT;
use cairn_wire::tls::Identity;

use crate::Error;

/// The default hard bound on one call, retries and backoffs included.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// The default bound on establishing one connection (QUIC + TLS handshake).
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 1_000;
/// The default number of leader hints followed in a row before backing off.
pub const MAX_LEADER_HOPS_DEFAULT: u32 = 5;

/// How long a connection to a node may be silent before the client considers the node gone.
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 3_000;

/// The configuration of a [`Client`](crate::Client).
///
/// Build it with [`ClientConfig::new`] and adjust the public fields;
/// [`Client::new`](crate::Client::new) validates it.
#[derive(Clone)]
pub struct ClientConfig {
    /// The nodes to contact, in order of preference. The first one is tried first until a
    /// leader is known. Nodes need not all host every shard.
    pub nodes: Vec<SocketAddr>,
    /// The cluster CA and this client's certificate and key (role client).
    pub identity: Identity,
    /// The hard bound on every call, retries and backoffs included.
    pub request_timeout_ms: u64,
    /// The bound on establishing one connection; a node that does not complete the handshake in
    /// time counts as unreachable and the next node is tried.
    pub connect_timeout_ms: u64,
    /// How many `NotLeader` hints are followed in a row before the client backs off and tries
    /// the nodes in turn (hints can chase each other while an election settles).
    pub max_leader_hops: u32,
    /// The largest frame sent or accepted. Must match the nodes' `frame_size_max_bytes`.
    pub frame_max_bytes: u32,
    /// Transport limits of the client's QUIC endpoint.
    pub endpoint: EndpointLimits,
}

impl ClientConfig {
    /// A configuration with the default timeouts and limits.
    pub fn new(nodes: Vec<SocketAddr>, identity: Identity) -> Self {
        Self {
            nodes,
            identity,
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            connect_timeout_ms: CONNECT_TIMEOUT_MS_DEFAULT,
            max_leader_hops: MAX_LEADER_HOPS_DEFAULT,
            frame_max_bytes: FRAME_MAX_BYTES_DEFAULT,
            endpoint: EndpointLimits {
                // A node that died is noticed within this time (keep-alives flow otherwise):
                // requests in flight to it fail then instead of at their deadline, and the
                // next request goes elsewhere.
                idle_timeout_ms: IDLE_TIMEOUT_MS_DEFAULT,
                keep_alive_interval_ms: IDLE_TIMEOUT_MS_DEFAULT / 6,
                ..EndpointLimits::default()
            },
        }
    }

    /// Sets [`ClientConfig::request_timeout_ms`].
    pub fn with_request_timeout_ms(mut self, ms: u64) -> Self {
        self.request_timeout_ms = ms;
        self
    }

    /// Sets [`ClientConfig::connect_timeout_ms`].
    pub fn with_connect_timeout_ms(mut self, ms: u64) -> Self {
        self.connect_timeout_ms = ms;
        self
    }

    /// The request timeout as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The connect timeout as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), Error> {
        let fail = |msg: &str| Err(Error::Config(msg.to_string()));
        if self.nodes.is_empty() {
            return fail("nodes must list at least one node address");
        }
        if self.request_timeout_ms == 0 {
            return fail("request_timeout_ms must be > 0");
        }
        if self.connect_timeout_ms == 0 {
            return fail("connect_timeout_ms must be > 0");
        }
        if self.frame_max_bytes == 0 {
            return fail("frame_max_bytes must be > 0");
        }
        Ok(())
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The identity holds a private key: never print it.
        f.debug_struct("ClientConfig")
            .field("nodes", &self.nodes)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("max_leader_hops", &self.max_leader_hops)
            .field("frame_max_bytes", &self.frame_max_bytes)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}
