//! The Grafana dashboards (`dashboards/*.json`) checked without running anything: each file is
//! a dashboard Grafana can provision (a uid of its own, unique panel ids, the data source as the
//! `${datasource}` variable the provisioned Prometheus answers), every panel has a title, a unit
//! and a query, and every query uses only metrics the processes declare (the `SPECS` lists that
//! `dashboards/METRICS.md` is generated from) with labels those metrics carry.
//!
//! The queries are read by a small PromQL lexer, not a full parser: it finds series selectors
//! and their matchers, and the label lists of `by`, `without`, `on`, `ignoring`, `group_left`
//! and `group_right`. A `by` or `without` label must be on some metric inside the aggregation
//! it groups (a label copied in by `group_left` is on the metric it comes from); a join label
//! must be on some metric of the query. `monitoring.rs` checks the same names against live
//! scrapes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use cairn_wire::metric_spec::{MetricKind, MetricSpec};
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards");

/// The dashboards the operators' documentation (dashboards/README.md) promises.
const REQUIRED: &[&str] = &[
    "cairn-overview.json",
    "cairn-shard.json",
    "cairn-router.json",
    "cairn-manager.json",
];

/// The uid of the Prometheus data source that provisioning creates and the dashboards' data
/// source variable selects by default.
const DATASOURCE_UID: &str = "cairn-prometheus";

/// Labels Prometheus adds to every scraped series.
const SCRAPE_LABELS: &[&str] = &["instance", "job"];

/// Grafana's own variables a query may use.
const GRAFANA_VARIABLES: &[&str] = &["__rate_interval", "__interval", "__range"];

/// Words of PromQL that are not series names when they are not followed by `(`.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "atan2",
];

/// Every metric any process declares.
fn specs() -> Vec<MetricSpec> {
    let mut all = shard_node::metrics::SPECS.to_vec();
    all.extend_from_slice(cairn_manager::metrics::SPECS);
    all.extend_from_slice(cairn_router::metrics::SPECS);
    all
}

/// One dashboard file, parsed.
struct Dashboard {
    file: String,
    json: Value,
}

fn dashboards() -> Vec<Dashboard> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(DIR).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("dashboards/{file} is not valid JSON: {e}"));
            found.push(Dashboard { file, json });
        }
    }
    found.sort_by(|a, b| a.file.cmp(&b.file));
    found
}

/// Every panel, those inside rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            if let Some(inner) = panel.get("panels") {
                walk(inner, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn is_row(panel: &Value) -> bool {
    panel["type"] == "row"
}

/// The dashboard's template variables.
fn variables(dashboard: &Value) -> Vec<&Value> {
    dashboard["templating"]["list"]
        .as_array()
        .map(|l| l.iter().collect())
        .unwrap_or_default()
}

/// A variable's query: a string, or an object with a `query` string (the Prometheus editor's).
fn variable_query(variable: &Value) -> Option<&str> {
    match &variable["query"] {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("query").and_then(Value::as_str),
        _ => None,
    }
}

#[test]
fn the_promised_dashboards_exist_parse_and_have_unique_uids() {
    let all = dashboards();
    let files: BTreeSet<&str> = all.iter().map(|d| d.file.as_str()).collect();
    for required in REQUIRED {
        assert!(files.contains(required), "dashboards/{required} is missing");
    }
    let mut uids = BTreeMap::new();
    let mut titles = BTreeMap::new();
    for d in &all {
        let uid = d.json["uid"].as_str().unwrap_or_default();
        assert!(!uid.is_empty(), "{}: no uid", d.file);
        assert!(
            uid.len() <= 40,
            "{}: Grafana uids have at most 40 characters",
            d.file
        );
        if let Some(other) = uids.insert(uid, &d.file) {
            panic!("{} and {other} share the uid {uid}", d.file);
        }
        let title = d.json["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "{}: no title", d.file);
        if let Some(other) = titles.insert(title, &d.file) {
            panic!("{} and {other} share the title {title:?}", d.file);
        }
        let schema = d.json["schemaVersion"].as_u64().unwrap_or(0);
        assert!(
            (36..=41).contains(&schema),
            "{}: schemaVersion {schema}, expected 36 to 41",
            d.file
        );
        assert!(
            d.json["id"].is_null(),
            "{}: the id is Grafana's own (null in a provisioned file)",
            d.file
        );
        for key in ["refresh", "time"] {
            assert!(!d.json[key].is_null(), "{}: no {key}", d.file);
        }
    }
}

#[test]
fn the_data_source_is_a_variable_that_defaults_to_the_provisioned_prometheus() {
    for d in dashboards() {
        let source = variables(&d.json)
            .into_iter()
            .find(|v| v["name"] == "datasource")
            .unwrap_or_else(|| panic!("{}: no datasource variable", d.file));
        assert_eq!(source["type"], "datasource", "{}", d.file);
        assert_eq!(source["query"], "prometheus", "{}", d.file);
        assert_eq!(source["current"]["value"], DATASOURCE_UID, "{}", d.file);
        for panel in panels(&d.json).into_iter().filter(|p| !is_row(p)) {
            let title = &panel["title"];
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{}: panel {title}",
                d.file
            );
            for target in panel["targets"].as_array().into_iter().flatten() {
                assert!(
                    target.get("datasource").is_none()
                        || target["datasource"]["uid"] == "${datasource}",
                    "{}: a query of panel {title} names its own data source",
                    d.file
                );
            }
        }
        for variable in variables(&d.json) {
            if variable["type"] == "query" {
                assert_eq!(
                    variable["datasource"]["uid"], "${datasource}",
                    "{}: variable {}",
                    d.file, variable["name"]
                );
            }
        }
    }
    let provisioned = std::fs::read_to_string(format!(
        "{DIR}/grafana/provisioning/datasources/prometheus.yml"
    ))
    .unwrap();
    assert!(
        provisioned
            .lines()
            .any(|l| l.trim() == format!("uid: {DATASOURCE_UID}")),
        "the provisioned data source's uid is not {DATASOURCE_UID}"
    );
    let provider =
        std::fs::read_to_string(format!("{DIR}/grafana/provisioning/dashboards/cairn.yml"))
            .unwrap();
    assert!(
        provider.contains("type: file") && provider.contains("path:"),
        "the dashboard provider reads files from a path"
    );
}

#[test]
fn every_panel_has_a_unique_id_a_title_a_unit_and_a_query() {
    for d in dashboards() {
        let mut ids = BTreeSet::new();
        for panel in panels(&d.json) {
            let title = panel["title"].as_str().unwrap_or_default();
            let id = panel["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{}: panel {title:?} has no id", d.file));
            assert!(
                ids.insert(id),
                "{}: panel id {id} is used twice ({title:?})",
                d.file
            );
            assert!(!title.is_empty(), "{}: panel {id} has no title", d.file);
            if is_row(panel) {
                continue;
            }
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            assert!(
                !targets.is_empty(),
                "{}: panel {title:?} has no query",
                d.file
            );
            let mut refs = BTreeSet::new();
            for target in &targets {
                let expr = target["expr"].as_str().unwrap_or_default();
                assert!(
                    !expr.trim().is_empty(),
                    "{}: panel {title:?} has an empty query",
                    d.file
                );
                let r = target["refId"].as_str().unwrap_or_default();
                assert!(
                    refs.insert(r.to_owned()),
                    "{}: panel {title:?} repeats refId {r:?}",
                    d.file
                );
            }
            if panel["type"] != "table" {
                let unit = panel["fieldConfig"]["defaults"]["unit"]
                    .as_str()
                    .unwrap_or_default();
                assert!(!unit.is_empty(), "{}: panel {title:?} has no unit", d.file);
            }
        }
    }
}

#[test]
fn panels_fit_the_grid_without_overlapping() {
    for d in dashboards() {
        let mut placed: Vec<(&str, [u64; 4])> = Vec::new();
        for panel in panels(&d.json) {
            let title = panel["title"].as_str().unwrap_or_default();
            let at = &panel["gridPos"];
            let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| at[k].as_u64().unwrap_or(0));
            assert!(
                w > 0 && h > 0 && x + w <= 24,
                "{}: panel {title:?} is outside the 24-column grid",
                d.file
            );
            for (other, [ox, oy, ow, oh]) in &placed {
                let apart = x + w <= *ox || ox + ow <= x || y + h <= *oy || oy + oh <= y;
                assert!(apart, "{}: panels {title:?} and {other:?} overlap", d.file);
            }
            placed.push((title, [x, y, w, h]));
        }
    }
}

#[test]
fn every_query_uses_only_declared_metrics_with_their_labels() {
    let specs = specs();
    let mut errors = Vec::new();
    let mut used = BTreeSet::new();
    for d in dashboards() {
        let defined: BTreeSet<String> = variables(&d.json)
            .iter()
            .filter_map(|v| v["name"].as_str().map(str::to_owned))
            .collect();
        let mut check = |place: String, expr: &str, checked: Result<Vec<&'static str>, String>| {
            match checked {
                Ok(names) => used.extend(names),
                Err(e) => errors.push(format!("{}: {place}: {e}\n    {expr}", d.file)),
            }
            if let Err(e) = check_variables(expr, &defined) {
                errors.push(format!("{}: {place}: {e}\n    {expr}", d.file));
            }
        };
        for panel in panels(&d.json).into_iter().filter(|p| !is_row(p)) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                let place = format!("panel {}", panel["title"]);
                check(place, expr, check_expr(expr, &specs));
            }
        }
        for variable in variables(&d.json) {
            if variable["type"] == "query" {
                let query = variable_query(variable).unwrap_or_default();
                let place = format!("variable {}", variable["name"]);
                check(place, query, check_variable_query(query, &specs));
            }
        }
    }
    assert!(
        errors.is_empty(),
        "{} problems in the dashboards' queries:\n{}",
        errors.len(),
        errors.join("\n")
    );
    // Every role is on a dashboard.
    for prefix in ["cairn_raft_", "cairn_manager_", "cairn_router_"] {
        assert!(
            used.iter().any(|n| n.starts_with(prefix)),
            "no dashboard shows a {prefix} metric"
        );
    }
}

// The checker, and cases that prove it rejects what it should. -------------------------------

#[test]
fn an_undeclared_metric_is_rejected() {
    let specs = specs();
    let e = check_expr("sum(rate(cairn_made_up_total[5m]))", &specs).unwrap_err();
    assert!(e.contains("cairn_made_up_total"), "{e}");
    assert!(check_expr("sum(rate(cairn_requests_total[5m]))", &specs).is_ok());
    // Not a cairn metric at all (the dashboards use cairn's own).
    assert!(check_expr("up == 0", &specs).is_err());
    // A name inside a string is not a reference.
    assert!(check_expr(r#"cairn_raft_term{shard="cairn_nope"}"#, &specs).is_ok());
}

#[test]
fn a_histogram_is_referenced_by_its_series() {
    let specs = specs();
    assert_eq!(
        check_expr(
            "histogram_quantile(0.99, sum by (le) (rate(cairn_storage_fsync_seconds_bucket[5m])))",
            &specs
        ),
        Ok(vec!["cairn_storage_fsync_seconds"])
    );
    assert!(check_expr("rate(cairn_storage_fsync_seconds_count[5m])", &specs).is_ok());
    assert!(check_expr("cairn_storage_fsync_seconds_total", &specs).is_err());
    assert!(check_expr("cairn_raft_term_bucket", &specs).is_err());
    // `le` belongs to buckets only.
    assert!(
        check_expr(
            "histogram_quantile(0.9, sum by (le) (rate(cairn_raft_term[5m])))",
            &specs
        )
        .is_err()
    );
}

#[test]
fn a_label_the_metric_lacks_is_rejected() {
    let specs = specs();
    for bad in [
        r#"cairn_raft_term{site="a"}"#,
        "sum by (site) (cairn_raft_term)",
        "sum(cairn_raft_term) by (role)",
        "cairn_raft_term * on(site) cairn_replicas",
        "cairn_raft_term * on(instance) group_left(colour) cairn_process_info",
        r#"sum by (outcome) (rate(cairn_router_requests_total{kind!="ok"}[5m]))"#,
        "sum without (op) (cairn_raft_term)",
    ] {
        assert!(check_expr(bad, &specs).is_err(), "{bad} passed");
    }
    for good in [
        r#"sum by (site) (cairn_raft_is_leader{shard!="0"} * on(instance) group_left(site) cairn_process_info)"#,
        "sum(cairn_raft_term) by (shard, instance)",
        r#"cairn_raft_term{shard="$shard", job=~".+"}"#,
        "count(max by (shard) (cairn_raft_is_leader) == 0) or vector(0)",
        "max(changes(cairn_raft_term[1h:1m] offset 5m))",
    ] {
        assert!(
            check_expr(good, &specs).is_ok(),
            "{good}: {:?}",
            check_expr(good, &specs)
        );
    }
}

#[test]
fn variable_queries_and_references_are_checked() {
    let specs = specs();
    assert!(check_variable_query("label_values(cairn_raft_term, shard)", &specs).is_ok());
    assert!(check_variable_query("label_values(cairn_raft_term, site)", &specs).is_err());
    assert!(check_variable_query("label_values(cairn_nope, shard)", &specs).is_err());
    let defined = BTreeSet::from(["shard".to_owned()]);
    assert!(
        check_variables(
            r#"rate(cairn_raft_term{shard="$shard"}[$__rate_interval])"#,
            &defined
        )
        .is_ok()
    );
    assert!(check_variables(r#"cairn_raft_term{shard="${shard}"}"#, &defined).is_ok());
    assert!(check_variables(r#"cairn_raft_term{shard="$shrad"}"#, &defined).is_err());
}

/// One lexical piece of a PromQL query.
#[derive(Clone, Debug, PartialEq)]
enum Token<'a> {
    /// A name: a metric, a function, a label, or a keyword.
    Ident(&'a str),
    /// A quoted string (its text does not matter here).
    Str,
    /// `(` or `{`.
    Open(char),
    /// `)` or `}`.
    Close(char),
    /// A range or subquery, `[...]`.
    Range,
    /// `,`.
    Comma,
    /// A number, a duration, an operator, a variable outside a string.
    Other,
}

fn lex(expr: &str) -> Result<Vec<Token<'_>>, String> {
    let bytes = expr.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    let ident_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'"' | b'\'' | b'`' => {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != b {
                    j += if bytes[j] == b'\\' && b != b'`' { 2 } else { 1 };
                }
                if j >= bytes.len() {
                    return Err("an unterminated string".into());
                }
                tokens.push(Token::Str);
                i = j + 1;
            }
            b'[' => {
                let end = expr[i..]
                    .find(']')
                    .ok_or_else(|| "an unterminated range".to_owned())?;
                tokens.push(Token::Range);
                i += end + 1;
            }
            b'(' | b'{' => {
                tokens.push(Token::Open(b as char));
                i += 1;
            }
            b')' | b'}' => {
                tokens.push(Token::Close(b as char));
                i += 1;
            }
            b',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            b'$' => {
                // A variable outside a string (`topk($n, ...)`): `${name}` or `$name`.
                i += 1;
                if bytes.get(i) == Some(&b'{') {
                    i += expr[i..].find('}').map_or(expr.len() - i, |e| e + 1);
                } else {
                    while i < bytes.len() && ident_char(bytes[i]) {
                        i += 1;
                    }
                }
                tokens.push(Token::Other);
            }
            _ if b.is_ascii_digit()
                || (b == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                while i < bytes.len() && (ident_char(bytes[i]) || bytes[i] == b'.') {
                    i += 1;
                }
                tokens.push(Token::Other);
            }
            _ if b.is_ascii_alphabetic() || b == b'_' || b == b':' => {
                let start = i;
                while i < bytes.len() && ident_char(bytes[i]) {
                    i += 1;
                }
                tokens.push(Token::Ident(&expr[start..i]));
            }
            _ => {
                tokens.push(Token::Other);
                i += 1;
            }
        }
    }
    Ok(tokens)
}

/// For every `(` and `{`, the index of the token that closes it, and the reverse.
fn pairs(tokens: &[Token<'_>]) -> Result<BTreeMap<usize, usize>, String> {
    let mut open = Vec::new();
    let mut pairs = BTreeMap::new();
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::Open(c) => open.push((i, *c)),
            Token::Close(c) => {
                let (o, oc) = open.pop().ok_or_else(|| format!("an unopened '{c}'"))?;
                if (oc, *c) != ('(', ')') && (oc, *c) != ('{', '}') {
                    return Err(format!("'{oc}' closed by '{c}'"));
                }
                pairs.insert(o, i);
                pairs.insert(i, o);
            }
            _ => {}
        }
    }
    match open.pop() {
        Some((_, c)) => Err(format!("an unclosed '{c}'")),
        None => Ok(pairs),
    }
}

/// A series selector found in a query: the index of its name's token, its metric, and the
/// labels the metric has.
struct Selector {
    at: usize,
    spec: MetricSpec,
    labels: BTreeSet<&'static str>,
}

/// A label list: `by (...)`, `on (...)`, ...: the keyword's token index, the labels, and the
/// index of the `)` that ends the list.
struct Clause<'a> {
    keyword: &'a str,
    at: usize,
    labels: Vec<&'a str>,
    end: usize,
}

/// Checks one query: every series is a declared cairn metric (a histogram by its `_bucket`,
/// `_sum` or `_count` series), every label it matches on, groups by or joins on exists there.
/// Returns the metrics used.
fn check_expr(expr: &str, specs: &[MetricSpec]) -> Result<Vec<&'static str>, String> {
    let tokens = lex(expr)?;
    let pairs = pairs(&tokens)?;
    let mut selectors = Vec::new();
    let mut clauses = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let next = tokens.get(i + 1);
        match &tokens[i] {
            Token::Ident(word)
                if matches!(
                    *word,
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) && next == Some(&Token::Open('(')) =>
            {
                let end = pairs[&(i + 1)];
                let mut labels = Vec::new();
                for t in &tokens[i + 2..end] {
                    match t {
                        Token::Ident(l) => labels.push(*l),
                        Token::Comma => {}
                        other => return Err(format!("{word}(...) holds {other:?}")),
                    }
                }
                clauses.push(Clause {
                    keyword: word,
                    at: i,
                    labels,
                    end,
                });
                i = end + 1;
            }
            // A function, or an aggregation (`sum(`, `sum by (`).
            Token::Ident(_)
                if next == Some(&Token::Open('('))
                    || next == Some(&Token::Ident("by"))
                    || next == Some(&Token::Ident("without")) =>
            {
                i += 1
            }
            Token::Ident(word) if KEYWORDS.contains(word) => i += 1,
            Token::Ident(name) => {
                let at = i;
                let spec = specs
                    .iter()
                    .find(|s| s.owns(name))
                    .copied()
                    .ok_or_else(|| {
                        if name.starts_with("cairn_") {
                            format!("{name} is not a declared metric (see dashboards/METRICS.md)")
                        } else {
                            format!("{name} is not a cairn metric")
                        }
                    })?;
                let mut labels: BTreeSet<&'static str> = spec.labels.iter().copied().collect();
                labels.extend(SCRAPE_LABELS);
                if spec.kind == MetricKind::Histogram && name.ends_with("_bucket") {
                    labels.insert("le");
                }
                i += 1;
                if next == Some(&Token::Open('{')) {
                    let end = pairs[&i];
                    for (j, t) in tokens[i + 1..end].iter().enumerate() {
                        // Matchers are `label op "value"`: the label opens each.
                        let first = j == 0 || tokens[i + j] == Token::Comma;
                        match t {
                            Token::Ident(label) if first && !labels.contains(label) => {
                                return Err(format!("{name} has no label {label}"));
                            }
                            _ => {}
                        }
                    }
                    i = end + 1;
                }
                selectors.push(Selector { at, spec, labels });
            }
            Token::Open('{') => return Err("a selector without a metric name".into()),
            _ => i += 1,
        }
    }
    let labels_in = |from: usize, to: usize| -> BTreeSet<&'static str> {
        selectors
            .iter()
            .filter(|s| (from..=to).contains(&s.at))
            .flat_map(|s| s.labels.iter().copied())
            .collect()
    };
    for clause in &clauses {
        let known = if matches!(clause.keyword, "by" | "without") {
            // The aggregation's argument: after the list (`sum by (x) (...)`), or before the
            // keyword (`sum(...) by (x)`).
            let (from, to) = if tokens.get(clause.end + 1) == Some(&Token::Open('(')) {
                (clause.end + 1, pairs[&(clause.end + 1)])
            } else if clause.at > 0 && tokens[clause.at - 1] == Token::Close(')') {
                (pairs[&(clause.at - 1)], clause.at - 1)
            } else {
                return Err(format!("{} (...) groups nothing", clause.keyword));
            };
            labels_in(from, to)
        } else {
            labels_in(0, tokens.len())
        };
        for label in &clause.labels {
            if !known.contains(label) {
                return Err(format!(
                    "{}({}): no metric there has label {label}",
                    clause.keyword,
                    clause.labels.join(", ")
                ));
            }
        }
    }
    if selectors.is_empty() {
        return Err("the query reads no metric".into());
    }
    let mut names: Vec<&'static str> = selectors.iter().map(|s| s.spec.name).collect();
    names.sort_unstable();
    names.dedup();
    Ok(names)
}

/// Checks a variable's query: `label_values(selector, label)` with the label on the metric.
fn check_variable_query(query: &str, specs: &[MetricSpec]) -> Result<Vec<&'static str>, String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .ok_or_else(|| "variables are label_values(metric, label)".to_owned())?;
    let (selector, label) = inner
        .rsplit_once(',')
        .ok_or_else(|| "label_values names a metric".to_owned())?;
    let label = label.trim();
    let names = check_expr(selector, specs)?;
    let spec = specs.iter().find(|s| s.name == names[0]).unwrap();
    if !spec.labels.contains(&label) && !SCRAPE_LABELS.contains(&label) {
        return Err(format!("{} has no label {label}", spec.name));
    }
    Ok(names)
}

/// Checks that every `$name`, `${name}` (or `${name:format}`) and `[[name]]` in a query is a
/// variable of the dashboard or one of Grafana's own.
fn check_variables(expr: &str, defined: &BTreeSet<String>) -> Result<(), String> {
    let ident_end = |s: &str| {
        s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len())
    };
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find(['$', '[']) {
        let tail = &rest[at + 1..];
        if rest[at..].starts_with('$') {
            let name = match tail.strip_prefix('{') {
                Some(braced) => &braced[..braced.find(['}', ':']).unwrap_or(braced.len())],
                None => &tail[..ident_end(tail)],
            };
            names.push(name);
        } else if let Some(inner) = tail.strip_prefix('[') {
            names.push(&inner[..ident_end(inner)]);
        }
        rest = tail;
    }
    for name in names.into_iter().filter(|n| !n.is_empty()) {
        if !(defined.contains(name) || GRAFANA_VARIABLES.contains(&name)) {
            return Err(format!("${name} is not a variable of the dashboard"));
        }
    }
    Ok(())
}
