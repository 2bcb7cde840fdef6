//! A bed: the namespaces, links and routes of some sites, the WAN emulator between them, and the
//! processes started in them; torn down when dropped.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::error::Error;
use crate::ip::{command_line, run, run_ip, run_ip_in};
use crate::lock::{
    BedKind, BedState, IdLock, IdPaths, LockRecord, SiteState, allocate, gc, remove_state_files,
    state_path,
};
use crate::plan::{OPS, Plan, SITE_LINK, TUN_NAME, WAN_TABLE};
use crate::proc::{ProcessId, euid, signal};
use crate::spec::{BedSpec, validate_loss, validate_rtt};
use crate::teardown::remove_resources;
use crate::wan_config::{
    LinkConfig, LinkTable, Partition, WanConfig, WanCounters, WanStatus, read_json,
    write_json_atomic,
};

/// How long the emulator gets to come up (create its TUN, route to it, report).
const EMULATOR_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the emulator gets to put a new config in force after SIGHUP.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the emulator gets to print its counters and exit after SIGTERM.
const EMULATOR_STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a CLI command waits for another one working on the same persistent bed.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);
/// Packets the emulator holds per (from, to) pair, and in all.
const PAIR_QUEUE_MAX_PACKETS: usize = 4_096;
const QUEUE_MAX_PACKETS: usize = 65_536;
/// Bed names (persistent beds): short, file-name safe.
const BED_NAME_MAX_CHARS: usize = 32;

/// A multi-site network on this machine: one network namespace per site, all joined through a
/// WAN namespace whose emulator delays, drops and partitions traffic between sites.
///
/// The caller's own namespace is the pseudo-site "ops": it reaches every site directly (no delay
/// unless [`BedSpec::ops_rtt`] says so), also a partitioned one unless [`Bed::isolate`] cut it.
///
/// Dropping a bed made by [`Bed::create`] kills the processes it spawned and its emulator,
/// deletes its namespaces and links and frees its id, also while a test panics. A bed from
/// [`Bed::create_persistent`] or [`Bed::attach`] stays up when dropped; [`Bed::down`] removes it.
#[derive(Debug)]
pub struct Bed {
    plan: Plan,
    /// Namespace of each site by index (`None` for ops).
    netns: Vec<Option<String>>,
    config: WanConfig,
    paths: IdPaths,
    lock: Option<IdLock>,
    emulator: Option<Emulator>,
    children: BTreeMap<u32, Child>,
    /// Whether dropping the bed tears it down.
    owned: bool,
    /// Set once teardown ran: it runs at most once.
    torn_down: bool,
    name: Option<String>,
}

#[derive(Debug)]
struct Emulator {
    process: Option<ProcessId>,
    /// Present when this process started it (not for an attached persistent bed).
    child: Option<Child>,
}

/// One direction between two sites, as configured now.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkState {
    /// The sending site.
    pub from: String,
    /// The receiving site.
    pub to: String,
    /// How long each packet is held.
    pub one_way: Duration,
    /// Probability that a packet is dropped.
    pub loss: f64,
}

impl Bed {
    /// Builds a bed and starts its emulator. Fails with [`Error::NotRoot`] unless root, and with
    /// [`Error::NetnsUnavailable`] where namespaces cannot be made. Beds left by dead processes
    /// are garbage-collected first.
    pub fn create(spec: BedSpec) -> Result<Self, Error> {
        Self::create_inner(&spec, None)
    }

    /// Builds a bed that outlives this process: its state goes to `/run/cairn-netbed/NAME.json`
    /// and it stays up until [`Bed::down`] (from this handle or from [`Bed::attach`]).
    pub fn create_persistent(spec: BedSpec, name: &str) -> Result<Self, Error> {
        validate_bed_name(name)?;
        Self::create_inner(&spec, Some(name))
    }

    /// Takes hold of the running persistent bed `name` (waiting for another command that holds
    /// it). Dropping the handle leaves the bed up.
    pub fn attach(name: &str) -> Result<Self, Error> {
        validate_bed_name(name)?;
        let not_found = |reason: String| Error::BedNotFound {
            name: name.to_owned(),
            reason,
        };
        let state: BedState = read_json(&state_path(name)).map_err(|e| not_found(e.to_string()))?;
        let lock = IdLock::acquire_within(state.id, ATTACH_TIMEOUT)?;
        let record = lock
            .record()
            .ok_or_else(|| not_found("its id is free".into()))?;
        let is_it = record.kind
            == BedKind::Persistent {
                name: name.to_owned(),
            };
        if !is_it || !record.owner.alive() {
            return Err(not_found(
                "its emulator is not running (`cairn-netbed gc` removes what is left)".into(),
            ));
        }
        let paths = IdPaths::of(state.id);
        let config = WanConfig::load(&paths.config)?;
        let plan = Plan::new(state.id, record.sites);
        Ok(Self {
            netns: netns_by_index(&plan),
            plan,
            config,
            paths,
            lock: Some(lock),
            emulator: Some(Emulator {
                process: Some(record.owner),
                child: None,
            }),
            children: BTreeMap::new(),
            owned: false,
            torn_down: false,
            name: Some(name.to_owned()),
        })
    }

    fn create_inner(spec: &BedSpec, name: Option<&str>) -> Result<Self, Error> {
        spec.validate()?;
        preflight()?;
        let bin = find_binary(spec.netbed_bin.as_deref())?;
        // Best effort: a bed that cannot be collected now is retried at the next create.
        let _ = gc();
        if let Some(name) = name
            && state_path(name).exists()
        {
            return Err(Error::AlreadyUp(name.to_owned()));
        }
        let lock = allocate(LockRecord {
            id: 0,
            kind: BedKind::Library,
            owner: ProcessId::current(),
            sites: spec.sites.clone(),
        })?;
        let plan = Plan::new(lock.id, spec.sites.clone());
        let paths = IdPaths::of(lock.id);
        // A library bed's emulator follows its owner out; a persistent one runs until `down`.
        let owner = name.is_none().then(ProcessId::current);
        let config = initial_config(&plan, spec, &paths, owner);
        // From here on, dropping `bed` on an error undoes whatever was built.
        let mut bed = Self {
            netns: netns_by_index(&plan),
            plan,
            config,
            paths,
            lock: Some(lock),
            emulator: None,
            children: BTreeMap::new(),
            owned: true,
            torn_down: false,
            name: None,
        };
        bed.build_network(&bin)?;
        bed.start_emulator(&bin)?;
        if let Some(name) = name {
            bed.persist(name)?;
        }
        Ok(bed)
    }

    /// Namespaces, veths, addresses, routes, sysctls and the policy rules of the WAN namespace.
    fn build_network(&self, bin: &Path) -> Result<(), Error> {
        let plan = &self.plan;
        let wan = plan.wan_netns();
        for ns in plan.all_netns() {
            run_ip(&["netns", "add", &ns])?;
            run_ip_in(&ns, &["link", "set", "lo", "up"])?;
        }
        // Links are created with both ends already in place, so no name ever clashes in the
        // root namespace (only `cnbID-ops` lives there).
        let ops_link = plan.ops_link();
        let to_ops = Plan::wan_link(OPS);
        run_ip(&[
            "link", "add", &ops_link, "type", "veth", "peer", "name", &to_ops, "netns", &wan,
        ])?;
        for site in &plan.sites {
            let (ns, to_site) = (plan.site_netns(site), Plan::wan_link(site));
            run_ip(&[
                "link", "add", SITE_LINK, "netns", &ns, "type", "veth", "peer", "name", &to_site,
                "netns", &wan,
            ])?;
        }

        // Forwarding on; reverse-path filtering off (a packet written back into the TUN has a
        // source routed via another link); no redirects; no IPv6 chatter.
        let ipv6 = Path::new("/proc/sys/net/ipv6").exists();
        let mut wan_sysctls = vec!["net.ipv4.ip_forward=1".to_owned()];
        let wan_links: Vec<String> = plan.names().iter().map(|s| Plan::wan_link(s)).collect();
        for conf in ["all", "default"]
            .iter()
            .map(|s| s.to_string())
            .chain(wan_links.clone())
        {
            wan_sysctls.push(format!("net.ipv4.conf.{conf}.rp_filter=0"));
            wan_sysctls.push(format!("net.ipv4.conf.{conf}.send_redirects=0"));
            if ipv6 {
                wan_sysctls.push(format!("net.ipv6.conf.{conf}.disable_ipv6=1"));
            }
        }
        sysctl_in(bin, &wan, &wan_sysctls)?;
        if ipv6 {
            let site_sysctls: Vec<String> = ["all", "default", SITE_LINK]
                .iter()
                .map(|c| format!("net.ipv6.conf.{c}.disable_ipv6=1"))
                .collect();
            for site in &plan.sites {
                sysctl_in(bin, &plan.site_netns(site), &site_sysctls)?;
            }
            crate::ip::write_sysctl(&format!("net.ipv6.conf.{ops_link}.disable_ipv6"), "1")?;
        }

        let (ops_ip, ops_gw) = (plan.host_ip(0), plan.gateway_ip(0));
        run_ip(&["addr", "add", &format!("{ops_ip}/24"), "dev", &ops_link])?;
        run_ip(&["link", "set", &ops_link, "up"])?;
        run_ip_in(
            &wan,
            &["addr", "add", &format!("{ops_gw}/24"), "dev", &to_ops],
        )?;
        run_ip_in(&wan, &["link", "set", &to_ops, "up"])?;
        run_ip(&[
            "route",
            "add",
            &plan.subnet(),
            "via",
            &ops_gw.to_string(),
            "dev",
            &ops_link,
        ])?;
        for (k, site) in plan.sites.iter().enumerate() {
            let index = k + 1;
            let (ns, to_site) = (plan.site_netns(site), Plan::wan_link(site));
            let (host, gw) = (plan.host_ip(index), plan.gateway_ip(index));
            run_ip_in(
                &ns,
                &["addr", "add", &format!("{host}/24"), "dev", SITE_LINK],
            )?;
            run_ip_in(&ns, &["link", "set", SITE_LINK, "up"])?;
            run_ip_in(&ns, &["route", "add", "default", "via", &gw.to_string()])?;
            run_ip_in(&wan, &["addr", "add", &format!("{gw}/24"), "dev", &to_site])?;
            run_ip_in(&wan, &["link", "set", &to_site, "up"])?;
        }

        // Everything arriving from a site or ops goes to the emulator's table. Its default
        // route is the TUN (added by the emulator); under it sits a blackhole, so when the
        // emulator is gone traffic stops instead of flowing undelayed.
        for link in &wan_links {
            run_ip_in(
                &wan,
                &[
                    "rule", "add", "iif", link, "lookup", WAN_TABLE, "pref", "100",
                ],
            )?;
        }
        run_ip_in(
            &wan,
            &[
                "route",
                "add",
                "blackhole",
                "default",
                "table",
                WAN_TABLE,
                "metric",
                "4294967295",
            ],
        )?;
        Ok(())
    }

    fn start_emulator(&mut self, bin: &Path) -> Result<(), Error> {
        write_json_atomic(&self.paths.config, &self.config)?;
        crate::lock::remove_file_if_exists(&self.paths.status);
        let log = File::create(&self.paths.log)
            .map_err(|e| Error::io(format!("creating {}", self.paths.log.display()), e))?;
        let log_too = log
            .try_clone()
            .map_err(|e| Error::io("duplicating the emulator log", e))?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.plan.wan_netns()])
            .arg(bin)
            .arg("wan")
            .arg("--config")
            .arg(&self.paths.config)
            .stdin(Stdio::null())
            .stdout(log_too)
            .stderr(log)
            // Its own process group: a Ctrl-C meant for the test run must not skip teardown's
            // orderly SIGTERM (and a persistent bed's emulator must outlive the terminal).
            .process_group(0);
        let child = command
            .spawn()
            .map_err(|e| Error::io(format!("starting `{}`", command_line(&command)), e))?;
        let process = ProcessId::of(child.id());
        self.emulator = Some(Emulator {
            process,
            child: Some(child),
        });
        self.wait_for_generation(self.config.generation, EMULATOR_START_TIMEOUT)
    }

    /// Waits until the emulator reports `generation` in force.
    fn wait_for_generation(&mut self, generation: u64, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let status: Option<WanStatus> = read_json(&self.paths.status).ok();
            if status.as_ref().is_some_and(|s| s.generation >= generation) {
                return Ok(());
            }
            if !self.emulator_alive() {
                return Err(self.emulator_error("exited".into()));
            }
            if Instant::now() >= deadline {
                let why = status
                    .and_then(|s| s.error)
                    .unwrap_or_else(|| "no report".into());
                return Err(self.emulator_error(format!(
                    "generation {generation} not in force after {timeout:?}: {why}"
                )));
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    fn emulator_alive(&mut self) -> bool {
        match &mut self.emulator {
            None => false,
            Some(Emulator {
                child: Some(child), ..
            }) => matches!(child.try_wait(), Ok(None)),
            Some(Emulator {
                process,
                child: None,
            }) => process.is_some_and(|p| p.alive()),
        }
    }

    fn emulator_error(&self, what: String) -> Error {
        let log = fs::read_to_string(&self.paths.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Error::Emulator {
            message: format!("{what}; last log lines: {}", tail.join(" | ")),
            log: self.paths.log.clone(),
        }
    }

    /// Turns a freshly built bed into a persistent one (state file, record naming the emulator).
    fn persist(&mut self, name: &str) -> Result<(), Error> {
        let path = state_path(name);
        let emulator = self.emulator.as_ref().and_then(|e| e.process);
        let emulator = emulator.ok_or_else(|| self.emulator_error("exited".into()))?;
        let text = serde_json::to_vec_pretty(&self.state_as(name, emulator.pid))
            .expect("serializing plain data cannot fail");
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyUp(name.to_owned()));
            }
            Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
        };
        file.write_all(&text)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        // From now on the bed belongs to its emulator, not to this process.
        self.name = Some(name.to_owned());
        let record = LockRecord {
            id: self.plan.id,
            kind: BedKind::Persistent {
                name: name.to_owned(),
            },
            owner: emulator,
            sites: self.plan.sites.clone(),
        };
        self.lock
            .as_ref()
            .expect("a live bed holds its lock")
            .write_record(Some(&record))?;
        self.owned = false;
        Ok(())
    }

    fn state_as(&self, name: &str, wan_pid: u32) -> BedState {
        BedState {
            name: name.to_owned(),
            id: self.plan.id,
            sites: self
                .plan
                .names()
                .iter()
                .enumerate()
                .map(|(index, site)| SiteState {
                    name: site.clone(),
                    ip: self.plan.host_ip(index),
                    netns: self.netns[index].clone(),
                })
                .collect(),
            wan_pid,
            wan_log: self.paths.log.clone(),
        }
    }

    /// The bed's id: its namespaces are `cnbID-SITE`, its subnet `10.(200+ID).0.0/16`.
    pub fn id(&self) -> u8 {
        self.plan.id
    }

    /// The name of a persistent bed.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The real sites, in order (without "ops").
    pub fn sites(&self) -> Vec<&str> {
        self.plan.sites.iter().map(String::as_str).collect()
    }

    /// The bed's subnet, `10.(200+ID).0.0/16`.
    pub fn subnet(&self) -> String {
        self.plan.subnet()
    }

    /// The address processes in `site` bind (and are reached at). "ops" is the caller's
    /// address on the bed. Panics on a site the bed does not have.
    pub fn site_ip(&self, site: &str) -> IpAddr {
        IpAddr::V4(self.site_ipv4(site))
    }

    fn site_ipv4(&self, site: &str) -> Ipv4Addr {
        self.plan.host_ip(self.index_or_panic(site))
    }

    /// The network namespace of `site`; `None` for "ops" (the caller's own namespace).
    /// Panics on a site the bed does not have.
    pub fn netns(&self, site: &str) -> Option<&str> {
        self.netns[self.index_or_panic(site)].as_deref()
    }

    fn index_or_panic(&self, site: &str) -> usize {
        self.plan.index(site).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A command that runs `program` inside `site`: `ip netns exec NETNS program` (for "ops",
    /// `program` itself). Add arguments, then run it, or hand it to [`Bed::spawn`].
    pub fn command(&self, site: &str, program: impl AsRef<OsStr>) -> Command {
        match self.netns(site) {
            None => Command::new(program),
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns]).arg(program);
                command
            }
        }
    }

    /// Starts `command` (made by [`Bed::command`] for the same site) and tracks it: it is
    /// SIGKILLed when the bed is dropped. Returns its pid (that of the program itself:
    /// `ip netns exec` execs it).
    pub fn spawn(&mut self, site: &str, mut command: Command) -> Result<u32, Error> {
        if let Some(ns) = self.netns(site) {
            let args: Vec<&OsStr> = command.get_args().take(3).collect();
            let for_site = command.get_program() == "ip"
                && args == [OsStr::new("netns"), OsStr::new("exec"), OsStr::new(ns)];
            if !for_site {
                return Err(Error::InvalidSpec(format!(
                    "`{}` does not run in {site}: build it with Bed::command({site:?}, ..)",
                    command_line(&command)
                )));
            }
        }
        let child = command
            .spawn()
            .map_err(|e| Error::io(format!("starting `{}`", command_line(&command)), e))?;
        let pid = child.id();
        self.children.insert(pid, child);
        Ok(pid)
    }

    /// SIGKILLs a process started with [`Bed::spawn`] (a crash, not a shutdown) and reaps it.
    pub fn kill(&mut self, pid: u32) -> Result<(), Error> {
        let mut child = self.children.remove(&pid).ok_or(Error::NotTracked(pid))?;
        // An error here means it already exited; reaping it below is all that is left.
        let _ = child.kill();
        child
            .wait()
            .map_err(|e| Error::io(format!("reaping {pid}"), e))?;
        Ok(())
    }

    /// The pids of the processes started with [`Bed::spawn`] that were not killed.
    pub fn tracked(&self) -> Vec<u32> {
        self.children.keys().copied().collect()
    }

    /// Sets the round trip between sites `a` and `b` (half each way); either may be "ops".
    /// In force for every packet the emulator reads after this returns.
    pub fn set_rtt(&mut self, a: &str, b: &str, rtt: Duration) -> Result<(), Error> {
        validate_rtt(rtt)?;
        let (a, b) = self.pair(a, b)?;
        let there = u64::try_from(rtt.as_micros() / 2).expect("bounded by RTT_MAX");
        let back = u64::try_from(rtt.as_micros()).expect("bounded by RTT_MAX") - there;
        self.apply(|config| {
            link_of(config, &a, &b).delay_us = there;
            link_of(config, &b, &a).delay_us = back;
        })
    }

    /// Sets the probability (0..=1) that a packet between `a` and `b` is lost, each direction.
    pub fn set_loss(&mut self, a: &str, b: &str, loss: f64) -> Result<(), Error> {
        validate_loss(loss)?;
        let (a, b) = self.pair(a, b)?;
        self.apply(|config| {
            link_of(config, &a, &b).loss = loss;
            link_of(config, &b, &a).loss = loss;
        })
    }

    /// Cuts `site` off from every other site, both ways, including packets already in flight.
    /// Ops still reaches it (tests inspect cut-off sites); [`Bed::isolate`] cuts ops off too.
    pub fn partition(&mut self, site: &str) -> Result<(), Error> {
        self.cut(site, false)
    }

    /// Cuts `site` off from every other site and from ops.
    pub fn isolate(&mut self, site: &str) -> Result<(), Error> {
        self.cut(site, true)
    }

    /// Ends a partition or isolation of `site`.
    pub fn heal(&mut self, site: &str) -> Result<(), Error> {
        self.plan.index(site)?;
        self.apply(|config| config.partitioned.retain(|p| p.site != site))
    }

    fn cut(&mut self, site: &str, include_ops: bool) -> Result<(), Error> {
        if self.plan.index(site)? == 0 {
            return Err(Error::InvalidSpec("ops cannot be partitioned".into()));
        }
        self.apply(|config| {
            config.partitioned.retain(|p| p.site != site);
            config.partitioned.push(Partition {
                site: site.to_owned(),
                include_ops,
            });
        })
    }

    fn pair(&self, a: &str, b: &str) -> Result<(String, String), Error> {
        if self.plan.index(a)? == self.plan.index(b)? {
            return Err(Error::InvalidSpec(format!(
                "{a} to itself: traffic inside a site never crosses the WAN"
            )));
        }
        Ok((a.to_owned(), b.to_owned()))
    }

    /// Changes the emulator's config and waits until it is in force. Validates first: a
    /// refused change leaves the bed as it was.
    fn apply(&mut self, change: impl FnOnce(&mut WanConfig)) -> Result<(), Error> {
        let mut next = self.config.clone();
        change(&mut next);
        next.generation += 1;
        LinkTable::compile(&next).map_err(Error::InvalidSpec)?;
        write_json_atomic(&self.paths.config, &next)?;
        let pid = self
            .emulator
            .as_ref()
            .and_then(|e| e.process)
            .map(|p| p.pid);
        let Some(pid) = pid.filter(|_| self.emulator_alive()) else {
            return Err(self.emulator_error("not running".into()));
        };
        signal(pid, Signal::HUP).map_err(|e| Error::io(format!("signalling emulator {pid}"), e))?;
        self.wait_for_generation(next.generation, RELOAD_TIMEOUT)?;
        self.config = next;
        Ok(())
    }

    /// Every direction between two sites, as configured now.
    pub fn links(&self) -> Vec<LinkState> {
        self.config
            .links
            .iter()
            .map(|l| LinkState {
                from: l.from.clone(),
                to: l.to.clone(),
                one_way: Duration::from_micros(l.delay_us),
                loss: l.loss,
            })
            .collect()
    }

    /// The partitioned sites, each with whether ops is cut off too.
    pub fn partitioned(&self) -> Vec<(String, bool)> {
        self.config
            .partitioned
            .iter()
            .map(|p| (p.site.clone(), p.include_ops))
            .collect()
    }

    /// The emulator's counters, as of its last report (at most ~200 ms old).
    pub fn counters(&self) -> Result<WanCounters, Error> {
        read_json::<WanStatus>(&self.paths.status).map(|s| s.counters)
    }

    /// The emulator's log (its standard error; the counters are printed there on exit).
    pub fn emulator_log(&self) -> &Path {
        &self.paths.log
    }

    /// The emulator's pid, while it runs.
    pub fn emulator_pid(&self) -> Option<u32> {
        self.emulator
            .as_ref()
            .and_then(|e| e.process)
            .map(|p| p.pid)
    }

    /// What `cairn-netbed up` writes for a persistent bed (for any bed, under `name`).
    pub fn state(&self) -> BedState {
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("cnb{}", self.plan.id));
        self.state_as(&name, self.emulator_pid().unwrap_or(0))
    }

    /// Tears the bed down now (also a persistent one), reporting every step that failed.
    pub fn down(mut self) -> Result<(), Error> {
        let errors = self.teardown();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Teardown(errors))
        }
    }

    /// Kills tracked processes and the emulator, removes namespaces, links and files, frees the
    /// id. Best effort: every step runs even if an earlier one failed. Never panics.
    fn teardown(&mut self) -> Vec<String> {
        if self.torn_down {
            return Vec::new();
        }
        self.torn_down = true;
        self.owned = false;
        let mut errors = Vec::new();
        self.kill_children();
        self.stop_emulator(&mut errors);
        errors.extend(remove_resources(self.plan.id, &self.plan.all_netns()));
        remove_state_files(self.plan.id);
        if let Some(name) = &self.name {
            crate::lock::remove_file_if_exists(&state_path(name));
        }
        if let Some(lock) = self.lock.take()
            && let Err(e) = lock.write_record(None)
        {
            errors.push(e.to_string());
        }
        errors
    }

    fn kill_children(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (the emulator prints its counters), then SIGKILL if it lingers.
    fn stop_emulator(&mut self, errors: &mut Vec<String>) {
        let Some(Emulator { process, mut child }) = self.emulator.take() else {
            return;
        };
        let Some(process) = process else { return };
        let gone = |child: &mut Option<Child>| match child {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => !process.alive(),
        };
        for (sig, wait) in [
            (Signal::TERM, EMULATOR_STOP_TIMEOUT),
            (Signal::KILL, EMULATOR_STOP_TIMEOUT),
        ] {
            if gone(&mut child) {
                return;
            }
            if let Err(e) = signal(process.pid, sig) {
                errors.push(format!("signalling emulator {}: {e}", process.pid));
            }
            let deadline = Instant::now() + wait;
            while !gone(&mut child) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
        }
        if !gone(&mut child) {
            errors.push(format!("emulator {} survived SIGKILL", process.pid));
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.kill_children();
        if self.owned {
            for error in self.teardown() {
                eprintln!("cairn-netbed: teardown of bed {}: {error}", self.plan.id);
            }
        }
    }
}

fn link_of<'c>(config: &'c mut WanConfig, from: &str, to: &str) -> &'c mut LinkConfig {
    config
        .link_mut(from, to)
        .expect("the config holds every ordered pair of sites")
}

fn netns_by_index(plan: &Plan) -> Vec<Option<String>> {
    let mut netns = vec![None];
    netns.extend(plan.sites.iter().map(|s| Some(plan.site_netns(s))));
    netns
}

/// The emulator's first config: every ordered pair of distinct sites, ops included.
fn initial_config(
    plan: &Plan,
    spec: &BedSpec,
    paths: &IdPaths,
    owner: Option<ProcessId>,
) -> WanConfig {
    let names = plan.names();
    let mut links = Vec::new();
    for from in &names {
        for to in names.iter().filter(|&t| t != from) {
            let ops = from == OPS || to == OPS;
            let rtt = if ops { spec.ops_rtt } else { spec.rtt };
            let rtt_us = u64::try_from(rtt.as_micros()).expect("bounded by RTT_MAX");
            // The lower-named end takes the odd microsecond, so the two add up to the rtt.
            let delay_us = if from < to {
                rtt_us / 2
            } else {
                rtt_us - rtt_us / 2
            };
            links.push(LinkConfig {
                from: from.clone(),
                to: to.clone(),
                delay_us,
                loss: if ops { 0.0 } else { spec.loss },
            });
        }
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    WanConfig {
        generation: 1,
        octet: plan.octet(),
        tun: TUN_NAME.to_owned(),
        table: WAN_TABLE.to_owned(),
        status_path: paths.status.clone(),
        owner,
        seed,
        pair_queue_max_packets: PAIR_QUEUE_MAX_PACKETS,
        queue_max_packets: QUEUE_MAX_PACKETS,
        sites: names,
        links,
        partitioned: Vec::new(),
    }
}

/// Runs `cairn-netbed sysctl KEY=VALUE...` inside `netns`: /proc/sys/net is per namespace.
fn sysctl_in(bin: &Path, netns: &str, settings: &[String]) -> Result<(), Error> {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", netns])
        .arg(bin)
        .arg("sysctl")
        .args(settings);
    run(&mut command).map(drop)
}

/// Root, and namespaces that work: checked up front for a clear error.
fn preflight() -> Result<(), Error> {
    let uid = euid();
    if uid != 0 {
        return Err(Error::NotRoot { uid });
    }
    if !Path::new("/proc/self/ns/net").exists() {
        return Err(Error::NetnsUnavailable(
            "no /proc/self/ns/net (CONFIG_NET_NS off?)".into(),
        ));
    }
    run_ip(&["netns", "list"]).map_err(|e| Error::NetnsUnavailable(e.to_string()))?;
    Ok(())
}

/// Finds the `cairn-netbed` binary (see [`BedSpec::netbed_bin`]).
fn find_binary(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    const NAME: &str = "cairn-netbed";
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = explicit {
        candidates.push(path.to_owned());
    } else {
        if let Some(path) = std::env::var_os("CAIRN_NETBED_BIN") {
            candidates.push(path.into());
        }
        if let Ok(exe) = std::env::current_exe() {
            if exe.file_name().is_some_and(|n| n == NAME) {
                candidates.push(exe.clone());
            }
            // Test binaries live in target/DEBUG/deps, the binary in target/DEBUG.
            for dir in exe.ancestors().skip(1).take(2) {
                candidates.push(dir.join(NAME));
            }
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path).map(|dir| dir.join(NAME)));
        }
    }
    candidates
        .iter()
        .find(|c| c.is_file())
        .map(|c| c.canonicalize().unwrap_or_else(|_| c.clone()))
        .ok_or_else(|| Error::BinaryNotFound {
            looked: candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn validate_bed_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= BED_NAME_MAX_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "bed name {name:?}: use 1..={BED_NAME_MAX_CHARS} of a-z, A-Z, 0-9, '-', '_'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_config_splits_each_round_trip_and_spares_ops() {
        let plan = Plan::new(3, vec!["dc1".into(), "dc2".into()]);
        let spec = BedSpec {
            loss: 0.1,
            ..BedSpec::new(["dc1", "dc2"], Duration::from_micros(10_001))
        };
        let config = initial_config(&plan, &spec, &IdPaths::of(3), None);
        assert_eq!(config.links.len(), 6);
        let there = config.link("dc1", "dc2").unwrap();
        let back = config.link("dc2", "dc1").unwrap();
        assert_eq!(there.delay_us + back.delay_us, 10_001);
        assert_eq!(there.loss, 0.1);
        let ops = config.link("ops", "dc2").unwrap();
        assert_eq!((ops.delay_us, ops.loss), (0, 0.0));
        LinkTable::compile(&config).unwrap();
    }

    #[test]
    fn bed_names_are_checked() {
        validate_bed_name("test-1_a").unwrap();
        for bad in ["", "-x", "a/b", "a.json", &"x".repeat(33)] {
            assert!(validate_bed_name(bad).is_err(), "{bad:?}");
        }
    }
}
