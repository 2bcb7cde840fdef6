//! Site-aware reads against real shard nodes: a router in the site of one follower serves `Any`
//! and `AtLeast` reads from that follower (its own request metrics say so), the index a write
//! returned reads that write there, and once the leader and the other follower are dead the
//! follower still serves loose reads while a `Consistent` read, which needs the leader, fails.

mod support;

use cairn_client::NamespaceClient;
use cairn_wire::api::{Consistency, Epoch, ShardId};
use cairn_wire::catalog::{RoutingTable, ShardRoute};
use support::nodes::{Nodes, serve_if_child};
use support::*;

const SHARD: ShardId = ShardId(1);

/// Not a test: the body of the shard-node child processes (does nothing in a test run).
#[test]
fn shard_node_process() {
    serve_if_child();
}

async fn get(photos: &NamespaceClient, consistency: Consistency) -> Result<String, String> {
    photos
        .get("k", consistency)
        .await
        .map(|read| String::from_utf8(read.value).unwrap())
        .map_err(|e| e.to_string())
}

async fn shard_reads(router: &RouterUnderTest, locality: &str) -> f64 {
    let labels = [("locality", locality)];
    metric(router.metrics, "cairn_router_shard_reads_total", &labels).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loose_reads_are_served_by_the_replica_in_the_routers_site() {
    let pki = Pki::new();
    let mut nodes = Nodes::start(&pki, &["dc1", "dc2", "dc3"], "shard_node_process");
    let leader = nodes
        .create_shard(&pki, SHARD, &ns("photos"), Epoch(1))
        .await;
    // The router sits in the site of exactly one follower.
    let local = (1..=3).find(|id| *id != leader).unwrap();
    let other = (1..=3).find(|id| *id != leader && *id != local).unwrap();
    let site = nodes.node(local).site.clone();
    let manager = FakeManager::leader(
        &pki,
        RoutingTable {
            version: 1,
            shards: vec![ShardRoute {
                shard: SHARD,
                replicas: nodes.replicas(),
            }],
            namespaces: vec![namespace_route("photos", 1, 1)],
        },
    );
    let router = start_router(&pki, &[&manager], |c| c.site = Some(site)).await;
    let photos = pki.client(router.addr).routed(ns("photos"));

    // A write goes to the leader; the index it returns is the token that reads it.
    let written = photos.set("k", "v1").await.unwrap();
    assert_eq!(shard_reads(&router, "local").await, 0.0);

    let read = photos
        .get("k", Consistency::AtLeast(written.index))
        .await
        .unwrap();
    assert_eq!(read.value, b"v1", "read your write through the token");
    assert!(read.applied >= written.index);
    assert_eq!(get(&photos, Consistency::Any).await.unwrap(), "v1");
    assert_eq!(nodes.gets_served(local).await, 2.0, "the local follower");
    assert_eq!(nodes.gets_served(leader).await, 0.0);
    assert_eq!(nodes.gets_served(other).await, 0.0);
    assert_eq!(shard_reads(&router, "local").await, 2.0);
    assert_eq!(shard_reads(&router, "remote").await, 0.0);

    // Only the local follower is left: it has the write and serves loose reads alone; a
    // consistent read needs a leader, and there is none.
    nodes.kill(leader);
    nodes.kill(other);
    assert_eq!(get(&photos, Consistency::Any).await.unwrap(), "v1");
    assert_eq!(
        get(&photos, Consistency::AtLeast(written.index))
            .await
            .unwrap(),
        "v1"
    );
    assert_eq!(nodes.gets_served(local).await, 4.0);
    let consistent = get(&photos, Consistency::Consistent).await;
    assert!(
        consistent.is_err(),
        "a consistent read without a leader: {consistent:?}"
    );
    assert_eq!(shard_reads(&router, "local").await, 4.0);
    assert_eq!(
        shard_reads(&router, "remote").await,
        1.0,
        "the consistent read"
    );
    assert_eq!(
        metric(
            router.metrics,
            "cairn_router_local_read_fallbacks_total",
            &[]
        )
        .await,
        0.0
    );
}
