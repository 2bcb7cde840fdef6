//! `propose ID DATA`, `propose-batch ID DATA...`, `propose-conf-change ID [vN|lN|rN...]`.
//!
//! A refused proposal fails the command (scripts expect it with `!`); an accepted one prints
//! where it landed in the log.

use goldenscript::Command;
use raft_core::{ConfChange, ConfChangeStep, ProposalPosition};

use super::env::{InteractionEnv, Outcome};
use super::parse;

impl InteractionEnv {
    pub(crate) fn propose(&mut self, command: &Command) -> Outcome {
        let mut args = command.consume_args();
        let id = parse::next_id(&mut args)?;
        let data = args.next_pos().ok_or("data missing")?;
        args.reject_next()?;
        let position = self
            .raw(id)?
            .propose(data.as_bytes().to_vec())
            .map_err(parse::core_error)?;
        Ok(landed(position))
    }

    pub(crate) fn propose_batch(&mut self, command: &Command) -> Outcome {
        let mut args = command.consume_args();
        let id = parse::next_id(&mut args)?;
        let batch: Vec<Vec<u8>> = std::iter::from_fn(|| args.next_pos())
            .map(|data| data.as_bytes().to_vec())
            .collect();
        args.reject_next()?;
        let position = self
            .raw(id)?
            .propose_batch(batch)
            .map_err(parse::core_error)?;
        Ok(landed(position))
    }

    pub(crate) fn propose_conf_change(&mut self, command: &Command) -> Outcome {
        let mut args = command.consume_args();
        let id = parse::next_id(&mut args)?;
        let mut change = ConfChange::leave_joint();
        while let Some(step) = args.next_pos() {
            let target = || parse::id(&step[1..]);
            change.changes.push(match step.chars().next() {
                Some('v') => ConfChangeStep::AddVoter(target()?),
                Some('l') => ConfChangeStep::AddLearner(target()?),
                Some('r') => ConfChangeStep::RemoveNode(target()?),
                _ => return Err(format!("invalid step {step:?}: want vN, lN or rN").into()),
            });
        }
        args.reject_next()?;
        let position = self
            .raw(id)?
            .propose_conf_change(change)
            .map_err(parse::core_error)?;
        Ok(landed(position))
    }
}

/// `proposed at 1/6` or `proposed at 1/6..8`.
fn landed(position: ProposalPosition) -> String {
    if position.first_index == position.last_index {
        format!("proposed at {}/{}\n", position.term, position.first_index)
    } else {
        format!(
            "proposed at {}/{}..{}\n",
            position.term, position.first_index, position.last_index
        )
    }
}
