//! The catalog commands (`cairn ns`, `cairn manifest`, `cairn shards`, `cairn hosts`) where no
//! server is needed: argument checks, cluster files that lack the list a command needs,
//! manifest files, and the exit code when no router answers.

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{CAIRN, cairn};

/// A directory with a cluster CA and a client certificate, for cluster files to point at.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cairn-cli-catalog-")
            .tempdir()
            .unwrap();
        let certs = dir.path().join("certs");
        let certs = certs.to_str().unwrap();
        cairn(&["certs", "init", "--dir", certs, "--cluster", "test"]);
        cairn(&[
            "certs", "issue", "--dir", certs, "--name", "client", "--role", "client",
        ]);
        Self { dir }
    }

    /// Writes a cluster file with `lists` (TOML lines such as `routers = [...]`) and returns its
    /// path.
    fn cluster_file(&self, name: &str, lists: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "{lists}\nca = \"certs/ca.pem\"\ncert = \"certs/client.pem\"\nkey = \"certs/client.key\"\n"
            ),
        )
        .unwrap();
        path
    }
}

/// Runs `cairn` with `args` (and `stdin`), without `$CAIRN_CLUSTER`.
fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(CAIRN)
        .args(args)
        .env_remove("CAIRN_CLUSTER")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs a command that must fail with `code`; returns its standard error.
fn fails(args: &[&str], code: i32) -> String {
    let out = run(args, None);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "cairn {args:?}: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "cairn {args:?} printed {:?}",
        out.stdout
    );
    stderr
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A loopback address nothing listens on.
fn unused_addr() -> String {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().to_string()
}

#[test]
fn invalid_namespace_names_fail_with_the_validation_message_and_exit_1() {
    // Checked before the cluster file is even looked for.
    for args in [
        &["ns", "create", "bad name"][..],
        &["ns", "show", "bad name"],
        &["ns", "delete", "bad name"],
        &["manifest", "stats", "bad name"],
        &["manifest", "get", "bad name", "object"],
    ] {
        let stderr = fails(args, 1);
        assert_eq!(
            stderr.trim(),
            "error: invalid argument: namespace \"bad name\" contains ' '; allowed are A-Z a-z 0-9 _ . -",
            "cairn {args:?}"
        );
    }
    let long = "n".repeat(129);
    let stderr = fails(&["ns", "create", &long], 1);
    assert!(stderr.contains("1 to 128 bytes, got 129"), "{stderr}");
    let stderr = fails(&["ns", "create", "ok", "--home-site", "dc/1"], 1);
    assert!(
        stderr.starts_with("error: invalid argument: site"),
        "{stderr}"
    );
}

#[test]
fn commands_name_the_list_their_cluster_file_lacks() {
    let certs = Certs::new();
    let nodes_only = certs.cluster_file("nodes.toml", "nodes = [\"127.0.0.1:7101\"]");
    let file = path(&nodes_only);
    for args in [
        &["ns", "list", "--cluster", file][..],
        &["ns", "create", "photos", "--cluster", file],
        &["shards", "list", "--cluster", file],
        &["hosts", "--cluster", file, "list"],
    ] {
        let stderr = fails(args, 1);
        assert_eq!(
            stderr.trim(),
            "error: the cluster file lists no managers: add managers = [\"host:port\", ...]",
            "cairn {args:?}"
        );
    }
    for args in [
        &["manifest", "stats", "photos", "--cluster", file][..],
        &["manifest", "list", "photos", "--cluster", file],
        &["manifest", "delete", "photos", "object", "--cluster", file],
    ] {
        let stderr = fails(args, 1);
        assert!(
            stderr.contains("the cluster file lists no routers: add routers = ["),
            "cairn {args:?}: {stderr}"
        );
    }
    let managers_only = certs.cluster_file("managers.toml", "managers = [\"127.0.0.1:7201\"]");
    let stderr = fails(
        &[
            "kv",
            "--cluster",
            path(&managers_only),
            "-n",
            "ns",
            "get",
            "k",
        ],
        1,
    );
    assert!(stderr.contains("lists no nodes"), "{stderr}");
}

#[test]
fn manifest_put_refuses_bad_json_and_invalid_manifests_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{ \"name\": \"x\",\n  oops }").unwrap();
    let stderr = fails(&["manifest", "put", "ns", "--file", path(&garbage)], 1);
    assert!(
        stderr.starts_with(&format!(
            "error: cannot parse the manifest in {}: ",
            garbage.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("line 2"), "{stderr}");

    // Well-formed JSON that is not a readable object: the validation reason.
    let example = cairn(&["manifest", "example", "--size", "100"]);
    let wrong_size = example.replace("\"size_bytes\": 100", "\"size_bytes\": 101");
    assert_ne!(wrong_size, example);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, wrong_size).unwrap();
    let stderr = fails(&["manifest", "put", "ns", "--file", path(&bad)], 1);
    assert!(
        stderr.contains("is not valid: invalid manifest"),
        "{stderr}"
    );
    assert!(stderr.contains("add up to 100 bytes"), "{stderr}");

    let stderr = fails(
        &["manifest", "put", "ns", "--file", "/nonexistent/m.json"],
        1,
    );
    assert!(stderr.contains("cannot read the manifest from"), "{stderr}");
}

#[test]
fn usage_errors_exit_64() {
    for args in [
        &[
            "manifest",
            "put",
            "ns",
            "--file",
            "-",
            "--mode",
            "overwrite",
        ][..],
        &[
            "manifest",
            "put",
            "ns",
            "--file",
            "-",
            "--mode",
            "must-replace=xyz",
        ],
        &["manifest", "put", "ns"],
        &["manifest", "list", "ns", "--limit", "0"],
        &["manifest", "get", "ns"],
        &["manifest", "get", "ns", "o", "--consistency", "sometimes"],
        &["ns", "create"],
        &["shards"],
    ] {
        fails(args, 64);
    }
}

#[test]
fn manifest_example_is_deterministic_and_parses_as_json() {
    let first = cairn(&["manifest", "example", "--name", "a/b", "--size", "5000000"]);
    assert_eq!(
        first,
        cairn(&["manifest", "example", "--name", "a/b", "--size", "5000000"])
    );
    let value: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(value["name"], "a/b");
    assert_eq!(value["size_bytes"], 5_000_000);
    assert_eq!(value["chunks"].as_array().unwrap().len(), 3);
    assert!(value["object_id"].as_str().unwrap().len() == 32, "{first}");
}

#[test]
fn an_example_manifest_put_to_an_unreachable_router_exits_4_within_the_timeout() {
    let certs = Certs::new();
    let file = certs.cluster_file(
        "routers.toml",
        &format!(
            "routers = [\"{}\"]\nmanagers = [\"{}\"]",
            unused_addr(),
            unused_addr()
        ),
    );
    let example = cairn(&["manifest", "example", "--name", "o", "--size", "5000"]);
    let started = Instant::now();
    let out = run(
        &[
            "manifest",
            "put",
            "ns",
            "--file",
            "-",
            "--mode",
            "must-not-exist",
            "--cluster",
            path(&file),
            "--timeout-ms",
            "500",
        ],
        Some(example.as_bytes()),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.starts_with("error: unavailable: "), "{stderr}");
    // The parse passed; only the connection failed, and within the bound (with room for the
    // process to start).
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let stderr = fails(
        &[
            "ns",
            "list",
            "--cluster",
            path(&file),
            "--timeout-ms",
            "500",
        ],
        4,
    );
    assert!(stderr.contains("unavailable"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(4));
}
