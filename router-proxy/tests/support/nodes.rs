//! Real shard nodes for the router's tests: `shard_node::run` in child processes, on loopback,
//! with node certificates from the test's CA, killed with SIGKILL and restarted on their data.
//!
//! A child is this very test binary run again with one test selected (the test that calls
//! [`serve_if_child`]) and its node configuration named in the environment: a node installs a
//! process-wide Prometheus recorder, and the router under test has this process's. A child
//! serves until its stdin closes, so it ends with the test process even if that is killed.
//!
//! [`Nodes::create_shard`] plays the manager: it creates a shard on the nodes with
//! `CreateReplica` and adopts a namespace at an epoch, so the shard is managed and serves the
//! epoch-carrying requests a router sends.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use cairn_client::{Client, ClientConfig};
use cairn_wire::api::{Epoch, Namespace, ReplicaAddr, Request, Response, ShardId, WriteOp};
use cairn_wire::tls::PeerRole;
use raft_core::NodeId;

use super::{Pki, eventually, free_tcp_port, free_udp_port, metric};

/// The environment variable that makes a test binary a node: the path of its configuration.
pub const NODE_CONFIG_ENV: &str = "CAIRN_ROUTER_TEST_NODE_CONFIG";

/// The body of the child-process test (`child_test` of [`Nodes::start`]): in a child, serves the
/// node until stdin closes and exits the process; in an ordinary test run, returns at once.
pub fn serve_if_child() {
    let Ok(path) = std::env::var(NODE_CONFIG_ENV) else {
        return;
    };
    let text = std::fs::read_to_string(&path).expect("read the node configuration");
    let config = shard_node::NodeConfig::from_toml(&text).expect("a valid node configuration");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let result = runtime.block_on(async move {
        let parent_gone = async {
            let _ = tokio::task::spawn_blocking(|| {
                let mut buf = [0u8; 64];
                while let Ok(1..) = std::io::stdin().read(&mut buf) {}
            })
            .await;
        };
        shard_node::run(config, parent_gone).await
    });
    if let Err(e) = result {
        eprintln!("the node failed: {e}");
        std::process::exit(1);
    }
    // Not through the test harness: the stdin reader may still hold a blocking thread.
    std::process::exit(0);
}

/// One node: its addresses and, while it runs, its process.
pub struct Node {
    pub id: u64,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub site: String,
    config_path: PathBuf,
    log_path: PathBuf,
    process: Option<(Child, ChildStdin)>,
}

impl Node {
    /// The node as a replica in a routing table.
    pub fn replica(&self) -> ReplicaAddr {
        ReplicaAddr {
            node: NodeId(self.id),
            addr: self.addr.to_string(),
            site: self.site.clone(),
        }
    }
}

/// Shard nodes in child processes, all killed when dropped (their logs printed if the test
/// failed).
pub struct Nodes {
    pub nodes: Vec<Node>,
    child_test: &'static str,
    _dir: tempfile::TempDir,
}

impl Nodes {
    /// Starts nodes `1..=sites.len()`, node `i` in site `sites[i - 1]`, peers of each other and
    /// hosting no shard yet. `child_test` names the test of this binary that calls
    /// [`serve_if_child`].
    pub fn start(pki: &Pki, sites: &[&str], child_test: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes: Vec<Node> = (1..=sites.len() as u64)
            .map(|id| Node {
                id,
                addr: SocketAddr::from(([127, 0, 0, 1], free_udp_port())),
                metrics: SocketAddr::from(([127, 0, 0, 1], free_tcp_port())),
                site: sites[id as usize - 1].to_owned(),
                config_path: dir.path().join(format!("node-{id}.toml")),
                log_path: dir.path().join(format!("node-{id}.log")),
                process: None,
            })
            .collect();
        let peers: String = nodes
            .iter()
            .map(|n| format!("[[peers]]\nid = {}\naddr = \"{}\"\n", n.id, n.addr))
            .collect();
        for node in &nodes {
            let [ca, cert, key] =
                pki.write_identity(PeerRole::Node, &format!("node-{}", node.id), dir.path());
            // 50 ms ticks: an election takes 0.5 to 1 s.
            let config = format!(
                "node_id = {id}\nlisten = \"{addr}\"\nmetrics_listen = \"{metrics}\"\n\
                 data_dir = \"{data}\"\nsite = \"{site}\"\n\
                 [tls]\nca = \"{ca}\"\ncert = \"{cert}\"\nkey = \"{key}\"\n\
                 [raft]\ntick_ms = 50\ncommit_timeout_ms = 1500\n{peers}",
                id = node.id,
                addr = node.addr,
                metrics = node.metrics,
                data = dir.path().join(format!("data-{}", node.id)).display(),
                site = node.site,
                ca = ca.display(),
                cert = cert.display(),
                key = key.display(),
            );
            std::fs::write(&node.config_path, config).unwrap();
        }
        let mut started = Self {
            nodes: Vec::new(),
            child_test,
            _dir: dir,
        };
        for node in &mut nodes {
            started.spawn(node);
        }
        started.nodes = nodes;
        started
    }

    fn spawn(&self, node: &mut Node) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                self.child_test,
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(NODE_CONFIG_ENV, &node.config_path)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start a node process");
        let stdin = child.stdin.take().unwrap();
        node.process = Some((child, stdin));
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[id as usize - 1]
    }

    /// Kills node `id` (SIGKILL: no goodbye to its peers or clients).
    pub fn kill(&mut self, id: u64) {
        let node = &mut self.nodes[id as usize - 1];
        if let Some((mut child, _stdin)) = node.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `id` again on its data.
    pub fn restart(&mut self, id: u64) {
        let mut node = self.nodes.remove(id as usize - 1);
        assert!(node.process.is_none(), "node {id} runs already");
        self.spawn(&mut node);
        self.nodes.insert(id as usize - 1, node);
    }

    /// The replicas of a shard on every node, in id order.
    pub fn replicas(&self) -> Vec<ReplicaAddr> {
        self.nodes.iter().map(Node::replica).collect()
    }

    /// Does what the manager does for a new shard and namespace: `CreateReplica` on every node,
    /// waits for a leader, then adopts `namespace` at `epoch` through the shard's log. Returns
    /// the leader's id.
    pub async fn create_shard(
        &self,
        pki: &Pki,
        shard: ShardId,
        namespace: &Namespace,
        epoch: Epoch,
    ) -> u64 {
        let addrs: Vec<SocketAddr> = self.nodes.iter().map(|n| n.addr).collect();
        let config = ClientConfig::new(addrs, pki.identity(PeerRole::Node, "manager"))
            .with_request_timeout_ms(5_000);
        let manager = Client::new(config).unwrap();
        let replicas = self.replicas();
        for node in &self.nodes {
            eventually(
                Duration::from_secs(20),
                &format!("node {} to create shard {shard}", node.id),
                || async {
                    let request = Request::CreateReplica {
                        shard,
                        replicas: replicas.clone(),
                    };
                    matches!(
                        manager.request_to(node.addr, request).await,
                        Ok(Response::Done)
                    )
                    .then_some(())
                },
            )
            .await;
        }
        let leader = eventually(
            Duration::from_secs(20),
            &format!("a leader of shard {shard}"),
            || async { manager.who_leader(shard).await.ok().flatten() },
        )
        .await;
        let adopt = Request::Write {
            shard,
            namespace: namespace.clone(),
            epoch: Some(epoch),
            op: WriteOp::AdoptNamespace,
        };
        match manager.request(adopt).await {
            Ok(Response::Write { .. }) => {}
            other => panic!("adopting {namespace} failed: {other:?}"),
        }
        manager.close().await;
        leader.node.0
    }

    /// The `get` reads node `id` has served (from its own `/metrics`).
    pub async fn gets_served(&self, id: u64) -> f64 {
        let labels = [("op", "get"), ("outcome", "ok")];
        metric(self.node(id).metrics, "cairn_requests_total", &labels).await
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some((mut child, _stdin)) = node.process.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for node in &self.nodes {
                let log = std::fs::read_to_string(&node.log_path).unwrap_or_default();
                eprintln!("---- node {} ({}) ----\n{log}", node.id, node.site);
            }
        }
    }
}
