//! Log matching (Raft §5.3, Figure 3): if two logs contain an entry with the same index and term,
//! the logs are identical in all entries up through that index. Checked over the durable logs.

use raft_core::{MemStorage, NodeId, Storage};

/// Checks every pair of logs. Returns the first violation found.
pub fn check_log_matching(logs: &[(NodeId, &MemStorage)]) -> Option<String> {
    for (i, (a_id, a)) in logs.iter().enumerate() {
        for (b_id, b) in &logs[i + 1..] {
            if let Some(violation) = check_pair(*a_id, a, *b_id, b) {
                return Some(violation);
            }
        }
    }
    None
}

fn check_pair(a_id: NodeId, a: &MemStorage, b_id: NodeId, b: &MemStorage) -> Option<String> {
    let (a_entries, b_entries) = (a.all_entries(), b.all_entries());
    let first = a.first_index().ok()?.max(b.first_index().ok()?);
    let last = a.last_index().ok()?.min(b.last_index().ok()?);
    // Find the highest index where both logs hold an entry of the same term; everything from
    // `first` up to it must then be identical.
    let mut index = last;
    while index >= first && index.get() > 0 {
        let (ta, tb) = (a.term(index).ok()?, b.term(index).ok()?);
        if ta == tb {
            break;
        }
        index = index.prev();
    }
    if index < first {
        return None;
    }
    let a_off = (first.get() - a.first_index().ok()?.get()) as usize;
    let b_off = (first.get() - b.first_index().ok()?.get()) as usize;
    let count = (index.get() + 1 - first.get()) as usize;
    for k in 0..count {
        let (ea, eb) = (&a_entries[a_off + k], &b_entries[b_off + k]);
        if ea != eb {
            return Some(format!(
                "logs of {a_id} and {b_id} agree at {index} (term {}) but differ at {}: {:?} vs \
                 {:?}",
                a.term(index).ok()?,
                ea.index,
                ea,
                eb
            ));
        }
    }
    None
}
