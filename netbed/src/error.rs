//! The one error type of the crate: every operating failure (not root, an `ip` command that
//! failed, a site that does not exist, an emulator that would not start) names what failed.

use std::io;
use std::path::PathBuf;

/// What went wrong while building, changing or tearing down a bed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Namespaces, veths and TUN devices need root (CAP_NET_ADMIN and CAP_SYS_ADMIN).
    #[error(
        "cairn-netbed needs root (network namespaces, veths, a TUN device); running as uid {uid}"
    )]
    NotRoot {
        /// The effective uid we run as.
        uid: u32,
    },
    /// The kernel or the `ip` tool cannot make network namespaces here.
    #[error("network namespaces are unavailable: {0}")]
    NetnsUnavailable(String),
    /// The spec, a site name, a bed name or a parameter is out of range.
    #[error("invalid bed spec: {0}")]
    InvalidSpec(String),
    /// No site of that name in this bed.
    #[error("no site {site:?} in this bed (sites: {known})")]
    UnknownSite {
        /// The name asked for.
        site: String,
        /// The names the bed has, comma separated.
        known: String,
    },
    /// Every bed id (0..=49) is held by a live bed.
    #[error("no free bed id: all {0} are in use (see `cairn-netbed list`, `cairn-netbed gc`)")]
    NoFreeId(usize),
    /// An external command (`ip`, the emulator helper) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, as typed in a shell.
        command: String,
        /// Its exit status.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The `cairn-netbed` binary (which runs the WAN emulator) was not found.
    #[error(
        "cannot find the cairn-netbed binary (looked at {looked}); set BedSpec::netbed_bin or CAIRN_NETBED_BIN"
    )]
    BinaryNotFound {
        /// The places tried, comma separated.
        looked: String,
    },
    /// The WAN emulator failed to start, died, or rejected a configuration.
    #[error("WAN emulator: {message} (log: {})", log.display())]
    Emulator {
        /// What happened.
        message: String,
        /// Its log file, which holds its standard error.
        log: PathBuf,
    },
    /// The pid was not spawned through this bed (or was already killed).
    #[error("process {0} is not tracked by this bed")]
    NotTracked(u32),
    /// A persistent bed of that name does not exist or is not running.
    #[error("no running bed named {name:?}: {reason}")]
    BedNotFound {
        /// The name asked for.
        name: String,
        /// Why it is not usable.
        reason: String,
    },
    /// A persistent bed of that name is already up.
    #[error("a bed named {0:?} is already up (`cairn-netbed down --name {0}` first)")]
    AlreadyUp(String),
    /// Teardown finished, but some steps failed (each is listed).
    #[error("teardown left work undone: {}", .0.join("; "))]
    Teardown(Vec<String>),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
