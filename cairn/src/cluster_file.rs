//! The cluster file: how a client reaches a cluster.
//!
//! ```toml
//! nodes = ["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"]
//! ca = "certs/ca.pem"        # relative paths are resolved against the file's directory
//! cert = "certs/client.pem"
//! key = "certs/client.key"
//! shard = 1                  # optional: the default shard of `cairn kv`
//! ```
//!
//! Commands take it from `--cluster FILE`, else from the `CAIRN_CLUSTER` environment variable.

use std::ffi::OsString;
use std::io::Read as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cairn_client::{ClientConfig, Identity, ShardId};
use serde::Deserialize;

/// The environment variable naming the cluster file when `--cluster` is not given.
pub(crate) const CLUSTER_ENV: &str = "CAIRN_CLUSTER";

/// The largest cluster file read.
const CLUSTER_FILE_MAX_BYTES: u64 = 64 * 1024;

/// The most nodes a cluster file may list.
const NODES_MAX: usize = 1024;

/// A parsed cluster file, with its paths resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClusterFile {
    /// The nodes, in order of preference.
    pub(crate) nodes: Vec<SocketAddr>,
    /// The cluster CA certificate.
    pub(crate) ca: PathBuf,
    /// The client certificate.
    pub(crate) cert: PathBuf,
    /// The client key.
    pub(crate) key: PathBuf,
    /// The default shard.
    pub(crate) shard: Option<ShardId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterToml {
    nodes: Vec<String>,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    shard: Option<u64>,
}

impl ClusterFile {
    /// The cluster file to use: `arg` when given, else the one `env` (the value of
    /// [`CLUSTER_ENV`]) names.
    pub(crate) fn locate(arg: Option<PathBuf>, env: Option<OsString>) -> anyhow::Result<PathBuf> {
        match (arg, env) {
            (Some(path), _) => Ok(path),
            (None, Some(path)) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => bail!("no cluster file: pass --cluster FILE or set {CLUSTER_ENV}"),
        }
    }

    /// Loads the cluster file named by `arg` or, failing that, by `$CAIRN_CLUSTER`.
    pub(crate) fn from_args(arg: Option<PathBuf>) -> anyhow::Result<Self> {
        let path = Self::locate(arg, std::env::var_os(CLUSTER_ENV))?;
        Self::load(&path)
    }

    /// Reads and parses the file at `path`.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(CLUSTER_FILE_MAX_BYTES + 1).read_to_string(&mut text))
            .with_context(|| format!("cannot read the cluster file {}", path.display()))?;
        if text.len() as u64 > CLUSTER_FILE_MAX_BYTES {
            bail!(
                "the cluster file {} is larger than {CLUSTER_FILE_MAX_BYTES} bytes",
                path.display()
            );
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, dir).with_context(|| format!("invalid cluster file {}", path.display()))
    }

    /// Parses a cluster file whose relative paths are relative to `dir`.
    pub(crate) fn parse(text: &str, dir: &Path) -> anyhow::Result<Self> {
        let raw: ClusterToml = toml::from_str(text)?;
        if raw.nodes.is_empty() {
            bail!("nodes must list at least one node address");
        }
        if raw.nodes.len() > NODES_MAX {
            bail!(
                "nodes lists {} addresses, at most {NODES_MAX} are allowed",
                raw.nodes.len()
            );
        }
        let nodes = raw
            .nodes
            .iter()
            .map(|node| resolve_addr(node))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let resolve = |path: PathBuf| {
            if path.is_relative() {
                dir.join(path)
            } else {
                path
            }
        };
        Ok(Self {
            nodes,
            ca: resolve(raw.ca),
            cert: resolve(raw.cert),
            key: resolve(raw.key),
            shard: raw.shard.map(ShardId),
        })
    }

    /// A client configuration for this cluster: loads the certificate files.
    pub(crate) fn client_config(&self) -> anyhow::Result<ClientConfig> {
        let identity = Identity::load(&self.ca, &self.cert, &self.key)
            .context("cannot load the client identity of the cluster file")?;
        Ok(ClientConfig::new(self.nodes.clone(), identity))
    }
}

/// `host:port` as a socket address; a name is looked up (the first address wins).
fn resolve_addr(node: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = node.parse() {
        return Ok(addr);
    }
    node.to_socket_addrs()
        .with_context(|| format!("node {node:?} is not a host:port address"))?
        .next()
        .with_context(|| format!("node {node:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_resolved_against_the_file_directory() {
        let text = r#"
            nodes = ["127.0.0.1:7101", "127.0.0.1:7102"]
            ca = "certs/ca.pem"
            cert = "/abs/client.pem"
            key = "client.key"
            shard = 3
        "#;
        let file = ClusterFile::parse(text, Path::new("/etc/cairn")).unwrap();
        assert_eq!(
            file.nodes,
            vec![
                "127.0.0.1:7101".parse::<SocketAddr>().unwrap(),
                "127.0.0.1:7102".parse().unwrap()
            ]
        );
        assert_eq!(file.ca, Path::new("/etc/cairn/certs/ca.pem"));
        assert_eq!(file.cert, Path::new("/abs/client.pem"));
        assert_eq!(file.key, Path::new("/etc/cairn/client.key"));
        assert_eq!(file.shard, Some(ShardId(3)));
    }

    #[test]
    fn unknown_keys_and_empty_node_lists_are_refused() {
        let typo = r#"
            nodes = ["127.0.0.1:7101"]
            ca = "ca.pem"
            cert = "c.pem"
            key = "c.key"
            shrad = 1
        "#;
        assert!(ClusterFile::parse(typo, Path::new(".")).is_err());
        let empty = r#"
            nodes = []
            ca = "ca.pem"
            cert = "c.pem"
            key = "c.key"
        "#;
        let err = ClusterFile::parse(empty, Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("at least one"), "{err}");
    }

    #[test]
    fn the_flag_wins_over_the_environment() {
        let flag = Some(PathBuf::from("a.toml"));
        let env = Some(OsString::from("b.toml"));
        assert_eq!(
            ClusterFile::locate(flag, env.clone()).unwrap(),
            Path::new("a.toml")
        );
        assert_eq!(ClusterFile::locate(None, env).unwrap(), Path::new("b.toml"));
        let err = ClusterFile::locate(None, None).unwrap_err();
        assert!(err.to_string().contains(CLUSTER_ENV), "{err}");
    }
}
