//! [`RawNode`]: the application's handle on one replica, and the [`Ready`] batches it hands out.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::Config;
use crate::error::Error;
use crate::message::{Entries, Message};
use crate::progress::ProgressState;
use crate::raft::Raft;
use crate::storage::Storage;
use crate::types::{
    CommitRule, ConfChange, ConfState, Entry, HardState, LeaderPolicy, LogIndex, NodeId, ReadState,
    Role, Snapshot, SoftState, Term,
};

/// Everything the application must do, handed out in one batch by [`RawNode::ready`].
///
/// The contract, in this order:
/// 1. **Persist** `snapshot` (if any), then `entries` (appending them may truncate a conflicting
///    suffix of the stored log), then `hard_state` (if any) — durably when `must_sync` is set.
/// 2. **Send** `messages`. Never before step 1 completes: a vote or an acknowledgement that is
///    sent but not persisted can be forgotten by a crash, which breaks election safety and loses
///    committed entries.
/// 3. **Apply** `committed_entries` in order (call [`RawNode::apply_conf_change`] for
///    configuration changes), and install `snapshot` into the state machine if there is one.
///    Serve the reads in `read_states` once their index is applied; fail the reads in
///    `dropped_reads`.
/// 4. Call [`RawNode::advance`] with this `Ready`.
#[derive(Debug, Default)]
pub struct Ready {
    /// Leader or role changed since the last `Ready`.
    pub soft_state: Option<SoftState>,
    /// Term, vote or commit changed: persist it.
    pub hard_state: Option<HardState>,
    /// A snapshot from the leader to install (replaces the log).
    pub snapshot: Option<Snapshot>,
    /// Entries to append to the durable log.
    pub entries: Vec<Entry>,
    /// Messages to send once everything above is persisted.
    pub messages: Vec<Message>,
    /// Committed entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Confirmed linearizable reads: serve each once `index` is applied.
    pub read_states: Vec<ReadState>,
    /// Read requests (by context) that can no longer be confirmed because this node lost or
    /// left leadership: fail them (the client retries on the new leader).
    pub dropped_reads: Vec<u64>,
    /// Whether the persistence in step 1 must be synced to disk before step 2.
    pub must_sync: bool,
}

/// What a handed-out `Ready` covers, so `advance` can acknowledge exactly that.
#[derive(Debug)]
struct InProgress {
    last_entry: Option<(LogIndex, Term)>,
    snapshot_index: Option<LogIndex>,
    last_committed: Option<LogIndex>,
    committed_bytes: u64,
}

/// A point-in-time view of a replica, for status pages and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Persistent state.
    pub hard_state: HardState,
    /// Role and known leader.
    pub soft_state: SoftState,
    /// The highest applied index.
    pub applied: LogIndex,
    /// The last index of the log.
    pub last_index: LogIndex,
    /// The configuration in force.
    pub conf_state: ConfState,
    /// The leader's view of each member: `(matched, next, state)`. Empty unless leading.
    pub progress: BTreeMap<NodeId, (LogIndex, LogIndex, ProgressState)>,
    /// Whether the leader lease currently allows local reads.
    pub lease_valid: bool,
}

/// Where a proposal landed in the log. The proposal took effect if and only if the entry that is
/// eventually committed at `last_index` has term `term`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProposalPosition {
    /// The leader's term.
    pub term: Term,
    /// The index of the first entry of the batch.
    pub first_index: LogIndex,
    /// The index of the last entry of the batch.
    pub last_index: LogIndex,
}

/// The application's handle on one Raft replica: a deterministic state machine that does no I/O.
///
/// Method classes:
/// - **inputs**: [`tick`](Self::tick), [`step`](Self::step), [`propose`](Self::propose),
///   [`propose_batch`](Self::propose_batch), [`propose_conf_change`](Self::propose_conf_change),
///   [`read_index`](Self::read_index), [`transfer_leader`](Self::transfer_leader),
///   [`campaign`](Self::campaign);
/// - **the output loop**: [`has_ready`](Self::has_ready), [`ready`](Self::ready),
///   [`advance`](Self::advance), and [`apply_conf_change`](Self::apply_conf_change) while
///   applying;
/// - **policy**: [`set_commit_rule`](Self::set_commit_rule),
///   [`set_leader_policy`](Self::set_leader_policy);
/// - **queries**: [`status`](Self::status), [`storage`](Self::storage),
///   [`storage_mut`](Self::storage_mut).
///
/// A call that returns an error changes nothing.
pub struct RawNode<S> {
    raft: Raft<S>,
    prev_soft_state: SoftState,
    prev_hard_state: HardState,
    in_progress: Option<InProgress>,
}

impl<S: Storage> RawNode<S> {
    /// Starts a replica from `storage` (empty for a new group member; what was persisted for a
    /// restart). A node joining an existing group starts with an empty configuration and learns
    /// it from the leader's snapshot.
    pub fn new(config: Config, storage: S) -> Result<Self, Error> {
        let raft = Raft::new(config, storage)?;
        let prev_hard_state = raft.hard_state();
        let prev_soft_state = SoftState {
            leader: raft.leader,
            role: raft.role,
        };
        Ok(Self {
            raft,
            prev_soft_state,
            prev_hard_state,
            in_progress: None,
        })
    }

    /// Advances logical time by one tick: drives elections, heartbeats and leases.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Tells the core that `ticks` ticks of wall time passed while the application did not tick
    /// it (it had quiesced an idle group). Only the lease clock moves: no timer fires and nothing
    /// is sent, but a leader's lease is again measured against the real time since its last
    /// acknowledged heartbeat round, so a group that wakes up never reads from a lease that ran
    /// out while it slept.
    pub fn advance_clock(&mut self, ticks: u64) {
        self.raft.advance_clock(ticks);
    }

    /// Hands a message from another replica to this one.
    pub fn step(&mut self, message: Message) -> Result<(), Error> {
        self.raft.step(message)
    }

    /// Starts an election now, if this node may lead (useful to bootstrap or in tests).
    pub fn campaign(&mut self) {
        self.raft.campaign_now();
    }

    /// Proposes one entry. Fails at once unless this node is the leader.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<ProposalPosition, Error> {
        self.propose_batch(vec![data])
    }

    /// Proposes several entries together; they get consecutive indexes and are replicated in the
    /// same messages.
    pub fn propose_batch(&mut self, batch: Vec<Vec<u8>>) -> Result<ProposalPosition, Error> {
        let (term, first_index, last_index) = self.raft.propose(batch)?;
        Ok(ProposalPosition {
            term,
            first_index,
            last_index,
        })
    }

    /// Proposes a membership change. Only one may be pending at a time.
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<ProposalPosition, Error> {
        let (term, index) = self.raft.propose_conf_change(change)?;
        Ok(ProposalPosition {
            term,
            first_index: index,
            last_index: index,
        })
    }

    /// Asks for a linearizable read. The answer comes as a [`ReadState`] with the same `context`
    /// in a later `Ready` (at once when the leader lease is valid, else after a heartbeat round),
    /// or as a dropped read if leadership is lost first.
    pub fn read_index(&mut self, context: u64) -> Result<(), Error> {
        self.raft.read_index(context)
    }

    /// Asks the leader to hand leadership to `target` (a voter). Proposals are refused until the
    /// transfer completes or gives up after an election timeout.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), Error> {
        self.raft.transfer_leader(target)
    }

    /// Applies a committed membership change; call it when applying the entry that carries it.
    /// Returns the new configuration, which the application persists with its applied index.
    pub fn apply_conf_change(&mut self, change: &ConfChange) -> Result<ConfState, Error> {
        self.raft.apply_conf_change(change)
    }

    /// Changes the commit rule (for example when a site policy changes). Every node should get
    /// the same rule; the application replicates it through the log.
    pub fn set_commit_rule(&mut self, rule: CommitRule) {
        self.raft.set_commit_rule(rule);
    }

    /// Changes the leader policy. A campaign the new policy forbids is abandoned. A leader that
    /// it forbids steps down, or, when the forced node lacks part of its log, hands leadership
    /// over to it first and takes no proposals meanwhile (see [`LeaderPolicy::Forced`]).
    pub fn set_leader_policy(&mut self, policy: LeaderPolicy) {
        self.raft.set_leader_policy(policy);
    }

    /// Whether [`ready`](Self::ready) has anything to hand out.
    pub fn has_ready(&self) -> bool {
        let raft = &self.raft;
        raft.has_flush_work()
            || SoftState {
                leader: raft.leader,
                role: raft.role,
            } != self.prev_soft_state
            || raft.hard_state() != self.prev_hard_state
            || !raft.log.unstable_entries().is_empty()
            || raft.log.unstable_snapshot().is_some()
            || !raft.msgs.is_empty()
            || raft.log.has_next_committed_entries()
            || !raft.read_states.is_empty()
            || !raft.dropped_reads.is_empty()
    }

    /// Hands out everything to persist, send and apply. Must be followed by
    /// [`advance`](Self::advance) before the next call.
    ///
    /// # Panics
    /// If the previous `Ready` was not advanced (a programming error in the driver).
    pub fn ready(&mut self) -> Ready {
        assert!(
            self.in_progress.is_none(),
            "ready() called again before advance()"
        );
        self.raft.flush();
        let raft = &mut self.raft;
        let soft_state = SoftState {
            leader: raft.leader,
            role: raft.role,
        };
        let hard_state = raft.hard_state();
        let entries = raft.log.unstable_entries().to_vec();
        let snapshot = raft.log.unstable_snapshot().cloned();
        let committed_entries = raft
            .log
            .next_committed_entries(raft.cfg.committed_size_max_bytes_per_ready);
        let must_sync = !entries.is_empty()
            || snapshot.is_some()
            || hard_state.term != self.prev_hard_state.term
            || hard_state.vote != self.prev_hard_state.vote;
        self.in_progress = Some(InProgress {
            last_entry: entries.last().map(|e| (e.index, e.term)),
            snapshot_index: snapshot.as_ref().map(|s| s.metadata.index),
            last_committed: committed_entries.last().map(|e| e.index),
            committed_bytes: committed_entries.iter().map(Entry::size_bytes).sum(),
        });
        let ready = Ready {
            soft_state: (soft_state != self.prev_soft_state).then_some(soft_state),
            hard_state: (hard_state != self.prev_hard_state).then_some(hard_state),
            snapshot,
            entries,
            messages: std::mem::take(&mut raft.msgs),
            committed_entries,
            read_states: std::mem::take(&mut raft.read_states),
            dropped_reads: std::mem::take(&mut raft.dropped_reads),
            must_sync,
        };
        self.prev_soft_state = soft_state;
        self.prev_hard_state = hard_state;
        ready
    }

    /// Acknowledges that a `Ready` was fully handled: persisted, sent and applied.
    pub fn advance(&mut self, ready: Ready) {
        drop(ready);
        let done = self
            .in_progress
            .take()
            .expect("advance() called without a ready()");
        let raft = &mut self.raft;
        if let Some(index) = done.snapshot_index {
            raft.log.stable_snapshot_to(index);
        }
        if let Some((index, term)) = done.last_entry {
            raft.log.stable_to(index, term);
        }
        if let Some(index) = done.last_committed {
            raft.log.applied_to(index);
            raft.on_applied(done.committed_bytes);
        }
    }

    /// A view of the replica's state.
    pub fn status(&self) -> Status {
        let raft = &self.raft;
        Status {
            id: raft.id,
            hard_state: raft.hard_state(),
            soft_state: SoftState {
                leader: raft.leader,
                role: raft.role,
            },
            applied: raft.log.applied,
            last_index: raft.log.last_index(),
            conf_state: raft.conf.clone(),
            progress: raft
                .progress
                .iter()
                .map(|(id, pr)| (*id, (pr.matched, pr.next, pr.state)))
                .collect(),
            lease_valid: raft.lease_valid(),
        }
    }

    /// The storage the core reads from.
    pub fn storage(&self) -> &S {
        &self.raft.log.storage
    }

    /// The storage, for the application to write what a `Ready` asked it to persist.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.raft.log.storage
    }

    /// The role of this node.
    pub fn role(&self) -> Role {
        self.raft.role
    }

    /// The leader this node knows of, or [`NodeId::NONE`].
    pub fn leader(&self) -> NodeId {
        self.raft.leader
    }
}

impl fmt::Display for Ready {
    /// A multi-line, stable rendering for golden transcripts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ss) = &self.soft_state {
            writeln!(f, "  soft: role={} leader={}", ss.role, ss.leader)?;
        }
        if let Some(hs) = &self.hard_state {
            writeln!(
                f,
                "  hard: term={} vote={} commit={}",
                hs.term, hs.vote, hs.commit
            )?;
        }
        if let Some(snapshot) = &self.snapshot {
            let m = &snapshot.metadata;
            writeln!(f, "  snapshot: {}/{}", m.term, m.index)?;
        }
        if !self.entries.is_empty() {
            writeln!(f, "  entries: {}", Entries(&self.entries))?;
        }
        if !self.committed_entries.is_empty() {
            writeln!(f, "  committed: {}", Entries(&self.committed_entries))?;
        }
        for read in &self.read_states {
            writeln!(f, "  read: context={} index={}", read.context, read.index)?;
        }
        for context in &self.dropped_reads {
            writeln!(f, "  read dropped: context={context}")?;
        }
        for message in &self.messages {
            writeln!(f, "  send: {message}")?;
        }
        Ok(())
    }
}
