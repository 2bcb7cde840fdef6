//! The node's Prometheus metrics: names, labels and the `/metrics` HTTP listener.
//!
//! Every metric is prefixed `cairn_`; units are in the names (`_seconds`, `_bytes`, `_total`).
//! Histograms are exported as real Prometheus histograms (buckets), so that percentiles can be
//! computed across nodes.

use std::net::SocketAddr;
use std::time::Duration;

use cairn_wire::api::{ApiError, ShardId};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use raft_core::{Role, Status};

use crate::storage::GroupStorage;

const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];
const SIZE_BUCKETS: &[f64] = &[
    1.0,
    2.0,
    4.0,
    8.0,
    16.0,
    32.0,
    64.0,
    128.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];

/// Installs the global recorder and serves `/metrics` on `listen` (plain HTTP, as Prometheus
/// scrapes it; it exposes no data, only counters).
pub fn install(listen: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(listen)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_entries".into()), SIZE_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_bytes".into()), SIZE_BUCKETS))
        .map_err(|e| e.to_string())?
        .install()
        .map_err(|e| format!("starting the metrics listener on {listen}: {e}"))
}

/// A message to a peer was dropped.
pub fn peer_message_dropped(reason: &'static str) {
    counter!("cairn_transport_messages_dropped_total", "reason" => reason).increment(1);
}

/// Bytes of frames written to peers.
pub fn transport_bytes_sent(bytes: usize) {
    counter!("cairn_transport_sent_bytes_total").increment(bytes as u64);
}

/// Bytes of frames read from peers and clients.
pub fn transport_bytes_received(bytes: usize) {
    counter!("cairn_transport_received_bytes_total").increment(bytes as u64);
}

/// A frame broke a protocol rule and its connection was closed.
pub fn frame_rejected(reason: &'static str) {
    counter!("cairn_transport_frames_rejected_total", "reason" => reason).increment(1);
}

/// A connection attempt failed the TLS handshake (no certificate, wrong CA, …) or was refused.
pub fn connection_refused(reason: &'static str) {
    counter!("cairn_transport_connections_refused_total", "reason" => reason).increment(1);
}

/// Open connections.
pub fn connections_open(delta: f64) {
    gauge!("cairn_transport_connections_open").increment(delta);
}

/// One group-commit write: how long it took, whether synced, how many entries and bytes.
pub fn storage_write(elapsed: Duration, synced: bool, entries: usize, bytes: usize) {
    if synced {
        histogram!("cairn_storage_fsync_seconds").record(elapsed.as_secs_f64());
    }
    histogram!("cairn_storage_batch_entries").record(entries as f64);
    histogram!("cairn_storage_batch_bytes").record(bytes as f64);
}

/// The leader of a shard changed (as this replica sees it).
pub fn leader_changed(shard: ShardId) {
    counter!("cairn_raft_leader_changes_total", "shard" => shard.0.to_string()).increment(1);
}

/// The replica's Raft state after a `Ready`.
pub fn replica_state(shard: ShardId, status: &Status, storage: &GroupStorage) {
    let shard = shard.0.to_string();
    gauge!("cairn_raft_term", "shard" => shard.clone()).set(status.hard_state.term.0 as f64);
    gauge!("cairn_raft_leader", "shard" => shard.clone()).set(status.soft_state.leader.0 as f64);
    gauge!("cairn_raft_is_leader", "shard" => shard.clone())
        .set(f64::from(u8::from(status.soft_state.role == Role::Leader)));
    gauge!("cairn_raft_commit_index", "shard" => shard.clone())
        .set(status.hard_state.commit.0 as f64);
    gauge!("cairn_raft_applied_index", "shard" => shard.clone())
        .set(storage.applied().index.0 as f64);
    gauge!("cairn_raft_last_index", "shard" => shard.clone()).set(status.last_index.0 as f64);
    gauge!("cairn_raft_first_index", "shard" => shard)
        .set(storage.truncated_index().0 as f64 + 1.0);
}

/// This host deleted its replica of `shard` (the group removed it).
pub fn replica_dropped(shard: ShardId) {
    counter!("cairn_replicas_dropped_total").increment(1);
    // Its per-shard gauges no longer describe a replica here.
    let shard = shard.0.to_string();
    gauge!("cairn_raft_leader", "shard" => shard.clone()).set(0.0);
    gauge!("cairn_raft_is_leader", "shard" => shard).set(0.0);
}

/// A campaign started (this replica became a candidate).
pub fn election_started(shard: ShardId) {
    counter!("cairn_raft_elections_total", "shard" => shard.0.to_string()).increment(1);
}

/// Groups ticked in one tick interval (quiesced groups are not).
pub fn group_ticks(groups: u64) {
    counter!("cairn_raft_group_ticks_total").increment(groups);
}

/// How many groups on this host are quiesced.
pub fn quiesced_groups(count: usize) {
    gauge!("cairn_raft_quiesced_groups").set(count as f64);
}

/// A client request finished.
pub fn request(op: &'static str, outcome: &'static str, elapsed: Duration) {
    counter!("cairn_requests_total", "op" => op, "outcome" => outcome).increment(1);
    histogram!("cairn_request_duration_seconds", "op" => op, "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// The outcome label of a request.
pub fn outcome(error: Option<&ApiError>) -> &'static str {
    error.map_or("ok", ApiError::kind)
}

/// A heartbeat to the manager finished (`outcome`: ok or failed).
pub fn heartbeat(outcome: &'static str) {
    counter!("cairn_manager_heartbeats_total", "outcome" => outcome).increment(1);
}
