//! `set-policy [ID...] POLICY` and `set-commit-rule [ID...] RULE`: change the leader policy or
//! the commit rule at runtime, on the given nodes or on all of them.

use std::error::Error;

use goldenscript::Command;
use raft_core::NodeId;

use super::env::{InteractionEnv, Outcome};
use super::parse;

impl InteractionEnv {
    pub(crate) fn set_policy(&mut self, command: &Command) -> Outcome {
        let (ids, value) = self.ids_and_value(command)?;
        let policy = parse::policy(value)?;
        for id in ids {
            self.node(id)?.config.leader_policy = policy.clone();
            self.raw(id)?.set_leader_policy(policy.clone());
        }
        Ok(String::new())
    }

    pub(crate) fn set_commit_rule(&mut self, command: &Command) -> Outcome {
        let (ids, value) = self.ids_and_value(command)?;
        let rule = parse::commit_rule(value)?;
        for id in ids {
            self.node(id)?.config.commit_rule = rule.clone();
            self.raw(id)?.set_commit_rule(rule.clone());
        }
        Ok(String::new())
    }

    /// Numeric positional arguments are node ids (all nodes when none); the one other positional
    /// argument is the value.
    fn ids_and_value<'a>(
        &self,
        command: &'a Command,
    ) -> Result<(Vec<NodeId>, &'a str), Box<dyn Error>> {
        let mut args = command.consume_args();
        let mut ids = Vec::new();
        let mut value = None;
        while let Some(arg) = args.next_pos() {
            if arg.chars().all(|c| c.is_ascii_digit()) {
                ids.push(parse::id(arg)?);
            } else if value.replace(arg).is_some() {
                return Err("more than one value given".into());
            }
        }
        args.reject_next()?;
        let value = value.ok_or("value missing")?;
        Ok((self.ids_or_all(ids), value))
    }
}
