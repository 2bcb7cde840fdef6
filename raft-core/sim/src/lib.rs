//! A seeded, replayable simulator for `raft-core` clusters, with one checker per safety property.
//!
//! Each seed draws a cluster (3 or 5 voters, learners, spare nodes that join later), the core's
//! settings and policies, and a schedule of faults: message loss, delay, duplication and
//! reordering; symmetric and one-way partitions; crashes that lose everything not persisted
//! through a `Ready`; restarts; membership changes and leader transfers during faults; snapshots
//! and log compaction. Clients run a key-value workload through the real core and state machine
//! and their history is checked for linearizability. Everything is driven by one seeded PRNG and
//! a discrete event queue, so a seed replays exactly.
//!
//! Checkers ([`invariants`]): election safety, log matching, leader completeness, state machine
//! safety, no lost committed entry across crashes, forced-leader exclusivity, and
//! linearizability ([`linearizability`]); plus liveness after the faults heal.

pub mod cluster;
pub mod invariants;
pub mod kv;
pub mod linearizability;
pub mod network;
pub mod node;
pub mod rng;
pub mod scenario;

pub use cluster::{Report, RunOptions, run};
