//! What a seed decides before the run starts: cluster shape, core settings, policies.

use std::collections::BTreeSet;
use std::fmt;

use raft_core::{CommitRule, Config, LeaderPolicy, NodeId};

use crate::policy::{Policy, describe_commit_rule, describe_leader_policy, site_groups};
use crate::rng::SimRng;

/// The shape and settings of one simulated cluster.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Initial voters.
    pub voters: Vec<NodeId>,
    /// Initial learners.
    pub learners: Vec<NodeId>,
    /// Nodes that may join later through membership changes.
    pub spares: Vec<NodeId>,
    /// Pre-vote on.
    pub pre_vote: bool,
    /// Check-quorum on.
    pub check_quorum: bool,
    /// Election timeout.
    pub election_timeout_ticks: u32,
    /// Heartbeat interval.
    pub heartbeat_interval_ticks: u32,
    /// Leader lease (0: read-index only).
    pub lease_duration_ticks: u32,
    /// Appends in flight per follower.
    pub inflight_appends_max: usize,
    /// Bytes per append.
    pub append_size_max_bytes: u64,
    /// Bytes of committed entries handed out per Ready: small values make applying lag behind
    /// committing, as it does in a real driver under load or while replaying after a restart.
    pub committed_size_max_bytes_per_ready: u64,
    /// Leader policy.
    pub leader_policy: LeaderPolicy,
    /// Commit rule.
    pub commit_rule: CommitRule,
    /// Simulated clients.
    pub clients: u64,
    /// Keys the clients use.
    pub keys: u64,
}

impl Scenario {
    /// Draws a scenario.
    pub fn random(rng: &mut SimRng) -> Self {
        let voter_count = if rng.chance(0.6) { 3 } else { 5 };
        let learner_count = match rng.range(0, 20) {
            0..10 => 0,
            10..17 => 1,
            _ => 2,
        };
        let ids: Vec<NodeId> = (1..=voter_count + learner_count + 2).map(NodeId).collect();
        let voters = ids[..voter_count as usize].to_vec();
        let learners = ids[voter_count as usize..(voter_count + learner_count) as usize].to_vec();
        let spares = ids[(voter_count + learner_count) as usize..].to_vec();
        let check_quorum = rng.chance(0.8);
        let election_timeout_ticks = rng.range(8, 16) as u32;
        let lease_duration_ticks = if check_quorum && rng.chance(0.6) {
            rng.range(2, u64::from(election_timeout_ticks) - 1) as u32
        } else {
            0
        };
        let leader_policy = match rng.range(0, 20) {
            0..14 => LeaderPolicy::Any,
            14..17 => {
                let preferred = rng.pick(&voters).expect("at least three voters");
                LeaderPolicy::Preferred(BTreeSet::from([preferred]))
            }
            _ => LeaderPolicy::Forced(rng.pick(&voters).expect("at least three voters")),
        };
        let commit_rule = if rng.chance(0.2) {
            // Two "sites": odd and even node ids; a commit needs one acknowledgement in each.
            site_groups(&ids.iter().copied().collect())
        } else {
            CommitRule::Majority
        };
        Self {
            voters,
            learners,
            spares,
            pre_vote: rng.chance(0.8),
            check_quorum,
            election_timeout_ticks,
            heartbeat_interval_ticks: rng.range(1, 3) as u32,
            lease_duration_ticks,
            inflight_appends_max: rng.range(1, 8) as usize,
            append_size_max_bytes: rng.range(64, 4096),
            committed_size_max_bytes_per_ready: if rng.chance(0.5) {
                rng.range(32, 512)
            } else {
                16 << 20
            },
            leader_policy,
            commit_rule,
            clients: rng.range(2, 6),
            keys: rng.range(1, 6),
        }
    }

    /// A fixed, well-behaved scenario for scripted tests: these voters, no learners or spares,
    /// pre-vote and check-quorum on, election timeout 10 ticks, heartbeat every tick, no lease,
    /// policy `any`, commit by majority, no clients. Tests change the fields they care about.
    pub fn fixed(voters: &[u64]) -> Self {
        Self {
            voters: voters.iter().copied().map(NodeId).collect(),
            learners: Vec::new(),
            spares: Vec::new(),
            pre_vote: true,
            check_quorum: true,
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 1,
            lease_duration_ticks: 0,
            inflight_appends_max: 4,
            append_size_max_bytes: 1024,
            committed_size_max_bytes_per_ready: 16 << 20,
            leader_policy: LeaderPolicy::Any,
            commit_rule: CommitRule::Majority,
            clients: 0,
            keys: 3,
        }
    }

    /// The policy in force before any change: the one every node starts with.
    pub fn policy(&self) -> Policy {
        Policy {
            commit_rule: self.commit_rule.clone(),
            leader_policy: self.leader_policy.clone(),
        }
    }

    /// Every node id the run may use.
    pub fn all_nodes(&self) -> BTreeSet<NodeId> {
        self.voters
            .iter()
            .chain(&self.learners)
            .chain(&self.spares)
            .copied()
            .collect()
    }

    /// The core configuration of node `id`.
    pub fn config(&self, id: NodeId, seed: u64) -> Config {
        Config {
            election_timeout_ticks: self.election_timeout_ticks,
            heartbeat_interval_ticks: self.heartbeat_interval_ticks,
            lease_duration_ticks: self.lease_duration_ticks,
            pre_vote: self.pre_vote,
            check_quorum: self.check_quorum,
            append_size_max_bytes: self.append_size_max_bytes,
            inflight_appends_max: self.inflight_appends_max,
            committed_size_max_bytes_per_ready: self.committed_size_max_bytes_per_ready,
            leader_policy: self.leader_policy.clone(),
            commit_rule: self.commit_rule.clone(),
            seed,
            ..Config::new(id.get())
        }
    }

    /// The forced leader, if the policy has one.
    pub fn forced_leader(&self) -> Option<NodeId> {
        match self.leader_policy {
            LeaderPolicy::Forced(id) => Some(id),
            _ => None,
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let policy = describe_leader_policy(&self.leader_policy);
        let rule = describe_commit_rule(&self.commit_rule);
        write!(
            f,
            "voters={:?} learners={:?} spares={:?} pre_vote={} check_quorum={} election={} \
             heartbeat={} lease={} inflight={} append_bytes={} apply_bytes={} policy={policy} commit={rule} \
             clients={} keys={}",
            ids(self.voters.iter()),
            ids(self.learners.iter()),
            ids(self.spares.iter()),
            self.pre_vote,
            self.check_quorum,
            self.election_timeout_ticks,
            self.heartbeat_interval_ticks,
            self.lease_duration_ticks,
            self.inflight_appends_max,
            self.append_size_max_bytes,
            self.committed_size_max_bytes_per_ready,
            self.clients,
            self.keys,
        )
    }
}

fn ids<'a>(iter: impl Iterator<Item = &'a NodeId>) -> Vec<u64> {
    iter.map(|id| id.get()).collect()
}
