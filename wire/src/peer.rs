//! What nodes send each other: Raft messages batched per host, host liveness, and snapshots.
//!
//! A node opens long-lived unidirectional QUIC streams to its peers. The first frame of each is a
//! [`PeerStreamHeader`] that says what follows: a stream of [`PeerFrame`]s, or one snapshot as a
//! sequence of [`SnapshotChunk`]s (each snapshot on its own stream, so that a large snapshot never
//! delays Raft messages).

use raft_core::{Message, NodeId, SnapshotMetadata, Term};
use serde::{Deserialize, Serialize};

use crate::api::ShardId;

/// The first frame on a unidirectional stream between nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerStreamHeader {
    /// [`PeerFrame`]s from node `from` follow.
    Raft {
        /// The sending node.
        from: NodeId,
    },
    /// One snapshot follows.
    Snapshot(SnapshotHeader),
}

/// A Raft message for one group on the receiving host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMessage {
    /// The group.
    pub shard: ShardId,
    /// The message.
    pub message: Message,
}

/// One frame on a Raft stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerFrame {
    /// Raft messages, batched across groups. Never a snapshot message: those travel on their own
    /// stream.
    Raft(Vec<ShardMessage>),
    /// One liveness beat for the whole host (not per group): followers of quiesced groups led by
    /// the sender stay quiet as long as these arrive.
    Alive,
    /// The sender leads these groups and has quiesced them: everything is replicated and
    /// committed at `commit` in `term`, so the followers may stop ticking until a message
    /// arrives or the sender's host stops beating.
    Quiesce(Vec<QuiescedShard>),
    /// The sender could not follow a quiesce notice for these groups (it is missing entries or
    /// has moved on): the leader must keep ticking them, or the sender would start an election.
    Unquiesce(Vec<ShardId>),
}

/// A group the leader has put to sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuiescedShard {
    /// The group.
    pub shard: ShardId,
    /// The leader's term.
    pub term: Term,
    /// The commit index every replica holds.
    pub commit: raft_core::LogIndex,
}

/// Describes the snapshot that follows on a snapshot stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// The group.
    pub shard: ShardId,
    /// The leader that sends it.
    pub from: NodeId,
    /// The replica it is for.
    pub to: NodeId,
    /// The leader's term (the Raft message's term).
    pub term: Term,
    /// Where the snapshot sits in the log: exactly the applied state it carries.
    pub metadata: SnapshotMetadata,
}

/// One frame of a snapshot stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotChunk {
    /// Key-value pairs of the group's state machine, in key order (keys relative to the group).
    Data(#[serde(with = "crate::bytes::pairs")] Vec<(Vec<u8>, Vec<u8>)>),
    /// The end: how many pairs were sent. A stream that ends without it is truncated.
    End {
        /// The number of pairs in all `Data` chunks.
        pairs: u64,
    },
}
