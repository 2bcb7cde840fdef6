//! Linearizability checker for key-value register histories.
//!
//! A history is a set of client operations ([`Event`]s) against a map from `String` keys to
//! registers holding `Option<u64>` (initially `None`), each with the logical time the client
//! issued it (`call`) and, if it ever learned the result, the time it did so (`ret`) together with
//! that result ([`Outcome`]). [`check`] decides whether some total order of the operations
//! (a *linearization*) both respects real time — if `a.ret < b.call` then `a` comes before `b` —
//! and explains every observed result with a sequential map.
//!
//! # Algorithm
//!
//! Linearizability is *compositional* (Herlihy & Wing): a history over a map is linearizable iff
//! the sub-history of every key is. [`check`] therefore partitions the history by key and checks
//! each key's sub-history with the Wing & Gong / Lowe algorithm as implemented by Porcupine:
//!
//! * every operation becomes a *call* entry and, if its result is known, a *return* entry, in a
//!   doubly-linked list sorted by time. At equal timestamps calls sort before returns, so an
//!   operation returning at the tick another one is called counts as concurrent with it (only
//!   `a.ret < b.call`, strictly, orders `a` before `b`);
//! * a depth-first search repeatedly picks a call entry that precedes the first remaining return
//!   entry (an operation that may take effect next), applies it to the register if its result
//!   agrees with the register's state, and *lifts* its entries out of the list; when it reaches a
//!   return entry — an operation that had to take effect by now but could not — it backtracks;
//! * a cache of `(set of linearized operations, register state)` pairs prunes every search state
//!   that was already explored, since the rest of the search depends on nothing else.
//!
//! # Unknown outcomes
//!
//! An operation with `ret == None` or [`Outcome::Unknown`] is one whose client never learned the
//! result (timeout, crash). It has no return entry: it may take effect at any point after its call
//! — even after its client gave up — or never. A get with an unknown outcome constrains nothing
//! and is dropped. A put, delete or compare-and-swap with an unknown outcome may be linearized
//! anywhere after its call or left out entirely; when it is linearized, a compare-and-swap swaps
//! exactly when the register holds its expected value. The search succeeds as soon as every
//! operation *with* a known outcome has been linearized.

use std::collections::BTreeMap;
// The search cache is only inserted into and queried, never iterated, so a `HashSet` cannot make
// the checker's behaviour depend on hash order. Allowed despite the ban in raft-core/clippy.toml,
// which clippy also applies to crates nested under raft-core/ that lack their own clippy.toml.
#[allow(clippy::disallowed_types)]
use std::collections::HashSet;
use std::fmt::Write as _;

/// An operation a client issued against the key-value map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Read the value stored under `key`.
    Get {
        /// The key read.
        key: String,
    },
    /// Store `value` under `key`.
    Put {
        /// The key written.
        key: String,
        /// The value stored.
        value: u64,
    },
    /// Remove `key` from the map (its register becomes `None`).
    Delete {
        /// The key removed.
        key: String,
    },
    /// Compare-and-swap: store `new` under `key` iff its current value equals `expected`
    /// (`None` meaning "absent").
    Cas {
        /// The key compared and possibly written.
        key: String,
        /// The value the register must hold for the swap to happen.
        expected: Option<u64>,
        /// The value stored if the swap happens.
        new: u64,
    },
}

impl Op {
    /// The key this operation reads or writes.
    #[must_use]
    pub fn key(&self) -> &str {
        match self {
            Self::Get { key }
            | Self::Put { key, .. }
            | Self::Delete { key }
            | Self::Cas { key, .. } => key,
        }
    }
}

/// What the client learned about an operation's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A [`Op::Get`] returned this value (`None`: the key was absent).
    Get(Option<u64>),
    /// A [`Op::Put`] was acknowledged.
    Put,
    /// A [`Op::Delete`] was acknowledged.
    Delete,
    /// A [`Op::Cas`] completed; `swapped` tells whether the register held the expected value.
    Cas {
        /// Whether the swap happened.
        swapped: bool,
    },
    /// The client never learned the result (timeout, crash): the operation may have taken effect
    /// at any point after its call, or never.
    Unknown,
}

/// One operation of a history: who issued it, when, and what they learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The client that issued the operation (informational: used in explanations only).
    pub client: u64,
    /// The operation.
    pub op: Op,
    /// Logical time at which the operation was issued.
    pub call: u64,
    /// Logical time at which the client learned the result, or `None` if it never did. Must not
    /// be earlier than `call`. Timestamps need not be distinct: an operation is ordered before
    /// another only if its `ret` is strictly smaller than the other's `call`.
    pub ret: Option<u64>,
    /// The result. Must match the kind of `op` unless it is [`Outcome::Unknown`]. An event with
    /// `ret == None` is treated as having an unknown outcome whatever this field says, and an
    /// event with [`Outcome::Unknown`] as never having returned whatever `ret` says.
    pub outcome: Outcome,
}

impl Event {
    /// Whether the client learned the result of this operation.
    fn is_known(&self) -> bool {
        self.ret.is_some() && self.outcome != Outcome::Unknown
    }
}

/// A history of operations against a key-value map, in any order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    events: Vec<Event>,
}

impl History {
    /// An empty history.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one operation to the history.
    pub fn push(&mut self, e: Event) {
        self.events.push(e);
    }

    /// The number of operations in the history.
    #[must_use]
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the history holds no operations.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The operations, in the order they were pushed. Explanations refer to an operation by its
    /// index in this slice (`#index`).
    #[must_use]
    pub fn events(&self) -> &[Event] {
        &self.events
    }
}

impl FromIterator<Event> for History {
    fn from_iter<I: IntoIterator<Item = Event>>(iter: I) -> Self {
        Self {
            events: iter.into_iter().collect(),
        }
    }
}

impl Extend<Event> for History {
    fn extend<I: IntoIterator<Item = Event>>(&mut self, iter: I) {
        self.events.extend(iter);
    }
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's sub-history has a linearization.
    Linearizable,
    /// The sub-history of `key` has no linearization (or contains a malformed event).
    NotLinearizable {
        /// The offending key.
        key: String,
        /// Human-readable explanation: the longest linearizable prefix found and the operations
        /// that could not be placed after it.
        explanation: String,
    },
    /// The search for `key` exceeded the step limit before reaching a verdict (and no other key
    /// was found not linearizable).
    Timeout {
        /// The key whose search was abandoned.
        key: String,
    },
}

impl Verdict {
    /// Whether this is [`Verdict::Linearizable`].
    #[must_use]
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Self::Linearizable)
    }
}

/// Checks whether `history` is linearizable with respect to a map of `Option<u64>` registers that
/// all start as `None`.
///
/// Keys are checked independently, in key order, each with a budget of `step_limit_per_key`
/// search steps. A definite violation on any key takes precedence over a timeout on another: the
/// result is the first [`Verdict::NotLinearizable`] in key order if there is one, else the first
/// [`Verdict::Timeout`], else [`Verdict::Linearizable`]. A malformed event (`ret < call`, or an
/// outcome of the wrong kind for its operation) makes its key [`Verdict::NotLinearizable`].
#[must_use]
pub fn check(history: &History, step_limit_per_key: u64) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, event) in history.events.iter().enumerate() {
        by_key.entry(event.op.key()).or_default().push(index);
    }
    let mut timeout = None;
    for (key, indices) in by_key {
        let result = match KeyHistory::new(&history.events, &indices) {
            Ok(sub) => sub.check(step_limit_per_key),
            Err(explanation) => KeyResult::Violation(explanation),
        };
        match result {
            KeyResult::Linearizable => {}
            KeyResult::Violation(explanation) => {
                return Verdict::NotLinearizable {
                    key: key.to_owned(),
                    explanation,
                };
            }
            KeyResult::Timeout => {
                timeout.get_or_insert_with(|| key.to_owned());
            }
        }
    }
    match timeout {
        Some(key) => Verdict::Timeout { key },
        None => Verdict::Linearizable,
    }
}

/// The effect of one operation on its key's register, with its observed result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// A get that returned this value.
    Read(Option<u64>),
    /// A put (`Some`) or delete (`None`), acknowledged or not.
    Write(Option<u64>),
    /// A compare-and-swap; `swapped` is `None` if the outcome is unknown.
    Cas {
        expected: Option<u64>,
        new: u64,
        swapped: Option<bool>,
    },
}

impl Action {
    /// Applies the action to a register holding `state`: the new state, or `None` if the observed
    /// result cannot happen in `state`.
    fn step(self, state: Option<u64>) -> Option<Option<u64>> {
        match self {
            Self::Read(value) => (value == state).then_some(state),
            Self::Write(value) => Some(value),
            Self::Cas {
                expected,
                new,
                swapped,
            } => {
                let matches = state == expected;
                if swapped.is_some_and(|swapped| swapped != matches) {
                    None
                } else if matches {
                    Some(Some(new))
                } else {
                    Some(state)
                }
            }
        }
    }
}

/// One operation of a single key's sub-history, ready for the search.
#[derive(Debug, Clone)]
struct KeyOp {
    /// Index of the operation in the whole history (for explanations).
    index: usize,
    client: u64,
    action: Action,
    call: u64,
    /// `None` for an unknown outcome: the operation never returns and is optional.
    ret: Option<u64>,
}

impl KeyOp {
    /// Builds the search operation for `event`, or `Ok(None)` if it constrains nothing (a get with
    /// an unknown outcome), or an explanation if the event is malformed.
    fn new(index: usize, event: &Event) -> Result<Option<Self>, String> {
        if let Some(ret) = event.ret
            && ret < event.call
        {
            return Err(format!(
                "malformed event #{index} (client {}): returns at {ret} before its call at {}",
                event.client, event.call
            ));
        }
        let known = event.is_known();
        let outcome = if known {
            &event.outcome
        } else {
            &Outcome::Unknown
        };
        let action = match (&event.op, outcome) {
            (Op::Get { .. }, Outcome::Unknown) => return Ok(None),
            (Op::Get { .. }, Outcome::Get(value)) => Action::Read(*value),
            (Op::Put { value, .. }, Outcome::Put | Outcome::Unknown) => Action::Write(Some(*value)),
            (Op::Delete { .. }, Outcome::Delete | Outcome::Unknown) => Action::Write(None),
            (Op::Cas { expected, new, .. }, Outcome::Cas { swapped }) => Action::Cas {
                expected: *expected,
                new: *new,
                swapped: Some(*swapped),
            },
            (Op::Cas { expected, new, .. }, Outcome::Unknown) => Action::Cas {
                expected: *expected,
                new: *new,
                swapped: None,
            },
            (op, outcome) => {
                return Err(format!(
                    "malformed event #{index} (client {}): operation {op:?} has outcome \
                     {outcome:?}",
                    event.client
                ));
            }
        };
        Ok(Some(Self {
            index,
            client: event.client,
            action,
            call: event.call,
            ret: if known { event.ret } else { None },
        }))
    }

    /// Readable one-line description, e.g. `#3 client 1: get -> Some(7) [call 4, ret 9]`.
    fn describe(&self) -> String {
        let opt = |v: Option<u64>| match v {
            Some(v) => format!("Some({v})"),
            None => "None".to_owned(),
        };
        let what = match self.action {
            Action::Read(value) => format!("get -> {}", opt(value)),
            Action::Write(Some(value)) => format!("put({value})"),
            Action::Write(None) => "delete".to_owned(),
            Action::Cas {
                expected,
                new,
                swapped,
            } => {
                let result = match swapped {
                    Some(true) => "swapped",
                    Some(false) => "not swapped",
                    None => "outcome unknown",
                };
                format!("cas(expected {}, new {new}) -> {result}", opt(expected))
            }
        };
        let unknown = match (self.ret, self.action) {
            (None, Action::Write(_)) => " -> outcome unknown",
            _ => "",
        };
        let ret = self
            .ret
            .map_or_else(|| "never".to_owned(), |ret| ret.to_string());
        format!(
            "#{} client {}: {what}{unknown} [call {}, ret {ret}]",
            self.index, self.client, self.call
        )
    }
}

/// Result of checking one key.
#[derive(Debug)]
enum KeyResult {
    Linearizable,
    Violation(String),
    Timeout,
}

/// A set of operation indices (the operations linearized so far).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(64)])
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }

    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

/// Marks the end of the entry list (no next node).
const NIL: usize = usize::MAX;
/// The list's sentinel head node.
const HEAD: usize = 0;

/// A call or return entry of the time-ordered entry list.
#[derive(Debug, Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
}

/// The sub-history of one key, with the time-ordered entry list the search walks.
#[derive(Debug)]
struct KeyHistory {
    ops: Vec<KeyOp>,
    /// Entries in time order: calls before returns at equal times, then by operation.
    order: Vec<Entry>,
}

impl KeyHistory {
    fn new(events: &[Event], indices: &[usize]) -> Result<Self, String> {
        let mut ops = Vec::with_capacity(indices.len());
        for &index in indices {
            if let Some(op) = KeyOp::new(index, &events[index])? {
                ops.push(op);
            }
        }
        let mut keyed = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            keyed.push((op.call, false, i));
            if let Some(ret) = op.ret {
                keyed.push((ret, true, i));
            }
        }
        // `false < true`: at equal times, calls come before returns (they are concurrent).
        keyed.sort_unstable();
        let order = keyed
            .into_iter()
            .map(|(_, is_return, op)| Entry {
                op,
                is_call: !is_return,
            })
            .collect();
        Ok(Self { ops, order })
    }

    /// Runs the WGL search, giving up after `step_limit` steps.
    fn check(&self, step_limit: u64) -> KeyResult {
        let n = self.ops.len();
        // Node 0 is the head sentinel; entry `k` of `order` is node `k + 1`.
        let nodes = self.order.len() + 1;
        let mut next: Vec<usize> = (1..=nodes)
            .map(|k| if k == nodes { NIL } else { k })
            .collect();
        // The head's `prev` wraps to `NIL`.
        let mut prev: Vec<usize> = (0..nodes).map(|k| k.wrapping_sub(1)).collect();
        let mut call_node = vec![NIL; n];
        let mut ret_node = vec![NIL; n];
        for (k, entry) in self.order.iter().enumerate() {
            if entry.is_call {
                call_node[entry.op] = k + 1;
            } else {
                ret_node[entry.op] = k + 1;
            }
        }
        let unlink = |next: &mut [usize], prev: &mut [usize], node: usize| {
            next[prev[node]] = next[node];
            if next[node] != NIL {
                prev[next[node]] = prev[node];
            }
        };
        let relink = |next: &mut [usize], prev: &mut [usize], node: usize| {
            next[prev[node]] = node;
            if next[node] != NIL {
                prev[next[node]] = node;
            }
        };

        let mut remaining_returns = self.ops.iter().filter(|op| op.ret.is_some()).count();
        let mut state: Option<u64> = None;
        let mut linearized = BitSet::new(n);
        // Membership only (see the `HashSet` import).
        #[allow(clippy::disallowed_types)]
        let mut cache: HashSet<(BitSet, Option<u64>)> = HashSet::new();
        // The operations linearized so far, with the register state before each.
        let mut stack: Vec<(usize, Option<u64>)> = Vec::new();
        let mut longest: Vec<usize> = Vec::new();
        let mut steps: u64 = 0;
        let mut node = next[HEAD];
        while remaining_returns > 0 {
            steps += 1;
            if steps > step_limit {
                return KeyResult::Timeout;
            }
            // While a return entry remains, the scan meets one before running off the list (every
            // return follows its call), so `NIL` cannot occur; treat it as a dead end regardless.
            let entry = (node != NIL).then(|| self.order[node - 1]);
            if let Some(entry) = entry.filter(|entry| entry.is_call) {
                let op = entry.op;
                if let Some(new_state) = self.ops[op].action.step(state) {
                    let mut new_linearized = linearized.clone();
                    new_linearized.set(op);
                    if cache.insert((new_linearized, new_state)) {
                        stack.push((op, state));
                        state = new_state;
                        linearized.set(op);
                        unlink(&mut next, &mut prev, call_node[op]);
                        if ret_node[op] != NIL {
                            unlink(&mut next, &mut prev, ret_node[op]);
                            remaining_returns -= 1;
                        }
                        if stack.len() > longest.len() {
                            longest = stack.iter().map(|&(op, _)| op).collect();
                        }
                        node = next[HEAD];
                        continue;
                    }
                }
                node = next[node];
            } else {
                // A return entry: its operation had to be linearized by now. Backtrack.
                let Some((op, previous)) = stack.pop() else {
                    return KeyResult::Violation(self.explain(&longest));
                };
                state = previous;
                linearized.clear(op);
                if ret_node[op] != NIL {
                    relink(&mut next, &mut prev, ret_node[op]);
                    remaining_returns += 1;
                }
                relink(&mut next, &mut prev, call_node[op]);
                node = next[call_node[op]];
            }
        }
        KeyResult::Linearizable
    }

    /// Explains a failed search from the longest linearizable prefix it found.
    fn explain(&self, longest: &[usize]) -> String {
        /// Only this many of the prefix's last operations are listed.
        const MAX_PREFIX_LISTED: usize = 40;
        /// Candidates listed beyond this many are summarized.
        const MAX_CANDIDATES_LISTED: usize = 20;
        let mut done = BitSet::new(self.ops.len());
        let mut state = None;
        let mut out = String::new();
        let known = self.ops.iter().filter(|op| op.ret.is_some()).count();
        let _ = writeln!(
            out,
            "no linearization exists; longest linearizable prefix found ({} of {} operations, \
             {known} of them with known outcomes, must all be linearized):",
            longest.len(),
            self.ops.len(),
        );
        if longest.is_empty() {
            out.push_str("  (empty)\n");
        }
        let elided = longest.len().saturating_sub(MAX_PREFIX_LISTED);
        if elided > 0 {
            let _ = writeln!(out, "  ... ({elided} earlier operations elided)");
        }
        for (position, &op) in longest.iter().enumerate() {
            // `longest` was built by applying each step successfully, so replay cannot fail; keep
            // the old state rather than panic if it somehow did.
            state = self.ops[op].action.step(state).unwrap_or(state);
            done.set(op);
            if position >= elided {
                let _ = writeln!(
                    out,
                    "  {}. {}  => {state:?}",
                    position + 1,
                    self.ops[op].describe()
                );
            }
        }
        let _ = writeln!(out, "register after the prefix: {state:?}");

        // The operations that may come next: those called before the earliest return among the
        // operations not yet linearized.
        let mut candidates = Vec::new();
        let mut blocking = None;
        for entry in &self.order {
            if done.contains(entry.op) {
                continue;
            }
            if entry.is_call {
                candidates.push(entry.op);
            } else {
                blocking = Some(entry.op);
                break;
            }
        }
        if let Some(op) = blocking {
            let _ = writeln!(
                out,
                "must be linearized before anything called later: {}",
                self.ops[op].describe()
            );
        }
        out.push_str("none of the operations that may come next can be placed:\n");
        for &op in candidates.iter().take(MAX_CANDIDATES_LISTED) {
            let reason = if self.ops[op].action.step(state).is_some() {
                "consistent with the register, but no linearization of the rest follows"
            } else {
                "result inconsistent with the register"
            };
            let _ = writeln!(out, "  {}: {reason}", self.ops[op].describe());
        }
        if candidates.len() > MAX_CANDIDATES_LISTED {
            let _ = writeln!(
                out,
                "  ... and {} more",
                candidates.len() - MAX_CANDIDATES_LISTED
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 1_000_000;

    fn get(client: u64, key: &str, call: u64, ret: u64, value: Option<u64>) -> Event {
        Event {
            client,
            op: Op::Get {
                key: key.to_owned(),
            },
            call,
            ret: Some(ret),
            outcome: Outcome::Get(value),
        }
    }

    fn put(client: u64, key: &str, value: u64, call: u64, ret: u64) -> Event {
        Event {
            client,
            op: Op::Put {
                key: key.to_owned(),
                value,
            },
            call,
            ret: Some(ret),
            outcome: Outcome::Put,
        }
    }

    fn put_unknown(client: u64, key: &str, value: u64, call: u64) -> Event {
        Event {
            client,
            op: Op::Put {
                key: key.to_owned(),
                value,
            },
            call,
            ret: None,
            outcome: Outcome::Unknown,
        }
    }

    fn delete(client: u64, key: &str, call: u64, ret: u64) -> Event {
        Event {
            client,
            op: Op::Delete {
                key: key.to_owned(),
            },
            call,
            ret: Some(ret),
            outcome: Outcome::Delete,
        }
    }

    fn cas(
        client: u64,
        key: &str,
        expected: Option<u64>,
        new: u64,
        call: u64,
        ret: Option<u64>,
        swapped: Option<bool>,
    ) -> Event {
        Event {
            client,
            op: Op::Cas {
                key: key.to_owned(),
                expected,
                new,
            },
            call,
            ret,
            outcome: swapped.map_or(Outcome::Unknown, |swapped| Outcome::Cas { swapped }),
        }
    }

    fn verdict(events: impl IntoIterator<Item = Event>) -> Verdict {
        check(&events.into_iter().collect(), LIMIT)
    }

    fn assert_linearizable(events: impl IntoIterator<Item = Event>) {
        let verdict = verdict(events);
        assert_eq!(verdict, Verdict::Linearizable);
    }

    /// Asserts the verdict is a violation on `key` and returns the explanation.
    fn assert_violation(events: impl IntoIterator<Item = Event>, key: &str) -> String {
        match verdict(events) {
            Verdict::NotLinearizable {
                key: found,
                explanation,
            } => {
                assert_eq!(found, key, "wrong key; explanation:\n{explanation}");
                explanation
            }
            other => panic!("expected a violation on {key:?}, got {other:?}"),
        }
    }

    #[test]
    fn history_builder_counts_events() {
        let mut history = History::new();
        assert!(history.is_empty());
        history.push(put(1, "k", 1, 0, 1));
        history.extend([get(1, "k", 2, 3, Some(1))]);
        assert_eq!(history.len(), 2);
        assert!(!history.is_empty());
        assert_eq!(history.events()[1].op.key(), "k");
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_eq!(check(&History::new(), 0), Verdict::Linearizable);
        assert!(Verdict::Linearizable.is_linearizable());
    }

    #[test]
    fn sequential_put_get_history_is_linearizable() {
        assert_linearizable([
            get(1, "k", 0, 1, None),
            put(1, "k", 1, 2, 3),
            get(2, "k", 4, 5, Some(1)),
            put(2, "k", 2, 6, 7),
            get(1, "k", 8, 9, Some(2)),
            delete(1, "k", 10, 11),
            get(2, "k", 12, 13, None),
        ]);
    }

    #[test]
    fn get_returning_a_value_never_written_is_not_linearizable() {
        let explanation =
            assert_violation([put(1, "k", 1, 0, 1), get(2, "k", 2, 3, Some(42))], "k");
        assert!(explanation.contains("get -> Some(42)"), "{explanation}");
    }

    #[test]
    fn stale_read_after_completed_put_is_not_linearizable() {
        assert_violation([put(1, "k", 1, 0, 2), get(2, "k", 3, 4, None)], "k");
    }

    #[test]
    fn read_called_at_the_tick_a_put_returns_is_concurrent_with_it() {
        // ret == call is not happens-before: the read may be linearized before the put.
        assert_linearizable([put(1, "k", 1, 0, 2), get(2, "k", 2, 4, None)]);
        assert_linearizable([put(1, "k", 1, 0, 2), get(2, "k", 2, 4, Some(1))]);
    }

    #[test]
    fn read_after_a_delete_returns_sees_absence() {
        assert_linearizable([
            put(1, "k", 1, 0, 1),
            delete(2, "k", 2, 3),
            get(1, "k", 4, 5, None),
        ]);
        assert_violation(
            [
                put(1, "k", 1, 0, 1),
                delete(2, "k", 2, 3),
                get(1, "k", 4, 5, Some(1)),
            ],
            "k",
        );
    }

    #[test]
    fn concurrent_put_and_get_may_see_either_value() {
        assert_linearizable([put(1, "k", 1, 0, 10), get(2, "k", 2, 5, None)]);
        assert_linearizable([put(1, "k", 1, 0, 10), get(2, "k", 2, 5, Some(1))]);
    }

    #[test]
    fn concurrent_reads_cannot_disagree_on_order_with_a_later_read() {
        // The put is concurrent with the first read, which saw it; the later read must too.
        assert_violation(
            [
                put(1, "k", 1, 0, 10),
                get(2, "k", 2, 5, Some(1)),
                get(3, "k", 6, 8, None),
            ],
            "k",
        );
    }

    #[test]
    fn unknown_put_may_or_may_not_be_seen_by_a_later_read() {
        assert_linearizable([put_unknown(1, "k", 1, 0), get(2, "k", 5, 6, Some(1))]);
        assert_linearizable([put_unknown(1, "k", 1, 0), get(2, "k", 5, 6, None)]);
    }

    #[test]
    fn unknown_put_seen_then_unseen_by_sequential_reads_is_not_linearizable() {
        let explanation = assert_violation(
            [
                put_unknown(1, "k", 1, 0),
                get(2, "k", 5, 6, Some(1)),
                get(2, "k", 7, 8, None),
            ],
            "k",
        );
        assert!(explanation.contains("outcome unknown"), "{explanation}");
    }

    #[test]
    fn unknown_put_cannot_take_effect_before_its_call() {
        assert_violation([get(2, "k", 0, 1, Some(1)), put_unknown(1, "k", 1, 2)], "k");
    }

    #[test]
    fn unknown_put_may_take_effect_after_its_client_timed_out() {
        // `ret: Some` with an unknown outcome: the client gave up at 1, the put landed later.
        let mut late = put_unknown(1, "k", 1, 0);
        late.ret = Some(1);
        assert_linearizable([late, get(2, "k", 2, 3, None), get(2, "k", 4, 5, Some(1))]);
    }

    #[test]
    fn unknown_get_is_ignored() {
        let unknown_get = Event {
            client: 3,
            op: Op::Get {
                key: "k".to_owned(),
            },
            call: 0,
            ret: None,
            outcome: Outcome::Unknown,
        };
        assert_linearizable([
            unknown_get,
            put(1, "k", 1, 1, 2),
            get(1, "k", 3, 4, Some(1)),
        ]);
    }

    #[test]
    fn cas_swapped_must_match_the_register() {
        assert_linearizable([
            put(1, "k", 1, 0, 1),
            cas(1, "k", Some(1), 2, 2, Some(3), Some(true)),
            get(1, "k", 4, 5, Some(2)),
        ]);
        assert_linearizable([cas(1, "k", None, 7, 0, Some(1), Some(true))]);
        // Swapped although the register held 1, not 5.
        assert_violation(
            [
                put(1, "k", 1, 0, 1),
                cas(1, "k", Some(5), 2, 2, Some(3), Some(true)),
            ],
            "k",
        );
    }

    #[test]
    fn cas_not_swapped_must_match_the_register() {
        assert_linearizable([
            put(1, "k", 1, 0, 1),
            cas(1, "k", Some(5), 2, 2, Some(3), Some(false)),
            get(1, "k", 4, 5, Some(1)),
        ]);
        // Not swapped although the register held the expected value.
        assert_violation(
            [
                put(1, "k", 1, 0, 1),
                cas(1, "k", Some(1), 2, 2, Some(3), Some(false)),
            ],
            "k",
        );
        // A failed cas must not change the register.
        assert_violation(
            [
                cas(1, "k", Some(5), 2, 0, Some(1), Some(false)),
                get(1, "k", 2, 3, Some(2)),
            ],
            "k",
        );
    }

    #[test]
    fn concurrent_cas_may_see_a_concurrent_put() {
        assert_linearizable([
            put(1, "k", 1, 0, 10),
            cas(2, "k", Some(1), 2, 1, Some(5), Some(true)),
            get(3, "k", 11, 12, Some(2)),
        ]);
    }

    #[test]
    fn unknown_cas_may_or_may_not_have_swapped() {
        let setup = || [put(1, "k", 1, 0, 1), cas(2, "k", Some(1), 2, 2, None, None)];
        assert_linearizable(setup().into_iter().chain([get(1, "k", 5, 6, Some(2))]));
        assert_linearizable(setup().into_iter().chain([get(1, "k", 5, 6, Some(1))]));
        // But once seen swapped it stays swapped.
        assert_violation(
            setup()
                .into_iter()
                .chain([get(1, "k", 5, 6, Some(2)), get(1, "k", 7, 8, Some(1))]),
            "k",
        );
    }

    #[test]
    fn unknown_cas_swaps_only_if_the_register_held_the_expected_value() {
        assert_violation(
            [
                put(1, "k", 1, 0, 1),
                cas(2, "k", Some(9), 2, 2, None, None),
                get(1, "k", 5, 6, Some(2)),
            ],
            "k",
        );
        // It could have swapped after a later put made the expected value current.
        assert_linearizable([
            put(1, "k", 1, 0, 1),
            cas(2, "k", Some(9), 2, 2, None, None),
            put(1, "k", 9, 3, 4),
            get(1, "k", 5, 6, Some(2)),
        ]);
    }

    #[test]
    fn keys_are_checked_independently() {
        // Interleaved writes to two keys: each key's sub-history is sequentially consistent with
        // its own register even though the values would clash on a single register.
        assert_linearizable([
            put(1, "a", 1, 0, 1),
            put(2, "b", 2, 2, 3),
            get(1, "a", 4, 5, Some(1)),
            get(2, "b", 6, 7, Some(2)),
            get(3, "c", 8, 9, None),
        ]);
    }

    #[test]
    fn violation_reports_the_offending_key() {
        assert_violation(
            [
                put(1, "a", 1, 0, 1),
                put(2, "b", 2, 2, 3),
                get(1, "a", 4, 5, Some(1)),
                get(2, "b", 6, 7, Some(1)),
                get(3, "c", 8, 9, None),
            ],
            "b",
        );
    }

    #[test]
    fn explanation_names_the_longest_prefix_and_the_unplaceable_operation() {
        let explanation = assert_violation(
            [
                put(1, "k", 1, 0, 1),
                get(2, "k", 2, 3, Some(1)),
                put(1, "k", 2, 4, 5),
                get(2, "k", 6, 7, Some(1)),
            ],
            "k",
        );
        assert!(
            explanation.contains("longest linearizable prefix found (3 of 4"),
            "{explanation}"
        );
        assert!(
            explanation.contains("1. #0 client 1: put(1)"),
            "{explanation}"
        );
        assert!(
            explanation.contains("3. #2 client 1: put(2)"),
            "{explanation}"
        );
        assert!(
            explanation.contains("register after the prefix: Some(2)"),
            "{explanation}"
        );
        assert!(
            explanation.contains(
                "#3 client 2: get -> Some(1) [call 6, ret 7]: result inconsistent with the register"
            ),
            "{explanation}"
        );
    }

    #[test]
    fn step_limit_exceeded_reports_timeout() {
        let events = (0..10).map(|i| put(i, "k", i, 0, 100));
        let history: History = events.chain([get(0, "k", 101, 102, Some(3))]).collect();
        assert_eq!(
            check(&history, 3),
            Verdict::Timeout {
                key: "k".to_owned()
            }
        );
        assert_eq!(check(&history, LIMIT), Verdict::Linearizable);
    }

    #[test]
    fn violation_takes_precedence_over_a_timeout_on_another_key() {
        let mut history: History = (0..10).map(|i| put(i, "a", i, 0, 100)).collect();
        history.push(get(0, "a", 101, 102, Some(3)));
        history.push(get(0, "z", 0, 1, Some(1)));
        match check(&history, 5) {
            Verdict::NotLinearizable { key, .. } => assert_eq!(key, "z"),
            other => panic!("expected a violation on z, got {other:?}"),
        }
    }

    #[test]
    fn malformed_events_are_reported() {
        let explanation = assert_violation([put(1, "k", 1, 5, 4)], "k");
        assert!(explanation.contains("malformed event #0"), "{explanation}");
        let mut wrong_kind = get(1, "k", 0, 1, None);
        wrong_kind.outcome = Outcome::Put;
        let explanation = assert_violation([wrong_kind], "k");
        assert!(explanation.contains("malformed event #0"), "{explanation}");
    }

    /// Tiny deterministic xorshift64 generator for the randomized tests.
    struct XorShift(u64);

    impl XorShift {
        fn new(seed: u64) -> Self {
            // A zero state would stay zero forever.
            Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }

        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        /// Uniform-ish in `0..n` (`n > 0`).
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    /// Time between consecutive linearization points in generated histories.
    const SPACING: u64 = 20;

    /// Generates a history by running `ops` random operations sequentially against a simulated
    /// map, operation `i` taking effect at time `max_widen + i * SPACING`, then widening each
    /// interval around that point by up to `max_widen` on either side (results unchanged), so the
    /// history is linearizable by construction. Client `i % clients` issues operation `i`; with
    /// `max_widen < SPACING * clients / 2` each client's operations stay sequential. A write
    /// with an unknown outcome (`unknown_percent`) takes effect at its point or not at all.
    fn generate(
        rng: &mut XorShift,
        keys: &[&str],
        clients: u64,
        ops: u64,
        max_widen: u64,
        unknown_percent: u64,
    ) -> History {
        let mut map: BTreeMap<String, u64> = BTreeMap::new();
        let mut history = History::new();
        for i in 0..ops {
            let key = keys[rng.below(keys.len() as u64) as usize].to_owned();
            let point = max_widen + i * SPACING;
            let call = point - rng.below(max_widen + 1);
            let ret = point + rng.below(max_widen + 1);
            let current = map.get(&key).copied();
            let value = rng.below(5);
            let unknown = rng.chance(unknown_percent);
            // An unknown write may or may not take effect.
            let applied = !unknown || rng.chance(50);
            let (op, outcome) = match rng.below(4) {
                0 => (Op::Get { key: key.clone() }, Outcome::Get(current)),
                1 => {
                    if applied {
                        map.insert(key.clone(), value);
                    }
                    let op = Op::Put {
                        key: key.clone(),
                        value,
                    };
                    (op, Outcome::Put)
                }
                2 => {
                    if applied {
                        map.remove(&key);
                    }
                    (Op::Delete { key: key.clone() }, Outcome::Delete)
                }
                _ => {
                    let expected = if rng.chance(50) {
                        current
                    } else {
                        rng.chance(80).then(|| rng.below(5))
                    };
                    let swapped = expected == current;
                    if applied && swapped {
                        map.insert(key.clone(), value);
                    }
                    let op = Op::Cas {
                        key: key.clone(),
                        expected,
                        new: value,
                    };
                    (op, Outcome::Cas { swapped })
                }
            };
            let (ret, outcome) = if unknown {
                (None, Outcome::Unknown)
            } else {
                (Some(ret), outcome)
            };
            history.push(Event {
                client: i % clients,
                op,
                call,
                ret,
                outcome,
            });
        }
        history
    }

    #[test]
    fn random_sequential_histories_with_widened_intervals_are_linearizable() {
        let mut mutated = 0;
        for seed in 0..500 {
            let mut rng = XorShift::new(seed);
            let ops = 10 + rng.below(30);
            let history = generate(&mut rng, &["a", "b", "c"], 8, ops, 3 * SPACING, 10);
            let verdict = check(&history, LIMIT);
            assert_eq!(verdict, Verdict::Linearizable, "seed {seed}: {history:#?}");

            // Make one known read return a value never written: no linearization explains it.
            let reads: Vec<usize> = (0..history.len())
                .filter(|&i| {
                    let event = &history.events()[i];
                    matches!(event.outcome, Outcome::Get(_)) && event.ret.is_some()
                })
                .collect();
            if reads.is_empty() {
                continue;
            }
            let victim = reads[rng.below(reads.len() as u64) as usize];
            let mut events = history.events().to_vec();
            events[victim].outcome = Outcome::Get(Some(1_000 + seed));
            let key = events[victim].op.key().to_owned();
            match check(&events.into_iter().collect(), LIMIT) {
                Verdict::NotLinearizable { key: found, .. } => {
                    assert_eq!(found, key, "seed {seed}")
                }
                other => panic!("seed {seed}: mutated read not caught: {other:?}"),
            }
            mutated += 1;
        }
        assert!(
            mutated > 400,
            "too few histories had a read to mutate: {mutated}"
        );
    }

    #[test]
    fn five_clients_two_hundred_ops_each_on_one_key_complete() {
        for seed in 0..3 {
            let mut rng = XorShift::new(seed);
            // Each client's operations are 5 * SPACING apart, so widening by up to 2 * SPACING
            // keeps them sequential while overlapping up to four other operations on each side.
            let history = generate(&mut rng, &["k"], 5, 1_000, 2 * SPACING, 0);
            assert_eq!(
                check(&history, 10_000_000),
                Verdict::Linearizable,
                "seed {seed}"
            );
        }
    }

    #[test]
    fn long_history_with_some_unknown_writes_completes() {
        let mut rng = XorShift::new(7);
        let history = generate(&mut rng, &["k"], 5, 1_000, 2 * SPACING, 2);
        assert_eq!(check(&history, 10_000_000), Verdict::Linearizable);
    }

    #[test]
    fn long_history_with_a_late_violation_is_caught_within_the_limit() {
        let mut rng = XorShift::new(11);
        let history = generate(&mut rng, &["k"], 5, 1_000, 2 * SPACING, 0);
        let mut events = history.events().to_vec();
        let last_read = events
            .iter()
            .rposition(|event| matches!(event.outcome, Outcome::Get(_)));
        // The generator emits a read roughly every fourth operation, so 1000 contain one.
        let last_read = last_read.expect("generated history contains a read");
        events[last_read].outcome = Outcome::Get(Some(1_000));
        match check(&events.into_iter().collect(), 10_000_000) {
            Verdict::NotLinearizable { key, explanation } => {
                assert_eq!(key, "k");
                assert!(
                    explanation.contains("earlier operations elided"),
                    "{explanation}"
                );
                assert!(
                    explanation.contains("get -> Some(1000)") && explanation.lines().count() < 60,
                    "{explanation}"
                );
            }
            other => panic!("late violation not caught: {other:?}"),
        }
    }

    /// Independent exhaustive oracle for one key: tries every order of the operations that
    /// respects real time, optionally dropping operations with unknown outcomes.
    fn brute_force(events: &[Event]) -> bool {
        fn known(event: &Event) -> bool {
            event.ret.is_some() && event.outcome != Outcome::Unknown
        }
        fn apply(event: &Event, state: Option<u64>) -> Option<Option<u64>> {
            let unknown = !known(event);
            match (&event.op, &event.outcome) {
                (Op::Get { .. }, _) if unknown => Some(state),
                (Op::Get { .. }, Outcome::Get(value)) => (*value == state).then_some(state),
                (Op::Put { value, .. }, _) => Some(Some(*value)),
                (Op::Delete { .. }, _) => Some(None),
                (Op::Cas { expected, new, .. }, outcome) => {
                    let swap = state == *expected;
                    match outcome {
                        Outcome::Cas { swapped } if !unknown && *swapped != swap => None,
                        _ => Some(if swap { Some(*new) } else { state }),
                    }
                }
                _ => None,
            }
        }
        fn search(events: &[Event], placed: &mut Vec<bool>, state: Option<u64>) -> bool {
            let pending: Vec<bool> = (0..events.len())
                .map(|i| !placed[i] && known(&events[i]))
                .collect();
            if !pending.contains(&true) {
                return true;
            }
            for i in 0..events.len() {
                if placed[i] {
                    continue;
                }
                // `i` may go next only if no pending known operation returned before its call.
                let blocked = (0..events.len())
                    .any(|j| pending[j] && events[j].ret.is_some_and(|ret| ret < events[i].call));
                if blocked {
                    continue;
                }
                if let Some(next) = apply(&events[i], state) {
                    placed[i] = true;
                    let found = search(events, placed, next);
                    placed[i] = false;
                    if found {
                        return true;
                    }
                }
            }
            false
        }
        search(events, &mut vec![false; events.len()], None)
    }

    #[test]
    fn agrees_with_brute_force_on_small_random_histories() {
        let mut outcomes = [0_u32; 2];
        for seed in 0..3_000 {
            let mut rng = XorShift::new(seed);
            let len = 1 + rng.below(7);
            let mut events = Vec::new();
            for client in 0..len {
                let call = rng.below(12);
                let ret = call + rng.below(6);
                let small = |rng: &mut XorShift| rng.chance(75).then(|| rng.below(3));
                let (op, outcome) = match rng.below(4) {
                    0 => (
                        Op::Get {
                            key: "k".to_owned(),
                        },
                        Outcome::Get(small(&mut rng)),
                    ),
                    1 => {
                        let value = rng.below(3);
                        let key = "k".to_owned();
                        (Op::Put { key, value }, Outcome::Put)
                    }
                    2 => (
                        Op::Delete {
                            key: "k".to_owned(),
                        },
                        Outcome::Delete,
                    ),
                    _ => {
                        let op = Op::Cas {
                            key: "k".to_owned(),
                            expected: small(&mut rng),
                            new: rng.below(3),
                        };
                        let outcome = Outcome::Cas {
                            swapped: rng.chance(50),
                        };
                        (op, outcome)
                    }
                };
                let (ret, outcome) = if rng.chance(20) {
                    (None, Outcome::Unknown)
                } else {
                    (Some(ret), outcome)
                };
                events.push(Event {
                    client,
                    op,
                    call,
                    ret,
                    outcome,
                });
            }
            let expected = brute_force(&events);
            outcomes[usize::from(expected)] += 1;
            let verdict = check(&events.iter().cloned().collect(), LIMIT);
            assert_eq!(
                verdict.is_linearizable(),
                expected,
                "seed {seed}: {verdict:?}\n{events:#?}"
            );
            assert!(!matches!(verdict, Verdict::Timeout { .. }), "seed {seed}");
        }
        // Both verdicts must be well represented for the comparison to mean anything.
        assert!(outcomes.iter().all(|&n| n > 500), "{outcomes:?}");
    }
}
