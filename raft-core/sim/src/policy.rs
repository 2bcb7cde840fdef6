//! Replication policies changed while the group runs, the way shard-node changes them.
//!
//! A [`Policy`] is a commit rule and a leader policy. shard-node replicates a change through the
//! log: every replica hands the new policy to its core when it *applies* the entry, so replicas
//! switch at different times; the leader that proposes one counts by the new commit rule at once
//! (every rule is a majority or stricter, and Raft's safety needs only majority overlap), which is
//! what lets an operator relax `majority+all-sites` while a site is cut off; and a node that stops
//! leading goes back to the rule it has applied. The simulator models exactly that
//! ([`crate::node::SimNode::propose_policy`]), plus a direct knob that sets a rule or a policy on
//! any nodes at any time, to make replicas disagree longer and more arbitrarily than the log
//! would.

use std::collections::BTreeSet;
use std::fmt;

use raft_core::{CommitRule, LeaderPolicy, NodeId};
use serde::{Deserialize, Serialize};

use crate::rng::SimRng;

/// What a policy change carries: how entries commit and who may lead.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// How many acknowledgements commit an entry.
    pub commit_rule: CommitRule,
    /// Which nodes may lead.
    pub leader_policy: LeaderPolicy,
}

impl Policy {
    /// Draws a policy for a group whose voters are `voters` (the nodes a preferred or forced
    /// policy may name) among all the nodes `ids` of the run (which the site groups split).
    pub fn random(rng: &mut SimRng, voters: &[NodeId], ids: &BTreeSet<NodeId>) -> Self {
        let leader_policy = match (rng.range(0, 20), rng.pick(voters)) {
            (0..7, _) | (_, None) => LeaderPolicy::Any,
            (7..11, Some(voter)) => LeaderPolicy::Preferred(BTreeSet::from([voter])),
            (11..13, Some(voter)) => {
                let second = rng.pick(voters).unwrap_or(voter);
                LeaderPolicy::Preferred(BTreeSet::from([voter, second]))
            }
            (_, Some(voter)) => LeaderPolicy::Forced(voter),
        };
        let commit_rule = if rng.chance(0.5) {
            site_groups(ids)
        } else {
            CommitRule::Majority
        };
        Self {
            commit_rule,
            leader_policy,
        }
    }

    /// The node the policy forces, if it forces one.
    pub fn forced(&self) -> Option<NodeId> {
        match self.leader_policy {
            LeaderPolicy::Forced(id) => Some(id),
            _ => None,
        }
    }
}

/// The simulator's two "sites", odd and even node ids, as a commit rule that needs one
/// acknowledgement in each on top of a majority.
pub fn site_groups(ids: &BTreeSet<NodeId>) -> CommitRule {
    let (odd, even): (BTreeSet<NodeId>, BTreeSet<NodeId>) =
        ids.iter().partition(|id| id.get() % 2 == 1);
    CommitRule::MajorityAndGroups(vec![odd, even])
}

/// A short, stable rendering of a leader policy for traces: `any`, `preferred[1, 3]`,
/// `forced(2)`.
pub fn describe_leader_policy(policy: &LeaderPolicy) -> String {
    match policy {
        LeaderPolicy::Any => "any".to_owned(),
        LeaderPolicy::Preferred(set) => format!("preferred{:?}", ids(set)),
        LeaderPolicy::Forced(id) => format!("forced({id})"),
    }
}

/// A short, stable rendering of a commit rule for traces: `majority`,
/// `majority+groups[[1, 3], [2, 4]]`.
pub fn describe_commit_rule(rule: &CommitRule) -> String {
    match rule {
        CommitRule::Majority => "majority".to_owned(),
        CommitRule::MajorityAndGroups(groups) => {
            let groups: Vec<Vec<u64>> = groups.iter().map(ids).collect();
            format!("majority+groups{groups:?}")
        }
    }
}

fn ids(set: &BTreeSet<NodeId>) -> Vec<u64> {
    set.iter().map(|id| id.get()).collect()
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "leader={} commit={}",
            describe_leader_policy(&self.leader_policy),
            describe_commit_rule(&self.commit_rule)
        )
    }
}
