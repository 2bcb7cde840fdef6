//! `dashboards/METRICS.md` is generated from the code's metric lists (`SPECS` in each role's
//! `metrics.rs`): this test fails when the file and the code disagree, and rewrites the file
//! when run with `CAIRN_UPDATE_METRICS_DOC=1`. The lists themselves must follow the naming and
//! label conventions.

use std::collections::BTreeSet;

use cairn_wire::metric_spec::{self, MetricSpec};

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards/METRICS.md");

fn roles() -> [(&'static str, &'static str, &'static [MetricSpec]); 3] {
    [
        (
            "Nodes: shard-node hosts and managers",
            "Exported by every `cairn shard-node` and `cairn manager` process (a manager runs a \
             node for the catalog group, shard 0). Per-shard series carry the `shard` label.",
            shard_node::metrics::SPECS,
        ),
        (
            "Managers",
            "Exported by `cairn manager` processes in addition to the node metrics. The catalog \
             gauges are reported by the leading manager; the others report 0, so sums and maxima \
             over all managers are the leader's figures.",
            cairn_manager::metrics::SPECS,
        ),
        (
            "Routers",
            "Exported by every `cairn router` process.",
            cairn_router::metrics::SPECS,
        ),
    ]
}

#[test]
fn every_metric_list_follows_the_conventions_and_no_name_is_in_two() {
    let mut names = BTreeSet::new();
    for (role, _, specs) in roles() {
        if let Err(e) = metric_spec::check(specs) {
            panic!("{role}: {e}");
        }
        for spec in specs {
            assert!(
                names.insert(spec.name),
                "{} is declared by two roles",
                spec.name
            );
        }
    }
}

#[test]
fn metrics_md_is_generated_from_the_code() {
    let wanted = metric_spec::render_markdown(&roles());
    if std::env::var_os("CAIRN_UPDATE_METRICS_DOC").is_some() {
        std::fs::write(DOC, &wanted).unwrap();
        return;
    }
    let found = std::fs::read_to_string(DOC).unwrap_or_default();
    assert!(
        found == wanted,
        "dashboards/METRICS.md does not match the metrics in the code: run \
         `CAIRN_UPDATE_METRICS_DOC=1 cargo test --workspace --test metrics_doc` and review the \
         diff"
    );
}
