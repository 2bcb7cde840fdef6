//! The interaction environment: a cluster of replicas, each a [`RawNode`] over [`MemStorage`]
//! plus the state machine it applies to, connected by a network of per-node outboxes that the
//! script delivers from explicitly.
//!
//! # Commands
//!
//! Lists of node ids are written `"(1,2,3)"` (quoted, because goldenscript does not allow
//! parentheses in bare words); a single id may be written bare: `learners=4`.
//!
//! Cluster setup:
//! - `add-nodes N [voters=LIST] [learners=LIST] [pre_vote=BOOL] [check_quorum=BOOL] [lease=T]
//!   [election=T] [heartbeat=T] [inflight=N] [max_append_bytes=N] [max_uncommitted_bytes=N]
//!   [max_committed_bytes=N] [policy=POLICY] [commit=RULE]`: adds N nodes with the next free
//!   ids. With `voters`/`learners` they start from that configuration; without, they start
//!   empty and join through a snapshot. Defaults: no pre-vote, no check-quorum, no lease reads,
//!   election timeout 10, heartbeat 1, the core's limits (`max_committed_bytes` is per Ready).
//!   POLICY is `any`, `"forced(1)"` or `"preferred(2,3)"`; RULE is `majority` or
//!   `"groups((1,2),(3))"`.
//! - `set-policy [ID...] POLICY`, `set-commit-rule [ID...] RULE`: change them at runtime (on
//!   every node when no id is given).
//!
//! Inputs (errors are returned, so scripts expect them with `!`):
//! - `campaign ID`, `propose ID DATA`, `propose-batch ID DATA...`,
//!   `propose-conf-change ID [vN|lN|rN...]` (add voter, add learner, remove; none: leave
//!   joint), `read-index ID CTX`, `transfer-leader FROM TO`.
//! - `tick ID [N]`, `tick-heartbeat ID`, `tick-election ID` (a leader: one election timeout;
//!   anyone else: until it campaigns or three election timeouts pass).
//!
//! The Ready loop and the network:
//! - `process-ready ID...`: persist, send (into the node's outbox), apply, advance; prints the
//!   Ready.
//! - `deliver-msgs [ID...] [drop=LIST] [type=KIND]`: steps the queued messages addressed to
//!   the given nodes (all when none is given), printing each; messages to `drop` nodes, across
//!   a partition or to a crashed node are discarded instead.
//! - `drop-msgs [ID...]`: discards queued messages addressed to the given nodes (or all).
//! - `stabilize [ID...]`: process-ready and deliver-msgs among the given nodes (or all) until
//!   nothing is left to do.
//! - `partition LIST...`: cuts the network into the listed groups plus one group of everybody
//!   unlisted; `heal` joins it again.
//!
//! Durability:
//! - `compact ID INDEX`: snapshots the state machine at INDEX into storage and drops the log up
//!   to it.
//! - `crash ID`: the node stops; whatever it had not persisted is lost (the transcript shows the
//!   Ready it never got to handle). `restart ID`: it starts again from its storage.
//!
//! Queries: `status ID...`, `raft-log ID...`.
//!
//! After every command the environment checks two safety properties: at most one leader per
//! term, and the applied state machines agree wherever they overlap.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::error::Error;

use goldenscript::{Command, Context};
use raft_core::{
    ConfState, Config, LogIndex, MemStorage, Message, NodeId, RawNode, Role, Storage as _,
};

use super::state_machine::StateMachine;

/// What a command handler returns: its transcript, or why it failed.
pub(crate) type Outcome = Result<String, Box<dyn Error>>;

/// A replica, up or crashed.
pub(crate) enum Replica {
    /// Running.
    Up(Box<RawNode<MemStorage>>),
    /// Crashed: only what it persisted survives.
    Down(Box<MemStorage>),
}

/// One member of the cluster.
pub(crate) struct Node {
    /// The configuration it was started with (`applied` is filled in on restart).
    pub(crate) config: Config,
    pub(crate) replica: Replica,
    /// The applied state; durable together with its applied index (see `crash`).
    pub(crate) state: StateMachine,
}

/// The cluster under test.
#[derive(Default)]
pub(crate) struct InteractionEnv {
    pub(crate) nodes: BTreeMap<NodeId, Node>,
    /// Messages each node sent that have not been delivered yet, oldest first.
    pub(crate) outboxes: BTreeMap<NodeId, VecDeque<Message>>,
    /// The network partition in force: nodes talk only within their group. Nodes not listed
    /// form one more group together. Empty: no partition.
    pub(crate) partition: Vec<BTreeSet<NodeId>>,
}

impl goldenscript::Runner for InteractionEnv {
    type Command = Command;

    fn run(&mut self, command: &Command, _context: &Context) -> Outcome {
        match command.name.as_str() {
            "add-nodes" => self.add_nodes(command),
            "campaign" => self.campaign(command),
            "propose" => self.propose(command),
            "propose-batch" => self.propose_batch(command),
            "propose-conf-change" => self.propose_conf_change(command),
            "read-index" => self.read_index(command),
            "transfer-leader" => self.transfer_leader(command),
            "tick" => self.tick(command),
            "advance-clock" => self.advance_clock(command),
            "tick-heartbeat" => self.tick_heartbeat(command),
            "tick-election" => self.tick_election(command),
            "process-ready" => self.process_ready_command(command),
            "deliver-msgs" => self.deliver_msgs_command(command),
            "drop-msgs" => self.drop_msgs(command),
            "stabilize" => self.stabilize(command),
            "partition" => self.partition(command),
            "heal" => self.heal(command),
            "compact" => self.compact(command),
            "crash" => self.crash(command),
            "restart" => self.restart(command),
            "status" => self.status(command),
            "raft-log" => self.raft_log(command),
            "set-policy" => self.set_policy(command),
            "set-commit-rule" => self.set_commit_rule(command),
            name => Err(format!("unknown command {name}").into()),
        }
    }

    fn end_command(&mut self, _command: &Command, _context: &Context) -> Outcome {
        self.check_safety()?;
        Ok(String::new())
    }
}

impl InteractionEnv {
    /// The node `id`, which must exist.
    pub(crate) fn node(&mut self, id: NodeId) -> Result<&mut Node, Box<dyn Error>> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| format!("no node {id}").into())
    }

    /// The running replica `id`.
    pub(crate) fn raw(&mut self, id: NodeId) -> Result<&mut RawNode<MemStorage>, Box<dyn Error>> {
        match &mut self.node(id)?.replica {
            Replica::Up(raw) => Ok(raw),
            Replica::Down(_) => Err(format!("node {id} is down").into()),
        }
    }

    /// The given ids, or every node when none is given.
    pub(crate) fn ids_or_all(&self, ids: Vec<NodeId>) -> Vec<NodeId> {
        if ids.is_empty() {
            self.nodes.keys().copied().collect()
        } else {
            ids
        }
    }

    /// Whether the network lets `from` reach `to`.
    pub(crate) fn connected(&self, from: NodeId, to: NodeId) -> bool {
        let group = |id: NodeId| self.partition.iter().position(|g| g.contains(&id));
        group(from) == group(to)
    }

    pub(crate) fn is_up(&self, id: NodeId) -> bool {
        self.nodes
            .get(&id)
            .is_some_and(|node| matches!(node.replica, Replica::Up(_)))
    }

    /// Election safety (§5.2) and state machine safety (§5.4.3), checked after every command.
    fn check_safety(&self) -> Result<(), Box<dyn Error>> {
        let mut leaders: BTreeMap<u64, NodeId> = BTreeMap::new();
        for (id, node) in &self.nodes {
            let Replica::Up(raw) = &node.replica else {
                continue;
            };
            if raw.role() == Role::Leader {
                let term = raw.status().hard_state.term.get();
                if let Some(other) = leaders.insert(term, *id) {
                    return Err(format!("safety: {other} and {id} both lead term {term}").into());
                }
            }
        }
        let mut applied: BTreeMap<LogIndex, (NodeId, &str)> = BTreeMap::new();
        for (id, node) in &self.nodes {
            for (index, data) in node.state.items() {
                match applied.get(index) {
                    Some((other, theirs)) if theirs != data => {
                        return Err(format!(
                            "safety: at {index} {other} applied {theirs:?}, {id} applied {data:?}"
                        )
                        .into());
                    }
                    Some(_) => {}
                    None => {
                        applied.insert(*index, (*id, data));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Node {
    /// A new node: running, from `storage`, with nothing applied beyond what it holds.
    pub(crate) fn start(config: Config, storage: MemStorage) -> Result<Self, Box<dyn Error>> {
        let snapshot = storage.snapshot()?;
        let state = StateMachine::from_snapshot(&snapshot)?;
        let raw = RawNode::new(config.clone(), storage).map_err(super::parse::core_error)?;
        Ok(Self {
            config,
            replica: Replica::Up(Box::new(raw)),
            state,
        })
    }
}

/// `(1,2,3)`.
pub(crate) fn fmt_ids<'a>(ids: impl IntoIterator<Item = &'a NodeId>) -> String {
    let ids: Vec<String> = ids.into_iter().map(ToString::to_string).collect();
    format!("({})", ids.join(","))
}

/// `voters=(1,2,3) outgoing=(1,2) learners=(4)`, leaving out empty halves.
pub(crate) fn fmt_conf(conf: &ConfState) -> String {
    let mut out = format!("voters={}", fmt_ids(&conf.voters));
    if conf.is_joint() {
        out += &format!(" outgoing={}", fmt_ids(&conf.voters_outgoing));
    }
    if !conf.learners.is_empty() {
        out += &format!(" learners={}", fmt_ids(&conf.learners));
    }
    out
}

/// Indents every line of `text` by two spaces.
pub(crate) fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}
