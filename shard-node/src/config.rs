//! A node's configuration, read from TOML (`cairn shard-node --config FILE`).
//!
//! Every limit has a default; a config file only needs the node's identity, addresses, TLS files,
//! its peers and the shards it hosts. Unknown keys are refused, so a typo is an error rather than
//! a silently ignored setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use cairn_wire::api::ShardId;
use raft_core::NodeId;
use serde::{Deserialize, Serialize};

use crate::kv::KvLimits;

/// The whole configuration of one `shard-node` process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id: unique in the cluster, never reused.
    pub node_id: u64,
    /// The UDP address the QUIC endpoint listens on (peers and clients).
    pub listen: SocketAddr,
    /// The TCP address of the Prometheus `/metrics` HTTP listener.
    pub metrics_listen: SocketAddr,
    /// Where RocksDB keeps this node's data.
    pub data_dir: PathBuf,
    /// The cluster CA, this node's certificate and its key (PEM files).
    pub tls: TlsConfig,
    /// Every node of the cluster (including this one): its id and the address it listens on.
    pub peers: Vec<PeerConfig>,
    /// The shards this node hosts a replica of.
    #[serde(default)]
    pub shards: Vec<ShardConfig>,
    /// Timing of the Raft loop.
    #[serde(default)]
    pub raft: RaftTiming,
    /// Size limits of requests and responses.
    #[serde(default)]
    pub limits: Limits,
    /// The site (datacenter) this node is in; the manager spreads a shard's replicas over
    /// sites. Default `default`.
    #[serde(default = "default_site")]
    pub site: String,
    /// How many shard replicas the manager may place on this node. Default 1000.
    #[serde(default = "default_capacity")]
    pub capacity_replicas: u32,
    /// The managers this node registers with and heartbeats to. Absent: a standalone node that
    /// serves only the shards of its configuration.
    #[serde(default)]
    pub manager: Option<ManagerLink>,
}

fn default_site() -> String {
    "default".into()
}

fn default_capacity() -> u32 {
    1000
}

/// How a node reaches the managers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerLink {
    /// Every manager's address (the node finds the leader).
    pub addrs: Vec<SocketAddr>,
    /// How often the node heartbeats. Default 1000 ms.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_interval_ms: u64,
}

fn default_heartbeat_ms() -> u64 {
    1000
}

/// A node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Its id.
    pub id: u64,
    /// The UDP address it listens on.
    pub addr: SocketAddr,
    /// The name its node certificate was issued for (`cairn certs issue --name`); default
    /// `node-<id>`. Raft traffic that claims to come from this node is accepted only from a
    /// connection whose certificate carries this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_name: Option<String>,
}

impl PeerConfig {
    /// The certificate name this peer must present.
    pub fn expected_cert_name(&self) -> String {
        self.cert_name
            .clone()
            .unwrap_or_else(|| format!("node-{}", self.id))
    }
}

/// PEM files of the node's identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The cluster CA certificate.
    pub ca: PathBuf,
    /// This node's certificate (role node, signed by the CA).
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

/// One shard replica hosted by the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// The shard.
    pub id: u64,
    /// The initial voters of the shard (node ids). Used only the first time the replica starts
    /// (bootstrap); afterwards the membership lives in the shard's own log.
    pub replicas: Vec<u64>,
}

/// Timing of the Raft loop. Elections take `election_timeout_ticks` to
/// `2 * election_timeout_ticks` ticks of `tick_ms` each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftTiming {
    /// The length of one tick.
    pub tick_ms: u64,
    /// The election timeout, in ticks.
    pub election_timeout_ticks: u32,
    /// The heartbeat interval, in ticks.
    pub heartbeat_interval_ticks: u32,
    /// How long a leader serves consistent reads from its lease after a heartbeat round, in
    /// ticks; must be shorter than the election timeout. 0 disables lease reads (every
    /// consistent read then costs a read-index round).
    pub lease_ticks: u32,
    /// A write not committed within this time fails with `NoQuorum { proposed: true }`.
    pub commit_timeout_ms: u64,
    /// An idle group stops ticking (quiesces) after this many ticks without activity.
    pub quiesce_after_ticks: u32,
    /// Compact a group's log once it holds more than this many applied entries.
    pub log_compact_threshold_entries: u64,
    /// How many applied entries to keep in the log after a compaction, so that briefly lagging
    /// followers catch up from the log rather than by snapshot.
    pub log_retain_entries: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        Self {
            tick_ms: 100,
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 1,
            lease_ticks: 8,
            commit_timeout_ms: 2_000,
            quiesce_after_ticks: 20,
            log_compact_threshold_entries: 20_000,
            log_retain_entries: 5_000,
        }
    }
}

/// Size limits. The key-value limits are checked before a write is proposed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// The largest value.
    pub value_size_max_bytes: u32,
    /// The largest key.
    pub key_size_max_bytes: u32,
    /// The largest request (all keys and values of one write or multi-get).
    pub request_size_max_bytes: u32,
    /// The most steps in one sequence.
    pub sequence_steps_max: u32,
    /// The largest response.
    pub response_size_max_bytes: u32,
    /// The largest frame on the wire (requests, responses, Raft batches).
    pub frame_size_max_bytes: u32,
    /// The most client requests waiting in the node's queue before it answers `Busy`.
    pub request_queue_max: u32,
    /// The most client connections.
    pub connections_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        let kv = KvLimits::default();
        Self {
            value_size_max_bytes: kv.value_size_max_bytes,
            key_size_max_bytes: kv.key_size_max_bytes,
            request_size_max_bytes: kv.request_size_max_bytes,
            sequence_steps_max: kv.sequence_steps_max,
            response_size_max_bytes: kv.response_size_max_bytes,
            frame_size_max_bytes: cairn_wire::frame::FRAME_MAX_BYTES_DEFAULT,
            request_queue_max: 10_000,
            connections_max: 4_096,
        }
    }
}

impl NodeConfig {
    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        NodeId(self.node_id)
    }

    /// Checks what the types cannot: ids, membership, timing relations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |msg: String| Err(ConfigError(msg));
        if self.node_id == 0 {
            return fail("node_id must not be 0".into());
        }
        let peers = self.peer_map();
        if peers.len() != self.peers.len() {
            return fail("peers: an id is listed twice".into());
        }
        if !peers.contains_key(&self.node_id) {
            return fail(format!(
                "peers must list this node ({}) with its own address",
                self.node_id
            ));
        }
        if peers.contains_key(&0) {
            return fail("peer id 0 is reserved".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for shard in &self.shards {
            if shard.id == u64::MAX {
                return fail(format!("shard id {} is reserved", shard.id));
            }
            if !seen.insert(shard.id) {
                return fail(format!("shard {} is listed twice", shard.id));
            }
            if !shard.replicas.contains(&self.node_id) {
                return fail(format!(
                    "shard {}: replicas {:?} do not include this node ({})",
                    shard.id, shard.replicas, self.node_id
                ));
            }
            if let Some(unknown) = shard.replicas.iter().find(|r| !peers.contains_key(r)) {
                return fail(format!(
                    "shard {}: replica {unknown} is not in peers",
                    shard.id
                ));
            }
        }
        cairn_wire::catalog::validate_site(&self.site).map_err(ConfigError)?;
        if let Some(manager) = &self.manager {
            if manager.addrs.is_empty() {
                return fail("manager: addrs must list at least one manager".into());
            }
            if manager.heartbeat_interval_ms == 0 {
                return fail("manager: heartbeat_interval_ms must be > 0".into());
            }
        }
        let r = &self.raft;
        if r.tick_ms == 0 || r.election_timeout_ticks < 2 || r.heartbeat_interval_ticks == 0 {
            return fail("raft: tick_ms and heartbeat_interval_ticks must be > 0 and election_timeout_ticks >= 2".into());
        }
        if r.heartbeat_interval_ticks >= r.election_timeout_ticks {
            return fail(
                "raft: heartbeat_interval_ticks must be below election_timeout_ticks".into(),
            );
        }
        if r.lease_ticks >= r.election_timeout_ticks {
            return fail("raft: lease_ticks must be below election_timeout_ticks (a lease longer than an election is unsafe)".into());
        }
        if r.log_retain_entries >= r.log_compact_threshold_entries {
            return fail(
                "raft: log_retain_entries must be below log_compact_threshold_entries".into(),
            );
        }
        if self.limits.value_size_max_bytes > self.limits.request_size_max_bytes
            || self.limits.request_size_max_bytes >= self.limits.frame_size_max_bytes
        {
            return fail("limits: need value_size_max_bytes <= request_size_max_bytes < frame_size_max_bytes".into());
        }
        Ok(())
    }

    /// The peers by id.
    pub fn peer_map(&self) -> BTreeMap<u64, SocketAddr> {
        self.peers.iter().map(|p| (p.id, p.addr)).collect()
    }

    /// The certificate name each peer must present, by id.
    pub fn peer_cert_names(&self) -> BTreeMap<u64, String> {
        self.peers
            .iter()
            .map(|p| (p.id, p.expected_cert_name()))
            .collect()
    }

    /// The shard ids this node hosts.
    pub fn shard_ids(&self) -> impl Iterator<Item = ShardId> + '_ {
        self.shards.iter().map(|s| ShardId(s.id))
    }

    /// The key-value limits.
    pub fn kv_limits(&self) -> KvLimits {
        KvLimits {
            value_size_max_bytes: self.limits.value_size_max_bytes,
            key_size_max_bytes: self.limits.key_size_max_bytes,
            request_size_max_bytes: self.limits.request_size_max_bytes,
            sequence_steps_max: self.limits.sequence_steps_max,
            response_size_max_bytes: self.limits.response_size_max_bytes,
            ..KvLimits::default()
        }
    }
}

/// A configuration that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("invalid node configuration: {0}")]
pub struct ConfigError(pub String);
