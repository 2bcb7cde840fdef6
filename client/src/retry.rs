//! The retry policy, as pure code: which failures are safe to retry, where to go next and how
//! long to wait first. It does no I/O and reads no clock; the client measures time, runs each
//! attempt, and feeds what happened to a [`RetryPlan`], which answers with a [`Decision`].
//!
//! The rule that matters: a write is retried only when it certainly had no effect — the node
//! said so ([`ApiError::nothing_done`]), or nothing was sent (the connection or the stream could
//! not be opened). A write that may have reached a node and then lost its answer fails with
//! [`Error::Ambiguous`]; it is never retried and never reported as a success.

use std::net::SocketAddr;
use std::time::Duration;

use cairn_wire::api::{ApiError, Consistency, Request, Response};
use cairn_wire::catalog::ManagerRequest;

use crate::Error;

/// The first backoff before trying the next node.
pub const BACKOFF_START: Duration = Duration::from_millis(50);
/// The longest backoff.
pub const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// What kind of call is being retried; it decides what is safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// A write: goes to the leader, retried only when it certainly had no effect.
    Write,
    /// A linearizable read: goes to the leader, always safe to retry.
    ConsistentRead,
    /// An `Any` or `AtLeast` read, or an operator query (who-leader, status, compact-log): any
    /// node may answer, always safe to retry.
    LooseRead,
}

impl CallKind {
    /// The kind of `request`.
    pub fn of(request: &Request) -> Self {
        match request {
            Request::Write { .. } => Self::Write,
            Request::Read {
                consistency: Consistency::Consistent,
                ..
            } => Self::ConsistentRead,
            Request::RoutedWrite { .. } => Self::Write,
            // Proposed through the shard's log like a write.
            Request::SetGroupPolicy { .. } => Self::Write,
            Request::RoutedRead { .. } => Self::LooseRead,
            Request::Manager(m) => match m {
                // Changes of the catalog: an unknown outcome must be reported, not repeated.
                ManagerRequest::CreateNamespace { .. }
                | ManagerRequest::DeleteNamespace { .. }
                | ManagerRequest::SetPolicies(_)
                | ManagerRequest::SetShardPolicy { .. } => Self::Write,
                // Only the manager leader answers, and repeating them is harmless.
                ManagerRequest::Heartbeat(_)
                | ManagerRequest::ListNamespaces
                | ManagerRequest::ShowNamespace { .. }
                | ManagerRequest::ListShards
                | ManagerRequest::ListHosts
                | ManagerRequest::Policies
                | ManagerRequest::Routing
                | ManagerRequest::Watch
                | ManagerRequest::Violations => Self::ConsistentRead,
            },
            // Only the leader changes members, and a change already made is answered as done.
            Request::ChangeReplicas { .. } => Self::ConsistentRead,
            // Idempotent: repeating it is harmless.
            Request::CreateReplica { .. }
            | Request::JoinReplica { .. }
            | Request::UpdateReplicas { .. }
            | Request::DropReplica { .. }
            | Request::OverrideLeaderPolicy { .. }
            | Request::Read { .. }
            | Request::WhoLeader { .. }
            | Request::Status
            | Request::CompactLog { .. } => Self::LooseRead,
        }
    }

    /// Whether the call must be served by the shard's leader.
    pub fn needs_leader(self) -> bool {
        matches!(self, Self::Write | Self::ConsistentRead)
    }
}

/// Whether a failed attempt may have delivered the request to the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Certainly not: the connection or the stream could not be opened, or not one byte of the
    /// request was accepted by the stream.
    Nothing,
    /// Perhaps: some of the request was handed to the transport before it failed.
    Maybe,
}

/// What one attempt at one node came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The node answered (possibly with [`Response::Error`]).
    Answer(Response),
    /// The transport failed, or the deadline passed, before an answer arrived.
    Transport {
        /// Whether the request may have reached the node.
        sent: Sent,
        /// What went wrong.
        reason: String,
    },
    /// The node answered with something this client cannot read.
    Garbled(String),
}

/// What to do after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The call succeeded with this answer (never [`Response::Error`]).
    Done(Response),
    /// The call failed for good.
    Fail(Error),
    /// The node named another as the leader: retry there at once (and remember it as the
    /// shard's leader).
    Follow(SocketAddr),
    /// Retry at `addr` once `after` has passed (if the deadline allows).
    Retry {
        /// The node to try next.
        addr: SocketAddr,
        /// How long to wait first.
        after: Duration,
    },
}

/// Exponential backoff: 50 ms, doubling, capped at 500 ms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    /// A backoff at its first step.
    pub fn new() -> Self {
        Self {
            next: BACKOFF_START,
        }
    }

    /// The delay to wait now; the next one is twice as long, up to [`BACKOFF_MAX`].
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// The retry state of one routed call: where it is, how many hints it followed, what failed
/// last. Feed it every attempt's [`Outcome`] with [`RetryPlan::decide`]; when the deadline has
/// passed, [`RetryPlan::give_up`] says what to report.
#[derive(Clone, Debug)]
pub struct RetryPlan {
    kind: CallKind,
    nodes: Vec<SocketAddr>,
    /// The position in `nodes` of the node tried last, when it is one of them.
    cursor: Option<usize>,
    hops_max: u32,
    /// Hints followed in a row since the last backoff.
    hops: u32,
    backoff: Backoff,
    /// The last transport failure, for the message of [`Error::Unavailable`].
    last_failure: Option<String>,
    /// The last error a node answered with, and the node.
    last_api_error: Option<(SocketAddr, ApiError)>,
    /// Nodes that said they host no replica of the shard.
    disowned: Vec<SocketAddr>,
}

impl RetryPlan {
    /// A plan for a call of `kind` over `nodes` (in order of preference), following at most
    /// `hops_max` leader hints in a row.
    ///
    /// # Panics
    ///
    /// When `nodes` is empty (a configuration the client refuses).
    pub fn new(kind: CallKind, nodes: Vec<SocketAddr>, hops_max: u32) -> Self {
        assert!(!nodes.is_empty(), "a retry plan needs at least one node");
        Self {
            kind,
            nodes,
            cursor: None,
            hops_max,
            hops: 0,
            backoff: Backoff::new(),
            last_failure: None,
            last_api_error: None,
            disowned: Vec::new(),
        }
    }

    /// The node of the first attempt: `preferred` (the cached leader) when given, else the first
    /// node.
    pub fn first(&mut self, preferred: Option<SocketAddr>) -> SocketAddr {
        let addr = preferred.unwrap_or(self.nodes[0]);
        self.cursor = self.nodes.iter().position(|n| *n == addr);
        addr
    }

    /// Decides what to do after an attempt at `addr` came to `outcome`.
    pub fn decide(&mut self, addr: SocketAddr, outcome: Outcome) -> Decision {
        match outcome {
            Outcome::Answer(Response::Error(e)) => self.on_api_error(addr, e),
            Outcome::Answer(response) => Decision::Done(response),
            Outcome::Garbled(reason) => match self.kind {
                // The node answered, so the write was processed; its answer is lost.
                CallKind::Write => Decision::Fail(Error::Ambiguous {
                    reason: format!("the answer of {addr} could not be read: {reason}"),
                }),
                CallKind::ConsistentRead | CallKind::LooseRead => {
                    Decision::Fail(Error::Protocol(format!("{addr}: {reason}")))
                }
            },
            Outcome::Transport { sent, reason } => {
                let reason = format!("{addr}: {reason}");
                if self.kind == CallKind::Write && sent == Sent::Maybe {
                    return Decision::Fail(Error::Ambiguous { reason });
                }
                self.last_failure = Some(reason);
                self.retry_next()
            }
        }
    }

    /// The error to report once the deadline has passed with no decision; `timeout_ms` is the
    /// call's time budget.
    ///
    /// A write whose last answer was `NoQuorum` reports it (the shard has lost its majority);
    /// everything else is [`Error::Unavailable`], naming the last answer of a node (it says more
    /// than a node that could not be reached), else the last transport failure.
    pub fn give_up(&self, timeout_ms: u64) -> Error {
        if self.kind == CallKind::Write
            && let Some((_, e @ ApiError::NoQuorum { .. })) = &self.last_api_error
        {
            return Error::Api(e.clone());
        }
        let last_error = match (&self.last_api_error, &self.last_failure) {
            (Some((addr, e)), _) => format!("{addr}: {e}"),
            (None, Some(failure)) => failure.clone(),
            (None, None) => "none: the deadline passed before the first attempt".into(),
        };
        Error::Unavailable {
            reason: format!("no node served the request within {timeout_ms} ms"),
            last_error,
        }
    }

    fn on_api_error(&mut self, addr: SocketAddr, e: ApiError) -> Decision {
        self.last_api_error = Some((addr, e.clone()));
        match &e {
            ApiError::NotLeader { leader: Some(hint) } => match hint.addr.parse::<SocketAddr>() {
                Ok(leader) if leader != addr && self.hops < self.hops_max => {
                    self.hops += 1;
                    if let Some(i) = self.nodes.iter().position(|n| *n == leader) {
                        self.cursor = Some(i);
                    }
                    Decision::Follow(leader)
                }
                // A hint to itself, an address we cannot parse, or hints chasing each other:
                // wait, then go round the nodes.
                _ => self.retry_next(),
            },
            ApiError::NotLeader { leader: None }
            | ApiError::Busy(_)
            | ApiError::NoQuorum { proposed: false }
            | ApiError::InconsistentRead { .. } => self.retry_next(),
            ApiError::UnknownShard(_) => {
                if !self.disowned.contains(&addr) {
                    self.disowned.push(addr);
                }
                // Nodes need not host every shard; only when none of them does is it final.
                if self.nodes.iter().all(|n| self.disowned.contains(n)) {
                    Decision::Fail(Error::Api(e))
                } else {
                    self.retry_next()
                }
            }
            // A proposed write may still commit, and an internal error may have struck after
            // the write was applied: neither is safe to retry. Reads are.
            ApiError::NoQuorum { proposed: true } | ApiError::Internal(_) => match self.kind {
                CallKind::Write => Decision::Fail(Error::Api(e)),
                CallKind::ConsistentRead | CallKind::LooseRead => self.retry_next(),
            },
            // Answers decided by the request itself: another node would say the same.
            // Answers decided by the request itself, or by the catalog: another node would say
            // the same (a router refreshes its route on WrongShard itself, before answering).
            ApiError::NotFound { .. }
            | ApiError::AssertionFailed { .. }
            | ApiError::TooLarge { .. }
            | ApiError::InvalidArgument(_)
            | ApiError::WrongShard { .. }
            | ApiError::UnknownNamespace(_)
            | ApiError::NamespaceExists(_)
            | ApiError::InvalidManifest(_)
            | ApiError::ObjectExists { .. }
            | ApiError::ObjectChanged { .. }
            | ApiError::ObjectNotFound { .. }
            | ApiError::Unavailable(_)
            | ApiError::NotAuthorized(_) => Decision::Fail(Error::Api(e)),
            // The shard's policy makes writes impossible until a site or a node is back: fail
            // fast, as the policy promises, instead of retrying until the deadline.
            ApiError::SiteUnreachable { .. } | ApiError::ForcedLeaderDown { .. } => {
                Decision::Fail(Error::Api(e))
            }
        }
    }

    /// Backs off, then moves to the next node in order (skipping nodes that do not host the
    /// shard).
    fn retry_next(&mut self) -> Decision {
        self.hops = 0;
        let n = self.nodes.len();
        let mut next = self.cursor.map_or(0, |i| (i + 1) % n);
        for _ in 0..n {
            if !self.disowned.contains(&self.nodes[next]) {
                break;
            }
            next = (next + 1) % n;
        }
        self.cursor = Some(next);
        Decision::Retry {
            addr: self.nodes[next],
            after: self.backoff.next_delay(),
        }
    }
}

/// The result of a single attempt at one chosen node, without retries (for
/// [`Client::request_to`](crate::Client::request_to) and pinned handles).
///
/// A node's error answer becomes [`Error::Api`]; a transport failure becomes
/// [`Error::Unavailable`], or [`Error::Ambiguous`] for a write that may have been sent.
pub fn single_attempt(
    kind: CallKind,
    addr: SocketAddr,
    outcome: Outcome,
) -> Result<Response, Error> {
    match outcome {
        Outcome::Answer(Response::Error(e)) => Err(Error::Api(e)),
        Outcome::Answer(response) => Ok(response),
        Outcome::Garbled(reason) => Err(match kind {
            CallKind::Write => Error::Ambiguous {
                reason: format!("the answer of {addr} could not be read: {reason}"),
            },
            CallKind::ConsistentRead | CallKind::LooseRead => {
                Error::Protocol(format!("{addr}: {reason}"))
            }
        }),
        Outcome::Transport { sent, reason } => {
            let reason = format!("{addr}: {reason}");
            Err(if kind == CallKind::Write && sent == Sent::Maybe {
                Error::Ambiguous { reason }
            } else {
                Error::Unavailable {
                    reason: format!("{addr} did not answer"),
                    last_error: reason,
                }
            })
        }
    }
}
