//! `cairn dev`, the README's first command, brings up a shard and runs its demo.

mod support;

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairn_dev_brings_up_a_shard_and_runs_the_demo() {
    let _serial = support::serial().await;
    let dir = tempfile::Builder::new()
        .prefix("cairn-dev-test-")
        .tempdir()
        .unwrap();
    // Six ports from the base must be free: take the block of a port the kernel just handed out.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = (port / 100 * 100).clamp(20_000, 60_000);
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
        "cairn dev failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for wanted in [
        "leads (",
        "get greeting (consistent)              -> \"hello, cairn\"",
        "(nothing applied)",
        "object/b = \"manifest of b\"",
        "Leader",
        "export CAIRN_CLUSTER=",
        "demo done",
    ] {
        assert!(stdout.contains(wanted), "missing {wanted:?} in:\n{stdout}");
    }
    // The cluster file it printed works for the CLI (the nodes are stopped now: status says so).
    let cluster = dir.path().join("cluster.toml");
    assert!(cluster.exists());
    let status = Command::new(support::CAIRN)
        .args([
            "status",
            "--cluster",
            cluster.to_str().unwrap(),
            "--timeout-ms",
            "500",
        ])
        .output()
        .unwrap();
    assert_eq!(
        status.status.code(),
        Some(4),
        "nodes are down after --exit-after-demo"
    );
}
