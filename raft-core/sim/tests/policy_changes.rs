//! Commit rules and leader policies changed while the group runs, the way shard-node changes
//! them (a policy entry that each replica adopts when it applies it; the proposing leader counts
//! by the new rule at once; a node that stops leading goes back to its applied rule), in scripted
//! runs: the faults and changes are placed by the test, and every checker of the simulator
//! watches every step (election safety, leader completeness, state machine safety, durability
//! under the commit rule, forced-leader exclusivity; log matching and linearizability at the end).

use std::collections::BTreeSet;

use raft_core::{CommitRule, EntryPayload, Error, LeaderPolicy, LogIndex, NodeId, Role};
use raft_sim::scenario::Scenario;
use raft_sim::{Policy, ScriptedRun};

const ELECTION_TICKS: u64 = 10;

fn ids(ids: &[u64]) -> BTreeSet<NodeId> {
    ids.iter().copied().map(NodeId).collect()
}

fn policy(commit_rule: CommitRule, leader_policy: LeaderPolicy) -> Policy {
    Policy {
        commit_rule,
        leader_policy,
    }
}

/// Fails with the end of the trace if any checker found a violation.
fn assert_no_violation(run: &ScriptedRun) {
    if run.violations().is_empty() {
        return;
    }
    let trace = run.trace();
    for line in &trace[trace.len().saturating_sub(80)..] {
        eprintln!("{line}");
    }
    panic!("violations: {:?}", run.violations());
}

fn finish(run: ScriptedRun) {
    assert_no_violation(&run);
    let violations = run.finish();
    assert!(violations.is_empty(), "violations: {violations:?}");
}

fn wait_for_leader(run: &mut ScriptedRun) -> NodeId {
    run.run_until(20 * ELECTION_TICKS, |r| r.leader().is_some())
        .expect("a leader is elected");
    run.leader().expect("checked")
}

/// The nodes that became leader from the `from`-th change on.
fn leaders_since(run: &ScriptedRun, from: usize) -> Vec<NodeId> {
    run.leader_changes()[from..]
        .iter()
        .map(|change| change.node)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Preferred leaders.

/// How long a move to a healthy, caught-up preferred node may take once the leader has adopted
/// the policy: the leader checks at the end of each election timeout whether a preferred voter
/// was active for the whole interval, so up to two intervals, then the hand-over.
const PREFERRED_MOVE_TICKS_MAX: u64 = 3 * ELECTION_TICKS;

#[test]
fn preferred_set_at_runtime_moves_leadership_once_and_it_stays() {
    for seed in 0..4 {
        let scenario = Scenario {
            clients: 2,
            ..Scenario::fixed(&[1, 2, 3, 4, 5])
        };
        let mut run = ScriptedRun::new(seed, scenario);
        let leader = wait_for_leader(&mut run);
        run.run_ticks(2 * ELECTION_TICKS);
        let preferred = NodeId(leader.get() % 5 + 1);
        let mark = run.leader_changes().len();
        let wanted = policy(
            CommitRule::Majority,
            LeaderPolicy::Preferred(BTreeSet::from([preferred])),
        );
        run.propose_policy(&wanted, true)
            .expect("the leader proposes");
        let adopted = run
            .run_until(ELECTION_TICKS, |r| r.policy(leader) == Some(wanted.clone()))
            .expect("the leader applies the policy");
        let moved = run
            .run_until(PREFERRED_MOVE_TICKS_MAX, |r| r.leader() == Some(preferred))
            .unwrap_or_else(|| {
                panic!("seed {seed}: leadership did not move to {preferred} in time")
            });
        eprintln!(
            "seed {seed}: {leader} -> {preferred} {moved} ticks after the leader adopted the \
             policy ({adopted} ticks after proposing it)"
        );
        run.run_ticks(50 * ELECTION_TICKS);
        assert_eq!(
            leaders_since(&run, mark),
            vec![preferred],
            "seed {seed}: exactly one move, to the preferred node"
        );
        finish(run);
    }
}

#[test]
fn preferred_adopted_at_different_times_moves_leadership_once() {
    // The policy reaches the nodes one by one, several ticks apart, the leader last: each node
    // counts and votes by its own policy meanwhile.
    for seed in 0..4 {
        let scenario = Scenario {
            clients: 2,
            ..Scenario::fixed(&[1, 2, 3, 4, 5])
        };
        let mut run = ScriptedRun::new(seed, scenario);
        let leader = wait_for_leader(&mut run);
        let preferred = NodeId(leader.get() % 5 + 1);
        let policy = LeaderPolicy::Preferred(BTreeSet::from([preferred]));
        let mark = run.leader_changes().len();
        let followers: Vec<NodeId> = (1..=5).map(NodeId).filter(|id| *id != leader).collect();
        for (i, id) in followers.iter().enumerate() {
            run.set_policy_in(3 * i as u64, &[*id], None, Some(policy.clone()));
        }
        run.run_ticks(3 * followers.len() as u64);
        assert_eq!(
            leaders_since(&run, mark),
            Vec::<NodeId>::new(),
            "seed {seed}: followers adopting a policy do not disturb the leader"
        );
        run.set_policy(&[leader], None, Some(policy.clone()));
        let moved = run
            .run_until(PREFERRED_MOVE_TICKS_MAX, |r| r.leader() == Some(preferred))
            .unwrap_or_else(|| {
                panic!("seed {seed}: leadership did not move to {preferred} in time")
            });
        eprintln!("seed {seed}: moved {moved} ticks after the leader adopted the policy");
        run.run_ticks(50 * ELECTION_TICKS);
        assert_eq!(leaders_since(&run, mark), vec![preferred], "seed {seed}");
        finish(run);
    }
}

#[test]
fn preferred_leader_cut_off_then_healed_gets_leadership_back_without_flapping() {
    for seed in 0..4 {
        let scenario = Scenario {
            clients: 2,
            ..Scenario::fixed(&[1, 2, 3, 4, 5])
        };
        let mut run = ScriptedRun::new(seed, scenario);
        let leader = wait_for_leader(&mut run);
        let preferred = NodeId(leader.get() % 5 + 1);
        let wanted = policy(
            CommitRule::Majority,
            LeaderPolicy::Preferred(BTreeSet::from([preferred])),
        );
        run.propose_policy(&wanted, true)
            .expect("the leader proposes");
        run.run_until(PREFERRED_MOVE_TICKS_MAX + ELECTION_TICKS, |r| {
            r.leader() == Some(preferred)
        })
        .expect("leadership moves to the preferred node");

        // Cut the preferred leader off: the others elect someone else (later than usual: a
        // non-preferred node waits an extra election timeout before it campaigns).
        run.partition(&[preferred]);
        let elected = run.run_until(10 * ELECTION_TICKS, |r| {
            r.leader().is_some_and(|id| id != preferred)
        });
        let stand_in = run.leader().expect("the majority elects a leader");
        eprintln!(
            "seed {seed}: {stand_in} leads {} ticks after {preferred} was cut off",
            elected.expect("checked")
        );
        // The stand-in leads, and writes go on without the preferred node.
        run.run_ticks(5 * ELECTION_TICKS);
        assert_ne!(run.leader(), Some(preferred));

        let mark = run.leader_changes().len();
        run.heal_network();
        let back = run
            .run_until(PREFERRED_MOVE_TICKS_MAX + ELECTION_TICKS, |r| {
                r.leader() == Some(preferred)
            })
            .unwrap_or_else(|| panic!("seed {seed}: {preferred} did not get leadership back"));
        eprintln!("seed {seed}: {preferred} leads again {back} ticks after the heal");
        run.run_ticks(50 * ELECTION_TICKS);
        assert_eq!(
            leaders_since(&run, mark),
            vec![preferred],
            "seed {seed}: one move back to the preferred node, then no flapping"
        );
        finish(run);
    }
}

// ---------------------------------------------------------------------------------------------
// Forced leaders.

/// Every running node refuses a write: no leader takes proposals.
fn assert_writes_refused(run: &mut ScriptedRun, forced: NodeId) {
    for id in run.running() {
        match run.propose_write(id, "w", 1) {
            Err(Error::NotLeader { .. }) => {}
            // A leader that adopted the policy hands over and takes nothing meanwhile.
            Err(Error::TransferInProgress { target }) => assert_eq!(target, forced),
            other => panic!("node {id} took a write with forced({forced}) down: {other:?}"),
        }
    }
}

#[test]
fn forced_leader_down_when_set_no_one_else_leads_and_it_leads_once_back() {
    for seed in 0..4 {
        let mut run = ScriptedRun::new(seed, Scenario::fixed(&[1, 2, 3]));
        let leader = wait_for_leader(&mut run);
        run.propose_write(leader, "a", 1)
            .expect("the leader takes writes");
        let forced = NodeId(leader.get() % 3 + 1);
        run.crash(forced);
        // Entries the forced node will lack.
        run.propose_write(leader, "b", 2)
            .expect("the leader takes writes");
        run.run_ticks(2);
        let (_, position) = run
            .propose_policy(
                &policy(CommitRule::Majority, LeaderPolicy::Forced(forced)),
                true,
            )
            .expect("the leader proposes");
        run.run_until(2 * ELECTION_TICKS, |r| {
            r.running().iter().all(|id| {
                r.applied(*id)
                    .is_some_and(|applied| applied >= position.last_index)
            })
        })
        .expect("every running node applies the policy");
        let mark = run.leader_changes().len();
        for _ in 0..30 {
            run.run_ticks(ELECTION_TICKS);
            assert_writes_refused(&mut run, forced);
        }
        assert_eq!(
            leaders_since(&run, mark),
            Vec::<NodeId>::new(),
            "seed {seed}: nobody became leader in 300 ticks with forced({forced}) down"
        );

        run.restart(forced);
        let back = run
            .run_until(10 * ELECTION_TICKS, |r| {
                r.leader() == Some(forced) && r.role(forced) == Some(Role::Leader)
            })
            .unwrap_or_else(|| {
                let trace = run.trace();
                for line in &trace[trace.len().saturating_sub(60)..] {
                    eprintln!("{line}");
                }
                panic!("seed {seed}: forced({forced}) did not lead after it restarted")
            });
        eprintln!("seed {seed}: {forced} leads {back} ticks after it restarted");
        run.propose_write(forced, "c", 3)
            .expect("the forced leader takes writes");
        run.run_ticks(5 * ELECTION_TICKS);
        assert_eq!(leaders_since(&run, mark), vec![forced], "seed {seed}");
        finish(run);
    }
}

#[test]
fn forced_leader_crashing_after_the_change_stops_writes_until_it_returns() {
    for seed in 0..4 {
        let mut run = ScriptedRun::new(seed, Scenario::fixed(&[1, 2, 3]));
        let leader = wait_for_leader(&mut run);
        let forced = NodeId(leader.get() % 3 + 1);
        run.propose_policy(
            &policy(CommitRule::Majority, LeaderPolicy::Forced(forced)),
            true,
        )
        .expect("the leader proposes");
        run.run_until(10 * ELECTION_TICKS, |r| r.leader() == Some(forced))
            .unwrap_or_else(|| panic!("seed {seed}: leadership did not move to {forced}"));
        run.crash(forced);
        let mark = run.leader_changes().len();
        for _ in 0..30 {
            run.run_ticks(ELECTION_TICKS);
            assert_writes_refused(&mut run, forced);
        }
        assert_eq!(
            leaders_since(&run, mark),
            Vec::<NodeId>::new(),
            "seed {seed}"
        );
        run.restart(forced);
        run.run_until(10 * ELECTION_TICKS, |r| r.leader() == Some(forced))
            .unwrap_or_else(|| panic!("seed {seed}: {forced} did not lead after it restarted"));
        run.run_ticks(5 * ELECTION_TICKS);
        assert_eq!(leaders_since(&run, mark), vec![forced], "seed {seed}");
        finish(run);
    }
}

#[test]
fn a_campaign_forbidden_by_a_new_policy_is_abandoned() {
    // A node that adopts forced(other) while it campaigns must not go on to win: with the votes
    // it asked for still in flight, it could.
    for seed in 0..8 {
        let mut run = ScriptedRun::new(seed, Scenario::fixed(&[1, 2, 3]));
        let leader = wait_for_leader(&mut run);
        let campaigner = NodeId(leader.get() % 3 + 1);
        let forced = NodeId(campaigner.get() % 3 + 1);
        // The campaigner is preferred, so it campaigns first once the leader is gone.
        let preferred = LeaderPolicy::Preferred(BTreeSet::from([campaigner]));
        run.set_policy(&[campaigner, forced], None, Some(preferred));
        run.crash(leader);
        let campaigning = run.run_until_event(10 * ELECTION_TICKS, |r| {
            matches!(
                r.role(campaigner),
                Some(Role::PreCandidate | Role::Candidate)
            )
        });
        assert!(campaigning, "seed {seed}: {campaigner} campaigns");
        let mark = run.leader_changes().len();
        run.set_policy(&[campaigner], None, Some(LeaderPolicy::Forced(forced)));
        assert_eq!(run.role(campaigner), Some(Role::Follower), "seed {seed}");
        run.run_ticks(20 * ELECTION_TICKS);
        assert!(
            !leaders_since(&run, mark).contains(&campaigner),
            "seed {seed}: {campaigner} led although its policy forces {forced}"
        );
        // The forced node is the only one left that may lead, and it does.
        assert_eq!(run.leader(), Some(forced), "seed {seed}");
        finish(run);
    }
}

// ---------------------------------------------------------------------------------------------
// Commit rules.

#[test]
fn relaxing_the_commit_rule_at_proposal_commits_while_a_site_is_cut_off() {
    for seed in 0..4 {
        // Two sites: 1, 2, 3 and 4, 5. A commit needs a majority and one node of each site.
        let sites = CommitRule::MajorityAndGroups(vec![ids(&[1, 2, 3]), ids(&[4, 5])]);
        let scenario = Scenario {
            commit_rule: sites.clone(),
            ..Scenario::fixed(&[1, 2, 3, 4, 5])
        };
        let mut run = ScriptedRun::new(seed, scenario);
        let first = wait_for_leader(&mut run);
        run.propose_write(first, "before", 1)
            .expect("the leader takes writes");
        run.run_ticks(ELECTION_TICKS);

        // Site 4, 5 is cut off. 1, 2, 3 are a majority, but nothing commits.
        run.partition(&[NodeId(4), NodeId(5)]);
        run.run_until(10 * ELECTION_TICKS, |r| {
            r.leader().is_some_and(|id| id.get() <= 3)
        })
        .expect("the majority side has a leader");
        let leader = run.leader().expect("checked");
        run.run_ticks(ELECTION_TICKS);
        let stuck = run.commit_index(leader).expect("the leader runs");
        run.propose_write(leader, "cut-off", 2)
            .expect("the leader takes writes");
        run.run_ticks(5 * ELECTION_TICKS);
        assert_eq!(
            run.commit_index(leader),
            Some(stuck),
            "seed {seed}: nothing commits without site 4, 5"
        );

        // A relaxing entry counted by the rule in force cannot commit either.
        let relaxed = policy(CommitRule::Majority, LeaderPolicy::Any);
        let (_, late) = run
            .propose_policy(&relaxed, false)
            .expect("the leader proposes");
        run.run_ticks(5 * ELECTION_TICKS);
        assert!(
            run.commit_index(leader) < Some(late.last_index),
            "seed {seed}: the relaxing entry cannot commit by the old rule"
        );

        // The leader counts by the new rule as soon as it proposes it: the relaxing entry and
        // everything before it commit with the majority alone, and so do later writes.
        let (_, early) = run
            .propose_policy(&relaxed, true)
            .expect("the leader proposes");
        let took = run
            .run_until(ELECTION_TICKS, |r| {
                r.commit_index(leader) >= Some(early.last_index)
            })
            .unwrap_or_else(|| panic!("seed {seed}: the relaxing entry did not commit"));
        eprintln!("seed {seed}: relaxed rule committed {took} ticks after the proposal");
        run.run_until(ELECTION_TICKS, |r| {
            (1..=3).all(|id| r.policy(NodeId(id)) == Some(relaxed.clone()))
        })
        .expect("the majority side applies the relaxed policy");
        run.propose_write(leader, "after", 3)
            .expect("the leader takes writes");
        let target = run.commit_index(leader).expect("runs").next();
        run.run_until(ELECTION_TICKS, |r| r.commit_index(leader) >= Some(target))
            .expect("later writes commit with the majority");
        for id in [4, 5] {
            assert_eq!(
                run.policy(NodeId(id)).map(|p| p.commit_rule),
                Some(sites.clone()),
                "seed {seed}: the cut-off node still has the old rule"
            );
        }

        // The site comes back: its nodes catch up, apply the relaxed policy, and hold exactly
        // the same log.
        run.heal_network();
        let leader = run.leader().expect("the majority side still leads");
        run.run_until(10 * ELECTION_TICKS, |r| {
            let applied = r.applied(leader);
            (1..=5).all(|id| r.applied(NodeId(id)) == applied)
        })
        .unwrap_or_else(|| panic!("seed {seed}: the cut-off site did not catch up"));
        let reference = run.log(leader, LogIndex(1));
        assert!(
            reference
                .iter()
                .any(|entry| matches!(&entry.payload, EntryPayload::Normal(_))),
            "seed {seed}: the log holds the writes"
        );
        for id in 1..=5 {
            assert_eq!(
                run.log(NodeId(id), LogIndex(1)),
                reference,
                "seed {seed}: node {id} holds another log than the leader {leader}"
            );
            assert_eq!(run.policy(NodeId(id)), Some(relaxed.clone()), "seed {seed}");
        }
        finish(run);
    }
}

#[test]
fn an_early_rule_lasts_only_while_its_node_leads() {
    for seed in 0..4 {
        let sites = CommitRule::MajorityAndGroups(vec![ids(&[1, 2, 3]), ids(&[4, 5])]);
        let scenario = Scenario {
            commit_rule: sites.clone(),
            ..Scenario::fixed(&[1, 2, 3, 4, 5])
        };
        let mut run = ScriptedRun::new(seed, scenario);
        run.partition(&[NodeId(4), NodeId(5)]);
        run.run_until(20 * ELECTION_TICKS, |r| {
            r.leader().is_some_and(|id| id.get() <= 3)
        })
        .expect("the majority side has a leader");
        let leader = run.leader().expect("checked");
        // The leader proposes the relaxed rule and switches to it, then is cut off before the
        // entry reaches anyone: it never commits, and the leader goes back to the applied rule.
        run.partition(&[leader]);
        run.propose_policy(&policy(CommitRule::Majority, LeaderPolicy::Any), true)
            .expect("the leader proposes");
        assert_eq!(run.commit_rule(leader), Some(CommitRule::Majority));
        run.run_until(5 * ELECTION_TICKS, |r| r.role(leader) != Some(Role::Leader))
            .expect("check-quorum makes the cut-off leader step down");
        run.run_ticks(1);
        assert_eq!(run.commit_rule(leader), Some(sites.clone()), "seed {seed}");
        assert_eq!(run.policy(leader).map(|p| p.commit_rule), Some(sites));
        finish(run);
    }
}
