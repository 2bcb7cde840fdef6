//! cairn under test: a real platform of `cairn` processes on loopback (one manager, three
//! shard-node hosts, one router) with generated certificates, and the [`Target`] that drives it
//! through the client library over QUIC with mutual TLS.
//!
//! The manager runs with one namespace per shard and three replicas per shard, so the
//! benchmark's namespaces `bench-0`, `bench-1`, … each get their own shard on all three hosts:
//! the single-shard workloads use `bench-0`, the multi-shard workload the first 1, 2, 4 or 8.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cairn_client::{Client, ClientConfig, Consistency, NamespaceClient};
use cairn_manager::config::CatalogConfig;
use cairn_router::RouterConfig;
use cairn_wire::api::{ApiError, Namespace, ReadOp, ReadResult, Request, Response, WriteOp};
use cairn_wire::catalog::{ManagerRequest, ManagerResponse, NamespaceInfo};
use cairn_wire::certs;
use cairn_wire::manifest::{
    Checksum, ChecksumAlgorithm, Chunk, Compression, FragmentLocation, Manifest, PutMode,
    StorageScheme,
};
use cairn_wire::tls::{Identity, PeerRole};
use serde::Serialize;
use shard_node::NodeConfig;
use shard_node::config::{ManagerLink, PeerConfig, ShardConfig, TlsConfig};
use tokio::process::{Child, Command};

use crate::load::{Op, OpKind, Target};

/// The manager's node id; hosts are 1..=3.
const MANAGER_ID: u64 = 101;
const HOST_IDS: [u64; 3] = [1, 2, 3];
const ROUTER: &str = "router-1";
const CLIENT: &str = "bench-client";
/// Every process's metrics listen on its QUIC port + this.
const METRICS_PORT_OFFSET: u16 = 50;
/// How long the platform may take to come up, and a namespace to be created.
const START_WAIT: Duration = Duration::from_secs(60);
/// The bound on each benchmark request, retries included.
const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// The size the benchmark's manifests are made to (postcard-encoded), as the issue asks.
pub(crate) const MANIFEST_BYTES_TARGET: usize = 1_024;

/// One child process.
struct Proc {
    name: String,
    log: PathBuf,
    child: Child,
}

/// Starts `cairn <subcommand> --config <dir>/<name>.toml`, logging to `<dir>/<name>.log`.
fn spawn(
    cairn: &Path,
    dir: &Path,
    name: &str,
    subcommand: &str,
    config: &str,
) -> anyhow::Result<Proc> {
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let log = dir.join(format!("{name}.log"));
    let file =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let child = Command::new(cairn)
        .arg(subcommand)
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} {subcommand}", cairn.display()))?;
    Ok(Proc {
        name: name.into(),
        log,
        child,
    })
}

/// Kills the processes and waits for them.
async fn kill_all(procs: &mut [Proc]) {
    for proc in procs.iter_mut() {
        let _ = proc.child.start_kill();
    }
    for proc in procs.iter_mut() {
        let _ = proc.child.wait().await;
    }
}

/// Fails when a process has exited, naming it and its log.
fn check_alive(procs: &mut [Proc]) -> anyhow::Result<()> {
    for proc in procs.iter_mut() {
        if let Ok(Some(status)) = proc.child.try_wait() {
            bail!(
                "{} exited ({status}); see {}",
                proc.name,
                proc.log.display()
            );
        }
    }
    Ok(())
}

/// File locations and ports of a platform.
struct Layout {
    dir: PathBuf,
    certs: PathBuf,
    base_port: u16,
}

impl Layout {
    /// Makes `dir` with a fresh CA and the certificates of the three hosts, of `extra_nodes`
    /// (`node-<id>`), of `others` (node certificates by name) and of the benchmark's client.
    fn create(
        dir: &Path,
        base_port: u16,
        extra_nodes: &[u64],
        others: &[&str],
    ) -> anyhow::Result<Self> {
        let layout = Self {
            dir: dir.to_path_buf(),
            certs: dir.join("certs"),
            base_port,
        };
        std::fs::create_dir_all(&layout.certs)
            .with_context(|| format!("creating {}", layout.certs.display()))?;
        let names: Vec<String> = HOST_IDS
            .iter()
            .chain(extra_nodes)
            .map(|id| format!("node-{id}"))
            .chain(others.iter().map(|name| name.to_string()))
            .collect();
        make_certs(&layout, &names)?;
        Ok(layout)
    }

    fn addr(&self, offset: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base_port + offset))
    }

    fn manager(&self) -> SocketAddr {
        self.addr(1)
    }

    fn host(&self, id: u64) -> SocketAddr {
        self.addr(10 + id as u16)
    }

    fn router(&self) -> SocketAddr {
        self.addr(20)
    }

    fn metrics(&self, quic: SocketAddr) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], quic.port() + METRICS_PORT_OFFSET))
    }

    fn tls(&self, name: &str) -> TlsConfig {
        TlsConfig {
            ca: self.certs.join("ca.pem"),
            cert: self.certs.join(format!("{name}.pem")),
            key: self.certs.join(format!("{name}.key")),
        }
    }

    fn identity(&self, name: &str) -> anyhow::Result<Identity> {
        let tls = self.tls(name);
        Identity::load(&tls.ca, &tls.cert, &tls.key)
            .with_context(|| format!("loading the {name} certificate"))
    }

    /// A node configuration: its own data directory, default Raft timing and limits.
    fn node(&self, id: u64, listen: SocketAddr, peers: Vec<PeerConfig>) -> NodeConfig {
        let name = format!("node-{id}");
        NodeConfig {
            node_id: id,
            listen,
            metrics_listen: self.metrics(listen),
            data_dir: self.dir.join(&name),
            tls: self.tls(&name),
            peers,
            shards: vec![],
            raft: Default::default(),
            limits: Default::default(),
            site: "dc1".into(),
            capacity_replicas: 2_000,
            manager: None,
        }
    }

    fn peer(&self, id: u64, addr: SocketAddr) -> PeerConfig {
        PeerConfig {
            id,
            addr,
            cert_name: None,
        }
    }
}

/// Makes the CA and the certificates of `nodes` and of the benchmark's client.
fn make_certs(layout: &Layout, nodes: &[String]) -> anyhow::Result<()> {
    certs::init_ca_dir(&layout.certs, "cairn-bench")?;
    for name in nodes {
        certs::issue_to_dir(&layout.certs, PeerRole::Node, name, &[])?;
    }
    certs::issue_to_dir(&layout.certs, PeerRole::Client, CLIENT, &[])?;
    Ok(())
}

/// The `[catalog]` table of the manager's configuration.
#[derive(Serialize)]
struct CatalogSection {
    catalog: CatalogConfig,
}

/// A running cairn platform.
pub(crate) struct CairnCluster {
    layout: Layout,
    procs: Vec<Proc>,
    /// The benchmark's namespaces, `bench-0` first, each on its own shard.
    namespaces: Vec<NamespaceInfo>,
}

impl CairnCluster {
    /// Starts the manager, the three hosts and the router in `dir`, then creates `shards`
    /// namespaces (each gets a new shard with three replicas).
    pub(crate) async fn start(
        cairn: &Path,
        dir: &Path,
        base_port: u16,
        shards: usize,
    ) -> anyhow::Result<Self> {
        let layout = Layout::create(dir, base_port, &[MANAGER_ID], &[ROUTER])?;

        let mut procs = Vec::new();
        let manager = layout.node(
            MANAGER_ID,
            layout.manager(),
            vec![layout.peer(MANAGER_ID, layout.manager())],
        );
        let catalog = CatalogConfig {
            namespaces_per_shard: 1,
            replicas_per_shard: HOST_IDS.len() as u32,
            ..CatalogConfig::default()
        };
        let text = format!(
            "{}\n{}",
            toml::to_string(&manager)?,
            toml::to_string(&CatalogSection { catalog })?
        );
        procs.push(spawn(cairn, dir, "manager", "manager", &text)?);
        for id in HOST_IDS {
            let mut host = layout.node(id, layout.host(id), vec![layout.peer(id, layout.host(id))]);
            host.manager = Some(ManagerLink {
                addrs: vec![layout.manager()],
                heartbeat_interval_ms: 1_000,
            });
            host.validate()?;
            procs.push(spawn(
                cairn,
                dir,
                &format!("host-{id}"),
                "shard-node",
                &toml::to_string(&host)?,
            )?);
        }
        let tls = layout.tls(ROUTER);
        let router = RouterConfig {
            listen: layout.router(),
            metrics_listen: layout.metrics(layout.router()),
            managers: vec![layout.manager().to_string()],
            tls: cairn_router::config::TlsConfig {
                ca: tls.ca,
                cert: tls.cert,
                key: tls.key,
            },
            site: Some("dc1".into()),
            request_timeout_ms: cairn_router::config::REQUEST_TIMEOUT_MS_DEFAULT,
            limits: Default::default(),
        };
        router.validate()?;
        procs.push(spawn(
            cairn,
            dir,
            "router",
            "router",
            &toml::to_string(&router)?,
        )?);

        let mut cluster = Self {
            layout,
            procs,
            namespaces: Vec::new(),
        };
        match cluster.create_namespaces(shards).await {
            Ok(()) => Ok(cluster),
            Err(e) => {
                kill_all(&mut cluster.procs).await;
                Err(e)
            }
        }
    }

    /// Creates `bench-0..shards` through the manager, retrying while it elects itself and the
    /// hosts register.
    async fn create_namespaces(&mut self, shards: usize) -> anyhow::Result<()> {
        let config = ClientConfig::new(vec![self.layout.manager()], self.layout.identity(CLIENT)?)
            .with_request_timeout_ms(30_000);
        let manager = Client::new(config)?;
        let started = Instant::now();
        for i in 0..shards {
            let name = Namespace::new(format!("bench-{i}"))?;
            loop {
                check_alive(&mut self.procs)?;
                let request = Request::Manager(ManagerRequest::CreateNamespace {
                    name: name.clone(),
                    home_site: None,
                    placement: None,
                });
                let last = match manager.request(request).await {
                    Ok(Response::Manager(ManagerResponse::Namespace(info))) => {
                        self.namespaces.push(info);
                        break;
                    }
                    Ok(other) => format!("unexpected answer {}", other.kind()),
                    Err(e) => e.to_string(),
                };
                if started.elapsed() > START_WAIT {
                    bail!(
                        "cannot create namespace {name} within {} s: {last}; logs in {}",
                        START_WAIT.as_secs(),
                        self.layout.dir.display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        manager.close().await;
        let shards: std::collections::BTreeSet<_> =
            self.namespaces.iter().map(|n| n.shard).collect();
        if shards.len() != self.namespaces.len() {
            bail!(
                "expected one shard per namespace, got {:?}",
                self.namespaces
            );
        }
        Ok(())
    }

    /// The shard-node host addresses.
    pub(crate) fn hosts(&self) -> Vec<SocketAddr> {
        HOST_IDS.iter().map(|id| self.layout.host(*id)).collect()
    }

    /// The name and process id of every process.
    pub(crate) fn pids(&self) -> Vec<(String, u32)> {
        self.procs
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.child.id()?)))
            .collect()
    }

    /// Stops every process.
    pub(crate) async fn stop(mut self) {
        kill_all(&mut self.procs).await;
    }
}

/// A manifest of about [`MANIFEST_BYTES_TARGET`] bytes: a 4+2 erasure-coded object whose chunks
/// are added until the encoding reaches the size.
pub(crate) fn manifest_template() -> Manifest {
    let mut seed = 0x5eed_u64;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (seed >> 56) as u8
            })
            .collect()
    };
    let mut manifest = Manifest {
        name: Op::object_name(0),
        object_id: bytes(16),
        size_bytes: 0,
        checksum: Checksum {
            algorithm: ChecksumAlgorithm::Blake3,
            digest: bytes(ChecksumAlgorithm::Blake3.digest_len_bytes()),
        },
        scheme: StorageScheme {
            data_fragments: 4,
            parity_fragments: 2,
            fragment_size_bytes: 1 << 20,
            compression: Compression::None,
            encrypted: false,
        },
        chunks: Vec::new(),
        version: 1,
        timestamp_ms: 1_700_000_000_000,
    };
    let mut device = 0;
    while postcard::to_stdvec(&manifest)
        .expect("a manifest encodes")
        .len()
        < MANIFEST_BYTES_TARGET
    {
        let fragments = (0..6)
            .map(|_| {
                device += 1;
                Some(FragmentLocation {
                    device_id: 1_000 + device,
                    version: 1,
                    checksum: Checksum {
                        algorithm: ChecksumAlgorithm::Crc32c,
                        digest: bytes(ChecksumAlgorithm::Crc32c.digest_len_bytes()),
                    },
                    length_bytes: 1 << 20,
                })
            })
            .collect();
        manifest.chunks.push(Chunk {
            length_bytes: 4 << 20,
            fragments,
        });
        manifest.size_bytes += 4 << 20;
    }
    manifest
}

/// The encoded size of [`manifest_template`], in bytes.
pub(crate) fn manifest_template_len() -> usize {
    postcard::to_stdvec(&manifest_template())
        .expect("a manifest encodes")
        .len()
}

/// The load generator's view of cairn: per connection, a client of the hosts and one of the
/// router, and per shard a namespace handle.
pub(crate) struct CairnTarget {
    /// `[connection][shard]`: handles that find the shard's leader.
    direct: Vec<Vec<NamespaceClient>>,
    /// `[connection][host]`: handles of shard 0 pinned to one host (local reads).
    pinned: Vec<Vec<NamespaceClient>>,
    /// `[connection]`: handles of `bench-0` through the router.
    routed: Vec<NamespaceClient>,
    clients: Vec<Client>,
    template: Manifest,
}

impl CairnTarget {
    /// Opens `connections` clients to the hosts and as many to the router.
    pub(crate) fn connect(cluster: &CairnCluster, connections: usize) -> anyhow::Result<Self> {
        let identity = cluster.layout.identity(CLIENT)?;
        let hosts = cluster.hosts();
        let mut target = Self {
            direct: Vec::new(),
            pinned: Vec::new(),
            routed: Vec::new(),
            clients: Vec::new(),
            template: manifest_template(),
        };
        let first = cluster
            .namespaces
            .first()
            .context("the platform has no namespace")?;
        for _ in 0..connections.max(1) {
            let config = ClientConfig::new(hosts.clone(), identity.clone())
                .with_request_timeout_ms(REQUEST_TIMEOUT_MS);
            let client = Client::new(config)?;
            let handle = |info: &NamespaceInfo| {
                client
                    .namespace(info.shard, info.name.clone())
                    .with_epoch(info.epoch)
            };
            target
                .direct
                .push(cluster.namespaces.iter().map(handle).collect());
            target.pinned.push(
                hosts
                    .iter()
                    .map(|host| handle(first).pinned_to(*host))
                    .collect(),
            );
            let config = ClientConfig::new(vec![cluster.layout.router()], identity.clone())
                .with_request_timeout_ms(REQUEST_TIMEOUT_MS);
            let router = Client::new(config)?;
            target.routed.push(router.routed(first.name.clone()));
            target.clients.push(client);
            target.clients.push(router);
        }
        Ok(target)
    }

    /// The encoded manifest: the value etcd stores, so both systems move the same bytes.
    pub(crate) fn value(&self) -> Vec<u8> {
        postcard::to_stdvec(&self.template).expect("a manifest encodes")
    }

    /// Writes keys `0..keys` of shard 0 (the read workloads read among them), 64 at a time.
    pub(crate) async fn preload(self: &std::sync::Arc<Self>, keys: u64) -> anyhow::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        const WRITERS: u64 = 64;
        for w in 0..WRITERS {
            let target = self.clone();
            tasks.spawn(async move {
                for key in (w..keys).step_by(WRITERS as usize) {
                    let op = Op {
                        kind: OpKind::Write,
                        client: w as usize,
                        shard: 0,
                        key,
                    };
                    target
                        .run(op)
                        .await
                        .map_err(|e| anyhow::anyhow!("preload: {e}"))?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(())
    }

    /// Closes every connection.
    pub(crate) async fn close(&self) {
        for client in &self.clients {
            client.close().await;
        }
    }

    async fn read(
        handle: &NamespaceClient,
        key: u64,
        consistency: Consistency,
    ) -> Result<(), String> {
        let name = Op::object_name(key);
        let op = ReadOp::GetManifests {
            names: vec![name.clone()],
        };
        match handle.read(op, consistency).await {
            Ok(read) => match read.value {
                ReadResult::Manifests(found) if matches!(found.first(), Some(Some(_))) => Ok(()),
                ReadResult::Manifests(_) => Err(format!("manifest {name} not found")),
                other => Err(format!("unexpected read result {other:?}")),
            },
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Target for CairnTarget {
    async fn run(&self, op: Op) -> Result<(), String> {
        let conn = op.client % self.direct.len();
        match op.kind {
            OpKind::Write => {
                let mut manifest = self.template.clone();
                manifest.name = Op::object_name(op.key);
                let handle = &self.direct[conn][op.shard % self.direct[conn].len()];
                let put = WriteOp::PutManifest {
                    manifest,
                    mode: PutMode::Unconditional,
                };
                handle
                    .write(put)
                    .await
                    .map(|_| ())
                    .map_err(|e| match e.api() {
                        Some(ApiError::NotLeader { .. }) => format!("write: not leader: {e}"),
                        _ => format!("write: {e}"),
                    })
            }
            OpKind::ReadConsistent => {
                Self::read(&self.direct[conn][0], op.key, Consistency::Consistent).await
            }
            OpKind::ReadLocal => {
                let hosts = &self.pinned[conn];
                // Clients spread over the replicas: client c reads from host c mod 3.
                let handle = &hosts[op.client % hosts.len()];
                Self::read(handle, op.key, Consistency::Any).await
            }
            OpKind::RouterCached => Self::read(&self.routed[conn], op.key, Consistency::Any).await,
            OpKind::RouterConsistent => {
                Self::read(&self.routed[conn], op.key, Consistency::Consistent).await
            }
        }
    }
}

/// The idle-cost platform: three shard-nodes hosting the same `shards` groups (static
/// configuration, no manager), each group with a replica on every node.
pub(crate) struct IdleCluster {
    layout: Layout,
    procs: Vec<Proc>,
}

impl IdleCluster {
    pub(crate) async fn start(
        cairn: &Path,
        dir: &Path,
        base_port: u16,
        shards: u64,
    ) -> anyhow::Result<Self> {
        let layout = Layout::create(dir, base_port, &[], &[])?;
        let peers: Vec<PeerConfig> = HOST_IDS
            .iter()
            .map(|id| layout.peer(*id, layout.host(*id)))
            .collect();
        let mut procs = Vec::new();
        for id in HOST_IDS {
            let mut node = layout.node(id, layout.host(id), peers.clone());
            node.capacity_replicas = shards as u32 + 10;
            node.shards = (1..=shards)
                .map(|shard| ShardConfig {
                    id: shard,
                    replicas: HOST_IDS.to_vec(),
                })
                .collect();
            node.validate()?;
            procs.push(spawn(
                cairn,
                dir,
                &format!("idle-host-{id}"),
                "shard-node",
                &toml::to_string(&node)?,
            )?);
        }
        Ok(Self { layout, procs })
    }

    /// The process id of the first host (the one measured).
    pub(crate) fn measured_pid(&self) -> Option<u32> {
        self.procs.first().and_then(|p| p.child.id())
    }

    /// Waits until the first host reports `shards` replicas, every one with a leader and
    /// quiesced (or `wait` passes); returns how many have a leader and how many are quiesced.
    pub(crate) async fn settle(
        &mut self,
        shards: usize,
        wait: Duration,
    ) -> anyhow::Result<(usize, usize)> {
        let config = ClientConfig::new(self.hosts(), self.layout.identity(CLIENT)?)
            .with_request_timeout_ms(10_000);
        let client = Client::new(config)?;
        let started = Instant::now();
        let mut last = (0, 0);
        loop {
            check_alive(&mut self.procs)?;
            if let Ok(status) = client.status(self.layout.host(HOST_IDS[0])).await {
                let led = status.iter().filter(|s| s.leader.is_some()).count();
                let quiet = status.iter().filter(|s| s.quiesced).count();
                last = (led, quiet);
                if status.len() == shards && led == shards && quiet == shards {
                    break;
                }
            }
            if started.elapsed() > wait {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        client.close().await;
        Ok(last)
    }

    fn hosts(&self) -> Vec<SocketAddr> {
        HOST_IDS.iter().map(|id| self.layout.host(*id)).collect()
    }

    pub(crate) async fn stop(mut self) {
        kill_all(&mut self.procs).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_is_about_one_kib_and_valid() {
        let manifest = manifest_template();
        let len = postcard::to_stdvec(&manifest).unwrap().len();
        assert!((1_024..1_200).contains(&len), "{len} bytes");
        manifest
            .validate(cairn_wire::frame::FRAME_MAX_BYTES_DEFAULT)
            .expect("valid");
    }
}
