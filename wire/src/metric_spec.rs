//! What every process exports to Prometheus, declared once: each role's metrics module lists
//! its [`MetricSpec`]s, describes them to the recorder at start (the `# HELP` lines), and
//! `dashboards/METRICS.md` is generated from the same lists ([`render_markdown`]), so the
//! documentation cannot drift from the code. A test scrapes real processes and checks both
//! ways: every exported `cairn_` metric is declared, and every declared one is exported.
//!
//! Naming follows Prometheus conventions: the `cairn_` prefix, base units in the name
//! (`_seconds`, `_bytes`), `_total` for counters, histograms for latencies. Labels stay bounded:
//! shard ids, node ids, sites, operations and outcomes; never namespace names or keys.

use std::fmt::Write as _;

/// The Prometheus type of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (reset at restart); ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets (`_bucket`, `_sum`, `_count` series).
    Histogram,
}

impl MetricKind {
    /// The name Prometheus' `# TYPE` line uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One metric: its name, type, labels and meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricSpec {
    /// The full name (`cairn_...`).
    pub name: &'static str,
    /// Its type.
    pub kind: MetricKind,
    /// Its labels (every series has all of them).
    pub labels: &'static [&'static str],
    /// What it measures, in one sentence (the `# HELP` text).
    pub help: &'static str,
}

impl MetricSpec {
    /// A counter.
    pub const fn counter(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Self {
            name,
            kind: MetricKind::Counter,
            labels,
            help,
        }
    }

    /// A gauge.
    pub const fn gauge(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Self {
            name,
            kind: MetricKind::Gauge,
            labels,
            help,
        }
    }

    /// A histogram.
    pub const fn histogram(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Self {
            name,
            kind: MetricKind::Histogram,
            labels,
            help,
        }
    }

    /// Whether `series` (a series name as scraped: a histogram's `_bucket`, `_sum` and
    /// `_count` included) belongs to this metric.
    pub fn owns(&self, series: &str) -> bool {
        if series == self.name {
            return true;
        }
        self.kind == MetricKind::Histogram
            && series
                .strip_prefix(self.name)
                .is_some_and(|rest| matches!(rest, "_bucket" | "_sum" | "_count"))
    }
}

/// Why a list of metrics breaks the conventions (checked by every role's tests).
pub fn check(specs: &[MetricSpec]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for spec in specs {
        let name = spec.name;
        if !seen.insert(name) {
            return Err(format!("{name} is declared twice"));
        }
        if !name.starts_with("cairn_")
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!("{name}: names are cairn_ and lowercase snake case"));
        }
        if (spec.kind == MetricKind::Counter) != name.ends_with("_total") {
            return Err(format!(
                "{name}: counters, and only counters, end in _total"
            ));
        }
        if spec.kind == MetricKind::Histogram
            && !(name.ends_with("_seconds")
                || name.ends_with("_bytes")
                || name.ends_with("_entries"))
        {
            return Err(format!("{name}: a histogram names its unit"));
        }
        if let Some(label) = spec
            .labels
            .iter()
            .find(|l| matches!(**l, "namespace" | "key" | "name" | "object"))
        {
            return Err(format!("{name}: label {label} would be unbounded"));
        }
        if spec.help.is_empty() || !spec.help.ends_with('.') {
            return Err(format!(
                "{name}: the help text is one sentence ending in '.'"
            ));
        }
    }
    Ok(())
}

/// The table of `dashboards/METRICS.md`: one section per process role, one row per metric.
pub fn render_markdown(roles: &[(&str, &str, &[MetricSpec])]) -> String {
    let mut out = String::from(
        "# cairn metrics\n\n\
         Generated from the code (`MetricSpec` lists in each role's `metrics.rs`) by\n\
         `CAIRN_UPDATE_METRICS_DOC=1 cargo test --workspace --test metrics_doc`; the test fails\n\
         when this file and the code disagree. Every process also serves `# HELP` lines with\n\
         the same text on its `/metrics` listener.\n\n\
         Conventions: the `cairn_` prefix, base units in names (`_seconds`, `_bytes`), `_total`\n\
         for counters, histograms for latencies. Labels stay bounded: shard and node ids,\n\
         sites, operations, outcomes; never namespace names or keys.\n",
    );
    for (role, about, specs) in roles {
        let _ = write!(
            out,
            "\n## {role}\n\n{about}\n\n| metric | type | labels | meaning |\n"
        );
        out.push_str("| --- | --- | --- | --- |\n");
        let mut sorted: Vec<&MetricSpec> = specs.iter().collect();
        sorted.sort_by_key(|s| s.name);
        for spec in sorted {
            let labels = if spec.labels.is_empty() {
                String::new()
            } else {
                spec.labels
                    .iter()
                    .map(|l| format!("`{l}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {labels} | {} |",
                spec.name,
                spec.kind.as_str(),
                spec.help
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conventions_are_enforced() {
        let ok = MetricSpec::counter("cairn_x_total", &["shard"], "Things.");
        assert!(check(&[ok]).is_ok());
        for bad in [
            MetricSpec::counter("cairn_x", &[], "Things."),
            MetricSpec::gauge("cairn_x_total", &[], "Things."),
            MetricSpec::gauge("x_things", &[], "Things."),
            MetricSpec::histogram("cairn_latency", &[], "Latency."),
            MetricSpec::gauge("cairn_x", &["namespace"], "Things."),
            MetricSpec::gauge("cairn_x", &[], "no period"),
        ] {
            assert!(check(&[bad]).is_err(), "{bad:?} passed");
        }
        assert!(check(&[ok, ok]).is_err(), "a duplicate passed");
    }

    #[test]
    fn histograms_own_their_series() {
        let h = MetricSpec::histogram("cairn_x_seconds", &[], "Latency.");
        assert!(h.owns("cairn_x_seconds_bucket"));
        assert!(h.owns("cairn_x_seconds_count"));
        assert!(!h.owns("cairn_x_seconds_total"));
        let g = MetricSpec::gauge("cairn_x", &[], "X.");
        assert!(!g.owns("cairn_x_count"));
    }

    #[test]
    fn the_table_has_one_row_per_metric_sorted() {
        let specs = [
            MetricSpec::gauge("cairn_b", &["shard", "site"], "B."),
            MetricSpec::counter("cairn_a_total", &[], "A."),
        ];
        let text = render_markdown(&[("router", "The router.", &specs)]);
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| `")).collect();
        assert_eq!(
            rows,
            [
                "| `cairn_a_total` | counter |  | A. |",
                "| `cairn_b` | gauge | `shard`, `site` | B. |"
            ]
        );
        assert!(text.contains("\n## router\n\nThe router.\n"));
    }
}
