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
    /// Where its replicas go.
    pub placement: PlacementPolicy,
    /// Its commit rule and leader policy.
    pub policy: ShardPolicy,
    /// The home site of the namespaces it takes (`None`: namespaces without one).
    pub home_site: Option<String>,
    /// Whether its replicas run the policy in force (the manager pushes it to the shard and
    /// records when the shard has applied it).
    pub policy_applied: bool,
    /// The replica being replaced, when one is.
    pub replacing: Option<Replacement>,
}

/// A replica the manager is replacing: `old` sits on a host that has been down too long, `new`
/// joins the group as a learner, catches up, and takes `old`'s place as a voter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replacement {
    /// The replica leaving (its host is down).
    pub old: NodeId,
    /// The replica joining.
    pub new: NodeId,
}

impl fmt::Display for Replacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.old.0, self.new.0)
    }
}

/// The most replicas a shard may have.
pub const REPLICAS_MAX: u32 = 9;
/// The most required sites of a placement policy.
pub const REQUIRED_SITES_MAX: usize = 8;

/// How many replicas a shard gets, and in which sites.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PlacementPolicy {
    /// How many replicas (voters) a shard gets: 1 to [`REPLICAS_MAX`].
    pub replicas: u32,
    /// The fewest replicas each required site gets.
    pub min_per_site: u32,
    /// The sites that must hold replicas, sorted and without duplicates. Empty: none is
    /// required, and replicas spread over every site with room.
    pub required_sites: Vec<String>,
}

impl Default for PlacementPolicy {
    fn default() -> Self {
        Self {
            replicas: 3,
            min_per_site: 1,
            required_sites: Vec::new(),
        }
    }
}

impl PlacementPolicy {
    /// Checks the policy: replica count, site labels, and that the required sites' minimums fit
    /// in the replica count. Sorts and deduplicates nothing: duplicates are an error.
    pub fn validate(&self) -> Result<(), String> {
        if self.replicas == 0 || self.replicas > REPLICAS_MAX {
            return Err(format!(
                "replicas must be 1 to {REPLICAS_MAX}, got {}",
                self.replicas
            ));
        }
        if self.required_sites.len() > REQUIRED_SITES_MAX {
            return Err(format!(
                "at most {REQUIRED_SITES_MAX} required sites, got {}",
                self.required_sites.len()
            ));
        }
        for site in &self.required_sites {
            validate_site(site)?;
        }
        if self.required_sites.windows(2).any(|w| w[0] >= w[1]) {
            return Err("required sites must be sorted and distinct".into());
        }
        let needed = u64::from(self.min_per_site) * self.required_sites.len() as u64;
        if needed > u64::from(self.replicas) {
            return Err(format!(
                "{} required sites with at least {} replicas each need {needed} replicas, more \
                 than the {} a shard gets",
                self.required_sites.len(),
                self.min_per_site,
                self.replicas
            ));
        }
        Ok(())
    }
}

impl fmt::Display for PlacementPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} replicas", self.replicas)?;
        if !self.required_sites.is_empty() {
            write!(
                f,
                ", at least {} in each of {}",
                self.min_per_site,
                self.required_sites.join(",")
            )?;
        }
        Ok(())
    }
}

/// When a shard acknowledges a write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CommitPolicy {
    /// Durable on a majority of the replicas.
    #[default]
    Majority,
    /// Durable on a majority and on at least one replica in every required site of the
    /// shard's placement (every site holding a replica, when none is required).
    MajorityAllSites,
}

impl fmt::Display for CommitPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Majority => "majority",
            Self::MajorityAllSites => "majority+all-sites",
        })
    }
}

impl std::str::FromStr for CommitPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "majority" => Ok(Self::Majority),
            "majority+all-sites" => Ok(Self::MajorityAllSites),
            other => Err(format!(
                "unknown commit rule {other:?}: use majority or majority+all-sites"
            )),
        }
    }
}

/// Which replica leads a shard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LeaderPreference {
    /// Any replica.
    #[default]
    Any,
    /// A replica in this site whenever one is healthy and caught up: leadership moves there
    /// (by leader transfer) and stays.
    Preferred(String),
    /// Only this node ever leads (Arakoon's forced master); writes fail fast while it is down.
    Forced(NodeId),
}

impl fmt::Display for LeaderPreference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::Preferred(site) => write!(f, "preferred({site})"),
            Self::Forced(node) => write!(f, "forced({})", node.0),
        }
    }
}

impl std::str::FromStr for LeaderPreference {
    type Err = String;

    /// `any`, `preferred(SITE)` or `forced(NODE_ID)`.
    fn from_str(s: &str) -> Result<Self, String> {
        let usage =
            || format!("unknown leader policy {s:?}: use any, preferred(SITE) or forced(NODE_ID)");
        if s == "any" {
            return Ok(Self::Any);
        }
        let inner = |prefix: &str| {
            s.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(')'))
                .map(str::to_owned)
        };
        if let Some(site) = inner("preferred(") {
            validate_site(&site)?;
            return Ok(Self::Preferred(site));
        }
        if let Some(node) = inner("forced(") {
            let id: u64 = node
                .parse()
                .map_err(|_| format!("forced({node}): the node id must be a number"))?;
            if id == 0 {
                return Err("forced(0): node ids start at 1".into());
            }
            return Ok(Self::Forced(NodeId(id)));
        }
        Err(usage())
    }
}

/// A shard's replication policy, in site terms.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShardPolicy {
    /// When writes are acknowledged.
    pub commit: CommitPolicy,
    /// Who leads.
    pub leader: LeaderPreference,
}

impl fmt::Display for ShardPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "commit {}, leader {}", self.commit, self.leader)
    }
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
    /// The site it should be served from, when it has one: its shard prefers a leader there.
    pub home_site: Option<String>,
    /// The placement it asked for (`None`: the cluster default).
    pub placement: Option<PlacementPolicy>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

/// The catalog's policies: the cluster's defaults for new shards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policies {
    /// How many namespaces a shard takes before the manager adds a new shard.
    pub namespaces_per_shard: u32,
    /// Where a new shard's replicas go (a namespace may ask for another placement).
    pub placement: PlacementPolicy,
    /// The commit rule of new shards.
    pub commit: CommitPolicy,
}

impl Default for Policies {
    fn default() -> Self {
        Self {
            namespaces_per_shard: 50,
            placement: PlacementPolicy::default(),
            commit: CommitPolicy::Majority,
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
        /// Where its shard's replicas go (`None`: the cluster default).
        placement: Option<PlacementPolicy>,
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
    /// The cluster's policies.
    Policies,
    /// Replace the cluster's policies (defaults for shards created from now on).
    SetPolicies(Policies),
    /// Change a shard's commit rule and/or leader policy; answers once the shard applied it.
    SetShardPolicy {
        /// The shard.
        shard: ShardId,
        /// The new commit rule (`None`: unchanged).
        commit: Option<CommitPolicy>,
        /// The new leader policy (`None`: unchanged).
        leader: Option<LeaderPreference>,
    },
    /// The routing table, once.
    Routing,
    /// The routing table, then its changes as they happen (the stream stays open).
    Watch,
    /// The catalog's policy violations: shards below their site minimums, and broken
    /// invariants (empty: none).
    Violations,
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
            Self::Policies => "policies",
            Self::SetPolicies(_) => "set_policies",
            Self::SetShardPolicy { .. } => "set_shard_policy",
            Self::Routing => "routing",
            Self::Watch => "watch",
            Self::Violations => "violations",
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
    /// The cluster's policies.
    Policies(Policies),
    /// The whole routing table.
    Routing(RoutingTable),
    /// A change of it.
    Change(RoutingChange),
    /// The catalog's policy violations, one sentence each.
    Violations(Vec<String>),
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

    #[test]
    fn placement_policies_are_checked() {
        let policy = |replicas, min_per_site, sites: &[&str]| PlacementPolicy {
            replicas,
            min_per_site,
            required_sites: sites.iter().map(|s| s.to_string()).collect(),
        };
        policy(3, 1, &["a", "b"]).validate().unwrap();
        policy(4, 2, &["a", "b"]).validate().unwrap();
        assert!(policy(0, 1, &[]).validate().is_err());
        assert!(policy(10, 1, &[]).validate().is_err());
        assert!(
            policy(3, 2, &["a", "b"])
                .validate()
                .unwrap_err()
                .contains("need 4")
        );
        assert!(policy(3, 1, &["b", "a"]).validate().is_err());
        assert!(policy(3, 1, &["a", "a"]).validate().is_err());
        assert!(policy(3, 1, &["a b"]).validate().is_err());
    }

    #[test]
    fn policies_parse_and_print() {
        for text in ["majority", "majority+all-sites"] {
            assert_eq!(text.parse::<CommitPolicy>().unwrap().to_string(), text);
        }
        for text in ["any", "preferred(dc-2)", "forced(3)"] {
            assert_eq!(text.parse::<LeaderPreference>().unwrap().to_string(), text);
        }
        assert!("quorum".parse::<CommitPolicy>().is_err());
        for bad in [
            "preferred()",
            "preferred(a b)",
            "forced(x)",
            "forced(0)",
            "forced(1",
            "all",
        ] {
            assert!(bad.parse::<LeaderPreference>().is_err(), "{bad}");
        }
    }
}
