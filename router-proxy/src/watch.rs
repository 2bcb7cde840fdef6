//! The task that keeps the route cache fed: it holds a routing watch open on the manager
//! leader, replaces the cache with the table each watch starts with, applies every change after
//! it, and when the watch ends or breaks, opens a new one after a backoff (50 ms, doubling, at
//! most 2 s; back to 50 ms once a table arrives).

use std::sync::Arc;
use std::time::Duration;

use cairn_client::RoutingWatch;
use cairn_wire::catalog::ManagerResponse;
use tracing::{info, warn};

use crate::metrics as m;
use crate::router::Router;

/// The first wait before reopening a watch.
pub(crate) const BACKOFF_START: Duration = Duration::from_millis(50);
/// The longest wait before reopening a watch.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Follows the manager's routing changes until the task is aborted.
pub(crate) async fn follow(router: Arc<Router>) {
    let mut backoff = Backoff::new();
    loop {
        match router.upstream().manager().watch_routing().await {
            Ok(watch) => {
                m::watch_connected();
                if follow_one(&router, watch).await {
                    backoff = Backoff::new();
                }
            }
            Err(e) => warn!(error = %e, "cannot open the routing watch"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Applies what one watch carries until it ends; returns whether it carried a table.
async fn follow_one(router: &Router, mut watch: RoutingWatch) -> bool {
    let manager = watch.manager();
    info!(%manager, "watching the routing table");
    let mut got_table = false;
    loop {
        match watch.next().await {
            Ok(Some(ManagerResponse::Routing(table))) => {
                router.replace_routes(table);
                got_table = true;
            }
            Ok(Some(ManagerResponse::Change(change))) => router.apply_change(change),
            Ok(Some(_)) => {
                warn!(%manager, "the routing watch carried a non-routing answer; reopening it");
                return got_table;
            }
            Ok(None) => {
                info!(%manager, "the manager ended the routing watch; reopening it");
                return got_table;
            }
            Err(e) => {
                warn!(%manager, error = %e, "the routing watch broke; reopening it");
                return got_table;
            }
        }
    }
}

/// Exponential backoff from [`BACKOFF_START`], doubling up to [`BACKOFF_MAX`].
#[derive(Clone, Debug, PartialEq, Eq)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: BACKOFF_START,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_50_ms_up_to_2_s() {
        let mut backoff = Backoff::new();
        let delays: Vec<u128> = (0..8).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
    }
}
