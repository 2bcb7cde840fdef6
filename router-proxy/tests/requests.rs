//! What the router refuses, what it relays to the manager, and its bounds: admin operations,
//! heartbeats, watches and shard-addressed requests are refused; catalog requests reach the
//! manager leader (and teach the router routes); requests beyond the in-flight bound are
//! answered `Busy` and connections beyond the connection bound are refused.

mod support;

use std::sync::Arc;
use std::time::Duration;

use cairn_client::Error;
use cairn_wire::api::{
    ApiError, Consistency, ReadOp, ReadResult, Request, Response, ShardId, WriteOp,
};
use cairn_wire::catalog::{
    Heartbeat, ManagerRequest, ManagerResponse, NamespaceState, RoutingTable, ShardRoute,
};
use cairn_wire::tls::PeerRole;
use raft_core::{LogIndex, NodeId};
use support::*;
use tokio::sync::Semaphore;

fn read(namespace: &str) -> Request {
    Request::RoutedRead {
        namespace: ns(namespace),
        consistency: Consistency::Any,
        op: ReadOp::Get { key: b"k".to_vec() },
    }
}

fn api_error(result: Result<Response, Error>) -> ApiError {
    match result {
        Err(Error::Api(e)) => e,
        other => panic!("expected an error answer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_refuses_what_it_must_not_relay_and_bounds_its_load() {
    let pki = Pki::new();
    // A shard that holds every answer until the test releases it.
    let release = Arc::new(Semaphore::new(0));
    let held = Arc::clone(&release);
    let (shard_addr, _shard) = spawn_server(&pki, move |request, send| {
        let held = Arc::clone(&held);
        async move {
            assert!(matches!(request, Request::Read { .. }), "{request:?}");
            held.acquire().await.unwrap().forget();
            let response = Response::Read {
                result: ReadResult::Value(b"v".to_vec()),
                applied: LogIndex(1),
            };
            answer(send, &response).await;
        }
    });
    let manager = FakeManager::leader(
        &pki,
        RoutingTable {
            version: 1,
            shards: vec![ShardRoute {
                shard: ShardId(1),
                replicas: vec![cairn_wire::api::ReplicaAddr {
                    node: NodeId(1),
                    addr: shard_addr.to_string(),
                    site: "dc1".into(),
                }],
            }],
            namespaces: vec![namespace_route("slow", 1, 1)],
        },
    );
    let router = start_router(&pki, &[&manager], |c| {
        c.limits.connections_max = 1;
        c.limits.requests_in_flight_max = 1;
        c.limits.requests_in_flight_wait_ms = 50;
    })
    .await;
    let client = pki.client(router.addr);
    let at = router.addr;

    // The manager's own operations never pass, whatever the caller's certificate.
    for op in [WriteOp::AdoptNamespace, WriteOp::DropNamespace] {
        let request = Request::RoutedWrite {
            namespace: ns("slow"),
            op,
        };
        let e = api_error(client.request_to(at, request).await);
        assert!(matches!(e, ApiError::NotAuthorized(_)), "{e:?}");
    }
    let heartbeat = ManagerRequest::Heartbeat(Heartbeat {
        id: NodeId(9),
        site: "dc1".into(),
        addr: "127.0.0.1:1".into(),
        capacity_replicas: 1,
        replicas: vec![],
    });
    let e = api_error(client.request_to(at, Request::Manager(heartbeat)).await);
    assert!(matches!(e, ApiError::NotAuthorized(_)), "{e:?}");
    assert_eq!(manager.count("heartbeat"), 0);
    let e = api_error(
        client
            .request_to(at, Request::Manager(ManagerRequest::Watch))
            .await,
    );
    assert!(matches!(e, ApiError::InvalidArgument(_)), "{e:?}");
    assert_eq!(manager.count("watch"), 1, "only the router's own watch");

    // Shard-addressed and node requests belong to nodes.
    let shard_read = Request::Read {
        shard: ShardId(1),
        namespace: ns("slow"),
        epoch: None,
        consistency: Consistency::Any,
        op: ReadOp::Get { key: b"k".to_vec() },
    };
    for request in [Request::Status, shard_read] {
        let e = api_error(client.request_to(at, request).await);
        match e {
            ApiError::InvalidArgument(why) => {
                assert!(why.contains("a router serves namespace-addressed"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    // Catalog requests are relayed to the manager; a namespace they show is routed without a
    // lookup of its own.
    manager.set_namespace(info(
        &namespace_route("shown", 1, 1),
        NamespaceState::Active,
    ));
    let shown = client
        .request(Request::Manager(ManagerRequest::ShowNamespace {
            name: ns("shown"),
        }))
        .await
        .unwrap();
    assert!(
        matches!(&shown, Response::Manager(ManagerResponse::Namespace(i)) if i.name == ns("shown")),
        "{shown:?}"
    );
    let listed = client
        .request(Request::Manager(ManagerRequest::ListNamespaces))
        .await
        .unwrap();
    assert!(
        matches!(&listed, Response::Manager(ManagerResponse::Namespaces(all)) if all.len() == 2),
        "{listed:?}"
    );
    let routes = metric(router.metrics, "cairn_router_routes", &[]).await;
    assert_eq!(routes, 2.0, "the shown namespace was cached");

    // One request in flight holds the only slot; the next waits briefly, then is Busy.
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.request_to(at, read("slow")).await }
    });
    eventually(
        Duration::from_secs(5),
        "the first request in flight",
        || async {
            let n = metric(router.metrics, "cairn_router_in_flight_requests", &[]).await;
            (n == 1.0).then_some(())
        },
    )
    .await;
    let e = api_error(client.request_to(at, read("shown")).await);
    assert!(matches!(e, ApiError::Busy(_)), "{e:?}");
    release.add_permits(1);
    assert!(matches!(first.await.unwrap(), Ok(Response::Read { .. })));
    let busy = metric(
        router.metrics,
        "cairn_router_requests_total",
        &[("outcome", "busy")],
    )
    .await;
    assert_eq!(busy, 1.0);
    assert_eq!(
        metric(
            router.metrics,
            "cairn_router_manager_lookups_total",
            &[("reason", "miss")]
        )
        .await,
        0.0
    );

    // One connection at most: a second client is refused until the first leaves.
    let second = pki.client(router.addr);
    let err = second.request_to(at, read("slow")).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    client.close().await;
    let third = {
        let config = cairn_client::ClientConfig::new(
            vec![router.addr],
            pki.identity(PeerRole::Client, "proxy-3"),
        );
        cairn_client::Client::new(config).unwrap()
    };
    release.add_permits(1);
    let read = eventually(
        Duration::from_secs(10),
        "a connection once one is free",
        || {
            let third = third.clone();
            async move { third.request_to(at, read("slow")).await.ok() }
        },
    )
    .await;
    assert!(matches!(read, Response::Read { .. }), "{read:?}");
    let refused = metric(
        router.metrics,
        "cairn_router_connections_refused_total",
        &[("reason", "connection_limit")],
    )
    .await;
    assert!(refused >= 1.0, "{refused}");
}
