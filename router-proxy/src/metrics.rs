//! The router's Prometheus metrics: names, labels and the `/metrics` HTTP listener.
//!
//! Every metric is prefixed `cairn_router_`; units are in the names (`_seconds`, `_bytes`,
//! `_total`). Request durations are real Prometheus histograms (buckets).
//!
//! | metric | type | labels, meaning |
//! | --- | --- | --- |
//! | `cairn_router_requests_total` | counter | `op`, `outcome` (`ok` or the error kind) |
//! | `cairn_router_request_duration_seconds` | histogram | `op` |
//! | `cairn_router_manager_lookups_total` | counter | `reason` (`miss`, `wrong_shard`) |
//! | `cairn_router_routes` | gauge | namespaces cached |
//! | `cairn_router_routing_version` | gauge | |
//! | `cairn_router_watch_connects_total` | counter | routing watches opened |
//! | `cairn_router_manifest_cache_hits_total` | counter | reads answered by the cache |
//! | `cairn_router_manifest_cache_misses_total` | counter | `Any`/`AtLeast` ones it could not |
//! | `cairn_router_manifest_cache_entries` | gauge | |
//! | `cairn_router_manifest_cache_bytes` | gauge | estimated memory |
//! | `cairn_router_shard_reads_total` | counter | `locality` (`local`, `remote`) |
//! | `cairn_router_local_read_fallbacks_total` | counter | local attempts sent on |
//! | `cairn_router_in_flight_requests` | gauge | |
//! | `cairn_router_connections_open` | gauge | |
//! | `cairn_router_connections_refused_total` | counter | `reason` |
//! | `cairn_router_frames_rejected_total` | counter | `reason` |
//!
//! A read sent to a shard counts once in `cairn_router_shard_reads_total`, by the replica it
//! went to first: `local` when that replica is in the router's site (a loose read to a local
//! replica, or a read to a leader that happens to be local), `remote` otherwise (always, with no
//! `site` configured). A local attempt the replica could not serve (unreachable, too slow,
//! behind the read) and that was sent on to the shard's usual path also counts in
//! `cairn_router_local_read_fallbacks_total`.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use cairn_wire::api::ApiError;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::locality::Locality;

const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// Why the router asked the manager about a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupReason {
    /// The namespace (or its shard) was not in the route cache.
    Miss,
    /// A shard answered `WrongShard` for the cached route.
    WrongShard,
}

impl LookupReason {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Miss => "miss",
            Self::WrongShard => "wrong_shard",
        }
    }
}

/// Installs the process-wide recorder and serves `/metrics` on `listen` (plain HTTP, as
/// Prometheus scrapes it; it exposes counters, no data).
///
/// A process has one recorder: a second call with the same address is a no-op (so a test
/// process may start several routers one after the other), with another address an error.
pub fn install(listen: SocketAddr) -> Result<(), String> {
    static INSTALLED: Mutex<Option<SocketAddr>> = Mutex::new(None);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    match *installed {
        Some(at) if at == listen => return Ok(()),
        Some(at) => {
            return Err(format!(
                "the metrics listener already runs on {at} in this process; cannot add {listen}"
            ));
        }
        None => {}
    }
    PrometheusBuilder::new()
        .with_http_listener(listen)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_SECONDS)
        .map_err(|e| e.to_string())?
        .install()
        .map_err(|e| format!("starting the metrics listener on {listen}: {e}"))?;
    *installed = Some(listen);
    Ok(())
}

/// A request finished.
pub(crate) fn request(op: &'static str, outcome: &'static str, elapsed: Duration) {
    counter!("cairn_router_requests_total", "op" => op, "outcome" => outcome).increment(1);
    histogram!("cairn_router_request_duration_seconds", "op" => op).record(elapsed.as_secs_f64());
}

/// The outcome label of a request.
pub(crate) fn outcome(error: Option<&ApiError>) -> &'static str {
    error.map_or("ok", ApiError::kind)
}

/// The router asked the manager about a namespace or for its routing table.
pub(crate) fn manager_lookup(reason: LookupReason) {
    counter!("cairn_router_manager_lookups_total", "reason" => reason.label()).increment(1);
}

/// The route cache's size and version after a change.
pub(crate) fn routes(namespaces: usize, version: Option<u64>) {
    gauge!("cairn_router_routes").set(namespaces as f64);
    if let Some(version) = version {
        gauge!("cairn_router_routing_version").set(version as f64);
    }
}

/// A routing watch was opened.
pub(crate) fn watch_connected() {
    counter!("cairn_router_watch_connects_total").increment(1);
}

/// A manifest read was answered from the cache.
pub(crate) fn manifest_cache_hit() {
    counter!("cairn_router_manifest_cache_hits_total").increment(1);
}

/// A manifest read the cache was asked about went to the shard.
pub(crate) fn manifest_cache_miss() {
    counter!("cairn_router_manifest_cache_misses_total").increment(1);
}

/// A read was forwarded to a shard; `locality` says where it went first.
pub(crate) fn shard_read(locality: Locality) {
    counter!("cairn_router_shard_reads_total", "locality" => locality.label()).increment(1);
}

/// A read tried at a local replica was sent on to the shard's usual path.
pub(crate) fn local_read_fallback() {
    counter!("cairn_router_local_read_fallbacks_total").increment(1);
}

/// The manifest cache's size after a change.
pub(crate) fn manifest_cache_size(entries: usize, bytes: u64) {
    gauge!("cairn_router_manifest_cache_entries").set(entries as f64);
    gauge!("cairn_router_manifest_cache_bytes").set(bytes as f64);
}

/// Requests being served.
pub(crate) fn in_flight(delta: f64) {
    gauge!("cairn_router_in_flight_requests").increment(delta);
}

/// Open client connections.
pub(crate) fn connections_open(delta: f64) {
    gauge!("cairn_router_connections_open").increment(delta);
}

/// A connection was refused (over the limit, failed handshake, no role).
pub(crate) fn connection_refused(reason: &'static str) {
    counter!("cairn_router_connections_refused_total", "reason" => reason).increment(1);
}

/// A frame broke a protocol rule and its connection was closed.
pub(crate) fn frame_rejected(reason: &'static str) {
    counter!("cairn_router_frames_rejected_total", "reason" => reason).increment(1);
}
