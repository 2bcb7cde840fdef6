//! `cairn router`: runs one caching router until Ctrl-C or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use cairn_router::RouterConfig;
use clap::Args;

use crate::node_cmd::shutdown_signal;

/// Arguments of `cairn router`.
#[derive(Args)]
#[command(
    after_help = "The router serves namespace-addressed requests of storage proxies (QUIC, mutual \
                  TLS): it resolves namespace -> shard -> leader from routes the managers push \
                  to it, forwards key-value and manifest requests, and caches manifests. \
                  Relative TLS paths are resolved against the directory of the configuration \
                  file."
)]
pub(crate) struct RouterArgs {
    /// The router's configuration (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

/// Runs `cairn router`.
pub(crate) async fn run(args: RouterArgs) -> anyhow::Result<()> {
    let config = RouterConfig::load(&args.config)
        .with_context(|| format!("router configuration {}", args.config.display()))?;
    let shutdown = shutdown_signal().context("cannot listen for shutdown signals")?;
    tracing::info!(listen = %config.listen, managers = config.managers.len(), "starting router");
    cairn_router::run(config, shutdown)
        .await
        .context("the router failed")?;
    tracing::info!("router stopped");
    Ok(())
}
