//! The replicated state machine the simulated clients use: a small key-value map with put,
//! delete and compare-and-set, plus the commands that carry client operations through the log.
//! Like shard-node's, the state machine also holds the replication policy the log last set, so a
//! snapshot carries it to a node that installs it or restarts from it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::policy::Policy;

/// A client operation that changes state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Write {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: u64,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: String,
    },
    /// Sets `key` to `new` if it holds `expected`.
    Cas {
        /// The key.
        key: String,
        /// The value the key must hold (`None`: absent).
        expected: Option<u64>,
        /// The value to set.
        new: u64,
    },
}

/// What a log entry carries: which client operation it is, and the operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The client that issued it.
    pub client: u64,
    /// The client's operation number, unique per client.
    pub op_id: u64,
    /// The operation.
    pub write: Write,
}

/// What an application entry of the log carries (shard-node's log carries the same two kinds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proposal {
    /// A client write.
    Write(Command),
    /// A new replication policy, adopted by each replica when it applies the entry.
    Policy(Policy),
}

impl Proposal {
    /// The log encoding.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("encoding into a Vec cannot fail")
    }

    /// Decodes a log entry; `None` for anything that is not a proposal.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }
}

/// The result of applying a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteResult {
    /// Put or delete done.
    Done,
    /// Compare-and-set: whether it swapped.
    Cas {
        /// Whether the value was swapped.
        swapped: bool,
    },
}

/// The key-value map, and the policy the log last set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    map: BTreeMap<String, u64>,
    /// The policy of the last policy entry applied; `None` until one is (the scenario's initial
    /// policy is then in force).
    policy: Option<Policy>,
}

impl Kv {
    /// Applies a write.
    pub fn apply(&mut self, write: &Write) -> WriteResult {
        match write {
            Write::Put { key, value } => {
                self.map.insert(key.clone(), *value);
                WriteResult::Done
            }
            Write::Delete { key } => {
                self.map.remove(key);
                WriteResult::Done
            }
            Write::Cas { key, expected, new } => {
                let swapped = self.map.get(key).copied() == *expected;
                if swapped {
                    self.map.insert(key.clone(), *new);
                }
                WriteResult::Cas { swapped }
            }
        }
    }

    /// Applies a policy entry.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = Some(policy);
    }

    /// The policy the log last set, if it set one.
    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<u64> {
        self.map.get(key).copied()
    }

    /// The snapshot encoding.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("encoding into a Vec cannot fail")
    }

    /// Decodes a snapshot; an empty snapshot (the bootstrap one) is the empty map.
    pub fn decode(bytes: &[u8]) -> Self {
        if bytes.is_empty() {
            return Self::default();
        }
        postcard::from_bytes(bytes).expect("snapshots are written by Kv::encode")
    }
}
