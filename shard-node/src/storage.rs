//! The host's one RocksDB instance: every replica's Raft log, hard state and applied state.
//!
//! Three column families share one write-ahead log, so a write batch that spans them is atomic
//! and writes become durable in the order they were made (a synced write makes every earlier one
//! durable too):
//!
//! - `raft`: log entries, key `shard | index` (both u64 big-endian), value a postcard [`Entry`].
//! - `meta`: per shard, key `shard | tag`: the hard state, the [`AppliedState`] and the
//!   truncation point of the log.
//! - `data`: the state machines (see [`crate::keys`]), in generations: a snapshot is installed
//!   into a fresh generation and becomes visible when the applied state names it.
//!
//! The applied state (index, term, configuration, generation) is written in the same batch as
//! the data it covers, so a replica restarts exactly where its state machine is.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_wire::api::{ReplicaAddr, ShardId};
use raft_core::{
    ConfState, Entry, HardState, InitialState, LogIndex, Snapshot, SnapshotMetadata, Storage,
    StorageError, Term,
};
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, ReadOptions,
    WriteBatch, WriteOptions,
};
use serde::{Deserialize, Serialize};

use crate::keys::KeySpace;

/// The column family of Raft log entries.
pub const CF_RAFT: &str = "raft";
/// The column family of per-shard metadata.
pub const CF_META: &str = "meta";
/// The column family of state-machine data.
pub const CF_DATA: &str = "data";

/// The key of the node id a data directory belongs to. Ten bytes long, so it never collides with
/// a per-shard meta key (nine bytes).
const NODE_ID_KEY: &[u8] = b"\xff\xffnode-id";

/// The prefix of the records of replicas created at runtime (followed by the shard id, 8 bytes
/// big-endian; 14 bytes in all, so they never collide with the 9-byte per-shard meta keys).
const GROUP_KEY_PREFIX: &[u8] = b"\xff\xfegroup";

const TAG_HARD_STATE: u8 = 1;
const TAG_APPLIED: u8 = 2;
const TAG_TRUNCATED: u8 = 3;

/// A storage failure. The node cannot continue safely after a failed write (its in-memory view
/// would no longer match the disk), so the host loop treats write errors as fatal.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// RocksDB reported an error.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// The data directory belongs to another node.
    #[error(
        "this data directory belongs to node {owner}, not to node {node}: check data_dir and node_id"
    )]
    WrongNode {
        /// The node that owns the directory.
        owner: u64,
        /// The node that tried to open it.
        node: u64,
    },
    /// A stored record does not decode: the data directory is corrupt or from another version.
    #[error("corrupt record {what} of shard {shard}: {reason}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// Its shard.
        shard: ShardId,
        /// The decoder's complaint.
        reason: String,
    },
}

/// Where a replica's state machine is: the last applied entry, the configuration in force there,
/// and the data generation that holds the state. Written atomically with the data it covers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedState {
    /// The last applied index.
    pub index: LogIndex,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The configuration in force at `index`.
    pub conf_state: ConfState,
    /// The data generation holding the state machine.
    pub generation: u64,
}

/// A replica the manager asked this host to create, remembered so the host reopens it after a
/// restart (replicas declared in the configuration file need no record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// Every replica of the shard, with the address its node listens on.
    pub replicas: Vec<ReplicaAddr>,
    /// Whether the shard enforces namespace ownership by epoch (shards the manager creates do).
    pub managed: bool,
}

/// The host's RocksDB instance.
#[derive(Clone)]
pub struct Engine {
    db: Arc<DB>,
    next_generation: Arc<AtomicU64>,
}

fn shard_key(shard: ShardId, suffix: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + suffix.len());
    key.extend_from_slice(&shard.0.to_be_bytes());
    key.extend_from_slice(suffix);
    key
}

fn log_key(shard: ShardId, index: LogIndex) -> Vec<u8> {
    shard_key(shard, &index.0.to_be_bytes())
}

fn group_key(shard: ShardId) -> Vec<u8> {
    let mut key = GROUP_KEY_PREFIX.to_vec();
    key.extend_from_slice(&shard.0.to_be_bytes());
    key
}

fn meta_key(shard: ShardId, tag: u8) -> Vec<u8> {
    shard_key(shard, &[tag])
}

fn corrupt(what: &'static str, shard: ShardId, e: impl std::fmt::Display) -> EngineError {
    EngineError::Corrupt {
        what,
        shard,
        reason: e.to_string(),
    }
}

impl Engine {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, EngineError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // A torn tail of the write-ahead log (power loss mid-write) is cut off: what remains is
        // a consistent prefix, which is what the ordering argument above needs.
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        let cfs = [CF_RAFT, CF_META, CF_DATA]
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        Ok(Self {
            db: Arc::new(db),
            next_generation: Arc::new(AtomicU64::new(1)),
        })
    }

    /// Binds the data directory to `node_id` on first use, and refuses it afterwards to any
    /// other node: a node started on another node's data would vote and acknowledge with that
    /// node's history, which breaks Raft's safety.
    pub fn claim(&self, node_id: u64) -> Result<(), EngineError> {
        let cf = self.cf(CF_META);
        match self.db.get_cf(cf, NODE_ID_KEY)? {
            Some(bytes) => {
                let owner = <[u8; 8]>::try_from(bytes.as_slice())
                    .map(u64::from_be_bytes)
                    .map_err(|_| corrupt("node id", ShardId(0), "not 8 bytes"))?;
                if owner != node_id {
                    return Err(EngineError::WrongNode {
                        owner,
                        node: node_id,
                    });
                }
                Ok(())
            }
            None => {
                let mut batch = WriteBatch::default();
                batch.put_cf(cf, NODE_ID_KEY, node_id.to_be_bytes());
                self.write(batch, true)
            }
        }
    }

    /// Remembers (durably) that this host holds a replica of `shard`.
    pub fn record_group(&self, shard: ShardId, record: &GroupRecord) -> Result<(), EngineError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META), group_key(shard), encode(record));
        self.write(batch, true)
    }

    /// Deletes everything this host stores of `shard` (its log, Raft state, data and group
    /// record) in one durable batch: the group removed this replica. The replica must be closed.
    pub fn drop_group(&self, shard: ShardId) -> Result<(), EngineError> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_META), group_key(shard));
        for tag in [TAG_HARD_STATE, TAG_APPLIED, TAG_TRUNCATED] {
            batch.delete_cf(self.cf(CF_META), meta_key(shard, tag));
        }
        // Shard ids stop below u64::MAX (the node refuses that one), so this cannot overflow.
        let (start, end) = (
            KeySpace::shard_prefix(shard),
            KeySpace::shard_prefix(ShardId(shard.0 + 1)),
        );
        batch.delete_range_cf(self.cf(CF_RAFT), &start, &end);
        batch.delete_range_cf(self.cf(CF_DATA), &start, &end);
        self.write(batch, true)
    }

    /// Every replica created at runtime, by shard.
    pub fn recorded_groups(&self) -> Result<Vec<(ShardId, GroupRecord)>, EngineError> {
        let mut groups = Vec::new();
        let iter = self.db.iterator_cf(
            self.cf(CF_META),
            IteratorMode::From(GROUP_KEY_PREFIX, Direction::Forward),
        );
        for item in iter {
            let (key, value) = item?;
            let Some(id) = key.strip_prefix(GROUP_KEY_PREFIX) else {
                break;
            };
            let id = <[u8; 8]>::try_from(id)
                .map(u64::from_be_bytes)
                .map_err(|_| corrupt("group record key", ShardId(0), "not 8 bytes"))?;
            let shard = ShardId(id);
            let record =
                postcard::from_bytes(&value).map_err(|e| corrupt("group record", shard, e))?;
            groups.push((shard, record));
        }
        Ok(groups)
    }

    /// The database, for reads.
    pub fn db(&self) -> &DB {
        &self.db
    }

    /// A column family handle (the three exist from [`Engine::open`] on).
    pub fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    /// Writes a batch; `sync` makes it (and everything written before it) durable first.
    pub fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), EngineError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }

    /// A fresh data generation number, never used by a live state machine of this host.
    pub fn allocate_generation(&self) -> u64 {
        self.next_generation.fetch_add(1, Ordering::Relaxed)
    }

    fn get_meta<T: for<'de> Deserialize<'de>>(
        &self,
        shard: ShardId,
        tag: u8,
        what: &'static str,
    ) -> Result<Option<T>, EngineError> {
        match self.db.get_cf(self.cf(CF_META), meta_key(shard, tag))? {
            None => Ok(None),
            Some(bytes) => postcard::from_bytes(&bytes)
                .map(Some)
                .map_err(|e| corrupt(what, shard, e)),
        }
    }

    /// Opens a replica's storage. A shard with no stored state is bootstrapped with `voters` as
    /// its initial configuration (every initial replica is bootstrapped with the same one, so
    /// they agree). Staged snapshot data of other generations (left by a crash mid-transfer) is
    /// removed. `managed`: whether the shard enforces namespace ownership (see
    /// [`crate::nsm`]).
    pub fn open_group(
        &self,
        shard: ShardId,
        voters: &[u64],
        managed: bool,
    ) -> Result<GroupStorage, EngineError> {
        let hard_state: HardState = self
            .get_meta(shard, TAG_HARD_STATE, "hard state")?
            .unwrap_or_default();
        let (applied, fresh) = match self.get_meta(shard, TAG_APPLIED, "applied state")? {
            Some(applied) => (applied, false),
            None => (
                AppliedState {
                    conf_state: ConfState::with_voters(voters.iter().copied()),
                    generation: self.allocate_generation(),
                    ..AppliedState::default()
                },
                true,
            ),
        };
        let truncated: (LogIndex, Term) = self
            .get_meta(shard, TAG_TRUNCATED, "truncation point")?
            .unwrap_or_default();
        // Keep generation numbers unique on this host from here on.
        self.next_generation
            .fetch_max(applied.generation + 1, Ordering::Relaxed);

        let last_index = self.last_stored_index(shard)?.unwrap_or(truncated.0);
        let mut batch = WriteBatch::default();
        // Drop every other generation of this shard: staged snapshots that never got installed.
        let live = KeySpace {
            shard,
            generation: applied.generation,
        };
        let shard_start = KeySpace::shard_prefix(shard);
        // Shard ids stop below u64::MAX (the node refuses that one), so this cannot overflow.
        let shard_end = KeySpace::shard_prefix(ShardId(shard.0 + 1));
        let live_start = live.prefix();
        let live_end = KeySpace {
            shard,
            generation: applied.generation + 1,
        }
        .prefix();
        batch.delete_range_cf(self.cf(CF_DATA), shard_start, live_start);
        batch.delete_range_cf(self.cf(CF_DATA), live_end, shard_end);
        if fresh {
            batch.put_cf(
                self.cf(CF_META),
                meta_key(shard, TAG_APPLIED),
                encode(&applied),
            );
        }
        self.write(batch, true)?;
        Ok(GroupStorage {
            engine: self.clone(),
            shard,
            managed,
            hard_state,
            applied,
            truncated,
            last_index,
        })
    }

    fn last_stored_index(&self, shard: ShardId) -> Result<Option<LogIndex>, EngineError> {
        let mut opts = ReadOptions::default();
        opts.set_iterate_lower_bound(log_key(shard, LogIndex(0)));
        let upper = log_key(shard, LogIndex(u64::MAX));
        let mut iter = self.db.iterator_cf_opt(
            self.cf(CF_RAFT),
            opts,
            IteratorMode::From(&upper, Direction::Reverse),
        );
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (key, _) = item?;
                if key.len() != 16 || key[..8] != shard.0.to_be_bytes() {
                    return Ok(None);
                }
                let index = u64::from_be_bytes(key[8..16].try_into().expect("16-byte key"));
                Ok(Some(LogIndex(index)))
            }
        }
    }

    /// Reads the applied state of `shard` as a consistent view sees it.
    pub fn applied_in(
        &self,
        view: &rocksdb::SnapshotWithThreadMode<'_, DB>,
        shard: ShardId,
    ) -> Result<AppliedState, EngineError> {
        match view.get_cf(self.cf(CF_META), meta_key(shard, TAG_APPLIED))? {
            None => Ok(AppliedState::default()),
            Some(bytes) => {
                postcard::from_bytes(&bytes).map_err(|e| corrupt("applied state", shard, e))
            }
        }
    }

    /// Removes a staged generation that will not be installed.
    pub fn discard_generation(&self, shard: ShardId, generation: u64) -> Result<(), EngineError> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.cf(CF_DATA),
            KeySpace { shard, generation }.prefix(),
            KeySpace {
                shard,
                generation: generation + 1,
            }
            .prefix(),
        );
        self.write(batch, false)
    }

    /// Writes snapshot pairs (keys relative to the generation) into a staged generation. Not
    /// synced: the batch that installs the snapshot is, and it makes these durable too.
    pub fn stage_pairs(
        &self,
        shard: ShardId,
        generation: u64,
        pairs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), EngineError> {
        let prefix = KeySpace { shard, generation }.prefix();
        let mut batch = WriteBatch::default();
        let cf = self.cf(CF_DATA);
        let mut key = prefix.clone();
        for (k, v) in pairs {
            key.truncate(prefix.len());
            key.extend_from_slice(k);
            batch.put_cf(cf, &key, v);
        }
        self.write(batch, false)
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("postcard encodes plain data")
}

/// One replica's durable state as the Raft core reads it, plus the staging methods the host loop
/// uses to persist a `Ready`. Staging methods put changes into a caller's batch and update the
/// cached view at once; the host writes the batch before anything depends on it and stops the
/// process if that write fails.
pub struct GroupStorage {
    engine: Engine,
    shard: ShardId,
    managed: bool,
    hard_state: HardState,
    applied: AppliedState,
    /// The index and term of the last entry removed from the log (snapshot or compaction).
    truncated: (LogIndex, Term),
    last_index: LogIndex,
}

impl GroupStorage {
    /// The shard.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// Whether the shard enforces namespace ownership.
    pub fn managed(&self) -> bool {
        self.managed
    }

    /// The applied state.
    pub fn applied(&self) -> &AppliedState {
        &self.applied
    }

    /// The state machine's key space.
    pub fn key_space(&self) -> KeySpace {
        KeySpace {
            shard: self.shard,
            generation: self.applied.generation,
        }
    }

    /// The index of the last entry removed from the log.
    pub fn truncated_index(&self) -> LogIndex {
        self.truncated.0
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Appends entries, removing any conflicting suffix of the stored log.
    pub fn append(&mut self, batch: &mut WriteBatch, entries: &[Entry]) {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return;
        };
        assert!(
            first.index > self.truncated.0 && first.index <= self.last_index.next(),
            "append of {}..={} to shard {} whose log is {}..={} leaves a gap",
            first.index.0,
            last.index.0,
            self.shard,
            self.truncated.0.0 + 1,
            self.last_index.0
        );
        let cf = self.engine.cf(CF_RAFT);
        if last.index < self.last_index {
            batch.delete_range_cf(
                cf,
                log_key(self.shard, last.index.next()),
                log_key(self.shard, self.last_index.next()),
            );
        }
        for entry in entries {
            batch.put_cf(cf, log_key(self.shard, entry.index), encode(entry));
        }
        self.last_index = last.index;
    }

    /// Persists the hard state.
    pub fn set_hard_state(&mut self, batch: &mut WriteBatch, hard_state: HardState) {
        batch.put_cf(
            self.engine.cf(CF_META),
            meta_key(self.shard, TAG_HARD_STATE),
            encode(&hard_state),
        );
        self.hard_state = hard_state;
    }

    /// Records the applied state (in the same batch as the data it covers).
    pub fn set_applied(&mut self, batch: &mut WriteBatch, applied: AppliedState) {
        batch.put_cf(
            self.engine.cf(CF_META),
            meta_key(self.shard, TAG_APPLIED),
            encode(&applied),
        );
        self.applied = applied;
    }

    /// Installs a snapshot whose data was staged in `generation`: the log is replaced by the
    /// snapshot point, the applied state names the new generation, and the old generation's data
    /// is removed — all in `batch`.
    pub fn install_snapshot(
        &mut self,
        batch: &mut WriteBatch,
        metadata: &SnapshotMetadata,
        generation: u64,
    ) {
        let raft = self.engine.cf(CF_RAFT);
        batch.delete_range_cf(
            raft,
            log_key(self.shard, LogIndex(0)),
            log_key(self.shard, LogIndex(u64::MAX)),
        );
        let old = self.applied.generation;
        let data = self.engine.cf(CF_DATA);
        batch.delete_range_cf(
            data,
            KeySpace {
                shard: self.shard,
                generation: old,
            }
            .prefix(),
            KeySpace {
                shard: self.shard,
                generation: old + 1,
            }
            .prefix(),
        );
        self.truncated = (metadata.index, metadata.term);
        batch.put_cf(
            self.engine.cf(CF_META),
            meta_key(self.shard, TAG_TRUNCATED),
            encode(&self.truncated),
        );
        self.last_index = metadata.index;
        self.set_applied(
            batch,
            AppliedState {
                index: metadata.index,
                term: metadata.term,
                conf_state: metadata.conf_state.clone(),
                generation,
            },
        );
    }

    /// Removes log entries up to and including `to`, which must be applied. Returns the new
    /// truncation index (unchanged when there is nothing to remove).
    pub fn compact(
        &mut self,
        batch: &mut WriteBatch,
        to: LogIndex,
    ) -> Result<LogIndex, StorageError> {
        let to = to.min(self.applied.index);
        if to <= self.truncated.0 {
            return Ok(self.truncated.0);
        }
        let term = self.term(to)?;
        batch.delete_range_cf(
            self.engine.cf(CF_RAFT),
            log_key(self.shard, LogIndex(0)),
            log_key(self.shard, to.next()),
        );
        self.truncated = (to, term);
        batch.put_cf(
            self.engine.cf(CF_META),
            meta_key(self.shard, TAG_TRUNCATED),
            encode(&self.truncated),
        );
        Ok(to)
    }

    fn read_entry(&self, index: LogIndex) -> Result<Entry, StorageError> {
        let bytes = self
            .engine
            .db
            .get_cf(self.engine.cf(CF_RAFT), log_key(self.shard, index))
            .map_err(|e| StorageError::Other(e.to_string()))?
            .ok_or_else(|| {
                StorageError::Other(format!(
                    "log entry {} of shard {} is missing",
                    index.0, self.shard
                ))
            })?;
        postcard::from_bytes(&bytes).map_err(|e| StorageError::Other(e.to_string()))
    }
}

impl Storage for GroupStorage {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        Ok(InitialState {
            hard_state: self.hard_state,
            conf_state: self.applied.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        if low <= self.truncated.0 {
            return Err(StorageError::Compacted);
        }
        if high > self.last_index.next() {
            return Err(StorageError::Unavailable);
        }
        let mut out = Vec::new();
        if low >= high {
            return Ok(out);
        }
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(log_key(self.shard, high));
        let start = log_key(self.shard, low);
        let iter = self.engine.db.iterator_cf_opt(
            self.engine.cf(CF_RAFT),
            opts,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut size = 0;
        let mut expected = low;
        for item in iter {
            let (_, value) = item.map_err(|e| StorageError::Other(e.to_string()))?;
            let entry: Entry =
                postcard::from_bytes(&value).map_err(|e| StorageError::Other(e.to_string()))?;
            if entry.index != expected {
                return Err(StorageError::Other(format!(
                    "shard {}: log entry {} missing (found {})",
                    self.shard, expected.0, entry.index.0
                )));
            }
            size += entry.size_bytes();
            out.push(entry);
            expected = expected.next();
            if size > max_bytes {
                break;
            }
        }
        if out.is_empty() || (expected < high && size <= max_bytes) {
            return Err(StorageError::Other(format!(
                "shard {}: log entries {}..{} missing",
                self.shard, expected.0, high.0
            )));
        }
        Ok(out)
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        if index == self.truncated.0 {
            return Ok(self.truncated.1);
        }
        if index < self.truncated.0 {
            return Err(StorageError::Compacted);
        }
        if index > self.last_index {
            return Err(StorageError::Unavailable);
        }
        Ok(self.read_entry(index)?.term)
    }

    fn first_index(&self) -> Result<LogIndex, StorageError> {
        Ok(self.truncated.0.next())
    }

    fn last_index(&self) -> Result<LogIndex, StorageError> {
        Ok(self.last_index)
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        // The data itself is streamed by the host from a consistent RocksDB view when the
        // snapshot message is sent; the metadata here is the applied state, which the sender
        // re-reads from that view (it can only have moved forward).
        Ok(Snapshot {
            metadata: SnapshotMetadata {
                index: self.applied.index,
                term: self.applied.term,
                conf_state: self.applied.conf_state.clone(),
            },
            data: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_belongs_to_the_node_that_first_used_it() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        engine.claim(1).unwrap();
        engine.claim(1).unwrap();
        drop(engine);
        let engine = Engine::open(dir.path()).unwrap();
        engine.claim(1).unwrap();
        let err = engine.claim(2).unwrap_err();
        assert!(
            matches!(err, EngineError::WrongNode { owner: 1, node: 2 }),
            "{err}"
        );
        assert!(err.to_string().contains("belongs to node 1"));
    }

    #[test]
    fn the_log_survives_a_reopen_with_its_truncation_point() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let mut group = engine.open_group(ShardId(7), &[1, 2, 3], false).unwrap();
        let entries: Vec<Entry> = (1..=10)
            .map(|i| Entry {
                term: Term(1),
                index: LogIndex(i),
                payload: raft_core::EntryPayload::Normal(vec![i as u8]),
            })
            .collect();
        let mut batch = WriteBatch::default();
        group.append(&mut batch, &entries);
        engine.write(batch, true).unwrap();
        let mut batch = WriteBatch::default();
        let applied = AppliedState {
            index: LogIndex(6),
            term: Term(1),
            ..group.applied().clone()
        };
        group.set_applied(&mut batch, applied);
        let compacted = group.compact(&mut batch, LogIndex(4)).unwrap();
        engine.write(batch, true).unwrap();
        assert_eq!(compacted, LogIndex(4));
        drop(group);
        drop(engine);

        let engine = Engine::open(dir.path()).unwrap();
        let group = engine.open_group(ShardId(7), &[1, 2, 3], false).unwrap();
        assert_eq!(group.first_index().unwrap(), LogIndex(5));
        assert_eq!(group.last_index().unwrap(), LogIndex(10));
        assert_eq!(group.term(LogIndex(4)).unwrap(), Term(1));
        assert_eq!(group.term(LogIndex(3)), Err(StorageError::Compacted));
        assert_eq!(group.applied().index, LogIndex(6));
        let read = group.entries(LogIndex(5), LogIndex(11), u64::MAX).unwrap();
        assert_eq!(read, entries[4..].to_vec());
        assert_eq!(
            group.entries(LogIndex(4), LogIndex(6), u64::MAX),
            Err(StorageError::Compacted)
        );
    }

    #[test]
    fn recorded_groups_survive_a_reopen_and_stay_apart_from_shard_meta() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        engine.claim(1).unwrap();
        // Per-shard meta of shards whose ids sort around the records' prefix.
        engine.open_group(ShardId(1), &[1], false).unwrap();
        engine
            .open_group(ShardId(u64::MAX - 1), &[1], false)
            .unwrap();
        let record = |n: u64| GroupRecord {
            replicas: vec![ReplicaAddr {
                node: raft_core::NodeId(1),
                addr: format!("127.0.0.1:{n}"),
                site: "dc1".into(),
            }],
            managed: true,
        };
        engine.record_group(ShardId(9), &record(9)).unwrap();
        engine.record_group(ShardId(3), &record(3)).unwrap();
        drop(engine);
        let engine = Engine::open(dir.path()).unwrap();
        engine.claim(1).unwrap();
        assert_eq!(
            engine.recorded_groups().unwrap(),
            vec![(ShardId(3), record(3)), (ShardId(9), record(9))]
        );
    }

    #[test]
    fn a_dropped_group_leaves_nothing_and_its_neighbours_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        engine.claim(1).unwrap();
        let entries = |n: u64| -> Vec<Entry> {
            (1..=n)
                .map(|i| Entry {
                    term: Term(1),
                    index: LogIndex(i),
                    payload: raft_core::EntryPayload::Normal(vec![i as u8]),
                })
                .collect()
        };
        let record = GroupRecord {
            replicas: vec![ReplicaAddr {
                node: raft_core::NodeId(1),
                addr: "127.0.0.1:1".into(),
                site: "dc1".into(),
            }],
            managed: true,
        };
        for shard in [ShardId(4), ShardId(5), ShardId(6)] {
            let mut group = engine.open_group(shard, &[1, 2, 3], true).unwrap();
            let mut batch = WriteBatch::default();
            group.append(&mut batch, &entries(5));
            let space = group.key_space();
            batch.put_cf(engine.cf(CF_DATA), space.prefix(), b"state");
            engine.write(batch, true).unwrap();
            engine.record_group(shard, &record).unwrap();
        }
        engine.drop_group(ShardId(5)).unwrap();
        drop(engine);

        let engine = Engine::open(dir.path()).unwrap();
        engine.claim(1).unwrap();
        let shards: Vec<ShardId> = engine
            .recorded_groups()
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(shards, vec![ShardId(4), ShardId(6)]);
        let count = |cf: &str, shard: ShardId| {
            let start = KeySpace::shard_prefix(shard);
            engine
                .db()
                .prefix_iterator_cf(engine.cf(cf), &start)
                .filter_map(Result::ok)
                .take_while(|(k, _)| k.starts_with(&start))
                .count()
        };
        for cf in [CF_RAFT, CF_META, CF_DATA] {
            assert_eq!(
                count(cf, ShardId(5)),
                0,
                "{cf} keeps keys of the dropped shard"
            );
            assert!(count(cf, ShardId(4)) > 0, "{cf} lost keys of shard 4");
            assert!(count(cf, ShardId(6)) > 0, "{cf} lost keys of shard 6");
        }
        // Opened again, the dropped shard is new: it bootstraps with the voters it is given.
        let group = engine.open_group(ShardId(5), &[], true).unwrap();
        assert_eq!(group.applied().index, LogIndex(0));
        assert_eq!(group.last_index().unwrap(), LogIndex(0));
        assert!(group.applied().conf_state.voters.is_empty());
    }
}
