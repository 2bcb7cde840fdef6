//! The key-value state machine of a shard replica, on RocksDB.
//!
//! A shard's key-value data lives in the host's `data` column family, in the [`Area::Kv`] keys
//! of its [`KeySpace`], one ordered key space per namespace; nothing here ever sees the other
//! areas (manifests, a namespace's records). This module validates requests against [`KvLimits`]
//! before they are proposed ([`validate_write`], [`validate_read`]), applies committed writes
//! ([`apply_write`]) and serves reads from a consistent view ([`read`]). The semantics are
//! Arakoon's (see `shared/reference/arakoon-alba.md` §1.1). The namespace state machine
//! ([`crate::nsm`]) checks ownership and handles the manifest and namespace operations before it
//! calls this module; those operations are [`ApiError::InvalidArgument`] here.
//!
//! Applying is deterministic: it depends only on the operation and the state in the database,
//! never on limits, clocks or configuration, so every replica computes the same result and the
//! same changes. Limits are enforced before proposing, by the leader.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Bound, ControlFlow};

use cairn_wire::api::{
    ApiError, KeyRange, Namespace, ReadOp, ReadResult, Step, WriteOp, WriteResult,
};
use rocksdb::{ColumnFamily, DB, DBRawIteratorWithThreadMode, ReadOptions, WriteBatch};

use crate::keys::{Area, KeySpace, key_successor, namespace_prefix_range};
use crate::storage::CF_DATA;

/// The limits of the key-value API: every request and every answer is bounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvLimits {
    /// The longest key (and prefix, and range bound), in bytes. Default 64 KiB.
    pub key_size_max_bytes: u32,
    /// The longest value, in bytes. Default 8 MiB.
    pub value_size_max_bytes: u32,
    /// The most key and value bytes one write (all steps of a sequence included) or one
    /// multi-get may carry. Default 16 MiB.
    pub request_size_max_bytes: u32,
    /// The most keys one sequence may name: one per step, plus every key of an `AssertRange`.
    /// Default 10 000.
    pub sequence_steps_max: u32,
    /// The most keys of one multi-get. Default 10 000.
    pub multi_get_keys_max: u32,
    /// The most key and value bytes one read may answer; a read whose answer would be larger
    /// fails with [`ApiError::TooLarge`] (`what: "response"`) and should be repeated with a
    /// smaller `max`. Default 16 MiB.
    pub response_size_max_bytes: u32,
    /// The most results of a range or prefix read: the implicit `max` when the request gives
    /// none (more results fail with `what: "results"`), and the largest `max` a request may give.
    /// Default 100 000.
    pub range_results_max: u32,
    /// The largest manifest, encoded, in bytes: a bigger one fails with [`ApiError::TooLarge`]
    /// (`what: "manifest"`). Default 256 KiB.
    pub manifest_size_max_bytes: u32,
    /// The most object names of one `GetManifests` (more fail with `what: "get_manifests"`).
    /// Default 1 000.
    pub get_manifests_max: u32,
    /// The largest `limit` of one `ListObjects` (more fail with `what: "limit"`). Default
    /// 10 000.
    pub list_objects_max: u32,
}

impl Default for KvLimits {
    fn default() -> Self {
        Self {
            key_size_max_bytes: 64 * 1024,
            value_size_max_bytes: 8 * 1024 * 1024,
            request_size_max_bytes: 16 * 1024 * 1024,
            sequence_steps_max: 10_000,
            multi_get_keys_max: 10_000,
            response_size_max_bytes: 16 * 1024 * 1024,
            range_results_max: 100_000,
            manifest_size_max_bytes: 256 * 1024,
            get_manifests_max: 1_000,
            list_objects_max: 10_000,
        }
    }
}

/// Checks a write against `limits` before it is proposed.
///
/// Fails with [`ApiError::TooLarge`] naming what is too large: `"key"` (a key or prefix),
/// `"value"`, `"request"` (the total key and value bytes of the operation) or `"sequence"` (the
/// number of keys a sequence names); with [`ApiError::InvalidArgument`] for an empty key or an
/// `AssertRange` key outside its prefix (an assertion that can never hold).
pub fn validate_write(op: &WriteOp, limits: &KvLimits) -> Result<(), ApiError> {
    let mut request = RequestSize::new(limits);
    match op {
        WriteOp::PutManifest { .. }
        | WriteOp::DeleteManifest { .. }
        | WriteOp::AdoptNamespace
        | WriteOp::DropNamespace => return Err(not_kv(op.name())),
        WriteOp::Set { key, value } => {
            request.key(key)?;
            request.value(value)?;
        }
        WriteOp::Delete { key } => request.key(key)?,
        WriteOp::TestAndSet {
            key,
            expected,
            wanted,
        } => {
            request.key(key)?;
            request.optional_value(expected.as_deref())?;
            request.optional_value(wanted.as_deref())?;
        }
        WriteOp::Replace { key, wanted } => {
            request.key(key)?;
            request.optional_value(wanted.as_deref())?;
        }
        WriteOp::DeletePrefix { prefix } => request.prefix(prefix)?,
        WriteOp::Sequence { steps } => {
            let keys: usize = steps
                .iter()
                .map(|step| match step {
                    Step::AssertRange { keys, .. } => 1 + keys.len(),
                    _ => 1,
                })
                .sum();
            if keys > limits.sequence_steps_max as usize {
                return Err(too_large("sequence", keys, limits.sequence_steps_max));
            }
            for step in steps {
                validate_step(step, &mut request)?;
            }
        }
        WriteOp::Nop => {}
    }
    Ok(())
}

fn validate_step(step: &Step, request: &mut RequestSize<'_>) -> Result<(), ApiError> {
    match step {
        Step::Set { key, value } => {
            request.key(key)?;
            request.value(value)
        }
        Step::Delete { key } | Step::AssertExists { key } => request.key(key),
        Step::Assert { key, expected } => {
            request.key(key)?;
            request.optional_value(expected.as_deref())
        }
        Step::AssertRange { prefix, keys } => {
            request.prefix(prefix)?;
            for key in keys {
                request.key(key)?;
                if !key.starts_with(prefix) {
                    return Err(ApiError::InvalidArgument(format!(
                        "assert_range: key {key:?} does not start with the prefix {prefix:?}"
                    )));
                }
            }
            Ok(())
        }
        Step::DeletePrefix { prefix } => request.prefix(prefix),
        Step::TestAndSet {
            key,
            expected,
            wanted,
        } => {
            request.key(key)?;
            request.optional_value(expected.as_deref())?;
            request.optional_value(wanted.as_deref())
        }
    }
}

/// Checks a read against `limits` before it is served.
///
/// Fails with [`ApiError::TooLarge`] naming what is too large: `"key"` (a key, prefix or range
/// bound), `"multi_get"` (the number of keys), `"request"` (the key bytes of a multi-get) or
/// `"max"` (a range `max` above [`KvLimits::range_results_max`]); with
/// [`ApiError::InvalidArgument`] for an empty key. The size of the answer is checked by [`read`].
pub fn validate_read(op: &ReadOp, limits: &KvLimits) -> Result<(), ApiError> {
    let mut request = RequestSize::new(limits);
    match op {
        ReadOp::GetManifests { .. } | ReadOp::ListObjects { .. } | ReadOp::NamespaceStats => {
            Err(not_kv(op.name()))
        }
        ReadOp::Get { key } | ReadOp::Exists { key } => request.key(key),
        ReadOp::MultiGet { keys } | ReadOp::MultiGetOption { keys } => {
            if keys.len() > limits.multi_get_keys_max as usize {
                return Err(too_large(
                    "multi_get",
                    keys.len(),
                    limits.multi_get_keys_max,
                ));
            }
            keys.iter().try_for_each(|key| request.key(key))
        }
        ReadOp::Range(range) | ReadOp::RangeEntries(range) | ReadOp::RevRangeEntries(range) => {
            for bound in [&range.start, &range.end] {
                if let Bound::Included(key) | Bound::Excluded(key) = bound {
                    request.prefix(key)?;
                }
            }
            validate_max(range.max, limits)
        }
        ReadOp::PrefixKeys { prefix, max } => {
            request.prefix(prefix)?;
            validate_max(*max, limits)
        }
        ReadOp::Count { prefix } => request.prefix(prefix),
    }
}

fn validate_max(max: Option<u32>, limits: &KvLimits) -> Result<(), ApiError> {
    match max {
        Some(max) if max > limits.range_results_max => {
            Err(too_large("max", max as usize, limits.range_results_max))
        }
        _ => Ok(()),
    }
}

/// Sums the key and value bytes of one request while checking each against its own limit.
struct RequestSize<'l> {
    limits: &'l KvLimits,
    bytes: usize,
}

impl<'l> RequestSize<'l> {
    fn new(limits: &'l KvLimits) -> Self {
        Self { limits, bytes: 0 }
    }

    /// A key: non-empty.
    fn key(&mut self, key: &[u8]) -> Result<(), ApiError> {
        if key.is_empty() {
            return Err(ApiError::InvalidArgument(
                "keys must not be empty".to_string(),
            ));
        }
        self.prefix(key)
    }

    /// A prefix or a range bound: may be empty.
    fn prefix(&mut self, prefix: &[u8]) -> Result<(), ApiError> {
        if prefix.len() > self.limits.key_size_max_bytes as usize {
            return Err(too_large(
                "key",
                prefix.len(),
                self.limits.key_size_max_bytes,
            ));
        }
        self.add(prefix.len())
    }

    fn value(&mut self, value: &[u8]) -> Result<(), ApiError> {
        if value.len() > self.limits.value_size_max_bytes as usize {
            return Err(too_large(
                "value",
                value.len(),
                self.limits.value_size_max_bytes,
            ));
        }
        self.add(value.len())
    }

    fn optional_value(&mut self, value: Option<&[u8]>) -> Result<(), ApiError> {
        value.map_or(Ok(()), |value| self.value(value))
    }

    fn add(&mut self, bytes: usize) -> Result<(), ApiError> {
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > self.limits.request_size_max_bytes as usize {
            return Err(too_large(
                "request",
                self.bytes,
                self.limits.request_size_max_bytes,
            ));
        }
        Ok(())
    }
}

pub(crate) fn too_large(what: &str, size: usize, max: u32) -> ApiError {
    ApiError::TooLarge {
        what: what.to_string(),
        size: size as u64,
        max: u64::from(max),
    }
}

/// The error for an operation that is not a key-value one (the namespace state machine handles
/// those before calling this module).
fn not_kv(op: &str) -> ApiError {
    ApiError::InvalidArgument(format!("{op} is not a key-value operation"))
}

fn storage_error(error: rocksdb::Error) -> ApiError {
    ApiError::Internal(format!("storage: {error}"))
}

pub(crate) fn data_cf(db: &DB) -> Result<&ColumnFamily, ApiError> {
    db.cf_handle(CF_DATA).ok_or_else(|| {
        ApiError::Internal(format!("storage: the column family {CF_DATA:?} is missing"))
    })
}

/// The direction of a [`KvView::scan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanOrder {
    /// Lowest key first.
    Ascending,
    /// Highest key first.
    Descending,
}

/// A consistent, read-only view of the data column family, which [`read`] serves from.
///
/// Implemented for [`rocksdb::DB`] (the latest state) and for [`SnapshotView`] (the state at
/// one instant). Keys are full stored keys (see [`KeySpace`]); storage failures are
/// [`ApiError::Internal`].
pub trait KvView {
    /// The value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ApiError>;

    /// Calls `visit` with every entry whose key is in `[lower, upper)`, in `order`, until it
    /// breaks. Returns what it broke with, or `None` when every entry was visited.
    fn scan<B>(
        &self,
        lower: &[u8],
        upper: &[u8],
        order: ScanOrder,
        visit: impl FnMut(&[u8], &[u8]) -> ControlFlow<B>,
    ) -> Result<Option<B>, ApiError>;
}

impl KvView for DB {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ApiError> {
        self.get_cf(data_cf(self)?, key).map_err(storage_error)
    }

    fn scan<B>(
        &self,
        lower: &[u8],
        upper: &[u8],
        order: ScanOrder,
        visit: impl FnMut(&[u8], &[u8]) -> ControlFlow<B>,
    ) -> Result<Option<B>, ApiError> {
        let iterator = self.raw_iterator_cf_opt(data_cf(self)?, scan_options(lower, upper));
        drive(iterator, order, visit)
    }
}

/// A [`KvView`] of the data column family as it was when the view was made: a RocksDB snapshot
/// together with the database it belongs to (a snapshot alone cannot look up a column family).
pub struct SnapshotView<'a> {
    db: &'a DB,
    snapshot: rocksdb::SnapshotWithThreadMode<'a, DB>,
}

impl<'a> SnapshotView<'a> {
    /// Takes a snapshot of `db` now; it is released when the view is dropped.
    pub fn new(db: &'a DB) -> Self {
        Self {
            db,
            snapshot: db.snapshot(),
        }
    }

    /// The snapshot, to read other column families (such as the applied state) at the same
    /// instant as the data.
    pub fn snapshot(&self) -> &rocksdb::SnapshotWithThreadMode<'a, DB> {
        &self.snapshot
    }
}

impl KvView for SnapshotView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ApiError> {
        self.snapshot
            .get_cf(data_cf(self.db)?, key)
            .map_err(storage_error)
    }

    fn scan<B>(
        &self,
        lower: &[u8],
        upper: &[u8],
        order: ScanOrder,
        visit: impl FnMut(&[u8], &[u8]) -> ControlFlow<B>,
    ) -> Result<Option<B>, ApiError> {
        let iterator = self
            .snapshot
            .raw_iterator_cf_opt(data_cf(self.db)?, scan_options(lower, upper));
        drive(iterator, order, visit)
    }
}

fn scan_options(lower: &[u8], upper: &[u8]) -> ReadOptions {
    let mut options = ReadOptions::default();
    // The bounds let RocksDB stop at the end of the range instead of stepping over the
    // tombstones of the next one, and make `seek_to_first`/`seek_to_last` land inside it.
    options.set_iterate_lower_bound(lower);
    options.set_iterate_upper_bound(upper);
    // The bounds alone delimit the scan, whatever prefix extractor the column family has.
    options.set_total_order_seek(true);
    options
}

fn drive<B>(
    mut iterator: DBRawIteratorWithThreadMode<'_, DB>,
    order: ScanOrder,
    mut visit: impl FnMut(&[u8], &[u8]) -> ControlFlow<B>,
) -> Result<Option<B>, ApiError> {
    match order {
        ScanOrder::Ascending => iterator.seek_to_first(),
        ScanOrder::Descending => iterator.seek_to_last(),
    }
    while let Some((key, value)) = iterator.item() {
        if let ControlFlow::Break(b) = visit(key, value) {
            return Ok(Some(b));
        }
        match order {
            ScanOrder::Ascending => iterator.next(),
            ScanOrder::Descending => iterator.prev(),
        }
    }
    iterator.status().map_err(storage_error)?;
    Ok(None)
}

/// Serves read `op` on namespace `ns` of `space` from `view`.
///
/// `Get` and `MultiGet` fail with [`ApiError::NotFound`] naming the (first) missing key. Range
/// reads return at most `max` results; without `max`, more than
/// [`KvLimits::range_results_max`] results fail with [`ApiError::TooLarge`] (`what: "results"`).
/// An answer of more than [`KvLimits::response_size_max_bytes`] key and value bytes fails with
/// `what: "response"` (its `size` is where counting stopped: at least that much). Does not
/// repeat [`validate_read`].
pub fn read(
    view: &impl KvView,
    space: &KeySpace,
    ns: &Namespace,
    op: &ReadOp,
    limits: &KvLimits,
) -> Result<ReadResult, ApiError> {
    let mut response = ResponseSize::new(limits);
    match op {
        ReadOp::GetManifests { .. } | ReadOp::ListObjects { .. } | ReadOp::NamespaceStats => {
            Err(not_kv(op.name()))
        }
        ReadOp::Get { key } => {
            let value = view
                .get(&space.data_key(ns, key))?
                .ok_or_else(|| not_found(key))?;
            response.add(value.len())?;
            Ok(ReadResult::Value(value))
        }
        ReadOp::Exists { key } => Ok(ReadResult::Exists(
            view.get(&space.data_key(ns, key))?.is_some(),
        )),
        ReadOp::MultiGet { keys } => {
            let mut values = Vec::with_capacity(keys.len());
            for key in keys {
                let value = view
                    .get(&space.data_key(ns, key))?
                    .ok_or_else(|| not_found(key))?;
                response.add(value.len())?;
                values.push(value);
            }
            Ok(ReadResult::Values(values))
        }
        ReadOp::MultiGetOption { keys } => {
            let mut values = Vec::with_capacity(keys.len());
            for key in keys {
                let value = view.get(&space.data_key(ns, key))?;
                response.add(value.as_ref().map_or(0, Vec::len))?;
                values.push(value);
            }
            Ok(ReadResult::OptionalValues(values))
        }
        ReadOp::Range(range) => {
            let keys = collect_range(
                view,
                space,
                ns,
                range,
                ScanOrder::Ascending,
                limits,
                |k, _| (k.to_vec(), k.len()),
            )?;
            Ok(ReadResult::Keys(keys))
        }
        ReadOp::RangeEntries(range) => {
            let entries =
                collect_range(view, space, ns, range, ScanOrder::Ascending, limits, entry)?;
            Ok(ReadResult::Entries(entries))
        }
        ReadOp::RevRangeEntries(range) => {
            let entries =
                collect_range(view, space, ns, range, ScanOrder::Descending, limits, entry)?;
            Ok(ReadResult::Entries(entries))
        }
        ReadOp::PrefixKeys { prefix, max } => {
            let bounds = namespace_prefix_range(space, Area::Kv, ns, prefix);
            let skip = space.namespace_prefix(Area::Kv, ns).len();
            let keys = collect(
                view,
                bounds,
                skip,
                ScanOrder::Ascending,
                *max,
                limits,
                |k, _| (k.to_vec(), k.len()),
            )?;
            Ok(ReadResult::Keys(keys))
        }
        ReadOp::Count { prefix } => {
            let (lower, upper) = namespace_prefix_range(space, Area::Kv, ns, prefix);
            let mut count = 0_u64;
            view.scan::<()>(&lower, &upper, ScanOrder::Ascending, |_, _| {
                count += 1;
                ControlFlow::Continue(())
            })?;
            Ok(ReadResult::Count(count))
        }
    }
}

fn not_found(key: &[u8]) -> ApiError {
    ApiError::NotFound { key: key.to_vec() }
}

fn entry(key: &[u8], value: &[u8]) -> ((Vec<u8>, Vec<u8>), usize) {
    ((key.to_vec(), value.to_vec()), key.len() + value.len())
}

/// Counts the key and value bytes of one answer.
pub(crate) struct ResponseSize<'l> {
    limits: &'l KvLimits,
    bytes: usize,
}

impl<'l> ResponseSize<'l> {
    pub(crate) fn new(limits: &'l KvLimits) -> Self {
        Self { limits, bytes: 0 }
    }

    /// Adds `bytes` to the answer; [`ApiError::TooLarge`] (`what: "response"`) past the limit.
    pub(crate) fn add(&mut self, bytes: usize) -> Result<(), ApiError> {
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > self.limits.response_size_max_bytes as usize {
            return Err(too_large(
                "response",
                self.bytes,
                self.limits.response_size_max_bytes,
            ));
        }
        Ok(())
    }
}

/// The stored-key range `[lower, upper)` of a user-key range of namespace `ns`; `None` when it
/// is empty.
fn stored_range(space: &KeySpace, ns: &Namespace, range: &KeyRange) -> Option<(Vec<u8>, Vec<u8>)> {
    let (namespace_lower, namespace_upper) = namespace_prefix_range(space, Area::Kv, ns, b"");
    // Every bound becomes inclusive-below, exclusive-above: the key right after `k` is `k\0`.
    let lower = match &range.start {
        Bound::Included(key) => space.data_key(ns, key),
        Bound::Excluded(key) => key_successor(&space.data_key(ns, key)),
        Bound::Unbounded => namespace_lower,
    };
    let upper = match &range.end {
        Bound::Included(key) => key_successor(&space.data_key(ns, key)),
        Bound::Excluded(key) => space.data_key(ns, key),
        Bound::Unbounded => namespace_upper,
    };
    (lower < upper).then_some((lower, upper))
}

fn collect_range<T>(
    view: &impl KvView,
    space: &KeySpace,
    ns: &Namespace,
    range: &KeyRange,
    order: ScanOrder,
    limits: &KvLimits,
    make: impl Fn(&[u8], &[u8]) -> (T, usize),
) -> Result<Vec<T>, ApiError> {
    match stored_range(space, ns, range) {
        Some(bounds) => {
            let skip = space.namespace_prefix(Area::Kv, ns).len();
            collect(view, bounds, skip, order, range.max, limits, make)
        }
        None => Ok(Vec::new()),
    }
}

/// Collects the results of a range read over stored keys `[lower, upper)`, stripping the first
/// `skip` bytes (the namespace prefix) of every key. `make` builds a result and says how many
/// bytes it adds to the answer.
fn collect<T>(
    view: &impl KvView,
    (lower, upper): (Vec<u8>, Vec<u8>),
    skip: usize,
    order: ScanOrder,
    max: Option<u32>,
    limits: &KvLimits,
    make: impl Fn(&[u8], &[u8]) -> (T, usize),
) -> Result<Vec<T>, ApiError> {
    let count_max = max.unwrap_or(limits.range_results_max) as usize;
    if count_max == 0 {
        return Ok(Vec::new());
    }
    let mut results = Vec::new();
    let mut response = ResponseSize::new(limits);
    let outcome = view.scan(&lower, &upper, order, |stored, value| {
        if results.len() == count_max {
            // An explicit max is a page size; the implicit one is a limit the caller hit.
            return ControlFlow::Break(match max {
                Some(_) => Ok(()),
                None => Err(too_large(
                    "results",
                    count_max + 1,
                    limits.range_results_max,
                )),
            });
        }
        let (result, bytes) = make(&stored[skip..], value);
        if let Err(error) = response.add(bytes) {
            return ControlFlow::Break(Err(error));
        }
        results.push(result);
        ControlFlow::Continue(())
    })?;
    outcome.unwrap_or(Ok(()))?;
    Ok(results)
}

/// Applies committed write `op` on namespace `ns` of `space`.
///
/// Reads the current state from `db` (the `data` column family, which holds everything earlier
/// entries applied), appends the changes to `batch` and returns the result. Deterministic: the
/// same state and operation give the same result and the same changes on every replica. When
/// the result is an error nothing is appended to `batch`: a failed sequence leaves no trace.
///
/// Operation errors ([`ApiError::NotFound`], [`ApiError::AssertionFailed`]) are outcomes of the
/// entry, the same on every replica. [`ApiError::Internal`] means the storage failed: the
/// replica must stop applying, since continuing would let its state diverge.
pub fn apply_write(
    db: &DB,
    space: &KeySpace,
    ns: &Namespace,
    op: &WriteOp,
    batch: &mut WriteBatch,
) -> Result<WriteResult, ApiError> {
    let cf = data_cf(db)?;
    let mut state = Overlay::new(db, cf, space, ns);
    let result = match op {
        WriteOp::PutManifest { .. }
        | WriteOp::DeleteManifest { .. }
        | WriteOp::AdoptNamespace
        | WriteOp::DropNamespace => return Err(not_kv(op.name())),
        WriteOp::Set { key, value } => {
            state.write(key, Some(value.as_slice()));
            WriteResult::Done
        }
        WriteOp::Delete { key } => {
            state.delete(key)?;
            WriteResult::Done
        }
        WriteOp::TestAndSet {
            key,
            expected,
            wanted,
        } => WriteResult::Value(state.test_and_set(key, expected.as_deref(), wanted.as_deref())?),
        WriteOp::Replace { key, wanted } => {
            let previous = state.get(key)?;
            if previous.is_some() || wanted.is_some() {
                state.write(key, wanted.as_deref());
            }
            WriteResult::Value(previous.map(Cow::into_owned))
        }
        WriteOp::DeletePrefix { prefix } => WriteResult::Count(state.delete_prefix(prefix)?),
        WriteOp::Sequence { steps } => {
            for step in steps {
                state.step(step)?;
            }
            WriteResult::Done
        }
        WriteOp::Nop => WriteResult::Done,
    };
    state.stage(batch);
    Ok(result)
}

/// The state of one namespace as a write in progress sees it: the database plus the changes of
/// the steps applied so far, which are only staged into a batch once the whole write succeeded.
///
/// Changes are kept as the final value of every written key (borrowed from the operation) and a
/// set of deleted prefixes; a written key is always newer than a deleted prefix covering it
/// (deleting a prefix drops the writes under it), so staging the range deletes first and the
/// writes after reproduces the state this overlay shows.
struct Overlay<'a> {
    db: &'a DB,
    cf: &'a ColumnFamily,
    space: &'a KeySpace,
    ns: &'a Namespace,
    /// The length of the namespace prefix of stored keys.
    skip: usize,
    /// The value of every key written so far (`None`: deleted).
    writes: BTreeMap<&'a [u8], Option<&'a [u8]>>,
    /// The deleted prefixes, none a prefix of another: then the only one that can cover a key
    /// is the greatest one not above it.
    deleted: BTreeSet<&'a [u8]>,
}

impl<'a> Overlay<'a> {
    fn new(db: &'a DB, cf: &'a ColumnFamily, space: &'a KeySpace, ns: &'a Namespace) -> Self {
        Self {
            db,
            cf,
            space,
            ns,
            skip: space.namespace_prefix(Area::Kv, ns).len(),
            writes: BTreeMap::new(),
            deleted: BTreeSet::new(),
        }
    }

    fn step(&mut self, step: &'a Step) -> Result<(), ApiError> {
        match step {
            Step::Set { key, value } => self.write(key, Some(value.as_slice())),
            Step::Delete { key } => self.delete(key)?,
            Step::Assert { key, expected } => {
                if self.get(key)?.as_deref() != expected.as_deref() {
                    return Err(assertion_failed(key));
                }
            }
            Step::AssertExists { key } => {
                if self.get(key)?.is_none() {
                    return Err(assertion_failed(key));
                }
            }
            Step::AssertRange { prefix, keys } => {
                let expected: BTreeSet<&[u8]> = keys.iter().map(Vec::as_slice).collect();
                let mut live = 0_usize;
                let unexpected = self.live_keys(prefix, |key| {
                    live += 1;
                    if expected.contains(key) {
                        ControlFlow::Continue(())
                    } else {
                        ControlFlow::Break(())
                    }
                })?;
                if unexpected.is_some() || live != expected.len() {
                    return Err(assertion_failed(prefix));
                }
            }
            Step::DeletePrefix { prefix } => {
                self.delete_prefix(prefix)?;
            }
            Step::TestAndSet {
                key,
                expected,
                wanted,
            } => {
                self.test_and_set(key, expected.as_deref(), wanted.as_deref())?;
            }
        }
        Ok(())
    }

    fn covered(&self, key: &[u8]) -> bool {
        self.deleted
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .is_some_and(|prefix| key.starts_with(prefix))
    }

    fn get(&self, key: &[u8]) -> Result<Option<Cow<'a, [u8]>>, ApiError> {
        if let Some(value) = self.writes.get(key) {
            return Ok(value.map(Cow::Borrowed));
        }
        if self.covered(key) {
            return Ok(None);
        }
        let value = self
            .db
            .get_cf(self.cf, self.space.data_key(self.ns, key))
            .map_err(storage_error)?;
        Ok(value.map(Cow::Owned))
    }

    fn write(&mut self, key: &'a [u8], value: Option<&'a [u8]>) {
        self.writes.insert(key, value);
    }

    fn delete(&mut self, key: &'a [u8]) -> Result<(), ApiError> {
        if self.get(key)?.is_none() {
            return Err(not_found(key));
        }
        self.write(key, None);
        Ok(())
    }

    /// Returns the value after the operation (Arakoon's `test_and_set`).
    fn test_and_set(
        &mut self,
        key: &'a [u8],
        expected: Option<&'a [u8]>,
        wanted: Option<&'a [u8]>,
    ) -> Result<Option<Vec<u8>>, ApiError> {
        let current = self.get(key)?;
        if current.as_deref() != expected {
            return Ok(current.map(Cow::into_owned));
        }
        // Deleting a key that is already absent would only leave a tombstone.
        if current.is_some() || wanted.is_some() {
            self.write(key, wanted);
        }
        Ok(wanted.map(<[u8]>::to_vec))
    }

    /// Deletes every live key starting with `prefix` and returns how many there were.
    fn delete_prefix(&mut self, prefix: &'a [u8]) -> Result<u64, ApiError> {
        let mut count = 0_u64;
        self.live_keys::<()>(prefix, |_| {
            count += 1;
            ControlFlow::Continue(())
        })?;
        if count == 0 {
            // Nothing to delete: a range tombstone would only slow down later reads.
            return Ok(0);
        }
        let under: Vec<&[u8]> = self
            .writes
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .map(|(key, _)| *key)
            .take_while(|key| key.starts_with(prefix))
            .collect();
        for key in under {
            self.writes.remove(key);
        }
        // Keep the deleted prefixes an antichain (see `deleted`).
        if !self.covered(prefix) {
            let nested: Vec<&[u8]> = self
                .deleted
                .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
                .copied()
                .take_while(|p| p.starts_with(prefix))
                .collect();
            for p in nested {
                self.deleted.remove(p);
            }
            self.deleted.insert(prefix);
        }
        Ok(count)
    }

    /// Calls `visit` with every live key starting with `prefix`, in no particular order, until
    /// it breaks.
    fn live_keys<B>(
        &self,
        prefix: &[u8],
        mut visit: impl FnMut(&[u8]) -> ControlFlow<B>,
    ) -> Result<Option<B>, ApiError> {
        let written = self
            .writes
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix));
        for (key, value) in written {
            if value.is_some()
                && let ControlFlow::Break(b) = visit(key)
            {
                return Ok(Some(b));
            }
        }
        if self.covered(prefix) {
            // The whole prefix was deleted: only the writes above are live.
            return Ok(None);
        }
        let (lower, upper) = namespace_prefix_range(self.space, Area::Kv, self.ns, prefix);
        let iterator = self
            .db
            .raw_iterator_cf_opt(self.cf, scan_options(&lower, &upper));
        drive(iterator, ScanOrder::Ascending, |stored, _| {
            let key = &stored[self.skip..];
            if self.writes.contains_key(key) || self.covered(key) {
                return ControlFlow::Continue(());
            }
            visit(key)
        })
    }

    /// Appends the changes to `batch`: range deletes first, then the writes, which are newer.
    fn stage(self, batch: &mut WriteBatch) {
        for prefix in &self.deleted {
            let (lower, upper) = namespace_prefix_range(self.space, Area::Kv, self.ns, prefix);
            batch.delete_range_cf(self.cf, lower, upper);
        }
        for (key, value) in &self.writes {
            let stored = self.space.data_key(self.ns, key);
            match value {
                Some(value) => batch.put_cf(self.cf, stored, value),
                None => batch.delete_cf(self.cf, stored),
            }
        }
    }
}

fn assertion_failed(key: &[u8]) -> ApiError {
    ApiError::AssertionFailed { key: key.to_vec() }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use cairn_wire::api::ShardId;
    use tempfile::TempDir;

    use super::*;

    const SPACE: KeySpace = KeySpace {
        shard: ShardId(1),
        generation: 1,
    };

    struct Store {
        db: DB,
        _dir: TempDir,
    }

    fn open_db(dir: &Path) -> DB {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        DB::open_cf(&options, dir, [CF_DATA]).expect("open RocksDB")
    }

    fn store() -> Store {
        let dir = tempfile::tempdir().expect("temporary directory");
        Store {
            db: open_db(dir.path()),
            _dir: dir,
        }
    }

    fn ns(name: &str) -> Namespace {
        Namespace::new(name).unwrap()
    }

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn keys(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|k| b(k)).collect()
    }

    fn entries(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        list.iter().map(|(k, v)| (b(k), b(v))).collect()
    }

    impl Store {
        /// Applies `op` and writes its batch, checking that a failed write staged nothing.
        fn apply_in(
            &self,
            space: &KeySpace,
            ns: &Namespace,
            op: WriteOp,
        ) -> Result<WriteResult, ApiError> {
            let mut batch = WriteBatch::default();
            let result = apply_write(&self.db, space, ns, &op, &mut batch);
            if result.is_err() {
                assert!(
                    batch.is_empty(),
                    "{op:?} failed with {result:?} but staged changes"
                );
            }
            self.db.write(batch).expect("write batch");
            result
        }

        fn apply(&self, op: WriteOp) -> Result<WriteResult, ApiError> {
            self.apply_in(&SPACE, &ns("ns"), op)
        }

        fn set(&self, key: &str, value: &str) {
            let op = WriteOp::Set {
                key: b(key),
                value: b(value),
            };
            assert_eq!(self.apply(op), Ok(WriteResult::Done));
        }

        fn read_in(
            &self,
            space: &KeySpace,
            ns: &Namespace,
            op: ReadOp,
        ) -> Result<ReadResult, ApiError> {
            read(&self.db, space, ns, &op, &KvLimits::default())
        }

        fn read(&self, op: ReadOp) -> Result<ReadResult, ApiError> {
            self.read_in(&SPACE, &ns("ns"), op)
        }

        fn all(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
            match self.read(ReadOp::RangeEntries(KeyRange::all())) {
                Ok(ReadResult::Entries(entries)) => entries,
                other => panic!("range_entries answered {other:?}"),
            }
        }

        /// Every key and value of the data column family.
        fn raw(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
            let cf = data_cf(&self.db).unwrap();
            self.db
                .iterator_cf(cf, rocksdb::IteratorMode::Start)
                .map(|item| {
                    let (k, v) = item.unwrap();
                    (k.to_vec(), v.to_vec())
                })
                .collect()
        }
    }

    fn range(start: Bound<&str>, end: Bound<&str>, max: Option<u32>) -> KeyRange {
        KeyRange {
            start: start.map(b),
            end: end.map(b),
            max,
        }
    }

    fn filled() -> Store {
        let store = store();
        for key in ["a", "b", "c", "d", "e"] {
            store.set(key, &key.to_uppercase());
        }
        store
    }

    #[test]
    fn get_returns_the_value_or_not_found() {
        let store = filled();
        assert_eq!(
            store.read(ReadOp::Get { key: b("c") }),
            Ok(ReadResult::Value(b("C")))
        );
        assert_eq!(
            store.read(ReadOp::Get { key: b("x") }),
            Err(ApiError::NotFound { key: b("x") })
        );
        assert_eq!(
            store.read(ReadOp::Exists { key: b("c") }),
            Ok(ReadResult::Exists(true))
        );
        assert_eq!(
            store.read(ReadOp::Exists { key: b("x") }),
            Ok(ReadResult::Exists(false))
        );
    }

    #[test]
    fn multi_get_names_the_first_missing_key() {
        let store = filled();
        assert_eq!(
            store.read(ReadOp::MultiGet {
                keys: keys(&["c", "a"])
            }),
            Ok(ReadResult::Values(keys(&["C", "A"])))
        );
        assert_eq!(
            store.read(ReadOp::MultiGet {
                keys: keys(&["a", "y", "x"])
            }),
            Err(ApiError::NotFound { key: b("y") })
        );
        assert_eq!(
            store.read(ReadOp::MultiGetOption {
                keys: keys(&["a", "y", "e"])
            }),
            Ok(ReadResult::OptionalValues(vec![
                Some(b("A")),
                None,
                Some(b("E"))
            ]))
        );
    }

    #[test]
    fn range_honours_inclusive_exclusive_and_open_bounds() {
        use Bound::{Excluded, Included, Unbounded};
        let store = filled();
        let cases: [(Bound<&str>, Bound<&str>, &[&str]); 9] = [
            (Included("b"), Included("d"), &["b", "c", "d"]),
            (Excluded("b"), Included("d"), &["c", "d"]),
            (Included("b"), Excluded("d"), &["b", "c"]),
            (Excluded("b"), Excluded("d"), &["c"]),
            (Unbounded, Excluded("c"), &["a", "b"]),
            (Excluded("c"), Unbounded, &["d", "e"]),
            (Included("bb"), Included("dd"), &["c", "d"]),
            (Included("d"), Included("b"), &[]),
            (Excluded("c"), Excluded("c"), &[]),
        ];
        for (start, end, expected) in cases {
            assert_eq!(
                store.read(ReadOp::Range(range(start, end, None))),
                Ok(ReadResult::Keys(keys(expected))),
                "range {start:?}..{end:?}"
            );
        }
    }

    #[test]
    fn range_entries_stop_at_max() {
        use Bound::{Excluded, Unbounded};
        let store = filled();
        assert_eq!(
            store.read(ReadOp::RangeEntries(range(
                Excluded("a"),
                Unbounded,
                Some(2)
            ))),
            Ok(ReadResult::Entries(entries(&[("b", "B"), ("c", "C")])))
        );
        assert_eq!(
            store.read(ReadOp::Range(range(Unbounded, Unbounded, Some(0)))),
            Ok(ReadResult::Keys(Vec::new()))
        );
    }

    #[test]
    fn rev_range_entries_descend_from_the_end_bound() {
        use Bound::{Excluded, Included, Unbounded};
        let store = filled();
        assert_eq!(
            store.read(ReadOp::RevRangeEntries(range(
                Included("b"),
                Excluded("e"),
                None
            ))),
            Ok(ReadResult::Entries(entries(&[
                ("d", "D"),
                ("c", "C"),
                ("b", "B")
            ])))
        );
        assert_eq!(
            store.read(ReadOp::RevRangeEntries(range(
                Excluded("b"),
                Included("e"),
                Some(2)
            ))),
            Ok(ReadResult::Entries(entries(&[("e", "E"), ("d", "D")])))
        );
        assert_eq!(
            store.read(ReadOp::RevRangeEntries(range(
                Unbounded,
                Unbounded,
                Some(1)
            ))),
            Ok(ReadResult::Entries(entries(&[("e", "E")])))
        );
    }

    #[test]
    fn prefix_keys_and_count_see_only_the_prefix() {
        let store = store();
        for key in ["a", "ab", "abc", "abd", "b", "ab\u{7f}"] {
            store.set(key, "v");
        }
        store.set("ab\u{0}", "v");
        assert_eq!(
            store.read(ReadOp::PrefixKeys {
                prefix: b("ab"),
                max: None
            }),
            Ok(ReadResult::Keys(keys(&[
                "ab", "ab\u{0}", "abc", "abd", "ab\u{7f}"
            ])))
        );
        assert_eq!(
            store.read(ReadOp::PrefixKeys {
                prefix: b("ab"),
                max: Some(2)
            }),
            Ok(ReadResult::Keys(keys(&["ab", "ab\u{0}"])))
        );
        assert_eq!(
            store.read(ReadOp::Count { prefix: b("ab") }),
            Ok(ReadResult::Count(5))
        );
        assert_eq!(
            store.read(ReadOp::Count { prefix: b("") }),
            Ok(ReadResult::Count(7))
        );
        assert_eq!(
            store.read(ReadOp::Count { prefix: b("z") }),
            Ok(ReadResult::Count(0))
        );
    }

    #[test]
    fn keys_with_0xff_bytes_stay_inside_their_prefix() {
        let store = store();
        let op = |key: &[u8]| WriteOp::Set {
            key: key.to_vec(),
            value: b("v"),
        };
        for key in [&[0xff][..], &[0xff, 0xff], &[0xfe, 0xff], &[1]] {
            store.apply(op(key)).unwrap();
        }
        assert_eq!(
            store.read(ReadOp::PrefixKeys {
                prefix: vec![0xff],
                max: None
            }),
            Ok(ReadResult::Keys(vec![vec![0xff], vec![0xff, 0xff]]))
        );
        assert_eq!(
            store.apply(WriteOp::DeletePrefix { prefix: vec![0xff] }),
            Ok(WriteResult::Count(2))
        );
        assert_eq!(
            store.read(ReadOp::Range(KeyRange::all())),
            Ok(ReadResult::Keys(vec![vec![1], vec![0xfe, 0xff]]))
        );
    }

    #[test]
    fn delete_of_a_missing_key_is_not_found() {
        let store = filled();
        assert_eq!(
            store.apply(WriteOp::Delete { key: b("x") }),
            Err(ApiError::NotFound { key: b("x") })
        );
        assert_eq!(
            store.apply(WriteOp::Delete { key: b("a") }),
            Ok(WriteResult::Done)
        );
        assert_eq!(
            store.read(ReadOp::Get { key: b("a") }),
            Err(ApiError::NotFound { key: b("a") })
        );
    }

    #[test]
    fn test_and_set_returns_the_value_after_the_operation() {
        let store = filled();
        let tas = |key: &str, expected: Option<&str>, wanted: Option<&str>| WriteOp::TestAndSet {
            key: b(key),
            expected: expected.map(b),
            wanted: wanted.map(b),
        };
        // Equal: the wanted value is set and returned.
        assert_eq!(
            store.apply(tas("a", Some("A"), Some("A2"))),
            Ok(WriteResult::Value(Some(b("A2"))))
        );
        // Not equal: the current value is returned, unchanged.
        assert_eq!(
            store.apply(tas("a", Some("A"), Some("A3"))),
            Ok(WriteResult::Value(Some(b("A2"))))
        );
        // Absent as expected: created.
        assert_eq!(
            store.apply(tas("n", None, Some("N"))),
            Ok(WriteResult::Value(Some(b("N"))))
        );
        // Expected absent but present: unchanged.
        assert_eq!(
            store.apply(tas("n", None, Some("X"))),
            Ok(WriteResult::Value(Some(b("N"))))
        );
        // Wanted None deletes.
        assert_eq!(
            store.apply(tas("n", Some("N"), None)),
            Ok(WriteResult::Value(None))
        );
        assert_eq!(
            store.read(ReadOp::MultiGetOption {
                keys: keys(&["a", "n"])
            }),
            Ok(ReadResult::OptionalValues(vec![Some(b("A2")), None]))
        );
        // Expected a value of a missing key: answers None, nothing changes.
        assert_eq!(
            store.apply(tas("m", Some("M"), Some("X"))),
            Ok(WriteResult::Value(None))
        );
        assert_eq!(store.all().len(), 5);
    }

    #[test]
    fn replace_returns_the_previous_value() {
        let store = filled();
        let replace = |key: &str, wanted: Option<&str>| WriteOp::Replace {
            key: b(key),
            wanted: wanted.map(b),
        };
        assert_eq!(
            store.apply(replace("a", Some("A2"))),
            Ok(WriteResult::Value(Some(b("A"))))
        );
        assert_eq!(
            store.apply(replace("n", Some("N"))),
            Ok(WriteResult::Value(None))
        );
        assert_eq!(
            store.apply(replace("a", None)),
            Ok(WriteResult::Value(Some(b("A2"))))
        );
        assert_eq!(
            store.apply(replace("z", None)),
            Ok(WriteResult::Value(None))
        );
        assert_eq!(
            store.read(ReadOp::Range(KeyRange::all())),
            Ok(ReadResult::Keys(keys(&["b", "c", "d", "e", "n"])))
        );
    }

    #[test]
    fn delete_prefix_returns_how_many_were_deleted() {
        let store = store();
        for key in ["a", "ab", "abc", "b"] {
            store.set(key, "v");
        }
        assert_eq!(
            store.apply(WriteOp::DeletePrefix { prefix: b("ab") }),
            Ok(WriteResult::Count(2))
        );
        assert_eq!(
            store.read(ReadOp::Range(KeyRange::all())),
            Ok(ReadResult::Keys(keys(&["a", "b"])))
        );
        assert_eq!(
            store.apply(WriteOp::DeletePrefix { prefix: b("ab") }),
            Ok(WriteResult::Count(0))
        );
        assert_eq!(
            store.apply(WriteOp::DeletePrefix { prefix: b("") }),
            Ok(WriteResult::Count(2))
        );
        assert_eq!(store.all(), Vec::new());
    }

    #[test]
    fn delete_prefix_of_nothing_stages_nothing() {
        let store = filled();
        let mut batch = WriteBatch::default();
        let op = WriteOp::DeletePrefix { prefix: b("x") };
        assert_eq!(
            apply_write(&store.db, &SPACE, &ns("ns"), &op, &mut batch),
            Ok(WriteResult::Count(0))
        );
        assert!(batch.is_empty());
    }

    #[test]
    fn nop_is_done_and_changes_nothing() {
        let store = filled();
        let mut batch = WriteBatch::default();
        assert_eq!(
            apply_write(&store.db, &SPACE, &ns("ns"), &WriteOp::Nop, &mut batch),
            Ok(WriteResult::Done)
        );
        assert!(batch.is_empty());
    }

    #[test]
    fn sequence_steps_see_the_steps_before_them() {
        let store = filled();
        let steps = vec![
            Step::Set {
                key: b("x"),
                value: b("X"),
            },
            Step::Assert {
                key: b("x"),
                expected: Some(b("X")),
            },
            Step::Delete { key: b("a") },
            Step::Assert {
                key: b("a"),
                expected: None,
            },
            Step::DeletePrefix { prefix: b("") },
            Step::AssertRange {
                prefix: b(""),
                keys: Vec::new(),
            },
            Step::Set {
                key: b("p1"),
                value: b("1"),
            },
            Step::Set {
                key: b("p2"),
                value: b("2"),
            },
            Step::TestAndSet {
                key: b("p2"),
                expected: Some(b("2")),
                wanted: Some(b("2b")),
            },
            Step::AssertRange {
                prefix: b("p"),
                keys: keys(&["p2", "p1"]),
            },
            Step::AssertExists { key: b("p1") },
            Step::DeletePrefix { prefix: b("p1") },
            Step::Set {
                key: b("q"),
                value: b("Q"),
            },
        ];
        assert_eq!(
            store.apply(WriteOp::Sequence { steps }),
            Ok(WriteResult::Done)
        );
        assert_eq!(store.all(), entries(&[("p2", "2b"), ("q", "Q")]));
    }

    #[test]
    fn a_set_after_a_delete_prefix_in_a_sequence_survives() {
        let store = filled();
        let steps = vec![
            Step::Set {
                key: b("b2"),
                value: b("old"),
            },
            Step::DeletePrefix { prefix: b("b") },
            Step::Set {
                key: b("b3"),
                value: b("new"),
            },
            Step::Delete { key: b("c") },
            Step::DeletePrefix { prefix: b("") },
            Step::Set {
                key: b("c"),
                value: b("C2"),
            },
        ];
        assert_eq!(
            store.apply(WriteOp::Sequence { steps }),
            Ok(WriteResult::Done)
        );
        assert_eq!(store.all(), entries(&[("c", "C2")]));
    }

    #[test]
    fn a_failed_sequence_leaves_no_trace() {
        let store = filled();
        let before = store.raw();
        let set_x = Step::Set {
            key: b("x"),
            value: b("X"),
        };
        let failing: [(Step, ApiError); 6] = [
            (
                Step::Assert {
                    key: b("a"),
                    expected: Some(b("wrong")),
                },
                ApiError::AssertionFailed { key: b("a") },
            ),
            (
                Step::Assert {
                    key: b("a"),
                    expected: None,
                },
                ApiError::AssertionFailed { key: b("a") },
            ),
            (
                Step::AssertExists { key: b("zz") },
                ApiError::AssertionFailed { key: b("zz") },
            ),
            (
                Step::Delete { key: b("zz") },
                ApiError::NotFound { key: b("zz") },
            ),
            (
                Step::AssertRange {
                    prefix: b(""),
                    keys: keys(&["a", "b", "c", "d", "e"]),
                },
                // The steps before added "x" and removed "b" and "c".
                ApiError::AssertionFailed { key: b("") },
            ),
            (
                Step::AssertRange {
                    prefix: b("x"),
                    keys: keys(&["x", "xx"]),
                },
                ApiError::AssertionFailed { key: b("x") },
            ),
        ];
        for (step, error) in failing {
            let steps = vec![
                set_x.clone(),
                Step::DeletePrefix { prefix: b("b") },
                Step::TestAndSet {
                    key: b("c"),
                    expected: Some(b("C")),
                    wanted: None,
                },
                step,
                Step::Set {
                    key: b("y"),
                    value: b("Y"),
                },
            ];
            assert_eq!(store.apply(WriteOp::Sequence { steps }), Err(error));
            assert_eq!(store.raw(), before);
        }
    }

    #[test]
    fn test_and_set_in_a_sequence_never_aborts() {
        let store = filled();
        let steps = vec![
            Step::TestAndSet {
                key: b("a"),
                expected: Some(b("wrong")),
                wanted: Some(b("X")),
            },
            Step::Set {
                key: b("b"),
                value: b("B2"),
            },
        ];
        assert_eq!(
            store.apply(WriteOp::Sequence { steps }),
            Ok(WriteResult::Done)
        );
        assert_eq!(
            store.read(ReadOp::MultiGet {
                keys: keys(&["a", "b"])
            }),
            Ok(ReadResult::Values(keys(&["A", "B2"])))
        );
    }

    #[test]
    fn namespaces_are_isolated_even_when_one_name_prefixes_the_other() {
        let store = store();
        let (a, ab) = (ns("a"), ns("ab"));
        // In namespace "ab", key "x"; in namespace "a", key "bx" would share the bytes "abx"
        // without the length byte.
        let set = |ns: &Namespace, key: &str| {
            store
                .apply_in(
                    &SPACE,
                    ns,
                    WriteOp::Set {
                        key: b(key),
                        value: b(ns.as_str()),
                    },
                )
                .unwrap()
        };
        set(&ab, "x");
        set(&ab, "y");
        set(&a, "bx");
        set(&a, "c");
        assert_eq!(
            store.read_in(&SPACE, &a, ReadOp::Range(KeyRange::all())),
            Ok(ReadResult::Keys(keys(&["bx", "c"])))
        );
        assert_eq!(
            store.read_in(&SPACE, &a, ReadOp::RevRangeEntries(KeyRange::all())),
            Ok(ReadResult::Entries(entries(&[("c", "a"), ("bx", "a")])))
        );
        assert_eq!(
            store.read_in(&SPACE, &ab, ReadOp::Count { prefix: b("") }),
            Ok(ReadResult::Count(2))
        );
        assert_eq!(
            store.read_in(&SPACE, &a, ReadOp::Get { key: b("x") }),
            Err(ApiError::NotFound { key: b("x") })
        );
        assert_eq!(
            store.apply_in(&SPACE, &a, WriteOp::DeletePrefix { prefix: b("") }),
            Ok(WriteResult::Count(2))
        );
        assert_eq!(
            store.read_in(&SPACE, &ab, ReadOp::Range(KeyRange::all())),
            Ok(ReadResult::Keys(keys(&["x", "y"])))
        );
    }

    #[test]
    fn generations_and_shards_are_isolated() {
        let store = store();
        let n = ns("ns");
        let spaces = [
            KeySpace {
                shard: ShardId(1),
                generation: 1,
            },
            KeySpace {
                shard: ShardId(1),
                generation: 2,
            },
            KeySpace {
                shard: ShardId(2),
                generation: 1,
            },
        ];
        for (i, space) in spaces.iter().enumerate() {
            for key in ["k", "l"] {
                let op = WriteOp::Set {
                    key: b(key),
                    value: i.to_string().into_bytes(),
                };
                store.apply_in(space, &n, op).unwrap();
            }
        }
        let delete_all = WriteOp::DeletePrefix { prefix: b("") };
        assert_eq!(
            store.apply_in(&spaces[1], &n, delete_all),
            Ok(WriteResult::Count(2))
        );
        assert_eq!(
            store.read_in(&spaces[0], &n, ReadOp::RangeEntries(KeyRange::all())),
            Ok(ReadResult::Entries(entries(&[("k", "0"), ("l", "0")])))
        );
        assert_eq!(
            store.read_in(&spaces[1], &n, ReadOp::Count { prefix: b("") }),
            Ok(ReadResult::Count(0))
        );
        assert_eq!(
            store.read_in(&spaces[2], &n, ReadOp::RevRangeEntries(KeyRange::all())),
            Ok(ReadResult::Entries(entries(&[("l", "2"), ("k", "2")])))
        );
    }

    #[test]
    fn a_snapshot_view_reads_the_state_of_when_it_was_taken() {
        let store = filled();
        let view = SnapshotView::new(&store.db);
        store.set("a", "changed");
        store.set("f", "F");
        let n = ns("ns");
        let limits = KvLimits::default();
        assert_eq!(
            read(&view, &SPACE, &n, &ReadOp::Get { key: b("a") }, &limits),
            Ok(ReadResult::Value(b("A")))
        );
        assert_eq!(
            read(&view, &SPACE, &n, &ReadOp::Count { prefix: b("") }, &limits),
            Ok(ReadResult::Count(5))
        );
        assert_eq!(
            read(
                &view,
                &SPACE,
                &n,
                &ReadOp::RevRangeEntries(KeyRange {
                    max: Some(1),
                    ..KeyRange::all()
                }),
                &limits
            ),
            Ok(ReadResult::Entries(entries(&[("e", "E")])))
        );
        assert_eq!(
            store.read(ReadOp::Get { key: b("a") }),
            Ok(ReadResult::Value(b("changed")))
        );
    }

    fn what(result: Result<(), ApiError>) -> (String, u64, u64) {
        match result {
            Err(ApiError::TooLarge { what, size, max }) => (what, size, max),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    fn small_limits() -> KvLimits {
        KvLimits {
            key_size_max_bytes: 4,
            value_size_max_bytes: 8,
            request_size_max_bytes: 20,
            sequence_steps_max: 3,
            multi_get_keys_max: 2,
            response_size_max_bytes: 6,
            range_results_max: 3,
            ..KvLimits::default()
        }
    }

    #[test]
    fn writes_over_the_limits_are_too_large() {
        let limits = small_limits();
        let set = |key: &str, value: &str| Step::Set {
            key: b(key),
            value: b(value),
        };
        let check = |op: WriteOp| validate_write(&op, &limits);
        assert_eq!(
            what(check(WriteOp::Set {
                key: b("kkkkk"),
                value: b("v")
            })),
            ("key".to_string(), 5, 4)
        );
        assert_eq!(
            what(check(WriteOp::Replace {
                key: b("k"),
                wanted: Some(b("123456789"))
            })),
            ("value".to_string(), 9, 8)
        );
        assert_eq!(
            what(check(WriteOp::DeletePrefix { prefix: b("ppppp") })),
            ("key".to_string(), 5, 4)
        );
        // Exactly at the limit is fine.
        assert_eq!(
            check(WriteOp::TestAndSet {
                key: b("kkkk"),
                expected: Some(b("12345678")),
                wanted: Some(b("12345678"))
            }),
            Ok(())
        );
        assert_eq!(
            what(check(WriteOp::Sequence {
                steps: vec![set("k1", "12345678"), set("k2", "12345678"), set("k", "v")]
            })),
            ("request".to_string(), 21, 20)
        );
        assert_eq!(
            what(check(WriteOp::Sequence {
                steps: vec![set("a", ""), set("b", ""), set("c", ""), set("d", "")]
            })),
            ("sequence".to_string(), 4, 3)
        );
        assert_eq!(
            what(check(WriteOp::Sequence {
                steps: vec![Step::AssertRange {
                    prefix: b(""),
                    keys: keys(&["a", "b", "c"])
                }]
            })),
            ("sequence".to_string(), 4, 3)
        );
        assert_eq!(
            check(WriteOp::Sequence {
                steps: vec![set("a", "12345678"), set("b", "1234567")]
            }),
            Ok(())
        );
        assert_eq!(check(WriteOp::Nop), Ok(()));
        assert_eq!(check(WriteOp::Sequence { steps: Vec::new() }), Ok(()));
    }

    #[test]
    fn writes_that_make_no_sense_are_invalid() {
        let limits = KvLimits::default();
        let invalid = |op: WriteOp| {
            matches!(
                validate_write(&op, &limits),
                Err(ApiError::InvalidArgument(_))
            )
        };
        assert!(invalid(WriteOp::Set {
            key: Vec::new(),
            value: b("v")
        }));
        assert!(invalid(WriteOp::Delete { key: Vec::new() }));
        assert!(invalid(WriteOp::Sequence {
            steps: vec![Step::AssertExists { key: Vec::new() }]
        }));
        assert!(invalid(WriteOp::Sequence {
            steps: vec![Step::AssertRange {
                prefix: b("p"),
                keys: keys(&["p1", "q1"])
            }]
        }));
        assert_eq!(
            validate_write(&WriteOp::DeletePrefix { prefix: Vec::new() }, &limits),
            Ok(())
        );
    }

    #[test]
    fn reads_over_the_limits_are_too_large() {
        let limits = small_limits();
        let check = |op: ReadOp| validate_read(&op, &limits);
        assert_eq!(
            what(check(ReadOp::Get { key: b("kkkkk") })),
            ("key".to_string(), 5, 4)
        );
        assert_eq!(
            what(check(ReadOp::MultiGetOption {
                keys: keys(&["a", "b", "c"])
            })),
            ("multi_get".to_string(), 3, 2)
        );
        assert_eq!(
            what(check(ReadOp::Range(range(
                Bound::Included("aaaaa"),
                Bound::Unbounded,
                None
            )))),
            ("key".to_string(), 5, 4)
        );
        assert_eq!(
            what(check(ReadOp::PrefixKeys {
                prefix: b("a"),
                max: Some(4)
            })),
            ("max".to_string(), 4, 3)
        );
        assert!(matches!(
            check(ReadOp::Exists { key: Vec::new() }),
            Err(ApiError::InvalidArgument(_))
        ));
        assert_eq!(check(ReadOp::Count { prefix: Vec::new() }), Ok(()));
        let limits = KvLimits {
            request_size_max_bytes: 5,
            ..small_limits()
        };
        assert_eq!(
            what(validate_read(
                &ReadOp::MultiGet {
                    keys: keys(&["aaa", "bbb"])
                },
                &limits
            )),
            ("request".to_string(), 6, 5)
        );
    }

    #[test]
    fn answers_over_the_limits_are_too_large() {
        let store = store();
        for key in ["a", "b", "c", "d"] {
            store.set(key, "vv");
        }
        let limits = small_limits();
        let n = ns("ns");
        let answer = |op: ReadOp| read(&store.db, &SPACE, &n, &op, &limits).map(|_| ());
        // Without a max, more than range_results_max results is an error, not a silent cut.
        assert_eq!(
            what(answer(ReadOp::Range(KeyRange::all()))),
            ("results".to_string(), 4, 3)
        );
        assert_eq!(
            answer(ReadOp::Range(KeyRange {
                max: Some(3),
                ..KeyRange::all()
            })),
            Ok(())
        );
        // 3 entries of 3 bytes each exceed 6 bytes.
        assert_eq!(
            what(answer(ReadOp::RangeEntries(KeyRange {
                max: Some(3),
                ..KeyRange::all()
            }))),
            ("response".to_string(), 9, 6)
        );
        assert_eq!(
            what(answer(ReadOp::MultiGetOption {
                keys: keys(&["a", "x", "b", "c", "d"])
            })),
            ("response".to_string(), 8, 6)
        );
        assert_eq!(answer(ReadOp::Count { prefix: Vec::new() }), Ok(()));
    }

    #[test]
    fn a_missing_data_column_family_is_an_internal_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = DB::open_default(dir.path()).unwrap();
        let mut batch = WriteBatch::default();
        let op = WriteOp::Delete { key: b("k") };
        assert!(matches!(
            apply_write(&db, &SPACE, &ns("ns"), &op, &mut batch),
            Err(ApiError::Internal(_))
        ));
        assert!(matches!(
            read(
                &db,
                &SPACE,
                &ns("ns"),
                &ReadOp::Get { key: b("k") },
                &KvLimits::default()
            ),
            Err(ApiError::Internal(_))
        ));
    }
}
