//! The multi-site platform of the tests: `cairn-site-platform`'s launcher (the one
//! `cairn-bench sites` uses too) with the debug `cairn` binary, the test timing and a catalog
//! that notices a dead host within 3 s. See [`SitePlatform`]: every process, namespace and
//! directory is removed on drop, also when the test fails (the logs' tails are printed then).

use std::future::Future;
use std::time::{Duration, Instant};

use cairn_manager::config::CatalogConfig;
pub use cairn_site_platform::{Launch, SitePlatform, SiteShape};

use super::{CAIRN, test_timing};

/// How the test platforms run: the `cairn` binary under test, 50 ms ticks, hosts reporting
/// every 500 ms, logs at `$CAIRN_TEST_LOG` (default `info`).
pub fn launch() -> Launch {
    Launch {
        catalog: CatalogConfig {
            host_down_after_ms: 3_000,
            reconcile_interval_ms: 200,
            ..CatalogConfig::default()
        },
        heartbeat_interval_ms: 500,
        log_filter: std::env::var("CAIRN_TEST_LOG").unwrap_or_else(|_| "info".into()),
        ..Launch::new(CAIRN, test_timing())
    }
}

/// Builds the bed and starts every process of `shape`.
pub fn start(shape: &SiteShape<'_>) -> SitePlatform {
    SitePlatform::start(shape, &launch())
        .expect("a multi-site platform (needs root: CI runs as root)")
}

/// Percentiles of latencies, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub min_ms: f64,
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        assert!(!samples.is_empty());
        samples.sort();
        let at = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples[i].as_secs_f64() * 1e3
        };
        Self {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            min_ms: samples[0].as_secs_f64() * 1e3,
        }
    }
}

/// Times `count` calls of `op`, which must succeed.
pub async fn time<F, Fut, T, E>(count: usize, mut op: F) -> Latency
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        op().await.expect("a timed call succeeds");
        samples.push(started.elapsed());
    }
    Latency::of(samples)
}
