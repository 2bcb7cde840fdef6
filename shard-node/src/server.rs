//! The node's QUIC listener: client requests on bidirectional streams (one request per
//! stream), peer traffic on unidirectional streams.
//!
//! Every connection has passed mutual TLS against the cluster CA before anything here runs.
//! Peer streams are accepted only from certificates with the node role. A frame that breaks a
//! protocol rule (garbage, wrong version, oversized, truncated) closes *that* connection with
//! [`frame::close::FRAME_ERROR`], a logged reason and a metric; everyone else is unaffected.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cairn_wire::api::{
    ApiError, Consistency, Epoch, GroupPolicy, Namespace, ReadOp, ReadResult, ReplicaAddr, Request,
    Response, ShardId,
};
use cairn_wire::catalog::ManagerRequest;
use cairn_wire::frame::{self, FrameError};
use cairn_wire::peer::{PeerFrame, PeerStreamHeader};
use cairn_wire::tls::{self, PeerRole};
use crossbeam_channel::{Sender, TrySendError};
use raft_core::{CommitRule, LeaderPolicy, LogIndex, NodeId};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::host::{Event, ReplicaHandle, ReplicaHandles};
use crate::keys::KeySpace;
use crate::kv::{self, KvLimits};
use crate::metrics as m;
use crate::nsm::{self, Command};
use crate::snapshot;
use crate::storage::Engine;

/// How long an `at_least` read waits for this replica to catch up before it answers
/// [`ApiError::InconsistentRead`] (the client then tries another replica).
pub const AT_LEAST_WAIT: Duration = Duration::from_millis(200);

/// What request handling needs.
pub struct Service {
    /// This node.
    pub me: NodeId,
    /// The host loop's queue.
    pub host: Sender<Event>,
    /// The database, for reads.
    pub engine: Engine,
    /// The replicas this node holds.
    pub replicas: ReplicaHandles,
    /// Key-value limits.
    pub limits: KvLimits,
    /// The largest frame.
    pub frame_max_bytes: u32,
    /// How long a write or consistent read may wait for the shard's majority.
    pub commit_timeout: Duration,
    /// The most connections at once.
    pub connections_max: u32,
    /// Open connections.
    pub connections: AtomicU32,
    /// The certificate name each configured peer node must present on its Raft streams (other
    /// nodes: `node-` and their id).
    pub peer_cert_names: std::collections::BTreeMap<u64, String>,
    /// Who answers [`Request::Manager`] on this node (the manager, when this node is one).
    pub manager: OnceLock<Arc<dyn ManagerApi>>,
}

/// The manager's side of a node's listener: a manager process runs the catalog as a Raft group
/// of an ordinary node and answers [`Request::Manager`] through this.
pub trait ManagerApi: Send + Sync + 'static {
    /// Answers one request from a caller with `role`. A request that streams (a watch) writes
    /// its frames to `send` itself and returns `None`; the others return their answer.
    fn serve<'a>(
        &'a self,
        request: ManagerRequest,
        role: PeerRole,
        send: &'a mut quinn::SendStream,
    ) -> Pin<Box<dyn Future<Output = Option<Response>> + Send + 'a>>;
}

/// Accepts connections until the endpoint is closed.
pub async fn serve(endpoint: quinn::Endpoint, service: Arc<Service>) {
    while let Some(incoming) = endpoint.accept().await {
        if service.connections.load(Ordering::Relaxed) >= service.connections_max {
            m::connection_refused("connection_limit");
            incoming.refuse();
            continue;
        }
        let service = service.clone();
        tokio::spawn(async move {
            service.connections.fetch_add(1, Ordering::Relaxed);
            m::connections_open(1.0);
            connection(incoming, &service).await;
            service.connections.fetch_sub(1, Ordering::Relaxed);
            m::connections_open(-1.0);
        });
    }
}

async fn connection(incoming: quinn::Incoming, service: &Arc<Service>) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            // Wrong CA, no certificate, wrong protocol: the handshake fails before any data.
            warn!(%remote, "connection refused: {e}");
            m::connection_refused("handshake");
            return;
        }
    };
    let Some(role) = tls::peer_role(&conn) else {
        warn!(%remote, "connection refused: certificate has no cairn role");
        m::connection_refused("no_role");
        conn.close(
            frame::close::NOT_AUTHORIZED.into(),
            b"certificate has no cairn role",
        );
        return;
    };
    loop {
        tokio::select! {
            bi = conn.accept_bi() => match bi {
                Ok((send, recv)) => {
                    let service = service.clone();
                    let conn = conn.clone();
                    tokio::spawn(async move { request_stream(&service, &conn, role, send, recv).await });
                }
                Err(_) => break,
            },
            uni = conn.accept_uni() => match uni {
                Ok(recv) => {
                    if role != PeerRole::Node {
                        warn!(%remote, "a client certificate opened a peer stream: closing");
                        m::connection_refused("peer_stream_from_client");
                        conn.close(frame::close::NOT_AUTHORIZED.into(), b"peer streams need a node certificate");
                        break;
                    }
                    let service = service.clone();
                    let conn = conn.clone();
                    tokio::spawn(async move { peer_stream(&service, &conn, recv).await });
                }
                Err(_) => break,
            },
        }
    }
}

/// Closes a connection whose peer broke the framing rules.
fn reject(conn: &quinn::Connection, error: &FrameError) {
    if matches!(error, FrameError::Io(_)) {
        // The connection or stream went away: nothing to reject.
        return;
    }
    let remote = conn.remote_address();
    warn!(%remote, reason = error.reason(), "closing connection: {error}");
    m::frame_rejected(error.reason());
    let reason = error.to_string();
    conn.close(frame::close::FRAME_ERROR.into(), reason.as_bytes());
}

async fn request_stream(
    service: &Service,
    conn: &quinn::Connection,
    role: PeerRole,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let request: Request = match frame::read_frame_sized(&mut recv, service.frame_max_bytes).await {
        Ok(Some((request, size))) => {
            m::transport_bytes_received(size);
            request
        }
        Ok(None) => return,
        Err(e) => return reject(conn, &e),
    };
    let response = match request {
        Request::Manager(request) => match service.manager.get() {
            Some(manager) => {
                let started = Instant::now();
                let op = request.name();
                let Some(response) = manager.serve(request, role, &mut send).await else {
                    // A stream: the manager wrote (and ended) it.
                    return;
                };
                m::request(op, m::outcome(error_of(&response)), started.elapsed());
                response
            }
            None => Response::Error(ApiError::InvalidArgument(
                "this node is not a manager; send catalog requests to a manager or a router".into(),
            )),
        },
        request => service.handle(request, role).await,
    };
    let written = match frame::write_frame(&mut send, &response, service.frame_max_bytes).await {
        Err(FrameError::Oversized { len, max }) => {
            let too_large = Response::Error(ApiError::TooLarge {
                what: "response".into(),
                size: len,
                max: u64::from(max),
            });
            frame::write_frame(&mut send, &too_large, service.frame_max_bytes).await
        }
        other => other,
    };
    if let Err(e) = written {
        debug!("answering a request failed: {e}");
        return;
    }
    let _ = send.finish();
}

async fn peer_stream(service: &Service, conn: &quinn::Connection, mut recv: quinn::RecvStream) {
    let header: PeerStreamHeader = match frame::read_frame(&mut recv, service.frame_max_bytes).await
    {
        Ok(Some(header)) => header,
        Ok(None) => return,
        Err(e) => return reject(conn, &e),
    };
    // A node speaks only for itself: the node id it claims must be the one its certificate was
    // issued for, or any node certificate could forge another node's votes.
    let claimed = match &header {
        PeerStreamHeader::Raft { from } => *from,
        PeerStreamHeader::Snapshot(h) => h.from,
    };
    let presented = tls::peer_name(conn);
    let expected = service
        .peer_cert_names
        .get(&claimed.0)
        .cloned()
        .unwrap_or_else(|| format!("node-{}", claimed.0));
    if presented.as_ref() != Some(&expected) {
        warn!(
            remote = %conn.remote_address(),
            claimed = claimed.0,
            certificate = presented.as_deref().unwrap_or("?"),
            "peer stream refused: the certificate does not belong to the node it claims to be"
        );
        m::connection_refused("peer_identity");
        conn.close(
            frame::close::NOT_AUTHORIZED.into(),
            b"certificate does not match the claimed node id",
        );
        return;
    }
    match header {
        PeerStreamHeader::Raft { from } => loop {
            match frame::read_frame_sized::<_, PeerFrame>(&mut recv, service.frame_max_bytes).await
            {
                Ok(Some((frame, size))) => {
                    m::transport_bytes_received(size);
                    match service.host.try_send(Event::Peer { from, frame }) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => m::peer_message_dropped("host_queue_full"),
                        Err(TrySendError::Disconnected(_)) => return,
                    }
                }
                Ok(None) => return,
                Err(e) => return reject(conn, &e),
            }
        },
        PeerStreamHeader::Snapshot(header) => {
            let shard = header.shard;
            if let Err(e) = snapshot::receive(
                &service.engine,
                service.me,
                header,
                &mut recv,
                &service.host,
                service.frame_max_bytes,
            )
            .await
            {
                warn!(shard = shard.0, "snapshot refused: {e}");
                if let snapshot::ReceiveError::Frame(e) = &e {
                    reject(conn, e);
                }
            }
        }
    }
}

impl Service {
    /// Answers one request from a caller with `role` (in-process callers, such as the manager
    /// writing its catalog, pass [`PeerRole::Node`]).
    pub async fn handle(&self, request: Request, role: PeerRole) -> Response {
        let started = Instant::now();
        let op = request.name();
        let response = match self.dispatch(request, role).await {
            Ok(response) => response,
            Err(e) => Response::Error(e),
        };
        m::request(op, m::outcome(error_of(&response)), started.elapsed());
        response
    }

    async fn dispatch(&self, request: Request, role: PeerRole) -> Result<Response, ApiError> {
        let request_name = request.name();
        let admin = match &request {
            Request::Write { op, .. } => op.is_admin(),
            Request::CreateReplica { .. }
            | Request::JoinReplica { .. }
            | Request::UpdateReplicas { .. }
            | Request::ChangeReplicas { .. }
            | Request::DropReplica { .. }
            | Request::OverrideLeaderPolicy { .. }
            | Request::SetGroupPolicy { .. } => true,
            _ => false,
        };
        if admin && role != PeerRole::Node {
            return Err(ApiError::NotAuthorized(format!(
                "{request_name} needs a node certificate (only the manager sends it)"
            )));
        }
        match request {
            Request::Write {
                shard,
                namespace,
                epoch,
                op,
            } => {
                nsm::validate_write(&op, &self.limits)?;
                let replica = self.known(shard)?;
                nsm::validate_epoch(shard, replica.managed, epoch)?;
                if replica.managed && !op.is_admin() {
                    // Refuse a stale route before it takes a log entry (applying checks again).
                    self.check_owner(shard, &namespace, epoch)?;
                }
                let command = Command {
                    namespace,
                    epoch,
                    op,
                };
                let (index, result) = self
                    .ask(
                        |reply| Event::Write {
                            shard,
                            command,
                            reply,
                        },
                        // The host answers NoQuorum itself at the commit timeout; this margin
                        // only guards against a stalled loop.
                        self.commit_timeout + Duration::from_secs(1),
                        ApiError::NoQuorum { proposed: true },
                    )
                    .await??;
                Ok(Response::Write { index, result })
            }
            Request::Read {
                shard,
                namespace,
                epoch,
                consistency,
                op,
            } => {
                nsm::validate_read(&op, &self.limits)?;
                let (result, applied) = self.read(shard, namespace, epoch, consistency, op).await?;
                Ok(Response::Read { result, applied })
            }
            Request::WhoLeader { shard } => {
                let leader = self
                    .ask_host(|reply| Event::WhoLeader { shard, reply })
                    .await??;
                Ok(Response::Leader(leader))
            }
            Request::Status => {
                let status = self.ask_host(|reply| Event::Status { reply }).await?;
                Ok(Response::Status(status))
            }
            Request::CompactLog { shard } => {
                let compacted_to = self
                    .ask_host(|reply| Event::Compact { shard, reply })
                    .await??;
                Ok(Response::Compacted { compacted_to })
            }
            Request::RoutedRead { .. } | Request::RoutedWrite { .. } => {
                Err(ApiError::InvalidArgument(
                    "a shard node serves requests addressed to a shard; send namespace-addressed \
                     requests to a router"
                        .into(),
                ))
            }
            Request::CreateReplica { shard, replicas } => {
                self.create_replica(shard, replicas, false).await
            }
            Request::JoinReplica { shard, replicas } => {
                self.create_replica(shard, replicas, true).await
            }
            Request::UpdateReplicas { shard, replicas } => {
                self.ask_host(|reply| Event::UpdateReplicas {
                    shard,
                    replicas,
                    reply,
                })
                .await??;
                Ok(Response::Done)
            }
            Request::ChangeReplicas { shard, change } => {
                self.known(shard)?;
                self.ask(
                    |reply| Event::ChangeMembers {
                        shard,
                        change,
                        reply,
                    },
                    self.commit_timeout + Duration::from_secs(1),
                    ApiError::NoQuorum { proposed: true },
                )
                .await??;
                let members = self
                    .ask_host(|reply| Event::Members { shard, reply })
                    .await??;
                Ok(Response::Members(members))
            }
            Request::OverrideLeaderPolicy { shard, leader } => {
                self.ask_host(|reply| Event::OverrideLeader {
                    shard,
                    leader,
                    reply,
                })
                .await??;
                Ok(Response::Done)
            }
            Request::DropReplica { shard } => {
                self.ask_host(|reply| Event::DropReplica { shard, reply })
                    .await??;
                Ok(Response::Done)
            }
            Request::SetGroupPolicy { shard, policy } => {
                validate_group_policy(&policy)?;
                self.known(shard)?;
                let (index, result) = self
                    .ask(
                        |reply| Event::SetPolicy {
                            shard,
                            policy,
                            reply,
                        },
                        self.commit_timeout + Duration::from_secs(1),
                        ApiError::NoQuorum { proposed: true },
                    )
                    .await??;
                Ok(Response::Write { index, result })
            }
            Request::Manager(_) => Err(ApiError::InvalidArgument(format!(
                "{request_name} is served by managers"
            ))),
        }
    }

    fn known(&self, shard: ShardId) -> Result<ReplicaHandle, ApiError> {
        self.replicas
            .read()
            .expect("replica handles lock poisoned")
            .get(&shard)
            .cloned()
            .ok_or(ApiError::UnknownShard(shard))
    }

    /// Fails with [`ApiError::WrongShard`] unless the shard owns `namespace` at `epoch` as far
    /// as its applied state shows.
    fn check_owner(
        &self,
        shard: ShardId,
        namespace: &Namespace,
        epoch: Option<Epoch>,
    ) -> Result<(), ApiError> {
        let view = kv::SnapshotView::new(self.engine.db());
        let applied = self
            .engine
            .applied_in(view.snapshot(), shard)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let space = KeySpace {
            shard,
            generation: applied.generation,
        };
        match nsm::ownership(&view, &space, namespace)? {
            Some(nsm::Ownership::Owned(owned)) if Some(owned) == epoch => Ok(()),
            Some(nsm::Ownership::Owned(owned)) => Err(ApiError::WrongShard {
                shard,
                namespace: namespace.clone(),
                epoch: Some(owned),
            }),
            _ => Err(ApiError::WrongShard {
                shard,
                namespace: namespace.clone(),
                epoch: None,
            }),
        }
    }

    /// Sends an event carrying a reply channel to the host loop and waits for the answer.
    async fn create_replica(
        &self,
        shard: ShardId,
        replicas: Vec<ReplicaAddr>,
        join: bool,
    ) -> Result<Response, ApiError> {
        self.ask_host(|reply| Event::CreateReplica {
            shard,
            replicas,
            join,
            reply,
        })
        .await??;
        Ok(Response::Done)
    }

    /// [`Self::ask`] for what the host loop answers at once (nothing waits for a commit).
    async fn ask_host<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Event,
    ) -> Result<T, ApiError> {
        self.ask(
            make,
            self.commit_timeout,
            ApiError::Busy("host loop did not answer".into()),
        )
        .await
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Event,
        timeout: Duration,
        on_timeout: ApiError,
    ) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        match self.host.try_send(make(tx)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ApiError::Busy("the node's request queue is full".into()));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::Internal("the node is shutting down".into()));
            }
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(ApiError::Internal("the node is shutting down".into())),
            Err(_) => Err(on_timeout),
        }
    }

    async fn read(
        &self,
        shard: ShardId,
        namespace: Namespace,
        epoch: Option<Epoch>,
        consistency: Consistency,
        op: ReadOp,
    ) -> Result<(ReadResult, LogIndex), ApiError> {
        let replica = self.known(shard)?;
        let managed = replica.managed;
        let mut applied = replica.applied;
        let required = match consistency {
            Consistency::Any => LogIndex::ZERO,
            Consistency::AtLeast(index) => {
                if tokio::time::timeout(AT_LEAST_WAIT, applied.wait_for(|a| *a >= index))
                    .await
                    .is_err()
                {
                    return Err(ApiError::InconsistentRead {
                        applied: *applied.borrow(),
                        required: index,
                    });
                }
                index
            }
            Consistency::Consistent => {
                let deadline = Instant::now() + self.commit_timeout;
                let index = self
                    .ask(
                        |reply| Event::ReadIndex { shard, reply },
                        self.commit_timeout + Duration::from_secs(1),
                        ApiError::NoQuorum { proposed: false },
                    )
                    .await??;
                let left = deadline.saturating_duration_since(Instant::now());
                if tokio::time::timeout(left, applied.wait_for(|a| *a >= index))
                    .await
                    .is_err()
                {
                    return Err(ApiError::NoQuorum { proposed: false });
                }
                index
            }
        };
        let engine = self.engine.clone();
        let limits = self.limits.clone();
        tokio::task::spawn_blocking(move || {
            read_at(
                &engine, shard, managed, &namespace, epoch, &op, &limits, required,
            )
        })
        .await
        .map_err(|e| ApiError::Internal(format!("read task: {e}")))?
    }
}

/// Serves a read from one consistent view, after checking that the view has applied `required`.
#[allow(clippy::too_many_arguments)]
fn read_at(
    engine: &Engine,
    shard: ShardId,
    managed: bool,
    namespace: &Namespace,
    epoch: Option<Epoch>,
    op: &ReadOp,
    limits: &KvLimits,
    required: LogIndex,
) -> Result<(ReadResult, LogIndex), ApiError> {
    let view = kv::SnapshotView::new(engine.db());
    let applied = engine
        .applied_in(view.snapshot(), shard)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if applied.index < required {
        return Err(ApiError::InconsistentRead {
            applied: applied.index,
            required,
        });
    }
    let space = KeySpace {
        shard,
        generation: applied.generation,
    };
    let result = nsm::read(&view, &space, managed, namespace, epoch, op, limits)?;
    Ok((result, applied.index))
}

/// The most commit groups (required sites) a group policy may name.
const POLICY_GROUPS_MAX: usize = 16;
/// The most nodes a policy may name in one group or as preferred leaders.
const POLICY_NODES_MAX: usize = 64;

/// Checks the bounds and the shape of a group policy before it takes a log entry.
fn validate_group_policy(policy: &GroupPolicy) -> Result<(), ApiError> {
    let invalid = |what: String| Err(ApiError::InvalidArgument(what));
    if let CommitRule::MajorityAndGroups(groups) = &policy.commit {
        if groups.len() > POLICY_GROUPS_MAX {
            return invalid(format!(
                "at most {POLICY_GROUPS_MAX} commit groups, got {}",
                groups.len()
            ));
        }
        if groups
            .iter()
            .any(|g| g.is_empty() || g.len() > POLICY_NODES_MAX)
        {
            return invalid(format!(
                "every commit group needs 1 to {POLICY_NODES_MAX} nodes"
            ));
        }
        if policy.group_sites.len() != groups.len() {
            return invalid("one site label per commit group".into());
        }
    } else if !policy.group_sites.is_empty() {
        return invalid("site labels without commit groups".into());
    }
    if let LeaderPolicy::Preferred(set) = &policy.leader
        && (set.is_empty() || set.len() > POLICY_NODES_MAX)
    {
        return invalid(format!(
            "a preferred leader set needs 1 to {POLICY_NODES_MAX} nodes"
        ));
    }
    Ok(())
}

fn error_of(response: &Response) -> Option<&ApiError> {
    match response {
        Response::Error(e) => Some(e),
        _ => None,
    }
}
