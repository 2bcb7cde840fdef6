//! What cairn processes share on the wire.
//!
//! - [`frame`]: length-prefixed, versioned, size-limited postcard frames on QUIC streams.
//! - [`api`]: the client API of a shard (requests, responses, typed errors).
//! - [`manifest`]: object manifests (the NSM role) and their validation.
//! - [`catalog`]: the manager's API (namespaces, shards, hosts, routing).
//! - [`peer`]: what nodes send each other (batched Raft messages, liveness, snapshots).
//! - [`certs`]: the cluster CA and node/client certificates (rcgen).
//! - [`tls`] and [`endpoint`]: QUIC endpoints with mutual TLS; a peer without a certificate from
//!   the cluster CA is refused.

pub mod api;
pub mod bytes;
pub mod catalog;
pub mod certs;
pub mod endpoint;
pub mod frame;
pub mod manifest;
pub mod metric_spec;
pub mod peer;
pub mod tls;
