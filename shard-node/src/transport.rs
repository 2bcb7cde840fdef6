//! Node-to-node traffic: one outgoing QUIC connection per peer host, reused for everything.
//!
//! Raft messages leave through the [`Outbox`]: a bounded queue per peer (a full queue drops the
//! message, which Raft tolerates; it never blocks the host loop). A sender task per peer keeps a
//! connection (reconnecting with exponential backoff), holds one long-lived unidirectional
//! stream, and coalesces everything queued into one frame per write. Snapshots are streamed on
//! streams of their own over the same connection (see [`crate::snapshot`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cairn_wire::api::ShardId;
use cairn_wire::frame;
use cairn_wire::peer::{PeerFrame, PeerStreamHeader, ShardMessage};
use raft_core::{MessageBody, NodeId, Term};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use crate::metrics as m;

/// How many frames may wait for one peer before new ones are dropped.
pub const PEER_QUEUE_FRAMES_MAX: usize = 1024;
/// The most Raft messages coalesced into one frame.
const MESSAGES_PER_FRAME_MAX: usize = 4096;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A snapshot the host asked to stream to a peer.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotJob {
    /// The shard.
    pub shard: ShardId,
    /// The peer.
    pub to: NodeId,
    /// The leader's term.
    pub term: Term,
}

/// Where the host loop puts what it sends. Never blocks.
pub struct Outbox {
    me: NodeId,
    peers: BTreeMap<NodeId, mpsc::Sender<PeerFrame>>,
    links: Links,
    snapshots: mpsc::UnboundedSender<SnapshotJob>,
    endpoint: quinn::Endpoint,
    runtime: tokio::runtime::Handle,
    frame_max_bytes: u32,
}

impl Outbox {
    /// Queues a frame for a peer; drops it (counted) when the peer's queue is full.
    pub fn send(&self, to: NodeId, frame: PeerFrame) {
        let Some(queue) = self.peers.get(&to) else {
            m::peer_message_dropped("unknown_peer");
            return;
        };
        if queue.try_send(frame).is_err() {
            m::peer_message_dropped("queue_full");
        }
    }

    /// Asks for a snapshot of `shard` to be streamed to `to`. The host keeps at most one
    /// transfer per (shard, peer) in flight, so this queue is bounded by the number of replicas.
    pub fn send_snapshot(&self, shard: ShardId, to: NodeId, term: Term) {
        let _ = self.snapshots.send(SnapshotJob { shard, to, term });
    }

    /// Whether `peer` has a link.
    pub fn knows(&self, peer: NodeId) -> bool {
        self.peers.contains_key(&peer)
    }

    /// Starts a link to a peer this host has no link to yet (a new shard put a replica there).
    /// Nothing happens for this node itself or a peer already linked.
    pub fn add_peer(&mut self, peer: NodeId, addr: SocketAddr) {
        if peer == self.me || self.peers.contains_key(&peer) {
            return;
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE_FRAMES_MAX);
        let (link_tx, link_rx) = watch::channel(None);
        self.peers.insert(peer, tx);
        self.links
            .write()
            .expect("links lock poisoned")
            .insert(peer, link_rx);
        info!(peer = peer.0, %addr, "new peer link");
        self.runtime.spawn(peer_sender(
            self.me,
            peer,
            addr,
            self.endpoint.clone(),
            rx,
            link_tx,
            self.frame_max_bytes,
        ));
    }
}

/// The current outgoing connection to each peer (None while disconnected).
pub type Links = Arc<RwLock<BTreeMap<NodeId, watch::Receiver<Option<quinn::Connection>>>>>;

/// Starts one sender task per peer. Returns the outbox, the links (for snapshot streams) and the
/// receiver of snapshot jobs. Must be called inside a tokio runtime (the outbox starts the links
/// of peers added later on it).
pub fn start(
    me: NodeId,
    endpoint: quinn::Endpoint,
    peers: &BTreeMap<u64, SocketAddr>,
    frame_max_bytes: u32,
) -> (Outbox, Links, mpsc::UnboundedReceiver<SnapshotJob>) {
    let (snap_tx, snap_rx) = mpsc::unbounded_channel();
    let links: Links = Arc::default();
    let mut outbox = Outbox {
        me,
        peers: BTreeMap::new(),
        links: links.clone(),
        snapshots: snap_tx,
        endpoint,
        runtime: tokio::runtime::Handle::current(),
        frame_max_bytes,
    };
    for (&id, &addr) in peers {
        outbox.add_peer(NodeId(id), addr);
    }
    (outbox, links, snap_rx)
}

async fn peer_sender(
    me: NodeId,
    peer: NodeId,
    addr: SocketAddr,
    endpoint: quinn::Endpoint,
    mut queue: mpsc::Receiver<PeerFrame>,
    link: watch::Sender<Option<quinn::Connection>>,
    frame_max_bytes: u32,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let connected = tokio::time::timeout(
            CONNECT_TIMEOUT,
            cairn_wire::endpoint::connect(&endpoint, addr),
        )
        .await;
        let conn = match connected {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                debug!(peer = peer.0, %addr, "connect failed: {e}");
                drain_stale(&mut queue);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            Err(_) => {
                debug!(peer = peer.0, %addr, "connect timed out");
                drain_stale(&mut queue);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        info!(peer = peer.0, %addr, "connected to peer");
        backoff = BACKOFF_MIN;
        link.send_replace(Some(conn.clone()));
        match send_frames(me, &conn, &mut queue, frame_max_bytes).await {
            Ok(()) => return, // the host loop is gone: shutting down
            Err(reason) => {
                info!(peer = peer.0, %addr, "peer link lost: {reason}");
                link.send_replace(None);
                conn.close(frame::close::NORMAL.into(), b"reconnecting");
            }
        }
    }
}

/// Frames queued while the peer was unreachable are stale (Raft resends what matters).
fn drain_stale(queue: &mut mpsc::Receiver<PeerFrame>) {
    while queue.try_recv().is_ok() {
        m::peer_message_dropped("peer_unreachable");
    }
}

async fn send_frames(
    me: NodeId,
    conn: &quinn::Connection,
    queue: &mut mpsc::Receiver<PeerFrame>,
    frame_max_bytes: u32,
) -> Result<(), String> {
    let mut stream = conn.open_uni().await.map_err(|e| e.to_string())?;
    frame::write_frame(
        &mut stream,
        &PeerStreamHeader::Raft { from: me },
        frame_max_bytes,
    )
    .await
    .map_err(|e| e.to_string())?;
    while let Some(first) = queue.recv().await {
        // Coalesce whatever else is queued into as few frames as possible.
        let mut alive = false;
        let mut messages = Vec::new();
        let mut others = Vec::new();
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            match frame {
                PeerFrame::Raft(more) => messages.extend(more),
                PeerFrame::Alive => alive = true,
                other => others.push(other),
            }
            if messages.len() < MESSAGES_PER_FRAME_MAX {
                next = queue.try_recv().ok();
            }
        }
        // Raft messages prove liveness too: a separate beat is needed only without them.
        // Raft messages first: a quiesce notice must not overtake the heartbeat queued before
        // it (the heartbeat would wake the follower right after it fell asleep).
        let mut frames = split_by_size(messages, frame_max_bytes / 2);
        if frames.is_empty() && alive {
            frames.push(PeerFrame::Alive);
        }
        frames.extend(others);
        for f in &frames {
            let bytes = frame::encode(f, frame_max_bytes).map_err(|e| e.to_string())?;
            stream.write_all(&bytes).await.map_err(|e| e.to_string())?;
            m::transport_bytes_sent(bytes.len());
        }
    }
    Ok(())
}

/// Splits messages into frames whose estimated encoded size stays under `budget_bytes` (a single
/// message is never split; the core bounds one append to `append_size_max_bytes`).
fn split_by_size(messages: Vec<ShardMessage>, budget_bytes: u32) -> Vec<PeerFrame> {
    let mut frames = Vec::new();
    let mut current = Vec::new();
    let mut size = 0u64;
    for message in messages {
        let estimate = 64
            + match &message.message.body {
                MessageBody::Append { entries, .. } => {
                    entries.iter().map(|e| e.size_bytes() + 8).sum::<u64>()
                }
                _ => 0,
            };
        if !current.is_empty() && size + estimate > u64::from(budget_bytes) {
            frames.push(PeerFrame::Raft(std::mem::take(&mut current)));
            size = 0;
        }
        size += estimate;
        current.push(message);
    }
    if !current.is_empty() {
        frames.push(PeerFrame::Raft(current));
    }
    frames
}
