//! A router's configuration, read from TOML (`cairn router --config FILE`).
//!
//! A config file needs the addresses, the managers and the TLS files; every limit has a
//! default. Unknown keys are refused, so a typo is an error rather than a silently ignored
//! setting. Relative TLS paths are resolved against the configuration file's directory by
//! [`RouterConfig::load`] (as `cairn shard-node` does for its own file).
//!
//! ```toml
//! listen = "0.0.0.0:7300"            # QUIC, for storage proxies
//! metrics_listen = "127.0.0.1:9300"  # plain HTTP /metrics
//! managers = ["10.0.1.1:7000", "10.0.2.1:7000", "10.0.3.1:7000"]
//! site = "dc1"                       # any/at_least reads go to replicas here first
//! request_timeout_ms = 4000
//!
//! [tls]
//! ca = "certs/ca.pem"
//! cert = "certs/router-1.pem"        # a node certificate
//! key = "certs/router-1.key"
//!
//! [limits]
//! connections_max = 4096
//! requests_in_flight_max = 1024
//! requests_in_flight_wait_ms = 50
//! manifest_cache_entries_max = 100000
//! manifest_cache_bytes_max = 67108864
//! frame_size_max_bytes = 16842752
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cairn_wire::frame::FRAME_MAX_BYTES_DEFAULT;
use serde::{Deserialize, Serialize};

/// The default bound on one request through the router, lookups and retries included. Shorter
/// than the client's default (5 s), so the router answers before its callers give up.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 4_000;

/// The largest configuration file [`RouterConfig::load`] reads.
pub const CONFIG_FILE_MAX_BYTES: u64 = 1024 * 1024;

/// The largest frame a router may be configured for: its QUIC stream windows must hold one.
pub const FRAME_SIZE_MAX_BYTES_LIMIT: u32 = 32 * 1024 * 1024;

/// The whole configuration of one router process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// The UDP address the QUIC endpoint listens on (storage proxies connect here).
    pub listen: SocketAddr,
    /// The TCP address of the Prometheus `/metrics` HTTP listener.
    pub metrics_listen: SocketAddr,
    /// Every manager (`host:port`); the router finds the leader among them.
    pub managers: Vec<String>,
    /// The cluster CA, the router's certificate (role node) and its key (PEM files).
    pub tls: TlsConfig,
    /// The site (datacenter) the router runs in, as the manager labels hosts. With it, `Any`
    /// and `AtLeast` reads the manifest cache cannot answer go first to a replica of the shard
    /// in this site, when the shard has one (see [`crate::locality`]); `Consistent` reads and
    /// writes go to the leader either way. Without it, every read goes the leader's way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The bound on one request, manager lookups and retries at the shard included.
    #[serde(default = "request_timeout_ms_default")]
    pub request_timeout_ms: u64,
    /// Connection, concurrency, cache and frame limits.
    #[serde(default)]
    pub limits: Limits,
}

fn request_timeout_ms_default() -> u64 {
    REQUEST_TIMEOUT_MS_DEFAULT
}

/// PEM files of the router's identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The cluster CA certificate.
    pub ca: PathBuf,
    /// The router's certificate (role node: shards and the manager serve it like a node).
    pub cert: PathBuf,
    /// The router's private key.
    pub key: PathBuf,
}

/// A router's limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// The most client connections at once; more are refused.
    pub connections_max: u32,
    /// The most requests being served at once, over all connections.
    pub requests_in_flight_max: u32,
    /// How long a request waits for a free slot when `requests_in_flight_max` are being served
    /// before it is answered `Busy`.
    pub requests_in_flight_wait_ms: u64,
    /// The most manifests the cache holds.
    pub manifest_cache_entries_max: u64,
    /// The most bytes (estimated memory) the cached manifests take.
    pub manifest_cache_bytes_max: u64,
    /// The largest frame on the wire (requests and responses, both sides).
    pub frame_size_max_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connections_max: 4_096,
            requests_in_flight_max: 1_024,
            requests_in_flight_wait_ms: 50,
            manifest_cache_entries_max: 100_000,
            manifest_cache_bytes_max: 64 * 1024 * 1024,
            frame_size_max_bytes: FRAME_MAX_BYTES_DEFAULT,
        }
    }
}

impl RouterConfig {
    /// Parses and validates a TOML document. Relative paths stay as written.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates the file at `path` (at most [`CONFIG_FILE_MAX_BYTES`]), with
    /// its relative paths resolved against the file's directory, so that a router does not
    /// depend on where it was started from.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        use std::io::Read as _;
        let fail = |e: &dyn std::fmt::Display| ConfigError(format!("{}: {e}", path.display()));
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(CONFIG_FILE_MAX_BYTES + 1).read_to_string(&mut text))
            .map_err(|e| fail(&e))?;
        if text.len() as u64 > CONFIG_FILE_MAX_BYTES {
            return Err(fail(&format!("larger than {CONFIG_FILE_MAX_BYTES} bytes")));
        }
        let mut config = Self::from_toml(&text).map_err(|e| fail(&e.0))?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(config)
    }

    /// Makes the relative TLS paths relative to `dir`.
    pub fn resolve_paths(&mut self, dir: &Path) {
        for file in [&mut self.tls.ca, &mut self.tls.cert, &mut self.tls.key] {
            if file.is_relative() {
                *file = dir.join(&*file);
            }
        }
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |msg: String| Err(ConfigError(msg));
        if self.managers.is_empty() {
            return fail("managers must list at least one manager address (host:port)".into());
        }
        for (i, manager) in self.managers.iter().enumerate() {
            split_host_port(manager).map_err(|e| ConfigError(format!("managers[{i}]: {e}")))?;
            if self.managers[..i].contains(manager) {
                return fail(format!("managers: {manager:?} is listed twice"));
            }
        }
        if let Some(site) = &self.site {
            cairn_wire::catalog::validate_site(site).map_err(ConfigError)?;
        }
        if self.request_timeout_ms == 0 {
            return fail("request_timeout_ms must be > 0".into());
        }
        let l = &self.limits;
        for (name, value) in [
            ("connections_max", u64::from(l.connections_max)),
            (
                "requests_in_flight_max",
                u64::from(l.requests_in_flight_max),
            ),
            ("manifest_cache_entries_max", l.manifest_cache_entries_max),
            ("manifest_cache_bytes_max", l.manifest_cache_bytes_max),
        ] {
            if value == 0 {
                return fail(format!("limits: {name} must be > 0"));
            }
        }
        if usize::try_from(l.manifest_cache_entries_max).is_err() {
            return fail("limits: manifest_cache_entries_max does not fit this machine".into());
        }
        if l.requests_in_flight_wait_ms >= self.request_timeout_ms {
            return fail(format!(
                "limits: requests_in_flight_wait_ms ({}) must be below request_timeout_ms ({})",
                l.requests_in_flight_wait_ms, self.request_timeout_ms
            ));
        }
        if !(1024..=FRAME_SIZE_MAX_BYTES_LIMIT).contains(&l.frame_size_max_bytes) {
            return fail(format!(
                "limits: frame_size_max_bytes must be 1024 to {FRAME_SIZE_MAX_BYTES_LIMIT}, got {}",
                l.frame_size_max_bytes
            ));
        }
        Ok(())
    }
}

/// Splits `host:port` (IPv6 hosts in brackets), checking both parts.
pub(crate) fn split_host_port(addr: &str) -> Result<(&str, u16), String> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("{addr:?} is not host:port"));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{addr:?}: {port:?} is not a port number"))?;
    if host.is_empty() || port == 0 {
        return Err(format!("{addr:?} needs a host and a non-zero port"));
    }
    Ok((host, port))
}

/// A configuration that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("invalid router configuration: {0}")]
pub struct ConfigError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        listen = "127.0.0.1:7300"
        metrics_listen = "127.0.0.1:9300"
        managers = ["127.0.0.1:7000", "manager-2.example:7000", "[::1]:7000"]
        [tls]
        ca = "certs/ca.pem"
        cert = "certs/router.pem"
        key = "/etc/cairn/router.key"
    "#;

    #[test]
    fn a_minimal_file_gets_every_default() {
        let config = RouterConfig::from_toml(MINIMAL).unwrap();
        assert_eq!(config.managers.len(), 3);
        assert_eq!(config.site, None);
        assert_eq!(config.request_timeout_ms, REQUEST_TIMEOUT_MS_DEFAULT);
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.limits.manifest_cache_entries_max, 100_000);
        assert_eq!(config.limits.manifest_cache_bytes_max, 64 * 1024 * 1024);
    }

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.strip_prefix("//!").unwrap().trim_start())
            .map(|l| format!("{l}\n"))
            .collect();
        let config = RouterConfig::from_toml(&example).unwrap();
        assert_eq!(config.site.as_deref(), Some("dc1"));
        assert_eq!(config.limits, Limits::default());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = RouterConfig::from_toml(&format!("{MINIMAL}\nlimts = 3\n")).unwrap_err();
        assert!(err.0.contains("limts"), "{err}");
        let text = MINIMAL.replace("[tls]", "[limits]\nconnection_max = 3\n[tls]");
        let err = RouterConfig::from_toml(&text).unwrap_err();
        assert!(err.0.contains("connection_max"), "{err}");
    }

    /// Breaks one thing in a configuration.
    type Breaker = dyn Fn(&mut RouterConfig);

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let cases: [(&str, &Breaker); 8] = [
            ("at least one manager", &|c| c.managers.clear()),
            ("not host:port", &|c| c.managers[0] = "manager".into()),
            ("not a port number", &|c| c.managers[0] = "m:http".into()),
            ("listed twice", &|c| c.managers[1] = c.managers[0].clone()),
            ("site", &|c| c.site = Some("dc 1".into())),
            ("requests_in_flight_max", &|c| {
                c.limits.requests_in_flight_max = 0
            }),
            ("requests_in_flight_wait_ms", &|c| {
                c.limits.requests_in_flight_wait_ms = c.request_timeout_ms
            }),
            ("frame_size_max_bytes", &|c| {
                c.limits.frame_size_max_bytes = 10
            }),
        ];
        for (reason, break_it) in cases {
            let mut config = RouterConfig::from_toml(MINIMAL).unwrap();
            break_it(&mut config);
            let err = config.validate().unwrap_err();
            assert!(err.0.contains(reason), "{reason:?} not in {err}");
        }
    }

    #[test]
    fn relative_tls_paths_are_resolved_against_the_file_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("router.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        let config = RouterConfig::load(&path).unwrap();
        assert_eq!(config.tls.ca, dir.path().join("certs/ca.pem"));
        assert_eq!(config.tls.cert, dir.path().join("certs/router.pem"));
        assert_eq!(config.tls.key, PathBuf::from("/etc/cairn/router.key"));
    }

    #[test]
    fn a_missing_file_names_itself() {
        let err = RouterConfig::load(Path::new("/nonexistent/router.toml")).unwrap_err();
        assert!(err.0.contains("/nonexistent/router.toml"), "{err}");
    }
}
