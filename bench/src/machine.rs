//! What the suite knows about the machine it runs on: the hardware and kernel for the report,
//! the disk under the data directories, the CPU and memory a process has used, and which cairn
//! was measured.
//!
//! Everything here reads `/proc` (Linux only). What cannot be read is reported as `unknown`
//! rather than failing the suite: the figures stay meaningful without it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

use crate::model::Machine;

/// What a field reads when the machine does not say.
const UNKNOWN: &str = "unknown";

/// The machine: CPU model, cores, kernel, memory, and the device and file system holding
/// `data_dir` (see [`data_disk`]).
pub(crate) fn describe(data_dir: &Path) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Machine {
        cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| UNKNOWN.to_owned()),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| UNKNOWN.to_owned()),
        memory_gib: memory_gib(&meminfo).unwrap_or(0.0),
        data_disk: data_disk(data_dir),
    }
}

/// The device and file system type of the mount holding `path` (e.g. `/dev/vda1 ext4`), or
/// `unknown`. The path is canonicalized first (symlinks would otherwise point the answer at the
/// wrong mount); a path that does not exist yet is answered for its nearest existing ancestor.
pub(crate) fn data_disk(path: &Path) -> String {
    let Some(path) = canonical_ancestor(path) else {
        return UNKNOWN.to_owned();
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return UNKNOWN.to_owned();
    };
    match mount_of(&mounts, &path) {
        Some(mount) => format!("{} {}", mount.device, mount.fs_type),
        None => UNKNOWN.to_owned(),
    }
}

/// CPU seconds (user + system) process `pid` has used so far, and its resident memory in bytes.
pub(crate) fn process_cpu(pid: u32) -> anyhow::Result<(f64, u64)> {
    let pid_i32 = i32::try_from(pid).with_context(|| format!("pid {pid} is out of range"))?;
    let process = procfs::process::Process::new(pid_i32)
        .with_context(|| format!("cannot open /proc/{pid}"))?;
    let stat = process
        .stat()
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let ticks_per_s = procfs::ticks_per_second();
    anyhow::ensure!(
        ticks_per_s > 0,
        "the kernel reports 0 clock ticks per second"
    );
    let cpu_s = (stat.utime + stat.stime) as f64 / ticks_per_s as f64;
    let rss_bytes = stat.rss * procfs::page_size();
    Ok((cpu_s, rss_bytes))
}

/// `git describe --always --dirty` of the checkout at `repo`, or `unknown` (no git, not a
/// checkout, or git refuses it).
pub(crate) fn git_describe(repo: &Path) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["describe", "--always", "--dirty"])
        .output();
    match output {
        Ok(output) if output.status.success() => {
            let described = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            if described.is_empty() {
                UNKNOWN.to_owned()
            } else {
                described
            }
        }
        _ => UNKNOWN.to_owned(),
    }
}

/// The first `model name` of `/proc/cpuinfo` (x86), else its `Hardware` or `Processor` line
/// (some ARM kernels name the CPU only there).
fn cpu_model(cpuinfo: &str) -> Option<String> {
    ["model name", "Hardware", "Processor"]
        .into_iter()
        .find_map(|key| {
            cpuinfo.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                let value = value.trim();
                (name.trim() == key && !value.is_empty()).then(|| value.to_owned())
            })
        })
}

/// `MemTotal` of `/proc/meminfo`, in GiB rounded to hundredths.
fn memory_gib(meminfo: &str) -> Option<f64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut fields = line["MemTotal:".len()..].split_whitespace();
    let kib: u64 = fields.next()?.parse().ok()?;
    // The kernel writes "kB" and means KiB.
    if fields.next() != Some("kB") {
        return None;
    }
    let gib = kib as f64 / (1024.0 * 1024.0);
    Some((gib * 100.0).round() / 100.0)
}

/// The canonical form of `path`, or of its nearest ancestor that exists.
fn canonical_ancestor(path: &Path) -> Option<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    absolute.ancestors().find_map(|p| p.canonicalize().ok())
}

/// One line of `/proc/self/mounts`.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    device: String,
    mount_point: PathBuf,
    fs_type: String,
}

/// The mount holding the canonical `path`: the longest mount point that is a prefix of it, by
/// whole components. Of mounts on the same point the last listed wins: it is the one on top.
fn mount_of(mounts: &str, path: &Path) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(device), Some(mount_point), Some(fs_type)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let mount_point = PathBuf::from(unescape(mount_point));
        if !path.starts_with(&mount_point) {
            continue;
        }
        let depth = mount_point.components().count();
        if best
            .as_ref()
            .is_none_or(|b| depth >= b.mount_point.components().count())
        {
            best = Some(Mount {
                device: unescape(device),
                mount_point,
                fs_type: unescape(fs_type),
            });
        }
    }
    best
}

/// Undoes the kernel's octal escapes in `/proc/self/mounts` (`\040` is a space, `\011` a tab,
/// `\012` a newline, `\134` a backslash).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..=i + 3]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let code = bytes[i + 1..=i + 3]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(code) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn describe_reports_the_cores_and_the_disk_of_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let machine = describe(dir.path());
        assert!(machine.cores >= 1, "{machine:?}");
        assert!(!machine.data_disk.is_empty(), "{machine:?}");
        assert_ne!(machine.data_disk, UNKNOWN, "{machine:?}");
        assert!(machine.memory_gib > 0.0, "{machine:?}");
        assert!(!machine.kernel.is_empty(), "{machine:?}");
    }

    #[test]
    fn a_missing_directory_is_answered_for_its_existing_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("not/yet/made");
        assert_eq!(data_disk(&missing), data_disk(dir.path()));
    }

    #[test]
    fn the_longest_mount_point_prefix_wins_by_whole_components() {
        let mounts = "\
overlay / overlay rw,relatime 0 0
proc /proc proc rw 0 0
/dev/vda1 /data ext4 rw,relatime 0 0
/dev/vdb1 /data2 xfs rw 0 0
tmpfs /data/my\\040dir tmpfs rw 0 0
/dev/vdc1 /data ext4 rw 0 0
";
        let at = |p: &str| mount_of(mounts, Path::new(p)).map(|m| (m.device, m.fs_type));
        let pair = |d: &str, f: &str| Some((d.to_owned(), f.to_owned()));
        // `/data2` is not under `/data`.
        assert_eq!(at("/data2/x"), pair("/dev/vdb1", "xfs"));
        // The later of two mounts on `/data` is the one on top.
        assert_eq!(at("/data/cairn"), pair("/dev/vdc1", "ext4"));
        assert_eq!(at("/data/my dir/x"), pair("tmpfs", "tmpfs"));
        assert_eq!(at("/home/x"), pair("overlay", "overlay"));
        assert_eq!(at("/proc"), pair("proc", "proc"));
    }

    #[test]
    fn cpu_model_and_memory_are_read_from_proc_text() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        assert_eq!(cpu_model("processor : 0\n"), None);
        let meminfo = "MemTotal:        8388608 kB\nMemFree:         1024 kB\n";
        assert_eq!(memory_gib(meminfo), Some(8.0));
        assert_eq!(memory_gib("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn process_cpu_counts_the_cpu_this_process_burned() {
        let began = Instant::now();
        let mut x = 0u64;
        // Burn well over one clock tick (10 ms at the usual 100 Hz).
        while began.elapsed() < Duration::from_millis(200) {
            for i in 0..10_000u64 {
                x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
        }
        black_box(x);
        let (cpu_s, rss_bytes) = process_cpu(std::process::id()).unwrap();
        assert!(cpu_s > 0.0, "cpu {cpu_s}");
        assert!(rss_bytes > 0, "rss {rss_bytes}");
    }

    #[test]
    fn git_describe_outside_a_checkout_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(git_describe(dir.path()), UNKNOWN);
    }
}
