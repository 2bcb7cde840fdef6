//! Errors of the core: one enum for the API, one for storage.

use crate::types::{LogIndex, NodeId};

/// Why a call into [`crate::RawNode`] was refused. A refused call changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// This node is not the leader; `leader` is the leader it knows of, if any. Proposals and
    /// reads are never forwarded or queued by the core: the caller goes to the leader.
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// The leader is handing leadership to another node and takes no proposals meanwhile.
    #[error("leadership transfer to {target} in progress")]
    TransferInProgress {
        /// The node leadership is being handed to.
        target: NodeId,
    },
    /// Proposing would exceed the limit on uncommitted log bytes (backpressure).
    #[error("too many uncommitted bytes ({uncommitted_bytes} pending, limit {limit_bytes})")]
    UncommittedLimit {
        /// Bytes proposed but not yet committed.
        uncommitted_bytes: u64,
        /// The configured limit.
        limit_bytes: u64,
    },
    /// A proposal or batch with nothing in it.
    #[error("empty proposal")]
    EmptyProposal,
    /// A membership change is already pending (proposed but not yet applied).
    #[error("a configuration change is already pending at index {pending}")]
    ConfChangePending {
        /// The index of the pending change.
        pending: LogIndex,
    },
    /// The membership change is not valid against the current configuration.
    #[error("invalid configuration change: {0}")]
    InvalidConfChange(String),
    /// The leader has not yet committed an entry in its term, so it cannot answer reads.
    #[error("the leader has not committed an entry in its term yet")]
    ReadNotReady,
    /// Too many read-index requests are waiting for confirmation.
    #[error("too many pending read requests (limit {limit})")]
    PendingReadLimit {
        /// The configured limit.
        limit: usize,
    },
    /// The node given is not a voter of the group.
    #[error("node {0} is not a voter")]
    NotAVoter(NodeId),
    /// The leader policy forbids that node from leading.
    #[error("leader policy forbids {0} from leading")]
    PolicyForbids(NodeId),
    /// A message addressed to another node, from an unknown sender, or otherwise malformed.
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// The configuration given to [`crate::RawNode::new`] is not usable.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// Errors a [`crate::Storage`] returns.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The requested index has been compacted away (it is covered by the snapshot).
    #[error("log compacted")]
    Compacted,
    /// The requested index is beyond the end of the log.
    #[error("log entries unavailable")]
    Unavailable,
    /// The snapshot is older than what the storage already holds.
    #[error("snapshot out of date")]
    SnapshotOutOfDate,
    /// The snapshot is being built; ask again later.
    #[error("snapshot temporarily unavailable")]
    SnapshotTemporarilyUnavailable,
    /// Any other failure of the underlying store.
    #[error("{0}")]
    Other(String),
}
