//! `cairn-netbed`: bring multi-site beds up and down, cut and heal sites, run commands inside
//! sites; and, internally, the WAN emulator and the measuring tools of the tests.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use cairn_netbed::probe::{ProbeOptions, echo, probe};
use cairn_netbed::{Bed, BedSpec, Error, OPS};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cairn-netbed",
    version,
    about = "A multi-site network test bed from network namespaces"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build a persistent bed and start its WAN emulator in the background.
    Up {
        #[arg(long)]
        name: String,
        /// Comma-separated site names, e.g. dc1,dc2,dc3.
        #[arg(long, value_delimiter = ',', required = true)]
        sites: Vec<String>,
        /// Round trip between every pair of sites, in milliseconds.
        #[arg(long, default_value_t = 10.0)]
        rtt_ms: f64,
        /// Loss per direction between sites, in percent.
        #[arg(long, default_value_t = 0.0)]
        loss_pct: f64,
        /// Round trip between this namespace (ops) and every site, in milliseconds.
        #[arg(long, default_value_t = 0.0)]
        ops_rtt_ms: f64,
    },
    /// Tear a persistent bed down (processes, namespaces, links, files).
    Down {
        #[arg(long)]
        name: String,
    },
    /// Cut a site off from every other site (ops still reaches it unless --include-ops).
    Partition {
        #[arg(long)]
        name: String,
        site: String,
        #[arg(long)]
        include_ops: bool,
    },
    /// End a site's partition.
    Heal {
        #[arg(long)]
        name: String,
        site: String,
    },
    /// Change round trip and/or loss between two sites, or between every pair of sites.
    Set {
        #[arg(long)]
        name: String,
        #[arg(long)]
        rtt_ms: Option<f64>,
        #[arg(long)]
        loss_pct: Option<f64>,
        /// Two sites (either may be "ops"); every pair of real sites when left out.
        #[arg(num_args = 0..=2)]
        pair: Vec<String>,
    },
    /// Run a command inside a site (`ops`: this namespace), with this terminal.
    Exec {
        #[arg(long)]
        name: String,
        site: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Show a persistent bed: sites, links, partitions, emulator counters.
    Status {
        #[arg(long)]
        name: String,
    },
    /// List the beds of this machine (persistent and in-process ones).
    List,
    /// Remove beds whose owner died.
    Gc,
    /// Internal: the WAN emulator, run inside a bed's WAN namespace.
    #[command(hide = true)]
    Wan {
        #[arg(long)]
        config: PathBuf,
    },
    /// Internal: write sysctls (KEY=VALUE) of the current network namespace.
    #[command(hide = true)]
    Sysctl { settings: Vec<String> },
    /// Internal (tests): echo UDP and TCP on an address until killed.
    #[command(hide = true)]
    Echo {
        #[arg(long)]
        bind: SocketAddr,
    },
    /// Internal (tests): measure round trips to an echo server; prints a JSON report.
    #[command(hide = true)]
    Probe {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        bind: Option<IpAddr>,
        #[arg(long, default_value_t = 20)]
        count: u32,
        #[arg(long, default_value_t = 5)]
        interval_ms: u64,
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        #[arg(long, default_value_t = 0)]
        warmup_ms: u64,
        #[arg(long)]
        tcp: bool,
        /// Print a one-line summary instead of JSON.
        #[arg(long)]
        summary: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cairn-netbed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Cmd) -> Result<ExitCode> {
    match command {
        Cmd::Up {
            name,
            sites,
            rtt_ms,
            loss_pct,
            ops_rtt_ms,
        } => {
            let spec = BedSpec {
                sites,
                rtt: millis(rtt_ms)?,
                loss: percent(loss_pct)?,
                ops_rtt: millis(ops_rtt_ms)?,
                netbed_bin: None,
            };
            let bed = Bed::create_persistent(spec, &name)?;
            print_bed(&bed);
        }
        Cmd::Down { name } => match Bed::attach(&name) {
            Ok(bed) => bed.down()?,
            // Its emulator died: what is left is garbage, and gc removes garbage.
            Err(Error::BedNotFound { reason, .. }) => {
                let report = cairn_netbed::gc()?;
                println!(
                    "bed {name:?} was not running ({reason}); gc cleaned ids {:?}",
                    report.cleaned
                );
            }
            Err(e) => return Err(e.into()),
        },
        Cmd::Partition {
            name,
            site,
            include_ops,
        } => {
            let mut bed = Bed::attach(&name)?;
            if include_ops {
                bed.isolate(&site)?
            } else {
                bed.partition(&site)?
            }
        }
        Cmd::Heal { name, site } => Bed::attach(&name)?.heal(&site)?,
        Cmd::Set {
            name,
            rtt_ms,
            loss_pct,
            pair,
        } => {
            if rtt_ms.is_none() && loss_pct.is_none() {
                bail!("give --rtt-ms and/or --loss-pct");
            }
            let mut bed = Bed::attach(&name)?;
            let pairs: Vec<(String, String)> = match pair.as_slice() {
                [a, b] => vec![(a.clone(), b.clone())],
                [] => {
                    let sites = bed.sites();
                    let mut pairs = Vec::new();
                    for (i, a) in sites.iter().enumerate() {
                        for b in &sites[i + 1..] {
                            pairs.push((a.to_string(), b.to_string()));
                        }
                    }
                    pairs
                }
                _ => bail!("give two sites, or none for every pair"),
            };
            for (a, b) in pairs {
                if let Some(rtt_ms) = rtt_ms {
                    bed.set_rtt(&a, &b, millis(rtt_ms)?)?;
                }
                if let Some(loss_pct) = loss_pct {
                    bed.set_loss(&a, &b, percent(loss_pct)?)?;
                }
            }
        }
        Cmd::Exec {
            name,
            site,
            command,
        } => {
            let bed = Bed::attach(&name)?;
            let mut child = bed.command(&site, &command[0]);
            child.args(&command[1..]);
            // Release the bed first: the command may run for long, and may call us back.
            drop(bed);
            let status = child
                .status()
                .with_context(|| format!("running {command:?}"))?;
            return Ok(ExitCode::from(
                status.code().unwrap_or(1).clamp(0, 255) as u8
            ));
        }
        Cmd::Status { name } => {
            let bed = Bed::attach(&name)?;
            print_bed(&bed);
            for link in bed.links() {
                println!(
                    "  {} -> {}: one way {:.3} ms, loss {:.1}%",
                    link.from,
                    link.to,
                    link.one_way.as_secs_f64() * 1e3,
                    link.loss * 100.0
                );
            }
            for (site, include_ops) in bed.partitioned() {
                println!(
                    "  partitioned: {site}{}",
                    if include_ops { " (ops too)" } else { "" }
                );
            }
            println!("  counters: {:?}", bed.counters()?);
        }
        Cmd::List => {
            for line in cairn_netbed::list() {
                println!("{line}");
            }
        }
        Cmd::Gc => {
            let report = cairn_netbed::gc()?;
            println!(
                "cleaned ids {:?}; live ids {:?}",
                report.cleaned, report.live
            );
            for error in &report.errors {
                eprintln!("  {error}");
            }
        }
        Cmd::Wan { config } => cairn_netbed::emulator::run(&config)?,
        Cmd::Sysctl { settings } => {
            for setting in settings {
                let Some((key, value)) = setting.split_once('=') else {
                    bail!("{setting:?} is not KEY=VALUE");
                };
                cairn_netbed::write_sysctl(key, value)?;
            }
        }
        Cmd::Echo { bind } => echo(bind).with_context(|| format!("echo on {bind}"))?,
        Cmd::Probe {
            to,
            bind,
            count,
            interval_ms,
            timeout_ms,
            warmup_ms,
            tcp,
            summary,
        } => {
            let report = probe(&ProbeOptions {
                to,
                bind,
                count,
                interval: Duration::from_millis(interval_ms),
                timeout: Duration::from_millis(timeout_ms),
                warmup: Duration::from_millis(warmup_ms),
                tcp,
            })
            .with_context(|| format!("probing {to}"))?;
            if summary {
                println!("{}", report.summary());
            } else {
                println!("{}", serde_json::to_string(&report)?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_bed(bed: &Bed) {
    let state = bed.state();
    println!(
        "bed {:?}: id {}, subnet {}, emulator pid {}",
        state.name,
        state.id,
        bed.subnet(),
        state.wan_pid
    );
    for site in &state.sites {
        match &site.netns {
            None => println!("  {:<12} {:<15} (this namespace)", site.name, site.ip),
            Some(ns) => println!("  {:<12} {:<15} ip netns exec {ns} CMD", site.name, site.ip),
        }
    }
    println!(
        "  run in a site: cairn-netbed exec --name {} SITE -- CMD; emulator log: {}",
        state.name,
        state.wan_log.display()
    );
    debug_assert_eq!(state.sites[0].name, OPS);
}

fn millis(ms: f64) -> Result<Duration> {
    if !ms.is_finite() || ms < 0.0 {
        bail!("{ms} ms is not a duration");
    }
    Ok(Duration::from_secs_f64(ms / 1e3))
}

fn percent(pct: f64) -> Result<f64> {
    if !(0.0..=100.0).contains(&pct) {
        bail!("{pct}% is not a percentage");
    }
    Ok(pct / 100.0)
}
