//! A manager's configuration: a node configuration (identity, addresses, TLS, the manager peers,
//! Raft timing, limits — see `shard_node::config`) plus a `[catalog]` section.
//!
//! ```toml
//! node_id = 101
//! listen = "127.0.0.1:7201"
//! metrics_listen = "127.0.0.1:9201"
//! data_dir = "/var/lib/cairn/manager-101"
//! [tls]
//! ca = "certs/ca.pem"
//! cert = "certs/node-101.pem"
//! key = "certs/node-101.key"
//! [[peers]]            # every manager, this one included: they form the catalog's Raft group
//! id = 101
//! addr = "127.0.0.1:7201"
//! [catalog]
//! namespaces_per_shard = 50
//! replicas_per_shard = 3
//! min_replicas_per_site = 1      # in each required site
//! required_sites = ["dc1", "dc2"] # default: none
//! commit = "majority"            # or "majority+all-sites"
//! replace_after_ms = 300000      # replace the replicas of a host down this long (0: never)
//! ```
//!
//! The policies (the first three keys and `commit`) seed the catalog when it has none yet; after
//! that the catalog's own copy is in force, and operators change it with `cairn policy set`.
//!
//! The catalog group is shard 0 of the managers' nodes, with every listed manager as a voter;
//! a manager configuration declares no `[[shards]]` of its own.

use std::path::Path;

use cairn_wire::catalog::{CommitPolicy, PlacementPolicy, Policies};
use serde::{Deserialize, Serialize};
use shard_node::config::{ConfigError, NodeConfig, ShardConfig};

use crate::catalog::CATALOG_SHARD;

/// The `[catalog]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    /// How many namespaces a shard takes before a new shard is added. Default 50.
    pub namespaces_per_shard: u32,
    /// How many replicas a new shard gets. Default 3.
    pub replicas_per_shard: u32,
    /// The fewest replicas a new shard gets in each required site. Default 1.
    pub min_replicas_per_site: u32,
    /// The sites every new shard must have replicas in. Default none.
    pub required_sites: Vec<String>,
    /// The commit rule of new shards: `majority` (default) or `majority+all-sites`.
    pub commit: String,
    /// A host not heard from for this long is marked down. Default 5000 ms.
    pub host_down_after_ms: u64,
    /// A replica whose host has been down this long is replaced: a new replica is placed by the
    /// shard's placement policy, joins as a learner, catches up and takes the old one's place.
    /// Counted from when the manager leader saw the host down. 0 never replaces. Default
    /// 300 000 ms (5 min): long enough that a restart or a short outage costs no copy.
    pub replace_after_ms: u64,
    /// How often the reconciler looks for unfinished work when nothing wakes it. Default 500 ms.
    pub reconcile_interval_ms: u64,
    /// How long a namespace create or delete request waits for the work to finish before it
    /// answers that the work goes on in the background. Default 30 000 ms.
    pub request_wait_ms: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        let policies = Policies::default();
        Self {
            namespaces_per_shard: policies.namespaces_per_shard,
            replicas_per_shard: policies.placement.replicas,
            min_replicas_per_site: policies.placement.min_per_site,
            required_sites: policies.placement.required_sites,
            commit: policies.commit.to_string(),
            host_down_after_ms: 5_000,
            replace_after_ms: 300_000,
            reconcile_interval_ms: 500,
            request_wait_ms: 30_000,
        }
    }
}

impl CatalogConfig {
    /// The policies this configuration asks for (checked by [`ManagerConfig::validate`]).
    pub fn policies(&self) -> Result<Policies, ConfigError> {
        let mut required_sites = self.required_sites.clone();
        required_sites.sort();
        let placement = PlacementPolicy {
            replicas: self.replicas_per_shard,
            min_per_site: self.min_replicas_per_site,
            required_sites,
        };
        placement
            .validate()
            .map_err(|e| ConfigError(format!("catalog: {e}")))?;
        let commit: CommitPolicy = self
            .commit
            .parse()
            .map_err(|e| ConfigError(format!("catalog: commit: {e}")))?;
        Ok(Policies {
            namespaces_per_shard: self.namespaces_per_shard,
            placement,
            commit,
        })
    }
}

/// A manager's whole configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagerConfig {
    /// The node it runs (the catalog group is added to its shards).
    pub node: NodeConfig,
    /// The catalog settings.
    pub catalog: CatalogConfig,
}

impl ManagerConfig {
    /// Parses and validates a TOML document. Relative paths stay as written (the caller
    /// resolves them, as for a node configuration).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        let catalog = match table.remove("catalog") {
            None => CatalogConfig::default(),
            Some(value) => value
                .try_into()
                .map_err(|e| ConfigError(format!("[catalog]: {e}")))?,
        };
        let node: NodeConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e| ConfigError(e.to_string()))?;
        let config = Self { node, catalog };
        config.validate()?;
        Ok(config)
    }

    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text)
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.node.shards.is_empty() {
            return Err(ConfigError(
                "a manager declares no [[shards]]: its only group is the catalog".into(),
            ));
        }
        if self.node.manager.is_some() {
            return Err(ConfigError(
                "a manager has no [manager] section (it is one)".into(),
            ));
        }
        let c = &self.catalog;
        if c.namespaces_per_shard == 0 {
            return Err(ConfigError(
                "catalog: namespaces_per_shard must be > 0".into(),
            ));
        }
        c.policies()?;
        if c.host_down_after_ms == 0 || c.reconcile_interval_ms == 0 || c.request_wait_ms == 0 {
            return Err(ConfigError(
                "catalog: host_down_after_ms, reconcile_interval_ms and request_wait_ms must be > 0"
                    .into(),
            ));
        }
        self.node_config().validate()
    }

    /// The node configuration with the catalog group added.
    pub fn node_config(&self) -> NodeConfig {
        let mut node = self.node.clone();
        node.shards = vec![ShardConfig {
            id: CATALOG_SHARD.0,
            replicas: node.peers.iter().map(|p| p.id).collect(),
        }];
        node
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
node_id = 101
listen = "127.0.0.1:7201"
metrics_listen = "127.0.0.1:9201"
data_dir = "/tmp/m"
[tls]
ca = "ca.pem"
cert = "c.pem"
key = "k.pem"
[[peers]]
id = 101
addr = "127.0.0.1:7201"
[[peers]]
id = 102
addr = "127.0.0.1:7202"
"#;

    #[test]
    fn the_catalog_section_is_optional_and_the_catalog_group_spans_every_manager() {
        let config = ManagerConfig::from_toml(BASE).unwrap();
        assert_eq!(config.catalog, CatalogConfig::default());
        let node = config.node_config();
        assert_eq!(node.shards.len(), 1);
        assert_eq!(node.shards[0].replicas, vec![101, 102]);
        let config =
            ManagerConfig::from_toml(&format!("{BASE}[catalog]\nnamespaces_per_shard = 5\n"))
                .unwrap();
        assert_eq!(config.catalog.namespaces_per_shard, 5);
        let config = ManagerConfig::from_toml(&format!(
            "{BASE}[catalog]\nrequired_sites = [\"b\", \"a\"]\ncommit = \"majority+all-sites\"\n"
        ))
        .unwrap();
        let policies = config.catalog.policies().unwrap();
        assert_eq!(policies.placement.required_sites, ["a", "b"]);
        assert_eq!(policies.commit, CommitPolicy::MajorityAllSites);
    }

    #[test]
    fn mistakes_are_refused_with_a_reason() {
        let typo = ManagerConfig::from_toml(&format!("{BASE}[catalog]\nnamespace_per_shard = 5\n"))
            .unwrap_err();
        assert!(typo.to_string().contains("namespace_per_shard"), "{typo}");
        let zero =
            ManagerConfig::from_toml(&format!("{BASE}[catalog]\nnamespaces_per_shard = 0\n"))
                .unwrap_err();
        assert!(zero.to_string().contains("namespaces_per_shard"), "{zero}");
        let shards =
            ManagerConfig::from_toml(&format!("{BASE}[[shards]]\nid = 1\nreplicas = [101]\n"))
                .unwrap_err();
        assert!(shards.to_string().contains("no [[shards]]"), "{shards}");
        let commit =
            ManagerConfig::from_toml(&format!("{BASE}[catalog]\ncommit = \"all\"\n")).unwrap_err();
        assert!(
            commit.to_string().contains("majority+all-sites"),
            "{commit}"
        );
        let sites = ManagerConfig::from_toml(&format!(
            "{BASE}[catalog]\nreplicas_per_shard = 3\nmin_replicas_per_site = 2\nrequired_sites = [\"a\", \"b\"]\n"
        ))
        .unwrap_err();
        assert!(sites.to_string().contains("need 4 replicas"), "{sites}");
    }
}
