//! Every API call, every consistency level and every error, through the client library against
//! three real `cairn shard-node` processes; and `/metrics` of each, checked by a parser.

mod support;

use std::ops::Bound;
use std::time::Duration;

use cairn_client::Error;
use cairn_wire::api::{ApiError, Consistency, KeyRange, Request, ShardId, Step, WriteOp};
use raft_core::LogIndex;
use support::{Cluster, SHARD, ns, scrape, serial};

fn api(e: Error) -> ApiError {
    match e {
        Error::Api(e) => e,
        other => panic!("expected a node error, got {other}"),
    }
}

fn range(start: Bound<&str>, end: Bound<&str>, max: Option<u32>) -> KeyRange {
    let conv = |b: Bound<&str>| match b {
        Bound::Included(k) => Bound::Included(k.as_bytes().to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.as_bytes().to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    };
    KeyRange {
        start: conv(start),
        end: conv(end),
        max,
    }
}

fn keys(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|k| k.as_bytes().to_vec()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_every_consistency_level_and_every_error() {
    let _serial = serial().await;
    let (cluster, client, leader) = Cluster::running(3).await;
    let kv = client.namespace(SHARD, ns("api"));
    use Consistency::{Any, AtLeast, Consistent};

    // Writes return the index they were applied at, increasing.
    let first = kv.set("a", "1").await.unwrap();
    let second = kv.set("b", "2").await.unwrap();
    assert!(second.index > first.index && first.index > LogIndex::ZERO);
    for k in ["c", "d", "e"] {
        kv.set(k, k.to_uppercase()).await.unwrap();
    }

    // Point reads.
    assert_eq!(kv.get("a", Consistent).await.unwrap().value, b"1");
    assert!(kv.exists("b", Consistent).await.unwrap().value);
    assert!(!kv.exists("zz", Consistent).await.unwrap().value);
    assert_eq!(
        api(kv.get("zz", Consistent).await.unwrap_err()),
        ApiError::NotFound {
            key: b"zz".to_vec()
        }
    );
    assert_eq!(
        kv.multi_get(["a", "b"], Consistent).await.unwrap().value,
        keys(&["1", "2"])
    );
    assert_eq!(
        api(kv
            .multi_get(["a", "nope", "zz"], Consistent)
            .await
            .unwrap_err()),
        ApiError::NotFound {
            key: b"nope".to_vec()
        },
        "multi_get names the first missing key"
    );
    assert_eq!(
        kv.multi_get_option(["a", "nope"], Consistent)
            .await
            .unwrap()
            .value,
        vec![Some(b"1".to_vec()), None]
    );

    // Ranges: inclusive and exclusive bounds, max, reverse order.
    let r = kv
        .range(
            range(Bound::Included("b"), Bound::Excluded("e"), None),
            Consistent,
        )
        .await
        .unwrap();
    assert_eq!(r.value, keys(&["b", "c", "d"]));
    let r = kv
        .range(
            range(Bound::Excluded("a"), Bound::Included("e"), Some(2)),
            Consistent,
        )
        .await
        .unwrap();
    assert_eq!(r.value, keys(&["b", "c"]));
    let r = kv
        .range_entries(
            range(Bound::Included("d"), Bound::Unbounded, None),
            Consistent,
        )
        .await
        .unwrap();
    assert_eq!(
        r.value,
        vec![
            (b"d".to_vec(), b"D".to_vec()),
            (b"e".to_vec(), b"E".to_vec())
        ]
    );
    let r = kv
        .rev_range_entries(
            range(Bound::Included("b"), Bound::Included("d"), Some(2)),
            Consistent,
        )
        .await
        .unwrap();
    assert_eq!(
        r.value,
        vec![
            (b"d".to_vec(), b"D".to_vec()),
            (b"c".to_vec(), b"C".to_vec())
        ]
    );

    // Prefixes and counts.
    for k in ["p/1", "p/2", "p/3", "q/1"] {
        kv.set(k, "x").await.unwrap();
    }
    assert_eq!(
        kv.prefix_keys("p/", None, Consistent).await.unwrap().value,
        keys(&["p/1", "p/2", "p/3"])
    );
    assert_eq!(
        kv.prefix_keys("p/", Some(2), Consistent)
            .await
            .unwrap()
            .value,
        keys(&["p/1", "p/2"])
    );
    assert_eq!(kv.count("p/", Consistent).await.unwrap().value, 3);
    assert_eq!(kv.count("", Consistent).await.unwrap().value, 9);

    // Compare-and-swap, replace, delete, delete-prefix.
    let swapped = kv
        .test_and_set("a", Some(b"1".to_vec()), Some(b"11".to_vec()))
        .await
        .unwrap();
    assert_eq!(
        swapped.value,
        Some(b"11".to_vec()),
        "returns the value after"
    );
    let refused = kv
        .test_and_set("a", Some(b"1".to_vec()), Some(b"12".to_vec()))
        .await
        .unwrap();
    assert_eq!(
        refused.value,
        Some(b"11".to_vec()),
        "a mismatch leaves the value"
    );
    let created = kv
        .test_and_set("new", None, Some(b"n".to_vec()))
        .await
        .unwrap();
    assert_eq!(created.value, Some(b"n".to_vec()));
    let previous = kv.replace("a", Some(b"13".to_vec())).await.unwrap();
    assert_eq!(
        previous.value,
        Some(b"11".to_vec()),
        "replace returns the value before"
    );
    let previous = kv.replace("new", None).await.unwrap();
    assert_eq!(previous.value, Some(b"n".to_vec()));
    assert!(!kv.exists("new", Consistent).await.unwrap().value);
    kv.delete("e").await.unwrap();
    assert_eq!(
        api(kv.delete("e").await.unwrap_err()),
        ApiError::NotFound { key: b"e".to_vec() }
    );
    assert_eq!(kv.delete_prefix("p/").await.unwrap().value, 3);
    assert_eq!(kv.count("p/", Consistent).await.unwrap().value, 0);

    // Sequences: all steps or none.
    let seq = kv
        .sequence(vec![
            Step::Assert {
                key: b"a".to_vec(),
                expected: Some(b"13".to_vec()),
            },
            Step::AssertExists { key: b"b".to_vec() },
            Step::Set {
                key: b"s/1".to_vec(),
                value: b"v".to_vec(),
            },
            Step::Set {
                key: b"s/2".to_vec(),
                value: b"v".to_vec(),
            },
            Step::AssertRange {
                prefix: b"s/".to_vec(),
                keys: keys(&["s/1", "s/2"]),
            },
            Step::TestAndSet {
                key: b"b".to_vec(),
                expected: Some(b"2".to_vec()),
                wanted: Some(b"22".to_vec()),
            },
            Step::Delete { key: b"c".to_vec() },
            Step::DeletePrefix {
                prefix: b"q/".to_vec(),
            },
        ])
        .await
        .unwrap();
    assert!(seq.index > LogIndex::ZERO);
    assert_eq!(kv.get("b", Consistent).await.unwrap().value, b"22");
    assert!(!kv.exists("c", Consistent).await.unwrap().value);
    assert!(!kv.exists("q/1", Consistent).await.unwrap().value);
    let failed = kv
        .sequence(vec![
            Step::Set {
                key: b"t".to_vec(),
                value: b"never".to_vec(),
            },
            Step::Assert {
                key: b"a".to_vec(),
                expected: None,
            },
        ])
        .await
        .unwrap_err();
    assert_eq!(
        api(failed),
        ApiError::AssertionFailed { key: b"a".to_vec() }
    );
    assert!(
        !kv.exists("t", Consistent).await.unwrap().value,
        "a failed sequence leaves no trace"
    );
    let failed = kv
        .sequence(vec![Step::AssertRange {
            prefix: b"s/".to_vec(),
            keys: keys(&["s/1"]),
        }])
        .await
        .unwrap_err();
    assert!(matches!(api(failed), ApiError::AssertionFailed { .. }));

    // nop is a barrier through the log; who_leader names the leader.
    let nop = kv.nop().await.unwrap();
    assert!(nop.index > seq.index);
    let hint = client.who_leader(SHARD).await.unwrap().expect("a leader");
    assert_eq!(hint.node.0, leader);
    assert_eq!(hint.addr, cluster.addr(leader).to_string());

    // Consistency levels at a follower: at_least(index of my write) and any answer there.
    let last = kv.set("ryw", "mine").await.unwrap();
    let follower = *cluster.nodes.keys().find(|id| **id != leader).unwrap();
    let at_follower = client.namespace_at(cluster.addr(follower), SHARD, ns("api"));
    let read = at_follower.get("ryw", AtLeast(last.index)).await.unwrap();
    assert_eq!(read.value, b"mine");
    assert!(read.applied >= last.index);
    let any = at_follower.get("a", Any).await.unwrap();
    assert_eq!(any.value, b"13");
    // A follower that has not applied the index says so.
    let far = LogIndex(last.index.0 + 1_000_000);
    match api(at_follower.get("ryw", AtLeast(far)).await.unwrap_err()) {
        ApiError::InconsistentRead { applied, required } => {
            assert_eq!(required, far);
            assert!(applied >= last.index);
        }
        other => panic!("expected InconsistentRead, got {other}"),
    }

    // A follower refuses writes and consistent reads with a hint to the leader.
    let write = Request::Write {
        shard: SHARD,
        namespace: ns("api"),
        epoch: None,
        op: WriteOp::Set {
            key: b"x".to_vec(),
            value: b"y".to_vec(),
        },
    };
    match client.request_to(cluster.addr(follower), write).await {
        Err(Error::Api(ApiError::NotLeader { leader: Some(hint) })) => {
            assert_eq!(hint.node.0, leader);
        }
        other => panic!("expected NotLeader with a hint, got {other:?}"),
    }
    match api(at_follower.get("a", Consistent).await.unwrap_err()) {
        ApiError::NotLeader { leader: Some(hint) } => assert_eq!(hint.node.0, leader),
        other => panic!("expected NotLeader, got {other}"),
    }

    // Limits and bad input.
    let huge = vec![7u8; 8 * 1024 * 1024 + 1];
    match api(kv.set("big", huge).await.unwrap_err()) {
        ApiError::TooLarge { what, size, max } => {
            assert_eq!(what, "value");
            assert_eq!(size, 8 * 1024 * 1024 + 1);
            assert_eq!(max, 8 * 1024 * 1024);
        }
        other => panic!("expected TooLarge, got {other}"),
    }
    let at_limit = vec![7u8; 8 * 1024 * 1024];
    kv.set("big", at_limit.clone()).await.unwrap();
    assert_eq!(kv.get("big", Consistent).await.unwrap().value, at_limit);
    assert!(matches!(
        api(kv.set("", "empty key").await.unwrap_err()),
        ApiError::InvalidArgument(_)
    ));
    let too_many: Vec<Step> = (0..10_001)
        .map(|i| Step::Set {
            key: format!("k{i}").into_bytes(),
            value: Vec::new(),
        })
        .collect();
    match api(kv.sequence(too_many).await.unwrap_err()) {
        ApiError::TooLarge { what, .. } => assert_eq!(what, "sequence"),
        other => panic!("expected TooLarge, got {other}"),
    }
    let elsewhere = client.namespace(ShardId(99), ns("api"));
    assert_eq!(
        api(elsewhere.get("a", Any).await.unwrap_err()),
        ApiError::UnknownShard(ShardId(99))
    );

    // Namespaces are separate key spaces.
    let other = client.namespace(SHARD, ns("api2"));
    assert!(!other.exists("a", Consistent).await.unwrap().value);
    other.set("a", "other").await.unwrap();
    assert_eq!(kv.get("a", Consistent).await.unwrap().value, b"13");

    // Status reports every replica; all converge on the same applied index.
    let target = kv.nop().await.unwrap().index;
    for node in cluster.nodes.values() {
        support::eventually(Duration::from_secs(10), "replicas to apply", || async {
            let status = client.status(node.addr).await.ok()?;
            (status[0].applied >= target).then_some(())
        })
        .await;
    }
}

/// Checks one exposition strictly enough to catch malformed output: every sample line is
/// `name{labels} value`, every family has a TYPE line before its samples, and the parser reads
/// the whole text.
fn check_exposition(text: &str) -> prometheus_parse::Scrape {
    let mut typed = std::collections::BTreeSet::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().expect("TYPE has a name");
            let kind = parts.next().expect("TYPE has a kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type in {line:?}"
            );
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if series.contains('{') {
            assert!(series.ends_with('}'), "unterminated labels in {line:?}");
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(
            typed.contains(family),
            "sample before its TYPE line: {line:?}"
        );
    }
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("the exposition parses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_every_process_are_valid_prometheus_text() {
    let _serial = serial().await;
    let (cluster, client, _) = Cluster::running(3).await;
    let kv = client.namespace(SHARD, ns("metrics"));
    for i in 0..20 {
        kv.set(format!("k{i}"), "v").await.unwrap();
    }
    kv.get("k1", Consistency::Consistent).await.unwrap();
    let _ = kv.get("missing", Consistency::Consistent).await;

    for node in cluster.nodes.values() {
        let text = scrape(node.metrics);
        let scrape = check_exposition(&text);
        let names: std::collections::BTreeSet<&str> =
            scrape.samples.iter().map(|s| s.metric.as_str()).collect();
        for wanted in [
            "cairn_raft_term",
            "cairn_raft_leader",
            "cairn_raft_commit_index",
            "cairn_raft_applied_index",
            "cairn_raft_leader_changes_total",
            "cairn_storage_fsync_seconds",
            "cairn_storage_batch_entries",
            "cairn_transport_sent_bytes_total",
        ] {
            assert!(names.contains(wanted), "node {}: {wanted} missing", node.id);
        }
        let applied = scrape
            .samples
            .iter()
            .find(|s| s.metric == "cairn_raft_applied_index")
            .unwrap();
        match applied.value {
            prometheus_parse::Value::Gauge(v) => assert!(v >= 20.0, "applied {v}"),
            ref other => panic!("applied index is not a gauge: {other:?}"),
        }
    }
    // The leader served the requests: counts by op and outcome, latency histograms.
    let leader = cluster.leader(&client).await.unwrap();
    let text = scrape(cluster.nodes[&leader].metrics);
    let scrape = check_exposition(&text);
    let sets = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "cairn_requests_total"
                && s.labels.get("op") == Some("set")
                && s.labels.get("outcome") == Some("ok")
        })
        .expect("set requests counted");
    match sets.value {
        prometheus_parse::Value::Counter(v) => assert!(v >= 20.0),
        ref other => panic!("not a counter: {other:?}"),
    }
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "cairn_request_duration_seconds"
                && s.labels.get("outcome") == Some("not_found"))
    );
}
