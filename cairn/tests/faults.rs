//! Faults with real processes: `kill -9` of the leader under load, a full-cluster restart, a
//! replica left alone, and a leader frozen (SIGSTOP) while the others move on.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_client::{Client, ClientConfig, Error};
use cairn_wire::api::{ApiError, Consistency, Request, WriteOp};
use support::{Cluster, SHARD, eventually, ns, serial};

/// What happened to each write of the load: acknowledged, certainly not applied, or unknown.
#[derive(Default)]
struct Ledger {
    acked: BTreeMap<String, String>,
    refused: Vec<String>,
    unknown: Vec<String>,
}

async fn write_load(
    client: Client,
    writer: usize,
    stop: Arc<Mutex<bool>>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let kv = client.namespace(SHARD, ns("load"));
    let mut i = 0u64;
    while !*stop.lock().unwrap() {
        let key = format!("w{writer}-{i:06}");
        let value = format!("v{i}");
        let result = kv.set(key.clone(), value.clone()).await;
        let mut ledger = ledger.lock().unwrap();
        match result {
            Ok(_) => {
                ledger.acked.insert(key, value);
            }
            Err(e) if e.is_ambiguous() => ledger.unknown.push(key),
            Err(_) => ledger.refused.push(key),
        }
        i += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    let _serial = serial().await;
    let (mut cluster, client, leader) = Cluster::running(3).await;

    let stop = Arc::new(Mutex::new(false));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let writers: Vec<_> = (0..8)
        .map(|w| tokio::spawn(write_load(client.clone(), w, stop.clone(), ledger.clone())))
        .collect();
    eventually(
        Duration::from_secs(30),
        "300 acknowledged writes",
        || async { (ledger.lock().unwrap().acked.len() >= 300).then_some(()) },
    )
    .await;

    cluster.kill(leader);
    let killed_at = Instant::now();
    let acked_at_kill = ledger.lock().unwrap().acked.len();
    // A new leader serves: a client of the survivors gets a write through the log.
    let survivors = Client::new(ClientConfig::new(
        cluster
            .nodes
            .values()
            .filter(|n| n.id != leader)
            .map(|n| n.addr)
            .collect(),
        cluster.identity(),
    ))
    .unwrap();
    let probe = survivors.namespace(SHARD, ns("probe"));
    eventually(Duration::from_secs(15), "a new leader to serve", || async {
        probe.nop().await.ok()
    })
    .await;
    let served = killed_at.elapsed();
    let new_leader = cluster.leader(&client).await.expect("a new leader");
    assert_ne!(new_leader, leader);
    // Election timeout is 10 ticks of 50 ms (0.5 to 1 s): "a few election timeouts" is 5 s.
    assert!(
        served < Duration::from_secs(5),
        "a new leader served only after {served:?}"
    );
    // The load's own client notices the dead leader (idle timeout 3 s), then finds the new one.
    eventually(Duration::from_secs(15), "the load to resume", || async {
        (ledger.lock().unwrap().acked.len() >= acked_at_kill + 100).then_some(())
    })
    .await;
    eprintln!(
        "node {new_leader} served {served:?} after killing leader {leader}; the load resumed after {:?}",
        killed_at.elapsed()
    );

    *stop.lock().unwrap() = true;
    for w in writers {
        w.await.unwrap();
    }
    cluster.start_node(leader);

    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    let kv = client.namespace(SHARD, ns("load"));
    eprintln!(
        "{} acknowledged, {} refused, {} unknown",
        ledger.acked.len(),
        ledger.refused.len(),
        ledger.unknown.len()
    );
    // Every acknowledged write is there with its value…
    let keys: Vec<&String> = ledger.acked.keys().collect();
    for chunk in keys.chunks(500) {
        let values = kv
            .multi_get_option(chunk.iter().map(|k| k.as_str()), Consistency::Consistent)
            .await
            .unwrap()
            .value;
        for (key, value) in chunk.iter().zip(values) {
            assert_eq!(
                value.as_deref(),
                Some(ledger.acked[*key].as_bytes()),
                "acknowledged write {key} lost"
            );
        }
    }
    // …and no write that was refused as "certainly not applied" is.
    for chunk in ledger.refused.chunks(500) {
        let values = kv
            .multi_get_option(chunk.iter().map(String::as_str), Consistency::Consistent)
            .await
            .unwrap()
            .value;
        for (key, value) in chunk.iter().zip(values) {
            assert!(value.is_none(), "refused write {key} was applied");
        }
    }
    // The restarted node catches up to the same state.
    let count = kv.count("", Consistency::Consistent).await.unwrap();
    let at_old = client.namespace_at(cluster.addr(leader), SHARD, ns("load"));
    eventually(
        Duration::from_secs(20),
        "the old leader to catch up",
        || async {
            let c = at_old
                .count("", Consistency::AtLeast(count.applied))
                .await
                .ok()?;
            (c.value == count.value).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cluster_restart_keeps_every_acknowledged_write() {
    let _serial = serial().await;
    let (mut cluster, client, _) = Cluster::running(3).await;
    let kv = client.namespace(SHARD, ns("restart"));
    let mut last = None;
    for i in 0..200 {
        last = Some(
            kv.set(format!("k{i:03}"), format!("v{i}"))
                .await
                .unwrap()
                .index,
        );
    }
    let last = last.unwrap();
    for id in [1, 2, 3] {
        cluster.kill(id);
    }
    for id in [1, 2, 3] {
        cluster.start_node(id);
    }
    let client = cluster.client();
    cluster
        .wait_for_leader(&client, Duration::from_secs(30))
        .await;
    let kv = client.namespace(SHARD, ns("restart"));
    let entries = kv
        .range_entries(cairn_wire::api::KeyRange::all(), Consistency::Consistent)
        .await
        .unwrap();
    assert!(entries.applied >= last);
    assert_eq!(entries.value.len(), 200);
    for (i, (k, v)) in entries.value.iter().enumerate() {
        assert_eq!(k, format!("k{i:03}").as_bytes());
        assert_eq!(v, format!("v{i}").as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_replica_fails_writes_fast_and_still_serves_any_reads() {
    let _serial = serial().await;
    let (mut cluster, client, leader) = Cluster::running(3).await;
    let kv = client.namespace(SHARD, ns("alone"));
    kv.set("k", "v1").await.unwrap();
    let written = kv.set("k", "v2").await.unwrap();

    // Leave one replica alone: the former leader, so that it starts out believing it leads.
    let survivor = leader;
    for id in [1, 2, 3].into_iter().filter(|id| *id != survivor) {
        cluster.kill(id);
    }
    // A client that knows only the survivor, with a short deadline.
    let lone = Client::new(
        ClientConfig::new(vec![cluster.addr(survivor)], cluster.identity())
            .with_request_timeout_ms(3_000),
    )
    .unwrap();
    let at_survivor = lone.namespace(SHARD, ns("alone"));

    // The node's bound: commit_timeout_ms (1.5 s here). Every write is refused with NoQuorum
    // within it; the client surfaces NoQuorum within its own deadline.
    for attempt in 0..3 {
        let started = Instant::now();
        let request = Request::Write {
            shard: SHARD,
            namespace: ns("alone"),
            epoch: None,
            op: WriteOp::Set {
                key: b"k".to_vec(),
                value: format!("lost{attempt}").into_bytes(),
            },
        };
        let answer = lone.request_to(cluster.addr(survivor), request).await;
        let took = started.elapsed();
        assert!(
            matches!(answer, Err(Error::Api(ApiError::NoQuorum { .. }))),
            "attempt {attempt}: expected NoQuorum, got {answer:?}"
        );
        assert!(
            took < Duration::from_millis(2_500),
            "NoQuorum took {took:?}"
        );

        let started = Instant::now();
        let err = at_survivor.set("k", "lost").await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err, Error::Api(ApiError::NoQuorum { .. })),
            "client: expected NoQuorum, got {err}"
        );
        assert!(
            took < Duration::from_millis(4_000),
            "client NoQuorum took {took:?}"
        );
    }

    // `any` reads still answer, with the last committed value.
    let read = at_survivor.get("k", Consistency::Any).await.unwrap();
    assert_eq!(read.value, b"v2");
    assert!(read.applied >= written.index);
    let read = at_survivor
        .get("k", Consistency::AtLeast(written.index))
        .await
        .unwrap();
    assert_eq!(read.value, b"v2");

    // Consistent reads never answer from a replica that cannot prove it leads.
    let err = at_survivor
        .get("k", Consistency::Consistent)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Api(ApiError::NoQuorum { .. } | ApiError::NotLeader { .. })
                | Error::Unavailable { .. }
        ),
        "consistent read on a lone replica: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_never_serves_a_stale_consistent_read() {
    let _serial = serial().await;
    let (mut cluster, client, old) = Cluster::running(3).await;
    let kv = client.namespace(SHARD, ns("stale"));
    kv.set("k", "old").await.unwrap();
    // Warm the old leader's lease: a consistent read right before it freezes.
    let at_old = client.namespace_at(cluster.addr(old), SHARD, ns("stale"));
    assert_eq!(
        at_old
            .get("k", Consistency::Consistent)
            .await
            .unwrap()
            .value,
        b"old"
    );

    cluster.pause(old);
    // The others elect a new leader and change the value.
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != old).collect();
    let rest = Client::new(ClientConfig::new(
        others.iter().map(|id| cluster.addr(*id)).collect(),
        cluster.identity(),
    ))
    .unwrap();
    let kv_rest = rest.namespace(SHARD, ns("stale"));
    let written = eventually(
        Duration::from_secs(20),
        "a write through the new leader",
        || async { kv_rest.set("k", "new").await.ok() },
    )
    .await;

    // Thaw the old leader and ask it at once: it must not answer "old".
    cluster.resume(old);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut answers = BTreeMap::new();
    while Instant::now() < deadline {
        let outcome = match at_old.get("k", Consistency::Consistent).await {
            Ok(read) => String::from_utf8(read.value).unwrap(),
            Err(e) => format!("error: {}", e.to_string().split(':').next().unwrap()),
        };
        assert_ne!(
            outcome, "old",
            "stale consistent read from the thawed leader"
        );
        *answers.entry(outcome).or_insert(0) += 1;
    }
    eprintln!("answers from the thawed leader: {answers:?}");
    // And it catches up.
    let read = eventually(
        Duration::from_secs(10),
        "the old leader to catch up",
        || async {
            at_old
                .get("k", Consistency::AtLeast(written.index))
                .await
                .ok()
        },
    )
    .await;
    assert_eq!(read.value, b"new");
}

/// Scrapes one counter or gauge value (summed over labels).
fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    let text = support::scrape(addr);
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_group_stops_ticking_and_wakes_for_writes_and_failures() {
    let _serial = serial().await;
    let (mut cluster, client, leader) = Cluster::running(3).await;
    let kv = client.namespace(SHARD, ns("idle"));
    kv.set("k", "v1").await.unwrap();

    // Idle: every replica quiesces (20 ticks of 50 ms without client activity).
    for node in cluster.nodes.values() {
        eventually(Duration::from_secs(10), "the group to quiesce", || async {
            let status = client.status(node.addr).await.ok()?;
            status[0].quiesced.then_some(())
        })
        .await;
    }
    // A quiesced group costs no tick: the tick counters stand still.
    let before: Vec<f64> = cluster
        .nodes
        .values()
        .map(|n| metric(n.metrics, "cairn_raft_group_ticks_total"))
        .collect();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after: Vec<f64> = cluster
        .nodes
        .values()
        .map(|n| metric(n.metrics, "cairn_raft_group_ticks_total"))
        .collect();
    assert_eq!(before, after, "quiesced groups were ticked");

    // A write wakes it and succeeds; a consistent read after a long sleep is still right.
    kv.set("k", "v2").await.unwrap();
    assert_eq!(
        kv.get("k", Consistency::Consistent).await.unwrap().value,
        b"v2"
    );

    // Quiesce again, then kill the leader: the followers notice its host went silent, wake,
    // and elect a new leader.
    for node in cluster.nodes.values() {
        eventually(
            Duration::from_secs(10),
            "the group to quiesce again",
            || async {
                let status = client.status(node.addr).await.ok()?;
                status[0].quiesced.then_some(())
            },
        )
        .await;
    }
    cluster.kill(leader);
    let started = Instant::now();
    let others: Vec<std::net::SocketAddr> = cluster
        .nodes
        .values()
        .filter(|n| n.id != leader)
        .map(|n| n.addr)
        .collect();
    let new_leader = eventually(Duration::from_secs(15), "a new leader", || async {
        for addr in &others {
            let status = client.status(*addr).await.ok()?;
            if status[0].role == raft_core::Role::Leader {
                return Some(status[0].node);
            }
        }
        None
    })
    .await;
    eprintln!(
        "node {} leads {:?} after the kill",
        new_leader.0,
        started.elapsed()
    );
    let rest = Client::new(ClientConfig::new(others, cluster.identity())).unwrap();
    let read = rest
        .namespace(SHARD, ns("idle"))
        .get("k", Consistency::Consistent)
        .await
        .unwrap();
    assert_eq!(read.value, b"v2");
}

/// A quiesced leader whose followers fall silent wakes and steps down (check-quorum) instead of
/// calling itself leader, in its status and its metrics, for as long as it is cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiesced_leader_cut_off_from_its_majority_steps_down() {
    let _serial = serial().await;
    let (mut cluster, client, leader) = Cluster::running(3).await;
    client
        .namespace(SHARD, ns("idle"))
        .set("k", "v")
        .await
        .unwrap();
    for node in cluster.nodes.values() {
        eventually(Duration::from_secs(10), "the group to quiesce", || async {
            let status = client.status(node.addr).await.ok()?;
            status[0].quiesced.then_some(())
        })
        .await;
    }
    let followers: Vec<u64> = cluster
        .nodes
        .keys()
        .copied()
        .filter(|id| *id != leader)
        .collect();
    for id in &followers {
        cluster.pause(*id);
    }
    let addr = cluster.addr(leader);
    let metrics = cluster.nodes[&leader].metrics;
    let started = Instant::now();
    eventually(
        Duration::from_secs(10),
        "the cut-off leader to step down",
        || async {
            let status = client.status(addr).await.ok()?;
            let is_leader = support::scrape(metrics)
                .lines()
                .find(|l| l.starts_with(&format!("cairn_raft_is_leader{{shard=\"{}\"}}", SHARD.0)))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
            (status[0].role != raft_core::Role::Leader && is_leader == Some(0.0)).then_some(())
        },
    )
    .await;
    eprintln!("stepped down {:?} after the cut", started.elapsed());
    for id in &followers {
        cluster.resume(*id);
    }
}
