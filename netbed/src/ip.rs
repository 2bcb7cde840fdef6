//! Running iproute2's `ip`, and writing sysctls. Every failure names the command and its stderr.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use crate::error::Error;

/// Runs `ip ARGS` and returns its standard output.
pub(crate) fn run_ip(args: &[&str]) -> Result<String, Error> {
    let mut command = Command::new("ip");
    command.args(args);
    run(&mut command)
}

/// Runs `ip -n NETNS ARGS` (ARGS inside the namespace).
pub(crate) fn run_ip_in(netns: &str, args: &[&str]) -> Result<String, Error> {
    let mut all = vec!["-n", netns];
    all.extend_from_slice(args);
    run_ip(&all)
}

/// Runs a command to completion; a non-zero exit is an error carrying its stderr.
pub(crate) fn run(command: &mut Command) -> Result<String, Error> {
    let line = command_line(command);
    let output: Output = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("running `{line}`"), e))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::Command {
            command: line,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// The command as one would type it in a shell (for messages).
pub(crate) fn command_line(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(
        command
            .get_args()
            .map(|a: &OsStr| a.to_string_lossy().into_owned()),
    );
    words.join(" ")
}

/// The names of all network namespaces (`ip netns list`).
pub(crate) fn netns_list() -> Result<Vec<String>, Error> {
    let out = run_ip(&["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// The pids of the processes inside a namespace (`ip netns pids`); empty if it is gone.
pub(crate) fn netns_pids(netns: &str) -> Vec<u32> {
    run_ip(&["netns", "pids", netns])
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a link of this name exists in the caller's namespace.
pub(crate) fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Writes `value` to the sysctl `key` (dotted, as `sysctl` takes it) of the caller's namespace.
///
/// /proc/sys/net belongs to the namespace of the process that opens it, so run inside a
/// namespace (`ip netns exec NS cairn-netbed sysctl ...`) this sets that namespace's value.
pub fn write_sysctl(key: &str, value: &str) -> Result<(), Error> {
    if key.contains('/') || key.contains("..") {
        return Err(Error::InvalidSpec(format!("sysctl key {key:?}")));
    }
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    fs::write(&path, value).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
