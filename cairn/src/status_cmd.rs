//! `cairn status`: the cluster at a glance, for a terminal or (`--json`) for scripts.
//!
//! The cluster-wide view reads the catalog from the manager leader (hosts, shards, namespaces,
//! policy violations) and asks every host for its replicas' Raft state, all hosts at once and
//! each within `--host-timeout-ms`, so a dead host costs that long at most. It then judges the
//! cluster: [`assess`] turns what was observed into a [`ClusterStatus`], which is printed as
//! tables ([`render`]) or serialized as the JSON document described in [`STATUS_HELP`].
//!
//! A cluster file that lists only `nodes` (a standalone shard without managers) gets the older
//! per-node view: one row per replica each node reports.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use anyhow::Context as _;
use cairn_client::{Client, ClientConfig, Error, ReplicaStatus};
use cairn_wire::api::{ApiError, ShardId};
use cairn_wire::catalog::{
    HostInfo, HostState, LeaderPreference, ManagerRequest, ManagerResponse, NamespaceInfo,
    NamespaceState, ShardInfo, ShardState,
};
use clap::Args;
use raft_core::{NodeId, Role};
use serde::{Deserialize, Serialize};

use crate::catalog_cmd::{ManagerArgs, ago, ask_manager, table, unexpected};
use crate::cluster_file::{ClusterFile, Servers};

/// The exit code of `cairn status` when the cluster answers but is degraded.
pub(crate) const EXIT_DEGRADED: u8 = 6;

/// The version of the JSON document; it changes only when a field changes meaning or goes away
/// (new fields may appear in any version).
pub(crate) const JSON_VERSION: u32 = 1;

/// The help after the options: exit codes and the JSON document.
const STATUS_HELP: &str = "\
Talks to the managers of the cluster file (its leader answers) and to every shard-node host \
of the catalog. A cluster file without managers gets the per-node view of its nodes instead.

Healthy means: every host up and answering, every active shard led, each replica up, answering \
and within --lag-max-entries of its leader's commit, the leader where the shard's leader \
policy wants it, the shard's policy applied, and no catalog policy violation.

Exit codes: 0 healthy, 6 degraded (the reasons are printed), 4 the managers cannot be reached \
(or, in the per-node view, a node did not answer), 1 other errors.

--json prints one document (version 1; fields are only ever added):
  version          1
  health           \"ok\" | \"degraded\"
  summary          the one-line summary
  reasons          [string]: why it is degraded (empty when ok)
  sites            [{site, hosts_up, hosts_down, hosts_unreachable, leaders}]
  hosts            [{id, site, addr, state: \"up\"|\"down\" (the catalog's), reachable (answered \
here), error (why not, or null), replicas, capacity_replicas, last_heartbeat_ms_ago (or null)}]
  shards           [{id, state: \"creating\"|\"active\", health, reasons, commit, leader_policy, \
policy_applied, leader (node id or null), leader_site, term, leader_policy_satisfied (null: no \
leader), replacing ({old, new} or null), namespaces: [{name, state}], replicas: [{node, site, \
addr, state, joining, term, commit, applied, lag}]}]
  violations       [string]: the catalog's policy violations
A replica's state is leader, follower, candidate, pre_candidate or learner as it reports it, or \
down (its host is down), unreachable (its host did not answer), missing (its host holds no \
replica of the shard) or unknown_host. Its lag is the leader's commit index minus its applied \
index (null without a leader or an answer); term, commit and applied are null without an answer.";

/// Arguments of `cairn status`.
#[derive(Args)]
#[command(after_help = STATUS_HELP)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    manager: ManagerArgs,
    /// How long to wait for each host's (or node's) answer, in milliseconds; hosts are asked
    /// at the same time.
    #[arg(long, value_name = "MS", default_value_t = 1_000)]
    host_timeout_ms: u64,
    /// A replica further than this many entries behind its leader's commit index makes the
    /// shard degraded.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    lag_max_entries: u64,
    /// Print the status as one JSON document (see below) instead of tables.
    #[arg(long)]
    json: bool,
}

/// The error `cairn status` ends with when the cluster is degraded: the status is already
/// printed, and `main` exits with [`EXIT_DEGRADED`] without printing more.
#[derive(Debug)]
pub(crate) struct Degraded;

impl fmt::Display for Degraded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the cluster is degraded")
    }
}

impl std::error::Error for Degraded {}

/// Runs `cairn status`.
pub(crate) async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let cluster = ClusterFile::from_args(args.manager.cluster.clone())?;
    if cluster.managers.is_empty() && !cluster.nodes.is_empty() {
        if args.json {
            return Err(ApiError::InvalidArgument(
                "--json needs the cluster-wide view: add the managers to the cluster file".into(),
            )
            .into());
        }
        return run_nodes(&cluster, args.host_timeout_ms).await;
    }
    let observed = observe(&cluster, &args).await?;
    let status = assess(observed, args.lag_max_entries);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).context("cannot serialize the status")?
        );
    } else {
        print!("{}", render(&status));
    }
    match status.health {
        Health::Ok => Ok(()),
        Health::Degraded => Err(Degraded.into()),
    }
}

// ---- what is observed ----

/// What the managers and the hosts said, before any judgement.
#[derive(Clone, Debug, Default)]
struct Observed {
    hosts: Vec<HostInfo>,
    shards: Vec<ShardInfo>,
    namespaces: Vec<NamespaceInfo>,
    /// The catalog's own policy violations.
    violations: Vec<String>,
    /// Each host's replicas, by host id, or why it did not say.
    answers: BTreeMap<NodeId, Result<Vec<ReplicaStatus>, String>>,
}

/// Reads the catalog from the manager leader, then asks every host of it for its replicas.
async fn observe(cluster: &ClusterFile, args: &StatusArgs) -> anyhow::Result<Observed> {
    let config = cluster.manager_config()?;
    let managers = Client::new(
        config.clone().with_request_timeout_ms(
            args.manager
                .timeout_ms
                .unwrap_or(cairn_client::REQUEST_TIMEOUT_MS_DEFAULT),
        ),
    )?;
    let catalog = read_catalog(&managers).await;
    managers.close().await;
    let (hosts, shards, namespaces, violations) =
        catalog.context("cannot read the catalog from the managers")?;
    let answers = ask_hosts(&config, &hosts, args.host_timeout_ms).await?;
    Ok(Observed {
        hosts,
        shards,
        namespaces,
        violations,
        answers,
    })
}

type Catalog = (
    Vec<HostInfo>,
    Vec<ShardInfo>,
    Vec<NamespaceInfo>,
    Vec<String>,
);

/// The hosts, shards, namespaces and violations, asked at the same time.
async fn read_catalog(managers: &Client) -> anyhow::Result<Catalog> {
    let (hosts, shards, namespaces, violations) = tokio::join!(
        ask_manager(managers, ManagerRequest::ListHosts),
        ask_manager(managers, ManagerRequest::ListShards),
        ask_manager(managers, ManagerRequest::ListNamespaces),
        ask_manager(managers, ManagerRequest::Violations),
    );
    let hosts = match hosts? {
        ManagerResponse::Hosts(hosts) => hosts,
        other => return Err(unexpected("hosts", &other)),
    };
    let shards = match shards? {
        ManagerResponse::Shards(shards) => shards,
        other => return Err(unexpected("shards", &other)),
    };
    let namespaces = match namespaces? {
        ManagerResponse::Namespaces(namespaces) => namespaces,
        other => return Err(unexpected("namespaces", &other)),
    };
    let violations = match violations? {
        ManagerResponse::Violations(violations) => violations,
        other => return Err(unexpected("violations", &other)),
    };
    Ok((hosts, shards, namespaces, violations))
}

/// Every host's replicas, asked concurrently, each within `timeout_ms` (connection included).
async fn ask_hosts(
    config: &ClientConfig,
    hosts: &[HostInfo],
    timeout_ms: u64,
) -> anyhow::Result<BTreeMap<NodeId, Result<Vec<ReplicaStatus>, String>>> {
    let mut answers = BTreeMap::new();
    let mut asked = Vec::new();
    for host in hosts {
        match host.addr.parse::<SocketAddr>() {
            Ok(addr) => asked.push((host.id, addr)),
            Err(_) => {
                answers.insert(
                    host.id,
                    Err(format!("its address {:?} is not IP:port", host.addr)),
                );
            }
        }
    }
    if asked.is_empty() {
        return Ok(answers);
    }
    let client = Client::new(ClientConfig {
        nodes: asked.iter().map(|(_, addr)| *addr).collect(),
        ..config
            .clone()
            .with_request_timeout_ms(timeout_ms)
            .with_connect_timeout_ms(timeout_ms)
    })?;
    let statuses = client.status_all().await;
    client.close().await;
    // `status_all` answers in the order of the client's nodes.
    for ((id, _), (_, status)) in asked.into_iter().zip(statuses) {
        answers.insert(id, status.map_err(|e| e.to_string()));
    }
    Ok(answers)
}

// ---- the judgement: the JSON document ----

/// The cluster's status: the `--json` document (see [`STATUS_HELP`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClusterStatus {
    /// [`JSON_VERSION`].
    pub(crate) version: u32,
    /// Healthy or degraded.
    pub(crate) health: Health,
    /// The one-line summary.
    pub(crate) summary: String,
    /// Why it is degraded (empty when it is not): hosts, then shards, then the catalog.
    pub(crate) reasons: Vec<String>,
    /// The sites, by name.
    pub(crate) sites: Vec<SiteStatus>,
    /// The hosts, by id.
    pub(crate) hosts: Vec<HostStatus>,
    /// The shards, by id.
    pub(crate) shards: Vec<ShardStatus>,
    /// The catalog's policy violations.
    pub(crate) violations: Vec<String>,
}

/// Healthy or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Health {
    /// Nothing needs attention.
    Ok,
    /// Something does; the reasons say what.
    Degraded,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
        })
    }
}

/// A site: how many of its hosts are up, and how many shards it leads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SiteStatus {
    pub(crate) site: String,
    /// Up for the managers (and possibly unreachable from here too).
    pub(crate) hosts_up: u32,
    pub(crate) hosts_down: u32,
    /// Up for the managers but they did not answer here.
    pub(crate) hosts_unreachable: u32,
    /// Shards whose leader is in this site.
    pub(crate) leaders: u32,
}

/// Up or down, as the catalog says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HostHealth {
    Up,
    Down,
}

/// A shard-node host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HostStatus {
    pub(crate) id: u64,
    pub(crate) site: String,
    pub(crate) addr: String,
    /// The catalog's view: down once it stopped heartbeating.
    pub(crate) state: HostHealth,
    /// Whether it answered the status request here.
    pub(crate) reachable: bool,
    /// Why it did not answer.
    pub(crate) error: Option<String>,
    /// How many replicas the catalog placed on it.
    pub(crate) replicas: u32,
    pub(crate) capacity_replicas: u32,
    /// Since the manager leader last heard its heartbeat (`None`: not since it took over).
    pub(crate) last_heartbeat_ms_ago: Option<u64>,
}

/// A shard: its policy, its leader, its replicas and its namespaces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ShardStatus {
    pub(crate) id: u64,
    /// `creating` or `active`.
    pub(crate) state: String,
    pub(crate) health: Health,
    /// Why it is degraded.
    pub(crate) reasons: Vec<String>,
    /// Its commit rule (`majority`, `majority+all-sites`).
    pub(crate) commit: String,
    /// Its leader policy (`any`, `preferred(SITE)`, `forced(NODE)`).
    pub(crate) leader_policy: String,
    /// Whether its replicas run the policy in force.
    pub(crate) policy_applied: bool,
    /// The node that leads it (in the highest term any replica reports).
    pub(crate) leader: Option<u64>,
    pub(crate) leader_site: Option<String>,
    /// The leader's term, or the highest term reported when there is no leader.
    pub(crate) term: Option<u64>,
    /// Whether the leader is where the leader policy wants it (`None`: no leader).
    pub(crate) leader_policy_satisfied: Option<bool>,
    /// A replacement in progress.
    pub(crate) replacing: Option<ReplacementStatus>,
    /// The namespaces assigned to it, by name.
    pub(crate) namespaces: Vec<NamespaceStatus>,
    /// Its replicas in the catalog's order, then the joining one of a replacement.
    pub(crate) replicas: Vec<ShardReplica>,
}

/// A replica being replaced: `old` leaves, `new` joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReplacementStatus {
    pub(crate) old: u64,
    pub(crate) new: u64,
}

/// A namespace of a shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NamespaceStatus {
    pub(crate) name: String,
    /// `creating`, `active` or `deleting`.
    pub(crate) state: String,
}

/// What a replica is, as far as this command can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ReplicaState {
    Leader,
    Follower,
    Candidate,
    PreCandidate,
    Learner,
    /// Its host is down (the catalog says so).
    Down,
    /// Its host did not answer here.
    Unreachable,
    /// Its host answered but holds no replica of the shard.
    Missing,
    /// The catalog does not know its host.
    UnknownHost,
}

impl fmt::Display for ReplicaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Leader => "leader",
            Self::Follower => "follower",
            Self::Candidate => "candidate",
            Self::PreCandidate => "pre_candidate",
            Self::Learner => "learner",
            Self::Down => "down",
            Self::Unreachable => "unreachable",
            Self::Missing => "missing",
            Self::UnknownHost => "unknown_host",
        })
    }
}

/// One replica of a shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ShardReplica {
    pub(crate) node: u64,
    pub(crate) site: String,
    pub(crate) addr: String,
    pub(crate) state: ReplicaState,
    /// It joins the shard in a replacement (a learner that is not in the catalog's replicas
    /// yet).
    pub(crate) joining: bool,
    pub(crate) term: Option<u64>,
    pub(crate) commit: Option<u64>,
    pub(crate) applied: Option<u64>,
    /// The leader's commit index minus this replica's applied index.
    pub(crate) lag: Option<u64>,
}

/// Judges what was observed. Pure: the tests build an [`Observed`] by hand.
fn assess(observed: Observed, lag_max_entries: u64) -> ClusterStatus {
    let Observed {
        mut hosts,
        mut shards,
        namespaces,
        violations,
        answers,
    } = observed;
    hosts.sort_by_key(|h| h.id);
    shards.sort_by_key(|s| s.id);
    let by_id: BTreeMap<NodeId, &HostInfo> = hosts.iter().map(|h| (h.id, h)).collect();
    let mut by_shard: BTreeMap<ShardId, Vec<NamespaceStatus>> = BTreeMap::new();
    for ns in &namespaces {
        by_shard.entry(ns.shard).or_default().push(NamespaceStatus {
            name: ns.name.to_string(),
            state: namespace_state(ns.state).into(),
        });
    }
    for list in by_shard.values_mut() {
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }

    let mut reasons = Vec::new();
    if hosts.is_empty() {
        reasons.push("no shard-node host is registered".to_owned());
    }
    let host_statuses: Vec<HostStatus> = hosts
        .iter()
        .map(|h| {
            let error = match answers.get(&h.id) {
                Some(Ok(_)) => None,
                Some(Err(e)) => Some(e.clone()),
                None => Some("not asked".to_owned()),
            };
            let heard = h.last_heartbeat_ms_ago.map_or_else(
                || "not heard by this manager leader".to_owned(),
                |ms| format!("last heartbeat {}", ago(ms)),
            );
            match (h.state, &error) {
                (HostState::Down, _) => reasons.push(format!(
                    "host {} ({}, {}) is down ({heard})",
                    h.id.0, h.site, h.addr
                )),
                (HostState::Up, Some(e)) => reasons.push(format!(
                    "host {} ({}, {}) is up for the managers but did not answer here: {e}",
                    h.id.0, h.site, h.addr
                )),
                (HostState::Up, None) => {}
            }
            HostStatus {
                id: h.id.0,
                site: h.site.clone(),
                addr: h.addr.clone(),
                state: match h.state {
                    HostState::Up => HostHealth::Up,
                    HostState::Down => HostHealth::Down,
                },
                reachable: error.is_none(),
                error,
                replicas: h.replicas,
                capacity_replicas: h.capacity_replicas,
                last_heartbeat_ms_ago: h.last_heartbeat_ms_ago,
            }
        })
        .collect();

    let shard_statuses: Vec<ShardStatus> = shards
        .iter()
        .map(|s| {
            let namespaces = by_shard.remove(&s.id).unwrap_or_default();
            assess_shard(s, namespaces, &by_id, &answers, lag_max_entries)
        })
        .collect();
    for shard in &shard_statuses {
        for reason in &shard.reasons {
            reasons.push(format!("shard {}: {reason}", shard.id));
        }
    }
    // Namespaces on a shard the catalog does not list are a catalog violation already.
    for violation in &violations {
        reasons.push(format!("catalog: {violation}"));
    }

    let mut sites: BTreeMap<&str, SiteStatus> = BTreeMap::new();
    for h in &host_statuses {
        let site = sites.entry(&h.site).or_insert_with(|| SiteStatus {
            site: h.site.clone(),
            hosts_up: 0,
            hosts_down: 0,
            hosts_unreachable: 0,
            leaders: 0,
        });
        match h.state {
            HostHealth::Up => site.hosts_up += 1,
            HostHealth::Down => site.hosts_down += 1,
        }
        if h.state == HostHealth::Up && !h.reachable {
            site.hosts_unreachable += 1;
        }
    }
    for shard in &shard_statuses {
        if let Some(site) = shard.leader_site.as_deref().and_then(|s| sites.get_mut(s)) {
            site.leaders += 1;
        }
    }
    let sites: Vec<SiteStatus> = sites.into_values().collect();

    let health = if reasons.is_empty() {
        Health::Ok
    } else {
        Health::Degraded
    };
    let summary = summary(
        health,
        &host_statuses,
        &shard_statuses,
        sites.len(),
        namespaces.len(),
        violations.len(),
    );
    ClusterStatus {
        version: JSON_VERSION,
        health,
        summary,
        reasons,
        sites,
        hosts: host_statuses,
        shards: shard_statuses,
        violations,
    }
}

/// Judges one shard from the catalog's record and its hosts' answers.
fn assess_shard(
    s: &ShardInfo,
    namespaces: Vec<NamespaceStatus>,
    hosts: &BTreeMap<NodeId, &HostInfo>,
    answers: &BTreeMap<NodeId, Result<Vec<ReplicaStatus>, String>>,
    lag_max_entries: u64,
) -> ShardStatus {
    let active = s.state == ShardState::Active;
    let mut members: Vec<(NodeId, bool)> = s.replicas.iter().map(|r| (r.node, false)).collect();
    if let Some(r) = s.replacing
        && !members.iter().any(|(n, _)| *n == r.new)
    {
        members.push((r.new, true));
    }
    // Each member's own report of the shard, when its host gave one.
    let reports: BTreeMap<NodeId, &ReplicaStatus> = members
        .iter()
        .filter_map(|(node, _)| {
            let list = answers.get(node)?.as_ref().ok()?;
            Some((*node, list.iter().find(|r| r.shard == s.id)?))
        })
        .collect();
    // A replica cut off from the others may still think it leads an old term: the highest
    // term's leader is the leader.
    let leader = reports
        .values()
        .filter(|r| r.role == Role::Leader)
        .max_by_key(|r| r.term)
        .copied();
    let term = leader
        .map(|l| l.term.0)
        .or_else(|| reports.values().map(|r| r.term.0).max());

    let mut reasons = Vec::new();
    if active && leader.is_none() {
        reasons.push("no leader: no replica says it leads".to_owned());
    }
    let mut replicas = Vec::new();
    for (node, joining) in &members {
        let host = hosts.get(node);
        let report = reports.get(node);
        let state = match (host, answers.get(node)) {
            (None, _) => ReplicaState::UnknownHost,
            (Some(h), _) if h.state == HostState::Down => ReplicaState::Down,
            (Some(_), None | Some(Err(_))) => ReplicaState::Unreachable,
            (Some(_), Some(Ok(_))) => match report {
                None => ReplicaState::Missing,
                Some(r) if r.learners.contains(node) => ReplicaState::Learner,
                Some(r) => match r.role {
                    Role::Leader => ReplicaState::Leader,
                    Role::Follower => ReplicaState::Follower,
                    Role::Candidate => ReplicaState::Candidate,
                    Role::PreCandidate => ReplicaState::PreCandidate,
                },
            },
        };
        let site = host.map_or_else(|| "?".to_owned(), |h| h.site.clone());
        let lag = match (leader, report) {
            (Some(l), Some(r)) => Some(l.commit.0.saturating_sub(r.applied.0)),
            _ => None,
        };
        let what = if *joining {
            format!("joining replica {}", node.0)
        } else {
            format!("replica {}", node.0)
        };
        match state {
            ReplicaState::UnknownHost => {
                reasons.push(format!(
                    "{what} is on host {}, unknown to the catalog",
                    node.0
                ));
            }
            ReplicaState::Down => {
                reasons.push(format!("{what} is on down host {} ({site})", node.0));
            }
            ReplicaState::Unreachable => reasons.push(format!(
                "{what}: its host {} ({site}) did not answer",
                node.0
            )),
            // A shard being created, or a replica joining, gets its replicas one by one.
            ReplicaState::Missing if active && !joining => reasons.push(format!(
                "{what}: host {} ({site}) holds no replica of the shard",
                node.0
            )),
            _ => {}
        }
        if let Some(lag) = lag
            && lag > lag_max_entries
        {
            reasons.push(format!(
                "{what} is {lag} entries behind the leader's commit (more than {lag_max_entries})"
            ));
        }
        replicas.push(ShardReplica {
            node: node.0,
            site,
            addr: host.map_or_else(String::new, |h| h.addr.clone()),
            state,
            joining: *joining,
            term: report.map(|r| r.term.0),
            commit: report.map(|r| r.commit.0),
            applied: report.map(|r| r.applied.0),
            lag,
        });
    }

    let leader_site = leader
        .and_then(|l| hosts.get(&l.node))
        .map(|h| h.site.clone());
    let leader_policy_satisfied = leader.map(|l| match &s.policy.leader {
        LeaderPreference::Any => true,
        LeaderPreference::Preferred(site) => leader_site.as_ref() == Some(site),
        LeaderPreference::Forced(node) => l.node == *node,
    });
    if let (Some(l), Some(false)) = (leader, leader_policy_satisfied) {
        let at = leader_site.as_deref().unwrap_or("an unknown site");
        reasons.push(match &s.policy.leader {
            LeaderPreference::Forced(node) => format!(
                "leader is node {} ({at}); the policy forces node {}",
                l.node.0, node.0
            ),
            policy => format!(
                "leader is node {} in {at}; the policy is {policy}",
                l.node.0
            ),
        });
    }
    if active && !s.policy_applied {
        reasons.push(format!(
            "its replicas do not run its policy ({}) yet",
            s.policy
        ));
    }
    ShardStatus {
        id: s.id.0,
        state: s.state.to_string(),
        health: if reasons.is_empty() {
            Health::Ok
        } else {
            Health::Degraded
        },
        reasons,
        commit: s.policy.commit.to_string(),
        leader_policy: s.policy.leader.to_string(),
        policy_applied: s.policy_applied,
        leader: leader.map(|l| l.node.0),
        leader_site,
        term,
        leader_policy_satisfied,
        replacing: s.replacing.map(|r| ReplacementStatus {
            old: r.old.0,
            new: r.new.0,
        }),
        namespaces,
        replicas,
    }
}

fn namespace_state(state: NamespaceState) -> &'static str {
    match state {
        NamespaceState::Creating => "creating",
        NamespaceState::Active => "active",
        NamespaceState::Deleting => "deleting",
    }
}

/// The most ids a summary names before it says how many more there are.
const SUMMARY_IDS_MAX: usize = 8;

/// The one-line summary: `OK: ...` or `DEGRADED: ...` with what is wrong, counted.
fn summary(
    health: Health,
    hosts: &[HostStatus],
    shards: &[ShardStatus],
    sites: usize,
    namespaces: usize,
    violations: usize,
) -> String {
    let up = hosts.iter().filter(|h| h.state == HostHealth::Up).count();
    if health == Health::Ok {
        return format!(
            "OK: {up} of {} up in {}; {} led and in policy; {}",
            count(hosts.len(), "host"),
            count(sites, "site"),
            count(shards.len(), "shard"),
            count(namespaces, "namespace"),
        );
    }
    let mut parts = Vec::new();
    let down: Vec<u64> = hosts
        .iter()
        .filter(|h| h.state == HostHealth::Down)
        .map(|h| h.id)
        .collect();
    if !down.is_empty() {
        parts.push(format!("{} down {}", count(down.len(), "host"), ids(&down)));
    }
    let unreachable: Vec<u64> = hosts
        .iter()
        .filter(|h| h.state == HostHealth::Up && !h.reachable)
        .map(|h| h.id)
        .collect();
    if !unreachable.is_empty() {
        parts.push(format!(
            "{} unreachable {}",
            count(unreachable.len(), "host"),
            ids(&unreachable)
        ));
    }
    if hosts.is_empty() {
        parts.push("no hosts".to_owned());
    }
    let degraded: Vec<u64> = shards
        .iter()
        .filter(|s| s.health == Health::Degraded)
        .map(|s| s.id)
        .collect();
    if !degraded.is_empty() {
        parts.push(format!(
            "{} of {} degraded {}",
            degraded.len(),
            count(shards.len(), "shard"),
            ids(&degraded)
        ));
    }
    if violations > 0 {
        parts.push(count(violations, "catalog violation"));
    }
    format!("DEGRADED: {}", parts.join("; "))
}

/// `1 host`, `2 hosts`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `(1, 2, 3)`, or `(1, ..., 8, +4 more)` past [`SUMMARY_IDS_MAX`].
fn ids(ids: &[u64]) -> String {
    let shown: Vec<String> = ids
        .iter()
        .take(SUMMARY_IDS_MAX)
        .map(u64::to_string)
        .collect();
    let more = ids.len().saturating_sub(SUMMARY_IDS_MAX);
    if more == 0 {
        format!("({})", shown.join(", "))
    } else {
        format!("({}, +{more} more)", shown.join(", "))
    }
}

// ---- the terminal view ----

/// The most namespace names the terminal view prints per shard (`--json` has them all).
const NAMES_SHOWN_MAX: usize = 10;

/// The status for a terminal: the summary, the reasons, then sites, hosts, shards, replicas
/// and namespaces as aligned tables.
fn render(status: &ClusterStatus) -> String {
    let mut out = format!("{}\n", status.summary);
    for reason in &status.reasons {
        out += &format!("  - {reason}\n");
    }
    let dash = || "-".to_owned();
    let opt = |v: Option<u64>| v.map_or_else(dash, |v| v.to_string());

    let rows = status
        .sites
        .iter()
        .map(|s| {
            vec![
                s.site.clone(),
                s.hosts_up.to_string(),
                s.hosts_down.to_string(),
                s.hosts_unreachable.to_string(),
                s.leaders.to_string(),
            ]
        })
        .collect();
    out += "\nSITES\n";
    out += &table(&["SITE", "UP", "DOWN", "UNREACHABLE", "LEADERS"], rows);

    let rows = status
        .hosts
        .iter()
        .map(|h| {
            let state = match (h.state, h.reachable) {
                (HostHealth::Up, true) => "up",
                (HostHealth::Up, false) => "up, unreachable",
                (HostHealth::Down, _) => "down",
            };
            vec![
                h.id.to_string(),
                h.site.clone(),
                h.addr.clone(),
                state.to_owned(),
                h.replicas.to_string(),
                h.last_heartbeat_ms_ago.map_or_else(dash, ago),
            ]
        })
        .collect();
    out += "\nHOSTS\n";
    out += &table(
        &["ID", "SITE", "ADDR", "STATE", "REPLICAS", "LAST HEARTBEAT"],
        rows,
    );

    let rows = status
        .shards
        .iter()
        .map(|s| {
            let pending = if s.policy_applied { "" } else { "*" };
            let leader = match (s.leader, &s.leader_site) {
                (Some(node), Some(site)) => format!("{node} ({site})"),
                (Some(node), None) => node.to_string(),
                (None, _) => dash(),
            };
            let placed = match s.leader_policy_satisfied {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            };
            vec![
                s.id.to_string(),
                s.state.clone(),
                s.health.to_string(),
                leader,
                opt(s.term),
                format!("{}{pending}", s.commit),
                format!("{}{pending}", s.leader_policy),
                placed.to_owned(),
                s.namespaces.len().to_string(),
                s.replacing
                    .map_or_else(dash, |r| format!("{} -> {}", r.old, r.new)),
            ]
        })
        .collect();
    out += "\nSHARDS\n";
    out += &table(
        &[
            "ID",
            "STATE",
            "HEALTH",
            "LEADER",
            "TERM",
            "COMMIT",
            "LEADER POLICY",
            "AS POLICY",
            "NAMESPACES",
            "REPLACING",
        ],
        rows,
    );

    let rows = status
        .shards
        .iter()
        .flat_map(|s| {
            s.replicas.iter().map(move |r| {
                let state = if r.joining {
                    format!("{} (joining)", r.state)
                } else {
                    r.state.to_string()
                };
                vec![
                    s.id.to_string(),
                    r.node.to_string(),
                    r.site.clone(),
                    r.addr.clone(),
                    state,
                    opt(r.term),
                    opt(r.commit),
                    opt(r.applied),
                    opt(r.lag),
                ]
            })
        })
        .collect();
    out += "\nREPLICAS\n";
    out += &table(
        &[
            "SHARD", "NODE", "SITE", "ADDR", "STATE", "TERM", "COMMIT", "APPLIED", "LAG",
        ],
        rows,
    );

    let rows = status
        .shards
        .iter()
        .map(|s| {
            let mut names: Vec<String> = s
                .namespaces
                .iter()
                .take(NAMES_SHOWN_MAX)
                .map(|n| {
                    if n.state == "active" {
                        n.name.clone()
                    } else {
                        format!("{} ({})", n.name, n.state)
                    }
                })
                .collect();
            if s.namespaces.len() > NAMES_SHOWN_MAX {
                names.push(format!("+{} more", s.namespaces.len() - NAMES_SHOWN_MAX));
            }
            vec![s.id.to_string(), names.join(", ")]
        })
        .collect();
    out += "\nNAMESPACES\n";
    out += &table(&["SHARD", "NAMESPACES"], rows);
    out
}

// ---- the per-node view (a standalone shard without managers) ----

/// Runs the per-node view: every node of the cluster file, asked at the same time.
async fn run_nodes(cluster: &ClusterFile, timeout_ms: u64) -> anyhow::Result<()> {
    let config = cluster
        .client_config_for(Servers::Nodes)?
        .with_request_timeout_ms(timeout_ms)
        .with_connect_timeout_ms(timeout_ms);
    let client = Client::new(config)?;
    let statuses = client.status_all().await;
    client.close().await;
    print!("{}", nodes_table(&statuses));
    let unreachable: Vec<String> = statuses
        .iter()
        .filter(|(_, result)| result.is_err())
        .map(|(addr, _)| addr.to_string())
        .collect();
    if !unreachable.is_empty() {
        return Err(Error::Unavailable {
            reason: format!(
                "{} of {} nodes did not answer",
                unreachable.len(),
                statuses.len()
            ),
            last_error: format!("no status from {}", unreachable.join(", ")),
        }
        .into());
    }
    Ok(())
}

const NODES_HEADER: [&str; 12] = [
    "NODE", "ID", "SHARD", "ROLE", "TERM", "LEADER", "VOTERS", "COMMIT", "APPLIED", "FIRST",
    "LAST", "QUIESCED",
];

/// The per-node table: one row per replica, sorted by shard within each node; a node that did
/// not answer, or holds no replica, gets a line saying so.
fn nodes_table(statuses: &[(SocketAddr, Result<Vec<ReplicaStatus>, Error>)]) -> String {
    let mut rows: Vec<Vec<String>> = vec![NODES_HEADER.iter().map(|h| h.to_string()).collect()];
    let mut notes: Vec<(usize, String)> = Vec::new();
    for (addr, result) in statuses {
        match result {
            Ok(replicas) if replicas.is_empty() => {
                notes.push((rows.len(), format!("{addr}  (hosts no replica)")));
            }
            Ok(replicas) => {
                let mut replicas = replicas.clone();
                replicas.sort_by_key(|r| r.shard);
                for r in replicas {
                    rows.push(node_row(*addr, &r));
                }
            }
            Err(e) => notes.push((rows.len(), format!("{addr}  unreachable: {e}"))),
        }
    }
    let widths: Vec<usize> = (0..NODES_HEADER.len())
        .map(|col| rows.iter().map(|r| r[col].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    let mut notes = notes.into_iter().peekable();
    for (i, r) in rows.iter().enumerate() {
        while let Some((_, note)) = notes.next_if(|(at, _)| *at == i) {
            out += &note;
            out += "\n";
        }
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out += line.join("  ").trim_end();
        out += "\n";
    }
    for (_, note) in notes {
        out += &note;
        out += "\n";
    }
    out
}

fn node_row(addr: SocketAddr, r: &ReplicaStatus) -> Vec<String> {
    let voters: Vec<String> = r.voters.iter().map(|v| v.0.to_string()).collect();
    vec![
        addr.to_string(),
        r.node.0.to_string(),
        r.shard.to_string(),
        r.role.to_string(),
        r.term.0.to_string(),
        r.leader
            .as_ref()
            .map_or_else(|| "-".to_string(), |l| l.node.0.to_string()),
        voters.join(","),
        r.commit.0.to_string(),
        r.applied.0.to_string(),
        r.first_index.0.to_string(),
        r.last_index.0.to_string(),
        if r.quiesced { "yes" } else { "no" }.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use cairn_client::{LeaderHint, LogIndex, Namespace};
    use cairn_wire::api::{Epoch, ReplicaAddr};
    use cairn_wire::catalog::{CommitPolicy, PlacementPolicy, Replacement, ShardPolicy};
    use raft_core::Term;

    use super::*;

    fn replica(shard: u64, node: u64, role: Role) -> ReplicaStatus {
        ReplicaStatus {
            shard: ShardId(shard),
            node: NodeId(node),
            role,
            term: Term(2),
            leader: Some(LeaderHint {
                node: NodeId(1),
                addr: "127.0.0.1:7101".into(),
            }),
            voters: vec![NodeId(1), NodeId(2), NodeId(3)],
            learners: vec![],
            commit: LogIndex(10),
            applied: LogIndex(9),
            first_index: LogIndex(1),
            last_index: LogIndex(10),
            quiesced: false,
        }
    }

    fn host(id: u64, site: &str, state: HostState) -> HostInfo {
        HostInfo {
            id: NodeId(id),
            site: site.into(),
            addr: format!("10.0.0.{id}:7101"),
            capacity_replicas: 100,
            state,
            replicas: 1,
            last_heartbeat_ms_ago: (state == HostState::Up).then_some(300),
        }
    }

    fn shard(id: u64, nodes: &[u64], leader: LeaderPreference) -> ShardInfo {
        ShardInfo {
            id: ShardId(id),
            replicas: nodes
                .iter()
                .map(|n| ReplicaAddr {
                    node: NodeId(*n),
                    addr: format!("10.0.0.{n}:7101"),
                    site: if *n <= 2 { "dc1" } else { "dc2" }.into(),
                })
                .collect(),
            state: ShardState::Active,
            namespaces: 1,
            placement: PlacementPolicy::default(),
            policy: ShardPolicy {
                commit: CommitPolicy::Majority,
                leader,
            },
            home_site: None,
            policy_applied: true,
            replacing: None,
        }
    }

    fn namespace(name: &str, shard: u64) -> NamespaceInfo {
        NamespaceInfo {
            name: Namespace::new(name).unwrap(),
            id: 1,
            shard: ShardId(shard),
            epoch: Epoch(1),
            state: NamespaceState::Active,
            home_site: None,
            placement: None,
            created_at_ms: 0,
        }
    }

    /// Hosts 1, 2 in dc1 and 3 in dc2; shard 1 on all three, led by 1 (applied 9 of 10 on
    /// every replica); one namespace.
    fn healthy() -> Observed {
        let answer = |node| {
            let role = if node == 1 {
                Role::Leader
            } else {
                Role::Follower
            };
            (NodeId(node), Ok(vec![replica(1, node, role)]))
        };
        Observed {
            hosts: vec![
                host(3, "dc2", HostState::Up),
                host(1, "dc1", HostState::Up),
                host(2, "dc1", HostState::Up),
            ],
            shards: vec![shard(1, &[1, 2, 3], LeaderPreference::Any)],
            namespaces: vec![namespace("photos", 1)],
            violations: vec![],
            answers: [answer(1), answer(2), answer(3)].into_iter().collect(),
        }
    }

    #[test]
    fn a_healthy_cluster_is_ok_in_one_line_and_aligned_tables() {
        let status = assess(healthy(), 1_000);
        assert_eq!(status.health, Health::Ok);
        assert!(status.reasons.is_empty(), "{:?}", status.reasons);
        let text = render(&status);
        assert_eq!(
            text,
            "\
OK: 3 of 3 hosts up in 2 sites; 1 shard led and in policy; 1 namespace

SITES
SITE  UP  DOWN  UNREACHABLE  LEADERS
dc1   2   0     0            1
dc2   1   0     0            0

HOSTS
ID  SITE  ADDR           STATE  REPLICAS  LAST HEARTBEAT
1   dc1   10.0.0.1:7101  up     1         0.3s ago
2   dc1   10.0.0.2:7101  up     1         0.3s ago
3   dc2   10.0.0.3:7101  up     1         0.3s ago

SHARDS
ID  STATE   HEALTH  LEADER   TERM  COMMIT    LEADER POLICY  AS POLICY  NAMESPACES  REPLACING
1   active  ok      1 (dc1)  2     majority  any            yes        1           -

REPLICAS
SHARD  NODE  SITE  ADDR           STATE     TERM  COMMIT  APPLIED  LAG
1      1     dc1   10.0.0.1:7101  leader    2     10      9        1
1      2     dc1   10.0.0.2:7101  follower  2     10      9        1
1      3     dc2   10.0.0.3:7101  follower  2     10      9        1

NAMESPACES
SHARD  NAMESPACES
1      photos
"
        );
    }

    #[test]
    fn a_down_host_degrades_its_shards_and_names_the_replica() {
        let mut observed = healthy();
        observed.hosts[0] = host(3, "dc2", HostState::Down);
        observed.answers.insert(NodeId(3), Err("timed out".into()));
        observed.violations =
            vec!["shard 1 has 0 up replicas in required site dc2 (policy: at least 1)".into()];
        let status = assess(observed, 1_000);
        assert_eq!(status.health, Health::Degraded);
        assert_eq!(
            status.reasons,
            [
                "host 3 (dc2, 10.0.0.3:7101) is down (not heard by this manager leader)",
                "shard 1: replica 3 is on down host 3 (dc2)",
                "catalog: shard 1 has 0 up replicas in required site dc2 (policy: at least 1)",
            ]
        );
        let text = render(&status);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "DEGRADED: 1 host down (3); 1 of 1 shard degraded (1); 1 catalog violation"
        );
        assert_eq!(
            lines[1],
            "  - host 3 (dc2, 10.0.0.3:7101) is down (not heard by this manager leader)"
        );
        assert!(
            text.contains("\ndc2   0   1     0            0\n"),
            "{text}"
        );
        assert!(
            text.contains("\n3   dc2   10.0.0.3:7101  down   1         -\n"),
            "{text}"
        );
        assert!(
            text.contains("\n1   active  degraded  1 (dc1)  2"),
            "{text}"
        );
        assert!(
            text.contains(
                "\n1      3     dc2   10.0.0.3:7101  down      -     -       -        -\n"
            ),
            "{text}"
        );
        let shard = &status.shards[0];
        assert_eq!(shard.replicas[2].state, ReplicaState::Down);
        assert_eq!(status.hosts[2].state, HostHealth::Down);
        assert!(!status.hosts[2].reachable);
    }

    #[test]
    fn the_json_document_has_stable_lowercase_names_and_reads_back() {
        let mut observed = healthy();
        observed.hosts[0] = host(3, "dc2", HostState::Down);
        let status = assess(observed, 1_000);
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["health"], "degraded");
        assert_eq!(json["hosts"][2]["state"], "down");
        assert_eq!(
            json["hosts"][2]["last_heartbeat_ms_ago"],
            serde_json::Value::Null
        );
        assert_eq!(json["shards"][0]["health"], "degraded");
        assert_eq!(json["shards"][0]["replicas"][0]["state"], "leader");
        assert_eq!(json["shards"][0]["replicas"][2]["state"], "down");
        assert_eq!(json["shards"][0]["leader"], 1);
        assert_eq!(json["shards"][0]["leader_policy"], "any");
        assert_eq!(json["shards"][0]["namespaces"][0]["name"], "photos");
        assert_eq!(json["sites"][1]["hosts_down"], 1);
        let back: ClusterStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
    }

    #[test]
    fn an_unreachable_host_no_leader_and_lag_are_reasons() {
        let mut observed = healthy();
        // Host 2 is up for the managers but does not answer; the leader is gone and 3 lags.
        observed.answers.insert(NodeId(2), Err("timed out".into()));
        let mut lagging = replica(1, 3, Role::Follower);
        lagging.applied = LogIndex(1);
        observed
            .answers
            .insert(NodeId(3), Ok(vec![lagging.clone()]));
        let status = assess(observed.clone(), 5);
        assert_eq!(
            status.reasons,
            [
                "host 2 (dc1, 10.0.0.2:7101) is up for the managers but did not answer here: \
                 timed out",
                "shard 1: replica 2: its host 2 (dc1) did not answer",
                "shard 1: replica 3 is 9 entries behind the leader's commit (more than 5)",
            ]
        );
        assert!(
            status
                .summary
                .starts_with("DEGRADED: 1 host unreachable (2); 1 of 1 shard"),
            "{}",
            status.summary
        );
        assert!(render(&status).contains("\n2   dc1   10.0.0.2:7101  up, unreachable"));
        // Without the leader, the term is the highest one reported and nobody lags.
        observed
            .answers
            .insert(NodeId(1), Ok(vec![replica(1, 1, Role::Candidate)]));
        let status = assess(observed, 5);
        let shard = &status.shards[0];
        assert_eq!(shard.leader, None);
        assert_eq!(shard.term, Some(2));
        assert_eq!(shard.leader_policy_satisfied, None);
        assert!(shard.replicas.iter().all(|r| r.lag.is_none()));
        assert_eq!(shard.reasons[0], "no leader: no replica says it leads");
    }

    #[test]
    fn a_leader_outside_its_policy_and_a_replacement_are_shown() {
        let mut observed = healthy();
        let mut s = shard(1, &[1, 2, 3], LeaderPreference::Preferred("dc2".into()));
        s.replacing = Some(Replacement {
            old: NodeId(2),
            new: NodeId(4),
        });
        s.policy_applied = false;
        observed.shards = vec![s];
        observed.hosts.push(host(4, "dc1", HostState::Up));
        let mut joining = replica(1, 4, Role::Follower);
        joining.learners = vec![NodeId(4)];
        observed.answers.insert(NodeId(4), Ok(vec![joining]));
        let status = assess(observed, 1_000);
        let judged = &status.shards[0];
        assert_eq!(judged.leader_policy_satisfied, Some(false));
        assert_eq!(
            judged.reasons,
            [
                "leader is node 1 in dc1; the policy is preferred(dc2)",
                "its replicas do not run its policy (commit majority, leader preferred(dc2)) yet",
            ]
        );
        assert_eq!(judged.replicas[3].state, ReplicaState::Learner);
        assert!(judged.replicas[3].joining);
        let text = render(&status);
        assert!(
            text.contains("majority*  preferred(dc2)*  no         1           2 -> 4"),
            "{text}"
        );
        assert!(text.contains("learner (joining)"), "{text}");
        // A forced leader elsewhere.
        let mut observed = healthy();
        observed.shards = vec![shard(1, &[1, 2, 3], LeaderPreference::Forced(NodeId(3)))];
        let status = assess(observed, 1_000);
        assert_eq!(
            status.shards[0].reasons,
            ["leader is node 1 (dc1); the policy forces node 3"]
        );
    }

    #[test]
    fn a_replica_its_host_does_not_hold_is_missing_unless_the_shard_is_new() {
        let mut observed = healthy();
        observed.answers.insert(NodeId(3), Ok(vec![]));
        let status = assess(observed.clone(), 1_000);
        assert_eq!(
            status.shards[0].reasons,
            ["replica 3: host 3 (dc2) holds no replica of the shard"]
        );
        observed.shards[0].state = ShardState::Creating;
        let status = assess(observed, 1_000);
        assert_eq!(status.shards[0].replicas[2].state, ReplicaState::Missing);
        assert!(status.shards[0].reasons.is_empty());
    }

    #[test]
    fn summaries_count_and_cut_long_id_lists() {
        assert_eq!(ids(&[1, 2]), "(1, 2)");
        assert_eq!(
            ids(&(1..=10).collect::<Vec<_>>()),
            "(1, 2, 3, 4, 5, 6, 7, 8, +2 more)"
        );
        assert_eq!(count(1, "shard"), "1 shard");
        assert_eq!(count(0, "shard"), "0 shards");
        let status = assess(Observed::default(), 1_000);
        assert_eq!(status.summary, "DEGRADED: no hosts");
        assert_eq!(status.reasons, ["no shard-node host is registered"]);
    }

    #[test]
    fn many_namespaces_are_cut_in_the_terminal_only() {
        let mut observed = healthy();
        observed.namespaces = (0..12)
            .map(|i| namespace(&format!("ns{i:02}"), 1))
            .collect();
        observed.namespaces[0].state = NamespaceState::Deleting;
        let status = assess(observed, 1_000);
        assert_eq!(status.shards[0].namespaces.len(), 12);
        let text = render(&status);
        assert!(
            text.ends_with("1      ns00 (deleting), ns01, ns02, ns03, ns04, ns05, ns06, ns07, ns08, ns09, +2 more\n"),
            "{text}"
        );
    }

    #[test]
    fn the_node_table_has_a_row_per_replica_and_names_unreachable_nodes() {
        let a: SocketAddr = "127.0.0.1:7101".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:7102".parse().unwrap();
        let statuses = vec![
            (
                a,
                Ok(vec![
                    replica(2, 1, Role::Follower),
                    replica(1, 1, Role::Leader),
                ]),
            ),
            (
                b,
                Err(Error::Unavailable {
                    reason: "127.0.0.1:7102 did not answer".into(),
                    last_error: "timed out".into(),
                }),
            ),
        ];
        let text = nodes_table(&statuses);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("NODE"), "{text}");
        // Sorted by shard within the node.
        assert!(lines[1].contains("Leader"), "{text}");
        assert!(lines[1].contains("1,2,3"), "{text}");
        assert!(
            lines[3].starts_with("127.0.0.1:7102  unreachable"),
            "{text}"
        );
    }
}
