//! `add-nodes N [voters=LIST] [learners=LIST] [options...]`: creates replicas.

use std::collections::VecDeque;

use goldenscript::Command;
use raft_core::{ConfState, Config, MemStorage, NodeId};

use super::env::{InteractionEnv, Node, Outcome, fmt_conf};
use super::parse;

impl InteractionEnv {
    pub(crate) fn add_nodes(&mut self, command: &Command) -> Outcome {
        let mut args = command.consume_args();
        let count: u64 = args.next_pos().ok_or("node count missing")?.parse()?;
        let mut conf = ConfState::default();
        let first = self.nodes.keys().next_back().map_or(1, |id| id.get() + 1);
        let mut template = Config::new(first);
        // Plain Raft unless the script asks for more, so each script shows what it relies on.
        template.pre_vote = false;
        template.check_quorum = false;
        template.lease_duration_ticks = 0;
        while let Some((key, value)) = args.next_key() {
            match key {
                "voters" => conf.voters = parse::ids(value)?,
                "learners" => conf.learners = parse::ids(value)?,
                "pre_vote" => template.pre_vote = value.parse()?,
                "check_quorum" => template.check_quorum = value.parse()?,
                "lease" => template.lease_duration_ticks = value.parse()?,
                "election" => template.election_timeout_ticks = value.parse()?,
                "heartbeat" => template.heartbeat_interval_ticks = value.parse()?,
                "inflight" => template.inflight_appends_max = value.parse()?,
                "max_append_bytes" => template.append_size_max_bytes = value.parse()?,
                "max_uncommitted_bytes" => template.uncommitted_size_max_bytes = value.parse()?,
                "max_committed_bytes" => {
                    template.committed_size_max_bytes_per_ready = value.parse()?;
                }
                "policy" => template.leader_policy = parse::policy(value)?,
                "commit" => template.commit_rule = parse::commit_rule(value)?,
                key => return Err(format!("unknown option {key}").into()),
            }
        }
        args.reject_next()?;

        let mut out = String::new();
        for id in first..first + count {
            let config = Config {
                id: NodeId(id),
                seed: id,
                ..template.clone()
            };
            let storage = if conf == ConfState::default() {
                MemStorage::default()
            } else {
                MemStorage::new_with_conf_state(conf.clone())
            };
            let node = Node::start(config, storage).map_err(|e| format!("node {id}: {e}"))?;
            self.nodes.insert(NodeId(id), node);
            self.outboxes.insert(NodeId(id), VecDeque::new());
            if conf == ConfState::default() {
                out += &format!("{id}: no configuration (joins through a snapshot)\n");
            } else {
                out += &format!("{id}: {}\n", fmt_conf(&conf));
            }
        }
        Ok(out)
    }
}
