//! Object manifests: what a shard keeps for every object of a namespace (the NSM role of ALBA,
//! see `shared/reference/arakoon-alba.md` §5.3).
//!
//! A manifest says where and how an object's fragments are stored: the object's identity, size
//! and checksum, the storage scheme (data and parity fragments per chunk), and for every chunk
//! the location of each fragment (device, version, checksum, length). Storage proxies put a
//! manifest after writing the fragments and get it to read them back.
//!
//! [`Manifest::validate`] rejects a manifest that cannot describe a readable object, with the
//! reason; shards validate before proposing, so every stored manifest is valid.

use serde::{Deserialize, Serialize};

use crate::api::ApiError;

/// The longest object name, in bytes.
pub const OBJECT_NAME_LEN_MAX_BYTES: usize = 1024;
/// The longest object id, in bytes.
pub const OBJECT_ID_LEN_MAX_BYTES: usize = 64;
/// The most fragments (data plus parity) of one chunk.
pub const FRAGMENTS_PER_CHUNK_MAX: usize = 64;

/// How a checksum was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChecksumAlgorithm {
    /// No checksum (an empty digest).
    None,
    /// CRC-32C (4 bytes).
    Crc32c,
    /// SHA-256 (32 bytes).
    Sha256,
    /// BLAKE3 (32 bytes).
    Blake3,
}

impl ChecksumAlgorithm {
    /// The digest length of this algorithm, in bytes.
    pub fn digest_len_bytes(self) -> usize {
        match self {
            Self::None => 0,
            Self::Crc32c => 4,
            Self::Sha256 | Self::Blake3 => 32,
        }
    }
}

/// A checksum: the algorithm and its digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    /// The algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// The digest, [`ChecksumAlgorithm::digest_len_bytes`] long.
    #[serde(with = "serde_bytes")]
    pub digest: Vec<u8>,
}

impl Checksum {
    /// No checksum.
    pub fn none() -> Self {
        Self {
            algorithm: ChecksumAlgorithm::None,
            digest: Vec::new(),
        }
    }

    fn validate(&self, what: &str) -> Result<(), String> {
        let want = self.algorithm.digest_len_bytes();
        if self.digest.len() != want {
            return Err(format!(
                "{what}: a {:?} digest is {want} bytes, got {}",
                self.algorithm,
                self.digest.len()
            ));
        }
        Ok(())
    }
}

/// How fragments are compressed before they are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    /// Stored as is.
    None,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

/// How an object is cut and encoded: each chunk is split into `data_fragments` fragments and
/// `parity_fragments` parity fragments are added (erasure coding; `parity_fragments` 0 with
/// several data fragments is plain striping, one data fragment and N parity is replication).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageScheme {
    /// Data fragments per chunk (k), at least 1.
    pub data_fragments: u8,
    /// Parity fragments per chunk (m).
    pub parity_fragments: u8,
    /// The size of one fragment, in bytes (the last chunk's fragments may be shorter).
    pub fragment_size_bytes: u32,
    /// Compression.
    pub compression: Compression,
    /// Whether fragments are encrypted.
    pub encrypted: bool,
}

impl StorageScheme {
    /// Fragments per chunk: data plus parity.
    pub fn fragments_per_chunk(&self) -> usize {
        usize::from(self.data_fragments) + usize::from(self.parity_fragments)
    }
}

/// Where one fragment is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentLocation {
    /// The storage device (OSD) holding it.
    pub device_id: u64,
    /// The fragment's version on that device.
    pub version: u64,
    /// Its checksum.
    pub checksum: Checksum,
    /// Its stored length, in bytes.
    pub length_bytes: u32,
}

/// One chunk of an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// The chunk's length in the object, in bytes.
    pub length_bytes: u64,
    /// One entry per fragment (data first, then parity): where it is, or `None` when that
    /// fragment is not stored (the object stays readable while at least `data_fragments` are).
    pub fragments: Vec<Option<FragmentLocation>>,
}

/// Everything a storage proxy needs to read an object back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The object's name in its namespace: 1 to [`OBJECT_NAME_LEN_MAX_BYTES`] bytes of UTF-8
    /// without control characters.
    pub name: String,
    /// The object's identity (a new id per upload): 1 to [`OBJECT_ID_LEN_MAX_BYTES`] bytes.
    #[serde(with = "serde_bytes")]
    pub object_id: Vec<u8>,
    /// The object's size, in bytes: the sum of its chunks' lengths.
    pub size_bytes: u64,
    /// The whole object's checksum.
    pub checksum: Checksum,
    /// How it is encoded.
    pub scheme: StorageScheme,
    /// Its chunks, in order.
    pub chunks: Vec<Chunk>,
    /// The manifest's version (incremented by repairs and rewrites of fragments).
    pub version: u64,
    /// When the object was written, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

/// Checks an object name.
pub fn validate_object_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > OBJECT_NAME_LEN_MAX_BYTES {
        return Err(ApiError::InvalidArgument(format!(
            "object name must be 1 to {OBJECT_NAME_LEN_MAX_BYTES} bytes, got {}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::InvalidArgument(format!(
            "object name {name:?} contains a control character"
        )));
    }
    Ok(())
}

impl Manifest {
    /// Checks that the manifest describes a readable object and fits `max_bytes` once encoded.
    /// Fails with [`ApiError::InvalidManifest`] (and the reason), or [`ApiError::TooLarge`]
    /// (`what: "manifest"`).
    pub fn validate(&self, max_bytes: u32) -> Result<(), ApiError> {
        validate_object_name(&self.name)?;
        self.check().map_err(ApiError::InvalidManifest)?;
        let size = postcard::to_allocvec(self)
            .map_err(|e| ApiError::InvalidManifest(format!("cannot encode: {e}")))?
            .len();
        if size > max_bytes as usize {
            return Err(ApiError::TooLarge {
                what: "manifest".into(),
                size: size as u64,
                max: u64::from(max_bytes),
            });
        }
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        if self.object_id.is_empty() || self.object_id.len() > OBJECT_ID_LEN_MAX_BYTES {
            return Err(format!(
                "object id must be 1 to {OBJECT_ID_LEN_MAX_BYTES} bytes, got {}",
                self.object_id.len()
            ));
        }
        self.checksum.validate("object checksum")?;
        let scheme = &self.scheme;
        if scheme.data_fragments == 0 {
            return Err("the storage scheme needs at least 1 data fragment".into());
        }
        let per_chunk = scheme.fragments_per_chunk();
        if per_chunk > FRAGMENTS_PER_CHUNK_MAX {
            return Err(format!(
                "the storage scheme has {per_chunk} fragments per chunk; at most {FRAGMENTS_PER_CHUNK_MAX}"
            ));
        }
        if scheme.fragment_size_bytes == 0 {
            return Err("the fragment size must be at least 1 byte".into());
        }
        let chunk_max = u64::from(scheme.data_fragments) * u64::from(scheme.fragment_size_bytes);
        let mut total: u64 = 0;
        for (i, chunk) in self.chunks.iter().enumerate() {
            if chunk.fragments.len() != per_chunk {
                return Err(format!(
                    "chunk {i} lists {} fragments; the scheme has {per_chunk} ({} data + {} parity)",
                    chunk.fragments.len(),
                    scheme.data_fragments,
                    scheme.parity_fragments
                ));
            }
            if chunk.length_bytes == 0 || chunk.length_bytes > chunk_max {
                return Err(format!(
                    "chunk {i} is {} bytes long; a chunk is 1 to {chunk_max} bytes with this scheme",
                    chunk.length_bytes
                ));
            }
            let stored = chunk.fragments.iter().flatten().count();
            if stored < usize::from(scheme.data_fragments) {
                return Err(format!(
                    "chunk {i} has {stored} stored fragments; at least {} are needed to read it",
                    scheme.data_fragments
                ));
            }
            for (j, fragment) in chunk.fragments.iter().enumerate() {
                if let Some(f) = fragment {
                    f.checksum
                        .validate(&format!("chunk {i} fragment {j} checksum"))?;
                    if f.length_bytes == 0 || f.length_bytes > scheme.fragment_size_bytes {
                        return Err(format!(
                            "chunk {i} fragment {j} is {} bytes; a fragment is 1 to {} bytes",
                            f.length_bytes, scheme.fragment_size_bytes
                        ));
                    }
                }
            }
            total = total.saturating_add(chunk.length_bytes);
        }
        if total != self.size_bytes {
            return Err(format!(
                "the chunks add up to {total} bytes but the object size is {}",
                self.size_bytes
            ));
        }
        Ok(())
    }
}

/// The condition a manifest put is applied under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PutMode {
    /// Create or overwrite.
    Unconditional,
    /// Only when no object of that name exists ([`ApiError::ObjectExists`] otherwise).
    MustNotExist,
    /// Only when the object exists with this object id ([`ApiError::ObjectChanged`] otherwise):
    /// a storage proxy replacing exactly the version it read.
    MustReplace {
        /// The object id the current manifest must have.
        #[serde(with = "serde_bytes")]
        object_id: Vec<u8>,
    },
}

/// A namespace's statistics, kept up to date by every manifest write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceStats {
    /// How many objects (manifests) it holds.
    pub objects: u64,
    /// The sum of their sizes, in bytes.
    pub logical_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(len: u32) -> Option<FragmentLocation> {
        Some(FragmentLocation {
            device_id: 7,
            version: 1,
            checksum: Checksum {
                algorithm: ChecksumAlgorithm::Crc32c,
                digest: vec![1, 2, 3, 4],
            },
            length_bytes: len,
        })
    }

    fn sample() -> Manifest {
        Manifest {
            name: "photos/cat.jpg".into(),
            object_id: b"id-1".to_vec(),
            size_bytes: 6000,
            checksum: Checksum {
                algorithm: ChecksumAlgorithm::Blake3,
                digest: vec![0; 32],
            },
            scheme: StorageScheme {
                data_fragments: 2,
                parity_fragments: 1,
                fragment_size_bytes: 2048,
                compression: Compression::None,
                encrypted: false,
            },
            chunks: vec![
                Chunk {
                    length_bytes: 4096,
                    fragments: vec![fragment(2048), fragment(2048), fragment(2048)],
                },
                Chunk {
                    length_bytes: 1904,
                    fragments: vec![fragment(952), None, fragment(952)],
                },
            ],
            version: 1,
            timestamp_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn a_valid_manifest_passes() {
        sample().validate(64 * 1024).unwrap();
    }

    /// A change that makes a valid manifest invalid.
    type Breakage = Box<dyn Fn(&mut Manifest)>;

    #[test]
    fn each_invalid_manifest_is_rejected_with_its_reason() {
        let cases: Vec<(&str, Breakage)> = vec![
            ("object id", Box::new(|m| m.object_id.clear())),
            (
                "digest",
                Box::new(|m| m.checksum.digest.pop().map(|_| ()).unwrap()),
            ),
            ("data fragment", Box::new(|m| m.scheme.data_fragments = 0)),
            (
                "lists 2 fragments",
                Box::new(|m| {
                    m.chunks[0].fragments.pop();
                }),
            ),
            (
                "stored fragments",
                Box::new(|m| m.chunks[1].fragments[0] = None),
            ),
            ("add up", Box::new(|m| m.size_bytes += 1)),
            ("chunk 0 is", Box::new(|m| m.chunks[0].length_bytes = 5000)),
            (
                "fragment 1 is",
                Box::new(|m| {
                    if let Some(f) = &mut m.chunks[0].fragments[1] {
                        f.length_bytes = 4096;
                    }
                }),
            ),
        ];
        for (reason, break_it) in cases {
            let mut m = sample();
            break_it(&mut m);
            match m.validate(64 * 1024) {
                Err(ApiError::InvalidManifest(why)) => {
                    assert!(why.contains(reason), "{reason:?} not in {why:?}")
                }
                other => panic!("{reason}: expected InvalidManifest, got {other:?}"),
            }
        }
    }

    #[test]
    fn names_and_sizes_are_bounded() {
        let mut m = sample();
        m.name = String::new();
        assert!(matches!(
            m.validate(1 << 16),
            Err(ApiError::InvalidArgument(_))
        ));
        m.name = "a\nb".into();
        assert!(matches!(
            m.validate(1 << 16),
            Err(ApiError::InvalidArgument(_))
        ));
        let m = sample();
        assert!(matches!(
            m.validate(100),
            Err(ApiError::TooLarge { what, .. }) if what == "manifest"
        ));
    }
}
