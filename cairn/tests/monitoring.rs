//! What monitoring sees of a running platform: every process is scraped after a workload that
//! touches every part (500 namespaces, reads and writes through the router, a host that dies
//! and has its replicas replaced), and
//! - every `cairn_` metric a process exports is declared in its role's list (the lists
//!   `dashboards/METRICS.md` is generated from), with only the declared labels;
//! - every metric the dashboards (`dashboards/*.json`) and the alert rules
//!   (`dashboards/alerts.yml`) refer to is exported by some process;
//! - label cardinality stays bounded with 500 namespaces: no label value is a namespace name,
//!   the `shard` label takes at most one value per shard, and every other label a handful.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cairn_client::Client;
use cairn_wire::api::{Consistency, ReadOp};
use cairn_wire::catalog::{ManagerRequest, ManagerResponse, ShardInfo};
use cairn_wire::metric_spec::MetricSpec;
use support::platform::{Platform, Shape};
use support::{eventually, ns, scrape, serial};

/// One scraped series: its name and labels.
#[derive(Debug)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
}

/// Parses the sample lines of a Prometheus text exposition.
fn series_of(text: &str) -> Vec<Series> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    scrape
        .samples
        .into_iter()
        .map(|s| Series {
            name: s.metric,
            labels: s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
        .collect()
}

/// The metrics a process of `role` may export.
fn specs_of(role: &str) -> Vec<MetricSpec> {
    let node = shard_node::metrics::SPECS.iter().copied();
    match role {
        "shard-node" => node.collect(),
        "manager" => node
            .chain(cairn_manager::metrics::SPECS.iter().copied())
            .collect(),
        "router" => cairn_router::metrics::SPECS.to_vec(),
        other => panic!("unknown role {other}"),
    }
}

fn all_specs() -> Vec<MetricSpec> {
    let mut all = specs_of("manager");
    all.extend(specs_of("router"));
    all
}

/// Every `cairn_...` name in `text`.
fn referenced_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("cairn_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        // Not the end of a longer identifier (`mycairn_x` is not a metric).
        let before = rest[..at].chars().last();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// The metric names the dashboards and the alert rules use, by file.
fn referenced_by_dashboards_and_alerts() -> BTreeMap<String, BTreeSet<String>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards");
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if file.ends_with(".json") || file == "alerts.yml" {
            let text = std::fs::read_to_string(&path).unwrap();
            found.insert(file, referenced_names(&text));
        }
    }
    found
}

async fn shards(managers: &Client) -> Vec<ShardInfo> {
    match Platform::ask(managers, ManagerRequest::ListShards)
        .await
        .unwrap()
    {
        ManagerResponse::Shards(list) => list,
        other => panic!("{other:?}"),
    }
}

#[test]
fn names_are_found_in_exprs_and_nothing_else_is() {
    let names = referenced_names(
        r#"{"expr": "sum by (le) (rate(cairn_x_seconds_bucket[5m])) / cairn_y", "uid": "cairn-overview", "title": "mycairn_z"}"#,
    );
    assert_eq!(
        names,
        BTreeSet::from(["cairn_x_seconds_bucket".to_owned(), "cairn_y".to_owned()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_process_exports_what_is_declared_and_what_dashboards_and_alerts_use() {
    let _serial = serial().await;
    let mut platform = Platform::start(Shape {
        host_sites: vec!["a", "a", "b", "b", "a"],
        catalog_extra: "replace_after_ms = 1000".into(),
        ..Shape::default()
    });
    let managers = platform.manager_client();
    platform.wait_ready(&managers).await;

    // 500 namespaces (10 shards of 50).
    let names: Vec<String> = (0..500).map(|i| format!("tenant-{i:03}")).collect();
    let mut tasks = Vec::new();
    for batch in 0..10 {
        let managers = managers.clone();
        let mine: Vec<String> = names.iter().skip(batch).step_by(10).cloned().collect();
        tasks.push(tokio::spawn(async move {
            for name in mine {
                Platform::ask(
                    &managers,
                    ManagerRequest::CreateNamespace {
                        name: ns(&name),
                        home_site: None,
                        placement: None,
                    },
                )
                .await
                .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Reads and writes through the router, in every namespace: routes, caches, shards.
    let router = platform.router_client();
    for name in &names {
        let space = router.routed(ns(name));
        space.set("k", name.clone()).await.unwrap();
        space.get("k", Consistency::Any).await.unwrap();
    }
    let first = router.routed(ns(&names[0]));
    let _ = first
        .read(
            ReadOp::GetManifests {
                names: vec!["none".into()],
            },
            Consistency::Consistent,
        )
        .await;
    let _ = router
        .routed(ns("no-such-tenant"))
        .get("k", Consistency::Any)
        .await;

    // A host dies: it is marked down and its replicas are replaced (snapshots move).
    platform.kill_host(5);
    eventually(
        Duration::from_secs(90),
        "host 5's replicas replaced",
        || async {
            let list = shards(&managers).await;
            list.iter()
                .all(|s| s.replacing.is_none() && s.replicas.iter().all(|r| r.node.0 != 5))
                .then_some(())
        },
    )
    .await;
    let shard_count = shards(&managers).await.len();
    assert_eq!(shard_count, 10, "500 namespaces at 50 per shard");

    // Scrape every live process.
    let mut scraped: Vec<(String, &'static str, Vec<Series>)> = Vec::new();
    for (id, p) in &platform.managers {
        scraped.push((
            format!("manager-{id}"),
            "manager",
            series_of(&scrape(p.metrics)),
        ));
    }
    for (id, p) in &platform.hosts {
        if *id != 5 {
            scraped.push((
                format!("host-{id}"),
                "shard-node",
                series_of(&scrape(p.metrics)),
            ));
        }
    }
    scraped.push((
        "router".into(),
        "router",
        series_of(&scrape(platform.router.metrics)),
    ));

    let namespace_names: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let mut exported: BTreeSet<&'static str> = BTreeSet::new();
    for (process, role, series) in &scraped {
        let specs = specs_of(role);
        let mut values: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
        for s in series.iter().filter(|s| s.name.starts_with("cairn_")) {
            let spec = specs
                .iter()
                .find(|spec| spec.owns(&s.name))
                .unwrap_or_else(|| {
                    panic!(
                        "{process} exports {}, which its role ({role}) does not declare",
                        s.name
                    )
                });
            exported.insert(spec.name);
            for (label, value) in &s.labels {
                assert!(
                    spec.labels.contains(&label.as_str())
                        || matches!(label.as_str(), "le" | "quantile"),
                    "{process}: {} has undeclared label {label}",
                    s.name
                );
                assert!(
                    !namespace_names.contains(value.as_str()),
                    "{process}: {} carries a namespace name in label {label}",
                    s.name
                );
                values.entry((spec.name, label)).or_default().insert(value);
            }
        }
        for ((metric, label), seen) in &values {
            let bound = match *label {
                // The catalog group (0) and every namespace shard.
                "shard" => shard_count + 1,
                "le" => 32,
                _ => 40,
            };
            assert!(
                seen.len() <= bound,
                "{process}: {metric}'s label {label} takes {} values (bound {bound})",
                seen.len()
            );
        }
        // The info metric says what the process is.
        let info = if *role == "router" {
            "cairn_router_info"
        } else {
            "cairn_process_info"
        };
        assert!(
            series.iter().any(|s| s.name == info
                && (*role == "router" || s.labels.get("role").map(String::as_str) == Some(*role))),
            "{process} exports no {info} for role {role}"
        );
    }

    // What dashboards and alerts use exists.
    let specs = all_specs();
    let referenced = referenced_by_dashboards_and_alerts();
    assert!(
        referenced.keys().any(|f| f.ends_with(".json")) && referenced.contains_key("alerts.yml"),
        "dashboards/*.json and dashboards/alerts.yml are expected: {:?}",
        referenced.keys().collect::<Vec<_>>()
    );
    for (file, names) in &referenced {
        for name in names {
            let spec = specs
                .iter()
                .find(|spec| spec.owns(name))
                .unwrap_or_else(|| panic!("{file} uses {name}, which no role declares"));
            assert!(
                exported.contains(spec.name),
                "{file} uses {name}, which no process exported in this run"
            );
        }
    }
    let declared: BTreeSet<&str> = specs.iter().map(|s| s.name).collect();
    let missing: Vec<&&str> = declared.difference(&exported).collect();
    println!(
        "{} metrics declared, {} exported in this run; not seen: {missing:?}",
        declared.len(),
        exported.len()
    );
}
