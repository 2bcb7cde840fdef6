//! `cairn dev`, the README's first command, brings up the whole platform (managers, shard-node
//! hosts, a router) and runs its demo.

mod support;

use std::net::{TcpListener, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

/// The highest port offset `cairn dev` uses from its base (the router's metrics).
const PORT_OFFSET_MAX: u16 = 70;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairn_dev_brings_up_the_platform_and_runs_the_demo() {
    let _serial = support::serial().await;
    let dir = tempfile::Builder::new()
        .prefix("cairn-dev-test-")
        .tempdir()
        .unwrap();
    let base = free_port_block();
    let out = Command::new(support::CAIRN)
        .args([
            "dev",
            "--dir",
            dir.path().to_str().unwrap(),
            "--exit-after-demo",
        ])
        .args(["--base-port", &base.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cairn dev failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        log_tails(dir.path())
    );
    for wanted in [
        "4 hosts up (",
        "\n3 shards:\n",
        "3 of 3 shards have replicas in every site (dc1, dc2)",
        "(consistent) -> object id ",
        "-> the same manifest, served from the router's manifest cache",
        "again (must-not-exist) -> refused, ObjectExists: object",
        "2024/06/beach.jpg, 2024/06/sunset.jpg",
        "-> 2 objects, 5.5 MB logical",
        "(consistent) -> \"30\"",
        "export CAIRN_CLUSTER=",
        "demo done",
    ] {
        assert!(stdout.contains(wanted), "missing {wanted:?} in:\n{stdout}");
    }
    // The cluster file it printed works for the CLI: the processes are stopped now, so the
    // managers are unreachable (exit code 4), and the CLI says so quickly.
    let cluster = dir.path().join("cluster.toml");
    assert!(cluster.exists());
    let started = Instant::now();
    let ns_list = Command::new(support::CAIRN)
        .args(["ns", "list", "--cluster", cluster.to_str().unwrap()])
        .args(["--timeout-ms", "500"])
        .output()
        .unwrap();
    assert_eq!(
        ns_list.status.code(),
        Some(4),
        "the managers are down after --exit-after-demo: {}",
        String::from_utf8_lossy(&ns_list.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cairn ns list took {:?} to give up",
        started.elapsed()
    );
}

/// A base port from which every port `cairn dev` uses (base+1 to base+70, UDP and TCP) is free
/// now: the 100-port block of a port the kernel just handed out, or a later block.
fn free_port_block() -> u16 {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let first = (port / 100 * 100).clamp(20_000, 60_000);
    (first..=60_000)
        .step_by(100)
        .chain((20_000..first).step_by(100))
        .find(|base| (1..=PORT_OFFSET_MAX).all(|offset| is_free(base + offset)))
        .expect("a free block of ports in 20000..60070")
}

fn is_free(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The last lines of every log in `dir`, to see why a demo failed.
fn log_tails(dir: &std::path::Path) -> String {
    let mut out = String::new();
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        out.push_str(&format!("---- {} ----\n", log.display()));
        for line in tail.into_iter().rev() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
