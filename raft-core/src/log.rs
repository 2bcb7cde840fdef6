//! The log as the core sees it: the durable part in [`Storage`] plus the unstable tail (entries
//! and possibly a snapshot) that has been handed out in a [`crate::Ready`] but not yet
//! acknowledged as persisted.

use crate::error::StorageError;
use crate::storage::{Storage, limit_size};
use crate::types::{Entry, LogIndex, Snapshot, Term};

/// Entries and a snapshot that are not yet known to be persisted.
#[derive(Debug, Default)]
struct Unstable {
    /// A snapshot received from the leader, to be installed.
    snapshot: Option<Snapshot>,
    /// `entries[i]` has log index `offset + i`.
    entries: Vec<Entry>,
    /// Invariant: with a snapshot, `offset == snapshot index + 1`.
    offset: LogIndex,
}

impl Unstable {
    fn last_index(&self) -> Option<LogIndex> {
        match self.entries.last() {
            Some(entry) => Some(entry.index),
            None => self.snapshot.as_ref().map(|s| s.metadata.index),
        }
    }

    fn term(&self, index: LogIndex) -> Option<Term> {
        if index < self.offset {
            return self
                .snapshot
                .as_ref()
                .filter(|s| s.metadata.index == index)
                .map(|s| s.metadata.term);
        }
        self.entries
            .get((index.0 - self.offset.0) as usize)
            .map(|entry| entry.term)
    }

    fn truncate_and_append(&mut self, entries: &[Entry]) {
        let after = entries[0].index;
        let end = LogIndex(self.offset.0 + self.entries.len() as u64);
        if after == end {
            // The common case: a plain append.
        } else if after <= self.offset {
            // Replaces the whole unstable tail (and shadows the stored entries from `after` on;
            // the application truncates them when it appends).
            self.offset = after;
            self.entries.clear();
        } else {
            self.entries.truncate((after.0 - self.offset.0) as usize);
        }
        self.entries.extend_from_slice(entries);
    }
}

/// The log: storage plus the unstable tail, with the commit and apply positions.
#[derive(Debug)]
pub(crate) struct RaftLog<S> {
    pub(crate) storage: S,
    unstable: Unstable,
    /// The highest index known to be committed.
    pub(crate) committed: LogIndex,
    /// The highest index the application has applied.
    pub(crate) applied: LogIndex,
}

/// Storage failures other than "compacted" or "unavailable" leave the replica unable to go on
/// safely; the core stops rather than guess (etcd does the same).
fn fatal(error: StorageError) -> ! {
    panic!("raft-core: storage failed: {error}")
}

impl<S: Storage> RaftLog<S> {
    pub(crate) fn new(storage: S, committed: LogIndex, applied: LogIndex) -> Self {
        let last = storage.last_index().unwrap_or_else(|e| fatal(e));
        let first = storage.first_index().unwrap_or_else(|e| fatal(e));
        assert!(
            committed <= last,
            "persisted commit {committed} beyond the last index {last}"
        );
        // Entries below the first index are covered by the snapshot, hence applied.
        let applied = applied.max(first.prev()).min(committed);
        Self {
            storage,
            unstable: Unstable {
                snapshot: None,
                entries: Vec::new(),
                offset: last.next(),
            },
            committed,
            applied,
        }
    }

    pub(crate) fn first_index(&self) -> LogIndex {
        match &self.unstable.snapshot {
            Some(snapshot) => snapshot.metadata.index.next(),
            None => self.storage.first_index().unwrap_or_else(|e| fatal(e)),
        }
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        match self.unstable.last_index() {
            Some(index) => index,
            None => self.storage.last_index().unwrap_or_else(|e| fatal(e)),
        }
    }

    /// The term at `index`, or `None` when the index is compacted or beyond the end.
    pub(crate) fn term(&self, index: LogIndex) -> Option<Term> {
        // The entry before the first one is the snapshot's; its term stays known.
        if index < self.first_index().prev() || index > self.last_index() {
            return None;
        }
        if let Some(term) = self.unstable.term(index) {
            return Some(term);
        }
        match self.storage.term(index) {
            Ok(term) => Some(term),
            Err(StorageError::Compacted | StorageError::Unavailable) => None,
            Err(e) => fatal(e),
        }
    }

    pub(crate) fn last_term(&self) -> Term {
        // Invariant: the last index always has a known term (an entry or the snapshot).
        self.term(self.last_index()).unwrap_or_default()
    }

    pub(crate) fn match_term(&self, index: LogIndex, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// §5.4.1: a candidate's log is at least as up to date as ours.
    pub(crate) fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        let our_term = self.last_term();
        last_term > our_term || (last_term == our_term && last_index >= self.last_index())
    }

    /// The first entry of `entries` that conflicts with (or is missing from) our log, or `None`
    /// when our log already holds all of them.
    fn find_conflict(&self, entries: &[Entry]) -> Option<LogIndex> {
        entries
            .iter()
            .find(|entry| !self.match_term(entry.index, entry.term))
            .map(|entry| entry.index)
    }

    /// The largest index at or below `index` whose term is at most `term`, with that term: where
    /// the leader should probe next after a rejection (fast backtracking).
    pub(crate) fn find_conflict_by_term(&self, index: LogIndex, term: Term) -> (LogIndex, Term) {
        let mut index = index.min(self.last_index());
        loop {
            match self.term(index) {
                Some(t) if t > term => index = index.prev(),
                Some(t) => return (index, t),
                None => return (index, Term::ZERO),
            }
        }
    }

    /// Appends entries the leader sent after `(prev_index, prev_term)`, truncating a conflicting
    /// suffix (§5.3). Returns the last index now known to match the leader, or `None` when
    /// `(prev_index, prev_term)` does not match our log.
    pub(crate) fn maybe_append(
        &mut self,
        prev_index: LogIndex,
        prev_term: Term,
        leader_commit: LogIndex,
        entries: &[Entry],
    ) -> Option<LogIndex> {
        if !self.match_term(prev_index, prev_term) {
            return None;
        }
        let last_new = LogIndex(prev_index.0 + entries.len() as u64);
        if let Some(conflict) = self.find_conflict(entries) {
            assert!(
                conflict > self.committed,
                "entry {conflict} conflicts with the committed prefix (commit {})",
                self.committed
            );
            let start = (conflict.0 - prev_index.0 - 1) as usize;
            self.unstable.truncate_and_append(&entries[start..]);
        }
        // Only what the leader has shown us to match can be committed here.
        self.commit_to(leader_commit.min(last_new));
        Some(last_new)
    }

    /// Appends entries as the leader. Returns the new last index.
    pub(crate) fn append(&mut self, entries: &[Entry]) -> LogIndex {
        if let Some(first) = entries.first() {
            assert!(
                first.index > self.committed,
                "append at {} below commit",
                first.index
            );
            self.unstable.truncate_and_append(entries);
        }
        self.last_index()
    }

    pub(crate) fn commit_to(&mut self, index: LogIndex) {
        if index > self.committed {
            assert!(
                index <= self.last_index(),
                "commit {index} beyond the last index {}",
                self.last_index()
            );
            self.committed = index;
        }
    }

    /// Commits `index` if it is an entry of `term` (§5.4.2: a leader only commits entries of its
    /// own term by counting replicas).
    pub(crate) fn maybe_commit(&mut self, index: LogIndex, term: Term) -> bool {
        if index > self.committed && self.term(index) == Some(term) {
            self.commit_to(index);
            return true;
        }
        false
    }

    /// Entries in `low..high`, at most `max_bytes` (but at least one). `Err(Compacted)` when
    /// `low` is no longer in the log.
    pub(crate) fn slice(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        if low >= high {
            return Ok(Vec::new());
        }
        if low < self.first_index() {
            return Err(StorageError::Compacted);
        }
        assert!(
            high <= self.last_index().next(),
            "slice {low}..{high} beyond the log"
        );
        let mut out = Vec::new();
        let offset = self.unstable.offset;
        if low < offset {
            let stored_high = high.min(offset);
            out = match self.storage.entries(low, stored_high, max_bytes) {
                Ok(entries) => entries,
                Err(StorageError::Compacted) => return Err(StorageError::Compacted),
                Err(e) => fatal(e),
            };
            // Storage stopped early at the size limit: do not add unstable entries after a gap.
            if (out.len() as u64) < stored_high.0 - low.0 {
                return Ok(out);
            }
        }
        if high > offset {
            let from = (low.max(offset).0 - offset.0) as usize;
            let to = (high.0 - offset.0) as usize;
            out.extend_from_slice(&self.unstable.entries[from..to]);
        }
        Ok(limit_size(&out, max_bytes).to_vec())
    }

    /// Entries from `low` to the end, at most `max_bytes`.
    pub(crate) fn entries_from(
        &self,
        low: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        self.slice(low, self.last_index().next(), max_bytes)
    }

    pub(crate) fn unstable_entries(&self) -> &[Entry] {
        &self.unstable.entries
    }

    pub(crate) fn unstable_snapshot(&self) -> Option<&Snapshot> {
        self.unstable.snapshot.as_ref()
    }

    pub(crate) fn has_next_committed_entries(&self) -> bool {
        // Committed entries covered by a snapshot still to be installed are applied through it.
        self.unstable.snapshot.is_none() && self.committed > self.applied
    }

    pub(crate) fn next_committed_entries(&self, max_bytes: u64) -> Vec<Entry> {
        if !self.has_next_committed_entries() {
            return Vec::new();
        }
        match self.slice(self.applied.next(), self.committed.next(), max_bytes) {
            Ok(entries) => entries,
            // Unreachable: applied >= first_index - 1 always holds (compaction only drops
            // applied entries, and a snapshot moves applied along with it).
            Err(e) => fatal(e),
        }
    }

    /// Replaces the log with a snapshot from the leader.
    pub(crate) fn restore(&mut self, snapshot: Snapshot) {
        let index = snapshot.metadata.index;
        self.committed = index;
        self.unstable = Unstable {
            snapshot: Some(snapshot),
            entries: Vec::new(),
            offset: index.next(),
        };
    }

    /// The application persisted the entries up to `(index, term)`.
    pub(crate) fn stable_to(&mut self, index: LogIndex, term: Term) {
        // Skip when the entry was replaced meanwhile (a new leader truncated it): the new one is
        // not persisted yet.
        if index >= self.unstable.offset && self.unstable.term(index) == Some(term) {
            let count = (index.0 - self.unstable.offset.0 + 1) as usize;
            self.unstable.entries.drain(..count);
            self.unstable.offset = index.next();
        }
    }

    /// The application installed the snapshot at `index`.
    pub(crate) fn stable_snapshot_to(&mut self, index: LogIndex) {
        if self
            .unstable
            .snapshot
            .as_ref()
            .is_some_and(|s| s.metadata.index == index)
        {
            self.unstable.snapshot = None;
            self.applied = self.applied.max(index);
        }
    }

    pub(crate) fn applied_to(&mut self, index: LogIndex) {
        if index > self.applied {
            assert!(
                index <= self.committed,
                "applied {index} beyond commit {}",
                self.committed
            );
            self.applied = index;
        }
    }

    /// The snapshot to send to a follower that needs compacted entries.
    pub(crate) fn snapshot(&self) -> Result<Snapshot, StorageError> {
        match &self.unstable.snapshot {
            Some(snapshot) => Ok(snapshot.clone()),
            None => self.storage.snapshot(),
        }
    }
}
