//! `cairn shards` and `cairn hosts`: the manager's catalog of shards and hosts, as tables; and
//! the table and time formatting the catalog commands share.

use std::path::PathBuf;

use anyhow::Context as _;
use cairn_client::{Client, Error};
use cairn_wire::api::{Request, Response};
use cairn_wire::catalog::{HostInfo, ManagerRequest, ManagerResponse, ShardInfo};
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
    /// Print every shard: id, state, how many namespaces it serves, and its replicas
    /// (node@address).
    List,
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
        ManagerResponse::Routing(_) => "a routing table",
        ManagerResponse::Change(_) => "a routing change",
    };
    Error::Protocol(format!(
        "the manager answered with {got} where {wanted} was expected"
    ))
    .into()
}

/// Runs `cairn shards`.
pub(crate) async fn run_shards(args: ShardsArgs) -> anyhow::Result<()> {
    let ShardsOp::List = args.op;
    let client = args
        .manager
        .client(cairn_client::REQUEST_TIMEOUT_MS_DEFAULT)?;
    let result = ask_manager(&client, ManagerRequest::ListShards).await;
    client.close().await;
    match result.context("cannot list the shards")? {
        ManagerResponse::Shards(shards) => print!("{}", shards_table(shards)),
        other => return Err(unexpected("shards", &other)),
    }
    Ok(())
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
                .map(|r| format!("{}@{}", r.node.0, r.addr))
                .collect();
            vec![
                s.id.to_string(),
                s.state.to_string(),
                s.namespaces.to_string(),
                replicas.join(","),
            ]
        })
        .collect();
    table(&["ID", "STATE", "NAMESPACES", "REPLICAS"], rows)
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
    use cairn_wire::api::{ReplicaAddr, ShardId};
    use cairn_wire::catalog::{HostState, ShardState};
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
                },
                ReplicaAddr {
                    node: NodeId(2),
                    addr: "10.0.0.2:7101".into(),
                },
            ],
            state,
            namespaces: 4,
        };
        let text = shards_table(vec![
            shard(7, ShardState::Creating),
            shard(2, ShardState::Active),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ID  STATE     NAMESPACES  REPLICAS");
        assert_eq!(
            lines[1],
            "2   active    4           1@10.0.0.1:7101,2@10.0.0.2:7101"
        );
        assert!(lines[2].starts_with("7   creating"), "{text}");
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
