//! `campaign ID`: the node starts an election now (if it may lead).

use goldenscript::Command;

use super::env::{InteractionEnv, Outcome};
use super::parse;

impl InteractionEnv {
    pub(crate) fn campaign(&mut self, command: &Command) -> Outcome {
        let mut args = command.consume_args();
        let id = parse::next_id(&mut args)?;
        args.reject_next()?;
        self.raw(id)?.campaign();
        Ok(String::new())
    }
}
