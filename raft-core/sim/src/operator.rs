//! The operator's way out of a forced leader that is gone: cairn's manager and shard-node lifting
//! `forced(n)` on the replicas, modelled for the simulator.
//!
//! A policy change goes through the log, so it needs a leader; under `forced(n)` with n down, or
//! too far behind to be elected (a [`crate::stall`]), there is none. When the operator sets
//! another leader policy, the manager pushes it to the shard; the push fails with
//! `ForcedLeaderDown { n }`, and the manager then sends `OverrideLeaderPolicy { leader }` to every
//! replica (it repeats that on each pass for as long as the push fails). Each replica
//! ([`crate::node::SimNode::override_leader_policy`]):
//! - refuses if its policy forces no leader, or if the forced node leads in its view and was
//!   heard from within an election timeout;
//! - otherwise hands `leader` to its core at once, **in memory only**: the next policy it applies
//!   (an entry, or one a snapshot carries) replaces it, and a restart forgets it.
//!
//! Some node is elected, and the manager's next push goes through the log as usual; everyone
//! adopts the new policy when they apply it. Raft's safety does not depend on who may campaign;
//! the forced-leader guarantee ends because the operator ended it (the forced-leader checker sees
//! the override as the replica's change of policy it is).
//!
//! The simulator uses it three ways: scripted tests call it
//! ([`crate::ScriptedRun::override_leader_policy`], [`crate::ScriptedRun::operator_pass`]); the
//! fault schedule sends overrides when a replica answers `ForcedLeaderDown`; and a random run that
//! ends in a policy stall is handed to the operator, which must get it out
//! ([`OperatorRecovery`]).

use raft_core::{Error, LogIndex, NodeId};

use crate::node::OverrideRefused;
use crate::policy::Policy;

/// What one pass of the manager's policy push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperatorPass {
    /// The leader has applied the wanted policy: the push succeeded, nothing to do.
    Applied {
        /// The leader.
        leader: NodeId,
    },
    /// The leader proposed the wanted policy (with the early switch of its commit rule).
    Proposed {
        /// The leader.
        leader: NodeId,
        /// Where the entry went.
        index: LogIndex,
    },
    /// A push proposed by this leader on an earlier pass has not been applied yet: waiting.
    Pending {
        /// The leader.
        leader: NodeId,
        /// Where the entry went.
        index: LogIndex,
    },
    /// The leader refused the proposal (e.g. it is handing over to a forced node).
    Refused {
        /// The leader.
        leader: NodeId,
        /// Why.
        error: Error,
    },
    /// No leader, and a replica answered `ForcedLeaderDown { forced }`: the override was sent to
    /// every running replica.
    Overridden {
        /// The forced node that does not lead.
        forced: NodeId,
        /// The replicas whose policy the override changed.
        accepted: Vec<NodeId>,
        /// The replicas that refused it, and why (a replica already on the wanted leader policy
        /// accepts without a change and is in neither list).
        refused: Vec<(NodeId, OverrideRefused)>,
    },
    /// No leader, and the only `ForcedLeaderDown` is for the node the wanted policy forces: the
    /// manager has nothing to lift.
    ForcedLeaderDown {
        /// The forced node.
        forced: NodeId,
    },
    /// No leader and no replica forced to wait for a dead one: an election is under way.
    NoLeader,
}

/// How the operator path got a run out of a policy stall: the run ended stalled (the faults
/// healed, every node up, no voter its policies let be elected), the manager's passes then ran
/// against it with a wanted policy, and the liveness checks ran again from the first pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorRecovery {
    /// The policy the operator set.
    pub wanted: Policy,
    /// Ticks from the first pass to the first leader elected after it.
    pub leader_after_ticks: Option<u64>,
    /// Ticks from the first pass until every member had applied the wanted policy (seen by the
    /// manager's passes).
    pub applied_after_ticks: Option<u64>,
    /// Passes that sent overrides.
    pub override_passes: u64,
    /// Overrides that replicas took.
    pub overrides_accepted: u64,
    /// The group recovered: a leader within the bound, the wanted policy applied by every
    /// member, client writes committed, and every checker clean.
    pub recovered: bool,
}
