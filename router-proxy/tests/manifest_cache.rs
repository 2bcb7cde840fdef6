//! The router's manifest cache against a fake shard: manifests written through or read fill it,
//! `Any` and `AtLeast` reads are answered from it when every object is cached (fresh enough),
//! `Consistent` reads never are, deletes and failed puts drop entries, and its bounds hold.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cairn_client::{Client, NamespaceClient};
use cairn_wire::api::{
    ApiError, Consistency, ReadOp, ReadResult, Request, Response, WriteOp, WriteResult,
};
use cairn_wire::catalog::RoutingTable;
use cairn_wire::manifest::{Manifest, PutMode};
use raft_core::LogIndex;
use support::*;

/// A one-replica shard that stores manifests, counting the manifest reads it serves.
#[derive(Clone, Default)]
struct Store {
    inner: Arc<Mutex<StoreState>>,
}

#[derive(Default)]
struct StoreState {
    applied: u64,
    manifests: HashMap<String, Manifest>,
    reads: usize,
}

impl Store {
    fn script(&self) -> impl Fn(&Request) -> Response + Send + Sync + 'static {
        let store = self.clone();
        move |request| store.serve(request)
    }

    fn serve(&self, request: &Request) -> Response {
        let mut s = self.inner.lock().unwrap();
        match request {
            Request::Read {
                op: ReadOp::GetManifests { names },
                ..
            } => {
                s.reads += 1;
                let found = names.iter().map(|n| s.manifests.get(n).cloned()).collect();
                Response::Read {
                    result: ReadResult::Manifests(found),
                    applied: LogIndex(s.applied),
                }
            }
            Request::Write {
                op: WriteOp::PutManifest { manifest, mode },
                ..
            } => {
                if *mode == PutMode::MustNotExist && s.manifests.contains_key(&manifest.name) {
                    return Response::Error(ApiError::ObjectExists {
                        name: manifest.name.clone(),
                    });
                }
                s.applied += 1;
                s.manifests.insert(manifest.name.clone(), manifest.clone());
                Response::Write {
                    index: LogIndex(s.applied),
                    result: WriteResult::Done,
                }
            }
            Request::Write {
                op: WriteOp::DeleteManifest { name },
                ..
            } => {
                if s.manifests.remove(name).is_none() {
                    return Response::Error(ApiError::ObjectNotFound { name: name.clone() });
                }
                s.applied += 1;
                Response::Write {
                    index: LogIndex(s.applied),
                    result: WriteResult::Done,
                }
            }
            other => panic!("the store got {other:?}"),
        }
    }

    /// Another writer (another router) changes an object behind this router's back.
    fn overwrite(&self, manifest: Manifest) {
        let mut s = self.inner.lock().unwrap();
        s.applied += 1;
        s.manifests.insert(manifest.name.clone(), manifest);
    }

    fn reads(&self) -> usize {
        self.inner.lock().unwrap().reads
    }
}

async fn put(ns: &NamespaceClient, manifest: Manifest, mode: PutMode) -> Result<LogIndex, String> {
    ns.write(WriteOp::PutManifest { manifest, mode })
        .await
        .map(|w| w.index)
        .map_err(|e| e.to_string())
}

async fn get(
    ns: &NamespaceClient,
    names: &[&str],
    consistency: Consistency,
) -> (Vec<Option<Manifest>>, LogIndex) {
    let names = names.iter().map(|n| (*n).to_owned()).collect();
    let read = ns
        .read(ReadOp::GetManifests { names }, consistency)
        .await
        .unwrap();
    match read.value {
        ReadResult::Manifests(manifests) => (manifests, read.applied),
        other => panic!("expected manifests, got {other:?}"),
    }
}

struct Counters {
    hits: f64,
    misses: f64,
}

async fn counters(router: &RouterUnderTest) -> Counters {
    Counters {
        hits: metric(
            router.metrics,
            "cairn_router_manifest_cache_hits_total",
            &[],
        )
        .await,
        misses: metric(
            router.metrics,
            "cairn_router_manifest_cache_misses_total",
            &[],
        )
        .await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_reads_are_answered_from_the_cache_only_as_their_consistency_allows() {
    let pki = Pki::new();
    let store = Store::default();
    let shard = FakeShard::spawn(&pki, 1, store.script());
    let manager = FakeManager::leader(
        &pki,
        RoutingTable {
            version: 1,
            shards: vec![shard_route(1, &[&shard])],
            namespaces: vec![namespace_route("objects", 1, 1)],
        },
    );
    let entries_max = 4;
    let router = start_router(&pki, &[&manager], |c| {
        c.limits.manifest_cache_entries_max = entries_max
    })
    .await;
    let client: Client = pki.client(router.addr);
    let objects = client.routed(ns("objects"));
    use Consistency::{Any, AtLeast, Consistent};

    // A put that goes through is cached at its index: an Any read never reaches the shard.
    assert_eq!(
        put(&objects, manifest("a", 1), PutMode::Unconditional).await,
        Ok(LogIndex(1))
    );
    let (found, applied) = get(&objects, &["a"], Any).await;
    assert_eq!(
        (found, applied),
        (vec![Some(manifest("a", 1))], LogIndex(1))
    );
    assert_eq!(store.reads(), 0);
    let c = counters(&router).await;
    assert_eq!((c.hits, c.misses), (1.0, 0.0));
    assert_eq!(
        metric(router.metrics, "cairn_router_manifest_cache_entries", &[]).await,
        1.0
    );
    assert!(metric(router.metrics, "cairn_router_manifest_cache_bytes", &[]).await > 0.0);

    // AtLeast: from the cache only when the entry was seen at the index asked or later.
    assert_eq!(
        put(&objects, manifest("b", 1), PutMode::Unconditional).await,
        Ok(LogIndex(2))
    );
    get(&objects, &["a"], AtLeast(LogIndex(1))).await;
    assert_eq!(store.reads(), 0, "a was seen at 1");
    let (_, applied) = get(&objects, &["a", "b"], AtLeast(LogIndex(2))).await;
    assert_eq!(store.reads(), 1, "a was seen at 1 only");
    assert_eq!(applied, LogIndex(2));
    let (_, applied) = get(&objects, &["a", "b"], AtLeast(LogIndex(2))).await;
    assert_eq!(
        store.reads(),
        1,
        "the shard's answer refreshed a to index 2"
    );
    assert_eq!(applied, LogIndex(2));
    let c = counters(&router).await;
    assert_eq!((c.hits, c.misses), (3.0, 1.0));

    // Consistent reads always go to the shard and never count as hits.
    for _ in 0..3 {
        get(&objects, &["a"], Consistent).await;
    }
    assert_eq!(store.reads(), 4);
    let c = counters(&router).await;
    assert_eq!((c.hits, c.misses), (3.0, 1.0));

    // Absent objects are not cached: a read naming one always goes to the shard.
    for _ in 0..2 {
        let (found, _) = get(&objects, &["a", "absent"], Any).await;
        assert_eq!(found, vec![Some(manifest("a", 1)), None]);
    }
    assert_eq!(store.reads(), 6);

    // Another writer changed a: Any may see the cached (older) manifest, a Consistent read sees
    // the new one and refreshes the cache.
    store.overwrite(manifest("a", 2));
    let (found, _) = get(&objects, &["a"], Any).await;
    assert_eq!(found, vec![Some(manifest("a", 1))]);
    let (found, applied) = get(&objects, &["a"], Consistent).await;
    assert_eq!(
        (found, applied),
        (vec![Some(manifest("a", 2))], LogIndex(3))
    );
    let (found, _) = get(&objects, &["a"], Any).await;
    assert_eq!(found, vec![Some(manifest("a", 2))]);
    let reads = store.reads();

    // A delete drops the entry.
    objects
        .write(WriteOp::DeleteManifest { name: "a".into() })
        .await
        .unwrap();
    let (found, _) = get(&objects, &["a"], Any).await;
    assert_eq!(found, vec![None]);
    assert_eq!(store.reads(), reads + 1);

    // A failed put drops the entry too.
    get(&objects, &["b"], Any).await;
    assert_eq!(store.reads(), reads + 1, "b is cached");
    let err = put(&objects, manifest("b", 9), PutMode::MustNotExist)
        .await
        .unwrap_err();
    assert!(err.contains("exists already"), "{err}");
    let (found, _) = get(&objects, &["b"], Any).await;
    assert_eq!(found, vec![Some(manifest("b", 1))]);
    assert_eq!(store.reads(), reads + 2, "b was dropped and read again");

    // The entry bound holds.
    for i in 0..10 {
        put(
            &objects,
            manifest(&format!("many-{i}"), 1),
            PutMode::Unconditional,
        )
        .await
        .unwrap();
    }
    assert_eq!(
        metric(router.metrics, "cairn_router_manifest_cache_entries", &[]).await,
        entries_max as f64
    );
    let (found, _) = get(&objects, &["many-9", "many-8"], Any).await;
    assert_eq!(found.len(), 2);
    assert_eq!(store.reads(), reads + 2, "the latest puts are cached");
}
