//! The running platform: the bed, the processes in it, and the questions tests and benchmarks
//! ask of them (are the hosts up, who leads a shard).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cairn_client::{Client, ClientConfig};
use cairn_manager::config::ManagerConfig;
use cairn_netbed::{Bed, BedSpec};
use cairn_router::RouterConfig;
use cairn_wire::api::{Namespace, Request, Response, ShardId};
use cairn_wire::catalog::{
    CommitPolicy, HostState, LeaderPreference, ManagerRequest, ManagerResponse, ShardInfo,
};
use cairn_wire::certs;
use cairn_wire::tls::{Identity, PeerRole};
use raft_core::{NodeId, Role};
use shard_node::NodeConfig;
use shard_node::config::{ManagerLink, PeerConfig, TlsConfig};

use crate::launch::Launch;
use crate::shape::{Kind, METRICS_PORT_OFFSET, Placed, SiteShape};

/// The client certificate's name.
const CLIENT: &str = "client";
/// What every host offers to hold.
const CAPACITY_REPLICAS: u32 = 1_000;
/// Lines of each log printed on failure.
const LOG_TAIL_LINES: usize = 25;
/// How often the waits poll. Leaders are polled more often: the benchmark times leader moves.
const POLL: Duration = Duration::from_millis(100);
const LEADER_POLL: Duration = Duration::from_millis(20);

/// One process of the platform.
#[derive(Debug)]
struct SiteProc {
    name: String,
    kind: Kind,
    site: String,
    node_id: Option<u64>,
    addr: SocketAddr,
    config_path: PathBuf,
    log_path: PathBuf,
    /// `None` while it is not running (killed).
    pid: Option<u32>,
}

/// A cairn platform spread over the sites of a [`Bed`]: managers, shard-node hosts and routers
/// run as real `cairn` processes inside their site's network namespace, bound to the site's
/// address, with certificates, configurations, data and logs in one temporary directory.
///
/// Dropping it kills every process, removes the namespaces and the directory, also when the
/// caller panics; the tail of every log is printed first then ([`Self::print_log_tails`] does
/// it on demand, for callers that fail by returning an error).
pub struct SitePlatform {
    /// In the layout's order: managers, hosts by id, routers.
    procs: Vec<SiteProc>,
    identity: Identity,
    cairn_bin: PathBuf,
    log_filter: String,
    // Field order matters: the bed (processes, namespaces) drops before the directory their
    // data lives in.
    bed: Bed,
    dir: tempfile::TempDir,
}

impl SitePlatform {
    /// Builds the bed, writes certificates and configurations, and starts every process. Needs
    /// root (network namespaces). On error everything made so far is removed.
    pub fn start(shape: &SiteShape<'_>, launch: &Launch) -> anyhow::Result<Self> {
        let layout = shape.layout()?;
        let mut spec = BedSpec::new(shape.sites.iter().copied(), shape.rtt);
        spec.netbed_bin.clone_from(&launch.netbed_bin);
        let bed = Bed::create(spec)
            .with_context(|| format!("creating a bed of sites {:?} (needs root)", shape.sites))?;
        let parent = &launch.parent_dir;
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("cairn-{}-", launch.name))
            .tempdir_in(parent)
            .with_context(|| format!("making a directory in {}", parent.display()))?;

        let certs_dir = dir.path().join("certs");
        certs::init_ca_dir(&certs_dir, &launch.name).context("making the CA")?;
        let tls = |name: &str, role: PeerRole| -> anyhow::Result<TlsConfig> {
            let (cert, key) = certs::issue_to_dir(&certs_dir, role, name, &[])
                .with_context(|| format!("issuing the certificate of {name}"))?;
            Ok(TlsConfig {
                ca: certs_dir.join("ca.pem"),
                cert,
                key,
            })
        };
        let identity = {
            let t = tls(CLIENT, PeerRole::Client)?;
            Identity::load(&t.ca, &t.cert, &t.key).context("loading the client certificate")?
        };

        let addr = |p: &Placed| SocketAddr::new(bed.site_ip(&p.site), p.port);
        let managers: Vec<&Placed> = layout.iter().filter(|p| p.kind == Kind::Manager).collect();
        let manager_addrs: Vec<SocketAddr> = managers.iter().map(|p| addr(p)).collect();
        let manager_peers: Vec<PeerConfig> = managers
            .iter()
            .map(|p| PeerConfig {
                id: p.node_id.expect("managers have node ids"),
                addr: addr(p),
                cert_name: None,
            })
            .collect();
        let mut procs = Vec::new();
        for placed in &layout {
            let listen = addr(placed);
            let metrics_listen = SocketAddr::new(listen.ip(), listen.port() + METRICS_PORT_OFFSET);
            let node = |id: u64| -> anyhow::Result<NodeConfig> {
                Ok(NodeConfig {
                    node_id: id,
                    listen,
                    metrics_listen,
                    data_dir: dir.path().join(format!("node-{id}")),
                    tls: tls(&format!("node-{id}"), PeerRole::Node)?,
                    peers: vec![PeerConfig {
                        id,
                        addr: listen,
                        cert_name: None,
                    }],
                    shards: vec![],
                    raft: launch.raft.clone(),
                    limits: Default::default(),
                    site: placed.site.clone(),
                    capacity_replicas: CAPACITY_REPLICAS,
                    manager: None,
                })
            };
            let text = match (placed.kind, placed.node_id) {
                (Kind::Manager, Some(id)) => {
                    let mut config = node(id)?;
                    config.peers.clone_from(&manager_peers);
                    let text = format!(
                        "{}\n[catalog]\n{}",
                        toml::to_string(&config)?,
                        toml::to_string(&launch.catalog)?
                    );
                    // What `cairn manager` will read, read the same way.
                    ManagerConfig::from_toml(&text)
                        .with_context(|| format!("the configuration of {}", placed.name))?;
                    text
                }
                (Kind::Host, Some(id)) => {
                    let mut config = node(id)?;
                    config.manager = Some(ManagerLink {
                        addrs: manager_addrs.clone(),
                        heartbeat_interval_ms: launch.heartbeat_interval_ms,
                    });
                    config
                        .validate()
                        .with_context(|| format!("the configuration of {}", placed.name))?;
                    toml::to_string(&config)?
                }
                (Kind::Router, _) => {
                    let t = tls(&placed.name, PeerRole::Node)?;
                    let config = RouterConfig {
                        listen,
                        metrics_listen,
                        managers: manager_addrs.iter().map(ToString::to_string).collect(),
                        tls: cairn_router::config::TlsConfig {
                            ca: t.ca,
                            cert: t.cert,
                            key: t.key,
                        },
                        site: Some(placed.site.clone()),
                        request_timeout_ms: cairn_router::config::REQUEST_TIMEOUT_MS_DEFAULT,
                        limits: Default::default(),
                    };
                    config
                        .validate()
                        .with_context(|| format!("the configuration of {}", placed.name))?;
                    toml::to_string(&config)?
                }
                (kind, None) => unreachable!("the layout gives every {kind:?} a node id"),
            };
            let config_path = dir.path().join(format!("{}.toml", placed.name));
            std::fs::write(&config_path, text)
                .with_context(|| format!("writing {}", config_path.display()))?;
            procs.push(SiteProc {
                name: placed.name.clone(),
                kind: placed.kind,
                site: placed.site.clone(),
                node_id: placed.node_id,
                addr: listen,
                config_path,
                log_path: dir.path().join(format!("{}.log", placed.name)),
                pid: None,
            });
        }

        let mut platform = Self {
            procs,
            identity,
            cairn_bin: launch.cairn_bin.clone(),
            log_filter: launch.log_filter.clone(),
            bed,
            dir,
        };
        for placed in &layout {
            platform.start_proc(&placed.name)?;
        }
        Ok(platform)
    }

    /// Starts (or restarts) process `name` in its site; its log is appended to.
    pub fn start_proc(&mut self, name: &str) -> anyhow::Result<()> {
        let p = self.proc(name)?;
        if p.pid.is_some() {
            bail!("{name} is running");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log_path)
            .with_context(|| format!("opening {}", p.log_path.display()))?;
        let mut command = self.bed.command(&p.site, &self.cairn_bin);
        command
            .arg(p.kind.subcommand())
            .arg("--config")
            .arg(&p.config_path)
            .env("RUST_LOG", &self.log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let site = p.site.clone();
        let pid = self
            .bed
            .spawn(&site, command)
            .with_context(|| format!("starting {name} in site {site}"))?;
        self.proc_mut(name)?.pid = Some(pid);
        Ok(())
    }

    /// Kills process `name` with SIGKILL (a crash, no shutdown); nothing if it is not running.
    pub fn kill_proc(&mut self, name: &str) -> anyhow::Result<()> {
        if let Some(pid) = self.proc_mut(name)?.pid.take() {
            self.bed
                .kill(pid)
                .with_context(|| format!("killing {name}"))?;
        }
        Ok(())
    }

    /// The bed: site addresses, partitions, round trips.
    pub fn bed(&self) -> &Bed {
        &self.bed
    }

    pub fn bed_mut(&mut self) -> &mut Bed {
        &mut self.bed
    }

    /// The temporary directory: `certs/`, `NAME.toml`, `NAME.log`, `node-ID/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The address process `name` serves on. Panics on a name the shape did not place.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.proc(name).unwrap_or_else(|e| panic!("{e}")).addr
    }

    /// The address process `name` serves `/metrics` on. Panics like [`Self::addr`].
    pub fn metrics_addr(&self, name: &str) -> SocketAddr {
        let addr = self.addr(name);
        SocketAddr::new(addr.ip(), addr.port() + METRICS_PORT_OFFSET)
    }

    /// The node ids of the hosts in `site`, in order.
    pub fn host_ids_in(&self, site: &str) -> Vec<NodeId> {
        self.procs
            .iter()
            .filter(|p| p.kind == Kind::Host && p.site == site)
            .filter_map(|p| p.node_id.map(NodeId))
            .collect()
    }

    /// A client configuration (with the platform's client certificate) of the given processes.
    /// Panics like [`Self::addr`].
    pub fn client_config_of(&self, names: &[&str]) -> ClientConfig {
        let addrs = names.iter().map(|name| self.addr(name)).collect();
        ClientConfig::new(addrs, self.identity.clone())
    }

    /// A client of the given processes.
    pub fn client_of(&self, names: &[&str]) -> anyhow::Result<Client> {
        Ok(Client::new(self.client_config_of(names))?)
    }

    /// A client of every manager.
    pub fn managers(&self) -> anyhow::Result<Client> {
        self.client_of(&self.names(Kind::Manager))
    }

    /// Asks the managers through `managers` (a client of them).
    pub async fn ask(
        &self,
        managers: &Client,
        request: ManagerRequest,
    ) -> anyhow::Result<ManagerResponse> {
        match managers.request(Request::Manager(request)).await? {
            Response::Manager(answer) => Ok(answer),
            other => bail!("the manager answered {}", other.kind()),
        }
    }

    /// Waits until every host is registered and up.
    pub async fn wait_hosts(&self, managers: &Client, within: Duration) -> anyhow::Result<()> {
        let hosts = self.names(Kind::Host).len();
        let started = Instant::now();
        loop {
            self.check_alive()?;
            let last = match self.ask(managers, ManagerRequest::ListHosts).await {
                Ok(ManagerResponse::Hosts(list)) => {
                    if list.len() == hosts && list.iter().all(|h| h.state == HostState::Up) {
                        return Ok(());
                    }
                    format!("{} of {hosts} hosts registered: {list:?}", list.len())
                }
                Ok(other) => format!("{other:?}"),
                Err(e) => format!("{e:#}"),
            };
            if started.elapsed() > within {
                bail!("the hosts did not all register within {within:?}: {last}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Creates namespace `name` with home site `home_site`, trying again until `within` while
    /// the managers cannot do it yet; returns its shard.
    pub async fn create_namespace(
        &self,
        managers: &Client,
        name: &str,
        home_site: &str,
        within: Duration,
    ) -> anyhow::Result<ShardId> {
        let started = Instant::now();
        loop {
            let request = ManagerRequest::CreateNamespace {
                name: Namespace::new(name)?,
                home_site: Some(home_site.into()),
                placement: None,
            };
            let last = match self.ask(managers, request).await {
                Ok(ManagerResponse::Namespace(info)) => return Ok(info.shard),
                Ok(other) => format!("{other:?}"),
                Err(e) => format!("{e:#}"),
            };
            if started.elapsed() > within {
                bail!("cannot create namespace {name} within {within:?}: {last}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sets the commit rule and/or leader policy of `shard`.
    pub async fn set_shard_policy(
        &self,
        managers: &Client,
        shard: ShardId,
        commit: Option<CommitPolicy>,
        leader: Option<LeaderPreference>,
    ) -> anyhow::Result<()> {
        let request = ManagerRequest::SetShardPolicy {
            shard,
            commit,
            leader,
        };
        match self.ask(managers, request).await? {
            ManagerResponse::Done => Ok(()),
            other => bail!("setting the policy of shard {shard} answered {other:?}"),
        }
    }

    /// The shard as the catalog shows it.
    pub async fn shard(&self, managers: &Client, shard: ShardId) -> anyhow::Result<ShardInfo> {
        match self.ask(managers, ManagerRequest::ListShards).await? {
            ManagerResponse::Shards(list) => list
                .into_iter()
                .find(|s| s.id == shard)
                .with_context(|| format!("shard {shard} is not in the catalog")),
            other => bail!("list shards answered {other:?}"),
        }
    }

    /// The running hosts that say they lead `shard` (normally zero or one); a host that does not
    /// answer counts as not leading.
    pub async fn leaders(&self, shard: ShardId) -> anyhow::Result<Vec<u64>> {
        let client = self.client_of(&self.names(Kind::Host))?;
        let leaders = self.leaders_with(&client, shard).await;
        client.close().await;
        Ok(leaders)
    }

    async fn leaders_with(&self, client: &Client, shard: ShardId) -> Vec<u64> {
        let mut leaders = Vec::new();
        let running = self
            .procs
            .iter()
            .filter(|p| p.kind == Kind::Host && p.pid.is_some());
        for p in running {
            if let Ok(replicas) = client.status(p.addr).await {
                leaders.extend(
                    replicas
                        .iter()
                        .filter(|r| r.shard == shard && r.role == Role::Leader)
                        .map(|r| r.node.0),
                );
            }
        }
        leaders
    }

    /// Polls the running hosts until the leaders of `shard` satisfy `done`; returns them. Fails
    /// after `within`, or at once if a process exited. `what` names the awaited state in the
    /// error.
    pub async fn wait_leaders(
        &self,
        shard: ShardId,
        what: &str,
        within: Duration,
        done: impl Fn(&[u64]) -> bool,
    ) -> anyhow::Result<Vec<u64>> {
        // One client for the whole wait, made after any restart that precedes it: connections to
        // a killed process's predecessor would only time out.
        let client = self.client_of(&self.names(Kind::Host))?;
        let started = Instant::now();
        let outcome = loop {
            if let Err(e) = self.check_alive() {
                break Err(e);
            }
            let leaders = self.leaders_with(&client, shard).await;
            if done(&leaders) {
                break Ok(leaders);
            }
            if started.elapsed() > within {
                break Err(anyhow::anyhow!(
                    "no {what} within {within:?}: leaders {leaders:?}"
                ));
            }
            tokio::time::sleep(LEADER_POLL).await;
        };
        client.close().await;
        outcome
    }

    /// Waits until host `node` alone leads `shard`.
    pub async fn wait_leader(
        &self,
        shard: ShardId,
        node: u64,
        within: Duration,
    ) -> anyhow::Result<()> {
        let what = format!("node {node} alone leading shard {shard}");
        self.wait_leaders(shard, &what, within, |leaders| leaders == [node])
            .await?;
        Ok(())
    }

    /// Fails when a process that should run has exited.
    pub fn check_alive(&self) -> anyhow::Result<()> {
        for p in &self.procs {
            if let Some(pid) = p.pid
                && !alive(pid)
            {
                bail!(
                    "{} (pid {pid}) exited; its log: {}",
                    p.name,
                    p.log_path.display()
                );
            }
        }
        Ok(())
    }

    /// Prints the last lines of every process's log to stderr.
    pub fn print_log_tails(&self) {
        for p in &self.procs {
            let log = std::fs::read_to_string(&p.log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(LOG_TAIL_LINES).collect();
            eprintln!("---- {} ({}) log tail ----", p.name, p.site);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }

    fn proc(&self, name: &str) -> anyhow::Result<&SiteProc> {
        self.procs
            .iter()
            .find(|p| p.name == name)
            .with_context(|| format!("no process named {name}"))
    }

    fn proc_mut(&mut self, name: &str) -> anyhow::Result<&mut SiteProc> {
        self.procs
            .iter_mut()
            .find(|p| p.name == name)
            .with_context(|| format!("no process named {name}"))
    }

    /// The names of the processes of one kind, in order.
    pub fn names(&self, kind: Kind) -> Vec<&str> {
        self.procs
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| p.name.as_str())
            .collect()
    }
}

impl Drop for SitePlatform {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_log_tails();
        }
        // Then the bed kills the processes it spawned and removes its namespaces, and the
        // directory goes (field order).
    }
}

/// Whether process `pid` runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_missing_one_is_not() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX));
    }
}
