//! The route table: which shard serves each namespace, at which epoch, and where each shard's
//! replicas are.
//!
//! Pure: it does no I/O and reads no clock. The watch feeds it the manager's whole
//! [`RoutingTable`] ([`RouteTable::replace`]) and then each [`RoutingChange`]
//! ([`RouteTable::apply`]); lookups after a miss or a `WrongShard` answer feed it single
//! namespaces ([`RouteTable::learn`]) and shards ([`RouteTable::merge`]).
//!
//! Two orders protect it from stale news:
//! - the routing version: a change whose version is not newer than the table's is ignored (it is
//!   already in the table);
//! - a namespace's epoch: news of a namespace at an older epoch than the one cached never
//!   replaces it, whichever path it came by (the manager raises the epoch on every reassignment,
//!   so the higher epoch is the later truth).

use std::collections::HashMap;
use std::sync::Arc;

use cairn_wire::api::{Epoch, Namespace, ReplicaAddr, ShardId};
use cairn_wire::catalog::{RoutingChange, RoutingTable, ShardRoute};

/// Where a namespace is assigned: its shard and the epoch of the assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The shard.
    pub shard: ShardId,
    /// The epoch every request for the namespace carries.
    pub epoch: Epoch,
}

/// Everything needed to send a request for a namespace: its assignment and the shard's replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The shard and epoch.
    pub assignment: Assignment,
    /// The shard's replicas (shared with the table; cheap to clone).
    pub replicas: Arc<[ReplicaAddr]>,
}

/// What the table knows of a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// Where to send its requests.
    Route(Route),
    /// Its assignment, but not where its shard's replicas are.
    ShardUnknown(Assignment),
    /// Nothing.
    Missing,
}

/// Whether a change was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The table is at the change's version now.
    Applied,
    /// The table is already at `current`, not older than the change's `version`: ignored.
    Stale {
        /// The change's version.
        version: u64,
        /// The table's version.
        current: u64,
    },
}

/// The cached routing data. Its size is the manager's catalog (active namespaces and shards),
/// plus namespaces learned by lookups until the next full table.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    /// The routing version of the last table or change applied; `None` before the first.
    version: Option<u64>,
    shards: HashMap<ShardId, Arc<[ReplicaAddr]>>,
    namespaces: HashMap<Namespace, Assignment>,
}

impl RouteTable {
    /// An empty table: every namespace is missing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The routing version the table is at (`None` before the first table or change).
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// How many namespaces are cached.
    pub fn namespaces(&self) -> usize {
        self.namespaces.len()
    }

    /// How many shards are cached.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Whether `shard` is in the table.
    pub fn has_shard(&self, shard: ShardId) -> bool {
        self.shards.contains_key(&shard)
    }

    /// Replaces everything with `table` (a watch starts with one: it is the whole truth at its
    /// version, whatever was cached before).
    pub fn replace(&mut self, table: RoutingTable) {
        self.version = Some(table.version);
        self.shards = table
            .shards
            .into_iter()
            .map(|s| (s.shard, s.replicas.into()))
            .collect();
        self.namespaces = table
            .namespaces
            .into_iter()
            .map(|n| {
                let assignment = Assignment {
                    shard: n.shard,
                    epoch: n.epoch,
                };
                (n.name, assignment)
            })
            .collect();
    }

    /// Applies a change newer than the table: upserts its shards and namespaces (never lowering
    /// a namespace's epoch) and removes `removed`. A change that is not newer is ignored.
    pub fn apply(&mut self, change: RoutingChange) -> Applied {
        if let Some(current) = self.version
            && change.version <= current
        {
            return Applied::Stale {
                version: change.version,
                current,
            };
        }
        self.version = Some(change.version);
        for shard in change.shards {
            self.learn_shard(shard);
        }
        for n in change.namespaces {
            let assignment = Assignment {
                shard: n.shard,
                epoch: n.epoch,
            };
            self.learn(n.name, assignment);
        }
        for name in &change.removed {
            self.namespaces.remove(name);
        }
        Applied::Applied
    }

    /// What the table knows of `namespace`.
    pub fn resolve(&self, namespace: &Namespace) -> Resolved {
        let Some(assignment) = self.namespaces.get(namespace).copied() else {
            return Resolved::Missing;
        };
        match self.shards.get(&assignment.shard) {
            Some(replicas) => Resolved::Route(Route {
                assignment,
                replicas: Arc::clone(replicas),
            }),
            None => Resolved::ShardUnknown(assignment),
        }
    }

    /// Records that `namespace` is assigned as `assignment` (from a lookup at the manager).
    /// Returns false, changing nothing, when the table has it at a newer epoch.
    pub fn learn(&mut self, namespace: Namespace, assignment: Assignment) -> bool {
        match self.namespaces.get(&namespace) {
            Some(known) if known.epoch > assignment.epoch => false,
            _ => {
                self.namespaces.insert(namespace, assignment);
                true
            }
        }
    }

    /// Records where a shard's replicas are.
    pub fn learn_shard(&mut self, shard: ShardRoute) {
        self.shards.insert(shard.shard, shard.replicas.into());
    }

    /// Takes what a table fetched by a lookup adds: the whole table when it is newer than ours
    /// (or we have none), else only the shards we do not know (ours are kept current by the
    /// watch).
    pub fn merge(&mut self, table: RoutingTable) {
        if self.version.is_none_or(|current| table.version > current) {
            self.replace(table);
            return;
        }
        for shard in table.shards {
            if !self.shards.contains_key(&shard.shard) {
                self.learn_shard(shard);
            }
        }
    }

    /// Forgets `namespace` (it was deleted, or the manager says it is not active).
    pub fn forget(&mut self, namespace: &Namespace) {
        self.namespaces.remove(namespace);
    }
}

#[cfg(test)]
mod tests {
    use cairn_wire::catalog::NamespaceRoute;
    use raft_core::NodeId;

    use super::*;

    fn ns(name: &str) -> Namespace {
        Namespace::new(name).unwrap()
    }

    fn shard(id: u64, ports: &[u16]) -> ShardRoute {
        ShardRoute {
            shard: ShardId(id),
            replicas: ports
                .iter()
                .map(|p| ReplicaAddr {
                    node: NodeId(u64::from(*p)),
                    addr: format!("127.0.0.1:{p}"),
                    site: "dc1".into(),
                })
                .collect(),
        }
    }

    fn at(shard: u64, epoch: u64) -> Assignment {
        Assignment {
            shard: ShardId(shard),
            epoch: Epoch(epoch),
        }
    }

    fn route(name: &str, shard: u64, epoch: u64) -> NamespaceRoute {
        NamespaceRoute {
            name: ns(name),
            shard: ShardId(shard),
            epoch: Epoch(epoch),
        }
    }

    fn table(version: u64) -> RoutingTable {
        RoutingTable {
            version,
            shards: vec![shard(1, &[7101, 7102]), shard(2, &[7201])],
            namespaces: vec![route("a", 1, 1), route("b", 2, 4)],
        }
    }

    fn assignment_of(t: &RouteTable, name: &str) -> Option<Assignment> {
        match t.resolve(&ns(name)) {
            Resolved::Route(r) => Some(r.assignment),
            Resolved::ShardUnknown(a) => Some(a),
            Resolved::Missing => None,
        }
    }

    #[test]
    fn an_empty_table_resolves_nothing() {
        let t = RouteTable::new();
        assert_eq!(t.version(), None);
        assert_eq!(t.resolve(&ns("a")), Resolved::Missing);
    }

    #[test]
    fn a_table_resolves_namespaces_to_their_shard_replicas() {
        let mut t = RouteTable::new();
        t.replace(table(5));
        assert_eq!(t.version(), Some(5));
        assert_eq!((t.namespaces(), t.shards()), (2, 2));
        let Resolved::Route(r) = t.resolve(&ns("a")) else {
            panic!("a is routed")
        };
        assert_eq!(r.assignment, at(1, 1));
        assert_eq!(r.replicas.len(), 2);
        assert_eq!(r.replicas[1].addr, "127.0.0.1:7102");
    }

    #[test]
    fn a_table_replaces_everything_cached_before() {
        let mut t = RouteTable::new();
        t.replace(table(5));
        t.learn(ns("learned"), at(1, 9));
        t.replace(RoutingTable {
            version: 6,
            shards: vec![shard(3, &[7301])],
            namespaces: vec![route("c", 3, 1)],
        });
        assert_eq!(t.resolve(&ns("a")), Resolved::Missing);
        assert_eq!(t.resolve(&ns("learned")), Resolved::Missing);
        assert_eq!(assignment_of(&t, "c"), Some(at(3, 1)));
        assert!(!t.has_shard(ShardId(1)));
    }

    #[test]
    fn a_change_upserts_shards_and_namespaces_and_removes_namespaces() {
        let mut t = RouteTable::new();
        t.replace(table(5));
        let change = RoutingChange {
            version: 6,
            shards: vec![shard(2, &[7201, 7202]), shard(3, &[7301])],
            namespaces: vec![route("a", 3, 2), route("c", 2, 1)],
            removed: vec![ns("b")],
        };
        assert_eq!(t.apply(change), Applied::Applied);
        assert_eq!(t.version(), Some(6));
        assert_eq!(assignment_of(&t, "a"), Some(at(3, 2)), "moved");
        assert_eq!(assignment_of(&t, "c"), Some(at(2, 1)), "added");
        assert_eq!(t.resolve(&ns("b")), Resolved::Missing, "removed");
        let Resolved::Route(c) = t.resolve(&ns("c")) else {
            panic!("c is routed")
        };
        assert_eq!(c.replicas.len(), 2, "shard 2 gained a replica");
    }

    #[test]
    fn a_change_that_is_not_newer_is_ignored() {
        let mut t = RouteTable::new();
        t.replace(table(5));
        for version in [4, 5] {
            let change = RoutingChange {
                version,
                removed: vec![ns("a")],
                ..RoutingChange::default()
            };
            assert_eq!(
                t.apply(change),
                Applied::Stale {
                    version,
                    current: 5
                }
            );
        }
        assert_eq!(assignment_of(&t, "a"), Some(at(1, 1)));
        assert_eq!(t.version(), Some(5));

        // Versions may skip (the manager's version counts every catalog change, not only
        // routing ones): a newer change applies whatever the gap.
        let change = RoutingChange {
            version: 9,
            removed: vec![ns("a")],
            ..RoutingChange::default()
        };
        assert_eq!(t.apply(change), Applied::Applied);
        assert_eq!(t.resolve(&ns("a")), Resolved::Missing);
    }

    #[test]
    fn changes_before_any_table_apply() {
        let mut t = RouteTable::new();
        let change = RoutingChange {
            version: 3,
            shards: vec![shard(1, &[7101])],
            namespaces: vec![route("a", 1, 1)],
            removed: vec![],
        };
        assert_eq!(t.apply(change), Applied::Applied);
        assert_eq!(t.version(), Some(3));
        assert_eq!(assignment_of(&t, "a"), Some(at(1, 1)));
    }

    #[test]
    fn no_news_lowers_an_epoch() {
        let mut t = RouteTable::new();
        t.replace(table(5));
        assert!(t.learn(ns("a"), at(2, 7)), "a newer epoch is learned");
        assert!(!t.learn(ns("a"), at(1, 6)), "an older one is not");
        assert!(t.learn(ns("a"), at(2, 7)), "the same one is idempotent");
        let change = RoutingChange {
            version: 6,
            namespaces: vec![route("a", 1, 3)],
            ..RoutingChange::default()
        };
        assert_eq!(t.apply(change), Applied::Applied);
        assert_eq!(assignment_of(&t, "a"), Some(at(2, 7)));
    }

    #[test]
    fn a_namespace_on_an_unknown_shard_says_so() {
        let mut t = RouteTable::new();
        t.replace(table(5));
        t.learn(ns("n"), at(9, 1));
        assert_eq!(t.resolve(&ns("n")), Resolved::ShardUnknown(at(9, 1)));
        t.learn_shard(shard(9, &[7901]));
        assert!(matches!(t.resolve(&ns("n")), Resolved::Route(_)));
    }

    #[test]
    fn a_fetched_table_replaces_only_an_older_one() {
        let mut empty = RouteTable::new();
        empty.merge(table(5));
        assert_eq!(empty.version(), Some(5), "no table yet: taken whole");

        let mut t = RouteTable::new();
        t.replace(table(5));
        t.merge(RoutingTable {
            version: 5,
            shards: vec![shard(1, &[7999]), shard(3, &[7301])],
            namespaces: vec![],
        });
        assert_eq!(t.version(), Some(5));
        assert_eq!(t.namespaces(), 2, "namespaces kept");
        assert!(t.has_shard(ShardId(3)), "an unknown shard is added");
        let Resolved::Route(a) = t.resolve(&ns("a")) else {
            panic!("a is routed")
        };
        assert_eq!(a.replicas.len(), 2, "a known shard is kept");

        t.merge(RoutingTable {
            version: 6,
            shards: vec![],
            namespaces: vec![],
        });
        assert_eq!(t.version(), Some(6));
        assert_eq!(t.namespaces(), 0, "a newer table is taken whole");
    }

    #[test]
    fn forgetting_removes_one_namespace() {
        let mut t = RouteTable::new();
        t.replace(table(5));
        t.forget(&ns("a"));
        assert_eq!(t.resolve(&ns("a")), Resolved::Missing);
        assert_eq!(assignment_of(&t, "b"), Some(at(2, 4)));
    }
}
