//! cairn under a real Prometheus (Debian's `prometheus` package, 2.42; `scripts/setup` installs
//! it): the alert rules pass `promtool`'s checks and unit tests, and a Prometheus scraping a
//! running platform sees one leader per shard, loads the rules without errors, raises no alert
//! on the healthy platform, and evaluates every query of the Grafana dashboards; the
//! `deploy/prometheus` recipe brings one up over that platform and down again.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use cairn_client::Client;
use cairn_wire::api::{Consistency, ReadOp, WriteOp};
use cairn_wire::catalog::{ManagerRequest, ManagerResponse, ShardInfo};
use cairn_wire::manifest::{
    Checksum, ChecksumAlgorithm, Chunk, Compression, FragmentLocation, Manifest, PutMode,
    StorageScheme,
};
use serde_json::Value;
use support::platform::{Platform, Proc, Shape};
use support::{ns, serial};

const DASHBOARDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards");

fn dashboards() -> PathBuf {
    Path::new(DASHBOARDS).canonicalize().unwrap()
}

/// Runs a tool of the `prometheus` package; a missing tool fails with what to install.
fn tool(program: &str, args: &[&str]) -> Output {
    match Command::new(program).args(args).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{program}` is not installed: it comes with Debian's prometheus package \
             (`apt-get install prometheus`; scripts/setup installs it)"
        ),
        Err(e) => panic!("cannot run {program}: {e}"),
    }
}

fn assert_tool_succeeds(program: &str, args: &[&str]) {
    let out = tool(program, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    print!("$ {program} {}\n{text}", args.join(" "));
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
}

/// Every metric name cairn's processes export, as Prometheus stores them (a histogram is its
/// `_bucket`, `_sum` and `_count` series).
fn exported_metrics() -> BTreeSet<String> {
    let specs = shard_node::metrics::SPECS
        .iter()
        .chain(cairn_manager::metrics::SPECS)
        .chain(cairn_router::metrics::SPECS);
    let mut names = BTreeSet::new();
    for spec in specs {
        names.insert(spec.name.to_owned());
        for suffix in ["_bucket", "_sum", "_count"] {
            names.insert(format!("{}{suffix}", spec.name));
        }
    }
    names
}

#[test]
fn promtool_checks_the_alert_rules_and_their_unit_tests_pass() {
    let dir = dashboards();
    let alerts = dir.join("alerts.yml");
    let tests = dir.join("alerts_test.yml");
    assert_tool_succeeds("promtool", &["check", "rules", alerts.to_str().unwrap()]);
    assert_tool_succeeds("promtool", &["test", "rules", tests.to_str().unwrap()]);

    // Every `cairn_` name in the rules (comments aside) is one the processes export.
    let text: String = std::fs::read_to_string(&alerts)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let exported = exported_metrics();
    let unknown: BTreeSet<&str> = metric_names(&text)
        .into_iter()
        .filter(|name| !exported.contains(*name))
        .collect();
    assert!(
        unknown.is_empty(),
        "alerts.yml uses metrics no cairn process exports: {unknown:?}"
    );
}

/// The `cairn_…` identifiers in a text.
fn metric_names(text: &str) -> BTreeSet<&str> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("cairn_") {
        let word = &rest[at..];
        let end = word
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(word.len());
        // Skip words that merely contain `cairn_` (none expected, but be exact).
        let starts_word = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        if starts_word {
            names.insert(&word[..end]);
        }
        rest = &word[end..];
    }
    names
}

/// A Prometheus server as a child process, with its configuration and data in a temporary
/// directory. Killed on drop, also when the test fails (its log's tail is printed then).
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Writes prometheus.yml (one job per role, every second) with `rules` as its rule file and
    /// starts `prometheus` on a free loopback port.
    fn start(jobs: &[(&str, Vec<SocketAddr>)], rules: &Path) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cairn-prometheus-")
            .tempdir()
            .unwrap();
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\nscrape_configs:\n",
            rules.display()
        );
        for (job, targets) in jobs {
            let targets: Vec<String> = targets.iter().map(|a| format!("'{a}'")).collect();
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, &config).unwrap();
        print!("prometheus.yml:\n{config}");

        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = match Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "`prometheus` is not installed: it comes with Debian's prometheus package \
                 (`apt-get install prometheus`; scripts/setup installs it)"
            ),
            Err(e) => panic!("cannot start prometheus: {e}"),
        };
        Self { child, addr, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET path` on the HTTP API: the status code and the body, or None when it does not
    /// answer (yet).
    fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.addr, path).ok()
    }

    /// An API call that must succeed: its `data`.
    fn api(&self, path: &str) -> Value {
        let (status, body) = self
            .get(path)
            .unwrap_or_else(|| panic!("prometheus does not answer GET {path}"));
        let answer: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
        assert!(
            status == 200 && answer["status"] == "success",
            "GET {path}: HTTP {status}: {body}"
        );
        answer["data"].clone()
    }

    /// `/api/v1/query`: the status code and the whole answer.
    fn query(&self, expr: &str) -> (u16, Value) {
        let path = format!("/api/v1/query?query={}", url_encode(expr));
        let (status, body) = self
            .get(&path)
            .unwrap_or_else(|| panic!("prometheus does not answer a query"));
        let answer =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("query {expr}: {e}: {body}"));
        (status, answer)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("---- prometheus log (last {} lines) ----", tail.len());
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A plain HTTP/1.0 GET (the server closes the connection after the body, so the body is
/// everything after the head; no chunked encoding).
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head}")))?;
    Ok((status, body.to_owned()))
}

/// Percent-encodes a query parameter (everything but RFC 3986's unreserved characters).
fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every `expr` string anywhere in a Grafana dashboard (panel targets, rows' panels, …).
fn exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match v {
                    Value::String(s) if key == "expr" && !s.trim().is_empty() => {
                        out.push(s.clone());
                    }
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The values to give a dashboard's template variables: for a `label_values(selector, label)`
/// query variable, the first value Prometheus has now; for others (custom, interval, constant),
/// the dashboard's current value. Variables left out become `.*` (see [`as_grafana_sends`]).
fn variables(dashboard: &Value, prometheus: &Prometheus) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    let list = dashboard["templating"]["list"].as_array().cloned();
    for var in list.unwrap_or_default() {
        let Some(name) = var["name"].as_str() else {
            continue;
        };
        let query = match &var["query"] {
            Value::String(q) => q.clone(),
            Value::Object(q) => q["query"].as_str().unwrap_or_default().to_owned(),
            _ => String::new(),
        };
        let value = match var["type"].as_str() {
            Some("query") => query
                .trim()
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .and_then(|args| {
                    let (selector, label) = args.rsplit_once(',')?;
                    let (_, answer) =
                        prometheus.query(&format!("group by ({}) ({selector})", label.trim()));
                    let first = vector(&answer).into_iter().next()?;
                    first.0.get(label.trim()).cloned()
                }),
            Some("datasource") => None,
            _ => match &var["current"]["value"] {
                Value::String(v) => Some(v.clone()),
                Value::Array(v) => v.first().and_then(|v| v.as_str()).map(str::to_owned),
                _ => None,
            },
        };
        if let Some(value) = value.filter(|v| v != "$__all" && v != "All") {
            values.insert(name.to_owned(), value);
        }
    }
    values
}

/// A dashboard query as Prometheus gets it from Grafana: `$var`, `${var}`, `${var:format}` and
/// `[[var]]` become the variable's value from `values`, Grafana's interval variables
/// (`$__rate_interval`, `$__interval`, `$__range`…) durations, an unknown variable inside a
/// range selector (`[$window]`) 5m, and any other the regular expression `.*`.
fn as_grafana_sends(expr: &str, values: &BTreeMap<String, String>) -> String {
    let value_of = |name: &str, in_range: bool| -> String {
        let builtin = match name {
            "__rate_interval" => Some("1m"),
            "__interval" => Some("15s"),
            "__interval_ms" => Some("15000"),
            "__range" => Some("5m"),
            "__range_s" => Some("300"),
            "__range_ms" => Some("300000"),
            _ => None,
        };
        match (builtin, values.get(name)) {
            (Some(v), _) => v.to_owned(),
            (None, Some(v)) => v.clone(),
            (None, None) if in_range => "5m".to_owned(),
            (None, None) => ".*".to_owned(),
        }
    };
    let is_ident = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    let mut out = String::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        let name = match c {
            '$' if chars.peek() == Some(&'{') => {
                chars.next();
                let inner: String = chars.by_ref().take_while(|c| *c != '}').collect();
                inner.split(':').next().unwrap_or_default().to_owned()
            }
            '$' if chars
                .peek()
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_') =>
            {
                let mut name = String::new();
                while let Some(c) = chars.next_if(is_ident) {
                    name.push(c);
                }
                name
            }
            '[' if chars.peek() == Some(&'[') => {
                chars.next();
                let mut name = String::new();
                while let Some(c) = chars.next_if(is_ident) {
                    name.push(c);
                }
                assert!(
                    chars.next() == Some(']') && chars.next() == Some(']'),
                    "an unclosed [[variable]] in {expr}"
                );
                name
            }
            c => {
                out.push(c);
                continue;
            }
        };
        let in_range = out.ends_with('[') && chars.peek() == Some(&']');
        out.push_str(&value_of(&name, in_range));
    }
    out
}

fn manifest(name: &str, size: u64) -> Manifest {
    let fragment = Some(FragmentLocation {
        device_id: 1,
        version: 1,
        checksum: Checksum {
            algorithm: ChecksumAlgorithm::Crc32c,
            digest: vec![1, 2, 3, 4],
        },
        length_bytes: size as u32,
    });
    Manifest {
        name: name.into(),
        object_id: name.as_bytes().to_vec(),
        size_bytes: size,
        checksum: Checksum::none(),
        scheme: StorageScheme {
            data_fragments: 1,
            parity_fragments: 0,
            fragment_size_bytes: size as u32,
            compression: Compression::None,
            encrypted: false,
        },
        chunks: vec![Chunk {
            length_bytes: size,
            fragments: vec![fragment],
        }],
        version: 1,
        timestamp_ms: 1_700_000_000_000,
    }
}

async fn list_shards(client: &Client) -> Vec<ShardInfo> {
    match Platform::ask(client, ManagerRequest::ListShards)
        .await
        .unwrap()
    {
        ManagerResponse::Shards(list) => list,
        other => panic!("ListShards answered {other:?}"),
    }
}

fn metrics_of<'a>(procs: impl Iterator<Item = &'a Proc>) -> Vec<SocketAddr> {
    procs.map(|p| p.metrics).collect()
}

/// The instant vector of a successful query, as (labels, value) pairs.
fn vector(answer: &Value) -> Vec<(BTreeMap<String, String>, f64)> {
    answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|sample| {
            let labels = sample["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            let value = sample["value"][1].as_str().unwrap().parse().unwrap();
            (labels, value)
        })
        .collect()
}

/// Polls `check` (which blocks on Prometheus' API) until it returns `Ok`, or panics after
/// `within` with what the last attempt saw.
fn wait_for<T>(within: Duration, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        match check() {
            Ok(value) => return value,
            Err(seen) if std::time::Instant::now() >= deadline => {
                panic!("timed out after {within:?} waiting for {what}; last seen: {seen}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

const NAMESPACES: usize = 10;

/// The disk alerts the file system holding `dir` justifies (`df`'s available / size, which is
/// what `cairn_storage_disk_available_bytes / cairn_storage_disk_total_bytes` measures).
fn disk_alerts_due(dir: &Path) -> Vec<&'static str> {
    let out = Command::new("df")
        .args(["-B1", "--output=avail,size"])
        .arg(dir)
        .output()
        .expect("df runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let numbers: Vec<f64> = text
        .lines()
        .nth(1)
        .expect("df prints a row")
        .split_whitespace()
        .map(|n| n.parse().expect("df prints numbers"))
        .collect();
    let ratio = numbers[0] / numbers[1];
    // Margins around the rules' thresholds (0.10 and 0.05): a disk right at one is ambiguous.
    assert!(
        (ratio - 0.10).abs() > 0.002 && (ratio - 0.05).abs() > 0.002,
        "this machine's disk is at {ratio:.4} available, right at an alert threshold"
    );
    let mut due = Vec::new();
    if ratio < 0.10 {
        due.push("CairnDiskNearlyFull");
    }
    if ratio < 0.05 {
        due.push("CairnDiskFull");
    }
    due
}

/// Prometheus scrapes every process of a running platform (three managers, four hosts, a
/// router): it counts exactly one leader for the catalog and for each namespace shard, loads
/// the alert rules, evaluates each without error and raises none on the healthy platform, and
/// answers every query of the dashboards. The deploy recipe then does the same setup by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_prometheus_scrapes_every_process_and_sees_one_leader_per_shard() {
    let _serial = serial().await;
    // Four namespaces a shard: ten namespaces make three shards besides the catalog.
    let platform = Platform::start(Shape {
        namespaces_per_shard: 4,
        host_sites: vec!["dc1", "dc2", "dc1", "dc2"],
        ..Shape::default()
    });
    let managers = platform.manager_client();
    platform.wait_ready(&managers).await;
    for i in 0..NAMESPACES {
        let answer = Platform::ask(
            &managers,
            ManagerRequest::CreateNamespace {
                name: ns(&format!("ns-{i}")),
                home_site: None,
                placement: None,
            },
        )
        .await
        .unwrap();
        assert!(
            matches!(answer, ManagerResponse::Namespace(_)),
            "{answer:?}"
        );
    }
    // Traffic through the router: a manifest in every namespace, read back, and a read of a
    // missing one (a client error, which no alert counts).
    let router = platform.router_client();
    for i in 0..NAMESPACES {
        let space = router.routed(ns(&format!("ns-{i}")));
        space
            .write(WriteOp::PutManifest {
                manifest: manifest("obj", 100 + i as u64),
                mode: PutMode::MustNotExist,
            })
            .await
            .unwrap();
        space
            .read(
                ReadOp::GetManifests {
                    names: vec!["obj".into(), "missing".into()],
                },
                Consistency::Consistent,
            )
            .await
            .unwrap();
    }
    let shards = list_shards(&managers).await;
    let mut expected: BTreeSet<u64> = shards.iter().map(|s| s.id.0).collect();
    expected.insert(0);
    assert_eq!(
        expected.len(),
        4,
        "the catalog and three shards: {shards:?}"
    );

    let rules = dashboards().join("alerts.yml");
    let jobs = [
        ("cairn-manager", metrics_of(platform.managers.values())),
        ("cairn-shard-node", metrics_of(platform.hosts.values())),
        (
            "cairn-router",
            metrics_of(std::iter::once(&platform.router)),
        ),
    ];
    let targets_total: usize = jobs.iter().map(|(_, t)| t.len()).sum();
    let prometheus = Prometheus::start(&jobs, &rules);

    wait_for(
        Duration::from_secs(30),
        "prometheus ready",
        || match prometheus.get("/-/ready") {
            Some((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let healths = wait_for(Duration::from_secs(30), "every target up", || {
        let data = prometheus.api("/api/v1/targets?state=active");
        let targets = data["activeTargets"].as_array().unwrap();
        let healths: Vec<(String, String)> = targets
            .iter()
            .map(|t| {
                (
                    format!(
                        "{} {}",
                        t["labels"]["job"].as_str().unwrap(),
                        t["labels"]["instance"].as_str().unwrap()
                    ),
                    t["health"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        if targets.len() == targets_total && healths.iter().all(|(_, h)| h == "up") {
            Ok(healths)
        } else {
            Err(format!("{healths:?}"))
        }
    });
    println!("targets: {healths:?}");

    // One leader per shard: the catalog (0) and every namespace shard, no other.
    let leaders = "count by (shard) (cairn_raft_is_leader == 1)";
    let counts = wait_for(Duration::from_secs(30), "one leader per shard", || {
        let (status, answer) = prometheus.query(leaders);
        assert_eq!(status, 200, "{answer}");
        let counts: BTreeMap<u64, f64> = vector(&answer)
            .into_iter()
            .map(|(labels, n)| (labels["shard"].parse().unwrap(), n))
            .collect();
        if counts.keys().copied().collect::<BTreeSet<u64>>() == expected
            && counts.values().all(|n| *n == 1.0)
        {
            Ok(counts)
        } else {
            Err(format!("{counts:?}, shards {expected:?}"))
        }
    });
    println!("{leaders}: {counts:?}");

    // The rules loaded, every one evaluates without error, and none is pending or firing on
    // the healthy platform.
    let rule_count = std::fs::read_to_string(&rules)
        .unwrap()
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    let evaluated = |data: &Value| -> Vec<(String, String, String)> {
        data["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_owned(),
                    r["health"].as_str().unwrap().to_owned(),
                    r["lastError"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let rules_seen = wait_for(Duration::from_secs(30), "every rule evaluated", || {
        let data = prometheus.api("/api/v1/rules?type=alert");
        let groups: Vec<&str> = data["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert_eq!(groups, ["cairn"], "rule groups");
        let rules = evaluated(&data);
        assert_eq!(rules.len(), rule_count, "rules loaded: {rules:?}");
        for (name, health, error) in &rules {
            assert_ne!(health, "err", "{name} fails to evaluate: {error}");
        }
        if rules.iter().all(|(_, h, _)| h == "ok") {
            Ok(rules)
        } else {
            Err(format!("{rules:?}"))
        }
    });
    println!(
        "rules loaded and evaluated: {:?}",
        rules_seen.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    // Wait for a clean evaluation (a shard created a moment ago may still report its policy
    // pending), then require three more rounds without any alert.
    let active = || {
        let data = prometheus.api("/api/v1/alerts");
        data["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                format!(
                    "{} {} {}",
                    a["labels"]["alertname"].as_str().unwrap(),
                    a["state"].as_str().unwrap(),
                    a["labels"]
                )
            })
            .collect::<Vec<String>>()
    };
    // The hosts' disk is this machine's: when it really is nearly full, the disk alerts are
    // right to be pending (and must be); nothing else may be.
    let disk_alerts = disk_alerts_due(platform.dir.path());
    let unexpected = |alerts: Vec<String>| -> Vec<String> {
        alerts
            .into_iter()
            .filter(|a| {
                !disk_alerts
                    .iter()
                    .any(|name| a.starts_with(&format!("{name} ")))
            })
            .collect()
    };
    if !disk_alerts.is_empty() {
        println!("this machine's disk is nearly full: expecting {disk_alerts:?}");
        wait_for(Duration::from_secs(30), "the disk alerts", || {
            let alerts = active();
            let missing: Vec<&&str> = disk_alerts
                .iter()
                .filter(|name| !alerts.iter().any(|a| a.starts_with(&format!("{name} "))))
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {missing:?} in {alerts:#?}"))
            }
        });
    }
    let active = || unexpected(active());
    wait_for(Duration::from_secs(30), "no alert active", || {
        let alerts = active();
        if alerts.is_empty() {
            Ok(())
        } else {
            Err(format!("{alerts:#?}"))
        }
    });
    let last_evaluation = || {
        let data = prometheus.api("/api/v1/rules?type=alert");
        data["groups"][0]["lastEvaluation"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for round in 0..3 {
        let before = last_evaluation();
        wait_for(Duration::from_secs(10), "the next rule evaluation", || {
            let now = last_evaluation();
            if now == before { Err(now) } else { Ok(()) }
        });
        let alerts = active();
        assert!(
            alerts.is_empty(),
            "alerts on the healthy platform (round {round}): {alerts:#?}"
        );
    }
    println!("no alert pending or firing over three evaluations");

    // Every query of the dashboards is valid PromQL against the real series.
    let mut files: Vec<PathBuf> = std::fs::read_dir(dashboards())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut checked = 0;
    for file in &files {
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut found = Vec::new();
        exprs(&dashboard, &mut found);
        let values = variables(&dashboard, &prometheus);
        let mut with_data = 0;
        for expr in &found {
            let sent = as_grafana_sends(expr, &values);
            let (status, answer) = prometheus.query(&sent);
            assert!(
                status == 200 && answer["status"] == "success",
                "{}: the query {expr:?} (sent as {sent:?}) fails: {answer}",
                file.display()
            );
            with_data += usize::from(
                answer["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty()),
            );
        }
        println!(
            "{}: {} queries evaluate ({with_data} with data now; variables {values:?})",
            file.file_name().unwrap().to_string_lossy(),
            found.len()
        );
        checked += found.len();
    }
    println!(
        "dashboard queries checked: {checked} in {} files",
        files.len()
    );
    drop(prometheus);

    // The deploy recipe over the same platform: up, status, down.
    let recipe = Recipe::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut args = vec!["--listen".to_owned(), port.to_string()];
    for (flag, (_, targets)) in ["--manager", "--host", "--router"].iter().zip(&jobs) {
        for target in targets {
            args.extend([flag.to_string(), target.to_string()]);
        }
    }
    let up = recipe.run("up", &args);
    assert!(
        up.contains(&format!("prometheus: up at http://{port}")),
        "{up}"
    );
    assert_eq!(
        up.matches("} => 1 @").count(),
        targets_total + expected.len(),
        "{up}"
    );
    let status = recipe.run("status", &[]);
    assert!(status.contains("leaders per shard:"), "{status}");
    recipe.run("down", &[]);
}

/// `deploy/prometheus/{up,status,down}` with its state in a temporary directory; `down` runs
/// again on drop, so that a failed test leaves no Prometheus behind.
struct Recipe {
    dir: tempfile::TempDir,
}

impl Recipe {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cairn-recipe-")
            .tempdir()
            .unwrap();
        Self { dir }
    }

    /// Runs a command of the recipe; panics with its output when it fails.
    fn run(&self, command: &str, args: &[String]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/prometheus")
            .join(command);
        let out = Command::new("bash")
            .arg(&script)
            .args(args)
            .args(["--dir", self.dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        print!("$ deploy/prometheus/{command} {}\n{text}", args.join(" "));
        assert!(
            out.status.success(),
            "deploy/prometheus/{command} failed:\n{text}"
        );
        text
    }
}

impl Drop for Recipe {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/down");
        let _ = Command::new("bash")
            .arg(script)
            .args(["--dir", self.dir.path().to_str().unwrap()])
            .output();
    }
}

#[test]
fn dashboard_variables_become_what_grafana_sends() {
    let values = BTreeMap::from([("shard".to_owned(), "3".to_owned())]);
    assert_eq!(
        as_grafana_sends(
            "sum by (shard) (rate(cairn_raft_elections_total{site=~\"$site\",shard=\"${shard}\"}[$__rate_interval]))",
            &values
        ),
        "sum by (shard) (rate(cairn_raft_elections_total{site=~\".*\",shard=\"3\"}[1m]))"
    );
    assert_eq!(
        as_grafana_sends(
            "increase(cairn_requests_total{node=~\"[[node]]\",shard=\"$shard\"}[$window]) / $shards_total",
            &values
        ),
        "increase(cairn_requests_total{node=~\".*\",shard=\"3\"}[5m]) / .*"
    );
    assert_eq!(
        as_grafana_sends("x{site=~\"${site:regex}\"}", &values),
        "x{site=~\".*\"}"
    );
    assert_eq!(url_encode("a b{c=\"d\"}"), "a%20b%7Bc%3D%22d%22%7D");
}
