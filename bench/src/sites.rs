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
//! Everything (processes, namespaces, the temporary directory) goes when the [`SitePlatform`]
//! drops, on success and on error alike.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cairn_client::{Client, ClientConfig, Consistency};
use cairn_manager::config::CatalogConfig;
use cairn_netbed::probe::ProbeReport;
use cairn_netbed::{Bed, BedSpec};
use cairn_router::RouterConfig;
use cairn_wire::api::{Namespace, Request, Response, ShardId};
use cairn_wire::catalog::{HostState, LeaderPreference, ManagerRequest, ManagerResponse};
use cairn_wire::certs;
use cairn_wire::tls::{Identity, PeerRole};
use clap::Args;
use hdrhistogram::Histogram;
use raft_core::Role;
use serde::Serialize;
use shard_node::NodeConfig;
use shard_node::config::{ManagerLink, PeerConfig, TlsConfig};

use crate::load::{new_histogram, record};

const SITE_A: &str = "a";
const SITE_B: &str = "b";
/// The manager's node id.
const MANAGER_ID: u64 = 101;
/// Hosts and their sites: 1 and 2 in a, 3 in b.
const HOSTS: [(u64, &str); 3] = [(1, SITE_A), (2, SITE_A), (3, SITE_B)];
/// The host in site b.
const HOST_B: u64 = 3;
const CLIENT: &str = "bench-client";
const NAMESPACE: &str = "sites";
/// Ports inside each site (every site has its own address).
const MANAGER_PORT: u16 = 7001;
const HOST_PORT_BASE: u16 = 7100;
const ROUTER_PORT: u16 = 7201;
const ECHO_PORT: u16 = 7600;
const METRICS_PORT_OFFSET: u16 = 2000;
/// How long the platform may take to come up, and leadership to settle or move.
const WAIT: Duration = Duration::from_secs(60);
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
    let mut platform = SitePlatform::start(cairn_bin, &args.data_dir, rtt)?;
    let outcome = measure(args, &mut platform).await;
    if outcome.is_err() {
        platform.print_log_tails();
    }
    platform.close().await;
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

async fn measure(args: &SitesArgs, p: &mut SitePlatform) -> anyhow::Result<SitesReport> {
    let raw = vec![
        Case::from_probe("udp a <-> b", &p.probe(SITE_A, SITE_B)?),
        Case::from_probe("udp ops -> b", &p.probe(SITE_B, cairn_netbed::OPS)?),
    ];

    println!("waiting for the hosts to register");
    p.wait_hosts().await?;
    let shard = p.create_namespace().await?;
    println!("namespace {NAMESPACE:?} (home site a) on shard {shard}; waiting for a leader in a");
    let leader = p
        .wait_leaders(
            shard,
            "a leader in site a",
            |l| matches!(l, [one] if *one != HOST_B),
        )
        .await?;
    println!("host {} leads in a", leader[0]);

    let router_b = p.client(&[p.router(SITE_B)])?;
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
    p.ask(ManagerRequest::SetShardPolicy {
        shard,
        commit: None,
        leader: Some(LeaderPreference::Preferred(SITE_B.into())),
    })
    .await?;
    p.wait_leaders(shard, "host 3 (site b) leading", |l| l == [HOST_B])
        .await?;
    let leader_move_ms = moved.elapsed().as_secs_f64() * 1e3;
    println!("host {HOST_B} leads in b after {leader_move_ms:.0} ms");

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
    router_b.close().await;

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

/// One `cairn` process in a site.
struct SiteProc {
    name: String,
    pid: u32,
    log: PathBuf,
}

/// The bed and the processes in it. Field order matters: the bed (processes, namespaces) drops
/// before the directory their data lives in.
struct SitePlatform {
    bed: Bed,
    dir: tempfile::TempDir,
    netbed_bin: PathBuf,
    procs: Vec<SiteProc>,
    identity: Identity,
    manager: Client,
}

impl SitePlatform {
    /// Creates the bed, the certificates and configurations, and starts every process.
    fn start(cairn_bin: &Path, data_dir: &Path, rtt: Duration) -> anyhow::Result<Self> {
        let netbed_bin = cairn_bin.with_file_name("cairn-netbed");
        if !netbed_bin.is_file() {
            bail!(
                "no cairn-netbed binary at {} (build with `cargo build --release --workspace`)",
                netbed_bin.display()
            );
        }
        let mut spec = BedSpec::new([SITE_A, SITE_B], rtt);
        spec.netbed_bin = Some(netbed_bin.clone());
        let bed = Bed::create(spec).context("creating the two-site bed (needs root)")?;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("cairn-bench-sites-")
            .tempdir_in(data_dir)
            .with_context(|| format!("making a directory in {}", data_dir.display()))?;
        let certs_dir = dir.path().join("certs");
        std::fs::create_dir_all(&certs_dir)?;
        certs::init_ca_dir(&certs_dir, "cairn-bench-sites")?;
        let names = [MANAGER_ID]
            .iter()
            .chain(HOSTS.iter().map(|(id, _)| id))
            .map(|id| format!("node-{id}"))
            .chain([SITE_A, SITE_B].map(|s| format!("router-{s}")));
        for name in names {
            certs::issue_to_dir(&certs_dir, PeerRole::Node, &name, &[])?;
        }
        certs::issue_to_dir(&certs_dir, PeerRole::Client, CLIENT, &[])?;
        let tls = |name: &str| TlsConfig {
            ca: certs_dir.join("ca.pem"),
            cert: certs_dir.join(format!("{name}.pem")),
            key: certs_dir.join(format!("{name}.key")),
        };
        let identity = {
            let t = tls(CLIENT);
            Identity::load(&t.ca, &t.cert, &t.key).context("loading the client certificate")?
        };
        let manager_addr = SocketAddr::new(bed.site_ip(SITE_A), MANAGER_PORT);
        let manager = Client::new(
            ClientConfig::new(vec![manager_addr], identity.clone()).with_request_timeout_ms(30_000),
        )?;
        let mut platform = Self {
            bed,
            dir,
            netbed_bin,
            procs: Vec::new(),
            identity,
            manager,
        };

        // Production timing: `RaftTiming::default()` (100 ms ticks, 1 s election timeout).
        let node = |id: u64, site: &str, listen: SocketAddr| NodeConfig {
            node_id: id,
            listen,
            metrics_listen: SocketAddr::new(listen.ip(), listen.port() + METRICS_PORT_OFFSET),
            data_dir: platform.dir.path().join(format!("node-{id}")),
            tls: tls(&format!("node-{id}")),
            peers: vec![PeerConfig {
                id,
                addr: listen,
                cert_name: None,
            }],
            shards: vec![],
            raft: Default::default(),
            limits: Default::default(),
            site: site.into(),
            capacity_replicas: 1_000,
            manager: None,
        };
        let mut configs = Vec::new();
        let manager_config = node(MANAGER_ID, SITE_A, manager_addr);
        manager_config.validate()?;
        configs.push((
            "manager".to_owned(),
            SITE_A,
            "manager",
            format!(
                "{}\n[catalog]\n{}",
                toml::to_string(&manager_config)?,
                toml::to_string(&CatalogConfig::default())?
            ),
        ));
        for (id, site) in HOSTS {
            let listen = SocketAddr::new(platform.bed.site_ip(site), HOST_PORT_BASE + id as u16);
            let mut config = node(id, site, listen);
            config.manager = Some(ManagerLink {
                addrs: vec![manager_addr],
                heartbeat_interval_ms: 1_000,
            });
            config.validate()?;
            configs.push((
                format!("host-{id}"),
                site,
                "shard-node",
                toml::to_string(&config)?,
            ));
        }
        for site in [SITE_A, SITE_B] {
            let name = format!("router-{site}");
            let listen = SocketAddr::new(platform.bed.site_ip(site), ROUTER_PORT);
            let t = tls(&name);
            let config = RouterConfig {
                listen,
                metrics_listen: SocketAddr::new(listen.ip(), listen.port() + METRICS_PORT_OFFSET),
                managers: vec![manager_addr.to_string()],
                tls: cairn_router::config::TlsConfig {
                    ca: t.ca,
                    cert: t.cert,
                    key: t.key,
                },
                site: Some(site.into()),
                request_timeout_ms: cairn_router::config::REQUEST_TIMEOUT_MS_DEFAULT,
                limits: Default::default(),
            };
            config.validate()?;
            configs.push((name, site, "router", toml::to_string(&config)?));
        }
        for (name, site, subcommand, text) in configs {
            platform.spawn(cairn_bin, &name, site, subcommand, &text)?;
        }
        Ok(platform)
    }

    /// Starts `cairn <subcommand> --config <dir>/<name>.toml` in `site`, logging to
    /// `<dir>/<name>.log`.
    fn spawn(
        &mut self,
        cairn_bin: &Path,
        name: &str,
        site: &str,
        subcommand: &str,
        config: &str,
    ) -> anyhow::Result<()> {
        let config_path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&config_path, config)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let log = self.dir.path().join(format!("{name}.log"));
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = self.bed.command(site, cairn_bin);
        command
            .arg(subcommand)
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        let pid = self
            .bed
            .spawn(site, command)
            .with_context(|| format!("starting {name} in site {site}"))?;
        self.procs.push(SiteProc {
            name: name.into(),
            pid,
            log,
        });
        Ok(())
    }

    /// Fails when a process has exited.
    fn check_alive(&self) -> anyhow::Result<()> {
        for p in &self.procs {
            if !alive(p.pid) {
                bail!("{} (pid {}) exited", p.name, p.pid);
            }
        }
        Ok(())
    }

    fn print_log_tails(&self) {
        for p in &self.procs {
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            eprintln!("---- {} log tail ----", p.name);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }

    fn router(&self, site: &str) -> SocketAddr {
        SocketAddr::new(self.bed.site_ip(site), ROUTER_PORT)
    }

    fn host(&self, id: u64, site: &str) -> SocketAddr {
        SocketAddr::new(self.bed.site_ip(site), HOST_PORT_BASE + id as u16)
    }

    fn client(&self, addrs: &[SocketAddr]) -> anyhow::Result<Client> {
        let config = ClientConfig::new(addrs.to_vec(), self.identity.clone())
            .with_request_timeout_ms(10_000);
        Ok(Client::new(config)?)
    }

    async fn ask(&self, request: ManagerRequest) -> anyhow::Result<ManagerResponse> {
        match self.manager.request(Request::Manager(request)).await? {
            Response::Manager(answer) => Ok(answer),
            other => bail!("the manager answered {}", other.kind()),
        }
    }

    /// Waits until the three hosts are registered and up.
    async fn wait_hosts(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            self.check_alive()?;
            let last = match self.ask(ManagerRequest::ListHosts).await {
                Ok(ManagerResponse::Hosts(list)) => {
                    if list.len() == HOSTS.len() && list.iter().all(|h| h.state == HostState::Up) {
                        return Ok(());
                    }
                    format!("{} hosts registered", list.len())
                }
                Ok(other) => format!("{other:?}"),
                Err(e) => e.to_string(),
            };
            if started.elapsed() > WAIT {
                bail!("the hosts did not all register within {WAIT:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Creates the namespace with home site a; returns its shard.
    async fn create_namespace(&self) -> anyhow::Result<ShardId> {
        let started = Instant::now();
        loop {
            let request = ManagerRequest::CreateNamespace {
                name: Namespace::new(NAMESPACE)?,
                home_site: Some(SITE_A.into()),
                placement: None,
            };
            let last = match self.ask(request).await {
                Ok(ManagerResponse::Namespace(info)) => return Ok(info.shard),
                Ok(other) => format!("{other:?}"),
                Err(e) => e.to_string(),
            };
            if started.elapsed() > WAIT {
                bail!("cannot create namespace {NAMESPACE} within {WAIT:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The hosts that say they lead `shard`.
    async fn leaders(&self, client: &Client, shard: ShardId) -> Vec<u64> {
        let mut leaders = Vec::new();
        for (id, site) in HOSTS {
            if let Ok(replicas) = client.status(self.host(id, site)).await {
                leaders.extend(
                    replicas
                        .iter()
                        .filter(|r| r.shard == shard && r.role == Role::Leader)
                        .map(|r| r.node.0),
                );
            }
        }
        leaders
    }

    /// Polls the hosts until the leaders of `shard` satisfy `done`; returns them.
    async fn wait_leaders(
        &self,
        shard: ShardId,
        what: &str,
        done: impl Fn(&[u64]) -> bool,
    ) -> anyhow::Result<Vec<u64>> {
        let hosts: Vec<SocketAddr> = HOSTS.iter().map(|(id, s)| self.host(*id, s)).collect();
        let client = self.client(&hosts)?;
        let started = Instant::now();
        let outcome = loop {
            if let Err(e) = self.check_alive() {
                break Err(e);
            }
            let leaders = self.leaders(&client, shard).await;
            if done(&leaders) {
                break Ok(leaders);
            }
            if started.elapsed() > WAIT {
                break Err(anyhow::anyhow!(
                    "no {what} within {WAIT:?}: leaders {leaders:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        client.close().await;
        outcome
    }

    /// UDP round trips from site `from` to an echo server in site `to` (`ops`: this namespace).
    fn probe(&mut self, to: &str, from: &str) -> anyhow::Result<ProbeReport> {
        let target = SocketAddr::new(self.bed.site_ip(to), ECHO_PORT);
        let mut echo = self.bed.command(to, &self.netbed_bin);
        echo.args(["echo", "--bind", &target.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let echo_pid = self.bed.spawn(to, echo)?;
        let bind: IpAddr = self.bed.site_ip(from);
        let mut probe = if from == cairn_netbed::OPS {
            std::process::Command::new(&self.netbed_bin)
        } else {
            self.bed.command(from, &self.netbed_bin)
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
        self.bed.kill(echo_pid)?;
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

    async fn close(&self) {
        self.manager.close().await;
    }
}

/// Whether process `pid` runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
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

    #[test]
    fn this_process_is_alive_and_a_missing_one_is_not() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX));
    }
}
