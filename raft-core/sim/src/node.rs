//! One simulated replica: a real [`RawNode`] over [`MemStorage`] (the "disk"), the real key-value
//! state machine, and the bookkeeping that turns applied entries and read states into answers
//! for clients.
//!
//! A crash drops everything but the storage: the unstable log tail inside the `RawNode`, the
//! in-memory state machine, and pending requests. That is exactly "loses everything not yet
//! persisted through Ready".
//!
//! The replica drives its core's policy the way shard-node does (see [`crate::policy`]): it adopts
//! a policy when it applies a policy entry, installs a snapshot or starts from one; as leader it
//! counts by the commit rule of a policy it proposes at once; and it goes back to the rule it has
//! applied when it stops leading.
//!
//! An operator can also lift a forced leader on a replica ([`SimNode::override_leader_policy`]),
//! as shard-node's `override_leader` does: in memory only, until the next policy the replica
//! applies (or restarts with).

use std::collections::BTreeMap;

use raft_core::{
    CommitRule, ConfState, Config, Entry, EntryPayload, Error, LeaderPolicy, LogIndex, MemStorage,
    Message, NodeId, ProposalPosition, RawNode, Role, Storage, Term,
};

use crate::kv::{Command, Kv, Proposal, WriteResult};
use crate::policy::Policy;

/// Deliberately wrong driver behaviour (test-only feature), to show that the policy checkers
/// catch a driver that does not do what it records.
#[cfg(feature = "inject-bugs")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverBug {
    /// The node records every new commit rule but never hands it to its core.
    CommitRuleNotHandedToCore,
    /// The node records every new leader policy but never hands it to its core.
    LeaderPolicyNotHandedToCore,
}

/// The answer to a client request, produced when a node applies or confirms it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The write took effect.
    WriteDone {
        /// The client operation.
        op_id: u64,
        /// What it did.
        result: WriteResult,
    },
    /// The write definitely did not take effect (another entry was committed at its index).
    WriteFailed {
        /// The client operation.
        op_id: u64,
    },
    /// A linearizable read was served.
    ReadDone {
        /// The client operation.
        op_id: u64,
        /// The value read.
        value: Option<u64>,
    },
    /// The read could not be confirmed (leadership lost).
    ReadFailed {
        /// The client operation.
        op_id: u64,
    },
}

impl Answer {
    /// The operation it answers.
    pub fn op_id(&self) -> u64 {
        match self {
            Self::WriteDone { op_id, .. }
            | Self::WriteFailed { op_id }
            | Self::ReadDone { op_id, .. }
            | Self::ReadFailed { op_id } => *op_id,
        }
    }
}

/// Why a replica refused an operator's leader policy override (shard-node's `override_leader`
/// answers these with an error; the manager retries on its next pass).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverrideRefused {
    /// The replica does not run: the request is lost.
    NotRunning,
    /// Its policy forces no leader: a policy change goes through the log.
    NotForced,
    /// The forced node leads, and the replica heard from it within an election timeout.
    ForcedLeads(NodeId),
}

/// Which setting a [`DriverBug`] withholds from the core.
#[derive(Clone, Copy, Debug)]
enum BugKind {
    CommitRule,
    LeaderPolicy,
}

/// A read waiting for confirmation or for its index to be applied.
#[derive(Clone, Debug)]
struct PendingRead {
    op_id: u64,
    key: String,
    /// Set once the core confirmed the read.
    index: Option<LogIndex>,
}

/// Everything a processed `Ready` produced that the rest of the simulation needs.
#[derive(Debug, Default)]
pub struct ReadyOutput {
    /// Messages to put on the network.
    pub messages: Vec<Message>,
    /// Answers to clients.
    pub answers: Vec<Answer>,
    /// Entries applied, in order.
    pub applied: Vec<Entry>,
    /// A snapshot installed at this index (the entries up to it were applied through it).
    pub snapshot_installed: Option<(LogIndex, Term)>,
    /// This node became leader in this term.
    pub became_leader: Option<Term>,
    /// A committed configuration change that the core refused to apply (a bug).
    pub conf_change_errors: Vec<String>,
    /// Policies adopted while handling this `Ready` (applied entries or an installed snapshot).
    pub policies_adopted: Vec<Policy>,
    /// The commit index moved while this node led: what to check against the commit rules.
    pub commit_check: Option<CommitCheck>,
}

/// A commit index advance made by a leader, and every (commit rule, configuration) its core
/// counted by since the previous check: each newly committed entry must be held by a set of
/// nodes that satisfies at least one of them.
#[derive(Debug)]
pub struct CommitCheck {
    /// The commit index at the previous check.
    pub from: LogIndex,
    /// The new commit index.
    pub to: LogIndex,
    /// The rules and configurations in force meanwhile.
    pub rules: Vec<(CommitRule, ConfState)>,
}

/// A running replica.
pub struct SimNode {
    /// The core.
    pub raw: RawNode<MemStorage>,
    /// The applied state machine.
    pub kv: Kv,
    /// The configuration as of the applied index.
    pub conf: ConfState,
    /// The last applied index.
    pub applied: LogIndex,
    /// Proposals made here, by log index: `(term, op_id)`.
    proposals: BTreeMap<LogIndex, (Term, u64)>,
    reads: BTreeMap<u64, PendingRead>,
    /// The policy this node's core was handed: from the last policy entry applied, an installed
    /// snapshot, the state machine at start, a direct [`Self::set_policy`], or with its leader
    /// policy from an operator's [`Self::override_leader_policy`].
    policy: Policy,
    /// The commit rule the core counts by: `policy.commit_rule`, or, while this node leads, the
    /// rule of a policy it proposed (the early switch).
    commit_rule: CommitRule,
    /// The policy in force before the log sets one (the scenario's).
    initial_policy: Policy,
    /// The commit index as of the last `Ready`.
    commit: LogIndex,
    /// Every (commit rule, configuration) the core has counted by since the last `Ready`.
    rules_since_ready: Vec<(CommitRule, ConfState)>,
    /// A deliberately wrong behaviour of this driver (test-only feature).
    #[cfg(feature = "inject-bugs")]
    pub driver_bug: Option<DriverBug>,
}

impl SimNode {
    /// Starts a replica from its storage ("disk"): the state machine is rebuilt from the latest
    /// snapshot and the core replays the committed entries after it. The policy in `config` is
    /// the initial one; the node starts with the one its state machine holds, if any.
    pub fn start(config: Config, mut storage: MemStorage) -> Result<Self, Error> {
        let snapshot = storage.snapshot()?;
        let conf = snapshot.metadata.conf_state.clone();
        // The configuration handed to the core must be the one as of the applied index.
        storage.set_conf_state(conf.clone());
        let applied = snapshot.metadata.index;
        let commit = storage.hard_state().commit;
        let kv = Kv::decode(&snapshot.data);
        let initial_policy = Policy {
            commit_rule: config.commit_rule.clone(),
            leader_policy: config.leader_policy.clone(),
        };
        let policy = kv
            .policy()
            .cloned()
            .unwrap_or_else(|| initial_policy.clone());
        let config = Config {
            applied,
            commit_rule: policy.commit_rule.clone(),
            leader_policy: policy.leader_policy.clone(),
            ..config
        };
        Ok(Self {
            raw: RawNode::new(config, storage)?,
            kv,
            rules_since_ready: vec![(policy.commit_rule.clone(), conf.clone())],
            conf,
            applied,
            proposals: BTreeMap::new(),
            reads: BTreeMap::new(),
            commit_rule: policy.commit_rule.clone(),
            policy,
            initial_policy,
            commit,
            #[cfg(feature = "inject-bugs")]
            driver_bug: None,
        })
    }

    /// The policy this node has adopted.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The commit rule the core counts by right now.
    pub fn commit_rule(&self) -> &CommitRule {
        &self.commit_rule
    }

    /// Proposes a policy change, as shard-node does. With `early_switch` the core counts by the
    /// new commit rule at once (until this node stops leading); otherwise only once this node
    /// applies the entry.
    pub fn propose_policy(
        &mut self,
        policy: &Policy,
        early_switch: bool,
    ) -> Result<ProposalPosition, Error> {
        let position = self
            .raw
            .propose(Proposal::Policy(policy.clone()).encode())?;
        if early_switch {
            self.count_by(policy.commit_rule.clone());
        }
        Ok(position)
    }

    /// Hands a commit rule and/or a leader policy to the core directly, as if this node had
    /// just applied a change carrying them. The log knows nothing of it: the next policy entry
    /// applied, snapshot installed or restart replaces it.
    pub fn set_policy(
        &mut self,
        commit_rule: Option<CommitRule>,
        leader_policy: Option<LeaderPolicy>,
    ) {
        let policy = Policy {
            commit_rule: commit_rule.unwrap_or_else(|| self.policy.commit_rule.clone()),
            leader_policy: leader_policy.unwrap_or_else(|| self.policy.leader_policy.clone()),
        };
        self.adopt(policy);
    }

    /// Lifts a forced leader on this replica, as shard-node's `override_leader` does when the
    /// manager sends `OverrideLeaderPolicy`: the core follows `leader` at once, in memory only;
    /// the commit rule stays. The next policy this node applies (an entry, or one a snapshot
    /// carries) replaces it, and a restart forgets it (the node starts with its applied policy).
    ///
    /// Refused when this node's policy forces no leader, or when the forced node leads in this
    /// node's view and `heard_recently(forced)` (this node heard from it within an election
    /// timeout; always true of itself). Returns whether the policy changed (not when it already
    /// is `leader`, which is accepted before anything else is looked at).
    pub fn override_leader_policy(
        &mut self,
        leader: LeaderPolicy,
        heard_recently: impl FnOnce(NodeId) -> bool,
    ) -> Result<bool, OverrideRefused> {
        if self.policy.leader_policy == leader {
            return Ok(false);
        }
        let LeaderPolicy::Forced(forced) = self.policy.leader_policy else {
            return Err(OverrideRefused::NotForced);
        };
        if self.raw.leader() == forced && heard_recently(forced) {
            return Err(OverrideRefused::ForcedLeads(forced));
        }
        if !self.has_bug(BugKind::LeaderPolicy) {
            self.raw.set_leader_policy(leader.clone());
        }
        self.policy.leader_policy = leader;
        Ok(true)
    }

    /// Drops whatever [`Self::set_policy`] or [`Self::override_leader_policy`] set: back to the
    /// policy the state machine holds.
    pub fn resync_policy(&mut self) -> bool {
        let policy = self.applied_policy();
        self.adopt(policy)
    }

    /// The policy as of the applied index, according to the log (what the node starts with).
    pub fn applied_policy(&self) -> Policy {
        self.kv
            .policy()
            .cloned()
            .unwrap_or_else(|| self.initial_policy.clone())
    }

    /// Adopts an applied policy, as shard-node's `adopt_policy` does: nothing if it is the one
    /// already applied; else both settings go to the core (which replaces an early rule).
    fn adopt(&mut self, policy: Policy) -> bool {
        if policy == self.policy {
            return false;
        }
        self.count_by(policy.commit_rule.clone());
        if !self.has_bug(BugKind::LeaderPolicy) {
            self.raw.set_leader_policy(policy.leader_policy.clone());
        }
        self.policy = policy;
        true
    }

    /// Makes the core count by `rule`.
    fn count_by(&mut self, rule: CommitRule) {
        if rule == self.commit_rule {
            return;
        }
        self.commit_rule = rule.clone();
        if !self.has_bug(BugKind::CommitRule) {
            self.raw.set_commit_rule(rule);
        }
        self.note_rule_state();
    }

    #[cfg(feature = "inject-bugs")]
    fn has_bug(&self, kind: BugKind) -> bool {
        matches!(
            (self.driver_bug, kind),
            (
                Some(DriverBug::CommitRuleNotHandedToCore),
                BugKind::CommitRule
            ) | (
                Some(DriverBug::LeaderPolicyNotHandedToCore),
                BugKind::LeaderPolicy
            )
        )
    }

    #[cfg(not(feature = "inject-bugs"))]
    fn has_bug(&self, _kind: BugKind) -> bool {
        false
    }

    fn note_rule_state(&mut self) {
        let state = (self.commit_rule.clone(), self.conf.clone());
        if self.rules_since_ready.last() != Some(&state) {
            self.rules_since_ready.push(state);
        }
    }

    /// Proposes a client write. On success the answer comes when the entry is applied.
    pub fn propose(&mut self, command: &Command) -> Result<(), Error> {
        let position = self
            .raw
            .propose(Proposal::Write(command.clone()).encode())?;
        // A proposal of ours already waiting at this index was truncated by this node's new term:
        // it can never commit.
        self.proposals
            .insert(position.last_index, (position.term, command.op_id));
        Ok(())
    }

    /// Asks for a linearizable read of `key`.
    pub fn read(&mut self, context: u64, op_id: u64, key: String) -> Result<(), Error> {
        self.raw.read_index(context)?;
        self.reads.insert(
            context,
            PendingRead {
                op_id,
                key,
                index: None,
            },
        );
        Ok(())
    }

    /// Makes a snapshot of the applied state and compacts the log up to it.
    pub fn compact(&mut self) {
        let snapshot_index = self
            .raw
            .storage()
            .first_index()
            .map_or(LogIndex::ZERO, |i| i.prev());
        if self.applied <= snapshot_index {
            return;
        }
        let data = self.kv.encode();
        let (applied, conf) = (self.applied, self.conf.clone());
        self.raw
            .storage_mut()
            .compact(applied, conf, data)
            .expect("applied entries are stored");
    }

    /// Whether this node leads.
    pub fn is_leader(&self) -> bool {
        self.raw.role() == Role::Leader
    }

    /// Handles one `Ready`: persist, then send, then apply, then advance.
    pub fn process_ready(&mut self) -> ReadyOutput {
        let mut out = ReadyOutput::default();
        if !self.raw.has_ready() {
            return out;
        }
        let leading = self.raw.role() == Role::Leader;
        let mut ready = self.raw.ready();
        // The commit index of this Ready was reached under the rules noted since the last one;
        // what moves it from here on is counted under the rules in force from now.
        let rules = std::mem::replace(
            &mut self.rules_since_ready,
            vec![(self.commit_rule.clone(), self.conf.clone())],
        );
        if let Some(hard_state) = ready.hard_state {
            if leading && hard_state.commit > self.commit {
                out.commit_check = Some(CommitCheck {
                    from: self.commit,
                    to: hard_state.commit,
                    rules,
                });
            }
            self.commit = self.commit.max(hard_state.commit);
        }
        if let Some(soft) = ready.soft_state
            && soft.role == Role::Leader
        {
            let term = ready
                .hard_state
                .map_or_else(|| self.raw.status().hard_state.term, |hs| hs.term);
            out.became_leader = Some(term);
        }

        // 1. Persist.
        let storage = self.raw.storage_mut();
        if let Some(snapshot) = ready.snapshot.clone() {
            storage
                .apply_snapshot(snapshot)
                .expect("the core only hands out newer snapshots");
        }
        storage
            .append(&ready.entries)
            .expect("the core hands out contiguous entries");
        if let Some(hard_state) = ready.hard_state {
            storage.set_hard_state(hard_state);
        }

        // 2. Send (the cluster puts them on the network after this returns).
        out.messages = std::mem::take(&mut ready.messages);

        // 3. Apply.
        if let Some(soft) = ready.soft_state
            && soft.role != Role::Leader
        {
            // A rule adopted early for a policy proposal lasts only while this node leads:
            // whoever leads next counts by the rule it has applied.
            self.count_by(self.policy.commit_rule.clone());
        }
        if let Some(snapshot) = &ready.snapshot {
            let meta = &snapshot.metadata;
            self.kv = Kv::decode(&snapshot.data);
            self.conf = meta.conf_state.clone();
            self.note_rule_state();
            self.applied = meta.index;
            out.snapshot_installed = Some((meta.index, meta.term));
            // Proposals the snapshot covers have unknown fate here; their clients time out.
            self.proposals = self.proposals.split_off(&meta.index.next());
            // The snapshot carries the group's policy.
            let policy = self.applied_policy();
            if self.adopt(policy.clone()) {
                out.policies_adopted.push(policy);
            }
        }
        for entry in &ready.committed_entries {
            self.apply_entry(entry, &mut out);
        }
        for read in &ready.read_states {
            if let Some(pending) = self.reads.get_mut(&read.context) {
                pending.index = Some(read.index);
            }
        }
        for context in &ready.dropped_reads {
            if let Some(pending) = self.reads.remove(context) {
                out.answers.push(Answer::ReadFailed {
                    op_id: pending.op_id,
                });
            }
        }
        self.serve_reads(&mut out);

        // 4. Advance.
        self.raw.advance(ready);
        out
    }

    fn apply_entry(&mut self, entry: &Entry, out: &mut ReadyOutput) {
        assert_eq!(
            entry.index,
            self.applied.next(),
            "entries are applied in order without gaps"
        );
        let mut result = None;
        let mut adopted = None;
        match &entry.payload {
            EntryPayload::Normal(data) => match Proposal::decode(data) {
                Some(Proposal::Write(command)) => {
                    result = Some((command.op_id, self.kv.apply(&command.write)));
                }
                Some(Proposal::Policy(policy)) => {
                    self.kv.set_policy(policy.clone());
                    adopted = Some(policy);
                }
                None => {}
            },
            EntryPayload::ConfChange(change) => match self.raw.apply_conf_change(change) {
                Ok(conf) => {
                    self.conf = conf.clone();
                    self.raw.storage_mut().set_conf_state(conf);
                    self.note_rule_state();
                }
                Err(e) => out
                    .conf_change_errors
                    .push(format!("at {}: {e}", entry.index)),
            },
            EntryPayload::Empty => {}
        }
        self.applied = entry.index;
        if let Some(policy) = adopted
            && self.adopt(policy.clone())
        {
            out.policies_adopted.push(policy);
        }
        out.applied.push(entry.clone());
        // Answer the proposal made here for this index, if any.
        if let Some((term, op_id)) = self.proposals.remove(&entry.index) {
            match result {
                Some((applied_op, write_result)) if term == entry.term && applied_op == op_id => {
                    out.answers.push(Answer::WriteDone {
                        op_id,
                        result: write_result,
                    });
                }
                _ => out.answers.push(Answer::WriteFailed { op_id }),
            }
        }
    }

    fn serve_reads(&mut self, out: &mut ReadyOutput) {
        let applied = self.applied;
        let ready: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, read)| read.index.is_some_and(|index| index <= applied))
            .map(|(context, _)| *context)
            .collect();
        for context in ready {
            let read = self.reads.remove(&context).expect("collected above");
            out.answers.push(Answer::ReadDone {
                op_id: read.op_id,
                value: self.kv.get(&read.key),
            });
        }
    }
}
