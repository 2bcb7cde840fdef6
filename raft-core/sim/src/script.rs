//! Scripted runs: the simulated cluster of [`crate::run`] (real cores, simulated disks, a calm
//! network with random delays, the same checkers watching every step) without its random fault
//! schedule. A test places the faults, policy changes and membership changes itself (a joining
//! node, conf change proposals, compactions), at chosen times on chosen nodes, and asserts what
//! must happen: who leads, what commits, what is refused, what every node holds.
//!
//! Everything is still driven by the seed, so a scripted run replays exactly.

use std::collections::BTreeSet;

use raft_core::{
    CommitRule, ConfChangeStep, ConfState, Entry, Error, LeaderPolicy, LogIndex, NodeId,
    ProgressState, ProposalPosition, Role, Storage,
};

use crate::cluster::{Cluster, Event, LeaderChange};
use crate::invariants::Violation;
use crate::network::NetworkOptions;
use crate::node::OverrideRefused;
use crate::operator::OperatorPass;
use crate::policy::Policy;
use crate::scenario::Scenario;

/// Simulated time units per tick (each node's tick drifts from it by a few units).
pub const TICK_UNITS: u64 = 100;

/// A cluster driven by a test.
pub struct ScriptedRun {
    cluster: Cluster,
}

impl ScriptedRun {
    /// Starts the nodes of `scenario` (its clients, if any, start working at once).
    pub fn new(seed: u64, scenario: Scenario) -> Self {
        Self {
            cluster: Cluster::scripted(seed, scenario),
        }
    }

    /// Simulated time, in ticks.
    pub fn now_ticks(&self) -> u64 {
        self.cluster.now() / TICK_UNITS
    }

    /// Lets `ticks` ticks pass.
    pub fn run_ticks(&mut self, ticks: u64) {
        let deadline = self.cluster.now() + ticks * TICK_UNITS;
        self.cluster.run_until(deadline);
    }

    /// Runs tick by tick until `done` holds, for at most `ticks_max` ticks. Returns the ticks it
    /// took, or `None` if `done` never held.
    pub fn run_until(
        &mut self,
        ticks_max: u64,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Option<u64> {
        for ticks in 0..=ticks_max {
            if done(self) {
                return Some(ticks);
            }
            self.run_ticks(1);
        }
        None
    }

    /// Runs event by event (every delivery, tick, `Ready`) until `done` holds, for at most
    /// `ticks_max` ticks: for moments shorter than a tick, such as a campaign in progress.
    /// Returns whether `done` held.
    pub fn run_until_event(&mut self, ticks_max: u64, mut done: impl FnMut(&Self) -> bool) -> bool {
        let deadline = self.cluster.now() + ticks_max * TICK_UNITS;
        loop {
            if done(self) {
                return true;
            }
            if !self.cluster.run_one_event(deadline) {
                self.cluster.run_until(deadline);
                return done(self);
            }
        }
    }

    /// The running leader (of the highest term, if a stale one still believes it leads).
    pub fn leader(&self) -> Option<NodeId> {
        self.cluster.leader()
    }

    /// Every node that became leader, in order.
    pub fn leader_changes(&self) -> &[LeaderChange] {
        self.cluster.leader_changes()
    }

    /// Crashes `id`: it loses everything it has not persisted. Nothing if it is down already.
    pub fn crash(&mut self, id: NodeId) {
        self.cluster.crash(id);
    }

    /// Restarts a crashed `id` from its disk. Nothing if it runs.
    pub fn restart(&mut self, id: NodeId) {
        self.cluster.restart(id);
    }

    /// Starts `id`, a node outside the scenario, as a replica joining the group starts: with no
    /// configuration at all (an empty `ConfState`). It takes no part in anything until a leader
    /// adds it; it then learns the group's state from the leader, a snapshot first.
    ///
    /// # Panics
    /// If `id` was started before.
    pub fn start_joining(&mut self, id: NodeId) {
        self.cluster.start_joining(id);
    }

    /// Proposes a membership change made of `steps` at node `at` (it must lead). Returns where
    /// the entry went; the change takes effect on each node when it applies it.
    pub fn propose_conf_change(
        &mut self,
        at: NodeId,
        steps: &[ConfChangeStep],
    ) -> Result<ProposalPosition, Error> {
        self.cluster.propose_conf_change(at, steps.to_vec())
    }

    /// What the running leader `leader` knows of node `id`'s log: `(matched, next, state)`, as
    /// in [`raft_core::Status::progress`]. `None` if `leader` does not run, does not lead, or
    /// does not replicate to `id` (not a member of its configuration).
    pub fn progress(
        &self,
        leader: NodeId,
        id: NodeId,
    ) -> Option<(LogIndex, LogIndex, ProgressState)> {
        let node = self.cluster.node(leader)?;
        node.raw.status().progress.get(&id).copied()
    }

    /// The last index of a running node's log (persisted or not).
    pub fn last_index(&self, id: NodeId) -> Option<LogIndex> {
        self.cluster
            .node(id)
            .map(|node| node.raw.status().last_index)
    }

    /// The configuration a running node has applied.
    pub fn conf(&self, id: NodeId) -> Option<ConfState> {
        self.cluster.node(id).map(|node| node.conf.clone())
    }

    /// A running node snapshots the state it has applied and compacts its log up to it (the
    /// only point it has a state machine image of). Returns the index of its latest snapshot.
    pub fn compact(&mut self, id: NodeId) -> Option<LogIndex> {
        self.cluster.compact(id);
        self.snapshot_index(id)
    }

    /// The index of the latest durable snapshot of a node, running or crashed: 0 for a node
    /// that never compacted nor installed one.
    pub fn snapshot_index(&self, id: NodeId) -> Option<LogIndex> {
        let disk = self.cluster.disk(id)?;
        disk.first_index().ok().map(LogIndex::prev)
    }

    /// The value of `key` in a running node's applied state machine (`None` also when the node
    /// does not run).
    pub fn value(&self, id: NodeId, key: &str) -> Option<u64> {
        self.cluster.node(id)?.kv.get(key)
    }

    /// The writes proposed with [`Self::propose_write`] that were acknowledged (applied by the
    /// node that took them, in the term it took them), in order: `(key, value)`. A write whose
    /// node crashed or lost leadership before applying it is never acknowledged, whatever its
    /// fate.
    pub fn acknowledged_writes(&self) -> &[(String, u64)] {
        self.cluster.acknowledged_writes()
    }

    /// Changes how the network behaves from now on: delays, loss, duplication (partitions are
    /// set apart, with [`Self::partition`] and [`Self::heal_network`]).
    pub fn set_network(&mut self, options: NetworkOptions) {
        self.cluster.set_network(options);
    }

    /// Cuts `side` off from every other node, both ways.
    pub fn partition(&mut self, side: &[NodeId]) {
        self.cluster.partition(&side.iter().copied().collect());
    }

    /// Drops every message from `side` to the other nodes, while theirs still reach `side`.
    pub fn cut_outbound(&mut self, side: &[NodeId]) {
        self.cluster.cut_outbound(&side.iter().copied().collect());
    }

    /// Restores every link.
    pub fn heal_network(&mut self) {
        self.cluster.heal_network();
    }

    /// The leader proposes a policy entry, as shard-node does; with `early_switch` it counts by
    /// the new commit rule at once. Returns the leader and where the entry went.
    pub fn propose_policy(
        &mut self,
        policy: &Policy,
        early_switch: bool,
    ) -> Result<(NodeId, ProposalPosition), Error> {
        self.cluster.propose_policy(policy, early_switch)
    }

    /// `nodes` adopt the given commit rule and/or leader policy now, as if each had just applied
    /// a change carrying them (see [`crate::node::SimNode::set_policy`]).
    pub fn set_policy(
        &mut self,
        nodes: &[NodeId],
        commit_rule: Option<CommitRule>,
        leader_policy: Option<LeaderPolicy>,
    ) {
        let nodes: BTreeSet<NodeId> = nodes.iter().copied().collect();
        self.cluster.set_policy(&nodes, commit_rule, leader_policy);
    }

    /// Like [`Self::set_policy`], `in_ticks` ticks from now.
    pub fn set_policy_in(
        &mut self,
        in_ticks: u64,
        nodes: &[NodeId],
        commit_rule: Option<CommitRule>,
        leader_policy: Option<LeaderPolicy>,
    ) {
        self.cluster.schedule(
            in_ticks * TICK_UNITS,
            Event::SetPolicy {
                nodes: nodes.iter().copied().collect(),
                commit_rule,
                leader_policy,
                transient: false,
            },
        );
    }

    /// Like [`Self::propose_policy`], `in_ticks` ticks from now (at whoever leads then).
    pub fn propose_policy_in(&mut self, in_ticks: u64, policy: Policy, early_switch: bool) {
        self.cluster.schedule(
            in_ticks * TICK_UNITS,
            Event::ProposePolicy {
                policy,
                early_switch,
            },
        );
    }

    /// The operator lifts the forced leader on node `id`: the manager's `OverrideLeaderPolicy`
    /// reaches it now (see [`crate::node::SimNode::override_leader_policy`]). In memory only: the
    /// next policy `id` applies, or a restart, undoes it. Returns whether its policy changed.
    pub fn override_leader_policy(
        &mut self,
        id: NodeId,
        leader: LeaderPolicy,
    ) -> Result<bool, OverrideRefused> {
        self.cluster.override_leader_policy(id, leader)
    }

    /// Whether the group is in a policy stall now: no leader, and no voter its policies let be
    /// elected (see [`crate::stall`]). A description of it.
    pub fn policy_stall(&self) -> Option<String> {
        self.cluster.policy_stall_now()
    }

    /// One pass of the manager's push of `wanted` (see [`crate::operator`]): proposed through
    /// the leader if there is one; with no leader and a replica answering `ForcedLeaderDown`,
    /// the override to every running replica.
    pub fn operator_pass(&mut self, wanted: &Policy) -> OperatorPass {
        self.cluster.operator_pass(wanted)
    }

    /// Proposes a write of `key` at node `at` (scripted keys are separate from the clients').
    pub fn propose_write(&mut self, at: NodeId, key: &str, value: u64) -> Result<(), Error> {
        self.cluster.propose_write(at, key.to_owned(), value)
    }

    /// The running nodes.
    pub fn running(&self) -> Vec<NodeId> {
        self.cluster.running_ids()
    }

    /// The role of a running node.
    pub fn role(&self, id: NodeId) -> Option<Role> {
        self.cluster.node(id).map(|node| node.raw.role())
    }

    /// The commit index a running node knows.
    pub fn commit_index(&self, id: NodeId) -> Option<LogIndex> {
        let node = self.cluster.node(id)?;
        Some(node.raw.status().hard_state.commit)
    }

    /// The index a running node has applied.
    pub fn applied(&self, id: NodeId) -> Option<LogIndex> {
        self.cluster.node(id).map(|node| node.applied)
    }

    /// The policy a running node has adopted.
    pub fn policy(&self, id: NodeId) -> Option<Policy> {
        self.cluster.node(id).map(|node| node.policy().clone())
    }

    /// The commit rule a running node's core counts by.
    pub fn commit_rule(&self, id: NodeId) -> Option<CommitRule> {
        self.cluster.node(id).map(|node| node.commit_rule().clone())
    }

    /// The durable log of a node (running or crashed) from `from` on, as far as it holds it.
    pub fn log(&self, id: NodeId, from: LogIndex) -> Vec<Entry> {
        let Some(disk) = self.cluster.disk(id) else {
            return Vec::new();
        };
        let first = disk.first_index().unwrap_or(LogIndex(1));
        disk.all_entries()
            .iter()
            .filter(|entry| entry.index >= from.max(first))
            .cloned()
            .collect()
    }

    /// The violations found so far.
    pub fn violations(&self) -> &[Violation] {
        self.cluster.violations()
    }

    /// The trace so far (every message, apply, fault and policy change).
    pub fn trace(&self) -> &[String] {
        self.cluster.trace()
    }

    /// Runs the checks over whole logs and histories (log matching, linearizability) and returns
    /// every violation of the run. Client operations still pending end with an unknown outcome,
    /// as at the end of a random run.
    pub fn finish(self) -> Vec<Violation> {
        self.cluster.finish()
    }
}
