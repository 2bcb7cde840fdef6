//! `cairn dev`: a local development cluster. Placeholder until it is built.

use crate::DevArgs;

/// Runs a local development cluster.
pub(crate) async fn run(args: DevArgs) -> anyhow::Result<()> {
    let _ = (args.dir, args.base_port);
    anyhow::bail!("cairn dev: not built yet")
}
