//! `transfer-leader FROM TO`: asks leader FROM to hand leadership to TO.

use goldenscript::Command;

use super::env::{InteractionEnv, Outcome};
use super::parse;

impl InteractionEnv {
    pub(crate) fn transfer_leader(&mut self, command: &Command) -> Outcome {
        let mut args = command.consume_args();
        let from = parse::next_id(&mut args)?;
        let to = parse::next_id(&mut args)?;
        args.reject_next()?;
        self.raw(from)?
            .transfer_leader(to)
            .map_err(parse::core_error)?;
        Ok(String::new())
    }
}
