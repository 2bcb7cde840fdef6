//! The router's own clients: one to the managers, and one per shard whose nodes are that shard's
//! replicas. Each is a [`cairn_client::Client`], so leader hints, retries of what is safe and
//! the request deadline work exactly as for any client. Here their failures become the answers
//! the router gives.
//!
//! Site-aware reads happen here too ([`crate::locality`] decides): an `Any` or `AtLeast` read
//! goes first to a replica of the shard in the router's site, once, through the shard client's
//! single-attempt call; if that replica cannot serve it, the read is sent on the usual way.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_client::{Client, ClientConfig, Error};
use cairn_wire::api::{ApiError, Consistency, ReplicaAddr, Request, Response, ShardId};
use cairn_wire::catalog::{ManagerRequest, ManagerResponse};
use cairn_wire::tls::Identity;
use tracing::debug;

use crate::config::{RouterConfig, split_host_port};
use crate::locality::{self, LOCAL_ATTEMPT_TIMEOUT, LocalFailure, LocalReplicas, Locality};
use crate::metrics as m;
use crate::routes::Route;

/// A shard's client, the replica list it was made for, and those of them in the router's site.
struct ShardClient {
    replicas: Arc<[ReplicaAddr]>,
    client: Client,
    /// Taken only to pick a replica or to record how an attempt went, never across an await.
    local: Mutex<LocalReplicas>,
}

impl ShardClient {
    fn lock_local(&self) -> std::sync::MutexGuard<'_, LocalReplicas> {
        // Every update is one call on the pure core, which cannot leave it torn.
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where a read sent through the client goes first: the cached leader, else the client's
    /// first node (as [`cairn_client::retry::RetryPlan::first`] does).
    fn locality_via_client(&self, shard: ShardId) -> Locality {
        let first = self
            .client
            .cached_leader(shard)
            .or_else(|| self.client.config().nodes.first().copied());
        self.lock_local().locality_of(first)
    }
}

/// The managers' client and the shards' clients.
pub(crate) struct Upstream {
    manager: Client,
    /// One client per shard routed to, made on first use and remade when the shard's replicas
    /// change. Bounded by the shards of the routing table (a new table drops the others).
    shards: Mutex<HashMap<ShardId, Arc<ShardClient>>>,
    settings: Settings,
}

/// What every client of the router shares.
struct Settings {
    identity: Identity,
    request_timeout_ms: u64,
    frame_max_bytes: u32,
    /// The router's site: loose reads go to a replica there first.
    site: Option<String>,
    /// The time a local attempt gets before the read is sent on.
    local_attempt_timeout: Duration,
}

impl Settings {
    fn client_config(&self, nodes: Vec<SocketAddr>) -> ClientConfig {
        let mut config = ClientConfig::new(nodes, self.identity.clone())
            .with_request_timeout_ms(self.request_timeout_ms)
            .with_connect_timeout_ms(self.request_timeout_ms.min(1_000));
        config.frame_max_bytes = self.frame_max_bytes;
        config.endpoint.stream_receive_window_bytes =
            self.frame_max_bytes.saturating_add(64 * 1024);
        config
    }
}

impl Upstream {
    /// The clients' settings come from `config`; `managers` are the resolved manager addresses.
    pub(crate) fn new(
        config: &RouterConfig,
        identity: Identity,
        managers: Vec<SocketAddr>,
    ) -> Result<Self, Error> {
        let settings = Settings {
            identity,
            request_timeout_ms: config.request_timeout_ms,
            frame_max_bytes: config.limits.frame_size_max_bytes,
            site: config.site.clone(),
            local_attempt_timeout: LOCAL_ATTEMPT_TIMEOUT
                .min(Duration::from_millis(config.request_timeout_ms / 2)),
        };
        Ok(Self {
            manager: Client::new(settings.client_config(managers))?,
            shards: Mutex::new(HashMap::new()),
            settings,
        })
    }

    /// The managers' client (the watch runs on it too).
    pub(crate) fn manager(&self) -> &Client {
        &self.manager
    }

    /// Asks the manager leader.
    pub(crate) async fn ask_manager(
        &self,
        request: ManagerRequest,
    ) -> Result<ManagerResponse, ApiError> {
        let name = request.name();
        match self.manager.request(Request::Manager(request)).await {
            Ok(Response::Manager(answer)) => Ok(answer),
            Ok(_) => Err(ApiError::Internal(format!(
                "the manager answered {name} with something other than a manager answer"
            ))),
            Err(e) => Err(api_error(e, "the manager")),
        }
    }

    /// Sends `request` to the shard of `route`: an `Any` or `AtLeast` read to a replica in the
    /// router's site first when the shard has a usable one there, everything else (and a read
    /// that replica could not serve) through the shard's client.
    pub(crate) async fn send(&self, route: &Route, request: Request) -> Result<Response, ApiError> {
        let shard = route.assignment.shard;
        let upstream = self.shard_client(route).await?;
        let who = || format!("shard {shard}");
        let Request::Read {
            consistency, epoch, ..
        } = &request
        else {
            return upstream
                .client
                .request(request)
                .await
                .map_err(|e| api_error(e, &who()));
        };
        let (consistency, routed) = (*consistency, *epoch);
        let local = match consistency {
            Consistency::Any | Consistency::AtLeast(_) => {
                upstream.lock_local().pick(Instant::now())
            }
            // Only the leader serves it; the client finds the leader (local or not).
            Consistency::Consistent => None,
        };
        let Some(addr) = local else {
            m::shard_read(upstream.locality_via_client(shard));
            return upstream
                .client
                .request(request)
                .await
                .map_err(|e| api_error(e, &who()));
        };
        m::shard_read(Locality::Local);
        let attempt = tokio::time::timeout(
            self.settings.local_attempt_timeout,
            upstream.client.request_to(addr, request.clone()),
        )
        .await;
        let (failure, reason) = match attempt {
            Ok(Ok(response)) => {
                upstream.lock_local().answered(addr);
                return Ok(response);
            }
            Ok(Err(e)) => match locality::after_local_failure(&e, routed) {
                LocalFailure::Final => return Err(api_error(e, &who())),
                failure => (failure, e.to_string()),
            },
            Err(_) => (
                LocalFailure::Unwell,
                format!(
                    "no answer within {} ms",
                    self.settings.local_attempt_timeout.as_millis()
                ),
            ),
        };
        if failure == LocalFailure::Unwell {
            upstream.lock_local().failed(addr, Instant::now());
        }
        m::local_read_fallback();
        debug!(%shard, %addr, ?failure, %reason, "local read not served; sending it on");
        upstream
            .client
            .request(request)
            .await
            .map_err(|e| api_error(e, &who()))
    }

    async fn shard_client(&self, route: &Route) -> Result<Arc<ShardClient>, ApiError> {
        let shard = route.assignment.shard;
        if let Some(known) = self.lock_shards().get(&shard)
            && *known.replicas == *route.replicas
        {
            return Ok(Arc::clone(known));
        }
        let resolved = resolve_replicas(&route.replicas).await;
        let nodes: Vec<SocketAddr> = resolved.iter().flatten().copied().collect();
        if nodes.is_empty() {
            return Err(ApiError::Unavailable(format!(
                "shard {shard} has no replica with a usable address ({:?})",
                route.replicas
            )));
        }
        let client = Client::new(self.settings.client_config(nodes)).map_err(|e| {
            ApiError::Internal(format!("cannot make a client of shard {shard}: {e}"))
        })?;
        let local = LocalReplicas::new(self.settings.site.as_deref(), &route.replicas, &resolved);
        let mut shards = self.lock_shards();
        // Another request may have made one meanwhile: keep the first, so they share leaders.
        if let Some(known) = shards.get(&shard)
            && *known.replicas == *route.replicas
        {
            return Ok(Arc::clone(known));
        }
        debug!(
            %shard,
            replicas = route.replicas.len(),
            local = local.len(),
            "new shard client"
        );
        let made = Arc::new(ShardClient {
            replicas: Arc::clone(&route.replicas),
            client,
            local: Mutex::new(local),
        });
        shards.insert(shard, Arc::clone(&made));
        Ok(made)
    }

    /// Drops the clients of shards for which `keep` says no.
    pub(crate) fn retain_shards(&self, keep: impl Fn(ShardId) -> bool) {
        self.lock_shards().retain(|shard, _| keep(*shard));
    }

    /// Closes every connection.
    pub(crate) async fn close(&self) {
        let shards: Vec<Client> = self
            .lock_shards()
            .drain()
            .map(|(_, shard)| shard.client.clone())
            .collect();
        for client in shards {
            client.close().await;
        }
        self.manager.close().await;
    }

    fn lock_shards(&self) -> std::sync::MutexGuard<'_, HashMap<ShardId, Arc<ShardClient>>> {
        // The map is only ever replaced entry by entry; a panic elsewhere cannot leave it torn.
        self.shards.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The answer a client error becomes. `who` names the upstream in messages.
///
/// An outcome the client could not learn stays ambiguous for the router's caller
/// (`Internal`, which promises nothing was done *not*); an upstream that could not be reached
/// is `Unavailable` (nothing was done).
pub(crate) fn api_error(e: Error, who: &str) -> ApiError {
    match e {
        Error::Api(e) => e,
        Error::Ambiguous { reason } => ApiError::Internal(format!(
            "outcome unknown at {who}: {reason}; the write may or may not have been applied"
        )),
        Error::Unavailable { reason, last_error } => {
            ApiError::Unavailable(format!("{who}: {reason} (last error: {last_error})"))
        }
        Error::Protocol(reason) => ApiError::Internal(format!("{who}: {reason}")),
        Error::Tls(reason) | Error::Config(reason) => {
            ApiError::Internal(format!("the router's client of {who}: {reason}"))
        }
    }
}

/// The socket address of each of `replicas`, in order; `None` for names that do not resolve.
async fn resolve_replicas(replicas: &[ReplicaAddr]) -> Vec<Option<SocketAddr>> {
    let mut nodes = Vec::with_capacity(replicas.len());
    for replica in replicas {
        match resolve(&replica.addr).await {
            Ok(addr) => nodes.push(Some(addr)),
            Err(e) => {
                let node = replica.node.0;
                tracing::warn!(node, addr = %replica.addr, "skipping a replica: {e}");
                nodes.push(None);
            }
        }
    }
    nodes
}

/// Resolves every manager address; fails naming the first that does not resolve.
pub(crate) async fn resolve_managers(managers: &[String]) -> Result<Vec<SocketAddr>, String> {
    let mut addrs = Vec::with_capacity(managers.len());
    for manager in managers {
        addrs.push(resolve(manager).await.map_err(|e| format!("manager {e}"))?);
    }
    Ok(addrs)
}

/// `host:port` as a socket address: parsed when it is one, else looked up (first answer).
async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = addr.parse() {
        return Ok(addr);
    }
    split_host_port(addr)?;
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("{addr:?} does not resolve: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr:?} resolves to no address"))
}
