//! Forced-leader exclusivity (Arakoon's forced master): under `LeaderPolicy::Forced(n)`, no node
//! other than `n` ever becomes leader.

use raft_core::{NodeId, Term};

/// Watches leaders under a forced policy.
#[derive(Debug, Default)]
pub struct ForcedLeader {
    forced: Option<NodeId>,
}

impl ForcedLeader {
    /// Checks leaders against `forced` (`None`: no forced policy in this run).
    pub fn new(forced: Option<NodeId>) -> Self {
        Self { forced }
    }

    /// `node` became leader in `term`. Returns the violation, if any.
    pub fn on_leader(&self, node: NodeId, term: Term) -> Option<String> {
        let forced = self.forced?;
        (node != forced).then(|| format!("node {node} led term {term} but {forced} is forced"))
    }
}
