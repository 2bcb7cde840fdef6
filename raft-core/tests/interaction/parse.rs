//! Parsing of command arguments: node ids, id lists, leader policies, commit rules; and the
//! rendering of core errors for transcripts.

use std::collections::BTreeSet;
use std::error::Error;

use goldenscript::{ArgumentConsumer, Command};
use raft_core::{CommitRule, LeaderPolicy, NodeId};

pub(crate) fn id(text: &str) -> Result<NodeId, Box<dyn Error>> {
    let id: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("invalid node id {text:?}"))?;
    Ok(NodeId(id))
}

/// `(1,2,3)`, `1,2,3` or `4`.
pub(crate) fn ids(text: &str) -> Result<BTreeSet<NodeId>, Box<dyn Error>> {
    let inner = text.trim();
    let inner = inner
        .strip_prefix('(')
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or(inner);
    inner
        .split(',')
        .filter(|part| !part.trim().is_empty())
        .map(id)
        .collect()
}

/// `any`, `forced(1)`, `preferred(2,3)`.
pub(crate) fn policy(text: &str) -> Result<LeaderPolicy, Box<dyn Error>> {
    if text == "any" {
        return Ok(LeaderPolicy::Any);
    }
    if let Some(rest) = text.strip_prefix("forced") {
        let forced = ids(rest)?;
        let [only] = forced.into_iter().collect::<Vec<_>>()[..] else {
            return Err(format!("forced takes one node: {text:?}").into());
        };
        return Ok(LeaderPolicy::Forced(only));
    }
    if let Some(rest) = text.strip_prefix("preferred") {
        return Ok(LeaderPolicy::Preferred(ids(rest)?));
    }
    Err(format!("invalid policy {text:?}: want any, forced(ID) or preferred(IDS)").into())
}

/// `majority` or `groups((1,2),(3))`.
pub(crate) fn commit_rule(text: &str) -> Result<CommitRule, Box<dyn Error>> {
    if text == "majority" {
        return Ok(CommitRule::Majority);
    }
    let Some(rest) = text
        .strip_prefix("groups(")
        .and_then(|r| r.strip_suffix(')'))
    else {
        return Err(
            format!("invalid commit rule {text:?}: want majority or groups((..),(..))").into(),
        );
    };
    let mut groups = Vec::new();
    for group in rest.split(')') {
        let group = group.trim_start_matches(',').trim();
        if group.is_empty() {
            continue;
        }
        let group = group
            .strip_prefix('(')
            .ok_or_else(|| format!("invalid group in {text:?}"))?;
        groups.push(ids(group)?);
    }
    Ok(CommitRule::MajorityAndGroups(groups))
}

/// The positional arguments of `command`, all node ids.
pub(crate) fn positional_ids(command: &Command) -> Result<Vec<NodeId>, Box<dyn Error>> {
    let mut args = command.consume_args();
    let ids = std::iter::from_fn(|| args.next_pos())
        .map(id)
        .collect::<Result<_, _>>()?;
    args.reject_next()?;
    Ok(ids)
}

/// The next positional argument, as a node id.
pub(crate) fn next_id(args: &mut ArgumentConsumer<'_>) -> Result<NodeId, Box<dyn Error>> {
    id(args.next_pos().ok_or("node id missing")?)
}

/// A core error as a transcript line (the leader hint without `Option` noise).
pub(crate) fn core_error(error: raft_core::Error) -> Box<dyn Error> {
    match error {
        raft_core::Error::NotLeader { leader: Some(id) } => {
            format!("not the leader (leader hint: {id})").into()
        }
        raft_core::Error::NotLeader { leader: None } => "not the leader (no leader known)".into(),
        other => other.to_string().into(),
    }
}
