//! A seeded, replayable simulator for `raft-core` clusters, with one checker per safety property.
//!
//! Each seed draws a cluster (3 or 5 voters, learners, spare nodes that join later), the core's
//! settings and policies, and a schedule of faults: message loss, delay, duplication and
//! reordering; symmetric and one-way partitions; crashes that lose everything not persisted
//! through a `Ready`; restarts; membership changes and leader transfers during faults; snapshots
//! and log compaction; and commit rules and leader policies changed while the group runs.
//! Clients run a key-value workload through the real core and state machine and their history
//! is checked for linearizability. Everything is driven by one seeded PRNG and a discrete event
//! queue, so a seed replays exactly.
//!
//! # Policy changes at run time
//!
//! The simulated driver changes policies the way shard-node does ([`policy`]): a policy is a log
//! entry that each replica hands to its core when it applies it (or installs a snapshot, or
//! restarts), so replicas switch at different times; the leader that proposes one counts by the
//! new commit rule at once; a node that stops leading goes back to the rule it has applied. The
//! fault schedule uses two events:
//! - *propose policy*: the leader proposes a random policy (any, preferred, forced; majority or
//!   majority plus both sites), with the early switch three times in four;
//! - *set policy*: some nodes adopt a rule and/or a policy directly, each at its own moment —
//!   usually the one proposed last, before the log gets it to them — so replicas disagree longer
//!   and more arbitrarily than the log alone makes them. Such changes are faults: they are
//!   dropped at the heal, when every node goes back to the policy its log says;
//! - *operator override*: a replica answers the manager's push `ForcedLeaderDown`, and the
//!   manager lifts the forced leader on the replicas ([`operator`]), then pushes its policy
//!   through the log a few election timeouts later. Overrides are in memory: a restart, the next
//!   applied policy, or the heal drops them.
//!
//! [`RunOptions::policy_changes`] (CLI `--no-policy-changes`) turns both off.
//!
//! # Checkers
//!
//! [`invariants`]: election safety, log matching, leader completeness, state machine safety, no
//! lost committed entry across crashes, durability under the commit rule (an entry commits only
//! once it is durable on nodes satisfying the rule the leader counted by, whichever rule that
//! was), forced-leader exclusivity (a node never becomes leader while its own policy forces
//! another, and no other node does once every running node has adopted the forced policy), and
//! linearizability ([`linearizability`]); plus liveness after the faults heal: a leader, whom
//! every client reaches; the leader among the preferred nodes when the policy prefers a voter;
//! in the last 60 ticks, no leader change but a late election and moves into the preferred set
//! (no flapping). A group left with no voter its forced policies let be elected ([`stall`])
//! cannot be live on its own: such a run is handed to the operator path ([`operator`]), which
//! must get it out — a leader soon after its first pass, its new policy applied by every member,
//! client writes committed, and every check above run again (`--no-operator`: such runs are
//! only reported).
//!
//! # Scripted runs
//!
//! [`ScriptedRun`] is the same cluster, with the same checkers, driven by a test instead of the
//! fault schedule: crashes, partitions, policy proposals and direct policy changes at chosen
//! times on chosen nodes, and assertions on who leads, what commits and what is refused.

pub mod cluster;
pub mod invariants;
pub mod kv;
pub mod linearizability;
pub mod network;
pub mod node;
pub mod operator;
pub mod policy;
pub mod rng;
pub mod scenario;
pub mod script;
pub mod stall;

pub use cluster::{LeaderChange, Report, RunOptions, run};
pub use operator::{OperatorPass, OperatorRecovery};
pub use policy::Policy;
pub use script::ScriptedRun;
