//! The client against scripted fake nodes on real QUIC sockets: hints, retries, ambiguity and
//! deadlines as a node would cause them. (Tests against real shard nodes live elsewhere.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cairn_client::{Client, ClientConfig, Consistency, Error, Namespace, ShardId};
use cairn_wire::api::{
    ApiError, LeaderHint, ReadResult, ReplicaStatus, Request, Response, WriteResult,
};
use cairn_wire::certs::{self, PemPair};
use cairn_wire::endpoint::{self, EndpointLimits};
use cairn_wire::frame::{self, FRAME_MAX_BYTES_DEFAULT};
use cairn_wire::tls::{Identity, PeerRole};
use raft_core::{LogIndex, NodeId, Role, Term};
use tokio::time::Instant;

/// What a fake node does with a request.
enum Action {
    Answer(Response),
    /// Reads the request, then closes the connection without answering.
    CloseConnection,
}

struct Pki {
    ca: PemPair,
}

impl Pki {
    fn new() -> Self {
        Self {
            ca: certs::new_ca("test").unwrap(),
        }
    }

    fn identity(&self, role: PeerRole, name: &str) -> Identity {
        let pair = certs::issue(&self.ca, role, name, &[]).unwrap();
        Identity::from_pem(&self.ca.cert_pem, &pair.cert_pem, &pair.key_pem).unwrap()
    }
}

/// A node that answers every request with its script, counting requests.
struct FakeNode {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    _endpoint: quinn::Endpoint,
}

impl FakeNode {
    fn spawn(pki: &Pki, script: impl Fn(&Request) -> Action + Send + Sync + 'static) -> Self {
        let identity = pki.identity(PeerRole::Node, "node");
        let endpoint = endpoint::server(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            &identity,
            &EndpointLimits::default(),
        )
        .unwrap();
        let addr = endpoint.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(script);
        let accepting = endpoint.clone();
        let counter = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                let script = Arc::clone(&script);
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        let Ok(Some(request)) =
                            frame::read_frame::<_, Request>(&mut recv, FRAME_MAX_BYTES_DEFAULT)
                                .await
                        else {
                            continue;
                        };
                        counter.fetch_add(1, Ordering::SeqCst);
                        match script(&request) {
                            Action::Answer(response) => {
                                frame::write_frame(&mut send, &response, FRAME_MAX_BYTES_DEFAULT)
                                    .await
                                    .unwrap();
                                send.finish().unwrap();
                            }
                            Action::CloseConnection => conn.close(0u32.into(), b"gone"),
                        }
                    }
                });
            }
        });
        Self {
            addr,
            requests,
            _endpoint: endpoint,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn client(pki: &Pki, nodes: Vec<SocketAddr>, timeout_ms: u64) -> Client {
    let config = ClientConfig::new(nodes, pki.identity(PeerRole::Client, "client"))
        .with_request_timeout_ms(timeout_ms)
        .with_connect_timeout_ms(300);
    Client::new(config).unwrap()
}

fn ns() -> Namespace {
    Namespace::new("test").unwrap()
}

fn write_ok(index: u64) -> Action {
    Action::Answer(Response::Write {
        index: LogIndex(index),
        result: WriteResult::Done,
    })
}

fn error(e: ApiError) -> Action {
    Action::Answer(Response::Error(e))
}

/// A UDP address nothing answers on.
fn dead_addr() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

#[tokio::test]
async fn a_write_follows_the_leader_hint_and_remembers_the_leader() {
    let pki = Pki::new();
    let leader = FakeNode::spawn(&pki, |_| write_ok(42));
    let hint = LeaderHint {
        node: NodeId(2),
        addr: leader.addr.to_string(),
    };
    let follower = FakeNode::spawn(&pki, move |_| {
        error(ApiError::NotLeader {
            leader: Some(hint.clone()),
        })
    });
    let client = client(&pki, vec![follower.addr, leader.addr], 2_000);
    let ns = client.namespace(ShardId(1), ns());

    let written = ns.set("k", "v").await.unwrap();
    assert_eq!(written.index, LogIndex(42));
    assert_eq!(client.cached_leader(ShardId(1)), Some(leader.addr));

    // The next write goes straight to the leader.
    ns.delete("k").await.unwrap();
    assert_eq!(follower.requests(), 1);
    assert_eq!(leader.requests(), 2);
}

#[tokio::test]
async fn a_write_whose_connection_breaks_after_sending_is_ambiguous_and_not_retried() {
    let pki = Pki::new();
    let breaking = FakeNode::spawn(&pki, |_| Action::CloseConnection);
    let healthy = FakeNode::spawn(&pki, |_| write_ok(1));
    let client = client(&pki, vec![breaking.addr, healthy.addr], 2_000);

    let err = client
        .namespace(ShardId(1), ns())
        .set("k", "v")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Ambiguous { .. }), "{err}");
    assert_eq!(breaking.requests(), 1);
    assert_eq!(
        healthy.requests(),
        0,
        "an ambiguous write must not be retried"
    );
}

#[tokio::test]
async fn a_read_whose_connection_breaks_is_retried_at_the_next_node() {
    let pki = Pki::new();
    let breaking = FakeNode::spawn(&pki, |_| Action::CloseConnection);
    let healthy = FakeNode::spawn(&pki, |_| {
        Action::Answer(Response::Read {
            result: ReadResult::Value(b"v".to_vec()),
            applied: LogIndex(9),
        })
    });
    let client = client(&pki, vec![breaking.addr, healthy.addr], 2_000);

    let read = client
        .namespace(ShardId(1), ns())
        .get("k", Consistency::Consistent)
        .await
        .unwrap();
    assert_eq!(read.value, b"v");
    assert_eq!(read.applied, LogIndex(9));
    assert_eq!(breaking.requests(), 1);
}

#[tokio::test]
async fn a_write_to_a_shard_without_quorum_fails_with_no_quorum_within_the_timeout() {
    let pki = Pki::new();
    let no_quorum = || error(ApiError::NoQuorum { proposed: false });
    let a = FakeNode::spawn(&pki, move |_| no_quorum());
    let b = FakeNode::spawn(&pki, move |_| no_quorum());
    let client = client(&pki, vec![a.addr, b.addr], 700);

    let started = Instant::now();
    let err = client.namespace(ShardId(1), ns()).nop().await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err, Error::Api(ApiError::NoQuorum { proposed: false }));
    assert!(elapsed >= Duration::from_millis(700), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1_500), "{elapsed:?}");
    assert!(a.requests() + b.requests() >= 3, "retried with backoff");
}

#[tokio::test]
async fn unreachable_nodes_make_a_call_unavailable_within_the_timeout() {
    let pki = Pki::new();
    let client = client(&pki, vec![dead_addr(), dead_addr()], 800);

    let started = Instant::now();
    let err = client
        .namespace(ShardId(1), ns())
        .set("k", "v")
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(!err.is_ambiguous(), "nothing was sent");
    assert!(elapsed < Duration::from_millis(1_500), "{elapsed:?}");
}

#[tokio::test]
async fn a_pinned_handle_asks_only_its_node_once() {
    let pki = Pki::new();
    let leader = FakeNode::spawn(&pki, |_| write_ok(5));
    let hint = LeaderHint {
        node: NodeId(1),
        addr: leader.addr.to_string(),
    };
    let follower = FakeNode::spawn(&pki, move |request| match request {
        Request::Read { .. } => error(ApiError::InconsistentRead {
            applied: LogIndex(3),
            required: LogIndex(5),
        }),
        _ => error(ApiError::NotLeader {
            leader: Some(hint.clone()),
        }),
    });
    let client = client(&pki, vec![leader.addr, follower.addr], 2_000);
    let pinned = client.namespace_at(follower.addr, ShardId(1), ns());

    let err = pinned
        .get("k", Consistency::AtLeast(LogIndex(5)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Api(ApiError::InconsistentRead { .. })),
        "{err}"
    );
    let err = pinned.set("k", "v").await.unwrap_err();
    assert!(
        matches!(err, Error::Api(ApiError::NotLeader { .. })),
        "{err}"
    );
    assert_eq!(follower.requests(), 2);
    assert_eq!(leader.requests(), 0);
}

#[tokio::test]
async fn a_loose_read_moves_past_a_replica_that_is_behind() {
    let pki = Pki::new();
    let behind = FakeNode::spawn(&pki, |_| {
        error(ApiError::InconsistentRead {
            applied: LogIndex(3),
            required: LogIndex(5),
        })
    });
    let caught_up = FakeNode::spawn(&pki, |_| {
        Action::Answer(Response::Read {
            result: ReadResult::Count(4),
            applied: LogIndex(6),
        })
    });
    let client = client(&pki, vec![behind.addr, caught_up.addr], 2_000);

    let read = client
        .namespace(ShardId(1), ns())
        .count("", Consistency::AtLeast(LogIndex(5)))
        .await
        .unwrap();
    assert_eq!(read.value, 4);
    assert_eq!(read.applied, LogIndex(6));
}

#[tokio::test]
async fn status_all_reports_every_node_in_order_including_unreachable_ones() {
    let pki = Pki::new();
    let status = ReplicaStatus {
        shard: ShardId(1),
        node: NodeId(1),
        role: Role::Leader,
        term: Term(3),
        leader: None,
        voters: vec![NodeId(1)],
        learners: vec![],
        commit: LogIndex(10),
        applied: LogIndex(10),
        first_index: LogIndex(1),
        last_index: LogIndex(10),
        quiesced: false,
    };
    let answer = status.clone();
    let up = FakeNode::spawn(&pki, move |_| {
        Action::Answer(Response::Status(vec![answer.clone()]))
    });
    let down = dead_addr();
    let client = client(&pki, vec![up.addr, down], 1_000);

    let all = client.status_all().await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].0, up.addr);
    assert_eq!(all[0].1, Ok(vec![status]));
    assert_eq!(all[1].0, down);
    assert!(matches!(all[1].1, Err(Error::Unavailable { .. })));
}

#[tokio::test]
async fn who_leader_asks_until_a_node_names_the_leader() {
    let pki = Pki::new();
    let unaware = FakeNode::spawn(&pki, |_| Action::Answer(Response::Leader(None)));
    let hint = LeaderHint {
        node: NodeId(3),
        addr: "127.0.0.1:7103".into(),
    };
    let expected = hint.clone();
    let aware = FakeNode::spawn(&pki, move |_| {
        Action::Answer(Response::Leader(Some(hint.clone())))
    });
    let client = client(&pki, vec![unaware.addr, aware.addr], 2_000);

    assert_eq!(client.who_leader(ShardId(1)).await, Ok(Some(expected)));
    assert_eq!(
        client.cached_leader(ShardId(1)),
        Some("127.0.0.1:7103".parse().unwrap())
    );
}

#[tokio::test]
async fn a_node_refusing_the_client_certificate_is_not_an_ambiguous_write() {
    let pki = Pki::new();
    let node = FakeNode::spawn(&pki, |_| write_ok(1));
    // A client certificate from another cluster's CA.
    let stranger = Pki::new();
    let pair = certs::issue(&stranger.ca, PeerRole::Client, "stranger", &[]).unwrap();
    let identity = Identity::from_pem(&pki.ca.cert_pem, &pair.cert_pem, &pair.key_pem).unwrap();
    let config = ClientConfig::new(vec![node.addr], identity).with_request_timeout_ms(800);
    let client = Client::new(config).unwrap();

    let err = client
        .namespace(ShardId(1), ns())
        .set("k", "v")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("TLS"), "{err}");
    assert_eq!(node.requests(), 0);
}

#[tokio::test]
async fn an_oversized_request_is_refused_before_anything_is_sent() {
    let pki = Pki::new();
    let node = FakeNode::spawn(&pki, |_| write_ok(1));
    let mut config = ClientConfig::new(vec![node.addr], pki.identity(PeerRole::Client, "client"));
    config.frame_max_bytes = 1024;
    let client = Client::new(config).unwrap();

    let err = client
        .namespace(ShardId(1), ns())
        .set("k", vec![0u8; 4096])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Api(ApiError::TooLarge { .. })),
        "{err}"
    );
    assert_eq!(node.requests(), 0);
}

#[test]
fn config_defaults_are_the_documented_ones_and_nonsense_is_refused() {
    let pki = Pki::new();
    let identity = pki.identity(PeerRole::Client, "client");
    let config = ClientConfig::new(vec!["127.0.0.1:7101".parse().unwrap()], identity.clone());
    assert_eq!(config.request_timeout_ms, 5_000);
    assert_eq!(config.connect_timeout_ms, 1_000);
    assert_eq!(config.max_leader_hops, 5);
    assert_eq!(config.frame_max_bytes, FRAME_MAX_BYTES_DEFAULT);
    config.validate().unwrap();
    assert!(matches!(
        ClientConfig::new(vec![], identity.clone()).validate(),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        config.clone().with_request_timeout_ms(0).validate(),
        Err(Error::Config(_))
    ));
    assert!(!format!("{config:?}").contains("PRIVATE KEY"));
}
