//! Leader completeness (Raft §5.4, Figure 3): if an entry is committed in a term, it is present
//! in the log of the leader of every later term. Checked when a node becomes leader, against
//! every entry the cluster has applied so far.

use raft_core::{MemStorage, NodeId, Storage, Term};

use super::StateMachineSafety;

/// Stateless: the committed record lives in [`StateMachineSafety`].
#[derive(Debug, Default)]
pub struct LeaderCompleteness;

impl LeaderCompleteness {
    /// `node` became leader in `term` with (freshly persisted) log `storage`.
    pub fn on_leader(
        &self,
        node: NodeId,
        term: Term,
        storage: &MemStorage,
        committed: &StateMachineSafety,
    ) -> Option<String> {
        let first = storage.first_index().ok()?;
        for (index, committed_term) in committed.committed_terms() {
            // Entries below the first index are covered by the node's snapshot, which only ever
            // holds committed state.
            if index < first {
                continue;
            }
            match storage.term(index) {
                Ok(t) if t == committed_term => {}
                found => {
                    return Some(format!(
                        "node {node} leads term {term} but lacks committed entry \
                         {committed_term}/{index} (has {found:?})"
                    ));
                }
            }
        }
        None
    }
}
