//! What a suite run measures, as written to `results.json`: the machine, the settings, the
//! machine's limits, every run of every workload against both systems, and the idle cost.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The whole report of one suite run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Report {
    /// When the suite started and finished (RFC 3339, UTC).
    pub(crate) started: String,
    pub(crate) finished: String,
    /// Wall-clock seconds of the suite (cluster start-up included, builds excluded).
    pub(crate) duration_s: f64,
    pub(crate) machine: Machine,
    pub(crate) versions: Versions,
    pub(crate) settings: Settings,
    pub(crate) limits: Limits,
    pub(crate) runs: Vec<RunResult>,
    /// Absent when the suite was told to skip it.
    pub(crate) idle: Option<IdleCost>,
    /// Things the reader should know about this run (skipped parts, errors seen).
    pub(crate) notes: Vec<String>,
}

/// The machine the suite ran on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Machine {
    pub(crate) cpu_model: String,
    pub(crate) cores: usize,
    pub(crate) kernel: String,
    pub(crate) memory_gib: f64,
    /// The device and file system holding the data directories (e.g. `/dev/vda1 ext4`).
    pub(crate) data_disk: String,
}

/// What was measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Versions {
    /// `git describe` of the cairn checkout, when known.
    pub(crate) cairn: String,
    /// `etcd --version`'s first line.
    pub(crate) etcd: String,
}

/// The suite's parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Settings {
    pub(crate) warmup_s: f64,
    pub(crate) measure_s: f64,
    /// How many times each (system, workload) pair ran; rounds alternate the systems.
    pub(crate) rounds: u32,
    /// Closed-loop clients of the single-shard workloads.
    pub(crate) clients: usize,
    /// Connections each system's load generator opens (the clients share them).
    pub(crate) connections: usize,
    /// The manifest (etcd: value) size in bytes.
    pub(crate) value_bytes: usize,
    /// Keys written before the read workloads, which read among them.
    pub(crate) preload_keys: usize,
    /// Closed-loop clients per shard in the multi-shard write workload.
    pub(crate) clients_per_shard: usize,
    pub(crate) replicas: usize,
}

/// The machine's limits, measured in the same run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Limits {
    /// A loop of small appends, each followed by `fdatasync`, in the data directory.
    pub(crate) fsync: LimitResult,
    /// One request and its echo on a QUIC stream with mutual TLS, over loopback.
    pub(crate) quic_rtt: LimitResult,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LimitResult {
    /// What one operation is, in words.
    pub(crate) what: String,
    pub(crate) ops: u64,
    pub(crate) elapsed_s: f64,
    /// Operations per second, one after the other (no concurrency).
    pub(crate) ops_per_s: f64,
    pub(crate) latency: LatencySummary,
}

/// The system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum System {
    Cairn,
    Etcd,
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cairn => "cairn",
            Self::Etcd => "etcd",
        })
    }
}

/// A workload: what each operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Workload {
    /// A new ≈1 KiB manifest per operation (etcd: a put of the same bytes), on the leader.
    Write,
    /// A read of one preloaded manifest, linearizable (cairn `consistent`, etcd's default).
    ReadConsistent,
    /// A read any replica may answer from what it has applied (cairn `any`, spread over the
    /// replicas; etcd serializable, spread over the members).
    ReadLocal,
    /// 90 % consistent reads, 10 % writes.
    #[serde(rename = "mixed-90-10")]
    Mixed,
    /// A manifest read through the router with `any`: a cached route and a cached manifest
    /// (etcd: a serializable read through `etcd grpc-proxy`, which caches them).
    RouterCached,
    /// A consistent manifest read through the router: namespace → shard → leader resolved by
    /// the router, then forwarded (etcd: a linearizable read through `etcd grpc-proxy`).
    RouterConsistent,
    /// Writes spread evenly over `shards` shards (etcd has one consensus group: the same load
    /// goes to it).
    WriteShards,
}

impl Workload {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Write => "write",
            Self::ReadConsistent => "read-consistent",
            Self::ReadLocal => "read-local",
            Self::Mixed => "mixed-90-10",
            Self::RouterCached => "router-cached",
            Self::RouterConsistent => "router-consistent",
            Self::WriteShards => "write-shards",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How load was offered.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub(crate) enum Mode {
    /// `clients` concurrent clients, each sending its next operation when the last one answers.
    Closed { clients: usize },
    /// Operations started at a fixed rate whatever the answers; latency is counted from when
    /// each operation should have started (no coordinated omission).
    Open { rate: f64 },
}

impl Mode {
    /// A short label: `64 clients`, `2000/s`.
    pub(crate) fn label(&self) -> String {
        match self {
            Self::Closed { clients } => format!("{clients} clients"),
            Self::Open { rate } => format!("{rate:.0}/s"),
        }
    }
}

/// One measured run of one workload against one system.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RunResult {
    pub(crate) system: System,
    pub(crate) workload: Workload,
    pub(crate) mode: Mode,
    /// Shards the workload spread over (1 except for [`Workload::WriteShards`]).
    pub(crate) shards: usize,
    /// Which round (0-based) of the alternation this run was.
    pub(crate) round: u32,
    /// Operations that succeeded within the measurement window.
    pub(crate) ops: u64,
    /// Operations that failed within the window.
    pub(crate) errors: u64,
    /// Open loop: operations not started because too many were in flight.
    pub(crate) dropped: u64,
    pub(crate) elapsed_s: f64,
    /// Successful operations per second.
    pub(crate) throughput: f64,
    /// Latency of the successful operations.
    pub(crate) latency: LatencySummary,
    /// A few distinct error messages, to explain `errors`.
    pub(crate) error_samples: Vec<String>,
    /// Where the CPU went during the measurement window.
    #[serde(default)]
    pub(crate) cpu: Option<CpuUse>,
}

/// CPU used during a measurement window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct CpuUse {
    /// How busy the whole machine was (every core; 100 = all cores busy).
    pub(crate) machine_busy_percent: f64,
    /// Cores' worth of CPU the system under test's processes used (1.0 = one core).
    pub(crate) server_cores: f64,
    /// Cores' worth of CPU the load generator (the benchmark process) used.
    pub(crate) generator_cores: f64,
    /// Server CPU per successful operation, in microseconds.
    pub(crate) server_cpu_us_per_op: f64,
}

/// Latency percentiles, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct LatencySummary {
    pub(crate) count: u64,
    pub(crate) mean_us: f64,
    pub(crate) p50_us: f64,
    pub(crate) p90_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) max_us: f64,
}

impl LatencySummary {
    /// The summary of a histogram of microseconds.
    pub(crate) fn of(histogram: &hdrhistogram::Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let q = |q: f64| histogram.value_at_quantile(q) as f64;
        Self {
            count: histogram.len(),
            mean_us: histogram.mean(),
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: histogram.max() as f64,
        }
    }
}

/// CPU used by one shard-node hosting many idle replicas.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct IdleCost {
    /// Replicas the measured shard-node hosts (every one a member of a 3-replica group).
    pub(crate) replicas: usize,
    /// How many of the groups had a leader when the measurement started.
    pub(crate) groups_with_leader: usize,
    pub(crate) measured_s: f64,
    /// User + system CPU seconds of the measured process over the window.
    pub(crate) cpu_s: f64,
    /// `cpu_s / measured_s`, as a percentage of one core.
    pub(crate) percent_of_one_core: f64,
    /// Resident memory of the measured process, in MiB.
    pub(crate) rss_mib: f64,
}
