//! A whole platform as real processes on loopback: `cairn manager` nodes forming the catalog
//! group, `cairn shard-node` hosts that register with them, and a `cairn router`.
//!
//! Like [`super::Cluster`], every process and directory is removed on drop, also when the test
//! fails (the logs' tails are printed then).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cairn_client::{Client, ClientConfig};
use cairn_wire::api::{Request, Response};
use cairn_wire::catalog::{ManagerRequest, ManagerResponse};
use cairn_wire::tls::Identity;
use shard_node::NodeConfig;
use shard_node::config::{ManagerLink, PeerConfig, TlsConfig};

use super::{CAIRN, cairn, eventually, test_timing};

/// Hands out free loopback ports, keeping each bound until the pool is dropped, so that two
/// processes never get the same one.
#[derive(Default)]
struct Ports {
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
}

impl Ports {
    fn udp(&mut self) -> SocketAddr {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        self.udp.push(socket);
        addr
    }

    fn tcp(&mut self) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        self.tcp.push(listener);
        addr
    }
}

/// The id of the first manager node (managers and hosts share the node id space, since node
/// certificates are named after ids).
pub const MANAGER_ID_BASE: u64 = 100;

/// One process of the platform.
pub struct Proc {
    pub name: String,
    pub subcommand: &'static str,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub child: Option<Child>,
}

impl Proc {
    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let child = Command::new(CAIRN)
            .args([
                self.subcommand,
                "--config",
                self.config_path.to_str().unwrap(),
            ])
            .env(
                "RUST_LOG",
                std::env::var("CAIRN_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

/// The shape of a platform.
#[derive(Clone, Debug)]
pub struct Shape {
    pub managers: u64,
    /// The site of each host (its length is the number of hosts).
    pub host_sites: Vec<&'static str>,
    pub namespaces_per_shard: u32,
    pub replicas_per_shard: u32,
    /// More lines for the managers' `[catalog]` section.
    pub catalog_extra: String,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            managers: 3,
            host_sites: vec!["dc1"; 4],
            namespaces_per_shard: 50,
            replicas_per_shard: 3,
            catalog_extra: String::new(),
        }
    }
}

pub struct Platform {
    pub dir: tempfile::TempDir,
    pub managers: BTreeMap<u64, Proc>,
    pub hosts: BTreeMap<u64, Proc>,
    pub router: Proc,
}

impl Platform {
    /// Writes certificates and configurations and starts every process.
    pub fn start(shape: Shape) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cairn-platform-")
            .tempdir()
            .unwrap();
        let certs = dir.path().join("certs");
        let certs_s = certs.to_str().unwrap().to_owned();
        super::cluster_certs(&certs);
        cairn(&[
            "certs", "issue", "--dir", &certs_s, "--name", "router-1", "--role", "node",
        ]);
        let tls = |name: &str| TlsConfig {
            ca: certs.join("ca.pem"),
            cert: certs.join(format!("{name}.pem")),
            key: certs.join(format!("{name}.key")),
        };
        let manager_ids: Vec<u64> = (1..=shape.managers).map(|i| MANAGER_ID_BASE + i).collect();
        let mut ports = Ports::default();
        let manager_addrs: BTreeMap<u64, SocketAddr> =
            manager_ids.iter().map(|id| (*id, ports.udp())).collect();
        let node_config =
            |id: u64, listen: SocketAddr, metrics: SocketAddr, peers: Vec<PeerConfig>| {
                let name = format!("node-{id}");
                cairn(&[
                    "certs", "issue", "--dir", &certs_s, "--name", &name, "--role", "node",
                ]);
                NodeConfig {
                    node_id: id,
                    listen,
                    metrics_listen: metrics,
                    data_dir: dir.path().join(&name).join("data"),
                    tls: tls(&name),
                    peers,
                    shards: vec![],
                    raft: test_timing(),
                    limits: Default::default(),
                    site: "default".into(),
                    capacity_replicas: 1000,
                    manager: None,
                }
            };
        let proc_of = |name: String, subcommand, config: &NodeConfig, text: String| {
            let config_path = dir.path().join(format!("{name}.toml"));
            std::fs::write(&config_path, text).unwrap();
            Proc {
                log_path: dir.path().join(format!("{name}.log")),
                name,
                subcommand,
                addr: config.listen,
                metrics: config.metrics_listen,
                config_path,
                child: None,
            }
        };

        let mut managers = BTreeMap::new();
        for &id in &manager_ids {
            let peers = manager_addrs
                .iter()
                .map(|(id, addr)| PeerConfig {
                    id: *id,
                    addr: *addr,
                    cert_name: None,
                })
                .collect();
            let config = node_config(id, manager_addrs[&id], ports.tcp(), peers);
            let text = format!(
                "{}\n[catalog]\nnamespaces_per_shard = {}\nreplicas_per_shard = {}\nhost_down_after_ms = 3000\nreconcile_interval_ms = 200\n{}\n",
                toml::to_string(&config).unwrap(),
                shape.namespaces_per_shard,
                shape.replicas_per_shard,
                shape.catalog_extra,
            );
            managers.insert(
                id,
                proc_of(format!("manager-{id}"), "manager", &config, text),
            );
        }
        let mut hosts = BTreeMap::new();
        for (i, site) in shape.host_sites.iter().enumerate() {
            let id = i as u64 + 1;
            let listen = ports.udp();
            let mut config = node_config(
                id,
                listen,
                ports.tcp(),
                vec![PeerConfig {
                    id,
                    addr: listen,
                    cert_name: None,
                }],
            );
            config.site = (*site).into();
            config.manager = Some(ManagerLink {
                addrs: manager_addrs.values().copied().collect(),
                heartbeat_interval_ms: 500,
            });
            let text = toml::to_string(&config).unwrap();
            hosts.insert(
                id,
                proc_of(format!("host-{id}"), "shard-node", &config, text),
            );
        }
        let router_listen = ports.udp();
        let router_metrics = ports.tcp();
        let router_config = cairn_router::RouterConfig {
            listen: router_listen,
            metrics_listen: router_metrics,
            managers: manager_addrs.values().map(|a| a.to_string()).collect(),
            tls: cairn_router::config::TlsConfig {
                ca: certs.join("ca.pem"),
                cert: certs.join("router-1.pem"),
                key: certs.join("router-1.key"),
            },
            site: Some("dc1".into()),
            request_timeout_ms: cairn_router::config::REQUEST_TIMEOUT_MS_DEFAULT,
            limits: Default::default(),
        };
        let router_path = dir.path().join("router-1.toml");
        std::fs::write(&router_path, toml::to_string(&router_config).unwrap()).unwrap();
        let router = Proc {
            name: "router-1".into(),
            subcommand: "router",
            addr: router_listen,
            metrics: router_metrics,
            config_path: router_path,
            log_path: dir.path().join("router-1.log"),
            child: None,
        };
        // Free the ports just before the processes bind them.
        drop(ports);
        let mut platform = Self {
            dir,
            managers,
            hosts,
            router,
        };
        for p in platform.managers.values_mut() {
            p.start();
        }
        for p in platform.hosts.values_mut() {
            p.start();
        }
        platform.router.start();
        platform
    }

    pub fn identity(&self) -> Identity {
        let certs = self.dir.path().join("certs");
        Identity::load(
            &certs.join("ca.pem"),
            &certs.join("client.pem"),
            &certs.join("client.key"),
        )
        .unwrap()
    }

    /// A client of the managers (it follows the leader).
    pub fn manager_client(&self) -> Client {
        let mut config = ClientConfig::new(
            self.managers.values().map(|p| p.addr).collect(),
            self.identity(),
        );
        config.request_timeout_ms = 40_000;
        Client::new(config).unwrap()
    }

    /// A client of the router.
    pub fn router_client(&self) -> Client {
        let mut config = ClientConfig::new(vec![self.router.addr], self.identity());
        config.request_timeout_ms = 10_000;
        Client::new(config).unwrap()
    }

    /// A client of every host, for direct shard requests.
    pub fn host_client(&self) -> Client {
        Client::new(ClientConfig::new(
            self.hosts.values().map(|p| p.addr).collect(),
            self.identity(),
        ))
        .unwrap()
    }

    /// Sends a manager request and returns the answer.
    pub async fn ask(
        client: &Client,
        request: ManagerRequest,
    ) -> Result<ManagerResponse, cairn_client::Error> {
        match client.request(Request::Manager(request)).await? {
            Response::Manager(answer) => Ok(answer),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    /// Waits until the managers have a leader and every host is registered and up.
    pub async fn wait_ready(&self, client: &Client) {
        let hosts = self.hosts.len();
        eventually(Duration::from_secs(60), "every host registered", || async {
            match Self::ask(client, ManagerRequest::ListHosts).await {
                Ok(ManagerResponse::Hosts(list))
                    if list.len() == hosts
                        && list
                            .iter()
                            .all(|h| h.state == cairn_wire::catalog::HostState::Up) =>
                {
                    Some(())
                }
                _ => None,
            }
        })
        .await;
    }

    /// The manager that leads the catalog, as the managers' metrics say.
    pub fn manager_leader(&self) -> Option<u64> {
        self.managers
            .iter()
            .filter(|(_, p)| p.child.is_some())
            .find(|(_, p)| {
                let text = super::scrape(p.metrics);
                text.lines()
                    .any(|l| l.starts_with("cairn_manager_is_leader") && l.ends_with(" 1"))
            })
            .map(|(id, _)| *id)
    }

    pub fn kill_manager(&mut self, id: u64) {
        self.managers.get_mut(&id).unwrap().kill();
    }

    pub fn start_manager(&mut self, id: u64) {
        self.managers.get_mut(&id).unwrap().start();
    }

    pub fn kill_host(&mut self, id: u64) {
        self.hosts.get_mut(&id).unwrap().kill();
    }

    pub fn start_host(&mut self, id: u64) {
        self.hosts.get_mut(&id).unwrap().start();
    }

    /// SIGSTOP (`pause`) or SIGCONT: a host that freezes with its connections open.
    pub fn signal_host(&self, id: u64, pause: bool) {
        let child = self.hosts[&id].child.as_ref().expect("the host runs");
        let sig = if pause { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig} {}", child.id());
    }

    pub fn restart_router(&mut self) {
        self.router.kill();
        self.router.start();
    }

    fn all(&self) -> impl Iterator<Item = &Proc> {
        self.managers
            .values()
            .chain(self.hosts.values())
            .chain(std::iter::once(&self.router))
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        for p in self
            .managers
            .values_mut()
            .chain(self.hosts.values_mut())
            .chain(std::iter::once(&mut self.router))
        {
            p.kill();
        }
        if failed {
            for p in self.all() {
                let log = p.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("---- {} log (last {} lines) ----", p.name, tail.len());
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}
