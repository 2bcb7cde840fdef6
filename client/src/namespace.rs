//! A handle on one namespace of one shard, with one method per API call.

use std::net::SocketAddr;

use cairn_wire::api::{
    Consistency, Epoch, KeyRange, Namespace, ReadOp, ReadResult, Request, Response, ShardId, Step,
    WriteOp, WriteResult,
};
use raft_core::LogIndex;

use crate::{Client, Error};

/// Key-value pairs, in the order a range read returns them.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// What a read returns: its value and the applied index of the replica that served it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read<T> {
    /// The value read.
    pub value: T,
    /// The replica's applied index when it served the read: the value reflects every write up
    /// to it.
    pub applied: LogIndex,
}

impl<T> Read<T> {
    /// The value, without the index.
    pub fn into_value(self) -> T {
        self.value
    }
}

/// What a write returns: the log index it was applied at and its result. Pass the index to
/// [`Consistency::AtLeast`] to read your write from any replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written<T> {
    /// The log index the write was applied at.
    pub index: LogIndex,
    /// The write's result.
    pub value: T,
}

impl<T> Written<T> {
    /// The result, without the index.
    pub fn into_value(self) -> T {
        self.value
    }
}

/// One namespace of one shard. Cheap to clone.
///
/// Keys, values and prefixes take anything that converts into bytes (`&str`, `String`,
/// `&[u8]`, `b"..."`, `Vec<u8>`). Unless the handle is pinned to a node
/// ([`Client::namespace_at`]), writes and `Consistent` reads go to the shard's leader and every
/// call retries what is safe until the request deadline.
#[derive(Clone, Debug)]
pub struct NamespaceClient {
    client: Client,
    shard: ShardId,
    namespace: Namespace,
    pinned: Option<SocketAddr>,
    /// The epoch requests carry (shards created by the manager require it).
    epoch: Option<Epoch>,
    /// Requests go to a router, addressed by namespace only.
    routed: bool,
}

impl NamespaceClient {
    pub(crate) fn new(
        client: Client,
        shard: ShardId,
        namespace: Namespace,
        pinned: Option<SocketAddr>,
    ) -> Self {
        Self {
            client,
            shard,
            namespace,
            pinned,
            epoch: None,
            routed: false,
        }
    }

    /// A handle whose requests go to a router (the client's nodes), addressed by namespace
    /// only: the router finds the shard and its leader.
    pub(crate) fn routed(client: Client, namespace: Namespace) -> Self {
        Self {
            routed: true,
            ..Self::new(client, ShardId(0), namespace, None)
        }
    }

    /// The same namespace, with every request carrying `epoch` (the epoch the manager assigned
    /// the namespace to the shard at).
    pub fn with_epoch(mut self, epoch: Epoch) -> Self {
        self.epoch = Some(epoch);
        self
    }

    /// The shard.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The node every request goes to, when the handle is pinned.
    pub fn pinned(&self) -> Option<SocketAddr> {
        self.pinned
    }

    /// The same namespace, with every request sent to `addr` only, once, without retries.
    pub fn pinned_to(mut self, addr: SocketAddr) -> Self {
        self.pinned = Some(addr);
        self
    }

    /// Runs any read operation.
    pub async fn read(
        &self,
        op: ReadOp,
        consistency: Consistency,
    ) -> Result<Read<ReadResult>, Error> {
        let request = if self.routed {
            Request::RoutedRead {
                namespace: self.namespace.clone(),
                consistency,
                op,
            }
        } else {
            Request::Read {
                shard: self.shard,
                namespace: self.namespace.clone(),
                epoch: self.epoch,
                consistency,
                op,
            }
        };
        match self.client.send(self.pinned, request).await? {
            Response::Read { result, applied } => Ok(Read {
                value: result,
                applied,
            }),
            other => Err(self.unexpected("a read result", &other)),
        }
    }

    /// Runs any write operation.
    pub async fn write(&self, op: WriteOp) -> Result<Written<WriteResult>, Error> {
        let request = if self.routed {
            Request::RoutedWrite {
                namespace: self.namespace.clone(),
                op,
            }
        } else {
            Request::Write {
                shard: self.shard,
                namespace: self.namespace.clone(),
                epoch: self.epoch,
                op,
            }
        };
        match self.client.send(self.pinned, request).await? {
            Response::Write { index, result } => Ok(Written {
                index,
                value: result,
            }),
            other => Err(self.unexpected("a write result", &other)),
        }
    }

    /// The value of `key`; [`ApiError::NotFound`](cairn_wire::api::ApiError::NotFound) when
    /// absent.
    pub async fn get(
        &self,
        key: impl Into<Vec<u8>>,
        consistency: Consistency,
    ) -> Result<Read<Vec<u8>>, Error> {
        let read = self
            .read(ReadOp::Get { key: key.into() }, consistency)
            .await?;
        match read.value {
            ReadResult::Value(value) => Ok(Read {
                value,
                applied: read.applied,
            }),
            other => Err(self.mismatch("get", &other)),
        }
    }

    /// Whether `key` exists.
    pub async fn exists(
        &self,
        key: impl Into<Vec<u8>>,
        consistency: Consistency,
    ) -> Result<Read<bool>, Error> {
        let read = self
            .read(ReadOp::Exists { key: key.into() }, consistency)
            .await?;
        match read.value {
            ReadResult::Exists(exists) => Ok(Read {
                value: exists,
                applied: read.applied,
            }),
            other => Err(self.mismatch("exists", &other)),
        }
    }

    /// The values of `keys`, in order; `NotFound` names the first missing key.
    pub async fn multi_get<K: Into<Vec<u8>>>(
        &self,
        keys: impl IntoIterator<Item = K>,
        consistency: Consistency,
    ) -> Result<Read<Vec<Vec<u8>>>, Error> {
        let keys = keys.into_iter().map(Into::into).collect();
        let read = self.read(ReadOp::MultiGet { keys }, consistency).await?;
        match read.value {
            ReadResult::Values(values) => Ok(Read {
                value: values,
                applied: read.applied,
            }),
            other => Err(self.mismatch("multi_get", &other)),
        }
    }

    /// The values of `keys`, in order, `None` for the missing ones.
    pub async fn multi_get_option<K: Into<Vec<u8>>>(
        &self,
        keys: impl IntoIterator<Item = K>,
        consistency: Consistency,
    ) -> Result<Read<Vec<Option<Vec<u8>>>>, Error> {
        let keys = keys.into_iter().map(Into::into).collect();
        let read = self
            .read(ReadOp::MultiGetOption { keys }, consistency)
            .await?;
        match read.value {
            ReadResult::OptionalValues(values) => Ok(Read {
                value: values,
                applied: read.applied,
            }),
            other => Err(self.mismatch("multi_get_option", &other)),
        }
    }

    /// The keys in `range`, ascending.
    pub async fn range(
        &self,
        range: KeyRange,
        consistency: Consistency,
    ) -> Result<Read<Vec<Vec<u8>>>, Error> {
        let read = self.read(ReadOp::Range(range), consistency).await?;
        self.keys("range", read)
    }

    /// The entries in `range`, ascending.
    pub async fn range_entries(
        &self,
        range: KeyRange,
        consistency: Consistency,
    ) -> Result<Read<Entries>, Error> {
        let read = self.read(ReadOp::RangeEntries(range), consistency).await?;
        self.entries("range_entries", read)
    }

    /// The entries in `range`, descending (from its end bound down to its start bound).
    pub async fn rev_range_entries(
        &self,
        range: KeyRange,
        consistency: Consistency,
    ) -> Result<Read<Entries>, Error> {
        let read = self
            .read(ReadOp::RevRangeEntries(range), consistency)
            .await?;
        self.entries("rev_range_entries", read)
    }

    /// The keys that start with `prefix`, ascending, at most `max` of them.
    pub async fn prefix_keys(
        &self,
        prefix: impl Into<Vec<u8>>,
        max: Option<u32>,
        consistency: Consistency,
    ) -> Result<Read<Vec<Vec<u8>>>, Error> {
        let op = ReadOp::PrefixKeys {
            prefix: prefix.into(),
            max,
        };
        let read = self.read(op, consistency).await?;
        self.keys("prefix_keys", read)
    }

    /// How many keys start with `prefix` (empty: every key of the namespace).
    pub async fn count(
        &self,
        prefix: impl Into<Vec<u8>>,
        consistency: Consistency,
    ) -> Result<Read<u64>, Error> {
        let op = ReadOp::Count {
            prefix: prefix.into(),
        };
        let read = self.read(op, consistency).await?;
        match read.value {
            ReadResult::Count(count) => Ok(Read {
                value: count,
                applied: read.applied,
            }),
            other => Err(self.mismatch("count", &other)),
        }
    }

    /// Sets `key` to `value`.
    pub async fn set(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<Written<()>, Error> {
        let op = WriteOp::Set {
            key: key.into(),
            value: value.into(),
        };
        self.done("set", self.write(op).await?)
    }

    /// Deletes `key`; `NotFound` when absent.
    pub async fn delete(&self, key: impl Into<Vec<u8>>) -> Result<Written<()>, Error> {
        let op = WriteOp::Delete { key: key.into() };
        self.done("delete", self.write(op).await?)
    }

    /// Compare-and-swap: when the value of `key` is `expected` (`None`: absent), sets it to
    /// `wanted` (`None`: deletes it). Returns the value after the operation, whether it swapped
    /// or not (compare it with `wanted` to know).
    pub async fn test_and_set(
        &self,
        key: impl Into<Vec<u8>>,
        expected: Option<Vec<u8>>,
        wanted: Option<Vec<u8>>,
    ) -> Result<Written<Option<Vec<u8>>>, Error> {
        let op = WriteOp::TestAndSet {
            key: key.into(),
            expected,
            wanted,
        };
        self.optional_value("test_and_set", self.write(op).await?)
    }

    /// Sets `key` to `wanted` (`None`: deletes it) and returns its previous value.
    pub async fn replace(
        &self,
        key: impl Into<Vec<u8>>,
        wanted: Option<Vec<u8>>,
    ) -> Result<Written<Option<Vec<u8>>>, Error> {
        let op = WriteOp::Replace {
            key: key.into(),
            wanted,
        };
        self.optional_value("replace", self.write(op).await?)
    }

    /// Deletes every key that starts with `prefix`; returns how many were deleted.
    pub async fn delete_prefix(&self, prefix: impl Into<Vec<u8>>) -> Result<Written<u64>, Error> {
        let op = WriteOp::DeletePrefix {
            prefix: prefix.into(),
        };
        let written = self.write(op).await?;
        match written.value {
            WriteResult::Count(count) => Ok(Written {
                index: written.index,
                value: count,
            }),
            other => Err(self.write_mismatch("delete_prefix", &other)),
        }
    }

    /// Applies `steps` atomically: all of them or none (a failed assertion fails the call with
    /// `AssertionFailed`).
    pub async fn sequence(&self, steps: Vec<Step>) -> Result<Written<()>, Error> {
        self.done("sequence", self.write(WriteOp::Sequence { steps }).await?)
    }

    /// A no-op through the log: returns once the shard can commit, with the index it committed
    /// at.
    pub async fn nop(&self) -> Result<Written<()>, Error> {
        self.done("nop", self.write(WriteOp::Nop).await?)
    }

    fn keys(&self, op: &str, read: Read<ReadResult>) -> Result<Read<Vec<Vec<u8>>>, Error> {
        match read.value {
            ReadResult::Keys(keys) => Ok(Read {
                value: keys,
                applied: read.applied,
            }),
            other => Err(self.mismatch(op, &other)),
        }
    }

    fn entries(&self, op: &str, read: Read<ReadResult>) -> Result<Read<Entries>, Error> {
        match read.value {
            ReadResult::Entries(entries) => Ok(Read {
                value: entries,
                applied: read.applied,
            }),
            other => Err(self.mismatch(op, &other)),
        }
    }

    fn done(&self, op: &str, written: Written<WriteResult>) -> Result<Written<()>, Error> {
        match written.value {
            WriteResult::Done => Ok(Written {
                index: written.index,
                value: (),
            }),
            other => Err(self.write_mismatch(op, &other)),
        }
    }

    fn optional_value(
        &self,
        op: &str,
        written: Written<WriteResult>,
    ) -> Result<Written<Option<Vec<u8>>>, Error> {
        match written.value {
            WriteResult::Value(value) => Ok(Written {
                index: written.index,
                value,
            }),
            other => Err(self.write_mismatch(op, &other)),
        }
    }

    fn unexpected(&self, wanted: &str, got: &Response) -> Error {
        let at = self
            .pinned
            .map_or_else(|| "the node".into(), |a| a.to_string());
        Error::Protocol(format!(
            "{at} answered with {} where {wanted} was expected",
            got.kind()
        ))
    }

    fn mismatch(&self, op: &str, got: &ReadResult) -> Error {
        Error::Protocol(format!(
            "{op} on shard {} namespace {} returned {}",
            self.shard,
            self.namespace,
            read_result_kind(got)
        ))
    }

    fn write_mismatch(&self, op: &str, got: &WriteResult) -> Error {
        // The write was applied; only its result is of the wrong shape.
        Error::Protocol(format!(
            "{op} on shard {} namespace {} was applied but returned {}",
            self.shard,
            self.namespace,
            write_result_kind(got)
        ))
    }
}

fn read_result_kind(result: &ReadResult) -> &'static str {
    match result {
        ReadResult::Value(_) => "a value",
        ReadResult::Exists(_) => "an existence flag",
        ReadResult::Values(_) => "values",
        ReadResult::OptionalValues(_) => "optional values",
        ReadResult::Keys(_) => "keys",
        ReadResult::Entries(_) => "entries",
        ReadResult::Count(_) => "a count",
        ReadResult::Manifests(_) => "manifests",
        ReadResult::Objects { .. } => "object names",
        ReadResult::Stats(_) => "statistics",
    }
}

fn write_result_kind(result: &WriteResult) -> &'static str {
    match result {
        WriteResult::Done => "done",
        WriteResult::Value(_) => "a value",
        WriteResult::Count(_) => "a count",
    }
}
