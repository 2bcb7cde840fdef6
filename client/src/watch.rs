//! The routing watch: a long-lived stream from the manager leader that carries the whole routing
//! table, then every change of it (see [`ManagerRequest::Watch`]).
//!
//! [`Client::watch_routing`] treats the client's nodes as the managers: it asks them in turn,
//! follows `NotLeader` hints to the leader (the same retry policy as every call, pure code in
//! [`crate::retry`]), and returns once the leader's first answer arrived. The returned
//! [`RoutingWatch`] then yields one [`ManagerResponse`] per frame until the manager ends the
//! stream (it stopped leading) or the connection dies; the caller reconnects and starts over
//! from a full table.
//!
//! The watch runs on a QUIC connection of its own rather than on the client's pooled ones: a
//! stream that lives for hours should not share its connection's fate (idle closes, reconnects)
//! with short requests, nor they its.

use std::net::SocketAddr;

use cairn_wire::api::{Request, Response};
use cairn_wire::catalog::{ManagerRequest, ManagerResponse};
use cairn_wire::endpoint;
use cairn_wire::frame::{self, FrameError};
use tokio::time::{Instant, timeout_at};

use crate::retry::{CallKind, Decision, Outcome, RetryPlan, Sent};
use crate::{Client, Error};

/// An open routing watch on the manager leader. Read it with [`RoutingWatch::next`]; dropping it
/// closes its connection.
pub struct RoutingWatch {
    manager: SocketAddr,
    /// The leader's first answer, read while connecting, handed out by the first `next`.
    first: Option<ManagerResponse>,
    recv: quinn::RecvStream,
    conn: quinn::Connection,
    /// Keeps the connection's endpoint (its UDP socket and driver) alive as long as the watch.
    _endpoint: quinn::Endpoint,
    frame_max_bytes: u32,
}

impl Client {
    /// Opens a routing watch on the manager leader: the client's nodes are the managers.
    ///
    /// Asks them in turn, follows `NotLeader` hints and backs off like any call, within
    /// [`ClientConfig::request_timeout_ms`](crate::ClientConfig::request_timeout_ms); only
    /// *opening* the watch is bounded, reading it is not. Fails with [`Error::Api`] when the
    /// leader refuses the watch, [`Error::Unavailable`] when no manager answered in time.
    pub async fn watch_routing(&self) -> Result<RoutingWatch, Error> {
        let config = self.config();
        let deadline = Instant::now() + config.request_timeout();
        let endpoint = endpoint::client(&config.identity, &config.endpoint)
            .map_err(|e| Error::Tls(format!("cannot create the watch endpoint: {e}")))?;
        let request = Request::Manager(ManagerRequest::Watch);
        let request_frame = frame::encode(&request, config.frame_max_bytes)
            .map_err(|e| Error::Protocol(format!("cannot encode the watch request: {e}")))?;
        let mut plan = RetryPlan::new(
            CallKind::of(&request),
            config.nodes.clone(),
            config.max_leader_hops,
        );
        let mut addr = plan.first(None);
        loop {
            let attempt = Attempt {
                endpoint: &endpoint,
                addr,
                request_frame: &request_frame,
                deadline,
                connect_deadline: deadline.min(Instant::now() + config.connect_timeout()),
                frame_max_bytes: config.frame_max_bytes,
            };
            let outcome = match attempt.open().await {
                Ok((conn, recv, first)) => {
                    tracing::debug!(manager = %addr, "routing watch open");
                    return Ok(RoutingWatch {
                        manager: addr,
                        first: Some(first),
                        recv,
                        conn,
                        _endpoint: endpoint,
                        frame_max_bytes: config.frame_max_bytes,
                    });
                }
                Err(outcome) => outcome,
            };
            match plan.decide(addr, outcome) {
                Decision::Done(other) => {
                    return Err(Error::Protocol(format!(
                        "{addr} answered the watch with {} where a routing table was expected",
                        other.kind()
                    )));
                }
                Decision::Fail(e) => return Err(e),
                Decision::Follow(leader) => {
                    tracing::debug!(from = %addr, to = %leader, "watch: following the leader hint");
                    addr = leader;
                }
                Decision::Retry { addr: next, after } => {
                    tokio::time::sleep_until(deadline.min(Instant::now() + after)).await;
                    addr = next;
                }
            }
            if Instant::now() >= deadline {
                return Err(plan.give_up(config.request_timeout_ms));
            }
        }
    }
}

impl RoutingWatch {
    /// The manager serving the watch.
    pub fn manager(&self) -> SocketAddr {
        self.manager
    }

    /// The next message: first the whole [`ManagerResponse::Routing`] table, then one
    /// [`ManagerResponse::Change`] per catalog change. `None` when the manager ended the stream
    /// (it stopped leading); an error when the connection broke, the manager sent an error, or a
    /// frame could not be read. After `None` or an error, open a new watch.
    pub async fn next(&mut self) -> Result<Option<ManagerResponse>, Error> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        let manager = self.manager;
        match frame::read_frame::<_, Response>(&mut self.recv, self.frame_max_bytes).await {
            Ok(Some(Response::Manager(message))) => Ok(Some(message)),
            Ok(Some(Response::Error(e))) => Err(Error::Api(e)),
            Ok(Some(other)) => Err(Error::Protocol(format!(
                "{manager} sent {} on the routing watch",
                other.kind()
            ))),
            Ok(None) => Ok(None),
            Err(e @ (FrameError::Truncated | FrameError::Io(_))) => Err(Error::Unavailable {
                reason: format!("the routing watch on {manager} broke"),
                last_error: e.to_string(),
            }),
            Err(e) => Err(Error::Protocol(format!("{manager}: {e}"))),
        }
    }
}

impl Drop for RoutingWatch {
    fn drop(&mut self) {
        // Tell the manager at once rather than at its idle timeout.
        self.conn
            .close(frame::close::NORMAL.into(), b"routing watch closed");
    }
}

impl std::fmt::Debug for RoutingWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutingWatch")
            .field("manager", &self.manager)
            .finish_non_exhaustive()
    }
}

/// One attempt at opening the watch on one manager.
struct Attempt<'a> {
    endpoint: &'a quinn::Endpoint,
    addr: SocketAddr,
    request_frame: &'a [u8],
    deadline: Instant,
    connect_deadline: Instant,
    frame_max_bytes: u32,
}

impl Attempt<'_> {
    /// Connects, sends the watch request and reads the first answer. A manager answer opens the
    /// watch; anything else is the [`Outcome`] for the retry policy.
    async fn open(
        &self,
    ) -> Result<(quinn::Connection, quinn::RecvStream, ManagerResponse), Outcome> {
        let not_sent = |reason: String| Outcome::Transport {
            sent: Sent::Nothing,
            reason,
        };
        // Asking for a watch changes nothing: whatever broke, trying elsewhere is safe.
        let broke = |reason: String| Outcome::Transport {
            sent: Sent::Maybe,
            reason,
        };
        let conn = match timeout_at(
            self.connect_deadline,
            endpoint::connect(self.endpoint, self.addr),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(not_sent(e.to_string())),
            Err(_) => return Err(not_sent("cannot connect: no handshake in time".into())),
        };
        let (mut send, mut recv) = match timeout_at(self.deadline, conn.open_bi()).await {
            Ok(Ok(streams)) => streams,
            Ok(Err(e)) => return Err(not_sent(format!("cannot open a stream: {e}"))),
            Err(_) => return Err(not_sent("the deadline passed opening a stream".into())),
        };
        let first = async {
            send.write_all(self.request_frame)
                .await
                .map_err(|e| broke(format!("sending the watch request failed: {e}")))?;
            send.finish()
                .map_err(|e| broke(format!("finishing the watch request failed: {e}")))?;
            match frame::read_frame::<_, Response>(&mut recv, self.frame_max_bytes).await {
                Ok(Some(response)) => Ok(response),
                Ok(None) => Err(broke(
                    "the manager closed the stream without answering".into(),
                )),
                Err(e @ (FrameError::Truncated | FrameError::Io(_))) => {
                    Err(broke(format!("reading the answer failed: {e}")))
                }
                Err(e) => Err(Outcome::Garbled(e.to_string())),
            }
        };
        let first = match timeout_at(self.deadline, first).await {
            Ok(result) => result?,
            Err(_) => return Err(broke("the deadline passed before the answer came".into())),
        };
        match first {
            Response::Manager(message) => Ok((conn, recv, message)),
            other => Err(Outcome::Answer(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use cairn_wire::api::{ApiError, Epoch, LeaderHint, Namespace, ReplicaAddr, ShardId};
    use cairn_wire::catalog::{NamespaceRoute, RoutingChange, RoutingTable, ShardRoute};
    use cairn_wire::certs::{self, PemPair};
    use cairn_wire::endpoint::EndpointLimits;
    use cairn_wire::frame::FRAME_MAX_BYTES_DEFAULT;
    use cairn_wire::tls::{Identity, PeerRole};
    use raft_core::NodeId;

    use super::*;
    use crate::ClientConfig;

    fn identity(ca: &PemPair, role: PeerRole, name: &str) -> Identity {
        let pair = certs::issue(ca, role, name, &[]).unwrap();
        Identity::from_pem(&ca.cert_pem, &pair.cert_pem, &pair.key_pem).unwrap()
    }

    /// A fake manager: answers each stream's first request with `script`'s frames, in order, then
    /// finishes the stream. Counts the watch requests it got.
    struct FakeManager {
        addr: SocketAddr,
        watches: Arc<AtomicUsize>,
        _endpoint: quinn::Endpoint,
    }

    impl FakeManager {
        fn spawn(ca: &PemPair, script: Vec<Response>) -> Self {
            let endpoint = endpoint::server(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                &identity(ca, PeerRole::Node, "manager"),
                &EndpointLimits::default(),
            )
            .unwrap();
            let addr = endpoint.local_addr().unwrap();
            let watches = Arc::new(AtomicUsize::new(0));
            let accepting = endpoint.clone();
            let counter = Arc::clone(&watches);
            let script = Arc::new(script);
            tokio::spawn(async move {
                while let Some(incoming) = accepting.accept().await {
                    let (counter, script) = (Arc::clone(&counter), Arc::clone(&script));
                    tokio::spawn(async move {
                        let Ok(conn) = incoming.await else { return };
                        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                            let request =
                                frame::read_frame::<_, Request>(&mut recv, FRAME_MAX_BYTES_DEFAULT)
                                    .await;
                            assert_eq!(
                                request.unwrap(),
                                Some(Request::Manager(ManagerRequest::Watch))
                            );
                            counter.fetch_add(1, Ordering::SeqCst);
                            for response in script.iter() {
                                frame::write_frame(&mut send, response, FRAME_MAX_BYTES_DEFAULT)
                                    .await
                                    .unwrap();
                            }
                            send.finish().unwrap();
                        }
                    });
                }
            });
            Self {
                addr,
                watches,
                _endpoint: endpoint,
            }
        }
    }

    fn table() -> RoutingTable {
        RoutingTable {
            version: 7,
            shards: vec![ShardRoute {
                shard: ShardId(1),
                replicas: vec![ReplicaAddr {
                    node: NodeId(1),
                    addr: "127.0.0.1:7101".into(),
                    site: "dc1".into(),
                }],
            }],
            namespaces: vec![NamespaceRoute {
                name: Namespace::new("photos").unwrap(),
                shard: ShardId(1),
                epoch: Epoch(3),
            }],
        }
    }

    fn change() -> RoutingChange {
        RoutingChange {
            version: 8,
            removed: vec![Namespace::new("photos").unwrap()],
            ..RoutingChange::default()
        }
    }

    fn client(ca: &PemPair, managers: Vec<SocketAddr>) -> Client {
        let config = ClientConfig::new(managers, identity(ca, PeerRole::Node, "router"))
            .with_request_timeout_ms(2_000)
            .with_connect_timeout_ms(300);
        Client::new(config).unwrap()
    }

    #[tokio::test]
    async fn a_watch_follows_the_leader_hint_then_yields_the_table_and_its_changes() {
        let ca = certs::new_ca("test").unwrap();
        let leader = FakeManager::spawn(
            &ca,
            vec![
                Response::Manager(ManagerResponse::Routing(table())),
                Response::Manager(ManagerResponse::Change(change())),
            ],
        );
        let follower = FakeManager::spawn(
            &ca,
            vec![Response::Error(ApiError::NotLeader {
                leader: Some(LeaderHint {
                    node: NodeId(2),
                    addr: leader.addr.to_string(),
                }),
            })],
        );
        let client = client(&ca, vec![follower.addr, leader.addr]);

        let mut watch = client.watch_routing().await.unwrap();
        assert_eq!(watch.manager(), leader.addr);
        assert_eq!(
            watch.next().await.unwrap(),
            Some(ManagerResponse::Routing(table()))
        );
        assert_eq!(
            watch.next().await.unwrap(),
            Some(ManagerResponse::Change(change()))
        );
        assert_eq!(watch.next().await.unwrap(), None, "the stream ended");
        assert_eq!(follower.watches.load(Ordering::SeqCst), 1);
        assert_eq!(leader.watches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_unreachable_manager_is_skipped() {
        let ca = certs::new_ca("test").unwrap();
        let leader = FakeManager::spawn(
            &ca,
            vec![Response::Manager(ManagerResponse::Routing(table()))],
        );
        let dead = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = client(&ca, vec![dead, leader.addr]);

        let mut watch = client.watch_routing().await.unwrap();
        assert_eq!(watch.manager(), leader.addr);
        assert_eq!(
            watch.next().await.unwrap(),
            Some(ManagerResponse::Routing(table()))
        );
    }

    #[tokio::test]
    async fn a_refused_watch_fails_with_the_managers_error() {
        let ca = certs::new_ca("test").unwrap();
        let refusing = FakeManager::spawn(
            &ca,
            vec![Response::Error(ApiError::NotAuthorized(
                "nodes only".into(),
            ))],
        );
        let client = client(&ca, vec![refusing.addr]);

        let err = client.watch_routing().await.unwrap_err();
        assert_eq!(
            err,
            Error::Api(ApiError::NotAuthorized("nodes only".into()))
        );
    }

    #[tokio::test]
    async fn an_error_frame_on_an_open_watch_is_an_error() {
        let ca = certs::new_ca("test").unwrap();
        let manager = FakeManager::spawn(
            &ca,
            vec![
                Response::Manager(ManagerResponse::Routing(table())),
                Response::Error(ApiError::Internal("catalog unreadable".into())),
            ],
        );
        let client = client(&ca, vec![manager.addr]);

        let mut watch = client.watch_routing().await.unwrap();
        watch.next().await.unwrap();
        assert_eq!(
            watch.next().await.unwrap_err(),
            Error::Api(ApiError::Internal("catalog unreadable".into()))
        );
    }
}
