//! Where a shard replica's state-machine data lives in the host's RocksDB.
//!
//! Every replica on a host shares one RocksDB instance; its key-value data lives in the `data`
//! column family under keys of the form
//!
//! ```text
//! shard: u64 big-endian | generation: u64 big-endian | namespace length: u8 | namespace | user key
//! ```
//!
//! Big-endian integers make a shard's keys (and a generation's keys inside it) one contiguous
//! range, so a generation can be iterated, copied or dropped with one range. The namespace length
//! byte keeps namespaces apart: namespace `a` and namespace `ab` have different length bytes, so
//! no key of one ever starts with the prefix of the other.

use cairn_wire::api::{Namespace, ShardId};

/// The length of [`KeySpace::prefix`]: shard and generation, 8 bytes each.
pub const SPACE_PREFIX_LEN_BYTES: usize = 16;

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
    /// The prefix of every key of this space: `shard | generation`, 16 bytes.
    pub fn prefix(&self) -> Vec<u8> {
        let mut prefix = Vec::with_capacity(SPACE_PREFIX_LEN_BYTES);
        prefix.extend_from_slice(&self.shard.0.to_be_bytes());
        prefix.extend_from_slice(&self.generation.to_be_bytes());
        prefix
    }

    /// The prefix of every key of namespace `ns` in this space: `prefix | len | ns`.
    pub fn namespace_prefix(&self, ns: &Namespace) -> Vec<u8> {
        let name = ns.as_str().as_bytes();
        // `Namespace` guarantees 1 to NAMESPACE_LEN_MAX_BYTES (128) bytes.
        let len = u8::try_from(name.len()).expect("a namespace is at most 128 bytes long");
        let mut prefix = Vec::with_capacity(SPACE_PREFIX_LEN_BYTES + 1 + name.len());
        prefix.extend_from_slice(&self.prefix());
        prefix.push(len);
        prefix.extend_from_slice(name);
        prefix
    }

    /// The stored key of user key `key` in namespace `ns`.
    pub fn data_key(&self, ns: &Namespace, key: &[u8]) -> Vec<u8> {
        let mut stored = self.namespace_prefix(ns);
        stored.extend_from_slice(key);
        stored
    }

    /// The prefix of every key of `shard`, in every generation: 8 bytes.
    pub fn shard_prefix(shard: ShardId) -> Vec<u8> {
        shard.0.to_be_bytes().to_vec()
    }

    /// The part of a stored key after this space's 16-byte prefix (namespace length, namespace
    /// and user key), or `None` when `stored` is not a key of this space.
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

/// The range `[lower, upper)` of the stored keys of namespace `ns` in `space` whose user key
/// starts with `prefix` (every key of the namespace when `prefix` is empty).
pub fn namespace_prefix_range(
    space: &KeySpace,
    ns: &Namespace,
    prefix: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let lower = space.data_key(ns, prefix);
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
    fn data_key_is_shard_generation_length_namespace_key() {
        let space = KeySpace {
            shard: ShardId(0x0102),
            generation: 7,
        };
        let key = space.data_key(&ns("ab"), b"k");
        let mut expected = vec![0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 7, 2];
        expected.extend_from_slice(b"abk");
        assert_eq!(key, expected);
        assert!(key.starts_with(&KeySpace::shard_prefix(ShardId(0x0102))));
        assert!(key.starts_with(&space.prefix()));
        assert_eq!(space.relative(&key), Some(&b"\x02abk"[..]));
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
        let a = space.namespace_prefix(&ns("a"));
        let ab = space.namespace_prefix(&ns("ab"));
        assert!(!ab.starts_with(&a));
        assert!(!space.data_key(&ns("ab"), b"x").starts_with(&a));
        assert!(!space.data_key(&ns("a"), b"bx").starts_with(&ab));
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
        let (lower, upper) = namespace_prefix_range(&space, &ns("a"), &[0xff]);
        let inside = space.data_key(&ns("a"), &[0xff, 0xff, 0xff]);
        let outside = space.data_key(&ns("a"), &[0xfe]);
        assert!(lower <= inside && inside < upper);
        assert!(outside < lower);
        let (lower, upper) = namespace_prefix_range(&space, &ns("a"), b"");
        let other_namespace = space.data_key(&ns("ab"), b"");
        assert!(!(lower <= other_namespace && other_namespace < upper));
    }
}
