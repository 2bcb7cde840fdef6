//! Model check of the key-value state machine: random writes applied to RocksDB through
//! `kv::apply_write` and to a `BTreeMap` model give the same results, every read in between gives
//! the same answer from both, and in the end the data column family holds exactly the models'
//! keys, in their own namespaces and generations.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use cairn_wire::api::{
    ApiError, KeyRange, Namespace, ReadOp, ReadResult, ShardId, Step, WriteOp, WriteResult,
};
use proptest::prelude::*;
use rocksdb::{DB, IteratorMode, Options, WriteBatch};
use shard_node::keys::KeySpace;
use shard_node::kv::{KvLimits, SnapshotView, apply_write, read};
use shard_node::storage::CF_DATA;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Where an operation goes: namespaces "a" and "ab" (one name a prefix of the other) of one
/// generation, and namespace "a" of the next generation.
fn targets() -> [(KeySpace, Namespace); 3] {
    let space = KeySpace {
        shard: ShardId(7),
        generation: 1,
    };
    let next = KeySpace {
        generation: 2,
        ..space
    };
    let ns = |name: &str| Namespace::new(name).expect("valid namespace");
    [(space, ns("a")), (space, ns("ab")), (next, ns("a"))]
}

// A tiny alphabet, with the extreme bytes, so that keys collide, prefixes nest and the
// successor/end-of-prefix arithmetic is exercised.
fn bytes(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![0x00_u8, b'a', 0xff]), len)
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    bytes(1..3)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![Vec::new(), b"x".to_vec(), b"yy".to_vec()])
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (key(), value()).prop_map(|(key, value)| Step::Set { key, value }),
        2 => key().prop_map(|key| Step::Delete { key }),
        2 => (key(), prop::option::of(value()))
            .prop_map(|(key, expected)| Step::Assert { key, expected }),
        1 => key().prop_map(|key| Step::AssertExists { key }),
        1 => (bytes(0..2), prop::collection::vec(key(), 0..3))
            .prop_map(|(prefix, keys)| Step::AssertRange { prefix, keys }),
        1 => bytes(0..3).prop_map(|prefix| Step::DeletePrefix { prefix }),
        2 => (key(), prop::option::of(value()), prop::option::of(value())).prop_map(
            |(key, expected, wanted)| Step::TestAndSet { key, expected, wanted }
        ),
    ]
}

fn write_op() -> impl Strategy<Value = WriteOp> {
    prop_oneof![
        6 => (key(), value()).prop_map(|(key, value)| WriteOp::Set { key, value }),
        2 => key().prop_map(|key| WriteOp::Delete { key }),
        2 => (key(), prop::option::of(value()), prop::option::of(value())).prop_map(
            |(key, expected, wanted)| WriteOp::TestAndSet { key, expected, wanted }
        ),
        2 => (key(), prop::option::of(value()))
            .prop_map(|(key, wanted)| WriteOp::Replace { key, wanted }),
        1 => bytes(0..3).prop_map(|prefix| WriteOp::DeletePrefix { prefix }),
        3 => prop::collection::vec(step(), 0..6).prop_map(|steps| WriteOp::Sequence { steps }),
        1 => Just(WriteOp::Nop),
    ]
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        bytes(0..3).prop_map(Bound::Included),
        bytes(0..3).prop_map(Bound::Excluded),
    ]
}

fn key_range() -> impl Strategy<Value = KeyRange> {
    (bound(), bound(), prop::option::of(0_u32..5)).prop_map(|(start, end, max)| KeyRange {
        start,
        end,
        max,
    })
}

fn read_op() -> impl Strategy<Value = ReadOp> {
    prop_oneof![
        key().prop_map(|key| ReadOp::Get { key }),
        key().prop_map(|key| ReadOp::Exists { key }),
        prop::collection::vec(key(), 0..4).prop_map(|keys| ReadOp::MultiGet { keys }),
        prop::collection::vec(key(), 0..4).prop_map(|keys| ReadOp::MultiGetOption { keys }),
        key_range().prop_map(ReadOp::Range),
        key_range().prop_map(ReadOp::RangeEntries),
        key_range().prop_map(ReadOp::RevRangeEntries),
        (bytes(0..3), prop::option::of(0_u32..5))
            .prop_map(|(prefix, max)| ReadOp::PrefixKeys { prefix, max }),
        bytes(0..3).prop_map(|prefix| ReadOp::Count { prefix }),
    ]
}

#[derive(Clone, Debug)]
enum Action {
    Write(usize, WriteOp),
    Read(usize, ReadOp),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0..3_usize, write_op()).prop_map(|(t, op)| Action::Write(t, op)),
        2 => (0..3_usize, read_op()).prop_map(|(t, op)| Action::Read(t, op)),
    ]
}

fn model_write(model: &mut Model, op: &WriteOp) -> Result<WriteResult, ApiError> {
    match op {
        WriteOp::Set { key, value } => {
            model.insert(key.clone(), value.clone());
            Ok(WriteResult::Done)
        }
        WriteOp::Delete { key } => match model.remove(key) {
            Some(_) => Ok(WriteResult::Done),
            None => Err(ApiError::NotFound { key: key.clone() }),
        },
        WriteOp::TestAndSet {
            key,
            expected,
            wanted,
        } => Ok(WriteResult::Value(model_test_and_set(
            model, key, expected, wanted,
        ))),
        WriteOp::Replace { key, wanted } => Ok(WriteResult::Value(match wanted {
            Some(value) => model.insert(key.clone(), value.clone()),
            None => model.remove(key),
        })),
        WriteOp::DeletePrefix { prefix } => {
            let before = model.len();
            model.retain(|key, _| !key.starts_with(prefix));
            Ok(WriteResult::Count((before - model.len()) as u64))
        }
        WriteOp::Sequence { steps } => {
            let mut next = model.clone();
            for step in steps {
                model_step(&mut next, step)?;
            }
            *model = next;
            Ok(WriteResult::Done)
        }
        WriteOp::Nop => Ok(WriteResult::Done),
        WriteOp::PutManifest { .. }
        | WriteOp::DeleteManifest { .. }
        | WriteOp::AdoptNamespace
        | WriteOp::DropNamespace => unreachable!("write_op() generates key-value operations only"),
    }
}

fn model_test_and_set(
    model: &mut Model,
    key: &[u8],
    expected: &Option<Vec<u8>>,
    wanted: &Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    let current = model.get(key).cloned();
    if current != *expected {
        return current;
    }
    match wanted {
        Some(value) => model.insert(key.to_vec(), value.clone()),
        None => model.remove(key),
    };
    wanted.clone()
}

fn model_step(model: &mut Model, step: &Step) -> Result<(), ApiError> {
    let failed = |key: &[u8]| Err(ApiError::AssertionFailed { key: key.to_vec() });
    match step {
        Step::Set { key, value } => {
            model.insert(key.clone(), value.clone());
        }
        Step::Delete { key } => {
            if model.remove(key).is_none() {
                return Err(ApiError::NotFound { key: key.clone() });
            }
        }
        Step::Assert { key, expected } => {
            if model.get(key) != expected.as_ref() {
                return failed(key);
            }
        }
        Step::AssertExists { key } => {
            if !model.contains_key(key) {
                return failed(key);
            }
        }
        Step::AssertRange { prefix, keys } => {
            let live: BTreeSet<&Vec<u8>> =
                model.keys().filter(|key| key.starts_with(prefix)).collect();
            if live != keys.iter().collect() {
                return failed(prefix);
            }
        }
        Step::DeletePrefix { prefix } => model.retain(|key, _| !key.starts_with(prefix)),
        Step::TestAndSet {
            key,
            expected,
            wanted,
        } => {
            model_test_and_set(model, key, expected, wanted);
        }
    }
    Ok(())
}

fn in_range(key: &[u8], range: &KeyRange) -> bool {
    let above_start = match &range.start {
        Bound::Included(start) => key >= start.as_slice(),
        Bound::Excluded(start) => key > start.as_slice(),
        Bound::Unbounded => true,
    };
    let below_end = match &range.end {
        Bound::Included(end) => key <= end.as_slice(),
        Bound::Excluded(end) => key < end.as_slice(),
        Bound::Unbounded => true,
    };
    above_start && below_end
}

fn model_read(model: &Model, op: &ReadOp) -> Result<ReadResult, ApiError> {
    let get = |key: &Vec<u8>| {
        model
            .get(key)
            .cloned()
            .ok_or_else(|| ApiError::NotFound { key: key.clone() })
    };
    let max = |max: Option<u32>| max.map_or(usize::MAX, |max| max as usize);
    Ok(match op {
        ReadOp::Get { key } => ReadResult::Value(get(key)?),
        ReadOp::Exists { key } => ReadResult::Exists(model.contains_key(key)),
        ReadOp::MultiGet { keys } => {
            ReadResult::Values(keys.iter().map(get).collect::<Result<_, _>>()?)
        }
        ReadOp::MultiGetOption { keys } => {
            ReadResult::OptionalValues(keys.iter().map(|key| model.get(key).cloned()).collect())
        }
        ReadOp::Range(range) => ReadResult::Keys(
            model
                .keys()
                .filter(|key| in_range(key, range))
                .take(max(range.max))
                .cloned()
                .collect(),
        ),
        ReadOp::RangeEntries(range) => ReadResult::Entries(
            model
                .iter()
                .filter(|(key, _)| in_range(key, range))
                .take(max(range.max))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        ReadOp::RevRangeEntries(range) => ReadResult::Entries(
            model
                .iter()
                .rev()
                .filter(|(key, _)| in_range(key, range))
                .take(max(range.max))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        ReadOp::PrefixKeys { prefix, max: m } => ReadResult::Keys(
            model
                .keys()
                .filter(|key| key.starts_with(prefix))
                .take(max(*m))
                .cloned()
                .collect(),
        ),
        ReadOp::Count { prefix } => {
            ReadResult::Count(model.keys().filter(|key| key.starts_with(prefix)).count() as u64)
        }
        ReadOp::GetManifests { .. } | ReadOp::ListObjects { .. } | ReadOp::NamespaceStats => {
            unreachable!("read_op() generates key-value operations only")
        }
    })
}

fn open_db(dir: &std::path::Path) -> DB {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    DB::open_cf(&options, dir, [CF_DATA]).expect("open RocksDB")
}

fn check(actions: &[Action]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = open_db(dir.path());
    let targets = targets();
    let limits = KvLimits::default();
    let mut models = [Model::new(), Model::new(), Model::new()];
    for action in actions {
        match action {
            Action::Write(t, op) => {
                let (space, ns) = &targets[*t];
                let mut batch = WriteBatch::default();
                let got = apply_write(&db, space, ns, op, &mut batch);
                let want = model_write(&mut models[*t], op);
                prop_assert_eq!(&got, &want, "write {:?} on target {}", op, t);
                if got.is_err() {
                    prop_assert!(batch.is_empty(), "failed {:?} staged changes", op);
                }
                db.write(batch).expect("write batch");
            }
            Action::Read(t, op) => {
                let (space, ns) = &targets[*t];
                let want = model_read(&models[*t], op);
                let got = read(&db, space, ns, op, &limits);
                prop_assert_eq!(&got, &want, "read {:?} on target {}", op, t);
                let snapshot = SnapshotView::new(&db);
                let got = read(&snapshot, space, ns, op, &limits);
                prop_assert_eq!(&got, &want, "snapshot read {:?} on target {}", op, t);
            }
        }
    }
    // Every read of the whole of each target agrees, and the column family holds nothing else.
    let mut expected = BTreeMap::new();
    for ((space, ns), model) in targets.iter().zip(&models) {
        let op = ReadOp::RangeEntries(KeyRange::all());
        prop_assert_eq!(read(&db, space, ns, &op, &limits), model_read(model, &op));
        for (key, value) in model {
            expected.insert(space.data_key(ns, key), value.clone());
        }
    }
    let cf = db.cf_handle(CF_DATA).expect("data column family");
    let stored: BTreeMap<Vec<u8>, Vec<u8>> = db
        .iterator_cf(cf, IteratorMode::Start)
        .map(|item| {
            let (key, value) = item.expect("iterate");
            (key.to_vec(), value.to_vec())
        })
        .collect();
    prop_assert_eq!(stored, expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        // A failure prints the minimal action list; do not write regression files into the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_state_machine_behaves_like_an_ordered_map(actions in prop::collection::vec(action(), 1..60)) {
        check(&actions)?;
    }
}
