//! The node's Prometheus metrics: names, labels and the `/metrics` HTTP listener.
//!
//! Every metric is prefixed `cairn_`; units are in the names (`_seconds`, `_bytes`, `_total`).
//! Histograms are exported as real Prometheus histograms (buckets), so that percentiles can be
//! computed across nodes.

use std::net::SocketAddr;
use std::time::Duration;

use cairn_wire::api::{ApiError, ShardId};
use cairn_wire::frame::FrameError;
use cairn_wire::metric_spec::{MetricKind, MetricSpec};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use raft_core::{LeaderPolicy, NodeId, ProgressState, Role, Status};

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

/// Every metric a node process exports (shard-node hosts, and managers, which run a node for
/// the catalog group). `dashboards/METRICS.md` is generated from this list.
pub const SPECS: &[MetricSpec] = &[
    MetricSpec::gauge(
        "cairn_process_info",
        &["role", "site", "node", "version"],
        "Always 1: the labels say which process this is (join on instance to label other series by site).",
    ),
    MetricSpec::counter(
        "cairn_requests_total",
        &["op", "outcome"],
        "Requests served, by operation and outcome (ok, or the error kind).",
    ),
    MetricSpec::histogram(
        "cairn_request_duration_seconds",
        &["op", "outcome"],
        "How long requests took to answer, by operation and outcome.",
    ),
    MetricSpec::gauge(
        "cairn_raft_term",
        &["shard"],
        "The replica's current Raft term.",
    ),
    MetricSpec::gauge(
        "cairn_raft_leader",
        &["shard"],
        "The node id of the leader this replica knows of (0: none).",
    ),
    MetricSpec::gauge(
        "cairn_raft_is_leader",
        &["shard"],
        "1 on the replica that leads the shard, 0 on the others.",
    ),
    MetricSpec::gauge(
        "cairn_raft_commit_index",
        &["shard"],
        "The highest log index this replica knows to be committed.",
    ),
    MetricSpec::gauge(
        "cairn_raft_applied_index",
        &["shard"],
        "The highest log index this replica has applied.",
    ),
    MetricSpec::gauge(
        "cairn_raft_last_index",
        &["shard"],
        "The last index in this replica's log.",
    ),
    MetricSpec::gauge(
        "cairn_raft_first_index",
        &["shard"],
        "The first index still in this replica's log (older entries are in the snapshot).",
    ),
    MetricSpec::gauge(
        "cairn_raft_apply_lag_entries",
        &["shard"],
        "Committed entries this replica has not applied yet.",
    ),
    MetricSpec::gauge(
        "cairn_raft_replication_lag_entries",
        &["shard"],
        "On the leader: how many entries the furthest-behind member lacks (0 on followers).",
    ),
    MetricSpec::gauge(
        "cairn_raft_voters",
        &["shard"],
        "Voters in the configuration this replica applied.",
    ),
    MetricSpec::gauge(
        "cairn_raft_learners",
        &["shard"],
        "Learners (replicas catching up to join) in the configuration this replica applied.",
    ),
    MetricSpec::gauge(
        "cairn_raft_leader_policy_satisfied",
        &["shard"],
        "0 while the leader this replica knows of is not where the shard's leader policy wants it (preferred site, forced node), else 1.",
    ),
    MetricSpec::counter(
        "cairn_raft_leader_changes_total",
        &["shard"],
        "Changes of leader this replica saw.",
    ),
    MetricSpec::counter(
        "cairn_raft_elections_total",
        &["shard"],
        "Campaigns this replica started.",
    ),
    MetricSpec::counter(
        "cairn_raft_group_ticks_total",
        &[],
        "Raft group ticks (quiesced groups are not ticked).",
    ),
    MetricSpec::gauge(
        "cairn_raft_quiesced_groups",
        &[],
        "Idle groups on this host that are not ticked.",
    ),
    MetricSpec::gauge("cairn_replicas", &[], "Replicas this host holds."),
    MetricSpec::counter(
        "cairn_replicas_dropped_total",
        &[],
        "Replicas deleted because their group removed them (after a replacement).",
    ),
    MetricSpec::counter(
        "cairn_snapshot_transfers_total",
        &["shard", "direction", "outcome"],
        "Snapshots sent to or received from peers (direction sent or received; outcome ok or failed).",
    ),
    MetricSpec::histogram(
        "cairn_snapshot_transfer_seconds",
        &["direction"],
        "How long snapshot transfers took.",
    ),
    MetricSpec::histogram(
        "cairn_storage_fsync_seconds",
        &[],
        "How long synced group-commit writes to RocksDB took.",
    ),
    MetricSpec::histogram(
        "cairn_storage_batch_entries",
        &[],
        "Log entries and state changes per group-commit write.",
    ),
    MetricSpec::histogram(
        "cairn_storage_batch_bytes",
        &[],
        "Bytes per group-commit write.",
    ),
    MetricSpec::gauge(
        "cairn_storage_disk_available_bytes",
        &[],
        "Bytes available to the node on the file system of its data directory.",
    ),
    MetricSpec::gauge(
        "cairn_storage_disk_total_bytes",
        &[],
        "Size of the file system of the node's data directory.",
    ),
    MetricSpec::counter(
        "cairn_transport_messages_dropped_total",
        &["reason"],
        "Messages to or from peers that were dropped, by reason.",
    ),
    MetricSpec::counter(
        "cairn_transport_sent_bytes_total",
        &[],
        "Bytes of frames written to peers.",
    ),
    MetricSpec::counter(
        "cairn_transport_received_bytes_total",
        &[],
        "Bytes of frames read from peers and clients.",
    ),
    MetricSpec::counter(
        "cairn_transport_frames_rejected_total",
        &["reason"],
        "Frames that broke a protocol rule (their connection was closed).",
    ),
    MetricSpec::counter(
        "cairn_transport_connections_refused_total",
        &["reason"],
        "Connections refused (failed TLS handshake, no cluster certificate, limits).",
    ),
    MetricSpec::gauge(
        "cairn_transport_connections_open",
        &[],
        "Open QUIC connections.",
    ),
    MetricSpec::counter(
        "cairn_heartbeats_total",
        &["outcome"],
        "Heartbeats this host sent to the manager (ok or failed).",
    ),
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
        .map_err(|e| format!("starting the metrics listener on {listen}: {e}"))?;
    describe(SPECS);
    // Event counters exist from the start (at 0), so that dashboards and alerts see them
    // before the first event.
    counter!("cairn_replicas_dropped_total").increment(0);
    counter!("cairn_raft_group_ticks_total").increment(0);
    counter!("cairn_transport_sent_bytes_total").increment(0);
    counter!("cairn_transport_received_bytes_total").increment(0);
    for reason in DROP_REASONS {
        counter!("cairn_transport_messages_dropped_total", "reason" => *reason).increment(0);
    }
    for reason in REFUSE_REASONS {
        counter!("cairn_transport_connections_refused_total", "reason" => *reason).increment(0);
    }
    for reason in FrameError::REASONS {
        counter!("cairn_transport_frames_rejected_total", "reason" => *reason).increment(0);
    }
    for outcome in ["ok", "failed"] {
        counter!("cairn_heartbeats_total", "outcome" => outcome).increment(0);
    }
    Ok(())
}

/// Hands the `# HELP` text of `specs` to the recorder.
pub fn describe(specs: &[MetricSpec]) {
    for spec in specs {
        match spec.kind {
            MetricKind::Counter => describe_counter!(spec.name, spec.help),
            MetricKind::Gauge => describe_gauge!(spec.name, spec.help),
            MetricKind::Histogram => describe_histogram!(spec.name, spec.help),
        }
    }
}

/// What this process is: `role` (shard-node, manager), its site and node id.
pub fn process_info(role: &'static str, site: &str, node: NodeId) {
    gauge!(
        "cairn_process_info",
        "role" => role,
        "site" => site.to_owned(),
        "node" => node.0.to_string(),
        "version" => env!("CARGO_PKG_VERSION"),
    )
    .set(1.0);
}

/// The file system of the data directory: available and total bytes.
pub fn disk(available: u64, total: u64) {
    gauge!("cairn_storage_disk_available_bytes").set(available as f64);
    gauge!("cairn_storage_disk_total_bytes").set(total as f64);
}

/// How many replicas this host holds.
pub fn replicas(count: usize) {
    gauge!("cairn_replicas").set(count as f64);
}

/// A snapshot transfer ended (`direction`: sent or received).
pub fn snapshot_transfer(shard: ShardId, direction: &'static str, ok: bool, elapsed: Duration) {
    counter!(
        "cairn_snapshot_transfers_total",
        "shard" => shard.0.to_string(),
        "direction" => direction,
        "outcome" => if ok { "ok" } else { "failed" },
    )
    .increment(1);
    histogram!("cairn_snapshot_transfer_seconds", "direction" => direction)
        .record(elapsed.as_secs_f64());
}

/// Why messages to or from peers are dropped.
const DROP_REASONS: &[&str] = &[
    "misaddressed",
    "inline_snapshot",
    "host_queue_full",
    "unknown_peer",
    "queue_full",
    "peer_unreachable",
];
/// Why connections are refused.
const REFUSE_REASONS: &[&str] = &[
    "connection_limit",
    "handshake",
    "no_role",
    "peer_stream_from_client",
    "peer_identity",
];

/// A message to a peer was dropped.
pub fn peer_message_dropped(reason: &'static str) {
    debug_assert!(DROP_REASONS.contains(&reason), "undeclared reason {reason}");
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
    debug_assert!(
        FrameError::REASONS.contains(&reason),
        "undeclared reason {reason}"
    );
    counter!("cairn_transport_frames_rejected_total", "reason" => reason).increment(1);
}

/// A connection attempt failed the TLS handshake (no certificate, wrong CA, …) or was refused.
pub fn connection_refused(reason: &'static str) {
    debug_assert!(
        REFUSE_REASONS.contains(&reason),
        "undeclared reason {reason}"
    );
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
pub fn replica_state(
    shard: ShardId,
    status: &Status,
    storage: &GroupStorage,
    leader_policy: &LeaderPolicy,
) {
    let shard = shard.0.to_string();
    let leading = status.soft_state.role == Role::Leader;
    let applied = storage.applied().index;
    gauge!("cairn_raft_apply_lag_entries", "shard" => shard.clone())
        .set(status.hard_state.commit.0.saturating_sub(applied.0) as f64);
    // The leader's view of each member; a member still catching up by snapshot lacks it all.
    let lag = status
        .progress
        .iter()
        .filter(|(id, _)| **id != status.id)
        .map(|(_, (matched, _, state))| match state {
            ProgressState::Snapshot { .. } => status.last_index.0,
            _ => status.last_index.0.saturating_sub(matched.0),
        })
        .max()
        .unwrap_or(0);
    gauge!("cairn_raft_replication_lag_entries", "shard" => shard.clone()).set(if leading {
        lag as f64
    } else {
        0.0
    });
    gauge!("cairn_raft_voters", "shard" => shard.clone())
        .set(status.conf_state.voters.len() as f64);
    gauge!("cairn_raft_learners", "shard" => shard.clone())
        .set(status.conf_state.learners.len() as f64);
    let leader = status.soft_state.leader;
    let satisfied = match leader_policy {
        _ if leader == NodeId::NONE => true,
        LeaderPolicy::Any => true,
        LeaderPolicy::Preferred(nodes) => nodes.contains(&leader),
        LeaderPolicy::Forced(node) => *node == leader,
    };
    gauge!("cairn_raft_leader_policy_satisfied", "shard" => shard.clone())
        .set(f64::from(u8::from(satisfied)));
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
    counter!("cairn_heartbeats_total", "outcome" => outcome).increment(1);
}
