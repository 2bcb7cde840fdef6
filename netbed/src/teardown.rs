//! Removing what a bed made, best effort, step by step: used by a bed's own teardown and by
//! `gc` for beds whose owner died. Each failed step is reported and the next one still runs.

use std::thread;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::ip::{link_exists, netns_list, netns_pids, run_ip};
use crate::plan::ops_link;
use crate::proc::signal;

/// How long processes in a bed's namespaces get to die after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(3);

/// Kills every process inside `netns`, deletes the root-namespace veth of bed `id` (its peer and
/// the route through it go with it) and deletes the namespaces (their links go with them).
/// Returns the steps that failed.
pub(crate) fn remove_resources(id: u8, netns: &[String]) -> Vec<String> {
    let mut errors = Vec::new();
    kill_netns_processes(netns, &mut errors);
    let link = ops_link(id);
    if link_exists(&link)
        && let Err(e) = run_ip(&["link", "del", &link])
    {
        errors.push(e.to_string());
    }
    for ns in netns {
        if let Err(e) = run_ip(&["netns", "del", ns])
            && netns_list().is_ok_and(|all| all.contains(ns))
        {
            errors.push(e.to_string());
        }
    }
    errors
}

/// SIGKILLs whatever runs inside the namespaces (a namespace with a process in it outlives
/// `ip netns del`, and keeps its links), until none is left or the wait runs out.
fn kill_netns_processes(netns: &[String], errors: &mut Vec<String>) {
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let pids: Vec<u32> = netns.iter().flat_map(|ns| netns_pids(ns)).collect();
        if pids.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            errors.push(format!("processes {pids:?} survived SIGKILL in {netns:?}"));
            return;
        }
        for pid in pids {
            if let Err(e) = signal(pid, Signal::KILL) {
                errors.push(format!("killing {pid}: {e}"));
            }
        }
        thread::sleep(Duration::from_millis(10));
    }
}
