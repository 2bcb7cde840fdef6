//! What the library tells the WAN emulator (a JSON config, re-read on SIGHUP) and what the
//! emulator tells back (a JSON status: the generation it applied and its counters), plus the
//! compiled per-pair table the emulator decides with.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::plan::{OPS, SITES_MAX};
use crate::proc::ProcessId;

/// The emulator's whole configuration. The library is its only writer, by atomic rename.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct WanConfig {
    /// Raised on every change; the emulator echoes the one it applied in its status.
    pub(crate) generation: u64,
    /// Second octet of the bed's addresses (`10.OCTET.0.0/16`).
    pub(crate) octet: u8,
    /// The TUN device to create.
    pub(crate) tun: String,
    /// The routing table whose default route is the TUN.
    pub(crate) table: String,
    /// Where the emulator writes its [`WanStatus`].
    pub(crate) status_path: PathBuf,
    /// When set, the emulator exits once this process is gone (a test process killed with -9).
    pub(crate) owner: Option<ProcessId>,
    /// Seeds the loss decisions, so a run can be replayed.
    pub(crate) seed: u64,
    /// Packets held at once for one (from, to) pair; more are dropped and counted.
    pub(crate) pair_queue_max_packets: usize,
    /// Packets held at once over all pairs.
    pub(crate) queue_max_packets: usize,
    /// Site names by index: index 0 is always "ops". Fixed for the life of a bed.
    pub(crate) sites: Vec<String>,
    /// One entry per ordered pair of distinct sites; a missing pair has no delay and no loss.
    pub(crate) links: Vec<LinkConfig>,
    /// Sites cut off from the others.
    pub(crate) partitioned: Vec<Partition>,
}

/// One direction between two sites.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct LinkConfig {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) delay_us: u64,
    pub(crate) loss: f64,
}

/// A site cut off from every other site, and from ops too when `include_ops`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Partition {
    pub(crate) site: String,
    pub(crate) include_ops: bool,
}

/// What the emulator reports, rewritten (atomically) on every reload and a few times a second.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct WanStatus {
    pub(crate) pid: u32,
    /// The generation of the config in force.
    pub(crate) generation: u64,
    /// Why the last reload was refused (the previous config stays in force).
    pub(crate) error: Option<String>,
    pub(crate) counters: WanCounters,
}

/// The emulator's packet counters since it started.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WanCounters {
    /// Packets read from the TUN.
    pub received: u64,
    /// Packets written back, after their delay.
    pub forwarded: u64,
    /// Dropped by the random loss of their pair.
    pub dropped_loss: u64,
    /// Dropped because their pair is partitioned (on arrival or when their delay ran out).
    pub dropped_partition: u64,
    /// Dropped because a queue was full.
    pub dropped_overflow: u64,
    /// Not IPv4, or an address outside the bed's subnet.
    pub dropped_unroutable: u64,
    /// Writes to the TUN that failed.
    pub write_errors: u64,
}

impl WanConfig {
    pub(crate) fn load(path: &Path) -> Result<Self, Error> {
        read_json(path)
    }

    /// The link between two sites by name, if configured.
    pub(crate) fn link_mut(&mut self, from: &str, to: &str) -> Option<&mut LinkConfig> {
        self.links.iter_mut().find(|l| l.from == from && l.to == to)
    }

    #[cfg(test)]
    pub(crate) fn link(&self, from: &str, to: &str) -> Option<&LinkConfig> {
        self.links.iter().find(|l| l.from == from && l.to == to)
    }
}

/// What to do with one packet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Hold it this long, then write it back.
    Deliver(Duration),
    DropPartition,
    DropLoss,
}

/// The config compiled to dense per-pair arrays, indexed `from * n + to`.
#[derive(Clone, Debug)]
pub(crate) struct LinkTable {
    pub(crate) octet: u8,
    pub(crate) n: usize,
    delay: Vec<Duration>,
    loss: Vec<f64>,
    blocked: Vec<bool>,
}

impl LinkTable {
    /// Checks and compiles a config; a config that fails here is never put in force.
    pub(crate) fn compile(config: &WanConfig) -> Result<Self, String> {
        let n = config.sites.len();
        if !(2..=SITES_MAX + 1).contains(&n) || config.sites[0] != OPS {
            return Err(format!("sites must be \"ops\" then 1..={SITES_MAX} sites"));
        }
        let index = |name: &str| {
            config
                .sites
                .iter()
                .position(|s| s == name)
                .ok_or_else(|| format!("unknown site {name:?}"))
        };
        let mut table = Self {
            octet: config.octet,
            n,
            delay: vec![Duration::ZERO; n * n],
            loss: vec![0.0; n * n],
            blocked: vec![false; n * n],
        };
        for link in &config.links {
            let (from, to) = (index(&link.from)?, index(&link.to)?);
            if from == to {
                return Err(format!("link from {:?} to itself", link.from));
            }
            if !(0.0..=1.0).contains(&link.loss) {
                return Err(format!("loss {} is not in 0..=1", link.loss));
            }
            if link.delay_us > crate::spec::RTT_MAX.as_micros() as u64 {
                return Err(format!("delay {} us is over the limit", link.delay_us));
            }
            table.delay[from * n + to] = Duration::from_micros(link.delay_us);
            table.loss[from * n + to] = link.loss;
        }
        for partition in &config.partitioned {
            let cut = index(&partition.site)?;
            if cut == 0 {
                return Err("ops cannot be partitioned".to_owned());
            }
            for other in (0..n).filter(|&o| o != cut) {
                if other == 0 && !partition.include_ops {
                    continue;
                }
                table.blocked[cut * n + other] = true;
                table.blocked[other * n + cut] = true;
            }
        }
        Ok(table)
    }

    /// The pair index of an IPv4 packet, `None` if it is not IPv4 between two bed addresses.
    pub(crate) fn classify(&self, packet: &[u8]) -> Option<usize> {
        if packet.len() < 20 || packet[0] >> 4 != 4 {
            return None;
        }
        let from = self.site_of(&packet[12..16])?;
        let to = self.site_of(&packet[16..20])?;
        Some(from * self.n + to)
    }

    fn site_of(&self, address: &[u8]) -> Option<usize> {
        let index = usize::from(address[2]);
        (address[0] == 10 && address[1] == self.octet && index < self.n).then_some(index)
    }

    /// The fate of a packet of this pair; `draw` is a uniform sample in [0, 1).
    pub(crate) fn verdict(&self, pair: usize, draw: f64) -> Verdict {
        if self.blocked[pair] {
            Verdict::DropPartition
        } else if draw < self.loss[pair] {
            Verdict::DropLoss
        } else {
            Verdict::Deliver(self.delay[pair])
        }
    }

    /// Whether the pair is partitioned now (checked again when a held packet is released).
    pub(crate) fn blocked(&self, pair: usize) -> bool {
        self.blocked[pair]
    }
}

/// Writes `value` as JSON to `path` by rename, so a reader never sees half a file.
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let text = serde_json::to_vec_pretty(value).expect("serializing plain data cannot fail");
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&text)?;
        file.write_all(b"\n")?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    serde_json::from_slice(&text).map_err(|e| {
        Error::io(
            format!("parsing {}", path.display()),
            std::io::Error::other(e),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> WanConfig {
        let sites = ["ops", "dc1", "dc2", "dc3"];
        let mut links = Vec::new();
        for from in sites {
            for to in sites.iter().filter(|&&t| t != from) {
                let wan = from != "ops" && *to != "ops";
                links.push(LinkConfig {
                    from: from.into(),
                    to: (*to).into(),
                    delay_us: if wan { 5000 } else { 0 },
                    loss: if wan { 0.25 } else { 0.0 },
                });
            }
        }
        WanConfig {
            generation: 1,
            octet: 201,
            tun: "tun0".into(),
            table: "100".into(),
            status_path: "/dev/null".into(),
            owner: None,
            seed: 7,
            pair_queue_max_packets: 16,
            queue_max_packets: 64,
            sites: sites.iter().map(|s| (*s).into()).collect(),
            links,
            partitioned: Vec::new(),
        }
    }

    fn packet(from: [u8; 4], to: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[12..16].copy_from_slice(&from);
        p[16..20].copy_from_slice(&to);
        p
    }

    #[test]
    fn packets_map_to_pairs_by_third_octet() {
        let table = LinkTable::compile(&config()).unwrap();
        assert_eq!(
            table.classify(&packet([10, 201, 1, 2], [10, 201, 2, 2])),
            Some(4 + 2)
        );
        assert_eq!(
            table.classify(&packet([10, 201, 0, 2], [10, 201, 3, 2])),
            Some(3)
        );
        // Outside the bed, past the last site, not IPv4, too short.
        assert_eq!(
            table.classify(&packet([10, 202, 1, 2], [10, 201, 2, 2])),
            None
        );
        assert_eq!(
            table.classify(&packet([10, 201, 1, 2], [10, 201, 4, 2])),
            None
        );
        let mut v6 = packet([10, 201, 1, 2], [10, 201, 2, 2]);
        v6[0] = 0x60;
        assert_eq!(table.classify(&v6), None);
        assert_eq!(table.classify(&[0x45; 10]), None);
    }

    #[test]
    fn delay_and_loss_apply_per_pair() {
        let table = LinkTable::compile(&config()).unwrap();
        let dc1_dc2 = 4 + 2;
        assert_eq!(
            table.verdict(dc1_dc2, 0.5),
            Verdict::Deliver(Duration::from_millis(5))
        );
        assert_eq!(table.verdict(dc1_dc2, 0.1), Verdict::DropLoss);
        assert_eq!(
            table.verdict(4, 0.0),
            Verdict::Deliver(Duration::ZERO),
            "dc1 to ops"
        );
    }

    #[test]
    fn a_partition_cuts_sites_but_spares_ops_unless_asked() {
        let mut config = config();
        config.partitioned.push(Partition {
            site: "dc2".into(),
            include_ops: false,
        });
        let table = LinkTable::compile(&config).unwrap();
        let pair = |a: usize, b: usize| a * 4 + b;
        for other in [1, 3] {
            assert!(table.blocked(pair(2, other)) && table.blocked(pair(other, 2)));
        }
        assert!(!table.blocked(pair(0, 2)) && !table.blocked(pair(2, 0)));
        assert!(!table.blocked(pair(1, 3)));
        config.partitioned[0].include_ops = true;
        let table = LinkTable::compile(&config).unwrap();
        assert!(table.blocked(pair(0, 2)) && table.blocked(pair(2, 0)));
        assert_eq!(table.verdict(pair(0, 2), 0.99), Verdict::DropPartition);
    }

    #[test]
    fn bad_configs_are_refused() {
        let mut bad = config();
        bad.links[0].loss = 2.0;
        assert!(LinkTable::compile(&bad).is_err());
        let mut bad = config();
        bad.partitioned.push(Partition {
            site: "ops".into(),
            include_ops: true,
        });
        assert!(LinkTable::compile(&bad).is_err());
        let mut bad = config();
        bad.links[0].to = "dc9".into();
        assert!(LinkTable::compile(&bad).is_err());
        let mut bad = config();
        bad.sites[0] = "dc0".into();
        assert!(LinkTable::compile(&bad).is_err());
    }
}
