//! No committed entry is lost across crashes.
//!
//! A crash in the simulator throws away everything that was not persisted through a `Ready`. If
//! the core ever acknowledged or counted an entry before it was durable, a crash can make a
//! committed entry disappear; the other checkers then see a different entry applied at its index
//! or a leader without it. This checker adds the direct checks: when a node restarts, its durable
//! log must agree with every committed entry it holds (and its durable commit index must be
//! covered by its log); and at the end of a run, every member must have applied every entry ever
//! committed.

use raft_core::{MemStorage, NodeId, Storage};

use super::StateMachineSafety;

/// Stateless: the committed record lives in [`StateMachineSafety`].
#[derive(Debug, Default)]
pub struct Durability;

impl Durability {
    /// `node` restarts from `disk`.
    pub fn on_restart(
        &self,
        node: NodeId,
        disk: &MemStorage,
        committed: &StateMachineSafety,
    ) -> Option<String> {
        let hard_state = disk.hard_state();
        let last = disk.last_index().ok()?;
        if hard_state.commit > last {
            return Some(format!(
                "node {node} persisted commit {} beyond its durable log end {last}",
                hard_state.commit
            ));
        }
        let first = disk.first_index().ok()?;
        for (index, term) in committed.committed_terms() {
            if index < first || index > last {
                continue;
            }
            let held = disk.term(index).ok()?;
            // A log may hold a different entry at an index beyond what it knows is committed only
            // if that entry would be overwritten; at or below its own commit index it must agree.
            if index <= hard_state.commit && held != term {
                return Some(format!(
                    "node {node} restarts with entry {held}/{index} but {term}/{index} was \
                     committed"
                ));
            }
        }
        None
    }

    /// At the end of a run: `node` has applied up to `applied`; everything ever committed must
    /// be in it.
    pub fn on_final(
        &self,
        node: NodeId,
        applied: raft_core::LogIndex,
        committed: &StateMachineSafety,
    ) -> Option<String> {
        let max = committed.max_committed();
        (applied < max)
            .then(|| format!("member {node} applied only up to {applied} but {max} was committed"))
    }
}
