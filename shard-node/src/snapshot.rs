//! Streaming snapshots between hosts with bounded memory.
//!
//! **Sending.** The core only decides *that* a follower needs a snapshot. The sender opens a
//! consistent RocksDB view, reads the applied state (index, term, configuration, generation)
//! *from that view* — so the metadata describes exactly the data that follows — and streams the
//! shard's key-value pairs in chunks of at most [`CHUNK_MAX_BYTES`] on a stream of its own. A
//! reader thread and the network writer are joined by a channel of [`CHUNKS_IN_FLIGHT_MAX`]
//! chunks: memory stays bounded whatever the snapshot's size, and QUIC flow control slows the
//! reader down to the follower's pace.
//!
//! **Receiving.** Chunks are written into a fresh data generation that nothing reads. Only when
//! the stream ended with a matching pair count is the snapshot handed to the core; installing it
//! is one atomic batch that points the applied state at the new generation (see
//! [`crate::storage::GroupStorage::install_snapshot`]). A stream that breaks off leaves nothing
//! behind.

use std::time::Duration;

use cairn_wire::frame::{self, FrameError};
use cairn_wire::peer::{PeerStreamHeader, SnapshotChunk, SnapshotHeader};
use crossbeam_channel::Sender;
use raft_core::{NodeId, SnapshotMetadata};
use rocksdb::{Direction, IteratorMode, ReadOptions};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::host::Event;
use crate::keys::KeySpace;
use crate::storage::{CF_DATA, Engine};
use crate::transport::{Links, SnapshotJob};

/// The largest chunk of key-value pairs, in bytes.
pub const CHUNK_MAX_BYTES: usize = 1 << 20;
/// How many chunks may be buffered between the reader and the network.
pub const CHUNKS_IN_FLIGHT_MAX: usize = 4;
const LINK_WAIT: Duration = Duration::from_secs(5);

enum Piece {
    Metadata(SnapshotMetadata),
    Data(Vec<(Vec<u8>, Vec<u8>)>),
}

/// Runs the snapshot jobs the host asks for, each on its own task.
pub async fn run_sender(
    engine: Engine,
    me: NodeId,
    links: Links,
    mut jobs: mpsc::UnboundedReceiver<SnapshotJob>,
    host: Sender<Event>,
    frame_max_bytes: u32,
) {
    while let Some(job) = jobs.recv().await {
        let engine = engine.clone();
        let links = links.clone();
        let host = host.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let result = send_one(&engine, me, job, &links, frame_max_bytes).await;
            crate::metrics::snapshot_transfer(job.shard, "sent", result.is_ok(), started.elapsed());
            match result {
                Ok(pairs) => info!(
                    shard = job.shard.0,
                    to = job.to.0,
                    pairs,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "snapshot sent"
                ),
                Err(reason) => warn!(
                    shard = job.shard.0,
                    to = job.to.0,
                    "snapshot transfer failed: {reason}"
                ),
            }
            let _ = host.send(Event::SnapshotSent {
                shard: job.shard,
                to: job.to,
            });
        });
    }
}

async fn send_one(
    engine: &Engine,
    me: NodeId,
    job: SnapshotJob,
    links: &Links,
    frame_max_bytes: u32,
) -> Result<u64, String> {
    let mut link = links
        .read()
        .expect("links lock poisoned")
        .get(&job.to)
        .ok_or_else(|| format!("node {} is not a peer", job.to.0))?
        .clone();
    let conn = tokio::time::timeout(LINK_WAIT, link.wait_for(Option::is_some))
        .await
        .map_err(|_| "no connection to the peer".to_string())?
        .map_err(|_| "shutting down".to_string())?
        .clone()
        .expect("waited for Some");
    let mut stream = conn.open_uni().await.map_err(|e| e.to_string())?;

    let (tx, mut rx) = mpsc::channel(CHUNKS_IN_FLIGHT_MAX);
    let reader_engine = engine.clone();
    let shard = job.shard;
    let reader = tokio::task::spawn_blocking(move || read_snapshot(&reader_engine, shard, &tx));

    let Some(Piece::Metadata(metadata)) = rx.recv().await else {
        return Err(reader_error(reader).await);
    };
    let header = PeerStreamHeader::Snapshot(SnapshotHeader {
        shard,
        from: me,
        to: job.to,
        term: job.term,
        metadata,
    });
    frame::write_frame(&mut stream, &header, frame_max_bytes)
        .await
        .map_err(|e| e.to_string())?;
    let mut pairs = 0u64;
    while let Some(piece) = rx.recv().await {
        let Piece::Data(chunk) = piece else {
            return Err("reader sent metadata twice".into());
        };
        pairs += chunk.len() as u64;
        frame::write_frame(&mut stream, &SnapshotChunk::Data(chunk), frame_max_bytes)
            .await
            .map_err(|e| e.to_string())?;
    }
    reader
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("reading the snapshot: {e}"))?;
    frame::write_frame(&mut stream, &SnapshotChunk::End { pairs }, frame_max_bytes)
        .await
        .map_err(|e| e.to_string())?;
    stream.finish().map_err(|e| e.to_string())?;
    // Wait until the receiver has read everything (or gave up), so the transfer is complete.
    let _ = stream.stopped().await;
    Ok(pairs)
}

async fn reader_error(
    reader: tokio::task::JoinHandle<Result<(), crate::storage::EngineError>>,
) -> String {
    match reader.await {
        Ok(Err(e)) => format!("reading the snapshot: {e}"),
        Ok(Ok(())) => "reader ended without metadata".into(),
        Err(e) => e.to_string(),
    }
}

/// Reads one consistent view of a shard: its applied state, then its pairs in chunks.
fn read_snapshot(
    engine: &Engine,
    shard: cairn_wire::api::ShardId,
    tx: &mpsc::Sender<Piece>,
) -> Result<(), crate::storage::EngineError> {
    let db = engine.db();
    let view = db.snapshot();
    let applied = engine.applied_in(&view, shard)?;
    let metadata = SnapshotMetadata {
        index: applied.index,
        term: applied.term,
        conf_state: applied.conf_state.clone(),
    };
    if tx.blocking_send(Piece::Metadata(metadata)).is_err() {
        return Ok(());
    }
    let space = KeySpace {
        shard,
        generation: applied.generation,
    };
    let start = space.prefix();
    let end = KeySpace {
        shard,
        generation: applied.generation + 1,
    }
    .prefix();
    let mut opts = ReadOptions::default();
    opts.set_iterate_upper_bound(end);
    let iter = view.iterator_cf_opt(
        engine.cf(CF_DATA),
        opts,
        IteratorMode::From(&start, Direction::Forward),
    );
    let mut chunk = Vec::new();
    let mut size = 0;
    for item in iter {
        let (key, value) = item?;
        let Some(relative) = space.relative(&key) else {
            break;
        };
        size += relative.len() + value.len() + 8;
        chunk.push((relative.to_vec(), value.to_vec()));
        if size >= CHUNK_MAX_BYTES {
            if tx
                .blocking_send(Piece::Data(std::mem::take(&mut chunk)))
                .is_err()
            {
                return Ok(());
            }
            size = 0;
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(Piece::Data(chunk));
    }
    Ok(())
}

/// Why a received snapshot stream was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The stream broke a framing rule.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream ended before its end marker.
    #[error("snapshot stream ended before its end marker")]
    Truncated,
    /// The end marker's count does not match.
    #[error("snapshot announced {announced} pairs, {received} arrived")]
    CountMismatch {
        /// What the sender said.
        announced: u64,
        /// What arrived.
        received: u64,
    },
    /// The snapshot is not for this node.
    #[error("snapshot for node {0} arrived at this node")]
    WrongRecipient(u64),
    /// Staging failed.
    #[error(transparent)]
    Storage(#[from] crate::storage::EngineError),
}

/// Receives one snapshot into a fresh generation and hands it to the host loop.
pub async fn receive(
    engine: &Engine,
    me: NodeId,
    header: SnapshotHeader,
    stream: &mut quinn::RecvStream,
    host: &Sender<Event>,
    frame_max_bytes: u32,
) -> Result<(), ReceiveError> {
    if header.to != me {
        return Err(ReceiveError::WrongRecipient(header.to.0));
    }
    let generation = engine.allocate_generation();
    let started = std::time::Instant::now();
    let result = receive_into(engine, &header, generation, stream, frame_max_bytes).await;
    crate::metrics::snapshot_transfer(header.shard, "received", result.is_ok(), started.elapsed());
    match result {
        Ok(pairs) => {
            info!(
                shard = header.shard.0,
                from = header.from.0,
                index = header.metadata.index.0,
                pairs,
                "snapshot received"
            );
            if host
                .send(Event::SnapshotStaged { header, generation })
                .is_err()
            {
                // Shutting down: the staged generation is cleaned up at the next start.
            }
            Ok(())
        }
        Err(e) => {
            let _ = engine.discard_generation(header.shard, generation);
            Err(e)
        }
    }
}

async fn receive_into(
    engine: &Engine,
    header: &SnapshotHeader,
    generation: u64,
    stream: &mut quinn::RecvStream,
    frame_max_bytes: u32,
) -> Result<u64, ReceiveError> {
    let mut received = 0u64;
    loop {
        match frame::read_frame::<_, SnapshotChunk>(stream, frame_max_bytes).await? {
            None => return Err(ReceiveError::Truncated),
            Some(SnapshotChunk::Data(pairs)) => {
                received += pairs.len() as u64;
                let engine = engine.clone();
                let shard = header.shard;
                tokio::task::spawn_blocking(move || engine.stage_pairs(shard, generation, &pairs))
                    .await
                    .map_err(|e| {
                        ReceiveError::Storage(crate::storage::EngineError::Corrupt {
                            what: "staging task",
                            shard,
                            reason: e.to_string(),
                        })
                    })??;
            }
            Some(SnapshotChunk::End { pairs }) => {
                if pairs != received {
                    return Err(ReceiveError::CountMismatch {
                        announced: pairs,
                        received,
                    });
                }
                return Ok(received);
            }
        }
    }
}
