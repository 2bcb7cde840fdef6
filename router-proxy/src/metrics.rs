//! The router's Prometheus metrics: names, labels and the `/metrics` HTTP listener.
//!
//! Every metric is prefixed `cairn_router_`; units are in the names (`_seconds`, `_bytes`,
//! `_total`). Request durations are real Prometheus histograms (buckets).
//!
//! Every metric is declared in [`SPECS`] (from which `dashboards/METRICS.md` is generated).
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
use cairn_wire::frame::FrameError;
use cairn_wire::metric_spec::{MetricKind, MetricSpec};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::locality::Locality;

const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// Every metric a router exports.
pub const SPECS: &[MetricSpec] = &[
    MetricSpec::gauge(
        "cairn_router_info",
        &["site", "version"],
        "Always 1: the router's site and version.",
    ),
    MetricSpec::counter(
        "cairn_router_requests_total",
        &["op", "outcome"],
        "Requests answered, by operation and outcome (ok, or the error kind).",
    ),
    MetricSpec::histogram(
        "cairn_router_request_duration_seconds",
        &["op"],
        "How long requests took to answer, by operation.",
    ),
    MetricSpec::counter(
        "cairn_router_route_cache_total",
        &["result"],
        "Namespace routes looked up in the route cache (result hit or miss).",
    ),
    MetricSpec::histogram(
        "cairn_router_resolve_seconds",
        &[],
        "How long resolving a namespace the route cache missed took (manager lookups included).",
    ),
    MetricSpec::counter(
        "cairn_router_manager_lookups_total",
        &["reason"],
        "Questions to the manager about a namespace or for the routing table (reason miss or wrong_shard).",
    ),
    MetricSpec::gauge("cairn_router_routes", &[], "Namespace routes cached."),
    MetricSpec::gauge(
        "cairn_router_routing_version",
        &[],
        "The routing version the route cache is at.",
    ),
    MetricSpec::counter(
        "cairn_router_watch_connects_total",
        &[],
        "Routing watches opened to the manager.",
    ),
    MetricSpec::counter(
        "cairn_router_manifest_cache_hits_total",
        &[],
        "Manifest reads answered from the manifest cache.",
    ),
    MetricSpec::counter(
        "cairn_router_manifest_cache_misses_total",
        &[],
        "Any and at_least manifest reads the manifest cache could not answer.",
    ),
    MetricSpec::gauge(
        "cairn_router_manifest_cache_entries",
        &[],
        "Manifests cached.",
    ),
    MetricSpec::gauge(
        "cairn_router_manifest_cache_bytes",
        &[],
        "Estimated memory of the manifest cache.",
    ),
    MetricSpec::counter(
        "cairn_router_shard_reads_total",
        &["locality"],
        "Reads forwarded to shards, by where they went first (local: a replica in the router's site; remote).",
    ),
    MetricSpec::counter(
        "cairn_router_local_read_fallbacks_total",
        &[],
        "Reads tried at a local replica that were sent on to the shard's usual path.",
    ),
    MetricSpec::gauge(
        "cairn_router_in_flight_requests",
        &[],
        "Requests being served.",
    ),
    MetricSpec::gauge(
        "cairn_router_connections_open",
        &[],
        "Open client connections.",
    ),
    MetricSpec::counter(
        "cairn_router_connections_refused_total",
        &["reason"],
        "Client connections refused (over the limit, failed handshake, no role).",
    ),
    MetricSpec::counter(
        "cairn_router_frames_rejected_total",
        &["reason"],
        "Frames that broke a protocol rule (their connection was closed).",
    ),
];

/// Why client connections are refused.
const REFUSE_REASONS: &[&str] = &["connection_limit", "handshake", "no_role"];

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
    for spec in SPECS {
        match spec.kind {
            MetricKind::Counter => describe_counter!(spec.name, spec.help),
            MetricKind::Gauge => describe_gauge!(spec.name, spec.help),
            MetricKind::Histogram => describe_histogram!(spec.name, spec.help),
        }
    }
    for result in ["hit", "miss"] {
        counter!("cairn_router_route_cache_total", "result" => result).increment(0);
    }
    for reason in [LookupReason::Miss, LookupReason::WrongShard] {
        counter!("cairn_router_manager_lookups_total", "reason" => reason.label()).increment(0);
    }
    counter!("cairn_router_watch_connects_total").increment(0);
    counter!("cairn_router_manifest_cache_hits_total").increment(0);
    counter!("cairn_router_manifest_cache_misses_total").increment(0);
    counter!("cairn_router_local_read_fallbacks_total").increment(0);
    for reason in REFUSE_REASONS {
        counter!("cairn_router_connections_refused_total", "reason" => *reason).increment(0);
    }
    for reason in FrameError::REASONS {
        counter!("cairn_router_frames_rejected_total", "reason" => *reason).increment(0);
    }
    for locality in ["local", "remote"] {
        counter!("cairn_router_shard_reads_total", "locality" => locality).increment(0);
    }
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

/// What the router is: its site (empty when none is configured).
pub(crate) fn info(site: Option<&str>) {
    gauge!(
        "cairn_router_info",
        "site" => site.unwrap_or_default().to_owned(),
        "version" => env!("CARGO_PKG_VERSION"),
    )
    .set(1.0);
}

/// A namespace's route was looked up in the route cache.
pub(crate) fn route_cache(hit: bool) {
    counter!("cairn_router_route_cache_total", "result" => if hit { "hit" } else { "miss" })
        .increment(1);
}

/// Resolving a namespace the cache missed took `elapsed`.
pub(crate) fn resolve_duration(elapsed: Duration) {
    histogram!("cairn_router_resolve_seconds").record(elapsed.as_secs_f64());
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
    debug_assert!(
        REFUSE_REASONS.contains(&reason),
        "undeclared reason {reason}"
    );
    counter!("cairn_router_connections_refused_total", "reason" => reason).increment(1);
}

/// A frame broke a protocol rule and its connection was closed.
pub(crate) fn frame_rejected(reason: &'static str) {
    debug_assert!(
        FrameError::REASONS.contains(&reason),
        "undeclared reason {reason}"
    );
    counter!("cairn_router_frames_rejected_total", "reason" => reason).increment(1);
}
