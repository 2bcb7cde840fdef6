//! Site-aware reads when the local replica is dead, against real shard nodes: the read that
//! finds it dead is sent on to the shard and answered there, the reads that follow skip it
//! for a while instead of paying for the dead replica again, and once it is back (and the
//! while is over) reads return to it.

mod support;

use std::time::Duration;

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

async fn get_any(photos: &NamespaceClient) -> String {
    let read = photos.get("k", Consistency::Any).await.unwrap();
    String::from_utf8(read.value).unwrap()
}

async fn counter(router: &RouterUnderTest, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(router.metrics, name, labels).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_local_replica_falls_back_to_the_others_and_is_skipped_until_it_is_back() {
    const READS: &str = "cairn_router_shard_reads_total";
    const FALLBACKS: &str = "cairn_router_local_read_fallbacks_total";
    let pki = Pki::new();
    let mut nodes = Nodes::start(&pki, &["dc1", "dc2", "dc3"], "shard_node_process");
    let leader = nodes
        .create_shard(&pki, SHARD, &ns("photos"), Epoch(1))
        .await;
    let local = (1..=3).find(|id| *id != leader).unwrap();
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
    photos.set("k", "v1").await.unwrap();
    assert_eq!(get_any(&photos).await, "v1");
    assert_eq!(nodes.gets_served(local).await, 1.0);

    // The local follower dies; the shard keeps its majority.
    nodes.kill(local);
    assert_eq!(get_any(&photos).await, "v1", "sent on to the others");
    assert_eq!(counter(&router, FALLBACKS, &[]).await, 1.0);
    assert_eq!(counter(&router, READS, &[("locality", "local")]).await, 2.0);
    // The next reads do not try it again (no new fallback): straight to the others.
    for _ in 0..3 {
        assert_eq!(get_any(&photos).await, "v1");
    }
    assert_eq!(counter(&router, FALLBACKS, &[]).await, 1.0);
    assert_eq!(counter(&router, READS, &[("locality", "local")]).await, 2.0);
    assert_eq!(
        counter(&router, READS, &[("locality", "remote")]).await,
        3.0
    );

    // Back on its data: once its skip is over, reads go to it again, and it reads the write
    // made while it was down once it has caught up.
    nodes.restart(local);
    let written = photos.set("k", "v2").await.unwrap();
    eventually(
        Duration::from_secs(20),
        "a read served by the restarted local replica",
        || async {
            let read = photos
                .get("k", Consistency::AtLeast(written.index))
                .await
                .unwrap();
            assert_eq!(read.value, b"v2");
            (nodes.gets_served(local).await >= 1.0).then_some(())
        },
    )
    .await;
    assert!(counter(&router, READS, &[("locality", "local")]).await > 2.0);
}
