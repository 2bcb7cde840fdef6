//! The platform end to end, as real processes: 3 managers, 4 shard-node hosts and a router.
//! Namespaces are created through the managers, which add shards automatically; manifests go
//! through the router.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cairn_client::{Client, Error};
use cairn_wire::api::{
    ApiError, Consistency, Epoch, Namespace, ReadOp, ReadResult, Request, ShardId, WriteOp,
};
use cairn_wire::catalog::{
    LeaderPreference, ManagerRequest, ManagerResponse, NamespaceInfo, ShardState,
};
use cairn_wire::manifest::{
    Checksum, ChecksumAlgorithm, Chunk, Compression, FragmentLocation, Manifest, PutMode,
    StorageScheme,
};
use support::platform::{Platform, Shape};
use support::{eventually, ns, scrape, serial};

fn manifest(name: &str, id: &str, size: u64) -> Manifest {
    let fragment = |len: u32| {
        Some(FragmentLocation {
            device_id: 3,
            version: 1,
            checksum: Checksum {
                algorithm: ChecksumAlgorithm::Crc32c,
                digest: vec![9, 9, 9, 9],
            },
            length_bytes: len,
        })
    };
    let half = size.div_ceil(2) as u32;
    Manifest {
        name: name.into(),
        object_id: id.as_bytes().to_vec(),
        size_bytes: size,
        checksum: Checksum::none(),
        scheme: StorageScheme {
            data_fragments: 2,
            parity_fragments: 1,
            fragment_size_bytes: half.max(1),
            compression: Compression::None,
            encrypted: false,
        },
        chunks: vec![Chunk {
            length_bytes: size,
            fragments: vec![fragment(half), fragment(half), fragment(half)],
        }],
        version: 1,
        timestamp_ms: 1_700_000_000_000,
    }
}

async fn create(client: &Client, name: &str) -> Result<NamespaceInfo, Error> {
    match Platform::ask(
        client,
        ManagerRequest::CreateNamespace {
            name: ns(name),
            home_site: None,
            placement: None,
        },
    )
    .await?
    {
        ManagerResponse::Namespace(info) => Ok(info),
        other => panic!("create answered {other:?}"),
    }
}

async fn shards(client: &Client) -> Vec<cairn_wire::catalog::ShardInfo> {
    match Platform::ask(client, ManagerRequest::ListShards)
        .await
        .unwrap()
    {
        ManagerResponse::Shards(list) => list,
        other => panic!("{other:?}"),
    }
}

async fn namespaces(client: &Client) -> Vec<NamespaceInfo> {
    match Platform::ask(client, ManagerRequest::ListNamespaces)
        .await
        .unwrap()
    {
        ManagerResponse::Namespaces(list) => list,
        other => panic!("{other:?}"),
    }
}

/// The value of a counter or gauge (summed over its label sets) in a scrape.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Checks that the catalog and the hosts agree: every replica a host holds belongs to a shard
/// the catalog places there and the other way round (no orphan, no duplicate), and every
/// namespace name appears once.
async fn check_consistent(platform: &Platform, managers: &Client) {
    let shards = shards(managers).await;
    let mut placed: BTreeSet<(u64, ShardId)> = BTreeSet::new();
    for shard in &shards {
        assert_eq!(shard.state, ShardState::Active, "{shard:?}");
        let distinct: BTreeSet<_> = shard.replicas.iter().map(|r| r.node).collect();
        assert_eq!(distinct.len(), shard.replicas.len(), "{shard:?}");
        for r in &shard.replicas {
            placed.insert((r.node.0, shard.id));
        }
    }
    let hosts = platform.host_client();
    let mut held = BTreeSet::new();
    for (id, p) in &platform.hosts {
        for status in hosts.status(p.addr).await.unwrap() {
            held.insert((*id, status.shard));
        }
    }
    assert_eq!(held, placed, "replicas on hosts vs the catalog's placement");
    let list = namespaces(managers).await;
    let names: BTreeSet<_> = list.iter().map(|n| n.name.clone()).collect();
    assert_eq!(names.len(), list.len(), "a namespace is listed twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn namespaces_fill_shards_the_router_serves_manifests_and_deletes_free_names() {
    let _serial = serial().await;
    let mut platform = Platform::start(Shape::default());
    let managers = platform.manager_client();
    platform.wait_ready(&managers).await;

    // 1. 175 namespaces at capacity 50: exactly 4 shards, none over 50.
    let mut tasks = Vec::new();
    for batch in 0..5 {
        let managers = managers.clone();
        tasks.push(tokio::spawn(async move {
            for i in (batch..175).step_by(5) {
                create(&managers, &format!("ns-{i:03}")).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let list = shards(&managers).await;
    println!(
        "shards: {:?}",
        list.iter()
            .map(|s| (s.id.0, s.namespaces))
            .collect::<Vec<_>>()
    );
    assert_eq!(list.len(), 4, "{list:?}");
    assert!(list.iter().all(|s| s.namespaces <= 50), "{list:?}");
    assert_eq!(list.iter().map(|s| s.namespaces).sum::<u32>(), 175);
    check_consistent(&platform, &managers).await;

    // A manifest in every namespace, read back through the router.
    let router = platform.router_client();
    for i in 0..175 {
        let space = router.routed(ns(&format!("ns-{i:03}")));
        space
            .write(WriteOp::PutManifest {
                manifest: manifest("obj", &format!("id-{i}"), 1000 + i),
                mode: PutMode::MustNotExist,
            })
            .await
            .unwrap();
    }
    for i in 0..175 {
        let space = router.routed(ns(&format!("ns-{i:03}")));
        let read = space
            .read(
                ReadOp::GetManifests {
                    names: vec!["obj".into()],
                },
                Consistency::Consistent,
            )
            .await
            .unwrap();
        match read.value {
            ReadResult::Manifests(found) => {
                let m = found[0].as_ref().expect("the manifest");
                assert_eq!(m.object_id, format!("id-{i}").into_bytes());
                assert_eq!(m.size_bytes, 1000 + i);
            }
            other => panic!("{other:?}"),
        }
    }

    // 3. Router restart: caches rebuilt from the watch; repeated reads cost no manager lookup.
    platform.restart_router();
    let router = platform.router_client();
    let space = router.routed(ns("ns-007"));
    let get = ReadOp::GetManifests {
        names: vec!["obj".into()],
    };
    eventually(
        Duration::from_secs(20),
        "the restarted router serving",
        || async { space.read(get.clone(), Consistency::Consistent).await.ok() },
    )
    .await;
    // One lookup the cache cannot answer, so that the counter is known to count.
    let unknown = router
        .routed(ns("no-such-namespace"))
        .read(get.clone(), Consistency::Any)
        .await;
    assert!(
        matches!(unknown, Err(Error::Api(ApiError::UnknownNamespace(_)))),
        "{unknown:?}"
    );
    let before = metric(
        &scrape(platform.router.metrics),
        "cairn_router_manager_lookups_total",
    );
    assert!(
        before >= 1.0,
        "the miss was not counted as a manager lookup"
    );
    for _ in 0..50 {
        space
            .read(get.clone(), Consistency::Consistent)
            .await
            .unwrap();
        space.read(get.clone(), Consistency::Any).await.unwrap();
    }
    let text = scrape(platform.router.metrics);
    let after = metric(&text, "cairn_router_manager_lookups_total");
    println!(
        "manager lookups before {before}, after 100 reads {after}; routes cached {}",
        metric(&text, "cairn_router_routes")
    );
    assert_eq!(
        before, after,
        "repeated reads looked the namespace up again"
    );
    assert!(metric(&text, "cairn_router_routes") >= 175.0);

    // 4. Delete: the data goes from the shard, and the name can be created again.
    let victim = namespaces(&managers)
        .await
        .into_iter()
        .find(|n| n.name == ns("ns-042"))
        .unwrap();
    let direct = platform.host_client();
    let on_shard = direct
        .namespace(victim.shard, victim.name.clone())
        .with_epoch(victim.epoch);
    on_shard
        .write(WriteOp::Set {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        })
        .await
        .unwrap();
    Platform::ask(
        &managers,
        ManagerRequest::DeleteNamespace { name: ns("ns-042") },
    )
    .await
    .unwrap();
    // The shard no longer serves it at its old epoch, and its data is gone.
    match on_shard
        .read(ReadOp::Count { prefix: vec![] }, Consistency::Consistent)
        .await
    {
        Err(Error::Api(ApiError::WrongShard { epoch: None, .. })) => {}
        other => panic!("expected WrongShard after the delete, got {other:?}"),
    }
    let again = create(&managers, "ns-042").await.unwrap();
    assert!(again.epoch > victim.epoch);
    assert_ne!(again.id, victim.id);
    let fresh = direct
        .namespace(again.shard, again.name.clone())
        .with_epoch(again.epoch);
    let count = fresh
        .read(ReadOp::Count { prefix: vec![] }, Consistency::Consistent)
        .await
        .unwrap();
    assert_eq!(
        count.value,
        ReadResult::Count(0),
        "data survived the delete"
    );
    let stats = router
        .routed(ns("ns-042"))
        .read(ReadOp::NamespaceStats, Consistency::Consistent)
        .await
        .unwrap();
    match stats.value {
        ReadResult::Stats(s) => assert_eq!(s.objects, 0, "manifests survived the delete"),
        other => panic!("{other:?}"),
    }

    // 5. Clear errors.
    assert!(Namespace::new("bad name!").is_err());
    let bad = managers
        .request(Request::Manager(ManagerRequest::ShowNamespace {
            name: ns("no-such-namespace"),
        }))
        .await;
    assert!(
        matches!(bad, Err(Error::Api(ApiError::UnknownNamespace(_)))),
        "{bad:?}"
    );
    match create(&managers, "ns-001").await {
        Err(Error::Api(ApiError::NamespaceExists(_))) => {}
        other => panic!("expected NamespaceExists, got {other:?}"),
    }
    let unknown = router
        .routed(ns("no-such-namespace"))
        .read(get.clone(), Consistency::Any)
        .await;
    assert!(
        matches!(unknown, Err(Error::Api(ApiError::UnknownNamespace(_)))),
        "{unknown:?}"
    );
    let mut invalid = manifest("obj2", "id", 100);
    invalid.size_bytes = 99;
    let refused = router
        .routed(ns("ns-001"))
        .write(WriteOp::PutManifest {
            manifest: invalid,
            mode: PutMode::Unconditional,
        })
        .await;
    match refused {
        Err(Error::Api(ApiError::InvalidManifest(reason))) => {
            println!("invalid manifest: {reason}");
            assert!(reason.contains("add up"), "{reason}");
        }
        other => panic!("expected InvalidManifest, got {other:?}"),
    }
    let mut huge = manifest("obj3", "id", 100);
    huge.chunks[0].fragments[0] = huge.chunks[0].fragments[1].clone();
    huge.name = "x".repeat(1000);
    let mut big = huge.clone();
    big.chunks = (0..20_000).map(|_| huge.chunks[0].clone()).collect();
    big.size_bytes = 100 * 20_000;
    let refused = router
        .routed(ns("ns-001"))
        .write(WriteOp::PutManifest {
            manifest: big,
            mode: PutMode::Unconditional,
        })
        .await;
    assert!(
        matches!(&refused, Err(Error::Api(ApiError::TooLarge { what, .. })) if what == "manifest"),
        "{refused:?}"
    );
    // A stale epoch straight at the shard.
    let current = namespaces(&managers)
        .await
        .into_iter()
        .find(|n| n.name == ns("ns-042"))
        .unwrap();
    let stale = direct
        .namespace(current.shard, current.name.clone())
        .with_epoch(Epoch(current.epoch.0 - 1))
        .read(ReadOp::NamespaceStats, Consistency::Consistent)
        .await;
    match stale {
        Err(Error::Api(e @ ApiError::WrongShard { .. })) => {
            println!("stale epoch: {e}");
            assert!(
                matches!(e, ApiError::WrongShard { epoch: Some(epoch), .. } if epoch == current.epoch)
            );
        }
        other => panic!("expected WrongShard, got {other:?}"),
    }
    // A client certificate may not drop a namespace itself.
    let forbidden = direct
        .namespace(current.shard, current.name.clone())
        .with_epoch(current.epoch)
        .write(WriteOp::DropNamespace)
        .await;
    assert!(
        matches!(forbidden, Err(Error::Api(ApiError::NotAuthorized(_)))),
        "{forbidden:?}"
    );
    check_consistent(&platform, &managers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_manager_leader_during_a_creation_storm_loses_and_duplicates_nothing() {
    let _serial = serial().await;
    let mut platform = Platform::start(Shape {
        namespaces_per_shard: 10,
        ..Shape::default()
    });
    let managers = platform.manager_client();
    platform.wait_ready(&managers).await;
    create(&managers, "warm-up").await.unwrap();

    // Eight writers create 120 namespaces; the leader is killed a moment in.
    let mut tasks = Vec::new();
    for w in 0..8 {
        let managers = managers.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = BTreeMap::new();
            for i in (w..120).step_by(8) {
                let name = format!("storm-{i:03}");
                // Retry what failed: an unknown outcome may have created it (then the retry
                // says it exists), and a manager that is not the leader yet refuses.
                let mut attempts = 0;
                let outcome = loop {
                    attempts += 1;
                    match create(&managers, &name).await {
                        Ok(_) => break "created",
                        Err(Error::Api(ApiError::NamespaceExists(_))) if attempts > 1 => {
                            break "existed after a retry";
                        }
                        Err(e) if attempts < 20 => {
                            tracing_free_log(&name, &e);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => panic!("{name}: {e}"),
                    }
                };
                *outcomes.entry(outcome).or_insert(0) += 1;
            }
            outcomes
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let leader = platform.manager_leader().expect("a manager leads");
    println!("killing manager leader {leader}");
    platform.kill_manager(leader);
    let mut totals: BTreeMap<&str, u32> = BTreeMap::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *totals.entry(k).or_default() += v;
        }
    }
    println!("outcomes: {totals:?}");
    let new_leader = platform.manager_leader().expect("a new manager leads");
    assert_ne!(new_leader, leader);

    // Every namespace exactly once, all active, no shard over capacity, hosts agree.
    let list = namespaces(&managers).await;
    let storm: BTreeSet<String> = list
        .iter()
        .filter(|n| n.name.as_str().starts_with("storm-"))
        .map(|n| n.name.as_str().to_owned())
        .collect();
    assert_eq!(storm.len(), 120);
    assert!(
        list.iter()
            .all(|n| n.state == cairn_wire::catalog::NamespaceState::Active),
        "{list:?}"
    );
    let list = shards(&managers).await;
    assert!(list.iter().all(|s| s.namespaces <= 10), "{list:?}");
    assert_eq!(list.len(), 13, "121 namespaces at 10 per shard: {list:?}");
    check_consistent(&platform, &managers).await;

    // Creation resumes under the new leader, and the old one can come back.
    platform.start_manager(leader);
    create(&managers, "after-the-storm").await.unwrap();
    check_consistent(&platform, &managers).await;
}

fn tracing_free_log(name: &str, e: &Error) {
    println!("{name}: retrying after {e}");
}

/// Runs `cairn` with the platform's cluster file; returns (exit code, stdout, stderr).
fn cli(platform: &Platform, args: &[&str]) -> (i32, String, String) {
    let certs = platform.dir.path().join("certs");
    let cluster = platform.dir.path().join("cluster.toml");
    if !cluster.exists() {
        let list = |addrs: Vec<String>| {
            addrs
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        std::fs::write(
            &cluster,
            format!(
                "managers = [{}]\nrouters = [\"{}\"]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                list(
                    platform
                        .managers
                        .values()
                        .map(|p| p.addr.to_string())
                        .collect()
                ),
                platform.router.addr,
                certs.join("ca.pem").display(),
                certs.join("client.pem").display(),
                certs.join("client.key").display(),
            ),
        )
        .unwrap();
    }
    let out = std::process::Command::new(support::CAIRN)
        .args(args)
        .env("CAIRN_CLUSTER", &cluster)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_manages_namespaces_and_manifests_on_a_live_platform() {
    let _serial = serial().await;
    let mut platform = Platform::start(Shape {
        namespaces_per_shard: 2,
        host_sites: vec!["dc1", "dc2", "dc1", "dc2"],
        ..Shape::default()
    });
    let managers = platform.manager_client();
    platform.wait_ready(&managers).await;
    let ok = |args: &[&str]| {
        let (code, out, err) = cli(&platform, args);
        assert_eq!(code, 0, "cairn {args:?}: {out}{err}");
        out
    };
    for name in ["photos", "videos", "backups"] {
        let out = ok(&["ns", "create", name]);
        assert!(out.contains("state:") && out.contains("active"), "{out}");
    }
    let out = ok(&["ns", "list"]);
    println!("{out}");
    assert_eq!(
        out.lines().count(),
        4,
        "a header and three namespaces: {out}"
    );
    let out = ok(&["shards", "list"]);
    println!("{out}");
    assert_eq!(out.lines().count(), 3, "two shards at capacity 2: {out}");
    let out = ok(&["hosts", "list"]);
    println!("{out}");
    assert!(
        out.contains("dc1") && out.contains("dc2") && out.contains("up"),
        "{out}"
    );

    let example = ok(&["manifest", "example", "--name", "cat.jpg", "--size", "5000"]);
    let file = platform.dir.path().join("cat.json");
    std::fs::write(&file, &example).unwrap();
    let file = file.to_str().unwrap();
    ok(&[
        "manifest",
        "put",
        "photos",
        "--file",
        file,
        "--mode",
        "must-not-exist",
    ]);
    let (code, _, err) = cli(
        &platform,
        &[
            "manifest",
            "put",
            "photos",
            "--file",
            file,
            "--mode",
            "must-not-exist",
        ],
    );
    assert_eq!(code, 3, "a second must-not-exist put: {err}");
    let got = ok(&[
        "manifest",
        "get",
        "photos",
        "cat.jpg",
        "--consistency",
        "any",
    ]);
    assert_eq!(
        serde_json_value(&got),
        serde_json_value(&example),
        "the manifest read back differs"
    );
    assert_eq!(ok(&["manifest", "list", "photos"]).trim(), "cat.jpg");
    let stats = ok(&["manifest", "stats", "photos"]);
    assert!(stats.contains("5000"), "{stats}");
    ok(&["manifest", "delete", "photos", "cat.jpg"]);
    let (code, _, err) = cli(&platform, &["manifest", "get", "photos", "cat.jpg"]);
    assert_eq!(code, 2, "{err}");

    let (code, _, err) = cli(&platform, &["ns", "show", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("does not exist"), "{err}");
    let (code, _, err) = cli(&platform, &["ns", "create", "bad name"]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = cli(&platform, &["ns", "create", "photos"]);
    assert_eq!(code, 3, "{err}");
    ok(&["ns", "delete", "videos"]);
    let out = ok(&["ns", "list"]);
    assert!(!out.contains("videos"), "{out}");
    ok(&["ns", "create", "videos"]);

    // A host that stops heartbeating is marked down (and kept), and comes back up.
    platform.kill_host(4);
    let host_state = |platform: &Platform| {
        let (_, out, _) = cli(platform, &["hosts", "list"]);
        out.lines()
            .find(|l| l.starts_with("4 "))
            .map(|l| l.split_whitespace().nth(3).unwrap_or("").to_owned())
    };
    eventually(Duration::from_secs(20), "host 4 marked down", || async {
        (host_state(&platform).as_deref() == Some("down")).then_some(())
    })
    .await;
    println!("{}", cli(&platform, &["hosts", "list"]).1);
    platform.start_host(4);
    eventually(Duration::from_secs(20), "host 4 up again", || async {
        (host_state(&platform).as_deref() == Some("up")).then_some(())
    })
    .await;
}

fn serde_json_value(text: &str) -> String {
    // Compare the documents, not their whitespace.
    text.split_whitespace().collect()
}

/// A platform for replacement tests: hosts 1 a, 2 a, 3 b, 4 a, 5 b, with sites a and b
/// required, replicas of hosts down `replace_after_ms` replaced, and namespace "photos" created
/// (its shard gets hosts 1, 2 in site a and 3 in site b).
async fn replacement_platform(replace_after_ms: u64) -> (Platform, Client, NamespaceInfo) {
    let extra = format!(
        "required_sites = [\"a\", \"b\"]\nmin_replicas_per_site = 1\nreplace_after_ms = \
         {replace_after_ms}"
    );
    let platform = Platform::start(Shape {
        host_sites: vec!["a", "a", "b", "a", "b"],
        catalog_extra: extra,
        ..Shape::default()
    });
    let managers = platform.manager_client();
    platform.wait_ready(&managers).await;
    let info = create(&managers, "photos").await.unwrap();
    let shard = shard_info(&managers, info.shard).await;
    assert_eq!(
        replica_nodes(&shard),
        BTreeSet::from([1, 2, 3]),
        "{shard:?}"
    );
    (platform, managers, info)
}

async fn shard_info(managers: &Client, shard: ShardId) -> cairn_wire::catalog::ShardInfo {
    shards(managers)
        .await
        .into_iter()
        .find(|s| s.id == shard)
        .expect("the shard is listed")
}

fn replica_nodes(shard: &cairn_wire::catalog::ShardInfo) -> BTreeSet<u64> {
    shard.replicas.iter().map(|r| r.node.0).collect()
}

/// A host that stays down has its replicas replaced by the shard's placement policy: the new
/// replica goes to the lost replica's site (a required site) although a host elsewhere sorts
/// first, joins empty, catches up with writes going on, and takes the old one's place as a
/// voter. No acknowledged write is missing on it, and the old replica is dropped when its host
/// comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_on_a_dead_host_is_replaced_in_its_site_and_nothing_is_lost() {
    let _serial = serial().await;
    let (mut platform, managers, info) = replacement_platform(2000).await;
    let shard_now = || shard_info(&managers, info.shard);
    let nodes = replica_nodes;

    // Writes go on through the router the whole time; only acknowledged ones are checked.
    let router = platform.router_client();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let space = router.routed(ns("photos"));
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (key, value) = (format!("key-{i:05}"), format!("value-{i}"));
                if let Ok(written) = space.set(key.clone(), value.clone()).await {
                    acked.push((key, value, written.index));
                }
                i += 1;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    platform.kill_host(3);
    let killed = std::time::Instant::now();
    let after = eventually(Duration::from_secs(60), "replica 3 replaced", || async {
        let s = shard_now().await;
        (s.replacing.is_none() && !nodes(&s).contains(&3)).then_some(s)
    })
    .await;
    println!("replaced in {:?}: {:?}", killed.elapsed(), after.replicas);
    // Site b lost its only replica: the replacement is host 5 in b, not host 4 in a.
    assert_eq!(nodes(&after), BTreeSet::from([1, 2, 5]), "{after:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.await.unwrap();
    let last = acked.last().expect("writes were acknowledged").2;
    println!(
        "{} writes acknowledged, the last at index {last}",
        acked.len()
    );
    assert!(
        acked.len() > 20,
        "too few writes got through: {}",
        acked.len()
    );

    // The new replica is a voter, holds every acknowledged write, and serves reads.
    let hosts = platform.host_client();
    let status = eventually(Duration::from_secs(20), "host 5 caught up", || async {
        let list = hosts.status(platform.hosts[&5].addr).await.ok()?;
        let status = list.into_iter().find(|s| s.shard == info.shard)?;
        (status.applied >= last).then_some(status)
    })
    .await;
    let voters: BTreeSet<u64> = status.voters.iter().map(|n| n.0).collect();
    assert_eq!(voters, BTreeSet::from([1, 2, 5]), "{status:?}");
    assert!(status.learners.is_empty(), "{status:?}");
    let local = hosts
        .namespace_at(platform.hosts[&5].addr, info.shard, ns("photos"))
        .with_epoch(info.epoch);
    for (key, value, _) in &acked {
        let read = local
            .get(key.clone(), Consistency::AtLeast(last))
            .await
            .unwrap();
        assert_eq!(read.value, value.as_bytes(), "{key} on the new replica");
    }
    let leader = platform.manager_leader().expect("a manager leads");
    let text = scrape(platform.managers[&leader].metrics);
    assert!(
        text.lines().any(
            |l| l.starts_with("cairn_manager_replacements_total{stage=\"done\"}")
                && l.ends_with(" 1")
        ),
        "no finished replacement counted:\n{text}"
    );

    // The old host comes back: its replica, removed from the group, is dropped, and the
    // catalog and the hosts agree again.
    platform.start_host(3);
    eventually(
        Duration::from_secs(30),
        "the removed replica dropped",
        || async {
            let list = hosts.status(platform.hosts[&3].addr).await.ok()?;
            (!list.iter().any(|s| s.shard == info.shard)).then_some(())
        },
    )
    .await;
    check_consistent(&platform, &managers).await;

    // Host 5 votes: with host 1 down, hosts 2 and 5 are the majority that commits.
    platform.kill_host(1);
    let space = router.routed(ns("photos"));
    eventually(
        Duration::from_secs(20),
        "a write with host 1 down",
        || async { space.set("after", "replacement").await.ok() },
    )
    .await;
}

/// A replacement whose new host stops answering before its replica can vote is abandoned (the
/// learner is removed and the catalog forgets it), and nothing else takes it while no host can
/// honour the placement; when the host is back, the replacement is placed again and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replacement_whose_new_host_dies_is_abandoned_then_placed_again() {
    let _serial = serial().await;
    let (mut platform, managers, info) = replacement_platform(300).await;
    let shard_now = || shard_info(&managers, info.shard);
    let nodes = replica_nodes;
    let host_down = |id: u64| {
        let managers = managers.clone();
        async move {
            match Platform::ask(&managers, ManagerRequest::ListHosts).await {
                Ok(ManagerResponse::Hosts(list)) => list
                    .iter()
                    .any(|h| h.id.0 == id && h.state == cairn_wire::catalog::HostState::Down),
                _ => false,
            }
        }
    };

    // Host 3 dies; as soon as it is marked down, host 5 (the only other host in site b)
    // freezes: the replacement is planned on it while it still counts as up, and cannot join.
    platform.kill_host(3);
    eventually(Duration::from_secs(20), "host 3 marked down", || async {
        host_down(3).await.then_some(())
    })
    .await;
    platform.signal_host(5, true);
    let leader_metric = |platform: &Platform, name: &str| {
        let leader = platform.manager_leader()?;
        let text = scrape(platform.managers[&leader].metrics);
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    eventually(
        Duration::from_secs(30),
        "the replacement abandoned",
        || async {
            let abandoned = leader_metric(
                &platform,
                "cairn_manager_replacements_total{stage=\"abandoned\"}",
            )?;
            let s = shard_now().await;
            (abandoned >= 1.0 && s.replacing.is_none()).then_some(())
        },
    )
    .await;
    // Site b has no up host: the shard keeps replica 3 (down) rather than break its placement.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = shard_now().await;
    assert_eq!(nodes(&s), BTreeSet::from([1, 2, 3]), "{s:?}");
    assert!(s.replacing.is_none(), "{s:?}");

    // Host 5 is back: the replacement is placed on it again and finishes.
    platform.signal_host(5, false);
    let after = eventually(Duration::from_secs(60), "replica 3 replaced", || async {
        let s = shard_now().await;
        (s.replacing.is_none() && !nodes(&s).contains(&3)).then_some(s)
    })
    .await;
    assert_eq!(nodes(&after), BTreeSet::from([1, 2, 5]), "{after:?}");
    let router = platform.router_client();
    router
        .routed(ns("photos"))
        .set("after", "replacement")
        .await
        .unwrap();
    let hosts = platform.host_client();
    eventually(Duration::from_secs(20), "host 5 votes", || async {
        let list = hosts.status(platform.hosts[&5].addr).await.ok()?;
        let status = list.into_iter().find(|s| s.shard == info.shard)?;
        let voters: BTreeSet<u64> = status.voters.iter().map(|n| n.0).collect();
        (voters == BTreeSet::from([1, 2, 5])).then_some(())
    })
    .await;
}

/// `forced(node)` with that node dead for good: writes fail fast, and the operator's way out —
/// setting another leader policy — still works although the new policy cannot go through the
/// log until someone leads: the manager lifts the forced leader on the replicas, one of them is
/// elected, and the new policy is applied through the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_forced_leader_is_lifted_when_the_operator_changes_the_policy() {
    let _serial = serial().await;
    let mut platform = Platform::start(Shape::default());
    let managers = platform.manager_client();
    platform.wait_ready(&managers).await;
    let info = create(&managers, "photos").await.unwrap();
    let shard_now = || async {
        shards(&managers)
            .await
            .into_iter()
            .find(|s| s.id == info.shard)
            .expect("the namespace's shard")
    };
    let forced = shard_now().await.replicas[0].node;
    let set_leader = |leader: LeaderPreference| {
        let managers = managers.clone();
        async move {
            Platform::ask(
                &managers,
                ManagerRequest::SetShardPolicy {
                    shard: info.shard,
                    commit: None,
                    leader: Some(leader),
                },
            )
            .await
            .unwrap();
        }
    };
    set_leader(LeaderPreference::Forced(forced)).await;
    let hosts = platform.host_client();
    eventually(Duration::from_secs(20), "the forced node leads", || async {
        let applied = shard_now().await.policy_applied;
        let leader = hosts.who_leader(info.shard).await.ok()??;
        (applied && leader.node == forced).then_some(())
    })
    .await;
    let router = platform.router_client();
    let space = router.routed(ns("photos"));
    space.set("before", "1").await.unwrap();

    platform.kill_host(forced.0);
    let refused = eventually(Duration::from_secs(10), "writes refused", || async {
        match space.set("during", "x").await {
            Err(e) if matches!(e.api(), Some(ApiError::ForcedLeaderDown { .. })) => Some(e),
            _ => None,
        }
    })
    .await;
    println!("refused: {refused}");

    set_leader(LeaderPreference::Any).await;
    let started = std::time::Instant::now();
    eventually(
        Duration::from_secs(30),
        "writes with another leader",
        || async { space.set("after", "2").await.ok() },
    )
    .await;
    println!(
        "writes resumed {:?} after the policy change",
        started.elapsed()
    );
    let s = eventually(
        Duration::from_secs(20),
        "the new policy applied",
        || async {
            let s = shard_now().await;
            s.policy_applied.then_some(s)
        },
    )
    .await;
    assert_eq!(s.policy.leader, LeaderPreference::Any, "{s:?}");
    let leader = hosts.who_leader(info.shard).await.unwrap().unwrap();
    assert_ne!(leader.node, forced);
    let read = space.get("before", Consistency::Consistent).await.unwrap();
    assert_eq!(read.value, b"1");
}
