//! The simulator as a test: a fixed range of seeds with faults must find no violation, and a seed
//! must replay exactly. The faults include commit rules and leader policies changed while the
//! group runs (see `raft_sim::policy`); the targeted scenarios for those are in
//! `policy_changes.rs`. A run that ends in a policy stall is handed to the operator path (see
//! `raft_sim::operator`), which must get it out; the scripted scenarios are in `operator.rs`.

use raft_sim::{RunOptions, run};

/// How many seeds the test suite runs (the acceptance floor is 500; 1000 since policy changes
/// joined the fault schedule). A longer sweep:
/// `cargo run --release --bin raft-sim -- --seeds 0..10000`.
const SEEDS: u64 = 1000;

#[test]
fn seeds_with_faults_find_no_violation() {
    let options = RunOptions::default();
    let mut failures = Vec::new();
    let mut ops = 0;
    let mut stalls = Vec::new();
    let mut stuck = Vec::new();
    let mut passing_stalls = 0;
    let (mut leader_ticks_max, mut applied_ticks_max) = (0, 0);
    for seed in 0..SEEDS {
        let report = run(seed, &options);
        ops += report.ops_completed;
        if report.policy_stall.is_some() && report.operator.is_none() {
            passing_stalls += 1;
        }
        if let Some(recovery) = &report.operator {
            stalls.push(seed);
            if !recovery.recovered {
                stuck.push(seed);
            }
            leader_ticks_max = leader_ticks_max.max(recovery.leader_after_ticks.unwrap_or(0));
            applied_ticks_max = applied_ticks_max.max(recovery.applied_after_ticks.unwrap_or(0));
        }
        if !report.violations.is_empty() {
            for v in &report.violations {
                eprintln!("seed {seed}: {v}");
            }
            eprintln!(
                "seed {seed}: replay with: cargo run --release --bin raft-sim -- --seeds {seed} \
                 --trace"
            );
            failures.push(seed);
        }
    }
    // Runs that ended with no voter their forced policies let be elected (see
    // `raft_sim::stall`: a runtime forced(n) whose handing-over leader was lost before n caught
    // up) needed the operator: the manager lifts the forced leader on the replicas and pushes a
    // new policy through the log. Every one of them must then recover: a leader within a bound,
    // the new policy applied everywhere, client writes committed, every checker clean.
    eprintln!(
        "{} of {SEEDS} seeds ended in a policy stall and needed the operator path: {stalls:?}; \
         a leader at most {leader_ticks_max} ticks after its first pass, the new policy applied \
         everywhere at most {applied_ticks_max} ticks after it ({passing_stalls} more stalled \
         for a while and got out on their own)",
        stalls.len()
    );
    assert!(
        stuck.is_empty(),
        "seeds still stuck after the operator path: {stuck:?}"
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
    // The runs did real work: clients completed operations under faults.
    assert!(ops > SEEDS * 100, "only {ops} client operations completed");
    // The path ran: a change that stopped runs from stalling (or from being handed to the
    // operator) would leave it untested.
    assert!(!stalls.is_empty(), "no seed needed the operator path");
}

#[test]
fn a_seed_replays_exactly() {
    let options = RunOptions {
        trace: true,
        ..RunOptions::default()
    };
    let first = run(4242, &options);
    let second = run(4242, &options);
    assert_eq!(first.events, second.events);
    assert_eq!(first.committed, second.committed);
    assert_eq!(first.trace, second.trace);
    assert!(first.trace.len() > 1000, "the trace records the run");
}

#[test]
fn runs_exercise_the_faults_they_claim() {
    // Across a few seeds the trace must show every kind of fault the simulator advertises, so
    // a refactoring cannot silently stop injecting one.
    let options = RunOptions {
        trace: true,
        ..RunOptions::default()
    };
    type Matcher = fn(&str) -> bool;
    let kinds: [(&str, Matcher); 23] = [
        ("crash", |l| l.contains(" crash ")),
        ("restart", |l| l.contains(" restart ")),
        ("partition", |l| l.contains(" partition ")),
        ("isolate-leader", |l| l.contains("isolate leader")),
        ("one-way", |l| l.contains("cut outbound")),
        ("network-change", |l| l.contains("network NetworkOptions")),
        ("slow-disk", |l| l.contains("slow disk on")),
        ("add-learner", |l| l.contains("propose [AddLearner")),
        ("add-voter", |l| {
            l.contains("propose [AddVoter") && !l.contains(", Remove")
        }),
        ("replace-voter", |l| {
            l.contains("propose [AddVoter") && l.contains(", RemoveNode")
        }),
        ("remove", |l| {
            l.contains("propose [RemoveNode") && !l.contains(", Remove")
        }),
        ("remove-two", |l| {
            l.contains("propose [RemoveNode") && l.contains(", RemoveNode")
        }),
        ("transfer", |l| l.contains(" transfer ")),
        ("compact", |l| l.contains(" compact ")),
        ("snapshot-install", |l| l.contains("installs snapshot")),
        ("heal", |l| l.contains("HEAL")),
        ("policy-early-switch", |l| {
            l.contains("propose policy") && l.contains("early_switch=true: Ok")
        }),
        ("policy-at-apply-only", |l| {
            l.contains("propose policy") && l.contains("early_switch=false: Ok")
        }),
        ("policy-adopted-at-apply", |l| l.contains(" adopts leader=")),
        ("policy-set-directly", |l| l.contains("set policy on")),
        ("policy-forced", |l| {
            l.contains("propose policy leader=forced(") && l.contains(": Ok")
        }),
        ("policy-groups", |l| {
            l.contains("propose policy") && l.contains("commit=majority+groups")
        }),
        ("operator-override", |l| {
            l.contains("override leader policy on") && l.ends_with(": accepted")
        }),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..40 {
        for line in run(seed, &options).trace {
            for (name, matches) in &kinds {
                if matches(&line) {
                    seen.insert(*name);
                }
            }
        }
    }
    let missing: Vec<&str> = kinds
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !seen.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "fault kinds never injected: {missing:?}"
    );
}
