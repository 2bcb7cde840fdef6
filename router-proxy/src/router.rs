//! What the router does with one request: resolve the namespace from the route cache (asking
//! the manager on a miss), answer manifest reads from the cache when the consistency allows,
//! forward everything else to the shard with the epoch it routed by (loose reads to a replica
//! in the router's site first, see [`crate::locality`]), and correct its route when the shard
//! says `WrongShard` (whichever replica said it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use cairn_wire::api::{
    ApiError, Consistency, Namespace, ReadOp, ReadResult, Request, Response, WriteOp,
};
use cairn_wire::catalog::{
    ManagerRequest, ManagerResponse, NamespaceInfo, NamespaceState, RoutingChange, RoutingTable,
};
use cairn_wire::manifest::Manifest;
use raft_core::LogIndex;
use tokio::time::{Instant, timeout_at};
use tracing::debug;

use crate::cache::{ManifestCache, ManifestKey};
use crate::metrics::{self as m, LookupReason};
use crate::routes::{Applied, Assignment, Resolved, Route, RouteTable};
use crate::upstream::Upstream;

/// The router's state: the route cache, the manifest cache and its upstream clients.
pub(crate) struct Router {
    routes: RwLock<RouteTable>,
    manifests: Mutex<ManifestCache>,
    upstream: Upstream,
    /// One gate per namespace being looked up, so that concurrent misses of one namespace cost
    /// one manager lookup. Bounded by the requests in flight.
    gates: Mutex<HashMap<Namespace, Arc<tokio::sync::Mutex<()>>>>,
    request_timeout: Duration,
}

impl Router {
    pub(crate) fn new(
        upstream: Upstream,
        manifests: ManifestCache,
        request_timeout: Duration,
    ) -> Self {
        Self {
            routes: RwLock::new(RouteTable::new()),
            manifests: Mutex::new(manifests),
            upstream,
            gates: Mutex::new(HashMap::new()),
            request_timeout,
        }
    }

    pub(crate) fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Answers one request, within the request timeout.
    pub(crate) async fn handle(&self, request: Request) -> Response {
        let deadline = Instant::now() + self.request_timeout;
        let answer = match request {
            Request::RoutedRead {
                namespace,
                consistency,
                op,
            } => self.read(namespace, consistency, op, deadline).await,
            Request::RoutedWrite { namespace, op } => self.write(namespace, op, deadline).await,
            Request::Manager(request) => self.manager(request, deadline).await,
            other => Err(ApiError::InvalidArgument(format!(
                "a router serves namespace-addressed requests (routed reads and writes) and \
                 manager requests; send {} to a node",
                other.name()
            ))),
        };
        answer.unwrap_or_else(Response::Error)
    }

    async fn read(
        &self,
        namespace: Namespace,
        consistency: Consistency,
        op: ReadOp,
        deadline: Instant,
    ) -> Result<Response, ApiError> {
        let route = self.resolve(&namespace, deadline).await?;
        let names = match &op {
            ReadOp::GetManifests { names } => Some(names.clone()),
            _ => None,
        };
        if let Some(names) = &names
            && consistency != Consistency::Consistent
        {
            let epoch = route.assignment.epoch;
            let cached = self
                .lock_manifests()
                .answer(&namespace, epoch, names, consistency);
            if let Some((manifests, applied)) = cached {
                m::manifest_cache_hit();
                return Ok(Response::Read {
                    result: ReadResult::Manifests(manifests),
                    applied,
                });
            }
            m::manifest_cache_miss();
        }
        let request = |a: Assignment| Request::Read {
            shard: a.shard,
            namespace: namespace.clone(),
            epoch: Some(a.epoch),
            consistency,
            op: op.clone(),
        };
        let (used, answer) = timeout_at(deadline, self.forward(&namespace, route, request))
            .await
            .map_err(|_| self.timed_out("the read"))?;
        if let (
            Some(names),
            Ok(Response::Read {
                result: ReadResult::Manifests(manifests),
                applied,
            }),
        ) = (&names, &answer)
        {
            self.observe_manifests(&namespace, used, names, manifests, *applied);
        }
        answer
    }

    async fn write(
        &self,
        namespace: Namespace,
        op: WriteOp,
        deadline: Instant,
    ) -> Result<Response, ApiError> {
        if op.is_admin() {
            // The router holds a node certificate: relaying would grant any client the
            // manager's power over namespaces.
            return Err(ApiError::NotAuthorized(format!(
                "{} is the manager's; a router never relays it",
                op.name()
            )));
        }
        let route = self.resolve(&namespace, deadline).await?;
        let object = match &op {
            WriteOp::PutManifest { manifest, .. } => Some(manifest.name.clone()),
            WriteOp::DeleteManifest { name } => Some(name.clone()),
            _ => None,
        };
        let routed = route.assignment;
        let request = |a: Assignment| Request::Write {
            shard: a.shard,
            namespace: namespace.clone(),
            epoch: Some(a.epoch),
            op: op.clone(),
        };
        let Ok((used, answer)) =
            timeout_at(deadline, self.forward(&namespace, route, request)).await
        else {
            if let Some(name) = &object {
                self.invalidate_manifest(&ManifestKey::new(&namespace, routed.epoch, name));
            }
            return Err(ApiError::Internal(format!(
                "outcome unknown: no answer from the shard within the router's {} ms; the \
                 write may or may not have been applied",
                self.request_timeout.as_millis()
            )));
        };
        if let Some(name) = &object {
            let key = ManifestKey::new(&namespace, used.epoch, name);
            match (&op, &answer) {
                (WriteOp::PutManifest { manifest, .. }, Ok(Response::Write { index, .. })) => {
                    self.insert_manifest(key, manifest.clone(), *index);
                }
                // A delete that went through, a put or delete that failed or whose outcome is
                // unknown: what was cached may be wrong now.
                _ => self.invalidate_manifest(&key),
            }
        }
        answer
    }

    async fn manager(
        &self,
        request: ManagerRequest,
        deadline: Instant,
    ) -> Result<Response, ApiError> {
        match &request {
            ManagerRequest::Heartbeat(_) => {
                return Err(ApiError::NotAuthorized(
                    "heartbeats come from shard nodes, straight to the manager; a router never \
                     relays them"
                        .into(),
                ));
            }
            ManagerRequest::Watch => {
                return Err(ApiError::InvalidArgument(
                    "a router does not relay routing watches; watch the manager directly".into(),
                ));
            }
            _ => {}
        }
        let changes_catalog = matches!(
            request,
            ManagerRequest::CreateNamespace { .. } | ManagerRequest::DeleteNamespace { .. }
        );
        let deleted = match &request {
            ManagerRequest::DeleteNamespace { name } => Some(name.clone()),
            _ => None,
        };
        let answer = match timeout_at(deadline, self.upstream.ask_manager(request)).await {
            Ok(answer) => answer?,
            Err(_) if changes_catalog => {
                return Err(ApiError::Internal(format!(
                    "outcome unknown: no answer from the manager within the router's {} ms; the \
                     change may or may not have been made",
                    self.request_timeout.as_millis()
                )));
            }
            Err(_) => return Err(self.timed_out("the manager request")),
        };
        // What passes through is news too.
        if let ManagerResponse::Namespace(info) = &answer {
            self.learn_namespace(info);
        }
        if let Some(name) = deleted {
            self.forget_route(&name);
        }
        Ok(Response::Manager(answer))
    }

    /// Sends the request `request(assignment)` along `route`. On `WrongShard`, refreshes the
    /// route from the manager and, if it changed, sends once more along the new one. Returns the
    /// assignment of the last attempt and its answer.
    async fn forward(
        &self,
        namespace: &Namespace,
        route: Route,
        request: impl Fn(Assignment) -> Request,
    ) -> (Assignment, Result<Response, ApiError>) {
        let first = self.upstream.send(&route, request(route.assignment)).await;
        let Err(wrong @ ApiError::WrongShard { .. }) = first else {
            return (route.assignment, first);
        };
        let refreshed = self
            .refresh(namespace, LookupReason::WrongShard, Some(route.assignment))
            .await;
        match refreshed {
            Ok(fresh) if fresh.assignment != route.assignment => {
                debug!(
                    %namespace,
                    from = ?route.assignment,
                    to = ?fresh.assignment,
                    "route corrected; retrying"
                );
                let second = self.upstream.send(&fresh, request(fresh.assignment)).await;
                (fresh.assignment, second)
            }
            // The manager agrees with the route: the shard's answer stands.
            Ok(_) => (route.assignment, Err(wrong)),
            Err(gone @ ApiError::UnknownNamespace(_)) => (route.assignment, Err(gone)),
            Err(e) => {
                debug!(%namespace, error = %e, "refreshing the route failed");
                (route.assignment, Err(wrong))
            }
        }
    }

    /// The route of `namespace`: from the cache, else from the manager.
    async fn resolve(&self, namespace: &Namespace, deadline: Instant) -> Result<Route, ApiError> {
        if let Resolved::Route(route) = self.read_routes().resolve(namespace) {
            m::route_cache(true);
            return Ok(route);
        }
        m::route_cache(false);
        let started = std::time::Instant::now();
        let resolved = timeout_at(deadline, self.refresh(namespace, LookupReason::Miss, None))
            .await
            .map_err(|_| self.timed_out("resolving the namespace"));
        m::resolve_duration(started.elapsed());
        resolved?
    }

    /// Finds the route of `namespace` anew, unless it is already different from `stale` (or,
    /// with no `stale`, cached): one lookup at a time per namespace.
    async fn refresh(
        &self,
        namespace: &Namespace,
        reason: LookupReason,
        stale: Option<Assignment>,
    ) -> Result<Route, ApiError> {
        let gate = Gate::enter(self, namespace);
        let _turn = gate.gate.lock().await;
        self.refresh_in_turn(namespace, reason, stale).await
    }

    async fn refresh_in_turn(
        &self,
        namespace: &Namespace,
        reason: LookupReason,
        stale: Option<Assignment>,
    ) -> Result<Route, ApiError> {
        // Whoever held the gate before may have refreshed it already.
        let resolved = self.read_routes().resolve(namespace);
        match resolved {
            Resolved::Route(route) if Some(route.assignment) != stale => return Ok(route),
            Resolved::ShardUnknown(assignment) if Some(assignment) != stale => {}
            _ => self.look_up(namespace, reason).await?,
        }
        if let Resolved::Route(route) = self.read_routes().resolve(namespace) {
            return Ok(route);
        }
        // The namespace's shard is not in the cache (no table yet, or a shard newer than it).
        m::manager_lookup(reason);
        match self.upstream.ask_manager(ManagerRequest::Routing).await? {
            ManagerResponse::Routing(table) => self.merge_routes(table),
            _ => {
                return Err(ApiError::Internal(
                    "the manager answered routing with something other than a routing table".into(),
                ));
            }
        }
        match self.read_routes().resolve(namespace) {
            Resolved::Route(route) => Ok(route),
            Resolved::ShardUnknown(assignment) => Err(ApiError::Unavailable(format!(
                "shard {} of namespace {namespace} is not in the manager's routing table yet",
                assignment.shard
            ))),
            Resolved::Missing => Err(ApiError::UnknownNamespace(namespace.clone())),
        }
    }

    /// Asks the manager where `namespace` is and caches the answer.
    async fn look_up(&self, namespace: &Namespace, reason: LookupReason) -> Result<(), ApiError> {
        m::manager_lookup(reason);
        let request = ManagerRequest::ShowNamespace {
            name: namespace.clone(),
        };
        match self.upstream.ask_manager(request).await {
            Ok(ManagerResponse::Namespace(info)) if info.name == *namespace => {
                if self.learn_namespace(&info) {
                    Ok(())
                } else {
                    Err(ApiError::UnknownNamespace(namespace.clone()))
                }
            }
            Ok(_) => Err(ApiError::Internal(format!(
                "the manager answered show_namespace {namespace} with something other than \
                 that namespace"
            ))),
            Err(ApiError::UnknownNamespace(_)) => {
                self.forget_route(namespace);
                Err(ApiError::UnknownNamespace(namespace.clone()))
            }
            Err(e) => Err(e),
        }
    }

    /// Caches the route of an active namespace, forgets one that is not active; returns whether
    /// it is active.
    fn learn_namespace(&self, info: &NamespaceInfo) -> bool {
        if info.state != NamespaceState::Active {
            self.forget_route(&info.name);
            return false;
        }
        let assignment = Assignment {
            shard: info.shard,
            epoch: info.epoch,
        };
        let mut routes = self.write_routes();
        routes.learn(info.name.clone(), assignment);
        m::routes(routes.namespaces(), routes.version());
        true
    }

    fn forget_route(&self, namespace: &Namespace) {
        let mut routes = self.write_routes();
        routes.forget(namespace);
        m::routes(routes.namespaces(), routes.version());
    }

    fn merge_routes(&self, table: RoutingTable) {
        let mut routes = self.write_routes();
        routes.merge(table);
        m::routes(routes.namespaces(), routes.version());
    }

    /// Takes a watch's full table: everything cached before is replaced, and the clients of
    /// shards no longer in the table are dropped.
    pub(crate) fn replace_routes(&self, table: RoutingTable) {
        let version = table.version;
        let mut routes = self.write_routes();
        routes.replace(table);
        m::routes(routes.namespaces(), routes.version());
        // Lock order: routes, then the shard clients (nothing takes them the other way round).
        self.upstream.retain_shards(|shard| routes.has_shard(shard));
        debug!(
            version,
            namespaces = routes.namespaces(),
            shards = routes.shards(),
            "routing table replaced"
        );
    }

    /// Takes a watch's change.
    pub(crate) fn apply_change(&self, change: RoutingChange) {
        let version = change.version;
        let mut routes = self.write_routes();
        match routes.apply(change) {
            Applied::Applied => debug!(version, "routing change applied"),
            Applied::Stale { version, current } => {
                debug!(
                    version,
                    current, "routing change ignored: not newer than the table"
                );
            }
        }
        m::routes(routes.namespaces(), routes.version());
    }

    fn observe_manifests(
        &self,
        namespace: &Namespace,
        used: Assignment,
        names: &[String],
        manifests: &[Option<Manifest>],
        applied: LogIndex,
    ) {
        let mut cache = self.lock_manifests();
        cache.observe(namespace, used.epoch, names, manifests, applied);
        m::manifest_cache_size(cache.len(), cache.bytes());
    }

    fn insert_manifest(&self, key: ManifestKey, manifest: Manifest, index: LogIndex) {
        let mut cache = self.lock_manifests();
        cache.insert(key, manifest, index);
        m::manifest_cache_size(cache.len(), cache.bytes());
    }

    fn invalidate_manifest(&self, key: &ManifestKey) {
        let mut cache = self.lock_manifests();
        cache.invalidate(key);
        m::manifest_cache_size(cache.len(), cache.bytes());
    }

    fn timed_out(&self, what: &str) -> ApiError {
        ApiError::Unavailable(format!(
            "{what} did not finish within the router's {} ms",
            self.request_timeout.as_millis()
        ))
    }

    // The locks guard plain data whose every update is a single call on a pure core that
    // validates before it mutates: a panic while one is held cannot leave it torn, so a poisoned
    // lock is taken over rather than propagated.

    fn read_routes(&self) -> std::sync::RwLockReadGuard<'_, RouteTable> {
        self.routes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_routes(&self) -> std::sync::RwLockWriteGuard<'_, RouteTable> {
        self.routes.write().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_manifests(&self) -> std::sync::MutexGuard<'_, ManifestCache> {
        self.manifests.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_gates(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Namespace, Arc<tokio::sync::Mutex<()>>>> {
        self.gates.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A request's place at the lookup gate of one namespace. Leaving it (even by being cancelled at
/// the deadline) removes the gate once nobody else holds it, so the map only holds namespaces
/// being looked up.
struct Gate<'a> {
    router: &'a Router,
    namespace: &'a Namespace,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl<'a> Gate<'a> {
    fn enter(router: &'a Router, namespace: &'a Namespace) -> Self {
        let gate = Arc::clone(router.lock_gates().entry(namespace.clone()).or_default());
        Self {
            router,
            namespace,
            gate,
        }
    }
}

impl Drop for Gate<'_> {
    fn drop(&mut self) {
        let mut gates = self.router.lock_gates();
        // Only the map and this request hold it (clones are made under the map's lock): nobody
        // else waits at this gate.
        if Arc::strong_count(&self.gate) == 2 {
            gates.remove(self.namespace);
        }
    }
}
