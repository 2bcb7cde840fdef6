//! The retry policy, without a network: which failures are retried where, after how long, and
//! what a call reports when it gives up.

use std::net::SocketAddr;
use std::time::Duration;

use cairn_client::Error;
use cairn_client::retry::{
    BACKOFF_MAX, BACKOFF_START, Backoff, CallKind, Decision, Outcome, RetryPlan, Sent,
    single_attempt,
};
use cairn_wire::api::{
    ApiError, Consistency, LeaderHint, Namespace, ReadOp, Request, Response, ShardId, WriteOp,
    WriteResult,
};
use raft_core::{LogIndex, NodeId};

fn node(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7100 + i))
}

fn nodes() -> Vec<SocketAddr> {
    vec![node(1), node(2), node(3)]
}

fn error(e: ApiError) -> Outcome {
    Outcome::Answer(Response::Error(e))
}

fn not_leader(hint: Option<SocketAddr>) -> Outcome {
    error(ApiError::NotLeader {
        leader: hint.map(|addr| LeaderHint {
            node: NodeId(u64::from(addr.port() - 7100)),
            addr: addr.to_string(),
        }),
    })
}

fn lost(sent: Sent) -> Outcome {
    Outcome::Transport {
        sent,
        reason: "connection lost".into(),
    }
}

fn written() -> Response {
    Response::Write {
        index: LogIndex(7),
        result: WriteResult::Done,
    }
}

fn retry_at(decision: &Decision) -> SocketAddr {
    match decision {
        Decision::Retry { addr, .. } => *addr,
        other => panic!("expected a retry, got {other:?}"),
    }
}

#[test]
fn backoff_starts_at_50ms_doubles_and_caps_at_500ms() {
    let mut backoff = Backoff::new();
    let delays: Vec<u64> = (0..7)
        .map(|_| backoff.next_delay().as_millis() as u64)
        .collect();
    assert_eq!(delays, [50, 100, 200, 400, 500, 500, 500]);
    assert_eq!(BACKOFF_START, Duration::from_millis(50));
    assert_eq!(BACKOFF_MAX, Duration::from_millis(500));
}

#[test]
fn first_attempt_goes_to_the_cached_leader_else_the_first_node() {
    let mut plan = RetryPlan::new(CallKind::Write, nodes(), 5);
    assert_eq!(plan.first(None), node(1));
    let mut plan = RetryPlan::new(CallKind::Write, nodes(), 5);
    assert_eq!(plan.first(Some(node(2))), node(2));
    // Going round continues after the cached leader.
    assert_eq!(retry_at(&plan.decide(node(2), not_leader(None))), node(3));
    assert_eq!(retry_at(&plan.decide(node(3), not_leader(None))), node(1));
}

#[test]
fn a_leader_hint_is_followed_at_once() {
    let mut plan = RetryPlan::new(CallKind::Write, nodes(), 5);
    let first = plan.first(None);
    assert_eq!(
        plan.decide(first, not_leader(Some(node(3)))),
        Decision::Follow(node(3))
    );
    assert_eq!(
        plan.decide(node(3), Outcome::Answer(written())),
        Decision::Done(written())
    );
}

#[test]
fn hints_are_followed_at_most_max_leader_hops_in_a_row_then_the_client_backs_off() {
    let mut plan = RetryPlan::new(CallKind::ConsistentRead, nodes(), 2);
    plan.first(None);
    // Two nodes naming each other, as during a contested election.
    assert_eq!(
        plan.decide(node(1), not_leader(Some(node(2)))),
        Decision::Follow(node(2))
    );
    assert_eq!(
        plan.decide(node(2), not_leader(Some(node(1)))),
        Decision::Follow(node(1))
    );
    let third = plan.decide(node(1), not_leader(Some(node(2))));
    assert!(
        matches!(third, Decision::Retry { after, .. } if after == BACKOFF_START),
        "{third:?}"
    );
    // After the backoff, hints are followed again.
    let next = retry_at(&third);
    assert_eq!(
        plan.decide(next, not_leader(Some(node(1)))),
        Decision::Follow(node(1))
    );
}

#[test]
fn a_hint_naming_the_node_itself_or_no_address_is_not_followed() {
    let mut plan = RetryPlan::new(CallKind::Write, nodes(), 5);
    plan.first(None);
    assert_eq!(
        retry_at(&plan.decide(node(1), not_leader(Some(node(1))))),
        node(2)
    );
    let garbage = error(ApiError::NotLeader {
        leader: Some(LeaderHint {
            node: NodeId(3),
            addr: "not an address".into(),
        }),
    });
    assert_eq!(retry_at(&plan.decide(node(2), garbage)), node(3));
}

#[test]
fn no_leader_busy_and_unproposed_no_quorum_move_to_the_next_node_with_growing_backoff() {
    let mut plan = RetryPlan::new(CallKind::Write, nodes(), 5);
    plan.first(None);
    let answers = [
        not_leader(None),
        error(ApiError::Busy("queue full".into())),
        error(ApiError::NoQuorum { proposed: false }),
    ];
    let mut at = node(1);
    let mut delays = Vec::new();
    for answer in answers {
        match plan.decide(at, answer) {
            Decision::Retry { addr, after } => {
                at = addr;
                delays.push(after.as_millis() as u64);
            }
            other => panic!("expected a retry, got {other:?}"),
        }
    }
    assert_eq!(at, node(1), "went round the three nodes");
    assert_eq!(delays, [50, 100, 200]);
}

#[test]
fn a_write_that_may_have_been_sent_is_ambiguous_and_never_retried() {
    let mut plan = RetryPlan::new(CallKind::Write, nodes(), 5);
    plan.first(None);
    match plan.decide(node(1), lost(Sent::Maybe)) {
        Decision::Fail(e @ Error::Ambiguous { .. }) => {
            assert!(e.is_ambiguous());
            assert!(
                e.to_string().contains("may or may not have been applied"),
                "{e}"
            );
        }
        other => panic!("expected an ambiguous failure, got {other:?}"),
    }
}

#[test]
fn a_write_that_was_not_sent_is_retried_at_the_next_node() {
    let mut plan = RetryPlan::new(CallKind::Write, nodes(), 5);
    plan.first(None);
    assert_eq!(
        retry_at(&plan.decide(node(1), lost(Sent::Nothing))),
        node(2)
    );
}

#[test]
fn a_read_whose_answer_was_lost_is_retried_at_the_next_node() {
    for kind in [CallKind::ConsistentRead, CallKind::LooseRead] {
        let mut plan = RetryPlan::new(kind, nodes(), 5);
        plan.first(None);
        assert_eq!(retry_at(&plan.decide(node(1), lost(Sent::Maybe))), node(2));
    }
}

#[test]
fn a_proposed_write_without_quorum_or_an_internal_error_is_final() {
    for e in [
        ApiError::NoQuorum { proposed: true },
        ApiError::Internal("disk full".into()),
    ] {
        let mut plan = RetryPlan::new(CallKind::Write, nodes(), 5);
        plan.first(None);
        assert_eq!(
            plan.decide(node(1), error(e.clone())),
            Decision::Fail(Error::Api(e.clone()))
        );
        // A read failing the same way is simply tried elsewhere.
        let mut plan = RetryPlan::new(CallKind::ConsistentRead, nodes(), 5);
        plan.first(None);
        assert_eq!(retry_at(&plan.decide(node(1), error(e))), node(2));
    }
}

#[test]
fn answers_decided_by_the_request_are_final() {
    let finals = [
        ApiError::NotFound { key: b"k".to_vec() },
        ApiError::AssertionFailed { key: b"k".to_vec() },
        ApiError::InvalidArgument("bad".into()),
        ApiError::TooLarge {
            what: "value".into(),
            size: 10,
            max: 5,
        },
    ];
    for e in finals {
        for kind in [
            CallKind::Write,
            CallKind::ConsistentRead,
            CallKind::LooseRead,
        ] {
            let mut plan = RetryPlan::new(kind, nodes(), 5);
            plan.first(None);
            assert_eq!(
                plan.decide(node(1), error(e.clone())),
                Decision::Fail(Error::Api(e.clone()))
            );
        }
    }
}

#[test]
fn an_inconsistent_read_moves_to_the_next_node() {
    let mut plan = RetryPlan::new(CallKind::LooseRead, nodes(), 5);
    plan.first(None);
    let behind = error(ApiError::InconsistentRead {
        applied: LogIndex(3),
        required: LogIndex(9),
    });
    assert_eq!(retry_at(&plan.decide(node(1), behind)), node(2));
}

#[test]
fn unknown_shard_is_final_only_once_every_node_disowns_it() {
    let mut plan = RetryPlan::new(CallKind::Write, nodes(), 5);
    plan.first(None);
    let disown = || error(ApiError::UnknownShard(ShardId(4)));
    assert_eq!(retry_at(&plan.decide(node(1), disown())), node(2));
    // Node 2 is down; the rotation skips node 1, which disowned the shard.
    assert_eq!(
        retry_at(&plan.decide(node(2), lost(Sent::Nothing))),
        node(3)
    );
    assert_eq!(retry_at(&plan.decide(node(3), disown())), node(2));
    assert_eq!(
        plan.decide(node(2), disown()),
        Decision::Fail(Error::Api(ApiError::UnknownShard(ShardId(4))))
    );
}

#[test]
fn an_unreadable_answer_is_a_protocol_error_for_reads_and_ambiguous_for_writes() {
    let garbled = || Outcome::Garbled("frame has protocol version 9, expected 1".into());
    let mut plan = RetryPlan::new(CallKind::ConsistentRead, nodes(), 5);
    plan.first(None);
    assert!(matches!(
        plan.decide(node(1), garbled()),
        Decision::Fail(Error::Protocol(_))
    ));
    let mut plan = RetryPlan::new(CallKind::Write, nodes(), 5);
    plan.first(None);
    assert!(matches!(
        plan.decide(node(1), garbled()),
        Decision::Fail(Error::Ambiguous { .. })
    ));
}

#[test]
fn a_write_giving_up_after_no_quorum_reports_no_quorum() {
    let mut plan = RetryPlan::new(CallKind::Write, nodes(), 5);
    plan.first(None);
    plan.decide(node(1), error(ApiError::NoQuorum { proposed: false }));
    plan.decide(node(2), lost(Sent::Nothing));
    plan.decide(node(3), error(ApiError::NoQuorum { proposed: false }));
    assert_eq!(
        plan.give_up(5000),
        Error::Api(ApiError::NoQuorum { proposed: false })
    );
}

#[test]
fn a_call_giving_up_otherwise_is_unavailable_naming_the_last_node_answer() {
    let mut plan = RetryPlan::new(CallKind::ConsistentRead, nodes(), 5);
    plan.first(None);
    plan.decide(node(1), lost(Sent::Nothing));
    match plan.give_up(5000) {
        Error::Unavailable { reason, last_error } => {
            assert!(reason.contains("5000 ms"), "{reason}");
            assert_eq!(last_error, "127.0.0.1:7101: connection lost");
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    // A node's answer says more than a node that could not be reached.
    plan.decide(node(2), error(ApiError::NoQuorum { proposed: false }));
    plan.decide(node(3), lost(Sent::Nothing));
    match plan.give_up(5000) {
        Error::Unavailable { last_error, .. } => {
            assert!(
                last_error.starts_with("127.0.0.1:7102: no quorum"),
                "{last_error}"
            );
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[test]
fn a_single_attempt_maps_answers_and_failures_to_errors() {
    let at = node(1);
    assert_eq!(
        single_attempt(CallKind::Write, at, Outcome::Answer(written())),
        Ok(written())
    );
    assert_eq!(
        single_attempt(CallKind::Write, at, not_leader(None)),
        Err(Error::Api(ApiError::NotLeader { leader: None }))
    );
    assert!(matches!(
        single_attempt(CallKind::Write, at, lost(Sent::Maybe)),
        Err(Error::Ambiguous { .. })
    ));
    assert!(matches!(
        single_attempt(CallKind::Write, at, lost(Sent::Nothing)),
        Err(Error::Unavailable { .. })
    ));
    assert!(matches!(
        single_attempt(CallKind::LooseRead, at, lost(Sent::Maybe)),
        Err(Error::Unavailable { .. })
    ));
}

#[test]
fn call_kinds_follow_the_request() {
    let ns = Namespace::new("ns").unwrap();
    let read = |consistency| Request::Read {
        shard: ShardId(1),
        namespace: ns.clone(),
        epoch: None,
        consistency,
        op: ReadOp::Count { prefix: vec![] },
    };
    assert_eq!(
        CallKind::of(&read(Consistency::Consistent)),
        CallKind::ConsistentRead
    );
    assert_eq!(CallKind::of(&read(Consistency::Any)), CallKind::LooseRead);
    assert_eq!(
        CallKind::of(&read(Consistency::AtLeast(LogIndex(3)))),
        CallKind::LooseRead
    );
    let write = Request::Write {
        shard: ShardId(1),
        namespace: ns.clone(),
        epoch: None,
        op: WriteOp::Nop,
    };
    assert_eq!(CallKind::of(&write), CallKind::Write);
    assert_eq!(CallKind::of(&Request::Status), CallKind::LooseRead);
    assert!(CallKind::Write.needs_leader());
    assert!(CallKind::ConsistentRead.needs_leader());
    assert!(!CallKind::LooseRead.needs_leader());
}

#[test]
fn only_errors_that_may_hide_an_applied_write_are_ambiguous() {
    assert!(Error::Ambiguous { reason: "x".into() }.is_ambiguous());
    assert!(Error::Api(ApiError::NoQuorum { proposed: true }).is_ambiguous());
    assert!(!Error::Api(ApiError::NoQuorum { proposed: false }).is_ambiguous());
    assert!(!Error::Api(ApiError::NotFound { key: vec![] }).is_ambiguous());
    let unavailable = Error::Unavailable {
        reason: "r".into(),
        last_error: "l".into(),
    };
    assert!(!unavailable.is_ambiguous());
}
