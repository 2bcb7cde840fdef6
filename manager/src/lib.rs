//! cairn's manager (the ABM role): the catalog of hosts, shards, namespaces and policies, kept in
//! a Raft group of 1, 3 or 5 manager nodes, and the automation around it.
//!
//! - [`catalog`]: the catalog as pure data with pure decisions (assignment, placement) and its
//!   stored form (version-asserted sequences in the group).
//! - [`manager`]: the driver: leadership, the API, routing watches and the reconciler that
//!   creates shards and adopts and drops namespaces.
//! - [`config`]: the configuration (a node configuration plus `[catalog]`).
//!
//! A manager is an ordinary cairn node (same Raft core, storage and transport) whose only group
//! is the catalog; [`run`] starts that node and plugs the manager into its listener.

pub mod catalog;
pub mod config;
pub mod manager;
pub mod metrics;

use std::future::Future;

use cairn_wire::tls::Identity;
pub use config::ManagerConfig;
use shard_node::NodeError;

/// Runs a manager until `shutdown` resolves.
pub async fn run(
    config: ManagerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    config.validate()?;
    let node_config = config.node_config();
    let identity = Identity::load(
        &node_config.tls.ca,
        &node_config.tls.cert,
        &node_config.tls.key,
    )?;
    let node = shard_node::start_as(node_config, "manager").await?;
    let manager = manager::Manager::new(node.service().clone(), config.catalog, identity)
        .map_err(|e| NodeError::Start(format!("manager: {e}")))?;
    if node.service().manager.set(manager.clone()).is_err() {
        return Err(NodeError::Start("the node already has a manager".into()));
    }
    shard_node::metrics::describe(metrics::SPECS);
    metrics::register();
    metrics::is_leader(false);
    tokio::spawn(manager.run());
    node.run_until(shutdown).await
}
