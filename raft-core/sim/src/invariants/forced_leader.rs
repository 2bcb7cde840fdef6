//! Forced-leader exclusivity (Arakoon's forced master), with policies that change at run time.
//!
//! Two checks when a node becomes leader:
//! - a node whose own adopted policy is `Forced(n)` with `n` another node never becomes leader
//!   (it must not campaign, and must abandon a campaign it started before adopting it);
//! - once every running node has adopted `Forced(n)`, no node other than `n` becomes leader in a
//!   term whose campaign started after that (every vote of such a term was cast under the forced
//!   policy). The condition must hold without a break from then on: a node that starts with
//!   another policy, or adopts one, could legitimately have voted otherwise.
//!
//! An operator's override ([`crate::operator`]) is such a change of policy, on the node that
//! takes it, from the moment it does: the operator ended the `Forced(n)` guarantee there. A
//! leader other than n elected before the override is still a violation; one elected after it
//! is legitimate (and a node overridden to `Forced(m)` is held to m from then on).

use std::collections::BTreeMap;

use raft_core::{LeaderPolicy, NodeId, Term};

/// Watches leaders against the forced policies nodes have adopted.
#[derive(Debug, Default)]
pub struct ForcedLeader {
    /// The node every running node has forced, and since when (simulated time), without a break.
    all_forced: Option<(NodeId, u64)>,
    /// When each node last became a candidate, and for which term.
    campaigns: BTreeMap<NodeId, (Term, u64)>,
}

impl ForcedLeader {
    /// The leader policies of the running nodes changed (or the set of running nodes did):
    /// `policies` are all of them, now.
    pub fn on_policies<'a>(
        &mut self,
        now: u64,
        policies: impl IntoIterator<Item = &'a LeaderPolicy>,
    ) {
        let mut forced = None;
        let mut all = true;
        for policy in policies {
            match (policy, forced) {
                (LeaderPolicy::Forced(n), None) => forced = Some(*n),
                (LeaderPolicy::Forced(n), Some(f)) if *n == f => {}
                _ => all = false,
            }
        }
        self.all_forced = match (all, forced, self.all_forced) {
            (true, Some(n), Some((since_n, since))) if since_n == n => Some((n, since)),
            (true, Some(n), _) => Some((n, now)),
            _ => None,
        };
    }

    /// `node` became a candidate for `term`.
    pub fn on_campaign(&mut self, node: NodeId, term: Term, now: u64) {
        self.campaigns.insert(node, (term, now));
    }

    /// `node` became leader in `term`; `own` is the leader policy it has adopted. Returns the
    /// violation, if any.
    pub fn on_leader(&self, node: NodeId, term: Term, own: &LeaderPolicy) -> Option<String> {
        if let LeaderPolicy::Forced(forced) = own
            && *forced != node
        {
            return Some(format!(
                "node {node} became leader of term {term} although its own policy forces {forced}"
            ));
        }
        let (forced, since) = self.all_forced?;
        let campaign = self.campaigns.get(&node).filter(|(t, _)| *t == term);
        match campaign {
            Some((_, started)) if forced != node && *started >= since => Some(format!(
                "node {node} became leader of term {term}, whose campaign started at t={started}, \
                 but every running node had adopted forced({forced}) since t={since}"
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: LeaderPolicy = LeaderPolicy::Any;

    fn forced(id: u64) -> LeaderPolicy {
        LeaderPolicy::Forced(NodeId(id))
    }

    #[test]
    fn another_leader_before_the_override_is_a_violation() {
        let mut checker = ForcedLeader::default();
        checker.on_policies(10, [&forced(1), &forced(1), &forced(1)]);
        checker.on_campaign(NodeId(2), Term(3), 20);
        assert!(checker.on_leader(NodeId(2), Term(3), &forced(1)).is_some());
        // Even if the leader's own policy were changed, the votes were cast under forced(1).
        assert!(checker.on_leader(NodeId(2), Term(3), &ANY).is_some());
    }

    #[test]
    fn another_leader_after_the_override_is_legitimate() {
        let mut checker = ForcedLeader::default();
        checker.on_policies(10, [&forced(1), &forced(1), &forced(1)]);
        // The operator lifts forced(1) on nodes 2 and 3 (node 1, down or refusing, keeps it).
        checker.on_policies(30, [&forced(1), &ANY, &ANY]);
        checker.on_campaign(NodeId(2), Term(4), 40);
        assert_eq!(checker.on_leader(NodeId(2), Term(4), &ANY), None);
    }

    #[test]
    fn an_override_to_another_forced_node_holds_the_group_to_it() {
        let mut checker = ForcedLeader::default();
        checker.on_policies(10, [&forced(1), &forced(1), &forced(1)]);
        checker.on_policies(30, [&forced(3), &forced(3), &forced(3)]);
        checker.on_campaign(NodeId(2), Term(4), 40);
        assert!(checker.on_leader(NodeId(2), Term(4), &forced(3)).is_some());
        checker.on_campaign(NodeId(3), Term(5), 50);
        assert_eq!(checker.on_leader(NodeId(3), Term(5), &forced(3)), None);
        // A node still forcing 1 never leads itself, override or not.
        assert!(checker.on_leader(NodeId(2), Term(6), &forced(1)).is_some());
    }
}
