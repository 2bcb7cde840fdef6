//! Quorum arithmetic, kept pure: majorities of one or two voter sets (joint consensus), and the
//! pluggable commit rule.

use std::collections::BTreeSet;

use crate::types::{CommitRule, ConfState, LogIndex, NodeId};

/// The outcome of counting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// Not decided yet: missing answers could still go either way.
    Pending,
    /// A quorum refused.
    Lost,
    /// A quorum granted.
    Won,
}

/// The highest index acknowledged by a majority of `voters`, given each node's acknowledged
/// index. An empty set imposes no constraint (it returns `LogIndex(u64::MAX)`), so that in a
/// non-joint configuration the absent outgoing half does not hold commits back.
pub fn majority_index(voters: &BTreeSet<NodeId>, acked: &impl Fn(NodeId) -> LogIndex) -> LogIndex {
    if voters.is_empty() {
        return LogIndex(u64::MAX);
    }
    let mut indexes: Vec<LogIndex> = voters.iter().map(|&id| acked(id)).collect();
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    // With n voters, the (n/2 + 1)-th highest acknowledgement is held by a majority.
    indexes[voters.len() / 2]
}

/// The index committed under `rule` in configuration `conf`: a majority of both halves, and for
/// [`CommitRule::MajorityAndGroups`] also at least one node of every group.
pub fn committed_index(
    conf: &ConfState,
    rule: &CommitRule,
    acked: &impl Fn(NodeId) -> LogIndex,
) -> LogIndex {
    let mut index =
        majority_index(&conf.voters, acked).min(majority_index(&conf.voters_outgoing, acked));
    if let CommitRule::MajorityAndGroups(groups) = rule {
        let members = conf.all_nodes();
        for group in groups {
            // A group none of whose nodes is a member cannot acknowledge anything; it is ignored
            // rather than blocking the group forever (the policy layer reports it instead).
            let best = group
                .iter()
                .filter(|id| members.contains(id))
                .map(|&id| acked(id))
                .max();
            if let Some(best) = best {
                index = index.min(best);
            }
        }
    }
    index
}

/// Counts votes in one voter set. `vote` answers `Some(granted)` for nodes that answered.
pub fn majority_vote(
    voters: &BTreeSet<NodeId>,
    vote: &impl Fn(NodeId) -> Option<bool>,
) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let (mut granted, mut missing) = (0, 0);
    for &id in voters {
        match vote(id) {
            Some(true) => granted += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    let quorum = voters.len() / 2 + 1;
    if granted >= quorum {
        VoteResult::Won
    } else if granted + missing >= quorum {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

/// Counts votes in a (possibly joint) configuration: both halves must be won.
pub fn joint_vote(conf: &ConfState, vote: &impl Fn(NodeId) -> Option<bool>) -> VoteResult {
    let incoming = majority_vote(&conf.voters, vote);
    let outgoing = majority_vote(&conf.voters_outgoing, vote);
    match (incoming, outgoing) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn set(ids: &[u64]) -> BTreeSet<NodeId> {
        ids.iter().map(|&id| NodeId(id)).collect()
    }

    fn acks(pairs: &[(u64, u64)]) -> impl Fn(NodeId) -> LogIndex {
        let map: BTreeMap<NodeId, LogIndex> = pairs
            .iter()
            .map(|&(id, index)| (NodeId(id), LogIndex(index)))
            .collect();
        move |id| map.get(&id).copied().unwrap_or_default()
    }

    #[test]
    fn majority_index_is_held_by_a_majority() {
        let acked = acks(&[(1, 5), (2, 3), (3, 9)]);
        assert_eq!(majority_index(&set(&[1, 2, 3]), &acked), LogIndex(5));
        let acked = acks(&[(1, 5), (2, 3), (3, 9), (4, 7)]);
        assert_eq!(majority_index(&set(&[1, 2, 3, 4]), &acked), LogIndex(5));
        assert_eq!(majority_index(&set(&[1]), &acked), LogIndex(5));
    }

    #[test]
    fn joint_commit_needs_both_halves() {
        let conf = ConfState {
            voters: set(&[1, 2, 3]),
            voters_outgoing: set(&[1, 4, 5]),
            learners: BTreeSet::new(),
        };
        let acked = acks(&[(1, 9), (2, 9), (3, 9), (4, 2), (5, 1)]);
        assert_eq!(
            committed_index(&conf, &CommitRule::Majority, &acked),
            LogIndex(2)
        );
    }

    #[test]
    fn group_rule_waits_for_every_group() {
        let conf = ConfState {
            voters: set(&[1, 2, 3]),
            voters_outgoing: BTreeSet::new(),
            learners: set(&[4]),
        };
        let rule = CommitRule::MajorityAndGroups(vec![set(&[1, 2]), set(&[3, 4])]);
        let acked = acks(&[(1, 9), (2, 9), (3, 1), (4, 4)]);
        // Majority alone would give 9; the second group has acknowledged at most 4.
        assert_eq!(committed_index(&conf, &rule, &acked), LogIndex(4));
        // A group with no member nodes does not block.
        let rule = CommitRule::MajorityAndGroups(vec![set(&[7, 8])]);
        assert_eq!(committed_index(&conf, &rule, &acked), LogIndex(9));
    }

    #[test]
    fn votes_are_pending_until_decided() {
        let voters = set(&[1, 2, 3]);
        assert_eq!(
            majority_vote(&voters, &|id| (id == NodeId(1)).then_some(true)),
            VoteResult::Pending
        );
        assert_eq!(
            majority_vote(&voters, &|id| (id != NodeId(3)).then_some(true)),
            VoteResult::Won
        );
        assert_eq!(
            majority_vote(&voters, &|id| (id != NodeId(3)).then_some(false)),
            VoteResult::Lost
        );
    }
}
