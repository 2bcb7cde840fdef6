//! `cairn shards`, `cairn hosts` and `cairn policy`: the manager's catalog of shards and hosts,
//! as tables, the shards' replication policies and the cluster's defaults; and the table and
//! time formatting the catalog commands share.

use std::path::PathBuf;

use anyhow::Context as _;
use cairn_client::{Client, Error};
use cairn_wire::api::{ApiError, Request, Response, ShardId};
use cairn_wire::catalog::{
    CommitPolicy, HostInfo, LeaderPreference, ManagerRequest, ManagerResponse, PlacementPolicy,
    Policies, ShardInfo,
};
use clap::{Args, Subcommand};

use crate::cluster_file::ClusterFile;

/// Arguments of `cairn shards`.
#[derive(Args)]
#[command(after_help = "Talks to the managers of the cluster file (its leader answers).")]
pub(crate) struct ShardsArgs {
    #[command(flatten)]
    manager: ManagerArgs,
    #[command(subcommand)]
    op: ShardsOp,
}

#[derive(Subcommand)]
enum ShardsOp {
    /// Print every shard: id, state, how many namespaces it serves, its commit rule and leader
    /// policy (with a `*` while its replicas do not run them yet), and its replicas
    /// (node@address/site), followed by `(replacing OLD -> NEW)` while the manager replaces a
    /// replica whose host stayed down.
    List,
    /// Change a shard's commit rule and/or leader policy; returns once its replicas run them.
    SetPolicy {
        /// The shard id.
        shard: u64,
        /// `majority`, or `majority+all-sites` (a write is acknowledged only once it is durable
        /// on a majority and on a replica in every required site).
        #[arg(long, value_name = "RULE")]
        commit: Option<CommitPolicy>,
        /// `any`, `preferred(SITE)` (leadership moves to a caught-up replica in SITE and stays)
        /// or `forced(NODE_ID)` (only that node ever leads; writes fail fast while it is down).
        #[arg(long, value_name = "POLICY")]
        leader: Option<LeaderPreference>,
    },
}

/// Arguments of `cairn policy`.
#[derive(Args)]
#[command(
    after_help = "Talks to the managers of the cluster file (its leader answers). The \
policies are the defaults for shards created from now on; existing shards keep theirs (change a \
shard's with `cairn shards set-policy`)."
)]
pub(crate) struct PolicyArgs {
    #[command(flatten)]
    manager: ManagerArgs,
    #[command(subcommand)]
    op: PolicyOp,
}

#[derive(Subcommand)]
enum PolicyOp {
    /// Print the cluster's policies.
    Show,
    /// Change some of the cluster's policies (the others stay) and print the result.
    Set(PolicyChange),
}

/// The policies `cairn policy set` changes.
#[derive(Args, Clone, Debug, Default)]
struct PolicyChange {
    /// How many namespaces a shard takes before a new shard is added.
    #[arg(long, value_name = "N")]
    namespaces_per_shard: Option<u32>,
    #[command(flatten)]
    placement: PlacementArgs,
    /// The commit rule of new shards: `majority` or `majority+all-sites`.
    #[arg(long, value_name = "RULE")]
    commit: Option<CommitPolicy>,
}

/// Placement options (`cairn policy set`, `cairn ns create`).
#[derive(Args, Clone, Debug, Default)]
pub(crate) struct PlacementArgs {
    /// How many replicas a shard gets (1 to 9).
    #[arg(long, value_name = "N")]
    pub(crate) replicas: Option<u32>,
    /// The fewest replicas in each required site.
    #[arg(long, value_name = "N")]
    pub(crate) min_per_site: Option<u32>,
    /// The sites that must hold replicas, comma-separated (an empty value: none).
    #[arg(long, value_name = "SITES", value_delimiter = ',')]
    pub(crate) required_sites: Option<Vec<String>>,
}

impl PlacementArgs {
    /// Whether any option was given.
    pub(crate) fn given(&self) -> bool {
        self.replicas.is_some() || self.min_per_site.is_some() || self.required_sites.is_some()
    }

    /// `base` with the given options applied, checked.
    pub(crate) fn apply(&self, base: &PlacementPolicy) -> Result<PlacementPolicy, ApiError> {
        let mut placement = base.clone();
        if let Some(replicas) = self.replicas {
            placement.replicas = replicas;
        }
        if let Some(min) = self.min_per_site {
            placement.min_per_site = min;
        }
        if let Some(sites) = &self.required_sites {
            let mut sites: Vec<String> = sites.iter().filter(|s| !s.is_empty()).cloned().collect();
            sites.sort();
            if sites.windows(2).any(|w| w[0] == w[1]) {
                return Err(ApiError::InvalidArgument(
                    "--required-sites names a site twice".into(),
                ));
            }
            placement.required_sites = sites;
        }
        placement
            .validate()
            .map_err(|e| ApiError::InvalidArgument(format!("placement: {e}")))?;
        Ok(placement)
    }
}

/// Arguments of `cairn hosts`.
#[derive(Args)]
#[command(after_help = "Talks to the managers of the cluster file (its leader answers).")]
pub(crate) struct HostsArgs {
    #[command(flatten)]
    manager: ManagerArgs,
    #[command(subcommand)]
    op: HostsOp,
}

#[derive(Subcommand)]
enum HostsOp {
    /// Print every shard-node host: id, site, address, up or down, replicas placed on it, its
    /// capacity, and when the manager leader last heard its heartbeat.
    List,
}

/// How to reach the managers: the options every manager command takes.
#[derive(Args)]
pub(crate) struct ManagerArgs {
    /// The cluster file; its `managers` are asked [default: $CAIRN_CLUSTER].
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) cluster: Option<PathBuf>,
    /// The bound on the whole call, retries included, in milliseconds [default: 5000; 30000 for
    /// ns create and ns delete].
    #[arg(long, global = true, value_name = "MS")]
    pub(crate) timeout_ms: Option<u64>,
}

impl ManagerArgs {
    /// A client of the managers, its calls bounded by `--timeout-ms` or else `default_ms`.
    pub(crate) fn client(&self, default_ms: u64) -> anyhow::Result<Client> {
        let cluster = ClusterFile::from_args(self.cluster.clone())?;
        let config = cluster
            .manager_config()?
            .with_request_timeout_ms(self.timeout_ms.unwrap_or(default_ms));
        Ok(Client::new(config)?)
    }
}

/// Sends `request` to the manager leader and returns its answer (an error answer is an `Err`).
pub(crate) async fn ask_manager(
    client: &Client,
    request: ManagerRequest,
) -> Result<ManagerResponse, Error> {
    match client.request(Request::Manager(request)).await? {
        Response::Manager(response) => Ok(response),
        other => Err(Error::Protocol(format!(
            "the manager answered with {} where a manager answer was expected",
            other.kind()
        ))),
    }
}

/// The error for a manager answer of the wrong kind.
pub(crate) fn unexpected(wanted: &str, got: &ManagerResponse) -> anyhow::Error {
    let got = match got {
        ManagerResponse::Done => "done",
        ManagerResponse::Namespace(_) => "a namespace",
        ManagerResponse::Namespaces(_) => "namespaces",
        ManagerResponse::Shards(_) => "shards",
        ManagerResponse::Hosts(_) => "hosts",
        ManagerResponse::Policies(_) => "policies",
        ManagerResponse::Routing(_) => "a routing table",
        ManagerResponse::Change(_) => "a routing change",
        ManagerResponse::Violations(_) => "violations",
    };
    Error::Protocol(format!(
        "the manager answered with {got} where {wanted} was expected"
    ))
    .into()
}

/// How long `shards set-policy` may take by default: the manager answers once the shard's
/// replicas run the policy.
const SET_POLICY_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// Runs `cairn shards`.
pub(crate) async fn run_shards(args: ShardsArgs) -> anyhow::Result<()> {
    match args.op {
        ShardsOp::List => {
            let client = args
                .manager
                .client(cairn_client::REQUEST_TIMEOUT_MS_DEFAULT)?;
            let result = ask_manager(&client, ManagerRequest::ListShards).await;
            client.close().await;
            match result.context("cannot list the shards")? {
                ManagerResponse::Shards(shards) => print!("{}", shards_table(shards)),
                other => return Err(unexpected("shards", &other)),
            }
        }
        ShardsOp::SetPolicy {
            shard,
            commit,
            leader,
        } => {
            if commit.is_none() && leader.is_none() {
                return Err(ApiError::InvalidArgument(
                    "nothing to change: give --commit and/or --leader".into(),
                )
                .into());
            }
            let client = args.manager.client(SET_POLICY_TIMEOUT_MS_DEFAULT)?;
            let request = ManagerRequest::SetShardPolicy {
                shard: ShardId(shard),
                commit,
                leader: leader.clone(),
            };
            let result = ask_manager(&client, request).await;
            client.close().await;
            match result.with_context(|| format!("cannot set the policy of shard {shard}"))? {
                ManagerResponse::Done => {
                    let mut changed = Vec::new();
                    if let Some(commit) = commit {
                        changed.push(format!("commit {commit}"));
                    }
                    if let Some(leader) = leader {
                        changed.push(format!("leader {leader}"));
                    }
                    println!("ok: shard {shard} runs {}", changed.join(", "));
                }
                other => return Err(unexpected("done", &other)),
            }
        }
    }
    Ok(())
}

/// Runs `cairn policy`.
pub(crate) async fn run_policy(args: PolicyArgs) -> anyhow::Result<()> {
    let client = args
        .manager
        .client(cairn_client::REQUEST_TIMEOUT_MS_DEFAULT)?;
    let result = policy(&client, &args.op).await;
    client.close().await;
    print!("{}", show_policies(&result?));
    Ok(())
}

async fn policy(client: &Client, op: &PolicyOp) -> anyhow::Result<Policies> {
    let current = match ask_manager(client, ManagerRequest::Policies)
        .await
        .context("cannot read the policies")?
    {
        ManagerResponse::Policies(policies) => policies,
        other => return Err(unexpected("policies", &other)),
    };
    let PolicyOp::Set(change) = op else {
        return Ok(current);
    };
    let wanted = change_policies(&current, change)?;
    match ask_manager(client, ManagerRequest::SetPolicies(wanted.clone()))
        .await
        .context("cannot set the policies")?
    {
        ManagerResponse::Done => Ok(wanted),
        other => Err(unexpected("done", &other)),
    }
}

/// `current` with `change` applied, checked.
fn change_policies(current: &Policies, change: &PolicyChange) -> Result<Policies, ApiError> {
    let mut policies = current.clone();
    if let Some(n) = change.namespaces_per_shard {
        if n == 0 {
            return Err(ApiError::InvalidArgument(
                "--namespaces-per-shard must be > 0".into(),
            ));
        }
        policies.namespaces_per_shard = n;
    }
    policies.placement = change.placement.apply(&current.placement)?;
    if let Some(commit) = change.commit {
        policies.commit = commit;
    }
    Ok(policies)
}

/// The policies, one per line.
fn show_policies(policies: &Policies) -> String {
    let sites = if policies.placement.required_sites.is_empty() {
        "-".to_owned()
    } else {
        policies.placement.required_sites.join(",")
    };
    format!(
        "namespaces per shard:  {}\n\
         replicas per shard:    {}\n\
         required sites:        {sites}\n\
         min per required site: {}\n\
         commit:                {}\n",
        policies.namespaces_per_shard,
        policies.placement.replicas,
        policies.placement.min_per_site,
        policies.commit
    )
}

/// Runs `cairn hosts`.
pub(crate) async fn run_hosts(args: HostsArgs) -> anyhow::Result<()> {
    let HostsOp::List = args.op;
    let client = args
        .manager
        .client(cairn_client::REQUEST_TIMEOUT_MS_DEFAULT)?;
    let result = ask_manager(&client, ManagerRequest::ListHosts).await;
    client.close().await;
    match result.context("cannot list the hosts")? {
        ManagerResponse::Hosts(hosts) => print!("{}", hosts_table(hosts)),
        other => return Err(unexpected("hosts", &other)),
    }
    Ok(())
}

/// The shards, by id.
fn shards_table(mut shards: Vec<ShardInfo>) -> String {
    shards.sort_by_key(|s| s.id);
    let rows = shards
        .iter()
        .map(|s| {
            let replicas: Vec<String> = s
                .replicas
                .iter()
                .map(|r| format!("{}@{}/{}", r.node.0, r.addr, r.site))
                .collect();
            let pending = if s.policy_applied { "" } else { "*" };
            let replacing = s
                .replacing
                .map_or(String::new(), |r| format!(" (replacing {r})"));
            vec![
                s.id.to_string(),
                s.state.to_string(),
                s.namespaces.to_string(),
                format!("{}{pending}", s.policy.commit),
                format!("{}{pending}", s.policy.leader),
                format!("{}{replacing}", replicas.join(",")),
            ]
        })
        .collect();
    table(
        &["ID", "STATE", "NAMESPACES", "COMMIT", "LEADER", "REPLICAS"],
        rows,
    )
}

/// The hosts, by id.
fn hosts_table(mut hosts: Vec<HostInfo>) -> String {
    hosts.sort_by_key(|h| h.id);
    let rows = hosts
        .iter()
        .map(|h| {
            vec![
                h.id.0.to_string(),
                h.site.clone(),
                h.addr.clone(),
                h.state.to_string(),
                h.replicas.to_string(),
                h.capacity_replicas.to_string(),
                h.last_heartbeat_ms_ago.map_or_else(|| "-".into(), ago),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "SITE",
            "ADDR",
            "STATE",
            "REPLICAS",
            "CAPACITY",
            "LAST HEARTBEAT",
        ],
        rows,
    )
}

/// A table: the header, then one line per row, columns left-aligned and two spaces apart,
/// without trailing spaces. Every row has as many cells as the header.
pub(crate) fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        assert_eq!(row.len(), header.len(), "a table row has the wrong width");
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out += line.join("  ").trim_end();
        out += "\n";
    }
    out
}

/// How long ago, for people: `0.4s ago`, `59.9s ago`, `12m05s ago`, `3h07m ago`, `2d04h ago`.
pub(crate) fn ago(ms: u64) -> String {
    let s = ms / 1000;
    if s < 60 {
        format!("{}.{}s ago", s, (ms % 1000) / 100)
    } else if s < 3600 {
        format!("{}m{:02}s ago", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m ago", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h ago", s / 86_400, (s % 86_400) / 3600)
    }
}

/// Milliseconds since the Unix epoch as an RFC 3339 UTC timestamp with milliseconds
/// (`2023-11-14T22:13:20.000Z`).
pub(crate) fn rfc3339_utc(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => format!("{ms} ms after the Unix epoch"),
    }
}

#[cfg(test)]
mod tests {
    use cairn_wire::api::ReplicaAddr;
    use cairn_wire::catalog::{HostState, Replacement, ShardPolicy, ShardState};
    use raft_core::NodeId;

    use super::*;

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let text = table(
            &["A", "LONG HEADER", "C"],
            vec![
                vec!["wide cell".into(), "x".into(), String::new()],
                vec!["y".into(), "z".into(), "last".into()],
            ],
        );
        assert_eq!(
            text,
            "A          LONG HEADER  C\n\
             wide cell  x\n\
             y          z            last\n"
        );
        assert_eq!(table(&["ONLY"], vec![]), "ONLY\n");
    }

    #[test]
    fn shards_are_listed_by_id_with_their_replicas() {
        let shard = |id, state| ShardInfo {
            id: ShardId(id),
            replicas: vec![
                ReplicaAddr {
                    node: NodeId(1),
                    addr: "10.0.0.1:7101".into(),
                    site: "dc1".into(),
                },
                ReplicaAddr {
                    node: NodeId(2),
                    addr: "10.0.0.2:7101".into(),
                    site: "dc2".into(),
                },
            ],
            state,
            namespaces: 4,
            placement: PlacementPolicy::default(),
            policy: ShardPolicy {
                commit: CommitPolicy::MajorityAllSites,
                leader: LeaderPreference::Preferred("dc2".into()),
            },
            home_site: Some("dc2".into()),
            policy_applied: id == 2,
            replacing: (id == 7).then_some(Replacement {
                old: NodeId(1),
                new: NodeId(5),
            }),
        };
        let text = shards_table(vec![
            shard(7, ShardState::Creating),
            shard(2, ShardState::Active),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "ID  STATE     NAMESPACES  COMMIT               LEADER           REPLICAS"
        );
        assert_eq!(
            lines[1],
            "2   active    4           majority+all-sites   preferred(dc2)   \
             1@10.0.0.1:7101/dc1,2@10.0.0.2:7101/dc2"
        );
        // A policy the replicas do not run yet is starred.
        assert!(
            lines[2].starts_with("7   creating  4           majority+all-sites*  preferred(dc2)*"),
            "{text}"
        );
        // A replacement in progress is shown after the replicas.
        assert!(lines[2].ends_with("/dc2 (replacing 1 -> 5)"), "{text}");
    }

    #[test]
    fn policy_changes_keep_what_is_not_given_and_are_checked() {
        let current = Policies::default();
        let change = PolicyChange {
            commit: Some(CommitPolicy::MajorityAllSites),
            placement: PlacementArgs {
                required_sites: Some(vec!["b".into(), "a".into()]),
                ..PlacementArgs::default()
            },
            ..PolicyChange::default()
        };
        let changed = change_policies(&current, &change).unwrap();
        assert_eq!(changed.placement.required_sites, ["a", "b"]);
        assert_eq!(changed.placement.replicas, 3);
        assert_eq!(changed.commit, CommitPolicy::MajorityAllSites);
        assert_eq!(changed.namespaces_per_shard, 50);
        let text = show_policies(&changed);
        assert!(text.contains("required sites:        a,b"), "{text}");
        let too_many = PolicyChange {
            placement: PlacementArgs {
                min_per_site: Some(2),
                ..change.placement.clone()
            },
            ..PolicyChange::default()
        };
        let e = change_policies(&current, &too_many)
            .unwrap_err()
            .to_string();
        assert!(e.contains("need 4 replicas"), "{e}");
        let zero = PolicyChange {
            namespaces_per_shard: Some(0),
            ..PolicyChange::default()
        };
        assert!(change_policies(&current, &zero).is_err());
    }

    #[test]
    fn hosts_show_their_last_heartbeat_or_a_dash() {
        let host = |id, ago: Option<u64>| HostInfo {
            id: NodeId(id),
            site: "dc-1".into(),
            addr: format!("10.0.0.{id}:7101"),
            capacity_replicas: 100,
            state: if ago.is_some() {
                HostState::Up
            } else {
                HostState::Down
            },
            replicas: 3,
            last_heartbeat_ms_ago: ago,
        };
        let text = hosts_table(vec![host(2, None), host(1, Some(1234))]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "ID  SITE  ADDR           STATE  REPLICAS  CAPACITY  LAST HEARTBEAT",
                "1   dc-1  10.0.0.1:7101  up     3         100       1.2s ago",
                "2   dc-1  10.0.0.2:7101  down   3         100       -",
            ]
        );
    }

    #[test]
    fn durations_ago_read_naturally() {
        assert_eq!(ago(0), "0.0s ago");
        assert_eq!(ago(1_299), "1.2s ago");
        assert_eq!(ago(59_999), "59.9s ago");
        assert_eq!(ago(60_000), "1m00s ago");
        assert_eq!(ago(725_000), "12m05s ago");
        assert_eq!(ago(3_600_000 * 3 + 7 * 60_000), "3h07m ago");
        assert_eq!(ago(86_400_000 * 2 + 4 * 3_600_000), "2d04h ago");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        // A leap day, and the last millisecond of a leap year.
        assert_eq!(rfc3339_utc(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_utc(1_735_689_599_999), "2024-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_utc(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
    }
}
