//! What the namespace state machine tests share: a shard's state on a real RocksDB in a
//! temporary directory, applied and read through `nsm` exactly as the host and the server do,
//! and valid manifests to store.

#![allow(dead_code, unreachable_pub)] // Each test binary uses its own part.

use std::collections::BTreeMap;

use cairn_wire::api::{
    ApiError, Epoch, Namespace, ReadOp, ReadResult, ShardId, WriteOp, WriteResult,
};
use cairn_wire::manifest::{
    Checksum, ChecksumAlgorithm, Chunk, Compression, FragmentLocation, Manifest, StorageScheme,
};
use rocksdb::{IteratorMode, WriteBatch};
use shard_node::keys::KeySpace;
use shard_node::kv::{KvLimits, SnapshotView};
use shard_node::nsm::{self, Command, Ownership};
use shard_node::storage::{CF_DATA, Engine};
use tempfile::TempDir;

/// The space every test shard works in.
pub const SPACE: KeySpace = KeySpace {
    shard: ShardId(9),
    generation: 3,
};

/// One shard replica's state machine on its own RocksDB.
pub struct Shard {
    pub engine: Engine,
    pub space: KeySpace,
    pub managed: bool,
    pub limits: KvLimits,
    _dir: TempDir,
}

impl Shard {
    /// A shard the manager created: requests carry epochs.
    pub fn managed() -> Self {
        Self::new(true)
    }

    /// A shard declared in a node's configuration: requests carry no epoch.
    pub fn unmanaged() -> Self {
        Self::new(false)
    }

    fn new(managed: bool) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let engine = Engine::open(dir.path()).expect("open the engine");
        Self {
            engine,
            space: SPACE,
            managed,
            limits: KvLimits::default(),
            _dir: dir,
        }
    }

    /// Applies `op` as a committed command and writes its batch, checking that a failed
    /// command staged nothing.
    pub fn apply_in(
        &self,
        space: &KeySpace,
        ns: &Namespace,
        epoch: Option<u64>,
        op: WriteOp,
    ) -> Result<WriteResult, ApiError> {
        let (result, batch) = self.stage_in(space, ns, epoch, op.clone());
        if result.is_err() {
            assert!(
                batch.is_empty(),
                "{op:?} failed with {result:?} but staged changes"
            );
        }
        self.engine.db().write(batch).expect("write the batch");
        result
    }

    /// Applies `op` in [`Shard::space`].
    pub fn apply(
        &self,
        ns: &Namespace,
        epoch: Option<u64>,
        op: WriteOp,
    ) -> Result<WriteResult, ApiError> {
        self.apply_in(&self.space, ns, epoch, op)
    }

    /// Applies `op` without writing the batch: the result and what it would change.
    pub fn stage_in(
        &self,
        space: &KeySpace,
        ns: &Namespace,
        epoch: Option<u64>,
        op: WriteOp,
    ) -> (Result<WriteResult, ApiError>, WriteBatch) {
        let command = Command {
            namespace: ns.clone(),
            epoch: epoch.map(Epoch),
            op,
        };
        // What the log carries is what is applied.
        let command: Command =
            postcard::from_bytes(&postcard::to_allocvec(&command).unwrap()).unwrap();
        let mut batch = WriteBatch::default();
        let result = nsm::apply(self.engine.db(), space, self.managed, &command, &mut batch);
        (result, batch)
    }

    /// Serves `op` from the database and from a snapshot view, checking that both agree.
    pub fn read_in(
        &self,
        space: &KeySpace,
        ns: &Namespace,
        epoch: Option<u64>,
        op: ReadOp,
    ) -> Result<ReadResult, ApiError> {
        let epoch = epoch.map(Epoch);
        let db = self.engine.db();
        let latest = nsm::read(db, space, self.managed, ns, epoch, &op, &self.limits);
        let view = SnapshotView::new(db);
        let snapshot = nsm::read(&view, space, self.managed, ns, epoch, &op, &self.limits);
        assert_eq!(
            latest, snapshot,
            "{op:?}: the database and a snapshot disagree"
        );
        latest
    }

    /// Serves `op` in [`Shard::space`].
    pub fn read(
        &self,
        ns: &Namespace,
        epoch: Option<u64>,
        op: ReadOp,
    ) -> Result<ReadResult, ApiError> {
        self.read_in(&self.space, ns, epoch, op)
    }

    /// The ownership record of `ns`.
    pub fn ownership(&self, ns: &Namespace) -> Option<Ownership> {
        nsm::ownership(self.engine.db(), &self.space, ns).expect("read the ownership")
    }

    /// Every key and value of the data column family.
    pub fn raw(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let db = self.engine.db();
        let cf = db.cf_handle(CF_DATA).expect("the data column family");
        db.iterator_cf(cf, IteratorMode::Start)
            .map(|item| {
                let (key, value) = item.expect("iterate");
                (key.to_vec(), value.to_vec())
            })
            .collect()
    }

    /// Writes raw pairs into the data column family (to corrupt or copy state on purpose).
    pub fn write_raw(&self, pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) {
        let db = self.engine.db();
        let cf = db.cf_handle(CF_DATA).expect("the data column family");
        let mut batch = WriteBatch::default();
        for (key, value) in pairs {
            batch.put_cf(cf, key, value);
        }
        db.write(batch).expect("write the batch");
    }
}

pub fn ns(name: &str) -> Namespace {
    Namespace::new(name).expect("valid namespace")
}

/// A valid manifest of object `name` with object id `id` and `size_bytes` bytes (stored as
/// one chunk of one replicated fragment; none when empty).
pub fn manifest(name: &str, id: &str, size_bytes: u32) -> Manifest {
    let chunks = if size_bytes == 0 {
        Vec::new()
    } else {
        vec![Chunk {
            length_bytes: u64::from(size_bytes),
            fragments: vec![
                Some(FragmentLocation {
                    device_id: 1,
                    version: 1,
                    checksum: Checksum::none(),
                    length_bytes: size_bytes,
                }),
                None,
            ],
        }]
    };
    Manifest {
        name: name.to_string(),
        object_id: id.as_bytes().to_vec(),
        size_bytes: u64::from(size_bytes),
        checksum: Checksum {
            algorithm: ChecksumAlgorithm::Crc32c,
            digest: vec![0xc0, 0xff, 0xee, 0x00],
        },
        scheme: StorageScheme {
            data_fragments: 1,
            parity_fragments: 1,
            fragment_size_bytes: size_bytes.max(1),
            compression: Compression::None,
            encrypted: false,
        },
        chunks,
        version: 1,
        timestamp_ms: 1_700_000_000_000,
    }
}

pub fn set(key: &str, value: &str) -> WriteOp {
    WriteOp::Set {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    }
}

pub fn put(manifest: Manifest) -> WriteOp {
    WriteOp::PutManifest {
        manifest,
        mode: cairn_wire::manifest::PutMode::Unconditional,
    }
}

pub fn wrong_shard(ns: &Namespace, epoch: Option<u64>) -> ApiError {
    ApiError::WrongShard {
        shard: SPACE.shard,
        namespace: ns.clone(),
        epoch: epoch.map(Epoch),
    }
}

pub fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|name| name.to_string()).collect()
}
