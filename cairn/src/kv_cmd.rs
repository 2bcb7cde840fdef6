//! `cairn kv`: one subcommand per API call of a namespace, printed for people.
//!
//! Keys and prefixes are taken as UTF-8 text. Values may also be `@FILE` (the file's bytes) or
//! `-` (standard input). Values are printed as text when they are printable UTF-8, else as
//! `0x` followed by hex.

use std::io::{Read as _, Write as _};
use std::ops::Bound;
use std::path::PathBuf;

use anyhow::{Context, bail};
use cairn_client::{Client, Consistency, KeyRange, LogIndex, Namespace, ShardId, Step, Written};
use cairn_wire::frame::FRAME_MAX_BYTES_DEFAULT;
use clap::{ArgGroup, Args, Subcommand};

use crate::cluster_file::ClusterFile;

/// The largest value read from a file or standard input.
const VALUE_INPUT_MAX_BYTES: u64 = FRAME_MAX_BYTES_DEFAULT as u64;

const SEQUENCE_HELP: &str = "\
Steps, applied atomically in order (all or nothing):
  set:KEY=VALUE           set KEY (the key ends at the first '=')
  delete:KEY              delete KEY (fails the sequence if absent)
  assert:KEY=VALUE        abort unless KEY has VALUE
  assert-absent:KEY       abort unless KEY does not exist
  assert-exists:KEY       abort unless KEY exists
  assert-range:PREFIX=K1,K2,...
                          abort unless the keys starting with PREFIX are exactly K1, K2, ...
                          (nothing after '=': no key may start with PREFIX)
  delete-prefix:PREFIX    delete every key starting with PREFIX

Example: cairn kv -n ns sequence assert-absent:lock set:lock=me set:owner=me";

/// Arguments of `cairn kv`.
#[derive(Args)]
pub(crate) struct KvArgs {
    /// The cluster file [default: $CAIRN_CLUSTER].
    #[arg(long, global = true, value_name = "FILE")]
    cluster: Option<PathBuf>,
    /// The shard [default: the cluster file's `shard`, else 1].
    #[arg(long, global = true)]
    shard: Option<u64>,
    /// The namespace (required by every operation but who-leader).
    #[arg(long, short = 'n', global = true, value_name = "NS")]
    namespace: Option<String>,
    /// How fresh reads must be: consistent, any, or at-least:INDEX.
    #[arg(long, global = true, default_value = "consistent", value_parser = parse_consistency)]
    consistency: Consistency,
    /// The bound on the whole call, retries included, in milliseconds.
    #[arg(long, global = true, default_value_t = cairn_client::REQUEST_TIMEOUT_MS_DEFAULT)]
    timeout_ms: u64,
    #[command(subcommand)]
    op: KvOp,
}

#[derive(Subcommand)]
enum KvOp {
    /// Print the value of KEY (exit code 2 if absent).
    Get {
        /// The key.
        key: String,
        /// Write the value's bytes as they are, without a newline.
        #[arg(long)]
        raw: bool,
    },
    /// Print whether KEY exists.
    Exists {
        /// The key.
        key: String,
    },
    /// Print the values of KEYS (exit code 2 if one is absent).
    MultiGet {
        /// The keys.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Print the values of KEYS, marking the absent ones.
    MultiGetOption {
        /// The keys.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Set KEY to VALUE (`@FILE`: the file's bytes, `-`: standard input).
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Delete KEY (exit code 2 if absent).
    Delete {
        /// The key.
        key: String,
    },
    /// Compare-and-swap: if KEY has the expected value (or is absent), set it to the wanted
    /// value (or delete it). Prints the value after the operation.
    #[command(group(ArgGroup::new("expect").required(true).args(["expected", "expect_absent"])))]
    #[command(group(ArgGroup::new("want").required(true).args(["wanted", "delete"])))]
    TestAndSet {
        /// The key.
        key: String,
        /// The value KEY must have.
        #[arg(long, value_name = "VALUE")]
        expected: Option<String>,
        /// KEY must not exist.
        #[arg(long)]
        expect_absent: bool,
        /// The new value.
        #[arg(long, value_name = "VALUE")]
        wanted: Option<String>,
        /// Delete KEY instead.
        #[arg(long)]
        delete: bool,
    },
    /// Set KEY to VALUE (or delete it) and print its previous value.
    #[command(group(ArgGroup::new("new").required(true).args(["value", "delete"])))]
    Replace {
        /// The key.
        key: String,
        /// The new value.
        value: Option<String>,
        /// Delete KEY instead.
        #[arg(long)]
        delete: bool,
    },
    /// Delete every key starting with PREFIX; prints how many were deleted.
    DeletePrefix {
        /// The prefix.
        prefix: String,
    },
    /// Print the keys in a range, ascending.
    Range(RangeArgs),
    /// Print the entries in a range, ascending.
    RangeEntries(RangeArgs),
    /// Print the entries in a range, descending (from --to down to --from).
    RevRangeEntries(RangeArgs),
    /// Print the keys starting with PREFIX, ascending.
    PrefixKeys {
        /// The prefix.
        prefix: String,
        /// At most this many keys.
        #[arg(long)]
        max: Option<u32>,
    },
    /// Print how many keys start with PREFIX (default: every key of the namespace).
    Count {
        /// The prefix.
        prefix: Option<String>,
    },
    /// Apply steps atomically (exit code 3 if an assertion fails).
    #[command(after_help = SEQUENCE_HELP)]
    Sequence {
        /// The steps (see below).
        #[arg(required = true, value_name = "STEP")]
        steps: Vec<String>,
    },
    /// Commit an empty write: succeeds once the shard can commit.
    Nop,
    /// Print the shard's leader.
    WhoLeader,
}

/// A key range on the command line: from --from (inclusive) to --to (exclusive) by default.
#[derive(Args)]
struct RangeArgs {
    /// The lowest key [default: the first key].
    #[arg(long, value_name = "KEY")]
    from: Option<String>,
    /// Leave --from itself out.
    #[arg(long, requires = "from")]
    from_exclusive: bool,
    /// The highest key [default: the last key].
    #[arg(long, value_name = "KEY")]
    to: Option<String>,
    /// Include --to itself.
    #[arg(long, requires = "to")]
    to_inclusive: bool,
    /// At most this many results.
    #[arg(long)]
    max: Option<u32>,
}

impl RangeArgs {
    fn key_range(&self) -> KeyRange {
        let bound = |key: &Option<String>, included: bool| match key {
            None => Bound::Unbounded,
            Some(key) if included => Bound::Included(key.clone().into_bytes()),
            Some(key) => Bound::Excluded(key.clone().into_bytes()),
        };
        KeyRange {
            start: bound(&self.from, !self.from_exclusive),
            end: bound(&self.to, self.to_inclusive),
            max: self.max,
        }
    }
}

/// Runs `cairn kv`.
pub(crate) async fn run(args: KvArgs) -> anyhow::Result<()> {
    let cluster = ClusterFile::from_args(args.cluster.clone())?;
    let shard = ShardId(args.shard.or(cluster.shard.map(|s| s.0)).unwrap_or(1));
    let config = cluster
        .client_config()?
        .with_request_timeout_ms(args.timeout_ms);
    let client = Client::new(config)?;
    let result = execute(&client, shard, &args).await;
    client.close().await;
    let output = result?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&output)?;
    stdout.flush()?;
    Ok(())
}

/// Runs the operation and returns what to print.
async fn execute(client: &Client, shard: ShardId, args: &KvArgs) -> anyhow::Result<Vec<u8>> {
    let c = args.consistency;
    if matches!(args.op, KvOp::WhoLeader) {
        return Ok(match client.who_leader(shard).await? {
            Some(hint) => format!("node {} at {}\n", hint.node.0, hint.addr),
            None => "no leader known\n".to_string(),
        }
        .into_bytes());
    }
    let ns = client.namespace(shard, namespace(args)?);
    let mut out = String::new();
    match &args.op {
        KvOp::Get { key, raw } => {
            let read = ns.get(key.as_str(), c).await?;
            tracing::debug!(applied = read.applied.0, "read");
            if *raw {
                return Ok(read.value);
            }
            out = format!("{}\n", show(&read.value));
        }
        KvOp::Exists { key } => out = format!("{}\n", ns.exists(key.as_str(), c).await?.value),
        KvOp::MultiGet { keys } => {
            let values = ns
                .multi_get(keys.iter().map(String::as_str), c)
                .await?
                .value;
            for (key, value) in keys.iter().zip(values) {
                out += &format!("{key} = {}\n", show(&value));
            }
        }
        KvOp::MultiGetOption { keys } => {
            let values = ns
                .multi_get_option(keys.iter().map(String::as_str), c)
                .await?
                .value;
            for (key, value) in keys.iter().zip(values) {
                out += &format!("{key} = {}\n", show_optional(value.as_deref()));
            }
        }
        KvOp::Set { key, value } => {
            out = ok(&ns.set(key.as_str(), read_value(value)?).await?);
        }
        KvOp::Delete { key } => out = ok(&ns.delete(key.as_str()).await?),
        KvOp::TestAndSet {
            key,
            expected,
            wanted,
            ..
        } => {
            let expected = expected.as_deref().map(read_value).transpose()?;
            let wanted = wanted.as_deref().map(read_value).transpose()?;
            let written = ns.test_and_set(key.as_str(), expected, wanted).await?;
            // The answer is the value after the operation; whether it swapped is for the
            // caller to judge (an unchanged value equal to the wanted one looks the same).
            out = format!(
                "{}, value now: {}\n",
                ok_line(written.index),
                show_optional(written.value.as_deref())
            );
        }
        KvOp::Replace { key, value, .. } => {
            let wanted = value.as_deref().map(read_value).transpose()?;
            let written = ns.replace(key.as_str(), wanted).await?;
            out = format!(
                "{}, previous value: {}\n",
                ok_line(written.index),
                show_optional(written.value.as_deref())
            );
        }
        KvOp::DeletePrefix { prefix } => {
            let written = ns.delete_prefix(prefix.as_str()).await?;
            out = format!(
                "{}, deleted {} keys\n",
                ok_line(written.index),
                written.value
            );
        }
        KvOp::Range(range) => out = show_keys(&ns.range(range.key_range(), c).await?.value),
        KvOp::RangeEntries(range) => {
            out = show_entries(&ns.range_entries(range.key_range(), c).await?.value);
        }
        KvOp::RevRangeEntries(range) => {
            out = show_entries(&ns.rev_range_entries(range.key_range(), c).await?.value);
        }
        KvOp::PrefixKeys { prefix, max } => {
            out = show_keys(&ns.prefix_keys(prefix.as_str(), *max, c).await?.value);
        }
        KvOp::Count { prefix } => {
            let prefix = prefix.clone().unwrap_or_default();
            out = format!("{}\n", ns.count(prefix, c).await?.value);
        }
        KvOp::Sequence { steps } => {
            let steps = steps
                .iter()
                .map(|s| parse_step(s))
                .collect::<anyhow::Result<Vec<_>>>()?;
            out = ok(&ns.sequence(steps).await?);
        }
        KvOp::Nop => out = ok(&ns.nop().await?),
        KvOp::WhoLeader => unreachable!("handled above"),
    }
    Ok(out.into_bytes())
}

fn namespace(args: &KvArgs) -> anyhow::Result<Namespace> {
    let Some(name) = &args.namespace else {
        bail!("--namespace (-n) is required for this operation");
    };
    Ok(Namespace::new(name.as_str())?)
}

/// `consistent`, `any` or `at-least:INDEX`.
pub(crate) fn parse_consistency(s: &str) -> Result<Consistency, String> {
    match s {
        "consistent" => Ok(Consistency::Consistent),
        "any" => Ok(Consistency::Any),
        _ => match s
            .strip_prefix("at-least:")
            .or_else(|| s.strip_prefix("at-least="))
            .map(str::parse::<u64>)
        {
            Some(Ok(index)) => Ok(Consistency::AtLeast(LogIndex(index))),
            _ => Err(format!(
                "{s:?} is not a consistency: use consistent, any or at-least:INDEX"
            )),
        },
    }
}

/// A value argument: `@FILE` reads the file, `-` standard input, anything else is the value.
fn read_value(arg: &str) -> anyhow::Result<Vec<u8>> {
    let read_capped = |reader: &mut dyn std::io::Read, what: &str| -> anyhow::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        reader
            .take(VALUE_INPUT_MAX_BYTES + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {what}"))?;
        if bytes.len() as u64 > VALUE_INPUT_MAX_BYTES {
            bail!("{what} is larger than {VALUE_INPUT_MAX_BYTES} bytes");
        }
        Ok(bytes)
    };
    if arg == "-" {
        read_capped(&mut std::io::stdin().lock(), "standard input")
    } else if let Some(path) = arg.strip_prefix('@') {
        let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
        read_capped(&mut file, path)
    } else {
        Ok(arg.as_bytes().to_vec())
    }
}

/// One step of `cairn kv sequence` (see [`SEQUENCE_HELP`]).
fn parse_step(arg: &str) -> anyhow::Result<Step> {
    let Some((kind, rest)) = arg.split_once(':') else {
        bail!("step {arg:?} has no KIND: (see cairn kv sequence --help)");
    };
    let key_value = || {
        rest.split_once('=')
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .with_context(|| format!("step {arg:?} needs KEY=VALUE"))
    };
    let key = || rest.as_bytes().to_vec();
    Ok(match kind {
        "set" => {
            let (key, value) = key_value()?;
            Step::Set { key, value }
        }
        "delete" => Step::Delete { key: key() },
        "assert" => {
            let (key, value) = key_value()?;
            Step::Assert {
                key,
                expected: Some(value),
            }
        }
        "assert-absent" => Step::Assert {
            key: key(),
            expected: None,
        },
        "assert-exists" => Step::AssertExists { key: key() },
        "assert-range" => {
            let (prefix, keys) = rest
                .split_once('=')
                .with_context(|| format!("step {arg:?} needs PREFIX=K1,K2,..."))?;
            let keys = if keys.is_empty() {
                Vec::new()
            } else {
                keys.split(',').map(|k| k.as_bytes().to_vec()).collect()
            };
            Step::AssertRange {
                prefix: prefix.as_bytes().to_vec(),
                keys,
            }
        }
        "delete-prefix" => Step::DeletePrefix { prefix: key() },
        other => bail!(
            "unknown step kind {other:?} in {arg:?}: use set, delete, assert, assert-absent, \
             assert-exists, assert-range or delete-prefix"
        ),
    })
}

fn ok_line(index: LogIndex) -> String {
    format!("ok (index {})", index.0)
}

fn ok(written: &Written<()>) -> String {
    format!("{}\n", ok_line(written.index))
}

/// Bytes as text when they are printable UTF-8, else as `0x` + hex.
fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(char::is_control) => text.to_string(),
        _ => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}")
        }
    }
}

fn show_optional(bytes: Option<&[u8]>) -> String {
    bytes.map_or_else(|| "(absent)".to_string(), show)
}

fn show_keys(keys: &[Vec<u8>]) -> String {
    keys.iter().map(|k| format!("{}\n", show(k))).collect()
}

fn show_entries(entries: &[(Vec<u8>, Vec<u8>)]) -> String {
    entries
        .iter()
        .map(|(k, v)| format!("{} = {}\n", show(k), show(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_parses_its_three_forms() {
        assert_eq!(parse_consistency("consistent"), Ok(Consistency::Consistent));
        assert_eq!(parse_consistency("any"), Ok(Consistency::Any));
        assert_eq!(
            parse_consistency("at-least:42"),
            Ok(Consistency::AtLeast(LogIndex(42)))
        );
        assert!(parse_consistency("at-least:x").is_err());
        assert!(parse_consistency("strong").is_err());
    }

    #[test]
    fn steps_parse_from_arguments() {
        let k = |s: &str| s.as_bytes().to_vec();
        assert_eq!(
            parse_step("set:a=b=c").unwrap(),
            Step::Set {
                key: k("a"),
                value: k("b=c")
            }
        );
        assert_eq!(
            parse_step("delete:a").unwrap(),
            Step::Delete { key: k("a") }
        );
        assert_eq!(
            parse_step("assert:a=1").unwrap(),
            Step::Assert {
                key: k("a"),
                expected: Some(k("1"))
            }
        );
        assert_eq!(
            parse_step("assert-absent:a").unwrap(),
            Step::Assert {
                key: k("a"),
                expected: None
            }
        );
        assert_eq!(
            parse_step("assert-exists:a").unwrap(),
            Step::AssertExists { key: k("a") }
        );
        assert_eq!(
            parse_step("assert-range:p/=p/1,p/2").unwrap(),
            Step::AssertRange {
                prefix: k("p/"),
                keys: vec![k("p/1"), k("p/2")]
            }
        );
        assert_eq!(
            parse_step("assert-range:p/=").unwrap(),
            Step::AssertRange {
                prefix: k("p/"),
                keys: vec![]
            }
        );
        assert_eq!(
            parse_step("delete-prefix:p/").unwrap(),
            Step::DeletePrefix { prefix: k("p/") }
        );
        assert!(parse_step("set:novalue").is_err());
        assert!(parse_step("frobnicate:a").is_err());
        assert!(parse_step("nokind").is_err());
    }

    #[test]
    fn values_show_as_text_when_printable_else_as_hex() {
        assert_eq!(show(b"hello world"), "hello world");
        assert_eq!(show(&[0xff, 0x00, 0x10]), "0xff0010");
        assert_eq!(show(b"line\nbreak"), "0x6c696e650a627265616b");
        assert_eq!(show_optional(None), "(absent)");
    }

    #[test]
    fn range_bounds_default_to_from_inclusive_to_exclusive() {
        let range = RangeArgs {
            from: Some("a".into()),
            from_exclusive: false,
            to: Some("c".into()),
            to_inclusive: false,
            max: Some(5),
        };
        assert_eq!(
            range.key_range(),
            KeyRange {
                start: Bound::Included(b"a".to_vec()),
                end: Bound::Excluded(b"c".to_vec()),
                max: Some(5)
            }
        );
        let flipped = RangeArgs {
            from_exclusive: true,
            to_inclusive: true,
            max: None,
            ..range
        };
        assert_eq!(
            flipped.key_range(),
            KeyRange {
                start: Bound::Excluded(b"a".to_vec()),
                end: Bound::Included(b"c".to_vec()),
                max: None
            }
        );
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        crate::Cli::command().debug_assert();
    }
}
