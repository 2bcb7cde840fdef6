//! `cairn dev`: the whole platform on loopback — three managers, four shard-node hosts in two
//! sites and a router, all child processes of this binary, with generated certificates — then a
//! demo of what it does through the client API, and instructions for talking to it. It keeps
//! serving until Ctrl-C.
//!
//! The hosts start with no shards: they register with the managers, which create shards on them
//! as namespaces are created (a shard takes [`NAMESPACES_PER_SHARD`] of them).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use cairn_client::{ApiError, Client, Consistency, Error, NamespaceClient, Read};
use cairn_manager::ManagerConfig;
use cairn_manager::catalog::CATALOG_SHARD;
use cairn_manager::config::CatalogConfig;
use cairn_router::RouterConfig;
use cairn_wire::api::{Namespace, ReadOp, ReadResult, ShardId, WriteOp};
use cairn_wire::catalog::{
    HostInfo, HostState, ManagerRequest, ManagerResponse, NamespaceInfo, ShardInfo,
};
use cairn_wire::certs;
use cairn_wire::frame::FRAME_MAX_BYTES_DEFAULT;
use cairn_wire::manifest::{
    Checksum, ChecksumAlgorithm, Chunk, Compression, FragmentLocation, Manifest, NamespaceStats,
    PutMode, StorageScheme,
};
use cairn_wire::tls::PeerRole;
use serde::Serialize;
use shard_node::NodeConfig;
use shard_node::config::{ManagerLink, PeerConfig, TlsConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};

use crate::DevArgs;
use crate::catalog_cmd::{ask_manager, unexpected};
use crate::cluster_file::ClusterFile;
use crate::node_cmd::shutdown_signal;

/// The manager node ids; they listen on base+1..3.
const MANAGER_IDS: [u64; 3] = [101, 102, 103];
/// The shard-node host ids and sites; host N listens on base+10+N.
const HOSTS: [(u64, &str); 4] = [(1, "dc1"), (2, "dc2"), (3, "dc1"), (4, "dc2")];
/// The router's certificate name and site; it listens on base+20.
const ROUTER: &str = "router-1";
const ROUTER_SITE: &str = "dc1";
const CLIENT: &str = "dev-client";
/// Every metrics port is its process's QUIC port + this.
const METRICS_PORT_OFFSET: u16 = 50;
/// The highest port offset used (the router's metrics).
const PORT_OFFSET_MAX: u16 = 20 + METRICS_PORT_OFFSET;

/// A small capacity, so that ten namespaces need three shards.
const NAMESPACES_PER_SHARD: u32 = 4;
const REPLICAS_PER_SHARD: u32 = 3;
const HEARTBEAT_INTERVAL_MS: u64 = 1_000;

/// How long the platform may take to come up.
const START_WAIT: Duration = Duration::from_secs(60);
/// The bound on a namespace create (the manager may create a shard for it first).
const CREATE_TIMEOUT_MS: u64 = 30_000;
/// How long a stopped child gets to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The demo namespaces, each with two objects its storage proxies could write (name, bytes).
#[rustfmt::skip]
const SAMPLES: [(&str, [(&str, u64); 2]); 10] = [
    ("photos",    [("2024/06/beach.jpg", 2_400_000),    ("2024/06/sunset.jpg", 3_100_000)]),
    ("videos",    [("talks/raft.mp4", 48_000_000),      ("talks/paxos.mp4", 52_000_000)]),
    ("backups",   [("db/2024-06-01.tar", 120_000_000),  ("db/2024-06-02.tar", 121_000_000)]),
    ("logs",      [("app/2024-06-01.log", 5_000_000),   ("app/2024-06-02.log", 4_800_000)]),
    ("music",     [("albums/01.flac", 30_000_000),      ("albums/02.flac", 28_000_000)]),
    ("documents", [("reports/q2.pdf", 800_000),         ("reports/q3.pdf", 900_000)]),
    ("archive",   [("2019/mail.mbox", 70_000_000),      ("2020/mail.mbox", 65_000_000)]),
    ("scans",     [("invoices/0001.png", 400_000),      ("invoices/0002.png", 410_000)]),
    ("datasets",  [("weather/2023.csv", 9_000_000),     ("weather/2024.csv", 9_500_000)]),
    ("builds",    [("cairn/0.1.0.tar.gz", 12_000_000),  ("cairn/0.2.0.tar.gz", 12_500_000)]),
];

/// Runs `cairn dev`.
pub(crate) async fn run(args: DevArgs) -> anyhow::Result<()> {
    let (dir, _temp) = dev_dir(args.dir.as_deref())?;
    let layout = Layout::new(dir, args.base_port)?;
    println!(
        "cairn dev: {} managers, {} shard-node hosts in sites dc1 and dc2, a router; in {}",
        MANAGER_IDS.len(),
        HOSTS.len(),
        layout.dir.display()
    );
    make_certs(&layout.certs)?;
    let shutdown = shutdown_signal().context("cannot listen for Ctrl-C and SIGTERM")?;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut procs = start_all(&layout)?;
    let cluster_file = write_cluster_file(&layout)?;
    let cluster = ClusterFile::load(&cluster_file)?;

    let outcome = tokio::select! {
        result = demo(&layout, &cluster) => result.map(Some),
        exited = first_exit(&mut procs) => Err(exit_error(&procs, exited)),
        () = &mut shutdown => Ok(None),
    };
    let leader = match outcome {
        Ok(Some(leader)) => leader,
        Ok(None) => {
            println!("\ncairn dev: stopping");
            stop(&mut procs).await;
            return Ok(());
        }
        Err(e) => {
            println!("\ncairn dev: the demo failed, stopping");
            stop(&mut procs).await;
            return Err(e);
        }
    };
    print_usage(&layout, &cluster_file, leader);
    if args.exit_after_demo {
        println!("cairn dev: demo done, stopping (--exit-after-demo)");
        stop(&mut procs).await;
        return Ok(());
    }
    println!("Press Ctrl-C to stop.");
    let served = tokio::select! {
        () = &mut shutdown => Ok(()),
        exited = first_exit(&mut procs) => Err(exit_error(&procs, exited)),
    };
    println!("\ncairn dev: stopping");
    stop(&mut procs).await;
    served
}

/// The directory to use, and the temporary directory to remove on exit when none was given.
fn dev_dir(dir: Option<&Path>) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    let (dir, temp) = match dir {
        Some(dir) => (dir.to_path_buf(), None),
        None => {
            let temp = tempfile::Builder::new().prefix("cairn-dev-").tempdir()?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok((dir, temp))
}

/// Where everything of the dev platform is: files in the directory, ports from the base.
struct Layout {
    dir: PathBuf,
    certs: PathBuf,
    base_port: u16,
}

impl Layout {
    fn new(dir: PathBuf, base_port: u16) -> anyhow::Result<Self> {
        if base_port == 0 || base_port.checked_add(PORT_OFFSET_MAX).is_none() {
            bail!(
                "--base-port {base_port}: the dev platform uses ports base+1 to base+{PORT_OFFSET_MAX}, \
                 pick a base from 1 to {}",
                u16::MAX - PORT_OFFSET_MAX
            );
        }
        Ok(Self {
            certs: dir.join("certs"),
            dir,
            base_port,
        })
    }

    fn port(&self, offset: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base_port + offset))
    }

    fn manager(&self, id: u64) -> SocketAddr {
        self.port((id - MANAGER_IDS[0] + 1) as u16)
    }

    fn host(&self, id: u64) -> SocketAddr {
        self.port(10 + id as u16)
    }

    fn router(&self) -> SocketAddr {
        self.port(20)
    }

    /// The metrics address of the process listening on `quic`.
    fn metrics(&self, quic: SocketAddr) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], quic.port() + METRICS_PORT_OFFSET))
    }

    fn managers(&self) -> Vec<SocketAddr> {
        MANAGER_IDS.iter().map(|id| self.manager(*id)).collect()
    }

    fn tls(&self, name: &str) -> TlsConfig {
        TlsConfig {
            ca: self.certs.join("ca.pem"),
            cert: self.certs.join(format!("{name}.pem")),
            key: self.certs.join(format!("{name}.key")),
        }
    }
}

/// Makes the CA and every certificate the platform needs, keeping those that exist (a reused
/// directory keeps its cluster identity).
fn make_certs(dir: &Path) -> anyhow::Result<()> {
    let mut made = 0;
    if !dir.join("ca.pem").exists() {
        certs::init_ca_dir(dir, "dev")?;
        made += 1;
    }
    let nodes = MANAGER_IDS.iter().chain(HOSTS.iter().map(|(id, _)| id));
    let names = nodes
        .map(|id| (format!("node-{id}"), PeerRole::Node))
        .chain([
            (ROUTER.to_string(), PeerRole::Node),
            (CLIENT.to_string(), PeerRole::Client),
        ]);
    for (name, role) in names {
        if !dir.join(format!("{name}.pem")).exists() {
            certs::issue_to_dir(dir, role, &name, &[])?;
            made += 1;
        }
    }
    match made {
        0 => println!("  reusing the certificates in {}", dir.display()),
        n => println!(
            "  made {n} of the CA, node, router and client certificates in {}",
            dir.display()
        ),
    }
    Ok(())
}

/// One child process of the platform.
struct Proc {
    /// What it is, for messages (`manager 101`, `host 2`, `router 1`).
    name: String,
    /// Its `cairn` subcommand.
    subcommand: &'static str,
    log: PathBuf,
    child: Child,
}

/// Writes every configuration and starts the managers, the hosts and the router.
fn start_all(layout: &Layout) -> anyhow::Result<Vec<Proc>> {
    let mut procs = Vec::new();
    for id in MANAGER_IDS {
        let text = manager_config(layout, id)?;
        let listen = layout.manager(id);
        procs.push(start(layout, &format!("manager-{id}"), "manager", &text)?);
        print_proc(&format!("manager {id}"), listen, layout);
    }
    for (id, site) in HOSTS {
        let config = host_config(layout, id, site);
        config.validate()?;
        procs.push(start(
            layout,
            &format!("host-{id}"),
            "shard-node",
            &toml::to_string(&config)?,
        )?);
        print_proc(&format!("host {id} ({site})"), config.listen, layout);
    }
    let config = router_config(layout);
    config.validate()?;
    procs.push(start(layout, ROUTER, "router", &toml::to_string(&config)?)?);
    print_proc(&format!("router ({ROUTER_SITE})"), config.listen, layout);
    Ok(procs)
}

fn print_proc(name: &str, listen: SocketAddr, layout: &Layout) {
    println!(
        "  {name:<13} quic {listen}  metrics http://{}/metrics",
        layout.metrics(listen)
    );
}

/// A node configuration with the settings every process of the platform shares.
fn node_config(layout: &Layout, id: u64, listen: SocketAddr, peers: Vec<PeerConfig>) -> NodeConfig {
    let name = format!("node-{id}");
    NodeConfig {
        node_id: id,
        listen,
        metrics_listen: layout.metrics(listen),
        data_dir: layout.dir.join(&name).join("data"),
        tls: layout.tls(&name),
        peers,
        shards: vec![],
        raft: Default::default(),
        limits: Default::default(),
        site: "default".into(),
        capacity_replicas: 1000,
        manager: None,
    }
}

/// The `[catalog]` table of a manager configuration.
#[derive(Serialize)]
struct CatalogSection {
    catalog: CatalogConfig,
}

/// A manager's configuration file: its node (the three managers as peers), then `[catalog]`.
fn manager_config(layout: &Layout, id: u64) -> anyhow::Result<String> {
    let peers = MANAGER_IDS
        .iter()
        .map(|&id| PeerConfig {
            id,
            addr: layout.manager(id),
            cert_name: None,
        })
        .collect();
    let node = node_config(layout, id, layout.manager(id), peers);
    let catalog = CatalogConfig {
        namespaces_per_shard: NAMESPACES_PER_SHARD,
        replicas_per_shard: REPLICAS_PER_SHARD,
        ..CatalogConfig::default()
    };
    let text = format!(
        "{}\n{}",
        toml::to_string(&node)?,
        toml::to_string(&CatalogSection { catalog })?
    );
    ManagerConfig::from_toml(&text).context("the manager configuration cairn dev wrote")?;
    Ok(text)
}

/// A host: its own only peer, no shards, registered with the managers.
fn host_config(layout: &Layout, id: u64, site: &str) -> NodeConfig {
    let listen = layout.host(id);
    let me = PeerConfig {
        id,
        addr: listen,
        cert_name: None,
    };
    NodeConfig {
        site: site.into(),
        manager: Some(ManagerLink {
            addrs: layout.managers(),
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
        }),
        ..node_config(layout, id, listen, vec![me])
    }
}

fn router_config(layout: &Layout) -> RouterConfig {
    let listen = layout.router();
    let tls = layout.tls(ROUTER);
    RouterConfig {
        listen,
        metrics_listen: layout.metrics(listen),
        managers: layout.managers().iter().map(|a| a.to_string()).collect(),
        tls: cairn_router::config::TlsConfig {
            ca: tls.ca,
            cert: tls.cert,
            key: tls.key,
        },
        site: Some(ROUTER_SITE.into()),
        request_timeout_ms: cairn_router::config::REQUEST_TIMEOUT_MS_DEFAULT,
        limits: Default::default(),
    }
}

/// Writes `file.toml` and starts `cairn <subcommand> --config file.toml`, logging to
/// `file.log`.
fn start(
    layout: &Layout,
    file: &str,
    subcommand: &'static str,
    config: &str,
) -> anyhow::Result<Proc> {
    let config_path = layout.dir.join(format!("{file}.toml"));
    std::fs::write(&config_path, config)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let log_path = layout.dir.join(format!("{file}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let exe = std::env::current_exe().context("locating the cairn binary")?;
    let child = Command::new(exe)
        .arg(subcommand)
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        // Its own process group: Ctrl-C in the terminal reaches `cairn dev` only, which stops
        // the children in order.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {file}"))?;
    Ok(Proc {
        name: file.replacen('-', " ", 1),
        subcommand,
        log: log_path,
        child,
    })
}

/// Writes `cluster.toml`: how the CLI reaches the managers, the router and the hosts.
fn write_cluster_file(layout: &Layout) -> anyhow::Result<PathBuf> {
    let list = |addrs: &[SocketAddr]| {
        let quoted: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
        format!("[{}]", quoted.join(", "))
    };
    let hosts: Vec<SocketAddr> = HOSTS.iter().map(|(id, _)| layout.host(*id)).collect();
    let text = format!(
        "# How clients reach the dev platform (cairn ns, shards, hosts, manifest --cluster this-file).\n\
         managers = {}\nrouters = {}\nnodes = {}\n\
         ca = \"certs/ca.pem\"\ncert = \"certs/{CLIENT}.pem\"\nkey = \"certs/{CLIENT}.key\"\n",
        list(&layout.managers()),
        list(&[layout.router()]),
        list(&hosts),
    );
    let path = layout.dir.join("cluster.toml");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The demo: the platform comes up, namespaces make the managers add shards, manifests and keys
/// go through the router. Returns the manager that led the catalog when the hosts were up.
async fn demo(layout: &Layout, cluster: &ClusterFile) -> anyhow::Result<Option<u64>> {
    let probe = Client::new(cluster.manager_config()?.with_request_timeout_ms(1_000))?;
    let managers = Client::new(
        cluster
            .manager_config()?
            .with_request_timeout_ms(CREATE_TIMEOUT_MS),
    )?;
    let router = Client::new(cluster.router_config()?)?;
    let leader = wait_for_hosts(&probe, layout).await?;
    let namespaces = create_namespaces(&managers).await?;
    let sites = host_sites(&list_hosts(&managers).await?);
    show_shards(&list_shards(&managers).await?, &sites);
    through_router(&router, &namespaces, layout).await?;
    show_hosts(&list_hosts(&managers).await?);
    for client in [probe, managers, router] {
        client.close().await;
    }
    Ok(leader)
}

/// Waits until the managers answer with every host registered and up; returns the manager
/// leading the catalog then, if it says.
async fn wait_for_hosts(probe: &Client, layout: &Layout) -> anyhow::Result<Option<u64>> {
    print!(
        "\nwaiting for the managers to elect a leader and the {} hosts to register",
        HOSTS.len()
    );
    let started = Instant::now();
    loop {
        let last = match list_hosts(probe).await {
            Ok(hosts) if hosts.len() == HOSTS.len() && all_up(&hosts) => break,
            Ok(hosts) => format!("{} of {} hosts up", up_count(&hosts), HOSTS.len()),
            Err(e) => format!("{e:#}"),
        };
        if started.elapsed() > START_WAIT {
            println!();
            bail!(
                "the platform did not come up within {} s ({last}); see the logs in {}",
                START_WAIT.as_secs(),
                layout.dir.display()
            );
        }
        print!(".");
        std::io::stdout().flush()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let leader = probe
        .who_leader(CATALOG_SHARD)
        .await
        .ok()
        .flatten()
        .map(|hint| hint.node.0);
    let leads = match leader {
        Some(id) => format!("; manager {id} leads the catalog"),
        None => String::new(),
    };
    println!(
        " {} hosts up ({:.1} s){leads}",
        HOSTS.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(leader)
}

fn up_count(hosts: &[HostInfo]) -> usize {
    hosts.iter().filter(|h| h.state == HostState::Up).count()
}

fn all_up(hosts: &[HostInfo]) -> bool {
    up_count(hosts) == hosts.len()
}

/// Creates every sample namespace and prints where the managers put it.
async fn create_namespaces(managers: &Client) -> anyhow::Result<Vec<NamespaceInfo>> {
    let mut known: BTreeSet<ShardId> = list_shards(managers).await?.iter().map(|s| s.id).collect();
    println!(
        "\ncreating {} namespaces (a shard takes {NAMESPACES_PER_SHARD}; the managers add shards \
         as needed):",
        SAMPLES.len()
    );
    let mut created = Vec::new();
    for (namespace, _) in &SAMPLES {
        let started = Instant::now();
        let (info, existed) = create_namespace(managers, namespace).await?;
        let note = match (existed, known.insert(info.shard)) {
            (true, _) => "exists already".to_string(),
            (false, true) => format!("a new shard, {:.1} s", started.elapsed().as_secs_f64()),
            (false, false) => format!("{:.1} s", started.elapsed().as_secs_f64()),
        };
        println!(
            "  {:<10} -> shard {}, epoch {:<3} ({note})",
            info.name.as_str(),
            info.shard.0,
            info.epoch.0
        );
        created.push(info);
    }
    Ok(created)
}

/// Creates `name`, or shows it when it exists (a reused directory); true when it existed.
async fn create_namespace(managers: &Client, name: &str) -> anyhow::Result<(NamespaceInfo, bool)> {
    let name = Namespace::new(name)?;
    let create = ManagerRequest::CreateNamespace {
        name: name.clone(),
        home_site: None,
        placement: None,
    };
    let (response, existed) = match ask_manager(managers, create).await {
        Err(Error::Api(ApiError::NamespaceExists(_))) => {
            let show = ManagerRequest::ShowNamespace { name: name.clone() };
            (ask_manager(managers, show).await, true)
        }
        other => (other, false),
    };
    match response.with_context(|| format!("cannot create namespace {name}"))? {
        ManagerResponse::Namespace(info) => Ok((info, existed)),
        other => Err(unexpected("a namespace", &other)),
    }
}

async fn list_shards(managers: &Client) -> anyhow::Result<Vec<ShardInfo>> {
    match ask_manager(managers, ManagerRequest::ListShards).await? {
        ManagerResponse::Shards(mut shards) => {
            shards.sort_by_key(|s| s.id);
            Ok(shards)
        }
        other => Err(unexpected("shards", &other)),
    }
}

async fn list_hosts(managers: &Client) -> anyhow::Result<Vec<HostInfo>> {
    match ask_manager(managers, ManagerRequest::ListHosts).await? {
        ManagerResponse::Hosts(mut hosts) => {
            hosts.sort_by_key(|h| h.id);
            Ok(hosts)
        }
        other => Err(unexpected("hosts", &other)),
    }
}

/// The site of each host, by node id.
fn host_sites(hosts: &[HostInfo]) -> BTreeMap<u64, String> {
    hosts.iter().map(|h| (h.id.0, h.site.clone())).collect()
}

/// Prints the shards and their replicas' sites.
fn show_shards(shards: &[ShardInfo], sites: &BTreeMap<u64, String>) {
    let site_of = |node: u64| sites.get(&node).map_or("?", String::as_str);
    println!("\n{} shards:", shards.len());
    let all_sites: BTreeSet<&str> = sites.values().map(String::as_str).collect();
    let mut spanning = 0;
    for shard in shards {
        let replicas: Vec<String> = shard
            .replicas
            .iter()
            .map(|r| format!("node {} ({})", r.node.0, site_of(r.node.0)))
            .collect();
        let shard_sites: BTreeSet<&str> =
            shard.replicas.iter().map(|r| site_of(r.node.0)).collect();
        if shard_sites == all_sites {
            spanning += 1;
        }
        println!(
            "  shard {}  {:<8} {} namespaces  replicas {}",
            shard.id,
            shard.state.to_string(),
            shard.namespaces,
            replicas.join(", ")
        );
    }
    let all: Vec<&str> = all_sites.into_iter().collect();
    println!(
        "  {spanning} of {} shards have replicas in every site ({})",
        shards.len(),
        all.join(", ")
    );
}

/// Manifests and keys through the router: one namespace of each shard gets manifests; the first
/// one shows reads (consistent, then from the router's cache), a refused put, a listing and a
/// key-value pair.
async fn through_router(
    router: &Client,
    namespaces: &[NamespaceInfo],
    layout: &Layout,
) -> anyhow::Result<()> {
    let mut shards = BTreeSet::new();
    let picked: Vec<&NamespaceInfo> = namespaces
        .iter()
        .filter(|n| shards.insert(n.shard))
        .collect();
    println!(
        "\nthrough the router at {} (object manifests; their fragments and checksums are made \
         up, no storage devices run in dev):",
        layout.router()
    );
    let mut first_objects = Vec::new();
    for (i, info) in picked.iter().enumerate() {
        let ns = router.routed(info.name.clone());
        let objects = &objects_of(&info.name)[..if i == 0 { 2 } else { 1 }];
        for (name, size) in objects {
            put_manifest(&ns, info.shard, manifest(name, *size)).await?;
        }
        if i == 0 {
            first_objects.extend(objects.iter().map(|(name, _)| *name));
        }
    }
    let Some(first) = picked.first() else {
        bail!("no namespace was created");
    };
    let ns = router.routed(first.name.clone());
    read_back(&ns, first_objects[0], layout.metrics(layout.router())).await?;
    refuse_second_put(&ns, first_objects[0]).await?;
    list_objects(&ns).await?;
    for info in &picked {
        show_stats(&router.routed(info.name.clone())).await?;
    }
    key_value(&ns).await
}

fn objects_of(namespace: &Namespace) -> &'static [(&'static str, u64); 2] {
    SAMPLES
        .iter()
        .find(|(name, _)| *name == namespace.as_str())
        .map(|(_, objects)| objects)
        .expect("every demo namespace is a sample")
}

async fn put_manifest(
    ns: &NamespaceClient,
    shard: ShardId,
    manifest: Manifest,
) -> anyhow::Result<()> {
    let what = format!(
        "put {}/{} ({}, {}+{} erasure-coded, {}, must-not-exist)",
        ns.namespace(),
        manifest.name,
        size(manifest.size_bytes),
        manifest.scheme.data_fragments,
        manifest.scheme.parity_fragments,
        count(manifest.chunks.len() as u64, "chunk")
    );
    let put = WriteOp::PutManifest {
        manifest,
        mode: PutMode::MustNotExist,
    };
    match ns.write(put).await {
        Ok(written) => println!(
            "  {what} -> applied at index {} of shard {shard}",
            written.index.0
        ),
        Err(Error::Api(ApiError::ObjectExists { .. })) => {
            println!("  {what} -> exists already (from an earlier run)")
        }
        Err(e) => return Err(e).with_context(|| format!("cannot {what}")),
    }
    Ok(())
}

/// Reads a manifest back consistently, then with `Any`, which the router's cache answers (its
/// hit counter shows it).
async fn read_back(ns: &NamespaceClient, name: &str, metrics: SocketAddr) -> anyhow::Result<()> {
    let consistent = get_manifest(ns, name, Consistency::Consistent).await?;
    let m = &consistent.value;
    println!(
        "  get {}/{name} (consistent) -> object id {}, {}, {}, chunk 0 on devices {} \
         (applied {})",
        ns.namespace(),
        hex(&m.object_id),
        size(m.size_bytes),
        count(m.chunks.len() as u64, "chunk"),
        devices(&m.chunks[0]),
        consistent.applied.0
    );
    let hits_before = cache_hits(metrics).await;
    let any = get_manifest(ns, name, Consistency::Any).await?;
    let hits_after = cache_hits(metrics).await;
    if any.value != consistent.value {
        bail!("the router answered a different manifest for an Any read of {name}");
    }
    let source = match (hits_before, hits_after) {
        (Ok(before), Ok(after)) if after > before => format!(
            "served from the router's manifest cache (cairn_router_manifest_cache_hits_total \
             {before} -> {after})"
        ),
        (Ok(before), Ok(after)) => format!(
            "forwarded to the shard (cairn_router_manifest_cache_hits_total {before} -> {after})"
        ),
        (Err(e), _) | (_, Err(e)) => format!("(cannot read the router's metrics: {e:#})"),
    };
    println!(
        "  get {}/{name} (any)        -> the same manifest, {source}",
        ns.namespace()
    );
    Ok(())
}

async fn get_manifest(
    ns: &NamespaceClient,
    name: &str,
    consistency: Consistency,
) -> anyhow::Result<Read<Manifest>> {
    let op = ReadOp::GetManifests {
        names: vec![name.to_string()],
    };
    let read = ns.read(op, consistency).await?;
    match read.value {
        ReadResult::Manifests(mut found) if found.len() == 1 => match found.pop().flatten() {
            Some(value) => Ok(Read {
                value,
                applied: read.applied,
            }),
            None => bail!("{}/{name} is not there", ns.namespace()),
        },
        other => bail!("GetManifests answered {other:?}"),
    }
}

/// A second must-not-exist put of the same name (another upload) must be refused.
async fn refuse_second_put(ns: &NamespaceClient, name: &str) -> anyhow::Result<()> {
    let again = WriteOp::PutManifest {
        manifest: manifest(name, 1_000),
        mode: PutMode::MustNotExist,
    };
    match ns.write(again).await {
        Err(Error::Api(e @ ApiError::ObjectExists { .. })) => println!(
            "  put {}/{name} again (must-not-exist) -> refused, ObjectExists: {e}",
            ns.namespace()
        ),
        Err(e) => return Err(e).context("a second must-not-exist put failed otherwise"),
        Ok(w) => bail!(
            "a second must-not-exist put of {name} was applied (index {})",
            w.index.0
        ),
    }
    Ok(())
}

async fn list_objects(ns: &NamespaceClient) -> anyhow::Result<()> {
    let op = ReadOp::ListObjects {
        prefix: String::new(),
        start_after: None,
        limit: 100,
    };
    match ns.read(op, Consistency::Consistent).await?.value {
        ReadResult::Objects { names, more } => println!(
            "  list {} -> {}{}",
            ns.namespace(),
            names.join(", "),
            if more { ", ..." } else { "" }
        ),
        other => bail!("ListObjects answered {other:?}"),
    }
    Ok(())
}

async fn show_stats(ns: &NamespaceClient) -> anyhow::Result<()> {
    match ns
        .read(ReadOp::NamespaceStats, Consistency::Consistent)
        .await?
        .value
    {
        ReadResult::Stats(NamespaceStats {
            objects,
            logical_bytes,
        }) => println!(
            "  stats {:<9} -> {}, {} logical",
            ns.namespace().as_str(),
            count(objects, "object"),
            size(logical_bytes)
        ),
        other => bail!("NamespaceStats answered {other:?}"),
    }
    Ok(())
}

/// Namespaces hold keys too: a set and a consistent get through the router.
async fn key_value(ns: &NamespaceClient) -> anyhow::Result<()> {
    let (key, value) = ("config/retention-days", "30");
    let written = ns.set(key, value).await?;
    println!(
        "  set {}/{key} = {value:?} -> applied at index {}",
        ns.namespace(),
        written.index.0
    );
    let read = ns.get(key, Consistency::Consistent).await?;
    println!(
        "  get {}/{key} (consistent) -> {:?}",
        ns.namespace(),
        String::from_utf8_lossy(&read.value)
    );
    Ok(())
}

fn show_hosts(hosts: &[HostInfo]) {
    println!("\nhosts:");
    for h in hosts {
        println!(
            "  host {}  {}  {}  {:<4}  {}",
            h.id.0,
            h.site,
            h.addr,
            h.state.to_string(),
            count(u64::from(h.replicas), "replica")
        );
    }
}

fn print_usage(layout: &Layout, cluster_file: &Path, leader: Option<u64>) {
    println!();
    println!("The platform is serving. Talk to it from another terminal:");
    println!("  export CAIRN_CLUSTER={}", cluster_file.display());
    println!("  cairn ns list");
    println!("  cairn ns create my-namespace");
    println!("  cairn shards list");
    println!("  cairn hosts list");
    println!("  cairn manifest example | cairn manifest put my-namespace --file -");
    println!("  cairn manifest get my-namespace example/object");
    println!("  cairn manifest list my-namespace");
    println!("  cairn manifest stats my-namespace");
    println!(
        "  curl -s http://{}/metrics | grep cairn_router",
        layout.metrics(layout.router())
    );
    // Only the leader exports the catalog's gauges; the others say they do not lead.
    let manager = leader.unwrap_or(MANAGER_IDS[0]);
    let note = match leader {
        Some(id) => format!("manager {id}, the catalog leader at start-up"),
        None => format!("manager {manager}"),
    };
    println!(
        "  curl -s http://{}/metrics | grep cairn_manager    # {note}",
        layout.metrics(layout.manager(manager))
    );
    println!("Logs: {}/*.log", layout.dir.display());
    println!("(`cargo run -p cairn --` in place of `cairn` when it is not installed.)");
}

/// Resolves when a child exits: its index and status.
async fn first_exit(procs: &mut [Proc]) -> (usize, ExitStatus) {
    loop {
        for (i, p) in procs.iter_mut().enumerate() {
            if let Ok(Some(status)) = p.child.try_wait() {
                return (i, status);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The error for a child that exited by itself.
fn exit_error(procs: &[Proc], (i, status): (usize, ExitStatus)) -> anyhow::Error {
    anyhow!(
        "{} exited ({status}); see {}",
        procs[i].name,
        procs[i].log.display()
    )
}

/// Stops the router, then the hosts, then the managers (so that none logs the loss of what it
/// depends on): SIGTERM (a clean shutdown), then SIGKILL to those still running after the grace
/// period.
async fn stop(procs: &mut [Proc]) {
    for subcommand in ["router", "shard-node", "manager"] {
        let mut tier: Vec<&mut Proc> = procs
            .iter_mut()
            .filter(|p| p.subcommand == subcommand)
            .collect();
        for p in &tier {
            if let Some(pid) = p.child.id() {
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
            }
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        for p in &mut tier {
            if tokio::time::timeout_at(deadline, p.child.wait())
                .await
                .is_err()
            {
                let _ = p.child.kill().await;
            }
        }
    }
}

/// A valid manifest of a made-up object: 2+1 erasure-coded in chunks of two 4 MiB fragments,
/// a new object id per call (each call is another upload).
fn manifest(name: &str, size_bytes: u64) -> Manifest {
    const DATA: u8 = 2;
    const PARITY: u8 = 1;
    const FRAGMENT_SIZE_BYTES: u32 = 4 << 20;
    const DEVICES: u64 = 6;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut made_up = crate::manifest_cmd::SplitMix64(
        now.as_nanos() as u64 ^ crate::manifest_cmd::fnv1a64(name.as_bytes()),
    );
    let chunk_max = u64::from(DATA) * u64::from(FRAGMENT_SIZE_BYTES);
    let per_chunk = u64::from(DATA + PARITY);
    let mut chunks = Vec::new();
    let mut remaining = size_bytes;
    while remaining > 0 {
        let length_bytes = remaining.min(chunk_max);
        remaining -= length_bytes;
        let first = chunks.len() as u64 * per_chunk;
        let fragments = (0..per_chunk)
            .map(|j| {
                Some(FragmentLocation {
                    device_id: 1 + (first + j) % DEVICES,
                    version: 1,
                    checksum: Checksum {
                        algorithm: ChecksumAlgorithm::Crc32c,
                        digest: made_up.bytes(4),
                    },
                    length_bytes: length_bytes.div_ceil(u64::from(DATA)) as u32,
                })
            })
            .collect();
        chunks.push(Chunk {
            length_bytes,
            fragments,
        });
    }
    let manifest = Manifest {
        name: name.to_string(),
        object_id: made_up.bytes(16),
        size_bytes,
        checksum: Checksum {
            algorithm: ChecksumAlgorithm::Blake3,
            digest: made_up.bytes(32),
        },
        scheme: StorageScheme {
            data_fragments: DATA,
            parity_fragments: PARITY,
            fragment_size_bytes: FRAGMENT_SIZE_BYTES,
            compression: Compression::None,
            encrypted: false,
        },
        chunks,
        version: 1,
        timestamp_ms: now.as_millis() as u64,
    };
    manifest
        .validate(FRAME_MAX_BYTES_DEFAULT)
        .expect("the demo builds valid manifests");
    manifest
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The devices of a chunk's stored fragments, in fragment order.
fn devices(chunk: &Chunk) -> String {
    let ids: Vec<String> = chunk
        .fragments
        .iter()
        .flatten()
        .map(|f| f.device_id.to_string())
        .collect();
    ids.join(",")
}

/// `n things`, or `1 thing`.
fn count(n: u64, thing: &str) -> String {
    match n {
        1 => format!("1 {thing}"),
        n => format!("{n} {thing}s"),
    }
}

/// A size in decimal units.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} bytes"),
    }
}

/// The router's manifest cache hit counter, scraped from its `/metrics` (0 before the first
/// hit: the counter appears then).
async fn cache_hits(metrics: SocketAddr) -> anyhow::Result<u64> {
    const HITS: &str = "cairn_router_manifest_cache_hits_total";
    let body = tokio::time::timeout(Duration::from_secs(2), scrape(metrics))
        .await
        .context("no answer within 2 s")??;
    let Some(line) = body.lines().find(|l| l.starts_with(HITS)) else {
        return Ok(0);
    };
    let value = line.rsplit(' ').next().unwrap_or_default();
    value
        .parse::<f64>()
        .map(|v| v as u64)
        .with_context(|| format!("cannot read {line:?}"))
}

/// `GET /metrics` over plain HTTP/1.0; the body.
async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    stream.take(16 << 20).read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.contains(" 200 ") => Ok(body.to_string()),
        _ => bail!("{addr} did not answer 200 with a body"),
    }
}
