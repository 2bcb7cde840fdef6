//! The simulator's only source of randomness: one seeded, portable PRNG per run.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded random number generator; the same seed gives the same run on every machine.
#[derive(Debug)]
pub struct SimRng(ChaCha8Rng);

impl SimRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A number in `low..high` (`low` when the range is empty).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            low
        } else {
            self.0.random_range(low..high)
        }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.0.random_bool(p.min(1.0))
    }

    /// A uniformly chosen element, or `None` for an empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        Some(items[self.range(0, items.len() as u64) as usize])
    }

    /// A fresh seed for a node's own generator.
    pub fn seed(&mut self) -> u64 {
        self.range(0, u64::MAX)
    }
}
