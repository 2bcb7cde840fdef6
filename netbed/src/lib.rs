//! cairn-netbed: a multi-site network test bed on one Linux machine.
//!
//! Each site is a network namespace with one address; all sites hang off a WAN namespace whose
//! policy routing sends every packet through a userspace emulator (on a TUN device) that delays
//! it by the one-way time of its (from, to) pair, drops it with the pair's loss probability, or
//! drops it because a site is partitioned. The kernel this runs on has no netem
//! (`# CONFIG_NET_SCH_NETEM is not set`), hence the userspace emulator.
//!
//! ```no_run
//! use std::time::Duration;
//! use cairn_netbed::{Bed, BedSpec};
//!
//! # fn main() -> Result<(), cairn_netbed::Error> {
//! let mut bed = Bed::create(BedSpec::new(["dc1", "dc2"], Duration::from_millis(10)))?;
//! let mut server = bed.command("dc2", "my-server");
//! server.arg(bed.site_ip("dc2").to_string());
//! let pid = bed.spawn("dc2", server)?; // SIGKILLed when the bed is dropped
//! bed.kill(pid)?; // or now: a crash
//! bed.partition("dc2")?; // dc1 and dc2 no longer reach each other; ops still reaches both
//! bed.heal("dc2")?;
//! drop(bed); // processes, namespaces, links and the id are gone
//! # Ok(())
//! # }
//! ```
//!
//! See README.md for the topology, the CLI and the limits.

mod bed;
pub mod emulator;
mod error;
mod ip;
mod lock;
mod plan;
pub mod probe;
mod proc;
mod spec;
mod teardown;
mod wan_config;

pub use bed::{Bed, LinkState};
pub use error::Error;
pub use ip::write_sysctl;
pub use lock::{BedState, GcReport, STATE_DIR, SiteState, gc, persistent_beds};
pub use plan::OPS;
pub use spec::BedSpec;
pub use wan_config::WanCounters;

/// One line per live bed of this machine, for `cairn-netbed list`.
pub fn list() -> Vec<String> {
    lock::records()
        .into_iter()
        .map(|(id, live, record)| {
            let kind = match &record.kind {
                lock::BedKind::Library => "library".to_owned(),
                lock::BedKind::Persistent { name } => format!("persistent {name:?}"),
            };
            format!(
                "id {id} ({}) {kind}, sites {}, owner pid {}{}",
                plan::Plan::new(id, Vec::new()).subnet(),
                record.sites.join(","),
                record.owner.pid,
                if live { "" } else { ", STALE (gc removes it)" }
            )
        })
        .collect()
}
