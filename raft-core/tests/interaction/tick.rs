//! `tick ID [N]`, `tick-heartbeat ID`, `tick-election ID`: logical time.

use goldenscript::Command;
use raft_core::Role;

use super::env::{InteractionEnv, Outcome};
use super::parse;

impl InteractionEnv {
    pub(crate) fn tick(&mut self, command: &Command) -> Outcome {
        let mut args = command.consume_args();
        let id = parse::next_id(&mut args)?;
        let count: u32 = args.next_pos().map(str::parse).transpose()?.unwrap_or(1);
        args.reject_next()?;
        let raw = self.raw(id)?;
        for _ in 0..count {
            raw.tick();
        }
        Ok(String::new())
    }

    /// `advance-clock ID N`: N ticks of wall time pass without ticking the node (quiesced).
    pub(crate) fn advance_clock(&mut self, command: &Command) -> Outcome {
        let mut args = command.consume_args();
        let id = parse::next_id(&mut args)?;
        let ticks: u64 = args
            .next_pos()
            .map(str::parse)
            .transpose()?
            .ok_or("advance-clock needs N")?;
        args.reject_next()?;
        self.raw(id)?.advance_clock(ticks);
        Ok(String::new())
    }

    pub(crate) fn tick_heartbeat(&mut self, command: &Command) -> Outcome {
        for id in parse::positional_ids(command)? {
            let ticks = self.node(id)?.config.heartbeat_interval_ticks;
            let raw = self.raw(id)?;
            for _ in 0..ticks {
                raw.tick();
            }
        }
        Ok(String::new())
    }

    /// A leader ticks one election timeout (one check-quorum interval). Anyone else ticks until
    /// its randomized election timeout fires — it campaigns — or, when it may not campaign,
    /// until three election timeouts have passed (the longest randomized timeout).
    pub(crate) fn tick_election(&mut self, command: &Command) -> Outcome {
        let mut out = String::new();
        for id in parse::positional_ids(command)? {
            let timeout = self.node(id)?.config.election_timeout_ticks;
            let raw = self.raw(id)?;
            if raw.role() == Role::Leader {
                for _ in 0..timeout {
                    raw.tick();
                }
                if raw.role() != Role::Leader {
                    let term = raw.status().hard_state.term;
                    out += &format!("{id}: steps down ({} at term {term})\n", raw.role());
                }
                continue;
            }
            // Ticks only make a non-leader campaign, which changes its role or term, or (for a
            // pre-candidate trying again) queues requests.
            let before = (raw.role(), raw.status().hard_state.term);
            let had_ready = raw.has_ready();
            let mut ticks = 0;
            let mut campaigned = false;
            while ticks < 3 * timeout && !campaigned {
                raw.tick();
                ticks += 1;
                campaigned = (raw.role(), raw.status().hard_state.term) != before
                    || (!had_ready && raw.has_ready());
            }
            let (role, term) = (raw.role(), raw.status().hard_state.term);
            out += &if campaigned {
                format!("{id}: campaigns after {ticks} ticks ({role} at term {term})\n")
            } else {
                format!("{id}: does not campaign in {ticks} ticks ({role} at term {term})\n")
            };
        }
        Ok(out)
    }
}
