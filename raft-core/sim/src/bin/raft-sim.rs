//! `raft-sim`: runs simulator seeds and reports violations.
//!
//! ```text
//! cargo run --release --bin raft-sim -- --seeds 0..10000
//! cargo run --release --bin raft-sim -- --seeds 4242 --trace      # replay one seed
//! cargo run --release --features inject-bugs --bin raft-sim -- --seeds 0..200 --bug commit-without-quorum
//! ```

use std::ops::Range;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::Parser;
use raft_sim::{Report, RunOptions, run};

#[derive(Parser, Debug)]
#[command(about = "Seeded, replayable fault simulation of raft-core clusters")]
struct Args {
    /// Seeds to run: `N` or `A..B` (B excluded).
    #[arg(long, default_value = "0..100", value_parser = parse_seeds)]
    seeds: Range<u64>,
    /// Ticks of the fault phase of each run.
    #[arg(long, default_value_t = 300)]
    fault_ticks: u64,
    /// Print the full event trace of each run, every message included (use with one seed).
    #[arg(long)]
    trace: bool,
    /// Print the story of each run: elections, faults, membership changes, snapshots, heal —
    /// the trace without individual messages and applies (use with one seed).
    #[arg(long)]
    story: bool,
    /// Worker threads (default: available cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Stop at the first failing seed.
    #[arg(long)]
    fail_fast: bool,
    /// Keep every run's commit rule and leader policy as the seed drew them: no policy entries,
    /// no direct policy changes.
    #[arg(long)]
    no_policy_changes: bool,
    /// Leave a run that ends in a policy stall as it is (reported) instead of handing it to the
    /// operator path (the manager lifting the forced leader, then pushing a new policy).
    #[arg(long)]
    no_operator: bool,
    /// Enable a deliberately injected core bug: commit-without-quorum, vote-for-stale-log,
    /// lease-read-skips-check, forced-leader-ignored; or driver bug: commit-rule-not-handed-to-core,
    /// leader-policy-not-handed-to-core (needs `--features inject-bugs`).
    #[arg(long)]
    bug: Option<String>,
}

fn parse_seeds(text: &str) -> Result<Range<u64>, String> {
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|e| format!("bad seed {s:?}: {e}"))
    };
    match text.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b)?);
            if a >= b {
                return Err(format!("empty seed range {text}"));
            }
            Ok(a..b)
        }
        None => {
            let seed = parse(text)?;
            Ok(seed..seed + 1)
        }
    }
}

fn options(args: &Args) -> Result<RunOptions, String> {
    // With `inject-bugs`, RunOptions has a `bug` field too: the update is needed then.
    #[allow(unused_mut, clippy::needless_update)]
    let mut options = RunOptions {
        fault_ticks: args.fault_ticks,
        trace: args.trace || args.story,
        policy_changes: !args.no_policy_changes,
        operator: !args.no_operator,
        ..RunOptions::default()
    };
    match args.bug.as_deref() {
        None => {}
        #[cfg(feature = "inject-bugs")]
        Some(name) => {
            use raft_core::InjectedBug;
            use raft_sim::node::DriverBug;
            match name {
                "commit-rule-not-handed-to-core" => {
                    options.driver_bug = Some(DriverBug::CommitRuleNotHandedToCore);
                }
                "leader-policy-not-handed-to-core" => {
                    options.driver_bug = Some(DriverBug::LeaderPolicyNotHandedToCore);
                }
                _ => {
                    options.bug = Some(match name {
                        "commit-without-quorum" => InjectedBug::CommitWithoutQuorum,
                        "vote-for-stale-log" => InjectedBug::VoteForStaleLog,
                        "lease-read-skips-check" => InjectedBug::LeaseReadSkipsCheck,
                        "forced-leader-ignored" => InjectedBug::ForcedLeaderIgnored,
                        other => return Err(format!("unknown bug {other:?}")),
                    });
                }
            }
        }
        #[cfg(not(feature = "inject-bugs"))]
        Some(_) => return Err("--bug needs a build with --features inject-bugs".to_owned()),
    }
    Ok(options)
}

fn replay_command(args: &Args, seed: u64) -> String {
    let features = if args.bug.is_some() {
        " --features inject-bugs"
    } else {
        ""
    };
    let bug = args
        .bug
        .as_ref()
        .map(|b| format!(" --bug {b}"))
        .unwrap_or_default();
    let ticks = if args.fault_ticks == 300 {
        String::new()
    } else {
        format!(" --fault-ticks {}", args.fault_ticks)
    };
    let policies = match (args.no_policy_changes, args.no_operator) {
        (true, true) => " --no-policy-changes --no-operator",
        (true, false) => " --no-policy-changes",
        (false, true) => " --no-operator",
        (false, false) => "",
    };
    format!(
        "cargo run --release{features} --bin raft-sim -- --seeds {seed}{ticks}{policies}{bug} \
         --trace"
    )
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = match options(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("raft-sim: {e}");
            return ExitCode::from(2);
        }
    };
    // Wall-clock time only for the summary line; the simulation itself never reads a clock.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let next = AtomicU64::new(args.seeds.start);
    let failures: Mutex<Vec<Report>> = Mutex::new(Vec::new());
    let totals = Mutex::new((0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0u64));
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= args.seeds.end {
                        return;
                    }
                    let report = run(seed, &options);
                    {
                        let mut t = totals.lock().expect("no panics while holding the lock");
                        t.0 += 1;
                        t.1 += report.events;
                        t.2 += report.ops_completed;
                        t.3 += report.ops_unknown;
                        t.4 += u64::from(report.linearizability_undecided);
                        t.5 += u64::from(report.policy_stall.is_some());
                        if let Some(recovery) = &report.operator {
                            t.6 += u64::from(recovery.recovered);
                            t.7 = t.7.max(recovery.leader_after_ticks.unwrap_or(0));
                        }
                    }
                    if args.trace || args.story {
                        println!("seed {seed}: {}", report.scenario);
                        for line in &report.trace {
                            let chatter = line.contains(" deliver ") || line.contains(" applies ");
                            if args.trace || !chatter {
                                println!("{line}");
                            }
                        }
                        println!(
                            "seed {seed}: {} events, {} leaders elected, {} entries committed, \
                             {} client operations completed, {} unknown",
                            report.events,
                            report.terms_with_leader,
                            report.committed,
                            report.ops_completed,
                            report.ops_unknown
                        );
                        if let Some(stall) = &report.policy_stall {
                            println!("seed {seed}: stalled by forced policies: {stall}");
                        }
                        if let Some(recovery) = &report.operator {
                            println!("seed {seed}: operator path: {recovery:?}");
                        }
                    }
                    if !report.violations.is_empty() {
                        for v in &report.violations {
                            println!("seed {seed}: {v}");
                        }
                        println!("seed {seed}: scenario {}", report.scenario);
                        println!("seed {seed}: replay with: {}", replay_command(&args, seed));
                        if args.fail_fast {
                            stop.store(true, Ordering::Relaxed);
                        }
                        failures
                            .lock()
                            .expect("no panics while holding the lock")
                            .push(report);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("threads joined");
    let (seeds, events, ops, unknown, undecided, stalls, recovered, leader_ticks_max) =
        totals.into_inner().expect("threads joined");
    let violations: usize = failures.iter().map(|r| r.violations.len()).sum();
    println!(
        "raft-sim: {seeds} seeds, {violations} violations ({} failing seeds), {events} events, \
         {ops} client ops completed, {unknown} unknown, {undecided} histories undecided, \
         {stalls} stalled by forced policies ({recovered} recovered by the operator path, a \
         leader at most {leader_ticks_max} ticks after its first pass), {:.1}s",
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
