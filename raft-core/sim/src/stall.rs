//! When liveness cannot be expected: a group whose leader policies leave no voter that can be
//! elected.
//!
//! Under `LeaderPolicy::Forced(n)` only `n` campaigns and gets votes. A policy changed at run time
//! can leave a group where, with no leader left, nobody can be elected any more: the forced node
//! lacks entries a majority holds (so they refuse it), or it has not learnt that the entry forcing
//! it is committed (so it still defers to the node forced before), and only a leader could fix
//! either. raft-core's leader hands over to the forced node before it steps aside, which avoids
//! this while that leader lives; once it is gone, only an operator can.
//!
//! The run's liveness checks therefore ask [`policy_stall`] first: a leaderless group counts as a
//! liveness violation unless it is stalled in this precise sense, which is reported separately;
//! a run that ends so is then handed to the operator ([`crate::operator`]), after which a group
//! still leaderless is a violation.

use std::collections::BTreeMap;

use raft_core::{ConfState, LeaderPolicy, LogIndex, NodeId, Term, quorum};

/// What an election depends on, for one running node.
#[derive(Clone, Debug)]
pub struct ElectionView {
    /// The configuration it has applied.
    pub conf: ConfState,
    /// The leader policy it has adopted.
    pub policy: LeaderPolicy,
    /// Its last log entry: `(term, index)`.
    pub last: (Term, LogIndex),
}

/// Whether no running voter can be elected, given each node's configuration, policy and log as
/// the core's rules for campaigning and voting see them. Only a group where some node has
/// adopted a forced policy can stall: otherwise a voter with the most up-to-date log can always
/// campaign and win. Returns a description of the stall.
pub fn policy_stall(nodes: &BTreeMap<NodeId, ElectionView>) -> Option<String> {
    if !nodes
        .values()
        .any(|node| matches!(node.policy, LeaderPolicy::Forced(_)))
    {
        return None;
    }
    for (&id, candidate) in nodes {
        if !may_campaign(id, candidate) {
            continue;
        }
        let vote = |voter: NodeId| {
            Some(
                voter == id
                    || nodes
                        .get(&voter)
                        .is_some_and(|node| grants(voter, node, id, candidate)),
            )
        };
        if quorum::joint_vote(&candidate.conf, &vote) == quorum::VoteResult::Won {
            return None;
        }
    }
    let views: Vec<String> = nodes
        .iter()
        .map(|(id, node)| {
            let policy = crate::policy::describe_leader_policy(&node.policy);
            format!("{id}: {policy} last {}/{}", node.last.0, node.last.1)
        })
        .collect();
    Some(format!("no voter can be elected: {}", views.join(", ")))
}

/// Whether `id` campaigns at all: it votes, and its own policy lets it lead.
fn may_campaign(id: NodeId, node: &ElectionView) -> bool {
    node.conf.is_voter(id)
        && match node.policy {
            LeaderPolicy::Forced(forced) => forced == id,
            _ => true,
        }
}

/// Whether `voter` grants its vote to `candidate` (log up to date, and its policy allows it).
fn grants(
    voter: NodeId,
    voter_view: &ElectionView,
    candidate: NodeId,
    candidate_view: &ElectionView,
) -> bool {
    let up_to_date = candidate_view.last >= voter_view.last;
    let allowed = match &voter_view.policy {
        LeaderPolicy::Any => true,
        LeaderPolicy::Forced(forced) => *forced == candidate,
        LeaderPolicy::Preferred(preferred) => {
            !preferred.contains(&voter)
                || preferred.contains(&candidate)
                || candidate_view.last > voter_view.last
        }
    };
    up_to_date && allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(policy: LeaderPolicy, last: (u64, u64)) -> ElectionView {
        ElectionView {
            conf: ConfState::with_voters([1, 2, 3]),
            policy,
            last: (Term(last.0), LogIndex(last.1)),
        }
    }

    #[test]
    fn a_forced_node_behind_the_majority_stalls_the_group() {
        let nodes = BTreeMap::from([
            (NodeId(1), view(LeaderPolicy::Forced(NodeId(3)), (2, 9))),
            (NodeId(2), view(LeaderPolicy::Forced(NodeId(3)), (2, 9))),
            (NodeId(3), view(LeaderPolicy::Forced(NodeId(3)), (1, 5))),
        ]);
        assert!(policy_stall(&nodes).is_some());
    }

    #[test]
    fn an_up_to_date_forced_node_can_be_elected() {
        let nodes = BTreeMap::from([
            (NodeId(1), view(LeaderPolicy::Forced(NodeId(3)), (2, 9))),
            (NodeId(2), view(LeaderPolicy::Forced(NodeId(3)), (2, 9))),
            (NodeId(3), view(LeaderPolicy::Any, (2, 9))),
        ]);
        assert!(policy_stall(&nodes).is_none());
    }

    #[test]
    fn a_group_without_forced_policies_never_stalls() {
        let nodes = BTreeMap::from([
            (NodeId(1), view(LeaderPolicy::Any, (2, 9))),
            (NodeId(2), view(LeaderPolicy::Any, (1, 3))),
        ]);
        assert!(policy_stall(&nodes).is_none());
    }
}
