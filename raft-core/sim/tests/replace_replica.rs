//! Replacing a voter whose host died, the way cairn's manager drives it on a shard, in scripted
//! runs and a seeded sweep. Every checker of the simulator watches every step (election safety,
//! leader completeness, state machine safety, durability under the commit rule, membership
//! changes the core refuses; log matching and linearizability of the clients' history at the
//! end).
//!
//! The sequence, as the manager runs it ([`Replacement`]), on a group whose voter X is down:
//! 1. X is crashed (down, maybe forever);
//! 2. a new node S starts with no configuration at all (an empty `ConfState`);
//! 3. the leader proposes `[AddLearner(S)]`;
//! 4. the manager waits until the leader's progress for S (its matched index) is within a small
//!    lag of the leader's last index — S starts with nothing, so it is always caught up by a
//!    snapshot first, and by one carrying data when the leader compacted its log;
//! 5. the leader proposes one joint change `[AddVoter(S), RemoveNode(X)]`; raft-core leaves the
//!    joint configuration on its own;
//! 6. the policy's site groups name S instead of X (a policy entry, with the early switch);
//! 7. X may come back with its old state: it must not disturb the group, never lead, never count.
//!
//! The manager is modelled as a reconcile loop: it reads the leader's *applied* configuration and
//! policy and takes the next step, retrying a proposal that a crash or a partition lost.
//!
//! What the tests found, beyond "it works":
//! - **X alone in a site group stalls the group at once.** Under
//!   `CommitRule::MajorityAndGroups`, a group with a member counts, dead or alive; when X is the
//!   only member of its group, nothing commits after X dies — not the writes, and not the
//!   `AddLearner(S)` of step 3 either, so the sequence as listed never gets past step 3. The
//!   manager must first propose, with the early switch, a policy that no longer counts on X's
//!   group: one that drops the group, or names S in it (a group none of whose nodes is a member is
//!   ignored). See
//!   `x_alone_in_its_site_group_stalls_every_commit_until_the_policy_stops_counting_on_it`.
//! - **Groups count learners.** A policy that names S in a group before S is caught up makes
//!   every commit wait for S from the moment `AddLearner(S)` applies (S's matched index starts at
//!   0). Dropping X's group until S votes, and naming S at step 6, does not.
//! - **A lag bound in entries passes at once on a short log.** With fewer entries than the
//!   bound, S counts as caught up at matched index 0, before it received even the snapshot, and
//!   is made a voter that holds nothing; safety holds, but the group has lost its margin until S
//!   catches up (`the_lag_rule_alone_promotes_a_node_that_holds_nothing_when_the_log_is_short`).
//!   Waiting also for matched > 0 (or the leader's progress for S in `Replicate`) avoids it.
//! - **X does not learn of its removal.** Nobody sends to a removed node, so X keeps its old
//!   configuration and campaigns now and then; leases (and pre-vote) make the members ignore it,
//!   and its log lacks the joint entry, so it cannot win.

use std::collections::BTreeSet;

use raft_core::{CommitRule, ConfChangeStep, ConfState, LeaderPolicy, LogIndex, NodeId, Role};
use raft_sim::network::NetworkOptions;
use raft_sim::rng::SimRng;
use raft_sim::scenario::Scenario;
use raft_sim::script::TICK_UNITS;
use raft_sim::{Policy, ScriptedRun};

/// The election timeout of the fixed scenarios.
const ELECTION_TICKS: u64 = 10;
/// The manager's catch-up bound: the joint change is proposed once the new node's matched index
/// is at most this many entries behind the leader's last index.
const LAG_MAX: u64 = 100;

fn n(id: u64) -> NodeId {
    NodeId(id)
}

fn ids(list: &[u64]) -> BTreeSet<NodeId> {
    list.iter().copied().map(NodeId).collect()
}

/// `MajorityAndGroups` over these site groups.
fn sites(groups: &[&[u64]]) -> CommitRule {
    CommitRule::MajorityAndGroups(groups.iter().map(|group| ids(group)).collect())
}

/// `rule` with `old` replaced by `new` in every group.
fn renamed(rule: &CommitRule, old: NodeId, new: NodeId) -> CommitRule {
    match rule {
        CommitRule::Majority => CommitRule::Majority,
        CommitRule::MajorityAndGroups(groups) => CommitRule::MajorityAndGroups(
            groups
                .iter()
                .map(|group| {
                    group
                        .iter()
                        .map(|id| if *id == old { new } else { *id })
                        .collect()
                })
                .collect(),
        ),
    }
}

/// `rule` without the groups whose only node is `old`.
fn without_group_of(rule: &CommitRule, old: NodeId) -> CommitRule {
    match rule {
        CommitRule::Majority => CommitRule::Majority,
        CommitRule::MajorityAndGroups(groups) => CommitRule::MajorityAndGroups(
            groups
                .iter()
                .filter(|group| **group != BTreeSet::from([old]))
                .cloned()
                .collect(),
        ),
    }
}

/// Whether `old` is the only node of one of the groups of `rule`.
fn alone_in_a_group(rule: &CommitRule, old: NodeId) -> bool {
    match rule {
        CommitRule::Majority => false,
        CommitRule::MajorityAndGroups(groups) => {
            groups.iter().any(|group| *group == BTreeSet::from([old]))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Failing with the trace.

/// Prints the story of the run (faults, proposals, elections, membership changes, snapshots:
/// the trace without messages and plain applies), then the full trace, the last `lines` of each.
fn print_trace_tail(trace: &[String], lines: usize) {
    let story: Vec<&String> = trace
        .iter()
        .filter(|line| {
            !line.contains(" deliver ")
                && (!line.contains(" applies ") || line.contains(" applies conf change "))
        })
        .collect();
    let from = story.len().saturating_sub(lines);
    eprintln!("--- story (from line {from} of {}) ---", story.len());
    for line in &story[from..] {
        eprintln!("{line}");
    }
    let from = trace.len().saturating_sub(lines);
    eprintln!("--- trace (from line {from} of {}) ---", trace.len());
    for line in &trace[from..] {
        eprintln!("{line}");
    }
}

/// How much of the trace a failure prints: the end, or all of it when `REPLACE_REPLICA_TRACE`
/// is set.
fn trace_lines() -> usize {
    if std::env::var_os("REPLACE_REPLICA_TRACE").is_some() {
        usize::MAX
    } else {
        120
    }
}

/// Fails with the trace (see [`trace_lines`]).
fn fail(run: &ScriptedRun, what: String) -> ! {
    print_trace_tail(run.trace(), trace_lines());
    panic!("{what}");
}

fn check(run: &ScriptedRun, ok: bool, what: impl FnOnce() -> String) {
    if !ok {
        fail(run, what());
    }
}

fn assert_no_violation(run: &ScriptedRun, seed: u64) {
    check(run, run.violations().is_empty(), || {
        format!("seed {seed}: violations: {:?}", run.violations())
    });
}

/// Runs the checks over whole logs and histories (log matching, linearizability) too.
fn finish(run: ScriptedRun, seed: u64) {
    assert_no_violation(&run, seed);
    let trace = run.trace().to_vec();
    let violations = run.finish();
    if !violations.is_empty() {
        print_trace_tail(&trace, trace_lines());
        panic!("seed {seed}: violations: {violations:?}");
    }
}

fn wait_for_leader(run: &mut ScriptedRun, seed: u64, ticks_max: u64) -> NodeId {
    if run.run_until(ticks_max, |r| r.leader().is_some()).is_none() {
        fail(
            run,
            format!("seed {seed}: no leader within {ticks_max} ticks"),
        );
    }
    run.leader().expect("checked")
}

// ---------------------------------------------------------------------------------------------
// The manager and a writer.

/// Where the replacement stands, as the manager sees it on the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No leader to talk to.
    NoLeader,
    /// Waiting for the leader to apply the interim policy that stops counting on X's group.
    PolicyBefore,
    /// S is not a member: `AddLearner(S)` proposed (again, if it was lost).
    AddLearner,
    /// S is a learner, more than the allowed lag behind the leader.
    CatchUp,
    /// S is caught up: the joint change proposed (again, if it was lost).
    Replace,
    /// The leader is in the joint configuration; the core leaves it on its own.
    Joint,
    /// X is out and S votes: waiting for the leader to apply the policy naming S.
    PolicyAfter,
    /// Done.
    Done,
}

/// The manager's side of one replacement of `old` (X) by `new` (S).
struct Replacement {
    old: NodeId,
    new: NodeId,
    /// See [`LAG_MAX`].
    lag_max: u64,
    /// Proposed (with the early switch) and applied by the leader before step 3: needed when X is
    /// the only node of a site group.
    policy_before: Option<Policy>,
    /// Step 6.
    policy_after: Option<Policy>,
    /// A membership change is proposed again after this many ticks without effect.
    retry_ticks: u64,
    /// A policy is proposed again after this many ticks without being applied (policy entries,
    /// unlike membership changes, are not deduplicated by the core).
    policy_retry_ticks: u64,
    conf_proposed_at: Option<u64>,
    policy_proposed_at: Option<u64>,
    /// Membership changes a leader accepted: the steps, that leader, and the tick.
    accepted: Vec<(Vec<ConfChangeStep>, NodeId, u64)>,
    /// For each accepted joint change: S's matched index at the leader, and its last index.
    lag_at_joint: Vec<(LogIndex, LogIndex)>,
}

impl Replacement {
    fn new(old: NodeId, new: NodeId, lag_max: u64) -> Self {
        Self {
            old,
            new,
            lag_max,
            policy_before: None,
            policy_after: None,
            retry_ticks: 3,
            policy_retry_ticks: 2 * ELECTION_TICKS,
            conf_proposed_at: None,
            policy_proposed_at: None,
            accepted: Vec::new(),
            lag_at_joint: Vec::new(),
        }
    }

    fn joint_change(&self) -> Vec<ConfChangeStep> {
        vec![
            ConfChangeStep::AddVoter(self.new),
            ConfChangeStep::RemoveNode(self.old),
        ]
    }

    /// How many joint changes leaders accepted (more than one: a proposal was lost).
    fn joint_proposals(&self) -> usize {
        let joint = self.joint_change();
        self.accepted
            .iter()
            .filter(|(steps, _, _)| *steps == joint)
            .count()
    }

    /// The membership changes accepted, in order.
    fn changes(&self) -> Vec<Vec<ConfChangeStep>> {
        self.accepted
            .iter()
            .map(|(steps, _, _)| steps.clone())
            .collect()
    }

    /// Whether `leader` accepted the joint change at the current tick.
    fn joint_proposed_now(&self, run: &ScriptedRun, leader: NodeId) -> bool {
        self.accepted.last().is_some_and(|(steps, at, tick)| {
            *steps == self.joint_change() && *at == leader && *tick == run.now_ticks()
        })
    }

    /// Looks at the leader and takes the next step, if it is time to.
    fn step(&mut self, run: &mut ScriptedRun) -> Phase {
        let Some(leader) = run.leader() else {
            return Phase::NoLeader;
        };
        let conf = run.conf(leader).expect("the leader runs");
        if conf.is_joint() {
            return Phase::Joint;
        }
        let now = run.now_ticks();
        let new_votes = conf.voters.contains(&self.new);
        let old_member = conf.all_nodes().contains(&self.old);
        if new_votes && !old_member {
            return match self.policy_after.clone() {
                Some(policy) if run.policy(leader) != Some(policy.clone()) => {
                    self.propose_policy(run, &policy, now);
                    Phase::PolicyAfter
                }
                _ => Phase::Done,
            };
        }
        check(run, old_member && !new_votes, || {
            format!("leader {leader} has applied an unexpected configuration {conf:?}")
        });
        if let Some(policy) = self.policy_before.clone()
            && run.policy(leader) != Some(policy.clone())
        {
            self.propose_policy(run, &policy, now);
            return Phase::PolicyBefore;
        }
        if !conf.learners.contains(&self.new) {
            self.propose_conf_change(run, leader, vec![ConfChangeStep::AddLearner(self.new)]);
            return Phase::AddLearner;
        }
        let Some((matched, _, _)) = run.progress(leader, self.new) else {
            return Phase::CatchUp;
        };
        let last = run.last_index(leader).expect("the leader runs");
        if matched.get() + self.lag_max < last.get() {
            return Phase::CatchUp;
        }
        if self.propose_conf_change(run, leader, self.joint_change()) {
            self.lag_at_joint.push((matched, last));
        }
        Phase::Replace
    }

    /// Proposes `steps` at `leader` unless a proposal was made recently. Returns whether the
    /// leader accepted it.
    fn propose_conf_change(
        &mut self,
        run: &mut ScriptedRun,
        leader: NodeId,
        steps: Vec<ConfChangeStep>,
    ) -> bool {
        let now = run.now_ticks();
        if self
            .conf_proposed_at
            .is_some_and(|at| now < at + self.retry_ticks)
        {
            return false;
        }
        self.conf_proposed_at = Some(now);
        let accepted = run.propose_conf_change(leader, &steps).is_ok();
        if accepted {
            self.accepted.push((steps, leader, now));
        }
        accepted
    }

    fn propose_policy(&mut self, run: &mut ScriptedRun, policy: &Policy, now: u64) {
        if self
            .policy_proposed_at
            .is_some_and(|at| now < at + self.policy_retry_ticks)
        {
            return;
        }
        if run.propose_policy(policy, true).is_ok() {
            self.policy_proposed_at = Some(now);
        }
    }
}

/// Writes with unique keys (`w1`, `w2`, ...; the clients use others), proposed at whoever leads.
#[derive(Default)]
struct Writer {
    next: u64,
}

impl Writer {
    fn write(&mut self, run: &mut ScriptedRun) {
        let Some(leader) = run.leader() else {
            return;
        };
        self.next += 1;
        let _ = run.propose_write(leader, &format!("w{}", self.next), self.next);
    }
}

/// A log of a few hundred entries: two writes a tick for `ticks` ticks. Long enough that a new
/// node is more than [`LAG_MAX`] entries behind at first.
fn write_for(run: &mut ScriptedRun, writer: &mut Writer, ticks: u64) {
    for _ in 0..ticks {
        writer.write(run);
        writer.write(run);
        run.run_ticks(1);
    }
}

/// Runs the manager, one write per tick and `hook` (faults, given the phase and the manager)
/// tick by tick until the replacement is done, for at most `ticks_max` ticks. Returns the phase
/// reached.
fn drive(
    run: &mut ScriptedRun,
    manager: &mut Replacement,
    writer: &mut Writer,
    ticks_max: u64,
    mut hook: impl FnMut(&mut ScriptedRun, Phase, &Replacement),
) -> Phase {
    let mut phase = Phase::NoLeader;
    for _ in 0..ticks_max {
        phase = manager.step(run);
        if phase == Phase::Done {
            break;
        }
        hook(run, phase, manager);
        writer.write(run);
        run.run_ticks(1);
    }
    phase
}

/// Once the replacement is done and every voter runs: the leader's configuration is exactly
/// `voters` (joint left, no learner); every voter catches up, holds that configuration and every
/// acknowledged write; and the leader replicates to nobody else (X does not count).
fn check_replaced(
    run: &mut ScriptedRun,
    seed: u64,
    voters: &BTreeSet<NodeId>,
    old: NodeId,
    ticks_max: u64,
) {
    // The leader elected last: it holds every committed entry. A stale leader (cut off with
    // check-quorum off) may still believe it leads just after a heal, with an old log.
    let latest = run.run_until(ticks_max, |r| {
        r.leader().is_some_and(|leader| {
            r.leader_changes()
                .last()
                .is_some_and(|change| change.node == leader)
        })
    });
    check(run, latest.is_some(), || {
        format!("seed {seed}: the last leader elected does not lead")
    });
    let leader = run.leader().expect("checked");
    let expected = ConfState {
        voters: voters.clone(),
        ..ConfState::default()
    };
    check(run, run.conf(leader) == Some(expected.clone()), || {
        format!(
            "seed {seed}: leader {leader} has {:?}, not {expected:?}",
            run.conf(leader)
        )
    });
    check(run, run.progress(leader, old).is_none(), || {
        format!("seed {seed}: leader {leader} still tracks the removed {old}")
    });
    // The leader holds every committed entry (leader completeness), but a new one may not know
    // yet that its predecessor's last entries are committed: wait for its whole log.
    let last = run.last_index(leader).expect("the leader runs");
    let acknowledged = run.acknowledged_writes().to_vec();
    check(run, !acknowledged.is_empty(), || {
        format!("seed {seed}: no write was acknowledged")
    });
    let caught_up = run.run_until(ticks_max, |r| {
        voters.iter().all(|id| r.applied(*id) >= Some(last))
    });
    check(run, caught_up.is_some(), || {
        let applied: Vec<_> = voters.iter().map(|id| (*id, run.applied(*id))).collect();
        format!("seed {seed}: voters did not apply up to {last}: {applied:?}")
    });
    for id in voters {
        check(run, run.conf(*id) == Some(expected.clone()), || {
            format!("seed {seed}: {id} has {:?}", run.conf(*id))
        });
        for (key, value) in &acknowledged {
            check(run, run.value(*id, key) == Some(*value), || {
                format!(
                    "seed {seed}: acknowledged write {key}={value} missing on {id} (has {:?})",
                    run.value(*id, key)
                )
            });
        }
    }
}

/// A scenario of these voters with two clients working throughout.
fn scenario(voters: &[u64], commit_rule: CommitRule, leader_policy: LeaderPolicy) -> Scenario {
    Scenario {
        clients: 2,
        commit_rule,
        leader_policy,
        ..Scenario::fixed(voters)
    }
}

// ---------------------------------------------------------------------------------------------
// a. The happy path.

#[test]
fn replacing_a_dead_voter_by_a_joining_node_keeps_every_acknowledged_write() {
    // 3 voters by majority, and 5 voters over two sites (1, 2, 3 and 4, 5); X a follower or the
    // leader when it dies.
    let setups: [(&[u64], CommitRule); 2] = [
        (&[1, 2, 3], CommitRule::Majority),
        (&[1, 2, 3, 4, 5], sites(&[&[1, 2, 3], &[4, 5]])),
    ];
    for (voters, rule) in setups {
        for x_leads in [false, true] {
            for lag_max in [0, LAG_MAX] {
                for seed in 0..3 {
                    happy_path(seed, voters, &rule, x_leads, lag_max);
                }
            }
        }
    }
}

fn happy_path(seed: u64, voters: &[u64], rule: &CommitRule, x_leads: bool, lag_max: u64) {
    let mut run = ScriptedRun::new(seed, scenario(voters, rule.clone(), LeaderPolicy::Any));
    let first = wait_for_leader(&mut run, seed, 20 * ELECTION_TICKS);
    let mut writer = Writer::default();
    write_for(&mut run, &mut writer, 150);
    let old = if x_leads {
        first
    } else {
        ids(voters)
            .into_iter()
            .rfind(|id| *id != first)
            .expect("3 voters or more")
    };
    let new = n(voters.len() as u64 + 1);
    run.crash(old);
    let leader = wait_for_leader(&mut run, seed, 20 * ELECTION_TICKS);
    let mark = run.leader_changes().len();
    run.start_joining(new);
    let mut manager = Replacement::new(old, new, lag_max);
    manager.policy_after = (*rule != CommitRule::Majority).then(|| Policy {
        commit_rule: renamed(rule, old, new),
        leader_policy: LeaderPolicy::Any,
    });
    let phase = drive(
        &mut run,
        &mut manager,
        &mut writer,
        40 * ELECTION_TICKS,
        |_, _, _| {},
    );
    check(&run, phase == Phase::Done, || {
        format!("seed {seed}: the replacement stopped at {phase:?}")
    });
    // One learner, one joint change, proposed once each; S was within the lag when it was.
    assert_eq!(
        manager.changes(),
        vec![
            vec![ConfChangeStep::AddLearner(new)],
            manager.joint_change()
        ],
        "seed {seed}"
    );
    let (matched, last) = manager.lag_at_joint[0];
    assert!(matched.get() + lag_max >= last.get(), "seed {seed}");
    // The new node never disturbed the leader: no election from the first step to the last.
    check(&run, run.leader_changes().len() == mark, || {
        format!(
            "seed {seed}: leader changes during the replacement: {:?}",
            &run.leader_changes()[mark..]
        )
    });
    assert_eq!(run.leader(), Some(leader));
    if let Some(policy) = &manager.policy_after {
        assert_eq!(run.commit_rule(leader).as_ref(), Some(&policy.commit_rule));
    }
    let mut final_voters = ids(voters);
    final_voters.remove(&old);
    final_voters.insert(new);
    check_replaced(&mut run, seed, &final_voters, old, 20 * ELECTION_TICKS);
    eprintln!(
        "seed {seed} voters {voters:?} x_leads {x_leads} lag {lag_max}: {} acknowledged writes, \
         S matched {matched} of {last} at the joint change",
        run.acknowledged_writes().len()
    );
    finish(run, seed);
}

// ---------------------------------------------------------------------------------------------
// b. Catching up by snapshot.

#[test]
fn a_joining_node_catches_up_by_snapshot_when_the_leader_compacted_its_log() {
    for lag_max in [0, LAG_MAX] {
        for seed in 0..4 {
            let mut run = ScriptedRun::new(
                seed,
                scenario(&[1, 2, 3], CommitRule::Majority, LeaderPolicy::Any),
            );
            let leader = wait_for_leader(&mut run, seed, 20 * ELECTION_TICKS);
            let (old, new) = (n(leader.get() % 3 + 1), n(4));
            run.crash(old);
            // A long log, then every live node compacts it: S's start lies far before the
            // leader's first entry.
            let mut writer = Writer::default();
            write_for(&mut run, &mut writer, 150);
            run.run_ticks(2);
            let mut compacted = LogIndex::ZERO;
            for id in run.running() {
                compacted = compacted.max(run.compact(id).expect("runs"));
            }
            check(&run, compacted.get() > 250, || {
                format!("seed {seed}: compacted only up to {compacted}")
            });
            run.start_joining(new);
            // S is cut off while it is added; the leader compacts again meanwhile (its snapshot
            // then carries S as a learner), and S is let through.
            run.partition(&[new]);
            let mut manager = Replacement::new(old, new, lag_max);
            let mut cut_off = true;
            let mut second = LogIndex::ZERO;
            let phase = drive(
                &mut run,
                &mut manager,
                &mut writer,
                60 * ELECTION_TICKS,
                |r, p, _| {
                    if cut_off && p == Phase::CatchUp {
                        let leader = r.leader().expect("a leader is catching S up");
                        r.run_ticks(2);
                        second = r.compact(leader).expect("the leader runs");
                        r.heal_network();
                        cut_off = false;
                    }
                },
            );
            check(&run, phase == Phase::Done, || {
                format!("seed {seed}: the replacement stopped at {phase:?}")
            });
            let installed = run.snapshot_index(new).expect("S exists");
            check(&run, second > compacted && installed >= second, || {
                format!(
                    "seed {seed}: S's snapshot is at {installed}; the leader compacted to \
                     {compacted}, then {second}"
                )
            });
            let mut voters = ids(&[1, 2, 3]);
            voters.remove(&old);
            voters.insert(new);
            check_replaced(&mut run, seed, &voters, old, 20 * ELECTION_TICKS);
            eprintln!(
                "seed {seed} lag {lag_max}: S installed the snapshot at {installed} (compacted \
                 to {compacted}, then {second})"
            );
            finish(run, seed);
        }
    }
}

/// The lag rule alone, on a log shorter than the lag: S counts as caught up before it has
/// received anything (its matched index is 0), and becomes a voter that holds nothing. Safety
/// holds, but the group has lost its margin: with S unreachable, one more voter down stops every
/// commit. A manager that also waits for S to have installed the snapshot (matched > 0, or the
/// leader's progress for S in `Replicate`) would not promote it.
#[test]
fn the_lag_rule_alone_promotes_a_node_that_holds_nothing_when_the_log_is_short() {
    for seed in 0..4 {
        let mut run = ScriptedRun::new(
            seed,
            scenario(&[1, 2, 3], CommitRule::Majority, LeaderPolicy::Any),
        );
        let leader = wait_for_leader(&mut run, seed, 20 * ELECTION_TICKS);
        let (old, new) = (n(leader.get() % 3 + 1), n(4));
        let other = n(old.get() % 3 + 1);
        run.crash(old);
        // S starts, but its host cannot be reached.
        run.start_joining(new);
        run.partition(&[new]);
        let mut manager = Replacement::new(old, new, LAG_MAX);
        let mut writer = Writer::default();
        let phase = drive(
            &mut run,
            &mut manager,
            &mut writer,
            20 * ELECTION_TICKS,
            |_, _, _| {},
        );
        check(&run, phase == Phase::Done, || {
            format!("seed {seed}: the replacement stopped at {phase:?}")
        });
        let (matched, last) = manager.lag_at_joint[0];
        check(
            &run,
            matched == LogIndex::ZERO && run.last_index(new) == Some(LogIndex::ZERO),
            || format!("seed {seed}: S matched {matched} of {last} when it was promoted"),
        );
        // Voters {leader, other, S}, S holding nothing: without `other`, nothing commits.
        run.crash(other);
        run.run_ticks(1);
        let commit = run.commit_index(leader);
        for _ in 0..5 * ELECTION_TICKS {
            writer.write(&mut run);
            run.run_ticks(1);
        }
        check(&run, run.commit_index(leader) == commit, || {
            format!("seed {seed}: commits went on with one voter of three up to date")
        });
        eprintln!(
            "seed {seed}: S promoted at matched {matched} of {last}; commit stuck at {commit:?} \
             with {other} down"
        );
        run.restart(other);
        run.heal_network();
        check_replaced(
            &mut run,
            seed,
            &ids(&[1, 2, 3, 4])
                .into_iter()
                .filter(|id| *id != old)
                .collect(),
            old,
            30 * ELECTION_TICKS,
        );
        finish(run, seed);
    }
}

// ---------------------------------------------------------------------------------------------
// c. The leader fails in the middle of the sequence.

/// When the leader fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FaultPoint {
    /// Once it applied `AddLearner(S)`, before S is caught up (between steps 3 and 5).
    LearnerAdded,
    /// At once after it accepted the joint change (nothing of it persisted yet).
    JointProposed,
    /// Once it applied the joint configuration, before the group left it.
    Joint,
}

/// How the leader fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LeaderFault {
    /// It crashes and stays down until the replacement is done.
    Crash,
    /// It crashes and restarts three election timeouts later.
    CrashRestart,
    /// It is cut off, both ways, for three election timeouts.
    Partition,
}

#[test]
fn the_leader_failing_mid_replacement_loses_no_write_and_the_change_completes() {
    let points = [
        FaultPoint::LearnerAdded,
        FaultPoint::JointProposed,
        FaultPoint::Joint,
    ];
    let mut reproposed = 0;
    for point in points {
        // With 3 voters, X down and the leader down leave no quorum: that leader must come back.
        let cases: [(&[u64], LeaderFault); 5] = [
            (&[1, 2, 3, 4, 5], LeaderFault::Crash),
            (&[1, 2, 3, 4, 5], LeaderFault::CrashRestart),
            (&[1, 2, 3, 4, 5], LeaderFault::Partition),
            (&[1, 2, 3], LeaderFault::CrashRestart),
            (&[1, 2, 3], LeaderFault::Partition),
        ];
        for (voters, fault) in cases {
            for seed in 0..3 {
                if leader_fault(seed, voters, point, fault) {
                    reproposed += 1;
                }
            }
        }
    }
    // A joint change lost with its leader must be proposed again by the manager: some of the
    // runs above must show it, or the manager's retry went untested.
    assert!(reproposed > 0, "no run lost a joint change proposal");
}

/// Returns whether the manager had to propose the joint change again.
fn leader_fault(seed: u64, voters: &[u64], point: FaultPoint, fault: LeaderFault) -> bool {
    let mut run = ScriptedRun::new(
        seed,
        scenario(voters, CommitRule::Majority, LeaderPolicy::Any),
    );
    let leader = wait_for_leader(&mut run, seed, 20 * ELECTION_TICKS);
    let count = voters.len() as u64;
    let (old, new) = (n(leader.get() % count + 1), n(count + 1));
    let mut writer = Writer::default();
    write_for(&mut run, &mut writer, 100);
    run.crash(old);
    run.start_joining(new);
    let mut manager = Replacement::new(old, new, LAG_MAX);
    let mut failed: Option<(NodeId, u64)> = None;
    let mut recovered = false;
    let phase = drive(
        &mut run,
        &mut manager,
        &mut writer,
        100 * ELECTION_TICKS,
        |r, p, m| {
            if let Some((victim, at)) = failed {
                if !recovered
                    && fault != LeaderFault::Crash
                    && r.now_ticks() >= at + 3 * ELECTION_TICKS
                {
                    match fault {
                        LeaderFault::CrashRestart => r.restart(victim),
                        _ => r.heal_network(),
                    }
                    recovered = true;
                }
                return;
            }
            let Some(leader) = r.leader() else {
                return;
            };
            let ready = match (point, p) {
                (FaultPoint::LearnerAdded, Phase::AddLearner) => r
                    .run_until_event(ELECTION_TICKS, |r| {
                        r.conf(leader).is_some_and(|c| c.learners.contains(&new))
                    }),
                (FaultPoint::JointProposed, Phase::Replace) => m.joint_proposed_now(r, leader),
                (FaultPoint::Joint, Phase::Replace) => r.run_until_event(ELECTION_TICKS, |r| {
                    r.conf(leader).is_some_and(|c| c.is_joint())
                }),
                _ => false,
            };
            if !ready {
                return;
            }
            match fault {
                LeaderFault::Crash | LeaderFault::CrashRestart => r.crash(leader),
                LeaderFault::Partition => r.partition(&[leader]),
            }
            failed = Some((leader, r.now_ticks()));
        },
    );
    let (victim, _) = failed.unwrap_or_else(|| {
        fail(
            &run,
            format!("seed {seed}: the fault point {point:?} was never reached"),
        )
    });
    check(&run, phase == Phase::Done, || {
        format!("seed {seed} {voters:?} {point:?} {fault:?}: the replacement stopped at {phase:?}")
    });
    if point == FaultPoint::Joint {
        // The joint entry was committed (the leader applied it): whoever leads next inherits the
        // joint configuration and leaves it on its own, with no new proposal.
        check(&run, manager.joint_proposals() == 1, || {
            format!(
                "seed {seed}: joint change proposed {} times",
                manager.joint_proposals()
            )
        });
    }
    // Every voter back, then every acknowledged write on each, S included.
    run.restart(victim);
    run.heal_network();
    let mut final_voters = ids(voters);
    final_voters.remove(&old);
    final_voters.insert(new);
    check_replaced(&mut run, seed, &final_voters, old, 30 * ELECTION_TICKS);
    let reproposed = manager.joint_proposals() > 1;
    eprintln!(
        "seed {seed} {voters:?} {point:?} {fault:?}: leader {victim} failed; joint change \
         proposed {} times; leaders {:?}",
        manager.joint_proposals(),
        run.leader_changes()
            .iter()
            .map(|c| c.node.get())
            .collect::<Vec<_>>()
    );
    finish(run, seed);
    reproposed
}

// ---------------------------------------------------------------------------------------------
// d. The replaced node comes back.

/// When X comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Return {
    /// After the replacement is done, with the state it had when it died.
    AfterRemoval,
    /// Between steps 3 and 5: it catches up as a voter, then the joint change removes it.
    DuringCatchUp,
}

#[test]
fn the_replaced_node_coming_back_neither_disturbs_nor_leads_nor_counts() {
    for pre_vote in [true, false] {
        for back in [Return::AfterRemoval, Return::DuringCatchUp] {
            for seed in 0..4 {
                x_returns(seed, pre_vote, back);
            }
        }
    }
}

fn x_returns(seed: u64, pre_vote: bool, back: Return) {
    let scenario = Scenario {
        pre_vote,
        ..scenario(&[1, 2, 3], CommitRule::Majority, LeaderPolicy::Any)
    };
    let mut run = ScriptedRun::new(seed, scenario);
    let leader = wait_for_leader(&mut run, seed, 20 * ELECTION_TICKS);
    let (old, new) = (n(leader.get() % 3 + 1), n(4));
    let mut writer = Writer::default();
    for _ in 0..10 {
        writer.write(&mut run);
        run.run_ticks(1);
    }
    run.crash(old);
    let crashed_at = run.leader_changes().len();
    run.start_joining(new);
    let mut manager = Replacement::new(old, new, LAG_MAX);
    let mut returned = false;
    let phase = drive(
        &mut run,
        &mut manager,
        &mut writer,
        40 * ELECTION_TICKS,
        |r, p, _| {
            if back == Return::DuringCatchUp && !returned && p == Phase::AddLearner {
                r.restart(old);
                returned = true;
            }
        },
    );
    check(&run, phase == Phase::Done, || {
        format!("seed {seed}: the replacement stopped at {phase:?}")
    });
    let leader = run.leader().expect("done means a leader");
    let mut voters = ids(&[1, 2, 3]);
    voters.remove(&old);
    voters.insert(new);
    if back == Return::AfterRemoval {
        run.restart(old);
    }
    check(&run, run.role(old).is_some(), || {
        format!("seed {seed}: X runs")
    });
    // Whatever was in flight to X when it was removed has arrived.
    run.run_ticks(2);
    let x_last = run.last_index(old).expect("X runs");
    let commit = run.commit_index(leader).expect("the leader runs");

    // X back and the group calm: 30 election timeouts with writes, no leader change at all, X
    // never leads, gets nothing (its log does not grow) and is not replicated to.
    let mark = run.leader_changes().len();
    for _ in 0..30 * ELECTION_TICKS {
        writer.write(&mut run);
        run.run_ticks(1);
        check(&run, run.role(old) != Some(Role::Leader), || {
            format!("seed {seed}: the removed {old} leads")
        });
    }
    check(&run, run.leader_changes().len() == mark, || {
        format!(
            "seed {seed}: leader changes with the removed {old} back: {:?}",
            &run.leader_changes()[mark..]
        )
    });
    check(
        &run,
        run.last_index(old) == Some(x_last) && run.progress(leader, old).is_none(),
        || format!("seed {seed}: the removed {old} is still replicated to"),
    );
    check(&run, run.commit_index(leader) > Some(commit), || {
        format!("seed {seed}: writes stopped committing with {old} back")
    });
    if back == Return::AfterRemoval {
        // It never learns of its removal: nobody talks to it.
        check(
            &run,
            run.conf(old).is_some_and(|c| c.voters.contains(&old)),
            || {
                format!(
                    "seed {seed}: {old} learnt of its removal: {:?}",
                    run.conf(old)
                )
            },
        );
    }

    // X does not count: cut the leader off together with X. Its commit index freezes, although
    // X, a voter in X's own eyes, is with it; the other side elects a leader, which is not X.
    run.partition(&[leader, old]);
    let frozen = run.commit_index(leader);
    let elected = run.run_until(20 * ELECTION_TICKS, |r| {
        check(r, r.role(old) != Some(Role::Leader), || {
            format!("seed {seed}: the removed {old} leads")
        });
        check(
            r,
            r.role(leader).is_none_or(|role| role != Role::Leader)
                || r.commit_index(leader) == frozen,
            || format!("seed {seed}: the cut-off leader {leader} committed with only {old}"),
        );
        r.leader().is_some_and(|id| id != leader)
    });
    check(&run, elected.is_some(), || {
        format!("seed {seed}: the majority side elected nobody")
    });
    run.heal_network();
    run.run_ticks(5 * ELECTION_TICKS);
    check(
        &run,
        !run.leader_changes()[crashed_at..]
            .iter()
            .any(|change| change.node == old),
        || format!("seed {seed}: the replaced {old} led"),
    );
    check_replaced(&mut run, seed, &voters, old, 30 * ELECTION_TICKS);
    finish(run, seed);
}

// ---------------------------------------------------------------------------------------------
// e. Site groups.

/// Elects node 1 (the preferred leader of these runs) and returns it.
fn wait_for_node_1(run: &mut ScriptedRun, seed: u64) {
    if run
        .run_until(30 * ELECTION_TICKS, |r| r.leader() == Some(n(1)))
        .is_none()
    {
        fail(
            run,
            format!("seed {seed}: the preferred node 1 does not lead"),
        );
    }
}

#[test]
fn x_sharing_its_site_group_with_a_live_node_is_replaced_and_s_counts_for_the_site() {
    // Sites {1} and {2, 3}; 1 leads (preferred). X = 3 dies; 2 acknowledges for the site, so
    // nothing stalls. Afterwards S acknowledges for the site in 2's place.
    let rule = sites(&[&[1], &[2, 3]]);
    let leader_policy = LeaderPolicy::Preferred(ids(&[1]));
    for lag_max in [0, LAG_MAX] {
        for seed in 0..4 {
            let mut run = ScriptedRun::new(
                seed,
                scenario(&[1, 2, 3], rule.clone(), leader_policy.clone()),
            );
            wait_for_node_1(&mut run, seed);
            let (old, new, mate) = (n(3), n(4), n(2));
            run.crash(old);
            run.start_joining(new);
            let mut manager = Replacement::new(old, new, lag_max);
            let after = Policy {
                commit_rule: renamed(&rule, old, new),
                leader_policy: leader_policy.clone(),
            };
            manager.policy_after = Some(after.clone());
            let mut writer = Writer::default();
            let phase = drive(
                &mut run,
                &mut manager,
                &mut writer,
                40 * ELECTION_TICKS,
                |_, _, _| {},
            );
            check(&run, phase == Phase::Done, || {
                format!("seed {seed}: the replacement stopped at {phase:?}")
            });
            check_replaced(&mut run, seed, &ids(&[1, 2, 4]), old, 20 * ELECTION_TICKS);
            for id in [1, 2, 4] {
                assert_eq!(run.policy(n(id)), Some(after.clone()), "seed {seed}");
            }

            // S now stands for the site: with 2 down, writes commit through 1 and S (the
            // durability checker verifies every commit holds a node of each site).
            run.crash(mate);
            let leader = run.leader().expect("1 leads");
            let commit = run.commit_index(leader).expect("runs");
            let acknowledged = run.acknowledged_writes().len();
            for _ in 0..3 * ELECTION_TICKS {
                writer.write(&mut run);
                run.run_ticks(1);
            }
            check(&run, run.commit_index(leader) > Some(commit), || {
                format!("seed {seed}: nothing commits with {mate} down and S in its site")
            });
            check(&run, run.acknowledged_writes().len() > acknowledged, || {
                format!("seed {seed}: no write acknowledged with {mate} down")
            });
            run.restart(mate);
            check_replaced(&mut run, seed, &ids(&[1, 2, 4]), old, 20 * ELECTION_TICKS);
            finish(run, seed);
        }
    }
}

/// What the manager proposes, before adding S, when X is alone in its site group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Interim {
    /// Drop X's group until S votes; name S in it at step 6.
    DropGroup,
    /// Name S in X's group at once: S is not a member yet, so the group is ignored until
    /// `AddLearner(S)` applies; from then on every commit waits for S.
    NameS,
}

/// The NameS run's cut of S.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    Open,
    /// S was cut off this tick.
    Closing,
    /// Since this many ticks, at this commit index.
    Closed {
        frozen: LogIndex,
        ticks: u64,
    },
    /// S let through again.
    Done,
}

#[test]
fn x_alone_in_its_site_group_stalls_every_commit_until_the_policy_stops_counting_on_it() {
    for interim in [Interim::DropGroup, Interim::NameS] {
        for seed in 0..4 {
            x_alone_in_its_group(seed, interim);
        }
    }
}

fn x_alone_in_its_group(seed: u64, interim: Interim) {
    // Three sites, one replica each, majority plus every site; 1 leads (preferred).
    let rule = sites(&[&[1], &[2], &[3]]);
    let leader_policy = LeaderPolicy::Preferred(ids(&[1]));
    let mut run = ScriptedRun::new(
        seed,
        scenario(&[1, 2, 3], rule.clone(), leader_policy.clone()),
    );
    wait_for_node_1(&mut run, seed);
    let (leader, old, new) = (n(1), n(3), n(4));
    let mut writer = Writer::default();
    for _ in 0..10 {
        writer.write(&mut run);
        run.run_ticks(1);
    }
    run.run_ticks(2);

    // X dies. The sequence as listed: S joins, the leader proposes AddLearner(S). Nothing
    // commits any more — not the writes, not the AddLearner: X's group has a member, which
    // counts though it is dead.
    run.crash(old);
    run.start_joining(new);
    let commit = run.commit_index(leader).expect("runs");
    let acknowledged = run.acknowledged_writes().len();
    let learner = run.propose_conf_change(leader, &[ConfChangeStep::AddLearner(new)]);
    check(&run, learner.is_ok(), || {
        format!("seed {seed}: the leader refused AddLearner: {learner:?}")
    });
    for _ in 0..10 * ELECTION_TICKS {
        writer.write(&mut run);
        run.run_ticks(1);
    }
    check(
        &run,
        run.leader() == Some(leader)
            && run.commit_index(leader) == Some(commit)
            && run.acknowledged_writes().len() == acknowledged
            && run.conf(leader).is_some_and(|c| !c.learners.contains(&new)),
        || {
            format!(
                "seed {seed}: expected a stall at commit {commit} with X alone in its group; \
                 leader {:?} commit {:?}, conf {:?}",
                run.leader(),
                run.commit_index(leader),
                run.conf(leader)
            )
        },
    );

    // The manager's way out: a policy that stops counting on X's group, proposed with the early
    // switch (the proposing leader counts by it at once, so it commits, and with it the pending
    // AddLearner and every stalled write).
    let after = Policy {
        commit_rule: renamed(&rule, old, new),
        leader_policy: leader_policy.clone(),
    };
    let before = match interim {
        Interim::DropGroup => Policy {
            commit_rule: without_group_of(&rule, old),
            leader_policy: leader_policy.clone(),
        },
        Interim::NameS => after.clone(),
    };
    let mut manager = Replacement::new(old, new, LAG_MAX);
    manager.policy_before = Some(before);
    manager.policy_after = Some(after.clone());
    // Under NameS, cut S off as soon as the leader has applied AddLearner(S): once what was in
    // flight has landed, every commit waits for S (groups count learners), until S is let
    // through and catches up.
    let mut gate = Gate::Open;
    let phase = drive(
        &mut run,
        &mut manager,
        &mut writer,
        60 * ELECTION_TICKS,
        |r, p, _| {
            if interim != Interim::NameS {
                return;
            }
            gate = match gate {
                Gate::Open if p == Phase::CatchUp || p == Phase::Replace => {
                    r.partition(&[new]);
                    Gate::Closing
                }
                Gate::Closing => Gate::Closed {
                    frozen: r.commit_index(leader).expect("the leader runs"),
                    ticks: 0,
                },
                Gate::Closed { frozen, ticks } if ticks < 5 * ELECTION_TICKS => {
                    check(r, r.commit_index(leader) == Some(frozen), || {
                        format!("seed {seed}: commits went on without the learner S of a group")
                    });
                    Gate::Closed {
                        frozen,
                        ticks: ticks + 1,
                    }
                }
                Gate::Closed { .. } => {
                    r.heal_network();
                    Gate::Done
                }
                other => other,
            };
        },
    );
    check(&run, phase == Phase::Done, || {
        format!("seed {seed} {interim:?}: the replacement stopped at {phase:?}")
    });
    check(&run, run.commit_index(leader) > Some(commit), || {
        format!("seed {seed}: the stalled writes never committed")
    });
    if interim == Interim::NameS {
        assert_eq!(gate, Gate::Done, "seed {seed}: S was never cut off");
    }
    // The AddLearner proposed during the stall was the one that applied: the manager's own
    // proposals were the joint change only.
    assert_eq!(
        manager.changes(),
        vec![manager.joint_change()],
        "seed {seed}"
    );
    check_replaced(&mut run, seed, &ids(&[1, 2, 4]), old, 20 * ELECTION_TICKS);
    for id in [1, 2, 4] {
        assert_eq!(run.policy(n(id)), Some(after.clone()), "seed {seed}");
    }
    eprintln!(
        "seed {seed} {interim:?}: stalled at {commit}; {} writes acknowledged in the end",
        run.acknowledged_writes().len()
    );
    finish(run, seed);
}

// ---------------------------------------------------------------------------------------------
// The sweep: the sequence under random faults.

/// Seeds the sweep runs (about 12 s in a debug build). Each runs the whole sequence under faults,
/// then heals and must finish it. A longer sweep: `REPLACE_REPLICA_SEEDS=0..20000 cargo test
/// --release -p raft-sim --test replace_replica random_faults -- --nocapture`.
const SWEEP_SEEDS: u64 = 1000;
/// Ticks of faults, at most (each seed draws its own).
const SWEEP_FAULT_TICKS_MAX: u64 = 300;

/// What one sweep seed did.
#[derive(Debug, Default)]
struct SweepRun {
    /// The replacement finished after the heal.
    done: bool,
    /// Where it stood when it did not.
    stuck_at: Option<Phase>,
    /// A leader was elected between S's start and the end of the replacement.
    leader_changed: bool,
    /// The joint change was proposed more than once (a proposal was lost).
    joint_reproposed: bool,
    /// S installed a snapshot with data (the leader's log was compacted past S's start).
    snapshot_with_data: bool,
    /// X came back after its removal.
    x_returned: bool,
    /// X was alone in a site group, so the manager changed the policy first.
    policy_first: bool,
}

#[test]
fn the_replacement_under_random_faults_keeps_every_property_and_completes_once_healed() {
    let seeds = sweep_seeds();
    let count = seeds.end - seeds.start;
    let mut stuck = Vec::new();
    let mut totals = [0u64; 5];
    for seed in seeds {
        let result = std::panic::catch_unwind(|| sweep_seed(seed)).unwrap_or_else(|panic| {
            eprintln!(
                "seed {seed} failed; replay with: REPLACE_REPLICA_SEEDS={seed} \
                 REPLACE_REPLICA_TRACE=1 cargo test -p raft-sim --test replace_replica \
                 random_faults -- --nocapture"
            );
            std::panic::resume_unwind(panic)
        });
        if !result.done {
            stuck.push((seed, result.stuck_at));
        }
        let kinds = [
            result.leader_changed,
            result.joint_reproposed,
            result.snapshot_with_data,
            result.x_returned,
            result.policy_first,
        ];
        for (total, seen) in totals.iter_mut().zip(kinds) {
            *total += u64::from(seen);
        }
    }
    eprintln!(
        "{count} seeds: leader changed mid-replacement in {}, joint change lost and \
         proposed again in {}, S caught up by a snapshot with data in {}, X came back in {}, \
         policy changed first in {}; stuck after the heal: {stuck:?}",
        totals[0], totals[1], totals[2], totals[3], totals[4]
    );
    // The sweep exercises what it claims (checked on the whole sweep, not on a replay).
    let whole = count >= SWEEP_SEEDS;
    for (total, what) in totals.iter().zip([
        "a leader change mid-replacement",
        "a lost joint change",
        "a catch-up by snapshot with data",
        "X coming back",
        "a policy changed first",
    ]) {
        assert!(
            !whole || *total * 20 >= count,
            "fewer than 5% of the seeds showed {what}: {total}"
        );
    }
    // Once every fault heals (every node but X up, a calm network), the manager's loop must
    // finish: the group has a quorum without X, and nothing else is left to wait for.
    assert!(
        stuck.is_empty(),
        "replacements stuck after the heal (seed, phase): {stuck:?}"
    );
}

/// The sweep's seeds: `0..SWEEP_SEEDS`, or `REPLACE_REPLICA_SEEDS` (`N` or `A..B`) to replay
/// some.
fn sweep_seeds() -> std::ops::Range<u64> {
    let Ok(text) = std::env::var("REPLACE_REPLICA_SEEDS") else {
        return 0..SWEEP_SEEDS;
    };
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .expect("REPLACE_REPLICA_SEEDS: N or A..B")
    };
    match text.split_once("..") {
        Some((a, b)) => parse(a)..parse(b),
        None => parse(&text)..parse(&text) + 1,
    }
}

/// One sweep seed: a random cluster, X dies, S joins, the manager replaces X while faults go on;
/// then everything heals and the replacement must finish with every acknowledged write on every
/// voter, S included. Safety is checked throughout, and X never leads again.
fn sweep_seed(seed: u64) -> SweepRun {
    let mut rng = SimRng::new(seed ^ 0x5eed_5eed_5eed_5eed);
    let mut scenario = Scenario::random(&mut SimRng::new(seed));
    let count = if rng.chance(0.5) { 3 } else { 5 };
    let voters: Vec<u64> = (1..=count).collect();
    let old = n(rng.range(1, count + 1));
    let new = n(count + 1);
    let commit_rule = match rng.range(0, 4) {
        0 | 1 => CommitRule::Majority,
        // Two sites, odd and even ids: X shares its site.
        2 => sites(&[
            &voters
                .iter()
                .copied()
                .filter(|id| id % 2 == 1)
                .collect::<Vec<_>>(),
            &voters
                .iter()
                .copied()
                .filter(|id| id % 2 == 0)
                .collect::<Vec<_>>(),
        ]),
        // X alone in its site.
        _ => {
            let others: Vec<u64> = voters
                .iter()
                .copied()
                .filter(|id| *id != old.get())
                .collect();
            sites(&[&others, &[old.get()]])
        }
    };
    let leader_policy = if rng.chance(0.25) {
        let others: Vec<NodeId> = voters
            .iter()
            .copied()
            .map(NodeId)
            .filter(|id| *id != old)
            .collect();
        LeaderPolicy::Preferred(BTreeSet::from([rng
            .pick(&others)
            .expect("2 others or more")]))
    } else {
        LeaderPolicy::Any
    };
    scenario.voters = voters.iter().copied().map(NodeId).collect();
    scenario.learners = Vec::new();
    scenario.spares = Vec::new();
    scenario.commit_rule = commit_rule.clone();
    scenario.leader_policy = leader_policy.clone();
    scenario.clients = rng.range(1, 4);
    let election_ticks = u64::from(scenario.election_timeout_ticks);
    let described = format!("{scenario} X={old} S={new}");

    let mut run = ScriptedRun::new(seed, scenario);
    let mut result = SweepRun::default();
    wait_for_leader(&mut run, seed, 30 * election_ticks);
    let mut writer = Writer::default();
    write_for(&mut run, &mut writer, rng.range(0, 120));
    run.crash(old);
    let mark = run.leader_changes().len();
    run.start_joining(new);

    let mut manager = Replacement::new(old, new, if rng.chance(0.5) { LAG_MAX } else { 0 });
    manager.retry_ticks = rng.range(1, election_ticks);
    manager.policy_retry_ticks = 2 * election_ticks;
    if commit_rule != CommitRule::Majority {
        let after = Policy {
            commit_rule: renamed(&commit_rule, old, new),
            leader_policy: leader_policy.clone(),
        };
        if alone_in_a_group(&commit_rule, old) {
            result.policy_first = true;
            manager.policy_before = Some(if rng.chance(0.5) {
                Policy {
                    commit_rule: without_group_of(&commit_rule, old),
                    leader_policy: leader_policy.clone(),
                }
            } else {
                after.clone()
            });
        }
        manager.policy_after = Some(after);
    }
    let x_returns = rng.chance(0.5);
    let fault_ticks = rng.range(50, SWEEP_FAULT_TICKS_MAX);
    let fault_rate = rng.range(5, 20) as f64 / 100.0;
    let all: Vec<NodeId> = voters.iter().copied().map(NodeId).chain([new]).collect();
    let mut phase = Phase::NoLeader;
    let mut done_mark = None;

    // Faults, while the manager works. X stays down until its removal is committed.
    for _ in 0..fault_ticks {
        let previous = phase;
        phase = manager.step(&mut run);
        if phase == Phase::Done && done_mark.is_none() {
            done_mark = Some(run.leader_changes().len());
        }
        let removed = removal_committed(&run, old);
        // Faults land often right where the sequence moves on, and on the leader that has just
        // taken the joint change (its entry may then be lost, or survive it).
        if let Some(leader) = run.leader()
            && manager.joint_proposed_now(&run, leader)
            && rng.chance(0.25)
        {
            if rng.chance(0.5) {
                run.crash(leader);
            } else {
                run.partition(&[leader]);
            }
        } else if rng.chance(fault_rate) || (phase != previous && rng.chance(0.3)) {
            inject_fault(
                &mut run,
                &mut rng,
                &all,
                old,
                x_returns && removed,
                &mut result,
            );
        }
        if rng.chance(0.7) {
            writer.write(&mut run);
        }
        run.run_ticks(1);
        assert_no_violation(&run, seed);
    }

    // Heal: every node up (X only if it came back), a calm network. The manager must finish.
    run.heal_network();
    run.set_network(NetworkOptions::calm());
    for id in &all {
        if *id != old || result.x_returned {
            run.restart(*id);
        }
    }
    let settle_ticks = 100 * election_ticks;
    for _ in 0..settle_ticks {
        phase = manager.step(&mut run);
        if phase == Phase::Done {
            break;
        }
        if x_returns && !result.x_returned && removal_committed(&run, old) && rng.chance(0.05) {
            run.restart(old);
            result.x_returned = true;
        }
        writer.write(&mut run);
        run.run_ticks(1);
        assert_no_violation(&run, seed);
    }
    result.done = phase == Phase::Done;
    let changes = &run.leader_changes()[mark..];
    check(
        &run,
        changes.iter().all(|change| change.node != old),
        || format!("seed {seed} ({described}): the replaced {old} led again: {changes:?}"),
    );
    // Elections after the manager's first accepted proposal, before the replacement was done.
    let until = done_mark.unwrap_or(run.leader_changes().len());
    let started_at = manager.accepted.first().map(|(_, _, tick)| *tick);
    result.leader_changed = run.leader_changes()[mark..until]
        .iter()
        .any(|change| started_at.is_some_and(|tick| change.at / TICK_UNITS > tick));
    result.joint_reproposed = manager.joint_proposals() > 1;
    result.snapshot_with_data = run.trace().iter().any(|line| {
        line.split_once(&format!(" {new} installs snapshot "))
            .and_then(|(_, at)| at.split_once('/'))
            .is_some_and(|(_, index)| index.trim() != "0")
    });
    if result.done {
        let mut final_voters: BTreeSet<NodeId> = voters.iter().copied().map(NodeId).collect();
        final_voters.remove(&old);
        final_voters.insert(new);
        check_replaced(&mut run, seed, &final_voters, old, 30 * election_ticks);
    } else {
        result.stuck_at = Some(phase);
        eprintln!("seed {seed} ({described}): stuck at {phase:?} after the heal");
        print_trace_tail(run.trace(), 40);
    }
    finish(run, seed);
    result
}

/// Whether some running node has applied a configuration in which X no longer votes in the
/// incoming half: the joint change is committed, so X, down since before it, can never win an
/// election again (a majority of its old voters holds entries it lacks).
fn removal_committed(run: &ScriptedRun, old: NodeId) -> bool {
    run.running().iter().any(|id| {
        run.conf(*id)
            .is_some_and(|conf| !conf.voters.is_empty() && !conf.voters.contains(&old))
    })
}

/// One random fault: crashes and restarts (X only restarts, and only once `x_may_return`),
/// partitions, a lossy or slow network, compaction.
fn inject_fault(
    run: &mut ScriptedRun,
    rng: &mut SimRng,
    all: &[NodeId],
    old: NodeId,
    x_may_return: bool,
    result: &mut SweepRun,
) {
    let running = run.running();
    let live: Vec<NodeId> = running.iter().copied().filter(|id| *id != old).collect();
    let crashed: Vec<NodeId> = all
        .iter()
        .copied()
        .filter(|id| !running.contains(id) && (*id != old || result.x_returned))
        .collect();
    match rng.range(0, 100) {
        0..15 => {
            if let Some(id) = rng.pick(&live) {
                run.crash(id);
            }
        }
        15..25 => {
            if let Some(leader) = run.leader() {
                run.crash(leader);
            }
        }
        25..42 => {
            if let Some(id) = rng.pick(&crashed) {
                run.restart(id);
            }
        }
        42..52 => {
            let side: Vec<NodeId> = all.iter().copied().filter(|_| rng.chance(0.5)).collect();
            if !side.is_empty() && side.len() < all.len() {
                run.partition(&side);
            }
        }
        52..60 => {
            if let Some(leader) = run.leader() {
                if rng.chance(0.3) {
                    run.cut_outbound(&[leader]);
                } else {
                    run.partition(&[leader]);
                }
            }
        }
        60..65 => {
            if let Some(id) = rng.pick(all) {
                run.cut_outbound(&[id]);
            }
        }
        65..78 => run.heal_network(),
        78..86 => {
            let options = if rng.chance(0.3) {
                NetworkOptions::calm()
            } else {
                NetworkOptions::random(rng)
            };
            run.set_network(options);
        }
        86..95 => {
            if let Some(id) = rng.pick(&running) {
                run.compact(id);
            }
        }
        _ => {
            if x_may_return && !result.x_returned {
                run.restart(old);
                result.x_returned = true;
            }
        }
    }
}
