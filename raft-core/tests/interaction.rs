//! Golden-file interaction tests for the Raft core, in the style of etcd-io/raft's
//! `interaction_test.go`: each script in `testdata/` drives a small cluster of [`RawNode`]s
//! through a command language (campaign, propose, process-ready, deliver-msgs, stabilize,
//! partition, tick, crash, ...) and records every `Ready` and every message as a transcript.
//!
//! If this test fails, run with UPDATE_GOLDENFILES=1 and inspect the diff; only commit the
//! changes if you understand what caused them.
//!
//! ```sh
//! UPDATE_GOLDENFILES=1 cargo test -p raft-core --test interaction
//! git diff raft-core/testdata
//! ```
//!
//! The command language is documented in `interaction/env.rs`.
//!
//! [`RawNode`]: raft_core::RawNode

mod interaction {
    mod add_nodes;
    mod campaign;
    mod compact;
    mod crash;
    mod deliver_msgs;
    pub(crate) mod env;
    mod parse;
    mod partition;
    mod policy;
    mod process_ready;
    mod propose;
    mod read_index;
    mod stabilize;
    mod state_machine;
    mod status;
    mod tick;
    mod transfer_leader;
}

use interaction::env::InteractionEnv;

/// One `#[test]` per script in `testdata/`, each with a fresh environment, and the list of them.
macro_rules! golden_scripts {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() -> std::io::Result<()> {
                let path =
                    concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/", stringify!($name), ".txt");
                goldenscript::run(&mut InteractionEnv::default(), path)
            }
        )*

        const SCRIPTS: &[&str] = &[$(stringify!($name)),*];
    };
}

/// A script added to `testdata/` but not to the list below would silently never run.
#[test]
fn every_script_has_a_test() -> std::io::Result<()> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata");
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(script) = name.strip_suffix(".txt") {
            on_disk.push(script.to_owned());
        }
    }
    on_disk.sort();
    let mut listed: Vec<String> = SCRIPTS.iter().map(ToString::to_string).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "testdata/*.txt and golden_scripts! disagree"
    );
    Ok(())
}

golden_scripts!(
    election_single_node,
    election_three_nodes,
    prevote_partitioned_node_rejoins,
    check_quorum,
    replication_log_conflicts,
    replication_fast_backtracking,
    flow_control,
    proposal_batching,
    not_leader_fails_fast,
    read_index,
    lease_read,
    lease_after_quiescence,
    dropped_reads,
    learners,
    joint_consensus_add_voter,
    joint_consensus_both_majorities,
    joint_consensus_remove_leader,
    joint_consensus_promote_learner,
    joint_consensus_invalid_changes,
    joint_consensus_new_leader_leaves_joint,
    leader_transfer,
    leader_policy_forced,
    leader_policy_preferred,
    commit_rule_groups,
    snapshot_follower_behind,
    snapshot_new_node_joins,
    crash_before_persist,
    joint_consensus_campaign_waits_for_apply,
);
