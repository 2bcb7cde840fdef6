//! Where the CPU went during a measurement window: how busy the whole machine was, and how much
//! CPU the system under test's processes and the load generator used. This is what tells a
//! throughput limit set by the cores (the machine is busy) from one set by something else
//! (waiting on the disk, a serial loop): the shard-scaling target depends on it.

use procfs::{CurrentSI as _, KernelStats};

use crate::machine;
use crate::model::CpuUse;

/// CPU counters at one instant.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    /// Machine-wide ticks: (busy, total).
    machine: Option<(u64, u64)>,
    /// CPU seconds of each server process (in `pids` order), and of this process.
    servers: Vec<f64>,
    generator: f64,
    at: std::time::Instant,
}

/// Machine-wide busy and total ticks since boot (busy excludes idle and I/O wait).
fn machine_ticks() -> Option<(u64, u64)> {
    let total = KernelStats::current().ok()?.total;
    let idle = total.idle + total.iowait.unwrap_or(0);
    let all = total.user
        + total.nice
        + total.system
        + total.idle
        + total.iowait.unwrap_or(0)
        + total.irq.unwrap_or(0)
        + total.softirq.unwrap_or(0)
        + total.steal.unwrap_or(0);
    Some((all - idle, all))
}

/// Reads the counters now; `pids` are the system under test's processes.
pub(crate) fn sample(pids: &[u32]) -> Sample {
    Sample {
        machine: machine_ticks(),
        servers: pids
            .iter()
            .map(|pid| machine::process_cpu(*pid).map_or(0.0, |(cpu, _)| cpu))
            .collect(),
        generator: machine::process_cpu(std::process::id()).map_or(0.0, |(cpu, _)| cpu),
        at: std::time::Instant::now(),
    }
}

/// Cores' worth of CPU each server process, and the load generator, used between two samples.
pub(crate) fn per_process(before: &Sample, after: &Sample) -> (Vec<f64>, f64) {
    let elapsed = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
    let servers = after
        .servers
        .iter()
        .zip(&before.servers)
        .map(|(a, b)| (a - b).max(0.0) / elapsed)
        .collect();
    let generator = (after.generator - before.generator).max(0.0) / elapsed;
    (servers, generator)
}

/// What was used between two samples, for the `ops` operations done between them.
pub(crate) fn used(before: &Sample, after: &Sample, ops: u64) -> CpuUse {
    let elapsed = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
    let machine_busy_percent = match (before.machine, after.machine) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => 100.0 * (b1 - b0) as f64 / (t1 - t0) as f64,
        _ => f64::NAN,
    };
    let (servers, generator_cores) = per_process(before, after);
    let server_cores: f64 = servers.iter().sum();
    let server_cpu_s = server_cores * elapsed;
    CpuUse {
        machine_busy_percent,
        server_cores,
        generator_cores,
        server_cpu_us_per_op: if ops > 0 {
            1e6 * server_cpu_s / ops as f64
        } else {
            f64::NAN
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_loop_shows_up_in_the_generator_and_the_machine() {
        let before = sample(&[]);
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let after = sample(&[]);
        let use_ = used(&before, &after, 10);
        assert!(use_.generator_cores > 0.0, "{use_:?}");
        assert!(use_.machine_busy_percent > 0.0, "{use_:?}");
        assert_eq!(use_.server_cores, 0.0);
    }
}
