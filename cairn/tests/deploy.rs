//! `deploy/multisite`, the local multi-site cluster people try, brought up and down for real:
//! network namespaces per site, three managers, two hosts and a router per site, then a
//! namespace with a home site and a manifest through the CLI. Needs root; CI runs as root.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::CAIRN;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/multisite")
}

/// The `cairn-netbed` binary cargo built next to `cairn`.
fn netbed() -> PathBuf {
    Path::new(CAIRN).with_file_name("cairn-netbed")
}

fn run(args: &[&str], dir: &Path, name: &str) -> (bool, String) {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .args(["--name", name, "--dir", dir.to_str().unwrap()])
        .env("CAIRN_BIN", CAIRN)
        .env("CAIRN_NETBED_BIN", netbed())
        .output()
        .expect("run deploy/multisite");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn cli(cluster: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(CAIRN)
        .args(args)
        .env("CAIRN_CLUSTER", cluster)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Takes the cluster down however the test ends.
struct Down<'a> {
    dir: &'a Path,
    name: String,
}

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let (ok, text) = run(&["down"], self.dir, &self.name);
        if !ok || std::thread::panicking() {
            eprintln!("deploy/multisite down: {text}");
            for log in std::fs::read_dir(self.dir.join("logs"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let body = std::fs::read_to_string(log.path()).unwrap_or_default();
                let tail: Vec<&str> = body.lines().rev().take(10).collect();
                eprintln!("---- {} ----", log.path().display());
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

#[test]
fn the_multisite_launcher_brings_a_two_site_cluster_up_and_down() {
    let dir = tempfile::Builder::new()
        .prefix("cairn-deploy-")
        .tempdir()
        .unwrap();
    let name = format!("dt{}", std::process::id() % 100_000);
    let guard = Down {
        dir: dir.path(),
        name: name.clone(),
    };
    let (ok, text) = run(
        &["up", "--sites", "dc1,dc2", "--rtt-ms", "10"],
        dir.path(),
        &name,
    );
    assert!(ok, "up failed: {text}");
    assert!(text.contains("is up"), "{text}");
    let cluster = dir.path().join("cluster.toml");

    let (ok, hosts) = cli(&cluster, &["hosts", "list"]);
    assert!(ok, "{hosts}");
    assert_eq!(
        hosts.lines().filter(|l| l.contains(" up ")).count(),
        4,
        "{hosts}"
    );
    for site in ["dc1", "dc2"] {
        assert_eq!(
            hosts.lines().filter(|l| l.contains(site)).count(),
            2,
            "{hosts}"
        );
    }
    let (ok, created) = cli(&cluster, &["ns", "create", "photos", "--home-site", "dc2"]);
    assert!(ok, "{created}");
    let (ok, shards) = cli(&cluster, &["shards", "list"]);
    assert!(ok && shards.contains("preferred(dc2)"), "{shards}");
    let example = Command::new(CAIRN)
        .args(["manifest", "example", "--name", "cat.jpg"])
        .output()
        .unwrap();
    let path = dir.path().join("cat.json");
    std::fs::write(&path, &example.stdout).unwrap();
    let (ok, put) = cli(
        &cluster,
        &[
            "manifest",
            "put",
            "photos",
            "--file",
            path.to_str().unwrap(),
        ],
    );
    assert!(ok, "{put}");
    let (ok, got) = cli(&cluster, &["manifest", "get", "photos", "cat.jpg"]);
    assert!(ok && got.contains("cat.jpg"), "{got}");

    drop(guard);
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let netns = String::from_utf8_lossy(&netns.stdout);
    assert!(
        !Path::new(&format!("/run/cairn-netbed/{name}.json")).exists(),
        "the bed is still recorded"
    );
    let pids = std::fs::read_dir(dir.path().join("pids")).unwrap().count();
    assert_eq!(pids, 0, "processes left: {netns}");
}
