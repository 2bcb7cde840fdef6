//! `cairn-bench sites`: multi-site read and write latency, measured on a two-site
//! [`cairn_netbed::Bed`] (network namespaces joined by a WAN emulator, `--rtt-ms` apart).
//!
//! Layout: the manager and hosts 1, 2 in site a, host 3 in site b, a router in each site; real
//! release `cairn` processes with the production Raft timing (100 ms ticks). One namespace with
//! home site a; its shard's leader settles in a. Through router b: writes (they pay the WAN),
//! then `any`, `at_least(index of the last write)` and `consistent` reads; then the shard's
//! leader policy becomes `preferred(b)`, leadership moves to host 3, and consistent reads (and
//! writes) are timed again. The raw site-to-site round trip is probed with the netbed's UDP
//! echo, so the figures can be read against it.
//!
//! The benchmark itself runs in the root namespace ("ops"), which reaches every site through the
//! emulator undelayed; that hop adds its own ~0.03–0.3 ms per request, measured as `ops -> b`.
//!
//! The platform is `cairn-site-platform`'s [`SitePlatform`], the launcher the multi-site tests
//! use too; everything (processes, namespaces, the temporary directory) goes when it drops, on
//! success and on error alike.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cairn_client::{Client, Consistency};
use cairn_netbed::probe::ProbeReport;
use cairn_site_platform::shape::Kind;
use cairn_site_platform::{Launch, SitePlatform, SiteShape};
use cairn_wire::api::Namespace;
use cairn_wire::catalog::LeaderPreference;
use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;
use shard_node::config::RaftTiming;

use crate::load::{new_histogram, record};

const SITE_A: &str = "a";
const SITE_B: &str = "b";
const NAMESPACE: &str = "sites";
/// The echo server's port in the probed site.
const ECHO_PORT: u16 = 7600;
/// How long the platform may take to come up, and leadership to settle or move.
const WAIT: Duration = Duration::from_secs(60);
/// The manager's answers may wait for its own election and the catalog's work.
const MANAGER_TIMEOUT_MS: u64 = 30_000;
/// The bound on each timed request.
const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Untimed operations before each timed series (connections, leader hints, caches).
const WARMUP_OPS: usize = 20;
/// UDP round trips per raw probe.
const PROBES: u32 = 50;

/// What the output says about where the client runs.
const OPS_NOTE: &str = "the client runs in the root namespace (\"ops\"), which reaches site b \
                        through the emulator undelayed: every request pays the `ops -> b` hop \
                        (~0.03-0.3 ms) on top of what the site itself sees";

#[derive(Args, Clone, Debug)]
pub(crate) struct SitesArgs {
    /// The round trip between the two sites, in milliseconds.
    #[arg(long, default_value_t = 10)]
    rtt_ms: u64,
    /// Timed reads per case.
    #[arg(long, default_value_t = 2_000)]
    reads: usize,
    /// Timed writes per case.
    #[arg(long, default_value_t = 200)]
    writes: usize,
    /// Also write the numbers to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The `cairn` binary (default: next to this one; `cairn-netbed` is looked for there too).
    #[arg(long)]
    cairn_bin: Option<PathBuf>,
    /// Where the temporary directory (data, configurations, logs) goes.
    #[arg(long, default_value = "/var/tmp")]
    data_dir: PathBuf,
}

impl SitesArgs {
    pub(crate) fn cairn_bin(&self) -> Option<&Path> {
        self.cairn_bin.as_deref()
    }
}

/// Latency percentiles of one case, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) count: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

impl Case {
    /// From a histogram of microseconds.
    pub(crate) fn from_histogram(name: &str, histogram: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1e3;
        Self {
            name: name.into(),
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.5)),
            p90_ms: ms(histogram.value_at_quantile(0.9)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
        }
    }

    /// From a netbed probe (answered round trips only).
    fn from_probe(name: &str, report: &ProbeReport) -> Self {
        let mut histogram = new_histogram();
        for us in &report.rtts_us {
            record(&mut histogram, Duration::from_micros(*us));
        }
        Self::from_histogram(name, &histogram)
    }
}

/// Everything one run measured (the `--json` file).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SitesReport {
    pub(crate) rtt_ms_configured: u64,
    pub(crate) reads_per_case: usize,
    pub(crate) writes_per_case: usize,
    /// Raw UDP round trips: site a <-> site b, and ops -> site b.
    pub(crate) raw: Vec<Case>,
    /// The timed requests through router b.
    pub(crate) cases: Vec<Case>,
    /// From the policy change until host 3 alone led the shard.
    pub(crate) leader_move_ms: f64,
    pub(crate) note: String,
}

/// The table: one row per case, milliseconds.
pub(crate) fn table(cases: &[Case]) -> String {
    let width = cases.iter().map(|c| c.name.len()).max().unwrap_or(0).max(4);
    let mut out = format!(
        "{:<width$}  {:>6}  {:>8}  {:>8}  {:>8}  {:>8}\n",
        "case", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for c in cases {
        out.push_str(&format!(
            "{:<width$}  {:>6}  {:>8.3}  {:>8.3}  {:>8.3}  {:>8.3}\n",
            c.name, c.count, c.p50_ms, c.p90_ms, c.p99_ms, c.max_ms
        ));
    }
    out
}

/// `cairn-bench sites`.
pub(crate) async fn run(args: &SitesArgs, cairn_bin: &Path) -> anyhow::Result<SitesReport> {
    if args.reads == 0 || args.writes == 0 || args.rtt_ms == 0 {
        bail!("--reads, --writes and --rtt-ms must be at least 1");
    }
    let rtt = Duration::from_millis(args.rtt_ms);
    println!(
        "cairn-bench sites: sites a and b, {} ms round trip; manager and hosts 1, 2 in a, host 3 \
         in b, a router in each site",
        args.rtt_ms
    );
    let netbed_bin = cairn_bin.with_file_name("cairn-netbed");
    if !netbed_bin.is_file() {
        bail!(
            "no cairn-netbed binary at {} (build with `cargo build --release --workspace`)",
            netbed_bin.display()
        );
    }
    let shape = SiteShape {
        sites: vec![SITE_A, SITE_B],
        rtt,
        manager_sites: vec![SITE_A],
        host_sites: vec![SITE_A, SITE_A, SITE_B],
        router_sites: vec![SITE_A, SITE_B],
    };
    // Production timing: 100 ms ticks, 1 s election timeout, leases on.
    let launch = Launch {
        netbed_bin: Some(netbed_bin.clone()),
        parent_dir: args.data_dir.clone(),
        name: "bench-sites".into(),
        ..Launch::new(cairn_bin, RaftTiming::default())
    };
    let mut platform = SitePlatform::start(&shape, &launch)?;
    let outcome = measure(args, &mut platform, &netbed_bin).await;
    if outcome.is_err() {
        platform.print_log_tails();
    }
    drop(platform);
    let report = outcome?;
    println!();
    println!("raw round trips (UDP echo, {PROBES} probes):");
    print!("{}", table(&report.raw));
    println!();
    println!("through router b:");
    print!("{}", table(&report.cases));
    println!();
    println!(
        "leadership moved from a to b in {:.0} ms after `preferred(b)`",
        report.leader_move_ms
    );
    println!("note: {}", report.note);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(report)
}

/// Probes the raw round trips, then times the cases through router b.
async fn measure(
    args: &SitesArgs,
    p: &mut SitePlatform,
    netbed_bin: &Path,
) -> anyhow::Result<SitesReport> {
    let raw = vec![
        Case::from_probe("udp a <-> b", &probe(p, netbed_bin, SITE_A, SITE_B)?),
        Case::from_probe(
            "udp ops -> b",
            &probe(p, netbed_bin, SITE_B, cairn_netbed::OPS)?,
        ),
    ];
    let manager = Client::new(
        p.client_config_of(&p.names(Kind::Manager))
            .with_request_timeout_ms(MANAGER_TIMEOUT_MS),
    )?;
    let router_b = Client::new(
        p.client_config_of(&[&format!("router-{SITE_B}")])
            .with_request_timeout_ms(REQUEST_TIMEOUT_MS),
    )?;
    let outcome = time_cases(args, p, &manager, &router_b).await;
    router_b.close().await;
    manager.close().await;
    let (cases, leader_move_ms) = outcome?;
    Ok(SitesReport {
        rtt_ms_configured: args.rtt_ms,
        reads_per_case: args.reads,
        writes_per_case: args.writes,
        raw,
        cases,
        leader_move_ms,
        note: OPS_NOTE.into(),
    })
}

/// The timed cases, and how long leadership took to move to b (ms).
async fn time_cases(
    args: &SitesArgs,
    p: &SitePlatform,
    manager: &Client,
    router_b: &Client,
) -> anyhow::Result<(Vec<Case>, f64)> {
    println!("waiting for the hosts to register");
    p.wait_hosts(manager, WAIT).await?;
    let shard = p.create_namespace(manager, NAMESPACE, SITE_A, WAIT).await?;
    let [host_b] = p.host_ids_in(SITE_B)[..] else {
        bail!("the shape puts one host in site b");
    };
    let host_b = host_b.0;
    println!("namespace {NAMESPACE:?} (home site a) on shard {shard}; waiting for a leader in a");
    let leader = p
        .wait_leaders(
            shard,
            "a leader in site a",
            WAIT,
            |l| matches!(l, [one] if *one != host_b),
        )
        .await?;
    println!("host {} leads in a", leader[0]);

    let ns = router_b.routed(Namespace::new(NAMESPACE)?);
    let mut cases = Vec::new();
    // The first write finds the shard through the router; retried while the router learns it.
    let started = Instant::now();
    loop {
        match ns.set("k", "warm").await {
            Ok(_) => break,
            Err(e) if started.elapsed() < WAIT => {
                tracing::debug!("first write: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e).context("the first write through router b"),
        }
    }
    println!(
        "timing {} writes and {} reads per case through router b",
        args.writes, args.reads
    );
    // The index of the last write: the `at_least` token.
    let token = std::cell::Cell::new(None);
    let writes = time(args.writes, || async {
        let w = ns.set("k", "v").await?;
        token.set(Some(w.index));
        anyhow::Ok(())
    })
    .await
    .context("writes, leader in a")?;
    cases.push(Case::from_histogram("write, leader in a", &writes));
    let token = token.get().context("no write")?;
    for (name, consistency) in [
        ("read any, leader in a", Consistency::Any),
        ("read at_least, leader in a", Consistency::AtLeast(token)),
        ("read consistent, leader in a", Consistency::Consistent),
    ] {
        let h = time(args.reads, || async {
            ns.get("k", consistency).await.map(|_| ())
        })
        .await
        .with_context(|| name.to_owned())?;
        cases.push(Case::from_histogram(name, &h));
    }

    println!("setting the leader policy to preferred(b)");
    let moved = Instant::now();
    let preferred_b = LeaderPreference::Preferred(SITE_B.into());
    p.set_shard_policy(manager, shard, None, Some(preferred_b))
        .await?;
    p.wait_leader(shard, host_b, WAIT).await?;
    let leader_move_ms = moved.elapsed().as_secs_f64() * 1e3;
    println!("host {host_b} leads in b after {leader_move_ms:.0} ms");

    let h = time(args.reads, || async {
        ns.get("k", Consistency::Consistent).await.map(|_| ())
    })
    .await
    .context("consistent reads, leader in b")?;
    cases.push(Case::from_histogram("read consistent, leader in b", &h));
    let h = time(args.writes, || async { ns.set("k", "w").await.map(|_| ()) })
        .await
        .context("writes, leader in b")?;
    cases.push(Case::from_histogram("write, leader in b", &h));
    Ok((cases, leader_move_ms))
}

/// Runs `op` [`WARMUP_OPS`] times untimed, then `count` times timed, one at a time; fails on the
/// first error.
async fn time<F, Fut, E>(count: usize, mut op: F) -> anyhow::Result<Histogram<u64>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<anyhow::Error>,
{
    for _ in 0..WARMUP_OPS {
        op().await.map_err(Into::into)?;
    }
    let mut histogram = new_histogram();
    for _ in 0..count {
        let started = Instant::now();
        op().await.map_err(Into::into)?;
        record(&mut histogram, started.elapsed());
    }
    Ok(histogram)
}

/// UDP round trips from site `from` to an echo server in site `to` (`ops`: this namespace).
fn probe(
    p: &mut SitePlatform,
    netbed_bin: &Path,
    to: &str,
    from: &str,
) -> anyhow::Result<ProbeReport> {
    let bed = p.bed_mut();
    let target = SocketAddr::new(bed.site_ip(to), ECHO_PORT);
    let mut echo = bed.command(to, netbed_bin);
    echo.args(["echo", "--bind", &target.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let echo_pid = bed.spawn(to, echo)?;
    let bind: IpAddr = bed.site_ip(from);
    let mut probe = if from == cairn_netbed::OPS {
        std::process::Command::new(netbed_bin)
    } else {
        bed.command(from, netbed_bin)
    };
    probe.args([
        "probe",
        "--to",
        &target.to_string(),
        "--bind",
        &bind.to_string(),
        "--count",
        &PROBES.to_string(),
        "--interval-ms",
        "5",
        "--warmup-ms",
        "3000",
    ]);
    let out = probe.output();
    bed.kill(echo_pid)?;
    let out = out.context("running the probe")?;
    if !out.status.success() {
        bail!(
            "the probe {from} -> {to} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: ProbeReport =
        serde_json::from_slice(&out.stdout).context("reading the probe's report")?;
    if report.received == 0 {
        bail!("no probe {from} -> {to} was answered");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_take_percentiles_from_the_histogram_in_milliseconds() {
        let mut h = new_histogram();
        for us in 1..=1_000u64 {
            record(&mut h, Duration::from_micros(us * 10));
        }
        let c = Case::from_histogram("x", &h);
        assert_eq!(c.count, 1_000);
        assert!((c.p50_ms - 5.0).abs() < 0.01, "{c:?}");
        assert!((c.p90_ms - 9.0).abs() < 0.01, "{c:?}");
        assert!((c.p99_ms - 9.9).abs() < 0.01, "{c:?}");
        assert!((c.max_ms - 10.0).abs() < 0.01, "{c:?}");
    }

    #[test]
    fn probes_become_cases() {
        let report = ProbeReport {
            target: "10.0.0.1:1".into(),
            proto: "udp".into(),
            sent: 3,
            received: 3,
            rtts_us: vec![10_100, 10_200, 10_300],
            connect_us: None,
        };
        let c = Case::from_probe("udp", &report);
        assert_eq!(c.count, 3);
        assert!((c.p50_ms - 10.2).abs() < 0.01, "{c:?}");
        assert!((c.max_ms - 10.3).abs() < 0.01, "{c:?}");
    }

    #[test]
    fn the_table_aligns_one_row_per_case() {
        let case = |name: &str, p50| Case {
            name: name.into(),
            count: 2_000,
            p50_ms: p50,
            p90_ms: 1.0,
            p99_ms: 2.0,
            max_ms: 30.5,
        };
        let text = table(&[
            case("read any", 0.25),
            case("read consistent, leader in a", 10.5),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("case "));
        assert!(lines[1].contains("0.250") && lines[2].contains("10.500"));
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{text}");
    }
}
