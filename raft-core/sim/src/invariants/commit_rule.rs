//! Durability under the commit rule: an entry is committed only once it is durable on a set of
//! nodes that satisfies the commit rule the leader counted by when it committed it — a majority
//! of the voters (of both halves during a joint change) and, under
//! `CommitRule::MajorityAndGroups`, at least one node of every group that has members.
//!
//! The rule may change while the group runs (applied policy entries, a leader's early switch when
//! it proposes one, a direct change, a revert when it stops leading), and so may the
//! configuration; the node tells the checker every rule and configuration its core counted by
//! since the previous check, and each newly committed entry must satisfy one of them. The check
//! runs once the leader has persisted the `Ready` reporting the new commit index — before that
//! nothing of it has left the node — against every node's *durable* log (a node whose snapshot
//! covers the entry holds it).

use std::collections::BTreeSet;

use raft_core::{LogIndex, MemStorage, NodeId, Storage, quorum};

use crate::node::CommitCheck;

/// Stateless: each check carries what it needs.
#[derive(Debug, Default)]
pub struct CommitRuleDurability;

impl CommitRuleDurability {
    /// `leader` (whose durable log is `leader_log`) advanced its commit index as `check` says;
    /// `disks` are the durable logs of every node of the run, running or crashed.
    pub fn on_commit(
        &self,
        leader: NodeId,
        check: &CommitCheck,
        leader_log: &MemStorage,
        disks: &[(NodeId, &MemStorage)],
    ) -> Option<String> {
        let mut index = check.from.next();
        while index <= check.to {
            // An entry the leader no longer holds was compacted, so it was applied, so it was
            // checked when it committed.
            if let Ok(term) = leader_log.term(index) {
                let holders: BTreeSet<NodeId> = disks
                    .iter()
                    .filter(|(_, disk)| holds(disk, index, term))
                    .map(|(id, _)| *id)
                    .collect();
                let acked = |id: NodeId| {
                    if holders.contains(&id) {
                        index
                    } else {
                        LogIndex::ZERO
                    }
                };
                let satisfied = check
                    .rules
                    .iter()
                    .any(|(rule, conf)| quorum::committed_index(conf, rule, &acked) >= index);
                if !satisfied {
                    let rules: Vec<String> = check
                        .rules
                        .iter()
                        .map(|(rule, conf)| {
                            format!(
                                "{} over voters {:?}/{:?} learners {:?}",
                                crate::policy::describe_commit_rule(rule),
                                conf.voters,
                                conf.voters_outgoing,
                                conf.learners
                            )
                        })
                        .collect();
                    return Some(format!(
                        "leader {leader} committed {term}/{index} (commit {} -> {}) but only \
                         {holders:?} hold it durably, which satisfies none of the rules it \
                         counted by: {rules:?}",
                        check.from, check.to
                    ));
                }
            }
            index = index.next();
        }
        None
    }
}

/// Whether `disk` durably holds the entry `term`/`index`, in its log or under its snapshot.
fn holds(disk: &MemStorage, index: LogIndex, term: raft_core::Term) -> bool {
    match disk.first_index() {
        Ok(first) if index < first => true,
        _ => disk.term(index).is_ok_and(|held| held == term),
    }
}
