//! State machine safety (Raft §5.4.3, Figure 3): if a node has applied an entry at an index, no
//! other node ever applies a different entry at that index. Also checks that each node applies
//! in order without gaps.

use std::collections::BTreeMap;

use raft_core::{Entry, EntryPayload, LogIndex, NodeId, Term};

/// The entries applied anywhere, by index: the committed log as the cluster has revealed it.
#[derive(Debug, Default)]
pub struct StateMachineSafety {
    committed: BTreeMap<LogIndex, (Term, EntryPayload, NodeId)>,
    applied: BTreeMap<NodeId, LogIndex>,
}

impl StateMachineSafety {
    /// `node` applied `entry`. Returns the violation, if any.
    pub fn on_applied(&mut self, node: NodeId, entry: &Entry) -> Option<String> {
        let last = self.applied.get(&node).copied().unwrap_or_default();
        if entry.index != last.next() {
            return Some(format!(
                "node {node} applied {} right after {last}",
                entry.index
            ));
        }
        self.applied.insert(node, entry.index);
        match self.committed.get(&entry.index) {
            None => {
                self.committed
                    .insert(entry.index, (entry.term, entry.payload.clone(), node));
                None
            }
            Some((term, payload, first)) if *term != entry.term || *payload != entry.payload => {
                Some(format!(
                    "at index {}: node {first} applied {term}/{payload:?}, node {node} applied \
                     {}/{:?}",
                    entry.index, entry.term, entry.payload
                ))
            }
            Some(_) => None,
        }
    }

    /// `node` installed a snapshot at `(index, term)` (applying everything up to it), or
    /// restarted from one.
    pub fn on_snapshot(&mut self, node: NodeId, index: LogIndex, term: Term) -> Option<String> {
        self.applied.insert(node, index);
        match self.committed.get(&index) {
            Some((committed_term, _, first)) if *committed_term != term => Some(format!(
                "node {node} installed a snapshot at {term}/{index}, but {first} applied term \
                 {committed_term} there"
            )),
            _ => None,
        }
    }

    /// The highest index applied anywhere.
    pub fn max_committed(&self) -> LogIndex {
        self.committed
            .keys()
            .next_back()
            .copied()
            .unwrap_or_default()
    }

    /// Every known committed `(index, term)`, in order.
    pub fn committed_terms(&self) -> impl Iterator<Item = (LogIndex, Term)> + '_ {
        self.committed
            .iter()
            .map(|(index, (term, _, _))| (*index, *term))
    }
}
