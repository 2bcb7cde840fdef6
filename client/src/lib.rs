//! The async Rust client of a cairn cluster.
//!
//! A [`Client`] holds one QUIC endpoint (mutual TLS with the cluster CA) and one connection per
//! node, opened lazily and reopened after a failure. Each request travels on its own
//! bidirectional stream: one request frame, one response frame.
//!
//! Routing and retries (the policy itself lives in [`retry`], as pure code):
//!
//! - Writes and `Consistent` reads go to the shard's cached leader (at first, the first node).
//!   A `NotLeader` answer naming the leader sends the request there at once; no leader known,
//!   `NoQuorum` with nothing proposed, `Busy`, or an unreachable node send it to the next node
//!   after a backoff (50 ms, doubling, capped at 500 ms).
//! - `Any` and `AtLeast` reads go to any node, retrying elsewhere on `InconsistentRead` or an
//!   unreachable node.
//! - A write is retried only when it certainly had no effect. One that may have reached a node
//!   and lost its answer fails with [`Error::Ambiguous`].
//! - [`ClientConfig::request_timeout_ms`] bounds every call, retries included.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use cairn_client::{Client, ClientConfig};
//! use cairn_wire::api::{Consistency, Namespace, ShardId};
//! use cairn_wire::tls::Identity;
//! use std::path::Path;
//!
//! let identity = Identity::load(
//!     Path::new("certs/ca.pem"),
//!     Path::new("certs/client.pem"),
//!     Path::new("certs/client.key"),
//! )?;
//! let nodes = vec!["127.0.0.1:7101".parse()?, "127.0.0.1:7102".parse()?];
//! let client = Client::new(ClientConfig::new(nodes, identity))?;
//! let ns = client.namespace(ShardId(1), Namespace::new("manifests")?);
//!
//! let written = ns.set("object/1", "v1").await?;
//! // Read your write from whichever replica has applied it.
//! let read = ns.get("object/1", Consistency::AtLeast(written.index)).await?;
//! assert_eq!(read.value, b"v1");
//! # Ok(())
//! # }
//! ```

mod client;
mod config;
mod error;
mod namespace;
pub mod retry;
mod transport;
mod watch;

pub use client::Client;
pub use config::{
    CONNECT_TIMEOUT_MS_DEFAULT, ClientConfig, IDLE_TIMEOUT_MS_DEFAULT, MAX_LEADER_HOPS_DEFAULT,
    REQUEST_TIMEOUT_MS_DEFAULT,
};
pub use error::Error;
pub use namespace::{Entries, NamespaceClient, Read, Written};
pub use watch::RoutingWatch;

/// The wire types a client needs, re-exported so users need not depend on `cairn-wire`.
pub use cairn_wire::api::{
    ApiError, Consistency, KeyRange, LeaderHint, Namespace, ReplicaStatus, ShardId, Step,
};
pub use cairn_wire::tls::Identity;
pub use raft_core::LogIndex;
