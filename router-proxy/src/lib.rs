//! cairn's caching router: storage proxies send it requests addressed by namespace only, and it
//! finds the shard, forwards them there and caches what it safely can.
//!
//! # How a request flows
//!
//! ```text
//!  storage proxy ──QUIC+mTLS, one request per stream──► server.rs
//!                                    (connection bound, in-flight bound)
//!                                                  │
//!                                              router.rs
//!   route cache (routes.rs) ◄── watch.rs ◄── manager: table, then changes
//!         │ miss / WrongShard: ShowNamespace, Routing ──► manager (upstream.rs)
//!         ▼
//!   GetManifests the consistency lets the manifest cache (cache.rs) answer: answered here;
//!   Any/AtLeast reads ──Read{shard, epoch}──► a replica in the router's site, if any
//!                          (locality.rs picks; not served: on to the line below)
//!   everything else ──Read/Write{shard, epoch}──► the shard's replicas
//!                          (upstream.rs: one cairn-client per shard, follows leaders)
//! ```
//!
//! 1. **Resolve.** `RoutedRead`/`RoutedWrite` name a namespace. The route cache maps it to its
//!    shard, the epoch of the assignment and the shard's replicas. The cache is fed by a watch on
//!    the manager leader ([`routes`]): a full table when the watch opens, then every change, in
//!    routing-version order. On a miss (or before the first table) the router asks the manager
//!    (`ShowNamespace`, and `Routing` if the shard is unknown) and caches the answer; an unknown
//!    or inactive namespace is `UnknownNamespace`.
//! 2. **Answer from the manifest cache** when it may ([`cache`]): never for `Consistent`
//!    reads, for `AtLeast(i)` when every object asked was seen at an index of at least `i`, for
//!    `Any` when every object asked is cached.
//! 3. **Forward** as `Read`/`Write` with the shard and the epoch it routed by. The shard's
//!    client follows `NotLeader` hints and retries what is safe. Answers pass back unchanged;
//!    manifests in them (and manifests written through) fill the cache.
//!
//!    **Site-aware reads** ([`locality`]): a router with a `site` sends `Any` and `AtLeast`
//!    reads to a replica of the shard in its site when there is one (turn by turn over several;
//!    one that failed lately is skipped for a few seconds), once, with a short timeout. Any
//!    replica may serve such reads (a follower serves `AtLeast(i)` once it has applied `i`, so
//!    the index a write returned still reads that write), so no guarantee changes; the read
//!    stays in the site instead of crossing to the leader. If that replica cannot serve it
//!    (unreachable, busy, not hosting the shard, behind the index asked for), the read is sent
//!    on the usual way; an answer any replica would give (`NotFound`, ...) is the answer.
//!    `Consistent` reads and writes always go to the leader. Without a `site`, or for a shard
//!    with no usable replica in it, nothing changes.
//! 4. **Correct.** A shard that does not serve the namespace at that epoch says `WrongShard`:
//!    the router asks the manager again and, if the route changed, sends the request once more
//!    (nothing was done the first time, so this is safe even for writes).
//!
//! Manager requests (`Request::Manager`) are relayed to the manager leader, except heartbeats
//! (`NotAuthorized`) and watches (`InvalidArgument`). The router holds a node certificate, so it
//! refuses the manager's own write operations (`AdoptNamespace`, `DropNamespace`) from its
//! clients.
//!
//! # Modules
//!
//! - [`config`]: the TOML configuration.
//! - [`routes`], [`cache`] and [`locality`]: the pure cores (route table; consistency rule and
//!   bounded manifest cache; which local replica a read tries and what its failure means),
//!   tested without a network.
//! - `router`, `upstream`, `server`, `watch`: the driver (request logic, clients of the
//!   manager and the shards, the QUIC listener, the watch task).
//! - [`metrics`]: what `/metrics` exports.
//!
//! [`run`] wires them together; the `cairn router` command only parses the config and calls it.

pub mod cache;
pub mod config;
pub mod locality;
pub mod metrics;
mod router;
pub mod routes;
mod server;
mod upstream;
mod watch;

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use cairn_wire::endpoint::{self, EndpointLimits};
use cairn_wire::frame;
use cairn_wire::tls::Identity;
use tracing::info;

pub use config::RouterConfig;

use crate::cache::{CacheLimits, ManifestCache};
use crate::router::Router;
use crate::server::Server;
use crate::upstream::Upstream;

/// How long a connection may be silent before it is considered dead (keep-alives flow six
/// times as often), as for shard nodes.
pub const IDLE_TIMEOUT_MS: u64 = 3_000;

/// How long the router waits, once told to stop, for its connections to close politely.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Why a router could not start.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The TLS files are unusable.
    #[error("tls: {0}")]
    Tls(#[from] cairn_wire::tls::TlsError),
    /// The QUIC endpoint could not be set up.
    #[error("endpoint: {0}")]
    Endpoint(#[from] endpoint::EndpointError),
    /// The router's clients of the manager could not be set up.
    #[error("client: {0}")]
    Client(#[from] cairn_client::Error),
    /// Something else prevented the start.
    #[error("{0}")]
    Start(String),
}

/// Runs a router until `shutdown` resolves.
pub async fn run(
    config: RouterConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RouterError> {
    config.validate()?;
    metrics::install(config.metrics_listen).map_err(RouterError::Start)?;
    metrics::info(config.site.as_deref());
    let identity = Identity::load(&config.tls.ca, &config.tls.cert, &config.tls.key)?;
    let managers = upstream::resolve_managers(&config.managers)
        .await
        .map_err(RouterError::Start)?;
    let limits = &config.limits;
    let entries_max = usize::try_from(limits.manifest_cache_entries_max)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| RouterError::Start("manifest_cache_entries_max is out of range".into()))?;
    let manifests = ManifestCache::new(CacheLimits {
        entries_max,
        bytes_max: limits.manifest_cache_bytes_max,
    });
    metrics::routes(0, None);
    let upstream = Upstream::new(&config, identity.clone(), managers)?;
    let router = Arc::new(Router::new(
        upstream,
        manifests,
        Duration::from_millis(config.request_timeout_ms),
    ));
    let endpoint_limits = EndpointLimits {
        stream_receive_window_bytes: limits.frame_size_max_bytes.saturating_add(64 * 1024),
        idle_timeout_ms: IDLE_TIMEOUT_MS,
        keep_alive_interval_ms: IDLE_TIMEOUT_MS / 6,
        // Clients send requests on bidirectional streams; nothing here reads any other kind.
        max_concurrent_uni_streams: 0,
        ..EndpointLimits::default()
    };
    let quic = endpoint::server(config.listen, &identity, &endpoint_limits)?;
    let server = Arc::new(Server::new(Arc::clone(&router), limits));
    let serving = tokio::spawn(server::serve(quic.clone(), server));
    let watching = tokio::spawn(watch::follow(Arc::clone(&router)));
    info!(
        listen = %config.listen,
        metrics = %config.metrics_listen,
        managers = ?config.managers,
        site = config.site.as_deref().unwrap_or("-"),
        "router serving"
    );

    shutdown.await;
    info!("shutting down");
    watching.abort();
    quic.close(frame::close::SHUTTING_DOWN.into(), b"shutting down");
    let _ = serving.await;
    router.upstream().close().await;
    let _ = tokio::time::timeout(CLOSE_WAIT, quic.wait_idle()).await;
    Ok(())
}
