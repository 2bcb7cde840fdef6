//! The benchmark harness end to end, at smoke-test size: `cairn-bench suite --quick` starts real
//! cairn processes and a real etcd cluster, runs every workload against both, measures the
//! limits and the idle cost, and writes the report. Nothing here checks a timing (machines are
//! shared and noisy): it checks that every figure the report promises was measured, without
//! errors, and that the report, the data files and the plots are written.
//!
//! Needs etcd (`scripts/setup` installs Debian's `etcd-server`); skipped with a message when it
//! is missing.

use std::net::{TcpListener, UdpSocket};
use std::process::Command;

/// The suite uses ports base+1 to base+300 (cairn, etcd, the idle platform).
const PORT_SPAN: u16 = 300;

#[test]
fn quick_suite_measures_both_systems_and_writes_the_report() {
    if Command::new("etcd").arg("--version").output().is_err() {
        eprintln!("SKIPPED: etcd is not installed (scripts/setup installs etcd-server)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let base = free_port_block();
    let output = Command::new(env!("CARGO_BIN_EXE_cairn-bench"))
        .args(["suite", "--quick", "--base-port", &base.to_string()])
        .arg("--out")
        .arg(&out)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the suite failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );

    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let runs = results["runs"].as_array().unwrap();
    let workloads = [
        "write",
        "read-consistent",
        "read-local",
        "mixed-90-10",
        "router-cached",
        "router-consistent",
        "write-shards",
    ];
    for system in ["cairn", "etcd"] {
        for workload in workloads {
            let run = runs
                .iter()
                .find(|r| r["system"] == system && r["workload"] == workload)
                .unwrap_or_else(|| panic!("no {workload} run of {system}\n{stdout}"));
            assert!(run["ops"].as_u64().unwrap() > 0, "{run}");
            assert_eq!(run["errors"], 0, "{run}");
            let latency = &run["latency"];
            assert!(latency["p50_us"].as_f64().unwrap() > 0.0, "{run}");
            assert!(
                latency["p50_us"].as_f64() <= latency["p99_us"].as_f64()
                    && latency["p99_us"].as_f64() <= latency["p999_us"].as_f64(),
                "{run}"
            );
        }
        // The multi-shard workload ran at 1 and 2 shards, and an open-loop run happened.
        for shards in [1, 2] {
            assert!(
                runs.iter().any(|r| r["system"] == system
                    && r["workload"] == "write-shards"
                    && r["shards"] == shards),
                "no {shards}-shard run of {system}"
            );
        }
        assert!(
            runs.iter()
                .any(|r| r["system"] == system && r["mode"]["kind"] == "open"),
            "no open-loop run of {system}"
        );
    }
    for limit in ["fsync", "quic_rtt"] {
        assert!(
            results["limits"][limit]["ops"].as_u64().unwrap() > 0,
            "{}",
            results["limits"]
        );
    }
    let idle = &results["idle"];
    assert!(idle["replicas"].as_u64().unwrap() > 0, "{idle}");
    assert_eq!(idle["groups_with_leader"], idle["replicas"], "{idle}");
    assert!(idle["cpu_s"].as_f64().unwrap() >= 0.0, "{idle}");

    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), runs.len() + 1, "{csv}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in ["Targets", "etcd", "cairn/etcd", "plots/"] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }
    let plots: Vec<_> = std::fs::read_dir(out.join("plots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(plots.len() >= 3, "{plots:?}");
    for plot in plots {
        let svg = std::fs::read_to_string(&plot).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("</svg>"),
            "{}",
            plot.display()
        );
    }
    // The data directories the systems used are gone.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with("cairn-bench-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A base port from which the suite's ports are free now.
fn free_port_block() -> u16 {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let first = (port / 1000 * 1000).clamp(20_000, 60_000);
    (first..=60_000)
        .step_by(1000)
        .chain((20_000..first).step_by(1000))
        .find(|base| (1..=PORT_SPAN).all(|offset| is_free(base + offset)))
        .expect("a free block of ports")
}

fn is_free(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok()
}
