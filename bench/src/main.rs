//! `cairn-bench`: cairn side by side with etcd, against the machine's limits.
//!
//! `cairn-bench suite` measures, in one run: the machine's fsync latency and loopback QUIC round
//! trip; the same workloads against a cairn platform (manager, three shard-node hosts, router)
//! and a three-member etcd cluster (with its gRPC proxy), alternating between the two; and the
//! CPU one shard-node spends hosting 1,000 idle replicas. It writes `results.json`,
//! `results.csv`, SVG plots and `report.md` into the output directory.

mod cairn;
mod cpu;
mod etcd;
mod limits;
mod load;
mod machine;
mod model;
mod plot;
mod report;
mod sites;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};

use crate::cairn::{CairnCluster, CairnTarget, IdleCluster};
use crate::etcd::{EtcdCluster, EtcdTarget};
use crate::load::{RunSpec, Window, WriteKeys};
use crate::model::{
    IdleCost, Limits, Mode, Report, RunResult, Settings, System, Versions, Workload,
};

#[derive(Parser)]
#[command(
    name = "cairn-bench",
    version,
    about = "cairn side by side with etcd, against the machine's limits"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the whole suite and writes the report.
    Suite(SuiteArgs),
    /// Measures only the machine's limits (fsync, loopback QUIC round trip) and prints them.
    Limits {
        /// The directory whose disk is measured.
        #[arg(long, default_value = "/var/tmp")]
        data_dir: PathBuf,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Runs one workload against one system and prints the result and the CPU each process
    /// used (for profiling: the system stays up for `--seconds`).
    Run(RunArgs),
    /// Multi-site latency on a two-site network bed (needs root): reads and writes through a
    /// router in site b while the shard's leader is in site a, then after `preferred(b)` moves
    /// it; prints p50/p90/p99/max per case and the raw site-to-site round trip.
    Sites(sites::SitesArgs),
    /// Renders the report again from a `results.json`.
    Report {
        /// The results of a suite run.
        #[arg(long)]
        from: PathBuf,
        /// Where to write the report (default: the directory of `--from`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Args, Clone, Debug)]
struct RunArgs {
    /// The system to run against.
    #[arg(long, value_enum, default_value = "cairn")]
    system: SystemArg,
    /// The workload: write, read-consistent, read-local, mixed-90-10, router-cached,
    /// router-consistent, write-shards.
    #[arg(long, default_value = "write")]
    workload: String,
    /// Closed-loop clients (ignored with --rate).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Open loop at this many operations per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Shards (write-shards only).
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// Seconds measured (after a one-second warm-up).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 4)]
    connections: usize,
    #[arg(long, default_value = "/var/tmp")]
    data_dir: PathBuf,
    #[arg(long)]
    cairn_bin: Option<PathBuf>,
    #[arg(long, default_value_t = 27_000)]
    base_port: u16,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum SystemArg {
    Cairn,
    Etcd,
}

#[derive(Args, Clone, Debug)]
struct SuiteArgs {
    /// Where to write the report.
    #[arg(long, default_value = "bench/reports/latest")]
    out: PathBuf,
    /// Where the systems keep their data (a fresh directory is made inside and removed after);
    /// its disk is the one whose fsync is measured.
    #[arg(long, default_value = "/var/tmp")]
    data_dir: PathBuf,
    /// The `cairn` binary (default: next to this one).
    #[arg(long)]
    cairn_bin: Option<PathBuf>,
    /// Seconds of warm-up before each measurement.
    #[arg(long, default_value_t = 1.0)]
    warmup_s: f64,
    /// Seconds each run measures.
    #[arg(long, default_value_t = 4.0)]
    measure_s: f64,
    /// How many rounds; each round runs every workload against both systems, alternating which
    /// goes first.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Closed-loop clients of the single-shard workloads.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Connections each system's load generator opens to each server it talks to.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Keys written before the read workloads.
    #[arg(long, default_value_t = 1_000)]
    preload: u64,
    /// Closed-loop clients per shard in the multi-shard write workload.
    #[arg(long, default_value_t = 32)]
    clients_per_shard: usize,
    /// The largest shard count of the multi-shard write workload (1, 2, 4, … up to it).
    #[arg(long, default_value_t = 8)]
    max_shards: usize,
    /// Open-loop write rates, as fractions of the lower of the two systems' closed-loop write
    /// throughput.
    #[arg(long, value_delimiter = ',', default_value = "0.25,0.5,0.75")]
    open_fractions: Vec<f64>,
    /// Idle replicas on the measured shard-node (0 skips the idle measurement).
    #[arg(long, default_value_t = 1_000)]
    idle_replicas: u64,
    /// Seconds the idle CPU is measured over.
    #[arg(long, default_value_t = 20.0)]
    idle_measure_s: f64,
    /// Seconds each limit is measured over.
    #[arg(long, default_value_t = 2.0)]
    limits_s: f64,
    /// The first of the ports the systems listen on (cairn from base, etcd from base+100,
    /// the idle platform from base+200).
    #[arg(long, default_value_t = 27_000)]
    base_port: u16,
    /// A small, fast suite (a smoke test of the harness, not a measurement).
    #[arg(long)]
    quick: bool,
}

impl SuiteArgs {
    fn quick(mut self) -> Self {
        self.warmup_s = 0.3;
        self.measure_s = 1.0;
        self.rounds = 1;
        self.clients = 8;
        self.preload = 50;
        self.clients_per_shard = 4;
        self.max_shards = 2;
        self.open_fractions = vec![0.5];
        self.idle_replicas = self.idle_replicas.min(20);
        self.idle_measure_s = 2.0;
        self.limits_s = 0.3;
        self
    }

    fn check(&self) -> anyhow::Result<()> {
        if !(self.measure_s > 0.0 && self.warmup_s >= 0.0) {
            bail!("--measure-s must be positive and --warmup-s not negative");
        }
        if self.rounds == 0 || self.clients == 0 || self.connections == 0 || self.preload == 0 {
            bail!("--rounds, --clients, --connections and --preload must be at least 1");
        }
        if self.max_shards == 0 || self.max_shards > 64 || self.clients_per_shard == 0 {
            bail!("--max-shards must be 1 to 64 and --clients-per-shard at least 1");
        }
        if self.open_fractions.iter().any(|f| !(*f > 0.0 && *f <= 2.0)) {
            bail!("--open-fractions must be in (0, 2]");
        }
        if self.base_port.checked_add(300).is_none() {
            bail!("--base-port leaves no room for the 300 ports the suite uses");
        }
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Suite(args) => {
            let args = if args.quick { args.quick() } else { args };
            args.check()?;
            let report = runtime.block_on(suite(&args))?;
            let md = report::write_all(&report, &args.out)?;
            println!("\nreport: {}", md.display());
            Ok(())
        }
        Command::Limits { data_dir, seconds } => {
            let limits = runtime.block_on(measure_limits(&data_dir, seconds))?;
            println!("{}", serde_json::to_string_pretty(&limits)?);
            Ok(())
        }
        Command::Run(args) => runtime.block_on(run_single(&args)),
        Command::Sites(args) => {
            let cairn_bin = cairn_binary(args.cairn_bin())?;
            runtime.block_on(sites::run(&args, &cairn_bin))?;
            Ok(())
        }
        Command::Report { from, out } => {
            let report = report::load(&from)?;
            let out = out.unwrap_or_else(|| from.parent().unwrap_or(Path::new(".")).to_path_buf());
            let md = report::write_all(&report, &out)?;
            println!("report: {}", md.display());
            Ok(())
        }
    }
}

/// The time now, RFC 3339.
fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".into())
}

/// The `cairn` binary: as given, else next to this one.
fn cairn_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("the benchmark binary has no directory")?
            .join("cairn"),
    };
    if !path.is_file() {
        bail!(
            "no cairn binary at {} (build it with `cargo build --release --workspace`, or pass \
             --cairn-bin)",
            path.display()
        );
    }
    Ok(path)
}

async fn measure_limits(dir: &Path, seconds: f64) -> anyhow::Result<Limits> {
    let span = Duration::from_secs_f64(seconds);
    let fsync_dir = dir.to_path_buf();
    let fsync = tokio::task::spawn_blocking(move || limits::fsync(&fsync_dir, span)).await??;
    let quic_rtt = limits::quic_rtt(span).await?;
    Ok(Limits { fsync, quic_rtt })
}

/// One planned run: a workload, how load is offered, over how many shards.
#[derive(Clone, Copy, Debug)]
struct Planned {
    workload: Workload,
    mode: Mode,
    shards: usize,
}

/// The closed-loop plan: every single-shard workload at `--clients`, a few at one client, then
/// the multi-shard writes at 1, 2, 4, … shards.
fn closed_plan(args: &SuiteArgs) -> Vec<Planned> {
    let single = [
        Workload::Write,
        Workload::ReadConsistent,
        Workload::ReadLocal,
        Workload::Mixed,
        Workload::RouterCached,
        Workload::RouterConsistent,
    ];
    let mut plan: Vec<Planned> = single
        .into_iter()
        .map(|workload| Planned {
            workload,
            mode: Mode::Closed {
                clients: args.clients,
            },
            shards: 1,
        })
        .collect();
    // Latency without queueing: one client, one operation at a time (the router target is a
    // latency target; at 64 clients latency is mostly waiting for the cores).
    for workload in [
        Workload::Write,
        Workload::ReadConsistent,
        Workload::RouterCached,
    ] {
        plan.push(Planned {
            workload,
            mode: Mode::Closed { clients: 1 },
            shards: 1,
        });
    }
    let mut shards = 1;
    while shards <= args.max_shards {
        plan.push(Planned {
            workload: Workload::WriteShards,
            mode: Mode::Closed {
                clients: args.clients_per_shard * shards,
            },
            shards,
        });
        shards *= 2;
    }
    plan
}

/// Both systems, up and loaded.
struct Systems {
    cairn: Arc<CairnTarget>,
    etcd: Arc<EtcdTarget>,
    /// The process ids of each system's servers.
    cairn_pids: Vec<u32>,
    etcd_pids: Vec<u32>,
    cairn_keys: WriteKeys,
    etcd_keys: WriteKeys,
}

async fn suite(args: &SuiteArgs) -> anyhow::Result<Report> {
    let started_at = now();
    let started = Instant::now();
    let cairn_bin = cairn_binary(args.cairn_bin.as_deref())?;
    let etcd_version = EtcdCluster::version().context(
        "etcd is not installed (scripts/bench installs Debian's etcd-server; or apt-get install \
         etcd-server)",
    )?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix("cairn-bench-")
        .tempdir_in(&args.data_dir)
        .with_context(|| format!("making a directory in {}", args.data_dir.display()))?;
    let machine = machine::describe(work.path());
    let repo = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let versions = Versions {
        cairn: machine::git_describe(&repo),
        etcd: etcd_version,
    };
    println!(
        "cairn-bench: {} ({} cores), data in {} on {}",
        machine.cpu_model,
        machine.cores,
        work.path().display(),
        machine.data_disk
    );

    println!("measuring the machine's limits ({} s each)", args.limits_s);
    let limits = measure_limits(work.path(), args.limits_s).await?;
    println!(
        "  fsync p50 {:.0} µs p99 {:.0} µs; QUIC round trip p50 {:.0} µs p99 {:.0} µs",
        limits.fsync.latency.p50_us,
        limits.fsync.latency.p99_us,
        limits.quic_rtt.latency.p50_us,
        limits.quic_rtt.latency.p99_us
    );

    println!(
        "starting cairn (manager, 3 hosts, router; {} namespaces on {} shards) and etcd (3 \
         members, grpc-proxy)",
        args.max_shards, args.max_shards
    );
    let cairn_cluster = CairnCluster::start(
        &cairn_bin,
        &work.path().join("cairn"),
        args.base_port,
        args.max_shards,
    )
    .await?;
    let etcd_cluster =
        match EtcdCluster::start(&work.path().join("etcd"), args.base_port + 100).await {
            Ok(cluster) => cluster,
            Err(e) => {
                cairn_cluster.stop().await;
                return Err(e);
            }
        };
    let measured = run_workloads(args, &cairn_cluster, &etcd_cluster).await;
    cairn_cluster.stop().await;
    etcd_cluster.stop().await;
    let (runs, mut notes) = measured?;

    let idle = if args.idle_replicas > 0 {
        match measure_idle(args, &cairn_bin, &work.path().join("idle")).await {
            Ok(idle) => Some(idle),
            Err(e) => {
                notes.push(format!("the idle measurement failed: {e:#}"));
                None
            }
        }
    } else {
        notes.push("the idle measurement was skipped (--idle-replicas 0)".into());
        None
    };
    if args.quick {
        notes.push(
            "--quick: a smoke test of the harness with tiny settings, not a measurement".into(),
        );
    }
    let settings = Settings {
        warmup_s: args.warmup_s,
        measure_s: args.measure_s,
        rounds: args.rounds,
        clients: args.clients,
        connections: args.connections,
        value_bytes: cairn::manifest_template_len(),
        preload_keys: args.preload as usize,
        clients_per_shard: args.clients_per_shard,
        replicas: 3,
    };
    let duration_s = started.elapsed().as_secs_f64();
    println!("suite done in {duration_s:.0} s");
    Ok(Report {
        started: started_at,
        finished: now(),
        duration_s,
        machine,
        versions,
        settings,
        limits,
        runs,
        idle,
        notes,
    })
}

/// Connects to both systems, preloads them, and runs every planned workload round by round,
/// alternating which system goes first.
async fn run_workloads(
    args: &SuiteArgs,
    cairn_cluster: &CairnCluster,
    etcd_cluster: &EtcdCluster,
) -> anyhow::Result<(Vec<RunResult>, Vec<String>)> {
    let cairn = Arc::new(CairnTarget::connect(cairn_cluster, args.connections)?);
    let etcd = Arc::new(EtcdTarget::connect(etcd_cluster, args.connections, cairn.value()).await?);
    println!("preloading {} keys into each system", args.preload);
    cairn.preload(args.preload).await?;
    etcd.preload(args.preload).await?;
    // New writes take keys above the preloaded ones.
    let first_new = args.preload.max(1_000_000);
    let pids = |named: Vec<(String, u32)>| named.into_iter().map(|(_, pid)| pid).collect();
    let systems = Systems {
        cairn: cairn.clone(),
        etcd: etcd.clone(),
        cairn_pids: pids(cairn_cluster.pids()),
        etcd_pids: pids(etcd_cluster.pids()),
        cairn_keys: WriteKeys::starting_at(first_new),
        etcd_keys: WriteKeys::starting_at(first_new),
    };
    let window = Window {
        warmup: Duration::from_secs_f64(args.warmup_s),
        measure: Duration::from_secs_f64(args.measure_s),
    };
    let mut runs = Vec::new();
    let mut notes = Vec::new();
    let closed = closed_plan(args);
    let mut open: Vec<Planned> = Vec::new();
    let mut step = 0usize;
    for round in 0..args.rounds {
        println!("round {} of {}", round + 1, args.rounds);
        let plan: Vec<Planned> = closed.iter().chain(open.iter()).copied().collect();
        for planned in plan {
            let order = if (step + round as usize).is_multiple_of(2) {
                [System::Cairn, System::Etcd]
            } else {
                [System::Etcd, System::Cairn]
            };
            step += 1;
            for system in order {
                let spec = RunSpec {
                    system,
                    workload: planned.workload,
                    mode: planned.mode,
                    shards: planned.shards,
                    round,
                    preload_keys: args.preload,
                    seed: 0xbe4c_u64 ^ (step as u64) << 8 ^ u64::from(round),
                };
                let result = run_one(&systems, spec, window).await;
                print_run(&result);
                runs.push(result);
            }
        }
        if round == 0 {
            open = open_plan(args, &runs, &mut notes);
            // The first round gets its open-loop runs too.
            for planned in &open {
                for system in [System::Cairn, System::Etcd] {
                    let spec = RunSpec {
                        system,
                        workload: planned.workload,
                        mode: planned.mode,
                        shards: 1,
                        round,
                        preload_keys: args.preload,
                        seed: 0x09e7 ^ step as u64,
                    };
                    step += 1;
                    let result = run_one(&systems, spec, window).await;
                    print_run(&result);
                    runs.push(result);
                }
            }
        }
    }
    cairn.close().await;
    Ok((runs, notes))
}

/// Runs one workload, and samples the CPU at the start and the end of its measurement window.
async fn run_one(systems: &Systems, spec: RunSpec, window: Window) -> RunResult {
    let pids = match spec.system {
        System::Cairn => systems.cairn_pids.clone(),
        System::Etcd => systems.etcd_pids.clone(),
    };
    let sampler = tokio::spawn(async move {
        tokio::time::sleep(window.warmup).await;
        let before = cpu::sample(&pids);
        tokio::time::sleep(window.measure).await;
        (before, cpu::sample(&pids))
    });
    let mut result = match spec.system {
        System::Cairn => {
            load::run(
                systems.cairn.clone(),
                spec,
                window,
                systems.cairn_keys.clone(),
            )
            .await
        }
        System::Etcd => {
            load::run(
                systems.etcd.clone(),
                spec,
                window,
                systems.etcd_keys.clone(),
            )
            .await
        }
    };
    if let Ok((before, after)) = sampler.await {
        result.cpu = Some(cpu::used(&before, &after, result.ops));
    }
    result
}

/// The open-loop write rates: fractions of the lower closed-loop write throughput of round 0
/// (so that both systems are below saturation at the lower rates).
fn open_plan(args: &SuiteArgs, runs: &[RunResult], notes: &mut Vec<String>) -> Vec<Planned> {
    let peak = |system: System| {
        runs.iter()
            .find(|r| r.system == system && r.workload == Workload::Write && r.round == 0)
            .map(|r| r.throughput)
    };
    let lower = match (peak(System::Cairn), peak(System::Etcd)) {
        (Some(a), Some(b)) => a.min(b),
        _ => 0.0,
    };
    if lower < 10.0 {
        notes.push(format!(
            "open-loop runs skipped: the lower closed-loop write throughput was {lower:.0}/s"
        ));
        return Vec::new();
    }
    args.open_fractions
        .iter()
        .map(|f| Planned {
            workload: Workload::Write,
            mode: Mode::Open {
                rate: (lower * f).round(),
            },
            shards: 1,
        })
        .collect()
}

fn print_run(r: &RunResult) {
    let shards = if r.workload == Workload::WriteShards {
        format!(" {} shards", r.shards)
    } else {
        String::new()
    };
    let cpu = r.cpu.map_or(String::new(), |c| {
        format!(
            "  cpu: machine {:.0} %, servers {:.2} cores, {:.0} µs/op",
            c.machine_busy_percent, c.server_cores, c.server_cpu_us_per_op
        )
    });
    println!(
        "  {:<5} {:<17}{shards} {:<12} {:>9.0} ops/s  p50 {:>7.0} µs  p99 {:>7.0} µs  p99.9 {:>7.0} µs{cpu}{}",
        r.system.to_string(),
        r.workload.name(),
        r.mode.label(),
        r.throughput,
        r.latency.p50_us,
        r.latency.p99_us,
        r.latency.p999_us,
        if r.errors + r.dropped > 0 {
            format!(
                "  errors {} dropped {} ({})",
                r.errors,
                r.dropped,
                r.error_samples.join("; ")
            )
        } else {
            String::new()
        }
    );
}

/// Three shard-nodes hosting the same `--idle-replicas` groups; once they have elected leaders
/// and gone quiet, the CPU time of one of them over `--idle-measure-s`.
async fn measure_idle(args: &SuiteArgs, cairn_bin: &Path, dir: &Path) -> anyhow::Result<IdleCost> {
    println!(
        "idle cost: 3 shard-nodes, {} groups of 3 replicas, measuring one node for {} s",
        args.idle_replicas, args.idle_measure_s
    );
    let mut cluster =
        IdleCluster::start(cairn_bin, dir, args.base_port + 200, args.idle_replicas).await?;
    let outcome = async {
        let (led, quiet) = cluster
            .settle(args.idle_replicas as usize, Duration::from_secs(120))
            .await?;
        println!("  {led} groups with a leader, {quiet} quiesced on the measured node");
        let pid = cluster
            .measured_pid()
            .context("the measured node has exited")?;
        let (cpu_before, _) = machine::process_cpu(pid)?;
        let began = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(args.idle_measure_s)).await;
        let (cpu_after, rss) = machine::process_cpu(pid)?;
        let measured_s = began.elapsed().as_secs_f64();
        let cpu_s = cpu_after - cpu_before;
        let idle = IdleCost {
            replicas: args.idle_replicas as usize,
            groups_with_leader: led,
            measured_s,
            cpu_s,
            percent_of_one_core: 100.0 * cpu_s / measured_s,
            rss_mib: rss as f64 / (1024.0 * 1024.0),
        };
        println!(
            "  {:.2} % of one core ({:.2} CPU s over {:.1} s), {:.0} MiB resident",
            idle.percent_of_one_core, cpu_s, measured_s, idle.rss_mib
        );
        anyhow::Ok(idle)
    }
    .await;
    cluster.stop().await;
    outcome
}

/// `cairn-bench run`: one workload against one system.
async fn run_single(args: &RunArgs) -> anyhow::Result<()> {
    let workload = [
        Workload::Write,
        Workload::ReadConsistent,
        Workload::ReadLocal,
        Workload::Mixed,
        Workload::RouterCached,
        Workload::RouterConsistent,
        Workload::WriteShards,
    ]
    .into_iter()
    .find(|w| w.name() == args.workload)
    .with_context(|| format!("unknown workload {:?}", args.workload))?;
    let shards = if workload == Workload::WriteShards {
        args.shards.max(1)
    } else {
        1
    };
    let mode = match args.rate {
        Some(rate) => Mode::Open { rate },
        None => Mode::Closed {
            clients: args.clients,
        },
    };
    let work = tempfile::Builder::new()
        .prefix("cairn-bench-")
        .tempdir_in(&args.data_dir)?;
    let window = Window {
        warmup: Duration::from_secs(1),
        measure: Duration::from_secs_f64(args.seconds),
    };
    let spec = RunSpec {
        system: System::Cairn,
        workload,
        mode,
        shards,
        round: 0,
        preload_keys: 1_000,
        seed: 1,
    };
    let value = cairn::manifest_template();
    match args.system {
        SystemArg::Cairn => {
            let cairn_bin = cairn_binary(args.cairn_bin.as_deref())?;
            let cluster = CairnCluster::start(
                &cairn_bin,
                &work.path().join("cairn"),
                args.base_port,
                shards,
            )
            .await?;
            let outcome = async {
                let target = Arc::new(CairnTarget::connect(&cluster, args.connections)?);
                target.preload(spec.preload_keys).await?;
                let pids = cluster.pids();
                let result = with_cpu(
                    &pids,
                    load::run(
                        target.clone(),
                        spec,
                        window,
                        WriteKeys::starting_at(1_000_000),
                    ),
                )
                .await;
                target.close().await;
                anyhow::Ok(result)
            }
            .await;
            cluster.stop().await;
            print_run(&outcome?);
        }
        SystemArg::Etcd => {
            let cluster =
                EtcdCluster::start(&work.path().join("etcd"), args.base_port + 100).await?;
            let outcome = async {
                let bytes = postcard::to_stdvec(&value)?;
                let target =
                    Arc::new(EtcdTarget::connect(&cluster, args.connections, bytes).await?);
                target.preload(spec.preload_keys).await?;
                let pids = cluster.pids();
                let spec = RunSpec {
                    system: System::Etcd,
                    ..spec
                };
                let result = with_cpu(
                    &pids,
                    load::run(target, spec, window, WriteKeys::starting_at(1_000_000)),
                )
                .await;
                anyhow::Ok(result)
            }
            .await;
            cluster.stop().await;
            print_run(&outcome?);
        }
    }
    Ok(())
}

/// Runs `run` and prints the share of one core each process of `pids` (and this one) used
/// meanwhile.
async fn with_cpu(pids: &[(String, u32)], run: impl Future<Output = RunResult>) -> RunResult {
    let ids: Vec<u32> = pids.iter().map(|(_, pid)| *pid).collect();
    let before = cpu::sample(&ids);
    let result = run.await;
    let (servers, generator) = cpu::per_process(&before, &cpu::sample(&ids));
    let names = pids.iter().map(|(name, _)| name.as_str());
    for (name, cores) in names
        .chain(["load generator"])
        .zip(servers.into_iter().chain([generator]))
    {
        println!("  cpu {name:<16} {:>6.1} % of one core", 100.0 * cores);
    }
    result
}
