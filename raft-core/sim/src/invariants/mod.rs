//! One checker per safety property. Each is fed by the cluster as events happen and reports
//! [`Violation`]s; none of them trusts the core's own view of itself beyond what it observes.

mod commit_rule;
mod durability;
mod election_safety;
mod forced_leader;
mod leader_completeness;
mod log_matching;
mod state_machine_safety;

pub use commit_rule::CommitRuleDurability;
pub use durability::Durability;
pub use election_safety::ElectionSafety;
pub use forced_leader::ForcedLeader;
pub use leader_completeness::LeaderCompleteness;
pub use log_matching::check_log_matching;
pub use state_machine_safety::StateMachineSafety;

use std::fmt;

/// A broken property, with enough detail to start debugging from the replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The property, e.g. "election safety".
    pub property: &'static str,
    /// What was observed.
    pub detail: String,
    /// Simulated time when it was detected.
    pub at: u64,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violated at t={}: {}",
            self.property, self.at, self.detail
        )
    }
}
