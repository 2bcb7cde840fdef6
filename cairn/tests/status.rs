//! `cairn status` against a live platform (3 managers, 4 hosts in two sites, a router): OK and
//! exit 0 while everything runs; after a host is killed and the managers mark it down, the host
//! is down, every shard that had a replica on it is degraded naming that replica, the catalog's
//! site-minimum violation is listed, and the exit code is the degraded one, in the tables and
//! in `--json` alike. And exit 4 when no manager answers.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_wire::catalog::{HostState, ManagerRequest, ManagerResponse, ShardInfo};
use serde_json::Value;
use support::platform::{Platform, Shape};
use support::{CAIRN, eventually, ns, serial};

/// The exit code of a degraded cluster.
const DEGRADED: i32 = 6;

/// Writes a cluster file listing the platform's managers; returns its path.
fn cluster_file(platform: &Platform) -> PathBuf {
    let certs = platform.dir.path().join("certs");
    let managers: Vec<String> = platform
        .managers
        .values()
        .map(|p| format!("\"{}\"", p.addr))
        .collect();
    let path = platform.dir.path().join("status-cluster.toml");
    std::fs::write(
        &path,
        format!(
            "managers = [{}]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            managers.join(", "),
            certs.join("ca.pem").display(),
            certs.join("client.pem").display(),
            certs.join("client.key").display(),
        ),
    )
    .unwrap();
    path
}

/// Runs `cairn status --cluster FILE ARGS..`; returns (exit code, stdout, stderr).
fn status(cluster: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(CAIRN)
        .arg("status")
        .arg("--cluster")
        .arg(cluster)
        .args(args)
        .env_remove("CAIRN_CLUSTER")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn shards(managers: &cairn_client::Client) -> Vec<ShardInfo> {
    match Platform::ask(managers, ManagerRequest::ListShards)
        .await
        .unwrap()
    {
        ManagerResponse::Shards(list) => list,
        other => panic!("{other:?}"),
    }
}

/// The entry of `list` whose `key` is `id`.
fn by_id<'a>(list: &'a Value, key: &str, id: u64) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|v| v[key] == id)
        .unwrap_or_else(|| panic!("no {key} {id} in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_shows_a_killed_host_down_and_its_shards_degraded_with_the_degraded_exit_code() {
    let _serial = serial().await;
    let mut platform = Platform::start(Shape {
        host_sites: vec!["dc1", "dc2", "dc1", "dc2"],
        namespaces_per_shard: 2,
        catalog_extra: "required_sites = [\"dc1\", \"dc2\"]\nmin_replicas_per_site = 1".into(),
        ..Shape::default()
    });
    let managers = platform.manager_client();
    platform.wait_ready(&managers).await;
    for name in ["photos", "videos", "backups"] {
        let request = ManagerRequest::CreateNamespace {
            name: ns(name),
            home_site: None,
            placement: None,
        };
        Platform::ask(&managers, request).await.unwrap();
    }
    let cluster = cluster_file(&platform);

    // Healthy: once every shard has elected its leader.
    let healthy = eventually(Duration::from_secs(30), "cairn status OK", || async {
        let (code, out, err) = status(&cluster, &[]);
        assert!(code == 0 || code == DEGRADED, "{code}: {out}{err}");
        (code == 0).then_some(out)
    })
    .await;
    println!("---- cairn status (healthy) ----\n{healthy}");
    assert!(
        healthy.starts_with(
            "OK: 4 of 4 hosts up in 2 sites; 2 shards led and in policy; 3 namespaces\n"
        ),
        "{healthy}"
    );
    for header in ["SITES", "HOSTS", "SHARDS", "REPLICAS", "NAMESPACES"] {
        assert!(healthy.contains(&format!("\n{header}\n")), "{healthy}");
    }
    let (code, json, err) = status(&cluster, &["--json"]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["health"], "ok");
    assert_eq!(doc["hosts"].as_array().unwrap().len(), 4);
    assert_eq!(doc["violations"], Value::Array(vec![]));
    for shard in doc["shards"].as_array().unwrap() {
        assert!(shard["leader"].is_u64(), "{shard}");
        assert_eq!(shard["leader_policy_satisfied"], true, "{shard}");
        for replica in shard["replicas"].as_array().unwrap() {
            assert!(replica["lag"].is_u64(), "{replica}");
        }
    }
    let named: usize = doc["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["namespaces"].as_array().unwrap().len())
        .sum();
    assert_eq!(named, 3, "{json}");

    // Kill the one replica shard 1 has in one of its sites: the shard is degraded and falls
    // below that site's minimum.
    let before = shards(&managers).await;
    let first = before.iter().min_by_key(|s| s.id).unwrap();
    let lone = first
        .replicas
        .iter()
        .find(|r| first.replicas.iter().filter(|o| o.site == r.site).count() == 1)
        .expect("three replicas in two sites: one site has one");
    let (victim, victim_site) = (lone.node.0, lone.site.clone());
    let hit: Vec<u64> = before
        .iter()
        .filter(|s| s.replicas.iter().any(|r| r.node.0 == victim))
        .map(|s| s.id.0)
        .collect();
    platform.kill_host(victim);
    eventually(
        Duration::from_secs(20),
        "the victim marked down",
        || async {
            match Platform::ask(&managers, ManagerRequest::ListHosts).await {
                Ok(ManagerResponse::Hosts(hosts)) => hosts
                    .iter()
                    .any(|h| h.id.0 == victim && h.state == HostState::Down)
                    .then_some(()),
                _ => None,
            }
        },
    )
    .await;

    let started = Instant::now();
    let (code, out, err) = status(&cluster, &[]);
    let took = started.elapsed();
    println!("---- cairn status (host {victim} killed; {took:?}) ----\n{out}{err}");
    assert_eq!(code, DEGRADED, "{out}{err}");
    // A dead host costs its timeout (1 s), not the manager's.
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let first_line = out.lines().next().unwrap();
    assert!(
        first_line.starts_with(&format!(
            "DEGRADED: 1 host down ({victim}); {} of 2 shards degraded",
            hit.len()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("  - host {victim} ({victim_site}, ")),
        "{out}"
    );
    let host_row = out
        .lines()
        .skip_while(|l| *l != "HOSTS")
        .find(|l| l.starts_with(&format!("{victim} ")))
        .unwrap();
    assert_eq!(host_row.split_whitespace().nth(3), Some("down"), "{out}");
    for shard in &hit {
        assert!(
            out.contains(&format!(
                "  - shard {shard}: replica {victim} is on down host {victim} ({victim_site})\n"
            )),
            "{out}"
        );
        let row = out
            .lines()
            .skip_while(|l| *l != "SHARDS")
            .find(|l| l.starts_with(&format!("{shard} ")))
            .unwrap();
        assert_eq!(row.split_whitespace().nth(2), Some("degraded"), "{out}");
        let replica = out
            .lines()
            .skip_while(|l| *l != "REPLICAS")
            .find(|l| {
                let cells: Vec<&str> = l.split_whitespace().collect();
                cells.first() == Some(&shard.to_string().as_str())
                    && cells.get(1) == Some(&victim.to_string().as_str())
            })
            .unwrap();
        assert_eq!(replica.split_whitespace().nth(4), Some("down"), "{out}");
    }
    let violation = format!(
        "catalog: shard {} has 0 up replicas in required site {victim_site}",
        first.id
    );
    assert!(out.contains(&violation), "{out}");

    let (code, json, err) = status(&cluster, &["--json"]);
    println!("---- cairn status --json (host {victim} killed) ----\n{json}");
    assert_eq!(code, DEGRADED, "{err}");
    let doc: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["health"], "degraded");
    assert_eq!(doc["summary"].as_str(), Some(first_line));
    let host = by_id(&doc["hosts"], "id", victim);
    assert_eq!(host["state"], "down", "{host}");
    assert_eq!(host["reachable"], false, "{host}");
    for id in &hit {
        let shard = by_id(&doc["shards"], "id", *id);
        assert_eq!(shard["health"], "degraded", "{shard}");
        let reason = format!("replica {victim} is on down host {victim} ({victim_site})");
        assert!(
            shard["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == reason.as_str()),
            "{shard}"
        );
        let replica = by_id(&shard["replicas"], "node", victim);
        assert_eq!(replica["state"], "down", "{replica}");
        assert_eq!(replica["lag"], Value::Null, "{replica}");
    }
    for shard in doc["shards"].as_array().unwrap() {
        let id = shard["id"].as_u64().unwrap();
        if !hit.contains(&id) {
            assert_eq!(shard["health"], "ok", "{shard}");
        }
    }
    assert!(
        doc["violations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| format!("catalog: {}", v.as_str().unwrap()).starts_with(&violation)),
        "{json}"
    );
    managers.close().await;
}

#[test]
fn status_exits_4_when_no_manager_answers() {
    let dir = tempfile::Builder::new()
        .prefix("cairn-status-")
        .tempdir()
        .unwrap();
    let certs = dir.path().join("certs");
    support::cluster_certs(&certs);
    // A port nobody listens on (bound and released).
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cluster = dir.path().join("cluster.toml");
    std::fs::write(
        &cluster,
        format!(
            "managers = [\"127.0.0.1:{port}\"]\nca = \"certs/ca.pem\"\ncert = \
             \"certs/client.pem\"\nkey = \"certs/client.key\"\n"
        ),
    )
    .unwrap();
    for json in [false, true] {
        let mut args = vec!["--timeout-ms", "500"];
        if json {
            args.push("--json");
        }
        let (code, out, err) = status(&cluster, &args);
        assert_eq!(code, 4, "{out}{err}");
        assert!(out.is_empty(), "{out}");
        assert!(
            err.contains("cannot read the catalog from the managers"),
            "{err}"
        );
    }
}
