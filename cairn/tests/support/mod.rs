//! Real clusters for the integration tests: `cairn shard-node` processes on loopback, with
//! certificates made by `cairn certs`, killed with SIGKILL, paused with SIGSTOP, restarted.
//!
//! Every process and directory a [`Cluster`] creates is removed when it is dropped, also when
//! the test fails (the node logs are printed then, to see why).

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_client::{Client, ClientConfig};
use cairn_wire::api::{Namespace, ShardId};
use cairn_wire::tls::Identity;
use raft_core::{NodeId, Role};
use shard_node::NodeConfig;
use shard_node::config::{PeerConfig, RaftTiming, ShardConfig, TlsConfig};

pub const SHARD: ShardId = ShardId(1);
pub const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

/// Runs `cairn` with arguments and returns its stdout; panics with its stderr on failure.
pub fn cairn(args: &[&str]) -> String {
    let out = Command::new(CAIRN).args(args).output().expect("run cairn");
    assert!(
        out.status.success(),
        "cairn {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Node {
    pub id: u64,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub child: Option<Child>,
    pub paused: bool,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: BTreeMap<u64, Node>,
}

/// Test timing: 50 ms ticks, so an election takes 0.5 to 1 s.
pub fn test_timing() -> RaftTiming {
    RaftTiming {
        tick_ms: 50,
        commit_timeout_ms: 1_500,
        ..RaftTiming::default()
    }
}

impl Cluster {
    /// Starts `n` nodes hosting shard 1 together.
    pub fn start(n: u64) -> Self {
        Self::start_with(n, |_| {})
    }

    /// Starts `n` nodes; `tweak` adjusts each node's configuration first.
    pub fn start_with(n: u64, tweak: impl Fn(&mut NodeConfig)) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cairn-test-")
            .tempdir()
            .unwrap();
        let certs = dir.path().join("certs");
        let certs_s = certs.to_str().unwrap();
        cluster_certs(&certs);
        let ids: Vec<u64> = (1..=n).collect();
        let peers: BTreeMap<u64, SocketAddr> = ids
            .iter()
            .map(|id| (*id, SocketAddr::from(([127, 0, 0, 1], free_udp_port()))))
            .collect();
        let mut nodes = BTreeMap::new();
        for &id in &ids {
            let name = format!("node-{id}");
            cairn(&[
                "certs", "issue", "--dir", certs_s, "--name", &name, "--role", "node",
            ]);
            let metrics = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
            let mut config = NodeConfig {
                node_id: id,
                listen: peers[&id],
                metrics_listen: metrics,
                data_dir: dir.path().join(&name).join("data"),
                tls: TlsConfig {
                    ca: certs.join("ca.pem"),
                    cert: certs.join(format!("{name}.pem")),
                    key: certs.join(format!("{name}.key")),
                },
                peers: peers
                    .iter()
                    .map(|(id, addr)| PeerConfig {
                        id: *id,
                        addr: *addr,
                        cert_name: None,
                    })
                    .collect(),
                shards: vec![ShardConfig {
                    id: SHARD.0,
                    replicas: ids.clone(),
                }],
                raft: test_timing(),
                limits: Default::default(),
                site: "default".into(),
                capacity_replicas: 1000,
                manager: None,
            };
            tweak(&mut config);
            let config_path = dir.path().join(format!("{name}.toml"));
            std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
            nodes.insert(
                id,
                Node {
                    id,
                    addr: peers[&id],
                    metrics,
                    config_path,
                    log_path: dir.path().join(format!("{name}.log")),
                    child: None,
                    paused: false,
                },
            );
        }
        let mut cluster = Self { dir, nodes };
        for id in ids {
            cluster.start_node(id);
        }
        cluster
    }

    pub fn start_node(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        assert!(node.child.is_none(), "node {id} is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .unwrap();
        let child = Command::new(CAIRN)
            .args(["shard-node", "--config", node.config_path.to_str().unwrap()])
            .env(
                "RUST_LOG",
                std::env::var("CAIRN_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        node.child = Some(child);
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        if node.paused {
            signal(node, "-CONT");
            node.paused = false;
        }
        if let Some(mut child) = node.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn restart(&mut self, id: u64) {
        self.kill(id);
        self.start_node(id);
    }

    /// SIGSTOP: the process freezes with its connections open (a replica cut off from
    /// everyone, which still believes what it believed).
    pub fn pause(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        signal(node, "-STOP");
        node.paused = true;
    }

    pub fn resume(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        signal(node, "-CONT");
        node.paused = false;
    }

    pub fn addr(&self, id: u64) -> SocketAddr {
        self.nodes[&id].addr
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

    pub fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// A client of every node.
    pub fn client(&self) -> Client {
        let nodes = self.nodes.values().map(|n| n.addr).collect();
        Client::new(ClientConfig::new(nodes, self.identity())).unwrap()
    }

    /// Waits until a write through the client succeeds and some node says it leads shard 1.
    pub async fn wait_for_leader(&self, client: &Client, within: Duration) -> u64 {
        let ns = client.namespace(SHARD, Namespace::new("probe").unwrap());
        eventually(within, "a leader", || async {
            ns.nop().await.ok()?;
            self.leader(client).await
        })
        .await
    }

    /// Starts `n` nodes and waits for a leader: the cluster, a client of every node, the leader.
    pub async fn running(n: u64) -> (Self, Client, u64) {
        let cluster = Self::start(n);
        let client = cluster.client();
        let leader = cluster
            .wait_for_leader(&client, Duration::from_secs(30))
            .await;
        (cluster, client, leader)
    }

    /// The node that currently leads shard 1, as the running nodes report it.
    pub async fn leader(&self, client: &Client) -> Option<u64> {
        for node in self
            .nodes
            .values()
            .filter(|n| n.child.is_some() && !n.paused)
        {
            if let Ok(status) = client.status(node.addr).await
                && status.iter().any(|s| s.role == Role::Leader)
            {
                return Some(node.id);
            }
        }
        None
    }

    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(&self.nodes[&id].log_path).unwrap_or_default()
    }
}

fn signal(node: &Node, sig: &str) {
    if let Some(child) = &node.child {
        let status = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig} {}", child.id());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.kill(id);
            if failed {
                let log = self.log(id);
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                eprintln!("---- node {id} log (last {} lines) ----", tail.len());
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// Polls `check` until it returns Some or the deadline passes.
/// A cluster CA named `test` and a client certificate (`client`) in `certs`.
pub fn cluster_certs(certs: &Path) {
    let certs = certs.to_str().unwrap();
    cairn(&["certs", "init", "--dir", certs, "--cluster", "test"]);
    cairn(&[
        "certs", "issue", "--dir", certs, "--name", "client", "--role", "client",
    ]);
}

pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn ns(name: &str) -> Namespace {
    Namespace::new(name).unwrap()
}

pub fn node_id(id: u64) -> NodeId {
    NodeId(id)
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Cluster tests in one test binary run one at a time: three nodes per test on a two-core
/// machine is plenty, and elections should not starve. (An async lock: it is held across
/// awaits, and a failed test must not poison it for the others.)
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Fetches `/metrics` over plain HTTP/1.0 and returns the body.
pub fn scrape(addr: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "bad response: {head}"
    );
    body.to_string()
}
pub mod platform;
pub mod sites;
