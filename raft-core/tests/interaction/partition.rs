//! `partition LIST...` and `heal`: cut the network into groups, and join it again.

use std::collections::BTreeSet;

use goldenscript::Command;
use raft_core::NodeId;

use super::env::{InteractionEnv, Outcome, fmt_ids};
use super::parse;

impl InteractionEnv {
    pub(crate) fn partition(&mut self, command: &Command) -> Outcome {
        let mut args = command.consume_args();
        let mut groups: Vec<BTreeSet<NodeId>> = Vec::new();
        while let Some(group) = args.next_pos() {
            groups.push(parse::ids(group)?);
        }
        args.reject_next()?;
        if groups.is_empty() {
            return Err("partition needs at least one group".into());
        }
        let listed: BTreeSet<NodeId> = groups.iter().flatten().copied().collect();
        if listed.len() != groups.iter().map(BTreeSet::len).sum::<usize>() {
            return Err("a node is listed in two groups".into());
        }
        let rest: BTreeSet<NodeId> = self
            .nodes
            .keys()
            .filter(|id| !listed.contains(id))
            .copied()
            .collect();
        let mut out = String::new();
        for group in groups
            .iter()
            .chain(Some(&rest).filter(|rest| !rest.is_empty()))
        {
            out += &format!("{} ", fmt_ids(group));
        }
        self.partition = groups;
        Ok(format!("{}\n", out.trim_end()))
    }

    pub(crate) fn heal(&mut self, command: &Command) -> Outcome {
        command.consume_args().reject_next()?;
        self.partition.clear();
        Ok(String::new())
    }
}
