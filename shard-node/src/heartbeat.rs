//! Registration with the manager: a node that names managers in its configuration heartbeats to
//! the manager leader every `heartbeat_interval_ms`, reporting its site, address, capacity and the
//! shards it hosts. The first heartbeat registers the node; a node that stops heartbeating is
//! marked down by the manager (and up again when it returns).
//!
//! Heartbeats are fire-and-forget: a failed one is logged and counted, and the next one follows
//! on schedule. The manager creates replicas on this node with [`cairn_wire::api::Request::CreateReplica`],
//! not through the heartbeat answer.

use std::time::Duration;

use cairn_client::{Client, ClientConfig};
use cairn_wire::api::{Request, ShardId};
use cairn_wire::catalog::{Heartbeat, ManagerRequest};
use cairn_wire::tls::Identity;
use raft_core::NodeId;
use tracing::{debug, info, warn};

use crate::config::ManagerLink;
use crate::host::ReplicaHandles;
use crate::metrics as m;

/// What the node tells the manager about itself.
#[derive(Clone, Debug)]
pub struct HostIdentity {
    /// Its node id.
    pub id: NodeId,
    /// Its site.
    pub site: String,
    /// Where it listens.
    pub addr: String,
    /// How many replicas it may hold.
    pub capacity_replicas: u32,
}

/// Heartbeats forever (until the runtime stops).
pub async fn run(
    me: HostIdentity,
    link: ManagerLink,
    identity: Identity,
    replicas: ReplicaHandles,
) {
    let interval = Duration::from_millis(link.heartbeat_interval_ms);
    let mut config = ClientConfig::new(link.addrs.clone(), identity);
    // A heartbeat older than its interval is worthless: the next one replaces it.
    config.request_timeout_ms = link.heartbeat_interval_ms.max(200);
    // A dead manager must not take the whole budget: leave time to try the others.
    config.connect_timeout_ms = (config.request_timeout_ms / 4).max(50);
    let client = match Client::new(config) {
        Ok(client) => client,
        Err(e) => {
            warn!("cannot heartbeat to the managers: {e}");
            return;
        }
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut registered = false;
    loop {
        ticker.tick().await;
        let hosted: Vec<ShardId> = replicas
            .read()
            .expect("replica handles lock poisoned")
            .keys()
            .copied()
            .collect();
        let beat = Heartbeat {
            id: me.id,
            site: me.site.clone(),
            addr: me.addr.clone(),
            capacity_replicas: me.capacity_replicas,
            replicas: hosted,
        };
        match client
            .request(Request::Manager(ManagerRequest::Heartbeat(beat)))
            .await
        {
            Ok(_) => {
                m::heartbeat("ok");
                if !registered {
                    info!(site = me.site, "registered with the manager");
                    registered = true;
                }
            }
            Err(e) => {
                m::heartbeat("failed");
                debug!("heartbeat to the manager failed: {e}");
            }
        }
    }
}
