//! The simulated network: delays, loss, duplication, reordering (through random delays) and
//! partitions, symmetric or one-way.

use std::collections::BTreeSet;

use raft_core::{Message, NodeId};

use crate::rng::SimRng;

/// How the network misbehaves at the moment.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkOptions {
    /// Shortest one-way delay, in simulated time units.
    pub delay_min: u64,
    /// Longest one-way delay. A wide range reorders messages.
    pub delay_max: u64,
    /// Probability that a message is lost.
    pub loss_probability: f64,
    /// Probability that a message is delivered twice.
    pub duplicate_probability: f64,
}

impl NetworkOptions {
    /// A well-behaved network.
    pub fn calm() -> Self {
        Self {
            delay_min: 2,
            delay_max: 20,
            loss_probability: 0.0,
            duplicate_probability: 0.0,
        }
    }

    /// A random misbehaving network.
    pub fn random(rng: &mut SimRng) -> Self {
        let delay_min = rng.range(1, 20);
        Self {
            delay_min,
            delay_max: delay_min + rng.range(0, 300),
            loss_probability: rng.range(0, 25) as f64 / 100.0,
            duplicate_probability: rng.range(0, 10) as f64 / 100.0,
        }
    }
}

/// The network: its options and the links that are cut.
#[derive(Debug)]
pub struct Network {
    /// Current behaviour.
    pub options: NetworkOptions,
    /// `(from, to)` pairs whose messages are dropped.
    cut: BTreeSet<(NodeId, NodeId)>,
}

impl Network {
    /// A network with the given behaviour and no partition.
    pub fn new(options: NetworkOptions) -> Self {
        Self {
            options,
            cut: BTreeSet::new(),
        }
    }

    /// Decides the fate of a message sent now: the delays of its deliveries (none when lost, two
    /// when duplicated).
    pub fn send(&self, message: &Message, rng: &mut SimRng) -> Vec<u64> {
        if self.is_cut(message.from, message.to) || rng.chance(self.options.loss_probability) {
            return Vec::new();
        }
        let mut delays = vec![rng.range(self.options.delay_min, self.options.delay_max + 1)];
        if rng.chance(self.options.duplicate_probability) {
            delays.push(rng.range(self.options.delay_min, self.options.delay_max * 2 + 1));
        }
        delays
    }

    /// Whether messages from `from` to `to` are dropped (checked again at delivery, so messages
    /// in flight when a partition starts are lost too).
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut.contains(&(from, to))
    }

    /// Cuts every link between `side` and the other `nodes`; one way only when `one_way`
    /// (messages from `side` to the others are lost, the other direction works).
    pub fn partition(&mut self, side: &BTreeSet<NodeId>, nodes: &BTreeSet<NodeId>, one_way: bool) {
        for a in side {
            for b in nodes.difference(side) {
                self.cut.insert((*a, *b));
                if !one_way {
                    self.cut.insert((*b, *a));
                }
            }
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }
}
