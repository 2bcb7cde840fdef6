//! Membership changes as a pure function from one configuration to the next.

use crate::error::Error;
use crate::types::{ConfChange, ConfChangeStep, ConfState, NodeId};

/// The configuration that results from applying `change` to `conf`, or why it cannot be applied.
///
/// Rules (validated before anything changes):
/// - an empty change leaves a joint configuration, and is only valid in one;
/// - a non-empty change is only valid outside a joint configuration;
/// - a change that alters the voters enters the joint configuration (old voters become
///   `voters_outgoing`); a change that only touches learners takes effect directly;
/// - `AddVoter` adds a new voter or promotes a learner; `AddLearner` adds a new learner (demoting
///   a voter is not supported); `RemoveNode` removes a voter or a learner;
/// - the incoming voter set may not be empty.
pub fn apply(conf: &ConfState, change: &ConfChange) -> Result<ConfState, Error> {
    let invalid = |why: String| Err(Error::InvalidConfChange(why));
    if change.changes.is_empty() {
        if !conf.is_joint() {
            return invalid("not in a joint configuration: nothing to leave".into());
        }
        let mut next = conf.clone();
        next.voters_outgoing.clear();
        return Ok(next);
    }
    if conf.is_joint() {
        return invalid("a joint configuration must be left before the next change".into());
    }
    let mut next = conf.clone();
    for step in &change.changes {
        match *step {
            ConfChangeStep::AddVoter(id) => {
                check_id(id)?;
                if next.voters.contains(&id) {
                    return invalid(format!("{id} is already a voter"));
                }
                next.learners.remove(&id);
                next.voters.insert(id);
            }
            ConfChangeStep::AddLearner(id) => {
                check_id(id)?;
                if next.voters.contains(&id) {
                    return invalid(format!("{id} is a voter: demotion is not supported"));
                }
                if !next.learners.insert(id) {
                    return invalid(format!("{id} is already a learner"));
                }
            }
            ConfChangeStep::RemoveNode(id) => {
                if !next.voters.remove(&id) && !next.learners.remove(&id) {
                    return invalid(format!("{id} is not a member"));
                }
            }
        }
    }
    if next.voters.is_empty() {
        return invalid("the change would remove every voter".into());
    }
    if next.voters != conf.voters {
        next.voters_outgoing = conf.voters.clone();
    }
    Ok(next)
}

fn check_id(id: NodeId) -> Result<(), Error> {
    if id.is_some() {
        Ok(())
    } else {
        Err(Error::InvalidConfChange("node id 0 is reserved".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(steps: &[ConfChangeStep]) -> ConfChange {
        ConfChange {
            changes: steps.to_vec(),
        }
    }

    #[test]
    fn voter_changes_go_through_joint_consensus() {
        let conf = ConfState::with_voters([1, 2, 3]);
        let joint = apply(&conf, &change(&[ConfChangeStep::AddVoter(NodeId(4))])).unwrap();
        assert_eq!(joint.voters_outgoing, conf.voters);
        assert!(joint.voters.contains(&NodeId(4)));
        let left = apply(&joint, &ConfChange::leave_joint()).unwrap();
        assert!(!left.is_joint());
        assert_eq!(left.voters.len(), 4);
    }

    #[test]
    fn learner_changes_are_direct_and_promotion_is_joint() {
        let conf = ConfState::with_voters([1, 2, 3]);
        let with_learner = apply(&conf, &change(&[ConfChangeStep::AddLearner(NodeId(4))])).unwrap();
        assert!(!with_learner.is_joint());
        let promoted = apply(
            &with_learner,
            &change(&[ConfChangeStep::AddVoter(NodeId(4))]),
        )
        .unwrap();
        assert!(promoted.is_joint());
        assert!(promoted.learners.is_empty());
    }

    #[test]
    fn invalid_changes_are_refused() {
        let conf = ConfState::with_voters([1]);
        assert!(apply(&conf, &ConfChange::leave_joint()).is_err());
        assert!(apply(&conf, &change(&[ConfChangeStep::RemoveNode(NodeId(1))])).is_err());
        assert!(apply(&conf, &change(&[ConfChangeStep::RemoveNode(NodeId(9))])).is_err());
        assert!(apply(&conf, &change(&[ConfChangeStep::AddLearner(NodeId(1))])).is_err());
        assert!(apply(&conf, &change(&[ConfChangeStep::AddVoter(NodeId(0))])).is_err());
        let joint = apply(&conf, &change(&[ConfChangeStep::AddVoter(NodeId(2))])).unwrap();
        assert!(apply(&joint, &change(&[ConfChangeStep::AddVoter(NodeId(3))])).is_err());
    }
}
