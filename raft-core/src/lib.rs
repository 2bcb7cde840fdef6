//! cairn's consensus core: Raft as a pure, deterministic state machine.
//!
//! `raft-core` does no I/O, reads no clock, starts no thread and draws no entropy. Time is
//! [`RawNode::tick`]; randomness (election jitter) comes from [`Config::seed`]; storage is read
//! through the read-only [`Storage`] trait; and every effect — entries and state to persist,
//! messages to send, entries to apply, reads to serve — leaves through a [`Ready`] value. The
//! same inputs always produce the same outputs, which is what lets the simulator replay any
//! failure from its seed.
//!
//! Features: leader election with randomized timeouts, pre-vote and check-quorum; pipelined
//! replication with flow control and fast log backtracking; proposal batching; linearizable reads
//! by read-index or leader lease; learners and joint-consensus membership changes; leader
//! transfer; leader policies (`Any`, `Preferred`, `Forced`); pluggable commit rules (majority, or
//! majority plus one acknowledgement per group of nodes); snapshots and log compaction.
//!
//! # The Ready loop
//!
//! A driver owns one [`RawNode`] per group and runs this loop (here with the in-memory
//! [`MemStorage`] and a single node, so it elects itself and commits alone):
//!
//! ```
//! use raft_core::{Config, ConfState, EntryPayload, MemStorage, RawNode, Role};
//!
//! // 1. Create the node. A new group's members start from storage holding the initial
//! //    configuration; a restarting node starts from what it persisted.
//! let storage = MemStorage::new_with_conf_state(ConfState::with_voters([1]));
//! let mut node = RawNode::new(Config::new(1), storage)?;
//! let mut applied = Vec::new();
//!
//! // 2. Feed it inputs: ticks on a timer, messages from peers (`node.step(msg)`), proposals.
//! //    After enough ticks the lone voter campaigns and becomes leader.
//! while node.role() != Role::Leader {
//!     node.tick();
//!     drive(&mut node, &mut applied)?;
//! }
//! node.propose(b"x=1".to_vec())?;
//! drive(&mut node, &mut applied)?;
//! assert_eq!(applied, vec![b"x=1".to_vec()]);
//!
//! // 3. Whenever it has output, handle one Ready: persist, then send, then apply, then advance.
//! fn drive(
//!     node: &mut RawNode<MemStorage>,
//!     applied: &mut Vec<Vec<u8>>,
//! ) -> Result<(), raft_core::Error> {
//!     while node.has_ready() {
//!         let mut ready = node.ready();
//!         // Persist first: snapshot, entries, hard state (fsync when `ready.must_sync`).
//!         if let Some(snapshot) = ready.snapshot.clone() {
//!             node.storage_mut().apply_snapshot(snapshot)?;
//!         }
//!         node.storage_mut().append(&ready.entries)?;
//!         if let Some(hard_state) = ready.hard_state {
//!             node.storage_mut().set_hard_state(hard_state);
//!         }
//!         // Only then send: a message may promise what was just persisted.
//!         for message in std::mem::take(&mut ready.messages) {
//!             let _ = message; // transport.send(message)
//!         }
//!         // Apply committed entries in order; membership changes go back to the core.
//!         for entry in &ready.committed_entries {
//!             match &entry.payload {
//!                 EntryPayload::Normal(data) => applied.push(data.clone()),
//!                 EntryPayload::ConfChange(change) => {
//!                     let conf = node.apply_conf_change(change)?;
//!                     node.storage_mut().set_conf_state(conf);
//!                 }
//!                 EntryPayload::Empty => {}
//!             }
//!         }
//!         // Serve `ready.read_states` once their index is applied; fail `ready.dropped_reads`.
//!         node.advance(ready);
//!     }
//!     Ok(())
//! }
//! # Ok::<(), raft_core::Error>(())
//! ```
//!
//! The order matters. A vote or an append acknowledgement sent before it is durable can be
//! forgotten by a crash, and the cluster would then count on something that no longer exists:
//! two leaders in one term, or a committed entry lost. `Ready` therefore separates what to
//! persist from what to send, and the driver must finish the first before the second.
//!
//! # Reads
//!
//! [`RawNode::read_index`] on the leader yields a [`ReadState`] carrying the commit index at the
//! time of the request; the read is linearizable once the state machine has applied that index.
//! When the leader holds a lease ([`Config::lease_duration_ticks`]) the answer is immediate;
//! otherwise it comes after a quorum acknowledges a heartbeat round. The lease assumes that the
//! tick rates of any two nodes differ by less than the margin between the lease and the
//! election timeout.
//!
//! # Failing fast
//!
//! Proposals and reads on a node that is not the leader fail at once with [`Error::NotLeader`]
//! (carrying the leader hint if one is known); nothing is queued inside the core.

#![deny(missing_docs)]

mod confchange;
mod config;
mod error;
mod log;
mod message;
mod progress;
pub mod quorum;
mod raft;
mod raw_node;
mod storage;
mod types;

pub use confchange::apply as apply_conf_change;
pub use config::Config;
pub use error::{Error, StorageError};
pub use message::{Message, MessageBody};
pub use progress::ProgressState;
#[cfg(feature = "inject-bugs")]
pub use raft::InjectedBug;
pub use raw_node::{ProposalPosition, RawNode, Ready, Status};
pub use storage::{InitialState, MemStorage, Storage};
pub use types::{
    CommitRule, ConfChange, ConfChangeStep, ConfState, Entry, EntryPayload, HardState,
    LeaderPolicy, LogIndex, NodeId, ReadState, Role, Snapshot, SnapshotMetadata, SoftState, Term,
};
