//! The operator's commands against a real cluster: `cairn kv` for every operation (output and
//! exit codes) and `cairn status`.

mod support;

use std::process::{Command, Output};

use support::{CAIRN, Cluster};

struct Cli {
    cluster_file: std::path::PathBuf,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(CAIRN)
            .arg("kv")
            .arg("--cluster")
            .arg(&self.cluster_file)
            .args(["--namespace", "cli"])
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed and returns its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "cairn kv {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn code(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = self.run(args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kv_command_works_with_clear_output_and_exit_codes() {
    let _serial = support::serial().await;
    let (cluster, _client, leader) = Cluster::running(3).await;
    let certs = cluster.certs_dir();
    let nodes: Vec<String> = cluster
        .nodes
        .values()
        .map(|n| format!("\"{}\"", n.addr))
        .collect();
    let cluster_file = cluster.dir.path().join("cluster.toml");
    std::fs::write(
        &cluster_file,
        format!(
            "nodes = [{}]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nshard = 1\n",
            nodes.join(", "),
            certs.join("ca.pem").display(),
            certs.join("client.pem").display(),
            certs.join("client.key").display()
        ),
    )
    .unwrap();
    let cli = Cli { cluster_file };

    assert!(cli.ok(&["set", "a", "1"]).starts_with("ok (index "));
    cli.ok(&["set", "b", "2"]);
    cli.ok(&["set", "c", "3"]);
    assert_eq!(cli.ok(&["get", "a"]).trim(), "1");
    assert_eq!(cli.ok(&["exists", "a"]).trim(), "true");
    assert_eq!(cli.ok(&["exists", "zz"]).trim(), "false");
    let (code, err) = cli.code(&["get", "zz"]);
    assert_eq!(code, Some(2), "NotFound exits 2: {err}");
    assert!(err.contains("not found"), "{err}");
    assert!(cli.ok(&["multi-get", "a", "b"]).contains('2'));
    assert_eq!(cli.code(&["multi-get", "a", "zz"]).0, Some(2));
    assert!(cli.ok(&["multi-get-option", "a", "zz"]).lines().count() >= 2);
    assert_eq!(
        cli.ok(&["range", "--from", "a", "--to", "c"])
            .lines()
            .count(),
        2
    );
    assert_eq!(
        cli.ok(&["range", "--from", "a", "--to", "c", "--to-inclusive"])
            .lines()
            .count(),
        3
    );
    let rev = cli.ok(&["rev-range-entries", "--max", "2"]);
    assert!(
        rev.find("c = 3").unwrap() < rev.find("b = 2").unwrap(),
        "{rev}"
    );
    assert!(cli.ok(&["range-entries"]).contains("a = 1"));
    cli.ok(&["set", "p/1", "x"]);
    cli.ok(&["set", "p/2", "x"]);
    assert_eq!(cli.ok(&["prefix-keys", "p/"]).lines().count(), 2);
    assert_eq!(cli.ok(&["count", "p/"]).trim(), "2");
    assert!(
        cli.ok(&["test-and-set", "a", "--expected", "1", "--wanted", "9"])
            .contains('9')
    );
    assert!(cli.ok(&["replace", "a", "10"]).contains('9'));
    assert!(cli.ok(&["delete-prefix", "p/"]).contains('2'));
    cli.ok(&["delete", "c"]);
    assert_eq!(cli.code(&["delete", "c"]).0, Some(2));
    cli.ok(&["sequence", "assert:a=10", "set:s=1", "delete:b"]);
    assert_eq!(cli.ok(&["exists", "b"]).trim(), "false");
    let (code, err) = cli.code(&["sequence", "assert-absent:a", "set:never=1"]);
    assert_eq!(code, Some(3), "AssertionFailed exits 3: {err}");
    assert_eq!(cli.ok(&["exists", "never"]).trim(), "false");
    assert!(cli.ok(&["nop"]).starts_with("ok (index "));
    assert!(
        cli.ok(&["who-leader"])
            .contains(&cluster.addr(leader).to_string())
    );
    assert_eq!(cli.ok(&["--consistency", "any", "get", "s"]).trim(), "1");
    assert_eq!(
        cli.ok(&["--consistency", "at-least:1", "get", "s"]).trim(),
        "1"
    );
    let (code, _) = cli.code(&["--consistency", "sometimes", "get", "s"]);
    assert_eq!(code, Some(64), "a bad flag is a usage error");

    let status = Command::new(CAIRN)
        .arg("status")
        .arg("--cluster")
        .arg(&cli.cluster_file)
        .output()
        .unwrap();
    assert!(status.status.success());
    let table = String::from_utf8_lossy(&status.stdout);
    assert_eq!(table.matches("Leader").count(), 1, "{table}");
    assert_eq!(table.matches("Follower").count(), 2, "{table}");
}
