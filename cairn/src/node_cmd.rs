//! `cairn shard-node`: runs one shard node until Ctrl-C or SIGTERM.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use shard_node::NodeConfig;

/// The largest node configuration file read.
const CONFIG_FILE_MAX_BYTES: u64 = 1024 * 1024;

/// Arguments of `cairn shard-node`.
#[derive(Args)]
#[command(
    after_help = "Relative paths in the configuration (data_dir, tls.*) are resolved against the \
                  directory of the configuration file."
)]
pub(crate) struct NodeArgs {
    /// The node's configuration (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

/// Runs `cairn shard-node`.
pub(crate) async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let config = load(&args.config)?;
    let shutdown = shutdown_signal().context("cannot listen for shutdown signals")?;
    tracing::info!(
        node = config.node_id,
        listen = %config.listen,
        shards = config.shards.len(),
        "starting shard node"
    );
    shard_node::run(config, shutdown)
        .await
        .context("the shard node failed")?;
    tracing::info!("shard node stopped");
    Ok(())
}

/// Reads, parses and validates the configuration at `path`, with its relative paths resolved
/// against the file's directory (so a node does not depend on where it was started from).
fn load(path: &Path) -> anyhow::Result<NodeConfig> {
    let text = read_capped(path)
        .with_context(|| format!("cannot read the node configuration {}", path.display()))?;
    let mut config = NodeConfig::from_toml(&text).with_context(|| path.display().to_string())?;
    resolve_paths(&mut config, path);
    Ok(config)
}

/// Resolves the relative paths of a node configuration (data_dir, tls.*) against the directory
/// of the file it was read from.
pub(crate) fn resolve_paths(config: &mut NodeConfig, path: &Path) {
    let dir = path.parent().unwrap_or(Path::new("."));
    for file in [
        &mut config.data_dir,
        &mut config.tls.ca,
        &mut config.tls.cert,
        &mut config.tls.key,
    ] {
        if file.is_relative() {
            *file = dir.join(&*file);
        }
    }
}

pub(crate) fn read_capped(path: &Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(CONFIG_FILE_MAX_BYTES + 1)
        .read_to_string(&mut text)?;
    anyhow::ensure!(
        text.len() as u64 <= CONFIG_FILE_MAX_BYTES,
        "larger than {CONFIG_FILE_MAX_BYTES} bytes"
    );
    Ok(text)
}

/// A future that resolves on the first Ctrl-C (SIGINT) or SIGTERM. The handlers are installed
/// now, so a signal that arrives while the node starts is not lost.
#[cfg(unix)]
pub(crate) fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("interrupted (Ctrl-C): shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        }
    })
}

/// A future that resolves on the first Ctrl-C.
#[cfg(not(unix))]
pub(crate) fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => tracing::info!("interrupted (Ctrl-C): shutting down"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for Ctrl-C; stop the node another way");
                std::future::pending::<()>().await;
            }
        }
    })
}
