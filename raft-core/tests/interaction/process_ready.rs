//! `process-ready ID...`: one turn of the Ready loop on each node — persist, send, apply,
//! advance — printing the Ready and what applying it did.

use std::error::Error;

use goldenscript::Command;
use raft_core::{EntryPayload, NodeId};

use super::env::{InteractionEnv, Outcome, Replica, fmt_conf};
use super::parse;
use super::state_machine::StateMachine;

impl InteractionEnv {
    pub(crate) fn process_ready_command(&mut self, command: &Command) -> Outcome {
        let ids = parse::positional_ids(command)?;
        if ids.is_empty() {
            return Err("process-ready needs node ids".into());
        }
        let mut out = String::new();
        for id in ids {
            out += &format!("> {id} handling Ready\n");
            match self.process_ready(id)? {
                Some(ready) => out += &ready,
                None => out += "  (nothing to do)\n",
            }
        }
        Ok(out)
    }

    /// Handles one Ready of node `id` if it has one, and returns its transcript.
    pub(crate) fn process_ready(&mut self, id: NodeId) -> Result<Option<String>, Box<dyn Error>> {
        let node = self.node(id)?;
        let Replica::Up(raw) = &mut node.replica else {
            return Err(format!("node {id} is down").into());
        };
        if !raw.has_ready() {
            return Ok(None);
        }
        let mut ready = raw.ready();
        // What the Ready says, with the messages held back to the end, after what applying it
        // did: they leave last.
        let shown = ready.to_string();
        let (sends, rest): (Vec<&str>, Vec<&str>) =
            shown.lines().partition(|line| line.starts_with("  send:"));
        let mut out: String = rest.iter().map(|line| format!("{line}\n")).collect();

        // 1. Persist: snapshot, entries, hard state.
        if let Some(snapshot) = &ready.snapshot {
            raw.storage_mut().apply_snapshot(snapshot.clone())?;
            node.state = StateMachine::from_snapshot(snapshot)?;
            out += &format!(
                "  installed snapshot: {} state={}\n",
                fmt_conf(&snapshot.metadata.conf_state),
                node.state.describe()
            );
        }
        raw.storage_mut().append(&ready.entries)?;
        if let Some(hard_state) = ready.hard_state {
            raw.storage_mut().set_hard_state(hard_state);
        }

        // 2. Send: into the outbox, for deliver-msgs.
        let messages = std::mem::take(&mut ready.messages);

        // 3. Apply.
        for entry in &ready.committed_entries {
            match &entry.payload {
                EntryPayload::Normal(data) => node.state.apply_data(entry.index, data),
                EntryPayload::Empty => node.state.apply_noop(entry.index),
                EntryPayload::ConfChange(change) => match raw.apply_conf_change(change) {
                    Ok(conf) => {
                        out += &format!("  applied {entry}: {}\n", fmt_conf(&conf));
                        raw.storage_mut().set_conf_state(conf.clone());
                        node.state.apply_conf(entry.index, conf);
                    }
                    Err(e) => {
                        out += &format!("  refused {entry}: {}\n", parse::core_error(e));
                        node.state.apply_noop(entry.index);
                    }
                },
            }
        }
        if !ready.committed_entries.is_empty() {
            out += &format!(
                "  applied={} state={}\n",
                node.state.applied(),
                node.state.describe()
            );
        }
        for line in sends {
            out += line;
            out += "\n";
        }

        // 4. Advance.
        raw.advance(ready);
        self.outboxes.entry(id).or_default().extend(messages);
        Ok(Some(out))
    }
}
