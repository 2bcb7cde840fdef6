//! Read-only access to the durable log, and an in-memory implementation for tests.
//!
//! The core only ever *reads* storage. Everything it wants written leaves through
//! [`crate::Ready`]; the application writes it and then calls [`crate::RawNode::advance`].

use crate::error::StorageError;
use crate::types::{ConfState, Entry, HardState, LogIndex, Snapshot, SnapshotMetadata, Term};

/// What a node needs to restart: its persistent state and the configuration it had applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitialState {
    /// The persisted term, vote and commit index.
    pub hard_state: HardState,
    /// The configuration as of the applied index given in [`crate::Config::applied`] (or of the
    /// latest snapshot when nothing after it was applied).
    pub conf_state: ConfState,
}

/// The durable log as the core sees it: entries after the last snapshot, that snapshot, and the
/// persisted state.
///
/// Contract: the log holds entries `first_index()..=last_index()`; `first_index() - 1` is the
/// index of the latest snapshot (or 0), and `term(first_index() - 1)` must answer its term.
/// Implementations must return [`StorageError::Compacted`] for indexes below that and
/// [`StorageError::Unavailable`] for indexes above `last_index()`.
pub trait Storage {
    /// The persisted state to start from.
    fn initial_state(&self) -> Result<InitialState, StorageError>;

    /// Entries in `low..high`, stopping early once their total size exceeds `max_bytes` (at least
    /// one entry is always returned when the range is not empty).
    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError>;

    /// The term of the entry at `index`; answers for `first_index() - 1` too.
    fn term(&self, index: LogIndex) -> Result<Term, StorageError>;

    /// The index of the first entry still in the log.
    fn first_index(&self) -> Result<LogIndex, StorageError>;

    /// The index of the last entry in the log (the snapshot index when the log is empty).
    fn last_index(&self) -> Result<LogIndex, StorageError>;

    /// The latest snapshot. [`StorageError::SnapshotTemporarilyUnavailable`] asks the core to try
    /// again later (the application is still building one).
    fn snapshot(&self) -> Result<Snapshot, StorageError>;
}

/// An in-memory [`Storage`] for tests, examples and the simulator.
///
/// Its mutating methods are what an application does with a [`crate::Ready`]: append entries, set
/// the hard state, apply a snapshot; plus the log-compaction API (`create_snapshot`, `compact`).
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    // entries[i] has log index snapshot.metadata.index + 1 + i.
    entries: Vec<Entry>,
}

impl MemStorage {
    /// Empty storage for a node that is part of the initial configuration `conf_state`.
    pub fn new_with_conf_state(conf_state: ConfState) -> Self {
        Self {
            snapshot: Snapshot {
                metadata: SnapshotMetadata {
                    conf_state: conf_state.clone(),
                    ..SnapshotMetadata::default()
                },
                data: Vec::new(),
            },
            conf_state,
            ..Self::default()
        }
    }

    fn offset(&self) -> LogIndex {
        self.snapshot.metadata.index
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Persists the hard state.
    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    /// Persists the configuration the application has applied.
    pub fn set_conf_state(&mut self, conf_state: ConfState) {
        self.conf_state = conf_state;
    }

    /// Appends entries, truncating any conflicting suffix first. The first entry must be at most
    /// `last_index() + 1` and after the snapshot.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let offset = self.offset();
        assert!(
            first.index > offset,
            "append at {} overlaps the snapshot at {offset}",
            first.index
        );
        let last = LogIndex(offset.0 + self.entries.len() as u64);
        assert!(
            first.index.0 <= last.0 + 1,
            "append at {} leaves a gap after {last}",
            first.index
        );
        self.entries
            .truncate((first.index.0 - offset.0 - 1) as usize);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Replaces the whole log with a snapshot received from the leader.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        if snapshot.metadata.index < self.offset() {
            return Err(StorageError::SnapshotOutOfDate);
        }
        self.hard_state.commit = self.hard_state.commit.max(snapshot.metadata.index);
        if self.hard_state.term < snapshot.metadata.term {
            self.hard_state.term = snapshot.metadata.term;
        }
        self.conf_state = snapshot.metadata.conf_state.clone();
        self.snapshot = snapshot;
        self.entries.clear();
        Ok(())
    }

    /// The log-compaction API: records the application's snapshot of its state at `index`
    /// (which it has applied) and drops the entries the snapshot covers. A follower that later
    /// needs those entries is sent the snapshot instead.
    pub fn compact(
        &mut self,
        index: LogIndex,
        conf_state: ConfState,
        data: Vec<u8>,
    ) -> Result<(), StorageError> {
        let offset = self.offset();
        if index <= offset {
            return Err(StorageError::Compacted);
        }
        let last = self.last_index()?;
        if index > last {
            return Err(StorageError::Unavailable);
        }
        let term = self.term(index)?;
        self.entries.drain(..(index.0 - offset.0) as usize);
        self.snapshot = Snapshot {
            metadata: SnapshotMetadata {
                index,
                term,
                conf_state,
            },
            data,
        };
        Ok(())
    }

    /// The persisted configuration.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// All entries still in the log.
    pub fn all_entries(&self) -> &[Entry] {
        &self.entries
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        Ok(InitialState {
            hard_state: self.hard_state,
            conf_state: self.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let offset = self.offset();
        if low <= offset {
            return Err(StorageError::Compacted);
        }
        if high.0 > offset.0 + self.entries.len() as u64 + 1 {
            return Err(StorageError::Unavailable);
        }
        let from = (low.0 - offset.0 - 1) as usize;
        let to = (high.0 - offset.0 - 1) as usize;
        Ok(limit_size(&self.entries[from..to], max_bytes).to_vec())
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        let offset = self.offset();
        if index == offset {
            return Ok(self.snapshot.metadata.term);
        }
        if index < offset {
            return Err(StorageError::Compacted);
        }
        self.entries
            .get((index.0 - offset.0 - 1) as usize)
            .map(|entry| entry.term)
            .ok_or(StorageError::Unavailable)
    }

    fn first_index(&self) -> Result<LogIndex, StorageError> {
        Ok(self.offset().next())
    }

    fn last_index(&self) -> Result<LogIndex, StorageError> {
        Ok(LogIndex(self.offset().0 + self.entries.len() as u64))
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Ok(self.snapshot.clone())
    }
}

/// The longest prefix of `entries` whose size stays within `max_bytes`, but never empty when
/// `entries` is not.
pub(crate) fn limit_size(entries: &[Entry], max_bytes: u64) -> &[Entry] {
    let mut total = 0u64;
    for (i, entry) in entries.iter().enumerate() {
        total += entry.size_bytes();
        if total > max_bytes && i > 0 {
            return &entries[..i];
        }
    }
    entries
}
