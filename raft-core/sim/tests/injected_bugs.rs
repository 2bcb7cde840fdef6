//! Evidence that the checkers bite: each deliberately injected core bug is caught by the
//! simulator. Run with `cargo test -p raft-sim --features inject-bugs --test injected_bugs`.
#![cfg(feature = "inject-bugs")]

use raft_core::InjectedBug;
use raft_sim::node::DriverBug;
use raft_sim::{RunOptions, run};

/// Runs seeds until one reports a violation of `property`; returns that seed.
fn first_seed_catching(bug: InjectedBug, property: &str, seeds: std::ops::Range<u64>) -> u64 {
    let options = RunOptions {
        bug: Some(bug),
        ..RunOptions::default()
    };
    first_seed_with(&options, &format!("{bug:?}"), property, seeds)
}

/// The same for a bug of the simulated driver rather than of the core.
fn first_seed_catching_driver(bug: DriverBug, property: &str, seeds: std::ops::Range<u64>) -> u64 {
    let options = RunOptions {
        driver_bug: Some(bug),
        ..RunOptions::default()
    };
    first_seed_with(&options, &format!("{bug:?}"), property, seeds)
}

fn first_seed_with(
    options: &RunOptions,
    bug: &str,
    property: &str,
    seeds: std::ops::Range<u64>,
) -> u64 {
    for seed in seeds.clone() {
        let report = run(seed, options);
        if let Some(v) = report.violations.iter().find(|v| v.property == property) {
            eprintln!("{bug} caught by seed {seed}: {v}");
            return seed;
        }
    }
    panic!("{bug} was not caught by the {property} checker in seeds {seeds:?}");
}

#[test]
fn commit_without_quorum_is_caught_by_commit_rule_durability() {
    first_seed_catching(
        InjectedBug::CommitWithoutQuorum,
        "commit rule durability",
        0..10,
    );
}

#[test]
fn commit_without_quorum_is_caught_by_state_machine_safety() {
    // The commit rule checker sees the commit itself; without it, the damage shows later.
    let options = RunOptions {
        bug: Some(InjectedBug::CommitWithoutQuorum),
        skip_commit_rule_check: true,
        ..RunOptions::default()
    };
    first_seed_with(
        &options,
        "CommitWithoutQuorum",
        "state machine safety",
        0..100,
    );
}

#[test]
fn vote_for_stale_log_is_caught_by_leader_completeness() {
    first_seed_catching(InjectedBug::VoteForStaleLog, "leader completeness", 0..100);
}

#[test]
fn lease_read_without_lease_is_caught_by_linearizability() {
    first_seed_catching(InjectedBug::LeaseReadSkipsCheck, "linearizability", 0..600);
}

#[test]
fn forced_leader_ignored_is_caught_by_exclusivity() {
    first_seed_catching(
        InjectedBug::ForcedLeaderIgnored,
        "forced-leader exclusivity",
        0..100,
    );
}

#[test]
fn commit_rule_not_handed_to_core_is_caught_by_commit_rule_durability() {
    first_seed_catching_driver(
        DriverBug::CommitRuleNotHandedToCore,
        "commit rule durability",
        0..100,
    );
}

#[test]
fn leader_policy_not_handed_to_core_is_caught_by_exclusivity() {
    first_seed_catching_driver(
        DriverBug::LeaderPolicyNotHandedToCore,
        "forced-leader exclusivity",
        0..100,
    );
}
