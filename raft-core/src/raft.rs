//! The Raft state machine: roles, elections, replication, commit, reads, membership, transfer.
//!
//! Everything arrives through [`Raft::tick`], [`Raft::step`] and the proposal methods, and
//! everything leaves through `msgs`, the log's unstable tail, `read_states` and `dropped_reads`,
//! which [`crate::RawNode`] packs into a [`crate::Ready`]. Section numbers refer to the Raft paper
//! (Ongaro & Ousterhout, 2014) and, where marked, Ongaro's dissertation.

use std::collections::{BTreeMap, VecDeque};

use crate::confchange;
use crate::config::Config;
use crate::error::{Error, StorageError};
use crate::log::RaftLog;
use crate::message::{Message, MessageBody};
use crate::progress::{Progress, ProgressState};
use crate::quorum::{self, VoteResult};
use crate::storage::Storage;
use crate::types::{
    CommitRule, ConfChange, ConfState, Entry, EntryPayload, LeaderPolicy, LogIndex, NodeId,
    ReadState, Role, Term,
};

/// Deliberately wrong behaviour, compiled only with the `inject-bugs` feature, so the simulator's
/// checkers can be shown to catch real consensus bugs.
#[cfg(feature = "inject-bugs")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedBug {
    /// The leader commits its entries as soon as it has them, without a quorum.
    CommitWithoutQuorum,
    /// Voters grant votes without checking that the candidate's log is up to date (§5.4.1).
    VoteForStaleLog,
    /// The leader answers reads from its own state without a valid lease or read-index round.
    LeaseReadSkipsCheck,
    /// Nodes other than the forced leader campaign anyway.
    ForcedLeaderIgnored,
}

/// What kind of campaign to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CampaignKind {
    /// A pre-vote round: asks whether an election could be won, without changing any term.
    PreElection,
    /// A real election in a new term.
    Election,
    /// An election ordered by the leader (TimeoutNow): skips pre-vote and leases.
    Transfer,
}

/// A read-index request waiting for a heartbeat quorum.
#[derive(Clone, Copy, Debug)]
struct PendingRead {
    context: u64,
    /// The commit index when the read arrived: the read may be served once it is applied.
    index: LogIndex,
    /// The heartbeat round that confirms it; 0 until that round is sent.
    round: u64,
}

/// How many heartbeat rounds the leader remembers the send time of (for the lease). Older rounds
/// simply cannot back a lease, which is the safe direction.
const ROUNDS_REMEMBERED_MAX: usize = 1024;

/// A small deterministic PRNG (SplitMix64) for election jitter: no thread RNG in the core.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u32) -> u32 {
        (self.next_u64() % u64::from(bound.max(1))) as u32
    }
}

/// One replica's Raft state.
pub(crate) struct Raft<S> {
    pub(crate) id: NodeId,
    pub(crate) term: Term,
    pub(crate) vote: NodeId,
    pub(crate) log: RaftLog<S>,
    pub(crate) role: Role,
    pub(crate) leader: NodeId,
    pub(crate) conf: ConfState,
    /// The leader's view of every member (itself included); only maintained while leading.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    votes: BTreeMap<NodeId, bool>,

    pub(crate) msgs: Vec<Message>,
    pub(crate) read_states: Vec<ReadState>,
    pub(crate) dropped_reads: Vec<u64>,

    /// Ticks since this instance started; the leader lease is measured in it.
    now: u64,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_election_timeout: u32,

    // Leader state.
    pending_conf_index: LogIndex,
    uncommitted_bytes: u64,
    transfer_target: NodeId,
    transfer_elapsed: u32,
    /// Set once this leader ordered a transfer in its term: its lease can no longer be trusted,
    /// because the target campaigns without waiting for leases to run out.
    lease_revoked: bool,
    read_round: u64,
    /// `(round, tick it was sent)`, oldest first.
    round_sent: VecDeque<(u64, u64)>,
    pending_reads: VecDeque<PendingRead>,
    /// New entries or a new commit index to broadcast at the next flush (proposal batching).
    broadcast_pending: bool,

    pub(crate) cfg: Config,
    rng: Rng,
}

impl<S: Storage> Raft<S> {
    pub(crate) fn new(cfg: Config, storage: S) -> Result<Self, Error> {
        cfg.validate()?;
        let state = storage.initial_state()?;
        let log = RaftLog::new(storage, state.hard_state.commit, cfg.applied);
        let mut raft = Self {
            id: cfg.id,
            term: state.hard_state.term,
            vote: state.hard_state.vote,
            log,
            role: Role::Follower,
            leader: NodeId::NONE,
            conf: state.conf_state,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            msgs: Vec::new(),
            read_states: Vec::new(),
            dropped_reads: Vec::new(),
            now: 0,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: 0,
            pending_conf_index: LogIndex::ZERO,
            uncommitted_bytes: 0,
            transfer_target: NodeId::NONE,
            transfer_elapsed: 0,
            lease_revoked: false,
            read_round: 0,
            round_sent: VecDeque::new(),
            pending_reads: VecDeque::new(),
            broadcast_pending: false,
            rng: Rng(cfg.seed),
            cfg,
        };
        let term = raft.term;
        raft.become_follower(term, NodeId::NONE);
        Ok(raft)
    }

    // ---------------------------------------------------------------------------------------
    // Queries.

    pub(crate) fn hard_state(&self) -> crate::HardState {
        crate::HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }

    /// Whether this node may campaign: it votes, and the leader policy lets it lead.
    fn promotable(&self) -> bool {
        if !self.conf.is_voter(self.id) {
            return false;
        }
        match &self.cfg.leader_policy {
            LeaderPolicy::Forced(forced) => *forced == self.id || self.bug_forced_ignored(),
            _ => true,
        }
    }

    fn is_preferred(&self, id: NodeId) -> bool {
        match &self.cfg.leader_policy {
            LeaderPolicy::Preferred(set) => set.contains(&id),
            LeaderPolicy::Forced(forced) => *forced == id,
            LeaderPolicy::Any => true,
        }
    }

    /// Whether the leader may answer reads from its own state right now.
    pub(crate) fn lease_valid(&self) -> bool {
        if self.role != Role::Leader || self.cfg.lease_duration_ticks == 0 || self.lease_revoked {
            return false;
        }
        let quorum_round = self.quorum_acked_round();
        let sent = self
            .round_sent
            .iter()
            .find(|(round, _)| *round == quorum_round);
        sent.is_some_and(|&(_, tick)| tick + u64::from(self.cfg.lease_duration_ticks) > self.now)
    }

    /// The highest heartbeat round a voter quorum has acknowledged (this node counts as having
    /// acknowledged every round it sent).
    fn quorum_acked_round(&self) -> u64 {
        let acked = |id: NodeId| {
            if id == self.id {
                return LogIndex(self.read_round);
            }
            LogIndex(self.progress.get(&id).map_or(0, |pr| pr.acked_round))
        };
        quorum::committed_index(&self.conf, &CommitRule::Majority, &acked).0
    }

    fn committed_in_current_term(&self) -> bool {
        self.log.term(self.log.committed) == Some(self.term)
    }

    // ---------------------------------------------------------------------------------------
    // Role transitions.

    fn reset(&mut self, term: Term) {
        if self.term != term {
            assert!(
                term > self.term,
                "term went backwards: {} -> {term}",
                self.term
            );
            self.term = term;
            self.vote = NodeId::NONE;
        }
        self.leader = NodeId::NONE;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.randomize_election_timeout();
        self.votes.clear();
        self.progress.clear();
        self.transfer_target = NodeId::NONE;
        self.transfer_elapsed = 0;
        self.lease_revoked = false;
        self.read_round = 0;
        self.round_sent.clear();
        self.broadcast_pending = false;
        self.uncommitted_bytes = 0;
        // Reads waiting for this node's leadership can no longer be confirmed: say so.
        self.dropped_reads
            .extend(self.pending_reads.drain(..).map(|read| read.context));
    }

    fn randomize_election_timeout(&mut self) {
        let base = self.cfg.election_timeout_ticks;
        let mut timeout = base + self.rng.below(base);
        // Election priority: a node the policy does not prefer waits a full extra timeout, so a
        // healthy preferred node campaigns first.
        if !self.is_preferred(self.id) {
            timeout += base;
        }
        self.randomized_election_timeout = timeout;
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: NodeId) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    fn become_pre_candidate(&mut self) {
        assert!(
            self.role != Role::Leader,
            "invalid transition: leader -> pre-candidate"
        );
        // A pre-candidate changes neither term nor vote (§9.6 of the dissertation).
        self.votes.clear();
        self.leader = NodeId::NONE;
        self.role = Role::PreCandidate;
    }

    fn become_candidate(&mut self) {
        assert!(
            self.role != Role::Leader,
            "invalid transition: leader -> candidate"
        );
        let term = self.term.next();
        self.reset(term);
        self.vote = self.id;
        self.role = Role::Candidate;
    }

    fn become_leader(&mut self) {
        assert!(
            self.role == Role::Candidate,
            "invalid transition: {} -> leader",
            self.role
        );
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader = self.id;
        let next = self.log.last_index().next();
        for id in self.conf.all_nodes() {
            let mut pr = Progress::new(next, self.cfg.inflight_appends_max);
            // Everyone starts as active so the first check-quorum interval judges fresh evidence.
            pr.recent_active = true;
            self.progress.insert(id, pr);
        }
        if let Some(own) = self.progress.get_mut(&self.id) {
            own.matched = self.log.last_index();
            own.become_replicate();
        }
        // A change may be pending in the uncommitted tail; do not allow another until this
        // leader's first entry is applied.
        self.pending_conf_index = self.log.last_index();
        // §5.4.2/§8: commit an entry of this term to learn what is committed.
        self.append_entries(vec![EntryPayload::Empty]);
    }

    // ---------------------------------------------------------------------------------------
    // Time.

    pub(crate) fn tick(&mut self) {
        self.now += 1;
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => self.tick_election(),
        }
    }

    pub(crate) fn advance_clock(&mut self, ticks: u64) {
        self.now += ticks;
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.election_elapsed >= self.randomized_election_timeout && self.promotable() {
            self.election_elapsed = 0;
            self.start_campaign();
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.transfer_target.is_some() {
            self.transfer_elapsed += 1;
            if self.transfer_elapsed >= self.cfg.election_timeout_ticks {
                // The target did not take over in time: give up and take proposals again
                // (unless the policy forces another node, see `check_proposal`).
                self.transfer_target = NodeId::NONE;
                self.transfer_elapsed = 0;
            }
        }
        if self.election_elapsed >= self.cfg.election_timeout_ticks {
            self.election_elapsed = 0;
            if self.cfg.check_quorum && !self.quorum_recently_active() {
                let term = self.term;
                self.become_follower(term, NodeId::NONE);
                return;
            }
            self.retry_stale_snapshots();
            self.move_toward_preferred_leader();
            self.hand_over_to_forced_leader();
            for (id, pr) in &mut self.progress {
                if *id != self.id {
                    pr.recent_active = false;
                }
            }
        }
        if self.role == Role::Leader && self.heartbeat_elapsed >= self.cfg.heartbeat_interval_ticks
        {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
    }

    fn quorum_recently_active(&self) -> bool {
        let active = |id: NodeId| {
            Some(id == self.id || self.progress.get(&id).is_some_and(|pr| pr.recent_active))
        };
        quorum::joint_vote(&self.conf, &active) == VoteResult::Won
    }

    /// A snapshot message may have been lost: after a full check-quorum interval in the snapshot
    /// state without an answer, go back to probing (which sends the snapshot again if needed).
    fn retry_stale_snapshots(&mut self) {
        for (id, pr) in &mut self.progress {
            if *id == self.id {
                continue;
            }
            if matches!(pr.state, ProgressState::Snapshot { .. }) {
                if pr.snapshot_stale {
                    pr.become_probe();
                } else {
                    pr.snapshot_stale = true;
                }
            }
        }
    }

    /// Election priority, leader side: a leader the policy does not prefer hands leadership to a
    /// preferred voter that was active during the whole last interval and has its whole log.
    fn move_toward_preferred_leader(&mut self) {
        let LeaderPolicy::Preferred(preferred) = &self.cfg.leader_policy else {
            return;
        };
        if preferred.contains(&self.id) || self.transfer_target.is_some() {
            return;
        }
        let committed = self.log.committed;
        let target = preferred.iter().copied().find(|id| {
            self.conf.voters.contains(id)
                && self.progress.get(id).is_some_and(|pr| {
                    // Healthy and not lagging. The hand-over itself waits until the target has
                    // everything (proposals pause meanwhile), so steady load cannot starve it.
                    pr.recent_active
                        && pr.matched >= committed
                        && !matches!(pr.state, ProgressState::Snapshot { .. })
                })
        });
        if let Some(target) = target {
            self.start_transfer(target);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Elections.

    fn start_campaign(&mut self) {
        if self.has_unapplied_conf_change() {
            return;
        }
        if self.cfg.pre_vote {
            self.campaign(CampaignKind::PreElection);
        } else {
            self.campaign(CampaignKind::Election);
        }
    }

    /// Whether a committed membership change still waits to be applied. The configuration in
    /// force is the applied one, so a node in that state would count votes in a configuration
    /// the group has already left: with old and new voters forming disjoint majorities, two
    /// leaders could win the same term. It must not campaign until it has applied the change
    /// (etcd refuses likewise). A log it cannot read (a snapshot being installed) counts as
    /// pending.
    fn has_unapplied_conf_change(&self) -> bool {
        if self.log.committed <= self.log.applied {
            return false;
        }
        match self
            .log
            .slice(self.log.applied.next(), self.log.committed.next(), u64::MAX)
        {
            Ok(entries) => entries
                .iter()
                .any(|entry| matches!(entry.payload, EntryPayload::ConfChange(_))),
            Err(_) => true,
        }
    }

    /// Starts an election now (used by tests and to bootstrap a single node).
    pub(crate) fn campaign_now(&mut self) {
        if self.role != Role::Leader && self.promotable() {
            self.start_campaign();
        }
    }

    fn campaign(&mut self, kind: CampaignKind) {
        let term = if kind == CampaignKind::PreElection {
            self.become_pre_candidate();
            self.term.next()
        } else {
            self.become_candidate();
            self.term
        };
        let pre_vote = kind == CampaignKind::PreElection;
        self.votes.insert(self.id, true);
        if self.tally_votes() == VoteResult::Won {
            // A single-voter group wins at once.
            self.on_election_won(pre_vote);
            return;
        }
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        let voters: Vec<NodeId> = self
            .conf
            .voters
            .iter()
            .chain(&self.conf.voters_outgoing)
            .copied()
            .collect();
        let mut sent = std::collections::BTreeSet::new();
        for to in voters {
            if to == self.id || !sent.insert(to) {
                continue;
            }
            self.msgs.push(Message {
                from: self.id,
                to,
                term,
                body: MessageBody::RequestVote {
                    last_log_index,
                    last_log_term,
                    pre_vote,
                    transfer: kind == CampaignKind::Transfer,
                },
            });
        }
    }

    fn tally_votes(&self) -> VoteResult {
        quorum::joint_vote(&self.conf, &|id| self.votes.get(&id).copied())
    }

    fn on_election_won(&mut self, pre_vote: bool) {
        if pre_vote {
            self.campaign(CampaignKind::Election);
        } else {
            self.become_leader();
        }
    }

    /// Whether this node is still under a leader's lease and must not help elect another leader:
    /// it heard from a leader within the election timeout, or it started less than an election
    /// timeout ago (it may have heard from one just before it restarted).
    ///
    /// This holds whatever `check_quorum` says (§4.2.3 of the dissertation): it is what keeps a
    /// removed server, which never learns of its removal, from deposing leaders forever.
    ///
    /// A node still in term 0 has never acknowledged a leader (leaders' terms start at 1, and a
    /// node persists a new term before it answers), so it has no lease to honour after a start:
    /// a new group can elect its first leader at once.
    fn in_lease(&self) -> bool {
        let restarted_recently =
            self.now < u64::from(self.cfg.election_timeout_ticks) && self.term > Term::ZERO;
        self.election_elapsed < self.cfg.election_timeout_ticks
            && (self.leader.is_some() || restarted_recently)
    }

    fn handle_request_vote(&mut self, m: &Message) {
        let MessageBody::RequestVote {
            last_log_index,
            last_log_term,
            pre_vote,
            ..
        } = m.body
        else {
            unreachable!("handle_request_vote called with {}", m.body.kind())
        };
        let can_vote = self.vote == m.from
            || (self.vote == NodeId::NONE && self.leader == NodeId::NONE)
            || (pre_vote && m.term > self.term);
        let up_to_date =
            self.log.is_up_to_date(last_log_index, last_log_term) || self.bug_vote_for_stale();
        let grant = can_vote
            && up_to_date
            && self.policy_allows_candidate(m, last_log_index, last_log_term);
        if grant && !pre_vote {
            self.election_elapsed = 0;
            self.vote = m.from;
        }
        // A granted pre-vote carries the candidate's future term so it is not taken as stale; a
        // refusal carries ours so a behind candidate catches up.
        let term = if grant { m.term } else { self.term };
        self.send_with_term(
            m.from,
            term,
            MessageBody::RequestVoteResponse {
                granted: grant,
                pre_vote,
            },
        );
    }

    fn policy_allows_candidate(&self, m: &Message, last_index: LogIndex, last_term: Term) -> bool {
        match &self.cfg.leader_policy {
            LeaderPolicy::Any => true,
            LeaderPolicy::Forced(forced) => m.from == *forced || self.bug_forced_ignored(),
            LeaderPolicy::Preferred(preferred) => {
                // A preferred voter refuses a non-preferred candidate whose log is no longer
                // than its own: it can win itself. A longer log wins regardless (liveness).
                let strictly_longer = last_term > self.log.last_term()
                    || (last_term == self.log.last_term() && last_index > self.log.last_index());
                !preferred.contains(&self.id) || preferred.contains(&m.from) || strictly_longer
            }
        }
    }

    fn handle_vote_response(&mut self, m: &Message) {
        let MessageBody::RequestVoteResponse { granted, pre_vote } = m.body else {
            unreachable!("handle_vote_response called with {}", m.body.kind())
        };
        let expected = match self.role {
            Role::PreCandidate => true,
            Role::Candidate => false,
            _ => return,
        };
        if pre_vote != expected || !self.conf.is_voter(m.from) {
            return;
        }
        self.votes.entry(m.from).or_insert(granted);
        match self.tally_votes() {
            VoteResult::Won => self.on_election_won(pre_vote),
            VoteResult::Lost => {
                let term = self.term;
                self.become_follower(term, NodeId::NONE);
            }
            VoteResult::Pending => {}
        }
    }

    // ---------------------------------------------------------------------------------------
    // Messages.

    fn send(&mut self, to: NodeId, body: MessageBody) {
        let term = self.term;
        self.send_with_term(to, term, body);
    }

    fn send_with_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        self.msgs.push(Message {
            from: self.id,
            to,
            term,
            body,
        });
    }

    /// Handles one message. Messages are untrusted: malformed ones are refused with an error and
    /// change nothing.
    pub(crate) fn step(&mut self, m: Message) -> Result<(), Error> {
        validate(&m, self.id)?;
        if m.term > self.term {
            if !self.step_higher_term(&m) {
                return Ok(());
            }
        } else if m.term < self.term {
            self.step_lower_term(&m);
            return Ok(());
        }
        match &m.body {
            MessageBody::RequestVote { .. } => self.handle_request_vote(&m),
            MessageBody::RequestVoteResponse { .. } => self.handle_vote_response(&m),
            MessageBody::Append { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::Snapshot { .. } => {
                if self.role == Role::Leader {
                    // Two leaders in one term would break election safety (§5.2): impossible
                    // unless a message was forged.
                    return Err(Error::InvalidMessage(format!(
                        "{} from {} in my own term {} while I lead",
                        m.body.kind(),
                        m.from,
                        self.term
                    )));
                }
                if self.role != Role::Follower {
                    let term = self.term;
                    self.become_follower(term, m.from);
                }
                self.election_elapsed = 0;
                self.leader = m.from;
                match m.body {
                    MessageBody::Append { .. } => self.handle_append(m),
                    MessageBody::Heartbeat { commit, read_round } => {
                        self.handle_heartbeat(m.from, commit, read_round)
                    }
                    MessageBody::Snapshot { snapshot } => self.handle_snapshot(m.from, snapshot),
                    _ => unreachable!("matched above"),
                }
            }
            MessageBody::AppendResponse { .. } | MessageBody::HeartbeatResponse { .. } => {
                if self.role == Role::Leader {
                    self.step_leader_response(&m);
                }
            }
            MessageBody::TimeoutNow => {
                if self.role != Role::Leader
                    && self.promotable()
                    && !self.has_unapplied_conf_change()
                {
                    self.campaign(CampaignKind::Transfer);
                }
            }
        }
        Ok(())
    }

    /// A message from a later term. Returns whether to go on processing it.
    fn step_higher_term(&mut self, m: &Message) -> bool {
        match m.body {
            MessageBody::RequestVote {
                pre_vote, transfer, ..
            } => {
                // §4.2.3 of the dissertation: a node that hears from a leader ignores vote
                // requests, so a partitioned node cannot depose a healthy leader — and the
                // leader's lease stays sound.
                if !transfer && self.in_lease() {
                    return false;
                }
                if !pre_vote {
                    // Figure 2: only *granting* a vote resets the election timer. Resetting it
                    // for every request would let candidates with stale logs, which cannot win,
                    // keep the up-to-date nodes from ever campaigning.
                    let elapsed = self.election_elapsed;
                    self.become_follower(m.term, NodeId::NONE);
                    self.election_elapsed = elapsed;
                }
                true
            }
            MessageBody::RequestVoteResponse {
                pre_vote: true,
                granted: true,
            } => true,
            MessageBody::Append { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::Snapshot { .. } => {
                self.become_follower(m.term, m.from);
                true
            }
            _ => {
                self.become_follower(m.term, NodeId::NONE);
                true
            }
        }
    }

    fn step_lower_term(&mut self, m: &Message) {
        match m.body {
            MessageBody::Append { .. } | MessageBody::Heartbeat { .. } => {
                // A leader of an older term: tell it our term so it steps down. Without this, a
                // node that raised its term while cut off would be stuck: the leader's followers
                // ignore its vote requests (they are in lease) and it ignores the leader.
                self.send(
                    m.from,
                    MessageBody::AppendResponse {
                        index: LogIndex::ZERO,
                        reject: false,
                        reject_hint: LogIndex::ZERO,
                        reject_hint_term: Term::ZERO,
                    },
                );
            }
            MessageBody::RequestVote { pre_vote, .. } => {
                // Refuse with our term (Figure 2), so a candidate of an older term catches up
                // at once. Without it, the candidate only learns the term by campaigning past
                // it, one election timeout per term — and when the leader policy lets no other
                // node campaign (`Forced`), nothing else would ever teach it.
                self.send(
                    m.from,
                    MessageBody::RequestVoteResponse {
                        granted: false,
                        pre_vote,
                    },
                );
            }
            _ => {}
        }
    }

    fn handle_append(&mut self, m: Message) {
        let MessageBody::Append {
            prev_log_index,
            prev_log_term,
            entries,
            commit,
        } = m.body
        else {
            unreachable!("handle_append called with another message")
        };
        if self.is_uninitialized() {
            // A node that joined without a configuration needs the leader's snapshot first.
            self.send(m.from, reject(prev_log_index, LogIndex::ZERO, Term::ZERO));
            return;
        }
        if prev_log_index < self.log.committed {
            let committed = self.log.committed;
            self.send(m.from, accept(committed));
            return;
        }
        match self
            .log
            .maybe_append(prev_log_index, prev_log_term, commit, &entries)
        {
            Some(last) => self.send(m.from, accept(last)),
            None => {
                let hint = prev_log_index.min(self.log.last_index());
                let (hint, hint_term) = self.log.find_conflict_by_term(hint, prev_log_term);
                self.send(m.from, reject(prev_log_index, hint, hint_term));
            }
        }
    }

    fn handle_heartbeat(&mut self, from: NodeId, commit: LogIndex, read_round: u64) {
        // The leader never sends a commit above what it knows we hold; a larger one is ignored
        // rather than trusted.
        if commit <= self.log.last_index() {
            self.log.commit_to(commit);
        }
        self.send(from, MessageBody::HeartbeatResponse { read_round });
    }

    fn handle_snapshot(&mut self, from: NodeId, snapshot: crate::Snapshot) {
        let index = snapshot.metadata.index;
        let uninitialized = self.is_uninitialized();
        if index <= self.log.committed && !uninitialized {
            let committed = self.log.committed;
            self.send(from, accept(committed));
            return;
        }
        if !uninitialized && self.log.match_term(index, snapshot.metadata.term) {
            // We already have the entries: just learn that they are committed.
            self.log.commit_to(index);
            let last = self.log.last_index();
            self.send(from, accept(last));
            return;
        }
        self.conf = snapshot.metadata.conf_state.clone();
        self.log.restore(snapshot);
        self.send(from, accept(index));
    }

    /// A node that was started without any configuration (it is joining an existing group).
    fn is_uninitialized(&self) -> bool {
        self.conf.voters.is_empty() && self.conf.voters_outgoing.is_empty()
    }

    fn step_leader_response(&mut self, m: &Message) {
        let Some(pr) = self.progress.get_mut(&m.from) else {
            return; // Not (or no longer) a member.
        };
        pr.recent_active = true;
        match m.body {
            MessageBody::AppendResponse {
                index,
                reject: true,
                reject_hint,
                reject_hint_term,
            } => {
                let probe_at = if reject_hint_term > Term::ZERO {
                    self.log
                        .find_conflict_by_term(reject_hint, reject_hint_term)
                        .0
                } else {
                    reject_hint
                };
                // Re-borrow after the log lookup.
                let pr = self.progress.get_mut(&m.from).expect("checked above");
                if index == LogIndex::ZERO {
                    // Index 0 matches every initialized log: the follower has no configuration
                    // yet and needs a snapshot.
                    pr.needs_snapshot = true;
                }
                if pr.maybe_decrease_to(index, probe_at) || pr.needs_snapshot {
                    if pr.state == ProgressState::Replicate {
                        pr.become_probe();
                    }
                    if matches!(pr.state, ProgressState::Probe) {
                        pr.probe_sent = false;
                    }
                    self.send_append(m.from, true);
                }
            }
            MessageBody::AppendResponse { index, .. } => {
                let updated = pr.maybe_update(index);
                if let ProgressState::Snapshot { pending_index } = pr.state
                    && index >= pending_index
                {
                    pr.needs_snapshot = false;
                    pr.become_probe();
                }
                if updated {
                    match pr.state {
                        ProgressState::Probe => pr.become_replicate(),
                        ProgressState::Replicate => pr.inflights.free_to(index),
                        ProgressState::Snapshot { .. } => {}
                    }
                    if self.maybe_commit() {
                        self.broadcast_pending = true;
                    }
                }
                self.send_appends_to(m.from);
                self.maybe_finish_transfer(m.from);
            }
            MessageBody::HeartbeatResponse { read_round } => {
                pr.acked_round = pr.acked_round.max(read_round);
                if pr.state == ProgressState::Probe {
                    pr.probe_sent = false;
                }
                let stalled = pr.matched == pr.matched_at_heartbeat;
                pr.matched_at_heartbeat = pr.matched;
                if pr.state == ProgressState::Replicate && pr.inflights.is_full() && stalled {
                    // Every append in the window went unanswered for a whole heartbeat round:
                    // they were lost. Resend from what the follower is known to hold.
                    pr.become_probe();
                }
                if pr.matched < self.log.last_index() {
                    self.send_append(m.from, true);
                }
                self.release_confirmed_reads();
            }
            _ => unreachable!("only responses reach step_leader_response"),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Replication.

    /// Sends one append (or a snapshot) to `to` if flow control allows. Returns whether
    /// something was sent.
    fn send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let Some(pr) = self.progress.get(&to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let prev_log_index = pr.next.prev();
        let prev_log_term = self.log.term(prev_log_index);
        let entries = self
            .log
            .entries_from(pr.next, self.cfg.append_size_max_bytes);
        let (prev_log_term, entries) = match (prev_log_term, entries) {
            (Some(term), Ok(entries)) if !pr.needs_snapshot => (term, entries),
            _ => return self.send_snapshot(to),
        };
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        let last = entries.last().map_or(prev_log_index, |e| e.index);
        let count = entries.len();
        let commit = self.log.committed;
        self.send(
            to,
            MessageBody::Append {
                prev_log_index,
                prev_log_term,
                entries,
                commit,
            },
        );
        let pr = self.progress.get_mut(&to).expect("checked above");
        pr.sent_append(last, count);
        true
    }

    fn send_snapshot(&mut self, to: NodeId) -> bool {
        let snapshot = match self.log.snapshot() {
            Ok(snapshot) => snapshot,
            // The application is still building one: try again on a later heartbeat.
            Err(StorageError::SnapshotTemporarilyUnavailable) => return false,
            Err(e) => panic!("raft-core: storage failed: {e}"),
        };
        let index = snapshot.metadata.index;
        self.send(to, MessageBody::Snapshot { snapshot });
        let pr = self
            .progress
            .get_mut(&to)
            .expect("caller checked membership");
        pr.become_snapshot(index);
        true
    }

    /// Sends appends to `to` until it is caught up or flow control pauses it (pipelining).
    fn send_appends_to(&mut self, to: NodeId) {
        while self.send_append(to, false) {}
    }

    fn broadcast_append(&mut self) {
        let peers: Vec<NodeId> = self
            .progress
            .keys()
            .copied()
            .filter(|&id| id != self.id)
            .collect();
        for to in peers {
            if !self.send_append(to, true) {
                continue;
            }
            self.send_appends_to(to);
        }
    }

    fn broadcast_heartbeat(&mut self) {
        self.read_round += 1;
        self.round_sent.push_back((self.read_round, self.now));
        if self.round_sent.len() > ROUNDS_REMEMBERED_MAX {
            self.round_sent.pop_front();
        }
        let peers: Vec<(NodeId, LogIndex)> = self
            .progress
            .iter()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, pr)| (*id, pr.matched.min(self.log.committed)))
            .collect();
        let read_round = self.read_round;
        for (to, commit) in peers {
            self.send(to, MessageBody::Heartbeat { commit, read_round });
        }
    }

    /// Appends payloads as the leader; returns the index of the first and last new entry.
    fn append_entries(&mut self, payloads: Vec<EntryPayload>) -> (LogIndex, LogIndex) {
        let first = self.log.last_index().next();
        let entries: Vec<Entry> = payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| Entry {
                term: self.term,
                index: LogIndex(first.0 + i as u64),
                payload,
            })
            .collect();
        self.uncommitted_bytes += entries.iter().map(Entry::size_bytes).sum::<u64>();
        let last = self.log.append(&entries);
        if let Some(own) = self.progress.get_mut(&self.id) {
            own.maybe_update(last);
        }
        self.maybe_commit();
        self.broadcast_pending = true;
        (first, last)
    }

    /// Advances the commit index to what the commit rule allows (§5.3, §5.4.2).
    fn maybe_commit(&mut self) -> bool {
        let acked = |id: NodeId| {
            self.progress
                .get(&id)
                .map_or(LogIndex::ZERO, |pr| pr.matched)
        };
        #[allow(unused_mut)]
        let mut index = quorum::committed_index(&self.conf, &self.cfg.commit_rule, &acked);
        #[cfg(feature = "inject-bugs")]
        if self.cfg.bug == Some(InjectedBug::CommitWithoutQuorum) {
            index = self.log.last_index();
        }
        let term = self.term;
        self.log.maybe_commit(index, term)
    }

    /// Sends what accumulated since the last flush: one broadcast for all proposals batched since
    /// then, and one heartbeat round for all reads waiting for confirmation.
    pub(crate) fn flush(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        if self.broadcast_pending {
            self.broadcast_pending = false;
            self.broadcast_append();
        }
        if self.pending_reads.iter().any(|read| read.round == 0) {
            self.broadcast_heartbeat();
            let round = self.read_round;
            for read in self.pending_reads.iter_mut().filter(|read| read.round == 0) {
                read.round = round;
            }
        }
    }

    pub(crate) fn has_flush_work(&self) -> bool {
        self.role == Role::Leader
            && (self.broadcast_pending || self.pending_reads.iter().any(|read| read.round == 0))
    }

    // ---------------------------------------------------------------------------------------
    // Client requests.

    fn check_leader(&self) -> Result<(), Error> {
        if self.role != Role::Leader {
            let leader = self.leader.is_some().then_some(self.leader);
            return Err(Error::NotLeader { leader });
        }
        Ok(())
    }

    fn check_proposal(&self, bytes: u64) -> Result<(), Error> {
        self.check_leader()?;
        if self.transfer_target.is_some() {
            return Err(Error::TransferInProgress {
                target: self.transfer_target,
            });
        }
        if let Some(forced) = self.forced_elsewhere() {
            // A leader the policy forbids only hands over (see `set_leader_policy`).
            return Err(Error::TransferInProgress { target: forced });
        }
        // At least one batch may always be pending, whatever its size, so a large entry is not
        // refused forever.
        if self.uncommitted_bytes > 0
            && self.uncommitted_bytes + bytes > self.cfg.uncommitted_size_max_bytes
        {
            return Err(Error::UncommittedLimit {
                uncommitted_bytes: self.uncommitted_bytes,
                limit_bytes: self.cfg.uncommitted_size_max_bytes,
            });
        }
        Ok(())
    }

    /// Appends a batch of application entries. Returns the term and index range they got.
    pub(crate) fn propose(
        &mut self,
        batch: Vec<Vec<u8>>,
    ) -> Result<(Term, LogIndex, LogIndex), Error> {
        if batch.is_empty() {
            return Err(Error::EmptyProposal);
        }
        let bytes = batch.iter().map(|data| 16 + data.len() as u64).sum();
        self.check_proposal(bytes)?;
        let (first, last) =
            self.append_entries(batch.into_iter().map(EntryPayload::Normal).collect());
        Ok((self.term, first, last))
    }

    pub(crate) fn propose_conf_change(
        &mut self,
        change: ConfChange,
    ) -> Result<(Term, LogIndex), Error> {
        self.check_proposal(64)?;
        if self.pending_conf_index > self.log.applied {
            return Err(Error::ConfChangePending {
                pending: self.pending_conf_index,
            });
        }
        confchange::apply(&self.conf, &change)?;
        let (index, _) = self.append_entries(vec![EntryPayload::ConfChange(change)]);
        self.pending_conf_index = index;
        Ok((self.term, index))
    }

    pub(crate) fn read_index(&mut self, context: u64) -> Result<(), Error> {
        self.check_leader()?;
        if !self.committed_in_current_term() {
            return Err(Error::ReadNotReady);
        }
        let index = self.log.committed;
        let alone = self.conf.voters.len() == 1
            && self.conf.voters.contains(&self.id)
            && self.conf.voters_outgoing.is_empty();
        if alone || self.lease_valid() || self.bug_lease_read() {
            self.read_states.push(ReadState { index, context });
            return Ok(());
        }
        if self.pending_reads.len() >= self.cfg.pending_reads_max {
            return Err(Error::PendingReadLimit {
                limit: self.cfg.pending_reads_max,
            });
        }
        self.pending_reads.push_back(PendingRead {
            context,
            index,
            round: 0,
        });
        Ok(())
    }

    fn release_confirmed_reads(&mut self) {
        let confirmed = self.quorum_acked_round();
        while let Some(read) = self.pending_reads.front() {
            if read.round == 0 || read.round > confirmed {
                break;
            }
            self.read_states.push(ReadState {
                index: read.index,
                context: read.context,
            });
            self.pending_reads.pop_front();
        }
    }

    pub(crate) fn transfer_leader(&mut self, target: NodeId) -> Result<(), Error> {
        self.check_leader()?;
        if target == self.id {
            return Ok(());
        }
        if !self.conf.voters.contains(&target) {
            return Err(Error::NotAVoter(target));
        }
        if let LeaderPolicy::Forced(forced) = self.cfg.leader_policy
            && forced != target
        {
            return Err(Error::PolicyForbids(target));
        }
        if self.transfer_target == target {
            return Ok(());
        }
        self.start_transfer(target);
        Ok(())
    }

    fn start_transfer(&mut self, target: NodeId) {
        self.transfer_target = target;
        self.transfer_elapsed = 0;
        // The target will campaign without waiting for leases to expire.
        self.lease_revoked = true;
        if !self.maybe_finish_transfer(target) {
            self.send_append(target, true);
        }
    }

    /// Sends TimeoutNow once the transfer target has the whole log (§3.10 of the dissertation).
    fn maybe_finish_transfer(&mut self, from: NodeId) -> bool {
        if self.transfer_target != from {
            return false;
        }
        let caught_up = self
            .progress
            .get(&from)
            .is_some_and(|pr| pr.matched == self.log.last_index());
        if caught_up {
            self.send(from, MessageBody::TimeoutNow);
        }
        caught_up
    }

    // ---------------------------------------------------------------------------------------
    // Membership.

    pub(crate) fn apply_conf_change(&mut self, change: &ConfChange) -> Result<ConfState, Error> {
        let next = confchange::apply(&self.conf, change)?;
        self.conf = next.clone();
        if self.role != Role::Leader {
            return Ok(next);
        }
        let members = next.all_nodes();
        self.progress.retain(|id, _| members.contains(id));
        let next_index = self.log.last_index().next();
        for id in &members {
            self.progress.entry(*id).or_insert_with(|| {
                let mut pr = Progress::new(next_index, self.cfg.inflight_appends_max);
                pr.recent_active = true;
                pr
            });
        }
        if !members.contains(&self.transfer_target) {
            self.transfer_target = NodeId::NONE;
        }
        if !next.is_voter(self.id) {
            // Removed from the voters: stop leading. The others elect a new leader.
            let term = self.term;
            self.become_follower(term, NodeId::NONE);
            return Ok(next);
        }
        // Entering a joint configuration: the entry that leaves it is proposed by `on_applied`
        // once this entry counts as applied, and only if no such entry is pending already.
        if self.maybe_commit() {
            self.broadcast_pending = true;
        }
        Ok(next)
    }

    pub(crate) fn on_applied(&mut self, committed_bytes: u64) {
        self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(committed_bytes);
        // Leave a joint configuration as soon as possible: propose C_new. Only once everything
        // up to the last pending change is applied — a leader may have inherited the entry that
        // leaves it already (proposing a second one would make every node refuse it when it is
        // applied), or may have inherited none (its predecessor died first: without this the
        // group would stay joint forever).
        if self.role == Role::Leader
            && self.conf.is_joint()
            && self.log.applied >= self.pending_conf_index
        {
            let (index, _) =
                self.append_entries(vec![EntryPayload::ConfChange(ConfChange::leave_joint())]);
            self.pending_conf_index = index;
        }
    }

    pub(crate) fn set_commit_rule(&mut self, rule: CommitRule) {
        self.cfg.commit_rule = rule;
        if self.role == Role::Leader && self.maybe_commit() {
            self.broadcast_pending = true;
        }
    }

    pub(crate) fn set_leader_policy(&mut self, policy: LeaderPolicy) {
        self.cfg.leader_policy = policy;
        self.randomize_election_timeout();
        match self.role {
            Role::Leader => {
                let Some(forced) = self.forced_elsewhere() else {
                    return;
                };
                if self.conf.voters.contains(&forced) && !self.has_whole_log(forced) {
                    // Stepping down now would strand the group: every node that adopts the
                    // policy refuses to lead or to vote for anyone but `forced`, and `forced`
                    // cannot win while a majority holds entries it lacks — nobody would be left
                    // to send them. Lead on only to hand over: take no proposals, bring it up to
                    // date, then tell it to campaign (retried until it takes over).
                    self.start_transfer(forced);
                } else {
                    // It can win at once (or can never lead): step down.
                    let term = self.term;
                    self.become_follower(term, NodeId::NONE);
                }
            }
            Role::PreCandidate | Role::Candidate if !self.promotable() => {
                // A campaign started before the policy forbade this node: abandon it. Votes in
                // flight would otherwise still make it leader.
                let term = self.term;
                self.become_follower(term, NodeId::NONE);
            }
            Role::Follower | Role::PreCandidate | Role::Candidate => {}
        }
    }

    /// The node the leader policy forces, when it is not this one.
    fn forced_elsewhere(&self) -> Option<NodeId> {
        match self.cfg.leader_policy {
            LeaderPolicy::Forced(forced) if forced != self.id => Some(forced),
            _ => None,
        }
    }

    /// Whether `id` holds this leader's whole log.
    fn has_whole_log(&self, id: NodeId) -> bool {
        self.progress
            .get(&id)
            .is_some_and(|pr| pr.matched == self.log.last_index())
    }

    /// A leader the policy forbids (it adopted `Forced(other)` while leading, see
    /// `set_leader_policy`) retries the hand-over at the end of every election timeout, and
    /// steps down if the forced node is no longer a voter (then nobody can lead).
    fn hand_over_to_forced_leader(&mut self) {
        let Some(forced) = self.forced_elsewhere() else {
            return;
        };
        if !self.conf.voters.contains(&forced) {
            let term = self.term;
            self.become_follower(term, NodeId::NONE);
        } else if !self.transfer_target.is_some() {
            self.start_transfer(forced);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Injected bugs (test-only feature).

    #[cfg(feature = "inject-bugs")]
    fn bug_vote_for_stale(&self) -> bool {
        self.cfg.bug == Some(InjectedBug::VoteForStaleLog)
    }
    #[cfg(not(feature = "inject-bugs"))]
    fn bug_vote_for_stale(&self) -> bool {
        false
    }
    #[cfg(feature = "inject-bugs")]
    fn bug_lease_read(&self) -> bool {
        self.cfg.bug == Some(InjectedBug::LeaseReadSkipsCheck)
    }
    #[cfg(not(feature = "inject-bugs"))]
    fn bug_lease_read(&self) -> bool {
        false
    }
    #[cfg(feature = "inject-bugs")]
    fn bug_forced_ignored(&self) -> bool {
        self.cfg.bug == Some(InjectedBug::ForcedLeaderIgnored)
    }
    #[cfg(not(feature = "inject-bugs"))]
    fn bug_forced_ignored(&self) -> bool {
        false
    }
}

fn accept(index: LogIndex) -> MessageBody {
    MessageBody::AppendResponse {
        index,
        reject: false,
        reject_hint: LogIndex::ZERO,
        reject_hint_term: Term::ZERO,
    }
}

fn reject(index: LogIndex, reject_hint: LogIndex, reject_hint_term: Term) -> MessageBody {
    MessageBody::AppendResponse {
        index,
        reject: true,
        reject_hint,
        reject_hint_term,
    }
}

/// Structural checks on a message from the network, before anything acts on it.
fn validate(m: &Message, id: NodeId) -> Result<(), Error> {
    let invalid = |why: String| Err(Error::InvalidMessage(why));
    if m.to != id {
        return invalid(format!("addressed to {}, not to {id}", m.to));
    }
    if !m.from.is_some() || m.from == id {
        return invalid(format!("bad sender {}", m.from));
    }
    if let MessageBody::Append {
        prev_log_index,
        prev_log_term,
        entries,
        ..
    } = &m.body
    {
        let mut expected = prev_log_index.next();
        let mut last_term = *prev_log_term;
        for entry in entries {
            if entry.index != expected || entry.term < last_term || entry.term > m.term {
                return invalid(format!("append entries out of order at {}", entry.index));
            }
            expected = expected.next();
            last_term = entry.term;
        }
    }
    Ok(())
}
