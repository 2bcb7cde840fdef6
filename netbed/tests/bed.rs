//! End-to-end tests of the bed: real namespaces, a real emulator, real packets between processes
//! in different sites. They need root (CI runs as root): without it they fail, loudly, rather
//! than skip. The tests of this file run in parallel threads, each with its own bed, which also
//! exercises id allocation under contention.

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cairn_netbed::probe::ProbeReport;
use cairn_netbed::{Bed, BedSpec, BedState, WanCounters};

const BIN: &str = env!("CARGO_BIN_EXE_cairn-netbed");
const ECHO_PORT: u16 = 7000;
/// Generous: the machine has two cores and other tests run beside these.
const SLACK_MS: u64 = 50;

fn require_root() {
    let uid = fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    assert_eq!(
        uid, 0,
        "cairn-netbed tests build network namespaces and must run as root (CI does); \
         this process has uid {uid}. Run them as root, e.g. `sudo -E cargo test -p cairn-netbed`."
    );
}

fn bed(sites: &[&str], rtt_ms: u64) -> Bed {
    bed_with(BedSpec::new(
        sites.iter().copied(),
        Duration::from_millis(rtt_ms),
    ))
}

fn bed_with(spec: BedSpec) -> Bed {
    require_root();
    Bed::create(BedSpec {
        netbed_bin: Some(BIN.into()),
        ..spec
    })
    .expect("creating a bed")
}

/// Starts a UDP+TCP echo server in `site` (tracked by the bed) and returns its address.
fn start_echo(bed: &mut Bed, site: &str) -> SocketAddr {
    let addr = SocketAddr::new(bed.site_ip(site), ECHO_PORT);
    let mut command = bed.command(site, BIN);
    command
        .args(["echo", "--bind", &addr.to_string()])
        .stdin(Stdio::null());
    bed.spawn(site, command).expect("starting echo");
    addr
}

struct Probe {
    count: u32,
    timeout_ms: u64,
    warmup_ms: u64,
    tcp: bool,
}

const MEASURE: Probe = Probe {
    count: 60,
    timeout_ms: 1000,
    warmup_ms: 5000,
    tcp: false,
};
/// For paths expected to be cut: no warm-up, short waits.
const CUT: Probe = Probe {
    count: 5,
    timeout_ms: 150,
    warmup_ms: 0,
    tcp: false,
};

/// Runs `cairn-netbed probe` inside `from` against `to`.
fn probe(bed: &Bed, from: &str, to: SocketAddr, how: &Probe) -> ProbeReport {
    let mut command = bed.command(from, BIN);
    command.args([
        "probe",
        "--to",
        &to.to_string(),
        "--bind",
        &bed.site_ip(from).to_string(),
    ]);
    command.args(["--count", &how.count.to_string(), "--interval-ms", "2"]);
    command.args(["--timeout-ms", &how.timeout_ms.to_string()]);
    command.args(["--warmup-ms", &how.warmup_ms.to_string()]);
    if how.tcp {
        command.arg("--tcp");
    }
    let out = command.output().expect("running probe");
    assert!(
        out.status.success(),
        "probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: ProbeReport = serde_json::from_slice(&out.stdout).expect("probe prints JSON");
    println!("bed {} {from} -> {}", bed.id(), report.summary());
    report
}

fn ms(us: Option<u64>) -> f64 {
    us.expect("at least one answer") as f64 / 1e3
}

fn assert_round_trips(report: &ProbeReport, rtt_ms: u64) {
    assert_eq!(
        report.received, report.sent,
        "every probe answered: {report:?}"
    );
    let min = ms(report.percentile_us(0.0));
    assert!(
        min >= rtt_ms as f64,
        "a round trip of {min} ms beat the {rtt_ms} ms floor"
    );
    let p50 = ms(report.percentile_us(50.0));
    assert!(
        p50 < (rtt_ms + SLACK_MS) as f64,
        "p50 {p50} ms is far above {rtt_ms} ms"
    );
}

/// Waits for the emulator's periodic counter report to satisfy `check`.
fn wait_for_counters(bed: &Bed, check: impl Fn(&WanCounters) -> bool) -> WanCounters {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let counters = bed.counters().expect("reading counters");
        if check(&counters) {
            return counters;
        }
        assert!(
            Instant::now() < deadline,
            "counters never matched: {counters:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sites_pay_the_configured_round_trip_and_never_less() {
    let mut bed = bed(&["dc1", "dc2"], 10);
    let echo = start_echo(&mut bed, "dc2");
    assert_round_trips(&probe(&bed, "dc1", echo, &MEASURE), 10);

    // TCP crosses the same emulator: its handshake and every exchange pay the round trip.
    let tcp = probe(
        &bed,
        "dc1",
        echo,
        &Probe {
            tcp: true,
            ..MEASURE
        },
    );
    assert_round_trips(&tcp, 10);
    let connect_ms = tcp.connect_us.expect("connected") as f64 / 1e3;
    println!("tcp connect {connect_ms:.2} ms");
    assert!(
        connect_ms >= 10.0,
        "a TCP handshake of {connect_ms} ms beat the 10 ms floor"
    );

    let counters = wait_for_counters(&bed, |c| c.forwarded >= 4 * 60);
    assert_eq!(
        counters.dropped_loss + counters.dropped_partition + counters.dropped_overflow,
        0
    );
}

#[test]
fn set_rtt_changes_one_pair_and_leaves_the_others() {
    let mut bed = bed(&["dc1", "dc2", "dc3"], 10);
    let echo2 = start_echo(&mut bed, "dc2");
    let echo3 = start_echo(&mut bed, "dc3");
    bed.set_rtt("dc1", "dc3", Duration::from_millis(40))
        .unwrap();
    assert_round_trips(&probe(&bed, "dc1", echo3, &MEASURE), 40);
    assert_round_trips(&probe(&bed, "dc1", echo2, &MEASURE), 10);
    let dc1_dc2 = bed
        .links()
        .into_iter()
        .find(|l| l.from == "dc1" && l.to == "dc2")
        .unwrap();
    assert_eq!(dc1_dc2.one_way, Duration::from_millis(5));
    assert!(
        bed.set_rtt("dc1", "dc1", Duration::ZERO).is_err(),
        "a site to itself"
    );
    assert!(
        bed.set_rtt("dc1", "dc9", Duration::ZERO).is_err(),
        "an unknown site"
    );
}

#[test]
fn traffic_inside_a_site_and_from_ops_is_not_delayed() {
    let mut bed = bed(&["dc1", "dc2"], 10);
    let echo = start_echo(&mut bed, "dc1");
    for from in ["dc1", "ops"] {
        let report = probe(&bed, from, echo, &MEASURE);
        assert_eq!(report.received, report.sent);
        let p50 = ms(report.percentile_us(50.0));
        assert!(
            p50 < 5.0,
            "{from} -> dc1 p50 {p50} ms: should not pay the WAN"
        );
    }
}

#[test]
fn a_partition_cuts_a_site_off_from_other_sites_but_not_from_ops() {
    let mut bed = bed(&["dc1", "dc2"], 10);
    let echo1 = start_echo(&mut bed, "dc1");
    let echo2 = start_echo(&mut bed, "dc2");
    assert_round_trips(&probe(&bed, "dc1", echo2, &MEASURE), 10);

    bed.partition("dc2").unwrap();
    assert_eq!(
        probe(&bed, "dc1", echo2, &CUT).received,
        0,
        "dc1 -> dc2 crosses a partition"
    );
    assert_eq!(
        probe(&bed, "dc2", echo1, &CUT).received,
        0,
        "dc2 -> dc1 crosses a partition"
    );
    let from_ops = probe(
        &bed,
        "ops",
        echo2,
        &Probe {
            count: 5,
            ..MEASURE
        },
    );
    assert_eq!(
        from_ops.received, 5,
        "ops must still reach a partitioned site"
    );
    wait_for_counters(&bed, |c| c.dropped_partition >= 10);

    bed.isolate("dc2").unwrap();
    assert_eq!(
        probe(&bed, "ops", echo2, &CUT).received,
        0,
        "ops reaches an isolated site"
    );

    bed.heal("dc2").unwrap();
    assert!(bed.partitioned().is_empty());
    assert_round_trips(
        &probe(
            &bed,
            "dc1",
            echo2,
            &Probe {
                warmup_ms: 0,
                ..MEASURE
            },
        ),
        10,
    );
    assert_round_trips(
        &probe(
            &bed,
            "dc2",
            echo1,
            &Probe {
                warmup_ms: 0,
                ..MEASURE
            },
        ),
        10,
    );
}

#[test]
fn loss_of_one_drops_every_packet_between_sites() {
    let mut bed = bed_with(BedSpec {
        loss: 1.0,
        ..BedSpec::new(["dc1", "dc2"], Duration::ZERO)
    });
    let echo = start_echo(&mut bed, "dc2");
    let cut = probe(&bed, "dc1", echo, &Probe { count: 20, ..CUT });
    assert_eq!(cut.received, 0, "loss 1.0 let a packet through");
    // Ops is not lossy; it sees the echo server is up.
    assert_eq!(
        probe(
            &bed,
            "ops",
            echo,
            &Probe {
                count: 5,
                ..MEASURE
            }
        )
        .received,
        5
    );
    wait_for_counters(&bed, |c| c.dropped_loss >= 20);

    bed.set_loss("dc1", "dc2", 0.0).unwrap();
    let healed = probe(
        &bed,
        "dc1",
        echo,
        &Probe {
            warmup_ms: 0,
            ..MEASURE
        },
    );
    assert_eq!(healed.received, healed.sent);
}

#[test]
fn a_dead_emulator_stops_traffic_instead_of_letting_it_through_undelayed() {
    let mut bed = bed(&["dc1", "dc2"], 10);
    let echo = start_echo(&mut bed, "dc2");
    assert_round_trips(&probe(&bed, "dc1", echo, &MEASURE), 10);
    let pid = bed.emulator_pid().expect("emulator running");
    let killed = Command::new("sh")
        .args(["-c", &format!("kill -9 {pid}")])
        .status()
        .unwrap();
    assert!(killed.success());
    // The TUN (and the route to it) goes with the process; the blackhole under it remains.
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::metadata(format!("/proc/{pid}/ns")).is_ok() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        probe(&bed, "dc1", echo, &CUT).received,
        0,
        "traffic bypassed a dead emulator"
    );
    assert_eq!(
        probe(&bed, "ops", echo, &CUT).received,
        0,
        "ops bypassed a dead emulator"
    );
    assert!(
        bed.partition("dc2").is_err(),
        "changing a bed whose emulator is dead"
    );
}

/// What a bed had, to check after it is gone. Another test may create a bed with the same id
/// (and so the same names) the moment this one is gone: namespaces are followed by inode and
/// the root link by ifindex, not by name alone.
#[derive(Default, Clone)]
struct Footprint {
    /// Name and inode of each namespace.
    netns: Vec<(String, u64)>,
    /// Name and ifindex of the root-namespace link.
    ops_link: (String, String),
    pids: Vec<u32>,
    subnet: String,
}

impl Footprint {
    /// Records a live bed's namespaces (by name) and root link.
    fn of(id: u8, netns: &[String], pids: Vec<u32>) -> Self {
        let netns = netns
            .iter()
            .map(|ns| {
                (
                    ns.clone(),
                    fs::metadata(format!("/run/netns/{ns}")).unwrap().ino(),
                )
            })
            .collect();
        let link = format!("cnb{id}-ops");
        let ifindex = fs::read_to_string(format!("/sys/class/net/{link}/ifindex")).unwrap();
        Self {
            netns,
            ops_link: (link, ifindex),
            pids,
            subnet: format!("10.{}.0.", 200 + u32::from(id)),
        }
    }
}

fn netns_list() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_gone(footprint: &Footprint) {
    for (ns, ino) in &footprint.netns {
        let same = fs::metadata(format!("/run/netns/{ns}")).is_ok_and(|m| m.ino() == *ino);
        assert!(!same, "namespace {ns} remains");
    }
    let (link, ifindex) = &footprint.ops_link;
    match fs::read_to_string(format!("/sys/class/net/{link}/ifindex")) {
        Ok(now) => assert_ne!(&now, ifindex, "{link} remains in the root namespace"),
        Err(_) => {
            let routes = Command::new("ip").args(["route"]).output().unwrap();
            let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
            assert!(
                !routes.contains(&footprint.subnet),
                "a route remains: {routes}"
            );
        }
    }
    for pid in &footprint.pids {
        let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            state.is_empty() || state.contains(") Z"),
            "process {pid} survived: {state}"
        );
    }
    // Nothing the bed started runs any more, tracked or not (the stray's grandchild included).
    let inodes: Vec<String> = footprint
        .netns
        .iter()
        .map(|(_, i)| format!("net:[{i}]"))
        .collect();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let in_bed = fs::read_link(entry.path().join("ns/net"))
            .is_ok_and(|l| inodes.contains(&l.to_string_lossy().into_owned()));
        let ours = fs::read(entry.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x00600\x00");
        assert!(
            !(in_bed && ours),
            "process {:?} still runs in the bed",
            entry.file_name()
        );
    }
}

#[test]
fn dropping_a_bed_removes_its_namespaces_link_and_processes_even_in_a_panic() {
    require_root();
    let seen = Arc::new(Mutex::new(Footprint::default()));
    let stray_child: Arc<Mutex<Option<std::process::Child>>> = Arc::new(Mutex::new(None));
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        let mut bed = bed(&["dc1", "dc2"], 10);
        let mut tracked = bed.command("dc1", "sleep");
        tracked.arg("600");
        let tracked = bed.spawn("dc1", tracked).unwrap();
        // Not tracked, and with a grandchild: only the namespace sweep finds these.
        let stray = bed
            .command("dc2", "sh")
            .args(["-c", "sleep 600 & sleep 600"])
            .spawn()
            .unwrap();
        let mut netns: Vec<String> = ["dc1", "dc2"]
            .iter()
            .map(|s| bed.netns(s).unwrap().to_owned())
            .collect();
        netns.push(format!("cnb{}-wan", bed.id()));
        let pids = vec![tracked, stray.id(), bed.emulator_pid().unwrap()];
        *seen.lock().unwrap() = Footprint::of(bed.id(), &netns, pids);
        *stray_child.lock().unwrap() = Some(stray);
        assert!(netns_list().contains(bed.netns("dc1").unwrap()));
        panic!("a test failing while it holds a bed");
    }));
    assert!(panicked.is_err());
    let footprint = seen.lock().unwrap().clone();
    // The stray is our child: reap it, then nothing of the bed may remain.
    let stray = stray_child.lock().unwrap().take().unwrap().wait().unwrap();
    assert!(
        !stray.success(),
        "the stray shell was killed, it did not finish: {stray}"
    );
    assert_gone(&footprint);
}

#[test]
fn beds_created_at_once_get_distinct_ids_and_subnets() {
    require_root();
    const BEDS: usize = 3;
    let barrier = Arc::new(Barrier::new(BEDS));
    let beds: Vec<Bed> = (0..BEDS)
        .map(|_| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                bed(&["dc1"], 10)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("creating a bed"))
        .collect();
    let mut ids: Vec<u8> = beds.iter().map(Bed::id).collect();
    let mut subnets: Vec<String> = beds.iter().map(Bed::subnet).collect();
    let ips: Vec<_> = beds.iter().map(|b| b.site_ip("dc1")).collect();
    println!("ids {ids:?} subnets {subnets:?} dc1 addresses {ips:?}");
    ids.sort_unstable();
    ids.dedup();
    subnets.sort();
    subnets.dedup();
    assert_eq!((ids.len(), subnets.len()), (BEDS, BEDS));
}

/// Removes a persistent bed even if the test fails half-way.
struct Down(String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(BIN).args(["down", "--name", &self.0]).output();
    }
}

fn cli(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "cairn-netbed {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cli_probe(name: &str, from: &str, to: &str, how: &Probe) -> ProbeReport {
    let out = cli(&[
        "exec",
        "--name",
        name,
        from,
        "--",
        BIN,
        "probe",
        "--to",
        to,
        "--count",
        &how.count.to_string(),
        "--timeout-ms",
        &how.timeout_ms.to_string(),
        "--warmup-ms",
        &how.warmup_ms.to_string(),
        "--interval-ms",
        "2",
    ]);
    let report: ProbeReport = serde_json::from_str(&out).unwrap();
    println!("cli {name} {from} -> {}", report.summary());
    report
}

#[test]
fn the_cli_brings_a_named_bed_up_changes_it_and_takes_it_down() {
    require_root();
    let name = format!("test-cli-{}", std::process::id());
    let _down = Down(name.clone());
    let up = cli(&[
        "up", "--name", &name, "--sites", "dc1,dc2", "--rtt-ms", "20",
    ]);
    println!("{up}");
    let state: BedState =
        serde_json::from_slice(&fs::read(format!("/run/cairn-netbed/{name}.json")).unwrap())
            .unwrap();
    let dc2 = state.sites.iter().find(|s| s.name == "dc2").unwrap();
    assert!(cli(&["list"]).contains(&name));
    let to = format!("{}:{ECHO_PORT}", dc2.ip);

    // A persistent bed outlives its creator; the echo server is our child, run through `exec`.
    let mut echo = Command::new(BIN)
        .args([
            "exec", "--name", &name, "dc2", "--", BIN, "echo", "--bind", &to,
        ])
        .spawn()
        .unwrap();
    assert_round_trips(&cli_probe(&name, "dc1", &to, &MEASURE), 20);
    cli(&["set", "--name", &name, "--rtt-ms", "30"]);
    assert_round_trips(&cli_probe(&name, "dc1", &to, &MEASURE), 30);
    cli(&["partition", "--name", &name, "dc2"]);
    assert_eq!(cli_probe(&name, "dc1", &to, &CUT).received, 0);
    assert_eq!(
        cli_probe(
            &name,
            "ops",
            &to,
            &Probe {
                count: 5,
                ..MEASURE
            }
        )
        .received,
        5
    );
    cli(&["heal", "--name", &name, "dc2"]);
    assert_eq!(
        cli_probe(&name, "dc1", &to, &MEASURE).received,
        MEASURE.count
    );
    let status = cli(&["status", "--name", &name]);
    assert!(status.contains("dc1 -> dc2: one way 15.000 ms"), "{status}");

    let mut netns: Vec<String> = state.sites.iter().filter_map(|s| s.netns.clone()).collect();
    netns.push(format!("cnb{}-wan", state.id));
    let footprint = Footprint::of(state.id, &netns, vec![state.wan_pid]);
    cli(&["down", "--name", &name]);
    let _ = echo.wait();
    assert_gone(&footprint);
    assert!(!fs::exists(format!("/run/cairn-netbed/{name}.json")).unwrap());
}

/// Run by `gc_removes_the_bed_of_a_process_that_died` in a child process: makes a bed, prints
/// its id and emulator pid, and waits to be killed.
#[test]
#[ignore = "a helper, run in a child process by gc_removes_the_bed_of_a_process_that_died"]
fn helper_make_a_bed_and_wait_to_be_killed() {
    if std::env::var_os("CAIRN_NETBED_HELPER").is_none() {
        return;
    }
    let bed = bed(&["dc1"], 10);
    println!("BED {} {}", bed.id(), bed.emulator_pid().unwrap());
    thread::sleep(Duration::from_secs(600));
}

#[test]
fn gc_removes_the_bed_of_a_process_that_died() {
    require_root();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_make_a_bed_and_wait_to_be_killed",
            "--nocapture",
        ])
        .env("CAIRN_NETBED_HELPER", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (id, wan_pid) = loop {
        let line = lines.next().expect("the helper printed its bed").unwrap();
        if let Some(rest) = line.strip_prefix("BED ") {
            let mut words = rest.split_whitespace().map(|w| w.parse::<u32>().unwrap());
            break (words.next().unwrap(), words.next().unwrap());
        }
    };
    let netns = [format!("cnb{id}-dc1"), format!("cnb{id}-wan")];
    let footprint = Footprint::of(id as u8, &netns, vec![wan_pid]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(still_named(&footprint), "the bed outlives its dead owner");
    // Its emulator notices the owner is gone and exits by itself.
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::metadata(format!("/proc/{wan_pid}")).is_ok() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        fs::metadata(format!("/proc/{wan_pid}")).is_err(),
        "the emulator outlived its owner"
    );
    // Another test's create may be collecting it at the same moment (gc then skips the id):
    // wait for the outcome, not for this call.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let report = cairn_netbed::gc().unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        if !still_named(&footprint) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gc left the namespaces of bed {id}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_gone(&footprint);
}

/// Whether any namespace of the footprint still exists (same name, same inode).
fn still_named(footprint: &Footprint) -> bool {
    footprint
        .netns
        .iter()
        .any(|(ns, ino)| fs::metadata(format!("/run/netns/{ns}")).is_ok_and(|m| m.ino() == *ino))
}
