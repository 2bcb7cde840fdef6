//! `stabilize [ID...]`: runs the Ready loop and the network among the given nodes until nothing
//! is left to do.

use goldenscript::Command;

use super::env::{InteractionEnv, Outcome, indent};
use super::parse;

/// Rounds after which `stabilize` gives up: a cluster that never quiets down is a bug (or a
/// script that forgot to partition a ticking node away).
const ROUNDS_MAX: usize = 100;

impl InteractionEnv {
    pub(crate) fn stabilize(&mut self, command: &Command) -> Outcome {
        let ids = parse::positional_ids(command)?;
        let ids = self.ids_or_all(ids);
        let mut out = String::new();
        for _ in 0..ROUNDS_MAX {
            let mut busy = false;
            for &id in &ids {
                if !self.is_up(id) {
                    continue;
                }
                if let Some(ready) = self.process_ready(id)? {
                    out += &format!("> {id} handling Ready\n{ready}");
                    busy = true;
                }
            }
            for &id in &ids {
                let delivered = self.deliver_to(id, false, None)?;
                if !delivered.is_empty() {
                    out += &format!("> {id} receiving messages\n{}", indent(&delivered));
                    busy = true;
                }
            }
            if !busy {
                return Ok(out);
            }
        }
        Err(format!("not stable after {ROUNDS_MAX} rounds:\n{out}").into())
    }
}
