//! The router's routing against a fake manager and fake shards on real QUIC sockets: routes come
//! from the watched table without manager lookups, misses and `WrongShard` answers are corrected
//! by asking the manager, leader hints are followed, watch changes re-route, and a broken watch
//! is reopened.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_client::{Client, Error};
use cairn_wire::api::{
    ApiError, Consistency, Epoch, LeaderHint, Namespace, ReadResult, Request, Response, ShardId,
    WriteResult,
};
use cairn_wire::catalog::{NamespaceState, RoutingChange, RoutingTable};
use raft_core::LogIndex;
use support::*;

/// Which epoch a shard owns each namespace at.
type Owned = Arc<Mutex<HashMap<Namespace, Epoch>>>;

/// A replica of shard `id`: serves the namespaces in `owned` at their epoch (`WrongShard`
/// otherwise); a follower (`leader` given) sends writes to the leader and serves reads itself.
fn replica_script(
    id: u64,
    owned: Owned,
    leader: Option<LeaderHint>,
) -> impl Fn(&Request) -> Response + Send + Sync + 'static {
    move |request| {
        let (shard, namespace, epoch, is_write) = match request {
            Request::Read {
                shard,
                namespace,
                epoch,
                ..
            } => (*shard, namespace, *epoch, false),
            Request::Write {
                shard,
                namespace,
                epoch,
                ..
            } => (*shard, namespace, *epoch, true),
            other => panic!("a shard got {other:?}"),
        };
        assert_eq!(shard, ShardId(id), "sent to the wrong shard's replica");
        let owns = owned.lock().unwrap().get(namespace).copied();
        if epoch.is_none() || owns != epoch {
            return Response::Error(ApiError::WrongShard {
                shard,
                namespace: namespace.clone(),
                epoch: owns,
            });
        }
        match (is_write, &leader) {
            (true, Some(leader)) => Response::Error(ApiError::NotLeader {
                leader: Some(leader.clone()),
            }),
            (true, None) => Response::Write {
                index: LogIndex(42),
                result: WriteResult::Done,
            },
            (false, _) => Response::Read {
                result: ReadResult::Value(format!("shard-{id}").into_bytes()),
                applied: LogIndex(7),
            },
        }
    }
}

fn owned(entries: &[(&str, u64)]) -> Owned {
    Arc::new(Mutex::new(
        entries.iter().map(|(n, e)| (ns(n), Epoch(*e))).collect(),
    ))
}

async fn get(client: &Client, namespace: &str) -> Result<String, Error> {
    let read = client
        .routed(ns(namespace))
        .get("k", Consistency::Any)
        .await?;
    Ok(String::from_utf8(read.value).unwrap())
}

/// The (shard, epoch) of every routed request a replica received.
fn routed(shard: &FakeShard) -> Vec<(ShardId, Option<Epoch>)> {
    shard
        .take_requests()
        .into_iter()
        .map(|r| match r {
            Request::Read { shard, epoch, .. } | Request::Write { shard, epoch, .. } => {
                (shard, epoch)
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

async fn lookups(router: &RouterUnderTest, reason: &str) -> f64 {
    metric(
        router.metrics,
        "cairn_router_manager_lookups_total",
        &[("reason", reason)],
    )
    .await
}

async fn fallbacks(router: &RouterUnderTest) -> f64 {
    metric(
        router.metrics,
        "cairn_router_local_read_fallbacks_total",
        &[],
    )
    .await
}

async fn wait_for_version(router: &RouterUnderTest, version: u64) {
    eventually(
        Duration::from_secs(10),
        &format!("routing version {version}"),
        || async {
            let at = metric(router.metrics, "cairn_router_routing_version", &[]).await;
            (at == version as f64).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_routed_by_the_watched_table_and_corrected_by_the_manager() {
    let pki = Pki::new();
    let owned_1 = owned(&[("photos", 3)]);
    let owned_2 = owned(&[("videos", 1), ("fresh", 2)]);
    let owned_3 = owned(&[("elsewhere", 1)]);
    let leader_1 = FakeShard::spawn(&pki, 11, replica_script(1, owned_1.clone(), None));
    let follower_1 = FakeShard::spawn(
        &pki,
        12,
        replica_script(1, owned_1.clone(), Some(leader_1.hint())),
    );
    let replica_2 = FakeShard::spawn(&pki, 21, replica_script(2, owned_2.clone(), None));
    let replica_3 = FakeShard::spawn(&pki, 31, replica_script(3, owned_3.clone(), None));
    let manager = FakeManager::leader(
        &pki,
        RoutingTable {
            version: 5,
            // The follower first: writes must follow its hint to the leader.
            shards: vec![
                shard_route(1, &[&follower_1, &leader_1]),
                shard_route(2, &[&replica_2]),
            ],
            namespaces: vec![
                namespace_route("photos", 1, 3),
                namespace_route("videos", 2, 1),
            ],
        },
    );
    let manager_follower = FakeManager::follower(&pki, &manager);
    let router = start_router(&pki, &[&manager_follower, &manager], |_| {}).await;
    let client = pki.client(router.addr);
    wait_for_version(&router, 5).await;
    assert!(
        manager_follower.count("watch") >= 1,
        "the watch asked the follower first"
    );
    assert_eq!(
        metric(router.metrics, "cairn_router_routes", &[]).await,
        2.0
    );

    // Routed by the table: the right shard and epoch, and no lookup however often.
    for _ in 0..5 {
        assert_eq!(get(&client, "photos").await.unwrap(), "shard-1");
    }
    let seen: Vec<_> = [routed(&follower_1), routed(&leader_1)].concat();
    assert_eq!(seen, vec![(ShardId(1), Some(Epoch(3))); 5]);
    assert_eq!(lookups(&router, "miss").await, 0.0);
    assert_eq!(lookups(&router, "wrong_shard").await, 0.0);

    // A write follows the follower's hint to the leader.
    let written = client.routed(ns("photos")).set("k", "v").await.unwrap();
    assert_eq!(written.index, LogIndex(42));
    assert_eq!(routed(&follower_1), vec![(ShardId(1), Some(Epoch(3)))]);
    assert_eq!(routed(&leader_1), vec![(ShardId(1), Some(Epoch(3)))]);

    // A namespace missing from the table: one lookup, then cached.
    manager.set_namespace(info(
        &namespace_route("fresh", 2, 2),
        NamespaceState::Active,
    ));
    for _ in 0..3 {
        assert_eq!(get(&client, "fresh").await.unwrap(), "shard-2");
    }
    assert_eq!(routed(&replica_2), vec![(ShardId(2), Some(Epoch(2))); 3]);
    assert_eq!(lookups(&router, "miss").await, 1.0);
    assert_eq!(manager.count("show_namespace"), 1);

    // Concurrent misses of one namespace cost one lookup (a slow one: they all arrive during it).
    manager.set_lookup_delay(Duration::from_millis(200));
    owned_2.lock().unwrap().insert(ns("burst"), Epoch(1));
    manager.set_namespace(info(
        &namespace_route("burst", 2, 1),
        NamespaceState::Active,
    ));
    let burst: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { get(&client, "burst").await })
        })
        .collect();
    for read in burst {
        assert_eq!(read.await.unwrap().unwrap(), "shard-2");
    }
    assert_eq!(routed(&replica_2).len(), 8);
    assert_eq!(lookups(&router, "miss").await, 2.0);
    manager.set_lookup_delay(Duration::ZERO);

    // Unknown and inactive namespaces are UnknownNamespace, after asking.
    let err = get(&client, "nope").await.unwrap_err();
    assert_eq!(err, Error::Api(ApiError::UnknownNamespace(ns("nope"))));
    manager.set_namespace(info(
        &namespace_route("creating", 2, 1),
        NamespaceState::Creating,
    ));
    let err = get(&client, "creating").await.unwrap_err();
    assert_eq!(err, Error::Api(ApiError::UnknownNamespace(ns("creating"))));
    assert_eq!(lookups(&router, "miss").await, 4.0);

    // A namespace on a shard the router has not heard of: its lookup fetches the table too.
    manager.add_shard_quietly(shard_route(3, &[&replica_3]));
    manager.set_namespace(info(
        &namespace_route("elsewhere", 3, 1),
        NamespaceState::Active,
    ));
    assert_eq!(get(&client, "elsewhere").await.unwrap(), "shard-3");
    assert_eq!(routed(&replica_3), vec![(ShardId(3), Some(Epoch(1)))]);
    assert_eq!(lookups(&router, "miss").await, 6.0);
    assert_eq!(manager.count("routing"), 1);

    // The namespace moved and the router was not told: the shard's WrongShard makes it ask the
    // manager and retry once at the new shard and epoch. Every replica here is in the router's
    // site, so the read goes to one of them first; its WrongShard names no epoch, which a
    // replica that has not applied the adoption yet would say too, so the router first sends
    // the read on the usual way (to the leader, here the same replica), and corrects its route
    // only when that says WrongShard as well.
    owned_2.lock().unwrap().remove(&ns("videos"));
    owned_1.lock().unwrap().insert(ns("videos"), Epoch(4));
    manager.set_namespace(info(
        &namespace_route("videos", 1, 4),
        NamespaceState::Active,
    ));
    assert_eq!(get(&client, "videos").await.unwrap(), "shard-1");
    assert_eq!(routed(&replica_2), vec![(ShardId(2), Some(Epoch(1))); 2]);
    assert_eq!(fallbacks(&router).await, 1.0);
    let at_1: Vec<_> = [routed(&follower_1), routed(&leader_1)].concat();
    assert_eq!(at_1, vec![(ShardId(1), Some(Epoch(4)))]);
    assert_eq!(lookups(&router, "wrong_shard").await, 1.0);
    assert_eq!(get(&client, "videos").await.unwrap(), "shard-1");
    assert_eq!(
        lookups(&router, "wrong_shard").await,
        1.0,
        "corrected for good"
    );

    // A replica that owns the namespace at a newer epoch proves the route stale: the router
    // asks the manager at once, without sending the read on first.
    owned_2.lock().unwrap().insert(ns("burst"), Epoch(2));
    manager.set_namespace(info(
        &namespace_route("burst", 2, 2),
        NamespaceState::Active,
    ));
    assert_eq!(get(&client, "burst").await.unwrap(), "shard-2");
    assert_eq!(
        routed(&replica_2),
        vec![(ShardId(2), Some(Epoch(1))), (ShardId(2), Some(Epoch(2)))]
    );
    assert_eq!(lookups(&router, "wrong_shard").await, 2.0);
    assert_eq!(fallbacks(&router).await, 1.0);

    // When the manager agrees with the route, the shard's WrongShard stands.
    owned_2.lock().unwrap().remove(&ns("fresh"));
    let err = get(&client, "fresh").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Api(ApiError::WrongShard {
                shard: ShardId(2),
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(lookups(&router, "wrong_shard").await, 3.0);
    // The local attempt and the usual path's; none after the manager's lookup.
    assert_eq!(routed(&replica_2).len(), 2, "no attempt after the lookup");
    assert_eq!(fallbacks(&router).await, 2.0);
    owned_2.lock().unwrap().insert(ns("fresh"), Epoch(2));

    // A change on the watch re-routes without any lookup.
    let before = lookups(&router, "miss").await + lookups(&router, "wrong_shard").await;
    owned_2.lock().unwrap().insert(ns("photos"), Epoch(5));
    manager.push(RoutingChange {
        version: 6,
        namespaces: vec![namespace_route("photos", 2, 5)],
        ..RoutingChange::default()
    });
    wait_for_version(&router, 6).await;
    assert_eq!(get(&client, "photos").await.unwrap(), "shard-2");
    assert_eq!(routed(&replica_2), vec![(ShardId(2), Some(Epoch(5)))]);
    // A stale change (not newer) changes nothing.
    manager.push(RoutingChange {
        version: 6,
        removed: vec![ns("photos")],
        ..RoutingChange::default()
    });
    manager.push(RoutingChange {
        version: 7,
        ..RoutingChange::default()
    });
    wait_for_version(&router, 7).await;
    assert_eq!(get(&client, "photos").await.unwrap(), "shard-2");
    let after = lookups(&router, "miss").await + lookups(&router, "wrong_shard").await;
    assert_eq!(after, before);

    // The manager ends the watch: the router reopens it and starts from a full table, which no
    // longer has what was removed meanwhile.
    manager.end_watches();
    eventually(Duration::from_secs(10), "a second watch", || async {
        let connects = metric(router.metrics, "cairn_router_watch_connects_total", &[]).await;
        (connects >= 2.0).then_some(())
    })
    .await;
    manager.push(RoutingChange {
        version: 8,
        removed: vec![ns("videos")],
        ..RoutingChange::default()
    });
    wait_for_version(&router, 8).await;
    let err = get(&client, "videos").await.unwrap_err();
    assert_eq!(err, Error::Api(ApiError::UnknownNamespace(ns("videos"))));
}
