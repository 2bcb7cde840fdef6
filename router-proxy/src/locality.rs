//! Site-aware reads as pure decisions: which of a shard's replicas are in the router's own
//! site, which of them a read tries next, and what a failed local attempt means.
//!
//! Pure: it does no I/O and reads no clock (callers pass `now`); `upstream.rs` drives it.
//!
//! A router configured with a `site` sends `Any` and `AtLeast` reads that the manifest cache
//! cannot answer to a replica of the shard in that site, when the shard has one: the read costs
//! a round trip inside the site instead of one to the leader, wherever the leader is. A replica
//! may answer such reads (a follower serves `AtLeast(i)` once it has applied `i`, `Any` from
//! whatever it has applied), so this changes no guarantee. `Consistent` reads and writes go to
//! the leader as before.
//!
//! - Several local replicas take turns (round robin).
//! - A local replica whose attempt failed for reasons of its own (unreachable, overloaded, no
//!   longer hosting the shard) is skipped for [`LOCAL_REPLICA_SKIP`], so a dead replica costs
//!   one slow attempt, not one per read; then a read tries it again.
//! - A failed local attempt that another replica could serve is sent on to the shard's usual
//!   path (its client: the leader first, retries); an answer that any replica would give is the
//!   read's answer ([`after_local_failure`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cairn_client::Error;
use cairn_wire::api::{ApiError, Epoch, ReplicaAddr};

/// How long a local replica is skipped after an attempt at it failed for reasons of its own.
/// As long as a connection may stay silent before it counts as dead
/// ([`crate::IDLE_TIMEOUT_MS`]): a replica that is back is tried again about as soon as a dead
/// one would be noticed.
pub const LOCAL_REPLICA_SKIP: Duration = Duration::from_millis(crate::IDLE_TIMEOUT_MS);

/// The most time a local attempt gets before the read is sent on (at most half the request
/// timeout, so that the usual path keeps time to answer). A shard node waits up to 200 ms for
/// an `AtLeast` index before it answers `InconsistentRead`; the rest is margin.
pub const LOCAL_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1_000);

/// Where a read forwarded to a shard went first, relative to the router's site (a metric
/// label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locality {
    /// A replica in the router's site.
    Local,
    /// A replica elsewhere, or anywhere when the router has no site.
    Remote,
}

impl Locality {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Remote => "remote",
        }
    }
}

/// Whether `replica` is in `site` (never, when the router has no site).
pub fn is_local(replica: &ReplicaAddr, site: Option<&str>) -> bool {
    site == Some(replica.site.as_str())
}

/// The replicas of one shard in the router's site, with what their last attempts taught.
/// Bounded by the shard's replicas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalReplicas {
    replicas: Vec<LocalReplica>,
    /// Where the round robin goes on.
    next: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct LocalReplica {
    addr: SocketAddr,
    /// When an attempt at it last failed for a reason of its own; cleared by a success.
    failed_at: Option<Instant>,
}

impl LocalReplica {
    fn usable(&self, now: Instant) -> bool {
        self.failed_at
            .is_none_or(|at| now.saturating_duration_since(at) >= LOCAL_REPLICA_SKIP)
    }
}

impl LocalReplicas {
    /// The replicas of `replicas` in `site` whose address resolved, in table order.
    /// `resolved[i]` is the address of `replicas[i]` (`None`: it did not resolve).
    ///
    /// # Panics
    ///
    /// When the two lists differ in length (a caller's bug).
    pub fn new(
        site: Option<&str>,
        replicas: &[ReplicaAddr],
        resolved: &[Option<SocketAddr>],
    ) -> Self {
        assert_eq!(
            replicas.len(),
            resolved.len(),
            "one resolved address per replica"
        );
        let mut local: Vec<LocalReplica> = Vec::new();
        for (replica, addr) in replicas.iter().zip(resolved) {
            if let Some(addr) = *addr
                && is_local(replica, site)
                && !local.iter().any(|r| r.addr == addr)
            {
                local.push(LocalReplica {
                    addr,
                    failed_at: None,
                });
            }
        }
        Self {
            replicas: local,
            next: 0,
        }
    }

    /// How many local replicas there are.
    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// Whether the shard has no usable replica in the router's site.
    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    /// Whether `addr` is one of them.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        self.replicas.iter().any(|r| r.addr == addr)
    }

    /// The locality of a read first sent to `addr` (`None`: not known).
    pub fn locality_of(&self, addr: Option<SocketAddr>) -> Locality {
        match addr {
            Some(addr) if self.contains(addr) => Locality::Local,
            _ => Locality::Remote,
        }
    }

    /// The local replica a read should try now: the next in turn that has not failed within
    /// [`LOCAL_REPLICA_SKIP`] of `now`. `None` when there is none (no local replica, or all of
    /// them failed lately): the read takes the usual path.
    pub fn pick(&mut self, now: Instant) -> Option<SocketAddr> {
        let n = self.replicas.len();
        let i = (0..n)
            .map(|step| (self.next + step) % n)
            .find(|&i| self.replicas[i].usable(now))?;
        self.next = (i + 1) % n;
        Some(self.replicas[i].addr)
    }

    /// An attempt at `addr` failed for a reason of its own at `now`: skip it for a while.
    pub fn failed(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(replica) = self.replicas.iter_mut().find(|r| r.addr == addr) {
            replica.failed_at = Some(now);
        }
    }

    /// An attempt at `addr` was answered: it is usable again at once.
    pub fn answered(&mut self, addr: SocketAddr) {
        if let Some(replica) = self.replicas.iter_mut().find(|r| r.addr == addr) {
            replica.failed_at = None;
        }
    }
}

/// What a failed local attempt means for the read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalFailure {
    /// The replica could not serve it (unreachable, too slow, overloaded, failing, or not
    /// hosting the shard): skip it for a while and send the read on.
    Unwell,
    /// The replica is behind the read (it has not applied the index asked for, or the
    /// namespace's adoption yet); it is fine otherwise: send the read on.
    Behind,
    /// Any replica would answer the same: this is the read's answer.
    Final,
}

/// What the failure `error` of a local attempt at a read routed with epoch `routed` means.
///
/// `WrongShard` needs care: a shard's ownership record changes only through its log, so a
/// replica that has not applied the namespace's `AdoptNamespace` yet answers `WrongShard` with
/// an older epoch (or none) than the one the router routed by. That replica is [`Behind`]; the
/// leader decides. A newer epoch means the route is stale: [`Final`], and the router refreshes
/// its route as for any shard answer.
///
/// [`Behind`]: LocalFailure::Behind
/// [`Final`]: LocalFailure::Final
pub fn after_local_failure(error: &Error, routed: Option<Epoch>) -> LocalFailure {
    let e = match error {
        Error::Api(e) => e,
        // No answer, or one this router cannot read (a node of another version).
        Error::Unavailable { .. } | Error::Protocol(_) => return LocalFailure::Unwell,
        // Only writes are ambiguous; a read is always safe to send again.
        Error::Ambiguous { .. } => return LocalFailure::Unwell,
        // The router's own client is broken: another replica would not help.
        Error::Tls(_) | Error::Config(_) => return LocalFailure::Final,
    };
    match e {
        ApiError::InconsistentRead { .. } => LocalFailure::Behind,
        ApiError::WrongShard { epoch, .. } => match (*epoch, routed) {
            (Some(owned), Some(routed)) if owned >= routed => LocalFailure::Final,
            // An unmanaged shard (no epochs): every replica says the same.
            (_, None) => LocalFailure::Final,
            _ => LocalFailure::Behind,
        },
        // Loose reads are not refused for leadership or quorum, but another replica serves them
        // whatever this one thinks.
        ApiError::UnknownShard(_)
        | ApiError::Busy(_)
        | ApiError::Internal(_)
        | ApiError::Unavailable(_)
        | ApiError::NotLeader { .. }
        | ApiError::NoQuorum { .. } => LocalFailure::Unwell,
        // Decided by the request, the data at an index the read accepts, or the catalog.
        ApiError::NotFound { .. }
        | ApiError::AssertionFailed { .. }
        | ApiError::TooLarge { .. }
        | ApiError::InvalidArgument(_)
        | ApiError::UnknownNamespace(_)
        | ApiError::NamespaceExists(_)
        | ApiError::InvalidManifest(_)
        | ApiError::ObjectExists { .. }
        | ApiError::ObjectChanged { .. }
        | ApiError::ObjectNotFound { .. }
        | ApiError::NotAuthorized(_)
        | ApiError::SiteUnreachable { .. }
        | ApiError::ForcedLeaderDown { .. } => LocalFailure::Final,
    }
}

#[cfg(test)]
mod tests {
    use cairn_wire::api::{Namespace, ShardId};
    use raft_core::{LogIndex, NodeId};

    use super::*;

    fn replica(node: u64, site: &str) -> ReplicaAddr {
        ReplicaAddr {
            node: NodeId(node),
            addr: format!("10.0.0.{node}:7000"),
            site: site.into(),
        }
    }

    fn addr(node: u64) -> SocketAddr {
        format!("10.0.0.{node}:7000").parse().unwrap()
    }

    /// Replicas 1 and 3 in dc1, 2 in dc2, 4 in dc1 but unresolved, all others resolved.
    fn shard() -> (Vec<ReplicaAddr>, Vec<Option<SocketAddr>>) {
        let replicas = vec![
            replica(1, "dc1"),
            replica(2, "dc2"),
            replica(3, "dc1"),
            replica(4, "dc1"),
        ];
        let resolved = vec![Some(addr(1)), Some(addr(2)), Some(addr(3)), None];
        (replicas, resolved)
    }

    #[test]
    fn local_replicas_are_the_resolved_ones_in_the_routers_site() {
        let (replicas, resolved) = shard();
        let local = LocalReplicas::new(Some("dc1"), &replicas, &resolved);
        assert_eq!(local.len(), 2);
        assert!(local.contains(addr(1)) && local.contains(addr(3)));
        assert!(!local.contains(addr(2)), "another site");
        assert!(!local.contains(addr(4)), "did not resolve");

        let elsewhere = LocalReplicas::new(Some("dc2"), &replicas, &resolved);
        assert_eq!(elsewhere.len(), 1);
        assert!(elsewhere.contains(addr(2)));
        assert!(LocalReplicas::new(Some("dc9"), &replicas, &resolved).is_empty());
    }

    #[test]
    fn a_router_without_a_site_has_no_local_replica() {
        let (replicas, resolved) = shard();
        let mut local = LocalReplicas::new(None, &replicas, &resolved);
        assert!(local.is_empty());
        assert_eq!(local.pick(Instant::now()), None);
        assert_eq!(local.locality_of(Some(addr(1))), Locality::Remote);
        assert!(!is_local(&replica(1, "dc1"), None));
    }

    #[test]
    fn a_replica_listed_twice_is_one_local_replica() {
        let replicas = [replica(1, "dc1"), replica(1, "dc1")];
        let local = LocalReplicas::new(Some("dc1"), &replicas, &[Some(addr(1)), Some(addr(1))]);
        assert_eq!(local.len(), 1);
    }

    #[test]
    fn reads_take_turns_over_the_local_replicas() {
        let (replicas, resolved) = shard();
        let mut local = LocalReplicas::new(Some("dc1"), &replicas, &resolved);
        let now = Instant::now();
        let picks: Vec<_> = (0..5).map(|_| local.pick(now).unwrap()).collect();
        assert_eq!(picks, [addr(1), addr(3), addr(1), addr(3), addr(1)]);
    }

    #[test]
    fn a_failed_replica_is_skipped_for_a_while_then_tried_again() {
        let (replicas, resolved) = shard();
        let mut local = LocalReplicas::new(Some("dc1"), &replicas, &resolved);
        let start = Instant::now();
        assert_eq!(local.pick(start), Some(addr(1)));
        local.failed(addr(1), start);
        // Only the other one while replica 1 is skipped.
        let soon = start + LOCAL_REPLICA_SKIP / 2;
        assert_eq!(local.pick(soon), Some(addr(3)));
        assert_eq!(local.pick(soon), Some(addr(3)));
        // When both failed lately, none: the read takes the usual path.
        local.failed(addr(3), soon);
        assert_eq!(local.pick(soon), None);
        // Replica 1's time is up first.
        let later = start + LOCAL_REPLICA_SKIP;
        assert_eq!(local.pick(later), Some(addr(1)));
        assert_eq!(local.pick(later), Some(addr(1)));
        // An answer makes a replica usable at once.
        local.answered(addr(3));
        assert_eq!(local.pick(later), Some(addr(3)));
        // Unknown addresses change nothing.
        local.failed(addr(2), later);
        local.answered(addr(9));
        assert_eq!(local.pick(later), Some(addr(1)));
    }

    #[test]
    fn locality_is_local_only_for_a_local_replica() {
        let (replicas, resolved) = shard();
        let local = LocalReplicas::new(Some("dc1"), &replicas, &resolved);
        assert_eq!(local.locality_of(Some(addr(3))), Locality::Local);
        assert_eq!(local.locality_of(Some(addr(2))), Locality::Remote);
        assert_eq!(local.locality_of(None), Locality::Remote);
        assert_eq!(Locality::Local.label(), "local");
        assert_eq!(Locality::Remote.label(), "remote");
    }

    fn api(e: ApiError) -> Error {
        Error::Api(e)
    }

    fn wrong_shard(epoch: Option<u64>) -> Error {
        api(ApiError::WrongShard {
            shard: ShardId(1),
            namespace: Namespace::new("photos").unwrap(),
            epoch: epoch.map(Epoch),
        })
    }

    #[test]
    fn failures_another_replica_could_serve_are_sent_on() {
        let routed = Some(Epoch(5));
        let unreachable = Error::Unavailable {
            reason: "10.0.0.1:7000 did not answer".into(),
            last_error: "cannot connect".into(),
        };
        for unwell in [
            unreachable,
            Error::Protocol("garbled".into()),
            api(ApiError::UnknownShard(ShardId(1))),
            api(ApiError::Busy("queue full".into())),
            api(ApiError::Internal("storage".into())),
            api(ApiError::Unavailable("shutting down".into())),
            api(ApiError::NotLeader { leader: None }),
            api(ApiError::NoQuorum { proposed: false }),
        ] {
            assert_eq!(
                after_local_failure(&unwell, routed),
                LocalFailure::Unwell,
                "{unwell}"
            );
        }
        let behind = api(ApiError::InconsistentRead {
            applied: LogIndex(3),
            required: LogIndex(4),
        });
        assert_eq!(after_local_failure(&behind, routed), LocalFailure::Behind);
    }

    #[test]
    fn a_wrong_shard_from_a_replica_behind_the_adoption_is_sent_on() {
        let routed = Some(Epoch(5));
        assert_eq!(
            after_local_failure(&wrong_shard(None), routed),
            LocalFailure::Behind
        );
        assert_eq!(
            after_local_failure(&wrong_shard(Some(4)), routed),
            LocalFailure::Behind
        );
        // A newer epoch: the router's route is stale; it corrects it itself.
        assert_eq!(
            after_local_failure(&wrong_shard(Some(6)), routed),
            LocalFailure::Final
        );
        assert_eq!(
            after_local_failure(&wrong_shard(None), None),
            LocalFailure::Final
        );
    }

    #[test]
    fn answers_decided_by_the_request_stand() {
        for e in [
            ApiError::NotFound { key: b"k".to_vec() },
            ApiError::InvalidArgument("bad".into()),
            ApiError::TooLarge {
                what: "response".into(),
                size: 2,
                max: 1,
            },
            ApiError::ObjectNotFound { name: "o".into() },
            ApiError::UnknownNamespace(Namespace::new("photos").unwrap()),
            ApiError::NotAuthorized("no".into()),
        ] {
            assert_eq!(
                after_local_failure(&api(e.clone()), Some(Epoch(1))),
                LocalFailure::Final,
                "{e}"
            );
        }
        assert_eq!(
            after_local_failure(&Error::Tls("bad certificate".into()), None),
            LocalFailure::Final
        );
    }
}
