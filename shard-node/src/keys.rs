//! Where a shard replica's state-machine data lives in the host's RocksDB.
//!
//! Every replica on a host shares one RocksDB instance; its state lives in the `data` column
//! family under keys of the form
//!
//! ```text
//! shard: u64 BE | generation: u64 BE | area: u8 | namespace length: u8 | namespace | rest
//! ```
//!
//! The *area* says what a key holds, and what `rest` is:
//!
//! - [`Area::Kv`] (0): the namespace's key-value data; `rest` is the user key, the value is the
//!   user value.
//! - [`Area::Manifest`] (1): the namespace's object manifests; `rest` is the object name (its
//!   UTF-8 bytes), the value the postcard-encoded manifest.
//! - [`Area::System`] (2): the namespace's own records; `rest` is one [`SystemRecord`] tag byte
//!   (ownership, statistics), the value a postcard-encoded record.
//! - [`Area::Group`] (3): records of the whole group, not of a namespace: the key is
//!   `shard | generation | 3 | tag` with one [`GroupKey`] tag byte (the replication policy), the
//!   value a postcard-encoded record.
//!
//! Big-endian integers make a shard's keys (and a generation's keys inside it) one contiguous
//! range, so a generation can be iterated, copied or dropped with one range. Snapshots copy a
//! whole generation, so manifests, statistics and ownership travel with the key-value data
//! unchanged. Inside a generation each area is contiguous, and inside an area each namespace is:
//! the keys, the manifests or the records of one namespace are one range each (dropping a
//! namespace takes three range deletes), and one area of every namespace is one scan.
//!
//! The namespace length byte keeps namespaces apart: namespace `a` and namespace `ab` have
//! different length bytes, so no key of one ever starts with the prefix of the other.

use cairn_wire::api::{Namespace, ShardId};

/// The length of [`KeySpace::prefix`]: shard and generation, 8 bytes each.
pub const SPACE_PREFIX_LEN_BYTES: usize = 16;

/// What the keys of one part of a generation hold (the byte after the generation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Area {
    /// Key-value data: user key → user value.
    Kv = 0,
    /// Object manifests: object name → manifest.
    Manifest = 1,
    /// A namespace's own records: [`SystemRecord`] tag → record.
    System = 2,
    /// The group's own records: [`GroupKey`] tag → record (no namespace in the key).
    Group = 3,
}

impl Area {
    /// Every area that holds namespaces' keys, in key order.
    pub const ALL: [Self; 3] = [Self::Kv, Self::Manifest, Self::System];
}

/// The records of the whole group in [`Area::Group`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum GroupKey {
    /// The replication policy the manager set ([`cairn_wire::api::GroupPolicy`]).
    Policy = 0,
}

/// The records of a namespace in [`Area::System`] (the byte after the namespace).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum SystemRecord {
    /// Whether, and at which epoch, the shard owns the namespace (managed shards only).
    Ownership = 0,
    /// The namespace's object count and logical size.
    Stats = 1,
}

/// The key space of one shard replica's state machine in the data column family: one generation
/// of one shard. A snapshot install writes a new generation and flips to it; the state machine
/// only ever works inside the generation it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpace {
    /// The shard.
    pub shard: ShardId,
    /// The generation of the shard's state in force.
    pub generation: u64,
}

impl KeySpace {
    /// The prefix of every key of this space, in every area: `shard | generation`, 16 bytes.
    pub fn prefix(&self) -> Vec<u8> {
        let mut prefix = Vec::with_capacity(SPACE_PREFIX_LEN_BYTES);
        prefix.extend_from_slice(&self.shard.0.to_be_bytes());
        prefix.extend_from_slice(&self.generation.to_be_bytes());
        prefix
    }

    /// The prefix of every key of `area` in this space, of every namespace: `prefix | area`.
    pub fn area_prefix(&self, area: Area) -> Vec<u8> {
        let mut prefix = self.prefix();
        prefix.push(area as u8);
        prefix
    }

    /// The prefix of the keys of namespace `ns` in `area`: `prefix | area | len | ns`.
    pub fn namespace_prefix(&self, area: Area, ns: &Namespace) -> Vec<u8> {
        let name = ns.as_str().as_bytes();
        // `Namespace` guarantees 1 to NAMESPACE_LEN_MAX_BYTES (128) bytes.
        let len = u8::try_from(name.len()).expect("a namespace is at most 128 bytes long");
        let mut prefix = Vec::with_capacity(SPACE_PREFIX_LEN_BYTES + 2 + name.len());
        prefix.extend_from_slice(&self.prefix());
        prefix.push(area as u8);
        prefix.push(len);
        prefix.extend_from_slice(name);
        prefix
    }

    /// The stored key of `rest` in `area` of namespace `ns`.
    pub fn area_key(&self, area: Area, ns: &Namespace, rest: &[u8]) -> Vec<u8> {
        let mut stored = self.namespace_prefix(area, ns);
        stored.extend_from_slice(rest);
        stored
    }

    /// The stored key of user key `key` in namespace `ns` ([`Area::Kv`]).
    pub fn data_key(&self, ns: &Namespace, key: &[u8]) -> Vec<u8> {
        self.area_key(Area::Kv, ns, key)
    }

    /// The stored key of the manifest of object `name` in namespace `ns` ([`Area::Manifest`]).
    pub fn manifest_key(&self, ns: &Namespace, name: &str) -> Vec<u8> {
        self.area_key(Area::Manifest, ns, name.as_bytes())
    }

    /// The stored key of record `record` of namespace `ns` ([`Area::System`]).
    pub fn system_key(&self, ns: &Namespace, record: SystemRecord) -> Vec<u8> {
        self.area_key(Area::System, ns, &[record as u8])
    }

    /// The stored key of the group record `record`: `prefix | 3 | tag`.
    pub fn group_key(&self, record: GroupKey) -> Vec<u8> {
        let mut key = self.area_prefix(Area::Group);
        key.push(record as u8);
        key
    }

    /// The prefix of every key of `shard`, in every generation: 8 bytes.
    pub fn shard_prefix(shard: ShardId) -> Vec<u8> {
        shard.0.to_be_bytes().to_vec()
    }

    /// The part of a stored key after this space's 16-byte prefix (area, namespace length,
    /// namespace and the rest), or `None` when `stored` is not a key of this space.
    pub fn relative<'a>(&self, stored: &'a [u8]) -> Option<&'a [u8]> {
        stored.strip_prefix(self.prefix().as_slice())
    }
}

/// The exclusive upper bound of the keys that start with `prefix`: the smallest key greater than
/// all of them. `None` when no such key exists (`prefix` is empty or all `0xff`), in which case
/// the range is unbounded above.
///
/// Use it for range deletes and iteration bounds: the keys starting with `prefix` are exactly
/// `prefix..prefix_end(prefix)`.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

/// The smallest key greater than `key`: `key` followed by a zero byte. Turns an exclusive lower
/// bound into an inclusive one and an inclusive upper bound into an exclusive one.
pub fn key_successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

/// The range `[lower, upper)` of the stored keys of namespace `ns` in `area` of `space` whose
/// rest starts with `prefix` (every key of the namespace in that area when `prefix` is empty).
pub fn namespace_prefix_range(
    space: &KeySpace,
    area: Area,
    ns: &Namespace,
    prefix: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let lower = space.area_key(area, ns, prefix);
    // The namespace length byte (1..=128) is never 0xff, so an end always exists.
    let upper = prefix_end(&lower).expect("a namespace prefix contains a byte below 0xff");
    (lower, upper)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str) -> Namespace {
        Namespace::new(name).unwrap()
    }

    #[test]
    fn data_key_is_shard_generation_area_length_namespace_key() {
        let space = KeySpace {
            shard: ShardId(0x0102),
            generation: 7,
        };
        let key = space.data_key(&ns("ab"), b"k");
        let mut expected = vec![0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 7, 0, 2];
        expected.extend_from_slice(b"abk");
        assert_eq!(key, expected);
        assert!(key.starts_with(&KeySpace::shard_prefix(ShardId(0x0102))));
        assert!(key.starts_with(&space.prefix()));
        assert!(key.starts_with(&space.area_prefix(Area::Kv)));
        assert_eq!(space.relative(&key), Some(&b"\x00\x02abk"[..]));
    }

    #[test]
    fn manifest_and_system_keys_carry_their_area() {
        let space = KeySpace {
            shard: ShardId(1),
            generation: 1,
        };
        let manifest = space.manifest_key(&ns("ab"), "obj");
        assert_eq!(space.relative(&manifest), Some(&b"\x01\x02abobj"[..]));
        let stats = space.system_key(&ns("ab"), SystemRecord::Stats);
        assert_eq!(space.relative(&stats), Some(&b"\x02\x02ab\x01"[..]));
        let ownership = space.system_key(&ns("ab"), SystemRecord::Ownership);
        assert_eq!(space.relative(&ownership), Some(&b"\x02\x02ab\x00"[..]));
    }

    #[test]
    fn areas_do_not_overlap_and_stay_inside_the_generation() {
        let space = KeySpace {
            shard: ShardId(1),
            generation: 1,
        };
        let next = KeySpace {
            generation: 2,
            ..space
        };
        let n = ns("a");
        // The same bytes as a user key and as an object name land in different ranges.
        let (kv_lower, kv_upper) = namespace_prefix_range(&space, Area::Kv, &n, b"");
        let manifest = space.manifest_key(&n, "x");
        assert!(!(kv_lower <= manifest && manifest < kv_upper));
        let highest_kv = space.data_key(&n, &[0xff; 8]);
        let lowest_manifest = space.area_prefix(Area::Manifest);
        assert!(highest_kv < lowest_manifest);
        let highest_system = space.area_key(Area::System, &ns(&"z".repeat(128)), &[0xff; 8]);
        assert!(highest_system < next.prefix());
        for area in Area::ALL {
            assert!(space.area_key(area, &n, b"r").starts_with(&space.prefix()));
        }
    }

    #[test]
    fn relative_rejects_keys_of_other_spaces() {
        let space = KeySpace {
            shard: ShardId(1),
            generation: 1,
        };
        let other_generation = KeySpace {
            shard: ShardId(1),
            generation: 2,
        };
        let other_shard = KeySpace {
            shard: ShardId(2),
            generation: 1,
        };
        assert_eq!(
            space.relative(&other_generation.data_key(&ns("a"), b"k")),
            None
        );
        assert_eq!(space.relative(&other_shard.data_key(&ns("a"), b"k")), None);
        assert_eq!(space.relative(b"short"), None);
    }

    #[test]
    fn namespace_prefixes_do_not_overlap() {
        let space = KeySpace {
            shard: ShardId(1),
            generation: 1,
        };
        for area in Area::ALL {
            let a = space.namespace_prefix(area, &ns("a"));
            let ab = space.namespace_prefix(area, &ns("ab"));
            assert!(!ab.starts_with(&a));
            assert!(!space.area_key(area, &ns("ab"), b"x").starts_with(&a));
            assert!(!space.area_key(area, &ns("a"), b"bx").starts_with(&ab));
        }
    }

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(&[]), None);
        let end = prefix_end(&[3, 0xfe]).unwrap();
        assert!(end.as_slice() > &[3, 0xfe, 0xff, 0xff][..]);
    }

    #[test]
    fn key_successor_is_the_next_key() {
        assert_eq!(key_successor(b"a"), b"a\0".to_vec());
        assert!(key_successor(b"a").as_slice() < &b"a\x01"[..]);
    }

    #[test]
    fn namespace_prefix_range_covers_exactly_the_prefixed_keys() {
        let space = KeySpace {
            shard: ShardId(u64::MAX),
            generation: u64::MAX,
        };
        let (lower, upper) = namespace_prefix_range(&space, Area::Kv, &ns("a"), &[0xff]);
        let inside = space.data_key(&ns("a"), &[0xff, 0xff, 0xff]);
        let outside = space.data_key(&ns("a"), &[0xfe]);
        assert!(lower <= inside && inside < upper);
        assert!(outside < lower);
        let (lower, upper) = namespace_prefix_range(&space, Area::Kv, &ns("a"), b"");
        let other_namespace = space.data_key(&ns("ab"), b"");
        assert!(!(lower <= other_namespace && other_namespace < upper));
        let (lower, upper) = namespace_prefix_range(&space, Area::Manifest, &ns("a"), b"p");
        let inside = space.manifest_key(&ns("a"), "p/q");
        let outside = space.manifest_key(&ns("a"), "q");
        assert!(lower <= inside && inside < upper);
        assert!(!(lower <= outside && outside < upper));
    }
}
