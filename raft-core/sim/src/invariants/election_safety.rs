//! Election safety (Raft §5.2, Figure 3): at most one leader can be elected in a given term.

use std::collections::BTreeMap;

use raft_core::{NodeId, Term};

/// Remembers who led each term.
#[derive(Debug, Default)]
pub struct ElectionSafety {
    leaders: BTreeMap<Term, NodeId>,
}

impl ElectionSafety {
    /// `node` became leader in `term`. Returns the violation, if any.
    pub fn on_leader(&mut self, node: NodeId, term: Term) -> Option<String> {
        let first = *self.leaders.entry(term).or_insert(node);
        (first != node).then(|| format!("nodes {first} and {node} both led term {term}"))
    }

    /// How many distinct terms had a leader (for the run summary).
    pub fn terms_with_leader(&self) -> usize {
        self.leaders.len()
    }
}
