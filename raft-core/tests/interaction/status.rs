//! `status ID...` and `raft-log ID...`: what a node knows, and what it has on disk.

use goldenscript::Command;
use raft_core::{MemStorage, ProgressState, Storage as _};

use super::env::{InteractionEnv, Outcome, Replica, fmt_conf};
use super::parse;

impl InteractionEnv {
    pub(crate) fn status(&mut self, command: &Command) -> Outcome {
        let mut out = String::new();
        for id in parse::positional_ids(command)? {
            let node = self.node(id)?;
            let state = node.state.describe();
            let Replica::Up(raw) = &node.replica else {
                out += &format!("{id}: down\n  state: {state}\n");
                continue;
            };
            let st = raw.status();
            let hs = st.hard_state;
            out += &format!(
                "{id}: {} term={} vote={} leader={} commit={} applied={} last={}",
                st.soft_state.role,
                hs.term,
                hs.vote,
                st.soft_state.leader,
                hs.commit,
                st.applied,
                st.last_index
            );
            if st.lease_valid {
                out += " lease=valid";
            }
            out += &format!("\n  conf: {}\n", fmt_conf(&st.conf_state));
            for (peer, (matched, next, progress)) in &st.progress {
                let progress = match progress {
                    ProgressState::Probe => "Probe".to_owned(),
                    ProgressState::Replicate => "Replicate".to_owned(),
                    ProgressState::Snapshot { pending_index } => {
                        format!("Snapshot(pending={pending_index})")
                    }
                };
                out += &format!("  progress {peer}: match={matched} next={next} {progress}\n");
            }
            out += &format!("  state: {state}\n");
        }
        Ok(out)
    }

    pub(crate) fn raft_log(&mut self, command: &Command) -> Outcome {
        let mut out = String::new();
        for id in parse::positional_ids(command)? {
            let storage: &MemStorage = match &self.node(id)?.replica {
                Replica::Up(raw) => raw.storage(),
                Replica::Down(storage) => storage,
            };
            let snapshot = storage.snapshot()?;
            let hs = storage.hard_state();
            out += &format!(
                "{id}: persisted term={} vote={} commit={}",
                hs.term, hs.vote, hs.commit
            );
            if snapshot.metadata.index.get() > 0 {
                out += &format!(
                    " snapshot={}/{}",
                    snapshot.metadata.term, snapshot.metadata.index
                );
            }
            out += "\n";
            for entry in storage.all_entries() {
                out += &format!("  {entry}\n");
            }
        }
        Ok(out)
    }
}
