//! The load generator: closed loop (N clients, each sending its next operation when the last one
//! answers) and open loop (operations started at a fixed rate whatever the answers), with a
//! warm-up, then a measurement window whose latencies go into HDR histograms.
//!
//! Both systems are driven through the same [`Target`] interface with the same operations, so
//! the only difference between their figures is the system.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use rand::{RngExt as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use crate::model::{LatencySummary, Mode, RunResult, System, Workload};

/// The highest latency a histogram records, in microseconds (a minute: far above any deadline).
const LATENCY_MAX_US: u64 = 60_000_000;
/// Distinct error messages kept per run.
const ERROR_SAMPLES_MAX: usize = 5;
/// The open loop never has more than this many operations in flight; beyond it, operations are
/// counted as dropped (the system is far past saturation).
pub(crate) const OPEN_LOOP_IN_FLIGHT_MAX: usize = 8_192;

/// What one operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpKind {
    /// Store a new manifest (etcd: put the same bytes under a new key).
    Write,
    /// Read a manifest, linearizably, from the leader.
    ReadConsistent,
    /// Read a manifest from any replica (cairn `any`; etcd serializable).
    ReadLocal,
    /// Read a manifest through the router (etcd: the gRPC proxy), `any`/serializable.
    RouterCached,
    /// Read a manifest through the router (etcd: the gRPC proxy), consistently.
    RouterConsistent,
}

/// One operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Op {
    pub(crate) kind: OpKind,
    /// The client issuing it (0-based): targets spread clients over connections and replicas.
    pub(crate) client: usize,
    /// The shard (0-based) of the namespace it addresses; etcd has one group and ignores it.
    pub(crate) shard: usize,
    /// The object: names are `obj-{key:010}`; reads ask for preloaded keys `0..preload`.
    pub(crate) key: u64,
}

impl Op {
    /// The object name of the key (the same on both systems).
    pub(crate) fn object_name(key: u64) -> String {
        format!("obj-{key:010}")
    }
}

/// A system under test, as the load generator sees it.
pub(crate) trait Target: Send + Sync + 'static {
    /// Runs one operation; the error is a message for the report.
    fn run(&self, op: Op) -> impl Future<Output = Result<(), String>> + Send;
}

/// How long a run warms up and measures.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub(crate) warmup: Duration,
    pub(crate) measure: Duration,
}

/// What a run asks of the generator.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunSpec {
    pub(crate) system: System,
    pub(crate) workload: Workload,
    pub(crate) mode: Mode,
    pub(crate) shards: usize,
    pub(crate) round: u32,
    /// Reads pick among keys `0..preload_keys`.
    pub(crate) preload_keys: u64,
    pub(crate) seed: u64,
}

/// The keys new writes use: unique across every run against one system.
#[derive(Clone, Debug)]
pub(crate) struct WriteKeys(Arc<AtomicU64>);

impl WriteKeys {
    /// New writes take keys from `first` up.
    pub(crate) fn starting_at(first: u64) -> Self {
        Self(Arc::new(AtomicU64::new(first)))
    }

    fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// The operation a client issues next for a workload.
fn next_op(
    spec: &RunSpec,
    client: usize,
    rng: &mut ChaCha8Rng,
    writes: &WriteKeys,
    shard_turn: &mut usize,
) -> Op {
    let read = |kind: OpKind, rng: &mut ChaCha8Rng| Op {
        kind,
        client,
        shard: 0,
        key: rng.random_range(0..spec.preload_keys.max(1)),
    };
    let write = |shard: usize| Op {
        kind: OpKind::Write,
        client,
        shard,
        key: writes.next(),
    };
    match spec.workload {
        Workload::Write => write(0),
        Workload::ReadConsistent => read(OpKind::ReadConsistent, rng),
        Workload::ReadLocal => read(OpKind::ReadLocal, rng),
        Workload::RouterCached => read(OpKind::RouterCached, rng),
        Workload::RouterConsistent => read(OpKind::RouterConsistent, rng),
        Workload::Mixed => {
            if rng.random_range(0..10) == 0 {
                write(0)
            } else {
                read(OpKind::ReadConsistent, rng)
            }
        }
        Workload::WriteShards => {
            // Client c starts on shard c and moves to the next shard each operation, so every
            // shard gets the same share whatever the client count.
            let shard = (client + *shard_turn) % spec.shards.max(1);
            *shard_turn += 1;
            write(shard)
        }
    }
}

/// What the clients of one run collect.
struct Collector {
    histogram: Mutex<Histogram<u64>>,
    errors: AtomicU64,
    dropped: AtomicU64,
    samples: Mutex<BTreeSet<String>>,
}

impl Collector {
    fn new() -> Self {
        Self {
            histogram: Mutex::new(new_histogram()),
            errors: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            samples: Mutex::new(BTreeSet::new()),
        }
    }

    fn merge(&self, local: &Histogram<u64>) {
        self.histogram
            .lock()
            .expect("histogram lock poisoned")
            .add(local)
            .expect("histograms of the same bounds merge");
    }

    fn error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.samples.lock().expect("samples lock poisoned");
        if samples.len() < ERROR_SAMPLES_MAX {
            samples.insert(message);
        }
    }
}

/// A histogram of microseconds, 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

/// Records `elapsed` in microseconds (at least 1, at most the bound).
pub(crate) fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let us = (elapsed.as_micros() as u64).clamp(1, LATENCY_MAX_US);
    histogram.record(us).expect("clamped into the bounds");
}

/// Runs one workload against one target and returns what it measured.
pub(crate) async fn run<T: Target>(
    target: Arc<T>,
    spec: RunSpec,
    window: Window,
    writes: WriteKeys,
) -> RunResult {
    let collector = Arc::new(Collector::new());
    let start = Instant::now();
    let measure_from = start + window.warmup;
    let measure_until = measure_from + window.measure;
    match spec.mode {
        Mode::Closed { clients } => {
            let mut tasks = Vec::with_capacity(clients);
            for client in 0..clients {
                let target = target.clone();
                let collector = collector.clone();
                let writes = writes.clone();
                tasks.push(tokio::spawn(async move {
                    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed ^ (client as u64 + 1));
                    let mut histogram = new_histogram();
                    let mut shard_turn = 0;
                    loop {
                        let op = next_op(&spec, client, &mut rng, &writes, &mut shard_turn);
                        let began = Instant::now();
                        if began >= measure_until {
                            break;
                        }
                        let outcome = target.run(op).await;
                        let ended = Instant::now();
                        if began < measure_from || ended > measure_until {
                            continue;
                        }
                        match outcome {
                            Ok(()) => record(&mut histogram, ended - began),
                            Err(e) => {
                                collector.error(e);
                                // A failing system must not turn the loop into a busy spin.
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                        }
                    }
                    collector.merge(&histogram);
                }));
            }
            for task in tasks {
                task.await.expect("a client task panicked");
            }
        }
        Mode::Open { rate } => open_loop(&target, &spec, rate, &collector, &writes, window).await,
    }
    let histogram = collector.histogram.lock().expect("poisoned").clone();
    let elapsed_s = window.measure.as_secs_f64();
    let samples = collector.samples.lock().expect("poisoned").clone();
    RunResult {
        system: spec.system,
        workload: spec.workload,
        mode: spec.mode,
        shards: spec.shards,
        round: spec.round,
        ops: histogram.len(),
        errors: collector.errors.load(Ordering::Relaxed),
        dropped: collector.dropped.load(Ordering::Relaxed),
        elapsed_s,
        throughput: histogram.len() as f64 / elapsed_s,
        latency: LatencySummary::of(&histogram),
        error_samples: samples.into_iter().collect(),
        cpu: None,
    }
}

/// The open loop: operation k is due at `start + k / rate`; each runs in its own task and its
/// latency counts from when it was due.
async fn open_loop<T: Target>(
    target: &Arc<T>,
    spec: &RunSpec,
    rate: f64,
    collector: &Arc<Collector>,
    writes: &WriteKeys,
    window: Window,
) {
    let start = Instant::now();
    let measure_from = start + window.warmup;
    let measure_until = measure_from + window.measure;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
    let in_flight = Arc::new(AtomicUsize::new(0));
    // Open-loop operations are spread over as many logical clients as the closed loop uses, so
    // targets spread them over connections and replicas the same way.
    const LOGICAL_CLIENTS: usize = 64;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut shard_turn = 0;
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0u64.. {
        let due = start + interval.mul_f64(k as f64);
        if due >= measure_until {
            break;
        }
        tokio::time::sleep_until(due).await;
        let measured = due >= measure_from;
        if in_flight.load(Ordering::Relaxed) >= OPEN_LOOP_IN_FLIGHT_MAX {
            if measured {
                collector.dropped.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        let client = (k as usize) % LOGICAL_CLIENTS;
        let op = next_op(spec, client, &mut rng, writes, &mut shard_turn);
        let target = target.clone();
        let collector = collector.clone();
        let in_flight = in_flight.clone();
        in_flight.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            let outcome = target.run(op).await;
            let ended = Instant::now();
            in_flight.fetch_sub(1, Ordering::Relaxed);
            if !measured || ended > measure_until + Duration::from_secs(5) {
                return;
            }
            match outcome {
                Ok(()) => {
                    let mut h = collector.histogram.lock().expect("poisoned");
                    record(&mut h, ended - due);
                }
                Err(e) => collector.error(e),
            }
        });
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    // Operations still in flight at the end finish (or time out in the system's own client).
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target that answers after a fixed delay, or fails every `fail_every`-th operation.
    struct Fake {
        delay: Duration,
        calls: AtomicU64,
        fail_every: u64,
        seen: Mutex<Vec<Op>>,
    }

    impl Target for Fake {
        async fn run(&self, op: Op) -> Result<(), String> {
            let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
            self.seen.lock().unwrap().push(op);
            tokio::time::sleep(self.delay).await;
            if self.fail_every > 0 && n.is_multiple_of(self.fail_every) {
                Err("injected".into())
            } else {
                Ok(())
            }
        }
    }

    fn fake(delay_ms: u64, fail_every: u64) -> Arc<Fake> {
        Arc::new(Fake {
            delay: Duration::from_millis(delay_ms),
            calls: AtomicU64::new(0),
            fail_every,
            seen: Mutex::new(Vec::new()),
        })
    }

    fn spec(workload: Workload, mode: Mode, shards: usize) -> RunSpec {
        RunSpec {
            system: System::Cairn,
            workload,
            mode,
            shards,
            round: 0,
            preload_keys: 100,
            seed: 7,
        }
    }

    const WINDOW: Window = Window {
        warmup: Duration::from_millis(100),
        measure: Duration::from_millis(500),
    };

    #[tokio::test(start_paused = true)]
    async fn closed_loop_counts_only_the_window_and_bounds_throughput_by_clients() {
        let target = fake(10, 0);
        let spec = spec(Workload::Write, Mode::Closed { clients: 4 }, 1);
        let result = run(target.clone(), spec, WINDOW, WriteKeys::starting_at(1000)).await;
        // 4 clients, 10 ms each: 400/s, 200 in the half-second window (paused clock: exact).
        assert_eq!(result.ops, 200, "{result:?}");
        assert!((result.throughput - 400.0).abs() < 1.0, "{result:?}");
        // HDR histograms keep 3 significant digits: 10 ms within 0.1 %.
        assert!(
            (result.latency.p50_us - 10_000.0).abs() <= 10.0,
            "{result:?}"
        );
        assert_eq!(result.errors, 0);
        // Writes take fresh keys from the counter.
        let seen = target.seen.lock().unwrap();
        let mut keys: Vec<u64> = seen.iter().map(|op| op.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), seen.len());
        assert!(keys.iter().all(|k| *k >= 1000));
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_counted_and_sampled() {
        let target = fake(10, 4);
        let spec = spec(Workload::ReadConsistent, Mode::Closed { clients: 2 }, 1);
        let result = run(target, spec, WINDOW, WriteKeys::starting_at(0)).await;
        assert!(result.errors > 0 && result.ops > 0, "{result:?}");
        assert_eq!(result.error_samples, vec!["injected".to_string()]);
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_offers_the_rate_and_counts_latency_from_the_due_time() {
        let target = fake(5, 0);
        let spec = spec(Workload::ReadLocal, Mode::Open { rate: 1000.0 }, 1);
        let result = run(target, spec, WINDOW, WriteKeys::starting_at(0)).await;
        // 1000/s for half a second.
        assert!((495..=505).contains(&result.ops), "{result:?}");
        assert!(result.latency.p50_us >= 5_000.0, "{result:?}");
        assert_eq!(result.dropped, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn multi_shard_writes_spread_evenly_and_reads_stay_in_the_preload() {
        let target = fake(1, 0);
        let shards = spec(Workload::WriteShards, Mode::Closed { clients: 3 }, 4);
        run(target.clone(), shards, WINDOW, WriteKeys::starting_at(0)).await;
        let mut per_shard = [0usize; 4];
        for op in target.seen.lock().unwrap().iter() {
            per_shard[op.shard] += 1;
        }
        let (lo, hi) = (
            per_shard.iter().min().unwrap(),
            per_shard.iter().max().unwrap(),
        );
        assert!(hi - lo <= 3, "{per_shard:?}");

        let target = fake(1, 0);
        let mixed = spec(Workload::Mixed, Mode::Closed { clients: 4 }, 1);
        run(
            target.clone(),
            mixed,
            WINDOW,
            WriteKeys::starting_at(10_000),
        )
        .await;
        let seen = target.seen.lock().unwrap();
        let writes = seen.iter().filter(|op| op.kind == OpKind::Write).count();
        let share = writes as f64 / seen.len() as f64;
        assert!((0.06..0.14).contains(&share), "write share {share}");
        assert!(
            seen.iter()
                .filter(|op| op.kind != OpKind::Write)
                .all(|op| op.key < 100)
        );
    }
}
