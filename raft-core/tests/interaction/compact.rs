//! `compact ID INDEX`: the application snapshots its state at INDEX (which it has applied) and
//! the log up to INDEX is dropped.

use goldenscript::Command;
use raft_core::LogIndex;

use super::env::{InteractionEnv, Outcome};
use super::parse;

impl InteractionEnv {
    pub(crate) fn compact(&mut self, command: &Command) -> Outcome {
        let mut args = command.consume_args();
        let id = parse::next_id(&mut args)?;
        let index = LogIndex(args.next_pos().ok_or("index missing")?.parse()?);
        args.reject_next()?;
        let (conf, data) = self.node(id)?.state.snapshot_at(index)?;
        self.raw(id)?.storage_mut().compact(index, conf, data)?;
        Ok(String::new())
    }
}
