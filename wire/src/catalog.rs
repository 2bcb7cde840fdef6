//! The manager's API: the catalog (hosts, shards, namespaces, policies) and the routing data
//! routers cache.
//!
//! Requests travel as [`crate::api::Request::Manager`] and are answered with
//! [`crate::api::Response::Manager`] (or an error). Only the manager leader answers; the others
//! say [`crate::api::ApiError::NotLeader`] with the leader's address.
//!
//! [`ManagerRequest::Watch`] keeps its stream open: the leader first sends the whole
//! [`RoutingTable`], then one [`RoutingChange`] per catalog change, each with the routing
//! version it brings the table to. The stream ends when the manager stops leading; the watcher
//! then reconnects to the new leader and starts over from a full table.

use std::fmt;

use raft_core::NodeId;
use serde::{Deserialize, Serialize};

use crate::api::{Epoch, Namespace, ReplicaAddr, ShardId};

/// The longest site label, in bytes.
pub const SITE_LEN_MAX_BYTES: usize = 64;

/// Checks a site label: 1 to [`SITE_LEN_MAX_BYTES`] bytes of `[A-Za-z0-9_.-]`.
pub fn validate_site(site: &str) -> Result<(), String> {
    if site.is_empty() || site.len() > SITE_LEN_MAX_BYTES {
        return Err(format!(
            "site must be 1 to {SITE_LEN_MAX_BYTES} bytes, got {}",
            site.len()
        ));
    }
    if let Some(c) = site
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "site {site:?} contains {c:?}; allowed are A-Z a-z 0-9 _ . -"
        ));
    }
    Ok(())
}

/// Whether a host is heard from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostState {
    /// It heartbeats.
    Up,
    /// It stopped heartbeating (it is kept in the catalog, and comes back up when it
    /// heartbeats again).
    Down,
}

impl fmt::Display for HostState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Up => "up",
            Self::Down => "down",
        })
    }
}

/// A shard-node host, as the catalog knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Its node id.
    pub id: NodeId,
    /// Its site (datacenter) label.
    pub site: String,
    /// Where it listens.
    pub addr: String,
    /// How many replicas it may hold.
    pub capacity_replicas: u32,
    /// Up or down.
    pub state: HostState,
    /// How many replicas the catalog placed on it.
    pub replicas: u32,
    /// Milliseconds since the manager leader last heard its heartbeat (`None`: not since this
    /// leader took over).
    pub last_heartbeat_ms_ago: Option<u64>,
}

/// A host's periodic report to the manager; the first one registers the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Its node id.
    pub id: NodeId,
    /// Its site label.
    pub site: String,
    /// Where it listens.
    pub addr: String,
    /// How many replicas it may hold.
    pub capacity_replicas: u32,
    /// The shards it hosts a replica of.
    pub replicas: Vec<ShardId>,
}

/// Where a shard is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardState {
    /// Placed; its replicas are being created and it has no leader yet.
    Creating,
    /// Serving.
    Active,
}

impl fmt::Display for ShardState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Creating => "creating",
            Self::Active => "active",
        })
    }
}

/// A shard, as the catalog knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Its id.
    pub id: ShardId,
    /// Its replicas.
    pub replicas: Vec<ReplicaAddr>,
    /// Creating or active.
    pub state: ShardState,
    /// How many namespaces are assigned to it.
    pub namespaces: u32,
}

/// Where a namespace is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespaceState {
    /// Assigned; its shard is being told (and possibly created).
    Creating,
    /// Serving.
    Active,
    /// Its data is being removed; the name is not reusable yet.
    Deleting,
}

impl fmt::Display for NamespaceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Creating => "creating",
            Self::Active => "active",
            Self::Deleting => "deleting",
        })
    }
}

/// A namespace, as the catalog knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceInfo {
    /// Its name.
    pub name: Namespace,
    /// Its id (never reused, even when the name is).
    pub id: u64,
    /// The shard it is assigned to.
    pub shard: ShardId,
    /// The epoch of that assignment.
    pub epoch: Epoch,
    /// Its state.
    pub state: NamespaceState,
    /// The site it should be served from, when it has one.
    pub home_site: Option<String>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

/// The catalog's policies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policies {
    /// How many namespaces a shard takes before the manager adds a new shard.
    pub namespaces_per_shard: u32,
    /// How many replicas a new shard gets.
    pub replicas_per_shard: u32,
}

impl Default for Policies {
    fn default() -> Self {
        Self {
            namespaces_per_shard: 50,
            replicas_per_shard: 3,
        }
    }
}

/// Where a shard's replicas are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRoute {
    /// The shard.
    pub shard: ShardId,
    /// Its replicas.
    pub replicas: Vec<ReplicaAddr>,
}

/// Where a namespace is served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceRoute {
    /// The namespace.
    pub name: Namespace,
    /// Its shard.
    pub shard: ShardId,
    /// The epoch of the assignment.
    pub epoch: Epoch,
}

/// Everything a router needs: the active namespaces and their shards' replicas.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingTable {
    /// The routing version this table is at.
    pub version: u64,
    /// Every active shard.
    pub shards: Vec<ShardRoute>,
    /// Every active namespace.
    pub namespaces: Vec<NamespaceRoute>,
}

/// A change of the routing table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingChange {
    /// The routing version after the change.
    pub version: u64,
    /// Shards added or changed.
    pub shards: Vec<ShardRoute>,
    /// Namespaces added or changed.
    pub namespaces: Vec<NamespaceRoute>,
    /// Namespaces that are no longer served.
    pub removed: Vec<Namespace>,
}

/// A request to the manager.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManagerRequest {
    /// A host's heartbeat (registers it the first time). Only nodes may send it.
    Heartbeat(Heartbeat),
    /// Create a namespace; answers when it is active (its shard may have been created for it).
    CreateNamespace {
        /// Its name.
        name: Namespace,
        /// The site it should be served from.
        home_site: Option<String>,
    },
    /// Delete a namespace and its data; answers when it is gone and the name is reusable.
    DeleteNamespace {
        /// Its name.
        name: Namespace,
    },
    /// Every namespace.
    ListNamespaces,
    /// One namespace.
    ShowNamespace {
        /// Its name.
        name: Namespace,
    },
    /// Every shard.
    ListShards,
    /// Every host.
    ListHosts,
    /// The routing table, once.
    Routing,
    /// The routing table, then its changes as they happen (the stream stays open).
    Watch,
}

impl ManagerRequest {
    /// A short name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Heartbeat(_) => "heartbeat",
            Self::CreateNamespace { .. } => "create_namespace",
            Self::DeleteNamespace { .. } => "delete_namespace",
            Self::ListNamespaces => "list_namespaces",
            Self::ShowNamespace { .. } => "show_namespace",
            Self::ListShards => "list_shards",
            Self::ListHosts => "list_hosts",
            Self::Routing => "routing",
            Self::Watch => "watch",
        }
    }

    /// Whether only nodes may send it.
    pub fn is_admin(&self) -> bool {
        matches!(self, Self::Heartbeat(_))
    }
}

/// The manager's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManagerResponse {
    /// Done.
    Done,
    /// One namespace.
    Namespace(NamespaceInfo),
    /// Namespaces.
    Namespaces(Vec<NamespaceInfo>),
    /// Shards.
    Shards(Vec<ShardInfo>),
    /// Hosts.
    Hosts(Vec<HostInfo>),
    /// The whole routing table.
    Routing(RoutingTable),
    /// A change of it.
    Change(RoutingChange),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_labels_are_checked() {
        validate_site("dc-1.eu_west").unwrap();
        assert!(validate_site("").is_err());
        assert!(validate_site("dc 1").unwrap_err().contains("' '"));
        assert!(validate_site(&"x".repeat(65)).is_err());
    }
}
