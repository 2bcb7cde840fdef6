//! The operator's way out of a forced leader that is gone (see `raft_sim::operator`), in scripted
//! runs: cairn's manager pushes a new policy, the push fails with `ForcedLeaderDown`, and it sends
//! `OverrideLeaderPolicy` to every replica, which follows the new leader policy in memory until it
//! applies a policy from the log (or restarts), and refuses while the forced node leads. Every
//! checker of the simulator watches every step (election safety, leader completeness, state
//! machine safety, durability under the commit rule, forced-leader exclusivity; log matching and
//! linearizability at the end).

use raft_core::{CommitRule, Error, LeaderPolicy, LogIndex, NodeId};
use raft_sim::node::OverrideRefused;
use raft_sim::scenario::Scenario;
use raft_sim::{OperatorPass, Policy, ScriptedRun};

const ELECTION_TICKS: u64 = 10;
/// How often the manager's passes run in these tests.
const PASS_TICKS: u64 = 5;

fn n(id: u64) -> NodeId {
    NodeId(id)
}

fn policy(leader_policy: LeaderPolicy) -> Policy {
    Policy {
        commit_rule: CommitRule::Majority,
        leader_policy,
    }
}

/// Fails with the end of the trace.
fn fail(run: &ScriptedRun, message: String) -> ! {
    let trace = run.trace();
    for line in &trace[trace.len().saturating_sub(80)..] {
        eprintln!("{line}");
    }
    panic!("{message}");
}

fn assert_no_violation(run: &ScriptedRun, seed: u64) {
    if !run.violations().is_empty() {
        fail(
            run,
            format!("seed {seed}: violations: {:?}", run.violations()),
        );
    }
}

fn finish(run: ScriptedRun, seed: u64) {
    assert_no_violation(&run, seed);
    let violations = run.finish();
    assert!(
        violations.is_empty(),
        "seed {seed}: violations: {violations:?}"
    );
}

fn wait_for_leader(run: &mut ScriptedRun, seed: u64) -> NodeId {
    if run
        .run_until(20 * ELECTION_TICKS, |r| r.leader().is_some())
        .is_none()
    {
        fail(run, format!("seed {seed}: no leader"));
    }
    run.leader().expect("checked")
}

/// Proposes a write at `at` and waits until that node acknowledges it.
fn write(run: &mut ScriptedRun, seed: u64, at: NodeId, key: &str, value: u64) {
    if let Err(e) = run.propose_write(at, key, value) {
        fail(run, format!("seed {seed}: {at} refused {key}={value}: {e}"));
    }
    let acknowledged = |r: &ScriptedRun| {
        r.acknowledged_writes()
            .iter()
            .any(|(k, v)| k == key && *v == value)
    };
    if run.run_until(2 * ELECTION_TICKS, acknowledged).is_none() {
        fail(run, format!("seed {seed}: {key}={value} not acknowledged"));
    }
}

/// Waits until every running node has applied up to `index`.
fn wait_applied(run: &mut ScriptedRun, seed: u64, index: LogIndex) {
    let done = |r: &ScriptedRun| r.running().iter().all(|id| r.applied(*id) >= Some(index));
    if run.run_until(5 * ELECTION_TICKS, done).is_none() {
        fail(
            run,
            format!("seed {seed}: not applied up to {index} everywhere"),
        );
    }
}

/// Every running node refuses a write.
fn assert_writes_refused(run: &mut ScriptedRun, seed: u64) {
    for id in run.running() {
        match run.propose_write(id, "refused", 0) {
            Err(Error::NotLeader { .. } | Error::TransferInProgress { .. }) => {}
            other => fail(run, format!("seed {seed}: {id} took a write: {other:?}")),
        }
    }
}

/// Runs the manager's passes every few ticks until its push of `wanted` is applied by the
/// leader; returns every outcome.
fn operator_passes_until_applied(
    run: &mut ScriptedRun,
    seed: u64,
    wanted: &Policy,
) -> Vec<OperatorPass> {
    let mut outcomes = Vec::new();
    for _ in 0..40 {
        let outcome = run.operator_pass(wanted);
        let applied = matches!(outcome, OperatorPass::Applied { .. });
        outcomes.push(outcome);
        if applied {
            return outcomes;
        }
        run.run_ticks(PASS_TICKS);
    }
    fail(
        run,
        format!("seed {seed}: the push of {wanted} never went through: {outcomes:?}"),
    );
}

// ---------------------------------------------------------------------------------------------
// The policy stall, and the way out.

/// Builds the simulator's "policy stall" on purpose, in a group of three: node `forced` is down
/// while the leader takes writes and then the `forced(forced)` policy; every other node applies
/// it (and the leader starts handing over to `forced`, which it cannot reach); the leader dies;
/// `forced` and then the old leader come back. Now `forced` cannot be elected (its log lacks
/// entries the others hold) and nobody else campaigns or votes for anyone but it. Returns the
/// lost leader and the third node.
fn stall(run: &mut ScriptedRun, seed: u64, forced: NodeId) -> (NodeId, NodeId) {
    let leader = run.leader().expect("a leader");
    let third = (1..=3)
        .map(n)
        .find(|id| *id != leader && *id != forced)
        .expect("three nodes");
    run.crash(forced);
    write(run, seed, leader, "b", 2);
    write(run, seed, leader, "c", 3);
    let (_, position) = run
        .propose_policy(&policy(LeaderPolicy::Forced(forced)), true)
        .unwrap_or_else(|e| fail(run, format!("seed {seed}: policy refused: {e}")));
    wait_applied(run, seed, position.last_index);
    run.crash(leader);
    run.restart(forced);
    run.run_ticks(ELECTION_TICKS);
    run.restart(leader);
    (leader, third)
}

#[test]
fn a_policy_stall_is_lifted_by_the_operator_override_without_losing_an_acknowledged_write() {
    for seed in 0..4 {
        let mut run = ScriptedRun::new(seed, Scenario::fixed(&[1, 2, 3]));
        let first = wait_for_leader(&mut run, seed);
        write(&mut run, seed, first, "a", 1);
        let forced = n(first.get() % 3 + 1);
        let (lost, third) = stall(&mut run, seed, forced);

        // Stuck: no leader for 30 election timeouts, every write refused, and the simulator's
        // stall detector agrees.
        let mark = run.leader_changes().len();
        for _ in 0..30 {
            run.run_ticks(ELECTION_TICKS);
            assert_writes_refused(&mut run, seed);
        }
        assert_eq!(run.leader_changes().len(), mark, "seed {seed}: stalled");
        let Some(stall) = run.policy_stall() else {
            fail(
                &run,
                format!("seed {seed}: the stall detector sees no stall"),
            );
        };
        eprintln!("seed {seed}: {stall}");
        for id in [lost, third] {
            assert_eq!(
                run.policy(id).map(|p| p.leader_policy),
                Some(LeaderPolicy::Forced(forced)),
                "seed {seed}"
            );
        }

        // An override is in memory only: a restart forgets it (the node replays its applied
        // policy on its first Ready).
        let any = LeaderPolicy::Any;
        assert_eq!(
            run.override_leader_policy(third, any.clone()),
            Ok(true),
            "seed {seed}"
        );
        assert_eq!(
            run.policy(third).map(|p| p.leader_policy),
            Some(any.clone())
        );
        run.crash(third);
        assert_eq!(
            run.override_leader_policy(third, any.clone()),
            Err(OverrideRefused::NotRunning)
        );
        run.restart(third);
        run.run_ticks(1);
        assert_eq!(
            run.policy(third).map(|p| p.leader_policy),
            Some(LeaderPolicy::Forced(forced)),
            "seed {seed}: the override did not survive the restart"
        );
        assert_eq!(
            run.leader_changes().len(),
            mark,
            "seed {seed}: still stalled"
        );

        // The manager's pass: no leader, a replica answers ForcedLeaderDown, every replica is
        // told. `forced` never applied the forced policy: it runs by `any` already.
        let wanted = policy(LeaderPolicy::Any);
        let overridden = run.operator_pass(&wanted);
        let mut accepted = vec![lost, third];
        accepted.sort();
        assert_eq!(
            overridden,
            OperatorPass::Overridden {
                forced,
                accepted,
                refused: Vec::new(),
            },
            "seed {seed}"
        );

        // One of the nodes holding the whole log is elected; `forced` cannot be.
        let elected = run
            .run_until(5 * ELECTION_TICKS, |r| r.leader().is_some())
            .unwrap_or_else(|| fail(&run, format!("seed {seed}: no leader after the override")));
        let leader = run.leader().expect("checked");
        eprintln!("seed {seed}: {leader} leads {elected} ticks after the override");
        assert!(
            leader == lost || leader == third,
            "seed {seed}: {leader} leads"
        );
        assert_eq!(leaders_since(&run, mark), vec![leader], "seed {seed}");

        // The manager's next passes push the policy through the log, and everyone adopts it.
        let outcomes = operator_passes_until_applied(&mut run, seed, &wanted);
        assert!(
            matches!(outcomes[0], OperatorPass::Proposed { leader: l, .. } if l == leader),
            "seed {seed}: {outcomes:?}"
        );
        let applied = run.applied(leader).expect("the leader runs");
        wait_applied(&mut run, seed, applied);
        for id in 1..=3 {
            assert_eq!(run.policy(n(id)), Some(wanted.clone()), "seed {seed}: {id}");
        }

        // Writes commit again, and nothing acknowledged was lost, on any node.
        write(&mut run, seed, leader, "d", 4);
        let last = run.applied(leader).expect("the leader runs");
        wait_applied(&mut run, seed, last);
        let acknowledged = run.acknowledged_writes().to_vec();
        assert_eq!(acknowledged.len(), 4, "seed {seed}: {acknowledged:?}");
        for (key, value) in &acknowledged {
            for id in 1..=3 {
                assert_eq!(
                    run.value(n(id), key),
                    Some(*value),
                    "seed {seed}: {id} lost {key}"
                );
            }
        }
        run.run_ticks(10 * ELECTION_TICKS);
        assert_eq!(
            leaders_since(&run, mark),
            vec![leader],
            "seed {seed}: no flapping"
        );
        finish(run, seed);
    }
}

/// The nodes that became leader from the `from`-th change on.
fn leaders_since(run: &ScriptedRun, from: usize) -> Vec<NodeId> {
    run.leader_changes()[from..]
        .iter()
        .map(|change| change.node)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// While the forced node leads.

#[test]
fn an_override_is_refused_while_the_forced_node_leads() {
    for seed in 0..4 {
        let mut run = ScriptedRun::new(seed, Scenario::fixed(&[1, 2, 3]));
        let first = wait_for_leader(&mut run, seed);
        let forced = n(first.get() % 3 + 1);
        let (_, position) = run
            .propose_policy(&policy(LeaderPolicy::Forced(forced)), true)
            .expect("the leader proposes");
        if run
            .run_until(10 * ELECTION_TICKS, |r| r.leader() == Some(forced))
            .is_none()
        {
            fail(&run, format!("seed {seed}: {forced} did not take over"));
        }
        wait_applied(&mut run, seed, position.last_index);
        run.run_ticks(ELECTION_TICKS);
        let mark = run.leader_changes().len();

        // Every replica refuses, the forced leader included: its policy changes through the log.
        for id in 1..=3 {
            assert_eq!(
                run.override_leader_policy(n(id), LeaderPolicy::Any),
                Err(OverrideRefused::ForcedLeads(forced)),
                "seed {seed}: {id}"
            );
            assert_eq!(
                run.policy(n(id)).map(|p| p.leader_policy),
                Some(LeaderPolicy::Forced(forced)),
                "seed {seed}: {id}"
            );
        }
        // The manager's pass goes through the leader and the log, as usual.
        let wanted = policy(LeaderPolicy::Any);
        let outcomes = operator_passes_until_applied(&mut run, seed, &wanted);
        assert!(
            matches!(outcomes[0], OperatorPass::Proposed { leader, .. } if leader == forced),
            "seed {seed}: {outcomes:?}"
        );
        let applied = run.applied(forced).expect("the leader runs");
        wait_applied(&mut run, seed, applied);
        // Nothing forced any more: nothing to lift; the wanted policy is accepted as a no-op.
        for id in 1..=3 {
            assert_eq!(
                run.override_leader_policy(n(id), LeaderPolicy::Forced(n(1))),
                Err(OverrideRefused::NotForced),
                "seed {seed}"
            );
            assert_eq!(
                run.override_leader_policy(n(id), LeaderPolicy::Any),
                Ok(false),
                "seed {seed}"
            );
        }
        write(&mut run, seed, forced, "after", 1);
        run.run_ticks(10 * ELECTION_TICKS);
        assert_eq!(
            leaders_since(&run, mark),
            Vec::<NodeId>::new(),
            "seed {seed}"
        );
        assert_eq!(run.leader(), Some(forced), "seed {seed}");
        finish(run, seed);
    }
}

#[test]
fn an_override_taken_by_a_cut_off_follower_is_harmless_and_the_next_applied_policy_replaces_it() {
    for seed in 0..4 {
        for compact in [false, true] {
            // Node 1 is forced from the start, and leads.
            let scenario = Scenario {
                leader_policy: LeaderPolicy::Forced(n(1)),
                ..Scenario::fixed(&[1, 2, 3])
            };
            let mut run = ScriptedRun::new(seed, scenario);
            let leader = wait_for_leader(&mut run, seed);
            assert_eq!(leader, n(1), "seed {seed}");
            write(&mut run, seed, leader, "a", 1);
            let mark = run.leader_changes().len();

            // Node 3 is cut off: it has not heard from the forced leader for longer than an
            // election timeout, so it takes the override and campaigns (with pre-vote, alone).
            run.partition(&[n(3)]);
            run.run_ticks(2 * ELECTION_TICKS);
            assert_eq!(
                run.override_leader_policy(n(3), LeaderPolicy::Any),
                Ok(true),
                "seed {seed}"
            );
            // Node 2 still hears from node 1: it refuses.
            assert_eq!(
                run.override_leader_policy(n(2), LeaderPolicy::Any),
                Err(OverrideRefused::ForcedLeads(n(1))),
                "seed {seed}"
            );
            run.run_ticks(3 * ELECTION_TICKS);

            // Meanwhile the leader writes and the log sets a policy again (the same forced
            // leader, now by a policy entry); with `compact`, node 3 can only get it from a
            // snapshot.
            write(&mut run, seed, leader, "b", 2);
            let logged = policy(LeaderPolicy::Forced(n(1)));
            let (_, position) = run
                .propose_policy(&logged, true)
                .expect("the leader proposes");
            write(&mut run, seed, leader, "c", 3);
            if compact {
                run.run_until(ELECTION_TICKS, |r| {
                    r.applied(n(1)) > Some(position.last_index)
                })
                .expect("the leader applies");
                run.compact(n(1));
                assert!(run.snapshot_index(n(1)) > Some(position.last_index));
            }
            assert_eq!(
                run.policy(n(3)).map(|p| p.leader_policy),
                Some(LeaderPolicy::Any),
                "seed {seed}: the override holds while nothing replaces it"
            );

            // Back: node 3 disturbs nobody, catches up and runs by the log's policy again.
            run.heal_network();
            let last = run.applied(n(1)).expect("the leader runs");
            wait_applied(&mut run, seed, last);
            assert_eq!(run.policy(n(3)), Some(logged.clone()), "seed {seed}");
            assert_eq!(
                run.snapshot_index(n(3)) > Some(LogIndex(0)),
                compact,
                "seed {seed}: caught up by snapshot iff the leader compacted"
            );
            for (key, value) in [("a", 1), ("b", 2), ("c", 3)] {
                assert_eq!(run.value(n(3), key), Some(value), "seed {seed}: {key}");
            }
            run.run_ticks(10 * ELECTION_TICKS);
            assert_eq!(
                leaders_since(&run, mark),
                Vec::<NodeId>::new(),
                "seed {seed} compact={compact}: node 1 led throughout"
            );
            assert_eq!(run.leader(), Some(n(1)));
            let disk_last = run.log(n(3), LogIndex(1)).last().map(|e| e.index);
            assert_eq!(
                disk_last,
                run.log(n(1), LogIndex(1)).last().map(|e| e.index),
                "seed {seed}"
            );
            finish(run, seed);
        }
    }
}
