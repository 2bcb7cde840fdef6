//! `read-index ID CTX`: asks for a linearizable read; the answer comes in a later Ready.

use goldenscript::Command;

use super::env::{InteractionEnv, Outcome};
use super::parse;

impl InteractionEnv {
    pub(crate) fn read_index(&mut self, command: &Command) -> Outcome {
        let mut args = command.consume_args();
        let id = parse::next_id(&mut args)?;
        let context: u64 = args.next_pos().ok_or("read context missing")?.parse()?;
        args.reject_next()?;
        self.raw(id)?
            .read_index(context)
            .map_err(parse::core_error)?;
        Ok(String::new())
    }
}
