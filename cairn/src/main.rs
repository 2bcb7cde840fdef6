//! `cairn`: the one operator binary. `main` parses the command line, sets up tracing (to stderr,
//! filtered by `RUST_LOG`, default `info`) and hands over to the command's module; the logic
//! lives in the libraries.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod catalog_cmd;
mod certs_cmd;
mod cluster_file;
mod dev_cmd;
mod kv_cmd;
mod manager_cmd;
mod manifest_cmd;
mod node_cmd;
mod ns_cmd;
mod router_cmd;
mod status_cmd;

const EXIT_CODES: &str = "\
Exit codes: 0 success, 1 other error, 2 not found (key, object or namespace), 3 condition failed \
(assertion failed, object exists or changed, namespace exists), 4 no quorum, unavailable or no \
server reachable, 5 outcome of a write unknown (it may or may not have been applied), 6 the \
cluster is degraded (`cairn status`), 64 bad command line.";

/// cairn: a multi-site, Raft-replicated metadata store.
#[derive(Parser)]
#[command(name = "cairn", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the cluster CA and issue node and client certificates.
    Certs(certs_cmd::CertsArgs),
    /// Run a shard node (until Ctrl-C or SIGTERM).
    ShardNode(node_cmd::NodeArgs),
    /// Run a manager node: the catalog, automatic sharding, routing watches (until Ctrl-C or
    /// SIGTERM).
    Manager(manager_cmd::ManagerArgs),
    /// Run a caching router for storage proxies (until Ctrl-C or SIGTERM).
    Router(router_cmd::RouterArgs),
    /// Read and write keys of a namespace.
    Kv(kv_cmd::KvArgs),
    /// Show the cluster at a glance: health, sites, hosts, shards with their leaders and lag,
    /// namespaces and policy violations (through the managers and every host; `--json` for
    /// scripts).
    Status(status_cmd::StatusArgs),
    /// Create, list, show and delete namespaces (through the managers).
    Ns(ns_cmd::NsArgs),
    /// Put, get, list and delete object manifests of a namespace (through the routers).
    Manifest(manifest_cmd::ManifestArgs),
    /// List the shards of the catalog and change their replication policies (through the
    /// managers).
    Shards(catalog_cmd::ShardsArgs),
    /// List the shard-node hosts of the catalog (through the managers).
    Hosts(catalog_cmd::HostsArgs),
    /// Show or change the cluster's placement and commit policies (through the managers).
    Policy(catalog_cmd::PolicyArgs),
    /// Run a local development platform (3 managers, 4 shard-node hosts on two sites, a router)
    /// and demonstrate it.
    Dev(DevArgs),
}

/// Arguments of `cairn dev`.
#[derive(Args)]
pub(crate) struct DevArgs {
    /// Where the platform keeps its certificates, configurations, data, logs and cluster file;
    /// reused on the next run (default: a temporary directory, removed on exit).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// The first port. QUIC (UDP): managers on base+1..3, shard-node hosts on base+11..14, the
    /// router on base+20; each serves Prometheus metrics (TCP) on its QUIC port + 50
    /// (base+51..53, base+61..64, base+70).
    #[arg(long, default_value_t = 7100)]
    pub(crate) base_port: u16,
    /// Stop the platform after the demo instead of serving until Ctrl-C (for scripted checks).
    #[arg(long)]
    pub(crate) exit_after_demo: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let usage_error = e.use_stderr();
            // Help and version go to stdout and succeed; usage errors get their own exit code
            // so they cannot be mistaken for a missing key (2).
            let _ = e.print();
            return if usage_error {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        // The status printed says why.
        Err(e) if e.is::<status_cmd::Degraded>() => ExitCode::from(status_cmd::EXIT_DEGRADED),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Certs(args) => certs_cmd::run(args),
        Command::ShardNode(args) => node_cmd::run(args).await,
        Command::Manager(args) => manager_cmd::run(args).await,
        Command::Router(args) => router_cmd::run(args).await,
        Command::Kv(args) => kv_cmd::run(args).await,
        Command::Status(args) => status_cmd::run(args).await,
        Command::Ns(args) => ns_cmd::run(args).await,
        Command::Manifest(args) => manifest_cmd::run(args).await,
        Command::Shards(args) => catalog_cmd::run_shards(args).await,
        Command::Hosts(args) => catalog_cmd::run_hosts(args).await,
        Command::Policy(args) => catalog_cmd::run_policy(args).await,
        Command::Dev(args) => dev_cmd::run(args).await,
    }
}

/// The exit code of a failed command: one per error class a script may want to tell apart (see
/// [`EXIT_CODES`]). The error is a client error, or a node's error the command raised itself
/// (an object a read found missing, an argument checked before sending).
fn exit_code(e: &anyhow::Error) -> u8 {
    use cairn_client::{ApiError, Error};
    let api_code = |e: &ApiError| match e {
        ApiError::NotFound { .. }
        | ApiError::ObjectNotFound { .. }
        | ApiError::UnknownNamespace(_) => 2,
        ApiError::AssertionFailed { .. }
        | ApiError::ObjectExists { .. }
        | ApiError::ObjectChanged { .. }
        | ApiError::NamespaceExists(_) => 3,
        ApiError::NoQuorum { .. } | ApiError::Unavailable(_) => 4,
        e if !e.nothing_done() => 5,
        _ => 1,
    };
    for cause in e.chain() {
        if let Some(e) = cause.downcast_ref::<Error>() {
            return match e {
                Error::Api(api) => api_code(api),
                Error::Unavailable { .. } => 4,
                e if e.is_ambiguous() => 5,
                _ => 1,
            };
        }
        if let Some(api) = cause.downcast_ref::<ApiError>() {
            return api_code(api);
        }
    }
    1
}
