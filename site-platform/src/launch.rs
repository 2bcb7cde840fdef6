//! How the processes of a platform run: what differs between the tests (debug binaries, fast
//! timing, chatty logs) and the benchmark (release binaries, production timing, quiet logs),
//! whatever the shape.

use std::path::PathBuf;

use cairn_manager::config::CatalogConfig;
use shard_node::config::RaftTiming;

/// The binaries, timing, catalog settings, directory and logging of a platform's processes.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The `cairn` binary every process runs.
    pub cairn_bin: PathBuf,
    /// The `cairn-netbed` binary that runs the bed's WAN emulator; `None`: the bed looks for it
    /// (see `cairn_netbed::BedSpec::netbed_bin`).
    pub netbed_bin: Option<PathBuf>,
    /// The Raft timing of every manager and host.
    pub raft: RaftTiming,
    /// The managers' `[catalog]` section.
    pub catalog: CatalogConfig,
    /// How often each host reports to the managers.
    pub heartbeat_interval_ms: u64,
    /// Where the platform's temporary directory (certificates, configurations, data, logs) is
    /// made; created if missing.
    pub parent_dir: PathBuf,
    /// Names the run: the certificate authority's cluster name, and the temporary directory's
    /// prefix (`cairn-NAME-`).
    pub name: String,
    /// `RUST_LOG` of every process.
    pub log_filter: String,
}

impl Launch {
    /// `cairn_bin` with `raft` timing; the default catalog, hosts reporting every second, the
    /// directory in the system's temporary directory, run name `sites`, warnings only.
    pub fn new(cairn_bin: impl Into<PathBuf>, raft: RaftTiming) -> Self {
        Self {
            cairn_bin: cairn_bin.into(),
            netbed_bin: None,
            raft,
            catalog: CatalogConfig::default(),
            heartbeat_interval_ms: 1_000,
            parent_dir: std::env::temp_dir(),
            name: "sites".into(),
            log_filter: "warn".into(),
        }
    }
}
