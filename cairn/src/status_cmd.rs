//! `cairn status`: every node's view of its replicas, as a table.

use std::net::SocketAddr;
use std::path::PathBuf;

use cairn_client::{Client, Error, ReplicaStatus};
use clap::Args;

use crate::cluster_file::ClusterFile;

/// Arguments of `cairn status`.
#[derive(Args)]
#[command(after_help = "Exits with 4 when a node did not answer.")]
pub(crate) struct StatusArgs {
    /// The cluster file [default: $CAIRN_CLUSTER].
    #[arg(long, value_name = "FILE")]
    cluster: Option<PathBuf>,
    /// How long to wait for each node, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    timeout_ms: u64,
}

/// Runs `cairn status`.
pub(crate) async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let cluster = ClusterFile::from_args(args.cluster)?;
    let config = cluster
        .client_config()?
        .with_request_timeout_ms(args.timeout_ms);
    let client = Client::new(config)?;
    let statuses = client.status_all().await;
    client.close().await;
    print!("{}", table(&statuses));
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

const HEADER: [&str; 12] = [
    "NODE", "ID", "SHARD", "ROLE", "TERM", "LEADER", "VOTERS", "COMMIT", "APPLIED", "FIRST",
    "LAST", "QUIESCED",
];

/// The table: one row per replica, sorted by shard within each node; a node that did not answer
/// gets one row saying why.
fn table(statuses: &[(SocketAddr, Result<Vec<ReplicaStatus>, Error>)]) -> String {
    let mut rows: Vec<Vec<String>> = vec![HEADER.iter().map(|h| h.to_string()).collect()];
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
                    rows.push(row(*addr, &r));
                }
            }
            Err(e) => notes.push((rows.len(), format!("{addr}  unreachable: {e}"))),
        }
    }
    let widths: Vec<usize> = (0..HEADER.len())
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

fn row(addr: SocketAddr, r: &ReplicaStatus) -> Vec<String> {
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
    use cairn_client::{LeaderHint, LogIndex, ShardId};
    use raft_core::{NodeId, Role, Term};

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

    #[test]
    fn the_table_has_a_row_per_replica_and_names_unreachable_nodes() {
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
        let text = table(&statuses);
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
