//! `crash ID` and `restart ID`.
//!
//! What survives a crash is what the node persisted: its `MemStorage` (log, snapshot, hard
//! state, applied configuration) and its state machine, which the application persists
//! atomically with the applied index. Everything else — entries appended but not yet handed
//! out in a Ready, messages not yet sent, volatile leader state — is lost. The restarted node is
//! given `Config::applied` = its state machine's applied index.

use goldenscript::Command;
use raft_core::{Config, RawNode, Storage as _};

use super::env::{InteractionEnv, Outcome, Replica, fmt_conf};
use super::parse;

impl InteractionEnv {
    pub(crate) fn crash(&mut self, command: &Command) -> Outcome {
        let mut out = String::new();
        for id in parse::positional_ids(command)? {
            let node = self.node(id)?;
            let Replica::Up(raw) = &mut node.replica else {
                return Err(format!("node {id} is already down").into());
            };
            if raw.has_ready() {
                // The Ready it would have handled next: none of it reaches disk or the network.
                let lost = raw.ready();
                out += &format!("> {id} crashed, losing its unhandled Ready:\n{lost}");
            } else {
                out += &format!("> {id} crashed with nothing unpersisted\n");
            }
            let storage = raw.storage().clone();
            node.replica = Replica::Down(Box::new(storage));
        }
        Ok(out)
    }

    pub(crate) fn restart(&mut self, command: &Command) -> Outcome {
        let mut out = String::new();
        for id in parse::positional_ids(command)? {
            let node = self.node(id)?;
            let Replica::Down(storage) = &node.replica else {
                return Err(format!("node {id} is not down").into());
            };
            let config = Config {
                applied: node.state.applied(),
                ..node.config.clone()
            };
            let raw = RawNode::new(config, (**storage).clone()).map_err(parse::core_error)?;
            let status = raw.status();
            let hs = status.hard_state;
            out += &format!(
                "> {id} restarted: term={} vote={} commit={} applied={} last={} first={} {}\n",
                hs.term,
                hs.vote,
                hs.commit,
                status.applied,
                status.last_index,
                raw.storage().first_index()?,
                fmt_conf(&status.conf_state)
            );
            node.replica = Replica::Up(Box::new(raw));
        }
        Ok(out)
    }
}
