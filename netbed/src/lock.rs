//! Bed ids: one exclusive `flock` per id under /run/cairn-netbed/ids, so beds created by threads
//! of one process and by separate processes never share an id (and so never share names or a
//! subnet). flock (not fcntl) locks belong to the open file, so two threads of one process
//! exclude each other too. A lock file is never deleted (that would let two holders lock two
//! different files of one name); releasing a bed truncates it.
//!
//! The file holds a [`LockRecord`]: who owns the bed. A bed made by the library is held locked by
//! its owner for its whole life, so if we can lock an id whose record is a library bed, its owner
//! is gone and whatever it left is garbage. A persistent bed (`cairn-netbed up`) outlives the
//! process that made it: its record names the emulator process, and the bed is live while that
//! process runs.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ip;
use crate::plan::{ID_MAX, prefix};
use crate::proc::ProcessId;
use crate::teardown::remove_resources;

/// Where beds keep their locks, emulator configs, statuses and logs, and persistent beds their
/// state (`NAME.json`).
pub const STATE_DIR: &str = "/run/cairn-netbed";

pub(crate) fn state_dir() -> PathBuf {
    PathBuf::from(STATE_DIR)
}

/// The files of bed `id`.
#[derive(Clone, Debug)]
pub(crate) struct IdPaths {
    pub(crate) lock: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) status: PathBuf,
    pub(crate) log: PathBuf,
}

impl IdPaths {
    pub(crate) fn of(id: u8) -> Self {
        let dir = state_dir().join("ids");
        Self {
            lock: dir.join(format!("{id}.lock")),
            config: dir.join(format!("{id}.wan.json")),
            status: dir.join(format!("{id}.status.json")),
            log: dir.join(format!("{id}.wan.log")),
        }
    }
}

/// Who owns bed `id`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct LockRecord {
    pub(crate) id: u8,
    pub(crate) kind: BedKind,
    /// The creating process (library beds) or the emulator (persistent beds).
    pub(crate) owner: ProcessId,
    pub(crate) sites: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) enum BedKind {
    /// Made by [`Bed::create`](crate::Bed::create), torn down when dropped.
    Library,
    /// Made by `cairn-netbed up --name NAME`, torn down by `down`.
    Persistent { name: String },
}

impl LockRecord {
    /// Whether the bed is live although we could lock its id (only persistent beds are).
    fn live_unlocked(&self) -> bool {
        matches!(self.kind, BedKind::Persistent { .. }) && self.owner.alive()
    }
}

/// An exclusive hold on one bed id; released when dropped (the file is closed).
#[derive(Debug)]
pub(crate) struct IdLock {
    pub(crate) id: u8,
    file: File,
}

impl IdLock {
    /// Locks `id` if no one else holds it.
    pub(crate) fn try_acquire(id: u8) -> Result<Option<Self>, Error> {
        let path = IdPaths::of(id).lock;
        let dir = path.parent().expect("lock files live in a directory");
        fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Self { id, file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(Error::io(format!("locking {}", path.display()), e.into())),
        }
    }

    /// Locks `id`, waiting up to `timeout` for its holder (another CLI command) to let go.
    pub(crate) fn acquire_within(id: u8, timeout: Duration) -> Result<Self, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(lock) = Self::try_acquire(id)? {
                return Ok(lock);
            }
            if Instant::now() >= deadline {
                return Err(Error::io(
                    format!("bed id {id} stayed locked for {timeout:?}"),
                    std::io::ErrorKind::WouldBlock.into(),
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The record in the file; `None` when it is empty (the id is free) or unreadable.
    pub(crate) fn record(&self) -> Option<LockRecord> {
        let mut text = String::new();
        let mut file = &self.file;
        file.seek(SeekFrom::Start(0)).ok()?;
        file.read_to_string(&mut text).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Replaces the record (`None` empties the file: the id is free).
    pub(crate) fn write_record(&self, record: Option<&LockRecord>) -> Result<(), Error> {
        let mut file = &self.file;
        let mut write = || -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            if let Some(record) = record {
                file.write_all(&serde_json::to_vec(record).map_err(std::io::Error::other)?)?;
            }
            file.sync_data()
        };
        write().map_err(|e| Error::io(format!("writing the record of bed id {}", self.id), e))
    }
}

/// Locks the lowest free id, cleaning up after a dead owner if the id it finds has one.
/// The returned lock carries `record` (with its id filled in).
pub(crate) fn allocate(mut record: LockRecord) -> Result<IdLock, Error> {
    for id in 0..=ID_MAX {
        let Some(lock) = IdLock::try_acquire(id)? else {
            continue;
        };
        let previous = lock.record();
        if previous.as_ref().is_some_and(LockRecord::live_unlocked) {
            continue;
        }
        // Stale or empty: clear anything a dead owner (or a crashed gc) left behind.
        let leftovers = netns_of(id, &ip::netns_list()?);
        if previous.is_some()
            || !leftovers.is_empty()
            || ip::link_exists(&crate::plan::ops_link(id))
        {
            let _ = remove_resources(id, &leftovers);
            remove_state_files(id);
        }
        record.id = id;
        lock.write_record(Some(&record))?;
        return Ok(lock);
    }
    Err(Error::NoFreeId(usize::from(ID_MAX) + 1))
}

/// What [`gc`] did.
#[derive(Debug, Default)]
pub struct GcReport {
    /// Ids whose leftovers (namespaces, links, processes, files) were removed.
    pub cleaned: Vec<u8>,
    /// Ids in use by a live bed.
    pub live: Vec<u8>,
    /// Steps that failed, as messages.
    pub errors: Vec<String>,
}

/// Removes every bed whose owner is gone: its processes, namespaces, root link and files.
/// Live beds (held by a running process, or persistent with a running emulator) are left alone.
pub fn gc() -> Result<GcReport, Error> {
    let mut report = GcReport::default();
    let all_netns = ip::netns_list()?;
    for id in 0..=ID_MAX {
        let Some(lock) = IdLock::try_acquire(id)? else {
            report.live.push(id);
            continue;
        };
        let record = lock.record();
        if record.as_ref().is_some_and(LockRecord::live_unlocked) {
            report.live.push(id);
            continue;
        }
        let leftovers = netns_of(id, &all_netns);
        let has_files = state_files_of(id).next().is_some();
        if record.is_none()
            && leftovers.is_empty()
            && !has_files
            && !ip::link_exists(&crate::plan::ops_link(id))
        {
            continue;
        }
        report.errors.extend(remove_resources(id, &leftovers));
        remove_state_files(id);
        if let Err(e) = lock.write_record(None) {
            report.errors.push(e.to_string());
        }
        report.cleaned.push(id);
    }
    Ok(report)
}

/// The namespaces of bed `id` among `all`.
pub(crate) fn netns_of(id: u8, all: &[String]) -> Vec<String> {
    let prefix = prefix(id);
    all.iter()
        .filter(|n| n.starts_with(&prefix))
        .cloned()
        .collect()
}

/// The state of a persistent bed, in `STATE_DIR/NAME.json`: what `cairn-netbed up` printed, for
/// later commands and for tools (the deploy launcher) that read it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BedState {
    /// The bed's name.
    pub name: String,
    /// Its id (namespaces are `cnbID-SITE`, addresses `10.(200+ID).0.0/16`).
    pub id: u8,
    /// Its sites, ops first.
    pub sites: Vec<SiteState>,
    /// The emulator's pid.
    pub wan_pid: u32,
    /// The emulator's log (its standard error).
    pub wan_log: PathBuf,
}

/// One site of a persistent bed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SiteState {
    /// Its name ("ops" for the caller's namespace).
    pub name: String,
    /// The address processes in the site bind.
    pub ip: std::net::Ipv4Addr,
    /// Its network namespace; `None` for ops.
    pub netns: Option<String>,
}

pub(crate) fn state_path(name: &str) -> PathBuf {
    state_dir().join(format!("{name}.json"))
}

/// Every persistent bed's state file that parses.
pub fn persistent_beds() -> Vec<BedState> {
    let Ok(dir) = fs::read_dir(state_dir()) else {
        return Vec::new();
    };
    let mut beds: BTreeMap<String, BedState> = BTreeMap::new();
    for entry in dir.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json")
            && let Ok(state) = crate::wan_config::read_json::<BedState>(&path)
        {
            beds.insert(state.name.clone(), state);
        }
    }
    beds.into_values().collect()
}

fn state_files_of(id: u8) -> impl Iterator<Item = PathBuf> {
    persistent_beds()
        .into_iter()
        .filter(move |b| b.id == id)
        .map(|b| state_path(&b.name))
}

/// Removes the emulator config and status of `id` and any persistent state naming it (the
/// emulator log stays for post-mortems until the id is used again).
pub(crate) fn remove_state_files(id: u8) {
    let paths = IdPaths::of(id);
    for path in state_files_of(id).chain([paths.config, paths.status]) {
        remove_file_if_exists(&path);
    }
}

pub(crate) fn remove_file_if_exists(path: &Path) {
    let _ = fs::remove_file(path);
}

/// Every id's record, for `cairn-netbed list` (ids that are free are left out).
pub(crate) fn records() -> Vec<(u8, bool, LockRecord)> {
    let mut out = Vec::new();
    for id in 0..=ID_MAX {
        let path = IdPaths::of(id).lock;
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let Ok(record) = serde_json::from_str::<LockRecord>(&text) else {
            continue;
        };
        let held = match IdLock::try_acquire(id) {
            Ok(Some(_free)) => record.live_unlocked(),
            _ => true,
        };
        out.push((id, held, record));
    }
    out
}
