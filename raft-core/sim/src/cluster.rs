//! The simulation of one seed: a cluster of real cores on a simulated network and disk, clients
//! issuing operations, a fault schedule, and the checkers watching everything.
//!
//! Time is a number of simulated units (a tick is about 100, with a little drift per node). The
//! run has three phases: faults (crashes, restarts, partitions, loss, duplication, reordering,
//! membership changes, leader transfers, compactions, policy changes), then heal (everything
//! restarts, the network calms down, and direct policy changes are dropped), then a liveness
//! window in which every client operation must complete, and a final convergence check. A run
//! that ends in a policy stall ([`crate::stall`]) is then handed to the operator
//! ([`crate::operator`]): the manager's passes lift the forced leader and push a new policy, and
//! the liveness window and final check run again from the first pass.
//!
//! A scripted run ([`crate::script::ScriptedRun`]) uses the same cluster without the random fault
//! schedule: a test drives it step by step.

use std::collections::{BTreeMap, BTreeSet};

use raft_core::{
    CommitRule, ConfChange, ConfChangeStep, ConfState, EntryPayload, Error, LeaderPolicy, LogIndex,
    MemStorage, Message, NodeId, ProposalPosition, Role, Storage, Term,
};

use crate::invariants::{
    CommitRuleDurability, Durability, ElectionSafety, ForcedLeader, LeaderCompleteness,
    StateMachineSafety, Violation, check_log_matching,
};
use crate::kv::{Command, Write, WriteResult};
use crate::linearizability::{self, Event as LinEvent, History, Op, Outcome, Verdict};
use crate::network::{Network, NetworkOptions};
use crate::node::{Answer, OverrideRefused, ReadyOutput, SimNode};
use crate::operator::{OperatorPass, OperatorRecovery};
use crate::policy::{Policy, describe_commit_rule, describe_leader_policy};
use crate::rng::SimRng;
use crate::scenario::Scenario;
use crate::stall::{ElectionView, policy_stall};

/// How one run is set up beyond what the seed decides.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Ticks of the fault phase.
    pub fault_ticks: u64,
    /// Record a human-readable trace of the run.
    pub trace: bool,
    /// Change commit rules and leader policies while the group runs: policy entries proposed
    /// through the log (with or without the leader's early switch) and direct changes on some
    /// nodes at a time.
    pub policy_changes: bool,
    /// Hand a run that ends in a policy stall to the operator path (the manager lifting the
    /// forced leader, then pushing a new policy through the log), and require it to recover.
    /// Off, such runs are only reported.
    pub operator: bool,
    /// A deliberately injected core bug to enable (test-only feature).
    #[cfg(feature = "inject-bugs")]
    pub bug: Option<raft_core::InjectedBug>,
    /// A deliberately wrong driver behaviour to enable (test-only feature).
    #[cfg(feature = "inject-bugs")]
    pub driver_bug: Option<crate::node::DriverBug>,
    /// Switches the commit rule durability checker off (test-only feature), to show that the
    /// other checkers still catch a commit without quorum on their own.
    #[cfg(feature = "inject-bugs")]
    pub skip_commit_rule_check: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            fault_ticks: 300,
            trace: false,
            policy_changes: true,
            operator: true,
            #[cfg(feature = "inject-bugs")]
            bug: None,
            #[cfg(feature = "inject-bugs")]
            driver_bug: None,
            #[cfg(feature = "inject-bugs")]
            skip_commit_rule_check: false,
        }
    }
}

/// What a run found.
#[derive(Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// What the seed drew.
    pub scenario: Scenario,
    /// Broken properties (empty: the run passed).
    pub violations: Vec<Violation>,
    /// Events processed.
    pub events: u64,
    /// Client operations that completed with a known outcome.
    pub ops_completed: u64,
    /// Client writes whose outcome stayed unknown (timeouts).
    pub ops_unknown: u64,
    /// Terms that had a leader.
    pub terms_with_leader: usize,
    /// Whether the linearizability check hit its step limit on some key (undecided, not a
    /// violation).
    pub linearizability_undecided: bool,
    /// The highest committed index.
    pub committed: LogIndex,
    /// The run ended (or a client gave up after the heal) with no leader and no voter that its
    /// leader policies let be elected (see [`crate::stall`]): liveness could not be expected
    /// from the group on its own. Not a violation; reported so it is not silently ignored. With
    /// [`RunOptions::operator`], the run went on with the operator path ([`Self::operator`]);
    /// without, its liveness checks were skipped.
    pub policy_stall: Option<String>,
    /// How the operator path got the run out of its policy stall (`None`: it did not need to).
    pub operator: Option<OperatorRecovery>,
    /// The trace, when asked for.
    pub trace: Vec<String>,
}

const TICK_UNITS: u64 = 100;
/// A client gives up on an operation after this long (its outcome becomes unknown).
const CLIENT_TIMEOUT_UNITS: u64 = 15 * TICK_UNITS;
/// After the heal, time for elections and catch-up before operations must succeed.
const SETTLE_UNITS: u64 = 40 * TICK_UNITS;
/// Clients keep working this long after the heal.
const CLIENT_PHASE_UNITS: u64 = 90 * TICK_UNITS;
/// The final convergence check runs this long after the heal.
const FINAL_CHECK_UNITS: u64 = 120 * TICK_UNITS;
/// The last stretch of the run in which leadership must have settled: the first leader change in
/// it may be a late election; every later one must be a move the leader policy asks for (into the
/// preferred set of the node that led); anything else is flapping.
const STABLE_UNITS: u64 = 60 * TICK_UNITS;
/// The linearizability search gives up (undecided, reported) after this many steps per key.
const LINEARIZABILITY_STEPS_MAX: u64 = 5_000_000;
/// A run that processes more events than this is reported as stuck.
const EVENTS_MAX: u64 = 5_000_000;
/// The manager's policy push runs this often once a run is handed to the operator.
const OPERATOR_PASS_UNITS: u64 = 5 * TICK_UNITS;
/// After the operator's first pass on a stalled group, a leader must be elected within this.
const RECOVERY_LEADER_UNITS_MAX: u64 = 50 * TICK_UNITS;

#[derive(Debug)]
pub(crate) enum Event {
    Tick(NodeId),
    Ready(NodeId),
    Deliver(Message),
    Client(usize),
    ClientTimeout {
        client: usize,
        op_id: u64,
        attempt: u32,
    },
    Fault,
    Heal,
    FinalCheck,
    /// These nodes adopt this commit rule and/or leader policy now, as if they had applied a
    /// change carrying them (see [`SimNode::set_policy`]). A `transient` change is a fault: it is
    /// dropped when the run heals.
    SetPolicy {
        nodes: BTreeSet<NodeId>,
        commit_rule: Option<CommitRule>,
        leader_policy: Option<LeaderPolicy>,
        transient: bool,
    },
    /// The leader, if there is one, proposes a policy entry (see [`SimNode::propose_policy`]).
    ProposePolicy {
        policy: Policy,
        early_switch: bool,
    },
    /// The manager's `OverrideLeaderPolicy` reaches `node` (see
    /// [`SimNode::override_leader_policy`]). A `transient` one is sent during the faults: one
    /// still in flight at the heal is dropped.
    OverrideLeaderPolicy {
        node: NodeId,
        leader: LeaderPolicy,
        transient: bool,
    },
    /// A pass of the manager's policy push on a run handed to the operator.
    OperatorPass,
    /// A node crashes now and restarts after `down_units` (the operator path must cope with a
    /// replica that forgets its override).
    Bounce {
        node: NodeId,
        down_units: u64,
    },
    /// A crashed node restarts.
    Restart(NodeId),
}

/// A node became leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderChange {
    /// Simulated time.
    pub at: u64,
    /// The new leader.
    pub node: NodeId,
    /// Its term.
    pub term: Term,
}

#[derive(Clone, Debug)]
struct ClientOp {
    op_id: u64,
    op: Op,
    write: Option<Write>,
    call: u64,
    attempt: u32,
    submitted: bool,
}

#[derive(Debug, Default)]
struct Client {
    leader_guess: Option<NodeId>,
    current: Option<ClientOp>,
    succeeded_after_settle: u64,
    /// The client stopped for good at the end of its phase (nothing of it is scheduled).
    idle: bool,
}

/// A run handed to the operator after it ended in a policy stall.
#[derive(Debug)]
struct Recovery {
    wanted: Policy,
    started_at: u64,
    applied_at: Option<u64>,
    override_passes: u64,
    overrides_accepted: u64,
    /// Client writes called after the first pass that took effect.
    writes_committed: u64,
    recovered: bool,
}

/// A node slot: running, or crashed with only its disk left.
enum Slot {
    Running(Box<SimNode>),
    Crashed(Box<MemStorage>),
}

pub(crate) struct Cluster {
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    rng: SimRng,
    scenario: Scenario,
    options: RunOptions,
    network: Network,
    nodes: BTreeMap<NodeId, Slot>,
    tick_units: BTreeMap<NodeId, u64>,
    /// Nodes whose disk is slow: each Ready takes this much longer to persist.
    slow_disk_units: BTreeMap<NodeId, u64>,
    ready_scheduled: BTreeSet<NodeId>,
    clients: Vec<Client>,
    next_op_id: u64,
    op_owner: BTreeMap<u64, usize>,
    /// Writes proposed by a scripted test and not answered yet: op id -> (key, value).
    scripted_writes: BTreeMap<u64, (String, u64)>,
    /// Scripted writes acknowledged (applied by the node that took them), in order.
    acknowledged_writes: Vec<(String, u64)>,
    history: History,
    /// When the faults heal; once a run is handed to the operator, when its first pass ran (the
    /// liveness window starts over from there).
    heal_at: u64,
    healed: bool,
    /// The final check ran: the run is over.
    finished: bool,
    linearizability_undecided: bool,
    /// Each running node's role and term as last seen, to catch the moment it changes.
    roles: BTreeMap<NodeId, (Role, Term)>,
    /// Every node that became leader, in order.
    leader_changes: Vec<LeaderChange>,
    /// Nodes some policy forced: never removed from the group (a group whose forced leader is
    /// gone has no leader, by design).
    forced_ever: BTreeSet<NodeId>,
    /// The policy proposed last, which direct changes in the fault schedule often adopt early.
    last_policy: Option<Policy>,
    /// See [`Report::policy_stall`].
    policy_stall: Option<String>,
    /// When each node (the first) last received a message from each other (the second), since it
    /// started: what a host's "heard recently" looks at.
    last_heard: BTreeMap<(NodeId, NodeId), u64>,
    /// The operator path, once a stalled run was handed to it.
    recovery: Option<Recovery>,
    /// The manager's last policy push through the log: the leader that took it and the entry.
    operator_push: Option<(NodeId, LogIndex)>,
    // Checkers.
    election_safety: ElectionSafety,
    forced_leader: ForcedLeader,
    leader_completeness: LeaderCompleteness,
    state_machine: StateMachineSafety,
    durability: Durability,
    commit_rule: CommitRuleDurability,
    violations: Vec<Violation>,
    events: u64,
    ops_completed: u64,
    ops_unknown: u64,
    trace: Vec<String>,
}

/// Runs one seed.
pub fn run(seed: u64, options: &RunOptions) -> Report {
    let mut rng = SimRng::new(seed);
    let scenario = Scenario::random(&mut rng);
    let mut cluster = Cluster::new(rng, scenario, options.clone());
    cluster.run();
    Report {
        seed,
        scenario: cluster.scenario.clone(),
        violations: cluster.violations,
        events: cluster.events,
        ops_completed: cluster.ops_completed,
        ops_unknown: cluster.ops_unknown,
        terms_with_leader: cluster.election_safety.terms_with_leader(),
        linearizability_undecided: cluster.linearizability_undecided,
        committed: cluster.state_machine.max_committed(),
        policy_stall: cluster.policy_stall,
        operator: cluster.recovery.map(|r| OperatorRecovery {
            wanted: r.wanted,
            leader_after_ticks: cluster
                .leader_changes
                .iter()
                .find(|change| change.at >= r.started_at)
                .map(|change| (change.at - r.started_at) / TICK_UNITS),
            applied_after_ticks: r.applied_at.map(|at| (at - r.started_at) / TICK_UNITS),
            override_passes: r.override_passes,
            overrides_accepted: r.overrides_accepted,
            recovered: r.recovered,
        }),
        trace: cluster.trace,
    }
}

impl Cluster {
    fn new(rng: SimRng, scenario: Scenario, options: RunOptions) -> Self {
        let mut cluster = Self::build(rng, scenario, options, false);
        let first_fault = cluster.rng.range(5 * TICK_UNITS, 30 * TICK_UNITS);
        cluster.schedule(first_fault, Event::Fault);
        cluster.schedule(cluster.heal_at, Event::Heal);
        cluster.schedule(cluster.heal_at + FINAL_CHECK_UNITS, Event::FinalCheck);
        cluster
    }

    /// A cluster for a scripted run: a calm network, no fault schedule, no heal, no final check.
    pub(crate) fn scripted(seed: u64, scenario: Scenario) -> Self {
        let options = RunOptions {
            trace: true,
            ..RunOptions::default()
        };
        Self::build(SimRng::new(seed), scenario, options, true)
    }

    fn build(mut rng: SimRng, scenario: Scenario, options: RunOptions, scripted: bool) -> Self {
        let heal_at = if scripted {
            // Never: clients keep working and no liveness deadline applies.
            u64::MAX / 4
        } else {
            options.fault_ticks * TICK_UNITS
        };
        let network = if scripted {
            NetworkOptions::calm()
        } else {
            NetworkOptions::random(&mut rng)
        };
        let mut forced_ever = BTreeSet::new();
        forced_ever.extend(scenario.forced_leader());
        let mut cluster = Self {
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            network: Network::new(network),
            nodes: BTreeMap::new(),
            tick_units: BTreeMap::new(),
            slow_disk_units: BTreeMap::new(),
            ready_scheduled: BTreeSet::new(),
            clients: (0..scenario.clients).map(|_| Client::default()).collect(),
            next_op_id: 1,
            op_owner: BTreeMap::new(),
            scripted_writes: BTreeMap::new(),
            acknowledged_writes: Vec::new(),
            history: History::new(),
            heal_at,
            healed: false,
            finished: false,
            linearizability_undecided: false,
            roles: BTreeMap::new(),
            leader_changes: Vec::new(),
            forced_ever,
            last_policy: None,
            policy_stall: None,
            last_heard: BTreeMap::new(),
            recovery: None,
            operator_push: None,
            election_safety: ElectionSafety::default(),
            forced_leader: ForcedLeader::default(),
            leader_completeness: LeaderCompleteness,
            state_machine: StateMachineSafety::default(),
            durability: Durability,
            commit_rule: CommitRuleDurability,
            violations: Vec::new(),
            events: 0,
            ops_completed: 0,
            ops_unknown: 0,
            trace: Vec::new(),
            rng,
            scenario,
            options,
        };
        let initial = ConfState {
            voters: cluster.scenario.voters.iter().copied().collect(),
            voters_outgoing: BTreeSet::new(),
            learners: cluster.scenario.learners.iter().copied().collect(),
        };
        let members: Vec<NodeId> = initial.all_nodes().into_iter().collect();
        for id in members {
            cluster.start_node(id, MemStorage::new_with_conf_state(initial.clone()));
        }
        for client in 0..cluster.clients.len() {
            let at = cluster.rng.range(0, 10 * TICK_UNITS);
            cluster.schedule(at, Event::Client(client));
        }
        cluster
    }

    pub(crate) fn schedule(&mut self, delay: u64, event: Event) {
        self.seq += 1;
        self.queue.insert((self.now + delay, self.seq), event);
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        if self.options.trace {
            let line = format!("t={:>6} {}", self.now, line());
            self.trace.push(line);
        }
    }

    fn violation(&mut self, property: &'static str, detail: String) {
        self.note(|| format!("VIOLATION {property}: {detail}"));
        self.violations.push(Violation {
            property,
            detail,
            at: self.now,
        });
    }

    fn run(&mut self) {
        while let Some(((at, _), event)) = self.queue.pop_first() {
            self.now = at;
            self.events += 1;
            if self.events > EVENTS_MAX {
                self.violation("liveness", format!("more than {EVENTS_MAX} events: stuck"));
                return;
            }
            self.handle(event);
            if self.finished || !self.violations.is_empty() {
                return;
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick(id) => {
                if let Some(node) = self.running_mut(id) {
                    node.raw.tick();
                    self.mark_dirty(id);
                    self.watch_role(id, true);
                }
                let units = self.tick_units[&id];
                self.schedule(units, Event::Tick(id));
            }
            Event::Ready(id) => {
                self.ready_scheduled.remove(&id);
                self.process_ready(id);
            }
            Event::Deliver(message) => self.deliver(message),
            Event::Client(client) => self.client_step(client),
            Event::ClientTimeout {
                client,
                op_id,
                attempt,
            } => {
                self.client_timeout(client, op_id, attempt);
            }
            Event::Fault => {
                if self.healed {
                    return;
                }
                self.inject_fault();
                if self.now < self.heal_at {
                    let next = self.rng.range(TICK_UNITS, 15 * TICK_UNITS);
                    self.schedule(next, Event::Fault);
                }
            }
            Event::Heal => self.heal(),
            Event::FinalCheck => self.final_check(),
            Event::SetPolicy {
                nodes,
                commit_rule,
                leader_policy,
                transient,
            } => {
                if transient && self.healed {
                    return;
                }
                self.set_policy(&nodes, commit_rule, leader_policy);
            }
            Event::ProposePolicy {
                policy,
                early_switch,
            } => {
                let _ = self.propose_policy(&policy, early_switch);
            }
            Event::OverrideLeaderPolicy {
                node,
                leader,
                transient,
            } => {
                if transient && self.healed {
                    return;
                }
                let _ = self.override_leader_policy(node, leader);
            }
            Event::OperatorPass => self.recovery_pass(),
            Event::Bounce { node, down_units } => {
                self.crash(node);
                self.schedule(down_units, Event::Restart(node));
            }
            Event::Restart(node) => self.restart(node),
        }
    }

    // -------------------------------------------------------------------------------------
    // Policies.

    /// The leader proposes `policy` (see [`SimNode::propose_policy`]).
    pub(crate) fn propose_policy(
        &mut self,
        policy: &Policy,
        early_switch: bool,
    ) -> Result<(NodeId, ProposalPosition), Error> {
        let Some(leader) = self.leader() else {
            self.note(|| format!("propose policy {policy}: no leader"));
            return Err(Error::NotLeader { leader: None });
        };
        let node = self.running_mut(leader).expect("the leader runs");
        let result = node.propose_policy(policy, early_switch);
        self.note(|| {
            format!("propose policy {policy} on {leader} early_switch={early_switch}: {result:?}")
        });
        self.mark_dirty(leader);
        let position = result?;
        self.forced_ever.extend(policy.forced());
        self.last_policy = Some(policy.clone());
        Ok((leader, position))
    }

    /// The running nodes among `nodes` adopt the given settings (see [`SimNode::set_policy`]).
    pub(crate) fn set_policy(
        &mut self,
        nodes: &BTreeSet<NodeId>,
        commit_rule: Option<CommitRule>,
        leader_policy: Option<LeaderPolicy>,
    ) {
        if let Some(LeaderPolicy::Forced(id)) = leader_policy {
            self.forced_ever.insert(id);
        }
        for &id in nodes {
            let Some(node) = self.running_mut(id) else {
                continue;
            };
            node.set_policy(commit_rule.clone(), leader_policy.clone());
            let policy = node.policy().clone();
            self.note(|| format!("set policy on {id}: now {policy}"));
            self.mark_dirty(id);
            self.watch_role(id, false);
        }
        self.policies_changed();
    }

    /// The manager's `OverrideLeaderPolicy` reaches node `id`: it lifts its forced leader unless
    /// it refuses (see [`SimNode::override_leader_policy`]). Returns whether its policy changed.
    pub(crate) fn override_leader_policy(
        &mut self,
        id: NodeId,
        leader: LeaderPolicy,
    ) -> Result<bool, OverrideRefused> {
        let forced = self.node(id).and_then(|node| node.policy().forced());
        let heard = forced.is_some_and(|forced| self.heard_recently(id, forced));
        let result = match self.running_mut(id) {
            Some(node) => node.override_leader_policy(leader.clone(), |_| heard),
            None => Err(OverrideRefused::NotRunning),
        };
        let wanted = describe_leader_policy(&leader);
        self.note(|| match &result {
            Ok(true) => format!("override leader policy on {id} to {wanted}: accepted"),
            Ok(false) => format!("override leader policy on {id} to {wanted}: already"),
            Err(refused) => format!("override leader policy on {id} to {wanted}: {refused:?}"),
        });
        if result == Ok(true) {
            if let LeaderPolicy::Forced(forced) = leader {
                self.forced_ever.insert(forced);
            }
            self.mark_dirty(id);
            self.watch_role(id, false);
            // The forced-leader checker sees the override as the change of policy it is: the
            // operator ended the guarantee on this node, from now.
            self.policies_changed();
        }
        result
    }

    /// Whether node `at` heard from node `from` within an election timeout since it started (a
    /// node always hears itself), as shard-node's `heard_recently`.
    fn heard_recently(&self, at: NodeId, from: NodeId) -> bool {
        let window = u64::from(self.scenario.election_timeout_ticks) * TICK_UNITS;
        from == at
            || self
                .last_heard
                .get(&(at, from))
                .is_some_and(|heard| self.now - heard < window)
    }

    /// What node `id` answers a request it cannot take, as shard-node's `not_leader` does:
    /// `Some(forced)` for `ForcedLeaderDown { forced }` (its policy forces a node that does not
    /// lead in its view, or that it has not heard from within an election timeout).
    fn forced_leader_down(&self, id: NodeId) -> Option<NodeId> {
        let node = self.node(id)?;
        let LeaderPolicy::Forced(forced) = node.policy().leader_policy else {
            return None;
        };
        (node.raw.leader() != forced || !self.heard_recently(id, forced)).then_some(forced)
    }

    /// One pass of the manager's policy push for `wanted` (manager `push_policies`): through the
    /// leader if there is one (unless it has applied `wanted`, or a push of it is still under
    /// way); else, if a replica answers `ForcedLeaderDown` for a node `wanted` does not force,
    /// `OverrideLeaderPolicy` to every running replica.
    pub(crate) fn operator_pass(&mut self, wanted: &Policy) -> OperatorPass {
        let outcome = self.push_policy(wanted);
        self.note(|| format!("operator pass for {wanted}: {outcome:?}"));
        outcome
    }

    fn push_policy(&mut self, wanted: &Policy) -> OperatorPass {
        if let Some(leader) = self.leader() {
            let node = self.node(leader).expect("the leader runs");
            if node.applied_policy() == *wanted {
                return OperatorPass::Applied { leader };
            }
            if let Some((at, index)) = self.operator_push
                && at == leader
                && node.applied < index
            {
                return OperatorPass::Pending { leader, index };
            }
            return match self.propose_policy(wanted, true) {
                Ok((leader, position)) => {
                    self.operator_push = Some((leader, position.last_index));
                    OperatorPass::Proposed {
                        leader,
                        index: position.last_index,
                    }
                }
                Err(error) => OperatorPass::Refused { leader, error },
            };
        }
        // No leader: the push fails. The manager's client tries the replicas; one that waits for
        // a forced leader that does not lead ends the call with `ForcedLeaderDown`.
        let running = self.running_ids();
        let start = self.rng.range(0, running.len().max(1) as u64) as usize;
        let Some(forced) = (0..running.len())
            .find_map(|i| self.forced_leader_down(running[(start + i) % running.len()]))
        else {
            return OperatorPass::NoLeader;
        };
        if wanted.leader_policy == LeaderPolicy::Forced(forced) {
            return OperatorPass::ForcedLeaderDown { forced };
        }
        let (mut accepted, mut refused) = (Vec::new(), Vec::new());
        for id in running {
            match self.override_leader_policy(id, wanted.leader_policy.clone()) {
                Ok(true) => accepted.push(id),
                Ok(false) => {}
                Err(why) => refused.push((id, why)),
            }
        }
        OperatorPass::Overridden {
            forced,
            accepted,
            refused,
        }
    }

    /// Tells the forced-leader checker the leader policies of the running nodes.
    fn policies_changed(&mut self) {
        let policies: Vec<LeaderPolicy> = self
            .nodes
            .values()
            .filter_map(|slot| match slot {
                Slot::Running(node) => Some(node.policy().leader_policy.clone()),
                Slot::Crashed(_) => None,
            })
            .collect();
        self.forced_leader.on_policies(self.now, &policies);
    }

    /// Notices a change of `id`'s role after an input: a campaign starts or a leader is born.
    /// `ticked`: the input was a tick, which may start a new campaign without a role change.
    fn watch_role(&mut self, id: NodeId, ticked: bool) {
        let Some(Slot::Running(node)) = self.nodes.get(&id) else {
            return;
        };
        let role = node.raw.role();
        let (previous, previous_term) = self
            .roles
            .get(&id)
            .copied()
            .unwrap_or((Role::Follower, Term::ZERO));
        if role == previous && !(ticked && role == Role::Candidate) {
            return;
        }
        let term = node.raw.status().hard_state.term;
        let own = node.policy().leader_policy.clone();
        self.roles.insert(id, (role, term));
        match role {
            Role::Candidate if previous != Role::Candidate || term != previous_term => {
                self.forced_leader.on_campaign(id, term, self.now);
            }
            Role::Leader if previous != Role::Leader => {
                self.leader_changes.push(LeaderChange {
                    at: self.now,
                    node: id,
                    term,
                });
                if let Some(v) = self.forced_leader.on_leader(id, term, &own) {
                    self.violation("forced-leader exclusivity", v);
                }
            }
            _ => {}
        }
    }

    // -------------------------------------------------------------------------------------
    // Nodes.

    fn running_mut(&mut self, id: NodeId) -> Option<&mut SimNode> {
        match self.nodes.get_mut(&id) {
            Some(Slot::Running(node)) => Some(node),
            _ => None,
        }
    }

    pub(crate) fn running_ids(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, slot)| matches!(slot, Slot::Running(_)))
            .map(|(id, _)| *id)
            .collect()
    }

    fn crashed_ids(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, slot)| matches!(slot, Slot::Crashed(_)))
            .map(|(id, _)| *id)
            .collect()
    }

    /// A running leader; the one of the highest term if a stale one still believes it leads.
    pub(crate) fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|(id, slot)| match slot {
                Slot::Running(node) if node.is_leader() => Some((self.roles.get(id), *id)),
                _ => None,
            })
            .max_by_key(|(role, _)| role.map(|(_, term)| *term))
            .map(|(_, id)| id)
    }

    fn start_node(&mut self, id: NodeId, disk: MemStorage) {
        let node_seed = self.rng.seed();
        #[allow(unused_mut)]
        let mut config = self.scenario.config(id, node_seed);
        #[cfg(feature = "inject-bugs")]
        {
            config.bug = self.options.bug;
        }
        let snapshot = disk.snapshot().expect("MemStorage always has a snapshot");
        let node = match SimNode::start(config, disk) {
            #[cfg(feature = "inject-bugs")]
            Ok(mut node) => {
                node.driver_bug = self.options.driver_bug;
                node
            }
            #[cfg(not(feature = "inject-bugs"))]
            Ok(node) => node,
            Err(e) => {
                self.violation("restart", format!("node {id} cannot start: {e}"));
                return;
            }
        };
        if let Some(v) =
            self.state_machine
                .on_snapshot(id, snapshot.metadata.index, snapshot.metadata.term)
        {
            self.violation("state machine safety", v);
        }
        self.nodes.insert(id, Slot::Running(Box::new(node)));
        self.roles.remove(&id);
        self.policies_changed();
        let drift = self.rng.range(0, 7);
        let units = TICK_UNITS - 3 + drift;
        if self.tick_units.insert(id, units).is_none() {
            let phase = self.rng.range(0, units);
            self.schedule(phase, Event::Tick(id));
        }
        self.note(|| format!("start {id}"));
    }

    /// Crashes a running node; nothing for a node that is down or unknown.
    pub(crate) fn crash(&mut self, id: NodeId) {
        // Check before taking the slot out: removing a crashed node's slot would lose its disk.
        if !matches!(self.nodes.get(&id), Some(Slot::Running(_))) {
            return;
        }
        if let Some(Slot::Running(node)) = self.nodes.remove(&id) {
            let disk = node.raw.storage().clone();
            self.nodes.insert(id, Slot::Crashed(Box::new(disk)));
            self.roles.remove(&id);
            // A host remembers whom it heard from in memory only.
            self.last_heard.retain(|(at, _), _| *at != id);
            self.policies_changed();
            self.note(|| format!("crash {id}"));
        }
    }

    /// Restarts a crashed node from its disk; nothing for a node that runs or is unknown.
    pub(crate) fn restart(&mut self, id: NodeId) {
        // Check before taking the slot out: removing a running node's slot would drop the node.
        if !matches!(self.nodes.get(&id), Some(Slot::Crashed(_))) {
            return;
        }
        if let Some(Slot::Crashed(disk)) = self.nodes.remove(&id) {
            if let Some(v) = self.durability.on_restart(id, &disk, &self.state_machine) {
                self.violation("no lost committed entry", v);
            }
            self.note(|| format!("restart {id}"));
            self.start_node(id, *disk);
        }
    }

    fn mark_dirty(&mut self, id: NodeId) {
        if self.ready_scheduled.insert(id) {
            // Persisting takes a little while (the fsync): a crash in between loses it.
            let slow = self.slow_disk_units.get(&id).copied().unwrap_or(0);
            let fsync = self.rng.range(1, 15) + slow;
            self.schedule(fsync, Event::Ready(id));
        }
    }

    fn process_ready(&mut self, id: NodeId) {
        let Some(node) = self.running_mut(id) else {
            return;
        };
        let out = node.process_ready();
        let more = node.raw.has_ready();
        self.observe(id, out);
        self.watch_role(id, false);
        if more {
            self.mark_dirty(id);
        }
    }

    fn observe(&mut self, id: NodeId, out: ReadyOutput) {
        if let Some(term) = out.became_leader {
            self.note(|| format!("{id} leads term {term}"));
            if let Some(v) = self.election_safety.on_leader(id, term) {
                self.violation("election safety", v);
            }
            if let Some(Slot::Running(node)) = self.nodes.get(&id) {
                let check = self.leader_completeness.on_leader(
                    id,
                    term,
                    node.raw.storage(),
                    &self.state_machine,
                );
                if let Some(v) = check {
                    self.violation("leader completeness", v);
                }
            }
        }
        if let Some((index, term)) = out.snapshot_installed {
            self.note(|| format!("{id} installs snapshot {term}/{index}"));
            if let Some(v) = self.state_machine.on_snapshot(id, index, term) {
                self.violation("state machine safety", v);
            }
        }
        if let (Some(first), Some(last)) = (out.applied.first(), out.applied.last()) {
            let (first, last) = (first.index, last.index);
            self.note(|| format!("{id} applies {first}..={last}"));
        }
        for entry in &out.applied {
            if let Some(v) = self.state_machine.on_applied(id, entry) {
                self.violation("state machine safety", v);
            }
            if let EntryPayload::ConfChange(change) = &entry.payload {
                let index = entry.index;
                self.note(|| format!("{id} applies conf change {:?} at {index}", change.changes));
            }
        }
        #[cfg(feature = "inject-bugs")]
        let commit_check = out
            .commit_check
            .as_ref()
            .filter(|_| !self.options.skip_commit_rule_check);
        #[cfg(not(feature = "inject-bugs"))]
        let commit_check = out.commit_check.as_ref();
        if let Some(check) = commit_check {
            let disks: Vec<(NodeId, &MemStorage)> = self
                .nodes
                .iter()
                .map(|(id, slot)| match slot {
                    Slot::Running(node) => (*id, node.raw.storage()),
                    Slot::Crashed(disk) => (*id, &**disk),
                })
                .collect();
            let leader_log = disks
                .iter()
                .find(|(node, _)| *node == id)
                .map(|(_, disk)| *disk)
                .expect("the node that produced the Ready runs");
            if let Some(v) = self.commit_rule.on_commit(id, check, leader_log, &disks) {
                self.violation("commit rule durability", v);
            }
        }
        if !out.policies_adopted.is_empty() {
            for policy in &out.policies_adopted {
                self.note(|| format!("{id} adopts {policy}"));
            }
            self.policies_changed();
        }
        for error in out.conf_change_errors {
            self.violation(
                "membership",
                format!("node {id}: committed change refused {error}"),
            );
        }
        for message in out.messages {
            for delay in self.network.send(&message, &mut self.rng) {
                self.schedule(delay, Event::Deliver(message.clone()));
            }
        }
        for answer in out.answers {
            self.on_answer(answer);
        }
    }

    fn deliver(&mut self, message: Message) {
        let (from, to) = (message.from, message.to);
        if self.network.is_cut(from, to) || self.running_mut(to).is_none() {
            return;
        }
        self.last_heard.insert((to, from), self.now);
        let summary = format!("{message}");
        if self.options.trace {
            let line = format!("t={:>6} deliver {summary}", self.now);
            self.trace.push(line);
        }
        let Some(node) = self.running_mut(to) else {
            return;
        };
        match node.raw.step(message) {
            Ok(()) => {
                self.mark_dirty(to);
                self.watch_role(to, false);
            }
            Err(e) => {
                // The simulator only delivers well-formed messages: a refusal means the core
                // saw something that correct Raft never produces.
                self.violation("message handling", format!("{to} refused {summary}: {e}"));
            }
        }
    }

    // -------------------------------------------------------------------------------------
    // Clients.

    fn client_step(&mut self, client: usize) {
        if self.clients[client].current.is_none() {
            if self.now >= self.heal_at + CLIENT_PHASE_UNITS {
                self.clients[client].idle = true;
                return;
            }
            let op = self.new_op(client);
            self.clients[client].current = Some(op);
        }
        self.submit(client);
    }

    fn new_op(&mut self, client: usize) -> ClientOp {
        let op_id = self.next_op_id;
        self.next_op_id += 1;
        self.op_owner.insert(op_id, client);
        let key = format!("k{}", self.rng.range(0, self.scenario.keys));
        // Written values are unique, so a stale or invented read cannot hide.
        let value = op_id;
        let (op, write) = match self.rng.range(0, 20) {
            0..9 => (Op::Get { key }, None),
            9..16 => (
                Op::Put {
                    key: key.clone(),
                    value,
                },
                Some(Write::Put { key, value }),
            ),
            16..17 => (Op::Delete { key: key.clone() }, Some(Write::Delete { key })),
            _ => {
                let expected = if self.rng.chance(0.3) {
                    None
                } else {
                    Some(self.rng.range(1, op_id + 1))
                };
                (
                    Op::Cas {
                        key: key.clone(),
                        expected,
                        new: value,
                    },
                    Some(Write::Cas {
                        key,
                        expected,
                        new: value,
                    }),
                )
            }
        };
        // Now and then a client asks a random node, which tells it where the leader is.
        if self.rng.chance(0.2) {
            self.clients[client].leader_guess = None;
        }
        ClientOp {
            op_id,
            op,
            write,
            call: self.now,
            attempt: 0,
            submitted: false,
        }
    }

    fn submit(&mut self, client: usize) {
        let running = self.running_ids();
        let guess = self.clients[client]
            .leader_guess
            .filter(|id| running.contains(id));
        let Some(target) = guess.or_else(|| self.rng.pick(&running)) else {
            let retry = self.rng.range(TICK_UNITS / 2, 2 * TICK_UNITS);
            self.schedule(retry, Event::Client(client));
            return;
        };
        let Some(mut op) = self.clients[client].current.clone() else {
            return;
        };
        let Some(Slot::Running(node)) = self.nodes.get_mut(&target) else {
            unreachable!("target was picked among running nodes")
        };
        let result = match (&op.op, &op.write) {
            (Op::Get { key }, _) => node.read(op.op_id, op.op_id, key.clone()),
            (_, Some(write)) => node.propose(&Command {
                client: client as u64,
                op_id: op.op_id,
                write: write.clone(),
            }),
            _ => unreachable!("every non-read carries a write"),
        };
        match result {
            Ok(()) => {
                op.attempt += 1;
                op.submitted = true;
                let (op_id, attempt) = (op.op_id, op.attempt);
                self.clients[client].current = Some(op);
                self.clients[client].leader_guess = Some(target);
                self.mark_dirty(target);
                self.schedule(
                    CLIENT_TIMEOUT_UNITS,
                    Event::ClientTimeout {
                        client,
                        op_id,
                        attempt,
                    },
                );
            }
            Err(Error::NotLeader { leader }) => {
                self.clients[client].leader_guess = leader;
                let retry = self.rng.range(5, 30);
                self.schedule(retry, Event::Client(client));
            }
            Err(_) => {
                // Not ready, transfer in progress, backpressure: try again shortly.
                self.clients[client].leader_guess = None;
                let retry = self.rng.range(20, 100);
                self.schedule(retry, Event::Client(client));
            }
        }
    }

    fn on_answer(&mut self, answer: Answer) {
        let Some(&client) = self.op_owner.get(&answer.op_id()) else {
            self.on_scripted_answer(&answer);
            return;
        };
        let Some(op) = self.clients[client].current.clone() else {
            return; // Late answer to an operation the client gave up on.
        };
        if op.op_id != answer.op_id() || !op.submitted {
            return;
        }
        let outcome = match answer {
            Answer::WriteDone { result, .. } => match (&op.op, result) {
                (Op::Put { .. }, _) => Outcome::Put,
                (Op::Delete { .. }, _) => Outcome::Delete,
                (Op::Cas { .. }, WriteResult::Cas { swapped }) => Outcome::Cas { swapped },
                _ => unreachable!("answers match their operations"),
            },
            Answer::ReadDone { value, .. } => Outcome::Get(value),
            Answer::WriteFailed { .. } | Answer::ReadFailed { .. } => {
                // Definitely not done: retry elsewhere, keeping the original call time.
                let state = &mut self.clients[client];
                state.leader_guess = None;
                if let Some(current) = state.current.as_mut() {
                    current.submitted = false;
                }
                let retry = self.rng.range(5, 50);
                self.schedule(retry, Event::Client(client));
                return;
            }
        };
        self.history.push(LinEvent {
            client: client as u64,
            op: op.op.clone(),
            call: op.call,
            ret: Some(self.now),
            outcome,
        });
        self.ops_completed += 1;
        if let Some(recovery) = self.recovery.as_mut()
            && op.write.is_some()
            && op.call >= recovery.started_at
        {
            recovery.writes_committed += 1;
        }
        if op.call >= self.heal_at + SETTLE_UNITS {
            self.clients[client].succeeded_after_settle += 1;
        }
        self.clients[client].current = None;
        let think = self.rng.range(0, 2 * TICK_UNITS);
        self.schedule(think, Event::Client(client));
    }

    fn client_timeout(&mut self, client: usize, op_id: u64, attempt: u32) {
        let Some(op) = self.clients[client].current.clone() else {
            return;
        };
        if op.op_id != op_id || op.attempt != attempt || !op.submitted {
            return;
        }
        self.give_up(client, &op);
        if self.healed && op.call >= self.heal_at + SETTLE_UNITS && !self.stall_excused() {
            self.violation(
                "liveness",
                format!(
                    "client {client} operation {op_id} ({:?}) called at t={} after the heal did \
                     not complete within {CLIENT_TIMEOUT_UNITS} units",
                    op.op, op.call
                ),
            );
        }
        self.clients[client].current = None;
        self.clients[client].leader_guess = None;
        let think = self.rng.range(0, TICK_UNITS);
        self.schedule(think, Event::Client(client));
    }

    /// Records an operation whose outcome the client never learned.
    fn give_up(&mut self, client: usize, op: &ClientOp) {
        if op.write.is_some() && op.attempt > 0 {
            // It may or may not take effect, at any time after its call.
            self.history.push(LinEvent {
                client: client as u64,
                op: op.op.clone(),
                call: op.call,
                ret: None,
                outcome: Outcome::Unknown,
            });
            self.ops_unknown += 1;
        }
    }

    // -------------------------------------------------------------------------------------
    // Faults.

    fn inject_fault(&mut self) {
        let all: BTreeSet<NodeId> = self.nodes.keys().copied().collect();
        let kinds = if self.options.policy_changes {
            120
        } else {
            100
        };
        match self.rng.range(0, kinds) {
            0..12 => {
                // Symmetric partition into two random sides.
                let side: BTreeSet<NodeId> = all
                    .iter()
                    .copied()
                    .filter(|_| self.rng.chance(0.5))
                    .collect();
                if !side.is_empty() && side.len() < all.len() {
                    self.network.partition(&side, &all, false);
                    self.note(|| format!("partition {side:?} | rest"));
                }
            }
            12..20 => {
                // Isolate the leader (the classic stale-leader setup).
                if let Some(leader) = self.leader() {
                    let one_way = self.rng.chance(0.3);
                    self.network
                        .partition(&BTreeSet::from([leader]), &all, one_way);
                    self.note(|| format!("isolate leader {leader} one_way={one_way}"));
                }
            }
            20..26 => {
                // One-way partition of a random node.
                if let Some(node) = self.rng.pick(&all.iter().copied().collect::<Vec<_>>()) {
                    self.network.partition(&BTreeSet::from([node]), &all, true);
                    self.note(|| format!("cut outbound links of {node}"));
                }
            }
            26..40 => {
                self.network.heal();
                self.note(|| "heal network".to_owned());
            }
            40..50 => {
                let running = self.running_ids();
                if let Some(id) = self.rng.pick(&running) {
                    self.crash(id);
                }
            }
            50..55 => {
                if let Some(leader) = self.leader() {
                    self.crash(leader);
                }
            }
            55..68 => {
                let crashed = self.crashed_ids();
                if let Some(id) = self.rng.pick(&crashed) {
                    self.restart(id);
                }
            }
            68..76 => {
                self.network.options = if self.rng.chance(0.3) {
                    NetworkOptions::calm()
                } else {
                    NetworkOptions::random(&mut self.rng)
                };
                let options = self.network.options.clone();
                self.note(|| format!("network {options:?}"));
            }
            76..86 => self.change_membership(),
            86..90 => self.transfer_leadership(),
            90..94 => {
                // A disk that stalls: the node keeps ticking and receiving, but persists, sends
                // and applies late. Applying then lags committing by many entries.
                let running = self.running_ids();
                if let Some(id) = self.rng.pick(&running) {
                    if self.slow_disk_units.remove(&id).is_some() {
                        self.note(|| format!("disk of {id} back to normal"));
                    } else {
                        let units = self.rng.range(TICK_UNITS / 2, 3 * TICK_UNITS);
                        self.slow_disk_units.insert(id, units);
                        self.note(|| format!("slow disk on {id}: +{units} per Ready"));
                    }
                }
            }
            94..100 => {
                let running = self.running_ids();
                if let Some(id) = self.rng.pick(&running) {
                    if let Some(node) = self.running_mut(id) {
                        node.compact();
                    }
                    self.note(|| format!("compact {id}"));
                }
            }
            100..112 => self.random_policy_proposal(),
            112..116 => self.random_staggered_adoption(),
            _ => self.random_operator_override(),
        }
    }

    /// The leader proposes a random policy; most of the time it switches its rule at once.
    fn random_policy_proposal(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let voters: Vec<NodeId> = match self.nodes.get(&leader) {
            Some(Slot::Running(node)) => node.conf.voters.iter().copied().collect(),
            _ => return,
        };
        let policy = Policy::random(&mut self.rng, &voters, &self.scenario.all_nodes());
        let early_switch = self.rng.chance(0.75);
        let _ = self.propose_policy(&policy, early_switch);
    }

    /// Some running nodes adopt a rule and/or a policy directly, each at its own moment over the
    /// next few ticks: usually the one proposed last (as if they applied it early), else a random
    /// one. Dropped at the heal.
    fn random_staggered_adoption(&mut self) {
        let running = self.running_ids();
        let voters: Vec<NodeId> = self.scenario.voters.clone();
        let policy = match self.last_policy.clone() {
            Some(policy) if self.rng.chance(0.7) => policy,
            _ => Policy::random(&mut self.rng, &voters, &self.scenario.all_nodes()),
        };
        let (commit_rule, leader_policy) = match self.rng.range(0, 4) {
            0 => (Some(policy.commit_rule), None),
            1 => (None, Some(policy.leader_policy)),
            _ => (Some(policy.commit_rule), Some(policy.leader_policy)),
        };
        let nodes: Vec<NodeId> = running
            .into_iter()
            .filter(|_| self.rng.chance(0.5))
            .collect();
        let rule = commit_rule.as_ref().map(describe_commit_rule);
        let leader = leader_policy.as_ref().map(describe_leader_policy);
        self.note(|| format!("staggered set policy on {nodes:?}: rule={rule:?} leader={leader:?}"));
        for id in nodes {
            let delay = self.rng.range(0, 10 * TICK_UNITS);
            self.schedule(
                delay,
                Event::SetPolicy {
                    nodes: BTreeSet::from([id]),
                    commit_rule: commit_rule.clone(),
                    leader_policy: leader_policy.clone(),
                    transient: true,
                },
            );
        }
    }

    /// The manager's push of a new policy reached a replica that answers `ForcedLeaderDown`
    /// (when one does): it sends the override to every replica (a few requests are lost, and
    /// each arrives at its own moment), and pushes the policy again a few election timeouts
    /// later, through whoever leads then. Overrides still in flight at the heal are dropped.
    fn random_operator_override(&mut self) {
        let running = self.running_ids();
        let Some(reached) = self.rng.pick(&running) else {
            return;
        };
        let Some(forced) = self.forced_leader_down(reached) else {
            return;
        };
        let voters: Vec<NodeId> = self.scenario.voters.clone();
        let wanted = Policy::random(&mut self.rng, &voters, &self.scenario.all_nodes());
        if wanted.leader_policy == LeaderPolicy::Forced(forced) {
            return;
        }
        self.note(|| {
            format!(
                "operator: {reached} answers forced leader {forced} down; lifting it for {wanted}"
            )
        });
        for id in running {
            if self.rng.chance(0.8) {
                let delay = self.rng.range(0, 2 * TICK_UNITS);
                self.schedule(
                    delay,
                    Event::OverrideLeaderPolicy {
                        node: id,
                        leader: wanted.leader_policy.clone(),
                        transient: true,
                    },
                );
            }
        }
        let election = u64::from(self.scenario.election_timeout_ticks) * TICK_UNITS;
        let push = self.rng.range(2 * election, 5 * election);
        if self.now + push < self.heal_at {
            self.schedule(
                push,
                Event::ProposePolicy {
                    policy: wanted,
                    early_switch: true,
                },
            );
        }
    }

    fn change_membership(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let Some(Slot::Running(node)) = self.nodes.get(&leader) else {
            return;
        };
        let conf = node.conf.clone();
        let members = conf.all_nodes();
        let spare = self
            .scenario
            .spares
            .iter()
            .copied()
            .find(|id| !members.contains(id));
        let learners: Vec<NodeId> = conf.learners.iter().copied().collect();
        let removable: Vec<NodeId> = if conf.voters.len() > 3 {
            conf.voters
                .iter()
                .copied()
                .filter(|id| !self.forced_ever.contains(id))
                .collect()
        } else {
            Vec::new()
        };
        let steps = match self.rng.range(0, 6) {
            // Several steps in one joint change: the voter sets before and after may then share
            // few nodes, which is where configuration bugs hide.
            4 if spare.is_some() => {
                let spare = spare.expect("checked");
                let voters: Vec<NodeId> = conf
                    .voters
                    .iter()
                    .copied()
                    .filter(|id| !self.forced_ever.contains(id))
                    .collect();
                let Some(replaced) = self.rng.pick(&voters) else {
                    return;
                };
                if !self.nodes.contains_key(&spare) {
                    self.start_node(spare, MemStorage::new_with_conf_state(ConfState::default()));
                }
                vec![
                    ConfChangeStep::AddVoter(spare),
                    ConfChangeStep::RemoveNode(replaced),
                ]
            }
            5 if removable.len() >= 2 && conf.voters.len() >= 5 => {
                let first = self.rng.pick(&removable).expect("not empty");
                let rest: Vec<NodeId> = removable
                    .iter()
                    .copied()
                    .filter(|id| *id != first)
                    .collect();
                let second = self.rng.pick(&rest).expect("at least two removable");
                vec![
                    ConfChangeStep::RemoveNode(first),
                    ConfChangeStep::RemoveNode(second),
                ]
            }
            _ => match self.single_step(spare, &learners, &removable) {
                Some(step) => vec![step],
                None => return,
            },
        };
        let Some(node) = self.running_mut(leader) else {
            return;
        };
        let result = node.raw.propose_conf_change(ConfChange {
            changes: steps.clone(),
        });
        self.note(|| format!("propose {steps:?} on {leader}: {result:?}"));
        self.mark_dirty(leader);
    }

    fn single_step(
        &mut self,
        spare: Option<NodeId>,
        learners: &[NodeId],
        removable: &[NodeId],
    ) -> Option<ConfChangeStep> {
        let step = match self.rng.range(0, 4) {
            0 | 1 if spare.is_some() => {
                let spare = spare.expect("checked");
                if !self.nodes.contains_key(&spare) {
                    // A joining node starts with no configuration and learns it by snapshot.
                    self.start_node(spare, MemStorage::new_with_conf_state(ConfState::default()));
                }
                if self.rng.chance(0.7) {
                    ConfChangeStep::AddLearner(spare)
                } else {
                    ConfChangeStep::AddVoter(spare)
                }
            }
            2 if !learners.is_empty() => {
                ConfChangeStep::AddVoter(self.rng.pick(learners).expect("not empty"))
            }
            _ if !removable.is_empty() => {
                ConfChangeStep::RemoveNode(self.rng.pick(removable).expect("not empty"))
            }
            _ => return None,
        };
        Some(step)
    }

    fn transfer_leadership(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let voters: Vec<NodeId> = match self.nodes.get(&leader) {
            Some(Slot::Running(node)) => node.conf.voters.iter().copied().collect(),
            _ => return,
        };
        let Some(target) = self.rng.pick(&voters) else {
            return;
        };
        if let Some(node) = self.running_mut(leader) {
            let result = node.raw.transfer_leader(target);
            self.note(|| format!("transfer {leader} -> {target}: {result:?}"));
            self.mark_dirty(leader);
        }
    }

    fn heal(&mut self) {
        self.healed = true;
        self.slow_disk_units.clear();
        self.network.heal();
        self.network.options = NetworkOptions::calm();
        let crashed = self.crashed_ids();
        for id in crashed {
            self.restart(id);
        }
        // Direct policy changes were faults: every node goes back to what its log says.
        for id in self.running_ids() {
            if let Some(node) = self.running_mut(id)
                && node.resync_policy()
            {
                let policy = node.policy().clone();
                self.note(|| format!("{id} back to its applied policy {policy}"));
                self.mark_dirty(id);
                self.watch_role(id, false);
            }
        }
        self.policies_changed();
        self.note(|| "HEAL: all nodes up, network calm, policies as applied".to_owned());
    }

    // -------------------------------------------------------------------------------------
    // The end.

    fn final_check(&mut self) {
        // Operations still pending never completed.
        for client in 0..self.clients.len() {
            if let Some(op) = self.clients[client].current.take() {
                self.give_up(client, &op);
            }
        }
        if self.options.operator && self.recovery.is_none() && self.stalled() {
            self.begin_recovery();
            return;
        }
        self.finished = true;
        if self.recovery.is_some() {
            self.check_recovery();
        }
        self.final_checks();
        let clean = self.violations.is_empty();
        if let Some(recovery) = self.recovery.as_mut() {
            recovery.recovered = clean;
        }
    }

    /// The convergence checks at the end of the run.
    fn final_checks(&mut self) {
        let stalled = self.stall_excused();
        for (client, state) in self.clients.iter().enumerate() {
            if state.succeeded_after_settle == 0 && !stalled {
                self.violations.push(Violation {
                    property: "liveness",
                    detail: format!("client {client} completed no operation after the heal"),
                    at: self.now,
                });
            }
        }
        let Some(leader) = self.leader() else {
            if stalled {
                self.check_logs_and_history();
                return;
            }
            let nodes: Vec<String> = self
                .nodes
                .iter()
                .filter_map(|(id, slot)| match slot {
                    Slot::Running(node) => {
                        let status = node.raw.status();
                        let last_term = node.raw.storage().last_index().ok().and_then(|last| {
                            node.raw.storage().term(last).ok().map(|term| (term, last))
                        });
                        Some(format!(
                            "{id}: {} term {} last {:?} commit {} voters {:?} policy {}",
                            status.soft_state.role,
                            status.hard_state.term,
                            last_term,
                            status.hard_state.commit,
                            status.conf_state.voters,
                            describe_leader_policy(&node.policy().leader_policy)
                        ))
                    }
                    Slot::Crashed(_) => None,
                })
                .collect();
            self.violation(
                "liveness",
                format!(
                    "no leader at the end of the run; nodes: {}",
                    nodes.join("; ")
                ),
            );
            return;
        };
        let (members, voters, policy) = match self.nodes.get(&leader) {
            Some(Slot::Running(node)) => (
                node.conf.all_nodes(),
                node.conf.voters.clone(),
                node.policy().leader_policy.clone(),
            ),
            _ => unreachable!("the leader is running"),
        };
        if let LeaderPolicy::Preferred(preferred) = &policy
            && !preferred.contains(&leader)
            && preferred.iter().any(|id| voters.contains(id))
        {
            self.violation(
                "liveness",
                format!(
                    "leader {leader} at the end is not among the preferred {preferred:?}, with \
                     every node up for {} ticks",
                    FINAL_CHECK_UNITS / TICK_UNITS
                ),
            );
        }
        let late: Vec<LeaderChange> = self
            .leader_changes
            .iter()
            .filter(|change| change.at + STABLE_UNITS > self.now)
            .copied()
            .collect();
        let flapping = late.windows(2).any(|pair| {
            let (from, to) = (pair[0].node, pair[1].node);
            let moved_to_preferred = match self.nodes.get(&from) {
                Some(Slot::Running(node)) => match &node.policy().leader_policy {
                    LeaderPolicy::Preferred(set) => set.contains(&to) && !set.contains(&from),
                    _ => false,
                },
                _ => false,
            };
            !moved_to_preferred
        });
        if flapping {
            self.violation(
                "liveness",
                format!(
                    "leadership flapping in the last {} ticks of a calm run: {late:?}",
                    STABLE_UNITS / TICK_UNITS
                ),
            );
        }
        let mut states = Vec::new();
        for id in &members {
            let applied = match self.nodes.get(id) {
                Some(Slot::Running(node)) => {
                    states.push((*id, node.applied, node.kv.clone()));
                    node.applied
                }
                _ => {
                    self.violation("liveness", format!("member {id} is not running"));
                    continue;
                }
            };
            if let Some(v) = self.durability.on_final(*id, applied, &self.state_machine) {
                self.violation("no lost committed entry", v);
            }
        }
        if let Some((first_id, first_applied, first)) = states.first() {
            for (id, applied, kv) in &states[1..] {
                if applied == first_applied && kv != first {
                    let detail = format!(
                        "members {first_id} and {id} applied the same log into different states"
                    );
                    self.violation("state machine safety", detail);
                }
            }
        }
        self.check_logs_and_history();
        let role = match self.nodes.get(&leader) {
            Some(Slot::Running(node)) => node.raw.role(),
            _ => Role::Follower,
        };
        self.note(|| format!("final: leader {leader} ({role}), members {members:?}"));
    }

    /// Whether a leaderless group is excused from liveness: it is stalled by its forced
    /// policies, and no operator path ran yet (a group still stuck after it is a failure).
    fn stall_excused(&mut self) -> bool {
        self.recovery.is_none() && self.stalled()
    }

    /// Hands the stalled run to the operator: it wants a new leader policy (any, or a preferred
    /// voter) and maybe commit rule; the manager's passes start now, and so do the liveness
    /// window, the clients and a new final check. Half the time a node crashes and restarts
    /// early on, forgetting its override.
    fn begin_recovery(&mut self) {
        let voters: Vec<NodeId> = self
            .nodes
            .values()
            .filter_map(|slot| match slot {
                Slot::Running(node) => Some((node.applied, &node.conf)),
                Slot::Crashed(_) => None,
            })
            .max_by_key(|(applied, _)| *applied)
            .map(|(_, conf)| conf.voters.iter().copied().collect())
            .unwrap_or_default();
        let leader_policy = match self.rng.pick(&voters) {
            Some(voter) if self.rng.chance(0.4) => LeaderPolicy::Preferred(BTreeSet::from([voter])),
            _ => LeaderPolicy::Any,
        };
        let commit_rule = if self.rng.chance(0.5) {
            crate::policy::site_groups(&self.scenario.all_nodes())
        } else {
            CommitRule::Majority
        };
        let wanted = Policy {
            commit_rule,
            leader_policy,
        };
        self.note(|| format!("OPERATOR: the group is stalled; the operator sets {wanted}"));
        self.recovery = Some(Recovery {
            wanted,
            started_at: self.now,
            applied_at: None,
            override_passes: 0,
            overrides_accepted: 0,
            writes_committed: 0,
            recovered: false,
        });
        self.heal_at = self.now;
        for client in 0..self.clients.len() {
            let state = &mut self.clients[client];
            state.succeeded_after_settle = 0;
            if std::mem::take(&mut state.idle) {
                let at = self.rng.range(0, 10 * TICK_UNITS);
                self.schedule(at, Event::Client(client));
            }
        }
        self.schedule(0, Event::OperatorPass);
        if self.rng.chance(0.5) {
            let running = self.running_ids();
            if let Some(node) = self.rng.pick(&running) {
                let at = self.rng.range(0, 10 * TICK_UNITS);
                let down_units = self.rng.range(TICK_UNITS, 5 * TICK_UNITS);
                self.schedule(at, Event::Bounce { node, down_units });
            }
        }
        self.schedule(FINAL_CHECK_UNITS, Event::FinalCheck);
    }

    /// One pass of the manager on a run handed to the operator; the next one is scheduled until
    /// every member has applied the wanted policy.
    fn recovery_pass(&mut self) {
        let Some(wanted) = self.recovery.as_ref().map(|r| r.wanted.clone()) else {
            return;
        };
        let outcome = self.operator_pass(&wanted);
        let applied = self.wanted_applied_everywhere(&wanted).is_ok();
        let now = self.now;
        let recovery = self.recovery.as_mut().expect("checked above");
        if let OperatorPass::Overridden { accepted, .. } = &outcome {
            recovery.override_passes += 1;
            recovery.overrides_accepted += accepted.len() as u64;
        }
        if applied {
            // Done: the manager's passes have nothing left to push.
            recovery.applied_at = Some(now);
        } else {
            self.schedule(OPERATOR_PASS_UNITS, Event::OperatorPass);
        }
    }

    /// Whether every member (of the leader's configuration; of every running node's without
    /// one) has applied `wanted`, and runs by it; else who has not.
    fn wanted_applied_everywhere(&self, wanted: &Policy) -> Result<(), String> {
        let members: BTreeSet<NodeId> = match self.leader().and_then(|id| self.node(id)) {
            Some(leader) => leader.conf.all_nodes(),
            None => self.running_ids().into_iter().collect(),
        };
        let behind: Vec<String> = members
            .iter()
            .filter_map(|id| match self.node(*id) {
                Some(node) if node.applied_policy() == *wanted && node.policy() == wanted => None,
                Some(node) => Some(format!(
                    "{id} applied {} runs {}",
                    node.applied_policy(),
                    node.policy()
                )),
                None => Some(format!("{id} down")),
            })
            .collect();
        if behind.is_empty() {
            Ok(())
        } else {
            Err(behind.join("; "))
        }
    }

    /// The operator path's own liveness checks: a leader soon after the first pass, the wanted
    /// policy applied by every member, and client writes committed.
    fn check_recovery(&mut self) {
        let recovery = self
            .recovery
            .as_ref()
            .expect("a run handed to the operator");
        let (started, wanted, writes) = (
            recovery.started_at,
            recovery.wanted.clone(),
            recovery.writes_committed,
        );
        let first = self
            .leader_changes
            .iter()
            .find(|change| change.at >= started)
            .copied();
        match first {
            Some(change) if change.at - started <= RECOVERY_LEADER_UNITS_MAX => {}
            _ => self.violation(
                "liveness",
                format!(
                    "still stuck after the operator path: no leader within {} ticks of the \
                     first pass (first leader after it: {first:?})",
                    RECOVERY_LEADER_UNITS_MAX / TICK_UNITS
                ),
            ),
        }
        if let Err(behind) = self.wanted_applied_everywhere(&wanted) {
            self.violation(
                "liveness",
                format!("the operator's policy {wanted} is not applied everywhere: {behind}"),
            );
        }
        if writes == 0 {
            self.violation(
                "liveness",
                "no client write committed after the operator path".to_owned(),
            );
        }
    }

    /// Whether the group has no leader and its policies leave no voter that can be elected (see
    /// [`crate::stall`]); the first time, records why.
    fn stalled(&mut self) -> bool {
        let Some(stall) = self.policy_stall_now() else {
            return false;
        };
        if self.policy_stall.is_none() {
            self.note(|| format!("POLICY STALL: {stall}"));
            self.policy_stall = Some(stall);
        }
        true
    }

    /// Whether, right now, the group has no leader and its policies leave no voter that can be
    /// elected (see [`crate::stall`]): a description of the stall.
    pub(crate) fn policy_stall_now(&self) -> Option<String> {
        if self.leader().is_some() {
            return None;
        }
        let views: BTreeMap<NodeId, ElectionView> = self
            .nodes
            .iter()
            .filter_map(|(id, slot)| match slot {
                Slot::Running(node) => {
                    let storage = node.raw.storage();
                    let last = storage.last_index().ok()?;
                    let view = ElectionView {
                        conf: node.conf.clone(),
                        policy: node.policy().leader_policy.clone(),
                        last: (storage.term(last).ok()?, last),
                    };
                    Some((*id, view))
                }
                Slot::Crashed(_) => None,
            })
            .collect();
        policy_stall(&views)
    }

    /// The checks over whole logs and the whole client history: log matching, linearizability.
    fn check_logs_and_history(&mut self) {
        let logs: Vec<(NodeId, MemStorage)> = self
            .nodes
            .iter()
            .map(|(id, slot)| match slot {
                Slot::Running(node) => (*id, node.raw.storage().clone()),
                Slot::Crashed(disk) => (*id, (**disk).clone()),
            })
            .collect();
        let refs: Vec<(NodeId, &MemStorage)> = logs.iter().map(|(id, disk)| (*id, disk)).collect();
        if let Some(v) = check_log_matching(&refs) {
            self.violation("log matching", v);
        }
        match linearizability::check(&self.history, LINEARIZABILITY_STEPS_MAX) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable { key, explanation } => {
                self.violation("linearizability", format!("key {key}: {explanation}"));
            }
            Verdict::Timeout { key } => {
                // Too many concurrent unknown operations to decide: not evidence of a bug, but
                // reported so it is not silently skipped.
                self.linearizability_undecided = true;
                self.note(|| format!("linearizability check gave up on key {key}"));
            }
        }
    }

    // -------------------------------------------------------------------------------------
    // Scripted runs.

    /// Handles every event due by `deadline` (simulated time), then sets the clock to it.
    pub(crate) fn run_until(&mut self, deadline: u64) {
        while self.run_one_event(deadline) {}
        self.now = self.now.max(deadline);
    }

    /// Handles the next event if it is due by `deadline`; returns whether there was one.
    pub(crate) fn run_one_event(&mut self, deadline: u64) -> bool {
        let Some(entry) = self.queue.first_entry() else {
            return false;
        };
        if entry.key().0 > deadline {
            return false;
        }
        let ((at, _), event) = entry.remove_entry();
        self.now = at;
        self.events += 1;
        if self.events > EVENTS_MAX {
            self.violation("liveness", format!("more than {EVENTS_MAX} events: stuck"));
            return false;
        }
        self.handle(event);
        true
    }

    pub(crate) fn now(&self) -> u64 {
        self.now
    }

    pub(crate) fn node(&self, id: NodeId) -> Option<&SimNode> {
        match self.nodes.get(&id) {
            Some(Slot::Running(node)) => Some(node),
            _ => None,
        }
    }

    /// The durable log of a node, running or crashed.
    pub(crate) fn disk(&self, id: NodeId) -> Option<&MemStorage> {
        match self.nodes.get(&id)? {
            Slot::Running(node) => Some(node.raw.storage()),
            Slot::Crashed(disk) => Some(disk),
        }
    }

    /// Proposes a write of `key` at node `at`, outside the clients (which never use such keys).
    pub(crate) fn propose_write(
        &mut self,
        at: NodeId,
        key: String,
        value: u64,
    ) -> Result<(), Error> {
        let op_id = self.next_op_id;
        let Some(node) = self.running_mut(at) else {
            return Err(Error::NotLeader { leader: None });
        };
        let result = node.propose(&Command {
            client: u64::MAX,
            op_id,
            write: Write::Put {
                key: key.clone(),
                value,
            },
        });
        self.next_op_id += 1;
        self.note(|| format!("propose {key}={value} at {at}: {result:?}"));
        if result.is_ok() {
            self.scripted_writes.insert(op_id, (key, value));
        }
        self.mark_dirty(at);
        result
    }

    /// A scripted write was answered: acknowledged if it took effect, forgotten if it did not.
    fn on_scripted_answer(&mut self, answer: &Answer) {
        let Some(write) = self.scripted_writes.remove(&answer.op_id()) else {
            return;
        };
        if let Answer::WriteDone { .. } = answer {
            self.note(|| format!("acknowledged {}={}", write.0, write.1));
            self.acknowledged_writes.push(write);
        }
    }

    /// Scripted writes acknowledged so far, in order: `(key, value)`.
    pub(crate) fn acknowledged_writes(&self) -> &[(String, u64)] {
        &self.acknowledged_writes
    }

    /// Starts `id`, a node that is not part of the group yet, the way a joining replica starts:
    /// with no configuration at all, to learn everything from the leader (a snapshot first).
    pub(crate) fn start_joining(&mut self, id: NodeId) {
        assert!(
            !self.nodes.contains_key(&id),
            "node {id} already exists: a joining node starts from nothing"
        );
        self.start_node(id, MemStorage::new_with_conf_state(ConfState::default()));
    }

    /// Proposes a membership change at node `at`.
    pub(crate) fn propose_conf_change(
        &mut self,
        at: NodeId,
        steps: Vec<ConfChangeStep>,
    ) -> Result<ProposalPosition, Error> {
        let Some(node) = self.running_mut(at) else {
            return Err(Error::NotLeader { leader: None });
        };
        let result = node.raw.propose_conf_change(ConfChange {
            changes: steps.clone(),
        });
        self.note(|| format!("propose {steps:?} on {at}: {result:?}"));
        self.mark_dirty(at);
        result
    }

    /// Node `id` snapshots its applied state and compacts its log up to it.
    pub(crate) fn compact(&mut self, id: NodeId) {
        if let Some(node) = self.running_mut(id) {
            node.compact();
            self.note(|| format!("compact {id}"));
        }
    }

    /// Changes how the network behaves from now on (partitions stay as they are).
    pub(crate) fn set_network(&mut self, options: NetworkOptions) {
        self.note(|| format!("network {options:?}"));
        self.network.options = options;
    }

    /// Cuts `side` off from the other nodes, both ways.
    pub(crate) fn partition(&mut self, side: &BTreeSet<NodeId>) {
        let all: BTreeSet<NodeId> = self.nodes.keys().copied().collect();
        self.network.partition(side, &all, false);
        self.note(|| format!("partition {side:?} | rest"));
    }

    /// Drops every message from `side` to the other nodes; the other direction still works.
    pub(crate) fn cut_outbound(&mut self, side: &BTreeSet<NodeId>) {
        let all: BTreeSet<NodeId> = self.nodes.keys().copied().collect();
        self.network.partition(side, &all, true);
        self.note(|| format!("cut outbound links of {side:?}"));
    }

    /// Restores every link.
    pub(crate) fn heal_network(&mut self) {
        self.network.heal();
        self.note(|| "heal network".to_owned());
    }

    pub(crate) fn leader_changes(&self) -> &[LeaderChange] {
        &self.leader_changes
    }

    pub(crate) fn violations(&self) -> &[Violation] {
        &self.violations
    }

    pub(crate) fn trace(&self) -> &[String] {
        &self.trace
    }

    /// Runs the checks over whole logs and history; returns every violation of the run.
    pub(crate) fn finish(mut self) -> Vec<Violation> {
        // Operations still pending never completed, as at the end of a random run: a write's
        // outcome is unknown (it may have taken effect, and reads may have seen it).
        for client in 0..self.clients.len() {
            if let Some(op) = self.clients[client].current.take() {
                self.give_up(client, &op);
            }
        }
        self.check_logs_and_history();
        self.violations
    }
}
