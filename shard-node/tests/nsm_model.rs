//! Model check of the namespace state machine: random adopts, drops, manifest puts and deletes
//! and key-value writes applied to RocksDB through `nsm::apply` and to a model of ordered maps
//! give the same results; every read in between (manifests, pages of object names, whole
//! paginated listings, statistics, key counts) gives the same answer from both; and in the end
//! the data column family holds exactly the model's keys and records.

mod nsm_support;

use std::collections::BTreeMap;

use cairn_wire::api::{ApiError, Epoch, Namespace, ReadOp, ReadResult, WriteOp, WriteResult};
use cairn_wire::manifest::{Manifest, NamespaceStats, PutMode};
use nsm_support::{Shard, manifest, ns};
use proptest::prelude::*;
use shard_node::keys::SystemRecord;
use shard_node::nsm::Ownership;

/// Two namespaces, one name a prefix of the other.
const NAMESPACES: [&str; 2] = ["a", "ab"];

/// The epoch a request carries: the one the namespace is owned at now (what a router that is
/// up to date sends), or a fixed one (stale, early or plain wrong).
#[derive(Clone, Copy, Debug)]
enum EpochChoice {
    Current,
    Exact(u64),
}

#[derive(Clone, Debug)]
enum Action {
    Adopt(usize, u64),
    Drop(usize, u64),
    Put(usize, EpochChoice, String, &'static str, u32, PutMode),
    Delete(usize, EpochChoice, String),
    Set(usize, EpochChoice, String),
    DeleteAllKeys(usize, EpochChoice),
    Get(usize, EpochChoice, Vec<String>),
    List(usize, EpochChoice, String, Option<String>, u32),
    ListAll(usize, EpochChoice, String, u32),
    Stats(usize, EpochChoice),
    CountKeys(usize, EpochChoice),
}

// A tiny alphabet, so that names collide, prefixes nest and '/' (below the letters) reorders.
fn text(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!['a', 'b', '/']), len)
        .prop_map(|chars| chars.into_iter().collect())
}

fn name() -> impl Strategy<Value = String> {
    text(1..4)
}

fn object_id() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["x", "y"])
}

fn mode() -> impl Strategy<Value = PutMode> {
    prop_oneof![
        2 => Just(PutMode::Unconditional),
        1 => Just(PutMode::MustNotExist),
        1 => object_id().prop_map(|id| PutMode::MustReplace {
            object_id: id.as_bytes().to_vec()
        }),
    ]
}

/// Mostly every name, so that listings are long enough to page through.
fn list_prefix() -> impl Strategy<Value = String> {
    prop_oneof![2 => Just(String::new()), 1 => text(1..3)]
}

fn epoch_choice() -> impl Strategy<Value = EpochChoice> {
    prop_oneof![
        4 => Just(EpochChoice::Current),
        1 => (1..=6_u64).prop_map(EpochChoice::Exact),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    let t = 0..NAMESPACES.len();
    prop_oneof![
        2 => (t.clone(), 1..=6_u64).prop_map(|(t, e)| Action::Adopt(t, e)),
        1 => (t.clone(), 1..=6_u64).prop_map(|(t, e)| Action::Drop(t, e)),
        6 => (t.clone(), epoch_choice(), name(), object_id(), 0..4_u32, mode())
            .prop_map(|(t, e, n, id, size, mode)| Action::Put(t, e, n, id, size, mode)),
        2 => (t.clone(), epoch_choice(), name()).prop_map(|(t, e, n)| Action::Delete(t, e, n)),
        2 => (t.clone(), epoch_choice(), name()).prop_map(|(t, e, k)| Action::Set(t, e, k)),
        1 => (t.clone(), epoch_choice()).prop_map(|(t, e)| Action::DeleteAllKeys(t, e)),
        2 => (t.clone(), epoch_choice(), prop::collection::vec(name(), 0..4))
            .prop_map(|(t, e, names)| Action::Get(t, e, names)),
        4 => (t.clone(), epoch_choice(), list_prefix(), prop::option::of(text(0..4)), 1..5_u32)
            .prop_map(|(t, e, p, after, limit)| Action::List(t, e, p, after, limit)),
        2 => (t.clone(), epoch_choice(), list_prefix(), 1..4_u32)
            .prop_map(|(t, e, p, limit)| Action::ListAll(t, e, p, limit)),
        1 => (t.clone(), epoch_choice()).prop_map(|(t, e)| Action::Stats(t, e)),
        1 => (t, epoch_choice()).prop_map(|(t, e)| Action::CountKeys(t, e)),
    ]
}

#[derive(Clone, Debug, Default)]
struct NamespaceModel {
    ownership: Option<Ownership>,
    keys: BTreeMap<Vec<u8>, Vec<u8>>,
    manifests: BTreeMap<String, Manifest>,
}

impl NamespaceModel {
    fn stats(&self) -> NamespaceStats {
        NamespaceStats {
            objects: self.manifests.len() as u64,
            logical_bytes: self.manifests.values().map(|m| m.size_bytes).sum(),
        }
    }

    fn list(&self, prefix: &str, start_after: Option<&str>) -> Vec<String> {
        self.manifests
            .keys()
            .filter(|name| name.starts_with(prefix))
            .filter(|name| start_after.is_none_or(|after| name.as_str() > after))
            .cloned()
            .collect()
    }
}

struct Model {
    managed: bool,
    namespaces: Vec<(Namespace, NamespaceModel)>,
}

impl Model {
    /// The epoch a request carries (`None` on an unmanaged shard).
    fn epoch(&self, t: usize, choice: EpochChoice) -> Option<u64> {
        if !self.managed {
            return None;
        }
        Some(match (choice, self.namespaces[t].1.ownership) {
            (EpochChoice::Current, Some(Ownership::Owned(Epoch(e)))) => e,
            (EpochChoice::Current, _) => 1,
            (EpochChoice::Exact(e), _) => e,
        })
    }

    fn served(&self, t: usize, epoch: Option<u64>) -> Result<(), ApiError> {
        let (n, model) = &self.namespaces[t];
        let Some(epoch) = epoch else {
            return Ok(());
        };
        match model.ownership {
            Some(Ownership::Owned(Epoch(owned))) if owned == epoch => Ok(()),
            Some(Ownership::Owned(owned)) => Err(wrong_shard(n, Some(owned))),
            _ => Err(wrong_shard(n, None)),
        }
    }

    fn adopt(&mut self, t: usize, e: u64) -> Result<WriteResult, ApiError> {
        let (n, model) = &mut self.namespaces[t];
        match model.ownership {
            Some(Ownership::Owned(Epoch(o))) if o > e => Err(wrong_shard(n, Some(Epoch(o)))),
            Some(Ownership::Dropped(Epoch(d))) if d >= e => Err(wrong_shard(n, None)),
            _ => {
                model.ownership = Some(Ownership::Owned(Epoch(e)));
                Ok(WriteResult::Done)
            }
        }
    }

    fn drop_namespace(&mut self, t: usize, e: u64) -> Result<WriteResult, ApiError> {
        let (n, model) = &mut self.namespaces[t];
        match model.ownership {
            Some(Ownership::Owned(Epoch(o))) if o > e => Err(wrong_shard(n, Some(Epoch(o)))),
            Some(Ownership::Owned(_)) => {
                let count = model.keys.len() + model.manifests.len();
                *model = NamespaceModel {
                    ownership: Some(Ownership::Dropped(Epoch(e))),
                    ..NamespaceModel::default()
                };
                Ok(WriteResult::Count(count as u64))
            }
            Some(Ownership::Dropped(Epoch(d))) if d >= e => Ok(WriteResult::Count(0)),
            _ => {
                model.ownership = Some(Ownership::Dropped(Epoch(e)));
                Ok(WriteResult::Count(0))
            }
        }
    }

    fn put(&mut self, t: usize, m: Manifest, mode: &PutMode) -> Result<WriteResult, ApiError> {
        let model = &mut self.namespaces[t].1;
        let current = model.manifests.get(&m.name);
        match (mode, current) {
            (PutMode::MustNotExist, Some(_)) => {
                return Err(ApiError::ObjectExists { name: m.name });
            }
            (PutMode::MustReplace { object_id }, current)
                if current.is_none_or(|c| c.object_id != *object_id) =>
            {
                return Err(ApiError::ObjectChanged {
                    name: m.name,
                    current: current.map(|c| c.object_id.clone()),
                });
            }
            _ => {}
        }
        model.manifests.insert(m.name.clone(), m);
        Ok(WriteResult::Done)
    }
}

fn wrong_shard(n: &Namespace, epoch: Option<Epoch>) -> ApiError {
    ApiError::WrongShard {
        shard: nsm_support::SPACE.shard,
        namespace: n.clone(),
        epoch,
    }
}

fn check(managed: bool, actions: &[Action]) -> Result<(), TestCaseError> {
    let shard = if managed {
        Shard::managed()
    } else {
        Shard::unmanaged()
    };
    let mut model = Model {
        managed,
        namespaces: NAMESPACES
            .iter()
            .map(|name| (ns(name), NamespaceModel::default()))
            .collect(),
    };
    if managed {
        // Both namespaces start adopted, as the manager does on creation; the actions move and
        // drop them from there.
        for t in 0..NAMESPACES.len() {
            let n = model.namespaces[t].0.clone();
            let want = model.adopt(t, 1);
            prop_assert_eq!(shard.apply(&n, Some(1), WriteOp::AdoptNamespace), want);
        }
    }
    for action in actions {
        match action {
            Action::Adopt(t, e) | Action::Drop(t, e) => {
                if !managed {
                    continue; // Refused on unmanaged shards; tests/nsm_ownership.rs checks how.
                }
                let n = model.namespaces[*t].0.clone();
                let (op, want) = match action {
                    Action::Adopt(..) => (WriteOp::AdoptNamespace, model.adopt(*t, *e)),
                    _ => (WriteOp::DropNamespace, model.drop_namespace(*t, *e)),
                };
                let got = shard.apply(&n, Some(*e), op);
                prop_assert_eq!(got, want, "{:?}", action);
            }
            Action::Put(t, choice, name, id, size, mode) => {
                let epoch = model.epoch(*t, *choice);
                let n = model.namespaces[*t].0.clone();
                let m = manifest(name, id, *size);
                let op = WriteOp::PutManifest {
                    manifest: m.clone(),
                    mode: mode.clone(),
                };
                let want = model
                    .served(*t, epoch)
                    .and_then(|()| model.put(*t, m, mode));
                prop_assert_eq!(shard.apply(&n, epoch, op), want, "{:?}", action);
            }
            Action::Delete(t, choice, name) => {
                let epoch = model.epoch(*t, *choice);
                let n = model.namespaces[*t].0.clone();
                let want = model.served(*t, epoch).and_then(|()| {
                    match model.namespaces[*t].1.manifests.remove(name) {
                        Some(_) => Ok(WriteResult::Done),
                        None => Err(ApiError::ObjectNotFound { name: name.clone() }),
                    }
                });
                let op = WriteOp::DeleteManifest { name: name.clone() };
                prop_assert_eq!(shard.apply(&n, epoch, op), want, "{:?}", action);
            }
            Action::Set(t, choice, key) => {
                let epoch = model.epoch(*t, *choice);
                let n = model.namespaces[*t].0.clone();
                let want = model.served(*t, epoch).map(|()| {
                    let keys = &mut model.namespaces[*t].1.keys;
                    keys.insert(key.as_bytes().to_vec(), b"v".to_vec());
                    WriteResult::Done
                });
                let op = WriteOp::Set {
                    key: key.as_bytes().to_vec(),
                    value: b"v".to_vec(),
                };
                prop_assert_eq!(shard.apply(&n, epoch, op), want, "{:?}", action);
            }
            Action::DeleteAllKeys(t, choice) => {
                let epoch = model.epoch(*t, *choice);
                let n = model.namespaces[*t].0.clone();
                let want = model.served(*t, epoch).map(|()| {
                    let keys = std::mem::take(&mut model.namespaces[*t].1.keys);
                    WriteResult::Count(keys.len() as u64)
                });
                let op = WriteOp::DeletePrefix { prefix: Vec::new() };
                prop_assert_eq!(shard.apply(&n, epoch, op), want, "{:?}", action);
            }
            Action::Get(t, choice, names) => {
                let epoch = model.epoch(*t, *choice);
                let (n, ns_model) = &model.namespaces[*t];
                let want = model.served(*t, epoch).map(|()| {
                    ReadResult::Manifests(
                        names
                            .iter()
                            .map(|name| ns_model.manifests.get(name).cloned())
                            .collect(),
                    )
                });
                let op = ReadOp::GetManifests {
                    names: names.clone(),
                };
                prop_assert_eq!(shard.read(n, epoch, op), want, "{:?}", action);
            }
            Action::List(t, choice, prefix, start_after, limit) => {
                let epoch = model.epoch(*t, *choice);
                let (n, ns_model) = &model.namespaces[*t];
                let want = model.served(*t, epoch).map(|()| {
                    let all = ns_model.list(prefix, start_after.as_deref());
                    page(all, *limit)
                });
                let op = ReadOp::ListObjects {
                    prefix: prefix.clone(),
                    start_after: start_after.clone(),
                    limit: *limit,
                };
                prop_assert_eq!(shard.read(n, epoch, op), want, "{:?}", action);
            }
            Action::ListAll(t, choice, prefix, limit) => {
                let epoch = model.epoch(*t, *choice);
                let (n, ns_model) = &model.namespaces[*t];
                if let Err(error) = model.served(*t, epoch) {
                    let op = ReadOp::ListObjects {
                        prefix: prefix.clone(),
                        start_after: None,
                        limit: *limit,
                    };
                    prop_assert_eq!(shard.read(n, epoch, op), Err(error));
                    continue;
                }
                // Follow `more` from page to page: the pages put together are the listing.
                let mut listed = Vec::new();
                let mut after: Option<String> = None;
                for _ in 0..=ns_model.manifests.len() {
                    let op = ReadOp::ListObjects {
                        prefix: prefix.clone(),
                        start_after: after.clone(),
                        limit: *limit,
                    };
                    let Ok(ReadResult::Objects { names, more }) = shard.read(n, epoch, op) else {
                        return Err(TestCaseError::fail(format!("{action:?}: not a page")));
                    };
                    prop_assert!(names.len() <= *limit as usize);
                    prop_assert!(!more || names.len() == *limit as usize);
                    after = names.last().cloned().or(after);
                    listed.extend(names);
                    if !more {
                        break;
                    }
                }
                prop_assert_eq!(listed, ns_model.list(prefix, None), "{:?}", action);
            }
            Action::Stats(t, choice) => {
                let epoch = model.epoch(*t, *choice);
                let (n, ns_model) = &model.namespaces[*t];
                let want = model
                    .served(*t, epoch)
                    .map(|()| ReadResult::Stats(ns_model.stats()));
                let got = shard.read(n, epoch, ReadOp::NamespaceStats);
                prop_assert_eq!(got, want, "{:?}", action);
            }
            Action::CountKeys(t, choice) => {
                let epoch = model.epoch(*t, *choice);
                let (n, ns_model) = &model.namespaces[*t];
                let want = model
                    .served(*t, epoch)
                    .map(|()| ReadResult::Count(ns_model.keys.len() as u64));
                let op = ReadOp::Count { prefix: Vec::new() };
                prop_assert_eq!(shard.read(n, epoch, op), want, "{:?}", action);
            }
        }
    }
    // The column family holds exactly the model: key values, manifests, statistics (only when
    // there are objects) and ownership records, each under its own key.
    let space = shard.space;
    let mut expected = BTreeMap::new();
    for (n, ns_model) in &model.namespaces {
        for (key, value) in &ns_model.keys {
            expected.insert(space.data_key(n, key), value.clone());
        }
        for (name, m) in &ns_model.manifests {
            expected.insert(
                space.manifest_key(n, name),
                postcard::to_allocvec(m).unwrap(),
            );
        }
        let stats = ns_model.stats();
        if stats != NamespaceStats::default() {
            let key = space.system_key(n, SystemRecord::Stats);
            expected.insert(key, postcard::to_allocvec(&stats).unwrap());
        }
        if let Some(record) = ns_model.ownership {
            let key = space.system_key(n, SystemRecord::Ownership);
            expected.insert(key, postcard::to_allocvec(&record).unwrap());
        }
    }
    prop_assert_eq!(shard.raw(), expected);
    Ok(())
}

/// One page of `all`: at most `limit` names, and whether more follow.
fn page(mut all: Vec<String>, limit: u32) -> ReadResult {
    let more = all.len() > limit as usize;
    all.truncate(limit as usize);
    ReadResult::Objects { names: all, more }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        // A failure prints the minimal action list; do not write regression files into the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_managed_shard_behaves_like_its_model(actions in prop::collection::vec(action(), 1..100)) {
        check(true, &actions)?;
    }

    #[test]
    fn an_unmanaged_shard_behaves_like_its_model(actions in prop::collection::vec(action(), 1..100)) {
        check(false, &actions)?;
    }
}
