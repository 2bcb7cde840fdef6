//! How a node is set up: its identity, its timers, its limits, its policies, and its seed.

use crate::error::Error;
use crate::types::{CommitRule, LeaderPolicy, LogIndex, NodeId};

/// The configuration of one replica.
///
/// All durations are in ticks: the application decides how long a tick is (for example 100 ms)
/// and calls [`crate::RawNode::tick`] that often.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id; must not be [`NodeId::NONE`].
    pub id: NodeId,
    /// A follower that hears nothing from a leader for a randomized time in
    /// `[election_timeout_ticks, 2 * election_timeout_ticks)` campaigns.
    pub election_timeout_ticks: u32,
    /// The leader sends heartbeats this often. Must be less than the election timeout.
    pub heartbeat_interval_ticks: u32,
    /// How long after a quorum acknowledged a heartbeat round the leader may answer reads from
    /// its own state without asking the quorum again (the leader lease), counted from when that
    /// round was *sent*. Must be less than `election_timeout_ticks`: followers refuse to vote for
    /// anyone while they have heard from a leader within the election timeout, so no other leader
    /// can be elected before the lease runs out — provided tick rates differ between nodes by
    /// less than the margin `election_timeout_ticks - lease_duration_ticks` (the clock-drift
    /// assumption). 0 disables lease reads (every read uses read-index). Requires `check_quorum`.
    pub lease_duration_ticks: u32,
    /// Run a pre-vote round before a real election, so a node that was partitioned away does not
    /// disrupt a healthy leader with a higher term when it comes back.
    pub pre_vote: bool,
    /// The leader steps down when it has not heard from a quorum within an election timeout, and
    /// followers that hear from a leader refuse to vote for others.
    pub check_quorum: bool,
    /// Most bytes of entries in one append message.
    pub append_size_max_bytes: u64,
    /// Most append messages in flight to one follower before the leader waits for answers.
    pub inflight_appends_max: usize,
    /// Most bytes proposed but not yet committed; proposals beyond it fail with
    /// [`Error::UncommittedLimit`].
    pub uncommitted_size_max_bytes: u64,
    /// Most bytes of committed entries handed out in one [`crate::Ready`].
    pub committed_size_max_bytes_per_ready: u64,
    /// Most read-index requests waiting for a heartbeat quorum.
    pub pending_reads_max: usize,
    /// The index the application has already applied (0 for a new node). Entries up to it are
    /// not handed out again after a restart.
    pub applied: LogIndex,
    /// Which nodes may lead.
    pub leader_policy: LeaderPolicy,
    /// How many acknowledgements commit an entry.
    pub commit_rule: CommitRule,
    /// The seed of the node's random number generator (election jitter). Give every node a
    /// different seed; the same seed and the same inputs give the same behaviour.
    pub seed: u64,
    /// A deliberately injected bug (test-only feature), to show the simulator catches it.
    #[cfg(feature = "inject-bugs")]
    pub bug: Option<crate::raft::InjectedBug>,
}

impl Config {
    /// A configuration with sane defaults for node `id`: election timeout 10 ticks, heartbeat
    /// every tick, lease 8 ticks, pre-vote and check-quorum on.
    pub fn new(id: u64) -> Self {
        Self {
            id: NodeId(id),
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 1,
            lease_duration_ticks: 8,
            pre_vote: true,
            check_quorum: true,
            append_size_max_bytes: 1 << 20,
            inflight_appends_max: 256,
            uncommitted_size_max_bytes: 64 << 20,
            committed_size_max_bytes_per_ready: 16 << 20,
            pending_reads_max: 4096,
            applied: LogIndex::ZERO,
            leader_policy: LeaderPolicy::Any,
            commit_rule: CommitRule::Majority,
            seed: id,
            #[cfg(feature = "inject-bugs")]
            bug: None,
        }
    }

    /// Checks the configuration for values the core cannot work with.
    pub fn validate(&self) -> Result<(), Error> {
        let fail = |why: &str| Err(Error::InvalidConfig(why.to_owned()));
        if !self.id.is_some() {
            return fail("id must not be 0");
        }
        if self.heartbeat_interval_ticks == 0 {
            return fail("heartbeat_interval_ticks must be at least 1");
        }
        if self.election_timeout_ticks <= self.heartbeat_interval_ticks {
            return fail("election_timeout_ticks must be greater than heartbeat_interval_ticks");
        }
        if self.lease_duration_ticks >= self.election_timeout_ticks {
            return fail("lease_duration_ticks must be less than election_timeout_ticks");
        }
        if self.lease_duration_ticks > 0 && !self.check_quorum {
            return fail("lease reads (lease_duration_ticks > 0) need check_quorum");
        }
        if self.inflight_appends_max == 0 {
            return fail("inflight_appends_max must be at least 1");
        }
        if self.append_size_max_bytes == 0 || self.committed_size_max_bytes_per_ready == 0 {
            return fail("size limits must be at least 1 byte");
        }
        if self.pending_reads_max == 0 {
            return fail("pending_reads_max must be at least 1");
        }
        Ok(())
    }
}
