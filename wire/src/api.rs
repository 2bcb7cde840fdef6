//! The client API of a shard: requests, responses and typed errors, as they travel on the wire.
//!
//! Every data request names a shard and a namespace; each namespace is its own ordered key space
//! inside the shard. The operations are Arakoon's (see `shared/reference/arakoon-alba.md` §1):
//! reads take a [`Consistency`], writes are applied through the shard's Raft log and answer with
//! the log index they were applied at.

use std::fmt;
use std::ops::Bound;

use raft_core::{CommitRule, LeaderPolicy, LogIndex, NodeId, Role, Term};
use serde::{Deserialize, Serialize};

use crate::catalog::{ManagerRequest, ManagerResponse};
use crate::manifest::{Manifest, NamespaceStats, PutMode};

/// Identifies a shard: one Raft group. Raft messages between hosts carry it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct ShardId(pub u64);

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The version of a namespace's assignment to a shard. The manager gives a namespace a new,
/// higher epoch whenever its assignment changes (created, moved, deleted); every request a router
/// sends carries the epoch it routed by, and a shard serves it only when that is the epoch it
/// owns the namespace at (otherwise [`ApiError::WrongShard`]).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A replica of a shard: the node that holds it and where that node listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaAddr {
    /// The node.
    pub node: NodeId,
    /// Its QUIC address (`host:port`).
    pub addr: String,
    /// Its site (datacenter) label; routers serve loose reads from replicas in their own site.
    pub site: String,
}

/// The replication policy a shard's Raft group enforces, in the group's own terms (node ids).
/// The manager derives it from the shard's site-level policy (see
/// [`crate::catalog::ShardPolicy`]) and the sites of its replicas, and sends it with
/// [`Request::SetGroupPolicy`]; it travels through the group's log, so every replica applies
/// it at the same index, and snapshots carry it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPolicy {
    /// When an entry is committed: a majority, or a majority and one replica of every group.
    pub commit: CommitRule,
    /// Which voters may lead.
    pub leader: LeaderPolicy,
    /// The site label of each group of [`CommitRule::MajorityAndGroups`], in the same order
    /// (for error messages); empty for [`CommitRule::Majority`].
    pub group_sites: Vec<String>,
}

/// The longest namespace name, in bytes.
pub const NAMESPACE_LEN_MAX_BYTES: usize = 128;

/// A namespace name: 1 to [`NAMESPACE_LEN_MAX_BYTES`] bytes of `[A-Za-z0-9_.-]`.
///
/// Deserialisation validates too, so a namespace that reaches a state machine is always valid.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Namespace(String);

impl Namespace {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, ApiError> {
        let name = name.into();
        if name.is_empty() || name.len() > NAMESPACE_LEN_MAX_BYTES {
            return Err(ApiError::InvalidArgument(format!(
                "namespace must be 1 to {NAMESPACE_LEN_MAX_BYTES} bytes, got {}",
                name.len()
            )));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(ApiError::InvalidArgument(format!(
                "namespace {name:?} contains {c:?}; allowed are A-Z a-z 0-9 _ . -"
            )));
        }
        Ok(Self(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Namespace {
    type Error = ApiError;
    fn try_from(name: String) -> Result<Self, ApiError> {
        Self::new(name)
    }
}

impl From<Namespace> for String {
    fn from(ns: Namespace) -> Self {
        ns.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consistency {
    /// Linearizable: served by the leader after it confirmed its leadership (lease or
    /// read-index round) and applied everything committed before the read arrived.
    Consistent,
    /// Served by any replica that has applied at least this index (read-your-writes with the
    /// index a write returned). A replica that is behind answers [`ApiError::InconsistentRead`].
    AtLeast(LogIndex),
    /// Served by whichever replica is asked, from whatever it has applied. No guarantee.
    Any,
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Consistent => f.write_str("consistent"),
            Self::AtLeast(index) => write!(f, "at_least({})", index.0),
            Self::Any => f.write_str("any"),
        }
    }
}

/// A key range: a start and an end bound (inclusive, exclusive or open) and a maximum number of
/// results (`None`: as many as the response size limit allows).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    /// The lowest key.
    pub start: Bound<Vec<u8>>,
    /// The highest key.
    pub end: Bound<Vec<u8>>,
    /// At most this many results.
    pub max: Option<u32>,
}

impl KeyRange {
    /// Every key, without a count limit.
    pub fn all() -> Self {
        Self {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
            max: None,
        }
    }
}

/// A read operation on one namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadOp {
    /// The value of a key; [`ApiError::NotFound`] when absent.
    Get {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Whether a key exists.
    Exists {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// The values of several keys, in order; [`ApiError::NotFound`] names the first missing one.
    MultiGet {
        /// The keys.
        #[serde(with = "crate::bytes::list")]
        keys: Vec<Vec<u8>>,
    },
    /// The values of several keys, in order, `None` for the missing ones.
    MultiGetOption {
        /// The keys.
        #[serde(with = "crate::bytes::list")]
        keys: Vec<Vec<u8>>,
    },
    /// The keys in a range, ascending.
    Range(KeyRange),
    /// The entries in a range, ascending.
    RangeEntries(KeyRange),
    /// The entries in a range, descending (from the end bound down to the start bound).
    RevRangeEntries(KeyRange),
    /// The keys that start with `prefix`, ascending.
    PrefixKeys {
        /// The prefix.
        #[serde(with = "serde_bytes")]
        prefix: Vec<u8>,
        /// At most this many keys.
        max: Option<u32>,
    },
    /// How many keys start with `prefix` (empty: every key of the namespace).
    Count {
        /// The prefix.
        #[serde(with = "serde_bytes")]
        prefix: Vec<u8>,
    },
    /// The manifests of objects, in the order asked, `None` for the missing ones.
    GetManifests {
        /// The object names.
        names: Vec<String>,
    },
    /// Object names in ascending byte order: those starting with `prefix`, after `start_after`,
    /// at most `limit` (the answer says whether more follow).
    ListObjects {
        /// Only names starting with this (empty: all).
        prefix: String,
        /// Only names after this one (pagination: the last name of the previous page).
        start_after: Option<String>,
        /// At most this many names.
        limit: u32,
    },
    /// The namespace's object count and logical size.
    NamespaceStats,
}

impl ReadOp {
    /// A short name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Get { .. } => "get",
            Self::Exists { .. } => "exists",
            Self::MultiGet { .. } => "multi_get",
            Self::MultiGetOption { .. } => "multi_get_option",
            Self::Range(_) => "range",
            Self::RangeEntries(_) => "range_entries",
            Self::RevRangeEntries(_) => "rev_range_entries",
            Self::PrefixKeys { .. } => "prefix_keys",
            Self::Count { .. } => "count",
            Self::GetManifests { .. } => "get_manifests",
            Self::ListObjects { .. } => "list_objects",
            Self::NamespaceStats => "namespace_stats",
        }
    }
}

/// What a read returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadResult {
    /// The value of [`ReadOp::Get`].
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The answer of [`ReadOp::Exists`].
    Exists(bool),
    /// The values of [`ReadOp::MultiGet`].
    Values(#[serde(with = "crate::bytes::list")] Vec<Vec<u8>>),
    /// The values of [`ReadOp::MultiGetOption`].
    OptionalValues(#[serde(with = "crate::bytes::optional_list")] Vec<Option<Vec<u8>>>),
    /// The keys of [`ReadOp::Range`] and [`ReadOp::PrefixKeys`].
    Keys(#[serde(with = "crate::bytes::list")] Vec<Vec<u8>>),
    /// The entries of [`ReadOp::RangeEntries`] and [`ReadOp::RevRangeEntries`].
    Entries(#[serde(with = "crate::bytes::pairs")] Vec<(Vec<u8>, Vec<u8>)>),
    /// The answer of [`ReadOp::Count`].
    Count(u64),
    /// The answer of [`ReadOp::GetManifests`].
    Manifests(Vec<Option<Manifest>>),
    /// The answer of [`ReadOp::ListObjects`].
    Objects {
        /// The names, ascending.
        names: Vec<String>,
        /// Whether more names follow (ask again with `start_after` the last name).
        more: bool,
    },
    /// The answer of [`ReadOp::NamespaceStats`].
    Stats(NamespaceStats),
}

/// One step of an atomic [`WriteOp::Sequence`]. Steps see the effects of the steps before them;
/// a failed assertion aborts the whole sequence and nothing of it is applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// Set a key.
    Set {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Delete a key; [`ApiError::NotFound`] (aborting the sequence) when absent.
    Delete {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Abort unless the key's value is `expected` (`None`: the key must not exist).
    Assert {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value it must have.
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
    },
    /// Abort unless the key exists.
    AssertExists {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Abort unless the keys starting with `prefix` are exactly `keys` (Arakoon's
    /// `Assert_range(prefix, ContainsExactly keys)`).
    AssertRange {
        /// The prefix.
        #[serde(with = "serde_bytes")]
        prefix: Vec<u8>,
        /// The keys that must be there, and no others.
        #[serde(with = "crate::bytes::list")]
        keys: Vec<Vec<u8>>,
    },
    /// Delete every key that starts with `prefix`.
    DeletePrefix {
        /// The prefix.
        #[serde(with = "serde_bytes")]
        prefix: Vec<u8>,
    },
    /// Compare-and-swap (see [`WriteOp::TestAndSet`]); a mismatch does not abort the sequence.
    TestAndSet {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value the key must have (`None`: must not exist).
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
        /// The new value (`None`: delete).
        #[serde(with = "serde_bytes")]
        wanted: Option<Vec<u8>>,
    },
}

/// A write operation on one namespace. Every write goes through the Raft log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    /// Set a key.
    Set {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Delete a key; [`ApiError::NotFound`] when absent.
    Delete {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Compare-and-swap: when the key's value equals `expected` (`None`: absent), set it to
    /// `wanted` (`None`: delete). Returns the value after the operation, as Arakoon does.
    TestAndSet {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value the key must have.
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
        /// The new value.
        #[serde(with = "serde_bytes")]
        wanted: Option<Vec<u8>>,
    },
    /// Set (or delete, with `None`) and return the previous value.
    Replace {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The new value.
        #[serde(with = "serde_bytes")]
        wanted: Option<Vec<u8>>,
    },
    /// Delete every key that starts with `prefix`; returns how many were deleted.
    DeletePrefix {
        /// The prefix.
        #[serde(with = "serde_bytes")]
        prefix: Vec<u8>,
    },
    /// An atomic sequence of steps: all apply or none.
    Sequence {
        /// The steps, in order.
        steps: Vec<Step>,
    },
    /// A no-op through the log: a barrier that returns once the shard can make progress.
    Nop,
    /// Store an object's manifest, under a condition.
    PutManifest {
        /// The manifest (its name is the object's name).
        manifest: Manifest,
        /// The condition.
        mode: PutMode,
    },
    /// Delete an object's manifest; [`ApiError::ObjectNotFound`] when absent.
    DeleteManifest {
        /// The object name.
        name: String,
    },
    /// The manager assigns the namespace to this shard at the request's epoch: from now on the
    /// shard serves it at that epoch. Idempotent; refused for an epoch older than one the shard
    /// has already seen for the namespace. Only nodes (the manager) may send it.
    AdoptNamespace,
    /// The manager deletes the namespace from this shard: all its keys, manifests and
    /// statistics go, and the shard no longer serves it. Idempotent. Only nodes may send it.
    DropNamespace,
}

impl WriteOp {
    /// A short name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Set { .. } => "set",
            Self::Delete { .. } => "delete",
            Self::TestAndSet { .. } => "test_and_set",
            Self::Replace { .. } => "replace",
            Self::DeletePrefix { .. } => "delete_prefix",
            Self::Sequence { .. } => "sequence",
            Self::Nop => "nop",
            Self::PutManifest { .. } => "put_manifest",
            Self::DeleteManifest { .. } => "delete_manifest",
            Self::AdoptNamespace => "adopt_namespace",
            Self::DropNamespace => "drop_namespace",
        }
    }
}

/// What a write returns besides its index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteResult {
    /// Set, delete, sequence, nop.
    Done,
    /// Test-and-set: the value after the operation. Replace: the value before it.
    Value(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// Delete-prefix, drop-namespace: how many keys were deleted.
    Count(u64),
}

impl WriteOp {
    /// Whether only nodes (the manager) may send this operation.
    pub fn is_admin(&self) -> bool {
        matches!(self, Self::AdoptNamespace | Self::DropNamespace)
    }
}

/// Where the leader is, as far as the answering node knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderHint {
    /// The leader's node id.
    pub node: NodeId,
    /// The address its clients connect to.
    pub addr: String,
}

/// One replica's view of a shard, for `who_leader` and `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// The shard.
    pub shard: ShardId,
    /// The node answering.
    pub node: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<LeaderHint>,
    /// The voters of the configuration in force.
    pub voters: Vec<NodeId>,
    /// The learners.
    pub learners: Vec<NodeId>,
    /// Its commit index.
    pub commit: LogIndex,
    /// Its applied index.
    pub applied: LogIndex,
    /// The first index still in its log (everything before is compacted into the snapshot).
    pub first_index: LogIndex,
    /// The last index in its log.
    pub last_index: LogIndex,
    /// Whether the group is quiesced (idle: not ticking).
    pub quiesced: bool,
}

/// A membership change the manager asks a shard's leader to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Add a node as a learner: it receives the log (by snapshot first) but does not vote.
    AddLearner(NodeId),
    /// Promote the learner `add` to voter and remove `remove`, in one joint change. The leader
    /// refuses while `add` lags behind its log, or while another change is in progress.
    Replace {
        /// The learner to promote.
        add: NodeId,
        /// The member to remove.
        remove: NodeId,
    },
    /// Remove a learner (an abandoned replacement). Refused for a voter.
    RemoveLearner(NodeId),
}

impl fmt::Display for MembershipChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddLearner(node) => write!(f, "add learner {}", node.0),
            Self::Replace { add, remove } => {
                write!(f, "replace {} by {}", remove.0, add.0)
            }
            Self::RemoveLearner(node) => write!(f, "remove learner {}", node.0),
        }
    }
}

/// The members of a shard's group, as its leader has applied them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// The voters.
    pub voters: Vec<NodeId>,
    /// The learners.
    pub learners: Vec<NodeId>,
    /// The voters being left, while a joint change is in progress (empty otherwise).
    pub outgoing: Vec<NodeId>,
}

impl Members {
    /// Whether a joint change is in progress.
    pub fn joint(&self) -> bool {
        !self.outgoing.is_empty()
    }
}

/// A request from a client (or an operator) to a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A read.
    Read {
        /// The shard.
        shard: ShardId,
        /// The namespace.
        namespace: Namespace,
        /// The epoch the namespace was routed by: required by shards the manager created,
        /// absent for shards declared in a node's configuration.
        epoch: Option<Epoch>,
        /// How fresh the answer must be.
        consistency: Consistency,
        /// The operation.
        op: ReadOp,
    },
    /// A write; only the leader accepts it.
    Write {
        /// The shard.
        shard: ShardId,
        /// The namespace.
        namespace: Namespace,
        /// The epoch the namespace was routed by (see [`Request::Read`]).
        epoch: Option<Epoch>,
        /// The operation.
        op: WriteOp,
    },
    /// A read addressed by namespace only: a router finds the shard (nodes refuse it).
    RoutedRead {
        /// The namespace.
        namespace: Namespace,
        /// How fresh the answer must be.
        consistency: Consistency,
        /// The operation.
        op: ReadOp,
    },
    /// A write addressed by namespace only: a router finds the shard (nodes refuse it).
    RoutedWrite {
        /// The namespace.
        namespace: Namespace,
        /// The operation.
        op: WriteOp,
    },
    /// The manager asks a node to host a replica of a new shard with these voters. Idempotent:
    /// a node that already hosts the shard answers [`Response::Done`]. Only nodes may send it.
    CreateReplica {
        /// The shard.
        shard: ShardId,
        /// Every replica of the shard (this node among them).
        replicas: Vec<ReplicaAddr>,
    },
    /// The manager asks a node to host a replica of an existing shard that it adds to the group
    /// (a replacement): the replica starts with no configuration and learns the group's state
    /// from the leader, by snapshot. Idempotent like [`Request::CreateReplica`]. Only nodes may
    /// send it.
    JoinReplica {
        /// The shard.
        shard: ShardId,
        /// Where the shard's replicas are (this node among them).
        replicas: Vec<ReplicaAddr>,
    },
    /// The manager tells a node hosting a replica where the shard's replicas are now (after a
    /// membership change): the node records the list and links to the new ones. Idempotent.
    /// Only nodes may send it.
    UpdateReplicas {
        /// The shard.
        shard: ShardId,
        /// Where the shard's replicas are.
        replicas: Vec<ReplicaAddr>,
    },
    /// The manager changes the membership of a shard: the leader proposes the change through the
    /// log and answers [`Response::Members`] once it is applied. Idempotent: a change already
    /// made answers the members at once. Only nodes may send it.
    ChangeReplicas {
        /// The shard.
        shard: ShardId,
        /// The change.
        change: MembershipChange,
    },
    /// The manager asks a node to delete its replica of a shard the group removed it from. Only
    /// nodes may send it; the manager sends it only once the group's leader confirmed the node
    /// is no longer a member.
    DropReplica {
        /// The shard.
        shard: ShardId,
    },
    /// The manager lifts a shard's `forced(node)` leader policy while that node is down: a
    /// policy change goes through the log, which needs a leader, and only the forced node may
    /// lead. Each replica follows `leader` at once, until it applies a policy from the log (the
    /// manager then pushes the new one with [`Request::SetGroupPolicy`]). Refused while the
    /// forced node leads. Only nodes may send it.
    OverrideLeaderPolicy {
        /// The shard.
        shard: ShardId,
        /// The leader policy to follow meanwhile.
        leader: LeaderPolicy,
    },
    /// The manager sets the replication policy of a shard it created: the leader proposes it
    /// through the log and answers [`Response::Write`] once it is applied. Only nodes may send
    /// it.
    SetGroupPolicy {
        /// The shard.
        shard: ShardId,
        /// The policy.
        policy: GroupPolicy,
    },
    /// A request to the manager (or to a router, which forwards it).
    Manager(ManagerRequest),
    /// Who leads the shard, as this node knows it.
    WhoLeader {
        /// The shard.
        shard: ShardId,
    },
    /// The status of every replica this node hosts.
    Status,
    /// Compact the shard's log on this node up to its applied index now (an operator action;
    /// nodes also compact on their own once the log grows past its configured length).
    CompactLog {
        /// The shard.
        shard: ShardId,
    },
}

impl Request {
    /// A short name of the operation, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Read { op, .. } => op.name(),
            Self::Write { op, .. } => op.name(),
            Self::WhoLeader { .. } => "who_leader",
            Self::Status => "status",
            Self::CompactLog { .. } => "compact_log",
            Self::RoutedRead { op, .. } => op.name(),
            Self::RoutedWrite { op, .. } => op.name(),
            Self::CreateReplica { .. } => "create_replica",
            Self::SetGroupPolicy { .. } => "set_group_policy",
            Self::JoinReplica { .. } => "join_replica",
            Self::UpdateReplicas { .. } => "update_replicas",
            Self::ChangeReplicas { .. } => "change_replicas",
            Self::DropReplica { .. } => "drop_replica",
            Self::OverrideLeaderPolicy { .. } => "override_leader_policy",
            Self::Manager(request) => request.name(),
        }
    }
}

/// A node's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The answer to a read, and the applied index it was served at.
    Read {
        /// The result.
        result: ReadResult,
        /// The replica's applied index when it served the read.
        applied: LogIndex,
    },
    /// A write was committed and applied at `index`.
    Write {
        /// The log index it was applied at.
        index: LogIndex,
        /// The result.
        result: WriteResult,
    },
    /// The answer to [`Request::WhoLeader`].
    Leader(Option<LeaderHint>),
    /// The answer to [`Request::Status`].
    Status(Vec<ReplicaStatus>),
    /// The answer to [`Request::CompactLog`]: the log now starts after `compacted_to`.
    Compacted {
        /// The last index removed from the log.
        compacted_to: LogIndex,
    },
    /// Done, nothing to report ([`Request::CreateReplica`]).
    Done,
    /// The members of a shard's group as its leader applied them ([`Request::ChangeReplicas`]).
    Members(Members),
    /// The manager's answer.
    Manager(ManagerResponse),
    /// The request failed.
    Error(ApiError),
}

impl Response {
    /// What kind of answer this is, for error messages ("a read result", "an error", ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Read { .. } => "a read result",
            Self::Write { .. } => "a write result",
            Self::Leader(_) => "a leader",
            Self::Status(_) => "a status",
            Self::Compacted { .. } => "a compaction",
            Self::Done => "done",
            Self::Members(_) => "the members",
            Self::Manager(_) => "a manager answer",
            Self::Error(_) => "an error",
        }
    }
}

/// Everything that can go wrong with a request, as the node tells it. Every variant says what
/// happened and, where it can, what to do instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApiError {
    /// This node does not lead the shard. Nothing was proposed; retrying at the leader is safe.
    #[error("not the leader{}", match .leader { Some(l) => format!(" (the leader is node {} at {})", l.node.0, l.addr), None => " (no leader known)".to_string() })]
    NotLeader {
        /// Where the leader is, when known.
        leader: Option<LeaderHint>,
    },
    /// No majority of the shard's replicas is reachable. When `proposed` is false nothing was
    /// written and retrying is safe; when true the write is in the leader's log and may still be
    /// applied if the majority comes back: its outcome is unknown.
    #[error(
        "no quorum: a majority of the shard's replicas is not reachable{}",
        if *.proposed { " (the write was proposed and may still be applied)" } else { " (nothing was written)" }
    )]
    NoQuorum {
        /// Whether the write reached the leader's log.
        proposed: bool,
    },
    /// An assertion of a sequence failed; nothing of the sequence was applied.
    #[error("assertion failed on key {}", show_key(.key))]
    AssertionFailed {
        /// The key whose assertion failed.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// The key does not exist.
    #[error("key {} not found", show_key(.key))]
    NotFound {
        /// The missing key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// A limit was exceeded.
    #[error("{what} is too large: {size} > {max}")]
    TooLarge {
        /// What was too large (value, request, sequence, response…).
        what: String,
        /// Its size (bytes, or a count for sequences).
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The replica has not applied the index the read asked for.
    #[error("inconsistent read: this replica has applied {applied}, the read needs {required}", applied = .applied.0, required = .required.0)]
    InconsistentRead {
        /// What the replica has applied.
        applied: LogIndex,
        /// What the read needs.
        required: LogIndex,
    },
    /// The request is malformed or makes no sense.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// This node hosts no replica of the shard.
    #[error("this node hosts no replica of shard {0}")]
    UnknownShard(ShardId),
    /// The node is overloaded (a bounded queue is full); nothing was done, retry later.
    #[error("node busy: {0}")]
    Busy(String),
    /// The node failed in a way the client cannot fix (storage error, shutting down).
    #[error("internal error: {0}")]
    Internal(String),
    /// The shard does not serve the namespace at the epoch the request was routed by: the
    /// namespace lives elsewhere, moved, or was deleted. `epoch` is the epoch this shard owns it
    /// at, if any. Nothing was done; the router refreshes its route and retries.
    #[error("wrong shard: shard {shard} does not serve namespace {namespace} at that epoch ({})", match .epoch { Some(e) => format!("it owns it at epoch {e}"), None => "it does not own it".to_string() })]
    WrongShard {
        /// The shard that answered.
        shard: ShardId,
        /// The namespace.
        namespace: Namespace,
        /// The epoch it owns the namespace at.
        epoch: Option<Epoch>,
    },
    /// No such namespace (or it is being created or deleted).
    #[error("namespace {0} does not exist")]
    UnknownNamespace(Namespace),
    /// A namespace of that name exists already.
    #[error("namespace {0} exists already")]
    NamespaceExists(Namespace),
    /// A manifest that does not describe a readable object; the reason says why.
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    /// A must-not-exist put found the object.
    #[error("object {name:?} exists already")]
    ObjectExists {
        /// The object name.
        name: String,
    },
    /// A must-replace put found another object id (or no object).
    #[error("object {name:?} {}", match .current { Some(id) => format!("has object id {}, not the one to replace", show_key(id)), None => "does not exist".to_string() })]
    ObjectChanged {
        /// The object name.
        name: String,
        /// The object id it has now, if it exists.
        #[serde(with = "serde_bytes")]
        current: Option<Vec<u8>>,
    },
    /// No object of that name.
    #[error("object {name:?} not found")]
    ObjectNotFound {
        /// The object name.
        name: String,
    },
    /// The service cannot do this now (for example: too few hosts up to place a new shard's
    /// replicas); nothing was done.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The caller's certificate does not allow this request.
    #[error("not authorized: {0}")]
    NotAuthorized(String),
    /// The shard's commit rule needs an acknowledgement from a replica in `site`
    /// (`majority+all-sites`), and no replica there is reachable from the leader. Nothing was
    /// written; writes fail this way until the site is back.
    #[error(
        "site {site} unreachable: the shard's commit rule (majority+all-sites) needs a replica \
         there and none answers the leader (nothing was written)"
    )]
    SiteUnreachable {
        /// The site.
        site: String,
    },
    /// The shard's leader is forced to `node` (Arakoon's forced master), which is not leading
    /// now (down, unreachable or still electing itself). No other node will lead; nothing was
    /// done. Retry once that node is back.
    #[error(
        "the shard's leader is forced to node {}, which is not leading now (down or \
         unreachable); no other node may lead (nothing was done)",
        .node.0
    )]
    ForcedLeaderDown {
        /// The forced leader.
        node: NodeId,
    },
}

impl ApiError {
    /// A short, stable name of the error kind (a metric label, a log field).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotLeader { .. } => "not_leader",
            Self::NoQuorum { .. } => "no_quorum",
            Self::AssertionFailed { .. } => "assertion_failed",
            Self::NotFound { .. } => "not_found",
            Self::TooLarge { .. } => "too_large",
            Self::InconsistentRead { .. } => "inconsistent_read",
            Self::InvalidArgument(_) => "invalid_argument",
            Self::UnknownShard(_) => "unknown_shard",
            Self::Busy(_) => "busy",
            Self::Internal(_) => "internal",
            Self::WrongShard { .. } => "wrong_shard",
            Self::UnknownNamespace(_) => "unknown_namespace",
            Self::NamespaceExists(_) => "namespace_exists",
            Self::InvalidManifest(_) => "invalid_manifest",
            Self::ObjectExists { .. } => "object_exists",
            Self::ObjectChanged { .. } => "object_changed",
            Self::ObjectNotFound { .. } => "object_not_found",
            Self::Unavailable(_) => "unavailable",
            Self::NotAuthorized(_) => "not_authorized",
            Self::SiteUnreachable { .. } => "site_unreachable",
            Self::ForcedLeaderDown { .. } => "forced_leader_down",
        }
    }

    /// Whether the request certainly had no effect, so that retrying it elsewhere is safe.
    pub fn nothing_done(&self) -> bool {
        match self {
            Self::NoQuorum { proposed } => !proposed,
            Self::NotLeader { .. }
            | Self::InconsistentRead { .. }
            | Self::UnknownShard(_)
            | Self::Busy(_)
            | Self::TooLarge { .. }
            | Self::InvalidArgument(_)
            | Self::WrongShard { .. }
            | Self::UnknownNamespace(_)
            | Self::InvalidManifest(_)
            | Self::Unavailable(_)
            | Self::NotAuthorized(_)
            | Self::SiteUnreachable { .. }
            | Self::ForcedLeaderDown { .. } => true,
            // Assertion failures and missing keys are outcomes of an applied entry: nothing
            // changed, but it was decided by the log; retrying gives the same answer.
            Self::AssertionFailed { .. }
            | Self::NotFound { .. }
            | Self::NamespaceExists(_)
            | Self::ObjectExists { .. }
            | Self::ObjectChanged { .. }
            | Self::ObjectNotFound { .. } => true,
            Self::Internal(_) => false,
        }
    }
}

/// Keys are bytes; show them as text when they are printable, as hex otherwise.
fn show_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s:?}"),
        _ => {
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}")
        }
    }
}
