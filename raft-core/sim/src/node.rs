//! One simulated replica: a real [`RawNode`] over [`MemStorage`] (the "disk"), the real key-value
//! state machine, and the bookkeeping that turns applied entries and read states into answers
//! for clients.
//!
//! A crash drops everything but the storage: the unstable log tail inside the `RawNode`, the
//! in-memory state machine, and pending requests. That is exactly "loses everything not yet
//! persisted through Ready".

use std::collections::BTreeMap;

use raft_core::{
    ConfState, Config, Entry, EntryPayload, Error, LogIndex, MemStorage, Message, RawNode, Role,
    Storage, Term,
};

use crate::kv::{Command, Kv, WriteResult};

/// The answer to a client request, produced when a node applies or confirms it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The write took effect.
    WriteDone {
        /// The client operation.
        op_id: u64,
        /// What it did.
        result: WriteResult,
    },
    /// The write definitely did not take effect (another entry was committed at its index).
    WriteFailed {
        /// The client operation.
        op_id: u64,
    },
    /// A linearizable read was served.
    ReadDone {
        /// The client operation.
        op_id: u64,
        /// The value read.
        value: Option<u64>,
    },
    /// The read could not be confirmed (leadership lost).
    ReadFailed {
        /// The client operation.
        op_id: u64,
    },
}

impl Answer {
    /// The operation it answers.
    pub fn op_id(&self) -> u64 {
        match self {
            Self::WriteDone { op_id, .. }
            | Self::WriteFailed { op_id }
            | Self::ReadDone { op_id, .. }
            | Self::ReadFailed { op_id } => *op_id,
        }
    }
}

/// A read waiting for confirmation or for its index to be applied.
#[derive(Clone, Debug)]
struct PendingRead {
    op_id: u64,
    key: String,
    /// Set once the core confirmed the read.
    index: Option<LogIndex>,
}

/// Everything a processed `Ready` produced that the rest of the simulation needs.
#[derive(Debug, Default)]
pub struct ReadyOutput {
    /// Messages to put on the network.
    pub messages: Vec<Message>,
    /// Answers to clients.
    pub answers: Vec<Answer>,
    /// Entries applied, in order.
    pub applied: Vec<Entry>,
    /// A snapshot installed at this index (the entries up to it were applied through it).
    pub snapshot_installed: Option<(LogIndex, Term)>,
    /// This node became leader in this term.
    pub became_leader: Option<Term>,
    /// A committed configuration change that the core refused to apply (a bug).
    pub conf_change_errors: Vec<String>,
}

/// A running replica.
pub struct SimNode {
    /// The core.
    pub raw: RawNode<MemStorage>,
    /// The applied state machine.
    pub kv: Kv,
    /// The configuration as of the applied index.
    pub conf: ConfState,
    /// The last applied index.
    pub applied: LogIndex,
    /// Proposals made here, by log index: `(term, op_id)`.
    proposals: BTreeMap<LogIndex, (Term, u64)>,
    reads: BTreeMap<u64, PendingRead>,
}

impl SimNode {
    /// Starts a replica from its storage ("disk"): the state machine is rebuilt from the latest
    /// snapshot and the core replays the committed entries after it.
    pub fn start(config: Config, mut storage: MemStorage) -> Result<Self, Error> {
        let snapshot = storage.snapshot()?;
        let conf = snapshot.metadata.conf_state.clone();
        // The configuration handed to the core must be the one as of the applied index.
        storage.set_conf_state(conf.clone());
        let applied = snapshot.metadata.index;
        let config = Config { applied, ..config };
        Ok(Self {
            raw: RawNode::new(config, storage)?,
            kv: Kv::decode(&snapshot.data),
            conf,
            applied,
            proposals: BTreeMap::new(),
            reads: BTreeMap::new(),
        })
    }

    /// Proposes a client write. On success the answer comes when the entry is applied.
    pub fn propose(&mut self, command: &Command) -> Result<(), Error> {
        let position = self.raw.propose(command.encode())?;
        // A proposal of ours already waiting at this index was truncated by this node's new term:
        // it can never commit.
        self.proposals
            .insert(position.last_index, (position.term, command.op_id));
        Ok(())
    }

    /// Asks for a linearizable read of `key`.
    pub fn read(&mut self, context: u64, op_id: u64, key: String) -> Result<(), Error> {
        self.raw.read_index(context)?;
        self.reads.insert(
            context,
            PendingRead {
                op_id,
                key,
                index: None,
            },
        );
        Ok(())
    }

    /// Makes a snapshot of the applied state and compacts the log up to it.
    pub fn compact(&mut self) {
        let snapshot_index = self
            .raw
            .storage()
            .first_index()
            .map_or(LogIndex::ZERO, |i| i.prev());
        if self.applied <= snapshot_index {
            return;
        }
        let data = self.kv.encode();
        let (applied, conf) = (self.applied, self.conf.clone());
        self.raw
            .storage_mut()
            .compact(applied, conf, data)
            .expect("applied entries are stored");
    }

    /// Whether this node leads.
    pub fn is_leader(&self) -> bool {
        self.raw.role() == Role::Leader
    }

    /// Handles one `Ready`: persist, then send, then apply, then advance.
    pub fn process_ready(&mut self) -> ReadyOutput {
        let mut out = ReadyOutput::default();
        if !self.raw.has_ready() {
            return out;
        }
        let mut ready = self.raw.ready();
        if let Some(soft) = ready.soft_state
            && soft.role == Role::Leader
        {
            let term = ready
                .hard_state
                .map_or_else(|| self.raw.status().hard_state.term, |hs| hs.term);
            out.became_leader = Some(term);
        }

        // 1. Persist.
        let storage = self.raw.storage_mut();
        if let Some(snapshot) = ready.snapshot.clone() {
            storage
                .apply_snapshot(snapshot)
                .expect("the core only hands out newer snapshots");
        }
        storage
            .append(&ready.entries)
            .expect("the core hands out contiguous entries");
        if let Some(hard_state) = ready.hard_state {
            storage.set_hard_state(hard_state);
        }

        // 2. Send (the cluster puts them on the network after this returns).
        out.messages = std::mem::take(&mut ready.messages);

        // 3. Apply.
        if let Some(snapshot) = &ready.snapshot {
            let meta = &snapshot.metadata;
            self.kv = Kv::decode(&snapshot.data);
            self.conf = meta.conf_state.clone();
            self.applied = meta.index;
            out.snapshot_installed = Some((meta.index, meta.term));
            // Proposals the snapshot covers have unknown fate here; their clients time out.
            self.proposals = self.proposals.split_off(&meta.index.next());
        }
        for entry in &ready.committed_entries {
            self.apply_entry(entry, &mut out);
        }
        for read in &ready.read_states {
            if let Some(pending) = self.reads.get_mut(&read.context) {
                pending.index = Some(read.index);
            }
        }
        for context in &ready.dropped_reads {
            if let Some(pending) = self.reads.remove(context) {
                out.answers.push(Answer::ReadFailed {
                    op_id: pending.op_id,
                });
            }
        }
        self.serve_reads(&mut out);

        // 4. Advance.
        self.raw.advance(ready);
        out
    }

    fn apply_entry(&mut self, entry: &Entry, out: &mut ReadyOutput) {
        assert_eq!(
            entry.index,
            self.applied.next(),
            "entries are applied in order without gaps"
        );
        let mut result = None;
        match &entry.payload {
            EntryPayload::Normal(data) => {
                if let Some(command) = Command::decode(data) {
                    result = Some((command.op_id, self.kv.apply(&command.write)));
                }
            }
            EntryPayload::ConfChange(change) => match self.raw.apply_conf_change(change) {
                Ok(conf) => {
                    self.conf = conf.clone();
                    self.raw.storage_mut().set_conf_state(conf);
                }
                Err(e) => out
                    .conf_change_errors
                    .push(format!("at {}: {e}", entry.index)),
            },
            EntryPayload::Empty => {}
        }
        self.applied = entry.index;
        out.applied.push(entry.clone());
        // Answer the proposal made here for this index, if any.
        if let Some((term, op_id)) = self.proposals.remove(&entry.index) {
            match result {
                Some((applied_op, write_result)) if term == entry.term && applied_op == op_id => {
                    out.answers.push(Answer::WriteDone {
                        op_id,
                        result: write_result,
                    });
                }
                _ => out.answers.push(Answer::WriteFailed { op_id }),
            }
        }
    }

    fn serve_reads(&mut self, out: &mut ReadyOutput) {
        let applied = self.applied;
        let ready: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, read)| read.index.is_some_and(|index| index <= applied))
            .map(|(context, _)| *context)
            .collect();
        for context in ready {
            let read = self.reads.remove(&context).expect("collected above");
            out.answers.push(Answer::ReadDone {
                op_id: read.op_id,
                value: self.kv.get(&read.key),
            });
        }
    }
}
