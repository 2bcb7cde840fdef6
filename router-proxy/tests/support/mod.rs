//! Fakes and helpers for the router's tests: a fake manager and fake shards speaking the real
//! protocol on real QUIC sockets with real certificates, real shard nodes in child processes
//! ([`nodes`]), a router started in-process with [`cairn_router::run`], and `/metrics`
//! scraping.
//!
//! The Prometheus recorder is process-wide: each test file starts exactly one router (in one
//! test function), so each test binary has its own recorder and counters.

#![allow(dead_code, unreachable_pub)]

pub mod nodes;

use std::collections::HashMap;
use std::future::Future;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_client::{Client, ClientConfig};
use cairn_router::RouterConfig;
use cairn_router::config::{Limits, TlsConfig};
use cairn_wire::api::{
    ApiError, Epoch, LeaderHint, Namespace, ReplicaAddr, Request, Response, ShardId,
};
use cairn_wire::catalog::{
    ManagerRequest, ManagerResponse, NamespaceInfo, NamespaceRoute, NamespaceState, RoutingChange,
    RoutingTable, ShardRoute,
};
use cairn_wire::certs::{self, PemPair};
use cairn_wire::endpoint::{self, EndpointLimits};
use cairn_wire::frame::{self, FRAME_MAX_BYTES_DEFAULT};
use cairn_wire::manifest::{Checksum, Chunk, Compression, Manifest, StorageScheme};
use cairn_wire::tls::{Identity, PeerRole};
use raft_core::NodeId;
use tokio::sync::broadcast;
use tokio::time::Instant;

pub fn ns(name: &str) -> Namespace {
    Namespace::new(name).unwrap()
}

/// The cluster CA and the certificates, with the router's written to files.
pub struct Pki {
    pub dir: tempfile::TempDir,
    ca: PemPair,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = certs::new_ca("test").unwrap();
        let router = certs::issue(&ca, PeerRole::Node, "router", &[]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
        std::fs::write(dir.path().join("router.pem"), &router.cert_pem).unwrap();
        std::fs::write(dir.path().join("router.key"), &router.key_pem).unwrap();
        Self { dir, ca }
    }

    /// Writes a certificate of `role` for `name` and its key into `dir`; returns the paths of
    /// the CA, the certificate and the key.
    pub fn write_identity(
        &self,
        role: PeerRole,
        name: &str,
        dir: &std::path::Path,
    ) -> [std::path::PathBuf; 3] {
        let pair = certs::issue(&self.ca, role, name, &[]).unwrap();
        let paths = [
            dir.join("ca.pem"),
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        ];
        std::fs::write(&paths[0], &self.ca.cert_pem).unwrap();
        std::fs::write(&paths[1], &pair.cert_pem).unwrap();
        std::fs::write(&paths[2], &pair.key_pem).unwrap();
        paths
    }

    pub fn identity(&self, role: PeerRole, name: &str) -> Identity {
        let pair = certs::issue(&self.ca, role, name, &[]).unwrap();
        Identity::from_pem(&self.ca.cert_pem, &pair.cert_pem, &pair.key_pem).unwrap()
    }

    fn router_tls(&self) -> TlsConfig {
        TlsConfig {
            ca: self.dir.path().join("ca.pem"),
            cert: self.dir.path().join("router.pem"),
            key: self.dir.path().join("router.key"),
        }
    }

    /// A storage proxy's client of `router`.
    pub fn client(&self, router: SocketAddr) -> Client {
        let config = ClientConfig::new(vec![router], self.identity(PeerRole::Client, "proxy"))
            .with_request_timeout_ms(3_000);
        Client::new(config).unwrap()
    }
}

/// A QUIC server with a node certificate that hands every request (one per bidirectional
/// stream) to `handler` with the stream to answer on.
pub fn spawn_server<F, Fut>(pki: &Pki, handler: F) -> (SocketAddr, quinn::Endpoint)
where
    F: Fn(Request, quinn::SendStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let endpoint = endpoint::server(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        &pki.identity(PeerRole::Node, "fake"),
        &EndpointLimits::default(),
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let handler = Arc::new(handler);
    let accepting = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((send, mut recv)) = conn.accept_bi().await {
                    let Ok(Some(request)) =
                        frame::read_frame::<_, Request>(&mut recv, FRAME_MAX_BYTES_DEFAULT).await
                    else {
                        continue;
                    };
                    tokio::spawn(handler(request, send));
                }
            });
        }
    });
    (addr, endpoint)
}

pub async fn answer(mut send: quinn::SendStream, response: &Response) {
    let _ = frame::write_frame(&mut send, response, FRAME_MAX_BYTES_DEFAULT).await;
    let _ = send.finish();
}

/// A shard replica that answers every request with its script and records what it got.
pub struct FakeShard {
    pub addr: SocketAddr,
    pub node: NodeId,
    requests: Arc<Mutex<Vec<Request>>>,
    _endpoint: quinn::Endpoint,
}

impl FakeShard {
    pub fn spawn(
        pki: &Pki,
        node: u64,
        script: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let script = Arc::new(script);
        let (addr, endpoint) = spawn_server(pki, move |request, send| {
            let response = script(&request);
            seen.lock().unwrap().push(request);
            async move { answer(send, &response).await }
        });
        Self {
            addr,
            node: NodeId(node),
            requests,
            _endpoint: endpoint,
        }
    }

    pub fn replica(&self) -> ReplicaAddr {
        ReplicaAddr {
            node: self.node,
            addr: self.addr.to_string(),
            site: "dc1".into(),
        }
    }

    pub fn hint(&self) -> LeaderHint {
        LeaderHint {
            node: self.node,
            addr: self.addr.to_string(),
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn take_requests(&self) -> Vec<Request> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

/// What the fake manager knows.
#[derive(Default)]
struct Catalog {
    table: RoutingTable,
    /// What `ShowNamespace` answers (routed or not).
    namespaces: HashMap<Namespace, NamespaceInfo>,
}

struct ManagerState {
    catalog: Mutex<Catalog>,
    /// Changes for open watches; `None` ends them.
    changes: broadcast::Sender<Option<RoutingChange>>,
    requests: Mutex<Vec<ManagerRequest>>,
    /// A follower: answers everything `NotLeader` with this hint.
    redirect: Option<LeaderHint>,
    /// How long `ShowNamespace` takes.
    lookup_delay: Mutex<Duration>,
}

/// A manager that speaks the catalog protocol from an in-memory catalog.
pub struct FakeManager {
    pub addr: SocketAddr,
    state: Arc<ManagerState>,
    _endpoint: quinn::Endpoint,
}

impl FakeManager {
    /// The leader, serving `table`; `ShowNamespace` answers from the table's namespaces (as
    /// active) and whatever [`FakeManager::set_namespace`] adds.
    pub fn leader(pki: &Pki, table: RoutingTable) -> Self {
        let namespaces = table
            .namespaces
            .iter()
            .map(|n| (n.name.clone(), info(n, NamespaceState::Active)))
            .collect();
        Self::spawn(pki, Catalog { table, namespaces }, None)
    }

    /// A follower that sends everyone to `leader`.
    pub fn follower(pki: &Pki, leader: &Self) -> Self {
        let hint = LeaderHint {
            node: NodeId(1),
            addr: leader.addr.to_string(),
        };
        Self::spawn(pki, Catalog::default(), Some(hint))
    }

    fn spawn(pki: &Pki, catalog: Catalog, redirect: Option<LeaderHint>) -> Self {
        let state = Arc::new(ManagerState {
            catalog: Mutex::new(catalog),
            changes: broadcast::channel(64).0,
            requests: Mutex::new(Vec::new()),
            redirect,
            lookup_delay: Mutex::new(Duration::ZERO),
        });
        let served = Arc::clone(&state);
        let (addr, endpoint) = spawn_server(pki, move |request, send| {
            let state = Arc::clone(&served);
            async move { serve_manager(&state, request, send).await }
        });
        Self {
            addr,
            state,
            _endpoint: endpoint,
        }
    }

    /// Makes a change: the catalog takes it and every open watch is sent it.
    pub fn push(&self, change: RoutingChange) {
        {
            let mut catalog = self.state.catalog.lock().unwrap();
            let table = &mut catalog.table;
            table.version = change.version;
            for shard in &change.shards {
                table.shards.retain(|s| s.shard != shard.shard);
                table.shards.push(shard.clone());
            }
            for n in &change.namespaces {
                table.namespaces.retain(|t| t.name != n.name);
                table.namespaces.push(n.clone());
            }
            table
                .namespaces
                .retain(|t| !change.removed.contains(&t.name));
            for n in &change.namespaces {
                catalog
                    .namespaces
                    .insert(n.name.clone(), info(n, NamespaceState::Active));
            }
            for name in &change.removed {
                catalog.namespaces.remove(name);
            }
        }
        let _ = self.state.changes.send(Some(change));
    }

    /// Adds a shard to the routing table without telling the watches (as if the change were
    /// still on its way).
    pub fn add_shard_quietly(&self, shard: ShardRoute) {
        let mut catalog = self.state.catalog.lock().unwrap();
        catalog.table.shards.retain(|s| s.shard != shard.shard);
        catalog.table.shards.push(shard);
    }

    /// Ends every open watch stream (as a manager that stops leading does).
    pub fn end_watches(&self) {
        let _ = self.state.changes.send(None);
    }

    /// What `ShowNamespace` says about `info.name` from now on (not in the routing table).
    pub fn set_namespace(&self, info: NamespaceInfo) {
        let mut catalog = self.state.catalog.lock().unwrap();
        catalog.namespaces.insert(info.name.clone(), info);
    }

    /// Makes `ShowNamespace` take `delay` from now on.
    pub fn set_lookup_delay(&self, delay: Duration) {
        *self.state.lookup_delay.lock().unwrap() = delay;
    }

    /// The requests received of kind `name` (`ManagerRequest::name`).
    pub fn count(&self, name: &str) -> usize {
        let requests = self.state.requests.lock().unwrap();
        requests.iter().filter(|r| r.name() == name).count()
    }
}

pub fn info(route: &NamespaceRoute, state: NamespaceState) -> NamespaceInfo {
    NamespaceInfo {
        name: route.name.clone(),
        id: 1,
        shard: route.shard,
        epoch: route.epoch,
        state,
        home_site: None,
        placement: None,
        created_at_ms: 0,
    }
}

async fn serve_manager(state: &ManagerState, request: Request, mut send: quinn::SendStream) {
    let Request::Manager(request) = request else {
        let e = ApiError::InvalidArgument("the fake manager serves manager requests".into());
        return answer(send, &Response::Error(e)).await;
    };
    state.requests.lock().unwrap().push(request.clone());
    if let Some(hint) = &state.redirect {
        let e = ApiError::NotLeader {
            leader: Some(hint.clone()),
        };
        return answer(send, &Response::Error(e)).await;
    }
    let response = match request {
        ManagerRequest::Watch => {
            // Subscribe before taking the table, so no change falls between the two.
            let mut changes = state.changes.subscribe();
            let table = state.catalog.lock().unwrap().table.clone();
            let first = Response::Manager(ManagerResponse::Routing(table));
            if frame::write_frame(&mut send, &first, FRAME_MAX_BYTES_DEFAULT)
                .await
                .is_err()
            {
                return;
            }
            loop {
                match changes.recv().await {
                    Ok(Some(change)) => {
                        let message = Response::Manager(ManagerResponse::Change(change));
                        if frame::write_frame(&mut send, &message, FRAME_MAX_BYTES_DEFAULT)
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(None) | Err(_) => {
                        let _ = send.finish();
                        return;
                    }
                }
            }
        }
        ManagerRequest::ShowNamespace { name } => {
            let delay = *state.lookup_delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            let catalog = state.catalog.lock().unwrap();
            match catalog.namespaces.get(&name) {
                Some(info) => Response::Manager(ManagerResponse::Namespace(info.clone())),
                None => Response::Error(ApiError::UnknownNamespace(name)),
            }
        }
        ManagerRequest::Routing => {
            let table = state.catalog.lock().unwrap().table.clone();
            Response::Manager(ManagerResponse::Routing(table))
        }
        ManagerRequest::ListNamespaces => {
            let catalog = state.catalog.lock().unwrap();
            let mut all: Vec<NamespaceInfo> = catalog.namespaces.values().cloned().collect();
            all.sort_by(|a, b| a.name.cmp(&b.name));
            Response::Manager(ManagerResponse::Namespaces(all))
        }
        other => Response::Error(ApiError::InvalidArgument(format!(
            "the fake manager does not serve {}",
            other.name()
        ))),
    };
    answer(send, &response).await;
}

pub fn shard_route(shard: u64, replicas: &[&FakeShard]) -> ShardRoute {
    ShardRoute {
        shard: ShardId(shard),
        replicas: replicas.iter().map(|r| r.replica()).collect(),
    }
}

pub fn namespace_route(name: &str, shard: u64, epoch: u64) -> NamespaceRoute {
    NamespaceRoute {
        name: ns(name),
        shard: ShardId(shard),
        epoch: Epoch(epoch),
    }
}

/// A router running in this process, stopped when dropped.
pub struct RouterUnderTest {
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for RouterUnderTest {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
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

/// Starts a router in this process with `managers`, after `tweak`s to its configuration, and
/// waits until it has opened its routing watch.
pub async fn start_router(
    pki: &Pki,
    managers: &[&FakeManager],
    tweak: impl FnOnce(&mut RouterConfig),
) -> RouterUnderTest {
    let mut config = RouterConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], free_udp_port())),
        metrics_listen: SocketAddr::from(([127, 0, 0, 1], free_tcp_port())),
        managers: managers.iter().map(|m| m.addr.to_string()).collect(),
        tls: pki.router_tls(),
        site: Some("dc1".into()),
        request_timeout_ms: 3_000,
        limits: Limits::default(),
    };
    tweak(&mut config);
    let (addr, metrics) = (config.listen, config.metrics_listen);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = cairn_router::run(config, shutdown).await {
            panic!("the router failed: {e}");
        }
    });
    let router = RouterUnderTest {
        addr,
        metrics,
        stop: Some(stop),
    };
    eventually(
        Duration::from_secs(10),
        "the router's routing watch",
        || async {
            (metric(metrics, "cairn_router_watch_connects_total", &[]).await >= 1.0).then_some(())
        },
    )
    .await;
    router
}

/// Polls `check` until it returns Some or the deadline passes.
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fetches `/metrics` (plain HTTP/1.0); `None` while nothing listens yet.
pub async fn scrape(addr: SocketAddr) -> Option<prometheus_parse::Scrape> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .ok()?
        .ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    assert!(head.contains(" 200 "), "bad response: {head}");
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    Some(prometheus_parse::Scrape::parse(lines).expect("the exposition parses"))
}

/// The sum of the samples of `name` whose labels include `labels` (0 when there are none).
pub async fn metric(addr: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    let Some(scrape) = scrape(addr).await else {
        return 0.0;
    };
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// A small valid manifest.
pub fn manifest(name: &str, version: u64) -> Manifest {
    Manifest {
        name: name.to_owned(),
        object_id: format!("{name}-{version}").into_bytes(),
        size_bytes: 10,
        checksum: Checksum::none(),
        scheme: StorageScheme {
            data_fragments: 1,
            parity_fragments: 0,
            fragment_size_bytes: 10,
            compression: Compression::None,
            encrypted: false,
        },
        chunks: vec![Chunk {
            length_bytes: 10,
            fragments: vec![None],
        }],
        version,
        timestamp_ms: 0,
    }
}
