//! The machine's limits, measured in the same run as the systems: how long one durable write to
//! the data disk takes, and how long one request and its answer take over loopback QUIC with
//! mutual TLS. No replicated write can beat the first (it waits for at least one `fdatasync`), and
//! no request to a cairn node can beat the second (it is the same transport with nothing behind
//! it), so they bound what the systems' figures could be.
//!
//! Both run one operation after the other, never concurrently: they measure latency, not how
//! much the disk or the network stack can absorb.

use std::io::{Seek as _, SeekFrom, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cairn_wire::certs;
use cairn_wire::endpoint::{self, EndpointLimits};
use cairn_wire::frame::{self, FRAME_MAX_BYTES_DEFAULT};
use cairn_wire::tls::{Identity, PeerRole};
use hdrhistogram::Histogram;

use crate::load::{new_histogram, record};
use crate::machine;
use crate::model::{LatencySummary, LimitResult};

/// The bytes appended before each `fdatasync`: about one small manifest.
pub(crate) const FSYNC_APPEND_BYTES: usize = 1024;
/// The fewest appends the fsync limit measures, however slow the disk.
const FSYNC_APPENDS_MIN: u64 = 50;
/// The fsync file is emptied (outside the measured time) when it reaches this size, so a fast
/// disk does not fill up over a long measurement.
const FSYNC_FILE_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The payload of each QUIC request (and of its echo).
pub(crate) const QUIC_PAYLOAD_BYTES: usize = 64;
/// Round trips made before measuring: the connection's congestion window and the allocators
/// settle.
const QUIC_WARMUP_ROUND_TRIPS: usize = 100;
/// One round trip that takes longer than this fails the measurement rather than hanging it.
const QUIC_ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the shut-down waits for the endpoints to finish closing.
const QUIC_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// The data disk's durable-write latency: in `dir`, appends [`FSYNC_APPEND_BYTES`] to a file and
/// `fdatasync`s it (`File::sync_data`), one after the other, for `duration` and at least
/// [`FSYNC_APPENDS_MIN`] times; each append and its sync is one operation. The file is removed
/// afterwards, on error too.
///
/// Blocking: run it on a blocking thread (`tokio::task::spawn_blocking`).
pub(crate) fn fsync(dir: &Path, duration: Duration) -> anyhow::Result<LimitResult> {
    let mut file = tempfile::Builder::new()
        .prefix(".cairn-bench-fsync-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let block = [0x5au8; FSYNC_APPEND_BYTES];
    let mut histogram = new_histogram();
    let mut written_bytes = 0u64;
    let mut ops = 0u64;
    let start = Instant::now();
    let mut measured = Duration::ZERO;
    while ops < FSYNC_APPENDS_MIN || start.elapsed() < duration {
        if written_bytes + FSYNC_APPEND_BYTES as u64 > FSYNC_FILE_MAX_BYTES {
            let f = file.as_file_mut();
            f.set_len(0).context("cannot empty the fsync file")?;
            f.seek(SeekFrom::Start(0))
                .context("cannot rewind the fsync file")?;
            f.sync_all().context("cannot sync the emptied fsync file")?;
            written_bytes = 0;
        }
        let began = Instant::now();
        let f = file.as_file_mut();
        f.write_all(&block)
            .context("cannot append to the fsync file")?;
        f.sync_data().context("fdatasync failed")?;
        let took = began.elapsed();
        record(&mut histogram, took);
        measured += took;
        written_bytes += FSYNC_APPEND_BYTES as u64;
        ops += 1;
    }
    file.close().context("cannot remove the fsync file")?;
    let disk = machine::data_disk(dir);
    Ok(result(
        format!(
            "append {} KiB + fdatasync, {disk}",
            FSYNC_APPEND_BYTES / 1024
        ),
        &histogram,
        measured,
    ))
}

/// The loopback QUIC round trip with mutual TLS, the way cairn's nodes and clients talk: a
/// throwaway CA issues a node certificate to an echo server on 127.0.0.1 and a client certificate
/// to a client; after [`QUIC_WARMUP_ROUND_TRIPS`], the client sends one [`QUIC_PAYLOAD_BYTES`]
/// request on a new bidirectional stream (cairn's framing: header and postcard payload) and
/// waits for its echo, one after the other, for `duration`. Each request and echo is one
/// operation.
pub(crate) async fn quic_rtt(duration: Duration) -> anyhow::Result<LimitResult> {
    let dir = tempfile::tempdir().context("cannot create a directory for the certificates")?;
    let (server_id, client_id) = identities(dir.path())?;
    let limits = EndpointLimits::default();
    let server = endpoint::server(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        &server_id,
        &limits,
    )?;
    let addr = server
        .local_addr()
        .context("the server endpoint has no address")?;
    let echo = tokio::spawn(serve_echo(server.clone()));
    let client = endpoint::client(&client_id, &limits)?;

    let measured = async {
        let conn = endpoint::connect(&client, addr).await?;
        let request = vec![0xa5u8; QUIC_PAYLOAD_BYTES];
        for _ in 0..QUIC_WARMUP_ROUND_TRIPS {
            round_trip(&conn, &request).await?;
        }
        let mut histogram = new_histogram();
        let mut measured = Duration::ZERO;
        let start = Instant::now();
        while start.elapsed() < duration {
            let began = Instant::now();
            round_trip(&conn, &request).await?;
            let took = began.elapsed();
            record(&mut histogram, took);
            measured += took;
        }
        conn.close(frame::close::NORMAL.into(), b"done");
        anyhow::Ok((histogram, measured))
    }
    .await;

    // Shut down whatever happened: the client's close reaches the server before the endpoints go.
    let _ = tokio::time::timeout(QUIC_SHUTDOWN_TIMEOUT, client.wait_idle()).await;
    server.close(frame::close::NORMAL.into(), b"done");
    let _ = tokio::time::timeout(QUIC_SHUTDOWN_TIMEOUT, server.wait_idle()).await;
    echo.await.context("the echo server panicked")?;

    let (histogram, measured) = measured?;
    Ok(result(
        format!(
            "{QUIC_PAYLOAD_BYTES}-byte request and echo on a new QUIC stream, mutual TLS, loopback"
        ),
        &histogram,
        measured,
    ))
}

/// A throwaway CA in `dir`, and the identities it issues to the echo server (a node) and the
/// client.
fn identities(dir: &Path) -> anyhow::Result<(Identity, Identity)> {
    certs::init_ca_dir(dir, "bench")?;
    let (server_cert, server_key) = certs::issue_to_dir(dir, PeerRole::Node, "echo", &[])?;
    let (client_cert, client_key) = certs::issue_to_dir(dir, PeerRole::Client, "client", &[])?;
    let ca = dir.join("ca.pem");
    Ok((
        Identity::load(&ca, &server_cert, &server_key)?,
        Identity::load(&ca, &client_cert, &client_key)?,
    ))
}

/// One request on a new bidirectional stream, as cairn's client sends it (write the frame,
/// finish the stream, read one frame back), checked against its echo.
async fn round_trip(conn: &quinn::Connection, request: &[u8]) -> anyhow::Result<()> {
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await.context("cannot open a stream")?;
        frame::write_frame(&mut send, &request, FRAME_MAX_BYTES_DEFAULT)
            .await
            .context("cannot send the request")?;
        send.finish().context("cannot finish the request stream")?;
        let echo: Option<Vec<u8>> = frame::read_frame(&mut recv, FRAME_MAX_BYTES_DEFAULT)
            .await
            .context("cannot read the echo")?;
        anyhow::ensure!(
            echo.as_deref() == Some(request),
            "the echo differs from the request"
        );
        anyhow::Ok(())
    };
    tokio::time::timeout(QUIC_ROUND_TRIP_TIMEOUT, exchange)
        .await
        .context("no echo within the round-trip timeout")?
}

/// Accepts connections until the endpoint is closed and echoes every request, each stream in its
/// own task as a cairn node serves them.
async fn serve_echo(endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else {
                return;
            };
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                tokio::spawn(async move {
                    let request: Vec<u8> =
                        match frame::read_frame(&mut recv, FRAME_MAX_BYTES_DEFAULT).await {
                            Ok(Some(request)) => request,
                            // The client went away or sent garbage: the client reports it.
                            Ok(None) | Err(_) => return,
                        };
                    if frame::write_frame(&mut send, &request, FRAME_MAX_BYTES_DEFAULT)
                        .await
                        .is_ok()
                    {
                        let _ = send.finish();
                    }
                });
            }
        });
    }
}

/// The result of `histogram`'s operations, which together took `measured` (the time between
/// them, e.g. emptying the fsync file, does not count).
fn result(what: String, histogram: &Histogram<u64>, measured: Duration) -> LimitResult {
    let elapsed_s = measured.as_secs_f64();
    let ops = histogram.len();
    LimitResult {
        what,
        ops,
        elapsed_s,
        ops_per_s: if elapsed_s > 0.0 {
            ops as f64 / elapsed_s
        } else {
            0.0
        },
        latency: LatencySummary::of(histogram),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_measures_appends_and_removes_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let limit = fsync(dir.path(), Duration::from_millis(300)).unwrap();
        assert!(limit.ops >= FSYNC_APPENDS_MIN, "{limit:?}");
        assert_eq!(limit.latency.count, limit.ops);
        let l = &limit.latency;
        assert!(
            0.0 < l.p50_us && l.p50_us <= l.p99_us && l.p99_us <= l.max_us,
            "{limit:?}"
        );
        assert!(limit.ops_per_s > 0.0 && limit.elapsed_s > 0.0, "{limit:?}");
        assert!(
            limit.what.starts_with("append 1 KiB + fdatasync"),
            "{limit:?}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "files left behind: {left:?}");
    }

    #[tokio::test]
    async fn quic_rtt_measures_round_trips_and_shuts_down() {
        let limit = quic_rtt(Duration::from_millis(300)).await.unwrap();
        assert!(limit.ops > 100, "{limit:?}");
        let l = &limit.latency;
        assert!(
            0.0 < l.p50_us && l.p50_us <= l.p99_us && l.p99_us <= l.max_us,
            "{limit:?}"
        );
        assert!(limit.what.contains("mutual TLS"), "{limit:?}");
    }
}
