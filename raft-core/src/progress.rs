//! What the leader knows about each follower's log, and the flow control of appends to it.
//!
//! ```text
//!            +--------------------------------------------------------+
//!            |                  send snapshot                         |
//!            |                                                        |
//!  +---------+----------+                                  +----------v---------+
//!  |       Probe        |  <------------------------------ |      Snapshot      |
//!  +---------+----------+     snapshot installed/failed    +--------------------+
//!            |     ^
//!            |     | append rejected
//!  append    |     |
//!  accepted  v     |
//!  +---------+----------+
//!  |     Replicate      |  pipelined appends, at most `inflight_appends_max` in flight
//!  +--------------------+
//! ```
//!
//! In `Probe` the leader sends one append per heartbeat interval until a follower accepts one; in
//! `Replicate` it streams appends optimistically; in `Snapshot` it waits for the follower to
//! install a snapshot.

use std::collections::VecDeque;

use crate::types::LogIndex;

/// How the leader is currently replicating to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Looking for the point where the logs match: one append at a time.
    Probe,
    /// The logs match up to `matched`: appends are pipelined.
    Replicate,
    /// A snapshot at `pending_index` was sent; waiting for the follower to install it.
    Snapshot {
        /// The index of the snapshot sent.
        pending_index: LogIndex,
    },
}

/// A bounded window of appends sent but not yet acknowledged.
#[derive(Clone, Debug)]
pub(crate) struct Inflights {
    // The last index of each append in flight, in send order.
    last_indexes: VecDeque<LogIndex>,
    capacity: usize,
}

impl Inflights {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            last_indexes: VecDeque::with_capacity(capacity.min(64)),
            capacity,
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.last_indexes.len() >= self.capacity
    }

    pub(crate) fn add(&mut self, last_index: LogIndex) {
        assert!(!self.is_full(), "inflight window overflow");
        self.last_indexes.push_back(last_index);
    }

    /// Frees every append whose last index is at or below `index`.
    pub(crate) fn free_to(&mut self, index: LogIndex) {
        while self.last_indexes.front().is_some_and(|&last| last <= index) {
            self.last_indexes.pop_front();
        }
    }

    pub(crate) fn reset(&mut self) {
        self.last_indexes.clear();
    }
}

/// The leader's view of one follower (or learner).
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    /// The highest index known to match the leader's log.
    pub(crate) matched: LogIndex,
    /// The next index to send.
    pub(crate) next: LogIndex,
    /// The replication state.
    pub(crate) state: ProgressState,
    /// In `Probe`: an append was sent and the leader waits for the answer or the next heartbeat.
    pub(crate) probe_sent: bool,
    /// Heard from within the current check-quorum interval.
    pub(crate) recent_active: bool,
    /// The highest heartbeat round this node acknowledged.
    pub(crate) acked_round: u64,
    /// The follower said it has no configuration at all (it is joining): only a snapshot helps.
    pub(crate) needs_snapshot: bool,
    /// In `Snapshot`: a whole check-quorum interval passed without an answer.
    pub(crate) snapshot_stale: bool,
    /// `matched` when the previous heartbeat response arrived: no progress over a whole
    /// heartbeat round with a full window means the appends in flight were lost.
    pub(crate) matched_at_heartbeat: LogIndex,
    pub(crate) inflights: Inflights,
}

impl Progress {
    pub(crate) fn new(next: LogIndex, inflight_appends_max: usize) -> Self {
        Self {
            matched: LogIndex::ZERO,
            next,
            state: ProgressState::Probe,
            probe_sent: false,
            recent_active: false,
            acked_round: 0,
            needs_snapshot: false,
            snapshot_stale: false,
            matched_at_heartbeat: LogIndex::ZERO,
            inflights: Inflights::new(inflight_appends_max),
        }
    }

    pub(crate) fn become_probe(&mut self) {
        // Coming back from a snapshot, resume after it: the follower has at least that much
        // unless it failed, in which case the rejection brings `next` back down.
        if let ProgressState::Snapshot { pending_index } = self.state {
            self.next = self.matched.max(pending_index).next();
        } else {
            self.next = self.matched.next();
        }
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflights.reset();
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next = self.matched.next();
        self.probe_sent = false;
        self.inflights.reset();
    }

    pub(crate) fn become_snapshot(&mut self, pending_index: LogIndex) {
        self.state = ProgressState::Snapshot { pending_index };
        self.probe_sent = false;
        self.snapshot_stale = false;
        self.inflights.reset();
    }

    /// Whether the leader must hold back appends to this node for now.
    pub(crate) fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.is_full(),
            ProgressState::Snapshot { .. } => true,
        }
    }

    /// Records that an append ending at `last_index` was sent.
    pub(crate) fn sent_append(&mut self, last_index: LogIndex, entry_count: usize) {
        match self.state {
            ProgressState::Replicate => {
                if entry_count > 0 {
                    self.next = last_index.next();
                    self.inflights.add(last_index);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot { .. } => {
                unreachable!("append sent while waiting for a snapshot")
            }
        }
    }

    /// Records an acknowledgement up to `index`. Returns whether it was news (not stale).
    pub(crate) fn maybe_update(&mut self, index: LogIndex) -> bool {
        let updated = self.matched < index;
        if updated {
            self.matched = index;
            self.probe_sent = false;
        }
        self.next = self.next.max(index.next());
        updated
    }

    /// Handles a rejection of the append at `rejected` with the follower's hint of where the
    /// logs may match. Returns whether `next` moved (a stale rejection moves nothing).
    pub(crate) fn maybe_decrease_to(&mut self, rejected: LogIndex, match_hint: LogIndex) -> bool {
        if self.state == ProgressState::Replicate {
            // In Replicate, only the append at `next - 1` can be rejected for real; earlier
            // rejections are stale (duplicated or reordered messages).
            if rejected <= self.matched {
                return false;
            }
            self.next = self.matched.next();
            return true;
        }
        if self.next.prev() != rejected {
            return false;
        }
        self.next = match_hint.next().min(rejected).max(self.matched.next());
        self.probe_sent = false;
        true
    }
}
