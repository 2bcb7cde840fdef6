//! The vocabulary of the core: newtypes for terms, indexes and node ids, log entries, the
//! persistent state, configurations and snapshots.
//!
//! Everything here is plain data (serde-encodable so drivers can put it on the wire or on disk);
//! the behaviour lives in [`crate::raft`].

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! newtype_u64 {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        pub struct $name(pub u64);

        impl $name {
            /// The zero value.
            pub const ZERO: Self = Self(0);

            /// The raw number.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

newtype_u64!(
    /// A Raft term (§5.1). Terms only grow; 0 means "no term yet".
    Term,
    ""
);
newtype_u64!(
    /// The position of an entry in the log, starting at 1; 0 means "before the first entry".
    LogIndex,
    ""
);
newtype_u64!(
    /// The identity of a replica within one Raft group. 0 is reserved for "nobody".
    NodeId,
    ""
);

impl NodeId {
    /// The reserved "no node" value, used for an unknown leader or no vote.
    pub const NONE: Self = Self(0);

    /// Whether this is a real node id (not [`NodeId::NONE`]).
    pub const fn is_some(self) -> bool {
        self.0 != 0
    }
}

impl LogIndex {
    /// The next index.
    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }

    /// The previous index; saturates at zero.
    pub const fn prev(self) -> Self {
        Self(self.0.saturating_sub(1))
    }
}

impl Term {
    /// The next term.
    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

/// What an entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryPayload {
    /// The empty entry a new leader appends to commit entries of earlier terms (§5.4.2, §8).
    Empty,
    /// Application data, opaque to the core.
    Normal(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A membership change, applied by the application through
    /// [`crate::RawNode::apply_conf_change`] once committed.
    ConfChange(ConfChange),
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The term of the leader that created the entry.
    pub term: Term,
    /// The position of the entry in the log.
    pub index: LogIndex,
    /// What the entry carries.
    pub payload: EntryPayload,
}

impl Entry {
    /// The approximate size in bytes used for flow control and limits.
    pub fn size_bytes(&self) -> u64 {
        let payload = match &self.payload {
            EntryPayload::Empty => 0,
            EntryPayload::Normal(data) => data.len(),
            EntryPayload::ConfChange(cc) => 16 * (cc.changes.len() + 1),
        };
        // Term and index, plus the payload.
        16 + payload as u64
    }
}

/// The state a node must persist before it sends any message produced together with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// Who this node voted for in `term`, or [`NodeId::NONE`].
    pub vote: NodeId,
    /// The highest index known to be committed. Persisting it is an optimisation (it can always be
    /// relearned from the leader), but it must never exceed what the log holds.
    pub commit: LogIndex,
}

/// The membership of a group: voters (one set, or two during a joint change) and learners.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfState {
    /// The voters of the configuration in force (C_new during a joint change).
    pub voters: BTreeSet<NodeId>,
    /// The voters of the outgoing configuration (C_old) while a joint change is in progress;
    /// empty otherwise.
    pub voters_outgoing: BTreeSet<NodeId>,
    /// Non-voting replicas: they receive the log but never vote or count toward a majority.
    pub learners: BTreeSet<NodeId>,
}

impl ConfState {
    /// A configuration of the given voters and no learners.
    pub fn with_voters(voters: impl IntoIterator<Item = u64>) -> Self {
        Self {
            voters: voters.into_iter().map(NodeId).collect(),
            ..Self::default()
        }
    }

    /// Whether a joint change is in progress.
    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// Whether `id` votes in either half of the configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    /// Every node the configuration mentions, voters and learners.
    pub fn all_nodes(&self) -> BTreeSet<NodeId> {
        self.voters
            .iter()
            .chain(&self.voters_outgoing)
            .chain(&self.learners)
            .copied()
            .collect()
    }
}

/// One step of a membership change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfChangeStep {
    /// Add a new voter, or promote an existing learner to voter.
    AddVoter(NodeId),
    /// Add a new learner (a node that is not yet a member).
    AddLearner(NodeId),
    /// Remove a voter or a learner.
    RemoveNode(NodeId),
}

/// A membership change proposal.
///
/// A change that touches voters always goes through joint consensus (§6 of the Raft
/// dissertation): the group first moves to the joint configuration C_old,new, in which decisions
/// need a majority of both halves, and the leader then proposes the empty change that leaves it
/// (C_new) as soon as the first one is applied. A change that only adds or removes learners takes
/// effect directly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfChange {
    /// The steps, applied together. Empty means "leave the joint configuration".
    pub changes: Vec<ConfChangeStep>,
}

impl ConfChange {
    /// The change that leaves a joint configuration.
    pub fn leave_joint() -> Self {
        Self::default()
    }
}

/// Identifies the point in the log a snapshot covers, and the configuration at that point.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMetadata {
    /// The last index the snapshot covers.
    pub index: LogIndex,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The configuration in force at `index`.
    pub conf_state: ConfState,
}

/// A point-in-time image of the application state, made by the application.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Where the snapshot sits in the log.
    pub metadata: SnapshotMetadata,
    /// The application state, opaque to the core.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// The role of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking for pre-votes before it disrupts anybody with a new term (§9.6 of the dissertation).
    PreCandidate,
    /// Asking for votes in a new term.
    Candidate,
    /// Leads its term.
    Leader,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Follower => "Follower",
            Self::PreCandidate => "PreCandidate",
            Self::Candidate => "Candidate",
            Self::Leader => "Leader",
        };
        f.write_str(name)
    }
}

/// State that is useful to the application but need not be persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    /// The leader this node knows of, or [`NodeId::NONE`].
    pub leader: NodeId,
    /// This node's role.
    pub role: Role,
}

/// The outcome of a linearizable read request: once the application has applied `index`, it may
/// serve the read identified by `context`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadState {
    /// The commit index at the time the read was confirmed.
    pub index: LogIndex,
    /// The caller's identifier for the read.
    pub context: u64,
}

/// Which nodes may lead the group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaderPolicy {
    /// Any voter may lead.
    #[default]
    Any,
    /// Election priority: these voters campaign first, non-preferred voters with an up-to-date
    /// log no better than theirs are refused, and a non-preferred leader hands leadership to a
    /// healthy, caught-up preferred voter.
    Preferred(BTreeSet<NodeId>),
    /// Arakoon's forced master: only this node ever campaigns or is voted for. When it is down the
    /// group has no leader, and writes stop rather than fail over.
    ///
    /// Set at run time, the policy may reach a leader that is not the forced node. If the forced
    /// node holds the leader's whole log, the leader steps down at once; otherwise it goes on
    /// leading only to hand over — it takes no proposals ([`crate::Error::TransferInProgress`]),
    /// brings the forced node up to date and tells it to campaign, retrying each election timeout
    /// — because once the others have adopted the policy nobody else could bring it up to date.
    Forced(NodeId),
}

/// How many acknowledgements commit an entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommitRule {
    /// A majority of the voters (of both halves during a joint change).
    #[default]
    Majority,
    /// A majority, and in addition at least one acknowledgement from each listed group (voters or
    /// learners). Used for site-aware commit: one group per required site.
    MajorityAndGroups(Vec<BTreeSet<NodeId>>),
}
