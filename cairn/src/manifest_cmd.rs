//! `cairn manifest`: put, get, list and delete the object manifests of a namespace, and its
//! statistics, through the routers (`Client::routed`).
//!
//! Manifests travel as JSON: [`ManifestJson`] is the wire [`Manifest`] with byte strings (object
//! ids, digests) as hex text and enum values in lower case. `cairn manifest example` prints a
//! valid one to start from; `cairn manifest get` prints exactly what `cairn manifest put` reads.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use cairn_client::{ApiError, Client, Consistency, Error, LogIndex, Namespace, NamespaceClient};
use cairn_wire::api::{ReadOp, ReadResult, WriteOp};
use cairn_wire::frame::FRAME_MAX_BYTES_DEFAULT;
use cairn_wire::manifest::{
    Checksum, ChecksumAlgorithm, Chunk, Compression, FragmentLocation, Manifest,
    OBJECT_ID_LEN_MAX_BYTES, PutMode, StorageScheme, validate_object_name,
};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use crate::cluster_file::ClusterFile;

/// The largest manifest file (or standard input) read: the JSON form of the largest manifest a
/// frame can carry (hex doubles every byte string, field names add the rest).
const MANIFEST_JSON_MAX_BYTES: u64 = 4 * FRAME_MAX_BYTES_DEFAULT as u64;

/// The page size of `cairn manifest list` by default.
const LIST_LIMIT_DEFAULT: u32 = 1000;

const MANIFEST_HELP: &str = "\
Talks to the routers of the cluster file (they find the namespace's shard and its leader).

A manifest is JSON (start from `cairn manifest example`):
  name                  the object's name in the namespace
  object_id             hex, 1 to 64 bytes: the identity of this upload
  size_bytes            the object's size: the sum of the chunks' lengths
  checksum              {\"algorithm\": none|crc32c|sha256|blake3, \"digest\": hex}
  scheme                {data_fragments, parity_fragments, fragment_size_bytes,
                         compression: none|lz4|zstd, encrypted}
  chunks                [{length_bytes, fragments: [{device_id, version, checksum,
                         length_bytes} or null for a fragment not stored, ...]}, ...]
  version, timestamp_ms the manifest's version; when the object was written (ms since 1970)";

/// Arguments of `cairn manifest`.
#[derive(Args)]
#[command(after_help = MANIFEST_HELP)]
pub(crate) struct ManifestArgs {
    /// The cluster file; its `routers` are asked [default: $CAIRN_CLUSTER].
    #[arg(long, global = true, value_name = "FILE")]
    cluster: Option<PathBuf>,
    /// The bound on the whole call (each page for list --all), retries included, in
    /// milliseconds.
    #[arg(long, global = true, value_name = "MS", default_value_t = cairn_client::REQUEST_TIMEOUT_MS_DEFAULT)]
    timeout_ms: u64,
    #[command(subcommand)]
    op: ManifestOp,
}

#[derive(Subcommand)]
enum ManifestOp {
    /// Store a manifest (JSON, from a file or standard input) and print the log index it was
    /// applied at (exit code 3 if the --mode condition fails).
    Put {
        /// The namespace.
        namespace: String,
        /// The manifest's JSON: a file, or - for standard input.
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
        /// The condition: unconditional, must-not-exist, or must-replace=OBJECT_ID_HEX (only
        /// when the object exists with that object id).
        #[arg(long, default_value = "unconditional", value_parser = parse_put_mode)]
        mode: PutMode,
    },
    /// Print the manifests of objects as JSON, one document after another, in the order asked.
    /// If any is missing nothing is printed and the command fails with ObjectNotFound naming
    /// the first missing one (exit code 2).
    Get {
        /// The namespace.
        namespace: String,
        /// The object names.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// How fresh the read must be: consistent, any, or at-least:INDEX.
        #[arg(long, default_value = "consistent", value_parser = crate::kv_cmd::parse_consistency)]
        consistency: Consistency,
    },
    /// Print object names, one per line, in ascending byte order. Without --all, prints one
    /// page and, when more follow, says on standard error how to ask for the next one.
    List {
        /// The namespace.
        namespace: String,
        /// Only names starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Only names after this one (the last name of the previous page).
        #[arg(long, value_name = "NAME")]
        start_after: Option<String>,
        /// At most this many names (with --all: per page).
        #[arg(long, default_value_t = LIST_LIMIT_DEFAULT, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Every name: ask page after page until no more follow (each page is a separate
        /// read, not a snapshot of the whole namespace).
        #[arg(long)]
        all: bool,
        /// How fresh each read must be: consistent, any, or at-least:INDEX.
        #[arg(long, default_value = "consistent", value_parser = crate::kv_cmd::parse_consistency)]
        consistency: Consistency,
    },
    /// Delete an object's manifest and print the log index (exit code 2 if absent).
    Delete {
        /// The namespace.
        namespace: String,
        /// The object name.
        name: String,
    },
    /// Print the namespace's object count and logical size (the sum of object sizes).
    Stats {
        /// The namespace.
        namespace: String,
        /// How fresh the read must be: consistent, any, or at-least:INDEX.
        #[arg(long, default_value = "consistent", value_parser = crate::kv_cmd::parse_consistency)]
        consistency: Consistency,
    },
    /// Print a valid example manifest (talks to nothing): a 2+1 erasure-coded object of --size
    /// bytes, the same for the same arguments.
    Example {
        /// The object name.
        #[arg(long, default_value = "example/object")]
        name: String,
        /// The object size in bytes.
        #[arg(long, value_name = "BYTES", default_value_t = 10_000)]
        size: u64,
    },
}

/// Runs `cairn manifest`.
pub(crate) async fn run(args: ManifestArgs) -> anyhow::Result<()> {
    if let ManifestOp::Example { name, size } = &args.op {
        print!("{}", to_json(&example(name, *size)?));
        return Ok(());
    }
    // Arguments (and the manifest file) first: a bad one is reported whatever the cluster file
    // says, and nothing is sent.
    let call = Call::check(args.op)?;
    let cluster = ClusterFile::from_args(args.cluster)?;
    let config = cluster
        .router_config()?
        .with_request_timeout_ms(args.timeout_ms);
    let client = Client::new(config)?;
    let ns = client.routed(call.namespace.clone());
    let result = call.execute(&ns).await;
    client.close().await;
    result
}

/// A checked `cairn manifest` operation on a namespace.
struct Call {
    namespace: Namespace,
    op: Op,
}

enum Op {
    Put {
        manifest: Box<Manifest>,
        mode: PutMode,
    },
    Get {
        names: Vec<String>,
        consistency: Consistency,
    },
    List {
        prefix: String,
        start_after: Option<String>,
        limit: u32,
        all: bool,
        consistency: Consistency,
    },
    Delete {
        name: String,
    },
    Stats {
        consistency: Consistency,
    },
}

impl Call {
    /// Checks the arguments and reads the manifest of a put.
    fn check(op: ManifestOp) -> anyhow::Result<Self> {
        let (namespace, op) = match op {
            ManifestOp::Put {
                namespace,
                file,
                mode,
            } => {
                let manifest = Box::new(read_manifest(&file)?);
                (namespace, Op::Put { manifest, mode })
            }
            ManifestOp::Get {
                namespace,
                names,
                consistency,
            } => {
                for name in &names {
                    validate_object_name(name)?;
                }
                (namespace, Op::Get { names, consistency })
            }
            ManifestOp::List {
                namespace,
                prefix,
                start_after,
                limit,
                all,
                consistency,
            } => (
                namespace,
                Op::List {
                    prefix,
                    start_after,
                    limit,
                    all,
                    consistency,
                },
            ),
            ManifestOp::Delete { namespace, name } => {
                validate_object_name(&name)?;
                (namespace, Op::Delete { name })
            }
            ManifestOp::Stats {
                namespace,
                consistency,
            } => (namespace, Op::Stats { consistency }),
            ManifestOp::Example { .. } => unreachable!("cairn manifest example sends nothing"),
        };
        Ok(Self {
            namespace: Namespace::new(namespace)?,
            op,
        })
    }

    /// Sends the operation through `ns` and prints the outcome.
    async fn execute(self, ns: &NamespaceClient) -> anyhow::Result<()> {
        match self.op {
            Op::Put { manifest, mode } => {
                let written = ns
                    .write(WriteOp::PutManifest {
                        manifest: *manifest,
                        mode,
                    })
                    .await?;
                print!("{}", ok(written.index));
            }
            Op::Get { names, consistency } => {
                let op = ReadOp::GetManifests {
                    names: names.clone(),
                };
                let manifests = match ns.read(op, consistency).await?.value {
                    ReadResult::Manifests(manifests) => manifests,
                    other => return Err(mismatch("get_manifests", &other)),
                };
                print!("{}", show_manifests(&names, manifests)?);
            }
            Op::List {
                prefix,
                mut start_after,
                limit,
                all,
                consistency,
            } => loop {
                let op = ReadOp::ListObjects {
                    prefix: prefix.clone(),
                    start_after: start_after.clone(),
                    limit,
                };
                let (names, more) = match ns.read(op, consistency).await?.value {
                    ReadResult::Objects { names, more } => (names, more),
                    other => return Err(mismatch("list_objects", &other)),
                };
                // Page by page, so that listing a large namespace takes bounded memory.
                let mut stdout = std::io::stdout().lock();
                for name in &names {
                    writeln!(stdout, "{name}")?;
                }
                stdout.flush()?;
                let last = names.last().cloned();
                match (more, last) {
                    (false, _) => break,
                    (true, None) => {
                        return Err(Error::Protocol(
                            "the router said more names follow but sent none".into(),
                        )
                        .into());
                    }
                    (true, Some(last)) if all => start_after = Some(last),
                    (true, Some(last)) => {
                        eprintln!("more names follow: ask again with --start-after {last:?}");
                        break;
                    }
                }
            },
            Op::Delete { name } => {
                let written = ns.write(WriteOp::DeleteManifest { name }).await?;
                print!("{}", ok(written.index));
            }
            Op::Stats { consistency } => {
                match ns.read(ReadOp::NamespaceStats, consistency).await?.value {
                    ReadResult::Stats(stats) => print!(
                        "objects:       {}\nlogical bytes: {}\n",
                        stats.objects, stats.logical_bytes
                    ),
                    other => return Err(mismatch("namespace_stats", &other)),
                }
            }
        }
        Ok(())
    }
}

/// The JSON of each manifest, in the order of `names`; fails with `ObjectNotFound` for the first
/// missing one (saying how many are missing when there are several).
fn show_manifests(names: &[String], manifests: Vec<Option<Manifest>>) -> anyhow::Result<String> {
    if manifests.len() != names.len() {
        return Err(Error::Protocol(format!(
            "asked for {} manifests, got {}",
            names.len(),
            manifests.len()
        ))
        .into());
    }
    let missing: Vec<&String> = names
        .iter()
        .zip(&manifests)
        .filter(|(_, m)| m.is_none())
        .map(|(name, _)| name)
        .collect();
    if let Some(first) = missing.first() {
        let e = anyhow::Error::new(ApiError::ObjectNotFound {
            name: first.to_string(),
        });
        return Err(if missing.len() > 1 {
            e.context(format!(
                "{} of {} objects not found: {}",
                missing.len(),
                names.len(),
                missing
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        } else {
            e
        });
    }
    Ok(manifests.iter().flatten().map(to_json).collect())
}

fn ok(index: LogIndex) -> String {
    format!("ok (index {})\n", index.0)
}

fn mismatch(op: &str, got: &ReadResult) -> anyhow::Error {
    let got = match got {
        ReadResult::Manifests(_) => "manifests",
        ReadResult::Objects { .. } => "object names",
        ReadResult::Stats(_) => "statistics",
        _ => "a key-value result",
    };
    Error::Protocol(format!("{op} through the router returned {got}")).into()
}

/// Reads and checks the manifest JSON at `path` (`-`: standard input).
fn read_manifest(path: &std::path::Path) -> anyhow::Result<Manifest> {
    let what = if path.as_os_str() == "-" {
        "standard input".to_string()
    } else {
        path.display().to_string()
    };
    let mut text = String::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(MANIFEST_JSON_MAX_BYTES + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| {
            f.take(MANIFEST_JSON_MAX_BYTES + 1)
                .read_to_string(&mut text)
        })
    };
    read.with_context(|| format!("cannot read the manifest from {what}"))?;
    if text.len() as u64 > MANIFEST_JSON_MAX_BYTES {
        bail!("the manifest in {what} is larger than {MANIFEST_JSON_MAX_BYTES} bytes");
    }
    let manifest =
        from_json(&text).with_context(|| format!("cannot parse the manifest in {what}"))?;
    // The shard checks again (with its own size limit); checking here gives the reason
    // without a round trip.
    manifest
        .validate(FRAME_MAX_BYTES_DEFAULT)
        .with_context(|| format!("the manifest in {what} is not valid"))?;
    Ok(manifest)
}

/// `unconditional`, `must-not-exist` or `must-replace=OBJECT_ID_HEX`.
fn parse_put_mode(s: &str) -> Result<PutMode, String> {
    match s {
        "unconditional" => Ok(PutMode::Unconditional),
        "must-not-exist" => Ok(PutMode::MustNotExist),
        _ => {
            let Some(hex) = s.strip_prefix("must-replace=") else {
                return Err(format!(
                    "{s:?} is not a put mode: use unconditional, must-not-exist or \
                     must-replace=OBJECT_ID_HEX"
                ));
            };
            let object_id = hex_decode(hex).map_err(|e| format!("must-replace: {e}"))?;
            if object_id.is_empty() || object_id.len() > OBJECT_ID_LEN_MAX_BYTES {
                return Err(format!(
                    "must-replace: an object id is 1 to {OBJECT_ID_LEN_MAX_BYTES} bytes, got {}",
                    object_id.len()
                ));
            }
            Ok(PutMode::MustReplace { object_id })
        }
    }
}

/// A manifest as pretty JSON, with a final newline.
pub(crate) fn to_json(manifest: &Manifest) -> String {
    let mut text = serde_json::to_string_pretty(&ManifestJson::from(manifest))
        .expect("a manifest always serializes to JSON");
    text.push('\n');
    text
}

/// A manifest from its JSON (not validated: see [`Manifest::validate`]).
pub(crate) fn from_json(text: &str) -> anyhow::Result<Manifest> {
    let json: ManifestJson = serde_json::from_str(text)?;
    Ok(json.into())
}

/// Object ids are 16 bytes in the example, like a UUID.
const EXAMPLE_OBJECT_ID_BYTES: usize = 16;
/// The smallest fragment size of the example, and its usual one.
const EXAMPLE_FRAGMENT_SIZE_BYTES: u64 = 1 << 20;
/// The example has at most this many chunks: its fragments grow for larger objects.
const EXAMPLE_CHUNKS_MAX: u64 = 16;
/// When the example object was written: a fixed time, so that the example is deterministic.
const EXAMPLE_TIMESTAMP_MS: u64 = 1_700_000_000_000;

/// A valid manifest of a 2+1 erasure-coded object of `size_bytes` bytes named `name`: chunks of
/// two fragments' worth, every fragment stored on its own device (one of six), and ids and
/// checksums made up from the name and size, so that the same arguments give the same manifest.
fn example(name: &str, size_bytes: u64) -> anyhow::Result<Manifest> {
    const DATA: u8 = 2;
    const PARITY: u8 = 1;
    const DEVICES: u64 = 6;
    validate_object_name(name)?;
    let fragment_size =
        EXAMPLE_FRAGMENT_SIZE_BYTES.max(size_bytes.div_ceil(u64::from(DATA) * EXAMPLE_CHUNKS_MAX));
    let Ok(fragment_size) = u32::try_from(fragment_size) else {
        bail!(
            "--size {size_bytes} is too large for an example: at most {} bytes",
            u64::from(u32::MAX) * u64::from(DATA) * EXAMPLE_CHUNKS_MAX
        );
    };
    let chunk_max = u64::from(DATA) * u64::from(fragment_size);
    let fragments_per_chunk = usize::from(DATA + PARITY);
    let mut made_up = SplitMix64(fnv1a64(name.as_bytes()) ^ size_bytes.rotate_left(32));
    let object_id = made_up.bytes(EXAMPLE_OBJECT_ID_BYTES);
    let checksum = Checksum {
        algorithm: ChecksumAlgorithm::Blake3,
        digest: made_up.bytes(ChecksumAlgorithm::Blake3.digest_len_bytes()),
    };
    let mut chunks = Vec::new();
    let mut remaining = size_bytes;
    while remaining > 0 {
        let length_bytes = remaining.min(chunk_max);
        remaining -= length_bytes;
        // Erasure coding pads the chunk to whole fragments: every fragment has the same length.
        let fragment_len = u32::try_from(length_bytes.div_ceil(u64::from(DATA)))
            .expect("a fragment is at most the fragment size, a u32");
        let first = (chunks.len() * fragments_per_chunk) as u64;
        let fragments = (0..fragments_per_chunk as u64)
            .map(|j| {
                Some(FragmentLocation {
                    device_id: 1 + (first + j) % DEVICES,
                    version: 1,
                    checksum: Checksum {
                        algorithm: ChecksumAlgorithm::Crc32c,
                        digest: made_up.bytes(ChecksumAlgorithm::Crc32c.digest_len_bytes()),
                    },
                    length_bytes: fragment_len,
                })
            })
            .collect();
        chunks.push(Chunk {
            length_bytes,
            fragments,
        });
    }
    let manifest = Manifest {
        name: name.to_string(),
        object_id,
        size_bytes,
        checksum,
        scheme: StorageScheme {
            data_fragments: DATA,
            parity_fragments: PARITY,
            fragment_size_bytes: fragment_size,
            compression: Compression::None,
            encrypted: false,
        },
        chunks,
        version: 1,
        timestamp_ms: EXAMPLE_TIMESTAMP_MS,
    };
    manifest
        .validate(FRAME_MAX_BYTES_DEFAULT)
        .context("the example manifest is not valid")?;
    Ok(manifest)
}

/// FNV-1a, 64 bits: a seed from a name.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64: made-up but deterministic bytes for the example's ids and digests.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// Bytes as lower-case hex.
fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex (either case, an optional `0x` in front) as bytes.
fn hex_decode(text: &str) -> Result<Vec<u8>, String> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    if !digits.len().is_multiple_of(2) {
        return Err(format!(
            "{text:?} is not hex: it has an odd number of digits"
        ));
    }
    // Checked first: `from_str_radix` would take a sign.
    if let Some(c) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("{text:?} is not hex: it contains {c:?}"));
    }
    Ok(digits
        .as_bytes()
        .chunks(2)
        .map(|pair| (hex_value(pair[0]) << 4) | hex_value(pair[1]))
        .collect())
}

/// The value of an ASCII hex digit.
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => unreachable!("checked to be a hex digit"),
    }
}

/// A byte string as hex text in JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Hex(Vec<u8>);

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex_encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        hex_decode(&text).map(Hex).map_err(serde::de::Error::custom)
    }
}

/// The JSON form of a [`Manifest`]: the same fields, byte strings as hex, enum values in lower
/// case. Unknown fields are refused, so that a misspelt field is an error, not a default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ManifestJson {
    name: String,
    object_id: Hex,
    size_bytes: u64,
    checksum: ChecksumJson,
    scheme: SchemeJson,
    chunks: Vec<ChunkJson>,
    version: u64,
    timestamp_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChecksumJson {
    algorithm: AlgorithmJson,
    digest: Hex,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AlgorithmJson {
    None,
    Crc32c,
    Sha256,
    Blake3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum CompressionJson {
    None,
    Lz4,
    Zstd,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemeJson {
    data_fragments: u8,
    parity_fragments: u8,
    fragment_size_bytes: u32,
    compression: CompressionJson,
    encrypted: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChunkJson {
    length_bytes: u64,
    fragments: Vec<Option<FragmentJson>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FragmentJson {
    device_id: u64,
    version: u64,
    checksum: ChecksumJson,
    length_bytes: u32,
}

impl From<&Checksum> for ChecksumJson {
    fn from(c: &Checksum) -> Self {
        Self {
            algorithm: match c.algorithm {
                ChecksumAlgorithm::None => AlgorithmJson::None,
                ChecksumAlgorithm::Crc32c => AlgorithmJson::Crc32c,
                ChecksumAlgorithm::Sha256 => AlgorithmJson::Sha256,
                ChecksumAlgorithm::Blake3 => AlgorithmJson::Blake3,
            },
            digest: Hex(c.digest.clone()),
        }
    }
}

impl From<ChecksumJson> for Checksum {
    fn from(c: ChecksumJson) -> Self {
        Self {
            algorithm: match c.algorithm {
                AlgorithmJson::None => ChecksumAlgorithm::None,
                AlgorithmJson::Crc32c => ChecksumAlgorithm::Crc32c,
                AlgorithmJson::Sha256 => ChecksumAlgorithm::Sha256,
                AlgorithmJson::Blake3 => ChecksumAlgorithm::Blake3,
            },
            digest: c.digest.0,
        }
    }
}

impl From<&Manifest> for ManifestJson {
    fn from(m: &Manifest) -> Self {
        Self {
            name: m.name.clone(),
            object_id: Hex(m.object_id.clone()),
            size_bytes: m.size_bytes,
            checksum: ChecksumJson::from(&m.checksum),
            scheme: SchemeJson {
                data_fragments: m.scheme.data_fragments,
                parity_fragments: m.scheme.parity_fragments,
                fragment_size_bytes: m.scheme.fragment_size_bytes,
                compression: match m.scheme.compression {
                    Compression::None => CompressionJson::None,
                    Compression::Lz4 => CompressionJson::Lz4,
                    Compression::Zstd => CompressionJson::Zstd,
                },
                encrypted: m.scheme.encrypted,
            },
            chunks: m
                .chunks
                .iter()
                .map(|c| ChunkJson {
                    length_bytes: c.length_bytes,
                    fragments: c
                        .fragments
                        .iter()
                        .map(|f| {
                            f.as_ref().map(|f| FragmentJson {
                                device_id: f.device_id,
                                version: f.version,
                                checksum: ChecksumJson::from(&f.checksum),
                                length_bytes: f.length_bytes,
                            })
                        })
                        .collect(),
                })
                .collect(),
            version: m.version,
            timestamp_ms: m.timestamp_ms,
        }
    }
}

impl From<ManifestJson> for Manifest {
    fn from(m: ManifestJson) -> Self {
        Self {
            name: m.name,
            object_id: m.object_id.0,
            size_bytes: m.size_bytes,
            checksum: m.checksum.into(),
            scheme: StorageScheme {
                data_fragments: m.scheme.data_fragments,
                parity_fragments: m.scheme.parity_fragments,
                fragment_size_bytes: m.scheme.fragment_size_bytes,
                compression: match m.scheme.compression {
                    CompressionJson::None => Compression::None,
                    CompressionJson::Lz4 => Compression::Lz4,
                    CompressionJson::Zstd => Compression::Zstd,
                },
                encrypted: m.scheme.encrypted,
            },
            chunks: m
                .chunks
                .into_iter()
                .map(|c| Chunk {
                    length_bytes: c.length_bytes,
                    fragments: c
                        .fragments
                        .into_iter()
                        .map(|f| {
                            f.map(|f| FragmentLocation {
                                device_id: f.device_id,
                                version: f.version,
                                checksum: f.checksum.into(),
                                length_bytes: f.length_bytes,
                            })
                        })
                        .collect(),
                })
                .collect(),
            version: m.version,
            timestamp_ms: m.timestamp_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest that uses every variant and a missing fragment.
    fn varied() -> Manifest {
        let mut m = example("photos/cat.jpg", 5_000_000).unwrap();
        m.checksum = Checksum {
            algorithm: ChecksumAlgorithm::Sha256,
            digest: vec![0xab; 32],
        };
        m.scheme.compression = Compression::Zstd;
        m.scheme.encrypted = true;
        m.chunks[1].fragments[2] = None;
        if let Some(f) = &mut m.chunks[0].fragments[0] {
            f.checksum = Checksum::none();
        }
        m
    }

    #[test]
    fn manifests_round_trip_through_json() {
        for m in [
            varied(),
            example("e", 0).unwrap(),
            example("ünïcode name", 1).unwrap(),
        ] {
            let text = to_json(&m);
            assert_eq!(from_json(&text).unwrap(), m, "{text}");
        }
        let mut lz4 = varied();
        lz4.scheme.compression = Compression::Lz4;
        lz4.checksum = Checksum {
            algorithm: ChecksumAlgorithm::None,
            digest: vec![],
        };
        assert_eq!(from_json(&to_json(&lz4)).unwrap(), lz4);
    }

    #[test]
    fn the_json_shows_bytes_as_hex_and_enums_in_lower_case() {
        let m = varied();
        let value: serde_json::Value = serde_json::from_str(&to_json(&m)).unwrap();
        assert_eq!(value["object_id"], hex_encode(&m.object_id));
        assert_eq!(value["checksum"]["algorithm"], "sha256");
        assert_eq!(value["checksum"]["digest"], "ab".repeat(32));
        assert_eq!(value["scheme"]["compression"], "zstd");
        assert_eq!(value["chunks"][1]["fragments"][2], serde_json::Value::Null);
        assert_eq!(value["chunks"][0]["fragments"][0]["checksum"]["digest"], "");
        assert_eq!(
            value["chunks"][0]["fragments"][1]["checksum"]["algorithm"],
            "crc32c"
        );
    }

    #[test]
    fn bad_json_is_refused_with_the_reason() {
        let text = to_json(&example("x", 10).unwrap());
        let err = |text: &str| format!("{:#}", from_json(text).unwrap_err());
        assert!(
            err("{ not json").contains("line 1"),
            "{}",
            err("{ not json")
        );
        let typo = text.replace("\"size_bytes\"", "\"sizebytes\"");
        assert!(err(&typo).contains("sizebytes"), "{}", err(&typo));
        let odd = text.replace(&hex_encode(&example("x", 10).unwrap().object_id), "abc");
        assert!(err(&odd).contains("odd number"), "{}", err(&odd));
        let algorithm = text.replace("\"blake3\"", "\"md5\"");
        assert!(err(&algorithm).contains("md5"), "{}", err(&algorithm));
    }

    #[test]
    fn examples_are_valid_deterministic_and_sized_as_asked() {
        for size in [0, 1, 2, 3, 10_000, 2 << 20, (2 << 20) + 1, 5_000_000_000] {
            let m = example("example/object", size).unwrap();
            m.validate(64 * 1024)
                .unwrap_or_else(|e| panic!("size {size}: {e}"));
            assert_eq!(m.size_bytes, size);
            assert_eq!(m.chunks.iter().map(|c| c.length_bytes).sum::<u64>(), size);
            assert!(m.chunks.len() as u64 <= EXAMPLE_CHUNKS_MAX);
            assert_eq!(m.scheme.data_fragments, 2);
            assert_eq!(m.scheme.parity_fragments, 1);
            for chunk in &m.chunks {
                let devices: std::collections::BTreeSet<u64> = chunk
                    .fragments
                    .iter()
                    .flatten()
                    .map(|f| f.device_id)
                    .collect();
                assert_eq!(devices.len(), 3, "one device per fragment of a chunk");
            }
            assert_eq!(example("example/object", size).unwrap(), m);
        }
        assert_eq!(example("a", 4_200_000).unwrap().chunks.len(), 3);
        assert_ne!(
            example("a", 10).unwrap().object_id,
            example("b", 10).unwrap().object_id
        );
        assert!(example("", 10).is_err());
        assert!(
            example("a", u64::MAX)
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
    }

    #[test]
    fn put_modes_parse_from_their_three_forms() {
        assert_eq!(parse_put_mode("unconditional"), Ok(PutMode::Unconditional));
        assert_eq!(parse_put_mode("must-not-exist"), Ok(PutMode::MustNotExist));
        assert_eq!(
            parse_put_mode("must-replace=00ff10"),
            Ok(PutMode::MustReplace {
                object_id: vec![0x00, 0xff, 0x10]
            })
        );
        assert_eq!(
            parse_put_mode("must-replace=0xABcd"),
            Ok(PutMode::MustReplace {
                object_id: vec![0xab, 0xcd]
            })
        );
        for bad in [
            "must-replace=",
            "must-replace=abc",
            "must-replace=zz",
            "overwrite",
        ] {
            assert!(parse_put_mode(bad).is_err(), "{bad}");
        }
        let too_long = format!("must-replace={}", "00".repeat(OBJECT_ID_LEN_MAX_BYTES + 1));
        assert!(parse_put_mode(&too_long).unwrap_err().contains("1 to 64"));
    }

    #[test]
    fn consistency_parses_like_kv_and_with_an_equals_sign() {
        assert_eq!(
            crate::kv_cmd::parse_consistency("consistent"),
            Ok(Consistency::Consistent)
        );
        assert_eq!(
            crate::kv_cmd::parse_consistency("any"),
            Ok(Consistency::Any)
        );
        for s in ["at-least:7", "at-least=7"] {
            assert_eq!(
                crate::kv_cmd::parse_consistency(s),
                Ok(Consistency::AtLeast(LogIndex(7)))
            );
        }
        assert!(crate::kv_cmd::parse_consistency("at-least:").is_err());
        assert!(crate::kv_cmd::parse_consistency("strong").is_err());
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex_encode(&[0, 1, 0xfe, 0xff]), "0001feff");
        assert_eq!(hex_decode("0001FEff"), Ok(vec![0, 1, 0xfe, 0xff]));
        assert_eq!(hex_decode(""), Ok(vec![]));
        assert!(hex_decode("é1").is_err());
        assert!(hex_decode("+1").is_err());
    }

    #[test]
    fn get_prints_every_manifest_or_fails_on_the_first_missing_one() {
        let a = example("a", 10).unwrap();
        let b = example("b", 20).unwrap();
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let text = show_manifests(&names(&["a", "b"]), vec![Some(a.clone()), Some(b)]).unwrap();
        let docs: Vec<ManifestJson> = serde_json::Deserializer::from_str(&text)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(Manifest::from(docs[0].clone()), a);

        let err = show_manifests(&names(&["a", "x"]), vec![Some(a.clone()), None]).unwrap_err();
        assert_eq!(err.to_string(), "object \"x\" not found");
        assert_eq!(crate::exit_code(&err), 2);
        let err = show_manifests(&names(&["x", "a", "y"]), vec![None, Some(a), None]).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "2 of 3 objects not found: \"x\", \"y\": object \"x\" not found"
        );
        assert_eq!(crate::exit_code(&err), 2);
        let err = show_manifests(&names(&["a"]), vec![]).unwrap_err();
        assert!(err.to_string().contains("protocol error"), "{err}");
    }
}
