//! The peer: a three-member etcd 3.4 cluster (Debian's `/usr/bin/etcd`) on loopback, with
//! `etcd grpc-proxy` in front of it, and the [`Target`] that drives it with the same operations
//! as cairn.
//!
//! etcd runs as shipped: default fsync durability, default snapshot count, default heartbeat and
//! election timeouts, default backend quota. Its members talk plaintext HTTP/2 on loopback: etcd
//! is the comparison, not a path cairn runs in production, and TLS would only add the same cost
//! to every figure of the peer.
//!
//! The gRPC proxy is the peer of cairn's caching router: it caches the answers of serializable
//! reads (and stores linearizable answers in the same cache), and forwards everything else to
//! the cluster.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use etcd_client::{Client, ConnectOptions, GetOptions, KvClient};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::load::{Op, OpKind, Target};

/// The etcd binary (Debian's `etcd-server` package).
pub(crate) const ETCD_BIN: &str = "/usr/bin/etcd";
/// Members of the cluster.
const MEMBERS: usize = 3;
/// The offset from the base port of member `i`'s client port (`+ i`, `i` from 0).
const CLIENT_PORT_OFFSET: u16 = 1;
/// The offset from the base port of member `i`'s peer port (`+ i`, `i` from 0).
const PEER_PORT_OFFSET: u16 = 11;
/// The offset from the base port of the gRPC proxy's port.
const PROXY_PORT_OFFSET: u16 = 20;
/// How long the cluster may take to elect a leader and the proxy to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one readiness probe (status of each member, a read through the proxy) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// How long a process has to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long opening one gRPC connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one put or get may take; past it the operation fails with `timeout`.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// The most connections a target opens to each member and to the proxy.
const CONNECTIONS_MAX: usize = 1_024;
/// Puts in flight while preloading.
const PRELOAD_IN_FLIGHT_MAX: usize = 64;
/// The key the readiness probe reads through the proxy (it need not exist).
const PROBE_KEY: &str = "bench/ready-probe";

/// The key of an object of a shard's namespace: `bench/ns-{shard}/obj-{key:010}`.
fn key_name(shard: usize, key: u64) -> String {
    format!("bench/ns-{shard}/{}", Op::object_name(key))
}

/// One child process and the file its output goes to.
#[derive(Debug)]
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `etcd ARGS`, its stdout and stderr written to `log`; the process is killed when
    /// the value is dropped (a panicking test leaves nothing running).
    fn spawn(name: &str, args: &[String], log: PathBuf) -> anyhow::Result<Self> {
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out
            .try_clone()
            .with_context(|| format!("cannot reopen {}", log.display()))?;
        let child = Command::new(ETCD_BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!("cannot start {name} ({ETCD_BIN}; is Debian's etcd-server installed?)")
            })?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// An error if the process has exited.
    fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.exit_error(status)),
            Err(e) => Err(anyhow!("cannot check on {}: {e}", self.name)),
        }
    }

    fn exit_error(&self, status: ExitStatus) -> anyhow::Error {
        anyhow!(
            "etcd {} exited ({status}); see {}",
            self.name,
            self.log.display()
        )
    }

    /// SIGTERM, then SIGKILL if the process still runs after [`STOP_GRACE`]; returns once it has
    /// exited.
    async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            // No signal API without `unsafe` or another crate: `kill` sends SIGTERM.
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        if tokio::time::timeout(STOP_GRACE, self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "etcd {} still running {} s after SIGTERM: killing it",
                self.name,
                STOP_GRACE.as_secs()
            );
            let _ = self.child.kill().await;
        }
    }
}

/// A three-member etcd cluster and a gRPC proxy in front of it, each a child process of this
/// one. Dropping it kills them; [`EtcdCluster::stop`] stops them cleanly.
#[derive(Debug)]
pub(crate) struct EtcdCluster {
    members: Vec<Proc>,
    proxy: Proc,
    member_endpoints: Vec<String>,
    proxy_endpoint: String,
}

impl EtcdCluster {
    /// Starts 3 members (names `e1`, `e2`, `e3`, data directories `dir/e1`..., client ports
    /// `base_port + 1..=3`, peer ports `base_port + 11..=13`) and a gRPC proxy on
    /// `base_port + 20` in front of the three, then waits (at most 30 s) until the members agree
    /// on a leader and the proxy answers a linearizable read. Each process logs to
    /// `dir/{name}.log`.
    ///
    /// `dir` must not hold the data of an earlier cluster: etcd would restart that one and
    /// ignore the flags.
    pub(crate) async fn start(dir: &Path, base_port: u16) -> anyhow::Result<Self> {
        ensure!(
            base_port.checked_add(PROXY_PORT_OFFSET).is_some(),
            "base port {base_port} is too high: the proxy listens on base port + {PROXY_PORT_OFFSET}"
        );
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // A port still held (say by an etcd of an earlier, killed run) would let the readiness
        // probe talk to that process while ours fail to bind.
        let ports = (0..MEMBERS as u16)
            .flat_map(|i| [CLIENT_PORT_OFFSET + i, PEER_PORT_OFFSET + i])
            .chain([PROXY_PORT_OFFSET])
            .map(|offset| base_port + offset);
        for port in ports {
            std::net::TcpListener::bind(("127.0.0.1", port)).with_context(|| {
                format!("port {port} is not free (an etcd of an earlier run still running?)")
            })?;
        }
        let names: Vec<String> = (1..=MEMBERS).map(|i| format!("e{i}")).collect();
        for name in &names {
            let data = dir.join(name);
            ensure!(
                !data.exists(),
                "{} already exists: etcd needs a fresh data directory per run",
                data.display()
            );
        }
        // `i` < MEMBERS = 3, so the casts are exact.
        let client_url = |i: usize| {
            format!(
                "http://127.0.0.1:{}",
                base_port + CLIENT_PORT_OFFSET + i as u16
            )
        };
        let peer_url = |i: usize| {
            format!(
                "http://127.0.0.1:{}",
                base_port + PEER_PORT_OFFSET + i as u16
            )
        };
        let initial_cluster = names
            .iter()
            .enumerate()
            .map(|(i, name)| format!("{name}={}", peer_url(i)))
            .collect::<Vec<_>>()
            .join(",");

        let mut members = Vec::with_capacity(MEMBERS);
        for (i, name) in names.iter().enumerate() {
            let args = [
                "--name".to_owned(),
                name.clone(),
                "--data-dir".to_owned(),
                dir.join(name).display().to_string(),
                "--listen-client-urls".to_owned(),
                client_url(i),
                "--advertise-client-urls".to_owned(),
                client_url(i),
                "--listen-peer-urls".to_owned(),
                peer_url(i),
                "--initial-advertise-peer-urls".to_owned(),
                peer_url(i),
                "--initial-cluster".to_owned(),
                initial_cluster.clone(),
                "--initial-cluster-state".to_owned(),
                "new".to_owned(),
                "--initial-cluster-token".to_owned(),
                "cairn-bench".to_owned(),
                "--logger".to_owned(),
                "zap".to_owned(),
                "--log-outputs".to_owned(),
                "stderr".to_owned(),
            ];
            members.push(Proc::spawn(name, &args, dir.join(format!("{name}.log")))?);
        }
        let member_endpoints: Vec<String> = (0..MEMBERS).map(client_url).collect();
        let proxy_addr = format!("127.0.0.1:{}", base_port + PROXY_PORT_OFFSET);
        let proxy_args = [
            "grpc-proxy".to_owned(),
            "start".to_owned(),
            format!("--endpoints={}", member_endpoints.join(",")),
            format!("--listen-addr={proxy_addr}"),
            format!("--advertise-client-url={proxy_addr}"),
            // Its default is `default.proxy` in the working directory.
            format!("--data-dir={}", dir.join("proxy").display()),
        ];
        let proxy = Proc::spawn("proxy", &proxy_args, dir.join("proxy.log"))?;

        let mut cluster = Self {
            members,
            proxy,
            member_endpoints,
            proxy_endpoint: format!("http://{proxy_addr}"),
        };
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// Waits until every member reports the same leader and the proxy answers, or a process
    /// exits, or [`START_TIMEOUT`] passes.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_running()?;
            let last = match tokio::time::timeout(PROBE_TIMEOUT, self.probe()).await {
                Ok(Ok(())) => break,
                Ok(Err(e)) => format!("{e:#}"),
                Err(_) => "probe timed out".to_owned(),
            };
            if Instant::now() >= deadline {
                let logs = self
                    .members
                    .iter()
                    .chain(std::iter::once(&self.proxy))
                    .map(|p| p.log.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                bail!(
                    "the etcd cluster was not ready within {} s (last: {last}); see {logs}",
                    START_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
        // A member that failed to start may have let the probe reach someone else's process.
        self.check_running()
    }

    /// An error naming the log of the first process that has exited, if any has.
    fn check_running(&mut self) -> anyhow::Result<()> {
        for p in self
            .members
            .iter_mut()
            .chain(std::iter::once(&mut self.proxy))
        {
            p.check_running()?;
        }
        Ok(())
    }

    /// Ok when every member reports the same, known leader and a linearizable read through the
    /// proxy answers.
    async fn probe(&self) -> anyhow::Result<()> {
        let mut leaders = Vec::with_capacity(MEMBERS);
        for endpoint in &self.member_endpoints {
            let mut client = Client::connect([endpoint], Some(connect_options())).await?;
            let status = client
                .status()
                .await
                .with_context(|| format!("status of {endpoint}"))?;
            leaders.push(status.leader());
        }
        ensure!(leaders.iter().all(|&l| l != 0), "no leader yet");
        ensure!(
            leaders.iter().all(|&l| l == leaders[0]),
            "members disagree on the leader: {leaders:x?}"
        );
        let mut proxy = Client::connect([&self.proxy_endpoint], Some(connect_options())).await?;
        proxy
            .get(PROBE_KEY, None)
            .await
            .context("a read through the proxy")?;
        Ok(())
    }

    /// `etcd --version`'s first line, e.g. `etcd Version: 3.4.23`.
    pub(crate) fn version() -> anyhow::Result<String> {
        let out = std::process::Command::new(ETCD_BIN)
            .arg("--version")
            .output()
            .with_context(|| {
                format!("cannot run {ETCD_BIN} --version (is Debian's etcd-server installed?)")
            })?;
        ensure!(
            out.status.success(),
            "{ETCD_BIN} --version failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("{ETCD_BIN} --version printed nothing"))
    }

    /// The client URLs of the members, `e1` first.
    pub(crate) fn member_endpoints(&self) -> Vec<String> {
        self.member_endpoints.clone()
    }

    /// The URL of the gRPC proxy.
    pub(crate) fn proxy_endpoint(&self) -> String {
        self.proxy_endpoint.clone()
    }

    /// Stops the proxy, then the members one after the other: SIGTERM (a clean shutdown), then
    /// SIGKILL if still running after a grace period; returns once every process has exited.
    ///
    /// One at a time, because a leader told to stop first hands leadership to a follower and
    /// waits for it (up to etcd's request timeout, 7 s): with every member stopping at once,
    /// that follower never takes over and the wait runs its full length.
    pub(crate) async fn stop(mut self) {
        self.proxy.stop().await;
        for member in &mut self.members {
            member.stop().await;
        }
    }
}

/// The options of every connection: a bounded connect.
fn connect_options() -> ConnectOptions {
    ConnectOptions::new().with_connect_timeout(CONNECT_TIMEOUT)
}

/// A short message for an etcd client error: the gRPC code and message, without the metadata
/// that tonic's display adds.
fn short_error(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        e => e.to_string(),
    }
}

/// The etcd side of the benchmark: connections to each member and to the proxy.
///
/// Writes and linearizable reads go to the leader found at connect time. Leadership is stable
/// during a run (the suite injects no faults), so it is not looked up again; were it to move, a
/// follower would forward the puts to the new leader, slower but correct.
pub(crate) struct EtcdTarget {
    /// `members[m][c]`: connection `c` to member `m` (`e{m+1}`).
    members: Vec<Vec<KvClient>>,
    /// The index in `members` of the leader.
    leader: usize,
    /// Connections to the gRPC proxy.
    proxy: Vec<KvClient>,
    /// The bytes every put writes.
    value: Vec<u8>,
}

impl EtcdTarget {
    /// Opens `connections` connections to each member and to the proxy (so the leader gets
    /// `connections` connections, as cairn's leader does), checks each answers, finds the
    /// leader with the status API, and keeps `value` as what every put writes.
    pub(crate) async fn connect(
        cluster: &EtcdCluster,
        connections: usize,
        value: Vec<u8>,
    ) -> anyhow::Result<Self> {
        ensure!(
            (1..=CONNECTIONS_MAX).contains(&connections),
            "connections must be within 1..={CONNECTIONS_MAX}, not {connections}"
        );
        ensure!(
            !value.is_empty(),
            "the value must not be empty: reads check it"
        );

        let mut members = Vec::with_capacity(MEMBERS);
        // (member id, the leader it reports), from each member's first connection.
        let mut ids = Vec::with_capacity(MEMBERS);
        for endpoint in &cluster.member_endpoints() {
            let mut kvs = Vec::with_capacity(connections);
            for c in 0..connections {
                let mut client = open(endpoint).await?;
                let status = tokio::time::timeout(OP_TIMEOUT, client.status())
                    .await
                    .map_err(|_| anyhow!("status of {endpoint}: timeout"))?
                    .with_context(|| format!("status of {endpoint}"))?;
                if c == 0 {
                    let id = status
                        .header()
                        .map(|h| h.member_id())
                        .ok_or_else(|| anyhow!("status of {endpoint} has no header"))?;
                    ids.push((id, status.leader()));
                }
                kvs.push(client.kv_client());
            }
            members.push(kvs);
        }
        let leader_id = ids[0].1;
        ensure!(
            leader_id != 0 && ids.iter().all(|&(_, l)| l == leader_id),
            "the members do not agree on a leader: (member, leader) = {ids:x?}"
        );
        let leader = ids
            .iter()
            .position(|&(id, _)| id == leader_id)
            .ok_or_else(|| anyhow!("the leader {leader_id:x} is none of the members {ids:x?}"))?;

        let mut proxy = Vec::with_capacity(connections);
        for _ in 0..connections {
            let mut client = open(&cluster.proxy_endpoint()).await?;
            tokio::time::timeout(
                OP_TIMEOUT,
                client.get(PROBE_KEY, Some(GetOptions::new().with_serializable())),
            )
            .await
            .map_err(|_| anyhow!("a read through the proxy: timeout"))?
            .context("a read through the proxy")?;
            proxy.push(client.kv_client());
        }
        tracing::info!(
            "etcd: {connections} connection(s) to each member and to the proxy; leader e{}",
            leader + 1
        );
        Ok(Self {
            members,
            leader,
            proxy,
            value,
        })
    }

    /// Puts keys `0..keys` of shard 0 (those the read workloads read), 64 at a time on the
    /// leader's connections. Each put is bounded by the operation timeout and the first failure
    /// stops the preload, so it ends in bounded time.
    pub(crate) async fn preload(&self, keys: u64) -> anyhow::Result<()> {
        let connections = &self.members[self.leader];
        let mut in_flight = JoinSet::new();
        for key in 0..keys {
            if in_flight.len() >= PRELOAD_IN_FLIGHT_MAX {
                joined(in_flight.join_next().await)?;
            }
            let mut kv = connections[key as usize % connections.len()].clone();
            let value = self.value.clone();
            in_flight.spawn(async move {
                let name = key_name(0, key);
                match tokio::time::timeout(OP_TIMEOUT, kv.put(name.clone(), value, None)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(anyhow!("preload put {name}: {}", short_error(&e))),
                    Err(_) => Err(anyhow!("preload put {name}: timeout")),
                }
            });
        }
        while let Some(result) = in_flight.join_next().await {
            joined(Some(result))?;
        }
        Ok(())
    }

    /// The connection an operation uses, and whether its read is serializable.
    fn route(&self, op: &Op) -> (&KvClient, bool) {
        let connections = self.proxy.len();
        let on_leader = &self.members[self.leader][op.client % connections];
        match op.kind {
            OpKind::Write | OpKind::ReadConsistent => (on_leader, false),
            OpKind::ReadLocal => {
                let member = &self.members[op.client % MEMBERS];
                (&member[(op.client / MEMBERS) % connections], true)
            }
            OpKind::RouterCached => (&self.proxy[op.client % connections], true),
            OpKind::RouterConsistent => (&self.proxy[op.client % connections], false),
        }
    }
}

/// The result of one preload put, from its task.
fn joined(
    result: Option<Result<anyhow::Result<()>, tokio::task::JoinError>>,
) -> anyhow::Result<()> {
    match result {
        None => Ok(()),
        Some(Ok(put)) => put,
        Some(Err(e)) => Err(anyhow!("a preload task failed: {e}")),
    }
}

/// One connection: an etcd client of one endpoint (its own HTTP/2 connection).
async fn open(endpoint: &str) -> anyhow::Result<Client> {
    Client::connect([endpoint], Some(connect_options()))
        .await
        .with_context(|| format!("cannot connect to {endpoint}"))
}

impl Target for EtcdTarget {
    async fn run(&self, op: Op) -> Result<(), String> {
        let (kv, serializable) = self.route(&op);
        let mut kv = kv.clone();
        let key = key_name(op.shard, op.key);
        let kind = op.kind;
        let work = async {
            if kind == OpKind::Write {
                kv.put(key.as_str(), self.value.as_slice(), None)
                    .await
                    .map_err(|e| format!("{kind:?}: {}", short_error(&e)))?;
                return Ok(());
            }
            let options = serializable.then(|| GetOptions::new().with_serializable());
            let response = kv
                .get(key.as_str(), options)
                .await
                .map_err(|e| format!("{kind:?}: {}", short_error(&e)))?;
            match response.kvs().first() {
                Some(found) if !found.value().is_empty() => Ok(()),
                _ => Err(format!("{kind:?}: key {key} not found")),
            }
        };
        tokio::time::timeout(OP_TIMEOUT, work)
            .await
            .unwrap_or_else(|_| Err(format!("{kind:?}: timeout")))
    }
}

impl EtcdCluster {
    /// The name and process id of every process (members, then the proxy), to account for
    /// the CPU they use.
    pub(crate) fn pids(&self) -> Vec<(String, u32)> {
        self.members
            .iter()
            .chain([&self.proxy])
            .filter_map(|p| Some((p.name.clone(), p.child.id()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts a cluster, preloads, runs every kind of operation once, and checks a read of a key
    /// that was never written fails.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_operation_kind_runs_against_a_real_cluster() {
        if !Path::new(ETCD_BIN).exists() {
            println!("skipped: {ETCD_BIN} is missing (Debian's etcd-server)");
            return;
        }
        let version = EtcdCluster::version().unwrap();
        assert!(version.starts_with("etcd Version: 3."), "{version}");
        // Declared before the cluster, so dropped after it (a panic kills the processes first).
        let dir = tempfile::tempdir().unwrap();
        let cluster = EtcdCluster::start(dir.path(), 23_700).await.unwrap();
        assert_eq!(cluster.member_endpoints().len(), MEMBERS);
        assert_eq!(cluster.proxy_endpoint(), "http://127.0.0.1:23720");

        let target = EtcdTarget::connect(&cluster, 2, vec![b'v'; 1_024])
            .await
            .unwrap();
        target.preload(10).await.unwrap();

        let op = |kind, client, key| Op {
            kind,
            client,
            shard: 0,
            key,
        };
        target.run(op(OpKind::Write, 1, 1_000)).await.unwrap();
        for client in 0..2 * MEMBERS {
            for kind in [
                OpKind::ReadConsistent,
                OpKind::ReadLocal,
                OpKind::RouterCached,
                OpKind::RouterConsistent,
            ] {
                let result = target.run(op(kind, client, client as u64 % 10)).await;
                assert_eq!(result, Ok(()), "{kind:?} by client {client}");
            }
        }
        // The write is there for a linearizable read.
        target
            .run(op(OpKind::ReadConsistent, 0, 1_000))
            .await
            .unwrap();

        for kind in [
            OpKind::ReadConsistent,
            OpKind::ReadLocal,
            OpKind::RouterCached,
            OpKind::RouterConsistent,
        ] {
            let error = target.run(op(kind, 0, 999_999)).await.unwrap_err();
            assert!(error.contains("not found"), "{kind:?}: {error}");
        }

        drop(target);
        cluster.stop().await;
    }
}
