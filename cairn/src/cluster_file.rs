//! The cluster file: how a client reaches a cluster.
//!
//! ```toml
//! nodes = ["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"]    # shard nodes
//! managers = ["127.0.0.1:7201", "127.0.0.1:7202", "127.0.0.1:7203"] # the manager group
//! routers = ["127.0.0.1:7301"]                                      # router proxies
//! ca = "certs/ca.pem"        # relative paths are resolved against the file's directory
//! cert = "certs/client.pem"
//! key = "certs/client.key"
//! shard = 1                  # optional: the default shard of `cairn kv`
//! ```
//!
//! Each address list is optional, and each command needs only one of them: `cairn kv` talks to
//! `nodes`, `cairn ns`, `cairn shards`, `cairn hosts` and `cairn status` to `managers` (and
//! `cairn status` to `nodes` when there are no managers), `cairn manifest` to `routers`. A
//! command whose list is missing fails with a message naming it. A list that is present must
//! not be empty. Names (`host:port`) are resolved when the file is read.
//!
//! Commands take it from `--cluster FILE`, else from the `CAIRN_CLUSTER` environment variable.

use std::ffi::OsString;
use std::io::Read as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use std::fmt;

use anyhow::{Context, bail};
use cairn_client::{ClientConfig, Identity, ShardId};
use serde::Deserialize;

/// The environment variable naming the cluster file when `--cluster` is not given.
pub(crate) const CLUSTER_ENV: &str = "CAIRN_CLUSTER";

/// The largest cluster file read.
const CLUSTER_FILE_MAX_BYTES: u64 = 64 * 1024;

/// The most addresses one list of a cluster file may hold.
const NODES_MAX: usize = 1024;

/// The servers a command talks to: one address list of the cluster file each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Servers {
    /// Shard nodes (`nodes`).
    Nodes,
    /// The manager group (`managers`).
    Managers,
    /// Router proxies (`routers`).
    Routers,
}

impl Servers {
    /// The list's key in the cluster file.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::Nodes => "nodes",
            Self::Managers => "managers",
            Self::Routers => "routers",
        }
    }
}

impl fmt::Display for Servers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A parsed cluster file, with its paths resolved and its names looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClusterFile {
    /// The shard nodes, in order of preference (empty: the file lists none).
    pub(crate) nodes: Vec<SocketAddr>,
    /// The managers, in order of preference (empty: the file lists none).
    pub(crate) managers: Vec<SocketAddr>,
    /// The routers, in order of preference (empty: the file lists none).
    pub(crate) routers: Vec<SocketAddr>,
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
    nodes: Option<Vec<String>>,
    managers: Option<Vec<String>>,
    routers: Option<Vec<String>>,
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
        let nodes = resolve_list(Servers::Nodes, raw.nodes.as_deref())?;
        let managers = resolve_list(Servers::Managers, raw.managers.as_deref())?;
        let routers = resolve_list(Servers::Routers, raw.routers.as_deref())?;
        let resolve = |path: PathBuf| {
            if path.is_relative() {
                dir.join(path)
            } else {
                path
            }
        };
        Ok(Self {
            nodes,
            managers,
            routers,
            ca: resolve(raw.ca),
            cert: resolve(raw.cert),
            key: resolve(raw.key),
            shard: raw.shard.map(ShardId),
        })
    }

    /// The addresses of `servers`; fails, saying what to add, when the file lists none.
    pub(crate) fn addrs(&self, servers: Servers) -> anyhow::Result<&[SocketAddr]> {
        let addrs = match servers {
            Servers::Nodes => &self.nodes,
            Servers::Managers => &self.managers,
            Servers::Routers => &self.routers,
        };
        if addrs.is_empty() {
            bail!("the cluster file lists no {servers}: add {servers} = [\"host:port\", ...]");
        }
        Ok(addrs)
    }

    /// A client configuration for the shard nodes: loads the certificate files.
    pub(crate) fn client_config(&self) -> anyhow::Result<ClientConfig> {
        self.client_config_for(Servers::Nodes)
    }

    /// A client configuration for the managers: [`Client::request`] then reaches the manager
    /// leader (following `NotLeader` hints).
    ///
    /// [`Client::request`]: cairn_client::Client::request
    pub(crate) fn manager_config(&self) -> anyhow::Result<ClientConfig> {
        self.client_config_for(Servers::Managers)
    }

    /// A client configuration for the routers, for [`Client::routed`] handles.
    ///
    /// [`Client::routed`]: cairn_client::Client::routed
    pub(crate) fn router_config(&self) -> anyhow::Result<ClientConfig> {
        self.client_config_for(Servers::Routers)
    }

    /// A client configuration whose nodes are `servers`. The list is checked before the
    /// certificates are read, so a missing list is reported as such.
    pub(crate) fn client_config_for(&self, servers: Servers) -> anyhow::Result<ClientConfig> {
        let addrs = self.addrs(servers)?.to_vec();
        let identity = Identity::load(&self.ca, &self.cert, &self.key)
            .context("cannot load the client identity of the cluster file")?;
        Ok(ClientConfig::new(addrs, identity))
    }
}

/// One address list of the file, resolved: `None` (the key is absent) is an empty list; a list
/// that is present must hold 1 to [`NODES_MAX`] addresses.
fn resolve_list(servers: Servers, list: Option<&[String]>) -> anyhow::Result<Vec<SocketAddr>> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    if list.is_empty() {
        bail!("{servers} must list at least one address (or leave {servers} out)");
    }
    if list.len() > NODES_MAX {
        bail!(
            "{servers} lists {} addresses, at most {NODES_MAX} are allowed",
            list.len()
        );
    }
    list.iter()
        .map(|addr| resolve_addr(addr).with_context(|| format!("invalid address in {servers}")))
        .collect()
}

/// `host:port` as a socket address; a name is looked up (the first address wins).
fn resolve_addr(addr: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(parsed) = addr.parse() {
        return Ok(parsed);
    }
    addr.to_socket_addrs()
        .with_context(|| format!("{addr:?} is not a host:port address"))?
        .next()
        .with_context(|| format!("{addr:?} resolves to no address"))
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

    #[test]
    fn managers_and_routers_are_read_like_nodes() {
        let text = r#"
            managers = ["127.0.0.1:7201", "localhost:7202"]
            routers = ["127.0.0.1:7301"]
            ca = "ca.pem"
            cert = "c.pem"
            key = "c.key"
        "#;
        let file = ClusterFile::parse(text, Path::new("/etc/cairn")).unwrap();
        assert!(file.nodes.is_empty());
        assert_eq!(file.managers.len(), 2);
        assert_eq!(file.managers[0], "127.0.0.1:7201".parse().unwrap());
        assert_eq!(file.managers[1].port(), 7202);
        assert!(file.managers[1].ip().is_loopback());
        assert_eq!(
            file.addrs(Servers::Routers).unwrap(),
            ["127.0.0.1:7301".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(file.ca, Path::new("/etc/cairn/ca.pem"));
    }

    #[test]
    fn a_missing_list_is_named_when_a_command_needs_it() {
        let text = r#"
            nodes = ["127.0.0.1:7101"]
            ca = "ca.pem"
            cert = "c.pem"
            key = "c.key"
        "#;
        let file = ClusterFile::parse(text, Path::new(".")).unwrap();
        file.addrs(Servers::Nodes).unwrap();
        // The list is checked before the certificates (which do not exist here) are read.
        let err = file.manager_config().unwrap_err().to_string();
        assert_eq!(
            err,
            "the cluster file lists no managers: add managers = [\"host:port\", ...]"
        );
        let err = file.router_config().unwrap_err().to_string();
        assert!(err.contains("lists no routers"), "{err}");
        let no_nodes = text.replace(
            r#"nodes = ["127.0.0.1:7101"]"#,
            r#"routers = ["127.0.0.1:1"]"#,
        );
        let file = ClusterFile::parse(&no_nodes, Path::new(".")).unwrap();
        let err = file.client_config().unwrap_err().to_string();
        assert!(err.contains("lists no nodes"), "{err}");
    }

    #[test]
    fn present_lists_must_be_non_empty_and_valid() {
        let base = "ca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c.key\"\n";
        let err = ClusterFile::parse(&format!("managers = []\n{base}"), Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(err.contains("managers must list at least one"), "{err}");
        let err = ClusterFile::parse(&format!("routers = [\"nowhere\"]\n{base}"), Path::new("."))
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("invalid address in routers"),
            "{err:#}"
        );
    }
}
