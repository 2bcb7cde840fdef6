//! The namespace state machine of a shard (the NSM role): who owns which namespace at which
//! epoch, the key-value data ([`crate::kv`]) and the object manifests of every namespace.
//!
//! Every committed [`Command`] is applied by [`apply`]; every read is served by [`read`]. Writes
//! are checked by [`validate_write`] before they are proposed, reads by [`validate_read`].
//!
//! # Managed and unmanaged shards
//!
//! A shard declared in a node's configuration is *unmanaged*: requests carry no epoch and every
//! operation works on any namespace. A shard the manager created is *managed*: every request
//! carries the epoch the router routed the namespace by, and the shard keeps an [`Ownership`]
//! record per namespace, which only [`WriteOp::AdoptNamespace`] and [`WriteOp::DropNamespace`]
//! (sent by the manager) change:
//!
//! | record / command at epoch `e` | adopt | drop |
//! | --- | --- | --- |
//! | none | `Owned(e)` | `Dropped(e)`, count 0 |
//! | `Owned(o)`, `o < e` | `Owned(e)`: reassigned, data kept | everything deleted, `Dropped(e)` |
//! | `Owned(e)` | done, unchanged | everything deleted, `Dropped(e)` |
//! | `Owned(o)`, `o > e` | `WrongShard(o)` | `WrongShard(o)` |
//! | `Dropped(d)`, `d < e` | `Owned(e)`: re-created, empty | `Dropped(e)`, count 0 |
//! | `Dropped(d)`, `d >= e` | `WrongShard(none)` | unchanged, count 0 |
//!
//! Epochs only grow, so a delayed or replayed adopt or drop can never undo a newer one: the
//! `Dropped` tombstone is what refuses an adopt older than the drop. Every other operation (key
//! values, manifests, reads) is served only when the namespace is `Owned` at exactly the
//! request's epoch; otherwise the answer is [`ApiError::WrongShard`] with the epoch the shard owns
//! it at (if any), and nothing is read or written.
//!
//! # Manifests and statistics
//!
//! A namespace's manifests live in [`Area::Manifest`] keyed by object name, its statistics and
//! ownership in [`Area::System`] (see [`crate::keys`]); key-value operations never see either.
//! Every manifest put and delete updates the statistics in the same batch, so they always equal
//! the count and the size sum of the stored manifests.

use std::ops::ControlFlow;

use cairn_wire::api::{
    ApiError, Epoch, GroupPolicy, Namespace, ReadOp, ReadResult, ShardId, WriteOp, WriteResult,
};
use cairn_wire::manifest::{
    Manifest, NamespaceStats, OBJECT_ID_LEN_MAX_BYTES, OBJECT_NAME_LEN_MAX_BYTES, PutMode,
    validate_object_name,
};
use rocksdb::{DB, WriteBatch};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::keys::{Area, GroupKey, KeySpace, SystemRecord, key_successor, namespace_prefix_range};
use crate::kv::{self, KvLimits, KvView, ResponseSize, ScanOrder, data_cf, too_large};

/// What an entry of a shard's log carries: a client write, or a new replication policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proposal {
    /// A write to a namespace.
    Write(Command),
    /// The group's new replication policy (the manager's [`Request::SetGroupPolicy`]).
    ///
    /// [`Request::SetGroupPolicy`]: cairn_wire::api::Request::SetGroupPolicy
    Policy(GroupPolicy),
}

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

/// Whether, and at which epoch, a managed shard owns a namespace (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ownership {
    /// The shard serves the namespace at this epoch.
    Owned(Epoch),
    /// The namespace was dropped from the shard at this epoch: a tombstone that refuses any
    /// adopt at this epoch or an older one.
    Dropped(Epoch),
}

/// Checks a write against the limits before it is proposed: the key-value limits of
/// [`kv::validate_write`], and for manifests [`Manifest::validate`] against
/// [`KvLimits::manifest_size_max_bytes`] ([`ApiError::InvalidManifest`] with the reason,
/// [`ApiError::TooLarge`] with `what: "manifest"`) and the object names and ids
/// ([`ApiError::InvalidArgument`]).
pub fn validate_write(op: &WriteOp, limits: &KvLimits) -> Result<(), ApiError> {
    match op {
        WriteOp::PutManifest { manifest, mode } => {
            manifest.validate(limits.manifest_size_max_bytes)?;
            match mode {
                PutMode::MustReplace { object_id } => validate_object_id(object_id),
                PutMode::Unconditional | PutMode::MustNotExist => Ok(()),
            }
        }
        WriteOp::DeleteManifest { name } => validate_object_name(name),
        WriteOp::AdoptNamespace | WriteOp::DropNamespace => Ok(()),
        WriteOp::Set { .. }
        | WriteOp::Delete { .. }
        | WriteOp::TestAndSet { .. }
        | WriteOp::Replace { .. }
        | WriteOp::DeletePrefix { .. }
        | WriteOp::Sequence { .. }
        | WriteOp::Nop => kv::validate_write(op, limits),
    }
}

fn validate_object_id(object_id: &[u8]) -> Result<(), ApiError> {
    if object_id.is_empty() || object_id.len() > OBJECT_ID_LEN_MAX_BYTES {
        return Err(ApiError::InvalidArgument(format!(
            "must_replace: the object id must be 1 to {OBJECT_ID_LEN_MAX_BYTES} bytes, got {}",
            object_id.len()
        )));
    }
    Ok(())
}

/// Checks a read against the limits before it is served: the key-value limits of
/// [`kv::validate_read`]; for `GetManifests` at most [`KvLimits::get_manifests_max`] names
/// (`what: "get_manifests"`), each a valid object name, of at most
/// [`KvLimits::request_size_max_bytes`] in all (`what: "request"`); for `ListObjects` a `limit`
/// of 1 to [`KvLimits::list_objects_max`] (`what: "limit"`) and a `prefix` and `start_after` no
/// longer than an object name (`what: "prefix"`, `"start_after"`). The size of the answer is
/// checked by [`read`].
pub fn validate_read(op: &ReadOp, limits: &KvLimits) -> Result<(), ApiError> {
    match op {
        ReadOp::GetManifests { names } => {
            if names.len() > limits.get_manifests_max as usize {
                return Err(too_large(
                    "get_manifests",
                    names.len(),
                    limits.get_manifests_max,
                ));
            }
            let mut bytes = 0_usize;
            for name in names {
                validate_object_name(name)?;
                bytes += name.len();
            }
            if bytes > limits.request_size_max_bytes as usize {
                return Err(too_large("request", bytes, limits.request_size_max_bytes));
            }
            Ok(())
        }
        ReadOp::ListObjects {
            prefix,
            start_after,
            limit,
        } => {
            if *limit == 0 {
                return Err(ApiError::InvalidArgument(format!(
                    "list_objects: the limit must be 1 to {}, got 0",
                    limits.list_objects_max
                )));
            }
            if *limit > limits.list_objects_max {
                return Err(too_large("limit", *limit as usize, limits.list_objects_max));
            }
            let name_max = OBJECT_NAME_LEN_MAX_BYTES as u32;
            if prefix.len() > OBJECT_NAME_LEN_MAX_BYTES {
                return Err(too_large("prefix", prefix.len(), name_max));
            }
            match start_after {
                Some(after) if after.len() > OBJECT_NAME_LEN_MAX_BYTES => {
                    Err(too_large("start_after", after.len(), name_max))
                }
                _ => Ok(()),
            }
        }
        ReadOp::NamespaceStats => Ok(()),
        ReadOp::Get { .. }
        | ReadOp::Exists { .. }
        | ReadOp::MultiGet { .. }
        | ReadOp::MultiGetOption { .. }
        | ReadOp::Range(_)
        | ReadOp::RangeEntries(_)
        | ReadOp::RevRangeEntries(_)
        | ReadOp::PrefixKeys { .. }
        | ReadOp::Count { .. } => kv::validate_read(op, limits),
    }
}

/// Checks that a request to `shard` carries an epoch exactly when the shard is managed, and
/// returns it. [`apply`] and [`read`] check it themselves; a server may call it before proposing
/// so that a malformed request does not take a log entry.
pub fn validate_epoch(
    shard: ShardId,
    managed: bool,
    epoch: Option<Epoch>,
) -> Result<Option<Epoch>, ApiError> {
    match (managed, epoch) {
        (true, None) => Err(ApiError::InvalidArgument(format!(
            "shard {shard} is managed by the catalog: requests must carry the namespace's epoch \
             (send them through the router)"
        ))),
        (false, Some(_)) => Err(ApiError::InvalidArgument(format!(
            "shard {shard} is not managed by the catalog: requests must not carry an epoch"
        ))),
        (_, epoch) => Ok(epoch),
    }
}

/// Applies a committed command to the shard's state in `space`, appending the changes to
/// `batch`; `managed` says whether the shard enforces ownership by epoch (see the module docs).
///
/// Deterministic: the result and the changes depend only on the command and the state in `db`
/// (never on limits, clocks or configuration), so every replica computes the same. When the
/// result is an error nothing is appended to `batch`. Operation errors (such as
/// [`ApiError::WrongShard`] or [`ApiError::ObjectExists`]) are outcomes of the entry, the same on
/// every replica; [`ApiError::Internal`] means storage failed (or holds a record that does not
/// decode): the replica must stop applying.
pub fn apply(
    db: &DB,
    space: &KeySpace,
    managed: bool,
    command: &Command,
    batch: &mut WriteBatch,
) -> Result<WriteResult, ApiError> {
    let ns = &command.namespace;
    let epoch = validate_epoch(space.shard, managed, command.epoch)?;
    let served = || check_served(db, space, ns, epoch);
    match &command.op {
        WriteOp::AdoptNamespace => {
            let epoch = admin_epoch(space.shard, &command.op, epoch)?;
            adopt(db, space, ns, epoch, batch)
        }
        WriteOp::DropNamespace => {
            let epoch = admin_epoch(space.shard, &command.op, epoch)?;
            drop_namespace(db, space, ns, epoch, batch)
        }
        WriteOp::PutManifest { manifest, mode } => {
            served()?;
            put_manifest(db, space, ns, manifest, mode, batch)
        }
        WriteOp::DeleteManifest { name } => {
            served()?;
            delete_manifest(db, space, ns, name, batch)
        }
        op @ (WriteOp::Set { .. }
        | WriteOp::Delete { .. }
        | WriteOp::TestAndSet { .. }
        | WriteOp::Replace { .. }
        | WriteOp::DeletePrefix { .. }
        | WriteOp::Sequence { .. }
        | WriteOp::Nop) => {
            served()?;
            kv::apply_write(db, space, ns, op, batch)
        }
    }
}

/// Serves a read from `view` (which must show the same applied state as `space`). Checks the
/// epoch and ownership like [`apply`]; then `GetManifests` answers in the order asked (`None`
/// for a missing object), `ListObjects` a page of names (see [`ReadOp::ListObjects`]: a page
/// holds fewer than `limit` names, with `more` set, when more would pass
/// [`KvLimits::response_size_max_bytes`]), `NamespaceStats` zeros for a namespace without
/// objects. An answer over the response size fails with [`ApiError::TooLarge`]
/// (`what: "response"`). Does not repeat [`validate_read`].
pub fn read(
    view: &impl KvView,
    space: &KeySpace,
    managed: bool,
    namespace: &Namespace,
    epoch: Option<Epoch>,
    op: &ReadOp,
    limits: &KvLimits,
) -> Result<ReadResult, ApiError> {
    let epoch = validate_epoch(space.shard, managed, epoch)?;
    check_served(view, space, namespace, epoch)?;
    match op {
        ReadOp::GetManifests { names } => {
            let mut response = ResponseSize::new(limits);
            let mut manifests = Vec::with_capacity(names.len());
            for name in names {
                let stored = view.get(&space.manifest_key(namespace, name))?;
                response.add(stored.as_ref().map_or(0, Vec::len))?;
                manifests.push(
                    stored
                        .map(|bytes| decode_manifest(namespace, &bytes))
                        .transpose()?,
                );
            }
            Ok(ReadResult::Manifests(manifests))
        }
        ReadOp::ListObjects {
            prefix,
            start_after,
            limit,
        } => list_objects(
            view,
            space,
            namespace,
            prefix,
            start_after.as_deref(),
            *limit,
            limits,
        ),
        ReadOp::NamespaceStats => Ok(ReadResult::Stats(stats(view, space, namespace)?)),
        ReadOp::Get { .. }
        | ReadOp::Exists { .. }
        | ReadOp::MultiGet { .. }
        | ReadOp::MultiGetOption { .. }
        | ReadOp::Range(_)
        | ReadOp::RangeEntries(_)
        | ReadOp::RevRangeEntries(_)
        | ReadOp::PrefixKeys { .. }
        | ReadOp::Count { .. } => kv::read(view, space, namespace, op, limits),
    }
}

/// Stores `policy` as the group's replication policy in `space` (applying a
/// [`Proposal::Policy`]). Deterministic, like [`apply`].
pub fn apply_policy(
    db: &DB,
    space: &KeySpace,
    policy: &GroupPolicy,
    batch: &mut WriteBatch,
) -> Result<WriteResult, ApiError> {
    let bytes = postcard::to_allocvec(policy)
        .map_err(|e| ApiError::Internal(format!("encoding the group policy: {e}")))?;
    batch.put_cf(data_cf(db)?, space.group_key(GroupKey::Policy), bytes);
    Ok(WriteResult::Done)
}

/// The group's replication policy in `space` (`None`: never set, the defaults apply).
pub fn group_policy(view: &impl KvView, space: &KeySpace) -> Result<Option<GroupPolicy>, ApiError> {
    view.get(&space.group_key(GroupKey::Policy))?
        .map(|bytes| {
            postcard::from_bytes(&bytes).map_err(|e| {
                ApiError::Internal(format!(
                    "the group policy of shard {} does not decode: {e}",
                    space.shard
                ))
            })
        })
        .transpose()
}

/// The ownership record of namespace `ns` in `space` (`None`: never adopted nor dropped).
pub fn ownership(
    view: &impl KvView,
    space: &KeySpace,
    ns: &Namespace,
) -> Result<Option<Ownership>, ApiError> {
    view.get(&space.system_key(ns, SystemRecord::Ownership))?
        .map(|bytes| decode(&bytes, "ownership record", ns))
        .transpose()
}

/// The error of a request the shard does not serve at its epoch.
fn wrong_shard(space: &KeySpace, ns: &Namespace, epoch: Option<Epoch>) -> ApiError {
    ApiError::WrongShard {
        shard: space.shard,
        namespace: ns.clone(),
        epoch,
    }
}

/// Passes when the shard serves `ns` at `epoch`: always on an unmanaged shard (`None`), only
/// when it owns the namespace at exactly that epoch on a managed one.
fn check_served(
    view: &impl KvView,
    space: &KeySpace,
    ns: &Namespace,
    epoch: Option<Epoch>,
) -> Result<(), ApiError> {
    let Some(epoch) = epoch else {
        return Ok(());
    };
    match ownership(view, space, ns)? {
        Some(Ownership::Owned(owned)) if owned == epoch => Ok(()),
        Some(Ownership::Owned(owned)) => Err(wrong_shard(space, ns, Some(owned))),
        Some(Ownership::Dropped(_)) | None => Err(wrong_shard(space, ns, None)),
    }
}

/// The epoch of an adopt or a drop: only managed shards (which have one) take them.
fn admin_epoch(shard: ShardId, op: &WriteOp, epoch: Option<Epoch>) -> Result<Epoch, ApiError> {
    epoch.ok_or_else(|| {
        ApiError::InvalidArgument(format!(
            "{}: shard {shard} is not managed by the catalog; its namespaces are not adopted or \
             dropped",
            op.name()
        ))
    })
}

fn put_ownership(
    db: &DB,
    space: &KeySpace,
    ns: &Namespace,
    record: Ownership,
    batch: &mut WriteBatch,
) -> Result<(), ApiError> {
    batch.put_cf(
        data_cf(db)?,
        space.system_key(ns, SystemRecord::Ownership),
        encode(&record),
    );
    Ok(())
}

fn adopt(
    db: &DB,
    space: &KeySpace,
    ns: &Namespace,
    epoch: Epoch,
    batch: &mut WriteBatch,
) -> Result<WriteResult, ApiError> {
    match ownership(db, space, ns)? {
        Some(Ownership::Owned(owned)) if owned == epoch => return Ok(WriteResult::Done),
        Some(Ownership::Owned(owned)) if owned > epoch => {
            return Err(wrong_shard(space, ns, Some(owned)));
        }
        // A drop at this epoch or later wins over an adopt it already superseded.
        Some(Ownership::Dropped(dropped)) if dropped >= epoch => {
            return Err(wrong_shard(space, ns, None));
        }
        // New; or assigned to this shard again at a newer epoch (the data stays); or re-created
        // after an older drop (which removed the data, and nothing writes a dropped namespace).
        None | Some(Ownership::Owned(_) | Ownership::Dropped(_)) => {}
    }
    put_ownership(db, space, ns, Ownership::Owned(epoch), batch)?;
    Ok(WriteResult::Done)
}

/// Drops namespace `ns` at `epoch`; the count is the key-value keys and manifests deleted.
///
/// The deletion is three range deletes (one per area): O(1) in the batch, whatever the namespace
/// holds. The count needs the number of keys: manifests are counted by the statistics, key-value
/// keys by a scan of the namespace's keys. That scan is a read on the host loop that grows with
/// the namespace, and no group of the host advances meanwhile; it is accepted because a drop is
/// rare, while keeping a key count instead would cost a read on every `Set`, which today writes
/// blind.
fn drop_namespace(
    db: &DB,
    space: &KeySpace,
    ns: &Namespace,
    epoch: Epoch,
    batch: &mut WriteBatch,
) -> Result<WriteResult, ApiError> {
    match ownership(db, space, ns)? {
        Some(Ownership::Owned(owned)) if owned > epoch => Err(wrong_shard(space, ns, Some(owned))),
        Some(Ownership::Owned(_)) => {
            let (lower, upper) = namespace_prefix_range(space, Area::Kv, ns, b"");
            let mut keys = 0_u64;
            KvView::scan::<()>(db, &lower, &upper, ScanOrder::Ascending, |_, _| {
                keys += 1;
                ControlFlow::Continue(())
            })?;
            let objects = stats(db, space, ns)?.objects;
            let cf = data_cf(db)?;
            for area in Area::ALL {
                let (lower, upper) = namespace_prefix_range(space, area, ns, b"");
                batch.delete_range_cf(cf, lower, upper);
            }
            // After the range delete in the same batch, so it is newer and survives it.
            put_ownership(db, space, ns, Ownership::Dropped(epoch), batch)?;
            Ok(WriteResult::Count(keys + objects))
        }
        // Dropped at this epoch or later already: nothing to do.
        Some(Ownership::Dropped(dropped)) if dropped >= epoch => Ok(WriteResult::Count(0)),
        // Never owned here (or dropped earlier): only the tombstone, so that an adopt older than
        // this drop, arriving late, is refused.
        None | Some(Ownership::Dropped(_)) => {
            put_ownership(db, space, ns, Ownership::Dropped(epoch), batch)?;
            Ok(WriteResult::Count(0))
        }
    }
}

fn manifest(
    view: &impl KvView,
    space: &KeySpace,
    ns: &Namespace,
    name: &str,
) -> Result<Option<Manifest>, ApiError> {
    view.get(&space.manifest_key(ns, name))?
        .map(|bytes| decode_manifest(ns, &bytes))
        .transpose()
}

fn put_manifest(
    db: &DB,
    space: &KeySpace,
    ns: &Namespace,
    manifest: &Manifest,
    mode: &PutMode,
    batch: &mut WriteBatch,
) -> Result<WriteResult, ApiError> {
    // Validated before proposing, with the configured size limit; checked again here without
    // it (the same on every replica) so that no entry can ever store a manifest that does not
    // describe a readable object.
    manifest.validate(u32::MAX)?;
    let name = &manifest.name;
    let current = self::manifest(db, space, ns, name)?;
    match (mode, &current) {
        (PutMode::Unconditional, _) | (PutMode::MustNotExist, None) => {}
        (PutMode::MustNotExist, Some(_)) => {
            return Err(ApiError::ObjectExists { name: name.clone() });
        }
        (PutMode::MustReplace { object_id }, Some(current)) if current.object_id == *object_id => {}
        (PutMode::MustReplace { .. }, current) => {
            return Err(ApiError::ObjectChanged {
                name: name.clone(),
                current: current.as_ref().map(|m| m.object_id.clone()),
            });
        }
    }
    let mut stats = stats(db, space, ns)?;
    if let Some(current) = &current {
        stats = remove_object(stats, current, ns)?;
    }
    let logical_bytes = stats
        .logical_bytes
        .checked_add(manifest.size_bytes)
        .ok_or_else(|| {
            ApiError::InvalidArgument(format!(
                "namespace {ns} would hold more than {} logical bytes",
                u64::MAX
            ))
        })?;
    let stats = NamespaceStats {
        objects: stats.objects + 1,
        logical_bytes,
    };
    let cf = data_cf(db)?;
    batch.put_cf(cf, space.manifest_key(ns, name), encode(manifest));
    put_stats(cf, space, ns, stats, batch);
    Ok(WriteResult::Done)
}

fn delete_manifest(
    db: &DB,
    space: &KeySpace,
    ns: &Namespace,
    name: &str,
    batch: &mut WriteBatch,
) -> Result<WriteResult, ApiError> {
    let Some(current) = manifest(db, space, ns, name)? else {
        return Err(ApiError::ObjectNotFound {
            name: name.to_string(),
        });
    };
    let stats = remove_object(stats(db, space, ns)?, &current, ns)?;
    let cf = data_cf(db)?;
    batch.delete_cf(cf, space.manifest_key(ns, name));
    put_stats(cf, space, ns, stats, batch);
    Ok(WriteResult::Done)
}

/// The statistics without `object`, which they count.
fn remove_object(
    stats: NamespaceStats,
    object: &Manifest,
    ns: &Namespace,
) -> Result<NamespaceStats, ApiError> {
    // Every manifest write updates the statistics in the same batch: they can only fall short
    // of a stored manifest when the stored state is corrupt.
    match (
        stats.objects.checked_sub(1),
        stats.logical_bytes.checked_sub(object.size_bytes),
    ) {
        (Some(objects), Some(logical_bytes)) => Ok(NamespaceStats {
            objects,
            logical_bytes,
        }),
        _ => Err(ApiError::Internal(format!(
            "storage: the statistics of namespace {ns} ({stats:?}) do not count object {:?}",
            object.name
        ))),
    }
}

/// The statistics of namespace `ns`: zeros when it holds no object.
fn stats(view: &impl KvView, space: &KeySpace, ns: &Namespace) -> Result<NamespaceStats, ApiError> {
    Ok(view
        .get(&space.system_key(ns, SystemRecord::Stats))?
        .map(|bytes| decode(&bytes, "statistics", ns))
        .transpose()?
        .unwrap_or_default())
}

fn put_stats(
    cf: &rocksdb::ColumnFamily,
    space: &KeySpace,
    ns: &Namespace,
    stats: NamespaceStats,
    batch: &mut WriteBatch,
) {
    let key = space.system_key(ns, SystemRecord::Stats);
    if stats == NamespaceStats::default() {
        // A namespace without objects keeps no statistics record.
        batch.delete_cf(cf, key);
    } else {
        batch.put_cf(cf, key, encode(&stats));
    }
}

/// Names of the manifests of `ns` that start with `prefix`, after `start_after`, ascending: at
/// most `limit`, fewer when the names would pass the response size (unless not even one fits).
fn list_objects(
    view: &impl KvView,
    space: &KeySpace,
    ns: &Namespace,
    prefix: &str,
    start_after: Option<&str>,
    limit: u32,
    limits: &KvLimits,
) -> Result<ReadResult, ApiError> {
    let (mut lower, upper) = namespace_prefix_range(space, Area::Manifest, ns, prefix.as_bytes());
    if let Some(after) = start_after {
        // Stored keys order like names (same prefix, then the name bytes).
        lower = lower.max(key_successor(&space.manifest_key(ns, after)));
    }
    let mut names = Vec::new();
    let mut more = false;
    if lower >= upper {
        return Ok(ReadResult::Objects { names, more });
    }
    let skip = space.namespace_prefix(Area::Manifest, ns).len();
    let limit = limit as usize;
    let mut response = ResponseSize::new(limits);
    let outcome = view.scan(&lower, &upper, ScanOrder::Ascending, |stored, _| {
        if names.len() == limit {
            more = true;
            return ControlFlow::Break(Ok(()));
        }
        let name = match std::str::from_utf8(&stored[skip..]) {
            Ok(name) => name,
            Err(e) => {
                return ControlFlow::Break(Err(ApiError::Internal(format!(
                    "storage: an object name of namespace {ns} is not UTF-8: {e}"
                ))));
            }
        };
        if let Err(error) = response.add(name.len()) {
            if names.is_empty() {
                return ControlFlow::Break(Err(error));
            }
            // A shorter page: the caller asks again after the last name.
            more = true;
            return ControlFlow::Break(Ok(()));
        }
        names.push(name.to_string());
        ControlFlow::Continue(())
    })?;
    outcome.unwrap_or(Ok(()))?;
    Ok(ReadResult::Objects { names, more })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Only records of plain data (integers, bytes, strings, enums) are encoded here: postcard
    // cannot fail on them.
    postcard::to_allocvec(value).expect("postcard encodes plain records")
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str, ns: &Namespace) -> Result<T, ApiError> {
    postcard::from_bytes(bytes).map_err(|e| {
        ApiError::Internal(format!(
            "storage: the {what} of namespace {ns} does not decode: {e}"
        ))
    })
}

fn decode_manifest(ns: &Namespace, bytes: &[u8]) -> Result<Manifest, ApiError> {
    decode(bytes, "stored manifest", ns)
}
