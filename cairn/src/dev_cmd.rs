//! `cairn dev`: a local three-replica shard with generated certificates, a short demo of what it
//! does, and instructions for talking to it. It keeps serving until Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_client::{Client, ClientConfig};
use cairn_wire::api::{Consistency, KeyRange, Namespace, ShardId, Step};
use cairn_wire::certs;
use cairn_wire::tls::{Identity, PeerRole};
use shard_node::NodeConfig;
use shard_node::config::{PeerConfig, ShardConfig, TlsConfig};
use tokio::process::{Child, Command};

use crate::DevArgs;

const NODES: u64 = 3;
const SHARD: ShardId = ShardId(1);

pub(crate) async fn run(args: DevArgs) -> anyhow::Result<()> {
    let (dir, _temp) = match &args.dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = tempfile::Builder::new().prefix("cairn-dev-").tempdir()?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    println!(
        "cairn dev: a local shard of {NODES} replicas in {}",
        dir.display()
    );

    let certs_dir = dir.join("certs");
    make_certs(&certs_dir)?;
    let peers: Vec<PeerConfig> = (1..=NODES)
        .map(|id| PeerConfig {
            id,
            addr: SocketAddr::from(([127, 0, 0, 1], args.base_port + id as u16)),
            cert_name: None,
        })
        .collect();
    let mut children = Vec::new();
    for id in 1..=NODES {
        let config = NodeConfig {
            node_id: id,
            listen: peers[(id - 1) as usize].addr,
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], args.base_port + 10 + id as u16)),
            data_dir: dir.join(format!("node-{id}")).join("data"),
            tls: TlsConfig {
                ca: certs_dir.join("ca.pem"),
                cert: certs_dir.join(format!("node-{id}.pem")),
                key: certs_dir.join(format!("node-{id}.key")),
            },
            peers: peers.clone(),
            shards: vec![ShardConfig {
                id: SHARD.0,
                replicas: (1..=NODES).collect(),
            }],
            raft: Default::default(),
            limits: Default::default(),
            site: "default".into(),
            capacity_replicas: 1000,
            manager: None,
        };
        config.validate()?;
        let path = dir.join(format!("node-{id}.toml"));
        std::fs::write(&path, toml::to_string(&config)?)
            .with_context(|| format!("writing {}", path.display()))?;
        children.push(spawn_node(&dir, id, &path)?);
        println!(
            "  node {id}: quic {}  metrics http://{}/metrics  log {}",
            config.listen,
            config.metrics_listen,
            dir.join(format!("node-{id}.log")).display()
        );
    }
    let cluster_file = dir.join("cluster.toml");
    let nodes: Vec<String> = peers.iter().map(|p| format!("\"{}\"", p.addr)).collect();
    std::fs::write(
        &cluster_file,
        format!(
            "# How clients reach the dev cluster (cairn kv/status --cluster this-file).\n\
             nodes = [{}]\nca = \"certs/ca.pem\"\ncert = \"certs/dev-client.pem\"\n\
             key = \"certs/dev-client.key\"\nshard = {}\n",
            nodes.join(", "),
            SHARD.0
        ),
    )?;

    let identity = Identity::load(
        &certs_dir.join("ca.pem"),
        &certs_dir.join("dev-client.pem"),
        &certs_dir.join("dev-client.key"),
    )?;
    let client = Client::new(ClientConfig::new(
        peers.iter().map(|p| p.addr).collect(),
        identity,
    ))?;
    let result = demo(&client, &mut children).await;
    if let Err(e) = result {
        stop(&mut children).await;
        return Err(e);
    }

    println!();
    println!("The shard is serving. Talk to it from another terminal:");
    println!("  export CAIRN_CLUSTER={}", cluster_file.display());
    println!("  cairn kv --namespace demo get greeting");
    println!("  cairn kv --namespace demo set colour blue");
    println!("  cairn kv --namespace demo --consistency any range-entries");
    println!("  cairn status");
    println!(
        "  curl -s http://127.0.0.1:{}/metrics | grep cairn_raft",
        args.base_port + 11
    );
    println!("(`cargo run -p cairn --` in place of `cairn` when it is not installed.)");
    if args.exit_after_demo {
        println!("cairn dev: demo done, stopping (--exit-after-demo)");
        stop(&mut children).await;
        return Ok(());
    }
    println!("Press Ctrl-C to stop.");

    let exited = async {
        loop {
            for (i, child) in children.iter_mut().enumerate() {
                if let Ok(Some(status)) = child.try_wait() {
                    return (i + 1, status);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => println!("\ncairn dev: stopping"),
        (id, status) = exited => println!("cairn dev: node {id} exited ({status}); stopping"),
    }
    stop(&mut children).await;
    Ok(())
}

fn make_certs(dir: &Path) -> anyhow::Result<()> {
    if dir.join("ca.pem").exists() {
        println!("  reusing certificates in {}", dir.display());
        return Ok(());
    }
    certs::init_ca_dir(dir, "dev")?;
    for id in 1..=NODES {
        certs::issue_to_dir(dir, PeerRole::Node, &format!("node-{id}"), &[])?;
    }
    certs::issue_to_dir(dir, PeerRole::Client, "dev-client", &[])?;
    println!(
        "  made a cluster CA, {NODES} node certificates and a client certificate in {}",
        dir.display()
    );
    Ok(())
}

fn spawn_node(dir: &Path, id: u64, config: &Path) -> anyhow::Result<Child> {
    let log_path: PathBuf = dir.join(format!("node-{id}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let exe = std::env::current_exe().context("locating the cairn binary")?;
    Command::new(exe)
        .arg("shard-node")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting node {id}"))
}

async fn stop(children: &mut [Child]) {
    for child in children.iter_mut() {
        if let Some(pid) = child.id() {
            // SIGTERM: a clean shutdown; SIGKILL after a grace period.
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
    }
    for child in children.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

async fn demo(client: &Client, children: &mut [Child]) -> anyhow::Result<()> {
    let kv = client.namespace(SHARD, Namespace::new("demo")?);
    print!("waiting for a leader");
    let started = Instant::now();
    loop {
        if kv.nop().await.is_ok() {
            break;
        }
        for (i, child) in children.iter_mut().enumerate() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "node {} exited during start-up ({status}); see its log",
                    i + 1
                );
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("no leader after 60 s; see the node logs");
        }
        print!(".");
        use std::io::Write;
        std::io::stdout().flush()?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let leader = client
        .who_leader(SHARD)
        .await?
        .context("a leader answered, then none was known")?;
    println!(
        " node {} leads ({:.1} s)",
        leader.node.0,
        started.elapsed().as_secs_f64()
    );

    println!();
    println!("demo, namespace \"demo\" of shard {}:", SHARD.0);
    let w = kv.set("greeting", "hello, cairn").await?;
    println!(
        "  set greeting = \"hello, cairn\"          -> ok, applied at index {}",
        w.index.0
    );
    let r = kv.get("greeting", Consistency::Consistent).await?;
    println!(
        "  get greeting (consistent)              -> {:?}",
        text(&r.value)
    );
    let follower = (1..=NODES)
        .find(|id| *id != leader.node.0)
        .expect("three nodes");
    let follower_addr = client.config().nodes[(follower - 1) as usize];
    let at_follower = client.namespace_at(follower_addr, SHARD, Namespace::new("demo")?);
    let r = at_follower
        .get("greeting", Consistency::AtLeast(w.index))
        .await?;
    println!(
        "  get greeting at_least({}) on node {follower}    -> {:?} (follower applied {})",
        w.index.0,
        text(&r.value),
        r.applied.0
    );
    let t = kv
        .test_and_set("counter", None, Some(b"1".to_vec()))
        .await?;
    println!(
        "  test_and_set counter: absent -> 1      -> {:?}",
        t.value.as_deref().map(text)
    );
    let t = kv
        .test_and_set("counter", Some(b"7".to_vec()), Some(b"8".to_vec()))
        .await?;
    println!(
        "  test_and_set counter: 7 -> 8           -> {:?} (no swap: it was 1)",
        t.value.as_deref().map(text)
    );
    kv.sequence(vec![
        Step::AssertExists {
            key: b"greeting".to_vec(),
        },
        Step::Set {
            key: b"object/a".to_vec(),
            value: b"manifest of a".to_vec(),
        },
        Step::Set {
            key: b"object/b".to_vec(),
            value: b"manifest of b".to_vec(),
        },
    ])
    .await?;
    println!("  sequence [assert_exists greeting, set object/a, set object/b] -> ok");
    let failed = kv
        .sequence(vec![
            Step::Assert {
                key: b"greeting".to_vec(),
                expected: None,
            },
            Step::Set {
                key: b"object/c".to_vec(),
                value: b"never".to_vec(),
            },
        ])
        .await;
    match failed {
        Err(e) => {
            println!("  sequence [assert greeting absent, set object/c] -> {e} (nothing applied)")
        }
        Ok(_) => bail!("a sequence with a failing assertion was applied"),
    }
    let entries = kv
        .range_entries(KeyRange::all(), Consistency::Consistent)
        .await?;
    println!("  range_entries (consistent):");
    for (k, v) in &entries.value {
        println!("    {} = {:?}", text(k), text(v));
    }
    let count = kv.count("object/", Consistency::Any).await?;
    println!(
        "  count object/ (any)                    -> {}",
        count.value
    );
    println!();
    println!("replicas:");
    for (addr, status) in client.status_all().await {
        match status {
            Ok(list) => {
                for s in list {
                    println!(
                        "  node {} ({addr}): {:<9} term {} commit {} applied {}",
                        s.node.0,
                        s.role.to_string(),
                        s.term.0,
                        s.commit.0,
                        s.applied.0
                    );
                }
            }
            Err(e) => println!("  {addr}: {e}"),
        }
    }
    Ok(())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
