//! The manager driver: leadership, the catalog API, the watch streams and the reconciler.
//!
//! Only the leader of the catalog group acts. It loads the catalog from the group, answers
//! requests from memory (after checking with a linearizable read that its copy is current), and
//! writes every change through the group as a version-asserted sequence (see
//! [`crate::catalog`]).
//!
//! The **reconciler** (level-triggered, like a Kubernetes controller) drives what the catalog
//! says should exist: shards in state creating get their replicas created on their hosts
//! (`CreateReplica`, idempotent), then are marked active once they have a leader; namespaces in
//! state creating are adopted by their shard at their epoch, then marked active; namespaces in
//! state deleting are dropped from their shard, then removed; a shard whose replicas do not run
//! the replication policy the catalog derives for it (commit rule and leader policy, in node
//! terms: see [`Catalog::group_policy`]) is sent it (`SetGroupPolicy`, through the shard's log),
//! and namespaces are adopted only by shards that run it. A replica whose host has been down
//! for `replace_after_ms` is replaced: the catalog records the replacement (placed by the
//! shard's placement policy, see [`Catalog::place_replacement`]), the new replica joins empty
//! (`JoinReplica`), the leader adds it as a learner, which catches up by snapshot, then promotes
//! it and removes the old one in one joint change (`ChangeReplicas`); only then does the
//! catalog swap them, and the removed replica is dropped when its host returns
//! (`DropReplica`). Every step is idempotent and the
//! catalog records the decision *before* any host is told, so a new leader resumes exactly
//! where the old one stopped: no duplicate shard, no orphan replica, no namespace twice.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_client::{Client, ClientConfig};
use cairn_wire::api::{
    ApiError, Consistency, GroupPolicy, KeyRange, LeaderHint, MembershipChange, Namespace, ReadOp,
    ReadResult, ReplicaAddr, Request, Response, ShardId, WriteOp,
};
use cairn_wire::catalog::{
    CommitPolicy, Heartbeat, HostState, LeaderPreference, ManagerRequest, ManagerResponse,
    NamespaceState, PlacementPolicy, Policies, Replacement, RoutingChange, ShardState,
    validate_site,
};
use cairn_wire::frame;
use cairn_wire::tls::{Identity, PeerRole};
use raft_core::{LeaderPolicy, NodeId};
use shard_node::server::{ManagerApi, Service};
use tokio::sync::{Mutex, Notify, broadcast, watch};
use tracing::{debug, info, warn};

use crate::catalog::{
    CATALOG_NAMESPACE, CATALOG_SHARD, Catalog, Change, HostRecord, NamespaceRecord,
};
use crate::config::CatalogConfig;
use crate::metrics as m;

/// How often leadership of the catalog group is checked.
const LEADERSHIP_POLL: Duration = Duration::from_millis(100);
/// Routing changes buffered per watcher; a watcher further behind is disconnected (it
/// reconnects and starts over from a full table).
const WATCH_BUFFER: usize = 4096;
/// Catalog entries read per page when loading.
const LOAD_PAGE: u32 = 10_000;
/// How many times a change is recomputed after a concurrent change beat it.
const CHANGE_ATTEMPTS: usize = 5;
/// The most shard operations the reconciler runs at once.
const PARALLEL_MAX: usize = 64;
/// The most replica replacements in progress at once (each copies a shard to a new host).
const REPLACING_MAX: usize = 8;
/// How long the reconciler waits for a new shard to elect a leader in one pass.
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// What only the leader holds.
#[derive(Default)]
struct Leading {
    /// The catalog as of the last load or write; `None` when it must be (re)loaded.
    catalog: Option<Catalog>,
}

/// The manager of one manager node.
pub struct Manager {
    me: NodeId,
    service: Arc<Service>,
    config: CatalogConfig,
    identity: Identity,
    state: Mutex<Leading>,
    /// Whether this node leads, and a counter that changes on every gain of leadership.
    leading: watch::Sender<Option<u64>>,
    /// The catalog version after every write this leader made.
    version: watch::Sender<u64>,
    /// Routing changes, for watchers.
    changes: broadcast::Sender<RoutingChange>,
    /// When each host was last heard (leader's memory only).
    heard: SyncMutex<BTreeMap<NodeId, Instant>>,
    /// When this node last became leader: a host is given a full grace period from then.
    leading_since: SyncMutex<Instant>,
    /// When this leader first saw each down host down (leader's memory only): its replicas
    /// are replaced once that is `replace_after_ms` ago.
    down_since: SyncMutex<BTreeMap<NodeId, Instant>>,
    /// Replicas that hosts report and the catalog no longer has (their group removed them):
    /// the reconciler tells the hosts to drop them.
    strays: SyncMutex<BTreeSet<(NodeId, ShardId)>>,
    /// Clients of each shard's replicas, for adopt and drop.
    shard_clients: SyncMutex<BTreeMap<ShardId, Client>>,
    /// A client for single requests to hosts (create replica, who leads).
    hosts: Client,
    wake: Notify,
    leader_hint: SyncMutex<Option<LeaderHint>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn catalog_namespace() -> Namespace {
    Namespace::new(CATALOG_NAMESPACE).expect("a valid namespace name")
}

impl Manager {
    /// A manager answering through `service` (the node that runs the catalog group).
    pub fn new(
        service: Arc<Service>,
        config: CatalogConfig,
        identity: Identity,
    ) -> Result<Arc<Self>, cairn_client::Error> {
        // The host client never uses its node list: every request names its host.
        let placeholder: SocketAddr = "127.0.0.1:1".parse().expect("a valid address");
        let mut client_config = ClientConfig::new(vec![placeholder], identity.clone());
        client_config.request_timeout_ms = 2_000;
        let hosts = Client::new(client_config)?;
        Ok(Arc::new(Self {
            me: service.me,
            service,
            config,
            identity,
            state: Mutex::new(Leading::default()),
            leading: watch::channel(None).0,
            version: watch::channel(0).0,
            changes: broadcast::channel(WATCH_BUFFER).0,
            heard: SyncMutex::new(BTreeMap::new()),
            leading_since: SyncMutex::new(Instant::now()),
            down_since: SyncMutex::new(BTreeMap::new()),
            strays: SyncMutex::new(BTreeSet::new()),
            shard_clients: SyncMutex::new(BTreeMap::new()),
            hosts,
            wake: Notify::new(),
            leader_hint: SyncMutex::new(None),
        }))
    }

    /// Follows leadership and runs the reconciler while leading. Never returns.
    pub async fn run(self: Arc<Self>) {
        let reconciler = self.clone();
        tokio::spawn(async move { reconciler.reconcile_loop().await });
        let mut gains = 0u64;
        loop {
            let leads = self.check_leadership().await;
            let was = self.leading.borrow().is_some();
            if leads && !was {
                gains += 1;
                info!(node = self.me.0, "leading the catalog");
                *self.leading_since.lock().expect("leading_since lock") = Instant::now();
                self.state.lock().await.catalog = None;
                self.leading.send_replace(Some(gains));
                m::is_leader(true);
                self.wake.notify_one();
            } else if !leads && was {
                info!(node = self.me.0, "no longer leading the catalog");
                self.leading.send_replace(None);
                self.state.lock().await.catalog = None;
                self.heard.lock().expect("heard lock").clear();
                self.down_since.lock().expect("down_since lock").clear();
                self.strays.lock().expect("strays lock").clear();
                m::is_leader(false);
                m::clear_catalog();
            }
            tokio::time::sleep(LEADERSHIP_POLL).await;
        }
    }

    async fn check_leadership(&self) -> bool {
        let response = self
            .service
            .handle(
                Request::WhoLeader {
                    shard: CATALOG_SHARD,
                },
                PeerRole::Node,
            )
            .await;
        match response {
            Response::Leader(hint) => {
                let leads = hint.as_ref().is_some_and(|h| h.node == self.me);
                *self.leader_hint.lock().expect("hint lock") = hint;
                leads
            }
            _ => false,
        }
    }

    fn not_leader(&self) -> ApiError {
        let hint = self.leader_hint.lock().expect("hint lock").clone();
        match hint {
            Some(h) if h.node != self.me => ApiError::NotLeader { leader: Some(h) },
            _ => ApiError::NotLeader { leader: None },
        }
    }

    fn leads(&self) -> bool {
        self.leading.borrow().is_some()
    }

    /// Reads the whole catalog from the group (linearizably).
    async fn load(&self) -> Result<Catalog, ApiError> {
        let mut entries = Vec::new();
        let mut start = std::ops::Bound::Unbounded;
        loop {
            let response = self
                .service
                .handle(
                    Request::Read {
                        shard: CATALOG_SHARD,
                        namespace: catalog_namespace(),
                        epoch: None,
                        consistency: Consistency::Consistent,
                        op: ReadOp::RangeEntries(KeyRange {
                            start: start.clone(),
                            end: std::ops::Bound::Unbounded,
                            max: Some(LOAD_PAGE),
                        }),
                    },
                    PeerRole::Node,
                )
                .await;
            let page = match response {
                Response::Read {
                    result: ReadResult::Entries(page),
                    ..
                } => page,
                Response::Error(ApiError::NotLeader { .. }) => return Err(self.not_leader()),
                Response::Error(e) => return Err(e),
                other => {
                    return Err(ApiError::Internal(format!(
                        "loading the catalog: unexpected answer {other:?}"
                    )));
                }
            };
            let full = page.len() == LOAD_PAGE as usize;
            start = match page.last() {
                Some((key, _)) => std::ops::Bound::Excluded(key.clone()),
                None => start,
            };
            entries.extend(page);
            if !full {
                break;
            }
        }
        let catalog = Catalog::load(&entries).map_err(|e| ApiError::Internal(e.to_string()))?;
        for violation in catalog.violations() {
            warn!("catalog invariant violated: {violation}");
        }
        Ok(catalog)
    }

    /// The stored routing version, read linearizably.
    async fn stored_version(&self) -> Result<u64, ApiError> {
        let response = self
            .service
            .handle(
                Request::Read {
                    shard: CATALOG_SHARD,
                    namespace: catalog_namespace(),
                    epoch: None,
                    consistency: Consistency::Consistent,
                    op: ReadOp::MultiGetOption {
                        keys: vec![Catalog::version_key()],
                    },
                },
                PeerRole::Node,
            )
            .await;
        match response {
            Response::Read {
                result: ReadResult::OptionalValues(values),
                ..
            } => match values.first() {
                Some(Some(bytes)) => {
                    Catalog::decode_version(bytes).map_err(|e| ApiError::Internal(e.to_string()))
                }
                _ => Ok(0),
            },
            Response::Error(ApiError::NotLeader { .. }) => Err(self.not_leader()),
            Response::Error(e) => Err(e),
            other => Err(ApiError::Internal(format!(
                "reading the catalog version: unexpected answer {other:?}"
            ))),
        }
    }

    /// Makes sure `state` holds the current catalog (loading it when needed; with `verify`,
    /// checking a held copy against the stored version first).
    async fn current<'a>(
        &self,
        state: &'a mut Leading,
        verify: bool,
    ) -> Result<&'a mut Catalog, ApiError> {
        if !self.leads() {
            return Err(self.not_leader());
        }
        let stale = match &state.catalog {
            None => true,
            Some(catalog) if verify => self.stored_version().await? != catalog.version,
            Some(_) => false,
        };
        if stale {
            let catalog = self.load().await?;
            debug!(version = catalog.version, "catalog loaded");
            m::catalog(&catalog);
            self.version.send_replace(catalog.version);
            state.catalog = Some(catalog);
        }
        Ok(state.catalog.as_mut().expect("loaded above"))
    }

    /// Computes a change from the current catalog with `plan` and writes it; recomputes when a
    /// concurrent change got in first. `plan` returns `None` when nothing needs to change.
    async fn change<T>(
        &self,
        verify: bool,
        mut plan: impl FnMut(&Catalog) -> Result<Option<(Vec<Change>, T)>, ApiError>,
    ) -> Result<Option<T>, ApiError> {
        let mut state = self.state.lock().await;
        for _ in 0..CHANGE_ATTEMPTS {
            let catalog = self.current(&mut state, verify).await?;
            let Some((changes, value)) = plan(catalog)? else {
                return Ok(None);
            };
            let steps = catalog.steps(&changes);
            let response = self
                .service
                .handle(
                    Request::Write {
                        shard: CATALOG_SHARD,
                        namespace: catalog_namespace(),
                        epoch: None,
                        op: WriteOp::Sequence { steps },
                    },
                    PeerRole::Node,
                )
                .await;
            match response {
                Response::Write { .. } => {
                    let routing = catalog.apply(changes);
                    m::catalog(catalog);
                    self.version.send_replace(catalog.version);
                    if !routing.shards.is_empty()
                        || !routing.namespaces.is_empty()
                        || !routing.removed.is_empty()
                    {
                        let _ = self.changes.send(routing);
                    }
                    return Ok(Some(value));
                }
                Response::Error(ApiError::AssertionFailed { .. }) => {
                    // Someone else's change (an earlier leader's entry committed late): reload
                    // and decide again.
                    debug!("catalog changed underneath; reloading");
                    state.catalog = None;
                }
                Response::Error(e) => {
                    // Unknown outcome (or not leading): the next use reloads.
                    state.catalog = None;
                    return Err(match e {
                        ApiError::NotLeader { .. } => self.not_leader(),
                        other => other,
                    });
                }
                other => {
                    state.catalog = None;
                    return Err(ApiError::Internal(format!(
                        "catalog write: unexpected answer {other:?}"
                    )));
                }
            }
        }
        Err(ApiError::Busy(
            "the catalog kept changing underneath this request; retry".into(),
        ))
    }

    /// Runs `look` on the current, verified catalog.
    async fn read<T>(&self, look: impl FnOnce(&Catalog) -> T) -> Result<T, ApiError> {
        let mut state = self.state.lock().await;
        let catalog = self.current(&mut state, true).await?;
        Ok(look(catalog))
    }

    /// Waits until `done` holds for the catalog (checked after each write of this leader), or
    /// the wait limit passes.
    async fn wait_for(
        &self,
        what: &str,
        mut done: impl FnMut(&Catalog) -> Result<bool, ApiError>,
    ) -> Result<(), ApiError> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.config.request_wait_ms);
        let mut versions = self.version.subscribe();
        loop {
            {
                let mut state = self.state.lock().await;
                let catalog = self.current(&mut state, false).await?;
                if done(catalog)? {
                    return Ok(());
                }
            }
            match tokio::time::timeout_at(deadline, versions.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ApiError::Internal("the manager is stopping".into())),
                Err(_) => {
                    return Err(ApiError::Unavailable(format!(
                        "{what} did not finish within {} ms; it goes on in the background",
                        self.config.request_wait_ms
                    )));
                }
            }
            if !self.leads() {
                return Err(self.not_leader());
            }
        }
    }

    async fn heartbeat(&self, beat: Heartbeat) -> Result<ManagerResponse, ApiError> {
        validate_site(&beat.site).map_err(ApiError::InvalidArgument)?;
        if beat.id == NodeId::NONE {
            return Err(ApiError::InvalidArgument("host id 0 is reserved".into()));
        }
        beat.addr
            .parse::<SocketAddr>()
            .map_err(|e| ApiError::InvalidArgument(format!("host address {:?}: {e}", beat.addr)))?;
        if !self.leads() {
            return Err(self.not_leader());
        }
        self.heard
            .lock()
            .expect("heard lock")
            .insert(beat.id, Instant::now());
        let wanted = HostRecord {
            id: beat.id,
            site: beat.site,
            addr: beat.addr,
            capacity_replicas: beat.capacity_replicas,
            state: HostState::Up,
        };
        let mut strays = Vec::new();
        let changed = self
            .change(false, |catalog| {
                strays = catalog.strays(beat.id, &beat.replicas);
                Ok((catalog.hosts.get(&wanted.id) != Some(&wanted))
                    .then(|| (vec![Change::Host(wanted.clone())], ())))
            })
            .await?;
        if !strays.is_empty() {
            self.strays
                .lock()
                .expect("strays lock")
                .extend(strays.into_iter().map(|shard| (beat.id, shard)));
            self.wake.notify_one();
        }
        if changed.is_some() {
            info!(
                host = wanted.id.0,
                site = wanted.site,
                addr = wanted.addr,
                "host up"
            );
            // New capacity: work that waited for hosts may proceed.
            self.wake.notify_one();
        }
        Ok(ManagerResponse::Done)
    }

    async fn create_namespace(
        &self,
        name: Namespace,
        home_site: Option<String>,
        placement: Option<PlacementPolicy>,
    ) -> Result<ManagerResponse, ApiError> {
        if let Some(site) = &home_site {
            validate_site(site).map_err(ApiError::InvalidArgument)?;
        }
        if let Some(placement) = &placement {
            placement
                .validate()
                .map_err(|e| ApiError::InvalidArgument(format!("placement: {e}")))?;
        }
        if name.as_str() == CATALOG_NAMESPACE {
            // Not a technical conflict (the catalog lives on the managers, not on shards), but
            // a confusing name to hand out.
            return Err(ApiError::InvalidArgument(format!(
                "namespace name {CATALOG_NAMESPACE:?} is reserved"
            )));
        }
        let created = self
            .change(true, |catalog| match catalog.namespaces.get(&name) {
                Some(existing) if existing.state == NamespaceState::Creating => Ok(None),
                Some(_) => Err(ApiError::NamespaceExists(name.clone())),
                None => {
                    let changes = catalog.plan_namespace(
                        &name,
                        home_site.clone(),
                        placement.clone(),
                        now_ms(),
                    )?;
                    Ok(Some((changes, ())))
                }
            })
            .await?;
        if created.is_some() {
            info!(namespace = %name, "namespace created in the catalog");
            m::namespace_created();
        }
        self.wake.notify_one();
        let mut info = None;
        self.wait_for(
            &format!("creating namespace {name}"),
            |catalog| match catalog.namespaces.get(&name) {
                Some(ns) if ns.state == NamespaceState::Active => {
                    info = Some(ns.clone());
                    Ok(true)
                }
                Some(ns) if ns.state == NamespaceState::Creating => Ok(false),
                _ => Err(ApiError::Unavailable(format!(
                    "namespace {name} was deleted while it was being created"
                ))),
            },
        )
        .await?;
        Ok(ManagerResponse::Namespace(info.expect("set when done")))
    }

    async fn delete_namespace(&self, name: Namespace) -> Result<ManagerResponse, ApiError> {
        self.change(true, |catalog| match catalog.namespaces.get(&name) {
            None => Err(ApiError::UnknownNamespace(name.clone())),
            Some(ns) if ns.state == NamespaceState::Deleting => Ok(None),
            Some(ns) => {
                let mut ns = ns.clone();
                ns.state = NamespaceState::Deleting;
                Ok(Some((vec![Change::Namespace(ns)], ())))
            }
        })
        .await?;
        info!(namespace = %name, "namespace deleting");
        self.wake.notify_one();
        self.wait_for(&format!("deleting namespace {name}"), |catalog| {
            Ok(!catalog.namespaces.contains_key(&name))
        })
        .await?;
        Ok(ManagerResponse::Done)
    }

    async fn set_policies(&self, policies: Policies) -> Result<ManagerResponse, ApiError> {
        if policies.namespaces_per_shard == 0 {
            return Err(ApiError::InvalidArgument(
                "namespaces_per_shard must be > 0".into(),
            ));
        }
        policies
            .placement
            .validate()
            .map_err(|e| ApiError::InvalidArgument(format!("placement: {e}")))?;
        let changed = self
            .change(true, |c| {
                Ok((c.policies.as_ref() != Some(&policies))
                    .then(|| (vec![Change::Policies(policies.clone())], ())))
            })
            .await?;
        if changed.is_some() {
            info!(?policies, "catalog policies changed");
        }
        Ok(ManagerResponse::Done)
    }

    /// Changes a shard's commit rule and/or leader policy, and answers once its replicas run
    /// the result.
    async fn set_shard_policy(
        &self,
        shard: ShardId,
        commit: Option<CommitPolicy>,
        leader: Option<LeaderPreference>,
    ) -> Result<ManagerResponse, ApiError> {
        let changed = self
            .change(true, |c| {
                let Some(record) = c.shards.get(&shard) else {
                    return Err(ApiError::InvalidArgument(format!("no shard {shard}")));
                };
                let mut record = record.clone();
                if let Some(commit) = commit {
                    record.policy.commit = commit;
                }
                if let Some(leader) = &leader {
                    record.policy.leader = leader.clone();
                }
                c.check_shard_policy(&record, &record.policy)?;
                let changed = c.shards.get(&shard) != Some(&record);
                let policy = record.policy.clone();
                Ok(changed.then(|| (vec![Change::Shard(record)], policy)))
            })
            .await?;
        if let Some(policy) = changed {
            info!(shard = shard.0, %policy, "shard policy changed");
        }
        self.wake.notify_one();
        self.wait_for(&format!("applying the policy of shard {shard}"), |c| {
            Ok(c.shards
                .get(&shard)
                .is_some_and(|s| s.applied.as_ref() == Some(&c.group_policy(s))))
        })
        .await?;
        Ok(ManagerResponse::Done)
    }

    async fn answer(&self, request: ManagerRequest) -> Result<ManagerResponse, ApiError> {
        match request {
            ManagerRequest::Heartbeat(beat) => self.heartbeat(beat).await,
            ManagerRequest::CreateNamespace {
                name,
                home_site,
                placement,
            } => self.create_namespace(name, home_site, placement).await,
            ManagerRequest::Policies => {
                self.read(|c| ManagerResponse::Policies(c.policies())).await
            }
            ManagerRequest::SetPolicies(policies) => self.set_policies(policies).await,
            ManagerRequest::SetShardPolicy {
                shard,
                commit,
                leader,
            } => self.set_shard_policy(shard, commit, leader).await,
            ManagerRequest::DeleteNamespace { name } => self.delete_namespace(name).await,
            ManagerRequest::ListNamespaces => {
                self.read(|c| ManagerResponse::Namespaces(c.namespaces.values().cloned().collect()))
                    .await
            }
            ManagerRequest::ShowNamespace { name } => self
                .read(|c| c.namespaces.get(&name).cloned())
                .await?
                .map(ManagerResponse::Namespace)
                .ok_or(ApiError::UnknownNamespace(name)),
            ManagerRequest::ListShards => {
                self.read(|c| ManagerResponse::Shards(c.shard_infos()))
                    .await
            }
            ManagerRequest::ListHosts => {
                let heard = self.heard.lock().expect("heard lock").clone();
                self.read(|c| {
                    ManagerResponse::Hosts(
                        c.host_infos(|id| heard.get(&id).map(|t| t.elapsed().as_millis() as u64)),
                    )
                })
                .await
            }
            ManagerRequest::Routing => {
                self.read(|c| ManagerResponse::Routing(c.routing_table()))
                    .await
            }
            ManagerRequest::Violations => {
                self.read(|c| ManagerResponse::Violations(c.violations()))
                    .await
            }
            ManagerRequest::Watch => Err(ApiError::InvalidArgument(
                "watch is a stream; it is served separately".into(),
            )),
        }
    }

    /// Streams the routing table and then its changes until leadership ends or the watcher
    /// falls too far behind.
    async fn watch(&self, send: &mut quinn::SendStream) {
        let mut leading = self.leading.subscribe();
        let term = *leading.borrow();
        // Subscribe before reading the table, so that no change falls between the two.
        let mut changes = self.changes.subscribe();
        let table = match self.read(|c| c.routing_table()).await {
            Ok(table) => table,
            Err(e) => {
                let _ = write(send, Response::Error(e)).await;
                let _ = send.finish();
                return;
            }
        };
        let mut version = table.version;
        m::watchers(1.0);
        if write(send, Response::Manager(ManagerResponse::Routing(table))).await {
            loop {
                tokio::select! {
                    change = changes.recv() => match change {
                        Ok(change) if change.version <= version => {}
                        Ok(change) => {
                            version = change.version;
                            if !write(send, Response::Manager(ManagerResponse::Change(change))).await {
                                break;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            warn!(missed = n, "a watcher fell behind; closing its stream");
                            break;
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    changed = leading.changed() => {
                        if changed.is_err() || *leading.borrow() != term {
                            break;
                        }
                    }
                }
            }
        }
        m::watchers(-1.0);
        let _ = send.finish();
    }

    // ---- the reconciler ----

    async fn reconcile_loop(self: Arc<Self>) {
        let interval = Duration::from_millis(self.config.reconcile_interval_ms);
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(interval) => {}
            }
            if !self.leads() {
                continue;
            }
            let started = Instant::now();
            if let Err(e) = self.reconcile_once().await {
                m::reconcile_error();
                debug!("reconcile pass: {e}");
            }
            m::reconcile_pass(started.elapsed());
        }
    }

    async fn reconcile_once(&self) -> Result<(), ApiError> {
        self.ensure_policies().await?;
        self.mark_down_hosts().await?;
        // What to do, from one view of the catalog.
        let (creating_shards, adopt, drop, policies) = self
            .read(|c| {
                let creating: Vec<(ShardId, Vec<ReplicaAddr>)> = c
                    .shards
                    .values()
                    .filter(|s| s.state == ShardState::Creating)
                    .map(|s| (s.id, c.replica_addrs(s)))
                    .collect();
                // Active, and running its policy: only then may it take namespaces.
                let active = |shard: &ShardId| {
                    c.shards.get(shard).is_some_and(|s| {
                        s.state == ShardState::Active
                            && s.applied.as_ref() == Some(&c.group_policy(s))
                    })
                };
                let policies: Vec<(ShardId, GroupPolicy, Vec<SocketAddr>)> = c
                    .shards
                    .values()
                    .filter(|s| s.state == ShardState::Active)
                    .filter_map(|s| {
                        let wanted = c.group_policy(s);
                        (s.applied.as_ref() != Some(&wanted)).then(|| {
                            let addrs = c
                                .replica_addrs(s)
                                .iter()
                                .filter_map(|r| r.addr.parse().ok())
                                .collect();
                            (s.id, wanted, addrs)
                        })
                    })
                    .collect();
                let adopt: Vec<NamespaceRecord> = c
                    .namespaces
                    .values()
                    .filter(|n| n.state == NamespaceState::Creating && active(&n.shard))
                    .cloned()
                    .collect();
                let drop: Vec<NamespaceRecord> = c
                    .namespaces
                    .values()
                    .filter(|n| n.state == NamespaceState::Deleting)
                    .cloned()
                    .collect();
                (creating, adopt, drop, policies)
            })
            .await?;
        for (shard, replicas) in creating_shards {
            self.create_shard(shard, replicas).await?;
        }
        if !policies.is_empty() {
            self.push_policies(policies).await?;
        }
        if !adopt.is_empty() {
            self.adopt_namespaces(adopt).await?;
        }
        if !drop.is_empty() {
            self.drop_namespaces(drop).await?;
        }
        self.plan_replacements().await?;
        self.advance_replacements().await?;
        self.drop_strays().await;
        Ok(())
    }

    /// Picks replacements for replicas whose host has been down for `replace_after_ms`, and
    /// records each in the catalog before anything is done about it (a new leader resumes it).
    async fn plan_replacements(&self) -> Result<(), ApiError> {
        if self.config.replace_after_ms == 0 {
            return Ok(());
        }
        let limit = Duration::from_millis(self.config.replace_after_ms);
        let down: BTreeSet<NodeId> = self
            .read(|c| {
                c.hosts
                    .values()
                    .filter(|h| h.state == HostState::Down)
                    .map(|h| h.id)
                    .collect()
            })
            .await?;
        let dead: BTreeSet<NodeId> = {
            let mut since = self.down_since.lock().expect("down_since lock");
            since.retain(|id, _| down.contains(id));
            for id in &down {
                since.entry(*id).or_insert_with(Instant::now);
            }
            since
                .iter()
                .filter(|(_, seen)| seen.elapsed() >= limit)
                .map(|(id, _)| *id)
                .collect()
        };
        if dead.is_empty() {
            return Ok(());
        }
        // One shard per change: each placement counts the replicas placed before it.
        let mut refused = BTreeSet::new();
        loop {
            let planned = self
                .change(false, |c| {
                    let in_progress = c.shards.values().filter(|s| s.replacing.is_some()).count();
                    if in_progress >= REPLACING_MAX {
                        return Ok(None);
                    }
                    for shard in c.shards.values() {
                        if shard.state != ShardState::Active
                            || shard.replacing.is_some()
                            || refused.contains(&shard.id)
                        {
                            continue;
                        }
                        let Some(old) = shard.replicas.iter().copied().find(|n| dead.contains(n))
                        else {
                            continue;
                        };
                        if shard.policy.leader == LeaderPreference::Forced(old) {
                            // The policy says only `old` may lead: an operator changes it first.
                            refused.insert(shard.id);
                            warn!(
                                shard = shard.id.0,
                                node = old.0,
                                "not replacing the forced leader of a shard: change its leader \
                                 policy to replace it"
                            );
                            continue;
                        }
                        match c.place_replacement(shard, old) {
                            Ok(new) => {
                                let mut record = shard.clone();
                                let replacement = Replacement { old, new };
                                record.replacing = Some(replacement);
                                return Ok(Some((
                                    vec![Change::Shard(record)],
                                    (shard.id, replacement),
                                )));
                            }
                            Err(e) => {
                                refused.insert(shard.id);
                                warn!(shard = shard.id.0, "{e}");
                            }
                        }
                    }
                    Ok(None)
                })
                .await?;
            let Some((shard, replacement)) = planned else {
                return Ok(());
            };
            m::replacement("planned");
            info!(
                shard = shard.0,
                old = replacement.old.0,
                new = replacement.new.0,
                "replacing a replica whose host is down"
            );
        }
    }

    /// Drives every replacement the catalog records one step further (each step is
    /// idempotent); failures are logged and retried on the next pass.
    async fn advance_replacements(&self) -> Result<(), ApiError> {
        let shards: Vec<ShardId> = self
            .read(|c| {
                c.shards
                    .values()
                    .filter(|s| s.replacing.is_some())
                    .map(|s| s.id)
                    .collect()
            })
            .await?;
        m::replacing(shards.len());
        let results =
            futures_util::future::join_all(shards.iter().map(|s| self.advance_replacement(*s)))
                .await;
        for (shard, result) in shards.into_iter().zip(results) {
            if let Err(e) = result {
                debug!(shard = shard.0, "replacement not done yet: {e}");
            }
        }
        Ok(())
    }

    /// One replacement: the new replica joins (empty), every replica learns where it is, the
    /// leader adds it as a learner, then (once it caught up) promotes it and removes the old
    /// one in one joint change; only then does the catalog swap them.
    async fn advance_replacement(&self, shard: ShardId) -> Result<(), ApiError> {
        let Some((replacement, all, voters, new_down)) = self
            .read(|c| {
                let record = c.shards.get(&shard)?;
                let replacement = record.replacing?;
                let mut with_new = record.clone();
                with_new.replicas.push(replacement.new);
                let new_down = c
                    .hosts
                    .get(&replacement.new)
                    .is_none_or(|h| h.state == HostState::Down);
                Some((
                    replacement,
                    c.replica_addrs(&with_new),
                    c.replica_addrs(record),
                    new_down,
                ))
            })
            .await?
        else {
            return Ok(());
        };
        let addr_of = |node: NodeId| -> Result<SocketAddr, ApiError> {
            let replica = all
                .iter()
                .find(|r| r.node == node)
                .ok_or_else(|| ApiError::Internal(format!("node {} is not listed", node.0)))?;
            replica.addr.parse().map_err(|e| {
                ApiError::Internal(format!("host {} address {:?}: {e}", node.0, replica.addr))
            })
        };
        let unavailable = |what: String| {
            move |e: cairn_client::Error| ApiError::Unavailable(format!("{what}: {e}"))
        };
        // Membership changes go to the leader, among the replicas still up.
        let live: Vec<SocketAddr> = voters
            .iter()
            .filter(|r| r.node != replacement.old)
            .filter_map(|r| r.addr.parse().ok())
            .collect();
        let client = self.shard_client(shard, &live)?;
        let change = |change: MembershipChange| {
            let client = client.clone();
            async move {
                match client
                    .request(Request::ChangeReplicas { shard, change })
                    .await
                {
                    Ok(Response::Members(members)) => Ok(members),
                    Ok(other) => Err(ApiError::Internal(format!(
                        "{change} on shard {shard}: unexpected answer {}",
                        other.kind()
                    ))),
                    Err(e) => Err(match e.api() {
                        Some(api) => api.clone(),
                        None => ApiError::Unavailable(format!("{change} on shard {shard}: {e}")),
                    }),
                }
            }
        };
        if new_down {
            return self.abandon_replacement(shard, replacement, change).await;
        }
        // 1. The new replica exists (empty, waiting for the leader).
        self.hosts
            .request_to(
                addr_of(replacement.new)?,
                Request::JoinReplica {
                    shard,
                    replicas: all.clone(),
                },
            )
            .await
            .map_err(unavailable(format!(
                "joining shard {shard} on host {}",
                replacement.new.0
            )))?;
        // 2. Whichever replica leads knows where it is.
        self.tell_replicas(shard, &all, replacement.old).await;
        // 3. Learner, then voter in the old one's place.
        let members = change(MembershipChange::AddLearner(replacement.new)).await?;
        let members = if members.voters.contains(&replacement.new) {
            members
        } else {
            change(MembershipChange::Replace {
                add: replacement.new,
                remove: replacement.old,
            })
            .await?
        };
        if members.joint()
            || !members.voters.contains(&replacement.new)
            || members.voters.contains(&replacement.old)
            || members.learners.contains(&replacement.old)
        {
            return Err(ApiError::Unavailable(format!(
                "shard {shard} is still changing its members: {members:?}"
            )));
        }
        // 4. The catalog swaps them; routers and the policy follow.
        let swapped = self.end_replacement(shard, replacement, true).await?;
        if let Some(replicas) = swapped {
            m::replacement("done");
            info!(
                shard = shard.0,
                old = replacement.old.0,
                new = replacement.new.0,
                "replica replaced"
            );
            self.tell_replicas(shard, &replicas, replacement.old).await;
            self.strays
                .lock()
                .expect("strays lock")
                .insert((replacement.old, shard));
            self.wake.notify_one();
        }
        Ok(())
    }

    /// The joining replica's host went down before it became a voter: the leader removes the
    /// learner and the catalog forgets the replacement, which the next pass places again (the
    /// joining replica is dropped as a stray when its host returns). Once it is a voter there
    /// is nothing to abandon: the replacement finishes, and the new host's own replicas are
    /// replaced in turn if it stays down.
    async fn abandon_replacement<F, Fut>(
        &self,
        shard: ShardId,
        replacement: Replacement,
        change: F,
    ) -> Result<(), ApiError>
    where
        F: Fn(MembershipChange) -> Fut,
        Fut: Future<Output = Result<cairn_wire::api::Members, ApiError>>,
    {
        let members = change(MembershipChange::RemoveLearner(replacement.new)).await;
        match members {
            Err(ApiError::InvalidArgument(_)) => {
                // A voter already: finish the replacement instead.
                let members = change(MembershipChange::Replace {
                    add: replacement.new,
                    remove: replacement.old,
                })
                .await?;
                return Err(ApiError::Unavailable(format!(
                    "the joining replica's host is down but it votes already; finishing: \
                     {members:?}"
                )));
            }
            Err(e) => return Err(e),
            Ok(members) if members.learners.contains(&replacement.new) => {
                return Err(ApiError::Unavailable(format!(
                    "removing learner {} of shard {shard}: {members:?}",
                    replacement.new.0
                )));
            }
            Ok(_) => {}
        }
        let forgot = self.end_replacement(shard, replacement, false).await?;
        if forgot.is_some() {
            m::replacement("abandoned");
            warn!(
                shard = shard.0,
                old = replacement.old.0,
                new = replacement.new.0,
                "replacement abandoned: the joining replica's host is down"
            );
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Ends `replacement` of `shard` in the catalog, swapping the replicas (`swap`) or
    /// forgetting it, unless the catalog moved on meanwhile. Returns the shard's replicas when
    /// it changed them.
    async fn end_replacement(
        &self,
        shard: ShardId,
        replacement: Replacement,
        swap: bool,
    ) -> Result<Option<Vec<ReplicaAddr>>, ApiError> {
        self.change(false, |c| {
            let Some(record) = c.shards.get(&shard) else {
                return Ok(None);
            };
            if record.replacing != Some(replacement) {
                return Ok(None);
            }
            let mut record = record.clone();
            record.replacing = None;
            if swap {
                for node in &mut record.replicas {
                    if *node == replacement.old {
                        *node = replacement.new;
                    }
                }
            }
            let replicas = c.replica_addrs(&record);
            Ok(Some((vec![Change::Shard(record)], replicas)))
        })
        .await
    }

    /// Tells every replica host but `skip` where the shard's replicas are (best effort: the
    /// leader refuses to add a node whose address it does not know, which is retried).
    async fn tell_replicas(&self, shard: ShardId, replicas: &[ReplicaAddr], skip: NodeId) {
        let calls = replicas
            .iter()
            .filter(|r| r.node != skip)
            .filter_map(|r| Some((r.node, r.addr.parse::<SocketAddr>().ok()?)))
            .map(|(node, addr)| async move {
                let request = Request::UpdateReplicas {
                    shard,
                    replicas: replicas.to_vec(),
                };
                if let Err(e) = self.hosts.request_to(addr, request).await {
                    debug!(shard = shard.0, host = node.0, "telling the replicas: {e}");
                }
            });
        futures_util::future::join_all(calls).await;
    }

    /// Tells hosts to drop the replicas their groups removed (the hosts refuse for a replica
    /// that leads or that the manager did not create). Failures are retried when the host
    /// reports the replica again.
    async fn drop_strays(&self) {
        let strays: Vec<(NodeId, ShardId)> =
            std::mem::take(&mut *self.strays.lock().expect("strays lock"))
                .into_iter()
                .collect();
        if strays.is_empty() {
            return;
        }
        let Ok(addrs) = self
            .read(|c| {
                strays
                    .iter()
                    .map(|(host, shard)| {
                        // Still removed as of now: a host chosen again meanwhile (to join the
                        // shard once more) keeps its replica.
                        if c.strays(*host, &[*shard]).is_empty() {
                            return None;
                        }
                        c.hosts
                            .get(host)
                            .and_then(|h| h.addr.parse::<SocketAddr>().ok())
                    })
                    .collect::<Vec<_>>()
            })
            .await
        else {
            return;
        };
        let calls = strays
            .iter()
            .zip(addrs)
            .filter_map(|((host, shard), addr)| {
                let addr = addr?;
                Some(async move {
                    match self
                        .hosts
                        .request_to(addr, Request::DropReplica { shard: *shard })
                        .await
                    {
                        Ok(_) => info!(shard = shard.0, host = host.0, "removed replica dropped"),
                        Err(e) => debug!(
                            shard = shard.0,
                            host = host.0,
                            "dropping a removed replica: {e}"
                        ),
                    }
                })
            });
        futures_util::future::join_all(calls).await;
    }

    /// Seeds the catalog's policies from the configuration when it has none yet (after that,
    /// the catalog's copy is in force: `SetPolicies` changes it).
    async fn ensure_policies(&self) -> Result<(), ApiError> {
        let wanted = self
            .config
            .policies()
            .map_err(|e| ApiError::Internal(format!("the manager's configuration: {e}")))?;
        let changed = self
            .change(false, |c| {
                Ok(c.policies
                    .is_none()
                    .then(|| (vec![Change::Policies(wanted.clone())], ())))
            })
            .await?;
        if changed.is_some() {
            info!(?wanted, "catalog policies seeded from the configuration");
        }
        Ok(())
    }

    /// Sends each shard the group policy it should run, and records the ones it applied.
    async fn push_policies(
        &self,
        shards: Vec<(ShardId, GroupPolicy, Vec<SocketAddr>)>,
    ) -> Result<(), ApiError> {
        let calls = shards.iter().map(|(shard, policy, addrs)| async move {
            if addrs.is_empty() {
                return Err(ApiError::Internal(format!(
                    "shard {shard} has no replica addresses"
                )));
            }
            let client = self.shard_client(*shard, addrs)?;
            client
                .request(Request::SetGroupPolicy {
                    shard: *shard,
                    policy: policy.clone(),
                })
                .await
                .map(|_| ())
                .map_err(|e| match e.api() {
                    Some(api) => api.clone(),
                    None => ApiError::Unavailable(e.to_string()),
                })
        });
        let results = futures_util::future::join_all(calls).await;
        let mut applied = Vec::new();
        let mut lift = Vec::new();
        for ((shard, policy, addrs), result) in shards.into_iter().zip(results) {
            match result {
                Ok(()) => applied.push((shard, policy)),
                // The forced leader is down, so nothing goes through the log: when the new
                // policy no longer forces it, the replicas are told to stop waiting for it.
                Err(ApiError::ForcedLeaderDown { node })
                    if policy.leader != LeaderPolicy::Forced(node) =>
                {
                    lift.push((shard, node, policy.leader, addrs));
                }
                Err(e) => warn!(
                    shard = shard.0,
                    "setting the replication policy failed: {e}"
                ),
            }
        }
        for (shard, node, leader, addrs) in lift {
            warn!(
                shard = shard.0,
                forced = node.0,
                "the forced leader is down: lifting it on the replicas so that the new policy \
                 can go through the log"
            );
            let calls = addrs.iter().map(|addr| {
                let request = Request::OverrideLeaderPolicy {
                    shard,
                    leader: leader.clone(),
                };
                async move {
                    if let Err(e) = self.hosts.request_to(*addr, request).await {
                        debug!(shard = shard.0, %addr, "lifting the forced leader: {e}");
                    }
                }
            });
            futures_util::future::join_all(calls).await;
            // The next pass pushes the policy again, through the leader elected meanwhile.
        }
        if applied.is_empty() {
            return Ok(());
        }
        self.change(false, |c| {
            let changes: Vec<Change> = applied
                .iter()
                .filter_map(|(shard, policy)| {
                    let record = c.shards.get(shard)?;
                    (record.applied.as_ref() != Some(policy)).then(|| {
                        let mut record = record.clone();
                        record.applied = Some(policy.clone());
                        Change::Shard(record)
                    })
                })
                .collect();
            Ok((!changes.is_empty()).then_some((changes, ())))
        })
        .await?;
        for (shard, policy) in applied {
            info!(
                shard = shard.0,
                ?policy,
                "shard runs its replication policy"
            );
        }
        // Namespaces waiting for these shards may be adopted now.
        self.wake.notify_one();
        Ok(())
    }

    async fn mark_down_hosts(&self) -> Result<(), ApiError> {
        let limit = Duration::from_millis(self.config.host_down_after_ms);
        let heard = self.heard.lock().expect("heard lock").clone();
        // A host not heard since this node took over is measured from the takeover.
        let since = *self.leading_since.lock().expect("leading_since lock");
        let silent = |id: &NodeId| heard.get(id).unwrap_or(&since).elapsed() >= limit;
        let downed = self
            .change(false, |c| {
                let changes: Vec<Change> = c
                    .hosts
                    .values()
                    .filter(|h| h.state == HostState::Up && silent(&h.id))
                    .map(|h| {
                        let mut h = h.clone();
                        h.state = HostState::Down;
                        Change::Host(h)
                    })
                    .collect();
                let ids: Vec<u64> = changes
                    .iter()
                    .filter_map(|ch| match ch {
                        Change::Host(h) => Some(h.id.0),
                        _ => None,
                    })
                    .collect();
                Ok((!changes.is_empty()).then_some((changes, ids)))
            })
            .await?;
        if let Some(ids) = downed {
            warn!(hosts = ?ids, "hosts stopped heartbeating: marked down");
        }
        Ok(())
    }

    /// Creates the replicas of a shard in state creating, waits for its leader, marks it active.
    async fn create_shard(
        &self,
        shard: ShardId,
        replicas: Vec<ReplicaAddr>,
    ) -> Result<(), ApiError> {
        let calls = replicas.iter().map(|replica| {
            let request = Request::CreateReplica {
                shard,
                replicas: replicas.clone(),
            };
            async move {
                let addr: SocketAddr = replica.addr.parse().map_err(|e| {
                    ApiError::Internal(format!(
                        "host {} address {:?}: {e}",
                        replica.node.0, replica.addr
                    ))
                })?;
                self.hosts.request_to(addr, request).await.map_err(|e| {
                    ApiError::Unavailable(format!(
                        "creating shard {shard} on host {}: {e}",
                        replica.node.0
                    ))
                })
            }
        });
        for result in futures_util::future::join_all(calls).await {
            result?;
        }
        // Wait for a leader.
        let deadline = Instant::now() + LEADER_WAIT;
        let leader = loop {
            let mut found = None;
            for replica in &replicas {
                let Ok(addr) = replica.addr.parse::<SocketAddr>() else {
                    continue;
                };
                if let Ok(Response::Leader(Some(hint))) = self
                    .hosts
                    .request_to(addr, Request::WhoLeader { shard })
                    .await
                {
                    found = Some(hint);
                    break;
                }
            }
            if let Some(hint) = found {
                break hint;
            }
            if Instant::now() >= deadline {
                return Err(ApiError::Unavailable(format!(
                    "shard {shard} has no leader yet"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let activated = self
            .change(false, |c| match c.shards.get(&shard) {
                Some(s) if s.state == ShardState::Creating => {
                    let mut s = s.clone();
                    s.state = ShardState::Active;
                    Ok(Some((vec![Change::Shard(s)], ())))
                }
                _ => Ok(None),
            })
            .await?;
        if activated.is_some() {
            info!(shard = shard.0, leader = leader.node.0, "shard active");
            m::shard_created();
        }
        Ok(())
    }

    fn shard_client(&self, shard: ShardId, replicas: &[SocketAddr]) -> Result<Client, ApiError> {
        let mut clients = self.shard_clients.lock().expect("clients lock");
        if let Some(client) = clients.get(&shard)
            && client.config().nodes == replicas
        {
            return Ok(client.clone());
        }
        let mut config = ClientConfig::new(replicas.to_vec(), self.identity.clone());
        config.request_timeout_ms = 5_000;
        let client = Client::new(config)
            .map_err(|e| ApiError::Internal(format!("client of shard {shard}: {e}")))?;
        clients.insert(shard, client.clone());
        Ok(client)
    }

    /// Sends an ownership operation (adopt or drop) for each namespace to its shard.
    async fn tell_shards(
        &self,
        namespaces: &[NamespaceRecord],
        op: WriteOp,
    ) -> Result<Vec<Result<(), ApiError>>, ApiError> {
        let replicas = self
            .read(|c| {
                namespaces
                    .iter()
                    .map(|n| {
                        c.shards
                            .get(&n.shard)
                            .map(|s| {
                                c.replica_addrs(s)
                                    .iter()
                                    .filter_map(|r| r.addr.parse::<SocketAddr>().ok())
                                    .collect::<Vec<_>>()
                            })
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
        let mut results = Vec::with_capacity(namespaces.len());
        for (chunk, addrs) in namespaces
            .chunks(PARALLEL_MAX)
            .zip(replicas.chunks(PARALLEL_MAX))
        {
            let calls = chunk.iter().zip(addrs).map(|(ns, addrs)| {
                let op = op.clone();
                async move {
                    if addrs.is_empty() {
                        return Err(ApiError::Internal(format!(
                            "shard {} of namespace {} has no replica addresses",
                            ns.shard, ns.name
                        )));
                    }
                    let client = self.shard_client(ns.shard, addrs)?;
                    client
                        .namespace(ns.shard, ns.name.clone())
                        .with_epoch(ns.epoch)
                        .write(op)
                        .await
                        .map(|_| ())
                        .map_err(|e| match e.api() {
                            Some(api) => api.clone(),
                            None => ApiError::Unavailable(e.to_string()),
                        })
                }
            });
            results.extend(futures_util::future::join_all(calls).await);
        }
        Ok(results)
    }

    async fn adopt_namespaces(&self, namespaces: Vec<NamespaceRecord>) -> Result<(), ApiError> {
        let results = self
            .tell_shards(&namespaces, WriteOp::AdoptNamespace)
            .await?;
        let adopted = succeeded(&namespaces, results, "adopting");
        if adopted.is_empty() {
            return Ok(());
        }
        let activated = self
            .change(false, |c| {
                let changes: Vec<Change> = adopted
                    .iter()
                    .filter_map(|ns| {
                        let current = c.namespaces.get(&ns.name)?;
                        (current.state == NamespaceState::Creating && current.epoch == ns.epoch)
                            .then(|| {
                                let mut n = current.clone();
                                n.state = NamespaceState::Active;
                                Change::Namespace(n)
                            })
                    })
                    .collect();
                let count = changes.len();
                Ok((!changes.is_empty()).then_some((changes, count)))
            })
            .await?;
        if let Some(count) = activated {
            debug!(count, "namespaces active");
        }
        Ok(())
    }

    async fn drop_namespaces(&self, namespaces: Vec<NamespaceRecord>) -> Result<(), ApiError> {
        let results = self
            .tell_shards(&namespaces, WriteOp::DropNamespace)
            .await?;
        let dropped = succeeded(&namespaces, results, "dropping");
        if dropped.is_empty() {
            return Ok(());
        }
        self.change(false, |c| {
            let changes: Vec<Change> = dropped
                .iter()
                .filter(|ns| {
                    c.namespaces.get(&ns.name).is_some_and(|cur| {
                        cur.state == NamespaceState::Deleting && cur.epoch == ns.epoch
                    })
                })
                .map(|ns| Change::RemoveNamespace(ns.name.clone()))
                .collect();
            Ok((!changes.is_empty()).then_some((changes, ())))
        })
        .await?;
        for ns in dropped {
            info!(namespace = %ns.name, shard = ns.shard.0, "namespace deleted");
        }
        Ok(())
    }
}

/// The namespaces whose shard operation succeeded; the failures are logged (the reconciler
/// tries them again on its next pass).
fn succeeded<'a>(
    namespaces: &'a [NamespaceRecord],
    results: Vec<Result<(), ApiError>>,
    doing: &str,
) -> Vec<&'a NamespaceRecord> {
    namespaces
        .iter()
        .zip(results)
        .filter_map(|(ns, r)| match r {
            Ok(()) => Some(ns),
            Err(e) => {
                warn!(namespace = %ns.name, shard = ns.shard.0, "{doing} failed: {e}");
                None
            }
        })
        .collect()
}

/// Writes one response frame on a watch stream; false when the stream is gone.
async fn write(send: &mut quinn::SendStream, response: Response) -> bool {
    match frame::encode(&response, frame::FRAME_MAX_BYTES_DEFAULT) {
        Ok(bytes) => send.write_all(&bytes).await.is_ok(),
        Err(e) => {
            warn!("cannot encode a routing update: {e}");
            false
        }
    }
}

impl ManagerApi for Manager {
    fn serve<'a>(
        &'a self,
        request: ManagerRequest,
        role: PeerRole,
        send: &'a mut quinn::SendStream,
    ) -> Pin<Box<dyn Future<Output = Option<Response>> + Send + 'a>> {
        Box::pin(async move {
            if request.is_admin() && role != PeerRole::Node {
                return Some(Response::Error(ApiError::NotAuthorized(format!(
                    "{} needs a node certificate",
                    request.name()
                ))));
            }
            if matches!(request, ManagerRequest::Watch) {
                self.watch(send).await;
                return None;
            }
            Some(match self.answer(request).await {
                Ok(response) => Response::Manager(response),
                Err(e) => Response::Error(e),
            })
        })
    }
}
