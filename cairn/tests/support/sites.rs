//! A platform spread over sites: every site is a network namespace of a [`cairn_netbed::Bed`],
//! with the bed's WAN emulator delaying (and, on demand, cutting) the traffic between sites. The
//! managers, shard-node hosts and routers are real `cairn` processes started inside their site's
//! namespace, bound to the site's address; the test itself runs in the root namespace ("ops"),
//! which reaches every site undelayed.
//!
//! Every process, namespace and directory is removed on drop, also when the test fails (the
//! logs' tails are printed then).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cairn_client::{Client, ClientConfig};
use cairn_netbed::{Bed, BedSpec};
use cairn_wire::api::{Request, Response, ShardId};
use cairn_wire::catalog::{ManagerRequest, ManagerResponse, ShardInfo};
use cairn_wire::tls::Identity;
use raft_core::{NodeId, Role};
use shard_node::NodeConfig;
use shard_node::config::{ManagerLink, PeerConfig, TlsConfig};

use super::{CAIRN, cairn, eventually, test_timing};

/// The first manager's node id (managers are 101, 102, ... in the order of their sites).
pub const MANAGER_BASE: u64 = 101;

/// One process of the platform.
pub struct SiteProc {
    pub site: String,
    pub subcommand: &'static str,
    pub addr: SocketAddr,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub pid: Option<u32>,
}

/// Where the processes go: the managers' sites (one manager each, forming the catalog group),
/// the hosts' sites (host ids 1, 2, ... in order), and one router per listed site.
pub struct SiteShape {
    pub sites: Vec<&'static str>,
    pub rtt: Duration,
    pub manager_sites: Vec<&'static str>,
    pub host_sites: Vec<&'static str>,
    pub router_sites: Vec<&'static str>,
}

pub struct SitePlatform {
    pub bed: Bed,
    pub dir: tempfile::TempDir,
    /// By name: `manager-N`, `host-N`, `router-SITE`.
    pub procs: BTreeMap<String, SiteProc>,
    identity: Identity,
}

impl SitePlatform {
    /// Builds the bed, writes certificates and configurations, and starts every process.
    pub fn start(shape: &SiteShape) -> Self {
        let bed = Bed::create(BedSpec::new(shape.sites.iter().copied(), shape.rtt))
            .expect("a multi-site bed (needs root: CI runs as root)");
        let dir = tempfile::Builder::new()
            .prefix("cairn-sites-")
            .tempdir()
            .unwrap();
        let certs = dir.path().join("certs");
        let certs_s = certs.to_str().unwrap().to_owned();
        cairn(&["certs", "init", "--dir", &certs_s, "--cluster", "test"]);
        cairn(&[
            "certs", "issue", "--dir", &certs_s, "--name", "client", "--role", "client",
        ]);
        let tls = |name: &str| {
            cairn(&[
                "certs", "issue", "--dir", &certs_s, "--name", name, "--role", "node",
            ]);
            TlsConfig {
                ca: certs.join("ca.pem"),
                cert: certs.join(format!("{name}.pem")),
                key: certs.join(format!("{name}.key")),
            }
        };
        let ip = |site: &str| -> IpAddr { bed.site_ip(site) };
        let managers: Vec<(u64, &str, SocketAddr)> = shape
            .manager_sites
            .iter()
            .enumerate()
            .map(|(i, site)| {
                let id = MANAGER_BASE + i as u64;
                (id, *site, SocketAddr::new(ip(site), 7001 + i as u16))
            })
            .collect();
        let manager_addrs: Vec<SocketAddr> = managers.iter().map(|(_, _, a)| *a).collect();
        let mut procs = BTreeMap::new();
        let mut add = |name: String, site: &str, subcommand, addr, text: String| {
            let config_path = dir.path().join(format!("{name}.toml"));
            std::fs::write(&config_path, text).unwrap();
            procs.insert(
                name.clone(),
                SiteProc {
                    site: site.to_owned(),
                    subcommand,
                    addr,
                    config_path,
                    log_path: dir.path().join(format!("{name}.log")),
                    pid: None,
                },
            );
        };
        let node = |id: u64, site: &str, listen: SocketAddr, metrics: SocketAddr| NodeConfig {
            node_id: id,
            listen,
            metrics_listen: metrics,
            data_dir: dir.path().join(format!("node-{id}")),
            tls: tls(&format!("node-{id}")),
            peers: vec![PeerConfig {
                id,
                addr: listen,
                cert_name: None,
            }],
            shards: vec![],
            raft: test_timing(),
            limits: Default::default(),
            site: site.into(),
            capacity_replicas: 1000,
            manager: None,
        };
        for (i, (id, site, addr)) in managers.iter().enumerate() {
            let mut manager = node(*id, site, *addr, SocketAddr::new(ip(site), 9001 + i as u16));
            manager.peers = managers
                .iter()
                .map(|(id, _, addr)| PeerConfig {
                    id: *id,
                    addr: *addr,
                    cert_name: None,
                })
                .collect();
            add(
                format!("manager-{id}"),
                site,
                "manager",
                *addr,
                format!(
                    "{}\n[catalog]\nhost_down_after_ms = 3000\nreconcile_interval_ms = 200\n",
                    toml::to_string(&manager).unwrap()
                ),
            );
        }
        for (i, site) in shape.host_sites.iter().enumerate() {
            let id = i as u64 + 1;
            // Several hosts may share a site (and so an address): ports differ per host.
            let listen = SocketAddr::new(ip(site), 7100 + id as u16);
            let mut config = node(
                id,
                site,
                listen,
                SocketAddr::new(ip(site), 9100 + id as u16),
            );
            config.manager = Some(ManagerLink {
                addrs: manager_addrs.clone(),
                heartbeat_interval_ms: 500,
            });
            add(
                format!("host-{id}"),
                site,
                "shard-node",
                listen,
                toml::to_string(&config).unwrap(),
            );
        }
        for site in &shape.router_sites {
            let name = format!("router-{site}");
            let listen = SocketAddr::new(ip(site), 7201);
            let config = cairn_router::RouterConfig {
                listen,
                metrics_listen: SocketAddr::new(ip(site), 9201),
                managers: manager_addrs.iter().map(ToString::to_string).collect(),
                tls: {
                    let t = tls(&name);
                    cairn_router::config::TlsConfig {
                        ca: t.ca,
                        cert: t.cert,
                        key: t.key,
                    }
                },
                site: Some((*site).into()),
                request_timeout_ms: cairn_router::config::REQUEST_TIMEOUT_MS_DEFAULT,
                limits: Default::default(),
            };
            add(
                name,
                site,
                "router",
                listen,
                toml::to_string(&config).unwrap(),
            );
        }
        let identity = Identity::load(
            &certs.join("ca.pem"),
            &certs.join("client.pem"),
            &certs.join("client.key"),
        )
        .unwrap();
        let mut platform = Self {
            bed,
            dir,
            procs,
            identity,
        };
        let names: Vec<String> = platform.procs.keys().cloned().collect();
        for name in names {
            platform.start_proc(&name);
        }
        platform
    }

    /// Starts (or restarts) the process `name` in its site.
    pub fn start_proc(&mut self, name: &str) {
        let p = self.procs.get(name).expect("a known process");
        assert!(p.pid.is_none(), "{name} is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log_path)
            .unwrap();
        let mut command = self.bed.command(&p.site, CAIRN);
        command
            .args([p.subcommand, "--config", p.config_path.to_str().unwrap()])
            .env(
                "RUST_LOG",
                std::env::var("CAIRN_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log);
        let site = p.site.clone();
        let pid = self.bed.spawn(&site, command).unwrap();
        self.procs.get_mut(name).unwrap().pid = Some(pid);
    }

    /// Kills the process `name` (SIGKILL: a crash).
    pub fn kill_proc(&mut self, name: &str) {
        let p = self.procs.get_mut(name).expect("a known process");
        if let Some(pid) = p.pid.take() {
            self.bed.kill(pid).unwrap();
        }
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        self.procs[name].addr
    }

    /// A client of every manager.
    pub fn managers(&self) -> Client {
        let names: Vec<&str> = self
            .procs
            .iter()
            .filter(|(_, p)| p.subcommand == "manager")
            .map(|(name, _)| name.as_str())
            .collect();
        self.client_of(&names)
    }

    /// A client of the given processes.
    pub fn client_of(&self, names: &[&str]) -> Client {
        let addrs = names.iter().map(|n| self.addr(n)).collect();
        Client::new(ClientConfig::new(addrs, self.identity.clone())).unwrap()
    }

    /// Asks the manager.
    pub async fn ask(&self, client: &Client, request: ManagerRequest) -> ManagerResponse {
        match client.request(Request::Manager(request)).await {
            Ok(Response::Manager(answer)) => answer,
            other => panic!("the manager answered {other:?}"),
        }
    }

    /// Waits until every host is registered and up.
    pub async fn wait_hosts(&self, managers: &Client, hosts: usize) {
        eventually(Duration::from_secs(30), "every host registered", || async {
            match managers
                .request(Request::Manager(ManagerRequest::ListHosts))
                .await
            {
                Ok(Response::Manager(ManagerResponse::Hosts(list))) => (list.len() == hosts
                    && list
                        .iter()
                        .all(|h| h.state == cairn_wire::catalog::HostState::Up))
                .then_some(()),
                _ => None,
            }
        })
        .await;
    }

    /// The shard as the catalog shows it.
    pub async fn shard(&self, managers: &Client, shard: ShardId) -> ShardInfo {
        match self.ask(managers, ManagerRequest::ListShards).await {
            ManagerResponse::Shards(list) => list
                .into_iter()
                .find(|s| s.id == shard)
                .expect("the shard is in the catalog"),
            other => panic!("list shards answered {other:?}"),
        }
    }

    /// The hosts that lead `shard` as they say themselves (normally zero or one).
    pub async fn leaders(&self, shard: ShardId) -> Vec<u64> {
        let mut leaders = Vec::new();
        for (name, p) in &self.procs {
            if p.subcommand != "shard-node" || p.pid.is_none() {
                continue;
            }
            let client = self.client_of(&[name]);
            if let Ok(Response::Status(replicas)) = client.request_to(p.addr, Request::Status).await
            {
                for r in replicas {
                    if r.shard == shard && r.role == Role::Leader {
                        leaders.push(r.node.0);
                    }
                }
            }
            client.close().await;
        }
        leaders
    }

    /// Waits until `node` alone leads `shard`.
    pub async fn wait_leader(&self, shard: ShardId, node: u64, within: Duration) {
        let what = format!("node {node} leading shard {shard}");
        eventually(within, &what, || async {
            (self.leaders(shard).await == [node]).then_some(())
        })
        .await;
    }

    /// The host (id) of each site.
    pub fn host_ids_in(&self, site: &str) -> Vec<NodeId> {
        self.procs
            .iter()
            .filter(|(_, p)| p.subcommand == "shard-node" && p.site == site)
            .filter_map(|(name, _)| name.strip_prefix("host-")?.parse().ok().map(NodeId))
            .collect()
    }
}

impl Drop for SitePlatform {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, p) in &self.procs {
                let log = std::fs::read_to_string(&p.log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(25).collect();
                eprintln!("---- {name} ({}) log tail ----", p.site);
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        // The bed kills the processes it spawned and removes its namespaces when it drops.
    }
}

/// Percentiles of latencies, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub min_ms: f64,
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        assert!(!samples.is_empty());
        samples.sort();
        let at = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples[i].as_secs_f64() * 1e3
        };
        Self {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            min_ms: samples[0].as_secs_f64() * 1e3,
        }
    }
}

/// Times `count` calls of `op`, which must succeed.
pub async fn time<F, Fut, T, E>(count: usize, mut op: F) -> Latency
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        op().await.expect("a timed call succeeds");
        samples.push(started.elapsed());
    }
    Latency::of(samples)
}
