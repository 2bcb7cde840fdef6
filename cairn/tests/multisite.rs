//! Multi-site acceptance tests: real processes in network namespaces, one per site, with a WAN
//! emulator between the sites (see `cairn-netbed`): 10 ms round trip, partitions on demand.
//!
//! - Reads: a router in site B serves `any` and `at_least` reads from B's replica, `consistent`
//!   ones from the leader in A (a round trip) until the shard's leader policy prefers B.
//! - Commit: `majority+all-sites` refuses writes at once while B is cut off; `majority` keeps
//!   writing in A; after the heal B catches up and holds every acknowledged write.
//! - Forced leader: with the forced node down, writes fail fast and no other node leads.
//!
//! Needs root (network namespaces); CI runs as root.

mod support;

use std::time::{Duration, Instant};

use cairn_client::LogIndex;
use cairn_client::{Client, Consistency, Error};
use cairn_wire::api::{ApiError, Namespace, Request, Response, ShardId};
use cairn_wire::catalog::{CommitPolicy, LeaderPreference, ManagerRequest, ManagerResponse};
use support::sites::{SitePlatform, SiteShape, time};
use support::{eventually, serial};

const RTT: Duration = Duration::from_millis(10);
const READS: usize = 200;
/// How long the hosts may take to register, and a namespace to be created.
const WAIT: Duration = Duration::from_secs(30);

/// Sites a and b; hosts 1 and 2 in a, host 3 in b; the manager in a; a router in each site.
fn two_sites() -> SitePlatform {
    support::sites::start(&SiteShape {
        sites: vec!["a", "b"],
        rtt: RTT,
        manager_sites: vec!["a"],
        host_sites: vec!["a", "a", "b"],
        router_sites: vec!["a", "b"],
    })
}

/// Creates namespace `name` with home site `home` and returns its shard.
async fn create(p: &SitePlatform, managers: &Client, name: &str, home: &str) -> ShardId {
    p.create_namespace(managers, name, home, WAIT)
        .await
        .unwrap()
}

async fn set_policy(
    p: &SitePlatform,
    managers: &Client,
    shard: ShardId,
    commit: Option<CommitPolicy>,
    leader: Option<LeaderPreference>,
) {
    p.set_shard_policy(managers, shard, commit, leader)
        .await
        .unwrap();
}

fn api(e: &Error) -> Option<&ApiError> {
    e.api()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_served_in_the_routers_site_and_consistent_reads_follow_the_leader() {
    let _serial = serial().await;
    let p = two_sites();
    let managers = p.managers().unwrap();
    p.wait_hosts(&managers, WAIT).await.unwrap();
    let shard = create(&p, &managers, "photos", "a").await;
    let [b_host] = p.host_ids_in("b")[..] else {
        panic!("one host in b")
    };
    let info = p.shard(&managers, shard).await.unwrap();
    assert_eq!(info.policy.leader, LeaderPreference::Preferred("a".into()));
    assert!(info.replicas.iter().any(|r| r.node == b_host), "{info:?}");
    // The leader settles in a (the home site).
    p.wait_leaders(
        shard,
        "a leader in site a",
        Duration::from_secs(20),
        |l| matches!(l, [one] if *one != b_host.0),
    )
    .await
    .unwrap();

    let router_b = p.client_of(&["router-b"]).unwrap();
    let ns = router_b.routed(Namespace::new("photos").unwrap());
    let written = ns.set("k", "v1").await.unwrap();
    // Read your write in b, through the write's index.
    let read = ns
        .get("k", Consistency::AtLeast(written.index))
        .await
        .unwrap();
    assert_eq!(read.value, b"v1");

    let token = written.index;
    let any = time(READS, || ns.get("k", Consistency::Any)).await;
    let at_least = time(READS, || ns.get("k", Consistency::AtLeast(token))).await;
    let remote = time(READS, || ns.get("k", Consistency::Consistent)).await;
    eprintln!(
        "leader in a, router in b: any {any:?}, at_least {at_least:?}, consistent {remote:?}"
    );
    // A consistent read must reach the leader in a: never under one round trip.
    assert!(remote.min_ms >= RTT.as_secs_f64() * 1e3, "{remote:?}");
    // Local reads stay in b: well under the round trip (generous margins: shared machines).
    for local in [any, at_least] {
        assert!(local.p50_ms < 5.0, "local read {local:?}");
        assert!(
            local.p50_ms * 2.0 < remote.p50_ms,
            "local {local:?} vs consistent {remote:?}"
        );
    }
    let metrics = support::scrape(p.metrics_addr("router-b"));
    assert!(
        metrics.contains("cairn_router_shard_reads_total{locality=\"local\"}"),
        "the router counts local reads"
    );

    // Prefer b: leadership moves to b's replica and consistent reads become local.
    let moved = Instant::now();
    set_policy(
        &p,
        &managers,
        shard,
        None,
        Some(LeaderPreference::Preferred("b".into())),
    )
    .await;
    p.wait_leader(shard, b_host.0, Duration::from_secs(15))
        .await
        .unwrap();
    eprintln!("leadership moved to b in {:?}", moved.elapsed());
    // Let the client learn the new leader, then measure.
    ns.get("k", Consistency::Consistent).await.unwrap();
    let local = time(READS, || ns.get("k", Consistency::Consistent)).await;
    eprintln!("leader in b, router in b: consistent {local:?}");
    assert!(local.p50_ms < 5.0, "{local:?}");
    assert!(
        local.p50_ms * 2.0 < remote.p50_ms,
        "{local:?} vs {remote:?}"
    );
    // And it stays there: no flapping.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(p.leaders(shard).await.unwrap(), [b_host.0]);
    router_b.close().await;
    managers.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_sites_commit_fails_fast_when_a_site_is_cut_off_and_nothing_acknowledged_is_lost() {
    let _serial = serial().await;
    let mut p = two_sites();
    let managers = p.managers().unwrap();
    p.wait_hosts(&managers, WAIT).await.unwrap();
    let shard = create(&p, &managers, "orders", "a").await;
    set_policy(
        &p,
        &managers,
        shard,
        Some(CommitPolicy::MajorityAllSites),
        None,
    )
    .await;
    let router_a = p.client_of(&["router-a"]).unwrap();
    let ns = router_a.routed(Namespace::new("orders").unwrap());
    let mut acknowledged: Vec<(String, LogIndex)> = Vec::new();
    for i in 0..20 {
        let key = format!("k{i}");
        let w = ns.set(key.as_str(), "before").await.unwrap();
        acknowledged.push((key, w.index));
    }

    p.bed_mut().partition("b").unwrap();
    // Once the leader has not heard from b for an election timeout, writes fail at once.
    let refused = eventually(
        Duration::from_secs(10),
        "writes refused with b cut off",
        || async {
            let started = Instant::now();
            match ns.set("during", "x").await {
                Err(e) if matches!(api(&e), Some(ApiError::SiteUnreachable { .. })) => {
                    Some((started.elapsed(), e.to_string()))
                }
                _ => None,
            }
        },
    )
    .await;
    eprintln!("refused in {:?}: {}", refused.0, refused.1);
    assert!(refused.1.contains("site b unreachable"), "{}", refused.1);
    assert!(
        refused.0 < Duration::from_millis(500),
        "fails fast: {:?}",
        refused.0
    );

    // Relax to majority: a has the majority, so writes continue.
    set_policy(&p, &managers, shard, Some(CommitPolicy::Majority), None).await;
    for i in 0..20 {
        let key = format!("m{i}");
        let w = ns.set(key.as_str(), "cut").await.unwrap();
        acknowledged.push((key, w.index));
    }

    p.bed_mut().heal("b").unwrap();
    let last = acknowledged.iter().map(|(_, i)| *i).max().unwrap();
    let [b_host] = p.host_ids_in("b")[..] else {
        panic!("one host in b")
    };
    // b catches up; then every replica holds every acknowledged write.
    for host in 1..=3u64 {
        let name = format!("host-{host}");
        let client = p.client_of(&[&name]).unwrap();
        let pinned = client
            .namespace(shard, Namespace::new("orders").unwrap())
            .pinned_to(p.addr(&name));
        let epoch = p
            .ask(
                &managers,
                ManagerRequest::ShowNamespace {
                    name: Namespace::new("orders").unwrap(),
                },
            )
            .await
            .unwrap();
        let ManagerResponse::Namespace(info) = epoch else {
            panic!("{epoch:?}")
        };
        let pinned = pinned.with_epoch(info.epoch);
        eventually(
            Duration::from_secs(20),
            &format!("{name} caught up"),
            || async { pinned.get("k0", Consistency::AtLeast(last)).await.ok() },
        )
        .await;
        for (key, _) in &acknowledged {
            let read = pinned.get(key.as_str(), Consistency::Any).await;
            assert!(
                read.is_ok(),
                "{name} (b is node {}) lost {key}: {read:?}",
                b_host.0
            );
        }
        client.close().await;
    }
    router_a.close().await;
    managers.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_leader_that_is_down_stops_writes_and_no_other_node_leads() {
    let _serial = serial().await;
    let mut p = two_sites();
    let managers = p.managers().unwrap();
    p.wait_hosts(&managers, WAIT).await.unwrap();
    let shard = create(&p, &managers, "forced", "a").await;
    let forced = 2u64;
    set_policy(
        &p,
        &managers,
        shard,
        None,
        Some(LeaderPreference::Forced(raft_core::NodeId(forced))),
    )
    .await;
    p.wait_leader(shard, forced, Duration::from_secs(15))
        .await
        .unwrap();
    let router_a = p.client_of(&["router-a"]).unwrap();
    let ns = router_a.routed(Namespace::new("forced").unwrap());
    ns.set("k", "v").await.unwrap();

    p.kill_proc(&format!("host-{forced}")).unwrap();
    let failed = eventually(
        Duration::from_secs(10),
        "writes refused while the forced leader is down",
        || async {
            let started = Instant::now();
            match ns.set("k", "w").await {
                Err(e) if matches!(api(&e), Some(ApiError::ForcedLeaderDown { .. })) => {
                    Some((started.elapsed(), e.to_string()))
                }
                _ => None,
            }
        },
    )
    .await;
    eprintln!("refused in {:?}: {}", failed.0, failed.1);
    assert!(
        failed.0 < Duration::from_secs(2),
        "fails fast: {:?}",
        failed.0
    );
    assert!(failed.1.contains("forced to node 2"), "{}", failed.1);
    // Several election timeouts: nobody else takes over.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert_eq!(
            p.leaders(shard).await.unwrap(),
            Vec::<u64>::new(),
            "another node leads"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The forced node comes back and leads again; writes resume.
    p.start_proc(&format!("host-{forced}")).unwrap();
    p.wait_leader(shard, forced, Duration::from_secs(20))
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "writes resume", || async {
        ns.set("k", "after").await.ok()
    })
    .await;
    let read = ns.get("k", Consistency::Consistent).await.unwrap();
    assert_eq!(read.value, b"after");
    // Nothing else answered the status probe as leader meanwhile.
    let status = p.client_of(&["host-1"]).unwrap();
    assert!(matches!(
        status.request_to(p.addr("host-1"), Request::WhoLeader { shard }).await,
        Ok(Response::Leader(Some(hint))) if hint.node.0 == forced
    ));
    status.close().await;
    router_a.close().await;
    managers.close().await;
}

/// Samples who leads `shard` every 100 ms for `window` and returns every leader seen in order
/// (consecutive duplicates and leaderless samples removed).
async fn leaders_over(p: &SitePlatform, shard: ShardId, window: Duration) -> Vec<u64> {
    let mut seen: Vec<u64> = Vec::new();
    let until = Instant::now() + window;
    while Instant::now() < until {
        let leaders = p.leaders(shard).await.unwrap();
        assert!(leaders.len() <= 1, "two leaders at once: {leaders:?}");
        if let [leader] = leaders[..]
            && seen.last() != Some(&leader)
        {
            seen.push(leader);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sites_survive_losing_one_and_preferred_leaders_return_without_flapping() {
    let _serial = serial().await;
    // One manager, one host and one router per site: every shard has a replica in each.
    let mut p = support::sites::start(&SiteShape {
        sites: vec!["a", "b", "c"],
        rtt: RTT,
        manager_sites: vec!["a", "b", "c"],
        host_sites: vec!["a", "b", "c"],
        router_sites: vec!["a", "b"],
    });
    let managers = p.managers().unwrap();
    p.wait_hosts(&managers, WAIT).await.unwrap();
    let host_in = |site: &str| p.host_ids_in(site)[0].0;
    let (host_a, host_b, host_c) = (host_in("a"), host_in("b"), host_in("c"));
    let mut shards = Vec::new();
    for (name, home, host) in [
        ("na", "a", host_a),
        ("nb", "b", host_b),
        ("nc", "c", host_c),
    ] {
        let shard = create(&p, &managers, name, home).await;
        p.wait_leader(shard, host, Duration::from_secs(20))
            .await
            .unwrap();
        shards.push((name, shard, host));
    }
    let distinct: std::collections::BTreeSet<_> = shards.iter().map(|(_, s, _)| *s).collect();
    assert_eq!(distinct.len(), 3, "one shard per home site: {shards:?}");

    let router_a = p.client_of(&["router-a"]).unwrap();
    let write_all = |tag: &'static str| {
        let router = router_a.clone();
        async move {
            for name in ["na", "nb", "nc"] {
                let ns = router.routed(Namespace::new(name).unwrap());
                ns.set(tag, tag).await.map_err(|e| format!("{name}: {e}"))?;
                let read = ns
                    .get(tag, Consistency::Consistent)
                    .await
                    .map_err(|e| format!("{name}: {e}"))?;
                assert_eq!(read.value, tag.as_bytes());
            }
            Ok::<(), String>(())
        }
    };
    write_all("before").await.unwrap();

    // Lose site c: its shard elects a leader in a or b, and every shard keeps serving.
    p.bed_mut().partition("c").unwrap();
    let (_, shard_c, _) = shards[2];
    p.wait_leaders(
        shard_c,
        "shard nc led outside c",
        Duration::from_secs(20),
        |l| matches!(l, [one] if *one != host_c),
    )
    .await
    .unwrap();
    eventually(
        Duration::from_secs(20),
        "every shard serves without c",
        || async { write_all("during").await.ok() },
    )
    .await;
    // The shards led in a and b never moved.
    assert_eq!(p.leaders(shards[0].1).await.unwrap(), [host_a]);
    assert_eq!(p.leaders(shards[1].1).await.unwrap(), [host_b]);

    // c returns: nc's leadership moves back to c, once, and stays.
    p.bed_mut().heal("c").unwrap();
    let healed = Instant::now();
    p.wait_leader(shard_c, host_c, Duration::from_secs(20))
        .await
        .unwrap();
    eprintln!(
        "leadership of shard {shard_c} back in c {:?} after the heal",
        healed.elapsed()
    );
    for (name, shard, host) in &shards {
        let seen = leaders_over(&p, *shard, Duration::from_secs(4)).await;
        assert_eq!(
            seen,
            [*host],
            "{name}: leaders seen after the return: {seen:?}"
        );
    }
    write_all("after").await.unwrap();
    router_a.close().await;
    managers.close().await;
}
