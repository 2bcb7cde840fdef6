//! cairn's multi-raft host: many shard replicas on one RocksDB, one QUIC endpoint and one
//! group-commit loop.
//!
//! - [`config`]: the TOML configuration.
//! - [`storage`]: the RocksDB layout (log, hard state, applied state, data generations).
//! - [`keys`] and [`kv`]: the key-value state machine of a shard (Arakoon's operations).
//! - [`host`]: the loop that drives every replica: group commit, send, apply.
//! - [`transport`], [`snapshot`] and [`server`]: QUIC traffic to peers and clients.
//! - [`nsm`]: the namespace state machine: ownership by epoch, key-value data, manifests.
//! - [`heartbeat`]: registration with the manager and periodic heartbeats.
//! - [`metrics`]: what `/metrics` exports.
//!
//! [`start`] wires them together and [`run`] serves until shutdown; the `cairn shard-node`
//! command only parses the config and calls it. The manager runs the same node (its catalog is a
//! Raft group of it) and answers its own requests through [`server::ManagerApi`].

pub mod config;
pub mod heartbeat;
pub mod host;
pub mod keys;
pub mod kv;
pub mod metrics;
pub mod nsm;
pub mod server;
pub mod snapshot;
pub mod storage;
pub mod transport;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use cairn_wire::endpoint::{self, EndpointLimits};
use cairn_wire::frame;
use cairn_wire::tls::Identity;
use tracing::{error, info};

pub use config::NodeConfig;

use crate::host::{Event, Host};
use crate::server::Service;
use crate::storage::Engine;

/// How long a connection may be silent before it is considered dead.
pub const PEER_IDLE_TIMEOUT_MS: u64 = 3_000;

/// Why a node could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The TLS files are unusable.
    #[error("tls: {0}")]
    Tls(#[from] cairn_wire::tls::TlsError),
    /// The QUIC endpoint could not be set up.
    #[error("endpoint: {0}")]
    Endpoint(#[from] endpoint::EndpointError),
    /// Storage failed; the node stops rather than risk acknowledging what is not durable.
    #[error("storage: {0}")]
    Storage(#[from] storage::EngineError),
    /// Something else prevented the start.
    #[error("{0}")]
    Start(String),
}

/// Runs a node until `shutdown` resolves (or storage fails).
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    start(config).await?.run_until(shutdown).await
}

/// A started node: its host loop runs and its listener serves.
pub struct Node {
    service: Arc<Service>,
    quic: quinn::Endpoint,
    stop: Arc<std::sync::atomic::AtomicBool>,
    events: crossbeam_channel::Sender<Event>,
    host_done: tokio::sync::oneshot::Receiver<()>,
    host_thread: std::thread::JoinHandle<Result<(), NodeError>>,
}

/// Starts a node: opens its storage and replicas, starts the host loop, the peer links and the
/// listener, and (when the configuration names managers) the heartbeat to the manager.
pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
    start_as(config, "shard-node").await
}

/// [`start`], for a process whose role (in `cairn_process_info`) is `role`: a manager runs a
/// node for its catalog group.
pub async fn start_as(config: NodeConfig, role: &'static str) -> Result<Node, NodeError> {
    config.validate()?;
    let id = config.id();
    metrics::install(config.metrics_listen).map_err(NodeError::Start)?;
    metrics::process_info(role, &config.site, id);
    let identity = Identity::load(&config.tls.ca, &config.tls.cert, &config.tls.key)?;
    let frame_max = config.limits.frame_size_max_bytes;
    let limits = EndpointLimits {
        stream_receive_window_bytes: frame_max.saturating_add(64 * 1024),
        // A peer that died is noticed within PEER_IDLE_TIMEOUT_MS (keep-alives flow twice a
        // second otherwise), so the link to it is re-established as soon as it is back.
        idle_timeout_ms: PEER_IDLE_TIMEOUT_MS,
        keep_alive_interval_ms: PEER_IDLE_TIMEOUT_MS / 6,
        ..EndpointLimits::default()
    };
    let quic = endpoint::server(config.listen, &identity, &limits)?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| NodeError::Start(format!("creating {}: {e}", config.data_dir.display())))?;
    let engine = Engine::open(&config.data_dir)?;
    engine.claim(id.0)?;

    let (events_tx, events_rx) =
        crossbeam_channel::bounded(config.limits.request_queue_max as usize);
    let (outbox, links, snapshot_jobs) =
        transport::start(id, quic.clone(), &config.peer_map(), frame_max);
    let (host, replicas) = Host::new(&config, engine.clone(), events_rx, outbox)?;
    let (host_done_tx, host_done) = tokio::sync::oneshot::channel();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let host_stop = stop.clone();
    let host_thread = std::thread::Builder::new()
        .name("host-loop".into())
        .spawn(move || {
            let result = host.run(&host_stop);
            let _ = host_done_tx.send(());
            result
        })
        .map_err(|e| NodeError::Start(format!("spawning the host loop: {e}")))?;

    tokio::spawn(snapshot::run_sender(
        engine.clone(),
        id,
        links,
        snapshot_jobs,
        events_tx.clone(),
        frame_max,
    ));
    let service = Arc::new(Service {
        me: id,
        host: events_tx.clone(),
        engine,
        replicas: replicas.clone(),
        limits: config.kv_limits(),
        frame_max_bytes: frame_max,
        commit_timeout: Duration::from_millis(config.raft.commit_timeout_ms),
        connections_max: config.limits.connections_max,
        connections: AtomicU32::new(0),
        peer_cert_names: config.peer_cert_names(),
        manager: std::sync::OnceLock::new(),
    });
    tokio::spawn(server::serve(quic.clone(), service.clone()));
    tokio::spawn(sample_host(config.data_dir.clone(), replicas.clone()));
    if let Some(manager) = &config.manager {
        tokio::spawn(heartbeat::run(
            heartbeat::HostIdentity {
                id,
                site: config.site.clone(),
                addr: config.listen.to_string(),
                capacity_replicas: config.capacity_replicas,
            },
            manager.clone(),
            identity,
            replicas,
        ));
    }
    info!(
        node = id.0,
        listen = %config.listen,
        metrics = %config.metrics_listen,
        shards = config.shards.len(),
        "node serving"
    );
    Ok(Node {
        service,
        quic,
        stop,
        events: events_tx,
        host_done,
        host_thread,
    })
}

/// How often the host-wide gauges (replicas held, disk space) are sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Samples the host-wide gauges until the runtime stops.
async fn sample_host(data_dir: std::path::PathBuf, replicas: host::ReplicaHandles) {
    let mut ticker = tokio::time::interval(SAMPLE_INTERVAL);
    loop {
        ticker.tick().await;
        let held = replicas
            .read()
            .expect("replica handles lock poisoned")
            .len();
        metrics::replicas(held);
        match rustix::fs::statvfs(&data_dir) {
            Ok(fs) => metrics::disk(
                fs.f_bavail.saturating_mul(fs.f_frsize),
                fs.f_blocks.saturating_mul(fs.f_frsize),
            ),
            Err(e) => tracing::debug!("statvfs {}: {e}", data_dir.display()),
        }
    }
}

impl Node {
    /// The request handler (the manager answers its catalog requests through it).
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Serves until `shutdown` resolves (or the host loop stops on a storage failure), then
    /// stops everything.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), NodeError> {
        let Self {
            service: _,
            quic,
            stop,
            events,
            host_done,
            host_thread,
        } = self;
        tokio::select! {
            () = shutdown => info!("shutting down"),
            _ = host_done => error!("the host loop stopped"),
        }
        quic.close(frame::close::SHUTTING_DOWN.into(), b"shutting down");
        // The flag stops the loop within one tick even if the queue is full and the wake-up
        // event does not fit.
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = events.try_send(Event::Shutdown);
        drop(events);
        let result = tokio::task::spawn_blocking(move || host_thread.join())
            .await
            .map_err(|e| NodeError::Start(e.to_string()))?
            .map_err(|_| NodeError::Start("the host loop panicked".into()))?;
        quic.wait_idle().await;
        result
    }
}
