//! The manifest cache: the rule that decides whether the cache may answer a read, and the
//! bounded cache itself.
//!
//! Pure: no I/O, no clock. The router wraps one [`ManifestCache`] in a lock.
//!
//! An entry is a manifest and the applied index it was seen at: the index of the
//! `GetManifests` answer that carried it, or of the `PutManifest` that wrote it. Every write the
//! shard applied up to that index is reflected in it. [`may_answer`] is the whole consistency
//! argument:
//!
//! | consistency    | the cache answers when                                  |
//! | -------------- | ------------------------------------------------------- |
//! | `Consistent`   | never: linearizable reads go to the leader               |
//! | `AtLeast(i)`   | every name asked is cached, each seen at an index ≥ `i`  |
//! | `Any`          | every name asked is cached                               |
//!
//! A cached answer reports the *lowest* index its entries were seen at, so the caller's next
//! `AtLeast` read is never promised more than the cache knew. An answer naming several objects
//! is per object, not one snapshot: each object is as of some index of at least `i`, not all of
//! them as of the same one (a shard answers from one snapshot). Manifest writes are per object,
//! so this only shows when one object changed after another and both are read together.
//!
//! Entries are keyed by namespace *and epoch*: when a namespace moves (a new epoch), the old
//! entries are simply never hit again and age out. Absent objects are not cached.
//!
//! Bounds: at most `entries_max` entries (the `lru` crate's capacity) and at most `bytes_max`
//! bytes of estimated memory ([`entry_size_bytes`]; least recently used entries are evicted
//! until the total fits). An entry larger than `bytes_max` on its own is not cached.

use std::num::NonZeroUsize;

use cairn_wire::api::{Consistency, Epoch, Namespace};
use cairn_wire::manifest::{Chunk, FragmentLocation, Manifest};
use lru::LruCache;
use raft_core::LogIndex;

/// Whether the cache may answer a `GetManifests` read of `consistency` whose names are cached at
/// `seen` (one element per name asked, `None` for a name not cached). See the module docs.
pub fn may_answer(consistency: Consistency, seen: &[Option<LogIndex>]) -> bool {
    if seen.is_empty() {
        // Nothing to answer from; let the shard say what an empty read means.
        return false;
    }
    match consistency {
        Consistency::Consistent => false,
        Consistency::AtLeast(required) => seen
            .iter()
            .all(|index| index.is_some_and(|index| index >= required)),
        Consistency::Any => seen.iter().all(Option::is_some),
    }
}

/// Identifies a cached manifest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ManifestKey {
    /// The namespace.
    pub namespace: Namespace,
    /// The epoch the namespace was routed by when the manifest was seen.
    pub epoch: Epoch,
    /// The object name.
    pub name: String,
}

impl ManifestKey {
    /// The key of `name` in `namespace` at `epoch`.
    pub fn new(namespace: &Namespace, epoch: Epoch, name: &str) -> Self {
        Self {
            namespace: namespace.clone(),
            epoch,
            name: name.to_owned(),
        }
    }
}

/// The cache's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// The most entries.
    pub entries_max: NonZeroUsize,
    /// The most bytes of estimated memory.
    pub bytes_max: u64,
}

#[derive(Clone, Debug)]
struct Entry {
    manifest: Manifest,
    seen_at: LogIndex,
    size_bytes: u64,
}

/// A bounded cache of manifests, by entries and by bytes. See the module docs.
pub struct ManifestCache {
    lru: LruCache<ManifestKey, Entry>,
    /// The sum of the entries' `size_bytes`.
    bytes: u64,
    bytes_max: u64,
}

impl ManifestCache {
    /// An empty cache with these bounds.
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            lru: LruCache::new(limits.entries_max),
            bytes: 0,
            bytes_max: limits.bytes_max,
        }
    }

    /// How many manifests are cached.
    pub fn len(&self) -> usize {
        self.lru.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.lru.is_empty()
    }

    /// The estimated memory the cached entries take, in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The index `key` was seen at, if cached (without touching its recency).
    pub fn seen_at(&self, key: &ManifestKey) -> Option<LogIndex> {
        self.lru.peek(key).map(|e| e.seen_at)
    }

    /// Answers a `GetManifests` read of `names` in `namespace` at `epoch` from the cache, when
    /// [`may_answer`] allows it: the manifests in the order asked and the lowest index they were
    /// seen at. `None` when the read must go to the shard.
    pub fn answer(
        &mut self,
        namespace: &Namespace,
        epoch: Epoch,
        names: &[String],
        consistency: Consistency,
    ) -> Option<(Vec<Option<Manifest>>, LogIndex)> {
        if consistency == Consistency::Consistent {
            return None;
        }
        let keys: Vec<ManifestKey> = names
            .iter()
            .map(|name| ManifestKey::new(namespace, epoch, name))
            .collect();
        let seen: Vec<Option<LogIndex>> = keys.iter().map(|k| self.seen_at(k)).collect();
        if !may_answer(consistency, &seen) {
            return None;
        }
        let applied = seen.iter().flatten().min().copied()?;
        let manifests = keys
            .iter()
            .map(|k| self.lru.get(k).map(|e| e.manifest.clone()))
            .collect();
        Some((manifests, applied))
    }

    /// Takes in a `GetManifests` answer served at `applied`: caches the manifests found, and
    /// drops cached entries of the names found absent that were seen before `applied` (the
    /// object was deleted since).
    pub fn observe(
        &mut self,
        namespace: &Namespace,
        epoch: Epoch,
        names: &[String],
        manifests: &[Option<Manifest>],
        applied: LogIndex,
    ) {
        if names.len() != manifests.len() {
            // Not an answer to this question; learn nothing from it.
            return;
        }
        for (name, manifest) in names.iter().zip(manifests) {
            let key = ManifestKey::new(namespace, epoch, name);
            match manifest {
                Some(manifest) => self.insert(key, manifest.clone(), applied),
                None => {
                    if self.seen_at(&key).is_some_and(|seen| seen < applied) {
                        self.invalidate(&key);
                    }
                }
            }
        }
    }

    /// Caches `manifest` as seen at `index`, unless the cache holds the key seen at a later
    /// index (answers can arrive out of order; the later state wins).
    pub fn insert(&mut self, key: ManifestKey, manifest: Manifest, index: LogIndex) {
        if self.seen_at(&key).is_some_and(|seen| seen > index) {
            return;
        }
        let size_bytes = entry_size_bytes(&key, &manifest);
        if size_bytes > self.bytes_max {
            self.invalidate(&key);
            return;
        }
        let entry = Entry {
            manifest,
            seen_at: index,
            size_bytes,
        };
        // `push` hands back the entry it displaced: the old value of this key, or the least
        // recently used entry when the cache was full.
        if let Some((_, displaced)) = self.lru.push(key, entry) {
            self.bytes -= displaced.size_bytes;
        }
        self.bytes += size_bytes;
        while self.bytes > self.bytes_max {
            // The new entry fits on its own and is the most recently used, so the loop stops
            // before it reaches it.
            let (_, evicted) = self
                .lru
                .pop_lru()
                .expect("a byte total above zero means an entry to evict");
            self.bytes -= evicted.size_bytes;
        }
    }

    /// Drops `key` (a put or delete went through, failed or may have been applied).
    pub fn invalidate(&mut self, key: &ManifestKey) {
        if let Some(entry) = self.lru.pop(key) {
            self.bytes -= entry.size_bytes;
        }
    }
}

impl std::fmt::Debug for ManifestCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManifestCache")
            .field("entries", &self.lru.len())
            .field("entries_max", &self.lru.cap())
            .field("bytes", &self.bytes)
            .field("bytes_max", &self.bytes_max)
            .finish()
    }
}

/// The cache's per-entry bookkeeping beyond the key and the entry themselves: the LRU list's
/// links and the hash table's slot, roughly.
const ENTRY_OVERHEAD_BYTES: usize = 64;

/// An estimate of the memory one cached manifest takes: the fixed parts of key and entry, and
/// every heap allocation they own.
pub fn entry_size_bytes(key: &ManifestKey, manifest: &Manifest) -> u64 {
    use std::mem::size_of;
    let fixed = size_of::<ManifestKey>() + size_of::<Entry>() + ENTRY_OVERHEAD_BYTES;
    let key_heap = key.namespace.as_str().len() + key.name.len();
    let chunks: usize = manifest
        .chunks
        .iter()
        .map(|chunk| {
            size_of::<Chunk>()
                + chunk.fragments.len() * size_of::<Option<FragmentLocation>>()
                + chunk
                    .fragments
                    .iter()
                    .flatten()
                    .map(|f| f.checksum.digest.len())
                    .sum::<usize>()
        })
        .sum();
    let manifest_heap =
        manifest.name.len() + manifest.object_id.len() + manifest.checksum.digest.len() + chunks;
    (fixed + key_heap + manifest_heap) as u64
}

#[cfg(test)]
mod tests {
    use cairn_wire::manifest::{Checksum, ChecksumAlgorithm, Compression, StorageScheme};
    use proptest::prelude::*;

    use super::*;
    use Consistency::{Any, AtLeast, Consistent};

    fn i(index: u64) -> LogIndex {
        LogIndex(index)
    }

    fn ns() -> Namespace {
        Namespace::new("photos").unwrap()
    }

    fn manifest(name: &str, chunks: usize) -> Manifest {
        let fragment = FragmentLocation {
            device_id: 1,
            version: 1,
            checksum: Checksum {
                algorithm: ChecksumAlgorithm::Crc32c,
                digest: vec![0; 4],
            },
            length_bytes: 1024,
        };
        Manifest {
            name: name.to_owned(),
            object_id: b"id".to_vec(),
            size_bytes: 2048 * chunks as u64,
            checksum: Checksum::none(),
            scheme: StorageScheme {
                data_fragments: 2,
                parity_fragments: 1,
                fragment_size_bytes: 1024,
                compression: Compression::None,
                encrypted: false,
            },
            chunks: vec![
                Chunk {
                    length_bytes: 2048,
                    fragments: vec![
                        Some(fragment.clone()),
                        Some(fragment.clone()),
                        Some(fragment)
                    ],
                };
                chunks
            ],
            version: 1,
            timestamp_ms: 0,
        }
    }

    fn key(name: &str) -> ManifestKey {
        ManifestKey::new(&ns(), Epoch(1), name)
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn cache(entries_max: usize, bytes_max: u64) -> ManifestCache {
        ManifestCache::new(CacheLimits {
            entries_max: NonZeroUsize::new(entries_max).unwrap(),
            bytes_max,
        })
    }

    #[test]
    fn the_consistency_rule() {
        // (consistency, what the cache holds of the names asked, may it answer)
        let table: &[(Consistency, &[Option<u64>], bool)] = &[
            (Consistent, &[Some(9)], false),
            (Consistent, &[Some(9), Some(9)], false),
            (Consistent, &[None], false),
            (Any, &[Some(1)], true),
            (Any, &[Some(1), Some(0)], true),
            (Any, &[Some(1), None], false),
            (Any, &[None], false),
            (AtLeast(i(5)), &[Some(5)], true),
            (AtLeast(i(5)), &[Some(6), Some(5)], true),
            (AtLeast(i(5)), &[Some(6), Some(4)], false),
            (AtLeast(i(5)), &[Some(9), None], false),
            (AtLeast(i(0)), &[Some(0)], true),
            (Any, &[], false),
            (AtLeast(i(0)), &[], false),
        ];
        for (consistency, seen, expected) in table {
            let seen: Vec<Option<LogIndex>> = seen.iter().map(|s| s.map(LogIndex)).collect();
            assert_eq!(
                may_answer(*consistency, &seen),
                *expected,
                "{consistency} over {seen:?}"
            );
        }
    }

    #[test]
    fn an_answer_from_the_cache_reports_the_lowest_index_seen() {
        let mut c = cache(10, 1 << 20);
        c.insert(key("a"), manifest("a", 1), i(7));
        c.insert(key("b"), manifest("b", 1), i(4));
        let (manifests, applied) = c.answer(&ns(), Epoch(1), &names(&["a", "b"]), Any).unwrap();
        assert_eq!(
            manifests,
            vec![Some(manifest("a", 1)), Some(manifest("b", 1))]
        );
        assert_eq!(applied, i(4));
        assert!(
            c.answer(&ns(), Epoch(1), &names(&["a", "b"]), AtLeast(i(5)))
                .is_none()
        );
        assert!(
            c.answer(&ns(), Epoch(1), &names(&["a"]), AtLeast(i(5)))
                .is_some()
        );
        assert!(
            c.answer(&ns(), Epoch(1), &names(&["a"]), Consistent)
                .is_none()
        );
    }

    #[test]
    fn entries_of_another_epoch_are_not_hit() {
        let mut c = cache(10, 1 << 20);
        c.insert(key("a"), manifest("a", 1), i(7));
        assert!(c.answer(&ns(), Epoch(2), &names(&["a"]), Any).is_none());
    }

    #[test]
    fn a_later_state_is_never_replaced_by_an_earlier_one() {
        let mut c = cache(10, 1 << 20);
        c.insert(key("a"), manifest("a", 2), i(10));
        c.insert(key("a"), manifest("a", 1), i(8));
        assert_eq!(c.seen_at(&key("a")), Some(i(10)));
        let (manifests, _) = c.answer(&ns(), Epoch(1), &names(&["a"]), Any).unwrap();
        assert_eq!(manifests, vec![Some(manifest("a", 2))]);
        c.insert(key("a"), manifest("a", 3), i(10));
        c.insert(key("a"), manifest("a", 1), i(11));
        assert_eq!(c.seen_at(&key("a")), Some(i(11)));
    }

    #[test]
    fn a_read_answer_fills_the_cache_and_absent_objects_are_dropped_not_cached() {
        let mut c = cache(10, 1 << 20);
        c.insert(key("old"), manifest("old", 1), i(3));
        c.insert(key("newer"), manifest("newer", 1), i(9));
        c.observe(
            &ns(),
            Epoch(1),
            &names(&["a", "old", "newer", "never"]),
            &[Some(manifest("a", 1)), None, None, None],
            i(5),
        );
        assert_eq!(c.seen_at(&key("a")), Some(i(5)));
        assert_eq!(c.seen_at(&key("old")), None, "deleted since it was seen");
        assert_eq!(
            c.seen_at(&key("newer")),
            Some(i(9)),
            "seen after this answer: kept"
        );
        assert_eq!(c.seen_at(&key("never")), None, "absence is not cached");
        assert_eq!(c.len(), 2);

        c.observe(&ns(), Epoch(1), &names(&["b"]), &[], i(5));
        assert_eq!(c.len(), 2, "a mismatched answer teaches nothing");
    }

    #[test]
    fn the_entry_bound_evicts_the_least_recently_used() {
        let mut c = cache(2, 1 << 20);
        c.insert(key("a"), manifest("a", 1), i(1));
        c.insert(key("b"), manifest("b", 1), i(1));
        c.answer(&ns(), Epoch(1), &names(&["a"]), Any).unwrap();
        c.insert(key("c"), manifest("c", 1), i(1));
        assert_eq!(c.len(), 2);
        assert_eq!(c.seen_at(&key("b")), None, "b was least recently used");
        assert!(c.seen_at(&key("a")).is_some() && c.seen_at(&key("c")).is_some());
        let expected: u64 = ["a", "c"]
            .iter()
            .map(|n| entry_size_bytes(&key(n), &manifest(n, 1)))
            .sum();
        assert_eq!(c.bytes(), expected);
    }

    #[test]
    fn the_byte_bound_evicts_until_the_total_fits() {
        let one = entry_size_bytes(&key("a"), &manifest("a", 1));
        let mut c = cache(100, 3 * one);
        for name in ["a", "b", "c"] {
            c.insert(key(name), manifest(name, 1), i(1));
        }
        assert_eq!((c.len(), c.bytes()), (3, 3 * one));
        let big = manifest("d", 2);
        let big_size = entry_size_bytes(&key("d"), &big);
        assert!(big_size > one && big_size <= 2 * one);
        c.insert(key("d"), big, i(1));
        assert!(c.bytes() <= 3 * one);
        assert_eq!(c.len(), 2, "a and b made room for d");
        assert_eq!(c.seen_at(&key("a")), None);
        assert_eq!(c.seen_at(&key("b")), None);
        assert_eq!(c.bytes(), one + big_size);
    }

    #[test]
    fn an_entry_larger_than_the_whole_cache_is_not_cached() {
        let one = entry_size_bytes(&key("a"), &manifest("a", 1));
        let mut c = cache(100, one);
        c.insert(key("a"), manifest("a", 1), i(1));
        c.insert(key("a"), manifest("a", 5), i(2));
        assert!(c.is_empty(), "the stale small entry went too");
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn replacing_an_entry_accounts_its_new_size() {
        let mut c = cache(10, 1 << 20);
        c.insert(key("a"), manifest("a", 1), i(1));
        c.insert(key("a"), manifest("a", 4), i(2));
        assert_eq!(c.len(), 1);
        assert_eq!(c.bytes(), entry_size_bytes(&key("a"), &manifest("a", 4)));
        c.invalidate(&key("a"));
        assert_eq!((c.len(), c.bytes()), (0, 0));
        c.invalidate(&key("a"));
        assert_eq!((c.len(), c.bytes()), (0, 0));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert { name: u8, chunks: u8, index: u8 },
        Invalidate { name: u8 },
        Answer { name: u8 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..12u8, 1..6u8, 0..20u8).prop_map(|(name, chunks, index)| Op::Insert {
                name,
                chunks,
                index
            }),
            (0..12u8).prop_map(|name| Op::Invalidate { name }),
            (0..12u8).prop_map(|name| Op::Answer { name }),
        ]
    }

    proptest! {
        /// Whatever happens, both bounds hold and the byte total is exactly the sum of the
        /// entries' sizes.
        #[test]
        fn the_bounds_and_the_byte_accounting_always_hold(
            entries_max in 1..8usize,
            bytes_max in 300..4000u64,
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let mut c = cache(entries_max, bytes_max);
            for op in ops {
                match op {
                    Op::Insert { name, chunks, index } => {
                        let name = name.to_string();
                        let m = manifest(&name, usize::from(chunks));
                        c.insert(key(&name), m, i(u64::from(index)));
                    }
                    Op::Invalidate { name } => c.invalidate(&key(&name.to_string())),
                    Op::Answer { name } => {
                        c.answer(&ns(), Epoch(1), &[name.to_string()], Any);
                    }
                }
                prop_assert!(c.len() <= entries_max);
                prop_assert!(c.bytes() <= bytes_max);
                let total: u64 = c.lru.iter().map(|(k, e)| {
                    assert_eq!(e.size_bytes, entry_size_bytes(k, &e.manifest));
                    e.size_bytes
                }).sum();
                prop_assert_eq!(c.bytes(), total);
            }
        }
    }
}
