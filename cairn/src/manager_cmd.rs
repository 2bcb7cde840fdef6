//! `cairn manager`: runs one manager node until Ctrl-C or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use cairn_manager::ManagerConfig;
use clap::Args;

use crate::node_cmd::{read_capped, resolve_paths, shutdown_signal};

/// Arguments of `cairn manager`.
#[derive(Args)]
#[command(
    after_help = "The configuration is a node configuration (node_id, listen, metrics_listen, \
                  data_dir, [tls], one [[peers]] entry per manager) plus an optional [catalog] \
                  section (namespaces_per_shard, replicas_per_shard, host_down_after_ms, \
                  reconcile_interval_ms, request_wait_ms). Relative paths are resolved against \
                  the directory of the configuration file."
)]
pub(crate) struct ManagerArgs {
    /// The manager's configuration (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

/// Runs `cairn manager`.
pub(crate) async fn run(args: ManagerArgs) -> anyhow::Result<()> {
    let text = read_capped(&args.config).with_context(|| {
        format!(
            "cannot read the manager configuration {}",
            args.config.display()
        )
    })?;
    let mut config =
        ManagerConfig::from_toml(&text).with_context(|| args.config.display().to_string())?;
    resolve_paths(&mut config.node, &args.config);
    let shutdown = shutdown_signal().context("cannot listen for shutdown signals")?;
    tracing::info!(
        node = config.node.node_id,
        listen = %config.node.listen,
        managers = config.node.peers.len(),
        namespaces_per_shard = config.catalog.namespaces_per_shard,
        "starting manager"
    );
    cairn_manager::run(config, shutdown)
        .await
        .context("the manager failed")?;
    tracing::info!("manager stopped");
    Ok(())
}
