//! The output of a suite run, in one directory: `results.json` (the whole [`Report`], from which
//! everything else can be rendered again), `results.csv` (one row per run, for a spreadsheet),
//! `plots/*.svg` and `report.md`, which is what an engineer evaluating cairn reads.
//!
//! Every number in `report.md` combines the rounds of one (system, workload, mode, shards) the
//! same way ([`combine`]): the median over rounds, so one disturbed round moves nothing.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::model::{CpuUse, LatencySummary, Mode, Report, RunResult, System, Workload};
use crate::plot;

const SYSTEMS: [System; 2] = [System::Cairn, System::Etcd];

/// Targets (a) and (c): cairn's throughput over etcd's.
const THROUGHPUT_RATIO_GOAL: f64 = 3.0;
/// Target (d): the router's cached read, in microseconds.
const ROUTER_CACHED_P50_GOAL_US: f64 = 100.0;
const ROUTER_CACHED_P99_GOAL_US: f64 = 1_000.0;
/// Target (e): the idle replicas one shard-node hosts, and the CPU they may use.
const IDLE_REPLICAS_GOAL: usize = 1_000;
const IDLE_PERCENT_OF_ONE_CORE_GOAL: f64 = 5.0;
/// Target (f): a step to more shards that loses more than this fraction is a fall, not noise.
const SCALING_NOISE: f64 = 0.05;
/// Target (f): a step gaining less than this fraction has reached the plateau.
const SCALING_PLATEAU_GAIN: f64 = 0.05;
/// Target (f): over the whole range, growth below this fraction counts as flat.
const SCALING_FLAT_GAIN: f64 = 0.10;

/// Writes into `out` (created if missing): `results.json` (the report, pretty), `results.csv`
/// (one row per run), `plots/*.svg` and `report.md`. Returns the path of `report.md`.
pub(crate) fn write_all(report: &Report, out: &Path) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;

    let json_path = out.join("results.json");
    let mut json = serde_json::to_string_pretty(report)?;
    json.push('\n');
    fs::write(&json_path, json).with_context(|| format!("writing {}", json_path.display()))?;

    let csv_path = out.join("results.csv");
    write_csv(&report.runs, &csv_path)
        .with_context(|| format!("writing {}", csv_path.display()))?;

    let combined = combine(&report.runs);
    let plots_dir = out.join("plots");
    fs::create_dir_all(&plots_dir).with_context(|| format!("creating {}", plots_dir.display()))?;
    let plots = plot::write_all(report, &combined, &plots_dir)?;

    let md_path = out.join("report.md");
    let md = markdown(report, &combined, &plots)?;
    fs::write(&md_path, md).with_context(|| format!("writing {}", md_path.display()))?;
    Ok(md_path)
}

/// Reads `results.json` back, so a report can be rendered again without running the suite.
pub(crate) fn load(path: &Path) -> anyhow::Result<Report> {
    let json = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&json).with_context(|| format!("parsing {}", path.display()))
}

/// The rounds of one (system, workload, mode, shards), combined.
#[derive(Clone, Debug)]
pub(crate) struct Combined {
    pub(crate) system: System,
    pub(crate) workload: Workload,
    pub(crate) mode: Mode,
    pub(crate) shards: usize,
    /// How many runs (rounds) were combined.
    pub(crate) rounds: usize,
    /// The median over rounds of the throughput, in successful operations per second (with an
    /// even number of rounds, the mean of the middle two).
    pub(crate) throughput: f64,
    pub(crate) throughput_min: f64,
    pub(crate) throughput_max: f64,
    /// Each field (mean, percentiles, max) is the median over rounds of that round's value;
    /// `count` is the sum over rounds.
    pub(crate) latency: LatencySummary,
    /// Sums over rounds.
    pub(crate) ops: u64,
    pub(crate) errors: u64,
    pub(crate) dropped: u64,
    /// Each field is the median over the rounds that measured it; `None` when none did.
    pub(crate) cpu: Option<CpuUse>,
}

/// Combines the runs of the same (system, workload, mode, shards) over rounds: throughput is the
/// median over rounds (with its min and max), each latency percentile the median of the
/// per-round percentiles. Sorted by workload, mode (closed loop first, then by clients or rate),
/// shards and system.
pub(crate) fn combine(runs: &[RunResult]) -> Vec<Combined> {
    let mut groups: Vec<Vec<&RunResult>> = Vec::new();
    for run in runs {
        let same = |group: &&mut Vec<&RunResult>| {
            let first = group[0];
            first.system == run.system
                && first.workload == run.workload
                && first.mode == run.mode
                && first.shards == run.shards
        };
        match groups.iter_mut().find(same) {
            Some(group) => group.push(run),
            None => groups.push(vec![run]),
        }
    }
    let mut combined: Vec<Combined> = groups.iter().map(|group| combine_group(group)).collect();
    combined.sort_by(|a, b| {
        a.workload
            .cmp(&b.workload)
            .then_with(|| mode_order(&a.mode, &b.mode))
            .then(a.shards.cmp(&b.shards))
            .then(a.system.cmp(&b.system))
    });
    combined
}

fn combine_group(runs: &[&RunResult]) -> Combined {
    let first = runs[0];
    let of = |field: fn(&RunResult) -> f64| median(runs.iter().map(|run| field(run)).collect());
    let throughputs = runs.iter().map(|run| run.throughput);
    Combined {
        system: first.system,
        workload: first.workload,
        mode: first.mode,
        shards: first.shards,
        rounds: runs.len(),
        throughput: of(|run| run.throughput),
        throughput_min: throughputs.clone().fold(f64::INFINITY, f64::min),
        throughput_max: throughputs.fold(f64::NEG_INFINITY, f64::max),
        latency: LatencySummary {
            count: runs.iter().map(|run| run.latency.count).sum(),
            mean_us: of(|run| run.latency.mean_us),
            p50_us: of(|run| run.latency.p50_us),
            p90_us: of(|run| run.latency.p90_us),
            p99_us: of(|run| run.latency.p99_us),
            p999_us: of(|run| run.latency.p999_us),
            max_us: of(|run| run.latency.max_us),
        },
        ops: runs.iter().map(|run| run.ops).sum(),
        errors: runs.iter().map(|run| run.errors).sum(),
        dropped: runs.iter().map(|run| run.dropped).sum(),
        cpu: combine_cpu(runs),
    }
}

fn combine_cpu(runs: &[&RunResult]) -> Option<CpuUse> {
    let cpus: Vec<CpuUse> = runs.iter().filter_map(|run| run.cpu).collect();
    if cpus.is_empty() {
        return None;
    }
    let of = |field: fn(&CpuUse) -> f64| median(cpus.iter().map(field).collect());
    Some(CpuUse {
        machine_busy_percent: of(|cpu| cpu.machine_busy_percent),
        server_cores: of(|cpu| cpu.server_cores),
        generator_cores: of(|cpu| cpu.generator_cores),
        server_cpu_us_per_op: of(|cpu| cpu.server_cpu_us_per_op),
    })
}

/// Closed loop before open loop; then fewer clients or a lower rate first.
fn mode_order(a: &Mode, b: &Mode) -> Ordering {
    let key = |mode: &Mode| match *mode {
        Mode::Closed { clients } => (0, clients as f64),
        Mode::Open { rate } => (1, rate),
    };
    let (a, b) = (key(a), key(b));
    a.0.cmp(&b.0).then(a.1.total_cmp(&b.1))
}

/// The median; with an even count, the mean of the middle two. `values` is not empty.
fn median(mut values: Vec<f64>) -> f64 {
    assert!(!values.is_empty(), "the median of nothing");
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// The combined closed-loop, single-shard runs of `workload` at `clients` clients.
pub(crate) fn closed(
    combined: &[Combined],
    system: System,
    workload: Workload,
    clients: usize,
) -> Option<&Combined> {
    combined.iter().find(|c| {
        c.system == system
            && c.workload == workload
            && c.shards == 1
            && c.mode == Mode::Closed { clients }
    })
}

/// The workloads with a closed-loop, single-shard run at `clients` clients, in order. The
/// multi-shard write workload is left to its own section.
pub(crate) fn closed_workloads(combined: &[Combined], clients: usize) -> Vec<Workload> {
    let mut workloads: Vec<Workload> = combined
        .iter()
        .filter(|c| {
            c.workload != Workload::WriteShards
                && c.shards == 1
                && c.mode == Mode::Closed { clients }
        })
        .map(|c| c.workload)
        .collect();
    workloads.dedup();
    workloads
}

/// (shards, throughput) of `system`'s closed-loop multi-shard write runs, by shard count.
pub(crate) fn scaling(combined: &[Combined], system: System) -> Vec<(usize, &Combined)> {
    let mut points: Vec<(usize, &Combined)> = combined
        .iter()
        .filter(|c| {
            c.system == system
                && c.workload == Workload::WriteShards
                && matches!(c.mode, Mode::Closed { .. })
        })
        .map(|c| (c.shards, c))
        .collect();
    points.sort_by_key(|(shards, _)| *shards);
    points.dedup_by_key(|(shards, _)| *shards);
    points
}

/// The open-loop runs of `workload`, by rate then system.
pub(crate) fn open(combined: &[Combined], workload: Workload) -> Vec<&Combined> {
    let mut runs: Vec<&Combined> = combined
        .iter()
        .filter(|c| c.workload == workload && matches!(c.mode, Mode::Open { .. }))
        .collect();
    runs.sort_by(|a, b| mode_order(&a.mode, &b.mode).then(a.system.cmp(&b.system)));
    runs
}

fn write_csv(runs: &[RunResult], path: &Path) -> anyhow::Result<()> {
    let mut csv = csv::Writer::from_path(path)?;
    csv.write_record([
        "system",
        "workload",
        "mode",
        "clients",
        "rate",
        "shards",
        "round",
        "ops",
        "errors",
        "dropped",
        "elapsed_s",
        "throughput",
        "mean_us",
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "max_us",
        "machine_busy_percent",
        "server_cores",
        "generator_cores",
        "server_cpu_us_per_op",
    ])?;
    for run in runs {
        let (mode, clients, rate) = match run.mode {
            Mode::Closed { clients } => ("closed", clients.to_string(), String::new()),
            Mode::Open { rate } => ("open", String::new(), rate.to_string()),
        };
        let l = &run.latency;
        let cpu = |field: fn(&CpuUse) -> f64| {
            run.cpu
                .map_or(String::new(), |c| format!("{:.2}", field(&c)))
        };
        csv.write_record([
            run.system.to_string(),
            run.workload.to_string(),
            mode.to_string(),
            clients,
            rate,
            run.shards.to_string(),
            run.round.to_string(),
            run.ops.to_string(),
            run.errors.to_string(),
            run.dropped.to_string(),
            format!("{:.3}", run.elapsed_s),
            format!("{:.1}", run.throughput),
            format!("{:.1}", l.mean_us),
            format!("{:.0}", l.p50_us),
            format!("{:.0}", l.p90_us),
            format!("{:.0}", l.p99_us),
            format!("{:.0}", l.p999_us),
            format!("{:.0}", l.max_us),
            cpu(|c| c.machine_busy_percent),
            cpu(|c| c.server_cores),
            cpu(|c| c.generator_cores),
            cpu(|c| c.server_cpu_us_per_op),
        ])?;
    }
    csv.flush()?;
    Ok(())
}

/// One row of the targets table.
#[derive(Clone, Debug)]
struct Target {
    name: String,
    goal: String,
    measured: String,
    verdict: String,
}

impl Target {
    fn not_measured(name: String, goal: String) -> Self {
        Self {
            name,
            goal,
            measured: "—".into(),
            verdict: "not measured".into(),
        }
    }
}

fn verdict(met: bool) -> String {
    if met { "met".into() } else { "MISSED".into() }
}

/// Evaluates the targets against the combined runs.
fn targets(report: &Report, combined: &[Combined]) -> Vec<Target> {
    let settings = &report.settings;
    let clients = settings.clients;
    let pair = |workload| {
        Some((
            closed(combined, System::Cairn, workload, clients)?,
            closed(combined, System::Etcd, workload, clients)?,
        ))
    };
    let mut targets = Vec::new();

    // (a) and (c): throughput ratios.
    for (workload, name, goal) in [
        (
            Workload::Write,
            format!(
                "Write throughput, 1 shard × {} replicas, {clients} clients",
                settings.replicas
            ),
            format!("≥ {THROUGHPUT_RATIO_GOAL:.0}× etcd's"),
        ),
        (
            Workload::ReadConsistent,
            format!("Consistent read throughput, {clients} clients"),
            format!("≥ {THROUGHPUT_RATIO_GOAL:.0}× etcd's linearizable reads"),
        ),
    ] {
        targets.push(match pair(workload) {
            Some((cairn, etcd)) => {
                let ratio = cairn.throughput / etcd.throughput;
                Target {
                    name,
                    goal,
                    measured: format!(
                        "cairn {} vs etcd {} ops/s = **{}**{}",
                        fmt_ops(cairn.throughput),
                        fmt_ops(etcd.throughput),
                        fmt_ratio(ratio),
                        fmt_errors_aside(cairn, etcd),
                    ),
                    verdict: verdict(ratio >= THROUGHPUT_RATIO_GOAL),
                }
            }
            None => Target::not_measured(name, goal),
        });
        // (b) sits right after (a): it is the same run.
        if workload == Workload::Write {
            let name = "Write p99, same runs".to_string();
            let goal = "≤ etcd's".to_string();
            targets.push(match pair(workload) {
                Some((cairn, etcd)) => Target {
                    name,
                    goal,
                    measured: format!(
                        "cairn {} vs etcd {} = {}",
                        fmt_latency(cairn.latency.p99_us),
                        fmt_latency(etcd.latency.p99_us),
                        fmt_ratio(cairn.latency.p99_us / etcd.latency.p99_us),
                    ),
                    verdict: verdict(cairn.latency.p99_us <= etcd.latency.p99_us),
                },
                None => Target::not_measured(name, goal),
            });
        }
    }

    // (d): the router's cached read, cairn alone: a latency target, so measured with one client
    // (no queueing behind other clients); the run at the suite's client count if there is none.
    let (router, router_clients) = match closed(combined, System::Cairn, Workload::RouterCached, 1)
    {
        Some(run) => (Some(run), 1),
        None => (
            closed(combined, System::Cairn, Workload::RouterCached, clients),
            clients,
        ),
    };
    for (label, goal_us, of) in [
        (
            "p50",
            ROUTER_CACHED_P50_GOAL_US,
            (|l: &LatencySummary| l.p50_us) as fn(&LatencySummary) -> f64,
        ),
        ("p99", ROUTER_CACHED_P99_GOAL_US, |l: &LatencySummary| {
            l.p99_us
        }),
    ] {
        let name = format!(
            "Router cached read {label} (cairn), {router_clients} client{}",
            if router_clients == 1 { "" } else { "s" }
        );
        let goal = format!("< {}", fmt_latency(goal_us));
        targets.push(match router {
            Some(run) => {
                let measured = of(&run.latency);
                Target {
                    name,
                    goal,
                    measured: fmt_latency(measured),
                    verdict: verdict(measured < goal_us),
                }
            }
            None => Target::not_measured(name, goal),
        });
    }

    // (e): idle cost.
    let name = format!(
        "Idle: {} idle replicas on one shard-node",
        fmt_count(IDLE_REPLICAS_GOAL)
    );
    let goal = format!("< {IDLE_PERCENT_OF_ONE_CORE_GOAL:.0} % of one core");
    targets.push(match &report.idle {
        Some(idle) => {
            let met = idle.percent_of_one_core < IDLE_PERCENT_OF_ONE_CORE_GOAL;
            Target {
                name,
                goal,
                measured: format!(
                    "{:.2} % of one core ({} replicas, {:.0} s)",
                    idle.percent_of_one_core,
                    fmt_count(idle.replicas),
                    idle.measured_s
                ),
                // Under budget with fewer replicas than the goal proves nothing about the goal.
                verdict: if met && idle.replicas < IDLE_REPLICAS_GOAL {
                    format!("not measured at {}", fmt_count(IDLE_REPLICAS_GOAL))
                } else {
                    verdict(met)
                },
            }
        }
        None => Target::not_measured(name, goal),
    });

    // (f): scaling with shards.
    let name = "Aggregate write throughput vs shards (cairn)".to_string();
    let goal = format!(
        "grows with shards until the {} cores saturate",
        report.machine.cores
    );
    let points: Vec<(usize, f64)> = scaling(combined, System::Cairn)
        .into_iter()
        .map(|(shards, c)| (shards, c.throughput))
        .collect();
    targets.push(if points.len() < 2 {
        Target::not_measured(name, goal)
    } else {
        Target {
            name,
            goal,
            measured: points
                .iter()
                .map(|(shards, throughput)| format!("{shards}: {}", fmt_ops(*throughput)))
                .collect::<Vec<_>>()
                .join(" → ")
                + " ops/s",
            verdict: scaling_verdict(&points),
        }
    });
    targets
}

/// Whether throughput grows with shards: "grows", "grows to N shards, then plateaus", "flat",
/// or "MISSED: falls …". `points` are (shards, throughput), by shards, at least two.
fn scaling_verdict(points: &[(usize, f64)]) -> String {
    for step in points.windows(2) {
        let ((from, before), (to, after)) = (step[0], step[1]);
        if after < before * (1.0 - SCALING_NOISE) {
            return format!("MISSED: falls from {from} to {to} shards");
        }
    }
    let (first, last) = (points[0].1, points[points.len() - 1].1);
    if last < first * (1.0 + SCALING_FLAT_GAIN) {
        return "flat: no growth beyond noise".into();
    }
    match points
        .windows(2)
        .find(|step| step[1].1 < step[0].1 * (1.0 + SCALING_PLATEAU_GAIN))
    {
        Some(step) => format!("grows to {} shards, then plateaus", step[0].0),
        None => "grows".into(),
    }
}

/// ` (N errors)` when either run had errors, so a ratio is never read without them.
fn fmt_errors_aside(cairn: &Combined, etcd: &Combined) -> String {
    if cairn.errors == 0 && etcd.errors == 0 {
        String::new()
    } else {
        format!(
            " (errors: cairn {}, etcd {})",
            fmt_count(cairn.errors),
            fmt_count(etcd.errors)
        )
    }
}

fn markdown(report: &Report, combined: &[Combined], plots: &plot::Plots) -> anyhow::Result<String> {
    let mut md = String::new();
    header(&mut md, report)?;
    limits(&mut md, report)?;
    targets_section(&mut md, report, combined)?;
    closed_section(&mut md, report, combined, plots)?;
    one_client_section(&mut md, combined)?;
    open_section(&mut md, combined, plots)?;
    scaling_section(&mut md, report, combined, plots)?;
    idle_section(&mut md, report)?;
    errors_section(&mut md, report)?;
    reproduce_section(&mut md)?;
    Ok(md)
}

fn header(md: &mut String, report: &Report) -> anyhow::Result<()> {
    let (m, v, s) = (&report.machine, &report.versions, &report.settings);
    let date = report.started.get(..10).unwrap_or(&report.started);
    writeln!(md, "# cairn benchmark report\n")?;
    writeln!(
        md,
        "{date}: started {}, finished {}; the suite took {}.\n",
        fmt_time(&report.started),
        fmt_time(&report.finished),
        fmt_duration(report.duration_s)
    )?;
    writeln!(md, "## Machine, versions and settings\n")?;
    writeln!(md, "| | |\n|---|---|")?;
    writeln!(md, "| CPU | {} ({} cores) |", m.cpu_model, m.cores)?;
    writeln!(md, "| Kernel | {} |", m.kernel)?;
    writeln!(md, "| Memory | {:.1} GiB |", m.memory_gib)?;
    writeln!(md, "| Data disk | {} |", m.data_disk)?;
    writeln!(md, "| cairn | {} |", v.cairn)?;
    writeln!(md, "| etcd | {} |", v.etcd)?;
    writeln!(
        md,
        "| Warm-up, then measurement, per run | {} s, then {} s |",
        s.warmup_s, s.measure_s
    )?;
    writeln!(md, "| Rounds | {} |", s.rounds)?;
    writeln!(
        md,
        "| Closed-loop clients (single-shard workloads) | {} |",
        s.clients
    )?;
    writeln!(md, "| Connections per load generator | {} |", s.connections)?;
    writeln!(
        md,
        "| Value (manifest) size | {} bytes |",
        fmt_count(s.value_bytes)
    )?;
    writeln!(
        md,
        "| Keys preloaded for the reads | {} |",
        fmt_count(s.preload_keys)
    )?;
    writeln!(
        md,
        "| Clients per shard (write-shards) | {} |",
        s.clients_per_shard
    )?;
    writeln!(md, "| Replicas per group | {} |", s.replicas)?;
    writeln!(md)?;
    writeln!(
        md,
        "Both systems ran in the same suite, on this machine, with the same load generator \
         settings. The runs alternate between the systems round by round ({} round{}), so a slow \
         drift of the machine (page cache, thermal throttling, a noisy neighbour) falls on both \
         alike. Unless a table says otherwise, a number is the median over the rounds: the \
         throughput's median, and for latency the median of each round's percentile. Every run, \
         round by round, is in `results.csv`; everything measured is in `results.json`.\n",
        s.rounds,
        if s.rounds == 1 { "" } else { "s" },
    )?;
    Ok(())
}

fn limits(md: &mut String, report: &Report) -> anyhow::Result<()> {
    let (fsync, rtt) = (&report.limits.fsync, &report.limits.quic_rtt);
    writeln!(md, "## The machine's limits\n")?;
    writeln!(md, "| Limit | One operation | p50 | p99 | One at a time |")?;
    writeln!(md, "|---|---|--:|--:|--:|")?;
    for (name, limit) in [("fsync", fsync), ("Loopback QUIC round trip", rtt)] {
        writeln!(
            md,
            "| {name} | {} | {} | {} | {} ops/s |",
            limit.what,
            fmt_latency(limit.latency.p50_us),
            fmt_latency(limit.latency.p99_us),
            fmt_ops(limit.ops_per_s)
        )?;
    }
    writeln!(md)?;
    writeln!(
        md,
        "A durable write is acknowledged only once a majority of the replicas have made it \
         durable: at least one fsync on each of them, plus a round trip to a follower. So no \
         write's latency can beat the fsync p50 ({}). One fsync at a time would cap throughput at {} \
         writes/s; group commit (many writes appended and made durable by one fsync) is how a \
         system exceeds 1/fsync latency.\n",
        fmt_latency(fsync.latency.p50_us),
        fmt_ops(fsync.ops_per_s),
    )?;
    Ok(())
}

fn targets_section(md: &mut String, report: &Report, combined: &[Combined]) -> anyhow::Result<()> {
    writeln!(md, "## Targets\n")?;
    writeln!(
        md,
        "| Target | Goal | Measured | Verdict |\n|---|---|---|---|"
    )?;
    for t in targets(report, combined) {
        let verdict = if t.verdict.starts_with("MISSED") {
            format!("**{}**", t.verdict)
        } else {
            t.verdict.clone()
        };
        writeln!(
            md,
            "| {} | {} | {} | {verdict} |",
            t.name, t.goal, t.measured
        )?;
    }
    writeln!(md)?;
    writeln!(
        md,
        "A ratio is cairn's number over etcd's. For the shard scaling target, a step that loses \
         more than {:.0} % is a fall, a step gaining less than {:.0} % has reached the plateau, and \
         less than {:.0} % growth over the whole range is flat.\n",
        SCALING_NOISE * 100.0,
        SCALING_PLATEAU_GAIN * 100.0,
        SCALING_FLAT_GAIN * 100.0
    )?;
    Ok(())
}

/// Latency without queueing: the runs with one closed-loop client.
fn one_client_section(md: &mut String, combined: &[Combined]) -> anyhow::Result<()> {
    let workloads = closed_workloads(combined, 1);
    if workloads.is_empty() {
        return Ok(());
    }
    writeln!(md, "## One client: latency without queueing\n")?;
    writeln!(
        md,
        "One client, one operation at a time: what a single request costs when it waits behind \
         no other (with many clients, latency is mostly queueing for the cores). The router \
         target is read here.\n"
    )?;
    writeln!(
        md,
        "| Workload | cairn p50 | cairn p99 | cairn p99.9 | etcd p50 | etcd p99 | etcd p99.9 | \
         p50 cairn/etcd |"
    )?;
    writeln!(md, "|---|--:|--:|--:|--:|--:|--:|--:|")?;
    for workload in workloads {
        let cairn = closed(combined, System::Cairn, workload, 1);
        let etcd = closed(combined, System::Etcd, workload, 1);
        let lat = |c: Option<&Combined>, f: fn(&LatencySummary) -> f64| {
            c.map_or("—".to_string(), |c| fmt_latency(f(&c.latency)))
        };
        writeln!(
            md,
            "| {workload} | {} | {} | {} | {} | {} | {} | {} |",
            lat(cairn, |l| l.p50_us),
            lat(cairn, |l| l.p99_us),
            lat(cairn, |l| l.p999_us),
            lat(etcd, |l| l.p50_us),
            lat(etcd, |l| l.p99_us),
            lat(etcd, |l| l.p999_us),
            cairn.zip(etcd).map_or("—".into(), |(c, e)| fmt_ratio(
                c.latency.p50_us / e.latency.p50_us
            )),
        )?;
    }
    writeln!(md)?;
    Ok(())
}

fn closed_section(
    md: &mut String,
    report: &Report,
    combined: &[Combined],
    plots: &plot::Plots,
) -> anyhow::Result<()> {
    let clients = report.settings.clients;
    writeln!(md, "## Closed loop, side by side\n")?;
    let workloads = closed_workloads(combined, clients);
    if workloads.is_empty() {
        writeln!(
            md,
            "No closed-loop run at {clients} clients was measured.\n"
        )?;
        return Ok(());
    }
    writeln!(
        md,
        "{clients} clients, each sending its next operation when the last one answers, on one \
         shard. ± is half the spread between the slowest and the fastest round, relative to the \
         median. A throughput ratio above 1 and a p99 ratio below 1 favour cairn. Errors are \
         summed over the rounds.\n"
    )?;
    writeln!(
        md,
        "| Workload | cairn ops/s | etcd ops/s | cairn/etcd | cairn p50 | cairn p99 | etcd p50 \
         | etcd p99 | p99 cairn/etcd | Errors cairn / etcd |"
    )?;
    writeln!(md, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")?;
    let cell = |c: Option<&Combined>, f: &dyn Fn(&Combined) -> String| c.map_or("—".into(), f);
    for workload in workloads {
        let cairn = closed(combined, System::Cairn, workload, clients);
        let etcd = closed(combined, System::Etcd, workload, clients);
        let both = cairn.zip(etcd);
        writeln!(
            md,
            "| {workload} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |",
            cell(cairn, &fmt_throughput_spread),
            cell(etcd, &fmt_throughput_spread),
            both.map_or("—".into(), |(c, e)| fmt_ratio(
                c.throughput / e.throughput
            )),
            cell(cairn, &|c| fmt_latency(c.latency.p50_us)),
            cell(cairn, &|c| fmt_latency(c.latency.p99_us)),
            cell(etcd, &|c| fmt_latency(c.latency.p50_us)),
            cell(etcd, &|c| fmt_latency(c.latency.p99_us)),
            both.map_or("—".into(), |(c, e)| fmt_ratio(
                c.latency.p99_us / e.latency.p99_us
            )),
            cell(cairn, &fmt_errors),
            cell(etcd, &fmt_errors),
        )?;
    }
    writeln!(md)?;
    cpu_table(md, report, combined, clients)?;
    writeln!(
        md,
        "What the workloads do: `write` creates a ≈{} byte manifest (etcd: a put of the same \
         bytes) on the leader; `read-consistent` is a linearizable read (etcd's default); \
         `read-local` may be answered by any replica from what it has applied (etcd: \
         serializable), spread over the replicas; `mixed-90-10` is 90 % consistent reads and 10 % \
         writes; `router-cached` reads through cairn's router with a cached route and manifest \
         (etcd: a serializable read through `etcd grpc-proxy`); `router-consistent` is a \
         consistent read resolved and forwarded by the router (etcd: a linearizable read through \
         the proxy).\n",
        fmt_count(report.settings.value_bytes)
    )?;
    if let Some(file) = plots.throughput {
        writeln!(
            md,
            "![Closed-loop throughput, cairn and etcd](plots/{file})\n"
        )?;
    }
    if let Some(file) = plots.latency {
        writeln!(
            md,
            "![Closed-loop latency percentiles, cairn and etcd](plots/{file})\n"
        )?;
    }
    Ok(())
}

/// Where the CPU went in the closed-loop runs, when it was measured.
fn cpu_table(
    md: &mut String,
    report: &Report,
    combined: &[Combined],
    clients: usize,
) -> anyhow::Result<()> {
    let workloads = closed_workloads(combined, clients);
    let measured = |workload| {
        SYSTEMS.map(|system| closed(combined, system, workload, clients).and_then(|c| c.cpu))
    };
    if workloads
        .iter()
        .all(|&w| measured(w).iter().all(Option::is_none))
    {
        return Ok(());
    }
    writeln!(
        md,
        "Where the CPU went in the same runs. Machine busy: the share of all {} cores in use. \
         Server cores: CPU the system's own processes used (1.00 = one core). Server CPU per \
         operation: the servers' CPU time per successful operation; lower is more efficient. The \
         load generator shares the machine: its cores are CPU the servers could not have.\n",
        report.machine.cores
    )?;
    writeln!(
        md,
        "| Workload | Machine busy cairn / etcd | Server cores cairn / etcd | Server CPU per op \
         cairn / etcd | Load generator cores cairn / etcd |"
    )?;
    writeln!(md, "|---|--:|--:|--:|--:|")?;
    for workload in workloads {
        let [cairn, etcd] = measured(workload);
        let pair = |f: &dyn Fn(&CpuUse) -> String| {
            let cell = |cpu: Option<CpuUse>| cpu.map_or("—".to_string(), |c| f(&c));
            format!("{} / {}", cell(cairn), cell(etcd))
        };
        writeln!(
            md,
            "| {workload} | {} | {} | {} | {} |",
            pair(&|c| format!("{:.0} %", c.machine_busy_percent)),
            pair(&|c| format!("{:.2}", c.server_cores)),
            pair(&|c| fmt_latency(c.server_cpu_us_per_op)),
            pair(&|c| format!("{:.2}", c.generator_cores)),
        )?;
    }
    writeln!(md)?;
    Ok(())
}

fn open_section(md: &mut String, combined: &[Combined], plots: &plot::Plots) -> anyhow::Result<()> {
    writeln!(md, "## Open loop\n")?;
    let mut workloads: Vec<Workload> = combined
        .iter()
        .filter(|c| matches!(c.mode, Mode::Open { .. }))
        .map(|c| c.workload)
        .collect();
    workloads.dedup();
    if workloads.is_empty() {
        writeln!(md, "No open-loop run was measured.\n")?;
        return Ok(());
    }
    writeln!(
        md,
        "Operations start at a fixed rate whatever the answers, and each latency counts from when \
         its operation should have started, so a stall shows in the percentiles instead of \
         slowing the load down (no coordinated omission). Dropped: operations not started because \
         too many were in flight, summed over the rounds; a system that drops or falls short of \
         the offered rate is past its capacity at that rate.\n"
    )?;
    for workload in workloads {
        writeln!(md, "### {workload}\n")?;
        writeln!(
            md,
            "| Offered | System | Achieved ops/s | p50 | p99 | p99.9 | Dropped | Errors |"
        )?;
        writeln!(md, "|--:|---|--:|--:|--:|--:|--:|--:|")?;
        for c in open(combined, workload) {
            writeln!(
                md,
                "| {}/s | {} | {} | {} | {} | {} | {} | {} |",
                fmt_ops(match c.mode {
                    Mode::Open { rate } => rate,
                    Mode::Closed { .. } => f64::NAN,
                }),
                c.system,
                fmt_ops(c.throughput),
                fmt_latency(c.latency.p50_us),
                fmt_latency(c.latency.p99_us),
                fmt_latency(c.latency.p999_us),
                fmt_count(c.dropped),
                fmt_errors(c),
            )?;
        }
        writeln!(md)?;
    }
    if let Some(file) = plots.open_loop {
        writeln!(
            md,
            "![Open-loop write latency against the offered rate](plots/{file})\n"
        )?;
    }
    Ok(())
}

fn scaling_section(
    md: &mut String,
    report: &Report,
    combined: &[Combined],
    plots: &plot::Plots,
) -> anyhow::Result<()> {
    writeln!(md, "## Scaling with shards\n")?;
    let cairn = scaling(combined, System::Cairn);
    let etcd = scaling(combined, System::Etcd);
    let mut shards: Vec<usize> = cairn
        .iter()
        .chain(&etcd)
        .map(|(shards, _)| *shards)
        .collect();
    shards.sort_unstable();
    shards.dedup();
    if shards.is_empty() {
        writeln!(md, "The multi-shard write workload was not measured.\n")?;
        return Ok(());
    }
    let s = &report.settings;
    writeln!(
        md,
        "Writes spread evenly over the shards, {} closed-loop clients per shard. Each cairn shard \
         is its own Raft group of {} replicas; etcd has one consensus group, so it gets the same \
         client load on that one group. Every replica of every shard runs on this machine's {} \
         cores and shares its disk, so aggregate throughput can only grow until they are busy.\n",
        s.clients_per_shard, s.replicas, report.machine.cores
    )?;
    let busy = |c: Option<&Combined>| {
        c.and_then(|c| c.cpu).map_or("—".into(), |cpu| {
            format!("{:.0} %", cpu.machine_busy_percent)
        })
    };
    let with_cpu = cairn.iter().chain(&etcd).any(|(_, c)| c.cpu.is_some());
    writeln!(
        md,
        "| Shards | Clients | cairn ops/s | etcd ops/s | cairn/etcd | cairn p99 | etcd p99 |{}",
        if with_cpu {
            " Machine busy cairn / etcd |"
        } else {
            ""
        }
    )?;
    writeln!(
        md,
        "|--:|--:|--:|--:|--:|--:|--:|{}",
        if with_cpu { "--:|" } else { "" }
    )?;
    for n in shards {
        let (c, e) = (at(&cairn, n), at(&etcd, n));
        let clients = c.or(e).map_or("—".into(), |run| match run.mode {
            Mode::Closed { clients } => clients.to_string(),
            Mode::Open { .. } => "—".into(),
        });
        writeln!(
            md,
            "| {n} | {clients} | {} | {} | {} | {} | {} |{}",
            c.map_or("—".into(), fmt_throughput_spread),
            e.map_or("—".into(), fmt_throughput_spread),
            c.zip(e).map_or("—".into(), |(c, e)| fmt_ratio(
                c.throughput / e.throughput
            )),
            c.map_or("—".into(), |c| fmt_latency(c.latency.p99_us)),
            e.map_or("—".into(), |e| fmt_latency(e.latency.p99_us)),
            if with_cpu {
                format!(" {} / {} |", busy(c), busy(e))
            } else {
                String::new()
            },
        )?;
    }
    writeln!(md)?;
    let points: Vec<(usize, f64)> = cairn.iter().map(|(n, c)| (*n, c.throughput)).collect();
    if points.len() >= 2 {
        let steps: Vec<String> = points
            .windows(2)
            .map(|step| {
                format!(
                    "{} → {} shards: {}",
                    step[0].0,
                    step[1].0,
                    fmt_ratio(step[1].1 / step[0].1)
                )
            })
            .collect();
        writeln!(
            md,
            "cairn, step by step: {}. Verdict: {}.{}\n",
            steps.join(", "),
            scaling_verdict(&points),
            if with_cpu {
                " Where the machine is close to 100 % busy, its cores are saturated: more shards \
                 cannot add throughput there, only spread the same CPU thinner."
            } else {
                ""
            },
        )?;
    }
    if let Some(file) = plots.scaling {
        writeln!(
            md,
            "![Aggregate write throughput against shards](plots/{file})\n"
        )?;
    }
    Ok(())
}

/// The run at `shards` shards among `points`.
fn at<'a>(points: &[(usize, &'a Combined)], shards: usize) -> Option<&'a Combined> {
    points.iter().find(|(n, _)| *n == shards).map(|(_, c)| *c)
}

fn idle_section(md: &mut String, report: &Report) -> anyhow::Result<()> {
    writeln!(md, "## Idle cost\n")?;
    match &report.idle {
        Some(idle) => writeln!(
            md,
            "One shard-node hosting {} idle replicas, each a member of a {}-replica group ({} of \
             the groups had a leader when the measurement started), used {:.2} CPU-seconds (user \
             + system) in {:.0} s: {:.2} % of one core, with {:.0} MiB resident. The goal is under \
             {IDLE_PERCENT_OF_ONE_CORE_GOAL:.0} % of one core for {} replicas.\n",
            fmt_count(idle.replicas),
            report.settings.replicas,
            fmt_count(idle.groups_with_leader),
            idle.cpu_s,
            idle.measured_s,
            idle.percent_of_one_core,
            idle.rss_mib,
            fmt_count(IDLE_REPLICAS_GOAL),
        )?,
        None => writeln!(md, "Not measured in this run.\n")?,
    }
    Ok(())
}

fn errors_section(md: &mut String, report: &Report) -> anyhow::Result<()> {
    writeln!(md, "## Errors and notes\n")?;
    let failed: Vec<&RunResult> = report.runs.iter().filter(|run| run.errors > 0).collect();
    if report.notes.is_empty() && failed.is_empty() {
        writeln!(md, "No notes, and no run had errors.\n")?;
        return Ok(());
    }
    for note in &report.notes {
        writeln!(md, "- {}", one_line(note))?;
    }
    for run in &failed {
        let samples: Vec<String> = run
            .error_samples
            .iter()
            .map(|sample| format!("`{}`", code_span(sample)))
            .collect();
        writeln!(
            md,
            "- {} {} ({}, {} shard{}), round {}: {} error{} beside {} successes{}{}",
            run.system,
            run.workload,
            run.mode.label(),
            run.shards,
            if run.shards == 1 { "" } else { "s" },
            run.round,
            fmt_count(run.errors),
            if run.errors == 1 { "" } else { "s" },
            fmt_count(run.ops),
            if samples.is_empty() { "" } else { ": " },
            samples.join("; "),
        )?;
    }
    writeln!(md)?;
    Ok(())
}

fn reproduce_section(md: &mut String) -> anyhow::Result<()> {
    writeln!(md, "## How to reproduce\n")?;
    writeln!(
        md,
        "One command builds both systems, runs the whole suite and writes this report:\n"
    )?;
    writeln!(md, "```sh\nscripts/bench\n```\n")?;
    writeln!(
        md,
        "The suite's options (duration, rounds, clients, which parts to run):\n"
    )?;
    writeln!(
        md,
        "```sh\ncargo run --release -p cairn-bench -- suite --help\n```\n"
    )?;
    writeln!(md, "To render this report again from its data:\n")?;
    writeln!(
        md,
        "```sh\ncargo run --release -p cairn-bench -- report --from results.json\n```"
    )?;
    Ok(())
}

/// `text` on one line, for a list item.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` safe inside a single-backtick code span.
fn code_span(text: &str) -> String {
    one_line(text).replace('`', "'")
}

/// Latency: whole microseconds below 1 ms, else milliseconds with 2 decimals.
fn fmt_latency(us: f64) -> String {
    if !us.is_finite() {
        "—".into()
    } else if us.round() < 1_000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1_000.0)
    }
}

/// Operations per second as a whole number with thousands separators: `12 345`.
fn fmt_ops(ops_per_s: f64) -> String {
    if ops_per_s.is_finite() && ops_per_s >= 0.0 {
        fmt_count(ops_per_s.round() as u64)
    } else {
        "—".into()
    }
}

/// A count with thousands separators: `1 234 567`.
fn fmt_count(n: impl TryInto<u64>) -> String {
    let digits = n
        .try_into()
        .map_or_else(|_| "?".into(), |n: u64| n.to_string());
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(digit);
    }
    out
}

/// Errors summed over rounds, with their share of all operations when there are any:
/// `12 (0.004 %)`.
fn fmt_errors(c: &Combined) -> String {
    if c.errors == 0 {
        return "0".into();
    }
    let share = c.errors as f64 / (c.ops + c.errors) as f64 * 100.0;
    format!("{} ({share:.3} %)", fmt_count(c.errors))
}

/// A ratio: `3.07×`.
fn fmt_ratio(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{ratio:.2}×")
    } else {
        "∞".into()
    }
}

/// The median throughput and half its spread over rounds: `12 345 ±2.1 %`.
fn fmt_throughput_spread(c: &Combined) -> String {
    if c.rounds < 2 || c.throughput <= 0.0 {
        return fmt_ops(c.throughput);
    }
    let half_spread = (c.throughput_max - c.throughput_min) / 2.0 / c.throughput * 100.0;
    format!("{} ±{half_spread:.1} %", fmt_ops(c.throughput))
}

/// An RFC 3339 time to the second: `2026-11-29 18:00:00 UTC`. Anything else is shown as is.
fn fmt_time(rfc3339: &str) -> String {
    match rfc3339.get(..19) {
        Some(seconds) if rfc3339.ends_with('Z') && seconds.as_bytes()[10] == b'T' => {
            format!("{} UTC", seconds.replacen('T', " ", 1))
        }
        _ => rfc3339.to_string(),
    }
}

/// `1 h 02 min`, `12 min 05 s`, `45 s`.
fn fmt_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h} h {m:02} min")
    } else if m > 0 {
        format!("{m} min {s:02} s")
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IdleCost, LimitResult, Limits, Machine, Settings, Versions};

    fn latency(p50_us: f64) -> LatencySummary {
        LatencySummary {
            count: 10_000,
            mean_us: p50_us * 1.2,
            p50_us,
            p90_us: p50_us * 2.0,
            p99_us: p50_us * 4.0,
            p999_us: p50_us * 9.0,
            max_us: p50_us * 30.0,
        }
    }

    fn run(
        system: System,
        workload: Workload,
        mode: Mode,
        shards: usize,
        round: u32,
        throughput: f64,
        p50_us: f64,
    ) -> RunResult {
        let errors = u64::from(system == System::Etcd && workload == Workload::Mixed);
        RunResult {
            system,
            workload,
            mode,
            shards,
            round,
            ops: (throughput * 20.0) as u64,
            errors,
            dropped: 0,
            elapsed_s: 20.0,
            throughput,
            latency: latency(p50_us),
            error_samples: if errors > 0 {
                vec!["status: Unavailable, message: \"etcdserver: leader changed\"".into()]
            } else {
                vec![]
            },
            cpu: Some(cpu(system, throughput)),
        }
    }

    /// Made-up CPU use: cairn spends 40 µs of CPU per operation, etcd 150 µs, on 2 cores.
    fn cpu(system: System, throughput: f64) -> CpuUse {
        let server_cpu_us_per_op = if system == System::Cairn { 40.0 } else { 150.0 };
        let server_cores = (server_cpu_us_per_op * throughput / 1e6).min(1.7);
        CpuUse {
            machine_busy_percent: (server_cores + 0.3) / 2.0 * 100.0,
            server_cores,
            generator_cores: 0.3,
            server_cpu_us_per_op,
        }
    }

    fn limit(what: &str, p50_us: f64) -> LimitResult {
        LimitResult {
            what: what.into(),
            ops: 1_000,
            elapsed_s: p50_us * 1_000.0 / 1e6,
            ops_per_s: 1e6 / p50_us,
            latency: latency(p50_us),
        }
    }

    /// Two rounds, both systems, every workload, the shard sweep and two open-loop rates.
    fn synthetic() -> Report {
        let clients = 64;
        let closed = Mode::Closed { clients };
        let mut runs = Vec::new();
        for round in 0..2 {
            let jitter = 1.0 + f64::from(round) * 0.04;
            for (workload, cairn, etcd, cairn_p50, etcd_p50) in [
                (Workload::Write, 14_200.0, 4_100.0, 3_900.0, 14_500.0),
                (
                    Workload::ReadConsistent,
                    41_000.0,
                    12_500.0,
                    1_400.0,
                    4_800.0,
                ),
                (Workload::ReadLocal, 88_000.0, 30_100.0, 650.0, 1_900.0),
                (Workload::Mixed, 30_500.0, 9_800.0, 1_800.0, 5_600.0),
                (Workload::RouterCached, 120_000.0, 21_000.0, 72.0, 2_700.0),
                (
                    Workload::RouterConsistent,
                    35_000.0,
                    9_000.0,
                    1_700.0,
                    6_500.0,
                ),
            ] {
                for (system, throughput, p50) in [
                    (System::Cairn, cairn, cairn_p50),
                    (System::Etcd, etcd, etcd_p50),
                ] {
                    runs.push(run(
                        system,
                        workload,
                        closed,
                        1,
                        round,
                        throughput * jitter,
                        p50,
                    ));
                }
            }
            for shards in [1, 2, 4, 8] {
                let mode = Mode::Closed {
                    clients: 16 * shards,
                };
                let cairn = [14_000.0, 25_000.0, 31_000.0, 32_000.0][shards.ilog2() as usize];
                let etcd = [4_000.0, 4_300.0, 4_400.0, 4_350.0][shards.ilog2() as usize];
                let shard_runs = [(System::Cairn, cairn), (System::Etcd, etcd)];
                for (system, throughput) in shard_runs {
                    let p50 = 16.0 * shards as f64 / throughput * 1e6;
                    let workload = Workload::WriteShards;
                    runs.push(run(
                        system,
                        workload,
                        mode,
                        shards,
                        round,
                        throughput * jitter,
                        p50,
                    ));
                }
            }
            for rate in [2_000.0, 8_000.0] {
                let mode = Mode::Open { rate };
                for (system, p50) in [(System::Cairn, 2_500.0), (System::Etcd, 9_000.0)] {
                    let p50 = p50 * rate / 2_000.0;
                    let mut r = run(system, Workload::Write, mode, 1, round, rate * 0.99, p50);
                    if system == System::Etcd && rate > 4_000.0 {
                        r.throughput = 4_050.0;
                        r.dropped = 12_345;
                    }
                    runs.push(r);
                }
            }
        }
        Report {
            started: "2026-11-29T18:00:00Z".into(),
            finished: "2026-11-29T18:52:10Z".into(),
            duration_s: 3_130.0,
            machine: Machine {
                cpu_model: "AMD EPYC 7B13".into(),
                cores: 2,
                kernel: "6.8.0-1019-gcp".into(),
                memory_gib: 7.8,
                data_disk: "/dev/vda1 ext4".into(),
            },
            versions: Versions {
                cairn: "v0.1.0-42-gabcdef0".into(),
                etcd: "etcd Version: 3.6.5".into(),
            },
            settings: Settings {
                warmup_s: 5.0,
                measure_s: 20.0,
                rounds: 2,
                clients,
                connections: 4,
                value_bytes: 1_024,
                preload_keys: 10_000,
                clients_per_shard: 16,
                replicas: 3,
            },
            limits: Limits {
                fsync: limit("append 1 KiB + fdatasync", 1_850.0),
                quic_rtt: limit("64-byte request and echo over QUIC + mTLS", 95.0),
            },
            runs,
            idle: Some(IdleCost {
                replicas: 1_000,
                groups_with_leader: 1_000,
                measured_s: 30.0,
                cpu_s: 0.9,
                percent_of_one_core: 3.0,
                rss_mib: 412.0,
            }),
            notes: vec![
                "the disk is a network block device: fsync latency is the network's".into(),
            ],
        }
    }

    #[test]
    fn combine_takes_medians_over_rounds() {
        let report = synthetic();
        let combined = combine(&report.runs);
        let write = closed(&combined, System::Cairn, Workload::Write, 64).unwrap();
        assert_eq!(write.rounds, 2);
        assert!((write.throughput - 14_200.0 * 1.02).abs() < 1e-6);
        assert!((write.throughput_min - 14_200.0).abs() < 1e-6);
        assert!((write.throughput_max - 14_200.0 * 1.04).abs() < 1e-6);
        assert_eq!(write.latency.count, 20_000);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        // 6 closed workloads + 4 shard counts + 2 rates, for both systems.
        assert_eq!(combined.len(), 2 * (6 + 4 + 2));
    }

    #[test]
    fn formats_are_readable() {
        assert_eq!(fmt_ops(12_345.4), "12 345");
        assert_eq!(fmt_ops(999.0), "999");
        assert_eq!(fmt_count(1_234_567u64), "1 234 567");
        assert_eq!(fmt_latency(87.4), "87 µs");
        assert_eq!(fmt_latency(1_234.0), "1.23 ms");
        assert_eq!(fmt_duration(3_130.0), "52 min 10 s");
        assert_eq!(
            fmt_time("2026-11-29T20:18:36.521274227Z"),
            "2026-11-29 20:18:36 UTC"
        );
        assert_eq!(fmt_time("yesterday"), "yesterday");
    }

    #[test]
    fn scaling_verdict_names_growth_plateau_and_fall() {
        assert_eq!(scaling_verdict(&[(1, 10.0), (2, 19.0), (4, 35.0)]), "grows");
        assert_eq!(
            scaling_verdict(&[(1, 10.0), (2, 19.0), (4, 19.5), (8, 19.2)]),
            "grows to 2 shards, then plateaus"
        );
        assert_eq!(
            scaling_verdict(&[(1, 10.0), (2, 10.2)]),
            "flat: no growth beyond noise"
        );
        assert_eq!(
            scaling_verdict(&[(1, 10.0), (2, 8.0)]),
            "MISSED: falls from 1 to 2 shards"
        );
    }

    #[test]
    fn report_renders_every_file() {
        let report = synthetic();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let md_path = write_all(&report, &out).unwrap();
        assert_eq!(md_path, out.join("report.md"));
        for file in ["results.json", "results.csv", "report.md"] {
            assert!(out.join(file).is_file(), "{file} missing");
        }

        let md = fs::read_to_string(&md_path).unwrap();
        for row in [
            "| Write throughput, 1 shard × 3 replicas, 64 clients | ≥ 3× etcd's | cairn 14 484 vs \
             etcd 4 182 ops/s = **3.46×** | met |",
            "| Write p99, same runs | ≤ etcd's | cairn 15.60 ms vs etcd 58.00 ms = 0.27× | met |",
            "| Consistent read throughput, 64 clients |",
            "| Router cached read p50 (cairn), 64 clients | < 100 µs | 72 µs | met |",
            "| Router cached read p99 (cairn), 64 clients | < 1.00 ms | 288 µs | met |",
            "| Idle: 1 000 idle replicas on one shard-node | < 5 % of one core | 3.00 % of one core",
            "| grows to 4 shards, then plateaus |",
        ] {
            assert!(md.contains(row), "report.md lacks {row:?}:\n{md}");
        }
        assert!(md.contains("| read-consistent | 41 820 ±2.0 % | 12 750 ±2.0 % | 3.28× |"));
        assert!(md.contains("leader changed"), "error samples are listed");
        for plot in ["throughput", "latency", "scaling", "open_loop"] {
            let path = out.join("plots").join(format!("{plot}.svg"));
            let svg = fs::read_to_string(&path).unwrap();
            assert!(
                svg.starts_with("<svg"),
                "{plot}.svg starts with {:?}",
                &svg[..20]
            );
            assert!(
                svg.trim_end().ends_with("</svg>"),
                "{plot}.svg is cut short"
            );
            assert!(
                md.contains(&format!("](plots/{plot}.svg)")),
                "{plot}.svg is not embedded"
            );
        }

        let csv = fs::read_to_string(out.join("results.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + report.runs.len());
        assert!(csv.starts_with("system,workload,mode,clients,rate,shards,round,ops,"));

        let again = load(&out.join("results.json")).unwrap();
        assert_eq!(again.runs.len(), report.runs.len());
        assert_eq!(again.runs[0].mode, report.runs[0].mode);

        // Rendered again into the same directory without open-loop runs: no open-loop plot (the
        // earlier one is removed) and no dangling link.
        let mut closed_only = report.clone();
        closed_only
            .runs
            .retain(|run| matches!(run.mode, Mode::Closed { .. }));
        closed_only.idle = None;
        let md = fs::read_to_string(write_all(&closed_only, &out).unwrap()).unwrap();
        assert!(!out.join("plots/open_loop.svg").exists());
        assert!(!md.contains("open_loop.svg"));
        assert!(md.contains("| not measured |"));
    }
}
