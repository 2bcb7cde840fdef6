//! The host loop: one thread that drives every replica on this node.
//!
//! Each iteration:
//! 1. waits for events (Raft messages, client writes and reads, snapshots) or the next tick;
//! 2. catches the replicas' clocks up with wall time (ticks first, so that a node that was
//!    paused notices its lease ran out before it serves anything);
//! 3. hands the events to the replicas;
//! 4. **persists** the `Ready` of every replica in one RocksDB write batch with one fsync
//!    (group commit);
//! 5. **sends** their messages, batched per destination host;
//! 6. **applies** committed entries (each entry's data and the applied state in one batch),
//!    answers the writes and reads that were waiting, and advances.
//!
//! Storage write failures stop the process: after one, the in-memory view no longer matches
//! the disk and continuing could acknowledge a write that is not durable.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use cairn_wire::api::{
    ApiError, GroupPolicy, LeaderHint, Members, MembershipChange, ReplicaAddr, ReplicaStatus,
    ShardId, WriteResult,
};
use cairn_wire::peer::{PeerFrame, QuiescedShard, ShardMessage, SnapshotHeader};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use raft_core::{
    CommitRule, ConfChange, ConfChangeStep, ConfState, Config, EntryPayload, Error as RaftError,
    LeaderPolicy, LogIndex, Message, MessageBody, NodeId, ProgressState, RawNode, Ready, Role,
    Snapshot, Storage, Term,
};
use rocksdb::WriteBatch;
use tokio::sync::{oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::config::{NodeConfig, RaftTiming};
use crate::metrics as m;
use crate::nsm::{self, Command, Proposal};
use crate::storage::{AppliedState, Engine, GroupRecord, GroupStorage};
use crate::transport::Outbox;

/// The answer to a write: the index it was applied at and its result.
pub type WriteOutcome = Result<(LogIndex, WriteResult), ApiError>;

/// Everything the host loop reacts to.
pub enum Event {
    /// A frame from a peer host.
    Peer {
        /// The sending node.
        from: NodeId,
        /// The frame.
        frame: PeerFrame,
    },
    /// A client write.
    Write {
        /// The shard.
        shard: ShardId,
        /// What to write.
        command: Command,
        /// Where to answer.
        reply: oneshot::Sender<WriteOutcome>,
    },
    /// The manager sets the group's replication policy (proposed like a write).
    SetPolicy {
        /// The shard.
        shard: ShardId,
        /// The policy.
        policy: GroupPolicy,
        /// Where to answer.
        reply: oneshot::Sender<WriteOutcome>,
    },
    /// A linearizable read needs the index to wait for.
    ReadIndex {
        /// The shard.
        shard: ShardId,
        /// Where to answer: the index the read must see applied.
        reply: oneshot::Sender<Result<LogIndex, ApiError>>,
    },
    /// Every replica's status.
    Status {
        /// Where to answer.
        reply: oneshot::Sender<Vec<ReplicaStatus>>,
    },
    /// Who leads a shard.
    WhoLeader {
        /// The shard.
        shard: ShardId,
        /// Where to answer.
        reply: oneshot::Sender<Result<Option<LeaderHint>, ApiError>>,
    },
    /// Compact a shard's log up to its applied index now.
    Compact {
        /// The shard.
        shard: ShardId,
        /// Where to answer.
        reply: oneshot::Sender<Result<LogIndex, ApiError>>,
    },
    /// A snapshot was received completely into a staged generation.
    SnapshotStaged {
        /// What it is.
        header: SnapshotHeader,
        /// Where its data is.
        generation: u64,
    },
    /// A snapshot transfer to a peer ended (successfully or not).
    SnapshotSent {
        /// The shard.
        shard: ShardId,
        /// The peer.
        to: NodeId,
    },
    /// Host a replica of a new shard, or join an existing one (the manager asks).
    CreateReplica {
        /// The shard.
        shard: ShardId,
        /// Every replica of it.
        replicas: Vec<ReplicaAddr>,
        /// Whether the shard exists and this replica joins it (it starts with no configuration
        /// and learns the group's state from the leader) rather than bootstrapping a new group.
        join: bool,
        /// Where to answer.
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    /// Record where a shard's replicas are now (the manager tells, after membership changes).
    UpdateReplicas {
        /// The shard.
        shard: ShardId,
        /// Every replica of it.
        replicas: Vec<ReplicaAddr>,
        /// Where to answer.
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    /// Change the group's members (the manager asks the leader); answered when applied.
    ChangeMembers {
        /// The shard.
        shard: ShardId,
        /// The change.
        change: MembershipChange,
        /// Where to answer.
        reply: oneshot::Sender<WriteOutcome>,
    },
    /// The group's members as this replica applied them.
    Members {
        /// The shard.
        shard: ShardId,
        /// Where to answer.
        reply: oneshot::Sender<Result<Members, ApiError>>,
    },
    /// Follow another leader policy until a policy applies from the log (the manager lifts a
    /// forced leader that is down).
    OverrideLeader {
        /// The shard.
        shard: ShardId,
        /// The leader policy.
        leader: LeaderPolicy,
        /// Where to answer.
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    /// Delete this host's replica of a shard that removed it (the manager asks).
    DropReplica {
        /// The shard.
        shard: ShardId,
        /// Where to answer.
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    /// Stop the loop.
    Shutdown,
}

/// How far behind the leader's log a learner may be and still be promoted to voter: close
/// enough that it catches up at once, so the new voter set can commit without waiting for it.
const PROMOTE_LAG_MAX: u64 = 64;

/// The most events handled in one iteration, so that persisting and answering never wait long.
const EVENTS_PER_ITERATION_MAX: usize = 4096;

struct PendingWrite {
    term: Term,
    reply: oneshot::Sender<WriteOutcome>,
    deadline: Instant,
}

struct PendingRead {
    reply: oneshot::Sender<Result<LogIndex, ApiError>>,
    deadline: Instant,
}

struct Replica {
    raw: RawNode<GroupStorage>,
    /// Writes waiting for their entry to be applied, by log index.
    writes: BTreeMap<LogIndex, PendingWrite>,
    /// Reads waiting for their read index, by context.
    reads: BTreeMap<u64, PendingRead>,
    /// Reads the leader could not start yet (no entry committed in its term).
    deferred_reads: Vec<PendingRead>,
    next_read_context: u64,
    applied_tx: watch::Sender<LogIndex>,
    /// A staged snapshot that was stepped into the core and may be installed by this Ready.
    staged: Option<u64>,
    /// Peers a snapshot is being streamed to.
    snapshots_in_flight: BTreeSet<NodeId>,
    last_leader: NodeId,
    /// The group is idle and not ticked (see [`Host::maybe_quiesce`]); since when.
    quiesced_since: Option<Instant>,
    /// Ticks since the last activity on the group (client requests, Raft traffic other than
    /// heartbeat answers, or a change of the commit index).
    idle_ticks: u32,
    /// The commit index when `idle_ticks` was last reset.
    idle_commit: LogIndex,
    /// The replication policy applied (also handed to the core).
    policy: GroupPolicy,
    /// While leading: the log index and commit rule of the last policy this node proposed and
    /// has not applied yet. It counts by that rule meanwhile (see `propose`), also when an older
    /// policy entry applies first.
    proposed_commit: Option<(LogIndex, CommitRule)>,
}

/// The host loop's state.
pub struct Host {
    id: NodeId,
    engine: Engine,
    replicas: BTreeMap<ShardId, Replica>,
    handles: ReplicaHandles,
    events: Receiver<Event>,
    outbox: Outbox,
    /// Where each node's clients connect.
    addrs: BTreeMap<NodeId, String>,
    /// When each peer host was last heard from.
    last_heard: BTreeMap<NodeId, Instant>,
    timing: RaftTiming,
    tick: Duration,
    last_tick: Instant,
    ticks_total: u64,
}

/// What request handlers need to know of a replica without asking the host loop.
#[derive(Clone, Debug)]
pub struct ReplicaHandle {
    /// Its applied index, for readers waiting to catch up.
    pub applied: watch::Receiver<LogIndex>,
    /// Whether the shard enforces namespace ownership (see [`crate::nsm`]).
    pub managed: bool,
}

/// The replicas this host holds, shared with the request handlers; the host loop adds one when
/// the manager creates a shard.
pub type ReplicaHandles = Arc<RwLock<BTreeMap<ShardId, ReplicaHandle>>>;

impl Host {
    /// Opens every replica of the configuration and every replica created at runtime before
    /// (bootstrapping new ones).
    pub fn new(
        config: &NodeConfig,
        engine: Engine,
        events: Receiver<Event>,
        outbox: Outbox,
    ) -> Result<(Self, ReplicaHandles), crate::NodeError> {
        let addrs = config
            .peers
            .iter()
            .map(|p| (NodeId(p.id), p.addr.to_string()))
            .collect();
        let tick = Duration::from_millis(config.raft.tick_ms);
        let handles = ReplicaHandles::default();
        let mut host = Self {
            id: config.id(),
            engine,
            replicas: BTreeMap::new(),
            handles: handles.clone(),
            events,
            outbox,
            addrs,
            last_heard: BTreeMap::new(),
            timing: config.raft.clone(),
            tick,
            last_tick: Instant::now(),
            ticks_total: 0,
        };
        for shard in &config.shards {
            host.open_replica(ShardId(shard.id), &shard.replicas, false)?;
        }
        for (shard, record) in host.engine.recorded_groups()? {
            if host.replicas.contains_key(&shard) {
                return Err(crate::NodeError::Start(format!(
                    "shard {shard} is both in the configuration and created by the manager"
                )));
            }
            host.learn_addresses(&record.replicas);
            let voters: Vec<u64> = record.replicas.iter().map(|r| r.node.0).collect();
            host.open_replica(shard, &voters, record.managed)?;
        }
        Ok((host, handles))
    }

    /// Opens (bootstrapping when new) one replica and publishes its handle.
    fn open_replica(
        &mut self,
        shard: ShardId,
        voters: &[u64],
        managed: bool,
    ) -> Result<(), crate::NodeError> {
        let storage = self.engine.open_group(shard, voters, managed)?;
        let applied = storage.applied().index;
        let policy = nsm::group_policy(self.engine.db(), &storage.key_space())
            .map_err(|e| crate::NodeError::Start(format!("shard {shard}: {e}")))?
            .unwrap_or_default();
        let mut raft_config = Config::new(self.id.0);
        raft_config.commit_rule = policy.commit.clone();
        raft_config.leader_policy = policy.leader.clone();
        raft_config.election_timeout_ticks = self.timing.election_timeout_ticks;
        raft_config.heartbeat_interval_ticks = self.timing.heartbeat_interval_ticks;
        raft_config.lease_duration_ticks = self.timing.lease_ticks;
        raft_config.applied = applied;
        // Different seeds per process start: randomized election timeouts must differ.
        raft_config.seed = rand::random();
        let raw = RawNode::new(raft_config, storage).map_err(|e| {
            crate::NodeError::Start(format!("shard {shard}: raft core refused to start: {e}"))
        })?;
        let (applied_tx, applied_rx) = watch::channel(applied);
        info!(
            shard = shard.0,
            applied = applied.0,
            managed,
            "replica opened"
        );
        self.replicas.insert(
            shard,
            Replica {
                raw,
                writes: BTreeMap::new(),
                reads: BTreeMap::new(),
                deferred_reads: Vec::new(),
                next_read_context: 1,
                applied_tx,
                staged: None,
                snapshots_in_flight: BTreeSet::new(),
                last_leader: NodeId::NONE,
                quiesced_since: None,
                idle_ticks: 0,
                idle_commit: LogIndex::ZERO,
                policy,
                proposed_commit: None,
            },
        );
        self.handles
            .write()
            .expect("replica handles lock poisoned")
            .insert(
                shard,
                ReplicaHandle {
                    applied: applied_rx,
                    managed,
                },
            );
        Ok(())
    }

    /// Remembers where the nodes of `replicas` listen and links to the new ones.
    fn learn_addresses(&mut self, replicas: &[ReplicaAddr]) {
        for replica in replicas {
            if replica.node == self.id {
                continue;
            }
            match replica.addr.parse::<SocketAddr>() {
                Ok(addr) => {
                    self.addrs.insert(replica.node, replica.addr.clone());
                    self.outbox.add_peer(replica.node, addr);
                }
                Err(e) => warn!(
                    node = replica.node.0,
                    addr = replica.addr,
                    "unusable replica address: {e}"
                ),
            }
        }
    }

    /// The manager asks for a replica of a new shard (`join`: of an existing shard this node
    /// joins): record it durably, then open it. Idempotent: a replica that exists already is
    /// left as it is.
    ///
    /// A new shard's replica is recorded first: reopened after a crash, it bootstraps with the
    /// recorded voters like its peers. A joining replica is opened first, which stores its empty
    /// configuration: reopened, it keeps it and never bootstraps a group of its own.
    fn create_replica(
        &mut self,
        shard: ShardId,
        replicas: Vec<ReplicaAddr>,
        join: bool,
    ) -> Result<(), ApiError> {
        if self.replicas.contains_key(&shard) {
            return Ok(());
        }
        if shard.0 == u64::MAX {
            return Err(ApiError::InvalidArgument(format!(
                "shard id {shard} is reserved"
            )));
        }
        if !replicas.iter().any(|r| r.node == self.id) {
            return Err(ApiError::InvalidArgument(format!(
                "node {} is not among the replicas of shard {shard}",
                self.id.0
            )));
        }
        let nodes = check_replica_list(shard, &replicas)?;
        let record = GroupRecord {
            replicas: replicas.clone(),
            managed: true,
        };
        let internal =
            |e: crate::NodeError| ApiError::Internal(format!("creating shard {shard}: {e}"));
        self.learn_addresses(&replicas);
        let voters: Vec<u64> = nodes.iter().map(|n| n.0).collect();
        if join {
            self.open_replica(shard, &[], true).map_err(internal)?;
            self.engine
                .record_group(shard, &record)
                .map_err(|e| internal(e.into()))?;
            info!(shard = shard.0, replicas = ?voters, "replica joining for the manager");
        } else {
            self.engine
                .record_group(shard, &record)
                .map_err(|e| internal(e.into()))?;
            self.open_replica(shard, &voters, true).map_err(internal)?;
            info!(shard = shard.0, replicas = ?voters, "replica created for the manager");
        }
        Ok(())
    }

    /// The manager tells where a shard's replicas are now: record it (a restart links to them)
    /// and link to the new ones.
    fn update_replicas(
        &mut self,
        shard: ShardId,
        replicas: Vec<ReplicaAddr>,
    ) -> Result<(), ApiError> {
        let Some(replica) = self.replicas.get(&shard) else {
            return Err(ApiError::UnknownShard(shard));
        };
        check_replica_list(shard, &replicas)?;
        let record = GroupRecord {
            replicas: replicas.clone(),
            managed: replica.raw.storage().managed(),
        };
        self.engine
            .record_group(shard, &record)
            .map_err(|e| ApiError::Internal(format!("recording shard {shard}'s replicas: {e}")))?;
        self.learn_addresses(&replicas);
        Ok(())
    }

    /// The manager changes the group's members. Only the leader proposes; a change already
    /// made (or in progress, for a replacement) is answered at once with the applied index.
    fn change_members(
        &mut self,
        shard: ShardId,
        change: MembershipChange,
        reply: oneshot::Sender<WriteOutcome>,
    ) {
        self.wake(shard);
        self.touch(shard);
        let proposed = self.propose_members(shard, change);
        match proposed {
            Ok(Some((index, term))) => {
                let deadline =
                    Instant::now() + Duration::from_millis(self.timing.commit_timeout_ms);
                let replica = self.replicas.get_mut(&shard).expect("proposed above");
                replica.writes.insert(
                    index,
                    PendingWrite {
                        term,
                        reply,
                        deadline,
                    },
                );
            }
            Ok(None) => {
                let applied = self
                    .replicas
                    .get(&shard)
                    .map_or(LogIndex::ZERO, |r| r.raw.storage().applied().index);
                let _ = reply.send(Ok((applied, WriteResult::Done)));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Proposes `change` when it is still to be made (`None`: nothing to propose).
    fn propose_members(
        &mut self,
        shard: ShardId,
        change: MembershipChange,
    ) -> Result<Option<(LogIndex, Term)>, ApiError> {
        let Some(replica) = self.replicas.get(&shard) else {
            return Err(ApiError::UnknownShard(shard));
        };
        if replica.raw.role() != Role::Leader {
            return Err(self.not_leader(shard));
        }
        if !self.quorum_reachable(shard) {
            return Err(ApiError::NoQuorum { proposed: false });
        }
        let status = replica.raw.status();
        let conf = &status.conf_state;
        let busy = || {
            ApiError::Unavailable(format!(
                "shard {shard} is changing its members (voters {:?}, leaving {:?}): retry once \
                 that change is done",
                conf.voters.iter().map(|n| n.0).collect::<Vec<_>>(),
                conf.voters_outgoing.iter().map(|n| n.0).collect::<Vec<_>>()
            ))
        };
        let steps = match change {
            MembershipChange::AddLearner(node) => {
                if conf.all_nodes().contains(&node) {
                    return Ok(None);
                }
                if conf.is_joint() {
                    return Err(busy());
                }
                if !self.addrs.contains_key(&node) {
                    return Err(ApiError::InvalidArgument(format!(
                        "node {} has no known address: send the shard's replicas first",
                        node.0
                    )));
                }
                vec![ConfChangeStep::AddLearner(node)]
            }
            MembershipChange::RemoveLearner(node) => {
                if !conf.all_nodes().contains(&node) {
                    return Ok(None);
                }
                if conf.voters.contains(&node) || conf.voters_outgoing.contains(&node) {
                    return Err(ApiError::InvalidArgument(format!(
                        "node {} is a voter of shard {shard}, not a learner",
                        node.0
                    )));
                }
                if conf.is_joint() {
                    return Err(busy());
                }
                vec![ConfChangeStep::RemoveNode(node)]
            }
            MembershipChange::Replace { add, remove } => {
                let done = conf.voters.contains(&add) && !conf.voters.contains(&remove);
                if done && !conf.learners.contains(&remove) {
                    // Made, or being made (the joint configuration is left on its own).
                    return Ok(None);
                }
                if conf.is_joint() {
                    return Err(busy());
                }
                if !conf.learners.contains(&add) {
                    return Err(ApiError::InvalidArgument(format!(
                        "node {} is not a learner of shard {shard}: add it as a learner first",
                        add.0
                    )));
                }
                if !conf.voters.contains(&remove) {
                    return Err(ApiError::InvalidArgument(format!(
                        "node {} is not a voter of shard {shard}",
                        remove.0
                    )));
                }
                if remove == self.id {
                    return Err(ApiError::Unavailable(format!(
                        "node {} leads shard {shard} and cannot remove itself: move the \
                         leadership first",
                        remove.0
                    )));
                }
                // Caught up: the leader replicates to it by appends (it installed a snapshot,
                // or matched the log), holds something, and is close to the end of the log. The
                // lag alone would pass a learner that holds nothing while the log is short.
                let (matched, replicating) = status
                    .progress
                    .get(&add)
                    .map_or((LogIndex::ZERO, false), |p| {
                        (p.0, p.2 == ProgressState::Replicate)
                    });
                if !replicating
                    || matched == LogIndex::ZERO
                    || matched.0 + PROMOTE_LAG_MAX < status.last_index.0
                {
                    return Err(ApiError::Unavailable(format!(
                        "learner {} of shard {shard} has not caught up yet: it holds the log to \
                         {}, the leader to {}",
                        add.0, matched.0, status.last_index.0
                    )));
                }
                vec![
                    ConfChangeStep::AddVoter(add),
                    ConfChangeStep::RemoveNode(remove),
                ]
            }
        };
        let replica = self.replicas.get_mut(&shard).expect("checked above");
        match replica
            .raw
            .propose_conf_change(ConfChange { changes: steps })
        {
            Ok(position) => {
                info!(shard = shard.0, %change, index = position.last_index.0, "membership change proposed");
                Ok(Some((position.last_index, position.term)))
            }
            Err(RaftError::NotLeader { .. }) => Err(self.not_leader(shard)),
            Err(RaftError::TransferInProgress { target }) => Err(ApiError::NotLeader {
                leader: self.leader_hint(target),
            }),
            Err(RaftError::UncommittedLimit { .. }) => Err(ApiError::Busy(
                "too many uncommitted writes; retry shortly".into(),
            )),
            Err(e @ RaftError::ConfChangePending { .. }) => {
                Err(ApiError::Unavailable(format!("shard {shard}: {e}")))
            }
            Err(e) => Err(ApiError::InvalidArgument(format!("shard {shard}: {e}"))),
        }
    }

    /// Lifts a `forced(node)` leader policy while that node is down: this replica follows
    /// `leader` until it applies a policy from the log. Raft's safety does not depend on who
    /// may campaign; the forced-leader guarantee ends here because the operator ended it.
    fn override_leader(&mut self, shard: ShardId, leader: LeaderPolicy) -> Result<(), ApiError> {
        let Some(replica) = self.replicas.get(&shard) else {
            return Err(ApiError::UnknownShard(shard));
        };
        if replica.policy.leader == leader {
            return Ok(());
        }
        let LeaderPolicy::Forced(forced) = replica.policy.leader else {
            return Err(ApiError::InvalidArgument(format!(
                "shard {shard} has no forced leader to lift: its policy changes through the log"
            )));
        };
        if replica.raw.leader() == forced && self.heard_recently(forced) {
            return Err(ApiError::Unavailable(format!(
                "node {} leads shard {shard}: its policy changes through the log",
                forced.0
            )));
        }
        let replica = self.replicas.get_mut(&shard).expect("checked above");
        warn!(
            shard = shard.0,
            forced = forced.0,
            ?leader,
            "forced leader lifted while it is down"
        );
        replica.raw.set_leader_policy(leader.clone());
        replica.policy.leader = leader;
        self.wake(shard);
        self.touch(shard);
        Ok(())
    }

    /// Deletes this host's replica of `shard` (the group removed it). Idempotent.
    fn drop_replica(&mut self, shard: ShardId) -> Result<(), ApiError> {
        let Some(replica) = self.replicas.get(&shard) else {
            return Ok(());
        };
        if !replica.raw.storage().managed() {
            return Err(ApiError::InvalidArgument(format!(
                "shard {shard} is declared in this node's configuration: only replicas the \
                 manager created are dropped"
            )));
        }
        if replica.raw.role() == Role::Leader {
            return Err(ApiError::Unavailable(format!(
                "node {} leads shard {shard}: a leader is not dropped",
                self.id.0
            )));
        }
        let mut replica = self.replicas.remove(&shard).expect("checked above");
        self.handles
            .write()
            .expect("replica handles lock poisoned")
            .remove(&shard);
        for (_, w) in std::mem::take(&mut replica.writes) {
            let _ = w.reply.send(Err(ApiError::UnknownShard(shard)));
        }
        for (_, r) in std::mem::take(&mut replica.reads) {
            let _ = r.reply.send(Err(ApiError::UnknownShard(shard)));
        }
        for r in replica.deferred_reads.drain(..) {
            let _ = r.reply.send(Err(ApiError::UnknownShard(shard)));
        }
        drop(replica);
        self.engine
            .drop_group(shard)
            .map_err(|e| ApiError::Internal(format!("deleting shard {shard}: {e}")))?;
        m::replica_dropped(shard);
        info!(
            shard = shard.0,
            "replica dropped: the group removed this node"
        );
        Ok(())
    }

    /// Runs until `stop` is set (an [`Event::Shutdown`] wakes the loop to notice), or every
    /// sender is gone. Returns an error only for a storage failure.
    pub fn run(mut self, stop: &std::sync::atomic::AtomicBool) -> Result<(), crate::NodeError> {
        let mut events = Vec::with_capacity(EVENTS_PER_ITERATION_MAX);
        loop {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                info!("host loop stopping");
                return Ok(());
            }
            let next_tick = self.last_tick + self.tick;
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(wait) {
                Ok(event) => events.push(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            while events.len() < EVENTS_PER_ITERATION_MAX {
                match self.events.try_recv() {
                    Ok(event) => events.push(event),
                    Err(_) => break,
                }
            }
            let ticked = self.catch_up_ticks();
            for event in events.drain(..) {
                if matches!(event, Event::Shutdown) {
                    info!("host loop stopping");
                    return Ok(());
                }
                self.handle(event);
            }
            if ticked {
                // Deadlines have tick granularity: scanning what waits once per tick, not on
                // every loop iteration, keeps the scan off the write path.
                self.expire_pending();
            }
            self.process_ready()?;
            // After the Ready is handled, so that heartbeats just produced do not count as work.
            self.maybe_quiesce();
        }
    }

    /// Ticks every replica once per tick interval that passed since the last tick (bounded:
    /// after a long pause a couple of election timeouts are enough to expire every lease and
    /// timer).
    /// Returns whether any tick was due.
    fn catch_up_ticks(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last_tick);
        let due = (elapsed.as_nanos() / self.tick.as_nanos().max(1)) as u64;
        if due == 0 {
            return false;
        }
        let cap = 2 * u64::from(self.timing.election_timeout_ticks) + 1;
        if due > cap {
            warn!(
                ticks = due,
                "the host loop fell behind wall time (paused or overloaded); catching up"
            );
            self.last_tick = now;
        } else {
            self.last_tick += self.tick * due as u32;
        }
        for _ in 0..due.min(cap) {
            let mut ticked = 0u64;
            for replica in self.replicas.values_mut() {
                if replica.quiesced_since.is_none() {
                    replica.raw.tick();
                    replica.idle_ticks = replica.idle_ticks.saturating_add(1);
                    ticked += 1;
                }
            }
            m::group_ticks(ticked);
            self.ticks_total += 1;
            if self
                .ticks_total
                .is_multiple_of(u64::from(self.timing.heartbeat_interval_ticks))
            {
                // One liveness beat per peer host, whatever the number of groups.
                for peer in self.addrs.keys().copied().filter(|p| *p != self.id) {
                    self.outbox.send(peer, PeerFrame::Alive);
                }
            }
        }
        self.wake_orphaned_followers();
        true
    }

    /// Puts idle groups this node leads to sleep: every replica holds the whole log, everything
    /// is committed and applied, nothing waits, and no client touched the group for
    /// `quiesce_after_ticks`. The followers are told (one frame per host) and stop ticking too.
    /// A quiesced group costs no CPU per tick; any message, write or read wakes it.
    fn maybe_quiesce(&mut self) {
        let mut notices: BTreeMap<NodeId, Vec<QuiescedShard>> = BTreeMap::new();
        // A leader cut off from its majority keeps ticking, so that it steps down.
        let cut_off: BTreeSet<ShardId> = self
            .replicas
            .iter()
            .filter(|(_, r)| {
                r.quiesced_since.is_none()
                    && r.idle_ticks >= self.timing.quiesce_after_ticks
                    && r.raw.role() == Role::Leader
            })
            .map(|(shard, _)| *shard)
            .filter(|shard| !self.quorum_reachable(*shard))
            .collect();
        for (shard, replica) in &mut self.replicas {
            if replica.quiesced_since.is_some()
                || cut_off.contains(shard)
                || replica.idle_ticks < self.timing.quiesce_after_ticks
                || replica.raw.role() != Role::Leader
                || !replica.writes.is_empty()
                || !replica.reads.is_empty()
                || !replica.deferred_reads.is_empty()
                || !replica.snapshots_in_flight.is_empty()
                || replica.raw.has_ready()
                || should_hand_over(self.id, &replica.policy, replica.raw.storage())
            {
                continue;
            }
            let status = replica.raw.status();
            let last = status.last_index;
            if status.hard_state.commit != replica.idle_commit {
                // The commit index moved: followers learn it from the next heartbeats, so wait
                // a full idle period from here before asking them to sleep at this index.
                replica.idle_commit = status.hard_state.commit;
                replica.idle_ticks = 0;
                continue;
            }
            let settled = status.hard_state.commit == last
                && replica.raw.storage().applied().index == last
                && status
                    .progress
                    .values()
                    .all(|(matched, _, _)| *matched == last)
                && status.progress.len() == status.conf_state.all_nodes().len();
            if !settled {
                continue;
            }
            replica.quiesced_since = Some(Instant::now());
            debug!(shard = shard.0, "quiescing");
            let notice = QuiescedShard {
                shard: *shard,
                term: status.hard_state.term,
                commit: last,
            };
            for peer in status.conf_state.all_nodes() {
                if peer != self.id {
                    notices.entry(peer).or_default().push(notice);
                }
            }
        }
        for (peer, shards) in notices {
            self.outbox.send(peer, PeerFrame::Quiesce(shards));
        }
        let quiesced = self
            .replicas
            .values()
            .filter(|r| r.quiesced_since.is_some())
            .count();
        m::quiesced_groups(quiesced);
    }

    /// A follower sleeps only while its leader's host keeps beating; once the leader host has
    /// been silent for an election timeout, the follower wakes and will campaign as usual.
    fn wake_orphaned_followers(&mut self) {
        let window = self.tick * self.timing.election_timeout_ticks;
        let now = Instant::now();
        let orphaned: Vec<ShardId> = self
            .replicas
            .iter()
            .filter(|(_, r)| r.quiesced_since.is_some() && r.raw.role() != Role::Leader)
            .filter(|(_, r)| {
                let leader = r.raw.leader();
                leader == NodeId::NONE
                    || self
                        .last_heard
                        .get(&leader)
                        .is_none_or(|t| now.saturating_duration_since(*t) >= window)
            })
            .map(|(shard, _)| *shard)
            .collect();
        for shard in orphaned {
            info!(
                shard = shard.0,
                "leader host silent: waking the quiesced group"
            );
            self.wake(shard);
        }
        // A quiesced leader cut off from its majority: ticking again, it steps down after an
        // election timeout (check-quorum) instead of calling itself leader for as long as the
        // cut lasts.
        let stranded: Vec<ShardId> = self
            .replicas
            .iter()
            .filter(|(_, r)| r.quiesced_since.is_some() && r.raw.role() == Role::Leader)
            .map(|(shard, _)| *shard)
            .filter(|shard| !self.quorum_reachable(*shard))
            .collect();
        for shard in stranded {
            info!(
                shard = shard.0,
                "majority silent: waking the quiesced group this node leads"
            );
            self.wake(shard);
        }
    }

    /// Client activity: the group is not idle.
    fn touch(&mut self, shard: ShardId) {
        if let Some(replica) = self.replicas.get_mut(&shard) {
            replica.idle_ticks = 0;
        }
    }

    /// Resumes ticking a quiesced group, after telling its core how much time passed.
    fn wake(&mut self, shard: ShardId) {
        let Some(replica) = self.replicas.get_mut(&shard) else {
            return;
        };
        if let Some(since) = replica.quiesced_since.take() {
            let slept = since.elapsed().as_nanos() / self.tick.as_nanos().max(1);
            replica.raw.advance_clock(slept as u64);
            debug!(shard = shard.0, ticks = slept as u64, "waking");
        }
    }

    /// Follows a leader's quiesce notice when this replica holds exactly what the leader
    /// committed in the same term; returns false when it cannot.
    fn quiesce_follower(&mut self, from: NodeId, notice: QuiescedShard) -> bool {
        let Some(replica) = self.replicas.get_mut(&notice.shard) else {
            return true; // Not ours: nothing to keep awake.
        };
        if replica.quiesced_since.is_some() {
            return true;
        }
        let status = replica.raw.status();
        if status.soft_state.leader == from
            && status.soft_state.role == Role::Follower
            && status.hard_state.term == notice.term
            && status.hard_state.commit == notice.commit
            && status.last_index == notice.commit
        {
            replica.quiesced_since = Some(Instant::now());
            debug!(shard = notice.shard.0, "quiesced by the leader");
            true
        } else {
            debug!(
                shard = notice.shard.0,
                ?notice,
                commit = status.hard_state.commit.0,
                last = status.last_index.0,
                "quiesce notice refused"
            );
            false
        }
    }

    fn leader_hint(&self, leader: NodeId) -> Option<LeaderHint> {
        if leader == NodeId::NONE {
            return None;
        }
        Some(LeaderHint {
            node: leader,
            addr: self.addrs.get(&leader).cloned().unwrap_or_default(),
        })
    }

    fn not_leader(&self, shard: ShardId) -> ApiError {
        let Some(replica) = self.replicas.get(&shard) else {
            return ApiError::UnknownShard(shard);
        };
        let leader = replica.raw.leader();
        if let LeaderPolicy::Forced(forced) = replica.policy.leader
            && (leader != forced || !self.heard_recently(forced))
        {
            // Only the forced node may lead: while it does not (or has gone silent, and a
            // follower still names it), nothing can be done anywhere.
            return ApiError::ForcedLeaderDown { node: forced };
        }
        if leader == NodeId::NONE {
            // An election is under way or no majority is reachable: nothing was proposed.
            ApiError::NoQuorum { proposed: false }
        } else {
            ApiError::NotLeader {
                leader: self.leader_hint(leader),
            }
        }
    }

    /// Whether `node` (this one, or a peer host heard from within an election timeout) is alive.
    fn heard_recently(&self, node: NodeId) -> bool {
        let window = self.tick * self.timing.election_timeout_ticks;
        node == self.id
            || self
                .last_heard
                .get(&node)
                .is_some_and(|t| t.elapsed() < window)
    }

    /// Whether a majority of the shard's voters (this node included) was heard from within an
    /// election timeout. A leader without one fails writes and reads at once instead of letting
    /// them wait for a commit that cannot happen.
    fn quorum_reachable(&self, shard: ShardId) -> bool {
        let Some(replica) = self.replicas.get(&shard) else {
            return false;
        };
        let window = self.tick * self.timing.election_timeout_ticks;
        let now = Instant::now();
        // The configuration in force is the applied one (the core adopts a change when it is
        // applied); reading it from storage avoids building a whole status per write.
        let conf = &replica.raw.storage().applied().conf_state;
        let alive = |id: &NodeId| {
            *id == self.id
                || self
                    .last_heard
                    .get(id)
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
        };
        let majority = |set: &BTreeSet<NodeId>| {
            set.is_empty() || set.iter().filter(|id| alive(id)).count() * 2 > set.len()
        };
        majority(&conf.voters) && majority(&conf.voters_outgoing)
    }

    /// Under a `majority+all-sites` rule: the first required site of which no replica (this node
    /// included) was heard from within an election timeout. A write there could never commit,
    /// so the leader refuses it at once.
    fn unreachable_site(&self, shard: ShardId) -> Option<String> {
        let replica = self.replicas.get(&shard)?;
        let CommitRule::MajorityAndGroups(groups) = &replica.policy.commit else {
            return None;
        };
        let window = self.tick * self.timing.election_timeout_ticks;
        let now = Instant::now();
        let alive = |id: &NodeId| {
            *id == self.id
                || self
                    .last_heard
                    .get(id)
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
        };
        groups
            .iter()
            .position(|group| !group.iter().any(alive))
            .map(|i| {
                replica
                    .policy
                    .group_sites
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("of nodes {:?}", groups[i]))
            })
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Peer { from, frame } => {
                self.last_heard.insert(from, Instant::now());
                match frame {
                    PeerFrame::Raft(messages) => {
                        for ShardMessage { shard, message } in messages {
                            // Late answers to the heartbeats a leader sent before it quiesced
                            // need no ticking; anything else (a vote request, an append, a
                            // rejection) does.
                            if !matches!(message.body, MessageBody::HeartbeatResponse { .. }) {
                                self.wake(shard);
                                self.touch(shard);
                            }
                            self.step(from, shard, message);
                        }
                    }
                    PeerFrame::Alive => {}
                    PeerFrame::Quiesce(notices) => {
                        let refused: Vec<ShardId> = notices
                            .into_iter()
                            .filter(|notice| !self.quiesce_follower(from, *notice))
                            .map(|notice| notice.shard)
                            .collect();
                        if !refused.is_empty() {
                            self.outbox.send(from, PeerFrame::Unquiesce(refused));
                        }
                    }
                    PeerFrame::Unquiesce(shards) => {
                        for shard in shards {
                            debug!(
                                shard = shard.0,
                                follower = from.0,
                                "a follower refused to quiesce"
                            );
                            self.wake(shard);
                            self.touch(shard);
                        }
                    }
                }
            }
            Event::Write {
                shard,
                command,
                reply,
            } => self.propose_and_wait(shard, &Proposal::Write(command), reply),
            Event::SetPolicy {
                shard,
                policy,
                reply,
            } => self.propose_and_wait(shard, &Proposal::Policy(policy), reply),
            Event::ReadIndex { shard, reply } => {
                self.wake(shard);
                self.touch(shard);
                let deadline =
                    Instant::now() + Duration::from_millis(self.timing.commit_timeout_ms);
                self.start_read(shard, PendingRead { reply, deadline });
            }
            Event::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Event::WhoLeader { shard, reply } => {
                let answer = match self.replicas.get(&shard) {
                    None => Err(ApiError::UnknownShard(shard)),
                    Some(r) => Ok(self.leader_hint(r.raw.leader())),
                };
                let _ = reply.send(answer);
            }
            Event::Compact { shard, reply } => {
                let _ = reply.send(self.compact(shard, 0));
            }
            Event::SnapshotStaged { header, generation } => {
                self.snapshot_staged(header, generation);
            }
            Event::SnapshotSent { shard, to } => {
                if let Some(replica) = self.replicas.get_mut(&shard) {
                    replica.snapshots_in_flight.remove(&to);
                }
            }
            Event::CreateReplica {
                shard,
                replicas,
                join,
                reply,
            } => {
                let _ = reply.send(self.create_replica(shard, replicas, join));
            }
            Event::UpdateReplicas {
                shard,
                replicas,
                reply,
            } => {
                let _ = reply.send(self.update_replicas(shard, replicas));
            }
            Event::ChangeMembers {
                shard,
                change,
                reply,
            } => self.change_members(shard, change, reply),
            Event::Members { shard, reply } => {
                let answer = match self.replicas.get(&shard) {
                    None => Err(ApiError::UnknownShard(shard)),
                    Some(r) => Ok(members(&r.raw.status().conf_state)),
                };
                let _ = reply.send(answer);
            }
            Event::OverrideLeader {
                shard,
                leader,
                reply,
            } => {
                let _ = reply.send(self.override_leader(shard, leader));
            }
            Event::DropReplica { shard, reply } => {
                let _ = reply.send(self.drop_replica(shard));
            }
            Event::Shutdown => {}
        }
    }

    fn step(&mut self, from: NodeId, shard: ShardId, message: Message) {
        let Some(replica) = self.replicas.get_mut(&shard) else {
            debug!(
                shard = shard.0,
                from = from.0,
                "message for a shard this node does not host"
            );
            return;
        };
        if message.from != from || message.to != self.id {
            warn!(shard = shard.0, from = from.0, %message, "message with a forged sender or wrong recipient dropped");
            m::peer_message_dropped("misaddressed");
            return;
        }
        if matches!(message.body, MessageBody::Snapshot { .. }) {
            // Snapshots only arrive on their own stream, as staged data.
            m::peer_message_dropped("inline_snapshot");
            return;
        }
        if let Err(e) = replica.raw.step(message) {
            debug!(shard = shard.0, "step refused: {e}");
        }
    }

    /// Proposes `proposal` and keeps `reply` until its entry is applied (or fails at once).
    fn propose_and_wait(
        &mut self,
        shard: ShardId,
        proposal: &Proposal,
        reply: oneshot::Sender<WriteOutcome>,
    ) {
        self.wake(shard);
        self.touch(shard);
        match self.propose(shard, proposal) {
            Ok((index, term)) => {
                let deadline =
                    Instant::now() + Duration::from_millis(self.timing.commit_timeout_ms);
                let replica = self.replicas.get_mut(&shard).expect("proposed above");
                replica.writes.insert(
                    index,
                    PendingWrite {
                        term,
                        reply,
                        deadline,
                    },
                );
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    fn propose(
        &mut self,
        shard: ShardId,
        proposal: &Proposal,
    ) -> Result<(LogIndex, Term), ApiError> {
        let Some(replica) = self.replicas.get(&shard) else {
            return Err(ApiError::UnknownShard(shard));
        };
        if replica.raw.role() != Role::Leader {
            return Err(self.not_leader(shard));
        }
        if !self.quorum_reachable(shard) {
            return Err(ApiError::NoQuorum { proposed: false });
        }
        // A policy change must get through even when the rule in force cannot be met: it is
        // how an operator relaxes `majority+all-sites` while a site is cut off.
        if matches!(proposal, Proposal::Write(_))
            && let Some(site) = self.unreachable_site(shard)
        {
            return Err(ApiError::SiteUnreachable { site });
        }
        let data = postcard::to_allocvec(proposal)
            .map_err(|e| ApiError::Internal(format!("encoding the command: {e}")))?;
        let replica = self.replicas.get_mut(&shard).expect("checked above");
        match replica.raw.propose(data) {
            Ok(position) => {
                if let Proposal::Policy(policy) = proposal {
                    // Every commit rule is a majority or stricter, so the leader may count by
                    // the new one at once (Raft's safety needs only the majority). That is what
                    // lets an operator relax `majority+all-sites` while a site is cut off: the
                    // change itself commits by the new rule. Followers adopt it when they apply
                    // it; a new leader counts by the rule it has applied.
                    replica.raw.set_commit_rule(policy.commit.clone());
                    replica.proposed_commit = Some((position.last_index, policy.commit.clone()));
                }
                Ok((position.last_index, position.term))
            }
            Err(RaftError::NotLeader { .. }) => Err(self.not_leader(shard)),
            Err(RaftError::UncommittedLimit { .. }) => Err(ApiError::Busy(
                "too many uncommitted writes; retry shortly".into(),
            )),
            // Leadership is moving: the client retries at the new leader.
            Err(RaftError::TransferInProgress { target }) => Err(ApiError::NotLeader {
                leader: self.leader_hint(target),
            }),
            Err(e) => Err(ApiError::Internal(e.to_string())),
        }
    }

    fn start_read(&mut self, shard: ShardId, read: PendingRead) {
        let Some(replica) = self.replicas.get(&shard) else {
            let _ = read.reply.send(Err(ApiError::UnknownShard(shard)));
            return;
        };
        if replica.raw.role() != Role::Leader {
            let e = self.not_leader(shard);
            let _ = read.reply.send(Err(e));
            return;
        }
        if !self.quorum_reachable(shard) {
            let _ = read.reply.send(Err(ApiError::NoQuorum { proposed: false }));
            return;
        }
        let replica = self.replicas.get_mut(&shard).expect("checked above");
        let context = replica.next_read_context;
        match replica.raw.read_index(context) {
            Ok(()) => {
                replica.next_read_context += 1;
                replica.reads.insert(context, read);
            }
            Err(RaftError::ReadNotReady) => replica.deferred_reads.push(read),
            Err(RaftError::PendingReadLimit { .. }) => {
                let _ = read.reply.send(Err(ApiError::Busy(
                    "too many reads waiting for confirmation".into(),
                )));
            }
            Err(_) => {
                let e = self.not_leader(shard);
                let _ = read.reply.send(Err(e));
            }
        }
    }

    /// Fails writes and reads that waited longer than the commit timeout: the shard could not
    /// reach a majority in time.
    fn expire_pending(&mut self) {
        let now = Instant::now();
        let mut retry = Vec::new();
        for (shard, replica) in &mut self.replicas {
            for w in take_expired(&mut replica.writes, |w| w.deadline <= now) {
                let _ = w.reply.send(Err(ApiError::NoQuorum { proposed: true }));
            }
            for r in take_expired(&mut replica.reads, |r| r.deadline <= now) {
                let _ = r.reply.send(Err(ApiError::NoQuorum { proposed: false }));
            }
            for read in replica.deferred_reads.drain(..) {
                if read.deadline <= now {
                    let _ = read.reply.send(Err(ApiError::NoQuorum { proposed: false }));
                } else {
                    retry.push((*shard, read));
                }
            }
        }
        for (shard, read) in retry {
            self.start_read(shard, read);
        }
    }

    fn snapshot_staged(&mut self, header: SnapshotHeader, generation: u64) {
        self.wake(header.shard);
        let Some(replica) = self.replicas.get_mut(&header.shard) else {
            let _ = self.engine.discard_generation(header.shard, generation);
            return;
        };
        if let Some(old) = replica.staged.take() {
            let _ = self.engine.discard_generation(header.shard, old);
        }
        let message = Message {
            from: header.from,
            to: header.to,
            term: header.term,
            body: MessageBody::Snapshot {
                snapshot: Snapshot {
                    metadata: header.metadata.clone(),
                    data: generation.to_be_bytes().to_vec(),
                },
            },
        };
        self.last_heard.insert(header.from, Instant::now());
        match replica.raw.step(message) {
            Ok(()) => replica.staged = Some(generation),
            Err(e) => {
                debug!(shard = header.shard.0, "snapshot refused: {e}");
                let _ = self.engine.discard_generation(header.shard, generation);
            }
        }
    }

    fn compact(&mut self, shard: ShardId, retain: u64) -> Result<LogIndex, ApiError> {
        let Some(replica) = self.replicas.get_mut(&shard) else {
            return Err(ApiError::UnknownShard(shard));
        };
        let storage = replica.raw.storage_mut();
        let to = LogIndex(storage.applied().index.0.saturating_sub(retain));
        let mut batch = WriteBatch::default();
        let compacted = storage
            .compact(&mut batch, to)
            .map_err(|e| ApiError::Internal(format!("compacting the log: {e}")))?;
        self.engine
            .write(batch, false)
            .map_err(|e| ApiError::Internal(format!("compacting the log: {e}")))?;
        info!(shard = shard.0, compacted_to = compacted.0, "log compacted");
        Ok(compacted)
    }

    fn status(&self) -> Vec<ReplicaStatus> {
        self.replicas
            .iter()
            .map(|(shard, replica)| {
                let status = replica.raw.status();
                let storage = replica.raw.storage();
                ReplicaStatus {
                    shard: *shard,
                    node: self.id,
                    role: status.soft_state.role,
                    term: status.hard_state.term,
                    leader: self.leader_hint(status.soft_state.leader),
                    voters: status.conf_state.voters.iter().copied().collect(),
                    learners: status.conf_state.learners.iter().copied().collect(),
                    commit: status.hard_state.commit,
                    applied: storage.applied().index,
                    first_index: storage.first_index().unwrap_or_default(),
                    last_index: status.last_index,
                    quiesced: replica.quiesced_since.is_some(),
                }
            })
            .collect()
    }

    /// Persist, send, apply, advance — for every replica with work, with one synced write.
    fn process_ready(&mut self) -> Result<(), crate::NodeError> {
        let mut readies: Vec<(ShardId, Ready)> = Vec::new();
        for (shard, replica) in &mut self.replicas {
            if replica.raw.has_ready() {
                readies.push((*shard, replica.raw.ready()));
            }
        }
        if readies.is_empty() {
            return Ok(());
        }

        // 1. Persist: snapshots, entries and hard states of every group, one batch, one fsync.
        let mut batch = WriteBatch::default();
        let mut must_sync = false;
        let mut entries = 0usize;
        for (shard, ready) in &readies {
            let replica = self.replicas.get_mut(shard).expect("collected above");
            if let Some(snapshot) = &ready.snapshot {
                let generation = decode_generation(&snapshot.data);
                replica.raw.storage_mut().install_snapshot(
                    &mut batch,
                    &snapshot.metadata,
                    generation,
                );
                if replica.staged == Some(generation) {
                    replica.staged = None;
                }
                info!(
                    shard = shard.0,
                    index = snapshot.metadata.index.0,
                    "installing snapshot"
                );
            }
            replica.raw.storage_mut().append(&mut batch, &ready.entries);
            entries += ready.entries.len();
            if let Some(hs) = ready.hard_state {
                replica.raw.storage_mut().set_hard_state(&mut batch, hs);
            }
            must_sync |= ready.must_sync;
        }
        if !batch.is_empty() {
            let bytes = batch.size_in_bytes();
            let started = Instant::now();
            self.engine.write(batch, must_sync)?;
            m::storage_write(started.elapsed(), must_sync, entries, bytes);
        }
        // Staged snapshots the core did not take are dropped.
        for (shard, replica) in &mut self.replicas {
            if let Some(generation) = replica.staged.take() {
                let _ = self.engine.discard_generation(*shard, generation);
            }
        }

        // 2. Send, batched per destination host.
        let mut outgoing: BTreeMap<NodeId, Vec<ShardMessage>> = BTreeMap::new();
        for (shard, ready) in &mut readies {
            for message in std::mem::take(&mut ready.messages) {
                if let MessageBody::Snapshot { .. } = &message.body {
                    let replica = self.replicas.get_mut(shard).expect("collected above");
                    if replica.snapshots_in_flight.insert(message.to) {
                        info!(shard = shard.0, to = message.to.0, "streaming a snapshot");
                        self.outbox.send_snapshot(*shard, message.to, message.term);
                    }
                    continue;
                }
                outgoing.entry(message.to).or_default().push(ShardMessage {
                    shard: *shard,
                    message,
                });
            }
        }
        for (to, messages) in outgoing {
            self.outbox.send(to, PeerFrame::Raft(messages));
        }

        // 3. Apply, answer, advance.
        for (shard, ready) in readies {
            self.apply(shard, ready)?;
        }
        Ok(())
    }

    fn apply(&mut self, shard: ShardId, ready: Ready) -> Result<(), crate::NodeError> {
        let engine = self.engine.clone();
        let replica = self.replicas.get_mut(&shard).expect("caller holds a ready");
        if let Some(soft) = &ready.soft_state {
            if soft.leader != replica.last_leader {
                info!(shard = shard.0, leader = soft.leader.0, role = %soft.role, "leader changed");
                m::leader_changed(shard);
                replica.last_leader = soft.leader;
            }
            if soft.role == Role::Candidate {
                m::election_started(shard);
            }
            if soft.role != Role::Leader {
                // A rule adopted early for a policy proposal (see `propose`) lasts only while
                // this node leads: whoever leads next counts by the applied one.
                replica.proposed_commit = None;
                replica.raw.set_commit_rule(replica.policy.commit.clone());
            }
        }
        if let Some(snapshot) = &ready.snapshot {
            // Writes whose entries the snapshot covers have an unknown fate on this node.
            let covered: Vec<LogIndex> = replica
                .writes
                .range(..=snapshot.metadata.index)
                .map(|(i, _)| *i)
                .collect();
            for index in covered {
                let w = replica.writes.remove(&index).expect("listed above");
                let _ = w.reply.send(Err(ApiError::NoQuorum { proposed: true }));
            }
            replica.applied_tx.send_replace(snapshot.metadata.index);
            // The snapshot carries the group's policy in its data.
            let space = replica.raw.storage().key_space();
            match nsm::group_policy(engine.db(), &space) {
                Ok(policy) => adopt_policy(shard, replica, policy.unwrap_or_default(), None),
                Err(e) => {
                    return Err(crate::NodeError::Start(format!(
                        "shard {shard}: reading the installed snapshot: {e}"
                    )));
                }
            }
        }
        for entry in &ready.committed_entries {
            let mut batch = WriteBatch::default();
            let storage = replica.raw.storage();
            let mut applied = AppliedState {
                index: entry.index,
                term: entry.term,
                ..storage.applied().clone()
            };
            let space = storage.key_space();
            let mut new_policy = None;
            let result = match &entry.payload {
                EntryPayload::Empty => Ok(WriteResult::Done),
                EntryPayload::Normal(data) => match postcard::from_bytes::<Proposal>(data) {
                    Ok(proposal) => match match &proposal {
                        Proposal::Write(command) => {
                            nsm::apply(engine.db(), &space, storage.managed(), command, &mut batch)
                        }
                        Proposal::Policy(policy) => {
                            new_policy = Some(policy.clone());
                            nsm::apply_policy(engine.db(), &space, policy, &mut batch)
                        }
                    } {
                        // Reading the state failed: applying anything now would make this
                        // replica differ from the others. Stop instead.
                        Err(ApiError::Internal(reason)) => {
                            return Err(crate::NodeError::Start(format!(
                                "shard {shard}: applying entry {}: {reason}",
                                entry.index.0
                            )));
                        }
                        other => other,
                    },
                    Err(e) => {
                        // Every replica decodes the same bytes the same way: all skip it.
                        error!(
                            shard = shard.0,
                            index = entry.index.0,
                            "undecodable command skipped: {e}"
                        );
                        Err(ApiError::InvalidArgument(format!(
                            "undecodable command: {e}"
                        )))
                    }
                },
                EntryPayload::ConfChange(change) => {
                    match replica.raw.apply_conf_change(change) {
                        Ok(conf) => applied.conf_state = conf,
                        Err(e) => warn!(shard = shard.0, "configuration change refused: {e}"),
                    }
                    Ok(WriteResult::Done)
                }
            };
            replica.raw.storage_mut().set_applied(&mut batch, applied);
            engine.write(batch, false)?;
            if let Some(policy) = new_policy {
                adopt_policy(shard, replica, policy, Some(entry.index));
            }
            if let Some(pending) = replica.writes.remove(&entry.index) {
                let outcome = if pending.term == entry.term {
                    result.map(|r| (entry.index, r))
                } else {
                    // Another leader's entry took the slot: this write was never applied.
                    Err(ApiError::NotLeader { leader: None })
                };
                let _ = pending.reply.send(outcome);
            }
        }
        let applied = replica.raw.storage().applied().index;
        if !ready.committed_entries.is_empty() {
            replica.applied_tx.send_replace(applied);
        }
        for read in &ready.read_states {
            if let Some(pending) = replica.reads.remove(&read.context) {
                let _ = pending.reply.send(Ok(read.index));
            }
        }
        for context in &ready.dropped_reads {
            if let Some(pending) = replica.reads.remove(context) {
                let _ = pending
                    .reply
                    .send(Err(ApiError::NotLeader { leader: None }));
            }
        }
        replica.raw.advance(ready);

        let status = replica.raw.status();
        m::replica_state(
            shard,
            &status,
            replica.raw.storage(),
            &replica.policy.leader,
        );
        // Automatic compaction once the log is long; keep a tail for lagging followers.
        let first = replica.raw.storage().truncated_index();
        if applied.0.saturating_sub(first.0) > self.timing.log_compact_threshold_entries {
            let _ = self.compact(shard, self.timing.log_retain_entries);
        }
        Ok(())
    }
}

/// Checks a replica list from the manager: distinct nodes with ids above 0 and usable
/// addresses. Returns the nodes, sorted.
fn check_replica_list(shard: ShardId, replicas: &[ReplicaAddr]) -> Result<Vec<NodeId>, ApiError> {
    let mut nodes: Vec<NodeId> = replicas.iter().map(|r| r.node).collect();
    nodes.sort();
    nodes.dedup();
    if nodes.len() != replicas.len() || nodes.contains(&NodeId::NONE) {
        return Err(ApiError::InvalidArgument(format!(
            "the replicas of shard {shard} must be distinct nodes with ids above 0"
        )));
    }
    if let Some(bad) = replicas
        .iter()
        .find(|r| r.addr.parse::<SocketAddr>().is_err())
    {
        return Err(ApiError::InvalidArgument(format!(
            "replica address {:?} of node {} is not host:port",
            bad.addr, bad.node.0
        )));
    }
    Ok(nodes)
}

/// A configuration as the wire shows it.
fn members(conf: &ConfState) -> Members {
    Members {
        voters: conf.voters.iter().copied().collect(),
        learners: conf.learners.iter().copied().collect(),
        outgoing: conf.voters_outgoing.iter().copied().collect(),
    }
}

/// Hands a replication policy applied at `index` (`None`: from a snapshot) to the core. A
/// leader that proposed a newer policy keeps counting by that one's rule until it applies it.
fn adopt_policy(
    shard: ShardId,
    replica: &mut Replica,
    policy: GroupPolicy,
    index: Option<LogIndex>,
) {
    if let Some((proposed_at, _)) = &replica.proposed_commit
        && index.is_none_or(|i| i >= *proposed_at)
    {
        replica.proposed_commit = None;
    }
    if policy == replica.policy {
        return;
    }
    info!(
        shard = shard.0,
        commit = ?policy.commit,
        leader = ?policy.leader,
        "replication policy applied"
    );
    let rule = match &replica.proposed_commit {
        Some((_, newer)) => newer.clone(),
        None => policy.commit.clone(),
    };
    replica.raw.set_commit_rule(rule);
    replica.raw.set_leader_policy(policy.leader.clone());
    replica.policy = policy;
}

/// Whether this node, leading, should hand leadership to a preferred voter the policy names (so
/// the group must not quiesce before it has).
fn should_hand_over(me: NodeId, policy: &GroupPolicy, storage: &GroupStorage) -> bool {
    match &policy.leader {
        LeaderPolicy::Preferred(preferred) => {
            !preferred.contains(&me)
                && preferred
                    .iter()
                    .any(|id| storage.applied().conf_state.voters.contains(id))
        }
        LeaderPolicy::Forced(forced) => *forced != me,
        LeaderPolicy::Any => false,
    }
}

/// Removes and returns the values of `map` for which `expired` holds.
fn take_expired<K: Ord + Copy, V>(
    map: &mut BTreeMap<K, V>,
    expired: impl Fn(&V) -> bool,
) -> Vec<V> {
    let keys: Vec<K> = map
        .iter()
        .filter(|(_, v)| expired(v))
        .map(|(k, _)| *k)
        .collect();
    keys.into_iter().filter_map(|k| map.remove(&k)).collect()
}

fn decode_generation(data: &[u8]) -> u64 {
    let bytes: [u8; 8] = data
        .try_into()
        .expect("snapshots reach the core only through snapshot_staged, with an 8-byte generation");
    u64::from_be_bytes(bytes)
}
