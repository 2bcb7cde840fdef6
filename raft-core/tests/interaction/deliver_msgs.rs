//! `deliver-msgs [ID...] [drop=LIST] [type=KIND]` and `drop-msgs [ID...]`: the network.

use std::collections::{BTreeSet, VecDeque};
use std::error::Error;

use goldenscript::Command;
use raft_core::{Message, NodeId};

use super::env::{InteractionEnv, Outcome, Replica};
use super::parse;

impl InteractionEnv {
    pub(crate) fn deliver_msgs_command(&mut self, command: &Command) -> Outcome {
        let mut args = command.consume_args();
        let drop = args.take_key("drop").map(parse::ids).transpose()?;
        let kind = args.take_key("type");
        let mut ids = Vec::new();
        while let Some(arg) = args.next_pos() {
            ids.push(parse::id(arg)?);
        }
        args.reject_next()?;
        let drop = drop.unwrap_or_default();
        let targets: BTreeSet<NodeId> = if ids.is_empty() {
            self.recipients()
        } else {
            ids.into_iter().chain(drop.iter().copied()).collect()
        };
        let mut out = String::new();
        for to in targets {
            out += &self.deliver_to(to, drop.contains(&to), kind)?;
        }
        Ok(out)
    }

    pub(crate) fn drop_msgs(&mut self, command: &Command) -> Outcome {
        let ids = parse::positional_ids(command)?;
        let targets: BTreeSet<NodeId> = if ids.is_empty() {
            self.recipients()
        } else {
            ids.into_iter().collect()
        };
        let mut out = String::new();
        for to in targets {
            for message in self.take_messages(to, None) {
                out += &format!("dropped: {message}\n");
            }
        }
        Ok(out)
    }

    /// Every node some queued message is addressed to.
    pub(crate) fn recipients(&self) -> BTreeSet<NodeId> {
        self.outboxes
            .values()
            .flatten()
            .map(|message| message.to)
            .collect()
    }

    /// Removes the queued messages addressed to `to` (of kind `kind`, if given), in sender
    /// order and, per sender, in send order.
    fn take_messages(&mut self, to: NodeId, kind: Option<&str>) -> Vec<Message> {
        let mut taken = Vec::new();
        for outbox in self.outboxes.values_mut() {
            let mut kept = VecDeque::with_capacity(outbox.len());
            for message in outbox.drain(..) {
                if message.to == to && kind.is_none_or(|kind| message.body.kind() == kind) {
                    taken.push(message);
                } else {
                    kept.push_back(message);
                }
            }
            *outbox = kept;
        }
        taken
    }

    /// Steps every queued message addressed to `to` into it (or discards them), printing each.
    pub(crate) fn deliver_to(
        &mut self,
        to: NodeId,
        drop: bool,
        kind: Option<&str>,
    ) -> Result<String, Box<dyn Error>> {
        let mut out = String::new();
        for message in self.take_messages(to, kind) {
            let why_lost = if drop {
                Some("dropped".to_owned())
            } else if !self.connected(message.from, to) {
                Some("dropped: partitioned".to_owned())
            } else if !self.nodes.contains_key(&to) {
                Some(format!("dropped: no node {to}"))
            } else if !self.is_up(to) {
                Some(format!("dropped: {to} is down"))
            } else {
                None
            };
            if let Some(why) = why_lost {
                out += &format!("{message} ({why})\n");
                continue;
            }
            out += &format!("{message}\n");
            let node = self.node(to)?;
            let Replica::Up(raw) = &mut node.replica else {
                unreachable!("checked above that {to} is up");
            };
            if let Err(e) = raw.step(message) {
                out += &format!("  error: {}\n", parse::core_error(e));
            }
        }
        Ok(out)
    }
}
