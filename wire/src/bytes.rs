//! Serde helpers that put collections of byte strings on the wire as length-prefixed blobs
//! (`serialize_bytes`), instead of one element per byte as `Vec<u8>` does by default. For use
//! with `#[serde(with = "…")]`; single byte strings use `serde_bytes` directly.

use serde::{Deserialize, Deserializer, Serializer};
use serde_bytes::{ByteBuf, Bytes};

/// `Vec<Vec<u8>>`.
pub mod list {
    use super::*;

    /// Serializes each element as bytes.
    pub fn serialize<S: Serializer>(list: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(list.iter().map(|b| Bytes::new(b)))
    }

    /// Deserializes a sequence of byte strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let list = Vec::<ByteBuf>::deserialize(d)?;
        Ok(list.into_iter().map(ByteBuf::into_vec).collect())
    }
}

/// `Vec<Option<Vec<u8>>>`.
pub mod optional_list {
    use super::*;

    /// Serializes each present element as bytes.
    pub fn serialize<S: Serializer>(list: &[Option<Vec<u8>>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(list.iter().map(|b| b.as_deref().map(Bytes::new)))
    }

    /// Deserializes a sequence of optional byte strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Option<Vec<u8>>>, D::Error> {
        let list = Vec::<Option<ByteBuf>>::deserialize(d)?;
        Ok(list.into_iter().map(|b| b.map(ByteBuf::into_vec)).collect())
    }
}

/// Key-value pairs of byte strings.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// `Vec<(Vec<u8>, Vec<u8>)>`: key-value pairs.
pub mod pairs {
    use super::*;

    /// Serializes each pair as two byte strings.
    pub fn serialize<S: Serializer>(pairs: &[(Vec<u8>, Vec<u8>)], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(pairs.iter().map(|(k, v)| (Bytes::new(k), Bytes::new(v))))
    }

    /// Deserializes a sequence of pairs of byte strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Pairs, D::Error> {
        let pairs = Vec::<(ByteBuf, ByteBuf)>::deserialize(d)?;
        Ok(pairs
            .into_iter()
            .map(|(k, v)| (k.into_vec(), v.into_vec()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct All {
        #[serde(with = "super::list")]
        list: Vec<Vec<u8>>,
        #[serde(with = "super::optional_list")]
        optional: Vec<Option<Vec<u8>>>,
        #[serde(with = "super::pairs")]
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    }

    #[test]
    fn byte_collections_round_trip_as_blobs() {
        let all = All {
            list: vec![b"a".to_vec(), Vec::new(), vec![0xff; 300]],
            optional: vec![None, Some(b"x".to_vec())],
            pairs: vec![(b"k".to_vec(), vec![7; 1000])],
        };
        let bytes = postcard::to_allocvec(&all).unwrap();
        assert_eq!(postcard::from_bytes::<All>(&bytes).unwrap(), all);
        // 300 bytes of 0xff as one blob: a length prefix plus the bytes, not 2 bytes per byte.
        assert!(bytes.len() < 1_400, "{} bytes", bytes.len());
    }
}
