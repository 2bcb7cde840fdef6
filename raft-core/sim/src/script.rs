//! Scripted runs: the simulated cluster of [`crate::run`] (real cores, simulated disks, a calm
//! network with random delays, the same checkers watching every step) without its random fault
//! schedule. A test places the faults and policy changes itself, at chosen times on chosen
//! nodes, and asserts what must happen: who leads, what commits, what is refused.
//!
//! Everything is still driven by the seed, so a scripted run replays exactly.

use std::collections::BTreeSet;

use raft_core::{
    CommitRule, Entry, Error, LeaderPolicy, LogIndex, NodeId, ProposalPosition, Role, Storage,
};

use crate::cluster::{Cluster, Event, LeaderChange};
use crate::invariants::Violation;
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

    /// Crashes `id`: it loses everything it has not persisted.
    pub fn crash(&mut self, id: NodeId) {
        self.cluster.crash(id);
    }

    /// Restarts a crashed `id` from its disk.
    pub fn restart(&mut self, id: NodeId) {
        self.cluster.restart(id);
    }

    /// Cuts `side` off from every other node, both ways.
    pub fn partition(&mut self, side: &[NodeId]) {
        self.cluster.partition(&side.iter().copied().collect());
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
    /// every violation of the run.
    pub fn finish(self) -> Vec<Violation> {
        self.cluster.finish()
    }
}
