//! `cairn`: the one operator binary. `main` parses the command line, sets up tracing (to stderr,
//! filtered by `RUST_LOG`, default `info`) and hands over to the command's module; the logic
//! lives in the libraries.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod certs_cmd;
mod cluster_file;
mod dev_cmd;
mod kv_cmd;
mod node_cmd;
mod status_cmd;

const EXIT_CODES: &str = "\
Exit codes: 0 success, 1 other error, 2 key not found, 3 assertion failed, 4 no quorum or no \
node reachable, 5 outcome of a write unknown (it may or may not have been applied), 64 bad \
command line.";

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
    /// Read and write keys of a namespace.
    Kv(kv_cmd::KvArgs),
    /// Show the replicas of every node of a cluster.
    Status(status_cmd::StatusArgs),
    /// Run a local development cluster.
    Dev(DevArgs),
}

/// Arguments of `cairn dev`.
#[derive(Args)]
pub(crate) struct DevArgs {
    /// Where the cluster keeps its certificates, configurations and data; reused on the next run
    /// (default: a temporary directory, removed on exit).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// The first port; node N listens on QUIC port base+N and serves metrics on base+10+N.
    #[arg(long, default_value_t = 7100)]
    pub(crate) base_port: u16,
    /// Stop the cluster after the demo instead of serving until Ctrl-C (for scripted checks).
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
        Command::Kv(args) => kv_cmd::run(args).await,
        Command::Status(args) => status_cmd::run(args).await,
        Command::Dev(args) => dev_cmd::run(args).await,
    }
}

/// The exit code of a failed command: one per error class a script may want to tell apart.
fn exit_code(e: &anyhow::Error) -> u8 {
    use cairn_client::{ApiError, Error};
    let client_error = e.chain().find_map(|e| e.downcast_ref::<Error>());
    match client_error {
        Some(Error::Api(ApiError::NotFound { .. })) => 2,
        Some(Error::Api(ApiError::AssertionFailed { .. })) => 3,
        Some(Error::Api(ApiError::NoQuorum { .. }) | Error::Unavailable { .. }) => 4,
        Some(e) if e.is_ambiguous() => 5,
        _ => 1,
    }
}
