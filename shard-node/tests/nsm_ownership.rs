//! Namespace ownership by epoch: the adopt/drop state machine of a managed shard, `WrongShard`
//! for every operation at an epoch the shard does not own the namespace at, dropping a namespace,
//! and unmanaged shards (no epochs, no adopt or drop).

mod nsm_support;

use cairn_wire::api::{ApiError, Epoch, KeyRange, ReadOp, ReadResult, WriteOp, WriteResult};
use cairn_wire::manifest::{NamespaceStats, PutMode};
use nsm_support::{Shard, manifest, names, ns, put, set, wrong_shard};
use shard_node::keys::KeySpace;
use shard_node::nsm::Ownership::{self, Dropped, Owned};

/// Brings a fresh namespace to `record` the way the manager would.
fn reach(shard: &Shard, record: Option<Ownership>) {
    let n = ns("ns");
    match record {
        None => {}
        Some(Owned(Epoch(e))) => {
            shard.apply(&n, Some(e), WriteOp::AdoptNamespace).unwrap();
            // Something to keep or to delete.
            shard.apply(&n, Some(e), set("k", "v")).unwrap();
            shard
                .apply(&n, Some(e), put(manifest("obj", "id", 10)))
                .unwrap();
        }
        Some(Dropped(Epoch(e))) => {
            shard.apply(&n, Some(e), WriteOp::DropNamespace).unwrap();
        }
    }
    assert_eq!(shard.ownership(&n), record);
}

/// A row of the ownership table: the record before, the command, its result, the record after.
type Row = (
    Option<Ownership>,
    WriteOp,
    Result<WriteResult, ApiError>,
    Option<Ownership>,
);

#[test]
fn adopt_and_drop_follow_the_ownership_table() {
    use WriteOp::{AdoptNamespace as AdoptNs, DropNamespace as DropNs};
    use WriteResult::{Count, Done};
    let e = 5;
    let owned = |e| Some(Owned(Epoch(e)));
    let dropped = |e| Some(Dropped(Epoch(e)));
    let n = ns("ns");
    let wrong = |epoch| Err(wrong_shard(&n, epoch));
    // Every command is at epoch 5; an owned namespace holds one key and one manifest.
    let table: Vec<Row> = vec![
        (None, AdoptNs, Ok(Done), owned(5)),
        (owned(5), AdoptNs, Ok(Done), owned(5)),
        (owned(3), AdoptNs, Ok(Done), owned(5)),
        (owned(7), AdoptNs, wrong(Some(7)), owned(7)),
        (dropped(3), AdoptNs, Ok(Done), owned(5)),
        (dropped(5), AdoptNs, wrong(None), dropped(5)),
        (dropped(7), AdoptNs, wrong(None), dropped(7)),
        (None, DropNs, Ok(Count(0)), dropped(5)),
        (owned(5), DropNs, Ok(Count(2)), dropped(5)),
        (owned(3), DropNs, Ok(Count(2)), dropped(5)),
        (owned(7), DropNs, wrong(Some(7)), owned(7)),
        (dropped(3), DropNs, Ok(Count(0)), dropped(5)),
        (dropped(5), DropNs, Ok(Count(0)), dropped(5)),
        (dropped(7), DropNs, Ok(Count(0)), dropped(7)),
    ];
    for (before, op, result, after) in table {
        let shard = Shard::managed();
        reach(&shard, before);
        let raw = shard.raw();
        let (got, batch) = shard.stage_in(&shard.space, &n, Some(e), op.clone());
        let case = format!("{op:?} at epoch {e} on {before:?}");
        assert_eq!(got, result, "{case}");
        // A command that changes nothing stages nothing.
        assert_eq!(
            batch.is_empty(),
            before == after,
            "{case}: staged {} changes",
            batch.len()
        );
        shard.engine.db().write(batch).unwrap();
        assert_eq!(shard.ownership(&n), after, "{case}");
        if before == after {
            assert_eq!(shard.raw(), raw, "{case} changed the state");
        }
    }
}

#[test]
fn a_reassignment_at_a_newer_epoch_keeps_the_data_and_retires_the_old_epoch() {
    let shard = Shard::managed();
    let n = ns("ns");
    reach(&shard, Some(Owned(Epoch(3))));
    shard.apply(&n, Some(4), WriteOp::AdoptNamespace).unwrap();
    assert_eq!(
        shard.read(&n, Some(4), ReadOp::Get { key: b"k".to_vec() }),
        Ok(ReadResult::Value(b"v".to_vec()))
    );
    assert_eq!(
        shard.read(&n, Some(4), ReadOp::NamespaceStats),
        Ok(ReadResult::Stats(NamespaceStats {
            objects: 1,
            logical_bytes: 10
        }))
    );
    assert_eq!(
        shard.read(&n, Some(3), ReadOp::Get { key: b"k".to_vec() }),
        Err(wrong_shard(&n, Some(4)))
    );
}

/// Every kind of operation, to check that ownership guards them all.
fn every_write() -> Vec<WriteOp> {
    vec![
        set("k", "v2"),
        WriteOp::Delete { key: b"k".to_vec() },
        WriteOp::DeletePrefix { prefix: Vec::new() },
        WriteOp::Nop,
        put(manifest("obj", "id2", 20)),
        WriteOp::PutManifest {
            manifest: manifest("new", "id", 1),
            mode: PutMode::MustNotExist,
        },
        WriteOp::DeleteManifest { name: "obj".into() },
    ]
}

fn every_read() -> Vec<ReadOp> {
    vec![
        ReadOp::Get { key: b"k".to_vec() },
        ReadOp::Count { prefix: Vec::new() },
        ReadOp::RangeEntries(KeyRange::all()),
        ReadOp::GetManifests {
            names: names(&["obj"]),
        },
        ReadOp::ListObjects {
            prefix: String::new(),
            start_after: None,
            limit: 10,
        },
        ReadOp::NamespaceStats,
    ]
}

#[test]
fn every_operation_needs_the_epoch_the_namespace_is_owned_at() {
    let shard = Shard::managed();
    let n = ns("ns");
    reach(&shard, Some(Owned(Epoch(5))));
    let raw = shard.raw();
    for epoch in [4, 6, 0, u64::MAX] {
        for op in every_write() {
            assert_eq!(
                shard.apply(&n, Some(epoch), op.clone()),
                Err(wrong_shard(&n, Some(5))),
                "{op:?} at {epoch}"
            );
        }
        for op in every_read() {
            assert_eq!(
                shard.read(&n, Some(epoch), op.clone()),
                Err(wrong_shard(&n, Some(5))),
                "{op:?} at {epoch}"
            );
        }
    }
    assert_eq!(shard.raw(), raw, "a refused operation changed the state");
    // At the owned epoch they all work.
    for op in every_read() {
        assert!(shard.read(&n, Some(5), op.clone()).is_ok(), "{op:?}");
    }
    for op in every_write() {
        assert!(shard.apply(&n, Some(5), op.clone()).is_ok(), "{op:?}");
    }
}

#[test]
fn a_namespace_never_adopted_or_dropped_is_not_served() {
    let shard = Shard::managed();
    let n = ns("ns");
    let other = ns("other");
    reach(&shard, Some(Dropped(Epoch(5))));
    for namespace in [&n, &other] {
        for epoch in [1, 5, 9] {
            for op in every_write() {
                assert_eq!(
                    shard.apply(namespace, Some(epoch), op.clone()),
                    Err(wrong_shard(namespace, None)),
                    "{op:?} on {namespace} at {epoch}"
                );
            }
            for op in every_read() {
                assert_eq!(
                    shard.read(namespace, Some(epoch), op.clone()),
                    Err(wrong_shard(namespace, None)),
                    "{op:?} on {namespace} at {epoch}"
                );
            }
        }
    }
    assert_eq!(shard.raw().len(), 1, "only the tombstone");
}

#[test]
fn ownership_is_per_namespace_even_when_one_name_prefixes_the_other() {
    let shard = Shard::managed();
    let (a, ab) = (ns("a"), ns("ab"));
    shard.apply(&a, Some(1), WriteOp::AdoptNamespace).unwrap();
    shard.apply(&ab, Some(2), WriteOp::AdoptNamespace).unwrap();
    shard.apply(&a, Some(1), set("k", "a")).unwrap();
    shard.apply(&ab, Some(2), set("k", "ab")).unwrap();
    assert_eq!(
        shard.apply(&a, Some(2), set("k", "x")),
        Err(wrong_shard(&a, Some(1)))
    );
    assert_eq!(
        shard.apply(&ab, Some(3), WriteOp::DropNamespace),
        Ok(WriteResult::Count(1))
    );
    assert_eq!(
        shard.read(&a, Some(1), ReadOp::Get { key: b"k".to_vec() }),
        Ok(ReadResult::Value(b"a".to_vec()))
    );
}

#[test]
fn a_managed_shard_refuses_requests_without_an_epoch() {
    let shard = Shard::managed();
    let n = ns("ns");
    reach(&shard, Some(Owned(Epoch(5))));
    let must_carry = |result: Result<(), ApiError>| match result {
        Err(ApiError::InvalidArgument(why)) => {
            assert!(why.contains("must carry the namespace's epoch"), "{why}")
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    };
    let mut writes = every_write();
    writes.extend([WriteOp::AdoptNamespace, WriteOp::DropNamespace]);
    for op in writes {
        must_carry(shard.apply(&n, None, op).map(drop));
    }
    for op in every_read() {
        must_carry(shard.read(&n, None, op).map(drop));
    }
    assert_eq!(shard.ownership(&n), Some(Owned(Epoch(5))));
}

#[test]
fn an_unmanaged_shard_serves_any_namespace_without_epochs() {
    let shard = Shard::unmanaged();
    let n = ns("anything");
    shard.apply(&n, None, set("k", "v")).unwrap();
    shard
        .apply(&n, None, put(manifest("obj", "id", 7)))
        .unwrap();
    for op in every_read() {
        assert!(shard.read(&n, None, op.clone()).is_ok(), "{op:?}");
    }
    for op in every_write() {
        assert!(shard.apply(&n, None, op.clone()).is_ok(), "{op:?}");
    }
    // No ownership record is kept.
    assert_eq!(shard.ownership(&n), None);
}

#[test]
fn an_unmanaged_shard_refuses_epochs_and_namespace_administration() {
    let shard = Shard::unmanaged();
    let n = ns("ns");
    shard.apply(&n, None, set("k", "v")).unwrap();
    let raw = shard.raw();
    let invalid = |result: Result<(), ApiError>, text: &str| match result {
        Err(ApiError::InvalidArgument(why)) => assert!(why.contains(text), "{why}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    };
    let epochs = "shard 9 is not managed by the catalog: requests must not carry an epoch";
    let mut writes = every_write();
    writes.extend([WriteOp::AdoptNamespace, WriteOp::DropNamespace]);
    for op in writes {
        invalid(shard.apply(&n, Some(1), op).map(drop), epochs);
    }
    for op in every_read() {
        invalid(shard.read(&n, Some(1), op).map(drop), epochs);
    }
    for op in [WriteOp::AdoptNamespace, WriteOp::DropNamespace] {
        invalid(
            shard.apply(&n, None, op.clone()).map(drop),
            &format!("{}: shard 9 is not managed", op.name()),
        );
    }
    assert_eq!(shard.raw(), raw);
}

#[test]
fn drop_deletes_keys_manifests_and_stats_and_a_later_adopt_starts_empty() {
    let shard = Shard::managed();
    let (n, other) = (ns("ns"), ns("other"));
    shard.apply(&n, Some(1), WriteOp::AdoptNamespace).unwrap();
    shard
        .apply(&other, Some(1), WriteOp::AdoptNamespace)
        .unwrap();
    for key in ["a", "b", "c"] {
        shard.apply(&n, Some(1), set(key, "v")).unwrap();
        shard.apply(&other, Some(1), set(key, "v")).unwrap();
    }
    for name in ["x", "y"] {
        shard
            .apply(&n, Some(1), put(manifest(name, "id", 100)))
            .unwrap();
        shard
            .apply(&other, Some(1), put(manifest(name, "id", 100)))
            .unwrap();
    }
    let before_other: Vec<_> = shard
        .raw()
        .into_iter()
        .filter(|(key, _)| !key_of(&shard.space, &n, key))
        .collect();
    assert_eq!(
        shard.apply(&n, Some(2), WriteOp::DropNamespace),
        Ok(WriteResult::Count(5))
    );
    // Of the namespace only its tombstone is left; the other namespace is untouched.
    let after: Vec<_> = shard.raw().into_iter().collect();
    let (of_n, of_other): (Vec<_>, Vec<_>) = after
        .into_iter()
        .partition(|(key, _)| key_of(&shard.space, &n, key));
    assert_eq!(of_n.len(), 1, "{of_n:?}");
    assert_eq!(of_other, before_other);
    assert_eq!(shard.ownership(&n), Some(Dropped(Epoch(2))));
    // Idempotent.
    let (result, batch) = shard.stage_in(&shard.space, &n, Some(2), WriteOp::DropNamespace);
    assert_eq!(result, Ok(WriteResult::Count(0)));
    assert!(batch.is_empty());
    // Re-created at a newer epoch: empty.
    shard.apply(&n, Some(3), WriteOp::AdoptNamespace).unwrap();
    assert_eq!(
        shard.read(&n, Some(3), ReadOp::Count { prefix: Vec::new() }),
        Ok(ReadResult::Count(0))
    );
    assert_eq!(
        shard.read(&n, Some(3), ReadOp::NamespaceStats),
        Ok(ReadResult::Stats(NamespaceStats::default()))
    );
    assert_eq!(
        shard.read(
            &n,
            Some(3),
            ReadOp::ListObjects {
                prefix: String::new(),
                start_after: None,
                limit: 10
            }
        ),
        Ok(ReadResult::Objects {
            names: Vec::new(),
            more: false
        })
    );
    assert_eq!(
        shard.read(
            &n,
            Some(3),
            ReadOp::GetManifests {
                names: names(&["x"])
            }
        ),
        Ok(ReadResult::Manifests(vec![None]))
    );
    // A drop of an empty namespace counts nothing.
    assert_eq!(
        shard.apply(&n, Some(4), WriteOp::DropNamespace),
        Ok(WriteResult::Count(0))
    );
}

/// Whether stored `key` belongs to namespace `ns` (in any area).
fn key_of(space: &KeySpace, ns: &cairn_wire::api::Namespace, key: &[u8]) -> bool {
    shard_node::keys::Area::ALL
        .iter()
        .any(|area| key.starts_with(&space.namespace_prefix(*area, ns)))
}

#[test]
fn a_copied_generation_carries_ownership_manifests_and_stats() {
    // What a snapshot does: copy every pair of a generation, relative to its prefix, into a new
    // generation.
    let shard = Shard::managed();
    let n = ns("ns");
    reach(&shard, Some(Owned(Epoch(5))));
    let next = KeySpace {
        generation: shard.space.generation + 1,
        ..shard.space
    };
    let copied: Vec<_> = shard
        .raw()
        .into_iter()
        .filter_map(|(key, value)| {
            let relative = shard.space.relative(&key)?;
            Some(([next.prefix(), relative.to_vec()].concat(), value))
        })
        .collect();
    shard.write_raw(copied);
    for op in every_read() {
        assert_eq!(
            shard.read_in(&next, &n, Some(5), op.clone()),
            shard.read(&n, Some(5), op.clone()),
            "{op:?}"
        );
    }
    assert_eq!(
        shard.read_in(&next, &n, Some(4), ReadOp::NamespaceStats),
        Err(wrong_shard(&n, Some(5)))
    );
}
