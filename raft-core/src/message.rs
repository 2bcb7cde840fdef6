//! Messages between the replicas of one group.
//!
//! Names follow the paper: a request and its `…Response`. The core never sends anything itself;
//! messages leave through [`crate::Ready::messages`] and arrive through
//! [`crate::RawNode::step`]. Every field of a message received from the network is untrusted:
//! the core validates before it acts and never panics on bad input.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::types::{Entry, EntryPayload, LogIndex, NodeId, Snapshot, Term};

/// A message from one replica to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The recipient.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request: the term it would campaign in).
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// AppendEntries (§5.3): entries that follow `(prev_log_index, prev_log_term)`.
    Append {
        /// The index of the entry just before `entries`.
        prev_log_index: LogIndex,
        /// The term of that entry.
        prev_log_term: Term,
        /// The entries to append; may be empty (a probe).
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: LogIndex,
    },
    /// The answer to [`MessageBody::Append`] or [`MessageBody::Snapshot`].
    AppendResponse {
        /// On success, the last index now known to match the leader; on rejection, the
        /// `prev_log_index` that did not match.
        index: LogIndex,
        /// Whether the append was rejected.
        reject: bool,
        /// On rejection, where the leader should probe next: the largest index at which the
        /// follower's log might still match (fast backtracking, §5.3 "optimization").
        reject_hint: LogIndex,
        /// On rejection, the term of the follower's entry at `reject_hint`.
        reject_hint_term: Term,
    },
    /// RequestVote (§5.2), or a pre-vote (§9.6 of the dissertation) when `pre_vote` is set.
    RequestVote {
        /// The index of the candidate's last entry.
        last_log_index: LogIndex,
        /// The term of the candidate's last entry.
        last_log_term: Term,
        /// A pre-vote: the recipient answers as if for a real vote but changes no state.
        pre_vote: bool,
        /// The campaign follows a leader transfer: the recipient must not refuse it because it
        /// still hears from the old leader.
        transfer: bool,
    },
    /// The answer to [`MessageBody::RequestVote`].
    RequestVoteResponse {
        /// Whether the vote is granted.
        granted: bool,
        /// Echoes the request's `pre_vote`.
        pre_vote: bool,
    },
    /// The leader's heartbeat; `read_round` confirms leadership for read-index requests.
    Heartbeat {
        /// The commit index the recipient may adopt (never above what it is known to hold).
        commit: LogIndex,
        /// The heartbeat round, echoed in the response.
        read_round: u64,
    },
    /// The answer to [`MessageBody::Heartbeat`].
    HeartbeatResponse {
        /// Echoes the heartbeat's round.
        read_round: u64,
    },
    /// InstallSnapshot (§7): the leader no longer has the entries the follower needs.
    Snapshot {
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// Leader transfer (§3.10 of the dissertation): the recipient campaigns at once.
    TimeoutNow,
}

impl MessageBody {
    /// A short name of the kind of message, for logs, metrics and test transcripts.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Append { .. } => "Append",
            Self::AppendResponse { .. } => "AppendResponse",
            Self::RequestVote { pre_vote: true, .. } => "PreVote",
            Self::RequestVote { .. } => "Vote",
            Self::RequestVoteResponse { pre_vote: true, .. } => "PreVoteResponse",
            Self::RequestVoteResponse { .. } => "VoteResponse",
            Self::Heartbeat { .. } => "Heartbeat",
            Self::HeartbeatResponse { .. } => "HeartbeatResponse",
            Self::Snapshot { .. } => "Snapshot",
            Self::TimeoutNow => "TimeoutNow",
        }
    }

    /// The approximate size in bytes, for batching limits.
    pub fn size_bytes(&self) -> u64 {
        match self {
            Self::Append { entries, .. } => 48 + entries.iter().map(Entry::size_bytes).sum::<u64>(),
            Self::Snapshot { snapshot } => 64 + snapshot.data.len() as u64,
            _ => 48,
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.term, self.index)?;
        match &self.payload {
            EntryPayload::Empty => Ok(()),
            EntryPayload::Normal(data) => write!(f, " {}", String::from_utf8_lossy(data)),
            EntryPayload::ConfChange(cc) if cc.changes.is_empty() => write!(f, " leave-joint"),
            EntryPayload::ConfChange(cc) => {
                let steps: Vec<String> = cc
                    .changes
                    .iter()
                    .map(|step| match step {
                        crate::ConfChangeStep::AddVoter(id) => format!("v{id}"),
                        crate::ConfChangeStep::AddLearner(id) => format!("l{id}"),
                        crate::ConfChangeStep::RemoveNode(id) => format!("r{id}"),
                    })
                    .collect();
                write!(f, " conf[{}]", steps.join(" "))
            }
        }
    }
}

/// Formats entries as `[1/1, 1/2 data]` for transcripts.
pub(crate) struct Entries<'a>(pub(crate) &'a [Entry]);

impl fmt::Display for Entries<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, entry) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{entry}")?;
        }
        f.write_str("]")
    }
}

impl fmt::Display for Message {
    /// A compact, stable one-line form used by golden transcripts, e.g.
    /// `1->2 Append term=1 prev=1/10 commit=10 entries=[1/11 x]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}->{} {} term={}",
            self.from,
            self.to,
            self.body.kind(),
            self.term
        )?;
        match &self.body {
            MessageBody::Append {
                prev_log_index,
                prev_log_term,
                entries,
                commit,
            } => {
                write!(f, " prev={prev_log_term}/{prev_log_index} commit={commit}")?;
                if !entries.is_empty() {
                    write!(f, " entries={}", Entries(entries))?;
                }
                Ok(())
            }
            MessageBody::AppendResponse {
                index,
                reject,
                reject_hint,
                reject_hint_term,
            } => {
                if *reject {
                    write!(
                        f,
                        " reject index={index} hint={reject_hint_term}/{reject_hint}"
                    )
                } else {
                    write!(f, " index={index}")
                }
            }
            MessageBody::RequestVote {
                last_log_index,
                last_log_term,
                transfer,
                ..
            } => {
                write!(f, " last={last_log_term}/{last_log_index}")?;
                if *transfer {
                    f.write_str(" transfer")?;
                }
                Ok(())
            }
            MessageBody::RequestVoteResponse { granted, .. } => {
                f.write_str(if *granted { " granted" } else { " rejected" })
            }
            MessageBody::Heartbeat { commit, read_round } => {
                write!(f, " commit={commit} round={read_round}")
            }
            MessageBody::HeartbeatResponse { read_round } => write!(f, " round={read_round}"),
            MessageBody::Snapshot { snapshot } => {
                let m = &snapshot.metadata;
                write!(
                    f,
                    " snapshot={}/{} voters={:?}",
                    m.term,
                    m.index,
                    ids(&m.conf_state.voters)
                )?;
                if !m.conf_state.learners.is_empty() {
                    write!(f, " learners={:?}", ids(&m.conf_state.learners))?;
                }
                Ok(())
            }
            MessageBody::TimeoutNow => Ok(()),
        }
    }
}

pub(crate) fn ids(set: &std::collections::BTreeSet<NodeId>) -> Vec<u64> {
    set.iter().map(|id| id.0).collect()
}
