//! Object manifests in a shard: put modes, reading several at once, listing with pagination,
//! the namespace statistics, their separation from key-value data, validation and limits.

mod nsm_support;

use cairn_wire::api::{ApiError, ReadOp, ReadResult, WriteOp, WriteResult};
use cairn_wire::manifest::{NamespaceStats, PutMode};
use nsm_support::{Shard, manifest, names, ns, put, set};
use shard_node::keys::SystemRecord;
use shard_node::kv::KvLimits;
use shard_node::nsm::{validate_read, validate_write};

fn put_as(m: cairn_wire::manifest::Manifest, mode: PutMode) -> WriteOp {
    WriteOp::PutManifest { manifest: m, mode }
}

fn get(shard: &Shard, list: &[&str]) -> Vec<Option<(String, Vec<u8>)>> {
    match shard.read(&ns("ns"), None, ReadOp::GetManifests { names: names(list) }) {
        Ok(ReadResult::Manifests(found)) => found
            .into_iter()
            .map(|m| m.map(|m| (m.name, m.object_id)))
            .collect(),
        other => panic!("get_manifests answered {other:?}"),
    }
}

fn stats(shard: &Shard) -> (u64, u64) {
    match shard.read(&ns("ns"), None, ReadOp::NamespaceStats) {
        Ok(ReadResult::Stats(NamespaceStats {
            objects,
            logical_bytes,
        })) => (objects, logical_bytes),
        other => panic!("namespace_stats answered {other:?}"),
    }
}

fn list(shard: &Shard, prefix: &str, start_after: Option<&str>, limit: u32) -> (Vec<String>, bool) {
    let op = ReadOp::ListObjects {
        prefix: prefix.to_string(),
        start_after: start_after.map(str::to_string),
        limit,
    };
    match shard.read(&ns("ns"), None, op) {
        Ok(ReadResult::Objects { names, more }) => (names, more),
        other => panic!("list_objects answered {other:?}"),
    }
}

fn found(name: &str, id: &str) -> Option<(String, Vec<u8>)> {
    Some((name.to_string(), id.as_bytes().to_vec()))
}

#[test]
fn put_modes_create_overwrite_or_refuse() {
    let shard = Shard::unmanaged();
    let n = ns("ns");
    let apply = |op| shard.apply(&n, None, op);
    assert_eq!(apply(put(manifest("o", "id1", 5))), Ok(WriteResult::Done));
    assert_eq!(apply(put(manifest("o", "id2", 5))), Ok(WriteResult::Done));
    assert_eq!(get(&shard, &["o"]), vec![found("o", "id2")]);
    assert_eq!(
        apply(put_as(manifest("o", "id3", 5), PutMode::MustNotExist)),
        Err(ApiError::ObjectExists { name: "o".into() })
    );
    assert_eq!(
        apply(put_as(manifest("p", "id1", 5), PutMode::MustNotExist)),
        Ok(WriteResult::Done)
    );
    let replace = |id: &str| PutMode::MustReplace {
        object_id: id.as_bytes().to_vec(),
    };
    assert_eq!(
        apply(put_as(manifest("o", "id3", 5), replace("id1"))),
        Err(ApiError::ObjectChanged {
            name: "o".into(),
            current: Some(b"id2".to_vec())
        })
    );
    assert_eq!(
        apply(put_as(manifest("q", "id3", 5), replace("id1"))),
        Err(ApiError::ObjectChanged {
            name: "q".into(),
            current: None
        })
    );
    assert_eq!(
        apply(put_as(manifest("o", "id3", 5), replace("id2"))),
        Ok(WriteResult::Done)
    );
    assert_eq!(
        get(&shard, &["o", "p", "q"]),
        vec![found("o", "id3"), found("p", "id1"), None]
    );
}

#[test]
fn get_manifests_answers_in_the_order_asked_with_none_for_missing_objects() {
    let shard = Shard::unmanaged();
    let n = ns("ns");
    for name in ["b", "a", "c"] {
        shard.apply(&n, None, put(manifest(name, name, 3))).unwrap();
    }
    assert_eq!(
        get(&shard, &["c", "zz", "a", "c", "b/"]),
        vec![
            found("c", "c"),
            None,
            found("a", "a"),
            found("c", "c"),
            None
        ]
    );
    assert_eq!(get(&shard, &[]), Vec::new());
    // The whole manifest comes back as it was put.
    let m = manifest("full", "id", 4096);
    shard.apply(&n, None, put(m.clone())).unwrap();
    assert_eq!(
        shard.read(
            &n,
            None,
            ReadOp::GetManifests {
                names: names(&["full"])
            }
        ),
        Ok(ReadResult::Manifests(vec![Some(m)]))
    );
}

#[test]
fn stats_follow_puts_overwrites_and_deletes() {
    let shard = Shard::unmanaged();
    let n = ns("ns");
    let apply = |op| shard.apply(&n, None, op);
    assert_eq!(stats(&shard), (0, 0));
    apply(put(manifest("a", "1", 100))).unwrap();
    apply(put(manifest("b", "1", 50))).unwrap();
    assert_eq!(stats(&shard), (2, 150));
    // An overwrite counts the difference.
    apply(put(manifest("a", "2", 30))).unwrap();
    assert_eq!(stats(&shard), (2, 80));
    apply(put(manifest("a", "3", 0))).unwrap();
    assert_eq!(stats(&shard), (2, 50));
    // Failed puts and deletes change nothing.
    assert!(apply(put_as(manifest("b", "x", 9), PutMode::MustNotExist)).is_err());
    assert_eq!(
        apply(WriteOp::DeleteManifest { name: "zz".into() }),
        Err(ApiError::ObjectNotFound { name: "zz".into() })
    );
    assert_eq!(stats(&shard), (2, 50));
    apply(WriteOp::DeleteManifest { name: "b".into() }).unwrap();
    assert_eq!(stats(&shard), (1, 0));
    apply(WriteOp::DeleteManifest { name: "a".into() }).unwrap();
    assert_eq!(stats(&shard), (0, 0));
    assert_eq!(
        apply(WriteOp::DeleteManifest { name: "a".into() }),
        Err(ApiError::ObjectNotFound { name: "a".into() })
    );
    // An empty namespace keeps nothing at all.
    assert_eq!(shard.raw().len(), 0);
}

#[test]
fn list_objects_pages_through_names_with_prefix_start_after_and_limit() {
    let shard = Shard::unmanaged();
    let n = ns("ns");
    let all = ["a", "a/1", "a/2", "a/3", "a0", "b", "b/1", "é"];
    for name in all {
        shard.apply(&n, None, put(manifest(name, "id", 1))).unwrap();
    }
    let s = |list: &[&str]| names(list);
    assert_eq!(list(&shard, "", None, 100), (s(&all), false));
    assert_eq!(list(&shard, "", None, 8), (s(&all), false));
    assert_eq!(list(&shard, "", None, 7), (s(&all[..7]), true));
    assert_eq!(list(&shard, "a/", None, 2), (s(&["a/1", "a/2"]), true));
    assert_eq!(list(&shard, "a/", Some("a/2"), 2), (s(&["a/3"]), false));
    assert_eq!(list(&shard, "a/", Some("a/3"), 2), (s(&[]), false));
    // start_after need not exist, and may lie before or after the prefix.
    assert_eq!(
        list(&shard, "a/", Some("a/15"), 10),
        (s(&["a/2", "a/3"]), false)
    );
    assert_eq!(list(&shard, "b", Some("a"), 10), (s(&["b", "b/1"]), false));
    assert_eq!(list(&shard, "a", Some("b"), 10), (s(&[]), false));
    assert_eq!(list(&shard, "", Some(""), 2), (s(&["a", "a/1"]), true));
    assert_eq!(list(&shard, "c", None, 10), (s(&[]), false));
    // Byte order: "é" (0xc3 0xa9) after every ASCII name.
    assert_eq!(list(&shard, "", Some("b/1"), 10), (s(&["é"]), false));
    // Pages of 3 put back together are the whole list, in order.
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, more) = list(&shard, "", after.as_deref(), 3);
        assert!(page.len() <= 3);
        after = page.last().cloned();
        pages.extend(page);
        if !more {
            break;
        }
    }
    assert_eq!(pages, s(&all));
}

#[test]
fn a_list_page_stops_short_at_the_response_size() {
    let mut shard = Shard::unmanaged();
    let n = ns("ns");
    for name in ["aaaa", "bbbb", "cccc"] {
        shard.apply(&n, None, put(manifest(name, "id", 1))).unwrap();
    }
    shard.limits.response_size_max_bytes = 9;
    assert_eq!(list(&shard, "", None, 10), (names(&["aaaa", "bbbb"]), true));
    assert_eq!(
        list(&shard, "", Some("bbbb"), 10),
        (names(&["cccc"]), false)
    );
    // A page that cannot hold even one name is an error, not an empty page forever.
    shard.limits.response_size_max_bytes = 3;
    let op = ReadOp::ListObjects {
        prefix: String::new(),
        start_after: None,
        limit: 10,
    };
    assert!(matches!(
        shard.read(&n, None, op),
        Err(ApiError::TooLarge { what, .. }) if what == "response"
    ));
}

#[test]
fn get_manifests_over_the_response_size_is_too_large() {
    let mut shard = Shard::unmanaged();
    let n = ns("ns");
    shard.apply(&n, None, put(manifest("a", "id", 1))).unwrap();
    shard.apply(&n, None, put(manifest("b", "id", 1))).unwrap();
    let size = postcard::to_allocvec(&manifest("a", "id", 1))
        .unwrap()
        .len() as u32;
    shard.limits.response_size_max_bytes = size;
    assert!(
        shard
            .read(
                &n,
                None,
                ReadOp::GetManifests {
                    names: names(&["a", "x"])
                }
            )
            .is_ok()
    );
    assert!(matches!(
        shard.read(&n, None, ReadOp::GetManifests { names: names(&["a", "b"]) }),
        Err(ApiError::TooLarge { what, .. }) if what == "response"
    ));
}

#[test]
fn key_values_and_manifests_never_see_each_other() {
    let shard = Shard::unmanaged();
    let n = ns("ns");
    let apply = |op| shard.apply(&n, None, op);
    apply(set("obj", "kv")).unwrap();
    apply(set("k", "kv")).unwrap();
    apply(put(manifest("obj", "id", 10))).unwrap();
    apply(put(manifest("other", "id", 10))).unwrap();
    assert_eq!(
        shard.read(&n, None, ReadOp::Count { prefix: Vec::new() }),
        Ok(ReadResult::Count(2))
    );
    assert_eq!(
        shard.read(
            &n,
            None,
            ReadOp::Get {
                key: b"obj".to_vec()
            }
        ),
        Ok(ReadResult::Value(b"kv".to_vec()))
    );
    assert_eq!(
        apply(WriteOp::DeletePrefix { prefix: Vec::new() }),
        Ok(WriteResult::Count(2))
    );
    assert_eq!(
        list(&shard, "", None, 10),
        (names(&["obj", "other"]), false)
    );
    assert_eq!(stats(&shard), (2, 20));
    apply(WriteOp::DeleteManifest { name: "obj".into() }).unwrap();
    apply(set("obj", "again")).unwrap();
    assert_eq!(get(&shard, &["obj"]), vec![None]);
    assert_eq!(
        shard.read(
            &n,
            None,
            ReadOp::Get {
                key: b"obj".to_vec()
            }
        ),
        Ok(ReadResult::Value(b"again".to_vec()))
    );
}

#[test]
fn manifest_writes_are_validated_before_proposing() {
    let limits = KvLimits::default();
    let check = |op: WriteOp| validate_write(&op, &limits);
    assert_eq!(check(put(manifest("o", "id", 10))), Ok(()));
    let mut broken = manifest("o", "id", 10);
    broken.size_bytes = 11;
    assert!(matches!(
        check(put(broken)),
        Err(ApiError::InvalidManifest(why)) if why.contains("add up")
    ));
    assert!(matches!(
        check(put(manifest("", "id", 10))),
        Err(ApiError::InvalidArgument(_))
    ));
    let small = KvLimits {
        manifest_size_max_bytes: 20,
        ..KvLimits::default()
    };
    assert!(matches!(
        validate_write(&put(manifest("o", "id", 10)), &small),
        Err(ApiError::TooLarge { what, max: 20, .. }) if what == "manifest"
    ));
    assert!(matches!(
        check(put_as(
            manifest("o", "id", 10),
            PutMode::MustReplace { object_id: Vec::new() }
        )),
        Err(ApiError::InvalidArgument(why)) if why.contains("object id")
    ));
    assert!(matches!(
        check(WriteOp::DeleteManifest { name: "a\u{7}".into() }),
        Err(ApiError::InvalidArgument(why)) if why.contains("control character")
    ));
    assert!(matches!(
        check(WriteOp::DeleteManifest {
            name: "x".repeat(1025)
        }),
        Err(ApiError::InvalidArgument(_))
    ));
    assert_eq!(check(WriteOp::AdoptNamespace), Ok(()));
    assert_eq!(check(WriteOp::DropNamespace), Ok(()));
    // Key-value writes keep their own checks.
    assert!(matches!(
        check(WriteOp::Set {
            key: Vec::new(),
            value: Vec::new()
        }),
        Err(ApiError::InvalidArgument(_))
    ));
}

#[test]
fn manifest_reads_are_validated_against_their_limits() {
    let limits = KvLimits {
        get_manifests_max: 2,
        list_objects_max: 5,
        ..KvLimits::default()
    };
    let check = |op: ReadOp| validate_read(&op, &limits);
    let too_large = |result: Result<(), ApiError>| match result {
        Err(ApiError::TooLarge { what, size, max }) => (what, size, max),
        other => panic!("expected TooLarge, got {other:?}"),
    };
    assert_eq!(
        check(ReadOp::GetManifests {
            names: names(&["a", "b"])
        }),
        Ok(())
    );
    assert_eq!(
        too_large(check(ReadOp::GetManifests {
            names: names(&["a", "b", "c"])
        })),
        ("get_manifests".to_string(), 3, 2)
    );
    assert!(matches!(
        check(ReadOp::GetManifests {
            names: names(&["a", ""])
        }),
        Err(ApiError::InvalidArgument(_))
    ));
    let list = |prefix: String, start_after: Option<String>, limit| ReadOp::ListObjects {
        prefix,
        start_after,
        limit,
    };
    assert_eq!(check(list(String::new(), None, 5)), Ok(()));
    assert_eq!(
        too_large(check(list(String::new(), None, 6))),
        ("limit".to_string(), 6, 5)
    );
    assert!(matches!(
        check(list(String::new(), None, 0)),
        Err(ApiError::InvalidArgument(why)) if why.contains("limit must be 1 to 5")
    ));
    assert_eq!(
        too_large(check(list("p".repeat(1025), None, 1))),
        ("prefix".to_string(), 1025, 1024)
    );
    assert_eq!(
        too_large(check(list(String::new(), Some("s".repeat(1025)), 1))),
        ("start_after".to_string(), 1025, 1024)
    );
    assert_eq!(check(ReadOp::NamespaceStats), Ok(()));
    assert_eq!(
        too_large(check(ReadOp::Get {
            key: vec![b'k'; 70_000]
        }))
        .0,
        "key".to_string()
    );
}

#[test]
fn apply_refuses_an_invalid_manifest_that_skipped_validation() {
    let shard = Shard::unmanaged();
    let mut broken = manifest("o", "id", 10);
    broken.scheme.data_fragments = 0;
    assert!(matches!(
        shard.apply(&ns("ns"), None, put(broken)),
        Err(ApiError::InvalidManifest(_))
    ));
    assert_eq!(shard.raw().len(), 0);
}

#[test]
fn a_namespace_cannot_count_past_the_largest_logical_size() {
    let shard = Shard::unmanaged();
    let n = ns("ns");
    shard.apply(&n, None, put(manifest("a", "id", 10))).unwrap();
    let near_full = NamespaceStats {
        objects: 1,
        logical_bytes: u64::MAX - 5,
    };
    let key = shard.space.system_key(&n, SystemRecord::Stats);
    shard.write_raw([(key, postcard::to_allocvec(&near_full).unwrap())]);
    assert!(matches!(
        shard.apply(&n, None, put(manifest("b", "id", 6))),
        Err(ApiError::InvalidArgument(why)) if why.contains("logical bytes")
    ));
    assert_eq!(
        shard.apply(&n, None, put(manifest("b", "id", 5))),
        Ok(WriteResult::Done)
    );
}

#[test]
fn statistics_that_do_not_count_a_stored_manifest_are_an_internal_error() {
    let shard = Shard::unmanaged();
    let n = ns("ns");
    shard.apply(&n, None, put(manifest("a", "id", 10))).unwrap();
    let key = shard.space.system_key(&n, SystemRecord::Stats);
    let undercounted = NamespaceStats {
        objects: 1,
        logical_bytes: 3,
    };
    shard.write_raw([(key.clone(), postcard::to_allocvec(&undercounted).unwrap())]);
    assert!(matches!(
        shard.apply(&n, None, WriteOp::DeleteManifest { name: "a".into() }),
        Err(ApiError::Internal(_))
    ));
    shard.write_raw([(
        key,
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
    )]);
    assert!(matches!(
        shard.read(&n, None, ReadOp::NamespaceStats),
        Err(ApiError::Internal(why)) if why.contains("statistics")
    ));
}
