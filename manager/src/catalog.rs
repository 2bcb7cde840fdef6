//! The catalog: hosts, shards, namespaces and policies, as pure data and pure decisions.
//!
//! The catalog is stored in the manager's own Raft group as key-value entries of one namespace
//! ([`CATALOG_NAMESPACE`]): one entry per host, shard and namespace, plus the routing version and
//! the id counters. Every change is one atomic sequence that first asserts the routing version it
//! was computed from and then sets the next one, so changes apply in log order and a change
//! computed from a stale view (a deposed leader, a lost answer) fails its assertion instead of
//! overwriting a newer one. [`Catalog::steps`] builds that sequence; [`Catalog::apply`] applies
//! the same changes in memory once the write succeeded.
//!
//! Decisions are pure functions of the catalog: which shard a new namespace goes to
//! ([`Catalog::plan_namespace`]) and where a new shard's replicas go ([`Catalog::place`]).

use std::collections::{BTreeMap, BTreeSet};

use cairn_wire::api::{ApiError, Epoch, GroupPolicy, Namespace, ReplicaAddr, ShardId, Step};
use cairn_wire::catalog::{
    CommitPolicy, HostInfo, HostState, LeaderPreference, NamespaceInfo, NamespaceRoute,
    NamespaceState, PlacementPolicy, Policies, Replacement, RoutingChange, RoutingTable, ShardInfo,
    ShardPolicy, ShardRoute, ShardState,
};
use raft_core::{CommitRule, LeaderPolicy, NodeId};
use serde::{Deserialize, Serialize};

/// The namespace of the manager's Raft group that holds the catalog.
pub const CATALOG_NAMESPACE: &str = "catalog";
/// The shard id of the catalog group on manager nodes.
pub const CATALOG_SHARD: ShardId = ShardId(0);

const KEY_VERSION: &[u8] = b"v";
const KEY_COUNTERS: &[u8] = b"c";
const KEY_POLICIES: &[u8] = b"p";
const PREFIX_HOST: &[u8] = b"h/";
const PREFIX_SHARD: &[u8] = b"s/";
const PREFIX_NAMESPACE: &[u8] = b"n/";

/// A host as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Its node id.
    pub id: NodeId,
    /// Its site.
    pub site: String,
    /// Where it listens.
    pub addr: String,
    /// How many replicas it may hold.
    pub capacity_replicas: u32,
    /// Up or down.
    pub state: HostState,
}

/// A shard as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// Its id.
    pub id: ShardId,
    /// Its replicas (voters), chosen by [`Catalog::place`]; a replacement swaps one.
    pub replicas: Vec<NodeId>,
    /// Creating or active.
    pub state: ShardState,
    /// Where its replicas go (fixed at placement; replacements honour it too).
    pub placement: PlacementPolicy,
    /// The home site of the namespaces it takes (`None`: namespaces without one).
    pub home_site: Option<String>,
    /// Its commit rule and leader policy (operators change them).
    pub policy: ShardPolicy,
    /// The group policy its replicas last confirmed applying (`None`: none yet).
    pub applied: Option<GroupPolicy>,
    /// The replica being replaced, when one is (see [`Catalog::place_replacement`]).
    pub replacing: Option<Replacement>,
}

/// A namespace as stored: exactly what the API shows of it.
pub type NamespaceRecord = NamespaceInfo;

/// The id counters: ids are never reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// The next shard id.
    pub next_shard: u64,
    /// The next namespace id.
    pub next_namespace: u64,
}

/// One change of the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Add or replace a host.
    Host(HostRecord),
    /// Add or replace a shard.
    Shard(ShardRecord),
    /// Add or replace a namespace.
    Namespace(NamespaceRecord),
    /// Remove a namespace (its name becomes reusable).
    RemoveNamespace(Namespace),
    /// Set the policies.
    Policies(Policies),
    /// Set the counters.
    Counters(Counters),
}

/// The whole catalog, as the manager leader holds it in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    /// The routing version: the number of changes applied.
    pub version: u64,
    /// The id counters.
    pub counters: Counters,
    /// The policies (`None` until the first leader writes them).
    pub policies: Option<Policies>,
    /// Hosts by id.
    pub hosts: BTreeMap<NodeId, HostRecord>,
    /// Shards by id.
    pub shards: BTreeMap<ShardId, ShardRecord>,
    /// Namespaces by name.
    pub namespaces: BTreeMap<Namespace, NamespaceRecord>,
}

/// A stored catalog entry that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("corrupt catalog entry {key:?}: {reason}")]
pub struct CorruptEntry {
    /// The key.
    pub key: String,
    /// Why.
    pub reason: String,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("postcard encodes plain data")
}

fn decode<T: for<'de> Deserialize<'de>>(key: &[u8], value: &[u8]) -> Result<T, CorruptEntry> {
    postcard::from_bytes(value).map_err(|e| CorruptEntry {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn keyed(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(rest);
    key
}

impl Catalog {
    /// Rebuilds the catalog from its stored entries (every key of [`CATALOG_NAMESPACE`]).
    pub fn load(entries: &[(Vec<u8>, Vec<u8>)]) -> Result<Self, CorruptEntry> {
        let mut catalog = Self::default();
        for (key, value) in entries {
            if key == KEY_VERSION {
                catalog.version = decode(key, value)?;
            } else if key == KEY_COUNTERS {
                catalog.counters = decode(key, value)?;
            } else if key == KEY_POLICIES {
                catalog.policies = Some(decode(key, value)?);
            } else if key.starts_with(PREFIX_HOST) {
                let host: HostRecord = decode(key, value)?;
                catalog.hosts.insert(host.id, host);
            } else if key.starts_with(PREFIX_SHARD) {
                let shard: ShardRecord = decode(key, value)?;
                catalog.shards.insert(shard.id, shard);
            } else if key.starts_with(PREFIX_NAMESPACE) {
                let ns: NamespaceRecord = decode(key, value)?;
                catalog.namespaces.insert(ns.name.clone(), ns);
            } else {
                return Err(CorruptEntry {
                    key: String::from_utf8_lossy(key).into_owned(),
                    reason: "unknown key".into(),
                });
            }
        }
        Ok(catalog)
    }

    /// The key of the routing version (read to check a cached catalog is current).
    pub fn version_key() -> Vec<u8> {
        KEY_VERSION.to_vec()
    }

    /// Decodes the stored routing version.
    pub fn decode_version(value: &[u8]) -> Result<u64, CorruptEntry> {
        decode(KEY_VERSION, value)
    }

    /// The atomic sequence that applies `changes` on top of this catalog's version.
    pub fn steps(&self, changes: &[Change]) -> Vec<Step> {
        let expected = (self.version > 0).then(|| encode(&self.version));
        let mut steps = vec![
            Step::Assert {
                key: KEY_VERSION.to_vec(),
                expected,
            },
            Step::Set {
                key: KEY_VERSION.to_vec(),
                value: encode(&(self.version + 1)),
            },
        ];
        for change in changes {
            steps.push(match change {
                Change::Host(h) => Step::Set {
                    key: keyed(PREFIX_HOST, &h.id.0.to_be_bytes()),
                    value: encode(h),
                },
                Change::Shard(s) => Step::Set {
                    key: keyed(PREFIX_SHARD, &s.id.0.to_be_bytes()),
                    value: encode(s),
                },
                Change::Namespace(n) => Step::Set {
                    key: keyed(PREFIX_NAMESPACE, n.name.as_str().as_bytes()),
                    value: encode(n),
                },
                Change::RemoveNamespace(name) => Step::Delete {
                    key: keyed(PREFIX_NAMESPACE, name.as_str().as_bytes()),
                },
                Change::Policies(p) => Step::Set {
                    key: KEY_POLICIES.to_vec(),
                    value: encode(p),
                },
                Change::Counters(c) => Step::Set {
                    key: KEY_COUNTERS.to_vec(),
                    value: encode(c),
                },
            });
        }
        steps
    }

    /// Applies `changes` (already written) and moves to the next version; returns what routers
    /// need to hear of it.
    pub fn apply(&mut self, changes: Vec<Change>) -> RoutingChange {
        self.version += 1;
        let mut routing = RoutingChange {
            version: self.version,
            ..RoutingChange::default()
        };
        for change in changes {
            match change {
                Change::Host(h) => {
                    let id = h.id;
                    let moved = self.hosts.get(&id).is_some_and(|old| old.addr != h.addr);
                    self.hosts.insert(id, h);
                    if moved {
                        // Routers must learn the new address of every replica on the host.
                        let shards: Vec<ShardId> = self
                            .shards
                            .values()
                            .filter(|s| s.replicas.contains(&id))
                            .map(|s| s.id)
                            .collect();
                        routing
                            .shards
                            .extend(shards.into_iter().filter_map(|s| self.shard_route(s)));
                    }
                }
                Change::Shard(s) => {
                    let id = s.id;
                    self.shards.insert(id, s);
                    if let Some(route) = self.shard_route(id) {
                        routing.shards.push(route);
                    }
                }
                Change::Namespace(n) => {
                    if n.state == NamespaceState::Active {
                        routing.namespaces.push(NamespaceRoute {
                            name: n.name.clone(),
                            shard: n.shard,
                            epoch: n.epoch,
                        });
                    } else {
                        routing.removed.push(n.name.clone());
                    }
                    self.namespaces.insert(n.name.clone(), n);
                }
                Change::RemoveNamespace(name) => {
                    self.namespaces.remove(&name);
                    routing.removed.push(name);
                }
                Change::Policies(p) => self.policies = Some(p),
                Change::Counters(c) => self.counters = c,
            }
        }
        routing
    }

    /// The policies in force (the defaults until some are stored).
    pub fn policies(&self) -> Policies {
        self.policies.clone().unwrap_or_default()
    }

    /// How many namespaces (in any state) each shard holds.
    pub fn namespace_counts(&self) -> BTreeMap<ShardId, u32> {
        let mut counts: BTreeMap<ShardId, u32> = self.shards.keys().map(|s| (*s, 0)).collect();
        for ns in self.namespaces.values() {
            *counts.entry(ns.shard).or_default() += 1;
        }
        counts
    }

    /// How many replicas each host holds.
    pub fn replica_counts(&self) -> BTreeMap<NodeId, u32> {
        let mut counts: BTreeMap<NodeId, u32> = self.hosts.keys().map(|h| (*h, 0)).collect();
        for shard in self.shards.values() {
            for node in shard
                .replicas
                .iter()
                .chain(shard.replacing.as_ref().map(|r| &r.new))
            {
                *counts.entry(*node).or_default() += 1;
            }
        }
        counts
    }

    /// Where a new shard's replicas go under `placement`, with at least one replica in
    /// `home_site` when given: on up hosts with room; first `min_per_site` in each required site
    /// (and one in the home site), then spread over as many sites as there are (a site gets
    /// another replica only when every site has as many), and within a site on the hosts with
    /// the fewest replicas (ties: lowest id).
    ///
    /// Fails with [`ApiError::Unavailable`] when the up hosts with room cannot satisfy it.
    pub fn place(
        &self,
        placement: &PlacementPolicy,
        home_site: Option<&str>,
    ) -> Result<Vec<NodeId>, ApiError> {
        let count = placement.replicas as usize;
        let load = self.replica_counts();
        let mut by_site: BTreeMap<&str, Vec<(u32, NodeId)>> = BTreeMap::new();
        for host in self.hosts.values() {
            let used = load.get(&host.id).copied().unwrap_or(0);
            if host.state == HostState::Up && used < host.capacity_replicas {
                by_site.entry(&host.site).or_default().push((used, host.id));
            }
        }
        let candidates: usize = by_site.values().map(Vec::len).sum();
        if candidates < count {
            return Err(ApiError::Unavailable(format!(
                "cannot place a shard with {count} replicas: {candidates} up hosts have room \
                 (of {} registered)",
                self.hosts.len()
            )));
        }
        for hosts in by_site.values_mut() {
            hosts.sort();
            hosts.reverse(); // pop() takes the least loaded
        }
        // What each site must get first.
        let mut minimum: BTreeMap<&str, usize> = placement
            .required_sites
            .iter()
            .map(|site| (site.as_str(), placement.min_per_site as usize))
            .collect();
        if let Some(home) = home_site {
            let at_home = minimum.entry(home).or_default();
            *at_home = (*at_home).max(1);
        }
        let mut chosen: Vec<NodeId> = Vec::with_capacity(count);
        let mut taken: BTreeMap<&str, usize> = BTreeMap::new();
        for (site, wanted) in &minimum {
            let available = by_site.get(site).map_or(0, Vec::len);
            if available < *wanted {
                return Err(ApiError::Unavailable(format!(
                    "cannot place a shard ({placement}{}): site {site} needs {wanted} replicas \
                     and has {available} up hosts with room",
                    home_site.map_or(String::new(), |h| format!(", home site {h}"))
                )));
            }
            for _ in 0..*wanted {
                let (_, id) = by_site
                    .get_mut(site)
                    .and_then(Vec::pop)
                    .expect("counted above");
                chosen.push(id);
                *taken.entry(site).or_default() += 1;
            }
        }
        if chosen.len() > count {
            return Err(ApiError::Unavailable(format!(
                "cannot place a shard ({placement}): its site minimums and home site need {} \
                 replicas",
                chosen.len()
            )));
        }
        while chosen.len() < count {
            // The site whose best host is least loaded, among the sites that gave the fewest
            // replicas so far.
            let site = by_site
                .iter()
                .filter(|(_, hosts)| !hosts.is_empty())
                .min_by_key(|(site, hosts)| {
                    (
                        taken.get(*site).copied().unwrap_or(0),
                        hosts.last().map(|(used, id)| (*used, *id)),
                    )
                })
                .map(|(site, _)| *site)
                .expect("enough candidates were counted");
            let (_, id) = by_site
                .get_mut(site)
                .and_then(Vec::pop)
                .expect("the site has a host");
            chosen.push(id);
            *taken.entry(site).or_default() += 1;
        }
        Ok(chosen)
    }

    /// Where the replacement of `old`, a replica of `shard`, goes: an up host with room that
    /// holds no replica of the shard, chosen so that the shard's placement holds again.
    ///
    /// A required site below its minimum (or the home site, when it has no replica left) gets
    /// it first; otherwise `old`'s own site, which keeps the spread the shard was placed with;
    /// otherwise the site with the fewest of the shard's replicas. Within a site, the host with
    /// the fewest replicas (ties: lowest id). Fails with [`ApiError::Unavailable`], naming the
    /// site, when no host can restore the placement: a replacement never breaks it.
    pub fn place_replacement(&self, shard: &ShardRecord, old: NodeId) -> Result<NodeId, ApiError> {
        let load = self.replica_counts();
        let remaining: Vec<NodeId> = shard
            .replicas
            .iter()
            .copied()
            .filter(|n| *n != old)
            .collect();
        let mut per_site: BTreeMap<&str, usize> = BTreeMap::new();
        for node in &remaining {
            *per_site.entry(self.site_of(*node)).or_default() += 1;
        }
        let mut candidates: BTreeMap<&str, Vec<(u32, NodeId)>> = BTreeMap::new();
        for host in self.hosts.values() {
            let used = load.get(&host.id).copied().unwrap_or(0);
            let member = shard.replicas.contains(&host.id)
                || shard.replacing.is_some_and(|r| r.new == host.id);
            if host.state == HostState::Up && used < host.capacity_replicas && !member {
                candidates
                    .entry(&host.site)
                    .or_default()
                    .push((used, host.id));
            }
        }
        let best_in = |site: &str| -> Option<NodeId> {
            candidates.get(site)?.iter().min().map(|(_, id)| *id)
        };
        let mut short: Vec<(&str, usize)> = shard
            .placement
            .required_sites
            .iter()
            .map(|site| (site.as_str(), shard.placement.min_per_site as usize))
            .collect();
        if let Some(home) = &shard.home_site {
            short.push((home.as_str(), 1));
        }
        for (site, wanted) in short {
            if per_site.get(site).copied().unwrap_or(0) < wanted {
                return best_in(site).ok_or_else(|| {
                    ApiError::Unavailable(format!(
                        "cannot replace replica {} of shard {}: site {site} needs {wanted} \
                         replicas and has no up host with room that holds none of the shard",
                        old.0, shard.id
                    ))
                });
            }
        }
        if let Some(id) = best_in(self.site_of(old)) {
            return Ok(id);
        }
        candidates
            .iter()
            .filter_map(|(site, hosts)| {
                let best = hosts.iter().min()?;
                Some(((per_site.get(site).copied().unwrap_or(0), *best), best.1))
            })
            .min()
            .map(|(_, id)| id)
            .ok_or_else(|| {
                ApiError::Unavailable(format!(
                    "cannot replace replica {} of shard {}: no up host with room holds none of \
                     the shard",
                    old.0, shard.id
                ))
            })
    }

    /// How many active shards fall short of their policy, by reason: `replica_down` (a replica's
    /// host is down), `site_minimum` (a required site has fewer up replicas than its minimum),
    /// `policy_pending` (the replicas do not run the policy in force yet). Every reason is
    /// listed, with 0 when none.
    pub fn degraded(&self) -> [(&'static str, usize); 3] {
        let up = |node: &NodeId| {
            self.hosts
                .get(node)
                .is_some_and(|h| h.state == HostState::Up)
        };
        let (mut down, mut site_minimum, mut pending) = (0, 0, 0);
        for shard in self
            .shards
            .values()
            .filter(|s| s.state == ShardState::Active)
        {
            down += usize::from(!shard.replicas.iter().all(up));
            site_minimum += usize::from(shard.placement.required_sites.iter().any(|site| {
                let n = shard
                    .replicas
                    .iter()
                    .filter(|n| up(n) && self.site_of(**n) == site)
                    .count();
                n < shard.placement.min_per_site as usize
            }));
            pending += usize::from(shard.applied.as_ref() != Some(&self.group_policy(shard)));
        }
        [
            ("replica_down", down),
            ("site_minimum", site_minimum),
            ("policy_pending", pending),
        ]
    }

    /// The shards among `hosted` (reported by `host`) whose replica on that host the catalog
    /// no longer has: the group removed it when the replica was replaced.
    pub fn strays(&self, host: NodeId, hosted: &[ShardId]) -> Vec<ShardId> {
        hosted
            .iter()
            .copied()
            .filter(|id| {
                self.shards.get(id).is_some_and(|s| {
                    s.state == ShardState::Active
                        && !s.replicas.contains(&host)
                        && s.replacing.is_none_or(|r| r.new != host)
                })
            })
            .collect()
    }

    /// The site of a host (empty when unknown).
    fn site_of(&self, node: NodeId) -> &str {
        self.hosts.get(&node).map_or("", |h| h.site.as_str())
    }

    /// The group policy a shard's replicas should run: its site-level policy in node terms.
    ///
    /// `majority+all-sites` needs one replica of every required site (of every site holding a
    /// replica, when none is required); `preferred(site)` prefers the replicas in that site (any
    /// replica, when none is there); `forced(node)` is taken as it is.
    pub fn group_policy(&self, shard: &ShardRecord) -> GroupPolicy {
        let nodes_in = |site: &str| -> BTreeSet<NodeId> {
            shard
                .replicas
                .iter()
                .copied()
                .filter(|n| self.site_of(*n) == site)
                .collect()
        };
        let (commit, group_sites) = match shard.policy.commit {
            CommitPolicy::Majority => (CommitRule::Majority, Vec::new()),
            CommitPolicy::MajorityAllSites => {
                let sites: BTreeSet<String> = if shard.placement.required_sites.is_empty() {
                    shard
                        .replicas
                        .iter()
                        .map(|n| self.site_of(*n).to_owned())
                        .collect()
                } else {
                    shard.placement.required_sites.iter().cloned().collect()
                };
                let (groups, labels): (Vec<_>, Vec<_>) = sites
                    .into_iter()
                    .map(|site| (nodes_in(&site), site))
                    .filter(|(nodes, _)| !nodes.is_empty())
                    .unzip();
                if groups.len() < 2 {
                    // One site: a majority is already in it.
                    (CommitRule::Majority, Vec::new())
                } else {
                    (CommitRule::MajorityAndGroups(groups), labels)
                }
            }
        };
        let leader = match &shard.policy.leader {
            LeaderPreference::Any => LeaderPolicy::Any,
            LeaderPreference::Preferred(site) => {
                let nodes = nodes_in(site);
                if nodes.is_empty() {
                    LeaderPolicy::Any
                } else {
                    LeaderPolicy::Preferred(nodes)
                }
            }
            LeaderPreference::Forced(node) => LeaderPolicy::Forced(*node),
        };
        GroupPolicy {
            commit,
            leader,
            group_sites,
        }
    }

    /// Checks a new policy of `shard` against its replicas: a forced leader must be one of
    /// them, a preferred site must hold one.
    pub fn check_shard_policy(
        &self,
        shard: &ShardRecord,
        policy: &ShardPolicy,
    ) -> Result<(), ApiError> {
        match &policy.leader {
            LeaderPreference::Forced(node) if !shard.replicas.contains(node) => {
                Err(ApiError::InvalidArgument(format!(
                    "forced({}): node {} holds no replica of shard {} (its replicas: {:?})",
                    node.0,
                    node.0,
                    shard.id,
                    shard.replicas.iter().map(|n| n.0).collect::<Vec<_>>()
                )))
            }
            LeaderPreference::Preferred(site)
                if !shard.replicas.iter().any(|n| self.site_of(*n) == site) =>
            {
                Err(ApiError::InvalidArgument(format!(
                    "preferred({site}): shard {} has no replica in site {site}",
                    shard.id
                )))
            }
            _ => Ok(()),
        }
    }

    /// Plans the creation of a namespace: the changes to write, and the shard it goes to.
    ///
    /// The namespace goes to the active shard with the fewest namespaces below the capacity;
    /// failing that, to a shard still being created that has room; failing that, to a new shard
    /// placed by [`Catalog::place`]. Its epoch is the routing version the change creates.
    pub fn plan_namespace(
        &self,
        name: &Namespace,
        home_site: Option<String>,
        placement: Option<PlacementPolicy>,
        now_ms: u64,
    ) -> Result<Vec<Change>, ApiError> {
        if self.namespaces.contains_key(name) {
            return Err(ApiError::NamespaceExists(name.clone()));
        }
        let policies = self.policies();
        let wanted = placement
            .clone()
            .unwrap_or_else(|| policies.placement.clone());
        let counts = self.namespace_counts();
        // A namespace shares a shard only with namespaces of the same placement and home site:
        // the shard's replicas and preferred leader are chosen for them.
        let with_room = |state: ShardState| {
            self.shards
                .values()
                .filter(move |s| s.state == state)
                .filter(|s| s.placement == wanted && s.home_site == home_site)
                .map(|s| (counts.get(&s.id).copied().unwrap_or(0), s.id))
                .filter(|(n, _)| *n < policies.namespaces_per_shard)
                .min()
                .map(|(_, id)| id)
        };
        let mut changes = Vec::new();
        let mut counters = self.counters;
        let shard = match with_room(ShardState::Active).or_else(|| with_room(ShardState::Creating))
        {
            Some(shard) => shard,
            None => {
                let replicas = self.place(&wanted, home_site.as_deref())?;
                counters.next_shard = counters.next_shard.max(1);
                let id = ShardId(counters.next_shard);
                counters.next_shard += 1;
                // The namespaces' home site is where the shard prefers its leader.
                let leader = home_site
                    .clone()
                    .map_or(LeaderPreference::Any, LeaderPreference::Preferred);
                changes.push(Change::Shard(ShardRecord {
                    id,
                    replicas,
                    state: ShardState::Creating,
                    placement: wanted.clone(),
                    home_site: home_site.clone(),
                    policy: ShardPolicy {
                        commit: policies.commit,
                        leader,
                    },
                    applied: None,
                    replacing: None,
                }));
                id
            }
        };
        counters.next_namespace = counters.next_namespace.max(1);
        let id = counters.next_namespace;
        counters.next_namespace += 1;
        changes.push(Change::Counters(counters));
        changes.push(Change::Namespace(NamespaceRecord {
            name: name.clone(),
            id,
            shard,
            epoch: Epoch(self.version + 1),
            state: NamespaceState::Creating,
            home_site,
            placement,
            created_at_ms: now_ms,
        }));
        Ok(changes)
    }

    /// The replicas of a shard with their addresses.
    pub fn replica_addrs(&self, shard: &ShardRecord) -> Vec<ReplicaAddr> {
        shard
            .replicas
            .iter()
            .map(|node| ReplicaAddr {
                node: *node,
                addr: self
                    .hosts
                    .get(node)
                    .map(|h| h.addr.clone())
                    .unwrap_or_default(),
                site: self.site_of(*node).to_owned(),
            })
            .collect()
    }

    fn shard_route(&self, id: ShardId) -> Option<ShardRoute> {
        let shard = self.shards.get(&id)?;
        (shard.state == ShardState::Active).then(|| ShardRoute {
            shard: id,
            replicas: self.replica_addrs(shard),
        })
    }

    /// Everything a router needs: active shards and active namespaces.
    pub fn routing_table(&self) -> RoutingTable {
        RoutingTable {
            version: self.version,
            shards: self
                .shards
                .keys()
                .filter_map(|id| self.shard_route(*id))
                .collect(),
            namespaces: self
                .namespaces
                .values()
                .filter(|n| n.state == NamespaceState::Active)
                .map(|n| NamespaceRoute {
                    name: n.name.clone(),
                    shard: n.shard,
                    epoch: n.epoch,
                })
                .collect(),
        }
    }

    /// Every shard as the API shows it.
    pub fn shard_infos(&self) -> Vec<ShardInfo> {
        let counts = self.namespace_counts();
        self.shards
            .values()
            .map(|s| ShardInfo {
                id: s.id,
                replicas: self.replica_addrs(s),
                state: s.state,
                namespaces: counts.get(&s.id).copied().unwrap_or(0),
                placement: s.placement.clone(),
                policy: s.policy.clone(),
                home_site: s.home_site.clone(),
                policy_applied: s.applied.as_ref() == Some(&self.group_policy(s)),
                replacing: s.replacing,
            })
            .collect()
    }

    /// Every host as the API shows it (`last_heard_ms_ago` from the leader's memory).
    pub fn host_infos(&self, last_heard_ms_ago: impl Fn(NodeId) -> Option<u64>) -> Vec<HostInfo> {
        let counts = self.replica_counts();
        self.hosts
            .values()
            .map(|h| HostInfo {
                id: h.id,
                site: h.site.clone(),
                addr: h.addr.clone(),
                capacity_replicas: h.capacity_replicas,
                state: h.state,
                replicas: counts.get(&h.id).copied().unwrap_or(0),
                last_heartbeat_ms_ago: last_heard_ms_ago(h.id),
            })
            .collect()
    }

    /// Checks the catalog's own invariants; returns every violation found (empty: consistent).
    /// Used by tests and logged by the leader after loading.
    pub fn violations(&self) -> Vec<String> {
        let mut found = Vec::new();
        let cap = self.policies().namespaces_per_shard;
        for (shard, count) in self.namespace_counts() {
            if count > cap {
                found.push(format!(
                    "shard {shard} holds {count} namespaces (capacity {cap})"
                ));
            }
        }
        for ns in self.namespaces.values() {
            if !self.shards.contains_key(&ns.shard) {
                found.push(format!(
                    "namespace {} is on unknown shard {}",
                    ns.name, ns.shard
                ));
            }
        }
        let mut ids = BTreeSet::new();
        for ns in self.namespaces.values() {
            if !ids.insert(ns.id) {
                found.push(format!("namespace id {} is used twice", ns.id));
            }
        }
        for shard in self.shards.values() {
            let distinct: BTreeSet<_> = shard.replicas.iter().collect();
            if distinct.len() != shard.replicas.len() {
                found.push(format!("shard {} lists a replica twice", shard.id));
            }
            if let Some(unknown) = shard.replicas.iter().find(|n| !self.hosts.contains_key(n)) {
                found.push(format!(
                    "shard {} has a replica on unknown host {unknown}",
                    shard.id
                ));
            }
            if shard.id.0 >= self.counters.next_shard {
                found.push(format!("shard {} is beyond the shard counter", shard.id));
            }
            for site in &shard.placement.required_sites {
                let up = shard
                    .replicas
                    .iter()
                    .filter(|n| {
                        self.hosts
                            .get(n)
                            .is_some_and(|h| h.site == *site && h.state == HostState::Up)
                    })
                    .count();
                if up < shard.placement.min_per_site as usize {
                    found.push(format!(
                        "shard {} has {up} up replicas in required site {site} (policy: at \
                         least {})",
                        shard.id, shard.placement.min_per_site
                    ));
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str) -> Namespace {
        Namespace::new(name).unwrap()
    }

    fn replicas(count: u32) -> PlacementPolicy {
        PlacementPolicy {
            replicas: count,
            ..PlacementPolicy::default()
        }
    }

    fn sites_of(c: &Catalog, chosen: &[NodeId]) -> Vec<String> {
        let mut sites: Vec<String> = chosen.iter().map(|id| c.hosts[id].site.clone()).collect();
        sites.sort();
        sites
    }

    #[test]
    fn placement_honours_required_sites_and_their_minimums() {
        let c = catalog(
            &[(1, "a"), (2, "a"), (3, "a"), (4, "b"), (5, "b"), (6, "c")],
            50,
        );
        let policy = PlacementPolicy {
            replicas: 3,
            min_per_site: 2,
            required_sites: vec!["b".into()],
        };
        let chosen = c.place(&policy, None).unwrap();
        assert_eq!(sites_of(&c, &chosen), ["a", "b", "b"]);
        // Two required sites with one each, five replicas: the rest spread over every site.
        let policy = PlacementPolicy {
            replicas: 5,
            min_per_site: 1,
            required_sites: vec!["a".into(), "c".into()],
        };
        let chosen = c.place(&policy, None).unwrap();
        assert_eq!(sites_of(&c, &chosen), ["a", "a", "b", "b", "c"]);
        // A required site without enough hosts is refused, naming it.
        let policy = PlacementPolicy {
            replicas: 3,
            min_per_site: 2,
            required_sites: vec!["c".into()],
        };
        let e = c.place(&policy, None).unwrap_err().to_string();
        assert!(e.contains("site c needs 2"), "{e}");
        // The home site always gets a replica.
        let chosen = c.place(&replicas(1), Some("c")).unwrap();
        assert_eq!(chosen, [NodeId(6)]);
        let e = c.place(&replicas(3), Some("z")).unwrap_err().to_string();
        assert!(e.contains("site z"), "{e}");
    }

    #[test]
    fn namespaces_share_shards_only_with_the_same_home_site_and_placement() {
        let mut c = catalog(&[(1, "a"), (2, "a"), (3, "b"), (4, "b")], 50);
        let plan = |c: &mut Catalog, name: &str, home: Option<&str>, p: Option<PlacementPolicy>| {
            let changes = c
                .plan_namespace(&ns(name), home.map(str::to_owned), p, 1)
                .unwrap();
            c.apply(changes);
            c.namespaces[&ns(name)].shard
        };
        let plain = plan(&mut c, "plain", None, None);
        let home_b = plan(&mut c, "home-b", Some("b"), None);
        assert_ne!(plain, home_b);
        assert_eq!(plan(&mut c, "home-b2", Some("b"), None), home_b);
        let two = PlacementPolicy {
            replicas: 2,
            min_per_site: 1,
            required_sites: vec!["a".into(), "b".into()],
        };
        let custom = plan(&mut c, "two", None, Some(two.clone()));
        assert!(![plain, home_b].contains(&custom));
        assert_eq!(c.shards[&custom].placement, two);
        // The home site is the shard's preferred leader site.
        assert_eq!(
            c.shards[&home_b].policy.leader,
            LeaderPreference::Preferred("b".into())
        );
        assert_eq!(c.shards[&plain].policy.leader, LeaderPreference::Any);
    }

    #[test]
    fn group_policies_are_the_site_policies_in_node_terms() {
        let mut c = catalog(&[(1, "a"), (2, "a"), (3, "b"), (4, "c")], 50);
        let changes = c.plan_namespace(&ns("x"), None, None, 1).unwrap();
        c.apply(changes);
        let mut shard = c.shards.values().next().unwrap().clone();
        assert_eq!(sites_of(&c, &shard.replicas), ["a", "b", "c"]);
        assert_eq!(c.group_policy(&shard), GroupPolicy::default());
        let node_in = |site: &str| {
            *shard
                .replicas
                .iter()
                .find(|n| c.hosts[*n].site == site)
                .unwrap()
        };
        let (a, b, cc) = (node_in("a"), node_in("b"), node_in("c"));
        shard.policy = ShardPolicy {
            commit: CommitPolicy::MajorityAllSites,
            leader: LeaderPreference::Preferred("b".into()),
        };
        let policy = c.group_policy(&shard);
        assert_eq!(
            policy.commit,
            CommitRule::MajorityAndGroups(vec![
                BTreeSet::from([a]),
                BTreeSet::from([b]),
                BTreeSet::from([cc])
            ])
        );
        assert_eq!(policy.group_sites, ["a", "b", "c"]);
        assert_eq!(policy.leader, LeaderPolicy::Preferred(BTreeSet::from([b])));
        // Required sites narrow the groups.
        shard.placement.required_sites = vec!["a".into(), "c".into()];
        assert_eq!(c.group_policy(&shard).group_sites, ["a", "c"]);
        // Forced leaders must be replicas; preferred sites must hold one.
        let forced = ShardPolicy {
            commit: CommitPolicy::Majority,
            leader: LeaderPreference::Forced(NodeId(99)),
        };
        assert!(c.check_shard_policy(&shard, &forced).is_err());
        let elsewhere = ShardPolicy {
            commit: CommitPolicy::Majority,
            leader: LeaderPreference::Preferred("z".into()),
        };
        assert!(c.check_shard_policy(&shard, &elsewhere).is_err());
        let ok = ShardPolicy {
            commit: CommitPolicy::Majority,
            leader: LeaderPreference::Forced(a),
        };
        c.check_shard_policy(&shard, &ok).unwrap();
    }

    fn host(id: u64, site: &str) -> Change {
        Change::Host(HostRecord {
            id: NodeId(id),
            site: site.into(),
            addr: format!("127.0.0.1:{}", 7000 + id),
            capacity_replicas: 100,
            state: HostState::Up,
        })
    }

    fn catalog(hosts: &[(u64, &str)], per_shard: u32) -> Catalog {
        let mut c = Catalog::default();
        let mut changes: Vec<Change> = hosts.iter().map(|(id, site)| host(*id, site)).collect();
        changes.push(Change::Policies(Policies {
            namespaces_per_shard: per_shard,
            ..Policies::default()
        }));
        c.apply(changes);
        c
    }

    /// Creates namespaces the way the manager does: plan, apply, and activate shards at once.
    fn create(c: &mut Catalog, name: &str) -> ShardId {
        let changes = c.plan_namespace(&ns(name), None, None, 1).unwrap();
        c.apply(changes);
        let shard = c.namespaces[&ns(name)].shard;
        let mut record = c.shards[&shard].clone();
        if record.state == ShardState::Creating {
            record.state = ShardState::Active;
            c.apply(vec![Change::Shard(record)]);
        }
        shard
    }

    #[test]
    fn shards_are_added_every_capacity_namespaces_and_never_overfilled() {
        let mut c = catalog(&[(1, "a"), (2, "a"), (3, "a"), (4, "a")], 50);
        for i in 0..175 {
            create(&mut c, &format!("ns{i}"));
        }
        assert_eq!(c.shards.len(), 4);
        let counts = c.namespace_counts();
        assert!(counts.values().all(|n| *n <= 50), "{counts:?}");
        assert_eq!(counts.values().sum::<u32>(), 175);
        assert!(c.violations().is_empty(), "{:?}", c.violations());
    }

    #[test]
    fn new_namespaces_go_to_the_least_filled_active_shard() {
        let mut c = catalog(&[(1, "a"), (2, "a"), (3, "a")], 10);
        for i in 0..12 {
            create(&mut c, &format!("ns{i}"));
        }
        // Shard 1 is full (10), shard 2 has 2: the next goes to shard 2.
        assert_eq!(create(&mut c, "next"), ShardId(2));
        // Remove namespaces from shard 1 so that it has fewer than shard 2.
        for i in 0..8 {
            c.apply(vec![Change::RemoveNamespace(ns(&format!("ns{i}")))]);
        }
        assert_eq!(create(&mut c, "after-delete"), ShardId(1));
    }

    #[test]
    fn a_shard_being_created_takes_namespaces_before_another_is_added() {
        let mut c = catalog(&[(1, "a"), (2, "a"), (3, "a")], 2);
        let changes = c.plan_namespace(&ns("x"), None, None, 1).unwrap();
        c.apply(changes);
        let changes = c.plan_namespace(&ns("y"), None, None, 1).unwrap();
        assert!(
            !changes.iter().any(|ch| matches!(ch, Change::Shard(_))),
            "a second shard was planned while the first still has room"
        );
        c.apply(changes);
        assert_eq!(c.shards.len(), 1);
    }

    #[test]
    fn names_are_unique_and_epochs_grow() {
        let mut c = catalog(&[(1, "a"), (2, "a"), (3, "a")], 50);
        create(&mut c, "x");
        assert!(matches!(
            c.plan_namespace(&ns("x"), None, None, 1),
            Err(ApiError::NamespaceExists(_))
        ));
        let first = c.namespaces[&ns("x")].epoch;
        c.apply(vec![Change::RemoveNamespace(ns("x"))]);
        create(&mut c, "x");
        assert!(c.namespaces[&ns("x")].epoch > first);
        assert!(c.namespaces[&ns("x")].id > 1, "ids are never reused");
    }

    #[test]
    fn placement_spreads_over_sites_then_hosts_by_load() {
        let c = catalog(&[(1, "a"), (2, "a"), (3, "b"), (4, "c"), (5, "c")], 50);
        let chosen = c.place(&replicas(3), None).unwrap();
        let sites: BTreeSet<&str> = chosen.iter().map(|id| c.hosts[id].site.as_str()).collect();
        assert_eq!(sites.len(), 3, "{chosen:?}");
        // Four replicas over three sites: one site gets two.
        let chosen = c.place(&replicas(4), None).unwrap();
        assert_eq!(chosen.len(), 4);
        let distinct: BTreeSet<_> = chosen.iter().collect();
        assert_eq!(distinct.len(), 4);
    }

    #[test]
    fn placement_prefers_the_least_loaded_hosts_and_skips_down_ones() {
        let mut c = catalog(&[(1, "a"), (2, "a"), (3, "a"), (4, "a")], 1);
        create(&mut c, "one"); // shard 1 on hosts 1, 2, 3
        let chosen: BTreeSet<_> = c.place(&replicas(3), None).unwrap().into_iter().collect();
        assert!(chosen.contains(&NodeId(4)), "{chosen:?}");
        let mut down = c.hosts[&NodeId(4)].clone();
        down.state = HostState::Down;
        c.apply(vec![Change::Host(down)]);
        let chosen: BTreeSet<_> = c.place(&replicas(3), None).unwrap().into_iter().collect();
        assert!(!chosen.contains(&NodeId(4)));
        let mut down = c.hosts[&NodeId(3)].clone();
        down.state = HostState::Down;
        c.apply(vec![Change::Host(down)]);
        assert!(matches!(
            c.place(&replicas(3), None),
            Err(ApiError::Unavailable(_))
        ));
    }

    /// A shard with `replicas` under `placement`, recorded in `c` as active.
    fn shard_on(
        c: &mut Catalog,
        id: u64,
        replicas: &[u64],
        placement: PlacementPolicy,
    ) -> ShardRecord {
        let record = ShardRecord {
            id: ShardId(id),
            replicas: replicas.iter().copied().map(NodeId).collect(),
            state: ShardState::Active,
            placement,
            home_site: None,
            policy: ShardPolicy::default(),
            applied: None,
            replacing: None,
        };
        c.apply(vec![Change::Shard(record.clone())]);
        record
    }

    fn set_down(c: &mut Catalog, id: u64) {
        let mut host = c.hosts[&NodeId(id)].clone();
        host.state = HostState::Down;
        c.apply(vec![Change::Host(host)]);
    }

    #[test]
    fn a_replacement_restores_the_site_minimums_first() {
        let mut c = catalog(
            &[(1, "a"), (2, "a"), (3, "b"), (4, "a"), (5, "b"), (6, "c")],
            50,
        );
        let placement = PlacementPolicy {
            replicas: 3,
            min_per_site: 1,
            required_sites: vec!["a".into(), "b".into()],
        };
        let shard = shard_on(&mut c, 1, &[1, 2, 3], placement);
        set_down(&mut c, 3);
        // b lost its only replica: the replacement goes to b, never to a or c.
        assert_eq!(c.place_replacement(&shard, NodeId(3)).unwrap(), NodeId(5));
        // With no up host in b, nothing can restore the placement: refused, naming the site.
        set_down(&mut c, 5);
        let err = c.place_replacement(&shard, NodeId(3)).unwrap_err();
        assert!(
            matches!(&err, ApiError::Unavailable(m) if m.contains("site b")),
            "{err}"
        );
    }

    #[test]
    fn a_replacement_keeps_the_spread_then_evens_the_sites() {
        let mut c = catalog(
            &[(1, "a"), (2, "b"), (3, "c"), (4, "a"), (5, "b"), (6, "b")],
            50,
        );
        let shard = shard_on(&mut c, 1, &[1, 2, 3], replicas(3));
        // Host 5 gets load elsewhere: host 6 is the least loaded in b.
        shard_on(&mut c, 2, &[5], replicas(1));
        set_down(&mut c, 2);
        assert_eq!(c.place_replacement(&shard, NodeId(2)).unwrap(), NodeId(6));
        // No other host in c: the replacement goes to the site with the fewest replicas left
        // (a and b hold one each; ties go to the least loaded host, then the lowest id).
        set_down(&mut c, 3);
        let new = c.place_replacement(&shard, NodeId(3)).unwrap();
        assert!(new == NodeId(4) || new == NodeId(6), "{new}");
        assert!(!shard.replicas.contains(&new));
    }

    #[test]
    fn a_replacement_counts_towards_load_and_never_reuses_a_member() {
        let mut c = catalog(&[(1, "a"), (2, "a"), (3, "a"), (4, "a"), (5, "a")], 50);
        let mut shard = shard_on(&mut c, 1, &[1, 2, 3], replicas(3));
        set_down(&mut c, 3);
        let first = c.place_replacement(&shard, NodeId(3)).unwrap();
        assert_eq!(first, NodeId(4));
        shard.replacing = Some(Replacement {
            old: NodeId(3),
            new: first,
        });
        c.apply(vec![Change::Shard(shard.clone())]);
        assert_eq!(
            c.replica_counts()[&NodeId(4)],
            1,
            "the joining replica is counted"
        );
        // Host 4 already joins this shard: a second pick would take host 5.
        assert_eq!(c.place_replacement(&shard, NodeId(3)).unwrap(), NodeId(5));
        // Hosts that report a shard: members and the joining replica are not strays, the
        // replaced one is once the catalog swapped it.
        assert!(c.strays(NodeId(4), &[ShardId(1)]).is_empty());
        assert!(c.strays(NodeId(3), &[ShardId(1)]).is_empty());
        shard.replicas = vec![NodeId(1), NodeId(2), NodeId(4)];
        shard.replacing = None;
        c.apply(vec![Change::Shard(shard)]);
        assert_eq!(
            c.strays(NodeId(3), &[ShardId(1), ShardId(9)]),
            vec![ShardId(1)]
        );
        assert!(c.strays(NodeId(4), &[ShardId(1)]).is_empty());
    }

    #[test]
    fn the_stored_form_round_trips_and_asserts_the_version() {
        let mut c = catalog(&[(1, "a"), (2, "b"), (3, "c")], 50);
        create(&mut c, "x");
        create(&mut c, "y");
        // Replay every change through the stored form into a key-value map.
        let mut replay = Catalog::default();
        let mut store: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let apply_steps = |steps: Vec<Step>, store: &mut BTreeMap<Vec<u8>, Vec<u8>>| {
            for step in steps {
                match step {
                    Step::Assert { key, expected } => {
                        assert_eq!(store.get(&key).cloned(), expected, "version assertion")
                    }
                    Step::Set { key, value } => {
                        store.insert(key, value);
                    }
                    Step::Delete { key } => {
                        store.remove(&key);
                    }
                    other => panic!("unexpected step {other:?}"),
                }
            }
        };
        let changes = vec![host(1, "a"), host(2, "b"), host(3, "c")];
        apply_steps(replay.steps(&changes), &mut store);
        replay.apply(changes);
        let changes = replay.plan_namespace(&ns("x"), None, None, 5).unwrap();
        apply_steps(replay.steps(&changes), &mut store);
        replay.apply(changes);
        let entries: Vec<_> = store.into_iter().collect();
        let loaded = Catalog::load(&entries).unwrap();
        assert_eq!(loaded, replay);
        assert_eq!(loaded.version, 2);
    }

    #[test]
    fn routing_shows_only_active_namespaces_on_active_shards() {
        let mut c = catalog(&[(1, "a"), (2, "a"), (3, "a")], 50);
        let changes = c.plan_namespace(&ns("x"), None, None, 1).unwrap();
        let change = c.apply(changes);
        assert!(change.namespaces.is_empty());
        assert!(c.routing_table().namespaces.is_empty());
        let mut shard = c.shards[&ShardId(1)].clone();
        shard.state = ShardState::Active;
        let change = c.apply(vec![Change::Shard(shard)]);
        assert_eq!(change.shards.len(), 1);
        let mut x = c.namespaces[&ns("x")].clone();
        x.state = NamespaceState::Active;
        let change = c.apply(vec![Change::Namespace(x)]);
        assert_eq!(change.namespaces.len(), 1);
        let table = c.routing_table();
        assert_eq!(table.version, c.version);
        assert_eq!(table.namespaces.len(), 1);
        assert_eq!(table.shards[0].replicas.len(), 3);
    }
}
