//! A replica that was down while the log moved on and was compacted catches up by snapshot, and
//! ends with exactly the leader's state.

mod support;

use std::time::Duration;

use cairn_client::Client;
use cairn_wire::api::{Consistency, KeyRange};
use raft_core::LogIndex;
use support::{Cluster, SHARD, eventually, ns, serial};

/// A digest of every key and value of the namespaces, as one replica serves them.
async fn digest(client: &Client, addr: std::net::SocketAddr, at: LogIndex) -> (u64, String) {
    let mut hasher = blake3::Hasher::new();
    let mut pairs = 0;
    for name in ["bulk", "probe"] {
        let kv = client.namespace_at(addr, SHARD, ns(name));
        let entries = kv
            .range_entries(KeyRange::all(), Consistency::AtLeast(at))
            .await
            .unwrap()
            .value;
        hasher.update(name.as_bytes());
        for (k, v) in &entries {
            hasher.update(&(k.len() as u64).to_be_bytes());
            hasher.update(k);
            hasher.update(&(v.len() as u64).to_be_bytes());
            hasher.update(v);
        }
        pairs += entries.len() as u64;
    }
    (pairs, hasher.finalize().to_hex().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_down_during_compaction_catches_up_by_snapshot() {
    let _serial = serial().await;
    let (mut cluster, client, leader) = Cluster::running(3).await;
    let lagging = *cluster.nodes.keys().find(|id| **id != leader).unwrap();
    let kv = client.namespace(SHARD, ns("bulk"));
    kv.set("before", "the crash").await.unwrap();
    cluster.kill(lagging);

    // 10,000 entries while it is down: 32 writers, each entry one key.
    let mut tasks = Vec::new();
    for w in 0..32u32 {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            let mut last = LogIndex::ZERO;
            for i in 0..(10_000 / 32 + 1) {
                let n = w * 1_000 + i;
                let written = kv
                    .set(
                        format!("key-{n:06}"),
                        format!("value-{n}-{}", "x".repeat(64)),
                    )
                    .await
                    .unwrap();
                last = last.max(written.index);
            }
            last
        }));
    }
    let mut last = LogIndex::ZERO;
    for t in tasks {
        last = last.max(t.await.unwrap());
    }
    kv.delete("before").await.unwrap();
    let last = kv.nop().await.unwrap().index;
    assert!(last.0 >= 10_000, "only {} entries", last.0);

    // Compact the log on the two live replicas, past everything the lagging one has.
    for id in cluster.nodes.keys().copied().filter(|id| *id != lagging) {
        let compacted = client.compact_log(cluster.addr(id), SHARD).await.unwrap();
        assert!(
            compacted.0 >= 10_000,
            "node {id} compacted only to {}",
            compacted.0
        );
    }

    cluster.start_node(lagging);
    let status = eventually(
        Duration::from_secs(60),
        "the lagging replica to catch up",
        || async {
            let status = client.status(cluster.addr(lagging)).await.ok()?;
            let s = status.into_iter().find(|s| s.shard == SHARD)?;
            (s.applied >= last).then_some(s)
        },
    )
    .await;
    // Its log starts after the snapshot point: it did not replay the compacted entries.
    assert!(
        status.first_index.0 > 10_000,
        "caught up from the log? first index {}",
        status.first_index.0
    );
    assert!(cluster.log(lagging).contains("installing snapshot"));

    let leader_now = cluster.leader(&client).await.unwrap();
    let (pairs, leader_digest) = digest(&client, cluster.addr(leader_now), last).await;
    let (lag_pairs, lag_digest) = digest(&client, cluster.addr(lagging), last).await;
    assert!(pairs >= 10_000);
    assert_eq!((lag_pairs, lag_digest), (pairs, leader_digest));

    // And it keeps following: a new write reaches it through the log.
    let after = kv.set("after", "snapshot").await.unwrap();
    let at_lagging = client.namespace_at(cluster.addr(lagging), SHARD, ns("bulk"));
    let read = eventually(Duration::from_secs(10), "the next write", || async {
        at_lagging
            .get("after", Consistency::AtLeast(after.index))
            .await
            .ok()
    })
    .await;
    assert_eq!(read.value, b"snapshot");
}
