//! The client: routes each request to the right node, follows leader hints, and retries what is
//! safe within the request deadline.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use cairn_wire::api::{ApiError, LeaderHint, Namespace, ReplicaStatus, Request, Response, ShardId};
use cairn_wire::{endpoint, frame};
use raft_core::LogIndex;
use tokio::time::Instant;

use crate::retry::{self, CallKind, Decision, RetryPlan};
use crate::{ClientConfig, Error, NamespaceClient};

/// The key under which the manager leader is cached (a shard id nodes reserve: no shard has it).
const MANAGER_GROUP: ShardId = ShardId(u64::MAX);
/// An async client of a cairn cluster. Cheap to clone: clones share the QUIC endpoint, the
/// connections (one per node, opened lazily and reopened after a failure) and the leader cache.
///
/// Every call is bounded by [`ClientConfig::request_timeout_ms`], retries included.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    transport: crate::transport::Transport,
    /// The last known leader of each shard. Bounded by the number of shards the client talks
    /// to.
    leaders: Mutex<HashMap<ShardId, SocketAddr>>,
}

impl Client {
    /// Creates the client's QUIC endpoint; connects to nodes only when a request needs them.
    ///
    /// Must be called within a tokio runtime (the endpoint's driver runs on it).
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        config.validate()?;
        let endpoint = endpoint::client(&config.identity, &config.endpoint)
            .map_err(|e| Error::Tls(format!("cannot create the client endpoint: {e}")))?;
        let transport = crate::transport::Transport::new(
            endpoint,
            config.connect_timeout(),
            config.frame_max_bytes,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                transport,
                leaders: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// A handle on one namespace of a shard. Writes and consistent reads go to the shard's
    /// leader; `Any`/`AtLeast` reads to whichever node answers.
    pub fn namespace(&self, shard: ShardId, namespace: Namespace) -> NamespaceClient {
        NamespaceClient::new(self.clone(), shard, namespace, None)
    }

    /// A handle on one namespace of a shard whose every request goes to `addr` only, once,
    /// without retries or leader hints (to read from a chosen follower, or to see exactly what
    /// one node answers).
    pub fn namespace_at(
        &self,
        addr: SocketAddr,
        shard: ShardId,
        namespace: Namespace,
    ) -> NamespaceClient {
        NamespaceClient::new(self.clone(), shard, namespace, Some(addr))
    }

    /// A handle on a namespace served through a router: the client's nodes are routers, and
    /// every request names the namespace only.
    pub fn routed(&self, namespace: Namespace) -> NamespaceClient {
        NamespaceClient::routed(self.clone(), namespace)
    }

    /// The leader of `shard` this client would send a write to now, if it knows one.
    pub fn cached_leader(&self, shard: ShardId) -> Option<SocketAddr> {
        self.inner
            .leaders
            .lock()
            .expect("leader cache lock poisoned")
            .get(&shard)
            .copied()
    }

    /// Who leads `shard`: asks the nodes in turn (the cached leader first) and returns the first
    /// leader one of them names, `None` when the nodes that answered know of none.
    ///
    /// Fails with [`Error::Unavailable`] when no node hosting the shard answered, and with
    /// [`ApiError::UnknownShard`] when every node said it hosts no replica of it.
    pub async fn who_leader(&self, shard: ShardId) -> Result<Option<LeaderHint>, Error> {
        let deadline = self.deadline();
        let request = Request::WhoLeader { shard };
        let frame = self.encode(&request)?;
        let nodes = &self.inner.config.nodes;
        let first = self
            .cached_leader(shard)
            .and_then(|leader| nodes.iter().position(|n| *n == leader))
            .unwrap_or(0);
        let mut answered_none = false;
        let mut unknown_shard = 0;
        let mut last_error = None;
        for addr in nodes.iter().cycle().skip(first).take(nodes.len()) {
            if Instant::now() >= deadline {
                break;
            }
            let outcome = self.inner.transport.exchange(*addr, &frame, deadline).await;
            match retry::single_attempt(CallKind::LooseRead, *addr, outcome) {
                Ok(Response::Leader(Some(hint))) => {
                    self.remember_leader(shard, &hint);
                    return Ok(Some(hint));
                }
                Ok(Response::Leader(None)) => answered_none = true,
                Ok(other) => return Err(unexpected(*addr, "a leader", &other)),
                Err(Error::Api(ApiError::UnknownShard(_))) => unknown_shard += 1,
                Err(e) => {
                    tracing::debug!(%addr, %shard, error = %e, "who_leader: no answer");
                    last_error = Some(e);
                }
            }
        }
        if answered_none {
            Ok(None)
        } else if unknown_shard == nodes.len() {
            Err(Error::Api(ApiError::UnknownShard(shard)))
        } else {
            Err(Error::Unavailable {
                reason: format!("no node hosting shard {shard} answered"),
                last_error: last_error.map_or_else(|| "none".into(), |e| e.to_string()),
            })
        }
    }

    /// The status of every replica `addr` hosts.
    pub async fn status(&self, addr: SocketAddr) -> Result<Vec<ReplicaStatus>, Error> {
        match self.request_to(addr, Request::Status).await? {
            Response::Status(replicas) => Ok(replicas),
            other => Err(unexpected(addr, "a status", &other)),
        }
    }

    /// The status of every configured node, asked concurrently, in the order of
    /// [`ClientConfig::nodes`].
    pub async fn status_all(&self) -> Vec<(SocketAddr, Result<Vec<ReplicaStatus>, Error>)> {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, addr) in self.inner.config.nodes.iter().copied().enumerate() {
            let client = self.clone();
            tasks.spawn(async move { (i, addr, client.status(addr).await) });
        }
        let mut results = Vec::with_capacity(self.inner.config.nodes.len());
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(result) => results.push(result),
                // A status call does not panic; if it did, the panic belongs to the caller.
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        results.sort_by_key(|(i, _, _)| *i);
        results
            .into_iter()
            .map(|(_, addr, result)| (addr, result))
            .collect()
    }

    /// Asks `addr` to compact its log of `shard` up to its applied index now; returns the last
    /// index removed from the log.
    pub async fn compact_log(&self, addr: SocketAddr, shard: ShardId) -> Result<LogIndex, Error> {
        match self.request_to(addr, Request::CompactLog { shard }).await? {
            Response::Compacted { compacted_to } => Ok(compacted_to),
            other => Err(unexpected(addr, "a compaction", &other)),
        }
    }

    /// Sends `request` to `addr` once: no leader hints followed, no retries. An error answer
    /// becomes `Err(Error::Api(..))`, so `Ok` is always a success.
    pub async fn request_to(&self, addr: SocketAddr, request: Request) -> Result<Response, Error> {
        let deadline = self.deadline();
        let kind = CallKind::of(&request);
        let frame = self.encode(&request)?;
        let outcome = self.inner.transport.exchange(addr, &frame, deadline).await;
        retry::single_attempt(kind, addr, outcome)
    }

    /// Sends `request` where it belongs and retries what is safe until the deadline: writes and
    /// consistent reads go to the shard's leader, other reads and queries to any node. An error
    /// answer becomes `Err(Error::Api(..))`, so `Ok` is always a success.
    pub async fn request(&self, request: Request) -> Result<Response, Error> {
        let deadline = self.deadline();
        let kind = CallKind::of(&request);
        let frame = self.encode(&request)?;
        let shard = match &request {
            Request::Read { shard, .. }
            | Request::Write { shard, .. }
            | Request::WhoLeader { shard }
            | Request::CompactLog { shard }
            | Request::SetGroupPolicy { shard, .. }
            | Request::ChangeReplicas { shard, .. } => Some(*shard),
            // Only the manager leader answers: remember it like a shard's leader, so that a
            // dead first manager does not cost every call its whole connect timeout.
            Request::Manager(_) => Some(MANAGER_GROUP),
            Request::Status
            | Request::RoutedRead { .. }
            | Request::RoutedWrite { .. }
            | Request::CreateReplica { .. }
            | Request::JoinReplica { .. }
            | Request::UpdateReplicas { .. }
            | Request::DropReplica { .. }
            | Request::OverrideLeaderPolicy { .. } => None,
        };
        let config = &self.inner.config;
        let mut plan = RetryPlan::new(kind, config.nodes.clone(), config.max_leader_hops);
        let mut addr = plan.first(shard.and_then(|s| self.cached_leader(s)));
        loop {
            let outcome = self.inner.transport.exchange(addr, &frame, deadline).await;
            match plan.decide(addr, outcome) {
                Decision::Done(response) => {
                    if kind.needs_leader()
                        && let Some(shard) = shard
                    {
                        self.set_leader(shard, addr);
                    }
                    return Ok(response);
                }
                Decision::Fail(e) => return Err(e),
                Decision::Follow(leader) => {
                    tracing::debug!(from = %addr, to = %leader, op = request.name(), "following the leader hint");
                    if let Some(shard) = shard {
                        self.set_leader(shard, leader);
                    }
                    addr = leader;
                }
                Decision::Retry { addr: next, after } => {
                    // A cached leader that failed is not the leader to start from next time.
                    if let Some(shard) = shard
                        && self.cached_leader(shard) == Some(addr)
                    {
                        self.forget_leader(shard);
                    }
                    tracing::debug!(from = %addr, to = %next, after_ms = after.as_millis() as u64, op = request.name(), "retrying at the next node");
                    tokio::time::sleep_until(deadline.min(Instant::now() + after)).await;
                    addr = next;
                }
            }
            if Instant::now() >= deadline {
                let e = plan.give_up(config.request_timeout_ms);
                tracing::debug!(op = request.name(), error = %e, "giving up at the deadline");
                return Err(e);
            }
        }
    }

    /// Sends a request through a handle: pinned to a node, or routed.
    pub(crate) async fn send(
        &self,
        pinned: Option<SocketAddr>,
        request: Request,
    ) -> Result<Response, Error> {
        match pinned {
            Some(addr) => self.request_to(addr, request).await,
            None => self.request(request).await,
        }
    }

    /// Closes every connection (politely: the nodes free them at once). Calls made afterwards
    /// fail.
    pub async fn close(&self) {
        self.inner.transport.close().await;
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.inner.config.request_timeout()
    }

    fn encode(&self, request: &Request) -> Result<Vec<u8>, Error> {
        frame::encode(request, self.inner.config.frame_max_bytes).map_err(|e| match e {
            frame::FrameError::Oversized { len, max } => Error::Api(ApiError::TooLarge {
                what: "request".into(),
                size: len,
                max: u64::from(max),
            }),
            other => Error::Protocol(format!("cannot encode the request: {other}")),
        })
    }

    fn forget_leader(&self, shard: ShardId) {
        self.inner
            .leaders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&shard);
    }

    fn remember_leader(&self, shard: ShardId, hint: &LeaderHint) {
        if let Ok(addr) = hint.addr.parse() {
            self.set_leader(shard, addr);
        }
    }

    fn set_leader(&self, shard: ShardId, addr: SocketAddr) {
        self.inner
            .leaders
            .lock()
            .expect("leader cache lock poisoned")
            .insert(shard, addr);
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The error for an answer of the wrong kind.
fn unexpected(addr: SocketAddr, wanted: &str, got: &Response) -> Error {
    Error::Protocol(format!(
        "{addr} answered with {} where {wanted} was expected",
        got.kind()
    ))
}
