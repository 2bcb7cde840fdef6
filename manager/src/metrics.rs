//! The manager's Prometheus metrics (exported by the node's `/metrics` listener, next to the
//! catalog group's Raft metrics).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use cairn_wire::catalog::{HostState, NamespaceState, ShardState};
use cairn_wire::metric_spec::MetricSpec;
use metrics::{counter, gauge, histogram};

use crate::catalog::Catalog;

/// Every metric the manager adds to its node's (see `shard_node::metrics::SPECS`). The catalog
/// gauges are set by the leading manager; the others report 0.
pub const SPECS: &[MetricSpec] = &[
    MetricSpec::gauge(
        "cairn_manager_is_leader",
        &[],
        "1 on the manager that leads the catalog, 0 on the others.",
    ),
    MetricSpec::gauge(
        "cairn_manager_routing_version",
        &[],
        "The catalog's routing version (the number of changes applied).",
    ),
    MetricSpec::gauge(
        "cairn_manager_namespaces",
        &["state"],
        "Namespaces by state.",
    ),
    MetricSpec::gauge("cairn_manager_shards", &["state"], "Shards by state."),
    MetricSpec::gauge(
        "cairn_manager_hosts",
        &["site", "state"],
        "Hosts by site and state (up, down).",
    ),
    MetricSpec::gauge(
        "cairn_manager_shards_degraded",
        &["reason"],
        "Shards short of their policy: replica_down (a replica's host is down), site_minimum (a required site has fewer up replicas than its minimum), policy_pending (replicas do not run the policy in force yet).",
    ),
    MetricSpec::gauge(
        "cairn_manager_namespaces_per_shard",
        &["shard"],
        "Namespaces assigned to each shard.",
    ),
    MetricSpec::counter(
        "cairn_manager_namespaces_created_total",
        &[],
        "Namespaces recorded in the catalog.",
    ),
    MetricSpec::counter(
        "cairn_manager_shards_created_total",
        &[],
        "Shards that became active.",
    ),
    MetricSpec::counter(
        "cairn_manager_reconcile_passes_total",
        &[],
        "Reconciler passes run by the leading manager.",
    ),
    MetricSpec::histogram(
        "cairn_manager_reconcile_seconds",
        &[],
        "How long reconciler passes took.",
    ),
    MetricSpec::counter(
        "cairn_manager_reconcile_errors_total",
        &[],
        "Reconciler passes that failed (they are retried).",
    ),
    MetricSpec::counter(
        "cairn_manager_replacements_total",
        &["stage"],
        "Replica replacements planned, done, or abandoned (the new host went down first).",
    ),
    MetricSpec::gauge(
        "cairn_manager_replacing",
        &[],
        "Replica replacements in progress.",
    ),
    MetricSpec::gauge(
        "cairn_manager_watchers",
        &[],
        "Routers watching the routing table.",
    ),
];

/// Registers the event counters at 0, so that rates exist before the first event.
pub fn register() {
    counter!("cairn_manager_namespaces_created_total").increment(0);
    counter!("cairn_manager_shards_created_total").increment(0);
    counter!("cairn_manager_reconcile_passes_total").increment(0);
    counter!("cairn_manager_reconcile_errors_total").increment(0);
    for stage in ["planned", "done", "abandoned"] {
        counter!("cairn_manager_replacements_total", "stage" => stage).increment(0);
    }
    gauge!("cairn_manager_replacing").set(0.0);
    gauge!("cairn_manager_watchers").set(0.0);
}

/// A reconciler pass ended.
pub fn reconcile_pass(elapsed: Duration) {
    counter!("cairn_manager_reconcile_passes_total").increment(1);
    histogram!("cairn_manager_reconcile_seconds").record(elapsed.as_secs_f64());
}

/// Whether this manager leads the catalog (1) or not (0).
pub fn is_leader(leads: bool) {
    gauge!("cairn_manager_is_leader").set(if leads { 1.0 } else { 0.0 });
}

/// The catalog's size and version, as this leader holds it.
pub fn catalog(catalog: &Catalog) {
    gauge!("cairn_manager_routing_version").set(catalog.version as f64);
    for state in [
        NamespaceState::Creating,
        NamespaceState::Active,
        NamespaceState::Deleting,
    ] {
        let n = catalog
            .namespaces
            .values()
            .filter(|ns| ns.state == state)
            .count();
        gauge!("cairn_manager_namespaces", "state" => state.to_string()).set(n as f64);
    }
    for state in [ShardState::Creating, ShardState::Active] {
        let n = catalog.shards.values().filter(|s| s.state == state).count();
        gauge!("cairn_manager_shards", "state" => state.to_string()).set(n as f64);
    }
    // Both states of every site, so that a site whose hosts all recovered reports 0 down.
    let mut hosts: BTreeMap<(&str, &'static str), usize> = BTreeMap::new();
    for host in catalog.hosts.values() {
        for state in [HostState::Up, HostState::Down] {
            let label = if state == HostState::Up { "up" } else { "down" };
            *hosts.entry((host.site.as_str(), label)).or_default() +=
                usize::from(host.state == state);
        }
    }
    let mut reported = REPORTED.lock().unwrap_or_else(|e| e.into_inner());
    for ((site, state), n) in hosts {
        gauge!("cairn_manager_hosts", "site" => site.to_owned(), "state" => state).set(n as f64);
        reported.hosts.insert((site.to_owned(), state));
    }
    for (reason, n) in catalog.degraded() {
        gauge!("cairn_manager_shards_degraded", "reason" => reason).set(n as f64);
    }
    for (shard, n) in catalog.namespace_counts() {
        reported.shards.insert(shard.0);
        gauge!("cairn_manager_namespaces_per_shard", "shard" => shard.0.to_string())
            .set(f64::from(n));
    }
}

/// The label sets of the catalog gauges this manager reported, so that it can zero them when
/// it stops leading.
#[derive(Default)]
struct Reported {
    hosts: BTreeSet<(String, &'static str)>,
    shards: BTreeSet<u64>,
}

static REPORTED: Mutex<Reported> = Mutex::new(Reported {
    hosts: BTreeSet::new(),
    shards: BTreeSet::new(),
});

/// This manager stopped leading: the catalog gauges are the leader's to report, so that sums
/// and maxima over all managers are the leader's figures.
pub fn clear_catalog() {
    let reported = std::mem::take(&mut *REPORTED.lock().unwrap_or_else(|e| e.into_inner()));
    for (site, state) in reported.hosts {
        gauge!("cairn_manager_hosts", "site" => site, "state" => state).set(0.0);
    }
    for shard in reported.shards {
        gauge!("cairn_manager_namespaces_per_shard", "shard" => shard.to_string()).set(0.0);
    }
    gauge!("cairn_manager_routing_version").set(0.0);
    for state in ["creating", "active", "deleting"] {
        gauge!("cairn_manager_namespaces", "state" => state).set(0.0);
    }
    for state in ["creating", "active"] {
        gauge!("cairn_manager_shards", "state" => state).set(0.0);
    }
    for reason in ["replica_down", "site_minimum", "policy_pending"] {
        gauge!("cairn_manager_shards_degraded", "reason" => reason).set(0.0);
    }
    gauge!("cairn_manager_replacing").set(0.0);
}

/// A namespace was recorded in the catalog.
pub fn namespace_created() {
    counter!("cairn_manager_namespaces_created_total").increment(1);
}

/// A shard became active.
pub fn shard_created() {
    counter!("cairn_manager_shards_created_total").increment(1);
}

/// A replica replacement was `planned`, is `done`, or was `abandoned` (its new host went
/// down before the new replica could vote).
pub fn replacement(stage: &'static str) {
    counter!("cairn_manager_replacements_total", "stage" => stage).increment(1);
}

/// Replicas being replaced now.
pub fn replacing(count: usize) {
    gauge!("cairn_manager_replacing").set(count as f64);
}

/// A reconciler pass failed (it is retried).
pub fn reconcile_error() {
    counter!("cairn_manager_reconcile_errors_total").increment(1);
}

/// A routing watcher connected (+1) or left (-1).
pub fn watchers(delta: f64) {
    gauge!("cairn_manager_watchers").increment(delta);
}
