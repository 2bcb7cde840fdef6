//! The manager's Prometheus metrics (exported by the node's `/metrics` listener, next to the
//! catalog group's Raft metrics).

use cairn_wire::catalog::{HostState, NamespaceState, ShardState};
use metrics::{counter, gauge};

use crate::catalog::Catalog;

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
    for state in [HostState::Up, HostState::Down] {
        let n = catalog.hosts.values().filter(|h| h.state == state).count();
        gauge!("cairn_manager_hosts", "state" => state.to_string()).set(n as f64);
    }
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
