//! The WAN emulator: `cairn-netbed wan --config FILE`, run inside the bed's WAN namespace.
//!
//! Policy routing in the WAN namespace sends every packet that arrives from a site (or ops) into
//! a TUN device. This process reads each packet, maps its source and destination addresses to
//! sites, and drops it (partition, random loss, full queue) or holds it for the one-way delay of
//! its (from, to) pair and writes it back into the TUN, where the main routing table sends it on
//! to the destination site. Netem would do this in the kernel; this kernel has no netem.
//!
//! Two blocking threads, no async runtime: the *reader* decides and timestamps, the *scheduler*
//! holds packets in a min-heap ordered by release time and sleeps on a channel with a timeout,
//! which keeps release times within tens of microseconds (a runtime timer wheel rounds to 1 ms).
//! A packet is never released before its deadline. Per pair, packets leave in arrival order: a
//! packet's deadline is never earlier than the one before it on the same pair.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tun_rs::{DeviceBuilder, SyncDevice};

use crate::error::Error;
use crate::wan_config::{LinkTable, Verdict, WanConfig, WanCounters, WanStatus, write_json_atomic};

/// Largest packet read from the TUN (its MTU is 1500; this leaves room for any offload).
const PACKET_MAX_BYTES: usize = 65_536;
/// Packets in flight from the reader to the scheduler.
const HANDOFF_MAX_PACKETS: usize = 8_192;
/// The emulator's scheduling priority (nice value).
const WAN_NICE: i32 = -10;
/// How often the status file is refreshed while counters move, and the owner is checked.
const STATUS_INTERVAL: Duration = Duration::from_millis(200);

/// Runs the emulator until SIGTERM or SIGINT (or, when the config names one, until its owner
/// process is gone). Prints the counters to standard error on the way out.
pub fn run(config_path: &Path) -> Result<(), Error> {
    let config = WanConfig::load(config_path)?;
    let table = LinkTable::compile(&config)
        .map_err(|e| Error::InvalidSpec(format!("{}: {e}", config_path.display())))?;
    // The emulator is the network: it should not queue behind a compiler on a two-core machine.
    // Best effort (root may raise priority); set before any thread starts, since Linux keeps a
    // nice value per thread and new threads inherit their creator's.
    let _ = rustix::process::setpriority_process(None, WAN_NICE);
    // Signals first: the library sends SIGHUP only after our first status, written below.
    let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT])
        .map_err(|e| Error::io("installing signal handlers", e))?;

    let device = DeviceBuilder::new()
        .name(&config.tun)
        .mtu(1500)
        .enable(true)
        .build_sync()
        .map_err(|e| Error::io(format!("creating TUN device {}", config.tun), e))?;
    let device = Arc::new(device);
    route_table_to_tun(&config)?;

    let shared = Arc::new(Shared {
        table: Mutex::new(Arc::new(table)),
        generation: AtomicU64::new(config.generation),
        error: Mutex::new(None),
        counters: Counters::default(),
        stop: AtomicBool::new(false),
        config_path: config_path.to_owned(),
    });
    let (handoff, arrivals) = sync_channel(HANDOFF_MAX_PACKETS);
    {
        let (shared, device, seed) = (shared.clone(), device.clone(), config.seed);
        spawn("wan-reader", move || {
            read_loop(&device, &shared, &handoff, seed)
        })?;
    }
    {
        let (shared, device) = (shared.clone(), device.clone());
        let limits = (config.pair_queue_max_packets, config.queue_max_packets);
        spawn("wan-scheduler", move || {
            schedule_loop(&device, &shared, &arrivals, limits)
        })?;
    }
    {
        let shared = shared.clone();
        let status_path = config.status_path.clone();
        spawn("wan-signals", move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    shared.reload();
                    shared.write_status(&status_path);
                } else {
                    shared.stop.store(true, Ordering::SeqCst);
                }
            }
        })?;
    }
    shared.write_status(&config.status_path);
    eprintln!(
        "cairn-netbed wan: {} up, generation {}, sites {:?}",
        config.tun, config.generation, config.sites
    );

    let mut last_written = shared.counters.snapshot();
    let mut last_write = Instant::now();
    while !shared.stop.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(20));
        if config.owner.is_some_and(|owner| !owner.alive()) {
            eprintln!("cairn-netbed wan: owner process is gone, exiting");
            break;
        }
        let now = shared.counters.snapshot();
        if now != last_written && last_write.elapsed() >= STATUS_INTERVAL {
            shared.write_status(&config.status_path);
            (last_written, last_write) = (now, Instant::now());
        }
    }
    shared.write_status(&config.status_path);
    let c = shared.counters.snapshot();
    eprintln!(
        "cairn-netbed wan: received {} forwarded {} dropped: loss {} partition {} overflow {} \
         unroutable {}; write errors {}",
        c.received,
        c.forwarded,
        c.dropped_loss,
        c.dropped_partition,
        c.dropped_overflow,
        c.dropped_unroutable,
        c.write_errors
    );
    Ok(())
}

/// `ip route replace default dev TUN table T`: the route the site rules lead to. It goes away
/// with the TUN when this process exits, and then the table's blackhole route (set up by the
/// library) drops everything: a dead emulator fails closed, it never forwards undelayed.
fn route_table_to_tun(config: &WanConfig) -> Result<(), Error> {
    let args = [
        "route",
        "replace",
        "default",
        "dev",
        &config.tun,
        "table",
        &config.table,
    ];
    crate::ip::run_ip(&args).map(drop)
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<(), Error> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map(drop)
        .map_err(|e| Error::io(format!("spawning thread {name}"), e))
}

struct Shared {
    table: Mutex<Arc<LinkTable>>,
    generation: AtomicU64,
    error: Mutex<Option<String>>,
    counters: Counters,
    stop: AtomicBool,
    config_path: PathBuf,
}

impl Shared {
    fn table(&self) -> Arc<LinkTable> {
        self.table.lock().expect("table lock poisoned").clone()
    }

    /// Re-reads the config; a config that fails to load or compile leaves the old one in force.
    fn reload(&self) {
        let current_n = self.table().n;
        let loaded = WanConfig::load(&self.config_path)
            .map_err(|e| e.to_string())
            .and_then(|config| {
                let table = LinkTable::compile(&config)?;
                if table.n != current_n {
                    return Err("the site list of a running bed cannot change".to_owned());
                }
                Ok((config.generation, table))
            });
        let mut error = self.error.lock().expect("error lock poisoned");
        match loaded {
            Ok((generation, table)) => {
                *self.table.lock().expect("table lock poisoned") = Arc::new(table);
                self.generation.store(generation, Ordering::SeqCst);
                *error = None;
            }
            Err(e) => {
                eprintln!("cairn-netbed wan: reload refused: {e}");
                *error = Some(e);
            }
        }
    }

    fn write_status(&self, path: &Path) {
        let status = WanStatus {
            pid: std::process::id(),
            generation: self.generation.load(Ordering::SeqCst),
            error: self.error.lock().expect("error lock poisoned").clone(),
            counters: self.counters.snapshot(),
        };
        if let Err(e) = write_json_atomic(path, &status) {
            eprintln!("cairn-netbed wan: {e}");
        }
    }
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    forwarded: AtomicU64,
    dropped_loss: AtomicU64,
    dropped_partition: AtomicU64,
    dropped_overflow: AtomicU64,
    dropped_unroutable: AtomicU64,
    write_errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> WanCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WanCounters {
            received: get(&self.received),
            forwarded: get(&self.forwarded),
            dropped_loss: get(&self.dropped_loss),
            dropped_partition: get(&self.dropped_partition),
            dropped_overflow: get(&self.dropped_overflow),
            dropped_unroutable: get(&self.dropped_unroutable),
            write_errors: get(&self.write_errors),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A packet waiting for its release time.
struct Held {
    deadline: Instant,
    /// Arrival order: breaks deadline ties so a pair's packets leave in order.
    seq: u64,
    pair: usize,
    packet: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

/// Reads packets, decides their fate, and hands the delivered ones to the scheduler.
fn read_loop(device: &SyncDevice, shared: &Shared, handoff: &SyncSender<Held>, seed: u64) {
    let mut buf = vec![0u8; PACKET_MAX_BYTES];
    let mut rng = SplitMix64(seed);
    // The latest deadline given to each pair: FIFO per pair across delay changes.
    let mut last_deadline: Vec<Option<Instant>> = Vec::new();
    let mut seq = 0u64;
    loop {
        let len = match device.recv(&mut buf) {
            Ok(len) => len,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("cairn-netbed wan: reading the TUN: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        bump(&shared.counters.received);
        let table = shared.table();
        let Some(pair) = table.classify(&buf[..len]) else {
            bump(&shared.counters.dropped_unroutable);
            continue;
        };
        match table.verdict(pair, rng.next_f64()) {
            Verdict::DropPartition => bump(&shared.counters.dropped_partition),
            Verdict::DropLoss => bump(&shared.counters.dropped_loss),
            Verdict::Deliver(delay) => {
                if last_deadline.len() < table.n * table.n {
                    last_deadline.resize(table.n * table.n, None);
                }
                let mut deadline = Instant::now() + delay;
                if let Some(previous) = last_deadline[pair] {
                    deadline = deadline.max(previous);
                }
                last_deadline[pair] = Some(deadline);
                seq += 1;
                let held = Held {
                    deadline,
                    seq,
                    pair,
                    packet: buf[..len].to_vec(),
                };
                match handoff.try_send(held) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => bump(&shared.counters.dropped_overflow),
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
        }
    }
}

/// Holds packets until their deadline, then writes them back into the TUN.
fn schedule_loop(
    device: &SyncDevice,
    shared: &Shared,
    arrivals: &Receiver<Held>,
    (pair_max, total_max): (usize, usize),
) {
    let mut heap: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
    let mut per_pair: Vec<usize> = Vec::new();
    let admit = |held: Held, heap: &mut BinaryHeap<Reverse<Held>>, per_pair: &mut Vec<usize>| {
        if per_pair.len() <= held.pair {
            per_pair.resize(held.pair + 1, 0);
        }
        if per_pair[held.pair] >= pair_max || heap.len() >= total_max {
            bump(&shared.counters.dropped_overflow);
            return;
        }
        per_pair[held.pair] += 1;
        heap.push(Reverse(held));
    };
    loop {
        let arrival = match heap.peek() {
            None => arrivals.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(Reverse(head)) => {
                arrivals.recv_timeout(head.deadline.saturating_duration_since(Instant::now()))
            }
        };
        match arrival {
            Ok(held) => {
                admit(held, &mut heap, &mut per_pair);
                // Take whatever else already arrived before sleeping again.
                for _ in 0..HANDOFF_MAX_PACKETS {
                    let Ok(held) = arrivals.try_recv() else { break };
                    admit(held, &mut heap, &mut per_pair);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        let table = shared.table();
        while heap
            .peek()
            .is_some_and(|Reverse(head)| head.deadline <= now)
        {
            let Reverse(held) = heap.pop().expect("peeked");
            per_pair[held.pair] -= 1;
            if table.blocked(held.pair) {
                bump(&shared.counters.dropped_partition);
            } else if device.send(&held.packet).is_ok() {
                bump(&shared.counters.forwarded);
            } else {
                bump(&shared.counters.write_errors);
            }
        }
    }
}

/// A small seeded generator for loss decisions (SplitMix64): replayable from the config's seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_uniform_enough_and_replayable() {
        let mut a = SplitMix64(42);
        let mut b = SplitMix64(42);
        let draws: Vec<f64> = (0..10_000).map(|_| a.next_f64()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let below = draws.iter().filter(|&&d| d < 0.25).count();
        assert!(
            (2_200..2_800).contains(&below),
            "{below} of 10000 below 0.25"
        );
        assert_eq!(draws[0], b.next_f64());
    }

    #[test]
    fn held_packets_leave_by_deadline_then_arrival() {
        let t = Instant::now();
        let held = |ms: u64, seq: u64| Held {
            deadline: t + Duration::from_millis(ms),
            seq,
            pair: 0,
            packet: Vec::new(),
        };
        let mut heap = BinaryHeap::new();
        for h in [held(5, 1), held(1, 2), held(5, 0), held(3, 3)] {
            heap.push(Reverse(h));
        }
        let order: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|Reverse(h)| h.seq)).collect();
        assert_eq!(order, [2, 3, 0, 1]);
    }
}
